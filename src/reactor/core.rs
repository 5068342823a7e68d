//! The reactor's state apart from the handler: the slab of connections,
//! the work lists, the wheel, the buffer pool and the counters. Its fields
//! are private; the loop's steps reach them through the methods here, and
//! a connection's state changes only through [`Core::apply`], which feeds
//! an event to the pure machine in `src/state.rs` and does what the
//! answer calls for. [`Context`] is a thin view of this.
//!
//! [`Context`]: crate::Context

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::time::Duration;

use mio::{Events, Interest, Poll, Registry, Token};
use slab::Slab;

use super::budget::Budget;
use super::resolve::Resolver;
use super::settings::{Limits, Settings, Table};
use super::sources::{SourceId, Sources};
use super::tail::{waiting, Tails, Waiting};
use super::timeouts::{Time, TimerEvent};
use super::{ListenerChange, ListenerId};
use crate::admission::Admission;
use crate::buffer::{Buffer, BufferPool};
use crate::clock::Clock;
use crate::config::{Config, DEFAULT_POOL_MAX_CAPACITY};
use crate::conn::{CloseReason, Conn, ConnId, Held, NEVER};
use crate::state::{Action, Event, State};
use crate::stats::Stats;
use crate::stream::Stream;
use crate::timer::{Tick, TimerWheel};

/// Where the reactor is in its own life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lifecycle {
    Running,
    /// Graceful shutdown began: listeners closed, connections closing as
    /// they go quiet.
    ShuttingDown,
    /// Every connection is gone; `run` returns.
    Stopped,
}

/// Everything but the handler.
pub(crate) struct Core {
    poll: Poll,
    conns: Slab<Conn>,
    /// The connections of every shard of a `Server`, counted together, so
    /// `max_conns` holds for the whole server (`None` for a lone reactor:
    /// its slab is the count).
    census: Option<std::sync::Arc<crate::server::Census>>,
    /// A place in the census taken for the connection being accepted,
    /// which `add_conn` then uses instead of counting it again.
    place_reserved: bool,
    /// Each slab slot's last generation. Kept per slot, so an id is not
    /// reused until its own slot has been reused 2^32 times.
    generations: Vec<u32>,
    wheel: TimerWheel<TimerEvent>,
    pool: BufferPool,
    admission: Admission,
    config: Config,
    /// The limits `config` sets, made once: asked on every write and
    /// flush.
    limits: Limits,
    stats: Stats,
    time: Time,
    /// The capacity of every connection's buffers against
    /// `Config::max_buffered` (see `budget.rs`).
    budget: Budget,
    /// Connections to serve without a new event: cut short by the read
    /// budget, resumed after a pause, or holding input to re-offer.
    /// Served in step 5.
    ready_list: Vec<ConnId>,
    /// Connections whose output (or close) waits for step 6: queued from
    /// outside their own dispatch, or asked to close.
    flush_list: Vec<ConnId>,
    /// Closed connections, removed in step 8.
    reap_list: Vec<ConnId>,
    lifecycle: Lifecycle,
    shutdown_requested: bool,
    /// The connection whose callback runs: its output is flushed at the
    /// end of its serve, not in step 6, and a panic resets it.
    dispatching: Option<ConnId>,
    /// The connection whose `on_close` runs, and its peer: the slot is
    /// already free, but the handler may still ask where it came from.
    closing: Option<(ConnId, Option<SocketAddr>)>,
    /// Listener changes asked from callbacks, applied before the next
    /// accept (the listeners are the reactor's, beside the handler).
    listener_changes: Vec<(ListenerId, ListenerChange)>,
    /// Foreign sources the program registered (see `sources.rs`).
    sources: Sources,
    /// Settings of connections that have their own (see `settings.rs`).
    settings: Table,
    /// Output handed over whole, behind the output buffers (see
    /// `tail.rs`).
    tails: Tails,
    /// Host names being resolved for outbound connections (see
    /// `resolve.rs`).
    resolver: Resolver,
    /// TLS sessions (see `tls.rs`).
    #[cfg(feature = "tls")]
    sessions: super::tls::Sessions,
    /// The upstream pool (see `upstream.rs`).
    pub(super) upstreams: super::upstream::Upstreams,
}

impl Core {
    pub(crate) fn new(config: Config, clock: Box<dyn Clock>) -> io::Result<Core> {
        Ok(Core {
            poll: Poll::new()?,
            conns: Slab::new(),
            census: None,
            place_reserved: false,
            generations: Vec::new(),
            wheel: TimerWheel::new(),
            pool: BufferPool::new(
                config.pool_buffers,
                DEFAULT_POOL_MAX_CAPACITY,
                config.pool_bytes,
            ),
            admission: Admission::new(config.allow.clone(), config.deny.clone(), config.max_per_ip),
            budget: Budget::new(config.max_buffered),
            limits: Limits::of(&config),
            config,
            stats: Stats::default(),
            time: Time::new(clock),
            ready_list: Vec::new(),
            flush_list: Vec::new(),
            reap_list: Vec::new(),
            lifecycle: Lifecycle::Running,
            shutdown_requested: false,
            dispatching: None,
            closing: None,
            listener_changes: Vec::new(),
            sources: Sources::default(),
            settings: Table::default(),
            tails: Tails::default(),
            resolver: Resolver::default(),
            #[cfg(feature = "tls")]
            sessions: super::tls::Sessions::default(),
            upstreams: super::upstream::Upstreams::default(),
        })
    }

    // ---- the parts, for the steps that work on them -------------------

    /// Host names being resolved for outbound connections (see
    /// `resolve.rs`, and `connect.rs`, which asks it).
    pub(crate) fn resolver(&mut self) -> &mut Resolver {
        &mut self.resolver
    }

    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// The limits in force for `id`: the `Config`'s, under its own
    /// settings if it has any (a lookup only then).
    pub(crate) fn limits(&self, id: ConnId) -> Limits {
        match self.settings.get(id.index) {
            Some(settings) => self.limits.with(settings),
            None => self.limits,
        }
    }

    /// The output `id` has waiting, as each rule counts it (see
    /// `tail.rs`); nothing for a connection that is gone.
    pub(crate) fn waiting(&self, id: ConnId) -> Waiting {
        self.conn(id)
            .map(|conn| waiting(conn, &self.tails, id))
            .unwrap_or_default()
    }

    /// The connection and the tails beside it, for the write side, which
    /// needs both at once.
    pub(crate) fn conn_and_tails(&mut self, id: ConnId) -> Option<(&mut Conn, &mut Tails)> {
        let conn = self
            .conns
            .get_mut(id.index as usize)
            .filter(|c| c.generation == id.generation)?;
        Some((conn, &mut self.tails))
    }

    /// The TLS sessions (see `tls.rs`).
    #[cfg(feature = "tls")]
    pub(crate) fn sessions(&mut self) -> &mut super::tls::Sessions {
        &mut self.sessions
    }

    /// The connection, the tails and the TLS sessions at once, for the
    /// TLS write side.
    #[cfg(feature = "tls")]
    pub(crate) fn conn_tails_sessions(
        &mut self,
        id: ConnId,
    ) -> Option<(&mut Conn, &mut Tails, &mut super::tls::Sessions)> {
        let conn = self
            .conns
            .get_mut(id.index as usize)
            .filter(|c| c.generation == id.generation)?;
        Some((conn, &mut self.tails, &mut self.sessions))
    }

    /// Whether a TLS session holds plaintext for `id` that the handler has
    /// not been offered (always `false` for a plain connection).
    pub(crate) fn plaintext_waiting(&self, id: ConnId) -> bool {
        #[cfg(feature = "tls")]
        if self.conn(id).is_some_and(|c| c.tls) {
            return self.sessions.get(id.index).is_some_and(|s| s.has_pending());
        }
        let _ = id;
        false
    }

    /// What `id` holds against the buffer budget: its buffers, and its
    /// TLS session's (see `budget.rs`).
    pub(crate) fn holding(&self, id: ConnId) -> usize {
        let Some(conn) = self.conn(id) else {
            return 0;
        };
        #[cfg(feature = "tls")]
        if conn.tls {
            let session = self.sessions.get(id.index).map_or(0, |s| s.counted_now());
            return conn.held.total() + session;
        }
        conn.held.total()
    }

    /// Whether `id` asked to hear that its output is all written, and it
    /// is: the request is used up. A length check while nobody asked.
    pub(crate) fn take_written(&mut self, id: ConnId) -> bool {
        // The table first: while nobody asked, a flush pays a length
        // check here, not a slab lookup.
        if !self
            .settings
            .get(id.index)
            .is_some_and(|s| s.notify_flushed)
        {
            return false;
        }
        let empty = self
            .conn(id)
            .is_some_and(|c| !c.has_output() && !c.state().is_closed());
        if let Some(settings) = self.settings.get_mut(id.index).filter(|_| empty) {
            settings.notify_flushed = false;
        }
        empty
    }

    /// The side table of settings itself.
    pub(crate) fn settings_table(&mut self) -> &mut Table {
        &mut self.settings
    }

    /// `id`'s own settings, made if it had none; `None` if it is gone.
    pub(crate) fn settings_mut(&mut self, id: ConnId) -> Option<&mut Settings> {
        self.conn(id).filter(|c| !c.state().is_closed())?;
        Some(self.settings.entry(id.index))
    }

    /// A new `max_conns` (from the `Handle`; at least 1).
    pub(crate) fn set_max_conns(&mut self, n: usize) {
        self.config.max_conns = n.max(1);
    }

    pub(crate) fn registry(&self) -> &Registry {
        self.poll.registry()
    }

    /// The epoll descriptor, for a host loop that waits on it.
    pub(crate) fn poll_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.poll.as_raw_fd()
    }

    /// `epoll_wait`.
    pub(crate) fn poll(&mut self, events: &mut Events, wait: Option<Duration>) -> io::Result<()> {
        self.poll.poll(events, wait)
    }

    /// The counters, to count on.
    pub(crate) fn counters(&mut self) -> &mut Stats {
        &mut self.stats
    }

    /// The counters now, with the levels filled in.
    pub(crate) fn stats(&self) -> Stats {
        let mut stats = self.stats.clone();
        stats.active = self.conns.len();
        stats.buffers_pooled = self.pool.pooled();
        stats.buffers_in_use = self.pool.in_use();
        stats.buffered_bytes = self.budget.held();
        stats.pooled_bytes = self.pool.pooled_bytes();
        stats.pool_idle = self.pool_idle();
        stats.timers = self.wheel.len();
        stats
    }

    pub(crate) fn wheel(&mut self) -> &mut TimerWheel<TimerEvent> {
        &mut self.wheel
    }

    pub(crate) fn time(&self) -> &Time {
        &self.time
    }

    /// Reads the clock: once per turn.
    pub(crate) fn read_clock(&mut self) {
        self.time.read();
    }

    /// The tick this turn began.
    pub(crate) fn now(&self) -> Tick {
        self.time.now()
    }

    /// The sum of every connection's buffers (see `budget.rs`).
    pub(crate) fn budget(&mut self) -> &mut Budget {
        &mut self.budget
    }

    pub(crate) fn admission(&mut self) -> &mut Admission {
        &mut self.admission
    }

    /// An empty buffer, from the pool if it has one.
    pub(crate) fn take_buffer(&mut self) -> Box<Buffer> {
        self.pool.take()
    }

    /// A buffer back to the pool (or freed, past the pool's bounds).
    pub(crate) fn give_buffer(&mut self, buffer: Box<Buffer>) {
        self.pool.give(buffer);
    }

    // ---- connections -------------------------------------------------

    /// The connection `id` names, if it is still the slot's tenant.
    pub(crate) fn conn(&self, id: ConnId) -> Option<&Conn> {
        self.conns
            .get(id.index as usize)
            .filter(|c| c.generation == id.generation)
    }

    pub(crate) fn conn_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.conns
            .get_mut(id.index as usize)
            .filter(|c| c.generation == id.generation)
    }

    /// The connection in slab slot `index`, whoever it is (for events,
    /// which carry the slot), with its id.
    pub(crate) fn conn_at(&mut self, index: usize) -> Option<(ConnId, &mut Conn)> {
        let conn = self.conns.get_mut(index)?;
        let id = ConnId {
            index: index as u32,
            generation: conn.generation,
        };
        Some((id, conn))
    }

    /// Connections open now (not closed), in slot order.
    pub(crate) fn open_ids(&self) -> Vec<ConnId> {
        self.conns
            .iter()
            .filter(|(_, c)| !c.state().is_closed())
            .map(|(i, c)| ConnId {
                index: i as u32,
                generation: c.generation,
            })
            .collect()
    }

    /// Every connection in the slab, closed or not.
    pub(crate) fn all_ids(&self) -> Vec<ConnId> {
        self.conns
            .iter()
            .map(|(i, c)| ConnId {
                index: i as u32,
                generation: c.generation,
            })
            .collect()
    }

    /// Connections in the slab (closed ones until reaped).
    pub(crate) fn len(&self) -> usize {
        self.conns.len()
    }

    /// Connections counted against `max_conns`: this slab's, or every
    /// shard's for a reactor in a `Server`.
    pub(crate) fn headcount(&self) -> usize {
        match &self.census {
            Some(census) => census.open(),
            None => self.conns.len(),
        }
    }

    /// Joins this reactor to a server's count (before it opens anything).
    pub(crate) fn join_census(&mut self, census: std::sync::Arc<crate::server::Census>) {
        self.census = Some(census);
    }

    /// In a server, takes one of its `max_conns` places for a connection
    /// just accepted (atomically, against every shard); always `true` for
    /// a lone reactor, whose slab is its count. Give it back with
    /// [`release_place`](Self::release_place) if the connection is not
    /// kept; `add_conn` uses it otherwise.
    pub(crate) fn reserve_place(&mut self) -> bool {
        let Some(census) = &self.census else {
            return true;
        };
        let taken = census.reserve(self.config.max_conns);
        self.place_reserved = taken;
        taken
    }

    /// The connection a place was reserved for was not kept.
    pub(crate) fn release_place(&mut self) {
        if std::mem::take(&mut self.place_reserved) {
            if let Some(census) = &self.census {
                census.closed();
            }
        }
    }

    /// A connection `remove`d is gone from the handler too (`on_close`
    /// returned): its place in the server's count is free for any shard.
    /// Not in `remove`, or another shard could let a connection in while
    /// this one's handler still holds it, one past `max_conns` as the
    /// handlers count.
    pub(crate) fn give_back_place(&mut self) {
        if let Some(census) = &self.census {
            census.closed();
        }
    }

    /// See `Reactor::leave_server`.
    pub(crate) fn leave_census(&mut self) {
        if let Some(census) = self.census.take() {
            census.left(self.conns.len());
        }
        self.admission.release_all();
    }

    /// Whether this reactor's limits are a server's (see `join_census`).
    pub(crate) fn in_census(&self) -> bool {
        self.census.is_some()
    }

    /// Registers a socket and gives it a slot. Each socket is registered
    /// once, for both directions, edge-triggered: from here on no message
    /// costs an `epoll_ctl`.
    pub(crate) fn add_conn(
        &mut self,
        mut stream: Stream,
        peer: Option<SocketAddr>,
        listener: u32,
        state: State,
    ) -> io::Result<ConnId> {
        let now = self.now();
        let keepalive = self.keepalive();
        let entry = self.conns.vacant_entry();
        let slot = entry.key();
        let index = u32::try_from(slot)
            .map_err(|_| io::Error::other("connection slab exceeds u32 indices"))?;
        self.poll.registry().register(
            &mut stream,
            Token(slot),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        stream.set_tcp_options(self.config.nodelay, keepalive.as_ref());
        if slot >= self.generations.len() {
            self.generations.resize(slot + 1, 0);
        }
        let generation = self.generations[slot].wrapping_add(1);
        self.generations[slot] = generation;
        entry.insert(Conn::new(stream, peer, generation, listener, state, now));
        if let Some(census) = &self.census {
            if !std::mem::take(&mut self.place_reserved) {
                census.opened(); // an outbound or adopted connection
            }
        }
        self.stats.peak = self.stats.peak.max(self.conns.len());
        let id = ConnId { index, generation };
        self.arm(id);
        Ok(id)
    }

    /// A new id for a connection that changes hands (the upstream pool
    /// handing an idle one to its next user): the old id goes stale, as a
    /// closed connection's does, so whoever held it before can never reach
    /// the next user's exchange. Its timer was the old id's; the caller
    /// arms the new one.
    pub(crate) fn renew(&mut self, id: ConnId) -> Option<ConnId> {
        let slot = id.index as usize;
        let conn = self
            .conns
            .get_mut(slot)
            .filter(|c| c.generation == id.generation)?;
        let generation = self.generations[slot].wrapping_add(1);
        self.generations[slot] = generation;
        conn.generation = generation;
        conn.timer_at = NEVER;
        if let Some(timer) = conn.timer.take() {
            self.wheel.cancel(timer);
        }
        Some(ConnId {
            index: id.index,
            generation,
        })
    }

    /// TCP keepalive as the `Config` asks, if it does.
    pub(crate) fn keepalive(&self) -> Option<socket2::TcpKeepalive> {
        self.config.keepalive.map(|k| {
            socket2::TcpKeepalive::new()
                .with_time(k.idle)
                .with_interval(k.interval)
                .with_retries(k.count)
        })
    }

    // ---- the state machine -------------------------------------------

    /// Feeds `event` to `id`'s state machine, sets the state it answers,
    /// and does the part of the answer that needs no handler: entering
    /// `Closed` returns the buffers and queues the reap; `StopReading`,
    /// `Flush`, `SendFin` and `Linger` are done here. Returns the action
    /// (the caller calls the handler for `TellOpen` and
    /// `TellReadClosed`), or `None` if the event changed nothing.
    ///
    /// `TellReadClosedThenClose` is the one answer whose state waits: the
    /// caller tells the handler first, then closes the connection with
    /// `abort(PeerClosed)`.
    pub(crate) fn apply(&mut self, id: ConnId, event: Event) -> Option<Action> {
        let now = self.now();
        let conn = self.conn_mut(id)?;
        let (next, action) = conn.state().on(event)?;
        if action == Action::TellReadClosedThenClose {
            return Some(action);
        }
        conn.set_state(id, next);
        match action {
            Action::SendFin => {
                // Fails only if the peer is already gone; the next read
                // reports that.
                let _ = conn.stream.shutdown(Shutdown::Write);
            }
            Action::Linger => {
                let _ = conn.stream.shutdown(Shutdown::Write);
                conn.last_write = now; // the linger timeout counts from here
                                       // Input that came while closing waits unread: read and
                                       // discard it now, paused or not, or the close turns it
                                       // into a RST that destroys the output just sent.
                self.push_ready(id);
                self.arm(id);
            }
            Action::StopReading => {
                // Nobody will read what the handler left.
                conn.reoffer = false;
                if let Some(input) = conn.input.take() {
                    self.pool.give(input);
                    self.count_input(id, 0);
                }
                self.push_flush(id);
            }
            Action::Flush => self.push_flush(id),
            Action::Nothing
            | Action::TellOpen
            | Action::TellReadClosed
            | Action::TellReadClosedThenClose => {}
        }
        if next.is_closed() {
            self.release(id);
        }
        Some(action)
    }

    /// A closed connection's buffers go back at once; its slot is freed in
    /// step 8.
    fn release(&mut self, id: ConnId) {
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        let buffers = [conn.input.take(), conn.output.take()];
        let held = std::mem::take(&mut conn.held);
        conn.sealed = false;
        let tls = conn.tls;
        if std::mem::take(&mut conn.tail) {
            self.tails.remove(id.index);
        }
        #[cfg(feature = "tls")]
        if tls {
            let counted = self.forget_session(id);
            self.budget.forget(counted);
        }
        #[cfg(not(feature = "tls"))]
        let _ = tls;
        for buffer in buffers.into_iter().flatten() {
            self.pool.give(buffer);
        }
        self.budget.forget(held.total());
        self.reap_list.push(id);
    }

    /// Closes gracefully: reading stops, output flushes, then FIN and a
    /// linger (see `src/state.rs`).
    pub(crate) fn close(&mut self, id: ConnId, reason: CloseReason) {
        self.apply(id, Event::Close(reason));
    }

    /// Closes now: output dropped, buffers back at once, the slot freed in
    /// step 8 (with RST if the reason calls for one).
    pub(crate) fn abort(&mut self, id: ConnId, reason: CloseReason) {
        self.apply(id, Event::Abort(reason));
    }

    /// Sends FIN after the waiting output; reading goes on. No effect on a
    /// connection that is still connecting or already closing.
    pub(crate) fn shutdown_write(&mut self, id: ConnId) {
        self.apply(id, Event::ShutdownWrite);
    }

    /// Frees a closed connection's slot: cancels its timer, closes the
    /// socket (with RST if the reason calls for one). Closing the
    /// descriptor also removes it from the epoll set, so no `deregister`
    /// call is needed. Returns why it closed, where it came from, and
    /// whether the handler knows it (a TLS connection whose handshake
    /// failed was never opened to it). Its place in a server's count is
    /// given back after the handler hears of it (`give_back_place`).
    pub(crate) fn remove(&mut self, id: ConnId) -> Option<(CloseReason, Option<SocketAddr>, bool)> {
        let State::Closed(reason) = self.conn(id)?.state() else {
            return None;
        };
        let conn = self.conns.remove(id.index as usize);
        self.admission.closed(id.index as usize);
        self.settings.remove(id.index);
        self.resolver.forget(id.index);
        // An outbound connection's handler knows it from the start.
        #[cfg(feature = "tls")]
        let told = !conn.tls || self.end_session(id) || conn.listener == crate::conn::NO_LISTENER;
        #[cfg(not(feature = "tls"))]
        let told = true;
        // One the handler gave to the upstream pool is not its any more.
        let told = told && !conn.pooled;
        self.forget_upstream(id);
        if let CloseReason::Tls(failure) = reason {
            self.stats.tls_failed[failure.index()] += 1;
        }
        if let Some(timer) = conn.timer {
            self.wheel.cancel(timer);
        }
        debug_assert!(
            conn.input.is_none() && !conn.has_output() && conn.held == Held::default(),
            "conn {id}: closed with buffers still held ({:?})",
            conn.held
        );
        if reason.resets() {
            // SO_LINGER 0: close sends RST and drops unsent data at once.
            conn.stream.reset_on_close();
        }
        self.stats.closed[reason.index()] += 1;
        log::trace!("conn {id}: removed ({reason})");
        Some((reason, conn.peer, told))
    }

    // ---- the work lists ------------------------------------------------

    /// Serve `id` in step 5 (each connection at most once on the list).
    pub(crate) fn push_ready(&mut self, id: ConnId) {
        if let Some(conn) = self.conn_mut(id) {
            if !std::mem::replace(&mut conn.on_ready_list, true) {
                self.ready_list.push(id);
            }
        }
    }

    /// Flush `id` in step 6 (each connection at most once on the list).
    pub(crate) fn push_flush(&mut self, id: ConnId) {
        if let Some(conn) = self.conn_mut(id) {
            if !std::mem::replace(&mut conn.on_flush_list, true) {
                self.flush_list.push(id);
            }
        }
    }

    /// The ready list, emptied; give it back with [`Core::return_ready`].
    pub(crate) fn take_ready(&mut self) -> Vec<ConnId> {
        std::mem::take(&mut self.ready_list)
    }

    pub(crate) fn return_ready(&mut self, list: Vec<ConnId>) {
        recycle(&mut self.ready_list, list);
    }

    /// The flush list, emptied; give it back with [`Core::return_flush`].
    pub(crate) fn take_flush(&mut self) -> Vec<ConnId> {
        std::mem::take(&mut self.flush_list)
    }

    pub(crate) fn return_flush(&mut self, list: Vec<ConnId>) {
        recycle(&mut self.flush_list, list);
    }

    pub(crate) fn pop_reap(&mut self) -> Option<ConnId> {
        self.reap_list.pop()
    }

    /// Work no event will announce waits: the poll must not sleep.
    pub(crate) fn has_work(&self) -> bool {
        !self.ready_list.is_empty()
            || !self.flush_list.is_empty()
            || !self.reap_list.is_empty()
            || self.shutdown_requested
    }

    /// After a handler's panic cut the turn off: the lists are rebuilt
    /// from scratch by the caller.
    pub(crate) fn clear_lists(&mut self) {
        self.ready_list.clear();
        self.flush_list.clear();
        self.closing = None;
        for (_, conn) in self.conns.iter_mut() {
            conn.on_ready_list = false;
            conn.on_flush_list = false;
        }
    }

    /// Buffers held by connections, counted again after a panic dropped
    /// the one lent to the handler.
    pub(crate) fn recount_buffers(&mut self) {
        let held = self
            .conns
            .iter()
            .map(|(_, c)| usize::from(c.input.is_some()) + usize::from(c.output.is_some()))
            .sum();
        self.pool.set_in_use(held);
    }

    // ---- foreign sources -----------------------------------------------

    /// Registers a source the program owns (see `sources.rs`).
    pub(crate) fn register_source(
        &mut self,
        source: &mut impl mio::event::Source,
        interest: Interest,
    ) -> io::Result<SourceId> {
        self.sources
            .register(self.poll.registry(), source, interest)
    }

    /// Takes a source out of the poll; `false` for a stale id.
    pub(crate) fn deregister_source(
        &mut self,
        source: &mut impl mio::event::Source,
        id: SourceId,
    ) -> io::Result<bool> {
        self.sources.deregister(self.poll.registry(), source, id)
    }

    /// The live source an event's token names.
    pub(crate) fn source_of(&self, token: Token) -> Option<SourceId> {
        self.sources.of_token(token)
    }

    // ---- listeners -----------------------------------------------------

    /// A change to a listener, asked from a callback.
    pub(crate) fn change_listener(&mut self, listener: ListenerId, change: ListenerChange) {
        self.listener_changes.push((listener, change));
    }

    pub(crate) fn has_listener_changes(&self) -> bool {
        !self.listener_changes.is_empty()
    }

    pub(crate) fn take_listener_changes(&mut self) -> Vec<(ListenerId, ListenerChange)> {
        std::mem::take(&mut self.listener_changes)
    }

    // ---- the reactor's own life, and dispatch ----------------------------

    pub(crate) fn lifecycle(&self) -> Lifecycle {
        self.lifecycle
    }

    pub(crate) fn set_lifecycle(&mut self, lifecycle: Lifecycle) {
        self.lifecycle = lifecycle;
    }

    /// Begin graceful shutdown at the end of this turn.
    pub(crate) fn request_shutdown(&mut self) {
        self.shutdown_requested = true;
    }

    /// Whether shutdown was asked for this turn; the request is cleared.
    pub(crate) fn take_shutdown_request(&mut self) -> bool {
        std::mem::take(&mut self.shutdown_requested)
    }

    pub(crate) fn shutdown_requested(&self) -> bool {
        self.shutdown_requested
    }

    /// Marks the connection whose callback runs (see `dispatching`).
    pub(crate) fn set_dispatching(&mut self, id: Option<ConnId>) {
        self.dispatching = id;
    }

    pub(crate) fn dispatching(&self) -> Option<ConnId> {
        self.dispatching
    }

    /// The connection whose `on_close` runs, and where it came from.
    pub(crate) fn set_closing(&mut self, closing: Option<(ConnId, Option<SocketAddr>)>) {
        self.closing = closing;
    }

    pub(crate) fn closing(&self) -> Option<(ConnId, Option<SocketAddr>)> {
        self.closing
    }
}

/// Puts an emptied work list's allocation back, unless the list was
/// refilled meanwhile (then the new one is kept).
fn recycle(list: &mut Vec<ConnId>, mut old: Vec<ConnId>) {
    if list.is_empty() {
        old.clear();
        *list = old;
    }
}
