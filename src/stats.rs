//! Counters the reactor keeps as it runs, and the snapshot it hands out.

use std::fmt;

use crate::conn::CloseReason;

/// A snapshot of the reactor's counters ([`Reactor::stats`],
/// [`Context::stats`]). Counters only grow; `active`, `buffers_*` are
/// levels at the moment of the snapshot.
///
/// [`Reactor::stats`]: crate::Reactor::stats
/// [`Context::stats`]: crate::Context::stats
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections accepted from listeners.
    pub accepted: u64,
    /// Outbound connects started.
    pub connects: u64,
    /// Accept calls that failed for a reason other than `WouldBlock`.
    pub accept_errors: u64,
    /// Connections open now (accepted and outbound).
    pub active: usize,
    /// The most connections open at once.
    pub peak: usize,
    /// Connections closed, by [`CloseReason::index`].
    pub closed: [u64; CloseReason::COUNT],
    /// Bytes read from and written to sockets.
    pub bytes_in: u64,
    /// See `bytes_in`.
    pub bytes_out: u64,
    /// Turns of the loop (`run_once` calls).
    pub turns: u64,
    /// Readiness events handled.
    pub events: u64,
    /// Timers that fired (connection deadlines and user timers).
    pub timers_fired: u64,
    /// Empty buffers waiting in the pool.
    pub buffers_pooled: usize,
    /// Buffers held by connections.
    pub buffers_in_use: usize,
}

impl Stats {
    /// Connections closed for `reason`'s kind.
    pub fn closed_for(&self, reason: CloseReason) -> u64 {
        self.closed[reason.index()]
    }

    /// All closed connections.
    pub fn closed_total(&self) -> u64 {
        self.closed.iter().sum()
    }
}

impl fmt::Display for Stats {
    /// One line of `key=value` pairs, zero close counts left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "accepted={} connects={} active={} peak={} bytes_in={} bytes_out={} turns={} events={} timers_fired={} accept_errors={} buffers_pooled={} buffers_in_use={}",
            self.accepted,
            self.connects,
            self.active,
            self.peak,
            self.bytes_in,
            self.bytes_out,
            self.turns,
            self.events,
            self.timers_fired,
            self.accept_errors,
            self.buffers_pooled,
            self.buffers_in_use
        )?;
        for (name, n) in CloseReason::NAMES.iter().zip(self.closed) {
            if n > 0 {
                write!(f, " closed_{name}={n}")?;
            }
        }
        Ok(())
    }
}
