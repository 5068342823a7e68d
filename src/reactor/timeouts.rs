//! Time in the reactor: the clock reading of the turn, and every
//! connection's deadlines on the wheel.
//!
//! The clock ([`Clock`]) is read once per turn, after the poll (a turn
//! that slept 59 s and then read a byte must stamp that byte with the time
//! it came, or the idle timer would count the sleep as idleness), and the
//! reading is passed down as a [`Tick`]: milliseconds since the reactor
//! started.
//!
//! A connection has one timer on the wheel, armed for its earliest
//! deadline: idle, write stall (output waiting without progress), the
//! soft output limit's grace, connect, linger. I/O only records the tick
//! it happened (`last_read`, `last_write`); when the timer fires, the
//! reactor checks what has really passed and re-arms for the rest: the
//! *lazy re-arm*. So an I/O event never touches the wheel, and the only
//! cancels are the rare deadline that moves earlier.

use std::time::{Duration, Instant};

use super::core::Core;
use super::settings::Limits;
use crate::clock::Clock;
use crate::config::LINGER_TIMEOUT;
use crate::conn::{CloseReason, Conn, ConnId, TlsFailure, NEVER};
use crate::state::State;
use crate::timer::{Tick, TimerId};

/// What a timer on the reactor's wheel is for.
#[derive(Clone, Copy, Debug)]
pub(crate) enum TimerEvent {
    /// A connection's deadline (idle, write, soft limit, connect, linger).
    Conn(ConnId),
    /// A handler's timer.
    User(u64),
    /// Graceful shutdown ran out of time.
    ShutdownDeadline,
    /// Accepting on this listener was paused after an error; try again.
    AcceptResume(usize),
}

/// The turn's clock reading.
pub(crate) struct Time {
    clock: Box<dyn Clock>,
    /// Tick 0.
    start: Instant,
    /// This turn's reading, as an instant and as a tick.
    now_instant: Instant,
    now: Tick,
}

impl Time {
    pub(crate) fn new(clock: Box<dyn Clock>) -> Self {
        let start = clock.now();
        Time {
            clock,
            start,
            now_instant: start,
            now: 0,
        }
    }

    /// Reads the clock: once per turn. A clock that goes backwards (a
    /// custom [`Clock`] breaking its promise) is held where it was: time
    /// that went back would make every turn fire and re-arm timers the
    /// wheel already counts as due.
    pub(crate) fn read(&mut self) {
        self.now_instant = self.now_instant.max(self.clock.now());
        self.now = millis(self.now_instant.saturating_duration_since(self.start));
    }

    pub(crate) fn now(&self) -> Tick {
        self.now
    }

    pub(crate) fn now_instant(&self) -> Instant {
        self.now_instant
    }

    /// How long from this turn's reading until `tick` (for the poll's
    /// timeout).
    pub(crate) fn until(&self, tick: Tick) -> Duration {
        let at = self
            .start
            .checked_add(Duration::from_millis(tick))
            .unwrap_or(self.now_instant + Duration::from_secs(86_400));
        at.saturating_duration_since(self.now_instant)
    }

    /// The tick `after` from now, rounded up: a timeout never fires early.
    pub(crate) fn after(&self, after: Duration) -> Tick {
        self.now.saturating_add(millis_ceil(after))
    }
}

impl Core {
    /// A handler's timer: `on_timer(token)` once, `after` from now.
    pub(crate) fn set_timer(&mut self, after: Duration, token: u64) -> TimerId {
        let at = self.time().after(after);
        self.wheel().insert(at, TimerEvent::User(token))
    }

    /// Cancels a handler's timer; refuses the reactor's own.
    pub(crate) fn cancel_timer(&mut self, timer: TimerId) -> bool {
        match self.wheel().get(timer) {
            Some(TimerEvent::User(_)) => self.wheel().cancel(timer).is_some(),
            _ => false,
        }
    }

    /// Makes sure the connection's timer fires no later than its earliest
    /// deadline. Costs nothing when the armed timer is early enough, which
    /// is the common case: I/O moves deadlines later, never earlier, and a
    /// timer that fires early just re-arms.
    pub(crate) fn arm(&mut self, id: ConnId) {
        let limits = self.limits(id);
        let Some(conn) = self.conn(id) else {
            return;
        };
        let Some((at, _)) = deadline(conn, &limits) else {
            return;
        };
        if conn.timer.is_some() && conn.timer_at <= at {
            return;
        }
        if let Some(old) = conn.timer {
            self.wheel().cancel(old);
        }
        let timer = self.wheel().insert(at, TimerEvent::Conn(id));
        if let Some(conn) = self.conn_mut(id) {
            conn.timer = Some(timer);
            conn.timer_at = at;
        }
    }

    /// The connection's timer fired: abort it if a deadline has passed,
    /// else re-arm for the one that comes next.
    pub(crate) fn conn_timer(&mut self, id: ConnId) {
        let now = self.now();
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        conn.timer = None;
        conn.timer_at = NEVER;
        let limits = self.limits(id);
        let Some(conn) = self.conn(id).filter(|c| !c.state().is_closed()) else {
            return;
        };
        match deadline(conn, &limits) {
            Some((_, _)) if conn.pooled && conn.state() == State::Open => {
                // Idle in the upstream pool past its timeout (the only
                // deadline an idle pooled connection has): closed with FIN.
                if conn
                    .last_read
                    .saturating_add(millis_ceil(limits.pool_idle_timeout))
                    <= now
                {
                    self.pool_expired(id);
                } else {
                    self.arm(id);
                }
            }
            Some((at, reason)) if at <= now => {
                log::debug!("conn {id}: {reason}");
                self.abort(id, reason);
            }
            Some(_) => self.arm(id),
            None => {}
        }
    }
}

/// A connection's earliest deadline and what passing it means.
fn deadline(conn: &Conn, config: &Limits) -> Option<(Tick, CloseReason)> {
    match conn.state() {
        State::Connecting => {
            let at = conn
                .last_read
                .saturating_add(millis_ceil(config.connect_timeout));
            return Some((at, CloseReason::ConnectTimeout));
        }
        State::Handshaking => {
            // `last_read` stays at accept while handshaking (see `settle`).
            let at = conn
                .last_read
                .saturating_add(millis_ceil(config.handshake_timeout));
            return Some((at, CloseReason::Tls(TlsFailure::Timeout)));
        }
        State::Lingering(reason) => {
            let at = conn.last_write.saturating_add(millis_ceil(LINGER_TIMEOUT));
            return Some((at, reason));
        }
        _ => {}
    }
    if conn.pooled && conn.state() == State::Open {
        // Idle in the upstream pool: its own timeout, counted from checkin.
        let at = conn
            .last_read
            .saturating_add(millis_ceil(config.pool_idle_timeout));
        return Some((at, CloseReason::IdleTimeout));
    }
    let mut best: Option<(Tick, CloseReason)> = None;
    let mut consider = |at: Tick, reason| {
        if best.is_none_or(|(b, _)| at < b) {
            best = Some((at, reason));
        }
    };
    if let Some(idle) = config.idle_timeout {
        let last = conn.last_read.max(conn.last_write);
        consider(
            last.saturating_add(millis_ceil(idle)),
            CloseReason::IdleTimeout,
        );
    }
    if conn.has_output() {
        let at = conn
            .last_write
            .saturating_add(millis_ceil(config.write_timeout));
        consider(at, CloseReason::WriteTimeout);
    }
    if conn.soft_since != NEVER {
        let at = conn
            .soft_since
            .saturating_add(millis_ceil(config.soft_grace));
        consider(at, CloseReason::SlowConsumer);
    }
    best
}

fn millis(d: Duration) -> Tick {
    u64::try_from(d.as_millis()).unwrap_or(Tick::MAX)
}

/// A duration in ticks, rounded up: a timeout never fires early.
fn millis_ceil(d: Duration) -> Tick {
    let ms = millis(d);
    if Duration::from_millis(ms) < d {
        ms.saturating_add(1)
    } else {
        ms
    }
}
