//! An HTTP/1.1 server on the reactor, parsing with httparse.
//!
//! ```sh
//! cargo run --release --example http -- --addr 127.0.0.1:8080
//! curl -i http://127.0.0.1:8080/                 # Hello, World!
//! curl -i -d 'some body' http://127.0.0.1:8080/echo
//! ```
//!
//! What it teaches beyond echo: **pipelining** (every complete request in
//! the input is answered, and all the answers go out in one write),
//! **limits answered in the protocol** (431 for oversized headers, 413 for
//! an oversized body, 400 for garbage and for a Content-Length that is not
//! plain digits, 400 for Transfer-Encoding beside Content-Length and 501
//! for Transfer-Encoding alone: the request-smuggling defences; 408 for a
//! client too slow to send a request's headers, or whose body stops
//! coming: the slowloris defence), and
//! **work done once a second instead of once a request** (the Date header,
//! and the whole `GET /` response built around it).

mod common;

use std::time::{Duration, SystemTime};

use clap::Parser;
use evloop::timer::TimerId;
use evloop::{ConnId, Context, Handler, Reactor};

#[derive(Parser, Debug)]
#[command(about = "HTTP/1.1 server on the evloop reactor")]
struct Cli {
    #[command(flatten)]
    server: common::ServerArgs,
    /// Seconds a client may take to send a request's headers (each
    /// request's own: pipelined requests each get the whole time).
    #[arg(long, default_value_t = 10)]
    header_timeout: u64,
    /// Seconds a request body may go without a byte arriving (a slow but
    /// steady upload is never cut; a stalled one is).
    #[arg(long, default_value_t = 30)]
    body_timeout: u64,
    /// Largest request body accepted, in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    max_body: usize,
}

/// Request heads past 8 KiB are refused with 431 (nginx's default
/// `large_client_header_buffers` is 8 KiB too).
const MAX_HEAD: usize = 8 * 1024;
/// Headers per request httparse will parse; more is a 431.
const MAX_HEADERS: usize = 64;
/// The timer token of the once-a-second Date refresh; every other token
/// is a connection's request deadline.
const DATE_TICK: u64 = u64::MAX;

/// What a connection's request is waiting for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Waiting {
    /// Nothing: the last request was whole.
    Nothing,
    /// The rest of a request's head.
    Head,
    /// The rest of a request's body.
    Body,
}

/// Per connection: the request deadline, while a request is arriving.
struct Slot {
    id: ConnId,
    /// The head deadline (set once per request: the whole head must come
    /// within `header_timeout`), or the body deadline (moved on by every
    /// byte: the body must not stall for `body_timeout`).
    timer: Option<TimerId>,
    waiting: Waiting,
}

struct Http {
    header_timeout: Duration,
    body_timeout: Duration,
    max_body: usize,
    /// `Date: ...\r\n`, refreshed once a second.
    date: Vec<u8>,
    /// The whole keep-alive response to `GET /`, rebuilt with the date.
    hello: Vec<u8>,
    /// Responses of one dispatch, written in one go.
    out: Vec<u8>,
    slots: Vec<Option<Slot>>,
}

/// What to do with the connection after answering.
#[derive(PartialEq)]
enum After {
    KeepAlive,
    Close,
}

impl Http {
    fn refresh_date(&mut self) {
        self.date =
            format!("Date: {}\r\n", httpdate::fmt_http_date(SystemTime::now())).into_bytes();
        self.hello.clear();
        self.hello.extend_from_slice(b"HTTP/1.1 200 OK\r\nServer: evloop\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n");
        self.hello.extend_from_slice(&self.date);
        self.hello.extend_from_slice(b"\r\nHello, World!");
    }

    /// A request the server will not serve: answer why, then close. The
    /// rest of the input is dropped with it.
    fn refuse(&mut self, status: &str, why: &[u8], input_len: usize) -> (usize, After, Waiting) {
        self.respond(status, why, false, &After::Close);
        (input_len, After::Close, Waiting::Nothing)
    }

    /// Appends a response with `body` (or only its headers, for HEAD).
    fn respond(&mut self, status: &str, body: &[u8], head_only: bool, after: &After) {
        let out = &mut self.out;
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_bytes());
        out.extend_from_slice(
            b"\r\nServer: evloop\r\nContent-Type: text/plain\r\nContent-Length: ",
        );
        out.extend_from_slice(body.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.date);
        if *after == After::Close {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !head_only {
            out.extend_from_slice(body);
        }
    }

    fn slot(&mut self, conn: ConnId) -> Option<&mut Slot> {
        self.slots
            .get_mut(conn.index())
            .and_then(Option::as_mut)
            .filter(|s| s.id == conn)
    }

    /// Sets the connection's deadline for what its request waits for now.
    /// `completed`: a request was answered in this dispatch, so a head
    /// still arriving is a new request's, with a deadline of its own.
    fn track(&mut self, cx: &mut Context<'_>, conn: ConnId, waiting: Waiting, completed: bool) {
        let (header_timeout, body_timeout) = (self.header_timeout, self.body_timeout);
        let Some(slot) = self.slot(conn) else {
            return;
        };
        let timeout = match waiting {
            // The same head, still arriving: its deadline stands.
            Waiting::Head if slot.waiting == Waiting::Head && !completed => return,
            Waiting::Head => Some(header_timeout),
            // Body bytes came: the stall deadline moves on.
            Waiting::Body => Some(body_timeout),
            Waiting::Nothing => None,
        };
        slot.waiting = waiting;
        let old = slot.timer.take();
        if let Some(timeout) = timeout {
            slot.timer = Some(cx.set_timer(timeout, conn.as_u64()));
        }
        if let Some(old) = old {
            cx.cancel_timer(old);
        }
    }

    fn disarm(&mut self, cx: &mut Context<'_>, conn: ConnId) {
        if let Some(timer) = self.slot(conn).and_then(|s| s.timer.take()) {
            cx.cancel_timer(timer);
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
                let hello = std::mem::take(&mut self.hello);
                self.out.extend_from_slice(&hello);
                self.hello = hello;
            }
            (Some("GET"), Some("/")) => self.respond("200 OK", b"Hello, World!", false, &after),
            (Some("HEAD"), Some("/")) => self.respond("200 OK", b"Hello, World!", true, &after),
            (Some("POST"), Some("/echo")) => self.respond("200 OK", body, false, &after),
            (Some("HEAD"), _) => self.respond("404 Not Found", b"Not Found\n", true, &after),
            _ => self.respond("404 Not Found", b"Not Found\n", false, &after),
        }
        after
    }
}

/// Parses as many complete requests as `input` holds; returns the bytes
/// they used, what to do after, and what a request still arriving waits
/// for.
fn serve(http: &mut Http, input: &[u8]) -> (usize, After, Waiting) {
    let mut used = 0;
    loop {
        let buf = &input[used..];
        if buf.is_empty() {
            return (used, After::KeepAlive, Waiting::Nothing);
        }
        // Header slots left uninitialised: httparse fills what it uses, and
        // zeroing 64 slots (2 KiB) per request is work for nothing.
        let mut headers = [std::mem::MaybeUninit::uninit(); MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        let head = match req.parse_with_uninit_headers(buf, &mut headers) {
            Ok(httparse::Status::Complete(n)) if n <= MAX_HEAD => n,
            Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => {
                // An incomplete head: wait for more, under the deadline.
                return (used, After::KeepAlive, Waiting::Head);
            }
            Ok(_) | Err(httparse::Error::TooManyHeaders) => {
                return http.refuse(
                    "431 Request Header Fields Too Large",
                    b"headers too large\n",
                    input.len(),
                );
            }
            Err(_) => return http.refuse("400 Bad Request", b"malformed request\n", input.len()),
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
                return http.refuse(
                    "400 Bad Request",
                    b"Transfer-Encoding with Content-Length\n",
                    input.len(),
                );
            }
            return http.refuse(
                "501 Not Implemented",
                b"Transfer-Encoding is not supported\n",
                input.len(),
            );
        }
        let Ok(length) = content_length(&req) else {
            return http.refuse("400 Bad Request", b"bad Content-Length\n", input.len());
        };
        if length > http.max_body {
            return http.refuse("413 Content Too Large", b"body too large\n", input.len());
        }
        if buf.len() < head + length {
            return (used, After::KeepAlive, Waiting::Body);
        }
        let after = http.answer(&req, &buf[head..head + length]);
        used += head + length;
        if after == After::Close {
            return (used, After::Close, Waiting::Nothing);
        }
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

impl Handler for Http {
    type Message = ();

    fn on_open(&mut self, cx: &mut Context<'_>, conn: ConnId) {
        if self.slots.len() <= conn.index() {
            self.slots.resize_with(conn.index() + 1, || None);
        }
        self.slots[conn.index()] = Some(Slot {
            id: conn,
            timer: None,
            waiting: Waiting::Nothing,
        });
        // The first request's head deadline runs from the connect: a
        // client that connects and sends nothing is cut like a slow one,
        // whatever the idle timeout.
        self.track(cx, conn, Waiting::Head, true);
    }

    fn on_data(&mut self, cx: &mut Context<'_>, conn: ConnId, input: &[u8]) -> usize {
        self.out.clear();
        let (used, after, waiting) = serve(self, input);
        let completed = !self.out.is_empty();
        if completed {
            let _ = cx.write(conn, &self.out);
        }
        self.track(cx, conn, waiting, completed);
        if after == After::Close {
            cx.close(conn);
        }
        used
    }

    fn on_timer(&mut self, cx: &mut Context<'_>, token: u64) {
        if token == DATE_TICK {
            self.refresh_date();
            cx.set_timer(Duration::from_secs(1), DATE_TICK);
            return;
        }
        // A request deadline: its head is still incomplete, or its body
        // stalled.
        let conn = ConnId::from_u64(token);
        if self.slot(conn).and_then(|s| s.timer.take()).is_some() {
            self.out.clear();
            self.respond(
                "408 Request Timeout",
                b"request timeout\n",
                false,
                &After::Close,
            );
            let _ = cx.write(conn, &self.out);
            cx.close(conn);
        }
    }

    fn on_message(&mut self, cx: &mut Context<'_>, _: ()) {
        // Posted once at start: begin the Date refresh.
        cx.set_timer(Duration::from_secs(1), DATE_TICK);
    }

    fn on_close(&mut self, cx: &mut Context<'_>, conn: ConnId, _reason: evloop::CloseReason) {
        self.disarm(cx, conn);
        if let Some(slot) = self.slots.get_mut(conn.index()) {
            *slot = None;
        }
    }
}

fn main() -> std::io::Result<std::process::ExitCode> {
    let cli = Cli::parse();
    common::init();
    let mut config = cli.server.config();
    // A partial request is at most a head and a body.
    config.max_input = MAX_HEAD + cli.max_body + 1;
    let mut http = Http {
        header_timeout: Duration::from_secs(cli.header_timeout),
        body_timeout: Duration::from_secs(cli.body_timeout),
        max_body: cli.max_body,
        date: Vec::new(),
        hello: Vec::new(),
        out: Vec::new(),
        slots: Vec::new(),
    };
    http.refresh_date();
    let mut reactor = Reactor::new(http, config)?;
    reactor.listen(cli.server.addr)?;
    reactor.handle_signals()?;
    let _ = reactor.handle().post(());
    reactor.run()?;
    Ok(common::exit_code(&reactor.stats()))
}
