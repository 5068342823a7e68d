//! Byte buffers with a read cursor, and the pool that lets an idle
//! connection hold none.
//!
//! A connection needs a buffer only while bytes wait: input that is not yet
//! a whole frame, output the socket has not yet taken. Most of the time
//! neither is true, so a connection keeps `Option<Buffer>`s that are `None`
//! and borrows from a [`BufferPool`] when bytes must wait. That is what
//! keeps an idle connection at a couple of hundred bytes (nginx does the
//! same with its per-request pools; a goroutine-per-connection server pays
//! for a stack and a read buffer per connection).
//!
//! The module is private; its items are `pub` only so that `cargo fuzz`
//! builds can reach them through `evloop::fuzzing` (`fuzz/`).

/// Buffers larger than this give capacity back once three quarters of it
/// is unused. It is the largest buffer the pool keeps
/// (`DEFAULT_POOL_MAX_CAPACITY`): a busy connection's buffer settles below
/// it and is never shrunk and regrown, only a burst beyond it is. An
/// emptied buffer goes back to the pool, which frees it if it is larger.
pub const SHRINK_ABOVE: usize = crate::config::DEFAULT_POOL_MAX_CAPACITY;

/// Bytes waiting in one direction of one connection: `data[head..]` is the
/// live part. Consuming moves `head`; when `head` passes half the live
/// data's end the rest is moved to the front, so consumed bytes are not
/// kept alive and a buffer that is read as fast as it is filled never grows.
#[derive(Debug, Default)]
pub struct Buffer {
    data: Vec<u8>,
    head: usize,
}

impl Buffer {
    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.data.len() - self.head
    }

    /// True when no bytes wait.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Allocated bytes (what the pool bounds).
    pub fn capacity(&self) -> usize {
        self.data.capacity()
    }

    /// The waiting bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.data[self.head..]
    }

    /// Appends bytes at the end.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.compact();
        self.data.extend_from_slice(bytes);
    }

    /// Drops `n` bytes from the front (all of them if `n` is larger).
    /// A buffer that grew for a burst and now holds little gives the
    /// capacity back (see [`SHRINK_ABOVE`]).
    pub fn consume(&mut self, n: usize) {
        self.head += n.min(self.len());
        if self.head == self.data.len() {
            self.data.clear();
            self.head = 0;
        }
        let live = self.len();
        if live > 0 && self.data.capacity() > SHRINK_ABOVE && live < self.data.capacity() / 4 {
            self.shrink();
        }
    }

    /// Moves the live bytes to the front and frees all but twice their
    /// size (at least [`SHRINK_ABOVE`]): a connection that once held a
    /// megabyte and now holds a line keeps a line's worth, not the
    /// megabyte. Each shrink copies the live bytes once, and can only
    /// happen after three quarters of the capacity were consumed, so it is
    /// `O(1)` per byte amortised.
    fn shrink(&mut self) {
        self.data.drain(..self.head);
        self.head = 0;
        let keep = (self.data.len() * 2).max(SHRINK_ABOVE);
        self.data.shrink_to(keep);
    }

    /// Empties the buffer, keeping its allocation.
    fn clear(&mut self) {
        self.data.clear();
        self.head = 0;
    }

    /// Moves the live bytes to the front once the consumed part is at
    /// least as large as the live part: each byte is moved at most once per
    /// time the buffer's contents turn over, so compaction is `O(1)` per
    /// byte amortised.
    fn compact(&mut self) {
        if self.head > 0 && self.head >= self.len() {
            self.data.copy_within(self.head.., 0);
            self.data.truncate(self.len());
            self.head = 0;
        }
    }
}

/// A bounded stack of empty buffers for reuse.
///
/// Bounds, so the pool never holds more memory than a busy moment needed:
/// at most `max_buffers` buffers, none larger than `max_capacity` (a
/// buffer that grew for one multi-megabyte message is freed rather than
/// kept), and at most `max_bytes` of capacity in all.
///
/// Buffers are boxed so that a connection's two `Option<Box<Buffer>>`
/// cost 16 bytes while idle, not 64: the pool keeps the boxes, so taking
/// one allocates nothing once the pool is warm.
#[derive(Debug)]
pub struct BufferPool {
    // Boxed on purpose: the boxes move in and out of connections, which
    // keep `Option<Box<Buffer>>` (8 bytes) instead of `Option<Buffer>`.
    #[allow(clippy::vec_box)]
    free: Vec<Box<Buffer>>,
    max_buffers: usize,
    max_capacity: usize,
    max_bytes: usize,
    /// Capacity of the buffers in `free`.
    bytes: usize,
    /// Buffers handed out and not yet returned.
    in_use: usize,
}

impl BufferPool {
    /// A pool keeping at most `max_buffers` buffers, none larger than
    /// `max_capacity`, `max_bytes` of capacity in all.
    pub fn new(max_buffers: usize, max_capacity: usize, max_bytes: usize) -> Self {
        BufferPool {
            free: Vec::new(),
            max_buffers,
            max_capacity,
            max_bytes,
            bytes: 0,
            in_use: 0,
        }
    }

    /// An empty buffer: a pooled one if any, else a new one (which
    /// allocates on first use).
    pub fn take(&mut self) -> Box<Buffer> {
        self.in_use += 1;
        match self.free.pop() {
            Some(buffer) => {
                self.bytes -= buffer.capacity();
                buffer
            }
            None => Box::default(),
        }
    }

    /// Returns a buffer; it is kept if the pool has room and it is not too
    /// large, else freed.
    pub fn give(&mut self, mut buffer: Box<Buffer>) {
        self.in_use = self.in_use.saturating_sub(1);
        let capacity = buffer.capacity();
        if self.free.len() < self.max_buffers
            && capacity <= self.max_capacity
            && self.bytes + capacity <= self.max_bytes
        {
            buffer.clear();
            self.bytes += capacity;
            self.free.push(buffer);
        }
    }

    /// Buffers waiting in the pool.
    pub fn pooled(&self) -> usize {
        self.free.len()
    }

    /// Capacity kept in the pool, in bytes.
    pub fn pooled_bytes(&self) -> usize {
        self.bytes
    }

    /// Buffers held by connections.
    pub fn in_use(&self) -> usize {
        self.in_use
    }

    /// After a handler panicked with a buffer in hand, the count of
    /// buffers held is set from what the connections really hold.
    pub fn set_in_use(&mut self, n: usize) {
        self.in_use = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_consume_and_reset() {
        let mut b = Buffer::default();
        b.extend(b"hello world");
        b.consume(6);
        assert_eq!(b.as_slice(), b"world");
        b.consume(100);
        assert!(b.is_empty());
        assert_eq!(b.head, 0, "an emptied buffer starts again at the front");
    }

    #[test]
    fn compacts_once_head_passes_half() {
        let mut b = Buffer::default();
        b.extend(b"abcdefgh");
        b.consume(3); // head 3, live 5: not yet
        b.extend(b"i");
        assert_eq!(b.head, 3);
        b.consume(2); // head 5, live 4: compact on next write
        b.extend(b"j");
        assert_eq!(b.head, 0);
        assert_eq!(b.as_slice(), b"fghij");
    }

    #[test]
    fn pool_bounds_count_and_size() {
        let mut pool = BufferPool::new(2, 1024, 1 << 20);
        let mut big = pool.take();
        big.extend(&[0; 4096]);
        let (a, b, c) = (pool.take(), pool.take(), pool.take());
        assert_eq!(pool.in_use(), 4);
        pool.give(big);
        assert_eq!(pool.pooled(), 0, "a buffer past max_capacity is freed");
        pool.give(a);
        pool.give(b);
        pool.give(c);
        assert_eq!(pool.pooled(), 2, "at most max_buffers are kept");
        assert_eq!(pool.in_use(), 0);
    }

    #[test]
    fn pool_bounds_bytes_kept() {
        let mut pool = BufferPool::new(100, 1 << 20, 3000);
        let mut a = pool.take();
        let mut b = pool.take();
        a.extend(&[0; 2000]);
        b.extend(&[0; 2000]);
        let cap = a.capacity();
        pool.give(a);
        pool.give(b);
        assert_eq!(pool.pooled(), 1, "the second buffer would pass max_bytes");
        assert_eq!(pool.pooled_bytes(), cap);
        let _ = pool.take();
        assert_eq!(pool.pooled_bytes(), 0);
    }

    #[test]
    fn a_burst_gives_its_capacity_back() {
        let mut b = Buffer::default();
        b.extend(&vec![7; 4 << 20]);
        b.consume((4 << 20) - 10);
        assert_eq!(b.len(), 10);
        assert!(
            b.capacity() <= SHRINK_ABOVE,
            "kept {} bytes of capacity for 10 live bytes",
            b.capacity()
        );
        assert_eq!(b.as_slice(), &[7; 10]);
    }
}
