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
//! # Costs
//!
//! | operation | cost |
//! | --- | --- |
//! | [`insert`](TimerWheel::insert) | `O(1)`: a slab insert and a list push |
//! | [`cancel`](TimerWheel::cancel) | `O(1)`: a generation check and a list unlink |
//! | [`expire`](TimerWheel::expire) | `O(fired + cascaded + LEVELS × occupied slots reached)` |
//! | [`next_deadline`](TimerWheel::next_deadline) | `O(LEVELS)`: one bitmap scan per level |
//!
//! Memory is one slab entry per live timer plus a fixed 11 × 64 slot heads.
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

use slab::Slab;

/// A point in time, counted in the caller's ticks.
pub type Tick = u64;

/// Bits of a deadline consumed by one level: 64 slots fit one `u64` bitmap.
const SLOT_BITS: u32 = 6;
/// Slots per level.
const SLOTS: usize = 1 << SLOT_BITS;
/// Number of levels. 11 × 6 = 66 bits ≥ 64, so every `u64` deadline has a
/// level and no deadline is ever clamped or fired early, however far ahead.
pub const LEVELS: usize = 11;
/// End of a slot list.
const NIL: u32 = u32::MAX;

/// Names one inserted timer, for [`TimerWheel::cancel`].
///
/// Ids are generational: the slab index of a fired or cancelled timer is
/// reused by later inserts, and the generation tells the new timer from the
/// old, so a stale id held by a connection that has moved on never cancels
/// somebody else's timer. The generation is a wheel-wide counter of inserts,
/// so a stale id could only match after 2^32 further inserts that happen to
/// land in the same slab index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerId {
    index: u32,
    generation: u32,
}

/// Which list an entry is linked into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// `slots[level][slot]`.
    Slot { level: u8, slot: u8 },
    /// The overdue list: inserted with a deadline already passed; fires on
    /// the next [`TimerWheel::expire`].
    Overdue,
}

#[derive(Debug)]
struct Entry<T> {
    deadline: Tick,
    generation: u32,
    place: Place,
    prev: u32,
    next: u32,
    value: T,
}

/// One ring of 64 slots, each the head of a doubly linked list threaded
/// through the entry slab, and the bitmap of which slots are non-empty.
#[derive(Debug, Clone)]
struct Level {
    occupied: u64,
    heads: [u32; SLOTS],
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
    /// Head of the overdue list.
    overdue: u32,
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
            levels: std::array::from_fn(|_| Level {
                occupied: 0,
                heads: [NIL; SLOTS],
            }),
            overdue: NIL,
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

    /// Adds a timer that fires at `deadline` and returns its id. `O(1)`.
    ///
    /// A deadline at or before [`now`](Self::now) is already due: it fires
    /// on the next [`expire`](Self::expire), whatever tick that is given.
    pub fn insert(&mut self, deadline: Tick, value: T) -> TimerId {
        let generation = self.generation;
        self.generation = self.generation.wrapping_add(1);
        let key = self.entries.insert(Entry {
            deadline,
            generation,
            place: Place::Overdue,
            prev: NIL,
            next: NIL,
            value,
        });
        // A slab of 2^32 timers would need well over 100 GiB; a failed
        // conversion here means memory ran out long before.
        let index = u32::try_from(key).expect("timer slab exceeds u32 indices");
        self.place(index);
        TimerId { index, generation }
    }

    /// Removes a live timer and returns its value; `None` if the id has
    /// already fired, been cancelled, or names a reused slot. `O(1)`.
    pub fn cancel(&mut self, id: TimerId) -> Option<T> {
        let entry = self.entries.get(id.index as usize)?;
        if entry.generation != id.generation {
            return None;
        }
        self.unlink(id.index);
        Some(self.entries.remove(id.index as usize).value)
    }

    /// The deadline of a live timer, or `None` as for [`cancel`](Self::cancel).
    pub fn deadline(&self, id: TimerId) -> Option<Tick> {
        self.entries
            .get(id.index as usize)
            .filter(|e| e.generation == id.generation)
            .map(|e| e.deadline)
    }

    /// The earliest tick at which [`expire`](Self::expire) may have work:
    /// `None` when the wheel is empty. Exact for timers due within the
    /// current 64-tick block, otherwise the start of the slot that holds the
    /// earliest timer (a lower bound: never later than the true deadline).
    /// If an overdue timer waits, this is [`now`](Self::now). `O(LEVELS)`.
    pub fn next_deadline(&self) -> Option<Tick> {
        if self.overdue != NIL {
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
        while self.overdue != NIL {
            let index = self.overdue;
            self.unlink(index);
            out.push(self.entries.remove(index as usize).value);
        }
        // Visit occupied slots in deadline order. Each visit moves `elapsed`
        // to the slot's start, fires what is due and cascades the rest to a
        // lower level, so the loop ends after at most one visit per level
        // per cascaded slot plus one per fired level-0 slot.
        while let Some((level, slot, start)) = self.next_slot() {
            if start > now {
                break;
            }
            self.elapsed = start;
            let mut index = self.take_slot(level, slot);
            while index != NIL {
                let next = self.entries[index as usize].next;
                if self.entries[index as usize].deadline <= start {
                    out.push(self.entries.remove(index as usize).value);
                } else {
                    self.place(index);
                }
                index = next;
            }
        }
        self.elapsed = self.elapsed.max(now);
        out.len() - before
    }

    /// Links the (unlinked) entry `index` into the list its deadline
    /// belongs to, relative to `elapsed`.
    fn place(&mut self, index: u32) {
        let deadline = self.entries[index as usize].deadline;
        let place = if deadline <= self.elapsed {
            Place::Overdue
        } else {
            let level = level_for(self.elapsed, deadline);
            Place::Slot {
                level: level as u8,
                slot: slot_for(deadline, level) as u8,
            }
        };
        let head = match place {
            Place::Overdue => &mut self.overdue,
            Place::Slot { level, slot } => {
                let lvl = &mut self.levels[level as usize];
                lvl.occupied |= 1 << slot;
                &mut lvl.heads[slot as usize]
            }
        };
        let old_head = std::mem::replace(head, index);
        if old_head != NIL {
            self.entries[old_head as usize].prev = index;
        }
        let entry = &mut self.entries[index as usize];
        entry.place = place;
        entry.prev = NIL;
        entry.next = old_head;
    }

    /// Unlinks entry `index` from its list, leaving it in the slab.
    fn unlink(&mut self, index: u32) {
        let (prev, next, place) = {
            let e = &self.entries[index as usize];
            (e.prev, e.next, e.place)
        };
        if next != NIL {
            self.entries[next as usize].prev = prev;
        }
        if prev != NIL {
            self.entries[prev as usize].next = next;
            return;
        }
        // `index` was the head of its list.
        match place {
            Place::Overdue => self.overdue = next,
            Place::Slot { level, slot } => {
                let lvl = &mut self.levels[level as usize];
                lvl.heads[slot as usize] = next;
                if next == NIL {
                    lvl.occupied &= !(1 << slot);
                }
            }
        }
    }

    /// Detaches a whole slot list and returns its head; the entries keep
    /// their links to each other and are re-placed or removed one by one.
    fn take_slot(&mut self, level: usize, slot: usize) -> u32 {
        let lvl = &mut self.levels[level];
        lvl.occupied &= !(1 << slot);
        std::mem::replace(&mut lvl.heads[slot], NIL)
    }

    /// The earliest occupied slot as `(level, slot, start tick)`.
    ///
    /// Lower levels always come first: every entry at level `L` agrees with
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

/// The level for `deadline` seen from `elapsed`: the base-64 digit of the
/// highest bit in which they differ. Level 0 when they differ only in the
/// lowest digit (or not at all).
fn level_for(elapsed: Tick, deadline: Tick) -> usize {
    // `| (SLOTS - 1)` makes the lowest digit always count as differing, so
    // the result is at least level 0 even when the two are equal.
    let differing = (elapsed ^ deadline) | (SLOTS as u64 - 1);
    let highest_bit = 63 - differing.leading_zeros();
    (highest_bit / SLOT_BITS) as usize
}

/// The slot of `tick` at `level`: that level's base-64 digit of the tick.
fn slot_for(tick: Tick, level: usize) -> usize {
    ((tick >> (level as u32 * SLOT_BITS)) & (SLOTS as u64 - 1)) as usize
}

/// The first tick of `slot` at `level`, in the level block holding `now`:
/// `now` with the digits of `level` and below replaced by `slot, 0, ..., 0`.
fn slot_start(now: Tick, level: usize, slot: usize) -> Tick {
    let shift = level as u32 * SLOT_BITS;
    // Bits above this level; level 10's block is all of u64 (shift 66).
    let block = now
        .checked_shr(shift + SLOT_BITS)
        .and_then(|high| high.checked_shl(shift + SLOT_BITS))
        .unwrap_or(0);
    block | ((slot as u64) << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fire<T>(wheel: &mut TimerWheel<T>, now: Tick) -> Vec<T> {
        let mut out = Vec::new();
        wheel.expire(now, &mut out);
        out
    }

    #[test]
    fn level_for_each_level_boundary() {
        assert_eq!(level_for(0, 0), 0);
        assert_eq!(level_for(0, 1), 0);
        for level in 1..LEVELS {
            let span = 1u64 << (level as u32 * SLOT_BITS).min(63);
            if level as u32 * SLOT_BITS < 64 {
                // The last tick of the level below and the first of this one.
                assert_eq!(level_for(0, span - 1), level - 1, "span {span}");
                assert_eq!(level_for(0, span), level, "span {span}");
            }
        }
        assert_eq!(level_for(0, u64::MAX), LEVELS - 1);
        assert_eq!(level_for(u64::MAX - 1, u64::MAX), 0);
        // Digits equal above level 0: same block, level 0.
        assert_eq!(level_for(64, 127), 0);
        // 63 -> 64 crosses a level-0 block boundary though only 1 apart.
        assert_eq!(level_for(63, 64), 1);
        assert_eq!(level_for(4095, 4096), 2);
    }

    #[test]
    fn slot_for_and_slot_start_each_level() {
        for level in 0..LEVELS - 1 {
            let shift = level as u32 * SLOT_BITS;
            let tick = (5u64 << shift) + (1u64 << shift) / 2;
            assert_eq!(slot_for(tick, level), 5);
            assert_eq!(slot_start(tick, level, 5), 5u64 << shift);
            assert_eq!(slot_start(tick, level, 63), 63u64 << shift);
        }
        // The top level holds only the top 4 bits and its block is all of u64.
        assert_eq!(slot_for(u64::MAX, LEVELS - 1), 15);
        assert_eq!(slot_start(u64::MAX, LEVELS - 1, 15), 15u64 << 60);
        // Higher digits of now are kept.
        assert_eq!(slot_start(3 * 4096 + 70, 1, 2), 3 * 4096 + 128);
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
        assert_eq!(wheel.deadline(id), Some(100));
        assert_eq!(wheel.cancel(id), Some(7));
        assert_eq!(wheel.cancel(id), None);
        assert_eq!(wheel.deadline(id), None);
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
    }

    #[test]
    fn insert_during_dispatch_at_now_waits_for_next_expire() {
        let mut wheel = TimerWheel::new();
        wheel.insert(10, 1);
        assert_eq!(fire(&mut wheel, 10), [1]);
        wheel.insert(10, 2); // a handler re-arming at "now"
        assert_eq!(fire(&mut wheel, 10), [2]);
    }
}
