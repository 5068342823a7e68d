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

use super::core::{live, Core};
use crate::conn::{CloseReason, ConnId};

/// A connection's two buffers.
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

    /// A closed connection counts nothing: `kill` returned its buffers and
    /// its count at once. Returns whether the budget was passed.
    fn count(&mut self, id: ConnId, capacity: usize, side: Side) -> bool {
        let Some(conn) = live(&mut self.conns, id) else {
            return false;
        };
        if conn.state().is_closed() {
            return false;
        }
        let counted = match side {
            Side::Input => &mut conn.held.input,
            Side::Output => &mut conn.held.output,
        };
        let grew = capacity > *counted;
        self.buffered = self.buffered + capacity - *counted;
        *counted = capacity;
        let passed = grew && self.buffered > self.config.max_buffered;
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
    pub(super) fn shed(&mut self) {
        let mut holders: Vec<(usize, ConnId)> = self
            .conns
            .iter()
            .filter(|(_, c)| c.held.total() > 0 && !c.state().is_closed())
            .map(|(i, c)| {
                let id = ConnId {
                    index: i as u32,
                    generation: c.generation,
                };
                (c.held.total(), id)
            })
            .collect();
        holders.sort_unstable_by_key(|&(held, _)| std::cmp::Reverse(held));
        let before = self.buffered;
        let mut closed = 0;
        for (_, id) in holders {
            if self.buffered <= self.config.max_buffered {
                break;
            }
            self.kill(id, CloseReason::OverBudget);
            closed += 1;
        }
        log::warn!(
            "buffers hold {before} bytes, past max_buffered ({}): closed the {closed} largest holders",
            self.config.max_buffered
        );
    }
}
