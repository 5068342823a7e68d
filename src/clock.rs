//! Time as an input. The reactor reads its [`Clock`] once per turn and
//! passes the reading down; nothing else in the crate asks what time it
//! is. A test hands the reactor a [`ManualClock`] and moves time itself,
//! so an idle timeout of a minute is tested in a millisecond and cannot
//! flake on a slow machine ([`Reactor::with_clock`]).
//!
//! [`Reactor::with_clock`]: crate::Reactor::with_clock

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the reactor reads the time.
pub trait Clock: Send {
    /// The time now. Must never go backwards.
    fn now(&self) -> Instant;
}

/// The operating system's monotonic clock ([`Instant::now`]): the
/// reactor's default.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to: for tests. Clones share one
/// time, so a test keeps a clone and [`advance`](Self::advance)s it
/// while the reactor reads another.
///
/// The reactor still sleeps in `epoll_wait` for real: a test drives it
/// with [`Reactor::run_once`] and a short `max_wait`, then advances the
/// clock past a deadline; the next turn fires what is due.
///
/// [`Reactor::run_once`]: crate::Reactor::run_once
#[derive(Clone, Debug)]
pub struct ManualClock {
    start: Instant,
    /// Nanoseconds since `start`.
    elapsed: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock standing at the moment it is made.
    pub fn new() -> Self {
        ManualClock {
            start: Instant::now(),
            elapsed: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Moves time forward by `by` (saturating at about 584 years).
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        let _ = self
            .elapsed
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |e| {
                Some(e.saturating_add(nanos))
            });
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + Duration::from_nanos(self.elapsed.load(Ordering::SeqCst))
    }
}
