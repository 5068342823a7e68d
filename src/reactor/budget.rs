//! Memory across connections: one budget for the bytes waiting in every
//! connection's buffers.
//!
//! Per-connection limits (`max_input`, `hard_limit`) bound one peer, not a
//! server: 10,000 connections each trickling a frame just under its input
//! limit hold 10 GiB, and 10,000 that read nothing of their answers hold
//! more. So what a connection's buffers take is counted twice, in the
//! connection (`Conn::held`) and in the reactor's sum (`Core::buffered`),
//! and the sum is held under `Config::max_buffered`:
//! past it, the connections holding the most are closed, as Redis's
//! `maxmemory-clients` does.
//!
//! What is counted is the buffers' *capacity*, the memory they really
//! hold, not the bytes waiting in them: a peer that grows a buffer with
//! one large frame and then leaves one byte in it must not pin the memory
//! unseen. The count is set wherever a buffer can change size (`write`,
//! `flush`, `keep_input`, a read appended to held input, the handler
//! consuming it) and dropped where it goes (`close`, `kill`, the peer's
//! FIN). A buffer lent to the handler for a dispatch stays counted. Empty
//! buffers in the pool are not counted here: the pool bounds its own
//! bytes (`Config::pool_bytes`).

/// The sum of every connection's buffer capacity, and its bound.
pub(crate) struct Budget {
    held: usize,
    max: usize,
}

impl Budget {
    pub(crate) fn new(max: usize) -> Self {
        Budget { held: 0, max }
    }

    /// Bytes of buffer capacity all connections hold now.
    pub(crate) fn held(&self) -> usize {
        self.held
    }

    /// The sum is over `Config::max_buffered`.
    pub(crate) fn passed(&self) -> bool {
        self.held > self.max
    }

    /// One buffer's count (`counted`, kept in the connection) becomes
    /// `capacity`. Returns whether that grew the sum past the bound: the
    /// caller closes the largest holders (`Core::shed`).
    pub(crate) fn set(&mut self, counted: &mut usize, capacity: usize) -> bool {
        let grew = capacity > *counted;
        self.held = self.held + capacity - *counted;
        *counted = capacity;
        grew && self.passed()
    }

    /// A closed connection's count leaves the sum.
    pub(crate) fn forget(&mut self, held: usize) {
        self.held -= held;
    }
}
