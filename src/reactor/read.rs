//! Reading a connection and handing its input to the handler.
//!
//! The readiness rules, once:
//!
//! - Events are edge-triggered: "readable" is reported when data arrives,
//!   not while it sits there. So a connection is read until the kernel
//!   says `WouldBlock`, or until we *know* it is empty, or the turn's
//!   budget runs out; in the last case it goes on the ready list, because
//!   no new edge will come for bytes that already wait.
//! - A read that returns less than the room offered has emptied the socket
//!   (the kernel copies all it has). Counting that as empty saves the
//!   extra read that would only return `WouldBlock`: the C epoll floor
//!   never pays it, and neither does sozu. The exception is an event that
//!   carried the peer's FIN: then read on to the `0` that says so, or the
//!   close would never be seen.
//! - `Interrupted` is retried at once; `WouldBlock` clears the cached
//!   readiness; `0` is the peer's FIN; any other error closes the
//!   connection with the reason it means.
//!
//! - A connection that is not read (paused by its handler or by
//!   backpressure) still hears of the peer's FIN or RST: a `peek` tells
//!   without taking any bytes, so a peer that hangs up is noticed even if
//!   nobody ever resumes reading.
//!
//! Where bytes land: a connection with no partial frame reads into the
//! reactor's one scratch buffer, and the handler consumes whole frames
//! straight from it; only the unconsumed tail is copied into a buffer of
//! the connection's own. A connection that already holds a partial frame
//! reads into the scratch buffer too, and what came is appended to it.
//!
//! Input the handler left is offered again without new bytes (the
//! `reoffer` flag, served from the ready list, after the other
//! connections): when the call consumed some of it, and after
//! `resume_read` or `on_drain`. The peer's FIN waits until the handler
//! has taken what it wants of that input. A
//! call that consumes nothing waits for new bytes, so a handler can never
//! make the loop spin on old input, and one that bounds its work per call
//! (a chat line flood) lets the other connections in between.

use std::io;

use crate::stream::Stream;

use super::core::Core;
use super::{dispatch, Reactor};
use crate::buffer::Buffer;
use crate::conn::{CloseReason, ConnId};
use crate::handler::Handler;
use crate::state::{Action, Event, State};

/// What one read did.
pub(super) enum Outcome {
    /// Bytes were read and dispatched.
    Data(usize),
    /// Nothing to read now.
    WouldBlock,
    /// The peer's FIN.
    Eof,
    /// The connection closed (error, or input too large).
    Closed,
}

/// Where the input handed to the handler lies.
#[derive(Clone, Copy)]
enum Source<'a> {
    /// The first `n` bytes of the scratch buffer.
    Scratch(usize),
    /// The connection's own buffer, taken out for the dispatch.
    Held(&'a [u8]),
}

impl<H: Handler> Reactor<H> {
    /// Offers input the handler left, then reads and dispatches until
    /// empty, closed, paused, or out of budget (then the connection goes
    /// on the ready list).
    pub(super) fn read(&mut self, id: ConnId) {
        let mut budget = self.core.config().read_budget;
        let mut first = true;
        loop {
            let Some(conn) = self.core.conn_mut(id) else {
                return;
            };
            if conn.pooled {
                // Checked in by the handler during this read: the pool's
                // now. Input left over, or the FIN read, makes it unfit.
                if conn.input.is_some() || conn.eof {
                    self.core.pooled_unfit(id);
                }
                return;
            }
            if !conn.can_read() {
                // Paused (before, or by the handler just now) while the
                // peer's FIN or an error waits unread: no new edge will
                // come for it, so look now.
                if conn.fin_seen && conn.is_paused() {
                    self.peek_paused(id);
                }
                return;
            }
            // Input left for later is offered once per serve, first.
            if std::mem::take(&mut first) && std::mem::take(&mut conn.reoffer) {
                self.reoffer(id);
                continue;
            }
            if conn.reoffer {
                // The handler took some and left the rest: its next share
                // comes from the ready list, after the others. Reading on
                // now would hand it more in this serve, and a per-call
                // bound would bound nothing.
                return;
            }
            if conn.eof {
                // The FIN is read, and the handler has taken what it wants
                // of its input (it did not ask for the rest): it hears it.
                return self.peer_closed(id);
            }
            if !conn.readable {
                return;
            }
            if budget == 0 {
                return self.core.push_ready(id);
            }
            let outcome = if matches!(conn.state(), State::Lingering(_)) {
                self.read_discard(id)
            } else if conn.input.is_some() {
                self.read_buffered(id)
            } else {
                self.read_scratch(id)
            };
            match outcome {
                Outcome::Data(0) => return, // nothing moved: never spin
                Outcome::Data(n) => budget = budget.saturating_sub(n),
                Outcome::WouldBlock | Outcome::Closed => return,
                Outcome::Eof => {
                    if let Some(conn) = self.core.conn_mut(id) {
                        conn.eof = true;
                        conn.readable = false;
                    }
                }
            }
        }
    }

    /// One read through the transport into `scratch[..room]`: returns
    /// the bytes that came off the socket and the input for the handler
    /// (the same bytes on a plain connection; on a TLS one, ciphertext
    /// and the plaintext it carried, see `tls.rs`).
    fn take_in(&mut self, id: ConnId, room: usize) -> Result<(usize, usize), Outcome> {
        let Some(conn) = self.core.conn(id) else {
            return Err(Outcome::Closed);
        };
        #[cfg(feature = "tls")]
        if conn.tls {
            return self.receive_tls(id, room);
        }
        let result = receive(&conn.stream, &mut self.scratch[..room]);
        self.settle(id, result, room).map(|n| (n, n))
    }

    /// A read into the scratch buffer; the handler consumes from there.
    fn read_scratch(&mut self, id: ConnId) -> Outcome {
        let (raw, n) = match self.take_in(id, self.scratch.len()) {
            Ok(got) => got,
            Err(outcome) => return outcome,
        };
        if n > 0 {
            // The handler may have closed or paused it in `on_open` (a
            // TLS handshake's last record opens it): what it cannot take
            // now is kept, as a partial frame would be.
            let can_read = self.core.conn(id).is_some_and(|c| c.can_read());
            let consumed = if can_read {
                self.offer(id, Source::Scratch(n))
            } else {
                0
            };
            if consumed < n {
                self.core
                    .keep_input(id, &self.scratch[consumed..n], consumed == 0 && can_read);
            }
        }
        Outcome::Data(raw.max(n))
    }

    /// A read while lingering: the bytes are dropped, unread by anyone.
    fn read_discard(&mut self, id: ConnId) -> Outcome {
        let Some(conn) = self.core.conn_mut(id) else {
            return Outcome::Closed;
        };
        let result = receive(&conn.stream, &mut self.scratch);
        match self.settle(id, result, self.scratch.len()) {
            Ok(n) => Outcome::Data(n),
            Err(outcome) => outcome,
        }
    }

    /// A read appended to the input the connection holds.
    fn read_buffered(&mut self, id: ConnId) -> Outcome {
        let max_input = self.core.config().max_input;
        let Some(conn) = self.core.conn_mut(id) else {
            return Outcome::Closed;
        };
        let Some(input) = conn.input.as_ref() else {
            return Outcome::WouldBlock;
        };
        let room = max_input
            .saturating_sub(input.len())
            .min(self.scratch.len());
        if room == 0 {
            // Full, and the handler found no frame in it last time.
            self.core.abort(id, CloseReason::InputTooLarge);
            return Outcome::Closed;
        }
        // Into the scratch buffer, then only what came is appended: a
        // partial frame that trickles in costs each read its own bytes,
        // not a zero-filled 64 KiB of room in the connection's buffer.
        let (raw, n) = match self.take_in(id, room) {
            Ok(got) => got,
            Err(outcome) => return outcome,
        };
        if n == 0 {
            return Outcome::Data(raw); // TLS records with no plaintext
        }
        let Some(mut input) = self.core.conn_mut(id).and_then(|c| c.input.take()) else {
            return Outcome::Closed;
        };
        input.extend(&self.scratch[..n]);
        self.core.count_input(id, input.capacity());
        self.dispatch_held(id, input);
        Outcome::Data(raw.max(n))
    }

    /// Offers the input the connection holds without reading: the handler
    /// resumed reading, or its output drained (`on_drain`).
    fn reoffer(&mut self, id: ConnId) {
        if let Some(input) = self.core.conn_mut(id).and_then(|c| c.input.take()) {
            self.dispatch_held(id, input);
        }
    }

    /// Hands the connection's own input to the handler, then keeps what it
    /// left (or frees the buffer once it is empty or nobody will read it).
    fn dispatch_held(&mut self, id: ConnId, mut input: Box<Buffer>) {
        // Counting the new bytes may have closed it (the buffer budget).
        let consumed = if self.core.conn(id).is_some_and(|c| c.can_read()) {
            self.offer(id, Source::Held(input.as_slice()))
        } else {
            0
        };
        input.consume(consumed);
        let max_input = self.core.config().max_input;
        match self.core.conn_mut(id) {
            Some(conn) if conn.state().may_read() && !input.is_empty() => {
                if consumed == 0 && conn.can_read() && input.len() >= max_input {
                    self.core.give_buffer(input);
                    self.core.abort(id, CloseReason::InputTooLarge);
                } else {
                    let capacity = input.capacity();
                    conn.input = Some(input);
                    self.core.count_input(id, capacity);
                }
            }
            _ => {
                self.core.give_buffer(input);
                self.core.count_input(id, 0);
            }
        }
    }

    /// Books a read's result: bytes counted, readiness cached, errors
    /// turned into close reasons. `Ok(n)` for `n > 0` bytes.
    pub(super) fn settle(
        &mut self,
        id: ConnId,
        result: io::Result<usize>,
        offered: usize,
    ) -> Result<usize, Outcome> {
        let now = self.core.now();
        let Some(conn) = self.core.conn_mut(id) else {
            return Err(Outcome::Closed);
        };
        match result {
            Ok(0) => Err(Outcome::Eof),
            Ok(n) => {
                if conn.state() != State::Handshaking {
                    // A handshake's deadline counts from accept: bytes
                    // trickled into it do not move it.
                    conn.last_read = now;
                }
                if n < offered && !conn.fin_seen {
                    conn.readable = false; // a short read emptied the socket
                }
                self.core.counters().bytes_in += n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                conn.readable = false;
                Err(Outcome::WouldBlock)
            }
            Err(e) => {
                log::debug!("conn {id}: read: {e}");
                self.core.abort(id, CloseReason::from_io(&e));
                Err(Outcome::Closed)
            }
        }
    }

    /// Hands input to the handler. Output it queues for this connection
    /// is written after, in one call. Returns bytes consumed; a handler
    /// claiming more than it got is held to what it got.
    ///
    /// A handler that took some but not all (one frame per call, or as
    /// much work as it allows itself per call) is offered the rest from
    /// the ready list, after the other connections, so it cannot hold the
    /// loop for them; one that took nothing waits for new bytes.
    fn offer(&mut self, id: ConnId, source: Source<'_>) -> usize {
        let input = match source {
            Source::Scratch(n) => &self.scratch[..n],
            Source::Held(held) => held,
        };
        let consumed = dispatch(&mut self.handler, &mut self.core, Some(id), |h, cx| {
            h.on_data(cx, id, input)
        });
        if consumed > input.len() {
            log::warn!(
                "conn {id}: handler consumed {consumed} of {} bytes",
                input.len()
            );
        }
        let consumed = consumed.min(input.len());
        if 0 < consumed && consumed < input.len() {
            if let Some(conn) = self.core.conn_mut(id) {
                if conn.can_read() {
                    conn.reoffer = true;
                    self.core.push_ready(id);
                }
            }
        }
        consumed
    }

    /// A paused connection's event reported the peer's FIN or an error.
    /// Reading would take bytes the handler is not ready for, so peek at
    /// one: `0` means the FIN is all that is left, and the handler hears
    /// it now (with the input it left), unless only backpressure holds
    /// that input back; an error is the peer's RST; a byte means input
    /// waits before the FIN, read once reading resumes.
    pub(super) fn peek_paused(&mut self, id: ConnId) {
        let Some(conn) = self.core.conn_mut(id) else {
            return;
        };
        let result = loop {
            match conn.stream.peek_one() {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                result => break result,
            }
        };
        match result {
            // Paused by backpressure alone with input left: the handler
            // stopped taking frames because its output is full, and will
            // go on once it drains (or the write timeout or the output
            // limits close it): the FIN waits its turn behind that input.
            Ok(0) if conn.backpressured && !conn.read_paused && conn.input.is_some() => {}
            // Plaintext a TLS session holds comes before the FIN: it is
            // taken once reading resumes, and the FIN after it.
            Ok(0) if self.core.plaintext_waiting(id) => {}
            Ok(0) => self.peer_closed(id),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => {
                log::debug!("conn {id}: paused, and the peer is gone: {e}");
                self.core.abort(id, CloseReason::from_io(&e));
            }
        }
    }

    /// The peer's FIN, read: the state machine decides; the handler hears
    /// it with the input it left (`on_read_closed`; its default closes
    /// once output is flushed).
    fn peer_closed(&mut self, id: ConnId) {
        let Some(conn) = self.core.conn_mut(id) else {
            return;
        };
        conn.readable = false;
        conn.eof = true;
        conn.reoffer = false;
        let input = conn.input.take();
        let action = self.core.apply(id, Event::PeerFin);
        if matches!(
            action,
            Some(Action::TellReadClosed | Action::TellReadClosedThenClose)
        ) {
            let rest = input.as_ref().map_or(&[][..], |b| b.as_slice());
            dispatch(&mut self.handler, &mut self.core, Some(id), |h, cx| {
                h.on_read_closed(cx, id, rest)
            });
        }
        match action {
            // Both FINs are exchanged and the handler has heard: done
            // (unless it aborted the connection itself).
            Some(Action::TellReadClosedThenClose) => {
                self.core.abort(id, CloseReason::PeerClosed);
            }
            Some(Action::TellReadClosed) => self.core.push_flush(id),
            _ => {}
        }
        if let Some(input) = input {
            self.core.give_buffer(input);
            self.core.count_input(id, 0);
        }
    }
}

impl Core {
    /// Keeps input the handler did not consume (a partial frame, or frames
    /// it left for later) in the connection's own buffer. Input past
    /// `max_input` that the handler could take nothing of (`stuck`) aborts
    /// it; a handler that took some keeps the rest, offered again on the
    /// next turn.
    fn keep_input(&mut self, id: ConnId, rest: &[u8], stuck: bool) {
        let max_input = self.config().max_input;
        let Some(conn) = self.conn(id) else {
            return;
        };
        if !conn.state().may_read() {
            return; // closing: nobody will read it
        }
        if stuck && rest.len() >= max_input {
            return self.abort(id, CloseReason::InputTooLarge);
        }
        let mut buffer = self.take_buffer();
        buffer.extend(rest);
        let capacity = buffer.capacity();
        match self.conn_mut(id) {
            Some(conn) => {
                conn.input = Some(buffer);
                self.count_input(id, capacity);
            }
            None => self.give_buffer(buffer),
        }
    }
}

/// The seam on the read side: bytes arrive from the socket here, one
/// `read` call (`Interrupted` retried). A TLS connection's bytes are
/// ciphertext: `take_in` sends them through its session first
/// (`tls.rs`), and nothing else on this side changes.
pub(super) fn receive(stream: &Stream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match stream.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            result => return result,
        }
    }
}
