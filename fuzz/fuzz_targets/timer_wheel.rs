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
//! nothing (a slot of timers due later in its span costs a wake-up; that
//! is the price of a lower bound).
#![no_main]

use std::collections::BTreeSet;

use evloop::timer::{Tick, TimerId, TimerWheel, LEVELS};
use libfuzzer_sys::{arbitrary, fuzz_target};

/// Timers per run: enough for chains of many blocks (64 records each) in
/// one slot, few enough that a run takes milliseconds.
const MAX_TIMERS: usize = 12_000;

#[derive(arbitrary::Arbitrary, Debug)]
enum Op {
    /// A timer `delta << shift` ticks from now (shift modulo 64); past
    /// deadlines when `back`.
    Insert { delta: u16, shift: u8, back: bool },
    /// `count` timers at once (modulo 8,192), `spread` ticks apart: enough
    /// cancels afterwards to empty blocks from the middle of long chains.
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
    /// The live timers by deadline: `(deadline, index)`.
    by_deadline: BTreeSet<(Tick, usize)>,
    now: Tick,
    live: usize,
    /// Timers cancelled so far. Cancel leaves no record behind, so they
    /// only loosen the wake-up bound in `FollowNext`, kept from when
    /// cancelled records stayed as tombstones.
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
        self.by_deadline.insert((deadline, index));
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
            self.by_deadline.remove(&(timer.deadline, index));
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
        let later = self.by_deadline.split_off(&(self.now.saturating_add(1), 0));
        let due_set = std::mem::replace(&mut self.by_deadline, later);
        let due: Vec<usize> = if self.now == Tick::MAX {
            // Nothing is later than the last tick.
            let all = std::mem::take(&mut self.by_deadline);
            due_set.into_iter().chain(all).map(|(_, i)| i).collect()
        } else {
            due_set.into_iter().map(|(_, i)| i).collect()
        };
        let mut due = due;
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
        self.by_deadline.first().map(|&(deadline, _)| deadline)
    }

    /// `contains` agrees with the model for the timers from `from` on.
    fn check_ids(&self, from: usize) {
        for t in &self.timers[from..] {
            assert_eq!(self.wheel.contains(t.id), t.live);
        }
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
        by_deadline: BTreeSet::new(),
        now: 0,
        live: 0,
        cancelled: 0,
    };
    for (step, op) in ops.into_iter().enumerate() {
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
                // of timers due later in its span: `next_deadline` is a lower
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
        // Every timer's id every 16th operation and at the end (a walk of
        // them all per operation would slow the target tenfold); the last
        // ones inserted every time.
        let recent = m.timers.len().saturating_sub(8);
        let from = if step % 16 == 0 { 0 } else { recent };
        m.check_ids(from);
        m.check();
    }
    m.check_ids(0);
});
