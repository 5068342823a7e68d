//! The protocol's side of the reactor: the [`Handler`] trait the reactor
//! calls, and the [`Context`] through which a handler acts.
//!
//! A handler never touches a socket. It hears what happened (a connection
//! opened, bytes arrived, output drained, a timer fired) and answers through
//! the context: write, close, pause, connect, set a timer. The reactor does
//! the I/O at the right step of the turn, so a handler cannot block the
//! loop on a socket, read past a frame, or write to a connection that is
//! gone.

use std::fmt;
use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::conn::{CloseReason, ConnId};
use crate::reactor::{
    Connect, Core, ListenerChange, ListenerId, Queued, Readiness, Segment, SourceId,
};
use crate::state::State;
use crate::stats::Stats;
use crate::timer::TimerId;

/// A protocol running on the reactor. Only `on_data` is required.
///
/// Every callback runs on the reactor's thread, between system calls; a
/// handler that blocks or loops blocks every connection. Callbacks that
/// name a connection get its [`ConnId`], which stays valid until
/// `on_close`; the same id comes back only after its slab slot has been
/// reused 2^32 times.
///
/// A callback that panics unwinds out of [`Reactor::run_once`] to its
/// caller, and the reactor stays usable for the next call: a connection
/// whose `on_open`, `on_data` or `on_read_closed` panicked is reset
/// ([`CloseReason::HandlerPanic`]); other connections keep their state,
/// and the turn's readiness events are checked again.
///
/// [`Reactor::run_once`]: crate::Reactor::run_once
pub trait Handler {
    /// What other threads post through [`Handle::post`]; `()` if nothing.
    ///
    /// [`Handle::post`]: crate::Handle::post
    type Message: Send + 'static;

    /// The reactor's first turn begins: set the handler's first timers
    /// here (a clock refresh, a periodic report), or open outbound
    /// connections. Called once, before the first poll.
    fn on_start(&mut self, cx: &mut Context<'_>) {
        let _ = cx;
    }

    /// A connection opened: accepted from a listener, or an outbound
    /// connect that completed.
    fn on_open(&mut self, cx: &mut Context<'_>, conn: ConnId) {
        let _ = (cx, conn);
    }

    /// Bytes arrived. `input` holds everything not consumed before, then
    /// the new bytes. Return how many bytes were consumed (whole frames);
    /// the rest is kept and offered again:
    ///
    /// - after the other connections ready this turn (from the ready
    ///   list), when the call consumed some of it: so a handler may take
    ///   one frame per call, or bound the work it does per call and let
    ///   the other connections in between;
    /// - without new bytes from the peer, after [`Context::resume_read`]
    ///   and after [`on_drain`](Self::on_drain), so a handler that stopped
    ///   taking frames because its output was full, or it waited on a
    ///   backend, goes on where it stopped;
    /// - with the next bytes, once a call consumed nothing (a partial
    ///   frame): a handler is never called again for the same bytes in a
    ///   loop.
    ///
    /// Returning 0 with `input` at [`Config::max_input`] closes the
    /// connection as [`CloseReason::InputTooLarge`]: no frame can complete.
    ///
    /// [`Config::max_input`]: crate::Config::max_input
    fn on_data(&mut self, cx: &mut Context<'_>, conn: ConnId, input: &[u8]) -> usize;

    /// Output fell below the low-water mark after being above the high
    /// one: reading has resumed, and a handler that produces output on its
    /// own (a stream, a broadcast) may write again.
    fn on_drain(&mut self, cx: &mut Context<'_>, conn: ConnId) {
        let _ = (cx, conn);
    }

    /// Every byte queued for `conn` has been written to the socket (handed
    /// to the kernel: the peer may not have read it yet), after
    /// [`Context::notify_flushed`] asked for it. Once per request: a
    /// producer that streams asks again after each chunk it writes.
    ///
    /// [`Context::notify_flushed`] shows a producer that writes its next
    /// chunk here. A relay can hold its backend to one read's worth of
    /// output this way:
    ///
    /// ```
    /// # use evloop::{ConnId, Context, Handler};
    /// struct Relay { client: ConnId, backend: ConnId }
    /// impl Handler for Relay {
    ///     type Message = ();
    ///     fn on_data(&mut self, cx: &mut Context<'_>, conn: ConnId, input: &[u8]) -> usize {
    ///         if conn == self.backend {
    ///             let _ = cx.write(self.client, input);
    ///             // No more from the backend until the client has taken this.
    ///             cx.pause_read(self.backend);
    ///             cx.notify_flushed(self.client);
    ///         } else {
    ///             let _ = cx.write(self.backend, input);
    ///         }
    ///         input.len()
    ///     }
    ///     fn on_flushed(&mut self, cx: &mut Context<'_>, _client: ConnId) {
    ///         cx.resume_read(self.backend);
    ///     }
    /// }
    /// ```
    fn on_flushed(&mut self, cx: &mut Context<'_>, conn: ConnId) {
        let _ = (cx, conn);
    }

    /// The peer sent FIN: no more input will come. Output still flushes.
    /// `input` is what the handler had not consumed (a last record with
    /// no terminator, or frames left while reading was paused); it is
    /// dropped when this returns. The default closes the connection once
    /// its output is flushed ([`CloseReason::PeerClosed`]); a handler that
    /// still has an answer to send may write first, or keep the
    /// connection open.
    ///
    /// A paused connection hears this too, once the FIN is all that is
    /// left to read, so a peer that hangs up is noticed even when nobody
    /// resumes reading.
    fn on_read_closed(&mut self, cx: &mut Context<'_>, conn: ConnId, input: &[u8]) {
        let _ = input;
        cx.close(conn);
    }

    /// Whether `conn` still has work on its way: the handler owes it an
    /// answer it will write later (from a timer, a posted message, another
    /// connection), or it is an outbound connection waiting for a reply (a
    /// proxy marks its backend side busy as well as its client side).
    /// Graceful shutdown closes a connection once it is quiet: open with
    /// nothing left to read, no input left, no output waiting, and not
    /// busy. The default, `false`, suits a handler that answers within
    /// `on_data`.
    ///
    /// The reactor asks when shutdown begins and after each time the
    /// connection is served or its output flushed during shutdown.
    fn is_busy(&self, conn: ConnId) -> bool {
        let _ = conn;
        false
    }

    /// A foreign source registered with [`Context::register`] became
    /// ready. The reactor does no I/O on it: read (or write) until
    /// `WouldBlock`, since the next event comes only when its readiness
    /// changes again (the rules are in `src/reactor/sources.rs`).
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// use std::time::Duration;
    /// use evloop::{Config, Context, Handler, Reactor, Readiness, SourceId};
    /// use mio::{unix::pipe, Interest};
    /// # use evloop::ConnId;
    ///
    /// /// Collects what another thread writes to a pipe.
    /// struct Collect { rx: pipe::Receiver, got: Vec<u8> }
    /// impl Handler for Collect {
    ///     type Message = ();
    ///     fn on_start(&mut self, cx: &mut Context<'_>) {
    ///         cx.register(&mut self.rx, Interest::READABLE).expect("register the pipe");
    ///     }
    ///     fn on_ready(&mut self, _: &mut Context<'_>, _: SourceId, _: Readiness) {
    ///         // Read until WouldBlock, or no event comes for what is left.
    ///         let _ = self.rx.read_to_end(&mut self.got);
    ///     }
    /// #   fn on_data(&mut self, _: &mut Context<'_>, _: ConnId, i: &[u8]) -> usize { i.len() }
    /// }
    ///
    /// let (mut tx, rx) = pipe::new()?;
    /// let mut reactor = Reactor::new(Collect { rx, got: Vec::new() }, Config::default())?;
    /// tx.write_all(b"done")?;
    /// reactor.run_once(Some(Duration::from_secs(1)))?;
    /// assert_eq!(reactor.handler().got, b"done");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    fn on_ready(&mut self, cx: &mut Context<'_>, source: SourceId, readiness: Readiness) {
        let _ = (cx, source, readiness);
    }

    /// A timer set with [`Context::set_timer`] fired.
    fn on_timer(&mut self, cx: &mut Context<'_>, token: u64) {
        let _ = (cx, token);
    }

    /// A message posted through a [`Handle`](crate::Handle) arrived.
    fn on_message(&mut self, cx: &mut Context<'_>, message: Self::Message) {
        let _ = (cx, message);
    }

    /// Graceful shutdown began: the listeners are closed, and what waited
    /// in their queues is opened (`on_open`) right after this returns,
    /// then served like the rest. After this returns, every
    /// connection is closed with FIN once it is quiet (see
    /// [`is_busy`](Self::is_busy)); until then it is read and written as
    /// usual, so requests already sent are answered. A handler may write a
    /// goodbye here, or close connections itself.
    fn on_shutdown(&mut self, cx: &mut Context<'_>) {
        let _ = cx;
    }

    /// A connection closed, for `reason`. Its id is dead from now on.
    fn on_close(&mut self, cx: &mut Context<'_>, conn: ConnId, reason: CloseReason) {
        let _ = (cx, conn, reason);
    }
}

/// Why a write was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// No such connection: it closed, or the id is stale.
    Gone,
    /// The connection no longer takes output (closing, or its write side
    /// is shut).
    Closing,
    /// The write would pass the hard output limit: the connection is
    /// closed as a [`CloseReason::SlowConsumer`].
    SlowConsumer,
    /// The write took the reactor's buffers past
    /// [`Config::max_buffered`](crate::Config::max_buffered), and this
    /// connection held the most: it is closed as
    /// [`CloseReason::OverBudget`].
    OverBudget,
    /// [`Context::send_file`]: the range is not inside the file. Nothing
    /// was queued; the connection is as it was.
    OutOfRange,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SendError::Gone => "no such connection",
            SendError::Closing => "connection is closing",
            SendError::SlowConsumer => "output limit reached: closed as slow consumer",
            SendError::OverBudget => "reactor buffer budget passed: closed as largest holder",
            SendError::OutOfRange => "file range is not inside the file",
        })
    }
}

impl std::error::Error for SendError {}

/// What a handler can do, handed to every callback. It borrows the reactor
/// for the length of one callback.
pub struct Context<'a> {
    pub(crate) core: &'a mut Core,
}

impl Context<'_> {
    /// The time this turn of the loop began (the clock is read once per
    /// turn).
    pub fn now(&self) -> Instant {
        self.core.time().now_instant()
    }

    /// Queues `data` for `conn`. It is written once the connection being
    /// served has had its input read (or in step 6 of this turn, for any
    /// other connection), in one system call with everything else queued
    /// for it.
    pub fn write(&mut self, conn: ConnId, data: &[u8]) -> Result<(), SendError> {
        self.core.write(conn, data)
    }

    /// Queues `data` for `conn` without copying it: the socket takes what
    /// it will straight from `data`, and what it refuses waits there until
    /// the next writable edge. For payloads a producer already holds: a
    /// cached page, a large value, one broadcast shared by many
    /// connections as an `Arc<[u8]>` (each holds a reference, not a
    /// copy). `data` is dropped once it is all sent, or when the
    /// connection closes.
    ///
    /// Order is kept with [`write`](Self::write) and
    /// [`send_file`](Self::send_file): output leaves in the order it was
    /// queued. The bytes count against this connection's output limits
    /// and water marks like copied ones, but not against
    /// [`Config::max_buffered`](crate::Config::max_buffered), which counts
    /// the reactor's own buffers. Each hand-over is at least one system
    /// call of its own: for small answers, [`write`](Self::write) gathers
    /// better. One hand-over larger than the connection's hard output
    /// limit closes it as a slow consumer before a byte is sent: raise its
    /// limits ([`set_output_limits`](Self::set_output_limits)) or, for a
    /// file, use [`send_file`](Self::send_file).
    ///
    /// ```
    /// use std::sync::Arc;
    /// # use evloop::{ConnId, Context, Handler};
    /// struct Page {
    ///     body: Arc<[u8]>,
    /// }
    ///
    /// impl Handler for Page {
    ///     type Message = ();
    ///     fn on_open(&mut self, cx: &mut Context<'_>, conn: ConnId) {
    ///         // Every connection is sent the same memory.
    ///         let _ = cx.write_owned(conn, Arc::clone(&self.body));
    ///         cx.close(conn);
    ///     }
    ///     fn on_data(&mut self, _: &mut Context<'_>, _: ConnId, input: &[u8]) -> usize {
    ///         input.len()
    ///     }
    /// }
    /// ```
    pub fn write_owned<B>(&mut self, conn: ConnId, data: B) -> Result<(), SendError>
    where
        B: AsRef<[u8]> + Send + 'static,
    {
        self.core
            .queue(conn, Queued::Whole(Segment::owned(Box::new(data))))
    }

    /// Queues `len` bytes of `file`, from `offset`, for `conn`: they go by
    /// `sendfile(2)`, from the page cache to the socket without passing
    /// through this process. The reactor holds the file (an `Arc`, so one
    /// open file can serve many connections: share the `Arc` rather than
    /// open the file per request, each open file being a descriptor) until
    /// the range is sent. For a plain TCP or Unix domain connection. Order
    /// is kept with the other writes. The range's bytes count toward the
    /// water marks (reading stops while more than the high-water mark
    /// waits, wherever it waits), not toward the soft and hard limits (they
    /// are not in memory); the write timeout applies.
    ///
    /// `sendfile(2)` has no way to suppress `SIGPIPE` when the peer is
    /// gone: a Rust program ignores that signal from its start, but a host
    /// that restored its default action is killed by it.
    ///
    /// [`SendError::OutOfRange`] if the range is not inside the file now.
    /// A file cut shorter after this call closes the connection with
    /// [`CloseReason::Io`] (`UnexpectedEof`) when its end is reached: the
    /// peer was promised bytes that no longer exist.
    ///
    /// ```no_run
    /// use std::fs::File;
    /// use std::sync::Arc;
    /// # use evloop::{ConnId, Context, Handler};
    /// struct Static {
    ///     file: Arc<File>,
    ///     len: u64,
    /// }
    ///
    /// impl Handler for Static {
    ///     type Message = ();
    ///     fn on_open(&mut self, cx: &mut Context<'_>, conn: ConnId) {
    ///         let header = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", self.len);
    ///         let _ = cx.write(conn, header.as_bytes());
    ///         let _ = cx.send_file(conn, Arc::clone(&self.file), 0, self.len);
    ///     }
    ///     fn on_data(&mut self, _: &mut Context<'_>, _: ConnId, input: &[u8]) -> usize {
    ///         input.len()
    ///     }
    /// }
    /// ```
    pub fn send_file(
        &mut self,
        conn: ConnId,
        file: impl Into<Arc<File>>,
        offset: u64,
        len: u64,
    ) -> Result<(), SendError> {
        let file = file.into();
        let size = file.metadata().map_or(0, |m| m.len());
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(SendError::OutOfRange);
        }
        let segment = Segment::File {
            file,
            offset,
            left: len,
        };
        self.core.queue(conn, Queued::Whole(segment))
    }

    /// Closes `conn` once its output is flushed (FIN).
    pub fn close(&mut self, conn: ConnId) {
        if self.held(conn) {
            self.core.close(conn, CloseReason::Closed);
        }
    }

    /// Closes `conn` now: waiting output is dropped, the peer gets RST (a
    /// TCP peer; a Unix domain socket has no reset, and its peer reads an
    /// ordinary end of stream).
    pub fn abort(&mut self, conn: ConnId) {
        if self.held(conn) {
            self.core.abort(conn, CloseReason::Aborted);
        }
    }

    /// Sends FIN once `conn`'s output is flushed, and keeps reading until
    /// the peer's FIN.
    pub fn shutdown_write(&mut self, conn: ConnId) {
        if self.held(conn) {
            self.core.shutdown_write(conn);
        }
    }

    /// Stops reading `conn` (its input waits in the kernel, and TCP flow
    /// control slows the peer) until [`resume_read`](Self::resume_read).
    /// The peer's RST still closes it, and its FIN, once nothing but the
    /// FIN is left to read, still reaches
    /// [`Handler::on_read_closed`], so a paused connection whose peer
    /// is gone does not live on.
    pub fn pause_read(&mut self, conn: ConnId) {
        if let Some(c) = self.core.conn_mut(conn).filter(|c| !c.pooled) {
            c.read_paused = true;
        }
    }

    /// Resumes reading `conn`. Input the handler left is offered again
    /// (in step 5 of this turn, or the next) without waiting for new bytes.
    pub fn resume_read(&mut self, conn: ConnId) {
        if let Some(c) = self.core.conn_mut(conn).filter(|c| !c.pooled) {
            c.read_paused = false;
            c.reoffer = c.input.is_some();
            self.core.push_ready(conn);
        }
    }

    /// Starts a non-blocking connect to `addr`. The connection lives in the
    /// same slab as accepted ones: `on_open` when it completes, `on_close`
    /// with [`CloseReason::ConnectFailed`] or
    /// [`CloseReason::ConnectTimeout`] if it does not. Output written
    /// before it completes is sent once it does.
    pub fn connect(&mut self, addr: SocketAddr) -> io::Result<ConnId> {
        self.core.connect(addr, Connect::default())
    }

    /// [`connect`](Self::connect), from a chosen local address or with its
    /// own timeout:
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use evloop::{Connect, Context};
    /// # fn f(cx: &mut Context<'_>) -> std::io::Result<()> {
    /// let backend = cx.connect_with(
    ///     "10.0.0.7:6379".parse().unwrap(),
    ///     Connect {
    ///         bind: Some("10.0.0.2:0".parse().unwrap()),
    ///         timeout: Some(Duration::from_millis(250)),
    ///     },
    /// )?;
    /// # let _ = backend; Ok(()) }
    /// ```
    pub fn connect_with(&mut self, addr: SocketAddr, options: Connect) -> io::Result<ConnId> {
        self.core.connect(addr, options)
    }

    /// Connects to `host` by name, resolved off the loop: the connection
    /// exists at once (its id is returned, output may be queued) while a
    /// resolver thread of the reactor's looks the name up with the
    /// system's resolver (`/etc/hosts`, DNS, ...); then its addresses are
    /// tried in order until one connects, as
    /// `std::net::TcpStream::connect` tries them. The handler hears
    /// `on_open`, or `on_close` with [`CloseReason::ConnectFailed`] (the
    /// name did not resolve, or no address took the connection; the last
    /// attempt's error) or [`CloseReason::ConnectTimeout`] (the timeout
    /// covers the lookup and every attempt: an address that never answers,
    /// rather than refusing, uses it all, and the ones after it are not
    /// tried). `host` may be an IP address,
    /// written out (IPv6 with or without brackets): it is connected to at
    /// once, with no lookup. `options` apply as in
    /// [`connect_with`](Self::connect_with).
    ///
    /// `Err` at once for what cannot work: an empty name, one longer than
    /// DNS allows (253), one with a NUL byte (`InvalidInput`), or 1,024
    /// lookups already waiting (`WouldBlock`). See the reactor's
    /// `resolve.rs` for why a thread.
    ///
    /// ```no_run
    /// # use evloop::{Connect, Context};
    /// # fn f(cx: &mut Context<'_>) -> std::io::Result<()> {
    /// let backend = cx.connect_host("cache.internal", 6379, Connect::default())?;
    /// cx.write(backend, b"PING\r\n").ok(); // sent once connected
    /// # Ok(()) }
    /// ```
    pub fn connect_host(&mut self, host: &str, port: u16, options: Connect) -> io::Result<ConnId> {
        self.core.connect_host(host, port, options)
    }

    /// Connects to the Unix domain stream socket at `path`: the same
    /// connection as a TCP one to the handler (`on_open` once connected,
    /// then `on_data`, ...), with [`Config::connect_timeout`]. A Unix
    /// connect does not wait on a network: it succeeds or fails at once
    /// (`Err` here when nothing listens at `path`, or its queue is
    /// full), though the handler still hears `on_open` from the loop.
    ///
    /// ```no_run
    /// # use evloop::Context;
    /// # fn f(cx: &mut Context<'_>) -> std::io::Result<()> {
    /// let db = cx.connect_unix("/run/postgresql/.s.PGSQL.5432")?;
    /// # let _ = db; Ok(()) }
    /// ```
    ///
    /// [`Config::connect_timeout`]: crate::Config::connect_timeout
    pub fn connect_unix(&mut self, path: impl AsRef<Path>) -> io::Result<ConnId> {
        self.core.connect_unix(path.as_ref())
    }

    /// Asks for [`Handler::on_flushed`] once `conn`'s queued output is all
    /// written (at once, at the next flush, if it already is). Unlike
    /// [`Handler::on_drain`], which comes only after the high-water mark
    /// was passed, this comes for any output. `false` if `conn` is gone.
    ///
    /// ```no_run
    /// # use evloop::{ConnId, Context, Handler};
    /// /// Sends a file-sized answer in 64 KiB chunks, the next one only
    /// /// when the last has left: memory stays at one chunk.
    /// struct Chunks { left: usize }
    /// impl Handler for Chunks {
    ///     type Message = ();
    ///     fn on_data(&mut self, cx: &mut Context<'_>, conn: ConnId, input: &[u8]) -> usize {
    ///         self.on_flushed(cx, conn);
    ///         input.len()
    ///     }
    ///     fn on_flushed(&mut self, cx: &mut Context<'_>, conn: ConnId) {
    ///         let n = self.left.min(64 * 1024);
    ///         if n > 0 {
    ///             self.left -= n;
    ///             let _ = cx.write(conn, &vec![b'x'; n]);
    ///             cx.notify_flushed(conn);
    ///         }
    ///     }
    /// }
    /// ```
    pub fn notify_flushed(&mut self, conn: ConnId) -> bool {
        let asked = self.set(conn, |s| s.notify_flushed = true);
        if asked {
            // Already empty: the next flush (this turn's step 6, or the
            // end of this serve) tells it.
            self.core.push_flush(conn);
        }
        asked
    }

    /// `conn`'s own idle timeout (`None`: never idle-closed), instead of
    /// [`Config::idle_timeout`](crate::Config::idle_timeout). `false` if
    /// it is gone.
    ///
    /// ```
    /// use evloop::{Config, ConnId, Context, Handler, ListenerId, Reactor};
    ///
    /// /// An operator's console stays open however long it is quiet; other
    /// /// connections keep the Config's idle timeout.
    /// struct Server { console: Option<ListenerId> }
    /// impl Handler for Server {
    ///     type Message = ();
    ///     fn on_open(&mut self, cx: &mut Context<'_>, conn: ConnId) {
    ///         if self.console.is_some_and(|c| cx.listener(conn) == Some(c)) {
    ///             cx.set_idle_timeout(conn, None);
    ///         }
    ///     }
    /// #   fn on_data(&mut self, _: &mut Context<'_>, _: ConnId, i: &[u8]) -> usize { i.len() }
    /// }
    ///
    /// let mut reactor = Reactor::new(Server { console: None }, Config::default())?;
    /// reactor.listen("127.0.0.1:0".parse().unwrap())?;
    /// let console = reactor.listen("127.0.0.1:0".parse().unwrap())?;
    /// reactor.handler_mut().console = Some(console);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn set_idle_timeout(&mut self, conn: ConnId, timeout: Option<Duration>) -> bool {
        self.set(conn, |s| s.idle_timeout = Some(timeout))
    }

    /// `conn`'s own write timeout: how long its output may wait with no
    /// progress (instead of
    /// [`Config::write_timeout`](crate::Config::write_timeout)).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use evloop::{ConnId, Context};
    /// # fn f(cx: &mut Context<'_>, conn: ConnId) {
    /// // A client on a slow mobile link may stall for two minutes.
    /// cx.set_write_timeout(conn, Duration::from_secs(120));
    /// # }
    /// ```
    pub fn set_write_timeout(&mut self, conn: ConnId, timeout: Duration) -> bool {
        self.set(conn, |s| s.write_timeout = Some(timeout))
    }

    /// `conn`'s own output limits (instead of
    /// [`Config::soft_limit`](crate::Config::soft_limit) and
    /// [`Config::hard_limit`](crate::Config::hard_limit)): past `hard` a
    /// write closes it as a slow consumer; above `soft` for the soft
    /// grace, too. `false` if it is gone, or `soft > hard`.
    ///
    /// ```
    /// # use evloop::{ConnId, Context};
    /// # fn f(cx: &mut Context<'_>, replica: ConnId) {
    /// // A replica catching up may hold 64 MiB for a while; 256 MiB closes it.
    /// cx.set_output_limits(replica, 64 << 20, 256 << 20);
    /// # }
    /// ```
    pub fn set_output_limits(&mut self, conn: ConnId, soft: usize, hard: usize) -> bool {
        soft <= hard && self.set(conn, |s| s.output_limits = Some((soft, hard)))
    }

    /// Changes `conn`'s settings, and re-arms its timer in case a deadline
    /// moved earlier.
    fn set(&mut self, conn: ConnId, change: impl FnOnce(&mut crate::reactor::Settings)) -> bool {
        if !self.held(conn) {
            return false;
        }
        let Some(settings) = self.core.settings_mut(conn) else {
            return false;
        };
        change(settings);
        self.core.arm(conn);
        true
    }

    /// Registers a source the program owns (a UDP socket, a pipe, a Unix
    /// socket, an eventfd or timerfd: any [`mio::event::Source`]) in the
    /// reactor's poll, edge-triggered; its readiness comes to
    /// [`Handler::on_ready`] with the id returned. The handler keeps the
    /// source, and must deregister it before dropping it.
    ///
    /// ```no_run
    /// use std::net::SocketAddr;
    /// use evloop::{Config, ConnId, Context, Handler, Readiness, Reactor, SourceId};
    /// use mio::{net::UdpSocket, Interest};
    ///
    /// /// UDP echo beside the TCP connections, on the same thread.
    /// struct Udp(UdpSocket);
    ///
    /// impl Handler for Udp {
    ///     type Message = ();
    ///     fn on_start(&mut self, cx: &mut Context<'_>) {
    ///         cx.register(&mut self.0, Interest::READABLE).expect("register");
    ///     }
    ///     fn on_ready(&mut self, _: &mut Context<'_>, _: SourceId, _: Readiness) {
    ///         let mut buf = [0; 1500];
    ///         // Edge-triggered: read until WouldBlock.
    ///         while let Ok((n, from)) = self.0.recv_from(&mut buf) {
    ///             let _ = self.0.send_to(&buf[..n], from);
    ///         }
    ///     }
    ///     fn on_data(&mut self, _: &mut Context<'_>, _: ConnId, input: &[u8]) -> usize {
    ///         input.len()
    ///     }
    /// }
    ///
    /// let socket = UdpSocket::bind("127.0.0.1:9000".parse::<SocketAddr>().unwrap())?;
    /// let mut reactor = Reactor::new(Udp(socket), Config::default())?;
    /// reactor.run()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn register(
        &mut self,
        source: &mut impl mio::event::Source,
        interest: mio::Interest,
    ) -> io::Result<SourceId> {
        self.core.register_source(source, interest)
    }

    /// Takes a source out of the poll. `Ok(false)` if `id` is stale (the
    /// source is left alone).
    ///
    /// ```
    /// use evloop::{Context, SourceId};
    /// use mio::net::UdpSocket;
    /// # use evloop::{ConnId, Handler};
    ///
    /// /// A UDP service beside the TCP connections: it stops when
    /// /// shutdown begins, while they finish.
    /// struct Udp { socket: Option<(SourceId, UdpSocket)> }
    /// impl Handler for Udp {
    ///     type Message = ();
    ///     fn on_shutdown(&mut self, cx: &mut Context<'_>) {
    ///         if let Some((id, mut socket)) = self.socket.take() {
    ///             // Out of the poll first, then dropped (closed).
    ///             let _ = cx.deregister(&mut socket, id);
    ///         }
    ///     }
    /// #   fn on_data(&mut self, _: &mut Context<'_>, _: ConnId, i: &[u8]) -> usize { i.len() }
    /// }
    /// ```
    pub fn deregister(
        &mut self,
        source: &mut impl mio::event::Source,
        id: SourceId,
    ) -> io::Result<bool> {
        self.core.deregister_source(source, id)
    }

    /// Calls `on_timer(token)` once, `after` from now (to the millisecond).
    pub fn set_timer(&mut self, after: Duration, token: u64) -> TimerId {
        self.core.set_timer(after, token)
    }

    /// Cancels a timer set with [`set_timer`](Self::set_timer); `false`
    /// if it already fired or was cancelled. An id that names one of the
    /// reactor's own timers (connection deadlines, the shutdown deadline)
    /// is refused the same way.
    pub fn cancel_timer(&mut self, timer: TimerId) -> bool {
        self.core.cancel_timer(timer)
    }

    /// Begins the reactor's graceful shutdown at the end of this turn.
    /// Asking again while it shuts down changes nothing.
    pub fn shutdown(&mut self) {
        self.core.request_shutdown();
    }

    /// The reactor's counters now.
    pub fn stats(&self) -> Stats {
        self.core.stats()
    }

    /// Where `conn` comes from (or, for outbound, goes to). Answers in
    /// `on_close` too: the address is kept from when it opened. `None`
    /// for a Unix domain connection (its peer has no IP address; see
    /// [`is_unix`](Self::is_unix)), or one that is gone.
    pub fn peer_addr(&self, conn: ConnId) -> Option<SocketAddr> {
        match self.core.closing() {
            Some((id, peer)) if id == conn => peer,
            _ => self.core.conn(conn)?.peer,
        }
    }

    /// The process at the other end of a Unix domain connection (pid,
    /// uid, gid, as the kernel recorded them when it connected); `None`
    /// for TCP, or a connection that is gone.
    ///
    /// ```
    /// # use evloop::{ConnId, Context, Handler};
    /// /// Serves only processes of the user it runs as.
    /// struct OwnUserOnly {
    ///     uid: u32,
    /// }
    ///
    /// impl Handler for OwnUserOnly {
    ///     type Message = ();
    ///     fn on_open(&mut self, cx: &mut Context<'_>, conn: ConnId) {
    ///         if cx.peer_cred(conn).is_some_and(|peer| peer.uid != self.uid) {
    ///             cx.abort(conn);
    ///         }
    ///     }
    ///     fn on_data(&mut self, _: &mut Context<'_>, _: ConnId, input: &[u8]) -> usize {
    ///         input.len()
    ///     }
    /// }
    /// ```
    pub fn peer_cred(&self, conn: ConnId) -> Option<crate::PeerCred> {
        self.core.conn(conn)?.stream.peer_cred()
    }

    /// Whether `conn` is a Unix domain socket connection (accepted by a
    /// [`Reactor::listen_unix`](crate::Reactor::listen_unix) listener, or
    /// made by [`connect_unix`](Self::connect_unix)) rather than TCP.
    /// `None` if it is gone.
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use evloop::{Config, ConnId, Context, Handler, Reactor};
    ///
    /// /// Local peers need no login: the socket file's permissions let
    /// /// them in. TCP peers must log in.
    /// #[derive(Default)]
    /// struct Admin { trusted: HashMap<ConnId, bool> }
    /// impl Handler for Admin {
    ///     type Message = ();
    ///     fn on_open(&mut self, cx: &mut Context<'_>, conn: ConnId) {
    ///         self.trusted.insert(conn, cx.is_unix(conn) == Some(true));
    ///     }
    /// #   fn on_data(&mut self, _: &mut Context<'_>, _: ConnId, i: &[u8]) -> usize { i.len() }
    /// }
    ///
    /// let mut reactor = Reactor::new(Admin::default(), Config::default())?;
    /// let (ours, _theirs) = std::os::unix::net::UnixStream::pair()?;
    /// let conn = reactor.adopt_unix_stream(ours)?;
    /// assert_eq!(reactor.handler().trusted.get(&conn), Some(&true));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_unix(&self, conn: ConnId) -> Option<bool> {
        let c = self.core.conn(conn)?;
        Some(matches!(c.stream, crate::stream::Stream::Unix(_)))
    }

    /// The listener that accepted `conn`; `None` for an outbound or
    /// adopted connection, or one that is gone. One reactor can serve a
    /// different protocol on each listener this way.
    ///
    /// ```
    /// use evloop::{ConnId, Context, Handler};
    ///
    /// enum Protocol { Http, Admin }
    ///
    /// /// Each listener's protocol, in the order they were opened.
    /// struct Server { protocols: Vec<Protocol> }
    /// impl Handler for Server {
    ///     type Message = ();
    ///     fn on_data(&mut self, cx: &mut Context<'_>, conn: ConnId, input: &[u8]) -> usize {
    ///         match cx.listener(conn).and_then(|l| self.protocols.get(l.index())) {
    ///             Some(Protocol::Http) => { let _ = cx.write(conn, b"HTTP/1.1 204 No Content\r\n\r\n"); }
    ///             Some(Protocol::Admin) => { let _ = cx.write(conn, b"ok\n"); }
    ///             None => cx.close(conn), // outbound or adopted: not served here
    ///         }
    ///         input.len()
    ///     }
    /// }
    /// ```
    pub fn listener(&self, conn: ConnId) -> Option<ListenerId> {
        let c = self.core.conn(conn)?;
        (c.listener != crate::conn::NO_LISTENER).then_some(ListenerId(c.listener))
    }

    /// The local address of `conn` (the address the peer reached, for an
    /// accepted connection; the one the kernel chose, for an outbound
    /// one). `None` for a Unix domain connection, or once it is gone.
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use evloop::{Config, ConnId, Context, Handler, Reactor};
    ///
    /// /// Which of the host's addresses each peer reached: a server
    /// /// listening on 0.0.0.0 can pick the site by it.
    /// #[derive(Default)]
    /// struct Sites { reached: Vec<SocketAddr> }
    /// impl Handler for Sites {
    ///     type Message = ();
    ///     fn on_open(&mut self, cx: &mut Context<'_>, conn: ConnId) {
    ///         self.reached.extend(cx.local_addr(conn));
    ///     }
    /// #   fn on_data(&mut self, _: &mut Context<'_>, _: ConnId, i: &[u8]) -> usize { i.len() }
    /// }
    ///
    /// let mut reactor = Reactor::new(Sites::default(), Config::default())?;
    /// # let server = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// let stream = std::net::TcpStream::connect(server.local_addr()?)?;
    /// let ours = stream.local_addr()?;
    /// reactor.adopt_stream(stream)?;
    /// assert_eq!(reactor.handler().reached, [ours]);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn local_addr(&self, conn: ConnId) -> Option<SocketAddr> {
        self.core.conn(conn)?.stream.local_addr()
    }

    /// Stops accepting on `listener`, from the next accept on (see
    /// [`Reactor::pause_listener`](crate::Reactor::pause_listener)).
    ///
    /// ```
    /// # use evloop::{Context, ListenerId};
    /// # fn f(cx: &mut Context<'_>, web: ListenerId, backend_up: bool) {
    /// // While the backend is down, new clients wait in the listen queue.
    /// if backend_up {
    ///     cx.resume_listener(web);
    /// } else {
    ///     cx.pause_listener(web);
    /// }
    /// # }
    /// ```
    pub fn pause_listener(&mut self, listener: ListenerId) {
        self.core.change_listener(listener, ListenerChange::Pause);
    }

    /// Accepts on `listener` again (see
    /// [`Reactor::resume_listener`](crate::Reactor::resume_listener)).
    pub fn resume_listener(&mut self, listener: ListenerId) {
        self.core.change_listener(listener, ListenerChange::Resume);
    }

    /// Closes `listener` before the next accept (see
    /// [`Reactor::close_listener`](crate::Reactor::close_listener)).
    ///
    /// ```
    /// # use evloop::{ConnId, Context, Handler};
    /// /// Serves the first 100 connections, then accepts no more; those
    /// /// already open live on.
    /// struct FirstHundred { accepted: usize }
    /// impl Handler for FirstHundred {
    ///     type Message = ();
    ///     fn on_open(&mut self, cx: &mut Context<'_>, conn: ConnId) {
    ///         if let Some(listener) = cx.listener(conn) {
    ///             self.accepted += 1;
    ///             if self.accepted == 100 {
    ///                 cx.close_listener(listener);
    ///             }
    ///         }
    ///     }
    /// #   fn on_data(&mut self, _: &mut Context<'_>, _: ConnId, i: &[u8]) -> usize { i.len() }
    /// }
    /// ```
    pub fn close_listener(&mut self, listener: ListenerId) {
        self.core.change_listener(listener, ListenerChange::Close);
    }

    /// Bytes of output waiting for `conn`: in its buffer, handed over
    /// ([`write_owned`](Self::write_owned)), and in file ranges
    /// ([`send_file`](Self::send_file)) not yet sent.
    pub fn output_len(&self, conn: ConnId) -> Option<usize> {
        self.held(conn).then(|| self.core.waiting(conn).bytes)
    }

    /// A connection to `addr` from the upstream pool: an idle one, open
    /// (`Checkout::Reused`), or a new connect if none is idle
    /// (`Checkout::New`: `on_open` comes when it is up, and what is
    /// written before waits for it). Give it back with
    /// [`checkin`](Self::checkin) once its protocol has left it clean.
    /// See `src/reactor/upstream.rs` for how the pool watches and bounds
    /// its connections.
    ///
    /// ```no_run
    /// use evloop::Checkout;
    /// # use evloop::{Config, ConnId, Context, Handler};
    /// /// Forwards each request line to a backend, on pooled connections.
    /// struct Front { backend: std::net::SocketAddr }
    /// impl Handler for Front {
    ///     type Message = ();
    ///     fn on_data(&mut self, cx: &mut Context<'_>, client: ConnId, input: &[u8]) -> usize {
    ///         let Ok(upstream) = cx.checkout(self.backend) else {
    ///             cx.close(client);
    ///             return input.len();
    ///         };
    ///         // Reused or new, it takes the request now.
    ///         let _ = cx.write(upstream.conn(), input);
    ///         // ... and once the whole answer is back: cx.checkin(upstream.conn())
    ///         input.len()
    ///     }
    /// }
    /// ```
    pub fn checkout(&mut self, addr: SocketAddr) -> io::Result<crate::Checkout> {
        self.core.checkout(addr)
    }

    /// Keeps `n` idle connections to `addr` open in the upstream pool,
    /// ahead of demand, so a [`checkout`](Self::checkout) finds one ready
    /// instead of paying a connect; 0 stops it. The pool connects them
    /// itself (the handler hears of one only when a checkout hands it
    /// out), tops up after each checkout or loss, and waits after a
    /// connect that fails (0.5 s, doubling to 30 s), so a backend that is
    /// down costs one connect per wait.
    pub fn warm(&mut self, addr: SocketAddr, n: usize) {
        self.core.warm(addr, n);
    }

    /// Gives an outbound connection back to the upstream pool: from now
    /// on the pool owns it, and the handler hears nothing more of it (not
    /// its close) unless a [`checkout`](Self::checkout) hands it out
    /// again, under a new id. From the checkin on, `conn` names a
    /// connection that is gone: writes to it fail with [`SendError::Gone`]
    /// and closes do nothing, so a handler that kept the id by mistake
    /// can never reach the next user's exchange. It must be open with
    /// nothing queued and no input left; a connection used
    /// [`Config::pool_max_uses`](crate::Config::pool_max_uses) times, or
    /// one there is no room for, is closed instead. On `Err` nothing
    /// changed: it is still the handler's.
    pub fn checkin(&mut self, conn: ConnId) -> Result<(), crate::CheckinError> {
        self.core.checkin(conn)
    }

    /// Whether `conn` is the handler's to use: open or closing, and not
    /// checked in to the upstream pool. A checked-in connection is the
    /// pool's: calls on it are those on a connection that is gone, and a
    /// checkout hands it out again under a new id.
    fn held(&self, conn: ConnId) -> bool {
        self.core.conn(conn).is_some_and(|c| !c.pooled)
    }

    /// `conn`'s state, or `None` once it is gone (closed, or checked in
    /// to the upstream pool).
    pub fn state(&self, conn: ConnId) -> Option<State> {
        self.core
            .conn(conn)
            .filter(|c| !c.pooled)
            .map(|c| c.state())
    }

    /// What `conn`'s TLS handshake agreed (version, cipher suite, ALPN,
    /// resumption), and whether the peer's close_notify came; `None` for
    /// a plain connection, or one that is gone (feature `tls`).
    ///
    /// ```
    /// # use evloop::{Config, ConnId, Context, Handler};
    /// /// Speaks whichever protocol the client chose by ALPN.
    /// struct Server;
    /// impl Handler for Server {
    ///     type Message = ();
    ///     fn on_open(&mut self, cx: &mut Context<'_>, conn: ConnId) {
    ///         let alpn = cx.tls(conn).and_then(|tls| tls.alpn);
    ///         if alpn.as_deref() == Some(b"h2".as_slice()) {
    ///             // ... an HTTP/2 server would begin here ...
    ///         }
    ///     }
    ///     fn on_read_closed(&mut self, cx: &mut Context<'_>, conn: ConnId, rest: &[u8]) {
    ///         if cx.tls(conn).is_some_and(|tls| !tls.peer_closed) {
    ///             // A bare FIN: the last request may have been cut short.
    ///         }
    ///         cx.close(conn);
    ///     }
    /// #   fn on_data(&mut self, _: &mut Context<'_>, _: ConnId, i: &[u8]) -> usize { i.len() }
    /// }
    /// ```
    #[cfg(feature = "tls")]
    pub fn tls(&mut self, conn: ConnId) -> Option<crate::tls::TlsInfo> {
        self.core.tls_info(conn)
    }

    /// Makes `conn`, an outbound connection that has not connected yet
    /// (just made by [`connect`](Self::connect), `connect_with`,
    /// `connect_host` or `connect_unix`), a TLS client to the server
    /// `name`, verified against `config`'s roots (see
    /// [`tls::client_config`](crate::tls::client_config)). Once the
    /// socket connects, the handshake runs under
    /// [`Config::handshake_timeout`](crate::Config::handshake_timeout);
    /// the handler hears `on_open` when it is done, and output it queued
    /// before then is sent encrypted after it. A server whose certificate
    /// does not verify closes the connection with
    /// [`CloseReason::Tls`](crate::CloseReason::Tls). `InvalidInput` for
    /// a connection already connected or already TLS, or a bad name.
    ///
    /// ```no_run
    /// use evloop::tls;
    /// # use evloop::{Config, ConnId, Context, Handler, Reactor};
    /// /// Fetches a page over TLS once the loop starts.
    /// struct Fetch;
    /// impl Handler for Fetch {
    ///     type Message = ();
    ///     fn on_start(&mut self, cx: &mut Context<'_>) {
    ///         let roots = tls::client_config("ca.pem").expect("the CA file");
    ///         let conn = cx.connect("127.0.0.1:8443".parse().unwrap()).expect("a socket");
    ///         cx.start_tls(conn, roots, "localhost").expect("a TLS client");
    ///         // Queued now, encrypted and sent once the handshake is done.
    ///         let _ = cx.write(conn, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    ///     }
    /// #   fn on_data(&mut self, _: &mut Context<'_>, _: ConnId, i: &[u8]) -> usize { i.len() }
    /// }
    /// ```
    #[cfg(feature = "tls")]
    pub fn start_tls(
        &mut self,
        conn: ConnId,
        config: std::sync::Arc<rustls::ClientConfig>,
        name: &str,
    ) -> io::Result<()> {
        self.core.start_tls(conn, config, name)
    }
}
