//! Output handed over whole: buffers the handler gives away and file
//! ranges, queued behind a connection's output buffer and sent from where
//! they are.
//!
//! [`Context::write`] copies into the connection's output buffer, which is
//! right for the small answers most protocols send. A producer that
//! already holds a large payload (a cached page, one broadcast shared by a
//! thousand connections as an `Arc<[u8]>`) hands it over with
//! [`Context::write_owned`]: the socket takes what it will straight from
//! that memory, and what it refuses waits there; nothing is copied. A
//! file range ([`Context::send_file`]) goes by `sendfile(2)`, from the
//! page cache to the socket without passing through user space (nginx's
//! `sendfile on`).
//!
//! Output leaves in the order it was queued. The buffer in front holds
//! what was copied before the first hand-over; once a connection has a
//! tail, later copies go on the end of the tail (into a `Copied` segment of
//! their own), never into the buffer in front of it.
//!
//! What counts where:
//! - bytes in memory (`Owned` and `Copied`) count against the connection's
//!   output limits and water marks: a peer that does not read them is a
//!   slow consumer however they were queued;
//! - only `Copied` bytes count against the reactor-wide
//!   [`Config::max_buffered`], which counts the reactor's own buffers: an
//!   `Arc` shared by many connections would be counted many times;
//! - a file range counts against neither (its bytes are in the page
//!   cache, not in this process); the write timeout still applies.
//!
//! Cost while unused: nothing. The tails live in a side table keyed by
//! slab slot, like the per-connection settings, and the connection record
//! has one flag saying whether it has one.
//!
//! [`Context::write`]: crate::Context::write
//! [`Context::write_owned`]: crate::Context::write_owned
//! [`Context::send_file`]: crate::Context::send_file
//! [`Config::max_buffered`]: crate::Config::max_buffered

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::sync::Arc;

/// Bytes the handler gave away: anything that reads as a byte slice
/// (`Vec<u8>`, `Box<[u8]>`, `Arc<[u8]>`, `String`, ...).
pub(crate) type Owned = Box<dyn AsRef<[u8]> + Send>;

/// One piece of a tail.
pub(crate) enum Segment {
    /// Handed over by `write_owned`; `at` bytes of it are sent.
    Owned { data: Owned, at: usize },
    /// Copied by `write` behind a hand-over; `at` bytes of it are sent.
    Copied { data: Vec<u8>, at: usize },
    /// `left` bytes of `file` from `offset`, by `sendfile(2)`.
    File {
        file: Arc<File>,
        offset: u64,
        left: u64,
    },
}

impl Segment {
    /// Bytes of memory still to send (a file range holds none).
    pub(crate) fn in_memory(&self) -> usize {
        self.bytes().map_or(0, <[u8]>::len)
    }

    /// Bytes the reactor allocated for it.
    fn copied(&self) -> usize {
        match self {
            Segment::Copied { data, .. } => data.capacity(),
            _ => 0,
        }
    }

    /// The bytes still to send, for a segment in memory. The handler's
    /// `AsRef` is asked each time; one that answers a shorter slice later
    /// than it did (a strange type, not a peer) ends the segment early
    /// instead of panicking.
    pub(crate) fn bytes(&self) -> Option<&[u8]> {
        match self {
            Segment::Owned { data, at } => Some((**data).as_ref().get(*at..).unwrap_or_default()),
            Segment::Copied { data, at } => Some(data.get(*at..).unwrap_or_default()),
            Segment::File { .. } => None,
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        match self {
            Segment::File { left, .. } => *left == 0,
            other => other.in_memory() == 0,
        }
    }
}

/// One connection's tail, and its counts.
#[derive(Default)]
pub(crate) struct Tail {
    segments: VecDeque<Segment>,
    /// Sum of `in_memory` over the segments.
    in_memory: usize,
    /// Sum of `copied` over the segments.
    copied: usize,
}

impl Tail {
    /// Appends a hand-over.
    pub(crate) fn push(&mut self, segment: Segment) {
        self.in_memory += segment.in_memory();
        self.copied += segment.copied();
        self.segments.push_back(segment);
    }

    /// Appends a copy: onto the last segment if that is a copy too.
    pub(crate) fn push_copy(&mut self, bytes: &[u8]) {
        if let Some(Segment::Copied { data, .. }) = self.segments.back_mut() {
            let before = data.capacity();
            data.extend_from_slice(bytes);
            self.copied += data.capacity() - before;
            self.in_memory += bytes.len();
        } else {
            self.push(Segment::Copied {
                data: bytes.to_vec(),
                at: 0,
            });
        }
    }

    /// The segment to send next.
    pub(crate) fn front_mut(&mut self) -> Option<&mut Segment> {
        self.segments.front_mut()
    }

    /// `n` bytes of the front segment were sent; a finished segment is
    /// dropped (and with it the handler's buffer, or our hold on the
    /// file). Returns whether it finished.
    pub(crate) fn advance(&mut self, n: usize) -> bool {
        let Some(front) = self.segments.front_mut() else {
            return false;
        };
        match front {
            Segment::Owned { at, .. } | Segment::Copied { at, .. } => {
                *at += n;
                self.in_memory = self.in_memory.saturating_sub(n);
            }
            Segment::File { offset, left, .. } => {
                *offset += n as u64;
                *left -= n as u64;
            }
        }
        if !front.is_done() {
            return false;
        }
        if let Some(done) = self.segments.pop_front() {
            self.copied -= done.copied();
        }
        true
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Bytes in memory waiting to be sent.
    pub(crate) fn in_memory(&self) -> usize {
        self.in_memory
    }

    /// Bytes the reactor allocated (for `max_buffered`).
    pub(crate) fn copied(&self) -> usize {
        self.copied
    }
}

/// The side table: tails by slab slot, for the connections that have
/// one.
#[derive(Default)]
pub(crate) struct Tails {
    by_slot: HashMap<u32, Tail>,
}

impl Tails {
    pub(crate) fn get(&self, slot: u32) -> Option<&Tail> {
        if self.by_slot.is_empty() {
            return None; // the common case: nobody handed anything over
        }
        self.by_slot.get(&slot)
    }

    pub(crate) fn get_mut(&mut self, slot: u32) -> Option<&mut Tail> {
        if self.by_slot.is_empty() {
            return None;
        }
        self.by_slot.get_mut(&slot)
    }

    pub(crate) fn entry(&mut self, slot: u32) -> &mut Tail {
        self.by_slot.entry(slot).or_default()
    }

    /// The slot's tail is sent, or its connection closed: dropped, with
    /// everything still in it.
    pub(crate) fn forget(&mut self, slot: u32) {
        if !self.by_slot.is_empty() {
            self.by_slot.remove(&slot);
        }
    }
}
