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
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::conn::{CloseReason, ConnId, State};
use crate::reactor::Core;
use crate::stats::Stats;
use crate::timer::TimerId;

/// A protocol running on the reactor. Only `on_data` is required.
///
/// Every callback runs on the reactor's thread, between system calls; a
/// handler that blocks or loops blocks every connection. Callbacks that
/// name a connection get its [`ConnId`], which stays valid until
/// `on_close` and is never reused for another connection.
pub trait Handler {
    /// What other threads post through [`Handle::post`]; `()` if nothing.
    ///
    /// [`Handle::post`]: crate::Handle::post
    type Message: Send + 'static;

    /// A connection opened: accepted from a listener, or an outbound
    /// connect that completed.
    fn on_open(&mut self, cx: &mut Context<'_>, conn: ConnId) {
        let _ = (cx, conn);
    }

    /// Bytes arrived. `input` holds everything not consumed before, then
    /// the new bytes. Return how many bytes were consumed (whole frames);
    /// the rest is kept and offered again with the next bytes.
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

    /// The peer sent FIN: no more input will come. Output still flushes.
    /// The default closes the connection once its output is flushed
    /// ([`CloseReason::PeerClosed`]); a handler that still has an answer
    /// to send may write first, or keep the connection open.
    fn on_read_closed(&mut self, cx: &mut Context<'_>, conn: ConnId) {
        cx.close(conn);
    }

    /// A timer set with [`Context::set_timer`] fired.
    fn on_timer(&mut self, cx: &mut Context<'_>, token: u64) {
        let _ = (cx, token);
    }

    /// A message posted through a [`Handle`](crate::Handle) arrived.
    fn on_message(&mut self, cx: &mut Context<'_>, message: Self::Message) {
        let _ = (cx, message);
    }

    /// Graceful shutdown began: listeners are closed, and after this
    /// returns every connection is closed once its output is flushed. A
    /// handler may write a goodbye first.
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
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SendError::Gone => "no such connection",
            SendError::Closing => "connection is closing",
            SendError::SlowConsumer => "output limit reached: closed as slow consumer",
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
        self.core.now_instant
    }

    /// Queues `data` for `conn`. It is written at the end of the current
    /// dispatch (or of this turn, for a connection other than the one being
    /// served), in one system call with everything else queued for it.
    pub fn write(&mut self, conn: ConnId, data: &[u8]) -> Result<(), SendError> {
        self.core.write(conn, data)
    }

    /// Closes `conn` once its output is flushed (FIN).
    pub fn close(&mut self, conn: ConnId) {
        self.core.close(conn, CloseReason::Closed);
    }

    /// Closes `conn` now: waiting output is dropped, the peer gets RST.
    pub fn abort(&mut self, conn: ConnId) {
        self.core.kill(conn, CloseReason::Aborted);
    }

    /// Sends FIN once `conn`'s output is flushed, and keeps reading until
    /// the peer's FIN.
    pub fn shutdown_write(&mut self, conn: ConnId) {
        self.core.shutdown_write(conn);
    }

    /// Stops reading `conn` (its input waits in the kernel, and TCP flow
    /// control slows the peer) until [`resume_read`](Self::resume_read).
    pub fn pause_read(&mut self, conn: ConnId) {
        if let Some(c) = self.core.conn_mut(conn) {
            c.read_paused = true;
        }
    }

    /// Resumes reading `conn`.
    pub fn resume_read(&mut self, conn: ConnId) {
        if let Some(c) = self.core.conn_mut(conn) {
            c.read_paused = false;
            self.core.push_ready(conn);
        }
    }

    /// Starts a non-blocking connect to `addr`. The connection lives in the
    /// same slab as accepted ones: `on_open` when it completes, `on_close`
    /// with [`CloseReason::ConnectFailed`] or
    /// [`CloseReason::ConnectTimeout`] if it does not. Output written
    /// before it completes is sent once it does.
    pub fn connect(&mut self, addr: SocketAddr) -> io::Result<ConnId> {
        self.core.connect(addr)
    }

    /// Calls `on_timer(token)` once, `after` from now (to the millisecond).
    pub fn set_timer(&mut self, after: Duration, token: u64) -> TimerId {
        self.core.set_timer(after, token)
    }

    /// Cancels a timer; `false` if it already fired or was cancelled.
    pub fn cancel_timer(&mut self, timer: TimerId) -> bool {
        self.core.wheel.cancel(timer).is_some()
    }

    /// Begins the reactor's graceful shutdown at the end of this turn.
    pub fn shutdown(&mut self) {
        self.core.shutdown_requested = true;
    }

    /// The reactor's counters now.
    pub fn stats(&self) -> Stats {
        self.core.stats()
    }

    /// Where `conn` comes from (or, for outbound, goes to).
    pub fn peer_addr(&self, conn: ConnId) -> Option<SocketAddr> {
        self.core.conn(conn)?.stream.peer_addr().ok()
    }

    /// Bytes of output waiting for `conn`.
    pub fn output_len(&self, conn: ConnId) -> Option<usize> {
        self.core.conn(conn).map(|c| c.output_len())
    }

    /// `conn`'s state, or `None` once it is gone.
    pub fn state(&self, conn: ConnId) -> Option<State> {
        self.core.conn(conn).map(|c| c.state())
    }
}
