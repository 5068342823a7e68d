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

/// Bytes waiting in one direction of one connection: `data[head..]` is the
/// live part. Consuming moves `head`; when `head` passes half the live
/// data's end the rest is moved to the front, so consumed bytes are not
/// kept alive and a buffer that is read as fast as it is filled never grows.
#[derive(Debug, Default)]
pub(crate) struct Buffer {
    data: Vec<u8>,
    head: usize,
}

impl Buffer {
    /// Bytes waiting.
    pub(crate) fn len(&self) -> usize {
        self.data.len() - self.head
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Allocated bytes (what the pool bounds).
    pub(crate) fn capacity(&self) -> usize {
        self.data.capacity()
    }

    /// The waiting bytes.
    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.data[self.head..]
    }

    /// Appends bytes at the end.
    pub(crate) fn extend(&mut self, bytes: &[u8]) {
        self.compact();
        self.data.extend_from_slice(bytes);
    }

    /// Drops `n` bytes from the front (all of them if `n` is larger).
    pub(crate) fn consume(&mut self, n: usize) {
        self.head += n.min(self.len());
        if self.head == self.data.len() {
            self.data.clear();
            self.head = 0;
        }
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
/// Bounds, both so the pool never holds more memory than a busy moment
/// needed: at most `max_buffers` buffers, and none larger than
/// `max_capacity` (a buffer that grew for one multi-megabyte message is
/// freed rather than kept).
#[derive(Debug)]
pub(crate) struct BufferPool {
    free: Vec<Buffer>,
    max_buffers: usize,
    max_capacity: usize,
    /// Buffers handed out and not yet returned.
    in_use: usize,
}

impl BufferPool {
    pub(crate) fn new(max_buffers: usize, max_capacity: usize) -> Self {
        BufferPool {
            free: Vec::new(),
            max_buffers,
            max_capacity,
            in_use: 0,
        }
    }

    /// An empty buffer: a pooled one if any, else a new one (which
    /// allocates on first use).
    pub(crate) fn take(&mut self) -> Buffer {
        self.in_use += 1;
        self.free.pop().unwrap_or_default()
    }

    /// Returns a buffer; it is kept if the pool has room and it is not too
    /// large, else freed.
    pub(crate) fn give(&mut self, mut buffer: Buffer) {
        self.in_use = self.in_use.saturating_sub(1);
        if self.free.len() < self.max_buffers && buffer.capacity() <= self.max_capacity {
            buffer.clear();
            self.free.push(buffer);
        }
    }

    /// Buffers waiting in the pool.
    pub(crate) fn pooled(&self) -> usize {
        self.free.len()
    }

    /// Buffers held by connections.
    pub(crate) fn in_use(&self) -> usize {
        self.in_use
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
        let mut pool = BufferPool::new(2, 1024);
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
}
