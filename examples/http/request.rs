//! The request path of the http example: bytes in, responses out. No
//! socket, no timer: [`Requests::serve`] is a function of the bytes it is
//! given, which is what lets the fuzzer (`fuzz/fuzz_targets/http_request.rs`)
//! drive it directly, and check that a stream split anywhere is answered
//! exactly as the same stream sent whole.

/// Request heads past 8 KiB are refused with 431 (nginx's default
/// `large_client_header_buffers` is 8 KiB too).
pub const MAX_HEAD: usize = 8 * 1024;
/// Headers per request httparse will parse; more is a 431.
pub const MAX_HEADERS: usize = 64;

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
    /// Responses of one call, written in one go.
    pub out: Vec<u8>,
}

impl Requests {
    /// A server that accepts bodies up to `max_body` bytes, with `date`
    /// (an HTTP date such as `Sun, 06 Nov 1994 08:49:37 GMT`) in its
    /// `Date` header.
    pub fn new(max_body: usize, date: &str) -> Self {
        let mut requests = Requests {
            max_body,
            date: Vec::new(),
            hello: Vec::new(),
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

    /// Answers, into [`Requests::out`], as many complete requests as
    /// `input` holds.
    pub fn serve(&mut self, input: &[u8]) -> Served {
        let mut used = 0;
        loop {
            let buf = &input[used..];
            if buf.is_empty() {
                return Served {
                    used,
                    after: After::KeepAlive,
                    waiting: Waiting::Nothing,
                };
            }
            // Only the first MAX_HEAD bytes can hold a head we accept, so
            // only they are parsed: a head is refused for what its first
            // 8 KiB say, whatever follows, and the answer to a stream never
            // depends on how it was split into reads.
            let window = &buf[..buf.len().min(MAX_HEAD)];
            // Header slots left uninitialised: httparse fills what it uses,
            // and zeroing 64 slots (2 KiB) per request is work for nothing.
            let mut headers = [std::mem::MaybeUninit::uninit(); MAX_HEADERS];
            let mut req = httparse::Request::new(&mut []);
            let head = match req.parse_with_uninit_headers(window, &mut headers) {
                Ok(httparse::Status::Complete(n)) => n,
                Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {
                    // An incomplete head: wait for more, under the deadline.
                    return Served {
                        used,
                        after: After::KeepAlive,
                        waiting: Waiting::Head,
                    };
                }
                Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
                    return self.refuse(
                        "431 Request Header Fields Too Large",
                        b"headers too large\n",
                        input.len(),
                    );
                }
                Err(_) => {
                    return self.refuse("400 Bad Request", b"malformed request\n", input.len())
                }
            };
            let has = |name: &str| {
                req.headers
                    .iter()
                    .any(|h| h.name.eq_ignore_ascii_case(name))
            };
            if has("transfer-encoding") {
                // Both framings at once is how requests are smuggled past a
                // proxy that reads the other one (RFC 9112 6.3): refused.
                if has("content-length") {
                    return self.refuse(
                        "400 Bad Request",
                        b"Transfer-Encoding with Content-Length\n",
                        input.len(),
                    );
                }
                return self.refuse(
                    "501 Not Implemented",
                    b"Transfer-Encoding is not supported\n",
                    input.len(),
                );
            }
            let Ok(length) = content_length(&req) else {
                return self.refuse("400 Bad Request", b"bad Content-Length\n", input.len());
            };
            if length > self.max_body {
                return self.refuse("413 Content Too Large", b"body too large\n", input.len());
            }
            if buf.len() - head < length {
                return Served {
                    used,
                    after: After::KeepAlive,
                    waiting: Waiting::Body(buf.len() - head),
                };
            }
            let after = self.answer(&req, &buf[head..head + length]);
            used += head + length;
            if after == After::Close {
                return Served {
                    used,
                    after,
                    waiting: Waiting::Nothing,
                };
            }
        }
    }

    /// A request the server will not serve: answer why, then close. The
    /// rest of the input is dropped with it.
    fn refuse(&mut self, status: &str, why: &[u8], input_len: usize) -> Served {
        self.respond(status, why, false, After::Close);
        Served {
            used: input_len,
            after: After::Close,
            waiting: Waiting::Nothing,
        }
    }

    /// Appends a response with `body` (or only its headers, for HEAD).
    pub fn respond(&mut self, status: &str, body: &[u8], head_only: bool, after: After) {
        let out = &mut self.out;
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_bytes());
        out.extend_from_slice(
            b"\r\nServer: evloop\r\nContent-Type: text/plain\r\nContent-Length: ",
        );
        out.extend_from_slice(body.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.date);
        if after == After::Close {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !head_only {
            out.extend_from_slice(body);
        }
    }

    /// Answers one complete request; returns whether to keep the
    /// connection.
    fn answer(&mut self, req: &httparse::Request<'_, '_>, body: &[u8]) -> After {
        // HTTP/1.1 keeps the connection unless told `close`; HTTP/1.0
        // closes it unless told `keep-alive`.
        let connection = req
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("connection"))
            .map(|h| h.value);
        let after = match connection {
            Some(v) if v.eq_ignore_ascii_case(b"close") => After::Close,
            Some(v) if v.eq_ignore_ascii_case(b"keep-alive") => After::KeepAlive,
            _ if req.version == Some(0) => After::Close,
            _ => After::KeepAlive,
        };
        match (req.method, req.path) {
            (Some("GET"), Some("/")) if after == After::KeepAlive => {
                self.out.extend_from_slice(&self.hello);
            }
            (Some("GET"), Some("/")) => self.respond("200 OK", b"Hello, World!", false, after),
            (Some("HEAD"), Some("/")) => self.respond("200 OK", b"Hello, World!", true, after),
            (Some("POST"), Some("/echo")) => self.respond("200 OK", body, false, after),
            (Some("HEAD"), _) => self.respond("404 Not Found", b"Not Found\n", true, after),
            _ => self.respond("404 Not Found", b"Not Found\n", false, after),
        }
        after
    }
}

/// The Content-Length, 0 if absent; `Err` if present but not plain
/// digits (RFC 9110 8.6: `1*DIGIT`; no sign, no inner spaces, no list, no
/// Unicode digits or spaces), or given twice, differently: each is a way
/// to make two parsers disagree on where a request ends (request
/// smuggling; hyper's CVE-2021-32715 was a `+` sign).
fn content_length(req: &httparse::Request<'_, '_>) -> Result<usize, ()> {
    let mut length = None;
    for h in req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
    {
        // Only optional whitespace (space, tab) may surround the value.
        let value = h.value.trim_ascii();
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
