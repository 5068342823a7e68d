//! Example 5 of 11: an HTTP/1.1 server on the reactor, parsing with httparse.
//!
//! ```sh
//! cargo run --release --example http -- --addr 127.0.0.1:8080
//! curl -i http://127.0.0.1:8080/                 # Hello, World!
//! curl -i -d 'some body' http://127.0.0.1:8080/echo
//! seq 100000 | curl -T - -X POST http://127.0.0.1:8080/echo   # chunked upload
//! curl http://127.0.0.1:8080/stream?n=100000 | pv > /dev/null  # streamed
//! ab -k -n 100000 -c 50 http://127.0.0.1:8080/   # HTTP/1.0 keep-alive
//! ```
//!
//! The protocol, with no sockets in it, is `request.rs` (routes, limits,
//! answers) and `chunked.rs` (chunked bodies); this file is the part that
//! meets the reactor: deadlines on the timer wheel, and a streamed
//! response paced by the client.
//!
//! What it teaches: **pipelining** (every complete request in the input
//! is answered, and all the answers go out in one write),
//! **framing a body two ways** (Content-Length, and chunked for a body of
//! unknown length: both strict, because a server and a proxy that disagree
//! on where a request ends can be made to smuggle one), **limits answered
//! in the protocol** (431 for oversized headers, 413 for an oversized body
//! before it is read, also after `Expect: 100-continue`; 400 for garbage;
//! 501 for a transfer coding other than chunked; 408 for a client too slow
//! to send a request's headers, or whose body stops coming or trickles in
//! below a minimum rate: the slowloris defences), **backpressure on a real
//! protocol** (`GET /stream?n=N` writes chunks only while the client's
//! output is under the high-water mark, and the rest from `on_drain`), and
//! **work done once a second instead of once a request** (the Date header,
//! and the whole `GET /` response built around it).
//!
//! Read next: examples/kv/main.rs (example 6), a second real protocol,
//! parsed in two phases, with state kept per connection and expiry on the
//! timer wheel.

mod chunked;
#[path = "../common/mod.rs"]
mod common;
mod request;

use std::time::{Duration, Instant, SystemTime};

use clap::Parser;
use evloop::timer::TimerId;
use evloop::{ConnId, Context, Handler};
use request::{After, Progress, Requests, Stream, Waiting, STREAM_END};

#[derive(Parser, Debug)]
#[command(about = "HTTP/1.1 server on the evloop reactor")]
struct Cli {
    #[command(flatten)]
    server: common::ServerArgs,
    /// Seconds a client may take to send a request's headers (each
    /// request's own: pipelined requests each get the whole time).
    #[arg(long, default_value_t = 10)]
    header_timeout: u64,
    /// Seconds a request body may go without a byte arriving (a stalled
    /// upload is cut), and the grace before `--body-min-rate` applies.
    #[arg(long, default_value_t = 30)]
    body_timeout: u64,
    /// Bytes a second a request body must average once its grace
    /// (`--body-timeout`) is spent; 0 turns the check off. A slow but
    /// steady upload above it is never cut; one that trickles a byte just
    /// inside every stall timeout is (Apache's mod_reqtimeout
    /// `MinRate=500` is the same defence).
    #[arg(long, default_value_t = 500)]
    body_min_rate: u64,
    /// Largest request body accepted, in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    max_body: usize,
}

/// The timer token of the once-a-second Date refresh; every other token
/// is a connection's request deadline.
const DATE_TICK: u64 = u64::MAX;

/// Per connection: the request deadline, while a request is arriving.
struct Slot {
    id: ConnId,
    /// The head deadline (set once per request: the whole head must come
    /// within `header_timeout`), or the body deadline (see `Http::track`).
    timer: Option<TimerId>,
    waiting: Waiting,
    /// When the body still arriving began.
    body_started: Instant,
    /// How far the request at the front of the input has been looked at.
    progress: Progress,
    /// A `/stream` being sent: later requests wait until it is done.
    stream: Option<Pump>,
}

/// A `/stream` response on its way: chunks are written while the
/// connection's output is under the high-water mark, and again from
/// `on_drain` once the client has read enough. That is backpressure on a
/// real protocol: a client that reads slowly holds the stream, not the
/// server's memory.
struct Pump {
    stream: Stream,
    /// The next chunk to write.
    next: u64,
}

/// Chunks built per write while pumping: 16 KiB per `Context::write`.
const CHUNKS_PER_WRITE: u64 = 16;

struct Http {
    header_timeout: Duration,
    body_timeout: Duration,
    /// Bytes a second a body must average after `body_timeout`; 0: off.
    body_min_rate: u64,
    /// The protocol: parsing, limits and answers (`request.rs`).
    requests: Requests,
    /// The reactor's output high-water mark: a stream writes up to it.
    high_water: usize,
    /// Chunks of a stream, built before they are written.
    chunks: Vec<u8>,
    slots: Vec<Option<Slot>>,
}

impl Http {
    fn refresh_date(&mut self) {
        self.requests
            .set_date(&httpdate::fmt_http_date(SystemTime::now()));
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
    ///
    /// A body has two deadlines, and the earlier one is armed: no byte for
    /// `body_timeout` (a stall), and, once `body_timeout` has passed since
    /// the body began, an average below `body_min_rate` bytes a second
    /// (a trickle: one byte every 29 s never stalls, and would hold the
    /// connection for a year for a 1 MiB body).
    fn track(&mut self, cx: &mut Context<'_>, conn: ConnId, waiting: Waiting, completed: bool) {
        let (header_timeout, body_timeout) = (self.header_timeout, self.body_timeout);
        let min_rate = self.body_min_rate;
        let now = cx.now();
        let Some(slot) = self.slot(conn) else {
            return;
        };
        let timeout = match waiting {
            // The same head, still arriving: its deadline stands.
            Waiting::Head if slot.waiting == Waiting::Head && !completed => return,
            Waiting::Head => Some(header_timeout),
            Waiting::Body(have) => {
                let same_body = matches!(slot.waiting, Waiting::Body(_)) && !completed;
                if !same_body {
                    slot.body_started = now;
                }
                // Body bytes came: the stall deadline moves on.
                let mut timeout = body_timeout;
                if min_rate > 0 {
                    // Saturating throughout: a huge --body-timeout means
                    // "no rate deadline", never an overflow.
                    let earned = Duration::try_from_secs_f64(have as f64 / min_rate as f64)
                        .unwrap_or(Duration::MAX);
                    if let Some(by_rate) = slot
                        .body_started
                        .checked_add(body_timeout.saturating_add(earned))
                    {
                        timeout = timeout.min(by_rate.saturating_duration_since(now));
                    }
                }
                Some(timeout)
            }
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

    /// Writes the connection's stream while its output is under the
    /// high-water mark; ends it (and closes, if it must) once all is sent.
    /// Returns whether the stream is still going.
    fn pump(&mut self, cx: &mut Context<'_>, conn: ConnId) -> bool {
        let high_water = self.high_water;
        let Some(slot) = self.slots.get_mut(conn.index()).and_then(Option::as_mut) else {
            return false;
        };
        let Some(pump) = slot.stream.as_mut().filter(|_| slot.id == conn) else {
            return false;
        };
        // Up to and past the mark, never exactly on it: the reactor calls
        // `on_drain` only for output that went above it.
        while pump.next < pump.stream.chunks && cx.output_len(conn).is_some_and(|n| n <= high_water)
        {
            self.chunks.clear();
            let batch_end = (pump.next + CHUNKS_PER_WRITE).min(pump.stream.chunks);
            for i in pump.next..batch_end {
                request::stream_chunk(&mut self.chunks, i, pump.stream.chunked);
            }
            pump.next = batch_end;
            if cx.write(conn, &self.chunks).is_err() {
                slot.stream = None;
                return false;
            }
        }
        if pump.next < pump.stream.chunks {
            return true;
        }
        if pump.stream.chunked {
            let _ = cx.write(conn, STREAM_END);
        }
        if pump.stream.after == After::Close {
            cx.close(conn);
        }
        slot.stream = None;
        false
    }

    fn disarm(&mut self, cx: &mut Context<'_>, conn: ConnId) {
        if let Some(timer) = self.slot(conn).and_then(|s| s.timer.take()) {
            cx.cancel_timer(timer);
        }
    }
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
            body_started: cx.now(),
            progress: Progress::default(),
            stream: None,
        });
        // The first request's head deadline runs from the connect: a
        // client that connects and sends nothing is cut like a slow one,
        // whatever the idle timeout.
        self.track(cx, conn, Waiting::Head, true);
    }

    fn on_data(&mut self, cx: &mut Context<'_>, conn: ConnId, input: &[u8]) -> usize {
        let Some(slot) = self.slot(conn) else {
            return 0;
        };
        if slot.stream.is_some() {
            // Later requests wait for the stream; they are offered again
            // after `on_drain` has sent the rest of it.
            return 0;
        }
        let mut progress = slot.progress;
        let mut used = 0;
        loop {
            self.requests.out.clear();
            let served = self.requests.serve(&input[used..], &mut progress);
            used += served.used;
            if !self.requests.out.is_empty() {
                let _ = cx.write(conn, &self.requests.out);
            }
            if let Some(slot) = self.slot(conn) {
                slot.progress = progress;
            }
            if let Some(stream) = served.stream {
                self.track(cx, conn, Waiting::Nothing, true);
                if let Some(slot) = self.slot(conn) {
                    slot.stream = Some(Pump { stream, next: 0 });
                }
                if self.pump(cx, conn) || stream.after == After::Close {
                    return used;
                }
                continue; // sent whole at once: serve what follows
            }
            self.track(cx, conn, served.waiting, served.answered > 0);
            if served.after == After::Close {
                cx.close(conn);
            }
            return used;
        }
    }

    fn on_drain(&mut self, cx: &mut Context<'_>, conn: ConnId) {
        self.pump(cx, conn);
    }

    /// A connection with a stream on its way is not quiet: a graceful
    /// shutdown lets the stream finish (up to the shutdown deadline).
    fn is_busy(&self, conn: ConnId) -> bool {
        self.slots
            .get(conn.index())
            .and_then(Option::as_ref)
            .is_some_and(|s| s.id == conn && s.stream.is_some())
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
            self.requests.out.clear();
            self.requests.respond(
                "408 Request Timeout",
                b"request timeout\n",
                false,
                After::Close,
                false,
                &[],
            );
            let _ = cx.write(conn, &self.requests.out);
            cx.close(conn);
        }
    }

    fn on_start(&mut self, cx: &mut Context<'_>) {
        // The Date header is refreshed once a second.
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
    let max_body = cli.max_body;
    let requests = move || Requests::new(max_body, &httpdate::fmt_http_date(SystemTime::now()));
    // A partial request is at most a head, a body with its framing, and
    // trailers.
    config.max_input = requests().max_request().saturating_add(1);
    let high_water = config.high_water;
    let server = cli.server.clone();
    // One handler per shard (`--threads`): each has its own slots.
    server.serve(config, &["http/1.1"], move |_shard| Http {
        header_timeout: Duration::from_secs(cli.header_timeout),
        body_timeout: Duration::from_secs(cli.body_timeout),
        body_min_rate: cli.body_min_rate,
        requests: requests(),
        high_water,
        chunks: Vec::new(),
        slots: Vec::new(),
    })
}
