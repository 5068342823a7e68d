//! The timer wheel against a plain reference model.
//!
//! The model is a `BTreeMap<(deadline, serial), ()>`: obviously correct,
//! `O(log n)`. Random sequences of insert, cancel (of live, fired and
//! cancelled ids alike) and advance run against both, and after every step
//! both must agree on what fired, what a cancel returned, and how many
//! timers are live. Firing is checked per advance, so an entry that fires a
//! tick early or late lands in the wrong step and fails the test.

use std::collections::BTreeMap;

use evloop::timer::{Tick, TimerId, TimerWheel};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// Insert a timer `delta` ticks after the wheel's current tick
    /// (0 means "already due").
    Insert { delta: u64 },
    /// Insert a timer at an absolute tick, possibly in the past.
    InsertAt { tick: u64 },
    /// Cancel the id at this position in the list of every id handed out.
    Cancel { pick: usize },
    /// Advance time by `delta` ticks and expire.
    Advance { delta: u64 },
    /// Advance to exactly the wheel's `next_deadline` and expire.
    AdvanceToNext,
}

/// Deltas that hit every level: within a block, across block boundaries,
/// minutes and years of millisecond ticks, and the far end of u64.
fn delta() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0u64..70,
        3 => 0u64..5_000,
        2 => 0u64..300_000,
        1 => 0u64..(1 << 40),
        1 => any::<u64>().prop_map(|d| d >> 2),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => delta().prop_map(|delta| Op::Insert { delta }),
        1 => any::<u64>().prop_map(|tick| Op::InsertAt { tick }),
        3 => any::<usize>().prop_map(|pick| Op::Cancel { pick }),
        3 => delta().prop_map(|delta| Op::Advance { delta }),
        2 => Just(Op::AdvanceToNext),
    ]
}

struct Model {
    live: BTreeMap<(Tick, u64), ()>,
    now: Tick,
}

impl Model {
    /// Fires everything due at or before `now`, returning serials sorted.
    fn expire(&mut self, now: Tick) -> Vec<u64> {
        self.now = self.now.max(now);
        let mut fired = Vec::new();
        while let Some((&(deadline, serial), _)) = self.live.first_key_value() {
            if deadline > self.now {
                break;
            }
            self.live.remove(&(deadline, serial));
            fired.push(serial);
        }
        fired.sort_unstable();
        fired
    }
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut wheel: TimerWheel<u64> = TimerWheel::new();
    let mut model = Model {
        live: BTreeMap::new(),
        now: 0,
    };
    // Every id ever handed out, with the model's key for it.
    let mut ids: Vec<(TimerId, Tick, u64)> = Vec::new();
    let mut out = Vec::new();

    for op in ops {
        match op {
            Op::Insert { .. } | Op::InsertAt { .. } => {
                let deadline = match op {
                    Op::Insert { delta } => wheel.now().saturating_add(delta),
                    Op::InsertAt { tick } => tick,
                    _ => unreachable!(),
                };
                let serial = ids.len() as u64;
                let id = wheel.insert(deadline, serial);
                model.live.insert((deadline, serial), ());
                ids.push((id, deadline, serial));
            }
            Op::Cancel { pick } => {
                if ids.is_empty() {
                    continue;
                }
                let (id, deadline, serial) = ids[pick % ids.len()];
                let expected = model.live.remove(&(deadline, serial)).map(|_| serial);
                prop_assert_eq!(wheel.cancel(id), expected);
            }
            Op::Advance { .. } | Op::AdvanceToNext => {
                let now = match op {
                    Op::Advance { delta } => wheel.now().saturating_add(delta),
                    _ => match wheel.next_deadline() {
                        Some(next) => next,
                        None => continue,
                    },
                };
                out.clear();
                wheel.expire(now, &mut out);
                out.sort_unstable();
                let expected = model.expire(now);
                prop_assert_eq!(&out, &expected, "expire({}) fired differently", now);
                prop_assert_eq!(wheel.now(), model.now);
            }
        }
        prop_assert_eq!(wheel.len(), model.live.len());
        // next_deadline is never later than the true earliest deadline, and
        // is None exactly when nothing is live.
        let earliest = model.live.keys().next().map(|&(d, _)| d.max(model.now));
        match (wheel.next_deadline(), earliest) {
            (None, None) => {}
            (Some(next), Some(true_next)) => {
                prop_assert!(next <= true_next, "next_deadline {} > {}", next, true_next);
                prop_assert!(next >= wheel.now());
            }
            (got, want) => prop_assert!(false, "next_deadline {:?}, model {:?}", got, want),
        }
    }

    // Drain: following next_deadline must fire everything, each at its tick.
    let mut wakeups = 0usize;
    while let Some(next) = wheel.next_deadline() {
        out.clear();
        wheel.expire(next, &mut out);
        out.sort_unstable();
        prop_assert_eq!(&out, &model.expire(next));
        wakeups += 1;
        prop_assert!(wakeups <= 1_000_000, "drain does not converge");
    }
    prop_assert!(model.live.is_empty(), "{} timers lost", model.live.len());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn wheel_fires_what_the_model_fires(ops in proptest::collection::vec(op(), 1..400)) {
        run(ops)?;
    }
}

/// Many timers in one run: checks the slot lists with long chains.
#[test]
fn ten_thousand_timers_fire_in_order_and_on_time() {
    let mut wheel = TimerWheel::new();
    let mut deadlines: Vec<Tick> = (0..10_000u64)
        .map(|i| 1 + (i * 7_919) % 120_000) // spread over two minutes of ms
        .collect();
    for &d in &deadlines {
        wheel.insert(d, d);
    }
    let mut fired = Vec::new();
    let mut out = Vec::new();
    while let Some(next) = wheel.next_deadline() {
        out.clear();
        wheel.expire(next, &mut out);
        for &d in &out {
            assert_eq!(d, next, "a timer due at {d} fired at {next}");
        }
        fired.extend_from_slice(&out);
    }
    deadlines.sort_unstable();
    assert_eq!(fired, deadlines);
}
