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
//! - bytes in memory (`Owned` and `Copied`), plus [`SEGMENT_COST`] for
//!   each segment, count against the connection's output limits (soft and
//!   hard): a peer that does not read them is a slow consumer however they
//!   were queued, and a million one-byte hand-overs are not free;
//! - a file range's bytes count toward the water marks only: output the
//!   peer has not taken is output, wherever it waits, so a connection
//!   sending a large file is not read from (a pipelining client cannot
//!   queue request after request behind it), but the file is not memory,
//!   so it never makes a slow consumer by size (the write timeout still
//!   applies);
//! - only `Copied` bytes count against the reactor-wide
//!   [`Config::max_buffered`], which counts the reactor's own buffers: an
//!   `Arc` shared by many connections would be counted many times.
//!
//! Cost while unused: nothing. The tails live in a side table keyed by
//! slab slot, like the per-connection settings, and the connection record
//! has one flag saying whether it has one.
//!
//! [`Context::write`]: crate::Context::write
//! [`Context::write_owned`]: crate::Context::write_owned
//! [`Context::send_file`]: crate::Context::send_file
//! [`Config::max_buffered`]: crate::Config::max_buffered

use std::collections::VecDeque;
use std::fs::File;
use std::sync::Arc;

use super::side_table::SideTable;
use crate::conn::{Conn, ConnId};

/// What one segment costs beyond its bytes, for the output limits: its
/// place in the queue and the allocation behind it, about this much.
pub(crate) const SEGMENT_COST: usize = 64;

/// Bytes the handler gave away: anything that reads as a byte slice
/// (`Vec<u8>`, `Box<[u8]>`, `Arc<[u8]>`, `String`, ...).
pub(crate) type Owned = Box<dyn AsRef<[u8]> + Send>;

/// One piece of a tail.
pub(crate) enum Segment {
    /// Handed over by `write_owned`: `len` bytes (its length when handed
    /// over), `at` of them sent.
    Owned { data: Owned, at: usize, len: usize },
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
    /// A hand-over of `data`, as long as it is now.
    pub(crate) fn owned(data: Owned) -> Segment {
        let len = (*data).as_ref().len();
        Segment::Owned { data, at: 0, len }
    }

    /// Bytes of memory still to send, as counted when queued (a file
    /// range holds none).
    pub(crate) fn in_memory(&self) -> usize {
        match self {
            Segment::Owned { at, len, .. } => len.saturating_sub(*at),
            Segment::Copied { data, at } => data.len() - at,
            Segment::File { .. } => 0,
        }
    }

    /// Bytes the reactor allocated for it.
    fn copied(&self) -> usize {
        match self {
            Segment::Copied { data, .. } => data.capacity(),
            _ => 0,
        }
    }

    /// The bytes still to send, for a segment in memory. The handler's
    /// `AsRef` is asked each time; one that answers a shorter slice than
    /// it did when handed over (a strange type, not a peer) ends the
    /// segment early instead of panicking, and a longer one is sent only
    /// as far as it was counted.
    pub(crate) fn bytes(&self) -> Option<&[u8]> {
        match self {
            Segment::Owned { data, at, len } => {
                let bytes = (**data).as_ref();
                Some(bytes.get(*at..(*len).min(bytes.len())).unwrap_or_default())
            }
            Segment::Copied { data, at } => Some(data.get(*at..).unwrap_or_default()),
            Segment::File { .. } => None,
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        match self {
            Segment::File { left, .. } => *left == 0,
            other => other.bytes().is_none_or(<[u8]>::is_empty),
        }
    }

    /// File bytes still to send.
    fn file_left(&self) -> u64 {
        match self {
            Segment::File { left, .. } => *left,
            _ => 0,
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
    /// Sum of `file_left` over the segments.
    file_left: u64,
}

impl Tail {
    /// Appends a hand-over.
    pub(crate) fn push(&mut self, segment: Segment) {
        self.in_memory += segment.in_memory();
        self.copied += segment.copied();
        self.file_left += segment.file_left();
        self.segments.push_back(segment);
    }

    /// Appends a copy: onto the last segment if that is a copy none of
    /// which is sent yet (one being sent is not grown: it would keep its
    /// sent bytes for as long as copies keep coming).
    pub(crate) fn push_copy(&mut self, bytes: &[u8]) {
        if let Some(Segment::Copied { data, at: 0 }) = self.segments.back_mut() {
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
                self.in_memory -= n;
            }
            Segment::File { offset, left, .. } => {
                let n = (n as u64).min(*left);
                *offset += n;
                *left -= n;
                self.file_left -= n;
            }
        }
        if !front.is_done() {
            return false;
        }
        if let Some(done) = self.segments.pop_front() {
            self.copied -= done.copied();
            // Zero unless the handler's `AsRef` came to answer less than
            // it had.
            self.in_memory -= done.in_memory();
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

    /// What the output limits count: the bytes in memory, and
    /// [`SEGMENT_COST`] a segment.
    pub(crate) fn weight(&self) -> usize {
        self.in_memory + self.segments.len() * SEGMENT_COST
    }

    /// File bytes waiting to be sent.
    pub(crate) fn file_left(&self) -> u64 {
        self.file_left
    }

    /// Bytes the reactor allocated (for `max_buffered`).
    pub(crate) fn copied(&self) -> usize {
        self.copied
    }
}

/// The side table: tails by slab slot, for the connections that have
/// one.
pub(crate) type Tails = SideTable<Tail>;

/// A connection's waiting output, as each rule counts it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Waiting {
    /// Bytes in memory, and [`SEGMENT_COST`] a segment: what the soft and
    /// hard output limits count.
    pub(crate) weight: usize,
    /// `weight` and the file bytes: what the water marks count.
    pub(crate) marks: usize,
    /// Bytes still to send, in memory or in files: what
    /// [`Context::output_len`](crate::Context::output_len) reports.
    pub(crate) bytes: usize,
}

/// What `conn` has waiting: its buffer, and its tail if it has one.
pub(crate) fn waiting(conn: &Conn, tails: &Tails, id: ConnId) -> Waiting {
    let head = conn.output_len();
    let Some(tail) = conn.tail.then(|| tails.get(id.index)).flatten() else {
        return Waiting {
            weight: head,
            marks: head,
            bytes: head,
        };
    };
    let file = usize::try_from(tail.file_left()).unwrap_or(usize::MAX);
    let weight = head + tail.weight();
    Waiting {
        weight,
        marks: weight.saturating_add(file),
        bytes: (head + tail.in_memory()).saturating_add(file),
    }
}

#[cfg(test)]
mod tests {
    use super::{Segment, Tail, SEGMENT_COST};

    #[test]
    fn a_copy_never_grows_a_segment_being_sent() {
        let mut tail = Tail::default();
        tail.push_copy(&[1; 100]);
        tail.push_copy(&[2; 100]); // nothing sent yet: the same segment
        assert_eq!(tail.segments.len(), 1);
        assert!(!tail.advance(50));
        // Half sent: a copy now starts a segment of its own, so the sent
        // half is not kept alive by copies that keep coming.
        tail.push_copy(&[3; 100]);
        assert_eq!(tail.segments.len(), 2);
        assert_eq!(tail.in_memory(), 250);
        assert!(tail.advance(150)); // the first one, done and dropped
        assert_eq!(tail.segments.len(), 1);
        assert_eq!(tail.copied(), tail.segments[0].copied());
        assert_eq!(tail.weight(), 100 + SEGMENT_COST);
    }

    #[test]
    fn file_bytes_are_counted_apart_from_memory() {
        let file = std::sync::Arc::new(std::fs::File::open("/dev/null").unwrap());
        let mut tail = Tail::default();
        tail.push(Segment::File {
            file,
            offset: 0,
            left: 1000,
        });
        assert_eq!((tail.in_memory(), tail.file_left()), (0, 1000));
        assert_eq!(tail.weight(), SEGMENT_COST);
        assert!(!tail.advance(400));
        assert_eq!(tail.file_left(), 600);
        assert!(tail.advance(600));
        assert!(tail.is_empty());
    }

    #[test]
    fn an_as_ref_that_shrinks_ends_its_segment() {
        struct Shrinking(std::sync::atomic::AtomicBool);
        impl AsRef<[u8]> for Shrinking {
            fn as_ref(&self) -> &[u8] {
                match self.0.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    false => &[7; 10],
                    true => &[7; 2],
                }
            }
        }
        let mut tail = Tail::default();
        tail.push(Segment::owned(Box::new(Shrinking(false.into()))));
        // Counted as 10 when handed over; now it answers 2.
        assert_eq!(tail.in_memory(), 10);
        let front = tail.front_mut().unwrap();
        assert_eq!(front.bytes(), Some(&[7, 7][..]));
        // Those two sent, nothing is left of it: it is done and dropped.
        assert!(tail.advance(2));
        assert!(tail.is_empty());
        assert_eq!(
            tail.in_memory(),
            0,
            "the count it was given is taken back whole"
        );
    }
}
