//! Where a deadline goes: the levels, the base-64 slot arithmetic, and the
//! occupancy bitmaps that let the wheel skip empty slots.
//!
//! Nothing here knows about records or values: these are pure functions of
//! two ticks, tested exhaustively at every level boundary below, because an
//! off-by-one here fires a timer a whole slot early or late.

use super::Tick;

/// Bits of a deadline consumed by one level: 64 slots fit one `u64` bitmap.
pub(super) const SLOT_BITS: u32 = 6;
/// Slots per level.
pub(super) const SLOTS: usize = 1 << SLOT_BITS;
/// Number of levels. 11 × 6 = 66 bits ≥ 64, so every `u64` deadline has a
/// level and no deadline is ever clamped or fired early, however far ahead.
pub const LEVELS: usize = 11;

/// Chains in a wheel: one per slot of every level, then the overdue chain.
pub(super) const CHAINS: usize = LEVELS * SLOTS + 1;
/// The chain of records inserted with a deadline already passed: they fire
/// on the next `expire`.
pub(super) const OVERDUE: usize = LEVELS * SLOTS;

/// The chain that holds `slot` of `level`.
pub(super) fn chain(level: usize, slot: usize) -> usize {
    level * SLOTS + slot
}

/// One bit per slot, set while the slot's chain is non-empty: finding the
/// next non-empty slot is one `trailing_zeros` per level.
#[derive(Debug, Default)]
pub(super) struct Occupancy([u64; LEVELS]);

impl Occupancy {
    pub(super) fn set(&mut self, level: usize, slot: usize) {
        self.0[level] |= 1 << slot;
    }

    /// Clears the bit of a level slot's chain; the overdue chain has none.
    pub(super) fn clear(&mut self, chain: usize) {
        if chain != OVERDUE {
            self.0[chain / SLOTS] &= !(1 << (chain % SLOTS));
        }
    }

    /// The earliest occupied slot as `(level, slot, start tick)`.
    ///
    /// Lower levels always come first: every record at level `L` agrees with
    /// `elapsed` on all digits above `L` and lies strictly ahead of it on
    /// digit `L`, so any slot at level `L` starts after the whole current
    /// block of level `L - 1` ends.
    pub(super) fn next(&self, elapsed: Tick) -> Option<(usize, usize, Tick)> {
        let (level, &occupied) = self.0.iter().enumerate().find(|(_, &o)| o != 0)?;
        let now_slot = slot_for(elapsed, level);
        debug_assert!(
            level == 0 || occupied & ((1u64 << now_slot) - 1) == 0,
            "level {level} has a slot behind now (slot {now_slot}, occupied {occupied:#x})"
        );
        let slot = occupied.trailing_zeros() as usize;
        Some((level, slot, slot_start(elapsed, level, slot)))
    }

    #[cfg(test)]
    pub(super) fn level(&self, level: usize) -> u64 {
        self.0[level]
    }
}

/// The level for `deadline` seen from `elapsed`: the base-64 digit of the
/// highest bit in which they differ. Level 0 when they differ only in the
/// lowest digit (or not at all).
pub(super) fn level_for(elapsed: Tick, deadline: Tick) -> usize {
    // `| (SLOTS - 1)` makes the lowest digit always count as differing, so
    // the result is at least level 0 even when the two are equal.
    let differing = (elapsed ^ deadline) | (SLOTS as u64 - 1);
    let highest_bit = 63 - differing.leading_zeros();
    (highest_bit / SLOT_BITS) as usize
}

/// The slot of `tick` at `level`: that level's base-64 digit of the tick.
pub(super) fn slot_for(tick: Tick, level: usize) -> usize {
    ((tick >> (level as u32 * SLOT_BITS)) & (SLOTS as u64 - 1)) as usize
}

/// The first tick of `slot` at `level`, in the level block holding `now`:
/// `now` with the digits of `level` and below replaced by `slot, 0, ..., 0`.
pub(super) fn slot_start(now: Tick, level: usize, slot: usize) -> Tick {
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

    /// The definition `level_for` computes with bit tricks: the lowest
    /// level above whose digits `elapsed` and `deadline` agree.
    fn level_by_definition(elapsed: Tick, deadline: Tick) -> usize {
        (0..LEVELS)
            .find(|&level| {
                let above = (level as u32 + 1) * SLOT_BITS;
                elapsed.checked_shr(above).unwrap_or(0) == deadline.checked_shr(above).unwrap_or(0)
            })
            .expect("level 10 covers all of u64")
    }

    /// What the wheel relies on, for one `(elapsed, deadline)` pair with
    /// `deadline > elapsed`: the slot `place` picks starts at or before the
    /// deadline, ends after it, and (above level 0) lies strictly ahead of
    /// now's digit, so it comes up later and cascades exactly once.
    fn check_pair(elapsed: Tick, deadline: Tick) {
        let level = level_for(elapsed, deadline);
        assert_eq!(
            level,
            level_by_definition(elapsed, deadline),
            "{elapsed} -> {deadline}"
        );
        let slot = slot_for(deadline, level);
        let start = slot_start(elapsed, level, slot);
        let shift = level as u32 * SLOT_BITS;
        assert_eq!(
            start >> shift,
            deadline >> shift,
            "{elapsed} -> {deadline}: start {start}"
        );
        assert_eq!(slot_for(start, level), slot);
        if level > 0 {
            assert!(slot > slot_for(elapsed, level), "{elapsed} -> {deadline}");
            assert!(start > elapsed, "{elapsed} -> {deadline}: start {start}");
        }
    }

    #[test]
    fn every_pair_across_the_first_two_level_boundaries() {
        // 130 values of now (crossing ticks 64 and 128) against every
        // deadline up to 9,000 ticks ahead (crossing 4,096 and 8,192):
        // 1.2 million pairs, every one of the first three levels.
        for elapsed in 0..130 {
            for deadline in elapsed + 1..elapsed + 9_000 {
                check_pair(elapsed, deadline);
            }
        }
    }

    #[test]
    fn sampled_pairs_at_every_level() {
        // xorshift64: deterministic, so a failure replays.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..200_000 {
            let (a, b) = (next(), next() >> (next() % 64));
            let elapsed = a >> (next() % 64);
            let deadline = elapsed.saturating_add(b.max(1));
            if deadline > elapsed {
                check_pair(elapsed, deadline);
            }
        }
        check_pair(0, u64::MAX);
        check_pair(u64::MAX - 1, u64::MAX);
    }

    #[test]
    fn slot_start_of_every_slot_at_every_level() {
        for level in 0..LEVELS {
            let shift = level as u32 * SLOT_BITS;
            let slots = if level == LEVELS - 1 { 16 } else { SLOTS };
            for now in [0, 1, 4_095, 4_096, 1 << 40, u64::MAX / 3, u64::MAX] {
                for slot in 0..slots {
                    let start = slot_start(now, level, slot);
                    assert_eq!(slot_for(start, level), slot, "level {level} slot {slot}");
                    // The digits below this level are zero, those above are now's.
                    assert_eq!(start & ((1u64 << shift) - 1), 0);
                    let above = shift + SLOT_BITS;
                    if above < 64 {
                        assert_eq!(start >> above, now >> above, "level {level} slot {slot}");
                    }
                }
            }
        }
    }

    #[test]
    fn occupancy_finds_the_lowest_level_first_and_clears_by_chain() {
        let mut occupancy = Occupancy::default();
        assert_eq!(occupancy.next(0), None);
        occupancy.set(2, 1);
        occupancy.set(1, 63);
        occupancy.set(1, 5);
        assert_eq!(occupancy.next(0), Some((1, 5, 5 * 64)));
        occupancy.clear(chain(1, 5));
        assert_eq!(occupancy.next(0), Some((1, 63, 63 * 64)));
        occupancy.clear(chain(1, 63));
        assert_eq!(occupancy.next(0), Some((2, 1, 4_096)));
        occupancy.clear(OVERDUE);
        assert_eq!(occupancy.level(2), 1 << 1);
        occupancy.clear(chain(2, 1));
        assert_eq!(occupancy.next(0), None);
        // Chains number every slot once and the overdue chain after them.
        assert_eq!(chain(LEVELS - 1, SLOTS - 1) + 1, OVERDUE);
        assert_eq!(OVERDUE + 1, CHAINS);
    }
}
