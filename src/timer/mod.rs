//! A hierarchical hashed timing wheel: the one structure behind every
//! timeout the reactor has (idle, write stall, connect, shutdown deadline,
//! accept back-off, user timers).
//!
//! # Why a wheel and not a heap
//!
//! Varghese and Lauck ("Hashed and Hierarchical Timing Wheels", SOSP 1987)
//! observed that timer deadlines are integers and gave a structure where
//! insert and cancel are `O(1)`: hash the deadline into a slot of a
//! circular array and advance a cursor one slot per tick. The Linux
//! kernel's timers, Kafka's purgatory, netty's `HashedWheelTimer` and
//! tokio's time driver are all wheels.
//!
//! The usual argument is cheap cancel, since a timeout is a guard, not an
//! appointment. It does not carry this reactor: a connection's timer is
//! re-armed lazily (I/O only records a tick; the timer fires and re-arms,
//! see the crate docs), so the reactor cancels about once per closed
//! connection, and a heap with lazy deletion cancels faster anyway: a
//! generation check in a slab, 2 ns against the wheel's 36
//! (`benches/timer_wheel.rs`, criterion medians at a million timers).
//!
//! What the wheel wins here is the work the reactor does every turn:
//!
//! - **expire**: firing a million timers over a minute of 1 ms ticks costs
//!   59 to 71 ns per fired timer, against 470 to 540 for the heap, whose
//!   every pop sifts down `log n` levels of cache misses (a `BTreeMap` is
//!   close to the wheel at 68 to 71, but pays 300 to 850 ns per insert);
//! - **insert**, which is how the reactor re-arms: 22 ns against the
//!   heap's 34 to 36;
//! - **a bounded turn**: `expire`'s cost is what fires plus what cascades,
//!   and each timer cascades at most once per level, so no single turn
//!   pays for the whole population; [`next_deadline`](TimerWheel::next_deadline)
//!   is `O(LEVELS)` bitmap scans whatever the wheel holds, where a heap's
//!   peek must first pop the cancelled entries that surfaced.
//!
//! Where it does not win: the churn benchmark (random cancel and re-insert
//! at 100,000 live timers) runs at 70 to 72 ns per step against the heap's
//! 43 to 58, because cancel reads two random places (see below).
//!
//! # The slot arithmetic
//!
//! One ring of 64 slots covers only 64 ticks. To reach further without a
//! bigger array the wheel is *hierarchical*: [`LEVELS`] rings of 64 slots,
//! where a slot of level `L` spans `64^L` ticks.
//!
//! ```text
//!  level 0: 64 slots of 1 tick        covers the current 64 ticks
//!  level 1: 64 slots of 64 ticks      covers the current 4,096 ticks
//!  level 2: 64 slots of 4,096 ticks   covers the current 262,144 ticks
//!  ...
//!  level 10: slots of 2^60 ticks      covers all of u64
//!
//!  deadline (u64) in base 64:  | d10 | ... | d2 | d1 | d0 |
//!  now                         | n10 | ... | n2 | n1 | n0 |
//!                                            ^ highest digit where they differ
//! ```
//!
//! An entry goes to the level of the highest base-64 digit in which its
//! deadline differs from the wheel's current tick, into the slot named by
//! that digit of the deadline. So an entry at level `L` shares every digit
//! above `L` with "now", and its slot lies strictly ahead of now's digit at
//! that level. When time reaches the start of a slot at level `L > 0`, the
//! slot is emptied and each entry is placed again: it now agrees with "now"
//! on digit `L` as well, so it falls to a lower level (this is the
//! *cascade*). Entries at level 0 fire when their slot comes up. An entry is
//! moved at most once per level, so its whole life costs `O(LEVELS)` at
//! worst and `O(1)` for the common deadline that is cancelled first.
//!
//! Each level keeps a 64-bit occupancy bitmap, one bit per non-empty slot,
//! so finding the next non-empty slot is one `trailing_zeros` per level: a
//! wheel with nothing due for an hour costs the same to query as one with
//! something due next tick, and [`TimerWheel::expire`] jumps over empty
//! stretches instead of walking them tick by tick.
//!
//! # Slots are blocks of records; a record holds the value
//!
//! The textbook wheel threads each slot as an intrusive doubly linked list,
//! which makes cancel an unlink. This wheel's first version did that, and
//! expiring a million timers cost 263 ns per timer: a cascade walks every
//! list once per level, and each step of a list walk is a cache miss that
//! cannot start until the previous one ends.
//!
//! The second version made a slot a chain of blocks of 16-byte records
//! `(deadline, index, generation)`, read in memory order, with each value in
//! a slab entry. Firing still read the slab entry, one cache miss per fired
//! timer: 53 to 58 ns per timer at a million on a quiet machine, 106 when
//! another build shared the cache. Cancel left the record as a tombstone,
//! swept when they passed three per live timer.
//!
//! So now a record is `(deadline, id, value)`: firing moves the value out
//! of the block it is reading and touches nothing else but one store to
//! the timer's place in a dense table (`arena.rs`), which says where each
//! live timer's record is, so cancel can find it. Cancel moves the chain's
//! last record into the hole: no tombstones, no sweep, every record a live
//! timer. The price: each cascade also writes the moved record's place (a
//! store, not a load, so the walk does not wait on it), records are larger
//! (24 bytes, not 16, for a `u64` value), and cancel is two dependent reads
//! (the place, then the record) where the slab needed one.
//!
//! Measured, that trade is uneven: expire is 59 to 71 ns per fired timer on
//! a quiet machine (no better than the slab's 53 to 58: three random
//! stores replace one random load) but 41 to 50 under cache pressure
//! (against 106), since a store does not stall the walk when it misses;
//! insert 22 ns (was 29 to 32); cancel 36 (was 19 to 20); churn 70 to 72
//! (was 76 to 79). The goal of 10 ns per fired timer is not met: a
//! million records cascade twice through memory, and each move writes
//! one random place. Dropped after measuring: leaving the place untouched
//! on fire (liveness checked against the record instead), no faster.
//!
//! # Costs
//!
//! | operation | cost |
//! | --- | --- |
//! | [`insert`](TimerWheel::insert) | `O(1)`: a place taken from the free list, a record pushed on a block |
//! | [`cancel`](TimerWheel::cancel) | `O(1)`: the place, the record, the chain's last record moved into the hole |
//! | [`expire`](TimerWheel::expire) | `O(fired + cascaded)` plus `O(LEVELS)` per occupied slot reached |
//! | [`next_deadline`](TimerWheel::next_deadline) | `O(LEVELS)`: one bitmap scan per level |
//!
//! Memory: per live timer, one record (16 bytes plus the value, rounded to
//! its alignment: 24 for a `u64`, 32 for the reactor's `TimerEvent`) and an
//! 8-byte place; blocks and places are reused, not freed: the wheel keeps
//! the memory of the most timers it has held at once.
//!
//! # Where the code is
//!
//! - this file: the public API and [`expire`](TimerWheel::expire)'s walk
//!   over the occupied slots;
//! - `slots.rs`: the arithmetic above (which level and slot a deadline
//!   goes to, where a slot starts) and the occupancy bitmaps, tested pair
//!   by pair;
//! - `arena.rs`: the records, the blocks they sit in, and the place table
//!   that finds a record for cancel.
//!
//! # What a tick means
//!
//! The wheel never reads a clock: time is an integer argument, so tests
//! drive it without sleeping and the reactor reads its clock once per turn.
//! A tick is whatever unit the caller chooses (the reactor uses
//! milliseconds). A deadline of tick `t` fires on the first
//! [`expire`](TimerWheel::expire) whose `now` is at or past `t`: never
//! early, and late only by as much as the caller lets time pass between
//! calls. So accuracy is one tick plus the caller's polling delay, which is
//! why a reactor that sleeps until [`next_deadline`](TimerWheel::next_deadline)
//! wakes on time.
//!
//! [`next_deadline`](TimerWheel::next_deadline) is exact for timers due
//! within the current 64-tick block and a lower bound for later ones (the
//! start of the slot that holds them): the caller may wake early, once per
//! level at most, to let a slot cascade, and never late.

mod arena;
mod slots;

use self::arena::{Arena, Record, NIL};
pub use self::slots::LEVELS;
use self::slots::{chain, level_for, slot_for, Occupancy, CHAINS, OVERDUE};

/// A point in time, counted in the caller's ticks.
pub type Tick = u64;

/// Names one inserted timer, for [`TimerWheel::cancel`].
///
/// Ids are generational: the index of a fired or cancelled timer is reused
/// by later inserts, and the generation tells the new timer from the old,
/// so a stale id held by a connection that has moved on never cancels
/// somebody else's timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerId {
    index: u32,
    generation: u32,
}

/// A hierarchical hashed timing wheel holding values of type `T`.
///
/// See the [module docs](self) for how it works and what it costs.
///
/// ```
/// use evloop::timer::TimerWheel;
///
/// let mut wheel = TimerWheel::new();
/// let a = wheel.insert(10, "ten");
/// wheel.insert(5_000, "five thousand");
/// assert_eq!(wheel.cancel(a), Some("ten"));
///
/// let mut fired = Vec::new();
/// wheel.expire(4_999, &mut fired);
/// assert!(fired.is_empty());
/// wheel.expire(5_000, &mut fired);
/// assert_eq!(fired, ["five thousand"]);
/// ```
#[derive(Debug)]
pub struct TimerWheel<T> {
    /// Every timer's record, in the chain of its slot (or the overdue
    /// chain), and where each one is.
    arena: Arena<T>,
    /// Which slots' chains are non-empty.
    occupied: Occupancy,
    /// The last tick [`expire`](Self::expire) has processed: every timer due
    /// at or before it has fired.
    elapsed: Tick,
}

impl<T> Default for TimerWheel<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> TimerWheel<T> {
    /// An empty wheel whose current tick is 0.
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// An empty wheel with room for `capacity` timers before it allocates.
    pub fn with_capacity(capacity: usize) -> Self {
        TimerWheel {
            arena: Arena::new(CHAINS, capacity),
            occupied: Occupancy::default(),
            elapsed: 0,
        }
    }

    /// Number of live timers (inserted, not yet fired or cancelled).
    pub fn len(&self) -> usize {
        self.arena.len()
    }

    /// True when no timer is live.
    pub fn is_empty(&self) -> bool {
        self.arena.len() == 0
    }

    /// The last tick [`expire`](Self::expire) processed (0 for a new wheel).
    pub fn now(&self) -> Tick {
        self.elapsed
    }

    /// Adds a timer that fires at `deadline` and returns its id. `O(1)`
    /// (amortised: the arena grows when no block or index is free).
    ///
    /// A deadline at or before [`now`](Self::now) is already due: it fires
    /// on the next [`expire`](Self::expire), whatever tick that is given.
    pub fn insert(&mut self, deadline: Tick, value: T) -> TimerId {
        let chain = self.chain_for(deadline);
        self.arena.insert(chain, deadline, value)
    }

    /// Removes a live timer and returns its value; `None` if the id has
    /// already fired, been cancelled, or names a reused index. `O(1)`: the
    /// last record of the timer's chain moves into its place.
    pub fn cancel(&mut self, id: TimerId) -> Option<T> {
        let (value, chain, emptied) = self.arena.remove(id)?;
        if emptied {
            self.occupied.clear(chain);
        }
        Some(value)
    }

    /// The value of a live timer; `None` once it fired or was cancelled.
    pub fn get(&self, id: TimerId) -> Option<&T> {
        self.arena.get(id)
    }

    /// True while `id` names a timer that has neither fired nor been
    /// cancelled.
    pub fn contains(&self, id: TimerId) -> bool {
        self.arena.live(id).is_some()
    }

    /// The earliest tick at which [`expire`](Self::expire) may have work:
    /// `None` when no timer is live. Exact for timers due within the
    /// current 64-tick block, otherwise the start of the earliest non-empty
    /// slot (a lower bound: never later than the true deadline, earlier if
    /// that slot's timers are due later in its span). If an overdue timer
    /// waits, this is [`now`](Self::now). `O(LEVELS)`.
    pub fn next_deadline(&self) -> Option<Tick> {
        if !self.arena.is_chain_empty(OVERDUE) {
            return Some(self.elapsed);
        }
        self.occupied.next(self.elapsed).map(|(_, _, tick)| tick)
    }

    /// Advances the wheel to `now` and appends the value of every timer due
    /// at or before `now` to `out`; returns how many fired. Timers due at
    /// the same tick come out in no particular order.
    ///
    /// Every due timer leaves the wheel before this returns, so the caller
    /// dispatches them after the wheel is consistent again, and a timer
    /// inserted during that dispatch with a deadline already passed fires on
    /// the next call, never in this one (a handler that re-arms at "now"
    /// cannot make this loop forever). A `now` earlier than
    /// [`now`](Self::now) is treated as no advance: time does not go back.
    pub fn expire(&mut self, now: Tick, out: &mut Vec<T>) -> usize {
        let before = out.len();
        self.drain(OVERDUE, |wheel, record| out.push(wheel.arena.fire(record)));
        // Visit occupied slots in deadline order. Each visit moves `elapsed`
        // to the slot's start, fires what is due and cascades the rest to a
        // lower level: one visit per level per cascaded slot at most, plus
        // one per level-0 slot that fires.
        while let Some((level, slot, start)) = self.occupied.next(self.elapsed) {
            if start > now {
                break;
            }
            self.elapsed = start;
            let chain = chain(level, slot);
            self.occupied.clear(chain);
            self.drain(chain, |wheel, record| {
                if record.deadline <= start {
                    out.push(wheel.arena.fire(record));
                } else {
                    // Later in this slot's span: a lower level now.
                    let chain = wheel.chain_for(record.deadline);
                    wheel.arena.push(chain, record);
                }
            });
        }
        self.elapsed = self.elapsed.max(now);
        out.len() - before
    }

    /// The chain a deadline belongs in, seen from `elapsed`, marking its
    /// slot occupied.
    fn chain_for(&mut self, deadline: Tick) -> usize {
        if deadline <= self.elapsed {
            return OVERDUE;
        }
        let level = level_for(self.elapsed, deadline);
        let slot = slot_for(deadline, level);
        self.occupied.set(level, slot);
        chain(level, slot)
    }

    /// Detaches a chain and hands each of its records to `f`, returning
    /// each block to the arena once read, so `f` may push records into
    /// other chains and reuse those very blocks.
    fn drain(&mut self, chain: usize, mut f: impl FnMut(&mut Self, Record<T>)) {
        let mut block = self.arena.take_chain(chain);
        while block != NIL {
            let mut records = self.arena.open(block);
            for record in records.drain(..) {
                f(self, record);
            }
            block = self.arena.close(block, records);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::slots::SLOT_BITS;
    use super::*;

    fn fire<T>(wheel: &mut TimerWheel<T>, now: Tick) -> Vec<T> {
        let mut out = Vec::new();
        wheel.expire(now, &mut out);
        out
    }

    #[test]
    fn fires_exactly_at_each_level_boundary() {
        for level in 0..LEVELS {
            let shift = (level as u32 * SLOT_BITS).min(63);
            for deadline in [(1u64 << shift) - 1, 1u64 << shift, (1u64 << shift) + 1] {
                if deadline == 0 {
                    continue;
                }
                let mut wheel = TimerWheel::new();
                wheel.insert(deadline, deadline);
                assert!(
                    fire(&mut wheel, deadline - 1).is_empty(),
                    "{deadline} early"
                );
                assert_eq!(fire(&mut wheel, deadline), [deadline], "{deadline} on time");
                assert!(wheel.is_empty());
            }
        }
    }

    #[test]
    fn far_deadline_follows_next_deadline_down_the_levels() {
        let mut wheel = TimerWheel::new();
        let deadline = 0x0123_4567_89ab_cdef;
        wheel.insert(deadline, ());
        let mut steps = 0;
        while let Some(next) = wheel.next_deadline() {
            assert!(next <= deadline, "woke late: {next} > {deadline}");
            let fired = fire(&mut wheel, next);
            steps += 1;
            if !fired.is_empty() {
                assert_eq!(next, deadline);
                break;
            }
        }
        // One wake-up per level on the way down, at most.
        assert!(steps <= LEVELS, "{steps} wake-ups");
        assert!(wheel.is_empty());
    }

    #[test]
    fn past_deadline_fires_on_next_expire() {
        let mut wheel = TimerWheel::new();
        fire(&mut wheel, 1_000);
        wheel.insert(10, "late");
        wheel.insert(1_000, "now");
        assert_eq!(wheel.next_deadline(), Some(1_000));
        // Even an expire that does not advance time delivers them.
        let mut fired = fire(&mut wheel, 1_000);
        fired.sort();
        assert_eq!(fired, ["late", "now"]);
        assert_eq!(wheel.next_deadline(), None);
    }

    #[test]
    fn time_never_goes_back() {
        let mut wheel = TimerWheel::new();
        fire(&mut wheel, 500);
        wheel.insert(600, 'a');
        assert!(fire(&mut wheel, 100).is_empty());
        assert_eq!(wheel.now(), 500);
        assert_eq!(fire(&mut wheel, 600), ['a']);
    }

    #[test]
    fn cancel_returns_value_once() {
        let mut wheel = TimerWheel::new();
        let id = wheel.insert(100, 7);
        assert!(wheel.contains(id));
        assert_eq!(wheel.cancel(id), Some(7));
        assert_eq!(wheel.cancel(id), None);
        assert!(!wheel.contains(id));
        assert!(fire(&mut wheel, 1_000).is_empty());
    }

    #[test]
    fn stale_id_cannot_cancel_a_reused_slot() {
        let mut wheel = TimerWheel::new();
        let old = wheel.insert(5, "old");
        assert_eq!(fire(&mut wheel, 5), ["old"]);
        let new = wheel.insert(50, "new");
        assert_eq!(old.index, new.index, "the index is reused");
        assert_eq!(wheel.cancel(old), None);
        assert_eq!(wheel.len(), 1);
        assert_eq!(wheel.cancel(new), Some("new"));
    }

    #[test]
    fn cancel_from_middle_head_and_tail_of_one_slot() {
        let mut wheel = TimerWheel::new();
        let ids: Vec<_> = (0..5).map(|i| wheel.insert(40, i)).collect();
        assert_eq!(wheel.cancel(ids[2]), Some(2));
        assert_eq!(wheel.cancel(ids[4]), Some(4)); // the head (pushed last)
        assert_eq!(wheel.cancel(ids[0]), Some(0)); // the tail
        let mut fired = fire(&mut wheel, 40);
        fired.sort();
        assert_eq!(fired, [1, 3]);
        assert_eq!(wheel.occupied.level(0), 0);
        assert_eq!(wheel.arena.records(), 0);
    }

    #[test]
    fn insert_during_dispatch_at_now_waits_for_next_expire() {
        let mut wheel = TimerWheel::new();
        wheel.insert(10, 1);
        assert_eq!(fire(&mut wheel, 10), [1]);
        wheel.insert(10, 2); // a handler re-arming at "now"
        assert_eq!(fire(&mut wheel, 10), [2]);
    }

    #[test]
    fn cancel_leaves_no_tombstone() {
        let mut wheel = TimerWheel::new();
        let ids: Vec<_> = (0..20_000u64).map(|i| wheel.insert(1_000 + i, i)).collect();
        for (n, &id) in ids[..19_000].iter().enumerate() {
            wheel.cancel(id);
            if n % 1_000 == 0 {
                assert_eq!(wheel.arena.records(), wheel.len(), "after {n} cancels");
            }
        }
        assert_eq!(wheel.arena.records(), 1_000);
        let mut fired = fire(&mut wheel, 100_000);
        fired.sort();
        assert_eq!(fired, (19_000..20_000).collect::<Vec<_>>());
        assert_eq!(wheel.arena.records(), 0);
    }

    #[test]
    fn cancel_moves_the_chains_last_record_into_the_hole() {
        let mut wheel = TimerWheel::new();
        let a = wheel.insert(70, 'a');
        let b = wheel.insert(5_000, 'b');
        let c = wheel.insert(9, 'c');
        wheel.cancel(b);
        assert_eq!(wheel.arena.records(), 2);
        assert!(wheel.contains(a) && wheel.contains(c) && !wheel.contains(b));
        assert_eq!(fire(&mut wheel, 9), ['c']);
        assert_eq!(fire(&mut wheel, 70), ['a']);
    }

    #[test]
    fn moved_records_stay_findable_across_blocks_and_cascades() {
        // 200 timers in one level-1 slot: four blocks. Cancel from the
        // oldest block (its hole is filled from the head block), then the
        // timers that moved, then let the slot cascade and cancel again.
        let mut wheel = TimerWheel::new();
        let ids: Vec<_> = (0..200u64).map(|i| wheel.insert(64 + i % 64, i)).collect();
        for &id in ids.iter().step_by(3) {
            assert!(wheel.cancel(id).is_some());
        }
        for (i, &id) in ids.iter().enumerate() {
            assert_eq!(
                wheel.get(id).copied(),
                (i % 3 != 0).then_some(i as u64),
                "{i}"
            );
        }
        assert!(fire(&mut wheel, 63).is_empty()); // up to the cascade
        for (i, &id) in ids.iter().enumerate().filter(|(i, _)| i % 3 == 1) {
            assert_eq!(wheel.cancel(id), Some(i as u64));
            assert_eq!(wheel.cancel(id), None);
        }
        let mut fired = fire(&mut wheel, 200);
        fired.sort();
        assert_eq!(fired, (0..200).filter(|i| i % 3 == 2).collect::<Vec<_>>());
        assert_eq!(wheel.arena.records(), 0);
        assert_eq!(wheel.next_deadline(), None);
    }

    #[test]
    fn next_deadline_is_none_once_the_last_timer_is_cancelled() {
        let mut wheel = TimerWheel::new();
        let id = wheel.insert(500, ());
        wheel.cancel(id);
        assert_eq!(wheel.next_deadline(), None);
        assert!(fire(&mut wheel, 1_000).is_empty());
    }
}
