//! The timer wheel against the two structures people reach for instead.
//!
//! - `heap`: a `BinaryHeap` of `(deadline, serial, key)` with lazy
//!   cancellation: cancel removes the value from a slab, and the stale heap
//!   entry is skipped when it surfaces (what most event loops do).
//! - `btree`: a `BTreeMap` keyed by `(deadline, serial)`: cancel is a real
//!   removal.
//!
//! Ids: `timer/{insert,cancel,expire,churn}/{wheel,heap,btree}`. Every
//! benchmark reports throughput in elements, so criterion's time per
//! iteration divided by the element count is the cost per operation.
//!
//! - insert: 1,000,000 timers, deadlines uniformly 1..60 s of ms ticks ahead.
//! - cancel: all 1,000,000 of those, in insertion order (how idle timeouts
//!   are cancelled: connections are reset roughly in the order they armed).
//! - expire: the 1,000,000 timers fired by advancing 1 ms at a time over
//!   the whole 60 s; the cost of passing empty ticks is included.
//! - churn: 100,000 live timers; each step cancels a random one and inserts
//!   a replacement 1..60 s ahead (an idle timeout re-armed by activity);
//!   every 100 steps the clock moves 1 ms and due timers fire.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use evloop::timer::{TimerId, TimerWheel};
use slab::Slab;

const MANY: usize = 1_000_000;
const CHURN_LIVE: usize = 100_000;
const CHURN_STEPS: usize = 100_000;
const MAX_AHEAD_MS: u64 = 60_000;
const MIN_AHEAD_MS: u64 = 1_000;

/// A tiny deterministic generator (xorshift64*), so every structure sees
/// the same deadlines and no RNG crate cost lands in the figures.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn deadlines(n: usize, lo: u64, hi: u64) -> Vec<u64> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    (0..n).map(|_| lo + rng.below(hi - lo + 1)).collect()
}

/// The operations every structure offers, so one benchmark body serves all.
trait Timers: Sized {
    type Id: Copy;
    fn new(capacity: usize) -> Self;
    fn insert(&mut self, deadline: u64, value: u64) -> Self::Id;
    fn cancel(&mut self, id: Self::Id) -> Option<u64>;
    fn expire(&mut self, now: u64, out: &mut Vec<u64>);
}

impl Timers for TimerWheel<u64> {
    type Id = TimerId;
    fn new(capacity: usize) -> Self {
        TimerWheel::with_capacity(capacity)
    }
    fn insert(&mut self, deadline: u64, value: u64) -> TimerId {
        TimerWheel::insert(self, deadline, value)
    }
    fn cancel(&mut self, id: TimerId) -> Option<u64> {
        TimerWheel::cancel(self, id)
    }
    fn expire(&mut self, now: u64, out: &mut Vec<u64>) {
        TimerWheel::expire(self, now, out);
    }
}

struct Heap {
    heap: BinaryHeap<Reverse<(u64, u64, usize)>>,
    live: Slab<(u64, u64)>, // (serial, value)
    serial: u64,
}

impl Timers for Heap {
    type Id = (usize, u64);
    fn new(capacity: usize) -> Self {
        Heap {
            heap: BinaryHeap::with_capacity(capacity),
            live: Slab::with_capacity(capacity),
            serial: 0,
        }
    }
    fn insert(&mut self, deadline: u64, value: u64) -> (usize, u64) {
        self.serial += 1;
        let key = self.live.insert((self.serial, value));
        self.heap.push(Reverse((deadline, self.serial, key)));
        (key, self.serial)
    }
    fn cancel(&mut self, (key, serial): (usize, u64)) -> Option<u64> {
        match self.live.get(key) {
            Some(&(s, _)) if s == serial => Some(self.live.remove(key).1),
            _ => None,
        }
    }
    fn expire(&mut self, now: u64, out: &mut Vec<u64>) {
        while let Some(&Reverse((deadline, serial, key))) = self.heap.peek() {
            if deadline > now {
                break;
            }
            self.heap.pop();
            if let Some(&(s, _)) = self.live.get(key) {
                if s == serial {
                    out.push(self.live.remove(key).1);
                }
            }
        }
    }
}

struct BTree {
    map: BTreeMap<(u64, u64), u64>,
    serial: u64,
}

impl Timers for BTree {
    type Id = (u64, u64);
    fn new(_: usize) -> Self {
        BTree {
            map: BTreeMap::new(),
            serial: 0,
        }
    }
    fn insert(&mut self, deadline: u64, value: u64) -> (u64, u64) {
        self.serial += 1;
        self.map.insert((deadline, self.serial), value);
        (deadline, self.serial)
    }
    fn cancel(&mut self, id: (u64, u64)) -> Option<u64> {
        self.map.remove(&id)
    }
    fn expire(&mut self, now: u64, out: &mut Vec<u64>) {
        while let Some(entry) = self.map.first_entry() {
            if entry.key().0 > now {
                break;
            }
            out.push(entry.remove());
        }
    }
}

fn filled<T: Timers>(ds: &[u64]) -> (T, Vec<T::Id>) {
    let mut t = T::new(ds.len());
    let ids = ds
        .iter()
        .enumerate()
        .map(|(i, &d)| t.insert(d, i as u64))
        .collect();
    (t, ids)
}

fn bench_one<T: Timers>(c: &mut Criterion, name: &str) {
    let ds = deadlines(MANY, 1, MAX_AHEAD_MS);

    let mut g = c.benchmark_group("timer/insert");
    g.throughput(Throughput::Elements(MANY as u64))
        .sample_size(10);
    g.bench_function(name, |b| {
        b.iter_batched(
            || T::new(MANY),
            |mut t| {
                for (i, &d) in ds.iter().enumerate() {
                    black_box(t.insert(d, i as u64));
                }
                t
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("timer/cancel");
    g.throughput(Throughput::Elements(MANY as u64))
        .sample_size(10);
    g.bench_function(name, |b| {
        b.iter_batched(
            || filled::<T>(&ds),
            |(mut t, ids)| {
                for &id in &ids {
                    black_box(t.cancel(id));
                }
                t
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("timer/expire");
    g.throughput(Throughput::Elements(MANY as u64))
        .sample_size(10);
    g.bench_function(name, |b| {
        b.iter_batched(
            || (filled::<T>(&ds).0, Vec::with_capacity(MANY)),
            |(mut t, mut out)| {
                for now in 1..=MAX_AHEAD_MS {
                    t.expire(now, &mut out);
                }
                assert_eq!(out.len(), MANY);
                (t, out)
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();

    let live = deadlines(CHURN_LIVE, MIN_AHEAD_MS, MAX_AHEAD_MS);
    let mut g = c.benchmark_group("timer/churn");
    g.throughput(Throughput::Elements(CHURN_STEPS as u64))
        .sample_size(20);
    g.bench_function(name, |b| {
        b.iter_batched(
            || (filled::<T>(&live), Rng(42), Vec::new()),
            |((mut t, mut ids), mut rng, mut out)| {
                let mut now = 0;
                for step in 0..CHURN_STEPS {
                    let victim = rng.below(CHURN_LIVE as u64) as usize;
                    black_box(t.cancel(ids[victim]));
                    let ahead = MIN_AHEAD_MS + rng.below(MAX_AHEAD_MS - MIN_AHEAD_MS + 1);
                    ids[victim] = t.insert(now + ahead, step as u64);
                    if step % 100 == 99 {
                        now += 1;
                        out.clear();
                        t.expire(now, &mut out);
                    }
                }
                (t, ids)
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn timers(c: &mut Criterion) {
    bench_one::<TimerWheel<u64>>(c, "wheel");
    bench_one::<Heap>(c, "heap");
    bench_one::<BTree>(c, "btree");
}

criterion_group!(benches, timers);
criterion_main!(benches);
