//! Memory across connections: one budget for the bytes waiting in every
//! connection's buffers.
//!
//! Per-connection limits (`max_input`, `hard_limit`) bound one peer, not a
//! server: 10,000 connections each trickling a frame just under its input
//! limit hold 10 GiB, and 10,000 that read nothing of their answers hold
//! more. So what a connection's buffers take is counted twice, in the
//! connection (`Conn::held`) and in the reactor's sum (`Core::buffered`),
//! and the sum is held under `Config::max_buffered`:
//! past it, the connections holding the most are closed, as Redis's
//! `maxmemory-clients` does.
//!
//! What is counted is the buffers' *capacity*, the memory they really
//! hold, not the bytes waiting in them: a peer that grows a buffer with
//! one large frame and then leaves one byte in it must not pin the memory
//! unseen. The count is set wherever a buffer can change size (`write`,
//! `flush`, `keep_input`, a read appended to held input, the handler
//! consuming it) and dropped where it goes (`close`, `kill`, the peer's
//! FIN). A buffer lent to the handler for a dispatch stays counted. Empty
//! buffers in the pool are not counted here: the pool bounds its own
//! bytes (`Config::pool_bytes`).

use super::core::Core;
use crate::conn::{CloseReason, ConnId};

/// The sum of every connection's buffer capacity, and its bound.
pub(crate) struct Budget {
    held: usize,
    max: usize,
}

impl Budget {
    pub(crate) fn new(max: usize) -> Self {
        Budget { held: 0, max }
    }

    /// Bytes of buffer capacity all connections hold now.
    pub(crate) fn held(&self) -> usize {
        self.held
    }

    /// The sum is over `Config::max_buffered`.
    pub(crate) fn passed(&self) -> bool {
        self.held > self.max
    }

    /// One buffer's count goes from `old` to `new`. Returns whether that
    /// grew the sum past the bound: the caller closes the largest holders
    /// (`Core::shed`).
    fn change(&mut self, old: usize, new: usize) -> bool {
        self.held = self.held + new - old;
        new > old && self.passed()
    }

    /// A closed connection's count leaves the sum.
    pub(crate) fn forget(&mut self, held: usize) {
        self.held -= held;
    }
}

/// Which of a connection's two buffers.
#[derive(Clone, Copy)]
enum Side {
    Input,
    Output,
}

impl Core {
    /// `id`'s input buffer now has `capacity` bytes (0: it has none); past
    /// the budget, the largest holders are closed.
    pub(crate) fn count_input(&mut self, id: ConnId, capacity: usize) {
        let _ = self.count(id, capacity, Side::Input);
    }

    /// `id`'s output buffer now has `capacity` bytes (0: it has none).
    /// Returns whether that passed the budget (and closed the largest
    /// holders, which may be `id` itself).
    pub(crate) fn count_output(&mut self, id: ConnId, capacity: usize) -> bool {
        self.count(id, capacity, Side::Output)
    }

    /// A TLS session's buffers went from `old` to `new` bytes (the
    /// session keeps its own count; see `tls.rs`).
    #[cfg(feature = "tls")]
    pub(crate) fn count_tls(&mut self, old: usize, new: usize) {
        if self.budget().change(old, new) {
            self.shed();
        }
    }

    /// A closed connection counts nothing: `Core::release` returned its
    /// buffers and its count at once.
    fn count(&mut self, id: ConnId, capacity: usize, side: Side) -> bool {
        let Some(conn) = self.conn_mut(id).filter(|c| !c.state().is_closed()) else {
            return false;
        };
        let counted = match side {
            Side::Input => &mut conn.held.input,
            Side::Output => &mut conn.held.output,
        };
        let old = std::mem::replace(counted, capacity);
        let passed = self.budget().change(old, capacity);
        if passed {
            self.shed();
        }
        passed
    }

    /// The buffers passed `max_buffered`: close the connections holding
    /// the most until the rest fits, as Redis's `maxmemory-clients` does.
    /// A peer that trickles a large partial frame, or reads nothing of a
    /// large answer, is the one that pays, not the well-behaved ones.
    ///
    /// Costs a scan of the connections and a sort of those holding bytes;
    /// it runs only when the budget is passed, and every run closes at
    /// least one connection, so a peer cannot make it run for free.
    fn shed(&mut self) {
        let mut holders: Vec<(usize, ConnId)> = self
            .open_ids()
            .into_iter()
            .map(|id| (self.holding(id), id))
            .filter(|&(held, _)| held > 0)
            .collect();
        holders.sort_unstable_by_key(|&(held, _)| std::cmp::Reverse(held));
        let before = self.budget().held();
        let mut closed = 0;
        for (_, id) in holders {
            if !self.budget().passed() {
                break;
            }
            self.abort(id, CloseReason::OverBudget);
            closed += 1;
        }
        log::warn!(
            "buffers hold {before} bytes, past max_buffered ({}): closed the {closed} largest holders",
            self.config().max_buffered
        );
    }
}
