//! The write side: handler -> socket. The twin of `read.rs`.
//!
//! 1. **Queue.** [`Context::write`] appends to the connection's output
//!    buffer (borrowed from the pool when it had none) and checks the
//!    limits: past the hard limit the connection is aborted as a slow
//!    consumer; past the high-water mark reading stops (backpressure);
//!    past the soft limit a grace period starts. Nothing is written yet.
//! 2. **Flush.** At the end of the serve that queued it (or in step 6
//!    for output queued from elsewhere: a timer, a posted message, another
//!    connection), one `write` call takes what the socket will. A short
//!    write means the socket buffer is full: the rest waits for the next
//!    writable edge (`writable` is cleared), and the write-stall deadline
//!    is armed.
//! 3. **Settle.** An emptied buffer goes back to the pool; the soft-limit
//!    clock stops below the soft limit; output at or under the low-water
//!    mark after backpressure is a *drain*: reading resumes and the
//!    handler hears [`Handler::on_drain`]. Empty output is the state
//!    machine's `Flushed` event: a queued FIN goes, or a close proceeds to
//!    linger.
//!
//! The seam: every byte to the socket goes through [`send`]. A transport
//! that encrypts (TLS) goes there, and nothing else here changes.
//!
//! [`Context::write`]: crate::Context::write
//! [`Handler::on_drain`]: crate::Handler::on_drain

use std::io::{self, Write};

use mio::net::TcpStream;

use super::core::{Core, Lifecycle};
use super::Reactor;
use crate::conn::{CloseReason, ConnId, NEVER};
use crate::handler::{Handler, SendError};
use crate::state::{Event, State};

/// What a flush leaves for the handler to hear.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flush {
    /// Output fell to the low-water mark after passing the high one: the
    /// handler hears `on_drain`.
    Drained,
    /// Nothing to tell.
    Done,
}

/// What a write left to do.
struct Settled {
    /// Output fell to the low-water mark after backpressure.
    drained: bool,
    /// Output is empty, and that is an event for the state machine.
    flushed: Option<Event>,
}

/// The seam on the write side: bytes leave for the socket here, one
/// `write` call (`Interrupted` retried). A short count or `WouldBlock`
/// means the socket buffer is full.
fn send(stream: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    loop {
        match (&*stream).write(bytes) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            result => return result,
        }
    }
}

impl Core {
    /// Queues output (step 1 above). The bytes go into the connection's
    /// output buffer, borrowed from the pool if it had none.
    pub(crate) fn write(&mut self, id: ConnId, data: &[u8]) -> Result<(), SendError> {
        let now = self.now();
        let (hard, high, soft) = {
            let l = self.limits(id);
            (l.hard_limit, l.high_water, l.soft_limit)
        };
        let conn = self
            .conn(id)
            .filter(|c| !c.state().is_closed())
            .ok_or(SendError::Gone)?;
        if !conn.state().accepts_output() {
            return Err(SendError::Closing);
        }
        if data.is_empty() {
            return Ok(());
        }
        let len = conn.output_len() + data.len();
        if len > hard {
            log::debug!("conn {id}: output {len} bytes passes the hard limit");
            self.abort(id, CloseReason::SlowConsumer);
            return Err(SendError::SlowConsumer);
        }
        let fresh = if conn.output.is_none() {
            Some(self.take_buffer())
        } else {
            None
        };
        let Some(conn) = self.conn_mut(id) else {
            // Not reached (nothing ran since the look above), but a buffer
            // taken from the pool goes back to it.
            if let Some(buffer) = fresh {
                self.give_buffer(buffer);
            }
            return Err(SendError::Gone);
        };
        if let Some(buffer) = fresh {
            // Output starts waiting now: the write deadline counts from
            // here.
            conn.last_write = now;
            conn.output = Some(buffer);
        }
        let Some(out) = conn.output.as_mut() else {
            return Err(SendError::Gone);
        };
        out.extend(data);
        let capacity = out.capacity();
        if len > high {
            conn.backpressured = true;
        }
        let newly_soft = len > soft && conn.soft_since == NEVER;
        if newly_soft {
            conn.soft_since = now;
        }
        if self.dispatching() != Some(id) {
            self.push_flush(id);
        }
        if newly_soft {
            self.arm(id);
        }
        // Only when the budget was passed can this write have closed it.
        let shed = self.count_output(id, capacity);
        let state = self.conn(id).map(|c| c.state());
        if shed && state == Some(State::Closed(CloseReason::OverBudget)) {
            return Err(SendError::OverBudget);
        }
        Ok(())
    }

    /// Flushes and settles (steps 2 and 3 above): one `write` of the
    /// waiting output, then what empty output means to the state machine.
    pub(crate) fn flush(&mut self, id: ConnId) -> Flush {
        if self.send_output(id).is_err() {
            return Flush::Done;
        }
        let Some(Settled { drained, flushed }) = self.settle_output(id) else {
            return Flush::Done;
        };
        if let Some(event) = flushed {
            // Empty output means something to this state (a FIN waits, or
            // a close goes on).
            self.apply(id, event);
            let state = self.conn(id).map(|c| c.state());
            if matches!(state, None | Some(State::Lingering(_) | State::Closed(_))) {
                // The close went on: there is no reading left to resume.
                return Flush::Done;
            }
        } else if self.conn(id).is_some_and(|c| c.output.is_some()) {
            // The socket refused some: make sure the write deadline is
            // armed (a no-op while it already is).
            self.arm(id);
        }
        if drained {
            self.push_ready(id);
            return Flush::Drained;
        }
        Flush::Done
    }

    /// One `write` through the seam, if the state allows and the socket
    /// took the last one whole. `Err` when that aborted the connection.
    fn send_output(&mut self, id: ConnId) -> Result<(), ()> {
        let now = self.now();
        let Some(conn) = self.conn_mut(id) else {
            return Err(());
        };
        if !(conn.writable && conn.state().may_write()) {
            return Ok(());
        }
        let Some(out) = conn.output.as_mut() else {
            return Ok(());
        };
        match send(&conn.stream, out.as_slice()) {
            Ok(n) => {
                out.consume(n);
                conn.last_write = now;
                conn.writable = out.is_empty();
                self.counters().bytes_out += n as u64;
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                conn.writable = false;
                Ok(())
            }
            Err(e) => {
                self.abort(id, CloseReason::from_io(&e));
                Err(())
            }
        }
    }

    /// After a write: the emptied buffer back to the pool, the budget's
    /// count, the soft-limit clock, the water marks.
    fn settle_output(&mut self, id: ConnId) -> Option<Settled> {
        let limits = self.limits(id);
        let (soft, low) = (limits.soft_limit, limits.low_water);
        let conn = self.conn_mut(id)?;
        let len = conn.output_len();
        if len <= soft {
            conn.soft_since = NEVER;
        }
        let drained = conn.backpressured && len <= low;
        if drained {
            conn.backpressured = false;
        }
        // Asked of the machine here, so a state that makes nothing of
        // empty output (most of them) costs no more than this.
        let flushed = Event::Flushed { fin_read: conn.eof };
        let flushed = (len == 0 && conn.state().on(flushed).is_some()).then_some(flushed);
        let emptied = if len == 0 { conn.output.take() } else { None };
        let capacity = conn.output.as_ref().map_or(0, |b| b.capacity());
        let recount = capacity != conn.held.output;
        if let Some(buffer) = emptied {
            self.give_buffer(buffer);
        }
        if recount {
            // What the socket took may have freed the buffer: the count
            // only shrinks here, so this never sheds.
            self.count_output(id, capacity);
        }
        Some(Settled { drained, flushed })
    }
}

impl<H: Handler> Reactor<H> {
    /// Flushes a connection's output; tells the handler if that drained
    /// it; during graceful shutdown, closes it once it is quiet.
    pub(super) fn flush(&mut self, id: ConnId) {
        if self.core.flush(id) == Flush::Drained {
            self.drained(id);
        }
        self.tell_written(id);
        if self.core.lifecycle() == Lifecycle::ShuttingDown {
            self.close_if_quiet(id);
        }
    }

    /// The output is all written and the handler asked to hear it
    /// (`Context::notify_flushed`): `on_flushed`, once per request.
    pub(super) fn tell_written(&mut self, id: ConnId) {
        if self.core.take_written(id) {
            self.dispatch(None, |h, cx| h.on_flushed(cx, id));
        }
    }

    /// Output fell to the low-water mark: tell the handler, and offer
    /// the input it left while it could not answer (the connection is on
    /// the ready list already).
    pub(super) fn drained(&mut self, id: ConnId) {
        if let Some(conn) = self.core.conn_mut(id) {
            conn.reoffer = conn.input.is_some();
        }
        self.dispatch(None, |h, cx| h.on_drain(cx, id));
    }
}
