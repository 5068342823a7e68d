//! The event loop: one turn of [`Reactor::run_once`] is the list in the
//! crate docs, one private method per step, in the same order.

mod accept;
mod budget;
mod coalesce;
mod connect;
mod core;
mod listeners;
mod read;
mod resolve;
mod settings;
mod shutdown;
mod side_table;
mod sources;
mod tail;
mod timeouts;
#[cfg(feature = "tls")]
mod tls;
mod upstream;
mod write;

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::mem;
use std::net::SocketAddr;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use mio::event::Event;
use mio::{Events, Token, Waker};

use self::coalesce::Coalesce;
pub(crate) use self::core::Core;
pub(crate) use self::listeners::ListenerChange;
pub use self::listeners::ListenerId;
pub(crate) use self::resolve::Found;
pub use self::settings::Connect;
pub(crate) use self::settings::Settings;
use self::sources::Sources;
pub use self::sources::{Readiness, SourceId};
pub(crate) use self::tail::Segment;
pub(crate) use self::timeouts::TimerEvent;
pub use self::upstream::{CheckinError, Checkout};
use self::write::Flush;
pub(crate) use self::write::Queued;
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, EVENTS_CAPACITY, SCRATCH_SIZE};
use crate::conn::{CloseReason, ConnId};
use crate::handle::{AdmitChange, Command, Handle, Shared};
use crate::handler::{Context, Handler};
use crate::state::{self, Action, State};
use crate::stats::Stats;
use crate::stream::Stream;

/// The waker's and the signal pipe's tokens; listeners count down from the
/// one below them. Connection tokens are slab indices, which never come
/// near.
const WAKER: Token = Token(usize::MAX);
const SIGNALS: Token = Token(usize::MAX - 1);
const FIRST_LISTENER: usize = usize::MAX - 2;

/// What [`Reactor::run_once`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// The loop goes on.
    Running,
    /// Shutdown finished: every connection is closed.
    Stopped,
}

use self::accept::Listener;

/// A single-threaded TCP reactor driving one [`Handler`].
///
/// ```no_run
/// use evloop::{Config, Context, ConnId, Handler, Reactor};
///
/// struct Echo;
/// impl Handler for Echo {
///     type Message = ();
///     fn on_data(&mut self, cx: &mut Context<'_>, conn: ConnId, input: &[u8]) -> usize {
///         let _ = cx.write(conn, input);
///         input.len()
///     }
/// }
///
/// let mut reactor = Reactor::new(Echo, Config::default())?;
/// reactor.listen("127.0.0.1:7000".parse().unwrap())?;
/// reactor.run()?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Reactor<H: Handler> {
    handler: H,
    core: Core,
    events: Events,
    /// Listeners by index ([`ListenerId`]); a closed one leaves `None`,
    /// so ids are never reused.
    listeners: Vec<Option<Listener>>,
    shared: Arc<Shared<H::Message>>,
    /// Commands taken from the shared queue, handled one at a time: a
    /// handler that panics on one leaves the rest here for the next turn.
    inbox: VecDeque<Command<H::Message>>,
    /// Every read lands here first; only a partial frame is copied out.
    scratch: Vec<u8>,
    /// TLS ciphertext lands here, to be decrypted into `scratch`; made
    /// for the first TLS connection (see `tls.rs`).
    #[cfg(feature = "tls")]
    cipher: Vec<u8>,
    /// Timers taken off the wheel this turn, and how many of them have
    /// been dispatched (the rest survive a handler's panic).
    fired: Vec<TimerEvent>,
    fired_done: usize,
    /// A descriptor held in reserve: when accept fails with `EMFILE`, it is
    /// closed to accept and shed one waiting connection, then reopened.
    reserve: Option<File>,
    /// SIGINT/SIGTERM, once [`handle_signals`](Self::handle_signals) is
    /// called.
    signals: Option<signal_hook_mio::v1_0::Signals>,
    /// A second signal (or `stop`) asked to stop without waiting for quiet.
    stop_now: bool,
    /// Connections open when shutdown began.
    closing_from: usize,
    /// Connections taken from the listen queues when shutdown began, not
    /// yet opened.
    queued: Vec<(Stream, Option<SocketAddr>, u32)>,
    /// `on_start` has been called.
    started: bool,
    /// The last poll filled the events buffer: more may be ready, and an
    /// edge-triggered host loop would not hear of them (see `AsRawFd`).
    events_full: bool,
    /// Whether the next poll naps first (`Config::coalesce`).
    coalesce: Coalesce,
}

impl<H: Handler> Reactor<H> {
    /// A reactor with no listeners yet. Fails with
    /// [`io::ErrorKind::InvalidInput`] if `config` cannot work (see
    /// [`Config::validate`]).
    pub fn new(handler: H, config: Config) -> io::Result<Self> {
        Self::with_clock(handler, config, SystemClock)
    }

    /// A reactor that reads the time from `clock` (see
    /// [`ManualClock`](crate::ManualClock): tests that move time
    /// themselves, so no timeout test sleeps).
    pub fn with_clock(handler: H, config: Config, clock: impl Clock + 'static) -> io::Result<Self> {
        config
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let post_queue = config.post_queue;
        let config_coalesce = config.coalesce;
        let mut core = Core::new(config, Box::new(clock))?;
        let waker = Waker::new(core.registry(), WAKER)?;
        let shared = Arc::new(Shared::new(waker, post_queue));
        let back = Arc::clone(&shared);
        core.set_resolver_poster(Arc::new(move |id, found| back.push_found(id, found)));
        Ok(Reactor {
            handler,
            core,
            events: Events::with_capacity(EVENTS_CAPACITY),
            listeners: Vec::new(),
            shared,
            inbox: VecDeque::new(),
            scratch: vec![0; SCRATCH_SIZE],
            #[cfg(feature = "tls")]
            cipher: Vec::new(),
            fired: Vec::new(),
            fired_done: 0,
            reserve: File::open("/dev/null").ok(),
            signals: None,
            stop_now: false,
            closing_from: 0,
            queued: Vec::new(),
            started: false,
            events_full: false,
            coalesce: Coalesce::new(config_coalesce),
        })
    }

    /// Starts an outbound connection (see [`Context::connect`]). Outside
    /// a turn the clock is read first, so the connect timeout counts from
    /// this call, not from the last turn.
    pub fn connect(&mut self, addr: SocketAddr) -> io::Result<ConnId> {
        self.connect_with(addr, Connect::default())
    }

    /// Starts an outbound connection from a chosen local address, or with
    /// its own timeout (see [`Context::connect_with`]).
    pub fn connect_with(&mut self, addr: SocketAddr, options: Connect) -> io::Result<ConnId> {
        self.core.read_clock();
        self.core.connect(addr, options)
    }

    /// Connects to a Unix domain stream socket (see
    /// [`Context::connect_unix`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// # use evloop::{Config, ConnId, Context, Handler, Reactor};
    /// # struct Echo;
    /// # impl Handler for Echo {
    /// #     type Message = ();
    /// #     fn on_data(&mut self, cx: &mut Context<'_>, c: ConnId, i: &[u8]) -> usize { let _ = cx.write(c, i); i.len() }
    /// # }
    /// let path = std::env::temp_dir().join(format!("evloop-connect-{}.sock", std::process::id()));
    /// # let _ = std::fs::remove_file(&path);
    /// // A server listening at `path` (here std's; say a database).
    /// let server = std::os::unix::net::UnixListener::bind(&path)?;
    /// let mut reactor = Reactor::new(Echo, Config::default())?;
    /// // Nothing listening would fail here, at once; `on_open` comes from the loop.
    /// let db = reactor.connect_unix(&path)?;
    /// reactor.run_once(Some(Duration::ZERO))?;
    /// # let _ = db;
    /// # drop(server);
    /// std::fs::remove_file(&path)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn connect_unix(&mut self, path: impl AsRef<std::path::Path>) -> io::Result<ConnId> {
        self.core.read_clock();
        self.core.connect_unix(path.as_ref())
    }

    /// Connects to `host` by name, resolved off the loop (see
    /// [`Context::connect_host`]).
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use evloop::Connect;
    /// # use evloop::{Config, ConnId, Context, Handler, Reactor};
    /// # struct Echo;
    /// # impl Handler for Echo {
    /// #     type Message = ();
    /// #     fn on_data(&mut self, cx: &mut Context<'_>, c: ConnId, i: &[u8]) -> usize { let _ = cx.write(c, i); i.len() }
    /// # }
    /// let mut reactor = Reactor::new(Echo, Config::default())?;
    /// // The id comes at once; the name is looked up off the loop.
    /// let options = Connect {
    ///     timeout: Some(Duration::from_secs(2)), // the lookup and every attempt
    ///     ..Connect::default()
    /// };
    /// let cache = reactor.connect_host("cache.internal", 6379, options)?;
    /// # let _ = cache;
    /// reactor.run()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn connect_host(&mut self, host: &str, port: u16, options: Connect) -> io::Result<ConnId> {
        self.core.read_clock();
        self.core.connect_host(host, port, options)
    }

    /// A handle for other threads.
    pub fn handle(&self) -> Handle<H::Message> {
        Handle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// The handler.
    pub fn handler(&self) -> &H {
        &self.handler
    }

    /// The handler, mutably (between turns).
    pub fn handler_mut(&mut self) -> &mut H {
        &mut self.handler
    }

    /// The counters now.
    pub fn stats(&self) -> Stats {
        self.core.stats()
    }

    /// Begins graceful shutdown at the end of the next turn (see
    /// [`Handle::shutdown`] from other threads). Asking again while it
    /// shuts down changes nothing.
    pub fn shutdown(&mut self) {
        self.core.request_shutdown();
    }

    /// Runs turns until shutdown completes. Returns an error only when the
    /// loop itself fails (`epoll_wait` does); nothing a peer does ends it.
    pub fn run(&mut self) -> io::Result<()> {
        while self.run_once(None)? == Status::Running {}
        Ok(())
    }

    /// One turn of the loop, waiting at most `max_wait` for events (`None`:
    /// until the next timer, or forever without one). For embedding the
    /// reactor in an outer loop.
    ///
    /// A handler's panic unwinds out of this call; the reactor is made
    /// consistent first, so the caller may call again (see [`Handler`]).
    pub fn run_once(&mut self, max_wait: Option<Duration>) -> io::Result<Status> {
        let turn = panic::catch_unwind(AssertUnwindSafe(|| {
            self.start(); //                             0. the first turn: on_start
            let wait = self.poll_timeout(max_wait); //   1. how long to wait
            self.poll(wait)?; //                         2. poll (a nap first if coalescing)
            self.core.read_clock(); //                   3. now = clock()
            self.handle_events(); //                     4. listeners, waker, signals, conns
            self.serve_ready_list(); //                5. conns cut short or resumed
            self.flush_output(); //                      6. one write per conn with output
            self.expire_timers(); //                     7. idle, write, connect, user timers
            self.reap(); //                              8. free closed slots, on_close
            Ok(self.check_shutdown()) //                 9. shutdown: begin, cut, done?
        }));
        turn.unwrap_or_else(|panic| {
            self.recover();
            panic::resume_unwind(panic)
        })
    }

    /// How long a host loop may wait before calling
    /// [`run_once`](Self::run_once) again, if the reactor's descriptor
    /// stays quiet: zero while work waits that no event will announce,
    /// else until the next timer, `None` with no timer at all. See the
    /// [`AsRawFd`](#impl-AsRawFd-for-Reactor%3CH%3E) contract.
    ///
    /// ```
    /// use std::time::Duration;
    /// # use evloop::{Config, ConnId, Context, Handler, Reactor};
    /// /// Sets one timer, 5 s away, on the first turn.
    /// struct Report;
    /// impl Handler for Report {
    ///     type Message = ();
    ///     fn on_start(&mut self, cx: &mut Context<'_>) {
    ///         cx.set_timer(Duration::from_secs(5), 0);
    ///     }
    /// #   fn on_data(&mut self, _: &mut Context<'_>, _: ConnId, i: &[u8]) -> usize { i.len() }
    /// }
    /// let mut reactor = Reactor::new(Report, Config::default())?;
    /// // No timer yet and nothing to do: wait for the descriptor alone.
    /// assert_eq!(reactor.next_wait(), None);
    /// reactor.run_once(Some(Duration::ZERO))?;
    /// // Now a host may sleep until the timer is due, not longer.
    /// assert!(reactor.next_wait().is_some_and(|w| w <= Duration::from_secs(5)));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn next_wait(&mut self) -> Option<Duration> {
        self.poll_timeout(None)
    }

    /// Step 0, on the first turn only: the handler sets its first timers.
    fn start(&mut self) {
        if std::mem::replace(&mut self.started, true) {
            return;
        }
        self.core.read_clock();
        self.dispatch(None, |h, cx| h.on_start(cx));
    }

    /// Step 1: zero if work is waiting that no event will announce (the
    /// ready list, queued output, an accept batch cut short, closed
    /// connections); else until the wheel's next deadline, measured from
    /// the last clock reading.
    fn poll_timeout(&mut self, max_wait: Option<Duration>) -> Option<Duration> {
        let busy = self.core.has_work()
            || !self.inbox.is_empty()
            || !self.queued.is_empty()
            || self.fired_done < self.fired.len()
            || self.events_full
            || self.stop_now
            || self.core.has_listener_changes()
            || self.listeners.iter().flatten().any(Listener::ready);
        if busy {
            return Some(Duration::ZERO);
        }
        let next = self.core.wheel().next_deadline();
        let timer = next.map(|tick| self.core.time().until(tick));
        match (timer, max_wait) {
            (Some(t), Some(m)) => Some(t.min(m)),
            (t, m) => t.or(m),
        }
    }

    /// Step 2: `epoll_wait`; while wake-ups coalesce and nothing is
    /// ready, a nap first ([`Config::coalesce`]): events that arrive
    /// during it are taken in one poll, not each with a wake-up.
    fn poll(&mut self, wait: Option<Duration>) -> io::Result<()> {
        let Some(nap) = self.coalesce.nap(wait) else {
            return self.poll_events(wait).map(drop);
        };
        // A look first: what is ready needs no nap, nor does a signal.
        if !self.poll_events(Some(Duration::ZERO))? || !self.events.is_empty() {
            return Ok(());
        }
        std::thread::sleep(nap);
        self.core.counters().naps += 1;
        self.coalesce.took_nap();
        self.poll_events(wait.map(|w| w.saturating_sub(nap)))
            .map(drop)
    }

    /// One `epoll_wait`; `false` if a signal interrupted it, which is a
    /// turn with no events.
    fn poll_events(&mut self, wait: Option<Duration>) -> io::Result<bool> {
        match self.core.poll(&mut self.events, wait) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                self.events.clear();
                Ok(false)
            }
            result => result.map(|()| true),
        }
    }

    /// Step 4: every event, by what it is for.
    fn handle_events(&mut self) {
        self.core.counters().turns += 1;
        let events = mem::replace(&mut self.events, Events::with_capacity(0));
        let mut seen = 0;
        for event in events.iter() {
            seen += 1;
            self.core.counters().events += 1;
            match event.token() {
                WAKER => self.take_commands(),
                SIGNALS => self.on_signals(),
                Token(t) if t > FIRST_LISTENER - self.listeners.len() => {
                    if let Some(Some(l)) = self.listeners.get_mut(FIRST_LISTENER - t) {
                        l.pending = true;
                    }
                }
                token if Sources::owns(token) => self.source_event(event),
                _ => self.conn_event(event),
            }
        }
        self.events_full = seen >= events.capacity();
        self.events = events;
        if self.coalesce.is_on() {
            let now = self.core.time().now_instant();
            let stats = self.core.counters();
            let moved = stats.bytes_in.saturating_add(stats.bytes_out);
            self.coalesce.after_poll(seen, moved, now);
        }
        if !self.inbox.is_empty() {
            // Left by a handler that panicked on an earlier command.
            self.take_commands();
        }
        self.accept_all();
    }

    /// Commands posted from other threads, taken all at once (one lock)
    /// and handled one by one.
    fn take_commands(&mut self) {
        self.shared.take_into(&mut self.inbox);
        while let Some(command) = self.inbox.pop_front() {
            match command {
                Command::Shutdown => self.core.request_shutdown(),
                Command::Stop => self.stop(),
                Command::Post(message) => self.dispatch(None, |h, cx| h.on_message(cx, message)),
                Command::Admit(change) => self.change_admission(change),
                Command::Resolved(id, found) => self.core.resolved(id, found),
            }
        }
    }

    /// Who may connect, changed through the `Handle`.
    fn change_admission(&mut self, change: AdmitChange) {
        log::info!("admission changed: {change:?}");
        match change {
            AdmitChange::MaxConns(n) => {
                self.core.set_max_conns(n);
                // Raised: listeners held at the old limit open now.
                self.reopen_when_raised();
            }
            AdmitChange::Allow(allow) => self.core.admission().set_allow(allow),
            AdmitChange::Deny(deny) => self.core.admission().set_deny(deny),
            AdmitChange::MaxPerIp(cap) => self.core.admission().set_max_per_ip(cap),
        }
    }

    /// A foreign source's readiness changed: the handler hears it at
    /// once, and does the I/O itself.
    fn source_event(&mut self, event: &Event) {
        if let Some(source) = self.core.source_of(event.token()) {
            let readiness = Readiness::of(event);
            self.dispatch(None, |h, cx| h.on_ready(cx, source, readiness));
        }
    }

    /// Registers a source the program owns (a UDP socket, a pipe, a
    /// timerfd, ...) before or between turns; its readiness comes to
    /// [`Handler::on_ready`]. See [`Context::register`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use mio::{net::UdpSocket, Interest};
    /// # use evloop::{Config, ConnId, Context, Handler, Reactor};
    /// # struct Echo;
    /// # impl Handler for Echo {
    /// #     type Message = ();
    /// #     fn on_data(&mut self, cx: &mut Context<'_>, c: ConnId, i: &[u8]) -> usize { let _ = cx.write(c, i); i.len() }
    /// # }
    /// let mut reactor = Reactor::new(Echo, Config::default())?;
    /// let mut socket = UdpSocket::bind("127.0.0.1:0".parse().unwrap())?;
    /// let id = reactor.register(&mut socket, Interest::READABLE)?;
    /// // Turns of the loop: the handler's `on_ready` hears `id`.
    /// reactor.run_once(Some(Duration::ZERO))?;
    /// // Out of the poll before the socket is dropped.
    /// assert!(reactor.deregister(&mut socket, id)?);
    /// // The id is stale now: a second call changes nothing.
    /// assert!(!reactor.deregister(&mut socket, id)?);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn register(
        &mut self,
        source: &mut impl mio::event::Source,
        interest: mio::Interest,
    ) -> io::Result<SourceId> {
        self.core.register_source(source, interest)
    }

    /// Takes a source out of the poll (see [`Context::deregister`]).
    pub fn deregister(
        &mut self,
        source: &mut impl mio::event::Source,
        id: SourceId,
    ) -> io::Result<bool> {
        self.core.deregister_source(source, id)
    }

    /// A connection's readiness changed.
    fn conn_event(&mut self, event: &Event) {
        let Some((id, conn)) = self.core.conn_at(event.token().0) else {
            return;
        };
        if conn.state().is_closed() {
            return;
        }
        log::trace!(
            "conn {id}: event{}{}{}{}",
            if event.is_readable() { " readable" } else { "" },
            if event.is_writable() { " writable" } else { "" },
            if event.is_read_closed() {
                " read-closed"
            } else {
                ""
            },
            if event.is_error() { " error" } else { "" },
        );
        conn.readable |= event.is_readable() || event.is_read_closed() || event.is_error();
        conn.writable |= event.is_writable() || event.is_write_closed() || event.is_error();
        conn.fin_seen |= event.is_read_closed() || event.is_error();
        if conn.state() == State::Connecting {
            self.finish_connect(id);
            return;
        }
        self.serve(id);
    }

    /// Reads what the budget allows, hands it to the handler, then writes
    /// the output once. A connection idle in the upstream pool is not the
    /// handler's: the pool looks at what came instead (`upstream.rs`).
    fn serve(&mut self, id: ConnId) {
        if self
            .core
            .conn(id)
            .is_some_and(|c| c.pooled && c.state() == State::Open)
        {
            return self.core.watch_pooled(id);
        }
        self.read(id);
        self.flush(id);
    }

    /// A connect finished one way or the other (mio's rule: on the first
    /// writable event, `take_error` then `peer_addr` tell which).
    fn finish_connect(&mut self, id: ConnId) {
        let now = self.core.now();
        let Some(conn) = self.core.conn_mut(id) else {
            return;
        };
        let failed = match conn.stream.take_error() {
            Ok(Some(e)) | Err(e) => Some(e),
            Ok(None) => match conn.stream.is_connected() {
                Ok(true) => None,
                Ok(false) => return, // not yet
                Err(e) => Some(e),
            },
        };
        if let Some(e) = failed {
            log::debug!("conn {id}: connect failed: {e}");
            // A host name with addresses left moves on to the next.
            if self.core.next_address(id).is_ok() {
                return;
            }
            return self.core.abort(id, CloseReason::ConnectFailed(e.kind()));
        }
        conn.last_read = now;
        let tls = conn.tls;
        let pooled = conn.pooled;
        self.core.connected(id);
        match self.core.apply(id, state::Event::Connected { tls }) {
            // A warm-up connect: the pool's, not the handler's.
            Some(Action::TellOpen) if pooled => self.core.warmed(id),
            Some(Action::TellOpen) => self.opened(id),
            // A TLS client: its ClientHello goes first (`tls.rs`).
            #[cfg(feature = "tls")]
            Some(_) if tls => self.core.hello(id),
            _ => {}
        }
        // Data may have arrived with the connect.
        self.serve(id);
    }

    /// Tells the handler a connection opened, and writes what it said.
    fn opened(&mut self, id: ConnId) {
        self.dispatch(Some(id), |h, cx| h.on_open(cx, id));
        // Not `flush`: a connection just opened is not judged quiet before
        // its first read.
        if self.core.flush(id) == Flush::Drained {
            self.drained(id);
        }
        self.tell_written(id);
    }

    /// Step 5: serve the connections no event will announce.
    fn serve_ready_list(&mut self) {
        let ready = self.core.take_ready();
        for &id in &ready {
            if let Some(conn) = self.core.conn_mut(id) {
                conn.on_ready_list = false;
                self.serve(id);
            }
        }
        self.core.return_ready(ready);
    }

    /// Step 6: flush the output queued outside a connection's own dispatch.
    fn flush_output(&mut self) {
        let list = self.core.take_flush();
        for &id in &list {
            if let Some(conn) = self.core.conn_mut(id) {
                conn.on_flush_list = false;
                self.flush(id);
            }
        }
        self.core.return_flush(list);
    }

    /// Step 7: detach everything due, then dispatch. Timers a panic left
    /// undispatched come first.
    fn expire_timers(&mut self) {
        let now = self.core.now();
        let fired = self.core.wheel().expire(now, &mut self.fired);
        self.core.counters().timers_fired += fired as u64;
        while let Some(&event) = self.fired.get(self.fired_done) {
            self.fired_done += 1;
            match event {
                TimerEvent::Conn(id) => self.core.conn_timer(id),
                TimerEvent::User(token) => self.dispatch(None, |h, cx| h.on_timer(cx, token)),
                TimerEvent::ShutdownDeadline => self.cut_remaining(),
                TimerEvent::AcceptResume(i) => self.resume_accepting(i),
            }
        }
        self.fired.clear();
        self.fired_done = 0;
    }

    /// Step 8: free closed slots and tell the handler. `on_close` may close
    /// others; they are reaped in the same step.
    fn reap(&mut self) {
        while let Some(id) = self.core.pop_reap() {
            if let Some((reason, peer, told)) = self.core.remove(id) {
                // A connection that never opened the handler does not know.
                if told {
                    self.core.set_closing(Some((id, peer)));
                    self.dispatch(None, |h, cx| h.on_close(cx, id, reason));
                    self.core.set_closing(None);
                }
                self.core.give_back_place();
            }
        }
        self.reopen_when_below_limit();
    }

    /// Calls the handler: see [`dispatch`].
    fn dispatch<R>(
        &mut self,
        conn: Option<ConnId>,
        call: impl FnOnce(&mut H, &mut Context<'_>) -> R,
    ) -> R {
        dispatch(&mut self.handler, &mut self.core, conn, call)
    }
}

/// The one way the reactor calls its handler: builds the [`Context`],
/// and marks `conn` as the connection being dispatched while the call
/// runs. That connection's output is flushed by the caller at the end of
/// the dispatch (not in step 6), and if the handler panics it is reset
/// (see `shutdown.rs`, `recover`). A free function, so a caller can lend
/// the handler input that lives in another of the reactor's fields.
fn dispatch<H: Handler, R>(
    handler: &mut H,
    core: &mut Core,
    conn: Option<ConnId>,
    call: impl FnOnce(&mut H, &mut Context<'_>) -> R,
) -> R {
    core.set_dispatching(conn);
    let result = call(handler, &mut Context { core: &mut *core });
    core.set_dispatching(None);
    result
}

/// The reactor inside another event loop: its poll descriptor (an
/// epoll instance) becomes readable when it has events. The contract:
///
/// 1. register the descriptor for reading in the host loop;
/// 2. wait at most [`next_wait`](Reactor::next_wait) (a zero means "call
///    at once": output to flush, a connection cut short, a timer due);
/// 3. when the descriptor is readable or the wait ends, call
///    `run_once(Some(Duration::ZERO))`, then go back to 2.
///
/// A level-triggered host (`poll(2)`, `select(2)`, epoll without
/// `EPOLLET`) is told again while events wait. An edge-triggered host
/// (mio) is not, so step 2 matters: `next_wait` is zero while more may
/// wait, for instance after a turn that filled its events buffer.
///
/// ```no_run
/// use std::os::fd::AsRawFd;
/// use std::time::Duration;
/// use mio::{unix::SourceFd, Events, Interest, Poll, Token};
/// # use evloop::{Config, ConnId, Context, Handler, Reactor};
/// # struct Echo;
/// # impl Handler for Echo {
/// #     type Message = ();
/// #     fn on_data(&mut self, cx: &mut Context<'_>, c: ConnId, i: &[u8]) -> usize { i.len() }
/// # }
/// let mut reactor = Reactor::new(Echo, Config::default())?;
/// reactor.listen("127.0.0.1:7000".parse().unwrap())?;
/// let mut host = Poll::new()?;
/// let fd = reactor.as_raw_fd();
/// host.registry().register(&mut SourceFd(&fd), Token(0), Interest::READABLE)?;
/// let mut events = Events::with_capacity(64);
/// loop {
///     let wait = reactor.next_wait().map_or(Duration::from_secs(1), |w| w.min(Duration::from_secs(1)));
///     host.poll(&mut events, Some(wait))?;
///     // ... the host's own events here ...
///     reactor.run_once(Some(Duration::ZERO))?;
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
impl<H: Handler> std::os::fd::AsRawFd for Reactor<H> {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.core.poll_fd()
    }
}

impl<H: Handler> Drop for Reactor<H> {
    fn drop(&mut self) {
        self.shared.close();
    }
}
