//! RESP2 replies from a backend, checked as the requests are
//! (`../kv/resp.rs`, whose integer reading this shares): find where a whole reply ends without allocating,
//! resuming where the last look stopped, with every length bounded before
//! it is trusted.
//!
//! Every RESP2 type: simple string `+OK\r\n`, error `-ERR ...\r\n`,
//! integer `:42\r\n`, bulk string `$3\r\nabc\r\n`, null `$-1\r\n` and
//! `*-1\r\n`, and arrays `*2\r\n...` of any of them, nested.
//!
//! A backend is trusted more than a client, but not blindly. A reply that
//! breaks the protocol means the connection's stream can no longer be cut
//! into replies: the connection is closed and what was in flight on it
//! fails (`main.rs`). A reply that is valid but larger than the proxy
//! holds ([`Check::TooLarge`]) fails only its own request: [`Skip`] walks
//! it as it streams past, dropping its bytes, and the connection goes on.

/// Largest whole reply. A reply is routed whole (its end must be found
/// before it is passed on), so it is held in the backend connection's
/// input until it has all arrived; this bounds that, at the requests'
/// own bound (`resp::MAX_COMMAND`).
pub const MAX_REPLY: usize = 16 * 1024 * 1024;
/// Largest bulk string in a reply: what fits in [`MAX_REPLY`] with its
/// header. Redis allows 512 MB; a larger value fails its request with
/// `-ERR` (see the module docs), as one over 16 MiB does.
pub const MAX_BULK: usize = MAX_REPLY - 64;
/// Deepest nesting of arrays. Redis's deepest replies (XREAD, COMMAND
/// INFO, CLUSTER SLOTS) nest four or five deep.
pub const MAX_DEPTH: usize = 32;
/// Longest line (a simple string, an error, a number) before its CRLF.
/// Redis's own are short; an error carries a sentence.
const MAX_LINE: usize = 64 * 1024;

/// What the check found at the front of the input.
#[derive(Debug, PartialEq, Eq)]
pub enum Check {
    /// A whole reply of this many bytes.
    Frame(usize),
    /// Not all of it has arrived.
    Incomplete,
    /// Valid so far, but larger than [`MAX_REPLY`]: skip it ([`Skip`]).
    TooLarge,
    /// Not RESP, or nested past [`MAX_DEPTH`].
    Invalid(&'static str),
}

/// Where [`check`] stopped inside a reply that has not all arrived: the
/// offset of the first element not yet whole, and the elements still
/// owed at each open array. Without it, a large array trickling in would
/// be walked from its start on every read: quadratic in its length.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Progress {
    at: usize,
    open: Vec<u64>,
}

/// Finds the end of the first reply in `buf`, resuming from `progress`
/// (which it keeps on `Incomplete` and resets on every other answer).
pub fn check(buf: &[u8], progress: &mut Progress) -> Check {
    let found = walk(buf, progress);
    if found != Check::Incomplete {
        *progress = Progress::default();
    }
    found
}

fn walk(buf: &[u8], progress: &mut Progress) -> Check {
    loop {
        let at = progress.at;
        if at > MAX_REPLY {
            return Check::TooLarge;
        }
        let Some(&kind) = buf.get(at) else {
            return Check::Incomplete;
        };
        let Some(eol) = find_crlf(buf, at + 1) else {
            return if buf.len() - at > MAX_LINE {
                Check::Invalid("reply line too long")
            } else {
                Check::Incomplete
            };
        };
        let after = eol + 2;
        let whole = match kind {
            b'+' | b'-' => after,
            b':' => match number(&buf[at + 1..eol]) {
                Some(_) => after,
                None => return Check::Invalid("bad integer reply"),
            },
            b'$' => match number(&buf[at + 1..eol]) {
                Some(-1) => after,
                Some(len) if len > MAX_BULK as i64 => return Check::TooLarge,
                Some(len) if len >= 0 => {
                    let end = after + len as usize;
                    if end + 2 > MAX_REPLY {
                        return Check::TooLarge;
                    }
                    if buf.len() < end + 2 {
                        return Check::Incomplete;
                    }
                    if &buf[end..end + 2] != b"\r\n" {
                        return Check::Invalid("bulk reply not followed by CRLF");
                    }
                    end + 2
                }
                _ => return Check::Invalid("bad bulk length in reply"),
            },
            b'*' => match number(&buf[at + 1..eol]) {
                Some(-1 | 0) => after,
                Some(count) if count > 0 => {
                    if progress.open.len() == MAX_DEPTH {
                        return Check::Invalid("reply nested too deep");
                    }
                    progress.open.push(count as u64);
                    progress.at = after;
                    continue;
                }
                _ => return Check::Invalid("bad array length in reply"),
            },
            _ => return Check::Invalid("not a RESP reply"),
        };
        // One element whole: it counts toward every array it closes.
        progress.at = whole;
        loop {
            match progress.open.last_mut() {
                None => return Check::Frame(whole),
                Some(left) if *left > 1 => {
                    *left -= 1;
                    break;
                }
                Some(_) => {
                    progress.open.pop();
                }
            }
        }
    }
}

/// Walks a reply too large to hold as it streams past, dropping its
/// bytes, to find where it ends (see the module docs). Bulk bodies are
/// skipped by count, so a 500 MB value costs its bytes and no more.
#[derive(Debug, Default)]
pub struct Skip {
    /// Elements still owed at each open array.
    open: Vec<u64>,
    /// Bytes of a bulk body (and its CRLF) still to drop.
    bulk_left: u64,
}

impl Skip {
    /// Drops what it can of the reply from the front of `buf`: the bytes
    /// taken, and whether the reply ended there. `Err` if it is not RESP.
    pub fn feed(&mut self, buf: &[u8]) -> Result<(usize, bool), &'static str> {
        let mut at = 0;
        loop {
            if self.bulk_left > 0 {
                let n = self.bulk_left.min((buf.len() - at) as u64);
                self.bulk_left -= n;
                at += n as usize;
                if self.bulk_left > 0 {
                    return Ok((at, false));
                }
                if self.element_done() {
                    return Ok((at, true));
                }
                continue;
            }
            let Some(&kind) = buf.get(at) else {
                return Ok((at, false));
            };
            let Some(eol) = find_crlf(buf, at + 1) else {
                return if buf.len() - at > MAX_LINE {
                    Err("reply line too long")
                } else {
                    Ok((at, false))
                };
            };
            let value = number(&buf[at + 1..eol]);
            at = eol + 2;
            match (kind, value) {
                (b'+' | b'-', _) | (b':', Some(_)) | (b'$' | b'*', Some(-1)) | (b'*', Some(0)) => {}
                (b'$', Some(len)) if len >= 0 => {
                    self.bulk_left = len as u64 + 2;
                    continue;
                }
                (b'*', Some(count)) if count > 0 => {
                    if self.open.len() == MAX_DEPTH {
                        return Err("reply nested too deep");
                    }
                    self.open.push(count as u64);
                    continue;
                }
                _ => return Err("not a RESP reply"),
            }
            if self.element_done() {
                return Ok((at, true));
            }
        }
    }

    /// One element is over: true if that ended the reply.
    fn element_done(&mut self) -> bool {
        loop {
            match self.open.last_mut() {
                None => return true,
                Some(left) if *left > 1 => {
                    *left -= 1;
                    return false;
                }
                Some(_) => {
                    self.open.pop();
                }
            }
        }
    }
}

/// The elements of a whole array reply (each a whole reply of its own),
/// or `None` if `frame` is not a non-null array.
pub fn elements(frame: &[u8]) -> Option<Vec<&[u8]>> {
    if frame.first() != Some(&b'*') {
        return None;
    }
    let eol = find_crlf(frame, 1)?;
    let count = number(&frame[1..eol])?;
    let mut at = eol + 2;
    let mut out = Vec::with_capacity(count.max(0) as usize);
    for _ in 0..count.max(0) {
        let Check::Frame(len) = check(&frame[at..], &mut Progress::default()) else {
            return None;
        };
        out.push(&frame[at..at + len]);
        at += len;
    }
    (count >= 0).then_some(out)
}

/// The value of a whole integer reply, `None` for any other.
pub fn integer(frame: &[u8]) -> Option<i64> {
    if frame.first() != Some(&b':') {
        return None;
    }
    number(&frame[1..frame.len().checked_sub(2)?])
}

/// The CR of the first CRLF at or after `from` (a CR alone, as an error
/// text may hold, is passed over).
fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    loop {
        let cr = i + memchr::memchr(b'\r', buf.get(i..)?)?;
        if *buf.get(cr + 1)? == b'\n' {
            return Some(cr);
        }
        i = cr + 1;
    }
}

/// A decimal `i64` in canonical form: the request parser's own reading
/// (`resp::redis_int`, Redis's `string2ll`), so a number means the same
/// coming and going.
fn number(s: &[u8]) -> Option<i64> {
    crate::resp::redis_int(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(s: &[u8]) -> Check {
        check(s, &mut Progress::default())
    }

    #[test]
    fn every_type_is_one_frame() {
        for r in [
            &b"+OK\r\n"[..],
            b"-ERR wrong type\r\n",
            b":-42\r\n",
            b"$3\r\nabc\r\n",
            b"$0\r\n\r\n",
            b"$-1\r\n",
            b"*-1\r\n",
            b"*0\r\n",
            b"*2\r\n$1\r\na\r\n$-1\r\n",
            b"*2\r\n*2\r\n:1\r\n:2\r\n*1\r\n+x\r\n",
        ] {
            assert_eq!(
                whole(r),
                Check::Frame(r.len()),
                "{:?}",
                String::from_utf8_lossy(r)
            );
            let mut more = r.to_vec();
            more.extend_from_slice(b"+NEXT\r\n");
            assert_eq!(whole(&more), Check::Frame(r.len()));
        }
    }

    #[test]
    fn every_split_is_incomplete_then_whole_with_progress_kept() {
        let r = b"*3\r\n$5\r\nhello\r\n*2\r\n:1\r\n-ERR x\r\n$-1\r\n";
        for cut in 0..r.len() {
            let mut p = Progress::default();
            assert_eq!(check(&r[..cut], &mut p), Check::Incomplete, "cut at {cut}");
            assert_eq!(check(r, &mut p), Check::Frame(r.len()), "cut at {cut}");
            assert_eq!(p, Progress::default());
        }
    }

    #[test]
    fn bad_replies_and_limits_are_invalid() {
        assert!(matches!(whole(b"?\r\n"), Check::Invalid(_)));
        assert!(matches!(whole(b":12a\r\n"), Check::Invalid(_)));
        assert!(matches!(whole(b"$-2\r\n"), Check::Invalid(_)));
        assert!(matches!(whole(b"$3\r\nabcde"), Check::Invalid(_)));
        assert_eq!(whole(b"$99999999999\r\n"), Check::TooLarge);
        assert!(matches!(whole(b"*-5\r\n"), Check::Invalid(_)));
        let deep = b"*1\r\n".repeat(MAX_DEPTH + 1);
        assert!(matches!(whole(&deep), Check::Invalid(_)));
        let ok_deep = [b"*1\r\n".repeat(MAX_DEPTH), b":1\r\n".to_vec()].concat();
        assert_eq!(whole(&ok_deep), Check::Frame(ok_deep.len()));
        let long = [b"+".to_vec(), vec![b'x'; MAX_LINE + 1]].concat();
        assert!(matches!(whole(&long), Check::Invalid(_)));
        // A billion elements declared: nothing allocated, just waiting.
        assert_eq!(whole(b"*1000000000\r\n:1\r\n"), Check::Incomplete);
    }

    /// Feeds `stream` to a `Skip` `chunk` bytes at a time, as a backend
    /// connection's input would offer it (what it did not take is offered
    /// again with more): where the reply ended.
    fn skipped(stream: &[u8], chunk: usize) -> usize {
        let mut skip = Skip::default();
        let (mut pending, mut fed, mut taken) = (Vec::new(), 0, 0);
        loop {
            let end = (fed + chunk).min(stream.len());
            pending.extend_from_slice(&stream[fed..end]);
            fed = end;
            let (n, done) = skip.feed(&pending).unwrap();
            pending.drain(..n);
            taken += n;
            if done {
                return taken;
            }
            assert!(fed < stream.len(), "chunk {chunk}: the reply never ended");
        }
    }

    #[test]
    fn a_reply_too_large_is_skipped_to_its_end_however_it_arrives() {
        let next = b"+NEXT\r\n";
        let small = b"*3\r\n$5\r\nhello\r\n*2\r\n:1\r\n-ERR x\r\n$-1\r\n";
        let stream = [&small[..], next].concat();
        for chunk in 1..=stream.len() {
            assert_eq!(skipped(&stream, chunk), small.len(), "chunk {chunk}");
        }
        let big = MAX_BULK + 10;
        let mut reply = format!("*3\r\n:1\r\n${big}\r\n").into_bytes();
        reply.extend(std::iter::repeat_n(b'v', big));
        reply.extend_from_slice(b"\r\n*1\r\n$-1\r\n");
        assert_eq!(whole(&reply), Check::TooLarge);
        let stream = [&reply[..], next].concat();
        for chunk in [4093, 65536, stream.len()] {
            assert_eq!(skipped(&stream, chunk), reply.len(), "chunk {chunk}");
        }
        assert!(Skip::default().feed(b"?x\r\n").is_err());
    }

    #[test]
    fn elements_and_integers_decode() {
        let r = b"*3\r\n$1\r\na\r\n$-1\r\n:7\r\n";
        assert_eq!(
            elements(r).unwrap(),
            vec![&b"$1\r\na\r\n"[..], b"$-1\r\n", b":7\r\n"]
        );
        assert_eq!(elements(b"*-1\r\n"), None);
        assert_eq!(elements(b"+OK\r\n"), None);
        assert_eq!(integer(b":12\r\n"), Some(12));
        assert_eq!(integer(b"+12\r\n"), None);
    }
}
