//! One connection: its generational id, why it closed, and the record
//! the reactor keeps for it in its slab. Its state machine is
//! `src/state.rs`.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use crate::buffer::Buffer;
use crate::state::State;
use crate::stream::Stream;
use crate::timer::{Tick, TimerId};

/// Names a connection for as long as it lives.
///
/// Ids are generational: `index` is the connection's slab slot, reused once
/// it closes, and `generation` tells the new tenant from the old. A stale id
/// held by a timer, a chat room or a proxy's peer map can never reach the
/// connection that took the slot later: every operation on it does nothing
/// and says so.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

impl ConnId {
    /// The connection's slab slot: dense, small, and reused after close.
    /// Handlers use it to index their own per-connection tables (a `Vec`
    /// beats a hash map), keeping the whole id beside the entry to tell a
    /// new tenant from an old one.
    pub fn index(&self) -> usize {
        self.index as usize
    }

    /// The id as one number, e.g. for a timer token
    /// ([`Context::set_timer`](crate::Context::set_timer)).
    pub fn as_u64(&self) -> u64 {
        (u64::from(self.index) << 32) | u64::from(self.generation)
    }

    /// The id [`as_u64`](Self::as_u64) made. Any number gives *some* id;
    /// one that names no live connection is simply stale, and every
    /// operation on it does nothing.
    pub fn from_u64(n: u64) -> ConnId {
        ConnId {
            index: (n >> 32) as u32,
            generation: n as u32,
        }
    }
}

impl fmt::Debug for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}.{}", self.index, self.generation)
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Why a connection closed: handed to [`Handler::on_close`] and counted in
/// [`Stats`].
///
/// [`Handler::on_close`]: crate::Handler::on_close
/// [`Stats`]: crate::Stats
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// The peer closed its side and the connection finished normally.
    PeerClosed,
    /// The peer reset the connection (RST): `ECONNRESET` or `EPIPE`.
    Reset,
    /// Nothing was read or written for the idle timeout.
    IdleTimeout,
    /// Output waited without progress for the write timeout.
    WriteTimeout,
    /// An outbound connect failed (refused, unreachable, ...).
    ConnectFailed(io::ErrorKind),
    /// An outbound connect did not complete within the connect timeout.
    ConnectTimeout,
    /// Output passed the hard limit, or stayed above the soft limit past
    /// its grace period: the peer reads slower than it is sent to.
    SlowConsumer,
    /// The input buffer reached its maximum and the handler consumed
    /// nothing: no frame fits.
    InputTooLarge,
    /// Closed by the reactor's shutdown.
    Shutdown,
    /// The handler closed it after flushing ([`Context::close`]).
    ///
    /// [`Context::close`]: crate::Context::close
    Closed,
    /// The handler aborted it ([`Context::abort`]): output dropped, RST sent.
    ///
    /// [`Context::abort`]: crate::Context::abort
    Aborted,
    /// Some other I/O error on the socket.
    Io(io::ErrorKind),
    /// The reactor's buffers passed [`Config::max_buffered`] and this
    /// connection held the most (Redis's `maxmemory-clients` eviction).
    ///
    /// [`Config::max_buffered`]: crate::Config::max_buffered
    OverBudget,
    /// A handler callback for this connection panicked: its state is
    /// unknown, so it is reset.
    HandlerPanic,
    /// The TLS session failed (feature `tls`): its handshake did not
    /// finish, or a record was bad. The alert, if TLS has one, was sent.
    Tls(TlsFailure),
}

/// Why a TLS session failed ([`CloseReason::Tls`]), counted apart in
/// [`Stats::tls_failed`](crate::Stats::tls_failed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TlsFailure {
    /// The handshake did not finish within
    /// [`Config::handshake_timeout`](crate::Config::handshake_timeout).
    Timeout,
    /// The peer closed (FIN) before the handshake finished.
    Eof,
    /// The peer sent a fatal alert.
    Alert,
    /// A certificate was missing, bad or not trusted.
    Certificate,
    /// No protocol version, cipher suite, group or ALPN name in common.
    Incompatible,
    /// Bytes that are not TLS, a record that does not decrypt, or a
    /// message out of place.
    Protocol,
}

impl TlsFailure {
    /// Number of kinds, for per-kind counters.
    pub const COUNT: usize = 6;

    /// Every kind's name, in [`index`](Self::index) order.
    pub const NAMES: [&'static str; Self::COUNT] = [
        "timeout",
        "eof",
        "alert",
        "certificate",
        "incompatible",
        "protocol",
    ];

    /// A dense index for counters: `NAMES[failure.index()]` names it.
    pub fn index(&self) -> usize {
        *self as usize
    }
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(TlsFailure::NAMES[self.index()])
    }
}

impl CloseReason {
    /// Number of distinct reasons, for per-reason counters.
    pub const COUNT: usize = 15;

    /// Every reason's name, in [`index`](Self::index) order.
    pub const NAMES: [&'static str; Self::COUNT] = [
        "peer_closed",
        "reset",
        "idle_timeout",
        "write_timeout",
        "connect_failed",
        "connect_timeout",
        "slow_consumer",
        "input_too_large",
        "shutdown",
        "closed",
        "aborted",
        "io_error",
        "over_budget",
        "handler_panic",
        "tls",
    ];

    /// A dense index for counters: `NAMES[reason.index()]` names it.
    pub fn index(&self) -> usize {
        match self {
            CloseReason::PeerClosed => 0,
            CloseReason::Reset => 1,
            CloseReason::IdleTimeout => 2,
            CloseReason::WriteTimeout => 3,
            CloseReason::ConnectFailed(_) => 4,
            CloseReason::ConnectTimeout => 5,
            CloseReason::SlowConsumer => 6,
            CloseReason::InputTooLarge => 7,
            CloseReason::Shutdown => 8,
            CloseReason::Closed => 9,
            CloseReason::Aborted => 10,
            CloseReason::Io(_) => 11,
            CloseReason::OverBudget => 12,
            CloseReason::HandlerPanic => 13,
            CloseReason::Tls(_) => 14,
        }
    }

    /// The reason an I/O error on an open connection means.
    pub(crate) fn from_io(err: &io::Error) -> CloseReason {
        match err.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted => CloseReason::Reset,
            kind => CloseReason::Io(kind),
        }
    }

    /// Whether closing for this reason should reset (RST) rather than
    /// finish (FIN): output that will never be delivered should not keep
    /// the kernel retrying it.
    pub(crate) fn resets(&self) -> bool {
        matches!(
            self,
            CloseReason::WriteTimeout
                | CloseReason::SlowConsumer
                | CloseReason::Aborted
                | CloseReason::Reset
                | CloseReason::Io(_)
                | CloseReason::OverBudget
                | CloseReason::HandlerPanic
        )
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::ConnectFailed(kind) => write!(f, "connect failed: {kind}"),
            CloseReason::Io(kind) => write!(f, "I/O error: {kind}"),
            CloseReason::Tls(failure) => write!(f, "TLS failed: {failure}"),
            other => f.write_str(CloseReason::NAMES[other.index()]),
        }
    }
}

/// Bytes of buffer capacity a connection holds, per direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Held {
    pub(crate) input: usize,
    pub(crate) output: usize,
}

impl Held {
    pub(crate) fn total(&self) -> usize {
        self.input + self.output
    }
}

/// `Conn::listener` of a connection no listener accepted.
pub(crate) const NO_LISTENER: u32 = u32::MAX;

/// "Never" for tick fields.
pub(crate) const NEVER: Tick = Tick::MAX;

/// The reactor's record of one connection. Kept small: an idle connection
/// is this struct and nothing else (the `idle` scenario of
/// `../shared/peers/compare.py` and the C10K demo measure it).
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) stream: Stream,
    pub(crate) generation: u32,
    /// The listener that accepted it (its index), or [`NO_LISTENER`] for
    /// an outbound or adopted connection.
    pub(crate) listener: u32,
    state: State,
    /// Where it comes from (accepted) or goes to (outbound), kept so the
    /// handler can ask in `on_close`, when the socket may no longer know.
    /// `None` for a Unix domain socket, whose peer has no IP address.
    pub(crate) peer: Option<SocketAddr>,
    /// Input the handler has not consumed yet (a partial frame, or frames
    /// it chose not to take yet).
    pub(crate) input: Option<Box<Buffer>>,
    /// Output the socket has not taken yet.
    pub(crate) output: Option<Box<Buffer>>,
    /// Output handed over whole waits behind `output`, in the reactor's
    /// side table of tails (`src/reactor/tail.rs`).
    pub(crate) tail: bool,
    /// The connection is TLS: its session is in the reactor's side table
    /// of sessions (`src/reactor/tls.rs`).
    pub(crate) tls: bool,
    /// Idle in the upstream pool, or given up to it: the handler hears
    /// nothing of it (`src/reactor/upstream.rs`).
    pub(crate) pooled: bool,
    /// TLS records wait in the session for the socket (handshake, alert,
    /// encrypted output, close_notify): output, as far as flushing and
    /// closing are concerned.
    pub(crate) sealed: bool,
    /// What this connection's buffers count against the reactor-wide
    /// budget (`Config::max_buffered`): their capacity, input and output.
    /// The input's count stands while the buffer is lent to the handler.
    pub(crate) held: Held,
    /// The connection's one timer on the wheel, and when it fires. It
    /// covers the idle, write, soft-limit and connect deadlines at once: it
    /// is armed for the earliest, and when it fires the reactor checks them
    /// all and re-arms (the idle timeout's lazy re-arm: I/O only updates the
    /// ticks below).
    pub(crate) timer: Option<TimerId>,
    pub(crate) timer_at: Tick,
    /// Last tick bytes arrived (for outbound: when connect began; while
    /// handshaking: when the connection began, for the handshake
    /// timeout).
    pub(crate) last_read: Tick,
    /// Last tick output made progress, or began to wait.
    pub(crate) last_write: Tick,
    /// When output rose above the soft limit; [`NEVER`] while below.
    pub(crate) soft_since: Tick,
    /// Cached readiness: set by events, cleared by `WouldBlock` or a short
    /// read or write. Edge-triggered polling reports each change once.
    pub(crate) readable: bool,
    pub(crate) writable: bool,
    /// An event reported the peer's FIN (or an error): read on to the
    /// `0` (or the error), and peek at it while paused.
    pub(crate) fin_seen: bool,
    /// A read returned `0`: the peer's FIN has been read, so no input can
    /// be left unread.
    pub(crate) eof: bool,
    /// The handler paused reading.
    pub(crate) read_paused: bool,
    /// Input the handler left waits to be offered again without new bytes
    /// (it resumed reading, or its output drained).
    pub(crate) reoffer: bool,
    /// Output passed the high-water mark; reading resumes below the low.
    pub(crate) backpressured: bool,
    /// On the ready list / the flush list already (each at most once).
    pub(crate) on_ready_list: bool,
    pub(crate) on_flush_list: bool,
}

impl Conn {
    pub(crate) fn new(
        stream: Stream,
        peer: Option<SocketAddr>,
        generation: u32,
        listener: u32,
        state: State,
        now: Tick,
    ) -> Self {
        Conn {
            stream,
            generation,
            listener,
            state,
            peer,
            input: None,
            output: None,
            tail: false,
            tls: false,
            pooled: false,
            sealed: false,
            held: Held::default(),
            timer: None,
            timer_at: NEVER,
            last_read: now,
            last_write: now,
            soft_since: NEVER,
            readable: false,
            writable: false,
            fin_seen: false,
            eof: false,
            read_paused: false,
            reoffer: false,
            backpressured: false,
            on_ready_list: false,
            on_flush_list: false,
        }
    }

    pub(crate) fn state(&self) -> State {
        self.state
    }

    /// The one way a connection changes state: `Core::apply`, with the
    /// state the machine in `src/state.rs` answered.
    pub(crate) fn set_state(&mut self, id: ConnId, new: State) {
        log::trace!("conn {id}: {:?} => {:?}", self.state, new);
        debug_assert!(
            !self.state.is_closed(),
            "a closed connection changes state: {:?} => {:?}",
            self.state,
            new
        );
        self.state = new;
    }

    /// Allowed to read, and not paused by the handler or by backpressure.
    /// A lingering connection reads (and discards) even when paused: input
    /// left unread at close makes the kernel send RST, which destroys our
    /// last output.
    pub(crate) fn can_read(&self) -> bool {
        match self.state {
            State::Lingering(_) => true,
            state => state.may_read() && !self.read_paused && !self.backpressured,
        }
    }

    /// Reading is held back by the handler or by backpressure, though the
    /// state allows it.
    pub(crate) fn is_paused(&self) -> bool {
        self.state.may_read() && !self.can_read()
    }

    /// Whether the kernel holds input for this connection, asked without
    /// taking it (a `peek`): for a paused connection, which is not read.
    /// A FIN alone, or an error, is no input.
    pub(crate) fn input_waiting(&self) -> bool {
        loop {
            match self.stream.peek_one() {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                result => return matches!(result, Ok(n) if n > 0),
            }
        }
    }

    /// Bytes of output waiting in the buffer (not counting a tail).
    pub(crate) fn output_len(&self) -> usize {
        self.output.as_ref().map_or(0, |b| b.len())
    }

    /// Whether any output waits: in the buffer, handed over whole, or
    /// encrypted and not yet sent.
    pub(crate) fn has_output(&self) -> bool {
        self.output_len() > 0 || self.tail || self.sealed
    }
}
#[cfg(test)]
mod tests {
    /// An idle connection is this record and nothing else (the `idle`
    /// scenario measures about 180 bytes a connection, slab slot
    /// included): a field added here costs every connection, so the
    /// record may not grow past 144 bytes in a release build (136 before
    /// Unix domain sockets; the stream's kind took 8). mio's sockets carry a selector id in
    /// debug builds only; it is taken off here, so the bound holds the
    /// layout that ships.
    #[test]
    fn a_connection_record_stays_small() {
        use std::mem::size_of;
        // A release `Stream` is a tag and a descriptor.
        let debug_only = size_of::<crate::stream::Stream>() - 2 * size_of::<std::os::fd::RawFd>();
        let size = size_of::<super::Conn>() - debug_only;
        assert!(
            size <= 144,
            "Conn is {size} bytes without mio's debug field"
        );
    }
}
