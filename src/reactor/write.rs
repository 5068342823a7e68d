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
//! The seam: every byte to the socket goes through [`send`]. A TLS
//! connection's output is encrypted first (`send_some` hands it to
//! `send_sealed` in `tls.rs`), and nothing else here changes: the water
//! marks and limits count its plaintext.
//!
//! [`Context::write`]: crate::Context::write
//! [`Handler::on_drain`]: crate::Handler::on_drain

use std::fs::File;
use std::io;
use std::os::fd::AsFd;

use super::core::{Core, Lifecycle};
use super::tail::{waiting, Segment, Tail, Tails, SEGMENT_COST};
use super::Reactor;
use crate::conn::{CloseReason, Conn, ConnId, NEVER};
use crate::handler::{Handler, SendError};
use crate::state::{Event, State};
use crate::stream::Stream;
use crate::timer::Tick;

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
pub(super) fn send(stream: &Stream, bytes: &[u8]) -> io::Result<usize> {
    loop {
        match stream.write(bytes) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            result => return result,
        }
    }
}

/// What the handler queues: bytes to copy, or something handed over
/// whole (see `tail.rs`).
pub(crate) enum Queued<'a> {
    Copy(&'a [u8]),
    Whole(Segment),
}

impl Queued<'_> {
    /// What it adds to the weight the output limits count (see
    /// `tail.rs`).
    fn weight(&self) -> usize {
        match self {
            Queued::Copy(data) => data.len(),
            Queued::Whole(segment) => segment.in_memory() + SEGMENT_COST,
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Queued::Copy(data) => data.is_empty(),
            Queued::Whole(segment) => segment.is_done(),
        }
    }
}

/// At most this many writes per flush through a connection's tail: each
/// segment is a write, and a handler that queued thousands of small ones
/// must not hold the loop. Cut short, the connection goes on the flush
/// list and continues next step 6.
const TAIL_WRITES_PER_FLUSH: usize = 16;

/// The largest count one `sendfile(2)` call is asked for: the kernel
/// sends at most 0x7ffff000 bytes a call anyway, and the socket buffer
/// takes far less.
const SENDFILE_CHUNK: u64 = 1 << 30;

/// The seam for file ranges: `sendfile(2)` from `file` at `offset` to
/// the socket (`Interrupted` retried). Only a transport that sends the
/// file's bytes as they are can use it; an encrypting one reads the file
/// and goes through [`send`] instead.
fn send_file(stream: &Stream, file: &File, offset: u64, count: usize) -> io::Result<usize> {
    let Some(socket) = stream.fd() else {
        return Err(io::ErrorKind::WouldBlock.into());
    };
    loop {
        match crate::sys::sendfile(socket, file.as_fd(), offset, count) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            result => return result,
        }
    }
}

/// Sends from the front of a tail until the socket is full, the tail is
/// empty, or [`TAIL_WRITES_PER_FLUSH`]. Returns the bytes sent, and
/// whether the socket took all it was offered (it may take more).
fn send_tail(stream: &Stream, tail: &mut Tail) -> (usize, io::Result<bool>) {
    let mut sent = 0;
    for _ in 0..TAIL_WRITES_PER_FLUSH {
        let Some(segment) = tail.front_mut() else {
            break;
        };
        if segment.is_done() {
            // Nothing left in it (a handler's `AsRef` that answers less
            // than it did): finished, not a file that ended.
            tail.advance(0);
            continue;
        }
        // A short `sendfile` may mean the socket is full or that the
        // file ended early: only the next call tells (`WouldBlock` or 0),
        // so a file range goes round again instead of waiting for an edge
        // that may never come.
        let (result, offered) = match segment {
            Segment::File { file, offset, left } => {
                let count = (*left).min(SENDFILE_CHUNK) as usize;
                (send_file(stream, file, *offset, count), None)
            }
            other => {
                let bytes = other.bytes().unwrap_or_default();
                (send(stream, bytes), Some(bytes.len()))
            }
        };
        match result {
            // A file shorter than the range promised (truncated since):
            // there is nothing to send, and waiting would never end.
            Ok(0) => {
                let eof =
                    io::Error::new(io::ErrorKind::UnexpectedEof, "file ended inside the range");
                return (sent, Err(eof));
            }
            Ok(n) => {
                sent += n;
                tail.advance(n);
                if offered.is_some_and(|len| n < len) {
                    return (sent, Ok(false)); // the socket is full
                }
            }
            Err(e) => return (sent, Err(e)),
        }
    }
    (sent, Ok(true))
}

impl Core {
    /// Queues output (step 1 above): a copy into the connection's output
    /// buffer, borrowed from the pool if it had none.
    pub(crate) fn write(&mut self, id: ConnId, data: &[u8]) -> Result<(), SendError> {
        self.queue(id, Queued::Copy(data))
    }

    /// Queues output: a copy goes into the output buffer, or behind the
    /// tail if there is one (order is kept); a hand-over goes on the tail.
    pub(crate) fn queue(&mut self, id: ConnId, queued: Queued<'_>) -> Result<(), SendError> {
        let now = self.now();
        let (hard, high, soft) = {
            let l = self.limits(id);
            (l.hard_limit, l.high_water, l.soft_limit)
        };
        // Checked in to the upstream pool: the handler's id names a
        // connection that is gone (see `upstream.rs`).
        let conn = self
            .conn(id)
            .filter(|c| !c.state().is_closed() && !c.pooled)
            .ok_or(SendError::Gone)?;
        if !conn.state().accepts_output() {
            return Err(SendError::Closing);
        }
        if queued.is_empty() {
            return Ok(());
        }
        let len = self.waiting(id).weight + queued.weight();
        if len > hard {
            log::debug!("conn {id}: output {len} bytes passes the hard limit");
            self.abort(id, CloseReason::SlowConsumer);
            return Err(SendError::SlowConsumer);
        }
        let needs_buffer = matches!(queued, Queued::Copy(_)) && !conn.tail && conn.output.is_none();
        let fresh = needs_buffer.then(|| self.take_buffer());
        let Some((conn, tails)) = self.conn_and_tails(id) else {
            // Not reached (nothing ran since the look above), but a buffer
            // taken from the pool goes back to it.
            if let Some(buffer) = fresh {
                self.give_buffer(buffer);
            }
            return Err(SendError::Gone);
        };
        if !conn.has_output() {
            // Output starts waiting now: the write deadline counts from
            // here.
            conn.last_write = now;
        }
        if let Some(buffer) = fresh {
            conn.output = Some(buffer);
        }
        match queued {
            Queued::Copy(data) if conn.tail => tails.entry(id.index).push_copy(data),
            Queued::Copy(data) => conn.output.get_or_insert_with(Box::default).extend(data),
            Queued::Whole(segment) => {
                tails.entry(id.index).push(segment);
                conn.tail = true;
            }
        }
        let capacity = held_output(conn, tails, id);
        let waiting = waiting(conn, tails, id);
        if waiting.marks > high {
            conn.backpressured = true;
        }
        let newly_soft = waiting.weight > soft && conn.soft_since == NEVER;
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
        } else if self.conn(id).is_some_and(|c| c.has_output()) {
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

    /// One `write` of the buffer through the seam, then the tail's, if
    /// the state allows and the socket took the last one whole. `Err`
    /// when that aborted the connection.
    fn send_output(&mut self, id: ConnId) -> Result<(), ()> {
        let now = self.now();
        // Sending a tail asks the handler's `AsRef` for its bytes: should
        // it panic, this connection is the one reset (see `recover`).
        let outer = self.dispatching();
        if self.conn(id).is_some_and(|c| c.tail) {
            self.set_dispatching(Some(id));
        }
        let sent = self.send_some(id, now);
        self.set_dispatching(outer);
        sent
    }

    fn send_some(&mut self, id: ConnId, now: Tick) -> Result<(), ()> {
        #[cfg(feature = "tls")]
        if self.conn(id).is_some_and(|c| c.tls) {
            return self.send_sealed(id, now);
        }
        let Some((conn, tails)) = self.conn_and_tails(id) else {
            return Err(());
        };
        if !(conn.writable && conn.state().may_write()) {
            return Ok(());
        }
        let mut sent = 0;
        let mut result = Ok(true);
        if let Some(out) = conn.output.as_mut() {
            result = send(&conn.stream, out.as_slice()).map(|n| {
                out.consume(n);
                sent += n;
                out.is_empty()
            });
        }
        let mut more = false;
        if conn.tail && matches!(result, Ok(true)) {
            if let Some(tail) = tails.get_mut(id.index) {
                let (n, tail_result) = send_tail(&conn.stream, tail);
                sent += n;
                result = tail_result;
                more = matches!(result, Ok(true)) && !tail.is_empty();
            }
        }
        if sent > 0 {
            conn.last_write = now;
        }
        self.counters().bytes_out += sent as u64;
        let Some(conn) = self.conn_mut(id) else {
            return Err(());
        };
        match result {
            Ok(took_all) => {
                conn.writable = took_all;
                if more {
                    // Cut short by the cap, not by the socket.
                    self.push_flush(id);
                }
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

    /// After a write: the emptied buffer back to the pool, a finished tail
    /// out of the table, the budget's count, the soft-limit clock, the
    /// water marks.
    fn settle_output(&mut self, id: ConnId) -> Option<Settled> {
        let limits = self.limits(id);
        let (soft, low) = (limits.soft_limit, limits.low_water);
        let (conn, tails) = self.conn_and_tails(id)?;
        if conn.tail && tails.get(id.index).is_none_or(Tail::is_empty) {
            tails.remove(id.index);
            conn.tail = false;
        }
        let waiting = waiting(conn, tails, id);
        if waiting.weight <= soft {
            conn.soft_since = NEVER;
        }
        let drained = conn.backpressured && waiting.marks <= low;
        if drained {
            conn.backpressured = false;
        }
        // Asked of the machine here, so a state that makes nothing of
        // empty output (most of them) costs no more than this.
        let flushed = Event::Flushed { fin_read: conn.eof };
        let empty = !conn.has_output();
        let flushed = (empty && conn.state().on(flushed).is_some()).then_some(flushed);
        let emptied = if conn.output_len() == 0 {
            conn.output.take()
        } else {
            None
        };
        let capacity = held_output(conn, tails, id);
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

/// What `conn`'s output counts against the reactor-wide budget: its
/// buffer's capacity, and what its tail copied.
fn held_output(conn: &Conn, tails: &Tails, id: ConnId) -> usize {
    let buffer = conn.output.as_ref().map_or(0, |b| b.capacity());
    let tail = match conn.tail {
        true => tails.get(id.index).map_or(0, Tail::copied),
        false => 0,
    };
    buffer + tail
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
