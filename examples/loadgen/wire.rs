//! What each protocol sends, and how each answer is checked.
//!
//! - echo: message `k` of connection `c` is `size` bytes of a pattern that
//!   depends on `c` and on the byte's offset in the stream, so every
//!   echoed byte is checked for place *and* connection.
//! - http: a keep-alive `GET /`; each response is parsed (httparse) and
//!   must say 200, with its Content-Length body skipped.
//! - resp: `PING` as a RESP array; each answer must be `+PONG\r\n`.

use clap::ValueEnum;

/// The pattern repeats every 64 KiB (see [`Pattern`]).
const PERIOD: usize = 1 << 16;

/// Which protocol to speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// Send `--size` bytes, expect them back byte for byte.
    Echo,
    /// HTTP/1.1 keep-alive `GET /`, expect status 200.
    Http,
    /// RESP `PING`, expect `+PONG`.
    Resp,
}

const HTTP_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: loadgen\r\n\r\n";
const RESP_PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";
const RESP_PONG: &[u8] = b"+PONG\r\n";

/// The byte at stream offset `o` of connection `c` is
/// `base[o % 64 KiB] + 131·c`: one 64 KiB table serves every connection,
/// and checking a run of bytes is a loop the compiler vectorises.
pub struct Pattern {
    base: Vec<u8>,
}

impl Pattern {
    pub fn new() -> Self {
        let base = (0..2 * PERIOD)
            .map(|o| (o.wrapping_mul(7) ^ (o >> 8).wrapping_mul(13)) as u8)
            .collect();
        Pattern { base }
    }

    fn salt(conn: usize) -> u8 {
        (conn as u8).wrapping_mul(131)
    }

    /// Appends `len` pattern bytes from stream offset `offset`.
    pub fn fill(&self, conn: usize, offset: u64, len: usize, out: &mut Vec<u8>) {
        let salt = Self::salt(conn);
        let mut offset = offset;
        let mut left = len;
        while left > 0 {
            let start = (offset % PERIOD as u64) as usize;
            let n = left.min(PERIOD);
            out.extend(
                self.base[start..start + n]
                    .iter()
                    .map(|b| b.wrapping_add(salt)),
            );
            offset += n as u64;
            left -= n;
        }
    }

    /// Whether `got` is the pattern from stream offset `offset`.
    pub fn check(&self, conn: usize, offset: u64, got: &[u8]) -> bool {
        let salt = Self::salt(conn);
        let mut offset = offset;
        got.chunks(PERIOD).all(|chunk| {
            let start = (offset % PERIOD as u64) as usize;
            offset += chunk.len() as u64;
            let expected = &self.base[start..start + chunk.len()];
            chunk
                .iter()
                .zip(expected)
                .fold(true, |ok, (g, e)| ok & (g.wrapping_sub(*e) == salt))
        })
    }
}

/// What parsing a reply found.
pub enum Reply {
    /// A whole, correct reply of this many bytes.
    Ok(usize),
    /// Not all of it has arrived.
    Partial,
    /// A whole reply that is wrong, and this many bytes of it.
    Bad(&'static str, usize),
    /// Bytes that cannot be a reply: the stream is lost.
    Garbage(&'static str),
}

/// One request of a fixed-request protocol.
pub fn request(protocol: Protocol) -> &'static [u8] {
    match protocol {
        Protocol::Http => HTTP_REQUEST,
        Protocol::Resp => RESP_PING,
        Protocol::Echo => &[],
    }
}

/// Parses the first reply in `input` (http and resp).
pub fn parse_reply(protocol: Protocol, input: &[u8]) -> Reply {
    match protocol {
        Protocol::Resp => {
            if input.len() < RESP_PONG.len() {
                if RESP_PONG.starts_with(input) {
                    Reply::Partial
                } else {
                    Reply::Garbage("not +PONG")
                }
            } else if &input[..RESP_PONG.len()] == RESP_PONG {
                Reply::Ok(RESP_PONG.len())
            } else {
                Reply::Garbage("not +PONG")
            }
        }
        Protocol::Http => parse_http(input),
        Protocol::Echo => Reply::Garbage("echo has no reply frames"),
    }
}

fn parse_http(input: &[u8]) -> Reply {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let head = match response.parse(input) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Reply::Partial,
        Err(_) => return Reply::Garbage("malformed HTTP response"),
    };
    let length = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| {
            std::str::from_utf8(h.value)
                .ok()?
                .trim()
                .parse::<usize>()
                .ok()
        });
    let Some(length) = length else {
        return Reply::Garbage("HTTP response without Content-Length");
    };
    if input.len() < head + length {
        return Reply::Partial;
    }
    match response.code {
        Some(200) => Reply::Ok(head + length),
        _ => Reply::Bad("http_status", head + length),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_checks_what_it_fills_and_nothing_else() {
        let p = Pattern::new();
        let mut buf = Vec::new();
        p.fill(3, 70_000, 150_000, &mut buf);
        assert!(p.check(3, 70_000, &buf));
        assert!(!p.check(4, 70_000, &buf), "another connection's bytes");
        assert!(!p.check(3, 70_001, &buf), "shifted by one");
        buf[1234] ^= 1;
        assert!(!p.check(3, 70_000, &buf));
    }
}
