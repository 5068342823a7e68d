//! A side table: state that few connections have (their own settings,
//! output handed over whole, a host name being resolved), kept by slab
//! slot beside the slab rather than in every connection's record.
//!
//! An idle connection is its record and nothing else, so a field added
//! there costs every connection; here it costs only the connections that
//! have the state. While nobody has any, asking is a length check, which
//! is what keeps it free on the hot path. An entry leaves with its
//! connection (step 8), or sooner.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// `T`s by slab slot, for the connections that have one.
pub(crate) struct SideTable<T> {
    by_slot: HashMap<u32, T, BuildHasherDefault<SlotHasher>>,
}

impl<T> Default for SideTable<T> {
    fn default() -> Self {
        SideTable {
            by_slot: HashMap::default(),
        }
    }
}

/// Hashes a slab slot by one multiplication (Fibonacci hashing) instead
/// of SipHash: a slot is the slab's choice, never a peer's, so there is
/// no flooding to defend against, and the table is asked on every write
/// of every connection once any connection has an entry.
#[derive(Default)]
pub(crate) struct SlotHasher(u64);

impl Hasher for SlotHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u32(&mut self, slot: u32) {
        self.0 = u64::from(slot).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

impl<T> SideTable<T> {
    pub(crate) fn get(&self, slot: u32) -> Option<&T> {
        if self.by_slot.is_empty() {
            return None; // the common case: nobody has one
        }
        self.by_slot.get(&slot)
    }

    pub(crate) fn get_mut(&mut self, slot: u32) -> Option<&mut T> {
        if self.by_slot.is_empty() {
            return None;
        }
        self.by_slot.get_mut(&slot)
    }

    pub(crate) fn insert(&mut self, slot: u32, value: T) {
        self.by_slot.insert(slot, value);
    }

    /// The slot's entry is done with, or its connection is gone: it is
    /// taken out (and dropped, unless the caller keeps it).
    pub(crate) fn remove(&mut self, slot: u32) -> Option<T> {
        if self.by_slot.is_empty() {
            return None;
        }
        self.by_slot.remove(&slot)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_slot.len()
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &T> {
        self.by_slot.values()
    }
}

impl<T: Default> SideTable<T> {
    /// The slot's entry, made if it had none.
    pub(crate) fn entry(&mut self, slot: u32) -> &mut T {
        self.by_slot.entry(slot).or_default()
    }
}
