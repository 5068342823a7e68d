//! The hashed timer wheel (`evloop::timer::TimerWheel`) driven by a
//! byte-coded sequence of operations and checked against a reference
//! model: a plain list of live timers and their deadlines.
//!
//! Checks: `expire` fires exactly the live timers due by then (time never
//! goes back, and a deadline already passed fires on the next call);
//! `cancel` succeeds once for a live timer and never for a fired,
//! cancelled or reused one; `len`, `contains` and `get` agree with the
//! model; `next_deadline` is never later than the earliest deadline, and
//! following it reaches that deadline, never waking twice at one tick for
//! nothing (a slot of later or cancelled timers costs a wake-up; that is
//! the price of a lower bound).
#![no_main]

use evloop::timer::{Tick, TimerId, TimerWheel, LEVELS};
use libfuzzer_sys::{arbitrary, fuzz_target};

/// Timers per run: the checks walk them all after every operation.
const MAX_TIMERS: usize = 50_000;

#[derive(arbitrary::Arbitrary, Debug)]
enum Op {
    /// A timer `delta << shift` ticks from now (shift modulo 64); past
    /// deadlines when `back`.
    Insert { delta: u16, shift: u8, back: bool },
    /// `count` timers at once (modulo 8,192), `spread` ticks apart: enough
    /// cancels afterwards to make the wheel sweep its tombstones.
    Burst { count: u16, spread: u8 },
    /// Cancels the `which`-th timer ever inserted (fired, cancelled or
    /// live alike).
    Cancel { which: u16 },
    /// Cancels `count` timers from the `from`-th on.
    CancelRange { from: u16, count: u16 },
    /// Expires to `delta << shift` ticks from now, or back in time.
    Expire { delta: u16, shift: u8, back: bool },
    /// Sleeps until `next_deadline` and expires, until a timer fires.
    FollowNext,
}

struct Timer {
    id: TimerId,
    deadline: Tick,
    live: bool,
}

struct Model {
    wheel: TimerWheel<usize>,
    timers: Vec<Timer>,
    now: Tick,
    live: usize,
    /// Timers cancelled so far: their records stay in the wheel as
    /// tombstones until their slot comes up or a sweep.
    cancelled: usize,
}

impl Model {
    fn offset(&self, delta: u16, shift: u8, back: bool) -> Tick {
        let step = u64::from(delta) << (shift % 64);
        if back {
            self.now.saturating_sub(step)
        } else {
            self.now.saturating_add(step)
        }
    }

    fn insert(&mut self, deadline: Tick) {
        if self.timers.len() >= MAX_TIMERS {
            return;
        }
        let index = self.timers.len();
        let id = self.wheel.insert(deadline, index);
        self.timers.push(Timer {
            id,
            deadline,
            live: true,
        });
        self.live += 1;
    }

    fn cancel(&mut self, index: usize) {
        let Some(timer) = self.timers.get_mut(index) else {
            return;
        };
        let expected = timer.live.then_some(index);
        assert_eq!(
            self.wheel.cancel(timer.id),
            expected,
            "cancel of timer {index}"
        );
        if timer.live {
            timer.live = false;
            self.live -= 1;
            self.cancelled += 1;
        }
    }

    /// Expires to `to`; returns how many fired, after checking they are
    /// exactly the model's due timers.
    fn expire(&mut self, to: Tick) -> usize {
        let mut fired = Vec::new();
        self.wheel.expire(to, &mut fired);
        self.now = self.now.max(to);
        let mut due: Vec<usize> = (0..self.timers.len())
            .filter(|&i| self.timers[i].live && self.timers[i].deadline <= self.now)
            .collect();
        fired.sort_unstable();
        due.sort_unstable();
        assert_eq!(fired, due, "fired at {}", self.now);
        for &i in &due {
            self.timers[i].live = false;
        }
        self.live -= due.len();
        due.len()
    }

    fn earliest(&self) -> Option<Tick> {
        self.timers
            .iter()
            .filter(|t| t.live)
            .map(|t| t.deadline)
            .min()
    }

    fn check(&self) {
        assert_eq!(self.wheel.len(), self.live);
        assert_eq!(self.wheel.now(), self.now);
        match (self.wheel.next_deadline(), self.earliest()) {
            (None, None) => {}
            (Some(next), Some(earliest)) => {
                assert!(next >= self.now, "next {next} before now {}", self.now);
                assert!(
                    next <= earliest.max(self.now),
                    "next {next} after the earliest deadline {earliest}"
                );
            }
            (next, earliest) => panic!("next_deadline {next:?}, earliest live {earliest:?}"),
        }
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let mut m = Model {
        wheel: TimerWheel::new(),
        timers: Vec::new(),
        now: 0,
        live: 0,
        cancelled: 0,
    };
    for op in ops {
        match op {
            Op::Insert { delta, shift, back } => {
                let deadline = m.offset(delta, shift, back);
                m.insert(deadline);
            }
            Op::Burst { count, spread } => {
                for i in 0..u64::from(count % 8192) {
                    let deadline = m.now.saturating_add(i * u64::from(spread));
                    m.insert(deadline);
                }
            }
            Op::Cancel { which } => m.cancel(usize::from(which)),
            Op::CancelRange { from, count } => {
                for i in usize::from(from)..usize::from(from) + usize::from(count) {
                    m.cancel(i);
                }
            }
            Op::Expire { delta, shift, back } => {
                let to = m.offset(delta, shift, back);
                m.expire(to);
            }
            Op::FollowNext => {
                // Each wake-up either fires, or moves time forward (a slot
                // of later or cancelled timers: `next_deadline` is a lower
                // bound), and each record can only be cascaded down the
                // levels and dropped once: so the walk ends.
                let bound = (LEVELS + 1) * (m.live + m.cancelled + 1);
                let mut wakeups = 0;
                let mut last = None;
                while let Some(next) = m.wheel.next_deadline() {
                    wakeups += 1;
                    assert!(wakeups <= bound, "{wakeups} wake-ups and nothing fired");
                    if m.expire(next) > 0 {
                        break;
                    }
                    assert!(
                        last.is_none_or(|l| l < next),
                        "woke twice at {next} and nothing fired"
                    );
                    last = Some(next);
                }
            }
        }
        for t in &m.timers {
            assert_eq!(m.wheel.contains(t.id), t.live);
        }
        m.check();
    }
});
