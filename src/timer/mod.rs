//! A hierarchical hashed timing wheel: the one structure behind every
//! timeout the reactor has (idle, write stall, connect, shutdown deadline,
//! accept back-off, user timers).
//!
//! # Why a wheel and not a heap
//!
//! A server with 10,000 connections has 10,000 idle timeouts, and almost
//! every one of them is cancelled or pushed back before it fires: a timeout
//! is a guard, not an appointment. A binary heap pays `O(log n)` for every
//! insert and cannot cancel in place (it leaves a tombstone that costs a pop
//! later); a balanced tree pays `O(log n)` for both plus an allocation per
//! node. Varghese and Lauck ("Hashed and Hierarchical Timing Wheels", SOSP
//! 1987) observed that timer deadlines are integers and that timers are
//! mostly cancelled, and gave a structure where insert and cancel are `O(1)`:
//! hash the deadline into a slot of a circular array, keep each slot as a
//! doubly linked list, and advance a cursor one slot per tick. The Linux
//! kernel's timers, Kafka's purgatory, netty's `HashedWheelTimer` and tokio's
//! time driver are all wheels.
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
//! # Slots are blocks of records; cancel leaves a tombstone
//!
//! The textbook wheel threads each slot as an intrusive doubly linked list,
//! which makes cancel an unlink. This wheel's first version did that, and
//! expiring a million timers cost 263 ns per timer: a cascade walks every
//! list once per level, and each step of a list walk is a cache miss that
//! cannot start until the previous one ends.
//!
//! So a slot here is a chain of 1 KiB blocks of 16-byte records
//! `(deadline, index, generation)`, and the timer's value lives in a slab
//! entry. A cascade moves records from block to block, reading memory in
//! order, and never reads an entry; firing
//! reads one entry per record, and those reads are independent, so the CPU
//! overlaps their misses. Cancel removes the slab entry and leaves the
//! record where it is: a *tombstone*, which the generation check skips when
//! its slot comes up. Tombstones are bounded: when they pass three per
//! live timer plus 4,096, a sweep drops them all (its cost, spread over
//! the cancels that made it necessary, is a constant per cancel).
//!
//! # Costs
//!
//! | operation | cost |
//! | --- | --- |
//! | [`insert`](TimerWheel::insert) | `O(1)`: a slab insert and a record appended to a block |
//! | [`cancel`](TimerWheel::cancel) | `O(1)` amortised: a generation check and a slab remove; now and then a sweep |
//! | [`expire`](TimerWheel::expire) | `O(fired + cascaded + tombstones reached)` plus `O(LEVELS)` per occupied slot reached |
//! | [`next_deadline`](TimerWheel::next_deadline) | `O(LEVELS)`: one bitmap scan per level |
//!
//! Memory: a slab entry per live timer, a 16-byte record per live timer and
//! per tombstone (at most three per live timer plus 4,096), in blocks that
//! are reused, not freed: the wheel keeps the memory of the most records it
//! has held at once.
//!
//! # Where the code is
//!
//! - this file: the public API and [`expire`](TimerWheel::expire)'s walk
//!   over the occupied slots;
//! - `slots.rs`: the arithmetic above (which level and slot a deadline
//!   goes to, where a slot starts), tested pair by pair;
//! - `arena.rs`: the blocks of records behind the slots and the compaction
//!   that drops tombstones.
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

use slab::Slab;

use self::arena::{Arena, Chain, Record, NIL, SWEEP_SLACK, TOMBSTONES_PER_LIVE};
pub use self::slots::LEVELS;
use self::slots::{level_for, slot_for, slot_start, Level};

/// A point in time, counted in the caller's ticks.
pub type Tick = u64;

/// Inserts between unconditional sweeps. Generations are 32-bit and wrap;
/// a sweep every 2^31 inserts means no tombstone is ever older than 2^31
/// generations, so none can be mistaken for a newer timer in its index.
const GENERATION_SWEEP: u32 = 1 << 31;

/// Names one inserted timer, for [`TimerWheel::cancel`].
///
/// Ids are generational: the slab index of a fired or cancelled timer is
/// reused by later inserts, and the generation tells the new timer from the
/// old, so a stale id held by a connection that has moved on never cancels
/// somebody else's timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerId {
    index: u32,
    generation: u32,
}

/// A live timer in the slab. Its record sits in some slot; the entry is only
/// read when the record fires, is cancelled, or is swept.
#[derive(Debug)]
struct Entry<T> {
    generation: u32,
    value: T,
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
    entries: Slab<Entry<T>>,
    levels: [Level; LEVELS],
    /// Records inserted with a deadline already passed: they fire on the
    /// next [`expire`](Self::expire).
    overdue: Chain,
    /// The blocks behind every chain.
    arena: Arena,
    /// Records in all slots and `overdue`, live and tombstones alike.
    records: usize,
    /// The last tick [`expire`](Self::expire) has processed: every entry due
    /// at or before it has fired.
    elapsed: Tick,
    /// Generation for the next insert.
    generation: u32,
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
            entries: Slab::with_capacity(capacity),
            levels: [Level::EMPTY; LEVELS],
            overdue: Chain::EMPTY,
            arena: Arena::with_capacity(capacity),
            records: 0,
            elapsed: 0,
            generation: 0,
        }
    }

    /// Number of live timers (inserted, not yet fired or cancelled).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no timer is live.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The last tick [`expire`](Self::expire) processed (0 for a new wheel).
    pub fn now(&self) -> Tick {
        self.elapsed
    }

    /// Adds a timer that fires at `deadline` and returns its id. `O(1)`
    /// (amortised: a slot's chain may take a block from the arena, which
    /// grows when none is free).
    ///
    /// A deadline at or before [`now`](Self::now) is already due: it fires
    /// on the next [`expire`](Self::expire), whatever tick that is given.
    pub fn insert(&mut self, deadline: Tick, value: T) -> TimerId {
        let generation = self.generation;
        self.generation = self.generation.wrapping_add(1);
        if self.generation % GENERATION_SWEEP == 0 {
            self.sweep();
        }
        let key = self.entries.insert(Entry { generation, value });
        // A slab of 2^32 timers would need well over 100 GiB; a failed
        // conversion here means memory ran out long before.
        let index = u32::try_from(key).expect("timer slab exceeds u32 indices");
        let id = TimerId { index, generation };
        self.place(Record { deadline, id });
        id
    }

    /// Removes a live timer and returns its value; `None` if the id has
    /// already fired, been cancelled, or names a reused slot. `O(1)`
    /// (amortised: now and then it triggers a sweep of tombstones).
    ///
    /// Only the entry is removed; its record stays in its slot as a
    /// tombstone, skipped when the slot comes up.
    pub fn cancel(&mut self, id: TimerId) -> Option<T> {
        let entry = self.entries.get(id.index as usize)?;
        if entry.generation != id.generation {
            return None;
        }
        let value = self.entries.remove(id.index as usize).value;
        let tombstones = self.records - self.entries.len();
        if tombstones > TOMBSTONES_PER_LIVE * self.entries.len() + SWEEP_SLACK {
            self.sweep();
        }
        Some(value)
    }

    /// The value of a live timer; `None` once it fired or was cancelled.
    pub fn get(&self, id: TimerId) -> Option<&T> {
        self.live(id).map(|entry| &entry.value)
    }

    /// True while `id` names a timer that has neither fired nor been
    /// cancelled.
    pub fn contains(&self, id: TimerId) -> bool {
        self.live(id).is_some()
    }

    /// The earliest tick at which [`expire`](Self::expire) may have work:
    /// `None` when no timer is live. Exact for timers due within the
    /// current 64-tick block, otherwise the start of the earliest non-empty
    /// slot (a lower bound: never later than the true deadline, earlier if
    /// that slot holds only later or cancelled timers). If an overdue timer
    /// waits, this is [`now`](Self::now). `O(LEVELS)`.
    pub fn next_deadline(&self) -> Option<Tick> {
        if self.entries.is_empty() {
            return None;
        }
        if self.overdue.head != NIL {
            return Some(self.elapsed);
        }
        self.next_slot().map(|(_, _, tick)| tick)
    }

    /// Advances the wheel to `now` and appends the value of every timer due
    /// at or before `now` to `out`; returns how many fired.
    ///
    /// Every due timer leaves the wheel before this returns, so the caller
    /// dispatches them after the wheel is consistent again, and a timer
    /// inserted during that dispatch with a deadline already passed fires on
    /// the next call, never in this one (a handler that re-arms at "now"
    /// cannot make this loop forever). A `now` earlier than
    /// [`now`](Self::now) is treated as no advance: time does not go back.
    pub fn expire(&mut self, now: Tick, out: &mut Vec<T>) -> usize {
        let before = out.len();
        let overdue = std::mem::replace(&mut self.overdue, Chain::EMPTY);
        self.drain_chain(overdue, |wheel, record| wheel.fire(record.id, out));
        // Visit occupied slots in deadline order. Each visit moves `elapsed`
        // to the slot's start, fires what is due and cascades the rest to a
        // lower level: one visit per level per cascaded slot at most, plus
        // one per level-0 slot that fires.
        while let Some((level, slot, start)) = self.next_slot() {
            if start > now {
                break;
            }
            self.elapsed = start;
            let chain = self.take_slot(level, slot);
            self.drain_chain(chain, |wheel, record| {
                if record.deadline <= start {
                    wheel.fire(record.id, out);
                } else {
                    // Later in this slot's span: a lower level now. Moving
                    // the record does not touch the entry.
                    wheel.place(record);
                }
            });
        }
        self.elapsed = self.elapsed.max(now);
        out.len() - before
    }

    /// The live entry `id` names, if any.
    fn live(&self, id: TimerId) -> Option<&Entry<T>> {
        self.entries
            .get(id.index as usize)
            .filter(|e| e.generation == id.generation)
    }

    /// Fires the timer behind a due record, unless it is a tombstone.
    fn fire(&mut self, id: TimerId, out: &mut Vec<T>) {
        if self.live(id).is_some() {
            out.push(self.entries.remove(id.index as usize).value);
        }
    }

    /// Puts a record in the chain its deadline belongs to, relative to
    /// `elapsed`.
    fn place(&mut self, record: Record) {
        self.records += 1;
        let chain = if record.deadline <= self.elapsed {
            &mut self.overdue
        } else {
            let level = level_for(self.elapsed, record.deadline);
            let slot = slot_for(record.deadline, level);
            let lvl = &mut self.levels[level];
            lvl.occupied |= 1 << slot;
            &mut lvl.slots[slot]
        };
        self.arena.push(chain, record);
    }

    /// Detaches a slot's chain and clears its occupancy bit.
    fn take_slot(&mut self, level: usize, slot: usize) -> Chain {
        let lvl = &mut self.levels[level];
        lvl.occupied &= !(1 << slot);
        std::mem::replace(&mut lvl.slots[slot], Chain::EMPTY)
    }

    /// Hands every record of a detached chain to `f`, in order, returning
    /// each block to the free list once read, so `f` may place records into
    /// other chains and reuse those very blocks.
    fn drain_chain(&mut self, chain: Chain, mut f: impl FnMut(&mut Self, Record)) {
        let mut block = chain.head;
        while block != NIL {
            let len = self.arena.blocks[block as usize].len as usize;
            self.records -= len;
            for i in 0..len {
                let record = self.arena.blocks[block as usize].records[i];
                f(self, record);
            }
            block = self.arena.free_block(block);
        }
    }

    /// Drops every tombstone: `O(records)`, run when tombstones pass
    /// [`TOMBSTONES_PER_LIVE`] per live timer plus [`SWEEP_SLACK`], and
    /// every [`GENERATION_SWEEP`] inserts.
    fn sweep(&mut self) {
        self.overdue = self.compact(self.overdue);
        for level in 0..LEVELS {
            let mut occupied = self.levels[level].occupied;
            while occupied != 0 {
                let slot = occupied.trailing_zeros() as usize;
                occupied &= occupied - 1;
                let chain = self.compact(self.levels[level].slots[slot]);
                self.levels[level].slots[slot] = chain;
                if chain.head == NIL {
                    self.levels[level].occupied &= !(1 << slot);
                }
            }
        }
    }

    /// Drops a chain's tombstones (see [`Arena::compact`]).
    fn compact(&mut self, chain: Chain) -> Chain {
        let entries = &self.entries;
        let live = |id: TimerId| {
            entries
                .get(id.index as usize)
                .is_some_and(|e| e.generation == id.generation)
        };
        let (chain, dropped) = self.arena.compact(chain, live);
        self.records -= dropped;
        chain
    }

    /// The earliest occupied slot as `(level, slot, start tick)`.
    ///
    /// Lower levels always come first: every record at level `L` agrees with
    /// `elapsed` on all digits above `L` and lies strictly ahead of it on
    /// digit `L`, so any slot at level `L` starts after the whole current
    /// block of level `L - 1` ends.
    fn next_slot(&self) -> Option<(usize, usize, Tick)> {
        for (level, lvl) in self.levels.iter().enumerate() {
            if lvl.occupied == 0 {
                continue;
            }
            let now_slot = slot_for(self.elapsed, level);
            debug_assert!(
                level == 0 || lvl.occupied & ((1u64 << now_slot) - 1) == 0,
                "level {level} has a slot behind now (slot {now_slot}, occupied {:#x})",
                lvl.occupied
            );
            let slot = lvl.occupied.trailing_zeros() as usize;
            return Some((level, slot, slot_start(self.elapsed, level, slot)));
        }
        None
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
        assert_eq!(old.index, new.index, "the slab slot is reused");
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
        assert_eq!(wheel.levels[0].occupied, 0);
        assert_eq!(wheel.records, 0);
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
    fn tombstones_stay_bounded_by_sweeps() {
        let mut wheel = TimerWheel::new();
        let ids: Vec<_> = (0..20_000u64).map(|i| wheel.insert(1_000 + i, i)).collect();
        for &id in &ids[..19_000] {
            wheel.cancel(id);
            assert!(
                wheel.records <= (TOMBSTONES_PER_LIVE + 1) * wheel.len() + SWEEP_SLACK + 1,
                "{} records for {} live",
                wheel.records,
                wheel.len()
            );
        }
        let mut fired = fire(&mut wheel, 100_000);
        fired.sort();
        assert_eq!(fired, (19_000..20_000).collect::<Vec<_>>());
        assert_eq!(wheel.records, 0);
    }

    #[test]
    fn sweep_keeps_live_timers_and_their_deadlines() {
        let mut wheel = TimerWheel::new();
        let a = wheel.insert(70, 'a');
        let b = wheel.insert(5_000, 'b');
        let c = wheel.insert(9, 'c');
        wheel.cancel(b);
        wheel.sweep();
        assert_eq!(wheel.records, 2);
        assert!(wheel.contains(a) && wheel.contains(c) && !wheel.contains(b));
        assert_eq!(fire(&mut wheel, 9), ['c']);
        assert_eq!(fire(&mut wheel, 70), ['a']);
    }

    #[test]
    fn next_deadline_is_none_when_only_tombstones_remain() {
        let mut wheel = TimerWheel::new();
        let id = wheel.insert(500, ());
        wheel.cancel(id);
        assert_eq!(wheel.next_deadline(), None);
        assert!(fire(&mut wheel, 1_000).is_empty());
    }
}
