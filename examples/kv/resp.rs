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
//! in telnet, or `PING\n` from nc, and redis-benchmark's PING_INLINE).
//! Every length is checked
//! against a limit before anything is trusted, and a violation is a
//! protocol error answered with `-ERR` before the connection closes.

/// Most arguments in one command (Redis allows 1M; nothing here needs
/// more than a large MSET).
pub const MAX_ARGS: usize = 64 * 1024;
/// Largest bulk string. Redis's `proto-max-bulk-len` is 512 MB; this
/// server keeps all its data in one process's memory, and any value must
/// come back in one reply under the reactor's hard output limit (16 MiB),
/// so 8 MiB: twice the 4 MB value Redis's own test suite stores, and the
/// largest value SETRANGE or APPEND may build (`strings::MAX_VALUE`).
pub const MAX_BULK: usize = 8 * 1024 * 1024;
/// Largest whole command, every argument and header counted. It bounds
/// what one connection can make the server buffer before a command runs.
/// Redis's `client-query-buffer-limit` (1 GB) is twice its largest bulk;
/// so is this: the largest `SET` fits with room to spare, two of the
/// largest values in one `MSET` do not. A command that declares more is refused with
/// `-ERR` as soon as its header says so, before its bytes are stored; the
/// reactor's `--max-buffered` bounds all connections' buffers together.
pub const MAX_COMMAND: usize = 2 * MAX_BULK;
/// Longest inline command line, its CRLF not counted (Redis's
/// PROTO_INLINE_MAX_SIZE is 64 KiB).
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

/// How far [`check`] got into a frame that has not all arrived: the next
/// call picks up here instead of walking the frame from its start again.
///
/// Without it, a frame that trickles in costs the square of its length: a
/// client sending a 64K-argument command one argument per packet would
/// make the server re-walk up to 64K arguments per packet, holding the
/// loop for milliseconds each time: one slow client, a busy server.
/// Redis keeps the same per client (`multibulklen`, `bulklen` and its
/// position in the query buffer). The frame must stay where it was: the
/// reactor hands back a connection's unconsumed bytes from the same
/// start, so a handler keeps one `Progress` per connection with a
/// partial frame.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Progress {
    /// Bytes from the frame's start already checked: the array header and
    /// every whole argument; for an inline command, bytes scanned without
    /// finding its end.
    at: usize,
    /// Arguments still to check, once the array header has been read.
    args_left: Option<usize>,
}

/// Finds the end of the first request in `buf`, resuming from `progress`
/// (which it updates on `Incomplete` and resets on every other answer).
pub fn check(buf: &[u8], progress: &mut Progress) -> Check {
    debug_assert!(
        progress.at <= buf.len(),
        "progress {progress:?} is past the input ({} bytes): the frame moved",
        buf.len()
    );
    let found = match buf.first() {
        None => Check::Incomplete,
        Some(b'*') => check_array(buf, progress),
        Some(_) => check_inline(buf, progress),
    };
    if found != Check::Incomplete {
        *progress = Progress::default();
    }
    found
}

/// A command line ending in CRLF.
fn check_inline(buf: &[u8], progress: &mut Progress) -> Check {
    // A line ends at LF, with or without CR (Redis takes `nc`'s bare LF
    // too). Only the first `MAX_INLINE + 2` bytes can hold the end of a
    // line we accept, so only they are looked at: the verdict is the same
    // however the line was split into reads.
    let window = &buf[..buf.len().min(MAX_INLINE + 2)];
    match window[progress.at.min(window.len())..]
        .iter()
        .position(|&b| b == b'\n')
    {
        Some(i) => Check::Frame(progress.at + i + 1),
        None if window.len() == MAX_INLINE + 2 => {
            Check::Invalid("Protocol error: too big inline request")
        }
        None => {
            progress.at = buf.len();
            Check::Incomplete
        }
    }
}

/// `*<count>\r\n` then `count` bulk strings, `$<len>\r\n<bytes>\r\n`.
fn check_array(buf: &[u8], progress: &mut Progress) -> Check {
    let mut left = match progress.args_left {
        Some(left) => left,
        None => match number(buf, 1) {
            Ok(Some((count, _))) if count > MAX_ARGS as i64 => {
                return Check::Invalid("Protocol error: invalid multibulk length")
            }
            Ok(Some((count, after))) => {
                progress.at = after;
                count.max(0) as usize
            }
            Ok(None) => return Check::Incomplete,
            Err(()) => return Check::Invalid("Protocol error: invalid multibulk length"),
        },
    };
    while left > 0 {
        progress.args_left = Some(left);
        let at = progress.at;
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
        if end + 2 > MAX_COMMAND {
            return Check::Invalid("Protocol error: command too large");
        }
        if buf.len() < end + 2 {
            return Check::Incomplete;
        }
        if &buf[end..end + 2] != b"\r\n" {
            return Check::Invalid("Protocol error: bulk string not followed by CRLF");
        }
        progress.at = end + 2;
        left -= 1;
    }
    Check::Frame(progress.at)
}

/// Slices the arguments out of a frame that [`check`] accepted.
pub fn decode<'a>(frame: &'a [u8], args: &mut Vec<&'a [u8]>) {
    args.clear();
    if frame[0] != b'*' {
        // The LF goes; a CR before it is whitespace like any other.
        let line = &frame[..frame.len() - 1];
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
///
/// Only the canonical form is a number, as in Redis's `string2ll`: an
/// optional `-`, then `0` or digits without a leading zero, at most 20
/// characters in all. `i64::from_str` would also take `+5` and
/// `0000000000000000000000005`; accepting those made the answer depend on
/// how the bytes were split into reads (whole, the long zero-padded number
/// parsed; split before its CRLF, it was already longer than any number
/// and refused), which the `resp_split` fuzz target found.
fn number(buf: &[u8], start: usize) -> Result<Option<(i64, usize)>, ()> {
    let Some(end) = find_crlf(buf, start) else {
        // The longest canonical i64 and the CR of its CRLF: anything
        // longer without the LF is garbage, not a slow sender.
        return if buf.len().saturating_sub(start) > MAX_NUMBER + 1 {
            Err(())
        } else {
            Ok(None)
        };
    };
    let value = redis_int(&buf[start..end]).ok_or(())?;
    Ok(Some((value, end + 2)))
}

/// A signed 64-bit integer the way Redis reads one (`string2ll`): an
/// optional `-`, then digits with no leading zero; no `+`, no spaces, no
/// overflow, at most `MAX_NUMBER` characters (a longer value, an 8 MiB
/// string of digits, is refused without being read). The lengths in a
/// request and the numbers in its arguments (`number.rs`) are read alike.
pub fn redis_int(s: &[u8]) -> Option<i64> {
    if s.len() > MAX_NUMBER {
        return None;
    }
    let digits = s.strip_prefix(b"-").unwrap_or(s);
    let canonical = match digits {
        [] => false,
        [b'0'] => s.len() == 1,
        [first, ..] => *first != b'0' && digits.iter().all(u8::is_ascii_digit),
    };
    if !canonical {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// Characters in the longest canonical i64, `-9223372036854775808`.
const MAX_NUMBER: usize = 20;

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

    /// `-ERR message`. A message may quote what a client sent (an
    /// unknown command's name): a CR or LF in it becomes a space, as in
    /// Redis, so it cannot end the line early and inject a reply.
    pub fn error(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(b"-ERR ");
        out.extend(s.bytes().map(|b| match b {
            b'\r' | b'\n' => b' ',
            b => b,
        }));
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

    /// `check` from a fresh start.
    fn check_new(buf: &[u8]) -> Check {
        check(buf, &mut Progress::default())
    }

    /// A command as a client sends it: an array of bulk strings.
    fn command(args: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        reply::array_len(&mut out, args.len());
        for a in args {
            reply::bulk(&mut out, a);
        }
        out
    }

    #[test]
    fn check_finds_frames_and_waits_for_partial_ones() {
        let frame = b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n";
        assert_eq!(check_new(frame), Check::Frame(frame.len()));
        for cut in 0..frame.len() {
            assert_eq!(check_new(&frame[..cut]), Check::Incomplete, "cut at {cut}");
        }
        let mut args = Vec::new();
        decode(frame, &mut args);
        assert_eq!(args, [&b"GET"[..], b"key"]);
    }

    #[test]
    fn a_frame_arriving_a_byte_at_a_time_is_found_once_whole() {
        let mut stream = command(&[b"MSET", b"a", b"1", b"bb", b"22"]);
        stream.extend_from_slice(b"PING\r\n");
        let mut progress = Progress::default();
        let mut start = 0;
        let mut frames = Vec::new();
        for arrived in 1..=stream.len() {
            if let Check::Frame(n) = check(&stream[start..arrived], &mut progress) {
                frames.push(n);
                start += n;
            }
        }
        assert_eq!(frames, [stream.len() - 6, 6]);
        assert_eq!(progress, Progress::default());
    }

    #[test]
    fn checked_arguments_are_not_walked_again() {
        let frame = command(&[b"MSET", b"k1", b"v1", b"k2", b"v2"]);
        let last = frame.len() - b"$2\r\nv2\r\n".len();
        let mut progress = Progress::default();
        assert_eq!(check(&frame[..last + 3], &mut progress), Check::Incomplete);
        assert_eq!(progress.at, last, "four arguments checked");
        assert_eq!(progress.args_left, Some(1));
        // Spoil every byte already checked: a resumed check must not look
        // at them again (this is what keeps a trickled frame linear).
        let mut spoiled = frame.clone();
        spoiled[1..last].fill(b'!');
        assert_eq!(check(&spoiled, &mut progress), Check::Frame(frame.len()));
        assert_eq!(progress, Progress::default(), "reset for the next frame");
    }

    #[test]
    fn an_inline_line_is_scanned_once() {
        let mut progress = Progress::default();
        assert_eq!(check(b"PING hel", &mut progress), Check::Incomplete);
        assert_eq!(progress.at, 8);
        // Only the last byte scanned is looked at again: a CR may be there.
        assert_eq!(check(b"!!!!!!!\r\n", &mut progress), Check::Frame(9));
        assert_eq!(check(b"PING\r", &mut progress), Check::Incomplete);
        assert_eq!(check(b"PING\r\n", &mut progress), Check::Frame(6));
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
        assert_eq!(check_new(b"PING\r\n"), Check::Frame(6));
        assert_eq!(check_new(b"PIN"), Check::Incomplete);
        let mut args = Vec::new();
        decode(b"SET  k   v\r\n", &mut args);
        assert_eq!(args, [&b"SET"[..], b"k", b"v"]);
    }

    #[test]
    fn limits_and_garbage_are_invalid() {
        assert!(matches!(check_new(b"*99999999\r\n"), Check::Invalid(_)));
        assert!(matches!(
            check_new(b"*1\r\n$99999999\r\n"),
            Check::Invalid(_)
        ));
        assert!(matches!(check_new(b"*1\r\n:1\r\n"), Check::Invalid(_)));
        assert!(matches!(check_new(b"*x\r\n"), Check::Invalid(_)));
        assert!(matches!(
            check_new(b"*1\r\n$1\r\nab\r\n"),
            Check::Invalid(_)
        ));
        assert!(matches!(
            check_new(b"*1234567890123456789012345"),
            Check::Invalid(_)
        ));
        assert!(matches!(
            check_new(&vec![b'a'; MAX_INLINE + 10]),
            Check::Invalid(_)
        ));
    }

    #[test]
    fn a_command_past_max_command_is_refused_by_its_header() {
        // Two values of MAX_BULK: the second one's header already says
        // the command will not fit, before any of its bytes are here.
        let value = vec![b'v'; MAX_BULK];
        let whole = command(&[b"MSET", b"a", &value, b"b", &value]);
        let header = format!("${MAX_BULK}\r\n");
        let last = whole.len() - (MAX_BULK + 2) - header.len();
        let head = &whole[..last + header.len()];
        assert_eq!(
            check_new(head),
            Check::Invalid("Protocol error: command too large")
        );
        // One value of MAX_BULK fits, with its key and command name.
        let one = command(&[b"SET", b"a", &value]);
        assert_eq!(check_new(&one), Check::Frame(one.len()));
    }

    /// Found by the `resp_split` and `resp` fuzz targets: a zero-padded
    /// length parsed whole but was refused when its CRLF came in a later
    /// read. Only canonical numbers are lengths now, as in Redis.
    #[test]
    fn lengths_are_canonical_so_splitting_cannot_change_the_answer() {
        for bad in [
            &b"*1\r\n$01\r\na\r\n"[..],
            b"*+1\r\n$1\r\na\r\n",
            b"*-0\r\n",
            b"*1\r\n$-\r\n",
            b"*1\r\n$\r\n",
            b"*000000000000000000000001\r\n$1\r\na\r\n",
        ] {
            assert!(matches!(check_new(bad), Check::Invalid(_)), "{bad:?}");
        }
        // Every prefix of a refused padded length is refused or incomplete,
        // never a frame, and the whole is refused the same way.
        let padded = b"*3\r\n$0000000000000000000000000000000000000000000000000000\r\n\r\n";
        for cut in 1..=padded.len() {
            assert_ne!(
                std::mem::discriminant(&check_new(&padded[..cut])),
                std::mem::discriminant(&Check::Frame(0)),
                "cut at {cut}"
            );
        }
        assert_eq!(
            check_new(padded),
            Check::Invalid("Protocol error: invalid bulk length")
        );
        assert_eq!(check_new(b"*0\r\n"), Check::Frame(4));
        assert_eq!(check_new(b"*-1\r\n"), Check::Frame(5));
        assert_eq!(
            check_new(b"*1\r\n$0\r\n\r\n"),
            Check::Frame(b"*1\r\n$0\r\n\r\n".len())
        );
    }
}
