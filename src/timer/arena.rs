//! Where timers live: their records, in blocks chained per slot, and a
//! dense table that says where each timer's record is.
//!
//! A record holds the timer's deadline, id and value, so firing a timer
//! reads its record (in memory order, with the rest of its block) and
//! nothing else: no per-timer entry elsewhere to fetch, which is what cost
//! the earlier design one cache miss per fired timer.
//!
//! Cancel has to find the record, so the *place table*, indexed by the
//! timer's index, holds where its record is (`block << BLOCK_SHIFT | pos`)
//! and its generation. Moving a record (a cascade, or filling a hole on
//! cancel) writes its new place; firing writes the place free. These are
//! stores without loads, so they do not hold up the walk.
//!
//! Cancel leaves no tombstone: the chain's last record moves into the hole,
//! so every record in the arena is a live timer, and no sweep is needed.
//!
//! ```text
//!  chain head ─▶ block (≤ 64 records, the only partly filled one)
//!                 next ─▶ block (64 records) ─▶ block (64) ─▶ NIL
//!
//!  places[index] = { generation, at = block << 6 | pos }   (live)
//!                  { generation + 1, at = next free index } (free)
//! ```

use super::{Tick, TimerId};

/// log2 of [`BLOCK_RECORDS`]: a record's place packs its block index and
/// its position in the block into one `u32`.
const BLOCK_SHIFT: u32 = 6;
/// Records per block. At 24 bytes a record (a `u64` value) a block is
/// 1.5 KiB: large enough that a cascade reads memory sequentially, small
/// enough that a nearly empty slot wastes little.
pub(super) const BLOCK_RECORDS: usize = 1 << BLOCK_SHIFT;
/// Blocks a place can name: 2^26 blocks of 64 records is 2^32 records,
/// as many as `u32` timer indices can name.
const MAX_BLOCKS: usize = 1 << (32 - BLOCK_SHIFT);
/// No block: the end of a chain, or of the block free list.
pub(super) const NIL: u32 = u32::MAX;
/// No free place: every index handed out is live.
const NO_FREE_PLACE: u32 = u32::MAX;

/// One timer: what it fires with, when, and its id.
#[derive(Debug)]
pub(super) struct Record<T> {
    pub(super) deadline: Tick,
    pub(super) id: TimerId,
    pub(super) value: T,
}

/// A piece of a chain. Only the chain's head block may be partly filled;
/// `chain` is the chain it belongs to, so cancel can find that head.
#[derive(Debug)]
struct Block<T> {
    /// Capacity [`BLOCK_RECORDS`], allocated once and kept across reuse.
    records: Vec<Record<T>>,
    next: u32,
    chain: u16,
}

/// Where timer `index` is. Live: its generation and its record's place.
/// Free: a generation no outstanding id has, and the next free index.
#[derive(Debug, Clone, Copy)]
struct Place {
    generation: u32,
    at: u32,
}

/// The records of every chain, the free list of blocks, and the place
/// table. Blocks and places are reused, never returned to the allocator:
/// the arena keeps the memory of the most timers it has held at once.
#[derive(Debug)]
pub(super) struct Arena<T> {
    blocks: Vec<Block<T>>,
    free_blocks: u32,
    /// The head block of each chain, `NIL` when the chain is empty.
    heads: Vec<u32>,
    places: Vec<Place>,
    free_places: u32,
    /// Live timers, which is also the number of records.
    len: usize,
}

impl<T> Arena<T> {
    /// An arena of `chains` empty chains with room for `capacity` timers
    /// before the place table grows.
    pub(super) fn new(chains: usize, capacity: usize) -> Self {
        debug_assert!(chains <= usize::from(u16::MAX), "{chains} chains");
        Arena {
            blocks: Vec::with_capacity(capacity / BLOCK_RECORDS),
            free_blocks: NIL,
            heads: vec![NIL; chains],
            places: Vec::with_capacity(capacity),
            free_places: NO_FREE_PLACE,
            len: 0,
        }
    }

    /// Live timers.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_chain_empty(&self, chain: usize) -> bool {
        self.heads[chain] == NIL
    }

    /// Adds a timer to `chain` and returns its id. `O(1)` amortised: the
    /// place table or the block list may grow.
    pub(super) fn insert(&mut self, chain: usize, deadline: Tick, value: T) -> TimerId {
        let id = match self.free_places {
            NO_FREE_PLACE => {
                // 2^32 timers would need over 100 GiB: memory runs out first.
                let index = u32::try_from(self.places.len())
                    .ok()
                    .filter(|&i| i != NO_FREE_PLACE)
                    .expect("timer place table exceeds u32 indices");
                self.places.push(Place {
                    generation: 0,
                    at: 0,
                });
                TimerId {
                    index,
                    generation: 0,
                }
            }
            index => {
                let place = self.places[index as usize];
                self.free_places = place.at;
                TimerId {
                    index,
                    generation: place.generation,
                }
            }
        };
        self.len += 1;
        self.push(
            chain,
            Record {
                deadline,
                id,
                value,
            },
        );
        id
    }

    /// Appends a record to `chain`, taking a new head block when the head
    /// is full, and writes the record's new place.
    #[inline]
    pub(super) fn push(&mut self, chain: usize, record: Record<T>) {
        let mut head = self.heads[chain];
        if head == NIL || self.blocks[head as usize].records.len() == BLOCK_RECORDS {
            head = self.alloc(chain, head);
            self.heads[chain] = head;
        }
        let records = &mut self.blocks[head as usize].records;
        let at = head << BLOCK_SHIFT | records.len() as u32;
        self.places[record.id.index as usize].at = at;
        records.push(record);
    }

    /// Removes a live timer and returns its value and the chain it was in,
    /// and whether that chain is now empty; `None` for a stale id. The
    /// chain's last record fills the hole: `O(1)`.
    pub(super) fn remove(&mut self, id: TimerId) -> Option<(T, usize, bool)> {
        let at = self.live(id)?;
        let (block, pos) = ((at >> BLOCK_SHIFT) as usize, (at as usize) % BLOCK_RECORDS);
        let chain = usize::from(self.blocks[block].chain);
        let head = self.heads[chain] as usize;
        let last = self.blocks[head]
            .records
            .pop()
            .expect("a chain's head block is never empty");
        let record = if (head, self.blocks[head].records.len()) == (block, pos) {
            last
        } else {
            self.places[last.id.index as usize].at = at;
            std::mem::replace(&mut self.blocks[block].records[pos], last)
        };
        debug_assert_eq!(record.id, id, "place {at:#x} holds another timer");
        if self.blocks[head].records.is_empty() {
            self.heads[chain] = self.free_block(head as u32);
        }
        Some((self.fire(record), chain, self.heads[chain] == NIL))
    }

    /// Frees the place of a record that has left its chain and returns the
    /// record's value. A store, no load: the generation comes from the
    /// record.
    #[inline]
    pub(super) fn fire(&mut self, record: Record<T>) -> T {
        let index = record.id.index;
        self.places[index as usize] = Place {
            generation: record.id.generation.wrapping_add(1),
            at: self.free_places,
        };
        self.free_places = index;
        self.len -= 1;
        record.value
    }

    /// The value of a live timer.
    pub(super) fn get(&self, id: TimerId) -> Option<&T> {
        let at = self.live(id)?;
        let block = &self.blocks[(at >> BLOCK_SHIFT) as usize];
        Some(&block.records[(at as usize) % BLOCK_RECORDS].value)
    }

    /// The place of a live timer's record; `None` for a stale id.
    ///
    /// A freed place's generation is one past that of the id it last
    /// served, so no outstanding id matches it until the index is handed
    /// out again with that generation. Generations wrap after 2^32 reuses
    /// of one index: an id held across that many is the one stale id this
    /// check can mistake for live.
    pub(super) fn live(&self, id: TimerId) -> Option<u32> {
        let place = self.places.get(id.index as usize)?;
        (place.generation == id.generation).then_some(place.at)
    }

    /// Detaches a chain, returning its first block (or `NIL`): the caller
    /// reads each block with [`open`](Self::open) and
    /// [`close`](Self::close) and moves or fires every record.
    pub(super) fn take_chain(&mut self, chain: usize) -> u32 {
        std::mem::replace(&mut self.heads[chain], NIL)
    }

    /// The records of a detached block, to drain.
    pub(super) fn open(&mut self, block: u32) -> Vec<Record<T>> {
        std::mem::take(&mut self.blocks[block as usize].records)
    }

    /// Gives back a block's drained records (empty, capacity kept), frees
    /// the block and returns the next one in its chain.
    pub(super) fn close(&mut self, block: u32, records: Vec<Record<T>>) -> u32 {
        debug_assert!(records.is_empty(), "block {block} closed with records");
        self.blocks[block as usize].records = records;
        self.free_block(block)
    }

    /// Records in every chain, counted by walking them: for tests to check
    /// that no record outlives its timer.
    #[cfg(test)]
    pub(super) fn records(&self) -> usize {
        let mut count = 0;
        for &head in &self.heads {
            let mut block = head;
            while block != NIL {
                count += self.blocks[block as usize].records.len();
                block = self.blocks[block as usize].next;
            }
        }
        count
    }

    /// A block for the head of `chain`, in front of `next`.
    fn alloc(&mut self, chain: usize, next: u32) -> u32 {
        let chain = chain as u16;
        if self.free_blocks != NIL {
            let block = self.free_blocks;
            let b = &mut self.blocks[block as usize];
            self.free_blocks = b.next;
            (b.next, b.chain) = (next, chain);
            return block;
        }
        assert!(self.blocks.len() < MAX_BLOCKS, "timer block arena full");
        self.blocks.push(Block {
            records: Vec::with_capacity(BLOCK_RECORDS),
            next,
            chain,
        });
        (self.blocks.len() - 1) as u32
    }

    /// Puts an empty block on the free list; returns the block after it.
    fn free_block(&mut self, block: u32) -> u32 {
        let b = &mut self.blocks[block as usize];
        let next = b.next;
        b.next = self.free_blocks;
        self.free_blocks = block;
        next
    }
}
