//! The reactor's state apart from the handler, and every operation on a
//! connection that does not call back into the handler. [`Context`] is a
//! thin view of this; the loop in `mod.rs` adds the handler calls.
//!
//! [`Context`]: crate::Context

use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Poll, Token};
use slab::Slab;

use crate::admission::Admission;
use crate::buffer::BufferPool;
use crate::config::{Config, DEFAULT_POOL_MAX_CAPACITY, LINGER_TIMEOUT};
use crate::conn::{CloseReason, Conn, ConnId, Held, State, NEVER};
use crate::handler::SendError;
use crate::stats::Stats;
use crate::timer::{Tick, TimerId, TimerWheel};

/// What a timer on the reactor's wheel is for.
#[derive(Clone, Copy, Debug)]
pub(crate) enum TimerEvent {
    /// A connection's deadline (idle, write, soft limit or connect).
    Conn(ConnId),
    /// A handler's timer.
    User(u64),
    /// Graceful shutdown ran out of time.
    ShutdownDeadline,
    /// Accepting on this listener was paused after an error; try again.
    AcceptResume(usize),
}

/// Where the reactor is in its own life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lifecycle {
    Running,
    /// Shutdown began: listeners closed, connections draining.
    Draining,
    /// Every connection is gone; `run` returns.
    Stopped,
}

/// Everything but the handler.
pub(crate) struct Core {
    pub(crate) poll: Poll,
    pub(crate) conns: Slab<Conn>,
    pub(crate) wheel: TimerWheel<TimerEvent>,
    pub(crate) pool: BufferPool,
    pub(crate) admission: Admission,
    pub(crate) config: Config,
    pub(crate) stats: Stats,
    /// Connections cut short by the read budget, or resumed after a pause:
    /// served in step 5, since no new edge will come for them.
    pub(crate) ready: Vec<ConnId>,
    /// Connections with output queued from outside their own dispatch, or
    /// asked to close: flushed in step 6.
    pub(crate) flush: Vec<ConnId>,
    /// Closed connections, removed in step 8.
    pub(crate) reap: Vec<ConnId>,
    /// The clock: ticks are milliseconds since `start`.
    pub(crate) start: Instant,
    pub(crate) now_instant: Instant,
    pub(crate) now: Tick,
    pub(crate) lifecycle: Lifecycle,
    pub(crate) shutdown_requested: bool,
    /// The connection whose input is being handed to the handler: its
    /// output is written at the end of that dispatch, not in step 6.
    pub(crate) dispatching: Option<ConnId>,
    /// The connection whose `on_close` runs, and its peer: the slot is
    /// already free, but the handler may still ask where it came from.
    pub(crate) closing: Option<(ConnId, SocketAddr)>,
    /// Each slab slot's last generation. Kept per slot, so an id is not
    /// reused until its own slot has been reused 2^32 times.
    generations: Vec<u32>,
    /// Capacity of all connections' buffers: the sum of `Conn::held`,
    /// checked against `Config::max_buffered` (see `budget.rs`).
    pub(crate) buffered: usize,
}

impl Core {
    pub(crate) fn new(config: Config) -> io::Result<Core> {
        let now = Instant::now();
        Ok(Core {
            poll: Poll::new()?,
            conns: Slab::new(),
            wheel: TimerWheel::new(),
            pool: BufferPool::new(
                config.pool_buffers,
                DEFAULT_POOL_MAX_CAPACITY,
                config.pool_bytes,
            ),
            admission: Admission::new(config.allow.clone(), config.deny.clone(), config.max_per_ip),
            config,
            stats: Stats::default(),
            ready: Vec::new(),
            flush: Vec::new(),
            reap: Vec::new(),
            start: now,
            now_instant: now,
            now: 0,
            lifecycle: Lifecycle::Running,
            shutdown_requested: false,
            dispatching: None,
            closing: None,
            generations: Vec::new(),
            buffered: 0,
        })
    }

    /// Reads the clock: once per turn.
    pub(crate) fn read_clock(&mut self) {
        self.now_instant = Instant::now();
        self.now = millis(self.now_instant.saturating_duration_since(self.start));
    }

    /// The instant of a tick (for the poll timeout).
    pub(crate) fn instant_of(&self, tick: Tick) -> Instant {
        self.start
            .checked_add(Duration::from_millis(tick))
            .unwrap_or(self.now_instant + Duration::from_secs(86_400))
    }

    pub(crate) fn conn(&self, id: ConnId) -> Option<&Conn> {
        self.conns
            .get(id.index as usize)
            .filter(|c| c.generation == id.generation)
    }

    pub(crate) fn conn_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        live(&mut self.conns, id)
    }

    pub(crate) fn stats(&self) -> Stats {
        let mut stats = self.stats.clone();
        stats.active = self.conns.len();
        stats.buffers_pooled = self.pool.pooled();
        stats.buffers_in_use = self.pool.in_use();
        stats.buffered_bytes = self.buffered;
        stats.pooled_bytes = self.pool.pooled_bytes();
        stats
    }

    /// Registers a socket and gives it a slot. Each socket is registered
    /// once, for both directions, edge-triggered: from here on no message
    /// costs an `epoll_ctl`.
    pub(crate) fn add_conn(
        &mut self,
        mut stream: TcpStream,
        peer: SocketAddr,
        state: State,
    ) -> io::Result<ConnId> {
        let entry = self.conns.vacant_entry();
        let index = u32::try_from(entry.key())
            .map_err(|_| io::Error::other("connection slab exceeds u32 indices"))?;
        self.poll.registry().register(
            &mut stream,
            Token(entry.key()),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        // These fail only on a socket that is already dead; the first read
        // or write will say so.
        if self.config.nodelay {
            let _ = stream.set_nodelay(true);
        }
        if let Some(k) = self.config.keepalive {
            let keepalive = socket2::TcpKeepalive::new()
                .with_time(k.idle)
                .with_interval(k.interval)
                .with_retries(k.count);
            let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
        }
        let slot = entry.key();
        if slot >= self.generations.len() {
            self.generations.resize(slot + 1, 0);
        }
        let generation = self.generations[slot].wrapping_add(1);
        self.generations[slot] = generation;
        entry.insert(Conn::new(stream, peer, generation, state, self.now));
        self.stats.peak = self.stats.peak.max(self.conns.len());
        let id = ConnId { index, generation };
        self.arm(id);
        Ok(id)
    }

    /// Starts a non-blocking connect (mio returns at once with the socket
    /// in progress; the first writable event says how it went).
    pub(crate) fn connect(&mut self, addr: SocketAddr) -> io::Result<ConnId> {
        let stream = TcpStream::connect(addr)?;
        self.stats.connects += 1;
        self.add_conn(stream, addr, State::Connecting)
    }

    /// Queues output. The bytes go into the connection's output buffer,
    /// borrowed from the pool if it had none.
    pub(crate) fn write(&mut self, id: ConnId, data: &[u8]) -> Result<(), SendError> {
        let now = self.now;
        let conn = live(&mut self.conns, id)
            .filter(|c| !c.state().is_closed())
            .ok_or(SendError::Gone)?;
        if !conn.state().accepts_output() {
            return Err(SendError::Closing);
        }
        if data.is_empty() {
            return Ok(());
        }
        let len = conn.output_len() + data.len();
        if len > self.config.hard_limit {
            log::debug!("conn {id}: output {len} bytes passes the hard limit");
            self.kill(id, CloseReason::SlowConsumer);
            return Err(SendError::SlowConsumer);
        }
        let out = match &mut conn.output {
            Some(out) => out,
            None => {
                // Output starts waiting now: the write deadline counts
                // from here.
                conn.last_write = now;
                conn.output.insert(self.pool.take())
            }
        };
        out.extend(data);
        let capacity = out.capacity();
        if len > self.config.high_water {
            conn.backpressured = true;
        }
        let newly_soft = len > self.config.soft_limit && conn.soft_since == NEVER;
        if newly_soft {
            conn.soft_since = now;
        }
        if self.dispatching != Some(id) {
            self.push_flush(id);
        }
        if newly_soft {
            self.arm(id);
        }
        // Only when the budget was passed can this write have closed it.
        let shed = self.count_output(id, capacity);
        if shed && self.conn(id).map(Conn::state) == Some(State::Closed(CloseReason::OverBudget)) {
            return Err(SendError::OverBudget);
        }
        Ok(())
    }

    /// Closes after flushing: the connection stops reading, and step 6
    /// closes it once its output is gone.
    pub(crate) fn close(&mut self, id: ConnId, reason: CloseReason) {
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        let reason = match conn.state() {
            State::Closed(_) | State::Draining(_) | State::Lingering(_) => return,
            State::Connecting => return self.kill(id, reason),
            // The peer closed first: that is why this connection ends.
            State::ReadClosed if reason == CloseReason::Closed => CloseReason::PeerClosed,
            _ => reason,
        };
        conn.set_state(id.index as usize, State::Draining(reason));
        // Nobody will read what the handler left.
        conn.reoffer = false;
        if let Some(input) = conn.input.take() {
            self.pool.give(input);
            self.count_input(id, 0);
        }
        self.push_flush(id);
    }

    /// Closes now: buffers go back at once, the slot is freed in step 8.
    pub(crate) fn kill(&mut self, id: ConnId, reason: CloseReason) {
        let Some(conn) = live(&mut self.conns, id) else {
            return;
        };
        if conn.state().is_closed() {
            return;
        }
        conn.set_state(id.index as usize, State::Closed(reason));
        for buffer in [conn.input.take(), conn.output.take()]
            .into_iter()
            .flatten()
        {
            self.pool.give(buffer);
        }
        self.buffered -= conn.held.total();
        conn.held = Held::default();
        self.reap.push(id);
    }

    /// Closes at the shutdown deadline or a second signal: with RST unless
    /// our FIN already followed the whole answer (lingering), so an answer
    /// cut short never looks complete to the peer.
    pub(crate) fn cut(&mut self, id: ConnId) {
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        if !matches!(conn.state(), State::Lingering(_)) {
            // SO_LINGER 0: the close in step 8 sends RST.
            let _ = socket2::SockRef::from(&conn.stream).set_linger(Some(Duration::ZERO));
        }
        self.kill(id, CloseReason::Shutdown);
    }

    /// Sends FIN after the waiting output; reading goes on. No effect on a
    /// connection that is still connecting or already closing.
    pub(crate) fn shutdown_write(&mut self, id: ConnId) {
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        let next = match conn.state() {
            State::Open => State::WriteClosing,
            // Nothing more to read, nothing more to write: a close after
            // the flush sends the FIN.
            State::ReadClosed => State::Draining(CloseReason::PeerClosed),
            _ => return,
        };
        conn.set_state(id.index as usize, next);
        self.push_flush(id);
    }

    pub(crate) fn push_ready(&mut self, id: ConnId) {
        if let Some(conn) = self.conn_mut(id) {
            if !conn.on_ready_list {
                conn.on_ready_list = true;
                self.ready.push(id);
            }
        }
    }

    pub(crate) fn push_flush(&mut self, id: ConnId) {
        if let Some(conn) = self.conn_mut(id) {
            if !conn.on_flush_list {
                conn.on_flush_list = true;
                self.flush.push(id);
            }
        }
    }

    pub(crate) fn set_timer(&mut self, after: Duration, token: u64) -> TimerId {
        let at = self.now.saturating_add(millis_ceil(after));
        self.wheel.insert(at, TimerEvent::User(token))
    }

    /// Makes sure the connection's timer fires no later than its earliest
    /// deadline. Costs nothing when the armed timer is early enough, which
    /// is the common case: I/O moves deadlines later, never earlier, and a
    /// timer that fires early just re-arms.
    pub(crate) fn arm(&mut self, id: ConnId) {
        let Some(conn) = live(&mut self.conns, id) else {
            return;
        };
        let Some((at, _)) = deadline(conn, &self.config) else {
            return;
        };
        if conn.timer.is_some() && conn.timer_at <= at {
            return;
        }
        if let Some(old) = conn.timer.take() {
            self.wheel.cancel(old);
        }
        conn.timer = Some(self.wheel.insert(at, TimerEvent::Conn(id)));
        conn.timer_at = at;
    }

    /// The connection's timer fired: close it if a deadline has passed,
    /// else re-arm for the one that comes next.
    pub(crate) fn conn_timer(&mut self, id: ConnId) {
        let now = self.now;
        let Some(conn) = live(&mut self.conns, id) else {
            return;
        };
        conn.timer = None;
        conn.timer_at = NEVER;
        if conn.state().is_closed() {
            return;
        }
        match deadline(conn, &self.config) {
            Some((at, reason)) if at <= now => {
                log::debug!("conn {id}: {reason}");
                self.kill(id, reason);
            }
            Some(_) => self.arm(id),
            None => {}
        }
    }

    /// One `write` of the connection's waiting output, then whatever its
    /// state calls for once output is empty (our FIN, or the close).
    /// Returns `true` when output fell below the low-water mark after
    /// backpressure: the caller tells the handler (`on_drain`).
    ///
    /// On `WouldBlock`, or a short write (the socket buffer is full), the
    /// rest waits for the next writable edge.
    pub(crate) fn flush(&mut self, id: ConnId) -> bool {
        let now = self.now;
        let Some(conn) = live(&mut self.conns, id) else {
            return false;
        };
        let may_write = conn.writable && conn.state().may_write();
        if let Some(out) = conn.output.as_mut() {
            if may_write {
                let result = loop {
                    match (&conn.stream).write(out.as_slice()) {
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        result => break result,
                    }
                };
                match result {
                    Ok(n) => {
                        out.consume(n);
                        self.stats.bytes_out += n as u64;
                        conn.last_write = now;
                        conn.writable = out.is_empty();
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => conn.writable = false,
                    Err(e) => {
                        self.kill(id, CloseReason::from_io(&e));
                        return false;
                    }
                }
            }
        }
        let len = conn.output_len();
        if len == 0 {
            if let Some(buffer) = conn.output.take() {
                self.pool.give(buffer);
            }
        }
        // What the socket took may have freed capacity (or the buffer).
        let capacity = conn.output.as_ref().map_or(0, |b| b.capacity());
        if capacity != conn.held.output {
            self.buffered = self.buffered + capacity - conn.held.output;
            conn.held.output = capacity;
        }
        if len <= self.config.soft_limit {
            conn.soft_since = NEVER;
        }
        let drained = conn.backpressured && len <= self.config.low_water;
        if drained {
            conn.backpressured = false;
        }
        match conn.state() {
            State::WriteClosing if len == 0 => {
                // Fails only if the peer is already gone; the next read
                // reports that.
                let _ = conn.stream.shutdown(Shutdown::Write);
                conn.set_state(id.index as usize, State::WriteClosed);
            }
            State::Draining(reason) if len == 0 && conn.eof => {
                // The peer's FIN is read: nothing can be left unread, so a
                // plain close sends FIN, not RST.
                self.kill(id, reason);
                return false;
            }
            State::Draining(reason) if len == 0 => {
                let _ = conn.stream.shutdown(Shutdown::Write);
                conn.set_state(id.index as usize, State::Lingering(reason));
                conn.last_write = now; // the linger timeout counts from here
                self.arm(id);
                // Input that came while draining waits unread: read and
                // discard it now, paused or not, or the close turns it
                // into a RST that destroys the output just sent.
                self.push_ready(id);
                return false;
            }
            _ => {}
        }
        if len > 0 {
            // The socket refused some: make sure the write deadline is
            // armed (a no-op while it already is).
            self.arm(id);
        }
        if drained {
            self.push_ready(id);
        }
        drained
    }

    /// Keeps input the handler did not consume (a partial frame, or frames
    /// it left for later) in the connection's own buffer. Input past
    /// `max_input` that the handler could take nothing of (`stuck`) closes
    /// it; a handler that took some keeps the rest, offered again on the
    /// next turn.
    pub(crate) fn keep_input(&mut self, id: ConnId, rest: &[u8], stuck: bool) {
        let max_input = self.config.max_input;
        let Some(conn) = live(&mut self.conns, id) else {
            return;
        };
        if !conn.state().may_read() {
            return; // closing: nobody will read it
        }
        if stuck && rest.len() >= max_input {
            return self.kill(id, CloseReason::InputTooLarge);
        }
        let mut buffer = self.pool.take();
        buffer.extend(rest);
        let capacity = buffer.capacity();
        conn.input = Some(buffer);
        self.count_input(id, capacity);
    }

    /// Frees a closed connection's slot: cancels its timer, returns its
    /// buffers, closes the socket (with RST if the reason calls for one).
    /// Closing the descriptor also removes it from the epoll set, so no
    /// `deregister` call is needed.
    pub(crate) fn remove(&mut self, id: ConnId) -> Option<(CloseReason, SocketAddr)> {
        let State::Closed(reason) = self.conn(id)?.state() else {
            return None;
        };
        let conn = self.conns.remove(id.index as usize);
        self.admission.closed(id.index as usize);
        if let Some(timer) = conn.timer {
            self.wheel.cancel(timer);
        }
        debug_assert!(
            conn.input.is_none() && conn.output.is_none() && conn.held == Held::default(),
            "conn {id}: closed with buffers still held ({:?})",
            conn.held
        );
        if reason.resets() {
            // SO_LINGER 0: close sends RST and drops unsent data at once.
            let _ = socket2::SockRef::from(&conn.stream).set_linger(Some(Duration::ZERO));
        }
        self.stats.closed[reason.index()] += 1;
        log::trace!("conn {id}: removed ({reason})");
        Some((reason, conn.peer))
    }
}

/// The connection `id` names, if it is still the slot's tenant. A free
/// function, so a caller can hold it beside other fields of `Core`.
pub(super) fn live(conns: &mut Slab<Conn>, id: ConnId) -> Option<&mut Conn> {
    conns
        .get_mut(id.index as usize)
        .filter(|c| c.generation == id.generation)
}

/// A connection's earliest deadline and what passing it means.
fn deadline(conn: &Conn, config: &Config) -> Option<(Tick, CloseReason)> {
    match conn.state() {
        State::Connecting => {
            let at = conn
                .last_read
                .saturating_add(millis_ceil(config.connect_timeout));
            return Some((at, CloseReason::ConnectTimeout));
        }
        State::Lingering(reason) => {
            let at = conn.last_write.saturating_add(millis_ceil(LINGER_TIMEOUT));
            return Some((at, reason));
        }
        _ => {}
    }
    let mut best: Option<(Tick, CloseReason)> = None;
    let mut consider = |at: Tick, reason| {
        if best.is_none_or(|(b, _)| at < b) {
            best = Some((at, reason));
        }
    };
    if let Some(idle) = config.idle_timeout {
        let last = conn.last_read.max(conn.last_write);
        consider(
            last.saturating_add(millis_ceil(idle)),
            CloseReason::IdleTimeout,
        );
    }
    if conn.output_len() > 0 {
        let at = conn
            .last_write
            .saturating_add(millis_ceil(config.write_timeout));
        consider(at, CloseReason::WriteTimeout);
    }
    if conn.soft_since != NEVER {
        let at = conn
            .soft_since
            .saturating_add(millis_ceil(config.soft_grace));
        consider(at, CloseReason::SlowConsumer);
    }
    best
}

fn millis(d: Duration) -> Tick {
    u64::try_from(d.as_millis()).unwrap_or(Tick::MAX)
}

/// A duration in ticks, rounded up: a timeout never fires early.
pub(crate) fn millis_ceil(d: Duration) -> Tick {
    let ms = millis(d);
    if Duration::from_millis(ms) < d {
        ms.saturating_add(1)
    } else {
        ms
    }
}
