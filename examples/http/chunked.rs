//! Chunked request bodies (RFC 9112 section 7.1): how a client sends a
//! body whose length it does not know in advance (curl's `-T -`, Go's and
//! Python's streaming uploads, browsers' `ReadableStream` bodies).
//!
//! ```text
//! 5\r\nhello\r\n          a chunk: its size in hex, CRLF, the data, CRLF
//! 6;name=v\r\n world\r\n  a chunk extension after the size (ignored)
//! 0\r\n                   the last chunk
//! Trailer: x\r\n          trailer fields (read and dropped)
//! \r\n                    the end of the body
//! ```
//!
//! Parsed in two phases, like RESP in the kv example: [`scan`] finds where
//! the body ends, resuming from a [`Scan`] so a body that trickles in is
//! walked once (whole chunks are never looked at again), and [`decode`]
//! copies the data out of a body `scan` accepted. Strict where lenience is
//! how requests are smuggled: sizes are hex digits only (no sign, no `0x`,
//! no spaces inside), at most 16 of them with no overflow, every line
//! ends in CRLF (a bare LF is refused), and the data, the framing and the
//! trailers each have a limit.

/// Longest chunk-size line, extensions included. Extensions are ignored
/// here, but a client could send megabytes of them: 4 KiB is far more
/// than any client's, and bounds what is scanned per chunk.
pub const MAX_SIZE_LINE: usize = 4096;
/// Most bytes of trailer fields, as much as a request head may hold
/// (`request::MAX_HEAD`): trailers are headers that come late.
pub const MAX_TRAILERS: usize = 8 * 1024;
/// Most hex digits in a chunk size: 16 make a `u64`; more is refused
/// whatever their value (leading zeros included), so no size overflows.
const MAX_SIZE_DIGITS: usize = 16;

/// How far [`scan`] got into a body that has not all arrived.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// Bytes of the body walked: whole chunks, or whole trailer lines.
    at: usize,
    /// Data bytes in those chunks.
    data: usize,
    /// Where the trailers begin, once the last chunk has been seen.
    trailers: Option<usize>,
}

/// What [`scan`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Body {
    /// The whole body: this many bytes of framing and data, holding this
    /// many bytes of data.
    Complete { len: usize, data: usize },
    /// Not all of it has arrived; this many data bytes so far.
    Incomplete { data: usize },
    /// Refused: a status and why.
    Invalid(&'static str, &'static [u8]),
}

/// Finds the end of the chunked body at the start of `buf`, resuming from
/// `scan` (updated on `Incomplete`). `max_data`: the largest body
/// accepted; a chunk that would pass it is refused as soon as its size is
/// read, before its data arrives. `max_len`: the most bytes the framing
/// and data together may take.
pub fn scan(buf: &[u8], scan: &mut Scan, max_data: usize, max_len: usize) -> Body {
    loop {
        let at = scan.at;
        if at > max_len {
            return Body::Invalid("400 Bad Request", b"chunked framing too large\n");
        }
        // Trailers are bounded all together; a size line on its own.
        let limit = match scan.trailers {
            Some(start) => MAX_TRAILERS - (at - start).min(MAX_TRAILERS),
            None => MAX_SIZE_LINE,
        };
        let end = match line_end(buf, at, limit) {
            Line::End(end) => end,
            Line::Open => return Body::Incomplete { data: scan.data },
            Line::BareLf => return Body::Invalid("400 Bad Request", b"bare LF in chunked body\n"),
            Line::TooLong if scan.trailers.is_some() => {
                return Body::Invalid(
                    "431 Request Header Fields Too Large",
                    b"trailers too large\n",
                )
            }
            Line::TooLong => {
                return Body::Invalid("400 Bad Request", b"chunk size line too long\n")
            }
        };
        let line = &buf[at..end];
        if scan.trailers.is_some() {
            if line.is_empty() {
                return Body::Complete {
                    len: end + 2,
                    data: scan.data,
                };
            }
            if !is_field_line(line) {
                return Body::Invalid("400 Bad Request", b"bad trailer field\n");
            }
            scan.at = end + 2;
            continue;
        }
        let Some(size) = chunk_size(line) else {
            return Body::Invalid("400 Bad Request", b"bad chunk size\n");
        };
        if size == 0 {
            scan.at = end + 2;
            scan.trailers = Some(scan.at);
            continue;
        }
        if size > (max_data - scan.data) as u64 {
            return Body::Invalid("413 Content Too Large", b"body too large\n");
        }
        let size = size as usize;
        // Refused before the data comes if it would carry the body past
        // its limit (and the input past the reactor's).
        let data_end = match (end + 2).checked_add(size) {
            Some(data_end) if data_end.saturating_add(2) <= max_len => data_end,
            _ => return Body::Invalid("400 Bad Request", b"chunked framing too large\n"),
        };
        if buf.len() < data_end + 2 {
            // Wait for the data and its CRLF: the size line is walked
            // again then, nothing else. The data already here counts (a
            // body's rate is its data's, not its framing's).
            let arrived = buf.len().saturating_sub(end + 2).min(size);
            return Body::Incomplete {
                data: scan.data + arrived,
            };
        }
        if &buf[data_end..data_end + 2] != b"\r\n" {
            return Body::Invalid("400 Bad Request", b"chunk data not followed by CRLF\n");
        }
        scan.data += size;
        scan.at = data_end + 2;
    }
}

/// Appends the data of a body [`scan`] accepted to `out`.
pub fn decode(body: &[u8], out: &mut Vec<u8>) {
    let mut at = 0;
    while let Line::End(end) = line_end(body, at, MAX_SIZE_LINE) {
        let size = chunk_size(&body[at..end]).unwrap_or(0) as usize;
        if size == 0 {
            return;
        }
        let Some(data) = body.get(end + 2..end + 2 + size) else {
            return;
        };
        out.extend_from_slice(data);
        at = end + 2 + size + 2;
    }
}

/// A chunk-size line's size: 1 to 16 hex digits, then nothing, or an
/// extension (`;`, optionally after spaces or tabs) without controls.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > MAX_SIZE_DIGITS {
        return None;
    }
    let rest = &line[digits..];
    let ext = rest.trim_ascii_start();
    let ext_ok = rest.is_empty()
        || (ext.first() == Some(&b';')
            && rest[..rest.len() - ext.len()]
                .iter()
                .all(|&b| b == b' ' || b == b'\t')
            && ext
                .iter()
                .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b)));
    if !ext_ok {
        return None;
    }
    let text = std::str::from_utf8(&line[..digits]).ok()?;
    u64::from_str_radix(text, 16).ok()
}

/// A trailer line: `name: value`, the name a token, no controls.
fn is_field_line(line: &[u8]) -> bool {
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return false;
    };
    let name_ok = colon > 0
        && line[..colon]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    name_ok
        && line[colon + 1..]
            .iter()
            .all(|&b| b == b'\t' || b >= b' ' && b != 0x7f)
}

/// Where a line of the body stands.
enum Line {
    /// It ends in CRLF at this index.
    End(usize),
    /// Its end has not arrived.
    Open,
    /// A LF without its CR: refused, not waited for.
    BareLf,
    /// Longer than its limit.
    TooLong,
}

/// Finds the end of the line starting at `at`, at most `limit` bytes
/// long. Only the first `limit + 2` bytes are looked at, so the verdict
/// is the same however the bytes were split into reads.
fn line_end(buf: &[u8], at: usize, limit: usize) -> Line {
    let window = &buf[at.min(buf.len())..buf.len().min(at.saturating_add(limit + 2))];
    match window.iter().position(|&b| b == b'\n') {
        Some(lf) if lf > 0 && window[lf - 1] == b'\r' => Line::End(at + lf - 1),
        Some(_) => Line::BareLf,
        None if window.len() == limit + 2 => Line::TooLong,
        None => Line::Open,
    }
}
