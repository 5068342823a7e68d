//! Memory across connections: one budget for the bytes waiting in every
//! connection's buffers.
//!
//! Per-connection limits (`max_input`, `hard_limit`) bound one peer, not a
//! server: 10,000 connections each trickling a frame just under its input
//! limit hold 10 GiB, and 10,000 that read nothing of their answers hold
//! more. So every byte a connection's buffers take is counted twice, in
//! the connection (`Conn::held`) and in the reactor's sum
//! (`Core::buffered`), and the sum is held under `Config::max_buffered`:
//! past it, the connections holding the most are closed, as Redis's
//! `maxmemory-clients` does.
//!
//! Bytes are counted where they enter a buffer (`write`, `keep_input`, a
//! read appended to held input) and uncounted where they leave (the
//! socket took them, the handler consumed them, the connection closed:
//! `kill` returns its buffers at once). The budget counts bytes waiting,
//! not capacity: a buffer's capacity is at most twice its bytes or
//! 256 KiB, whichever is larger (`Buffer::consume` shrinks it).

use super::core::{live, Core};
use crate::conn::{CloseReason, ConnId};

impl Core {
    /// Counts `n` more bytes held by `id` against the reactor-wide budget;
    /// past it, closes the largest holders. A closed connection holds
    /// nothing (its buffers went back when it closed).
    pub(crate) fn hold(&mut self, id: ConnId, n: usize) {
        let Some(conn) = live(&mut self.conns, id) else {
            return;
        };
        if conn.state().is_closed() {
            return;
        }
        conn.held += n;
        self.buffered += n;
        if self.buffered > self.config.max_buffered {
            self.shed();
        }
    }

    /// `id` holds `n` bytes fewer (consumed, written, or freed).
    pub(crate) fn unhold(&mut self, id: ConnId, n: usize) {
        if let Some(conn) = live(&mut self.conns, id) {
            let n = n.min(conn.held);
            conn.held -= n;
            self.buffered -= n;
        }
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
            .filter(|(_, c)| c.held > 0 && !c.state().is_closed())
            .map(|(i, c)| {
                let id = ConnId {
                    index: i as u32,
                    generation: c.generation,
                };
                (c.held, id)
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
