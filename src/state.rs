//! A connection's life as a pure state machine: a [`State`], an [`Event`]
//! in, the next state and the [`Action`] the reactor owes out. No sockets,
//! no clock: [`State::on`] is a function, tested edge by edge (the way
//! smoltcp tests its TCP states), and the reactor changes a connection's
//! state only by feeding it events (`Core::apply` in
//! `src/reactor/core.rs`).
//!
//! Every edge, drawn from `TABLE` by a test (`cargo test --lib` fails
//! when this drawing and the table differ; `EVLOOP_WRITE_DOCS=1` redraws
//! it). `Abort` leads from every state but `Closed` to `Closed(reason)`;
//! reasons are samples, carried through as `tests::reasons_pass_through`
//! checks.
//!
// state-diagram:begin
//! ```text
//! Connecting            Connected { tls: false }     ─▶ Open                  calls `on_open`
//!                       Connected { tls: true }      ─▶ Handshaking           nothing more
//!                       Close(Closed)                ─▶ Closed(Closed)        returns the buffers; reaps
//!                       Close(Shutdown)              ─▶ Closed(Shutdown)      returns the buffers; reaps
//!                       Abort(Reset)                 ─▶ Closed(Reset)         returns the buffers; reaps
//! Handshaking           Secured                      ─▶ Open                  calls `on_open`
//!                       Close(Closed)                ─▶ Closed(Closed)        returns the buffers; reaps
//!                       Close(Shutdown)              ─▶ Closed(Shutdown)      returns the buffers; reaps
//!                       Abort(Reset)                 ─▶ Closed(Reset)         returns the buffers; reaps
//! Open                  PeerFin                      ─▶ ReadClosed            calls `on_read_closed`; flushes
//!                       ShutdownWrite                ─▶ WriteClosing          flushes (the FIN waits behind the output)
//!                       Close(Closed)                ─▶ Closing(Closed)       drops held input; flushes
//!                       Close(Shutdown)              ─▶ Closing(Shutdown)     drops held input; flushes
//!                       Abort(Reset)                 ─▶ Closed(Reset)         returns the buffers; reaps
//! ReadClosed            ShutdownWrite                ─▶ Closing(PeerClosed)   flushes (the FIN waits behind the output)
//!                       Close(Closed)                ─▶ Closing(PeerClosed)   drops held input; flushes
//!                       Close(Shutdown)              ─▶ Closing(Shutdown)     drops held input; flushes
//!                       Abort(Reset)                 ─▶ Closed(Reset)         returns the buffers; reaps
//! WriteClosing          Flushed { fin_read: false }  ─▶ WriteClosed           sends FIN
//!                       Flushed { fin_read: true }   ─▶ WriteClosed           sends FIN
//!                       PeerFin                      ─▶ Closing(PeerClosed)   calls `on_read_closed`; flushes
//!                       Close(Closed)                ─▶ Closing(Closed)       drops held input; flushes
//!                       Close(Shutdown)              ─▶ Closing(Shutdown)     drops held input; flushes
//!                       Abort(Reset)                 ─▶ Closed(Reset)         returns the buffers; reaps
//! WriteClosed           PeerFin                      ─▶ Closed(PeerClosed)    calls `on_read_closed` first (still in the old state); returns the buffers; reaps
//!                       Close(Closed)                ─▶ Closing(Closed)       drops held input; flushes
//!                       Close(Shutdown)              ─▶ Closing(Shutdown)     drops held input; flushes
//!                       Abort(Reset)                 ─▶ Closed(Reset)         returns the buffers; reaps
//! Closing(Closed)       Flushed { fin_read: false }  ─▶ Lingering(Closed)     sends FIN; arms the linger timeout; reads to discard
//!                       Flushed { fin_read: true }   ─▶ Closed(Closed)        returns the buffers; reaps
//!                       Abort(Reset)                 ─▶ Closed(Reset)         returns the buffers; reaps
//! Lingering(Closed)     PeerFin                      ─▶ Closed(Closed)        returns the buffers; reaps
//!                       Abort(Reset)                 ─▶ Closed(Reset)         returns the buffers; reaps
//! ```
// state-diagram:end
//!
//! The same edges as a markdown table are in the guide's chapter on a
//! connection's life, written by the same test, which also fails if
//! [`State::on`] makes an edge the table does not list.
//!
//! `Lingering` is the graceful close done right: after the last byte of
//! output, send FIN and read (and discard) until the peer's FIN. Closing
//! at once would make the kernel answer input still arriving with RST,
//! and a RST destroys output the peer has not read yet.
//!
//! Whether the reactor may read or write is derived from the state
//! ([`State::may_read`], [`State::may_write`]), never stored beside it.

use crate::conn::CloseReason;

/// Where a connection is in its life. [`Context::state`] reads it; the
/// module docs of `src/state.rs` draw the diagram.
///
/// [`Context::state`]: crate::Context::state
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Outbound, waiting for the connect to finish.
    Connecting,
    /// The TLS handshake is under way (feature `tls`): the transport reads
    /// and writes its records, the handler hears nothing until it is done
    /// (`on_open`), and output it queues waits for it.
    Handshaking,
    /// Both directions open.
    Open,
    /// The peer sent FIN: nothing more to read; we may still write.
    ReadClosed,
    /// `shutdown_write` asked for our FIN; it goes once output is flushed.
    WriteClosing,
    /// Our FIN is sent; we still read until the peer's.
    WriteClosed,
    /// Closing: no more reading; our FIN goes once output is flushed.
    Closing(CloseReason),
    /// Output flushed and FIN sent; input is read and discarded until the
    /// peer's FIN or the linger timeout.
    Lingering(CloseReason),
    /// Closed; the slot is freed at the end of the turn.
    Closed(CloseReason),
}

/// What happens to a connection: the machine's input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// An outbound connect completed; `tls`: a TLS handshake comes
    /// next (feature `tls`).
    Connected {
        /// The connection is a TLS client: its handshake begins.
        tls: bool,
    },
    /// The TLS handshake completed.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    Secured,
    /// A read returned 0: the peer's FIN.
    PeerFin,
    /// A graceful close was asked for (by the handler, or by shutdown).
    Close(CloseReason),
    /// The handler asked to send our FIN after the output
    /// (`Context::shutdown_write`).
    ShutdownWrite,
    /// Every byte of output has been written. `fin_read`: the peer's FIN
    /// has been read too, so nothing can be left unread.
    Flushed {
        /// The peer's FIN has been read.
        fin_read: bool,
    },
    /// Close now, buffers dropped: an error, a timeout, a reset, a cut,
    /// `Context::abort`.
    Abort(CloseReason),
}

/// What the reactor owes a transition, beyond setting the new state.
/// Entering [`State::Closed`] always also means: return the buffers and
/// put the connection on the reap list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Nothing more.
    Nothing,
    /// Tell the handler it opened (`on_open`).
    TellOpen,
    /// Hand the handler the input it left, with the news that no more
    /// will come (`on_read_closed`).
    TellReadClosed,
    /// The same, but *before* the state changes: both FINs are exchanged,
    /// and the handler hears it while the connection is still
    /// `WriteClosed` (so a panic or an `abort` there is its own close
    /// reason); then the connection closes, as `Abort(PeerClosed)` would
    /// close it.
    TellReadClosedThenClose,
    /// Stop reading: drop the input the handler left (nobody will read
    /// it) and flush what is queued.
    StopReading,
    /// Flush: the FIN (or the close) waits behind the output.
    Flush,
    /// Send our FIN (`shutdown(Write)`).
    SendFin,
    /// Send our FIN, start the linger timeout, and read to discard.
    Linger,
}

impl State {
    /// The transition `event` makes from this state, or `None` where the
    /// event changes nothing (a close asked twice, a FIN while closing).
    pub(crate) fn on(self, event: Event) -> Option<(State, Action)> {
        use Action::*;
        use Event::*;
        use State::*;
        let step = match (self, event) {
            (Closed(_), _) => return None,
            (_, Abort(reason)) => (Closed(reason), Nothing),

            (Connecting, Connected { tls: false }) => (Open, TellOpen),
            (Connecting, Connected { tls: true }) => (Handshaking, Nothing),
            (Handshaking, Secured) => (Open, TellOpen),
            // Nothing was said on it yet: there is nothing to flush.
            (Connecting | Handshaking, Close(reason)) => (Closed(reason), Nothing),

            (Open, PeerFin) => (ReadClosed, TellReadClosed),
            (Open, ShutdownWrite) => (WriteClosing, Flush),
            (Open | WriteClosing | WriteClosed, Close(reason)) => (Closing(reason), StopReading),

            // The peer closed first: that is why this connection ends.
            (ReadClosed, Close(CloseReason::Closed)) => {
                (Closing(CloseReason::PeerClosed), StopReading)
            }
            (ReadClosed, Close(reason)) => (Closing(reason), StopReading),
            // Nothing more to read, nothing more to write: a close after
            // the flush sends the FIN.
            (ReadClosed, ShutdownWrite) => (Closing(CloseReason::PeerClosed), Flush),

            (WriteClosing, Flushed { .. }) => (WriteClosed, SendFin),
            // Our FIN is queued: flush, then close.
            (WriteClosing, PeerFin) => (Closing(CloseReason::PeerClosed), TellReadClosed),

            // Both FINs exchanged: the handler hears of it (with the last
            // record, if any), and then the connection is done.
            (WriteClosed, PeerFin) => (Closed(CloseReason::PeerClosed), TellReadClosedThenClose),

            // The peer's FIN is read: nothing can be left unread, so the
            // close sends FIN, not RST.
            (Closing(reason), Flushed { fin_read: true }) => (Closed(reason), Nothing),
            (Closing(reason), Flushed { fin_read: false }) => (Lingering(reason), Linger),

            // We closed first; now their FIN came: done.
            (Lingering(reason), PeerFin) => (Closed(reason), Nothing),

            _ => return None,
        };
        Some(step)
    }

    /// The state allows reading. Whether the reactor reads also depends on
    /// room: not paused by the handler, output below the high-water mark.
    pub fn may_read(&self) -> bool {
        matches!(
            self,
            State::Handshaking
                | State::Open
                | State::WriteClosing
                | State::WriteClosed
                | State::Lingering(_)
        )
    }

    /// The state allows flushing output to the socket.
    pub fn may_write(&self) -> bool {
        matches!(
            self,
            State::Handshaking
                | State::Open
                | State::ReadClosed
                | State::WriteClosing
                | State::Closing(_)
        )
    }

    /// The handler may still queue output.
    pub fn accepts_output(&self) -> bool {
        matches!(
            self,
            State::Connecting | State::Handshaking | State::Open | State::ReadClosed
        )
    }

    /// Closed, waiting to be reaped.
    pub fn is_closed(&self) -> bool {
        matches!(self, State::Closed(_))
    }
}

/// Every edge of the machine: (from, event, to, action), grouped by the
/// state it leaves, for the states and events of [`tests::STATES`] and
/// [`tests::EVENTS`] (one sample reason where the machine carries a
/// reason through; `tests::reasons_pass_through` checks every reason).
/// The tests check that [`State::on`] makes exactly these transitions and
/// no others, and write this table into the guide.
#[cfg(test)]
pub(crate) const TABLE: &[(State, Event, State, Action)] = {
    use Action::*;
    use CloseReason::{Closed as ByHandler, PeerClosed, Reset, Shutdown};
    use Event::*;
    use State::*;
    &[
        (Connecting, Connected { tls: false }, Open, TellOpen),
        (Connecting, Connected { tls: true }, Handshaking, Nothing),
        (Connecting, Close(ByHandler), Closed(ByHandler), Nothing),
        (Connecting, Close(Shutdown), Closed(Shutdown), Nothing),
        (Connecting, Abort(Reset), Closed(Reset), Nothing),
        (Handshaking, Secured, Open, TellOpen),
        (Handshaking, Close(ByHandler), Closed(ByHandler), Nothing),
        (Handshaking, Close(Shutdown), Closed(Shutdown), Nothing),
        (Handshaking, Abort(Reset), Closed(Reset), Nothing),
        (Open, PeerFin, ReadClosed, TellReadClosed),
        (Open, ShutdownWrite, WriteClosing, Flush),
        (Open, Close(ByHandler), Closing(ByHandler), StopReading),
        (Open, Close(Shutdown), Closing(Shutdown), StopReading),
        (Open, Abort(Reset), Closed(Reset), Nothing),
        (ReadClosed, ShutdownWrite, Closing(PeerClosed), Flush),
        (
            ReadClosed,
            Close(ByHandler),
            Closing(PeerClosed),
            StopReading,
        ),
        (ReadClosed, Close(Shutdown), Closing(Shutdown), StopReading),
        (ReadClosed, Abort(Reset), Closed(Reset), Nothing),
        (
            WriteClosing,
            Flushed { fin_read: false },
            WriteClosed,
            SendFin,
        ),
        (
            WriteClosing,
            Flushed { fin_read: true },
            WriteClosed,
            SendFin,
        ),
        (WriteClosing, PeerFin, Closing(PeerClosed), TellReadClosed),
        (
            WriteClosing,
            Close(ByHandler),
            Closing(ByHandler),
            StopReading,
        ),
        (
            WriteClosing,
            Close(Shutdown),
            Closing(Shutdown),
            StopReading,
        ),
        (WriteClosing, Abort(Reset), Closed(Reset), Nothing),
        (
            WriteClosed,
            PeerFin,
            Closed(PeerClosed),
            TellReadClosedThenClose,
        ),
        (
            WriteClosed,
            Close(ByHandler),
            Closing(ByHandler),
            StopReading,
        ),
        (WriteClosed, Close(Shutdown), Closing(Shutdown), StopReading),
        (WriteClosed, Abort(Reset), Closed(Reset), Nothing),
        (
            Closing(ByHandler),
            Flushed { fin_read: false },
            Lingering(ByHandler),
            Linger,
        ),
        (
            Closing(ByHandler),
            Flushed { fin_read: true },
            Closed(ByHandler),
            Nothing,
        ),
        (Closing(ByHandler), Abort(Reset), Closed(Reset), Nothing),
        (Lingering(ByHandler), PeerFin, Closed(ByHandler), Nothing),
        (Lingering(ByHandler), Abort(Reset), Closed(Reset), Nothing),
    ]
};

#[cfg(test)]
mod tests;
