//! RESP2 requests, parsed in two phases, as mini-redis teaches:
//!
//! 1. **check**: walk the bytes and find where the first frame ends,
//!    allocating nothing. An incomplete frame is a *value*
//!    ([`Check::Incomplete`]), not an error: it is the normal state of a
//!    stream socket, and the reactor keeps the bytes until more arrive.
//! 2. **decode**: with a whole frame in hand, slice out its arguments.
//!
//! Two request forms: arrays of bulk strings (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`,
//! what clients send) and inline commands (`PING\r\n`, what a person types
//! in telnet, and redis-benchmark's PING_INLINE). Every length is checked
//! against a limit before anything is trusted, and a violation is a
//! protocol error answered with `-ERR` before the connection closes.

/// Most arguments in one command (Redis allows 1M; nothing here needs
/// more than a large MSET).
pub const MAX_ARGS: usize = 64 * 1024;
/// Largest bulk string (Redis's `proto-max-bulk-len` is 512 MB; this
/// server keeps everything in one process's memory, so 512 KiB).
pub const MAX_BULK: usize = 512 * 1024;
/// Longest inline command line (Redis's PROTO_INLINE_MAX_SIZE is 64 KiB).
pub const MAX_INLINE: usize = 64 * 1024;

/// What the check phase found at the front of the input.
#[derive(Debug, PartialEq)]
pub enum Check {
    /// A whole frame of this many bytes.
    Frame(usize),
    /// Not all of it has arrived.
    Incomplete,
    /// Not RESP, or over a limit: answer the message, then close.
    Invalid(&'static str),
}

/// Finds the end of the first request in `buf`.
pub fn check(buf: &[u8]) -> Check {
    if buf.is_empty() {
        return Check::Incomplete;
    }
    if buf[0] != b'*' {
        return match find_crlf(buf, 0) {
            Some(end) if end > MAX_INLINE => {
                Check::Invalid("Protocol error: too big inline request")
            }
            Some(end) => Check::Frame(end + 2),
            None if buf.len() > MAX_INLINE => {
                Check::Invalid("Protocol error: too big inline request")
            }
            None => Check::Incomplete,
        };
    }
    let (count, mut at) = match number(buf, 1) {
        Ok(Some(v)) => v,
        Ok(None) => return Check::Incomplete,
        Err(()) => return Check::Invalid("Protocol error: invalid multibulk length"),
    };
    if count > MAX_ARGS as i64 {
        return Check::Invalid("Protocol error: invalid multibulk length");
    }
    for _ in 0..count.max(0) {
        match buf.get(at) {
            None => return Check::Incomplete,
            Some(b'$') => {}
            Some(_) => return Check::Invalid("Protocol error: expected '$'"),
        }
        let (len, data) = match number(buf, at + 1) {
            Ok(Some(v)) => v,
            Ok(None) => return Check::Incomplete,
            Err(()) => return Check::Invalid("Protocol error: invalid bulk length"),
        };
        if !(0..=MAX_BULK as i64).contains(&len) {
            return Check::Invalid("Protocol error: invalid bulk length");
        }
        let end = data + len as usize;
        if buf.len() < end + 2 {
            return Check::Incomplete;
        }
        if &buf[end..end + 2] != b"\r\n" {
            return Check::Invalid("Protocol error: bulk string not followed by CRLF");
        }
        at = end + 2;
    }
    Check::Frame(at)
}

/// Slices the arguments out of a frame that [`check`] accepted.
pub fn decode<'a>(frame: &'a [u8], args: &mut Vec<&'a [u8]>) {
    args.clear();
    if frame[0] != b'*' {
        let line = &frame[..frame.len() - 2];
        args.extend(
            line.split(|b| b.is_ascii_whitespace())
                .filter(|a| !a.is_empty()),
        );
        return;
    }
    let Ok(Some((count, mut at))) = number(frame, 1) else {
        return;
    };
    for _ in 0..count.max(0) {
        let Ok(Some((len, data))) = number(frame, at + 1) else {
            return;
        };
        let end = data + len as usize;
        args.push(&frame[data..end]);
        at = end + 2;
    }
}

/// A decimal number from `start` up to CRLF: `(value, index after CRLF)`,
/// `None` if the CRLF has not arrived, `Err` if it is not a number.
fn number(buf: &[u8], start: usize) -> Result<Option<(i64, usize)>, ()> {
    let Some(end) = find_crlf(buf, start) else {
        // 20 digits and a sign is the longest i64: anything longer
        // without CRLF is garbage, not a slow sender.
        return if buf.len().saturating_sub(start) > 21 {
            Err(())
        } else {
            Ok(None)
        };
    };
    let text = std::str::from_utf8(&buf[start..end]).map_err(|_| ())?;
    let value: i64 = text.parse().map_err(|_| ())?;
    Ok(Some((value, end + 2)))
}

/// Index of the next `\r\n` at or after `start`.
fn find_crlf(buf: &[u8], start: usize) -> Option<usize> {
    buf.get(start..)?
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|i| start + i)
}

/// Replies, appended to an output buffer. Nothing here allocates: a
/// pipelined client sends a million commands a second.
pub mod reply {
    /// Appends `n` in decimal (what `to_string` would, without the
    /// `String`).
    pub fn decimal(out: &mut Vec<u8>, n: i64) {
        if n < 0 {
            out.push(b'-');
        }
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut v = n.unsigned_abs();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        out.extend_from_slice(&digits[i..]);
    }

    pub fn simple(out: &mut Vec<u8>, s: &str) {
        out.push(b'+');
        out.extend_from_slice(s.as_bytes());
        out.extend_from_slice(b"\r\n");
    }

    pub fn error(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(b"-ERR ");
        out.extend_from_slice(s.as_bytes());
        out.extend_from_slice(b"\r\n");
    }

    pub fn integer(out: &mut Vec<u8>, n: i64) {
        out.push(b':');
        decimal(out, n);
        out.extend_from_slice(b"\r\n");
    }

    pub fn bulk(out: &mut Vec<u8>, data: &[u8]) {
        out.push(b'$');
        decimal(out, data.len() as i64);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    }

    pub fn null(out: &mut Vec<u8>) {
        out.extend_from_slice(b"$-1\r\n");
    }

    pub fn array_len(out: &mut Vec<u8>, n: usize) {
        out.push(b'*');
        decimal(out, n as i64);
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_finds_frames_and_waits_for_partial_ones() {
        let frame = b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n";
        assert_eq!(check(frame), Check::Frame(frame.len()));
        for cut in 0..frame.len() {
            assert_eq!(check(&frame[..cut]), Check::Incomplete, "cut at {cut}");
        }
        let mut args = Vec::new();
        decode(frame, &mut args);
        assert_eq!(args, [&b"GET"[..], b"key"]);
    }

    #[test]
    fn decimal_matches_to_string() {
        for n in [0, 7, -7, 10, 1234567890, i64::MAX, i64::MIN] {
            let mut out = Vec::new();
            reply::decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }

    #[test]
    fn inline_commands() {
        assert_eq!(check(b"PING\r\n"), Check::Frame(6));
        assert_eq!(check(b"PIN"), Check::Incomplete);
        let mut args = Vec::new();
        decode(b"SET  k   v\r\n", &mut args);
        assert_eq!(args, [&b"SET"[..], b"k", b"v"]);
    }

    #[test]
    fn limits_and_garbage_are_invalid() {
        assert!(matches!(check(b"*99999999\r\n"), Check::Invalid(_)));
        assert!(matches!(check(b"*1\r\n$99999999\r\n"), Check::Invalid(_)));
        assert!(matches!(check(b"*1\r\n:1\r\n"), Check::Invalid(_)));
        assert!(matches!(check(b"*x\r\n"), Check::Invalid(_)));
        assert!(matches!(check(b"*1\r\n$1\r\nab\r\n"), Check::Invalid(_)));
        assert!(matches!(
            check(b"*1234567890123456789012345"),
            Check::Invalid(_)
        ));
        assert!(matches!(
            check(&vec![b'a'; MAX_INLINE + 10]),
            Check::Invalid(_)
        ));
    }
}
