//! `Buffer` (the cursor buffer every connection reads and writes through)
//! and `BufferPool`, driven by a sequence of operations and checked
//! against a `VecDeque` model after each one.
//!
//! Checks: the bytes waiting are exactly the model's, in order; a buffer
//! above `SHRINK_ABOVE` holding bytes keeps at least a quarter of its
//! capacity in use after a consume (it gives capacity back); the pool
//! never holds more buffers or bytes than its bounds, hands out only
//! empty buffers, and counts the buffers out.
#![no_main]

use std::collections::VecDeque;

use evloop::fuzzing::{Buffer, BufferPool, SHRINK_ABOVE};
use libfuzzer_sys::{arbitrary, fuzz_target};

/// Most bytes the model holds: four times `SHRINK_ABOVE`, enough to grow
/// past it and shrink back, small enough to keep runs fast.
const MAX_HELD: usize = 4 * SHRINK_ABOVE;
const POOL_BUFFERS: usize = 4;
const POOL_CAPACITY: usize = SHRINK_ABOVE;
const POOL_BYTES: usize = 2 * SHRINK_ABOVE;

#[derive(arbitrary::Arbitrary, Debug)]
enum Op {
    /// Appends `len << shift` bytes (shift taken modulo 8).
    Extend { len: u16, shift: u8 },
    /// Consumes `n` bytes (more than are waiting consumes all).
    Consume { n: u32 },
    /// Takes a buffer from the pool and fills it with `len` bytes.
    Take { len: u16 },
    /// Returns the `which`-th buffer out to the pool.
    Give { which: u8 },
}

fuzz_target!(|ops: Vec<Op>| {
    let mut pool = BufferPool::new(POOL_BUFFERS, POOL_CAPACITY, POOL_BYTES);
    let mut buffer = Buffer::default();
    let mut model: VecDeque<u8> = VecDeque::new();
    let mut out: Vec<(Box<Buffer>, usize)> = Vec::new();
    let mut next: u8 = 0;
    let mut fill = |len: usize| -> Vec<u8> {
        (0..len)
            .map(|_| {
                next = next.wrapping_add(1);
                next
            })
            .collect()
    };
    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Extend { len, shift } => {
                let len = usize::from(len) << (shift % 8);
                if model.len() + len > MAX_HELD {
                    continue;
                }
                let bytes = fill(len);
                buffer.extend(&bytes);
                model.extend(&bytes);
            }
            Op::Consume { n } => {
                let n = n as usize;
                buffer.consume(n);
                model.drain(..n.min(model.len()));
                let (live, capacity) = (buffer.len(), buffer.capacity());
                assert!(
                    live == 0 || capacity <= SHRINK_ABOVE || live >= capacity / 4,
                    "{live} live bytes keep {capacity} of capacity"
                );
            }
            Op::Take { len } => {
                let mut taken = pool.take();
                assert!(taken.is_empty(), "the pool handed out a buffer with bytes");
                let bytes = fill(usize::from(len));
                taken.extend(&bytes);
                assert_eq!(taken.as_slice(), &bytes[..]);
                out.push((taken, bytes.len()));
            }
            Op::Give { which } => {
                if !out.is_empty() {
                    let (given, len) = out.swap_remove(usize::from(which) % out.len());
                    assert_eq!(given.len(), len);
                    pool.give(given);
                }
            }
        }
        assert_eq!(buffer.len(), model.len());
        assert_eq!(buffer.is_empty(), model.is_empty());
        assert_eq!(buffer.as_slice().first(), model.front());
        assert_eq!(buffer.as_slice().last(), model.back());
        // Every byte, every 16th operation and at the end: a wrong byte
        // stays wrong, and comparing a megabyte per operation would make
        // the target a hundred times slower.
        if step % 16 == 0 {
            assert!(buffer.as_slice().iter().eq(model.iter()), "bytes differ");
        }
        assert!(pool.pooled() <= POOL_BUFFERS);
        assert!(pool.pooled_bytes() <= POOL_BYTES);
        assert_eq!(pool.in_use(), out.len());
    }
    assert!(buffer.as_slice().iter().eq(model.iter()), "bytes differ");
});
