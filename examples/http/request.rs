//! The request path of the http example: bytes in, responses out. No
//! socket, no timer: [`Requests::serve`] is a function of the bytes it is
//! given and the connection's [`Progress`], which is what lets the fuzzer
//! (`fuzz/fuzz_targets/http_request.rs`) drive it directly, and check
//! that a stream split anywhere is answered exactly as the same stream
//! sent whole.
//!
//! The routes, and what each method gets (RFC 9110):
//!
//! | path | methods | answer |
//! | --- | --- | --- |
//! | `/` | GET, HEAD | `Hello, World!` |
//! | `/echo` | POST | the request body (Content-Length or chunked) |
//! | `/stream?n=N` | GET, HEAD | N chunks of `STREAM_CHUNK` bytes, written as the client reads them (`main.rs`) |
//! | any of them | OPTIONS | `Allow` |
//! | `*` | OPTIONS | every method the server knows |
//!
//! A known path with another method is 405 with `Allow`; any other path
//! is 404.

use crate::chunked::{self, Body, Scan};

/// Request heads past 8 KiB are refused with 431 (nginx's default
/// `large_client_header_buffers` is 8 KiB too).
pub const MAX_HEAD: usize = 8 * 1024;
/// Headers per request httparse will parse; more is a 431.
pub const MAX_HEADERS: usize = 64;
/// Bytes in each chunk `/stream` sends: a line of its number, padded.
pub const STREAM_CHUNK: usize = 1024;
/// Most chunks one `/stream` may ask for: 1 GiB, enough to watch
/// backpressure for a while, bounded so a URL cannot ask for forever.
pub const MAX_STREAM_CHUNKS: u64 = 1 << 20;

/// What a connection's request is waiting for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Waiting {
    /// Nothing: the last request was whole.
    Nothing,
    /// The rest of a request's head.
    Head,
    /// The rest of a request's body, of which this many bytes are here.
    Body(usize),
}

/// What to do with the connection after answering.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum After {
    /// Keep it for the next request.
    KeepAlive,
    /// Close it once the answers are written.
    Close,
}

/// A `/stream` response whose head is written; its chunks are the
/// caller's to write, as the client reads them.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Stream {
    /// Chunks to send.
    pub chunks: u64,
    /// Chunked framing (HTTP/1.1), or the body ends at the close
    /// (HTTP/1.0, which has no chunks).
    pub chunked: bool,
    /// What to do once it is all sent.
    pub after: After,
}

/// What one [`Requests::serve`] did with its input.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Served {
    /// Bytes of the input used by whole requests (all of it after a
    /// refusal: the rest is dropped with the connection).
    pub used: usize,
    /// Whether the connection stays.
    pub after: After,
    /// What a request still arriving waits for.
    pub waiting: Waiting,
    /// Whole requests answered (a `100 Continue` is not an answer).
    pub answered: usize,
    /// A `/stream` to send before any later request is served: `used`
    /// ends with its request.
    pub stream: Option<Stream>,
}

/// Per connection: how far the request at the front of its input has
/// been looked at, so that a body trickling in is walked once and a
/// `100 Continue` is sent once. Kept by the caller between calls, reset
/// when a request completes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// The length and framing of a head already parsed whose body is
    /// still arriving: the head is not parsed again until the body is
    /// whole, so a body trickling in a byte at a time costs a look at the
    /// new byte, not a parse of up to 8 KiB of head per byte.
    head: Option<(usize, Framing)>,
    /// How far a chunked body has been scanned.
    chunked: Scan,
    /// `100 Continue` was sent for this request.
    continued: bool,
}

/// The server's side of the protocol, shared by every connection: the
/// limits, the prebuilt answers, and the output of one call.
pub struct Requests {
    /// Largest request body accepted, in bytes.
    pub max_body: usize,
    /// `Date: ...\r\n`, refreshed once a second.
    date: Vec<u8>,
    /// The whole keep-alive response to `GET /`, rebuilt with the date.
    hello: Vec<u8>,
    /// A chunked body, decoded.
    body: Vec<u8>,
    /// Responses of one call, written in one go.
    pub out: Vec<u8>,
}

/// A request line and the headers this server acts on.
struct Head<'a> {
    method: &'a str,
    path: &'a str,
    http10: bool,
    /// Bytes of the head, blank line included.
    len: usize,
    after: After,
    framing: Framing,
    expect_continue: bool,
}

/// How the request's body is delimited (RFC 9112 section 6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
}

impl Progress {
    /// Whether `100 Continue` was sent for the request at the front (the
    /// fuzz target's question; the server has no need to ask).
    #[allow(dead_code)]
    pub fn continued(&self) -> bool {
        self.continued
    }
}

/// A refusal: the status line's text and the body saying why.
type Refusal = (&'static str, &'static [u8]);

impl Requests {
    /// A server that accepts bodies up to `max_body` bytes, with `date`
    /// (an HTTP date such as `Sun, 06 Nov 1994 08:49:37 GMT`) in its
    /// `Date` header.
    pub fn new(max_body: usize, date: &str) -> Self {
        let mut requests = Requests {
            max_body,
            date: Vec::new(),
            hello: Vec::new(),
            body: Vec::new(),
            out: Vec::new(),
        };
        requests.set_date(date);
        requests
    }

    /// Sets the `Date` header and rebuilds the `GET /` answer around it.
    pub fn set_date(&mut self, date: &str) {
        self.date = format!("Date: {date}\r\n").into_bytes();
        self.hello.clear();
        self.hello.extend_from_slice(b"HTTP/1.1 200 OK\r\nServer: evloop\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n");
        self.hello.extend_from_slice(&self.date);
        self.hello.extend_from_slice(b"\r\nHello, World!");
    }

    /// The most bytes a request may take in a connection's input: a head,
    /// and a chunked body's data with at most as much framing again, and
    /// its trailers. The reactor's input limit is set from it, so a
    /// request within every limit here is never cut by the reactor's.
    pub fn max_request(&self) -> usize {
        // The framing limit is checked before each size line, which may
        // then run to its own limit; the trailers follow.
        (MAX_HEAD + chunked::MAX_SIZE_LINE + chunked::MAX_TRAILERS + 4)
            .saturating_add(self.max_chunked())
    }

    /// The most bytes a chunked body's chunks may take: the data, and as
    /// much again of framing (a client that sends a megabyte as one-byte
    /// chunks sends 6 MB; refused).
    fn max_chunked(&self) -> usize {
        self.max_body.saturating_mul(2).saturating_add(MAX_HEAD)
    }

    /// Answers, into [`Requests::out`], as many complete requests as
    /// `input` holds. `progress` is the connection's: how far the request
    /// at the front of `input` was looked at by earlier calls.
    pub fn serve(&mut self, input: &[u8], progress: &mut Progress) -> Served {
        let served = self.serve_requests(input, progress);
        if served.after == After::Close {
            // Nothing more is read from this connection.
            *progress = Progress::default();
        }
        served
    }

    fn serve_requests(&mut self, input: &[u8], progress: &mut Progress) -> Served {
        let mut served = Served {
            used: 0,
            after: After::KeepAlive,
            waiting: Waiting::Nothing,
            answered: 0,
            stream: None,
        };
        loop {
            let buf = &input[served.used..];
            if buf.is_empty() {
                return served;
            }
            // RFC 9112 2.2: empty lines before a request are ignored (a
            // client may end a body with an extra CRLF); they are not the
            // start of a head, so they start no header deadline.
            if progress.head.is_none() && buf.starts_with(b"\r\n") {
                served.used += 2;
                continue;
            }
            let (parsed, (head_len, framing)) = match progress.head {
                Some(known) => (None, known),
                None => match parse_head(buf) {
                    Ok(Some(head)) => {
                        let known = (head.len, head.framing);
                        (Some(head), known)
                    }
                    Ok(None) => {
                        served.waiting = Waiting::Head;
                        return served;
                    }
                    Err(refusal) => return self.refuse(refusal, buf, input.len(), served),
                },
            };
            if let Framing::Length(n) = framing {
                if n > self.max_body {
                    return self.refuse(
                        ("413 Content Too Large", b"body too large\n"),
                        buf,
                        input.len(),
                        served,
                    );
                }
            }
            let Some(rest) = buf.get(head_len..) else {
                // A progress for a longer input than this: not the request
                // it was for. Refused rather than guessed at.
                *progress = Progress::default();
                let refusal = ("400 Bad Request", &b"malformed request\n"[..]);
                return self.refuse(refusal, buf, input.len(), served);
            };
            let body = match framing {
                Framing::Length(n) if rest.len() >= n => Ok((n, &rest[..n])),
                Framing::Length(_) => Err(rest.len()),
                Framing::Chunked => {
                    let (max_body, max_len) = (self.max_body, self.max_chunked());
                    match chunked::scan(rest, &mut progress.chunked, max_body, max_len) {
                        Body::Complete { len, data } => {
                            self.body.clear();
                            self.body.reserve(data);
                            chunked::decode(&rest[..len], &mut self.body);
                            Ok((len, &[][..]))
                        }
                        Body::Incomplete { data } => Err(data),
                        Body::Invalid(status, why) => {
                            return self.refuse((status, why), buf, input.len(), served)
                        }
                    }
                }
            };
            // `have`: the body's data so far (its framing not counted).
            let (body_len, body) = match body {
                Ok(whole) => whole,
                Err(have) => {
                    // The body is still coming. A client that asked first is
                    // told to send it (RFC 9110 10.1.1), once.
                    if parsed.as_ref().is_some_and(|h| h.expect_continue) && !progress.continued {
                        self.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                        progress.continued = true;
                    }
                    progress.head = Some((head_len, framing));
                    served.waiting = Waiting::Body(have);
                    return served;
                }
            };
            // The request is whole: its head, parsed now or (once more)
            // now that its body has come, answers it.
            let head = match parsed {
                Some(head) => head,
                None => match parse_head(buf) {
                    Ok(Some(head)) => head,
                    // The same bytes parsed before; if they no longer do,
                    // the input is not what the progress was for: refuse
                    // rather than guess.
                    _ => {
                        *progress = Progress::default();
                        let refusal = ("400 Bad Request", &b"malformed request\n"[..]);
                        return self.refuse(refusal, buf, input.len(), served);
                    }
                },
            };
            *progress = Progress::default();
            served.used += head.len + body_len;
            served.answered += 1;
            let stream = if framing == Framing::Chunked {
                let body = std::mem::take(&mut self.body);
                let stream = self.answer(&head, &body);
                self.body = body;
                stream
            } else {
                self.answer(&head, body)
            };
            if let Some(stream) = stream {
                served.stream = Some(stream);
                return served;
            }
            if head.after == After::Close {
                served.after = After::Close;
                return served;
            }
        }
    }

    /// A request the server will not serve: answer why, then close. The
    /// rest of the input is dropped with it. `request`: the refused
    /// request's bytes (a HEAD's refusal has no body either).
    fn refuse(
        &mut self,
        (status, why): Refusal,
        request: &[u8],
        input_len: usize,
        served: Served,
    ) -> Served {
        let head_only = request.starts_with(b"HEAD ");
        self.respond(status, why, head_only, After::Close, false, &[]);
        Served {
            used: input_len,
            after: After::Close,
            waiting: Waiting::Nothing,
            ..served
        }
    }

    /// Appends a response with `body` (or only its headers, for HEAD) and
    /// `extra` header lines. `http10`: the request was HTTP/1.0, which
    /// closes unless told otherwise, so keeping it open is said.
    pub fn respond(
        &mut self,
        status: &str,
        body: &[u8],
        head_only: bool,
        after: After,
        http10: bool,
        extra: &[&str],
    ) {
        let out = &mut self.out;
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_bytes());
        out.extend_from_slice(
            b"\r\nServer: evloop\r\nContent-Type: text/plain\r\nContent-Length: ",
        );
        out.extend_from_slice(body.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.date);
        connection_header(out, after, http10);
        for line in extra {
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !head_only {
            out.extend_from_slice(body);
        }
    }

    /// Answers one complete request; a `/stream` is returned for the
    /// caller to send.
    fn answer(&mut self, head: &Head<'_>, body: &[u8]) -> Option<Stream> {
        let (after, http10) = (head.after, head.http10);
        // The benchmarks' request, answered before any routing.
        if (head.method, head.path, after, http10) == ("GET", "/", After::KeepAlive, false) {
            self.out.extend_from_slice(&self.hello);
            return None;
        }
        let head_only = head.method == "HEAD";
        // RFC 9110 9.1: a method the server does not know is 501; one it
        // knows but a path does not take is 405.
        if !KNOWN_METHODS.contains(&head.method) {
            let why = b"Not Implemented\n";
            self.respond("501 Not Implemented", why, false, after, http10, &[]);
            return None;
        }
        let (path, query) = split_target(head.path);
        let allow = match path {
            "/" => "Allow: GET, HEAD, OPTIONS",
            "/echo" => "Allow: OPTIONS, POST",
            "/stream" => "Allow: GET, HEAD, OPTIONS",
            "*" if head.method == "OPTIONS" => "Allow: GET, HEAD, OPTIONS, POST",
            _ => {
                let head_only = head.method == "HEAD";
                self.respond(
                    "404 Not Found",
                    b"Not Found\n",
                    head_only,
                    after,
                    http10,
                    &[],
                );
                return None;
            }
        };
        match (head.method, path) {
            ("GET" | "HEAD", "/") => {
                self.respond("200 OK", b"Hello, World!", head_only, after, http10, &[]);
            }
            ("POST", "/echo") => self.respond("200 OK", body, false, after, http10, &[]),
            ("GET" | "HEAD", "/stream") => return self.stream(head, query),
            ("OPTIONS", _) => self.respond("200 OK", b"", false, after, http10, &[allow]),
            _ => {
                self.respond(
                    "405 Method Not Allowed",
                    b"Method Not Allowed\n",
                    head_only,
                    after,
                    http10,
                    &[allow],
                );
            }
        }
        None
    }

    /// `/stream?n=N`: the head now, the chunks as the client reads them.
    fn stream(&mut self, head: &Head<'_>, query: &str) -> Option<Stream> {
        let (after, http10) = (head.after, head.http10);
        let chunks = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("n="))
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|n| (1..=MAX_STREAM_CHUNKS).contains(n));
        let head_only = head.method == "HEAD";
        let Some(chunks) = chunks else {
            let why = format!("/stream wants ?n=N, N from 1 to {MAX_STREAM_CHUNKS}\n");
            self.respond(
                "400 Bad Request",
                why.as_bytes(),
                head_only,
                after,
                http10,
                &[],
            );
            return None;
        };
        // HTTP/1.0 has no chunked framing: the body ends when the
        // connection closes, the way every HTTP/1.0 body of unknown length
        // did. (A HEAD has no body to end.)
        let chunked = !http10;
        let after = if http10 && !head_only {
            After::Close
        } else {
            after
        };
        let out = &mut self.out;
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\nServer: evloop\r\nContent-Type: text/plain\r\n");
        out.extend_from_slice(&self.date);
        if chunked {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
        }
        connection_header(out, after, http10);
        out.extend_from_slice(b"\r\n");
        if head_only {
            return None;
        }
        Some(Stream {
            chunks,
            chunked,
            after,
        })
    }
}

/// Appends chunk number `i` of a `/stream` to `out`: `STREAM_CHUNK` bytes
/// of data (its number, dots, a newline), framed as a chunk if `chunked`.
pub fn stream_chunk(out: &mut Vec<u8>, i: u64, chunked: bool) {
    if chunked {
        out.extend_from_slice(format!("{STREAM_CHUNK:x}\r\n").as_bytes());
    }
    let start = out.len();
    out.extend_from_slice(i.to_string().as_bytes());
    out.resize(start + STREAM_CHUNK - 1, b'.');
    out.push(b'\n');
    if chunked {
        out.extend_from_slice(b"\r\n");
    }
}

/// Methods RFC 9110 defines, and PATCH (RFC 5789): known, so a path
/// that does not take one answers 405, not 501.
const KNOWN_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// A request target's path and query. An absolute-form target
/// (`http://host/path?q`, which RFC 9112 3.2.2 says a server must accept)
/// loses its scheme and authority; an empty path is `/`.
fn split_target(target: &str) -> (&str, &str) {
    let target = match target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))
    {
        Some(rest) => rest.find(['/', '?']).map_or("", |i| &rest[i..]),
        None => target,
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    (if path.is_empty() { "/" } else { path }, query)
}

/// The end of a chunked `/stream`: the last chunk, no trailers.
pub const STREAM_END: &[u8] = b"0\r\n\r\n";

/// `Connection: close` when closing; `Connection: keep-alive` when an
/// HTTP/1.0 client's connection stays (it would wait for a close
/// otherwise: ApacheBench's `-k` does exactly that).
fn connection_header(out: &mut Vec<u8>, after: After, http10: bool) {
    match after {
        After::Close => out.extend_from_slice(b"Connection: close\r\n"),
        After::KeepAlive if http10 => out.extend_from_slice(b"Connection: keep-alive\r\n"),
        After::KeepAlive => {}
    }
}

/// Parses the head at the front of `buf`: `Ok(None)` if it has not all
/// arrived.
///
/// Only the first MAX_HEAD bytes can hold a head we accept, so only they
/// are parsed: a head is refused for what its first 8 KiB say, whatever
/// follows, and the answer to a stream never depends on how it was split
/// into reads.
#[inline(always)] // once per request: the head is built in place, not moved
fn parse_head(buf: &[u8]) -> Result<Option<Head<'_>>, Refusal> {
    let window = &buf[..buf.len().min(MAX_HEAD)];
    // Header slots left uninitialised: httparse fills what it uses, and
    // zeroing 64 slots (2 KiB) per request is work for nothing.
    let mut headers = [std::mem::MaybeUninit::uninit(); MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    // httparse takes a bare LF as a line end (RFC 9112 2.2 allows it);
    // a proxy in front that splits only on CRLF would see a different
    // set of headers (`X: a\nContent-Length: 35` is one header to it, two
    // here): refused, as chunked bodies refuse it. The verdict must not
    // depend on how the head was split into reads, so unless the head is
    // whole and clean (the common case, checked first), only the bytes
    // before the first bare LF are parsed.
    let mut parsed = req.parse_with_uninit_headers(window, &mut headers);
    let clean =
        matches!(parsed, Ok(httparse::Status::Complete(n)) if bare_lf(&window[..n]).is_none());
    let bare = if clean { None } else { bare_lf(window) };
    if let Some(at) = bare {
        req = httparse::Request::new(&mut []);
        parsed = req.parse_with_uninit_headers(&window[..at], &mut headers);
    }
    let len = match parsed {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if bare.is_some() => {
            return Err(("400 Bad Request", b"bare LF in request head\n"))
        }
        // An incomplete head: wait for more, under the deadline.
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return Ok(None),
        Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
            return Err((
                "431 Request Header Fields Too Large",
                b"headers too large\n",
            ))
        }
        // RFC 9110 15.6.6: `HTTP/` and a digit, but not 1.0 or 1.1, is a
        // version the server does not speak; anything else is garbage.
        Err(httparse::Error::Version) if names_a_version(window) => {
            return Err((
                "505 HTTP Version Not Supported",
                b"HTTP/1.0 and HTTP/1.1 only\n",
            ))
        }
        Err(_) => return Err(("400 Bad Request", b"malformed request\n")),
    };
    let (Some(method), Some(path), Some(version)) = (req.method, req.path, req.version) else {
        return Err(("400 Bad Request", b"malformed request\n"));
    };
    let http10 = version == 0;
    let header = |name: &'static str| {
        req.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    // The fields this server acts on, in one pass over the headers (a
    // pipelined benchmark parses a million heads a second).
    let mut hosts = 0;
    let (mut close, mut keep_alive) = (false, false);
    let (mut transfer_encoding, mut content_lengths) = (false, false);
    let mut expect = None;
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case(b"connection") {
            close |= has_token(h.value, "close");
            keep_alive |= has_token(h.value, "keep-alive");
        } else if name.eq_ignore_ascii_case(b"content-length") {
            content_lengths = true;
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            transfer_encoding = true;
        } else if name.eq_ignore_ascii_case(b"expect") && expect.is_none() {
            expect = Some(h.value);
        }
    }
    // RFC 9112 3.2: an HTTP/1.1 request carries exactly one Host; an
    // HTTP/1.0 one at most one. Two, or none, is a 400.
    if hosts > 1 || (hosts == 0 && !http10) {
        return Err(("400 Bad Request", b"a request needs one Host header\n"));
    }
    // HTTP/1.1 keeps the connection unless told `close`; HTTP/1.0 closes
    // it unless told `keep-alive` (RFC 9112 9.3). Connection is a list,
    // and its lines add up (RFC 9110 5.3): `close` in any of them wins.
    let after = if close || (http10 && !keep_alive) {
        After::Close
    } else {
        After::KeepAlive
    };
    let framing = match (transfer_encoding, content_lengths) {
        // Both framings at once is how requests are smuggled past a proxy
        // that reads the other one (RFC 9112 6.3): refused.
        (true, true) => {
            return Err((
                "400 Bad Request",
                b"Transfer-Encoding with Content-Length\n",
            ))
        }
        (true, false) if http10 => {
            // RFC 9112 6.1: a server must treat Transfer-Encoding in an
            // HTTP/1.0 message as faulty framing.
            return Err(("400 Bad Request", b"Transfer-Encoding in HTTP/1.0\n"));
        }
        (true, false) => {
            // Only `chunked`, exactly once: other codings (gzip, ...) are
            // not understood here, and "chunked, chunked" is a smuggling
            // trick.
            let mut codings = header("transfer-encoding")
                .flat_map(|v| v.split(|&b| b == b','))
                .map(<[u8]>::trim_ascii);
            match (codings.next(), codings.next()) {
                (Some(c), None) if c.eq_ignore_ascii_case(b"chunked") => Framing::Chunked,
                _ => {
                    return Err((
                        "501 Not Implemented",
                        b"only Transfer-Encoding: chunked is understood\n",
                    ))
                }
            }
        }
        (false, false) => Framing::Length(0),
        (false, true) => Framing::Length(
            content_length(header("content-length"))
                .map_err(|()| ("400 Bad Request", &b"bad Content-Length\n"[..]))?,
        ),
    };
    // RFC 9110 10.1.1: `100-continue` is the one expectation; an HTTP/1.0
    // client cannot have sent it knowingly, so it is ignored there.
    let expect_continue = match expect {
        None => false,
        Some(_) if http10 => false,
        Some(v) if v.trim_ascii().eq_ignore_ascii_case(b"100-continue") => true,
        Some(_) => return Err(("417 Expectation Failed", b"unknown expectation\n")),
    };
    Ok(Some(Head {
        method,
        path,
        http10,
        len,
        after,
        framing,
        expect_continue,
    }))
}

/// Whether the request line's third word (the version: httparse took the
/// method and the target before it) starts `HTTP/` and a digit. Only
/// those bytes are looked at, which httparse read before it stopped, so
/// the verdict is the same however the line was split.
fn names_a_version(window: &[u8]) -> bool {
    let word = window.splitn(3, |&b| b == b' ').nth(2).unwrap_or_default();
    word.strip_prefix(b"HTTP/")
        .and_then(|rest| rest.first())
        .is_some_and(u8::is_ascii_digit)
}

/// Where the first LF that is not the end of a CRLF is.
fn bare_lf(bytes: &[u8]) -> Option<usize> {
    // memchr's SIMD search: this runs on every request head.
    memchr::memchr_iter(b'\n', bytes).find(|&at| at == 0 || bytes[at - 1] != b'\r')
}

/// Whether a comma-separated header value holds `token`.
fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// The Content-Length; `Err` if not plain
/// digits (RFC 9110 8.6: `1*DIGIT`; no sign, no inner spaces, no list, no
/// Unicode digits or spaces), or given twice, differently: each is a way
/// to make two parsers disagree on where a request ends (request
/// smuggling; hyper's CVE-2021-32715 was a `+` sign).
fn content_length<'a>(values: impl Iterator<Item = &'a [u8]>) -> Result<usize, ()> {
    let mut length = None;
    for value in values {
        // Only optional whitespace (space, tab) may surround the value.
        let value = value.trim_ascii();
        if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
            return Err(());
        }
        let n = value.iter().try_fold(0usize, |n, &d| {
            n.checked_mul(10)?.checked_add(usize::from(d - b'0'))
        });
        let n = n.ok_or(())?;
        if length.is_some_and(|l| l != n) {
            return Err(());
        }
        length = Some(n);
    }
    Ok(length.unwrap_or(0))
}
