//! Counters the reactor keeps as it runs, and the snapshot it hands out.

use std::fmt;

use crate::admission::RejectReason;
use crate::conn::{CloseReason, TlsFailure};

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
    /// Connections turned away at accept, by [`RejectReason::index`].
    pub rejected: [u64; RejectReason::COUNT],
    /// Times accepting paused because the process ran out of descriptors
    /// (`EMFILE`, `ENFILE`) or kernel memory: one per episode.
    pub accept_pauses: u64,
    /// Connections closed once quiet during graceful shutdown (with FIN,
    /// before the deadline).
    pub shutdown_closed: u64,
    /// Connections cut by the shutdown deadline or a second signal.
    pub shutdown_cut: u64,
    /// Bytes read from and written to sockets.
    pub bytes_in: u64,
    /// See `bytes_in`.
    pub bytes_out: u64,
    /// Turns of the loop (`run_once` calls).
    pub turns: u64,
    /// Readiness events handled.
    pub events: u64,
    /// Naps taken before a poll, coalescing wake-ups
    /// ([`Config::coalesce`](crate::Config::coalesce)).
    pub naps: u64,
    /// Timers that fired (connection deadlines and user timers).
    pub timers_fired: u64,
    /// Timers on the wheel now: connection deadlines (idle, write,
    /// soft limit, connect, linger), the reactor's own (the shutdown
    /// deadline, an accept paused after an error) and the handler's.
    pub timers: usize,
    /// Empty buffers waiting in the pool.
    pub buffers_pooled: usize,
    /// Buffers held by connections.
    pub buffers_in_use: usize,
    /// Memory held by all connections' buffers now (their capacity: input
    /// the handlers left, output the sockets have not taken): what
    /// [`Config::max_buffered`](crate::Config::max_buffered) bounds.
    pub buffered_bytes: usize,
    /// Capacity kept by the pool of empty buffers now.
    pub pooled_bytes: usize,
    /// Upstream pool checkouts served by an idle connection.
    pub pool_hits: u64,
    /// Upstream pool checkouts that had to connect.
    pub pool_misses: u64,
    /// Pooled connections closed by the pool's bounds: per address, in
    /// all, its idle timeout, or used enough.
    pub pool_evicted: u64,
    /// Pooled connections found closed, reset or sent to while idle.
    pub pool_found_dead: u64,
    /// Connections idle in the upstream pool now (a level).
    pub pool_idle: usize,
    /// Connects the pool made to keep warm connections ready.
    pub pool_warm: u64,
    /// TLS handshakes completed (feature `tls`).
    pub tls_handshakes: u64,
    /// Their time added up, in microseconds, from accept to the last
    /// handshake record (each measured between the turns that saw them):
    /// divided by `tls_handshakes`, the mean.
    pub tls_handshake_us: u64,
    /// TLS sessions that failed, by [`TlsFailure::index`] (each also
    /// closed as [`CloseReason::Tls`]).
    pub tls_failed: [u64; TlsFailure::COUNT],
    /// TLS connections whose peer ended with a bare FIN, without
    /// close_notify: the last thing it sent may have been cut short.
    pub tls_truncated: u64,
}

impl Stats {
    /// Adds `other`'s counters and levels to these (a server's shards
    /// summed; see `ServerStats`).
    pub fn add(&mut self, other: &Stats) {
        let Stats {
            accepted,
            connects,
            accept_errors,
            active,
            peak,
            closed,
            rejected,
            accept_pauses,
            shutdown_closed,
            shutdown_cut,
            bytes_in,
            bytes_out,
            turns,
            events,
            naps,
            timers_fired,
            timers,
            buffers_pooled,
            buffers_in_use,
            buffered_bytes,
            pooled_bytes,
            pool_hits,
            pool_misses,
            pool_evicted,
            pool_found_dead,
            pool_idle,
            pool_warm,
            tls_handshakes,
            tls_handshake_us,
            tls_failed,
            tls_truncated,
        } = other;
        self.accepted += accepted;
        self.connects += connects;
        self.accept_errors += accept_errors;
        self.active += active;
        self.peak += peak;
        for (a, b) in self.closed.iter_mut().zip(closed) {
            *a += b;
        }
        for (a, b) in self.rejected.iter_mut().zip(rejected) {
            *a += b;
        }
        self.accept_pauses += accept_pauses;
        self.shutdown_closed += shutdown_closed;
        self.shutdown_cut += shutdown_cut;
        self.bytes_in += bytes_in;
        self.bytes_out += bytes_out;
        self.turns += turns;
        self.events += events;
        self.naps += naps;
        self.timers_fired += timers_fired;
        self.timers += timers;
        self.buffers_pooled += buffers_pooled;
        self.buffers_in_use += buffers_in_use;
        self.buffered_bytes += buffered_bytes;
        self.pooled_bytes += pooled_bytes;
        self.pool_hits += pool_hits;
        self.pool_misses += pool_misses;
        self.pool_evicted += pool_evicted;
        self.pool_found_dead += pool_found_dead;
        self.pool_idle += pool_idle;
        self.pool_warm += pool_warm;
        self.tls_handshakes += tls_handshakes;
        self.tls_handshake_us += tls_handshake_us;
        for (a, b) in self.tls_failed.iter_mut().zip(tls_failed) {
            *a += b;
        }
        self.tls_truncated += tls_truncated;
    }

    /// Connections closed for `reason`'s kind.
    pub fn closed_for(&self, reason: CloseReason) -> u64 {
        self.closed[reason.index()]
    }

    /// All closed connections.
    pub fn closed_total(&self) -> u64 {
        self.closed.iter().sum()
    }

    /// TLS sessions that failed for `failure`.
    pub fn tls_failed_for(&self, failure: TlsFailure) -> u64 {
        self.tls_failed[failure.index()]
    }

    /// Connections rejected for `reason`.
    pub fn rejected_for(&self, reason: RejectReason) -> u64 {
        self.rejected[reason.index()]
    }
}

impl fmt::Display for Stats {
    /// One line of `key=value` pairs, zero close counts left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "accepted={} connects={} active={} peak={} bytes_in={} bytes_out={} turns={} events={} timers_fired={} timers={} accept_errors={} buffers_pooled={} buffers_in_use={} buffered_bytes={} pooled_bytes={} naps={}",
            self.accepted,
            self.connects,
            self.active,
            self.peak,
            self.bytes_in,
            self.bytes_out,
            self.turns,
            self.events,
            self.timers_fired,
            self.timers,
            self.accept_errors,
            self.buffers_pooled,
            self.buffers_in_use,
            self.buffered_bytes,
            self.pooled_bytes,
            self.naps
        )?;
        for (name, n) in CloseReason::NAMES.iter().zip(self.closed) {
            if n > 0 {
                write!(f, " closed_{name}={n}")?;
            }
        }
        for (name, n) in RejectReason::NAMES.iter().zip(self.rejected) {
            if n > 0 {
                write!(f, " rejected_{name}={n}")?;
            }
        }
        if self.accept_pauses > 0 {
            write!(f, " accept_pauses={}", self.accept_pauses)?;
        }
        if self.pool_hits + self.pool_misses > 0 {
            write!(
                f,
                " pool_hits={} pool_misses={} pool_evicted={} pool_found_dead={} pool_idle={}",
                self.pool_hits,
                self.pool_misses,
                self.pool_evicted,
                self.pool_found_dead,
                self.pool_idle
            )?;
        }
        if self.tls_handshakes > 0 {
            write!(
                f,
                " tls_handshakes={} tls_handshake_us={}",
                self.tls_handshakes, self.tls_handshake_us
            )?;
        }
        for (name, n) in TlsFailure::NAMES.iter().zip(self.tls_failed) {
            if n > 0 {
                write!(f, " tls_failed_{name}={n}")?;
            }
        }
        if self.tls_truncated > 0 {
            write!(f, " tls_truncated={}", self.tls_truncated)?;
        }
        if self.shutdown_closed + self.shutdown_cut > 0 {
            write!(
                f,
                " shutdown_closed={} shutdown_cut={}",
                self.shutdown_closed, self.shutdown_cut
            )?;
        }
        Ok(())
    }
}
