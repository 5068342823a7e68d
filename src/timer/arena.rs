//! The storage behind the slots: records in 1 KiB blocks, one arena of
//! blocks per wheel, and the compaction that squeezes tombstones out.
//!
//! A slot is a chain of blocks, not a linked list of entries, so that a
//! cascade reads records in memory order (see the module docs of
//! [`timer`](super) for the measurement that chose this).

use super::{Tick, TimerId};

/// Tombstones tolerated before a sweep beyond [`TOMBSTONES_PER_LIVE`] per
/// live timer: small wheels never sweep.
pub(super) const SWEEP_SLACK: usize = 4096;
/// Tombstones tolerated per live timer before a sweep. A sweep reads every
/// record, so with a ratio `k` cancelling everything costs `(k+1)/k`
/// record checks per cancel: 2 at `k = 1` (measured 26 ns per cancel),
/// 1.33 at `k = 3` (19 ns). The price is memory: at most `k + 1` 16-byte
/// records per live timer. Idle connections make no tombstones (their
/// timers re-arm lazily), so only timer churn pays it.
pub(super) const TOMBSTONES_PER_LIVE: usize = 3;
/// Records per block: 62 × 16 bytes plus the block's two links is 1 KiB,
/// large enough that a cascade reads memory sequentially, small enough that
/// a nearly empty slot wastes little.
pub(super) const BLOCK_RECORDS: usize = 62;
/// End of a block chain.
pub(super) const NIL: u32 = u32::MAX;

/// What a slot holds: enough to cascade a timer without touching its entry.
#[derive(Debug, Clone, Copy)]
pub(super) struct Record {
    pub(super) deadline: Tick,
    pub(super) id: TimerId,
}

impl Record {
    const EMPTY: Record = Record {
        deadline: 0,
        id: TimerId {
            index: NIL,
            generation: 0,
        },
    };
}

/// A piece of a slot's list: records filled front to back, then the next
/// block. Blocks come from one arena per wheel and go back to its free list.
#[derive(Debug, Clone)]
pub(super) struct Block {
    pub(super) records: [Record; BLOCK_RECORDS],
    pub(super) len: u32,
    next: u32,
}

/// A slot's list of blocks: records are pushed at the tail block.
#[derive(Debug, Clone, Copy)]
pub(super) struct Chain {
    pub(super) head: u32,
    tail: u32,
}

impl Chain {
    pub(super) const EMPTY: Chain = Chain {
        head: NIL,
        tail: NIL,
    };
}

/// The blocks behind every chain, with a free list threaded through
/// `next`. Blocks are reused, never returned to the allocator: the wheel's
/// memory is that of the most records it has held at once.
#[derive(Debug)]
pub(super) struct Arena {
    pub(super) blocks: Vec<Block>,
    free: u32,
}

impl Arena {
    /// An arena with room for `records` records before it allocates.
    pub(super) fn with_capacity(records: usize) -> Self {
        Arena {
            blocks: Vec::with_capacity(records / BLOCK_RECORDS),
            free: NIL,
        }
    }

    /// Appends a record to a chain, taking a new tail block when the last
    /// one is full.
    #[inline]
    pub(super) fn push(&mut self, chain: &mut Chain, record: Record) {
        if chain.tail == NIL || self.blocks[chain.tail as usize].len as usize == BLOCK_RECORDS {
            let block = self.alloc();
            match chain.tail {
                NIL => chain.head = block,
                tail => self.blocks[tail as usize].next = block,
            }
            chain.tail = block;
        }
        let tail = &mut self.blocks[chain.tail as usize];
        tail.records[tail.len as usize] = record;
        tail.len += 1;
    }

    fn alloc(&mut self) -> u32 {
        if self.free != NIL {
            let block = self.free;
            let b = &mut self.blocks[block as usize];
            self.free = b.next;
            b.len = 0;
            b.next = NIL;
            return block;
        }
        self.blocks.push(Block {
            records: [Record::EMPTY; BLOCK_RECORDS],
            len: 0,
            next: NIL,
        });
        // 2^32 blocks of 1 KiB is 4 TiB: memory runs out long before.
        u32::try_from(self.blocks.len() - 1).expect("timer block arena exceeds u32 indices")
    }

    /// Puts a read block on the free list; returns the block after it.
    pub(super) fn free_block(&mut self, block: u32) -> u32 {
        let b = &mut self.blocks[block as usize];
        let next = b.next;
        b.next = self.free;
        self.free = block;
        next
    }

    /// Squeezes the records `live` rejects (tombstones) out of a chain in
    /// place: live records slide toward the head and emptied blocks at the
    /// end are freed. Returns the new chain and how many records it dropped.
    pub(super) fn compact(
        &mut self,
        chain: Chain,
        live: impl Fn(TimerId) -> bool,
    ) -> (Chain, usize) {
        let (mut write, mut at) = (chain.head, 0usize);
        let mut read = chain.head;
        let mut dropped = 0;
        while read != NIL {
            let len = self.blocks[read as usize].len as usize;
            for i in 0..len {
                let record = self.blocks[read as usize].records[i];
                if !live(record.id) {
                    dropped += 1;
                    continue;
                }
                if at == BLOCK_RECORDS {
                    self.blocks[write as usize].len = BLOCK_RECORDS as u32;
                    write = self.blocks[write as usize].next;
                    at = 0;
                }
                self.blocks[write as usize].records[at] = record;
                at += 1;
            }
            read = self.blocks[read as usize].next;
        }
        if chain.head == NIL || (write == chain.head && at == 0) {
            let mut block = chain.head;
            while block != NIL {
                block = self.free_block(block);
            }
            return (Chain::EMPTY, dropped);
        }
        let tail = &mut self.blocks[write as usize];
        tail.len = at as u32;
        let mut rest = std::mem::replace(&mut tail.next, NIL);
        while rest != NIL {
            rest = self.free_block(rest);
        }
        let chain = Chain {
            head: chain.head,
            tail: write,
        };
        (chain, dropped)
    }
}
