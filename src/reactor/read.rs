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
//!   (the kernel copies all it has). Counting that as drained saves the
//!   extra read that would only return `WouldBlock`: the C epoll floor
//!   never pays it, and neither does sozu. The exception is an event that
//!   carried the peer's FIN: then read on to the `0` that says so, or the
//!   close would never be seen.
//! - `Interrupted` is retried at once; `WouldBlock` clears the cached
//!   readiness; `0` is the peer's FIN; any other error closes the
//!   connection with the reason it means.
//!
//! Where bytes land: a connection with no partial frame reads into the
//! reactor's one scratch buffer, and the handler consumes whole frames
//! straight from it; only the unconsumed tail is copied into a buffer of
//! the connection's own. A connection that already holds a partial frame
//! reads into the scratch buffer too, and what came is appended to it.

use std::io::{self, Read};

use super::Reactor;
use crate::conn::{CloseReason, ConnId, State};
use crate::handler::{Context, Handler};

/// What one read did.
enum Outcome {
    /// Bytes were read and dispatched.
    Data(usize),
    /// Nothing to read now.
    WouldBlock,
    /// The peer's FIN.
    Eof,
    /// The connection closed (error, or input too large).
    Closed,
}

impl<H: Handler> Reactor<H> {
    /// Reads and dispatches until drained, closed, paused, or out of
    /// budget (then the connection goes on the ready list).
    pub(super) fn read(&mut self, id: ConnId) {
        let mut budget = self.core.config.read_budget;
        loop {
            let Some(conn) = self.core.conn_mut(id) else {
                return;
            };
            if !conn.readable || !conn.can_read() {
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
                Outcome::Data(n) => budget = budget.saturating_sub(n),
                Outcome::WouldBlock | Outcome::Closed => return,
                Outcome::Eof => return self.peer_closed(id),
            }
        }
    }

    /// A read into the scratch buffer; the handler consumes from there.
    fn read_scratch(&mut self, id: ConnId) -> Outcome {
        let Some(conn) = self.core.conn_mut(id) else {
            return Outcome::Closed;
        };
        let result = read_retrying(&mut &conn.stream, &mut self.scratch);
        let n = match self.settle(id, result, self.scratch.len()) {
            Ok(n) => n,
            Err(outcome) => return outcome,
        };
        let consumed = self.dispatch(id, n, None);
        if consumed < n {
            self.core.keep_input(id, &self.scratch[consumed..n]);
        }
        Outcome::Data(n)
    }

    /// A read while lingering: the bytes are dropped, unread by anyone.
    fn read_discard(&mut self, id: ConnId) -> Outcome {
        let Some(conn) = self.core.conn_mut(id) else {
            return Outcome::Closed;
        };
        let result = read_retrying(&mut &conn.stream, &mut self.scratch);
        match self.settle(id, result, self.scratch.len()) {
            Ok(n) => Outcome::Data(n),
            Err(outcome) => outcome,
        }
    }

    /// A read appended to the partial frame the connection holds.
    fn read_buffered(&mut self, id: ConnId) -> Outcome {
        let max_input = self.core.config.max_input;
        let Some(conn) = self.core.conn_mut(id) else {
            return Outcome::Closed;
        };
        let Some(mut input) = conn.input.take() else {
            return Outcome::WouldBlock;
        };
        let room = max_input
            .saturating_sub(input.len())
            .min(self.scratch.len());
        if room == 0 {
            // Full, and the handler found no frame in it last time.
            self.core.pool.give(input);
            self.core.kill(id, CloseReason::InputTooLarge);
            return Outcome::Closed;
        }
        // Into the scratch buffer, then only what came is appended: a
        // partial frame that trickles in costs each read its own bytes,
        // not a zero-filled 64 KiB of room in the connection's buffer.
        let result = read_retrying(&mut &conn.stream, &mut self.scratch[..room]);
        let n = match self.settle(id, result, room) {
            Ok(n) => n,
            Err(outcome) => {
                if let Some(conn) = self.core.conn_mut(id) {
                    conn.input = Some(input);
                } else {
                    self.core.pool.give(input);
                }
                return outcome;
            }
        };
        input.extend(&self.scratch[..n]);
        let consumed = self.dispatch(id, n, Some(input.as_slice()));
        input.consume(consumed);
        let keep = self.core.conn(id).is_some_and(|c| c.state().may_read());
        if !keep || input.is_empty() {
            self.core.pool.give(input);
        } else if input.len() >= max_input {
            self.core.pool.give(input);
            self.core.kill(id, CloseReason::InputTooLarge);
            return Outcome::Closed;
        } else if let Some(conn) = self.core.conn_mut(id) {
            conn.input = Some(input);
        }
        Outcome::Data(n)
    }

    /// Books a read's result: bytes counted, readiness cached, errors
    /// turned into close reasons. `Ok(n)` for `n > 0` bytes.
    fn settle(
        &mut self,
        id: ConnId,
        result: io::Result<usize>,
        offered: usize,
    ) -> Result<usize, Outcome> {
        let now = self.core.now;
        let Some(conn) = self.core.conn_mut(id) else {
            return Err(Outcome::Closed);
        };
        match result {
            Ok(0) => Err(Outcome::Eof),
            Ok(n) => {
                conn.last_read = now;
                if n < offered && !conn.fin_seen {
                    conn.readable = false; // a short read emptied the socket
                }
                self.core.stats.bytes_in += n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                conn.readable = false;
                Err(Outcome::WouldBlock)
            }
            Err(e) => {
                log::debug!("conn {id}: read: {e}");
                self.core.kill(id, CloseReason::from_io(&e));
                Err(Outcome::Closed)
            }
        }
    }

    /// Hands input to the handler: `buffered` if the connection had a
    /// partial frame, else the first `n` scratch bytes. Output the handler
    /// queues for this connection is written after, in one call. Returns
    /// bytes consumed (a handler claiming more than it got is held to what
    /// it got).
    fn dispatch(&mut self, id: ConnId, n: usize, buffered: Option<&[u8]>) -> usize {
        let input = buffered.unwrap_or(&self.scratch[..n]);
        self.core.dispatching = Some(id);
        let mut cx = Context {
            core: &mut self.core,
        };
        let consumed = self.handler.on_data(&mut cx, id, input);
        self.core.dispatching = None;
        if consumed > input.len() {
            log::warn!(
                "conn {id}: handler consumed {consumed} of {} bytes",
                input.len()
            );
        }
        consumed.min(input.len())
    }

    /// The peer's FIN: tell the handler, whose default closes once output
    /// is flushed.
    fn peer_closed(&mut self, id: ConnId) {
        let Some(conn) = self.core.conn_mut(id) else {
            return;
        };
        conn.readable = false;
        conn.eof = true;
        let index = id.index as usize;
        match conn.state() {
            // Our FIN went out first; now theirs came: done.
            State::Lingering(reason) => return self.core.kill(id, reason),
            State::Open => conn.set_state(index, State::ReadClosed),
            // Our FIN is queued: flush, then close.
            State::WriteClosing => conn.set_state(index, State::Draining(CloseReason::PeerClosed)),
            // Both FINs exchanged.
            State::WriteClosed => return self.core.kill(id, CloseReason::PeerClosed),
            _ => return,
        }
        self.core.dispatching = Some(id);
        let mut cx = Context {
            core: &mut self.core,
        };
        self.handler.on_read_closed(&mut cx, id);
        self.core.dispatching = None;
        self.core.push_flush(id);
    }
}

fn read_retrying(src: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match src.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            result => return result,
        }
    }
}
