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

/// `T`s by slab slot, for the connections that have one.
pub(crate) struct SideTable<T> {
    by_slot: HashMap<u32, T>,
}

impl<T> Default for SideTable<T> {
    fn default() -> Self {
        SideTable {
            by_slot: HashMap::new(),
        }
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
