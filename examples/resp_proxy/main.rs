//! Example 11: a sharding Redis proxy, twemproxy's job on one reactor.
//!
//! ```sh
//! redis-server --port 7001 --save '' & redis-server --port 7002 --save '' &
//! cargo run --release --example resp_proxy -- --addr 127.0.0.1:7000 \
//!     --backend 127.0.0.1:7001 --backend 127.0.0.1:7002
//! redis-cli -p 7000 set greeting hello      # lands on the backend that owns it
//! redis-cli -p 7000 mget greeting other     # split by backend, put back together
//! ```
//!
//! Thousands of clients share a few connections to each backend: every
//! request goes out on one of the backend's `--pool-size` connections,
//! pipelined behind the others' (**multiplexing**), and each reply is
//! matched to its request by order (a backend answers in the order it
//! was asked) and routed back. Keys are spread over the backends by
//! consistent hashing (`ring.rs`: twemproxy's ketama and hash, so a
//! twemproxy pool's keys stay where they are).
//!
//! What it teaches:
//! - **Two kinds of order.** A backend connection answers in the order
//!   requests were written to it: its queue of requests in flight says
//!   whose each reply is. A client must be answered in the order *it*
//!   asked, though its requests went to different backends that answer
//!   at different speeds: each client keeps its requests in order, and a
//!   reply that comes early waits in its place. A reply for the request
//!   at the front goes straight from the backend's input to the client's
//!   output, copied once.
//! - **Splitting.** `MGET`, `DEL`, `UNLINK`, `EXISTS`, `TOUCH` and `MSET`
//!   over keys on several backends become one command per backend, and
//!   their answers are put back together in the client's order. Other
//!   commands with several keys go whole when every key lives on one
//!   backend (a `{hash tag}` puts them there) and are refused otherwise.
//! - **Failure that stays small.** A backend that closes, or does not
//!   answer within `--timeout`, fails only the requests sent to it: each
//!   gets `-ERR`, in its client's order, and the next request reconnects.
//!   After `--failure-limit` failures in a row it is ejected from the
//!   ring for `--retry-timeout` (twemproxy's `auto_eject_hosts`): its
//!   keys go to the others meanwhile.
//! - **Backpressure, every way.** A client with [`MAX_PENDING`] requests
//!   unanswered, more than [`CLIENT_HELD_PAUSE`] of early replies held
//!   for its order, or answers it does not read, is not read; a backend
//!   connection with [`MAX_IN_FLIGHT`] requests, or [`UPSTREAM_QUEUED_MAX`]
//!   bytes not yet written, takes no more until it catches up, and the
//!   clients that wait for it are not read meanwhile.
//! - **Fewer wake-ups.** With many clients a request at a time, the
//!   proxy would wake for nearly every request and pass each on in a
//!   write of its own. It naps [`COALESCE`] first instead, when the
//!   reactor measures that this moves more (`evloop::Config::coalesce`):
//!   a write to a backend carries 3.9 requests instead of 2.6.
//! - **A reply too large fails alone.** A reply past `reply::MAX_REPLY`
//!   (16 MiB) cannot be held to be routed whole: its request gets `-ERR`,
//!   and the reply is walked past as it streams in (`reply::Skip`), so
//!   the connection every client shares goes on.
//!
//! A client that sends a pipeline and hangs up (`nc -N`) is answered all
//! of it, then closed, as Redis does. Clients idle for `--idle-timeout`
//! (60 s by default) are closed; Redis's own default is never (`0`).
//!
//! The proxy answers `PING`, `ECHO`, `QUIT`, `SELECT 0` and `AUTH` (with
//! `--requirepass`) itself, and refuses with a clear `-ERR` what cannot
//! be proxied: transactions, blocking commands, pub/sub, other databases,
//! and commands with no key (`KEYS`, `FLUSHALL`, `INFO`...).
//!
//! The files: `main.rs` the handler, `command.rs` what each command is,
//! `ring.rs` which backend owns a key, `reply.rs` where a reply ends; the
//! requests are checked by the kv example's `resp.rs`.
//!
//! Read next: `src/reactor/upstream.rs`, the pool of exclusive
//! connections, and why a multiplexed one is a different thing (the
//! guide's chapter 11).

mod command;
#[path = "../common/mod.rs"]
mod common;
mod reply;
#[allow(dead_code)] // the kv server's parser; the proxy uses only part of it
#[path = "../kv/resp.rs"]
mod resp;
mod ring;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Parser;
use evloop::{CloseReason, ConnId, Connect, Context, Handler};

use command::{Local, Route, Split};
use resp::reply as write;
use ring::{Distribution, KeyHash, Member, Ring};

/// Requests one client may have unanswered (pipelined) before it is not
/// read until some are answered: bounds what one client holds in the
/// proxy, as its replies wait in order. redis-benchmark's `-P 16` and any
/// sane pipeline fit far below it.
const MAX_PENDING: usize = 1024;
/// Requests in flight on one backend connection: past it, clients with
/// a request for that connection wait. A backend that stopped answering
/// cannot make the proxy queue without bound; 10,000 clients with 16
/// pipelined requests each would pass it, and wait their turn.
const MAX_IN_FLIGHT: usize = 16 * 1024;
/// Bytes of requests queued for one backend connection and not yet
/// written (a backend that does not read): past it, the same. The
/// reactor's soft output limit (1 MiB), so a slow backend's connection is
/// never closed as a slow consumer for what clients sent.
const UPSTREAM_QUEUED_MAX: usize = 1024 * 1024;
/// Replies waiting for a client that does not read them: past this, its
/// requests are not read until they are written.
const CLIENT_OUTPUT_PAUSE: usize = 64 * 1024;
/// Replies that came early, held until the client's earlier requests
/// are answered (its order): past this, its requests are not read.
const CLIENT_HELD_PAUSE: usize = 1024 * 1024;
/// ... and past this the client is closed: a slow first request with
/// many large answers queued behind it would otherwise hold up to
/// MAX_PENDING replies of reply::MAX_REPLY each.
const CLIENT_HELD_MAX: usize = 64 * 1024 * 1024;
/// A backend connection's output limits, soft and hard alike: what
/// [`UPSTREAM_QUEUED_MAX`] lets queue, and one request of the largest
/// size on top, so a large request is never what makes the reactor close
/// a connection every client shares as a slow consumer.
const UPSTREAM_OUTPUT_LIMIT: usize = UPSTREAM_QUEUED_MAX + resp::MAX_COMMAND + 64 * 1024;
/// The longest `--timeout` and `--retry-timeout` (an hour), so a huge
/// value cannot overflow the clock.
const MAX_TIMEOUT_MS: u64 = 3_600_000;
/// After a connect to a backend fails, requests for it fail at once for
/// this long instead of each trying a connect of its own.
const RECONNECT_WAIT: Duration = Duration::from_millis(100);
/// Wake-up coalescing unless `--coalesce-us` says otherwise. With 50
/// clients a request at a time (`compare.py resp-proxy`), a nap of 20 us
/// (about 70 with the kernel's timer slack) makes each write to a backend
/// carry 3.9 requests instead of 2.6 and the proxy sleep 0.09 times a
/// request instead of 0.35; the backends, which share the other core with
/// the load, spend 5.1 us a request instead of 9.0, and the throughput
/// rises by 30% (docs/BENCHMARKS.md). A lone client hardly ever waits for
/// a nap, and 1 to 8 clients stay within about 7% of no naps.
const COALESCE: Duration = Duration::from_micros(20);
/// How often in-flight requests are checked against `--timeout`, and
/// ejected backends against `--retry-timeout`.
const TICK: Duration = Duration::from_millis(50);
/// The timer token of that check.
const TICK_TOKEN: u64 = 1;
/// The status page's listener: the second each reactor opens, after
/// `--addr` (see `common::ServerArgs::serve_all`).
const STATS_LISTENER: usize = 1;

#[derive(Parser, Debug)]
#[command(about = "Sharding Redis proxy on the evloop reactor (twemproxy's job)")]
struct Cli {
    #[command(flatten)]
    server: common::ServerArgs,
    /// A backend, HOST:PORT or HOST:PORT:WEIGHT (repeatable; the weight,
    /// 1 by default, is its share of the keys). HOST is a name (looked up
    /// once, at start-up) or an IP address; NAME, if given, places the
    /// backend on the ring instead of HOST:PORT, as in twemproxy.
    #[arg(long = "backend", value_name = "HOST:PORT[:WEIGHT] [NAME]", required = true,
          value_parser = parse_backend)]
    backends: Vec<BackendArg>,
    /// Connections to each backend, shared by every client. One gets the
    /// most from pipelining (all that a turn sends to a backend leaves in
    /// one write, and a single-threaded Redis answers it in one read and
    /// one write), as twemproxy's `server_connections: 1`; more help only
    /// a backend with I/O threads, or replies that should not queue behind
    /// a large one.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pool_size: u16,
    /// How keys are spread over the backends.
    #[arg(long, value_enum, default_value = "ketama")]
    hash: Distribution,
    /// How a key is hashed: twemproxy's default `fnv1a_64` keeps a
    /// twemproxy pool's keys where they are, but spreads keys that differ
    /// only at their end badly; `fnv1a_32` and `md5` spread them evenly
    /// (see ring.rs).
    #[arg(long, value_enum, default_value = "fnv1a_64")]
    hash_function: KeyHash,
    /// A request not answered in this many milliseconds fails, with every
    /// other request on its backend connection, which is closed (0: none).
    #[arg(long, value_name = "MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(0..=MAX_TIMEOUT_MS))]
    timeout: u64,
    /// Failures in a row (a connection closed, refused or timed out)
    /// after which a backend leaves the ring for --retry-timeout (0:
    /// never ejected).
    #[arg(long, default_value_t = 3)]
    failure_limit: u32,
    /// How long an ejected backend stays out of the ring, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT_MS))]
    retry_timeout: u64,
    /// The hash tag's two characters: only what is between them in a key
    /// is hashed (`{}`: `{user1}.a` and `{user1}.b` on one backend); ""
    /// turns tags off, as twemproxy has them unless configured.
    #[arg(long, value_name = "TWO_CHARS", default_value = "{}", value_parser = parse_tag)]
    hash_tag: Tag,
    /// Clients must AUTH with this password first (to the proxy itself).
    #[arg(long, value_name = "PASSWORD")]
    requirepass: Option<String>,
    /// Serve a plain-text status page here (any HTTP client can read it).
    #[arg(long, value_name = "HOST:PORT")]
    stats_addr: Option<SocketAddr>,
}

/// A `--backend`: where, its share, and the name the ring knows it by.
#[derive(Clone, Debug)]
struct BackendArg {
    addr: SocketAddr,
    weight: u32,
    /// The ring's name for it: the NAME given, else `HOST:PORT` as
    /// written (twemproxy's rule: a host name, not the address it
    /// resolves to, so the keys stay put when the address changes).
    name: String,
}

/// `HOST:PORT[:WEIGHT] [NAME]`, as a twemproxy `servers:` line; HOST is
/// a name (looked up at start-up: `common::resolve`) or an IP address.
fn parse_backend(s: &str) -> Result<BackendArg, String> {
    let form = || format!("{s}: not HOST:PORT[:WEIGHT] [NAME]");
    let mut words = s.split_whitespace();
    let spec = words.next().ok_or("an empty --backend")?;
    let name = words.next().map(str::to_string);
    if words.next().is_some() {
        return Err(form());
    }
    // A weight follows the last colon when what comes before it is a
    // HOST:PORT of its own.
    let (where_to, weight) = match spec.rsplit_once(':') {
        Some((left, weight)) if common::host_port(left).is_some() => (left, Some(weight)),
        _ => (spec, None),
    };
    let (host, port) = common::host_port(where_to).ok_or_else(form)?;
    let weight = match weight.map(str::parse) {
        None => 1,
        Some(Ok(weight)) if (1..=1000).contains(&weight) => weight,
        Some(_) => return Err(format!("{s}: the weight must be 1 to 1000")),
    };
    Ok(BackendArg {
        addr: common::resolve(where_to)?,
        weight,
        name: name.unwrap_or_else(|| ring::member_name(host, port)),
    })
}

/// `--hash-tag`: two characters, or none.
type Tag = Option<(u8, u8)>;

fn parse_tag(s: &str) -> Result<Tag, String> {
    match s.as_bytes() {
        [] => Ok(None),
        &[open, close] => Ok(Some((open, close))),
        _ => Err(format!(
            "{s}: a hash tag is two characters, or \"\" for none"
        )),
    }
}

/// One backend and what it has been given.
struct Backend {
    addr: SocketAddr,
    /// Its shared connections (`--pool-size` places, empty until needed).
    conns: Vec<Option<ConnId>>,
    /// The next place to send on, round robin.
    next: usize,
    /// Failures in a row; a reply resets it.
    failures: u32,
    /// Out of the ring until then.
    ejected_until: Option<Instant>,
    /// A connect failed: requests fail at once until then.
    down_until: Option<Instant>,
    /// Clients not read because this backend's connections were full.
    waiting: Vec<ConnId>,
    requests: u64,
    errors: u64,
    timeouts: u64,
    ejections: u64,
}

/// A request in flight on a backend connection: whose, and which part.
struct InFlight {
    client: ConnId,
    /// The client's sequence number for it.
    seq: u64,
    /// Which part of a split command (0 for a whole one).
    part: u16,
    sent: Instant,
}

/// A shared connection to a backend.
struct Upstream {
    id: ConnId,
    backend: usize,
    /// Its requests, in the order they were written: the order of the
    /// replies.
    in_flight: VecDeque<InFlight>,
    progress: reply::Progress,
    /// Up (it connected at least once).
    opened: bool,
    /// Closed by the timeout check: its requests fail as timed out.
    timed_out: bool,
    /// Walking past a reply too large to hold (see reply.rs).
    skip: Option<reply::Skip>,
}

/// A request of a client's, waiting for its turn to be answered.
enum Pending {
    /// Sent whole to a backend.
    Waiting,
    /// Answered, waiting behind earlier ones.
    Ready(Vec<u8>),
    /// Split: its parts' replies.
    Gather(Box<Gather>),
}

/// A split command's parts, coming back.
struct Gather {
    how: Split,
    parts: Vec<Option<Vec<u8>>>,
    left: usize,
    /// Bytes of the parts' replies held so far.
    stored: usize,
    /// `Values`: for each key in the client's order, its part and place.
    order: Vec<(u16, u32)>,
}

struct Client {
    id: ConnId,
    progress: resp::Progress,
    authenticated: bool,
    /// The sequence number of `pending[0]`.
    base: u64,
    pending: VecDeque<Pending>,
    /// QUIT, a protocol error, or the client's FIN with nothing left to
    /// run: close once everything is answered.
    quit: bool,
    /// Not read (see the module docs); resuming rechecks every reason.
    paused: bool,
    /// Waiting for a backend connection with room (on that backend's
    /// `waiting` list); only its `wake` resumes it.
    blocked: bool,
    /// Bytes of replies held in `pending`, waiting for their turn.
    held: usize,
    /// The client sent FIN: what it sent before that and we had not taken
    /// yet (it was paused) is run from here as room allows, then it closes.
    eof: bool,
    leftover: Vec<u8>,
}

/// One connection's role, by slot index.
enum Slot {
    Client(Box<Client>),
    Upstream(Box<Upstream>),
}

struct Proxy {
    backends: Vec<Backend>,
    members: Vec<Member>,
    distribution: Distribution,
    key_hash: KeyHash,
    tag: Tag,
    ring: Ring,
    slots: Vec<Option<Slot>>,
    connect: Connect,
    timeout: Option<Duration>,
    failure_limit: u32,
    retry_timeout: Duration,
    password: Option<Vec<u8>>,
    /// Whether `--stats-addr` is served: the second listener each reactor
    /// opens ([`STATS_LISTENER`]).
    stats: bool,
    clients: usize,
}

/// What a request asked of the client's reading.
enum Next {
    /// Go on to the next request.
    Go,
    /// This request waits (a backend is full): stop here, unconsumed.
    Wait,
    /// Stop reading this client (QUIT, or a protocol error).
    Stop,
}

impl Proxy {
    fn client(&mut self, id: ConnId) -> Option<&mut Client> {
        match self.slots.get_mut(id.index())? {
            Some(Slot::Client(c)) if c.id == id => Some(c),
            _ => None,
        }
    }

    fn upstream(&mut self, id: ConnId) -> Option<&mut Upstream> {
        match self.slots.get_mut(id.index())? {
            Some(Slot::Upstream(u)) if u.id == id => Some(u),
            _ => None,
        }
    }

    fn put(&mut self, index: usize, slot: Slot) {
        if self.slots.len() <= index {
            self.slots.resize_with(index + 1, || None);
        }
        self.slots[index] = Some(slot);
    }

    fn rebuild_ring(&mut self, now: Instant) {
        let out: Vec<bool> = self
            .backends
            .iter()
            .map(|b| b.ejected_until.is_some_and(|t| now < t))
            .collect();
        self.ring =
            Ring::new(self.distribution, self.key_hash, &self.members, &out).with_tag(self.tag);
    }

    // ---- clients ------------------------------------------------------

    /// Takes whole requests from a client's input, in order, until one
    /// must wait or the client must not be read.
    fn requests(&mut self, cx: &mut Context<'_>, conn: ConnId, input: &[u8]) -> usize {
        let mut used = 0;
        let mut args: Vec<&[u8]> = Vec::new();
        loop {
            let Some(client) = self.client(conn) else {
                return input.len();
            };
            if client.quit {
                used = input.len(); // nothing after QUIT is run
                break;
            }
            if client.pending.len() >= MAX_PENDING
                || client.held > CLIENT_HELD_PAUSE
                || cx.output_len(conn).unwrap_or(0) > CLIENT_OUTPUT_PAUSE
            {
                self.pause(cx, conn);
                break;
            }
            let mut progress = client.progress;
            let found = resp::check(&input[used..], &mut progress);
            client.progress = progress;
            match found {
                resp::Check::Frame(n) => {
                    let frame = &input[used..used + n];
                    resp::decode(frame, &mut args);
                    match self.request(cx, conn, frame, &args) {
                        Next::Go => used += n,
                        Next::Wait => {
                            // Its check is redone when it is offered again.
                            if let Some(c) = self.client(conn) {
                                c.progress = resp::Progress::default();
                            }
                            self.pause(cx, conn);
                            break;
                        }
                        Next::Stop => {
                            used = input.len();
                            break;
                        }
                    }
                }
                resp::Check::Incomplete => break,
                resp::Check::Invalid(why) => {
                    let mut out = Vec::new();
                    error_line(&mut out, &format!("ERR {why}"));
                    self.answer(conn, out);
                    if let Some(c) = self.client(conn) {
                        c.quit = true;
                    }
                    used = input.len();
                    break;
                }
            }
        }
        // No resume from here: this is the client's own read, and what it
        // left is the reactor's to offer again only once it is resumed
        // from outside (a reply, a drained output, a woken backend).
        self.flush(cx, conn);
        used
    }

    /// One request: answered here, sent, split, or refused.
    fn request(
        &mut self,
        cx: &mut Context<'_>,
        conn: ConnId,
        frame: &[u8],
        args: &[&[u8]],
    ) -> Next {
        let Some(name) = args.first() else {
            return Next::Go; // an empty inline line, as Redis ignores it
        };
        // An inline command goes on as the arguments we routed it by: the
        // backend would split the line by its own rules (quotes), and a
        // line it refuses would close the connection every client shares.
        let encoded;
        let frame = if frame.first() == Some(&b'*') {
            frame
        } else {
            let mut out = Vec::with_capacity(frame.len() + 16 * args.len());
            command::encode(&mut out, args);
            encoded = out;
            &encoded[..]
        };
        let route = command::route(name);
        let authenticated = self.client(conn).is_some_and(|c| c.authenticated);
        if self.password.is_some()
            && !authenticated
            && route != Some(Route::Local(Local::Auth))
            && route != Some(Route::Local(Local::Quit))
        {
            return self.error(conn, "NOAUTH Authentication required.");
        }
        let Some(route) = route else {
            let name = String::from_utf8_lossy(&name[..name.len().min(64)]).into_owned();
            return self.error(
                conn,
                &format!(
                    "ERR unknown command '{name}', or one the proxy cannot route (it has no key)"
                ),
            );
        };
        match route {
            Route::Local(local) => self.local(conn, local, args),
            Route::Refused(why) => self.error(conn, &format!("ERR {why}")),
            Route::Keys { .. } | Route::Script => {
                let keys = match command::keys(route, args) {
                    Ok(keys) => keys,
                    Err(command::NoKeys::Arity) => return self.arity(conn, name),
                    Err(command::NoKeys::Error(text)) => return self.error(conn, text),
                };
                let mut owners = keys.iter().map(|k| self.ring.owner(k));
                let owner = owners.next().flatten();
                if owners.any(|o| o != owner) {
                    return self.error(
                        conn,
                        "CROSSSLOT Keys in request don't hash to the same backend (put them under one {hash tag})",
                    );
                }
                match owner {
                    Some(b) => self.send_whole(cx, conn, b, frame),
                    None => self.error(conn, "ERR no backend is available"),
                }
            }
            Route::Split(how) => self.split(cx, conn, how, frame, args),
        }
    }

    fn local(&mut self, conn: ConnId, local: Local, args: &[&[u8]]) -> Next {
        let mut out = Vec::new();
        match (local, args.len()) {
            (Local::Ping, 1) => write::simple(&mut out, "PONG"),
            (Local::Ping, 2) | (Local::Echo, 2) => write::bulk(&mut out, args[1]),
            (Local::Quit, _) => {
                write::simple(&mut out, "OK");
                self.answer(conn, out);
                if let Some(c) = self.client(conn) {
                    c.quit = true;
                }
                return Next::Stop;
            }
            (Local::Auth, 2 | 3) => match &self.password {
                None => error_line(
                    &mut out,
                    "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
                ),
                Some(password) => {
                    let user_ok = args.len() == 2 || args[1] == b"default";
                    if user_ok && args[args.len() - 1] == password.as_slice() {
                        if let Some(c) = self.client(conn) {
                            c.authenticated = true;
                        }
                        write::simple(&mut out, "OK");
                    } else {
                        error_line(
                            &mut out,
                            "WRONGPASS invalid username-password pair or user is disabled.",
                        );
                    }
                }
            },
            (Local::Select, 2) if resp::redis_int(args[1]) == Some(0) => {
                write::simple(&mut out, "OK")
            }
            (Local::Select, 2) => error_line(
                &mut out,
                "ERR SELECT is not allowed through the proxy: every backend serves database 0",
            ),
            _ => return self.arity(conn, args[0]),
        }
        self.answer(conn, out);
        Next::Go
    }

    fn arity(&mut self, conn: ConnId, name: &[u8]) -> Next {
        let name = String::from_utf8_lossy(name).to_ascii_lowercase();
        self.error(
            conn,
            &format!("ERR wrong number of arguments for '{name}' command"),
        )
    }

    fn error(&mut self, conn: ConnId, text: &str) -> Next {
        let mut out = Vec::new();
        error_line(&mut out, text);
        self.answer(conn, out);
        Next::Go
    }

    /// Queues an answer made here, in the client's order.
    fn answer(&mut self, conn: ConnId, reply: Vec<u8>) {
        if let Some(c) = self.client(conn) {
            c.held += reply.len();
            c.pending.push_back(Pending::Ready(reply));
        }
    }

    /// Sends a request whole to backend `b`.
    fn send_whole(&mut self, cx: &mut Context<'_>, conn: ConnId, b: usize, frame: &[u8]) -> Next {
        let up = match self.connection(cx, b) {
            Ok(up) => up,
            Err(Unavailable::Full) => return self.wait_for(conn, b),
            Err(Unavailable::Down) => return self.down(conn, b),
        };
        let Some(seq) = self.client(conn).map(|c| c.base + c.pending.len() as u64) else {
            return Next::Stop;
        };
        self.send(cx, up, conn, seq, 0, frame);
        if let Some(c) = self.client(conn) {
            c.pending.push_back(Pending::Waiting);
        }
        Next::Go
    }

    /// MGET, DEL, EXISTS, TOUCH, UNLINK, MSET: one command per backend
    /// over its own keys, or the frame whole if they all live on one.
    fn split(
        &mut self,
        cx: &mut Context<'_>,
        conn: ConnId,
        how: Split,
        frame: &[u8],
        args: &[&[u8]],
    ) -> Next {
        let step = if how == Split::Pairs { 2 } else { 1 };
        if args.len() < 2 || (args.len() - 1) % step != 0 {
            return self.arity(conn, args[0]);
        }
        // Which backend each key goes to, and the backends in the order
        // they first appear.
        let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
        let mut order = Vec::with_capacity((args.len() - 1) / step);
        for at in (1..args.len()).step_by(step) {
            let Some(b) = self.ring.owner(args[at]) else {
                return self.error(conn, "ERR no backend is available");
            };
            let part = match groups.iter().position(|g| g.0 == b) {
                Some(p) => p,
                None => {
                    groups.push((b, Vec::new()));
                    groups.len() - 1
                }
            };
            order.push((part as u16, groups[part].1.len() as u32));
            groups[part].1.push(at);
        }
        if groups.len() == 1 {
            return self.send_whole(cx, conn, groups[0].0, frame);
        }
        if groups.len() > u16::MAX as usize {
            return self.error(conn, "ERR too many backends for one command");
        }
        // Every part's connection first: all go, or none does.
        let mut ups = Vec::with_capacity(groups.len());
        for &(b, _) in &groups {
            match self.connection(cx, b) {
                Ok(up) => ups.push(up),
                Err(Unavailable::Full) => return self.wait_for(conn, b),
                Err(Unavailable::Down) => return self.down(conn, b),
            }
        }
        let Some(seq) = self.client(conn).map(|c| c.base + c.pending.len() as u64) else {
            return Next::Stop;
        };
        let mut sub = Vec::new();
        let mut part_args: Vec<&[u8]> = Vec::new();
        for (part, ((_, ats), &up)) in groups.iter().zip(&ups).enumerate() {
            part_args.clear();
            part_args.push(args[0]);
            for &at in ats {
                part_args.extend_from_slice(&args[at..at + step]);
            }
            sub.clear();
            command::encode(&mut sub, &part_args);
            self.send(cx, up, conn, seq, part as u16, &sub);
        }
        let gather = Gather {
            how,
            parts: vec![None; groups.len()],
            left: groups.len(),
            stored: 0,
            order,
        };
        if let Some(c) = self.client(conn) {
            c.pending.push_back(Pending::Gather(Box::new(gather)));
        }
        Next::Go
    }

    /// Backend `b`'s connections are full: the client waits for them.
    fn wait_for(&mut self, conn: ConnId, b: usize) -> Next {
        if let Some(c) = self.client(conn) {
            if !std::mem::replace(&mut c.blocked, true) {
                self.backends[b].waiting.push(conn);
            }
        }
        Next::Wait
    }

    fn down(&mut self, conn: ConnId, b: usize) -> Next {
        self.backends[b].errors += 1;
        let text = format!("ERR backend {} is down", self.backends[b].addr);
        self.error(conn, &text)
    }

    /// Stops reading a client until it is resumed (see [`Proxy::resume`]).
    fn pause(&mut self, cx: &mut Context<'_>, conn: ConnId) {
        if let Some(c) = self.client(conn) {
            c.paused = true;
        }
        cx.pause_read(conn);
        // Its answers being written may be what it waits for.
        cx.notify_flushed(conn);
    }

    /// Reads a paused client again if nothing holds it back now: what it
    /// left is offered again (by the reactor, or from `leftover` after its
    /// FIN). Never from the client's own `on_data` (see `requests`).
    fn resume(&mut self, cx: &mut Context<'_>, conn: ConnId) {
        let output = cx.output_len(conn).unwrap_or(0);
        let Some(c) = self.client(conn) else {
            return;
        };
        if !c.paused
            || c.blocked
            || c.pending.len() >= MAX_PENDING / 2
            || c.held > CLIENT_HELD_PAUSE
        {
            return; // a reply or a backend's wake calls again
        }
        if output > CLIENT_OUTPUT_PAUSE {
            cx.notify_flushed(conn); // once it is written
            return;
        }
        c.paused = false;
        if c.eof {
            self.run_leftover(cx, conn);
            self.flush(cx, conn);
        } else {
            cx.resume_read(conn);
        }
    }

    /// Runs what a client sent before its FIN, as far as room allows;
    /// once all is taken (or only a request the FIN cut short is left),
    /// the client closes when answered.
    fn run_leftover(&mut self, cx: &mut Context<'_>, conn: ConnId) {
        let Some(c) = self.client(conn) else {
            return;
        };
        let rest = std::mem::take(&mut c.leftover);
        let used = if rest.is_empty() {
            0
        } else {
            self.requests(cx, conn, &rest)
        };
        if let Some(c) = self.client(conn) {
            if c.paused {
                c.leftover = rest[used..].to_vec();
            } else {
                c.quit = true;
            }
        }
    }

    /// Writes the client's answers that are next in its order; closes it
    /// if it is done. The caller resumes it if it may be.
    fn flush(&mut self, cx: &mut Context<'_>, conn: ConnId) {
        let Some(c) = self.client(conn) else {
            return;
        };
        while let Some(Pending::Ready(_)) = c.pending.front() {
            if let Some(Pending::Ready(reply)) = c.pending.pop_front() {
                c.held = c.held.saturating_sub(reply.len());
                let _ = cx.write(conn, &reply);
            }
            c.base += 1;
        }
        if c.quit && c.pending.is_empty() {
            cx.close(conn);
        }
    }

    /// A reply (or an error made for it) for request `seq` of `client`.
    fn deliver(&mut self, cx: &mut Context<'_>, client: ConnId, seq: u64, part: u16, reply: &[u8]) {
        let Some(c) = self.client(client) else {
            return; // it left; the answer goes nowhere
        };
        let Some(at) = seq.checked_sub(c.base).map(|i| i as usize) else {
            return;
        };
        let Some(pending) = c.pending.get_mut(at) else {
            return;
        };
        let mut ready = false;
        match pending {
            Pending::Waiting if at == 0 => {
                // Its turn: straight from the backend's input to the client.
                let _ = cx.write(client, reply);
                c.pending.pop_front();
                c.base += 1;
                ready = true;
            }
            Pending::Waiting => {
                c.held += reply.len();
                *pending = Pending::Ready(reply.to_vec());
            }
            Pending::Gather(g) => {
                if let Some(slot) = g.parts.get_mut(part as usize) {
                    if slot.is_none() {
                        *slot = Some(reply.to_vec());
                        g.left -= 1;
                        g.stored += reply.len();
                        c.held += reply.len();
                    }
                }
                if g.left == 0 {
                    let stored = g.stored;
                    let answer = g.assemble();
                    c.held = c.held.saturating_sub(stored) + answer.len();
                    *pending = Pending::Ready(answer);
                    ready = at == 0;
                }
            }
            Pending::Ready(_) => {}
        }
        if c.held > CLIENT_HELD_MAX {
            log::warn!(
                "client {client}: {} bytes of replies held for its order, past {CLIENT_HELD_MAX}: closed",
                c.held
            );
            cx.abort(client);
            return;
        }
        if ready {
            self.flush(cx, client);
            self.resume(cx, client);
        }
    }

    // ---- backends -----------------------------------------------------

    /// A connection to backend `b` with room for one more request: the
    /// next of its places round robin, connected now if empty.
    fn connection(&mut self, cx: &mut Context<'_>, b: usize) -> Result<ConnId, Unavailable> {
        let now = cx.now();
        let places = self.backends[b].conns.len();
        let mut down = false;
        for _ in 0..places {
            let backend = &mut self.backends[b];
            let place = backend.next % places;
            backend.next = backend.next.wrapping_add(1);
            let id = match backend.conns[place] {
                Some(id) => id,
                None => {
                    if backend.down_until.is_some_and(|t| now < t) {
                        down = true; // another place may still be up
                        continue;
                    }
                    let Ok(id) = cx.connect_with(backend.addr, self.connect) else {
                        backend.down_until = Some(now + RECONNECT_WAIT);
                        down = true;
                        continue;
                    };
                    // Shared for as long as it lives: never idle-closed,
                    // and never a slow consumer for what clients queued.
                    cx.set_idle_timeout(id, None);
                    cx.set_output_limits(id, UPSTREAM_OUTPUT_LIMIT, UPSTREAM_OUTPUT_LIMIT);
                    backend.conns[place] = Some(id);
                    self.put(
                        id.index(),
                        Slot::Upstream(Box::new(Upstream {
                            id,
                            backend: b,
                            in_flight: VecDeque::new(),
                            progress: reply::Progress::default(),
                            opened: false,
                            timed_out: false,
                            skip: None,
                        })),
                    );
                    id
                }
            };
            let queued = cx.output_len(id).unwrap_or(0);
            let full = self
                .upstream(id)
                .is_none_or(|u| u.in_flight.len() >= MAX_IN_FLIGHT)
                || queued >= UPSTREAM_QUEUED_MAX;
            if !full {
                return Ok(id);
            }
        }
        Err(if down {
            Unavailable::Down
        } else {
            Unavailable::Full
        })
    }

    fn send(
        &mut self,
        cx: &mut Context<'_>,
        up: ConnId,
        client: ConnId,
        seq: u64,
        part: u16,
        bytes: &[u8],
    ) {
        let now = cx.now();
        let _ = cx.write(up, bytes);
        let Some(u) = self.upstream(up) else {
            return;
        };
        u.in_flight.push_back(InFlight {
            client,
            seq,
            part,
            sent: now,
        });
        let (b, full) = (u.backend, u.in_flight.len() == MAX_IN_FLIGHT);
        self.backends[b].requests += 1;
        if full || cx.output_len(up).unwrap_or(0) >= UPSTREAM_QUEUED_MAX {
            // Full now: it says when its output is written.
            cx.notify_flushed(up);
        }
    }

    /// Replies from a backend connection, each routed to its request.
    fn replies(&mut self, cx: &mut Context<'_>, up: ConnId, input: &[u8]) -> usize {
        let Some(u) = self.upstream(up) else {
            return input.len();
        };
        let b = u.backend;
        let mut progress = std::mem::take(&mut u.progress);
        let mut skip = u.skip.take();
        let mut used = 0;
        loop {
            if let Some(walk) = skip.as_mut() {
                match walk.feed(&input[used..]) {
                    Ok((n, ended)) => {
                        used += n;
                        if !ended {
                            break;
                        }
                        skip = None;
                    }
                    Err(why) => return self.broken(cx, up, why, input.len()),
                }
            }
            match reply::check(&input[used..], &mut progress) {
                reply::Check::Frame(n) => {
                    let Some(req) = self.upstream(up).and_then(|u| u.in_flight.pop_front()) else {
                        return self.broken(cx, up, "a reply nobody asked for", input.len());
                    };
                    self.deliver(cx, req.client, req.seq, req.part, &input[used..used + n]);
                    used += n;
                }
                reply::Check::TooLarge => {
                    // Its request fails alone; the reply is walked past
                    // as it streams in, and the connection goes on.
                    let Some(req) = self.upstream(up).and_then(|u| u.in_flight.pop_front()) else {
                        return self.broken(cx, up, "a reply nobody asked for", input.len());
                    };
                    let mut text = Vec::new();
                    error_line(
                        &mut text,
                        &format!(
                            "ERR the reply is larger than the proxy holds ({} bytes)",
                            reply::MAX_REPLY
                        ),
                    );
                    self.backends[b].errors += 1;
                    self.deliver(cx, req.client, req.seq, req.part, &text);
                    progress = reply::Progress::default();
                    skip = Some(reply::Skip::default());
                }
                reply::Check::Incomplete => break,
                reply::Check::Invalid(why) => return self.broken(cx, up, why, input.len()),
            }
        }
        if used > 0 {
            self.backends[b].failures = 0;
        }
        let Some(u) = self.upstream(up) else {
            return used;
        };
        u.progress = progress;
        u.skip = skip;
        if u.in_flight.len() < MAX_IN_FLIGHT / 2 {
            self.wake(cx, b);
        }
        used
    }

    /// A backend broke the protocol: its stream can no longer be cut into
    /// replies, so the connection closes and its requests fail.
    fn broken(&mut self, cx: &mut Context<'_>, up: ConnId, why: &str, all: usize) -> usize {
        if let Some(u) = self.upstream(up) {
            let b = u.backend;
            log::warn!("backend {}: {why}", self.backends[b].addr);
        }
        cx.abort(up);
        all
    }

    /// Clients that waited for backend `b` try again.
    fn wake(&mut self, cx: &mut Context<'_>, b: usize) {
        for conn in std::mem::take(&mut self.backends[b].waiting) {
            if let Some(c) = self.client(conn) {
                c.blocked = false;
            }
            self.resume(cx, conn);
        }
    }

    /// A backend connection closed: every request on it fails, in its
    /// clients' order, and the backend counts a failure.
    fn upstream_closed(&mut self, cx: &mut Context<'_>, up: Upstream, reason: CloseReason) {
        let now = cx.now();
        let b = up.backend;
        let backend = &mut self.backends[b];
        for place in backend.conns.iter_mut().filter(|c| **c == Some(up.id)) {
            *place = None;
        }
        let why = if up.timed_out {
            "timed out"
        } else if !up.opened {
            backend.down_until = Some(now + RECONNECT_WAIT);
            "refused the connection"
        } else {
            "closed the connection"
        };
        if !up.in_flight.is_empty() || !up.opened || up.timed_out {
            backend.failures += 1;
            log::warn!(
                "backend {} {why} ({reason}); {} requests failed",
                backend.addr,
                up.in_flight.len()
            );
        }
        backend.errors += up.in_flight.len() as u64;
        let mut text = Vec::new();
        error_line(&mut text, &format!("ERR backend {} {why}", backend.addr));
        if self.failure_limit > 0
            && backend.failures >= self.failure_limit
            && backend.ejected_until.is_none()
        {
            backend.ejected_until = Some(now + self.retry_timeout);
            backend.ejections += 1;
            log::warn!(
                "backend {} ejected for {:?} after {} failures in a row",
                backend.addr,
                self.retry_timeout,
                backend.failures
            );
            self.rebuild_ring(now);
        }
        for req in up.in_flight {
            self.deliver(cx, req.client, req.seq, req.part, &text);
        }
        self.wake(cx, b);
    }

    /// The periodic check: requests past `--timeout`, ejected backends
    /// whose time is up.
    fn tick(&mut self, cx: &mut Context<'_>) {
        let now = cx.now();
        if let Some(timeout) = self.timeout {
            // The backends' connections, not every slot: a few, however
            // many clients there are.
            let ups: Vec<ConnId> = self
                .backends
                .iter()
                .flat_map(|b| b.conns.iter().flatten().copied())
                .collect();
            for id in ups {
                let Some(u) = self.upstream(id) else {
                    continue;
                };
                let late = u
                    .in_flight
                    .front()
                    .is_some_and(|r| now.duration_since(r.sent) >= timeout);
                if late && !u.timed_out {
                    u.timed_out = true;
                    let b = u.backend;
                    self.backends[b].timeouts += 1;
                    cx.abort(id);
                }
            }
        }
        let mut back = false;
        for b in &mut self.backends {
            if b.ejected_until.is_some_and(|t| now >= t) {
                log::info!("backend {} back in the ring", b.addr);
                b.ejected_until = None;
                b.failures = 0;
                back = true;
            }
        }
        if back {
            self.rebuild_ring(now);
        }
    }

    /// The status page.
    fn page(&self, cx: &mut Context<'_>) -> String {
        use std::fmt::Write as _;
        let now = cx.now();
        let mut body = String::new();
        let _ = writeln!(
            body,
            "backend state connections requests errors timeouts in_flight ejections"
        );
        for b in &self.backends {
            let state = if b.ejected_until.is_some_and(|t| now < t) {
                "ejected"
            } else if b.down_until.is_some_and(|t| now < t) {
                "down"
            } else {
                "up"
            };
            let mut conns = 0;
            let mut in_flight = 0;
            for id in b.conns.iter().flatten() {
                if let Some(Some(Slot::Upstream(u))) = self.slots.get(id.index()) {
                    if u.id == *id {
                        conns += 1;
                        in_flight += u.in_flight.len();
                    }
                }
            }
            let _ = writeln!(
                body,
                "{} {state} {conns} {} {} {} {in_flight} {}",
                b.addr, b.requests, b.errors, b.timeouts, b.ejections
            );
        }
        let _ = writeln!(body, "clients {}", self.clients);
        let _ = writeln!(body, "reactor {}", cx.stats());
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    }
}

/// An error reply, `-TEXT`: `text` starts with its kind (`ERR`,
/// `NOAUTH`, ...). A CR or LF in it (a quoted command name) becomes a
/// space, so it cannot end the line early and inject a reply.
fn error_line(out: &mut Vec<u8>, text: &str) {
    out.push(b'-');
    out.extend(text.bytes().map(|b| match b {
        b'\r' | b'\n' => b' ',
        b => b,
    }));
    out.extend_from_slice(b"\r\n");
}

/// Why no backend connection could take a request.
enum Unavailable {
    /// Its connections are full: wait.
    Full,
    /// A connect failed just now: fail the request.
    Down,
}

impl Gather {
    /// The client's answer, from every part's reply.
    fn assemble(&mut self) -> Vec<u8> {
        let parts: Vec<Vec<u8>> = self
            .parts
            .iter_mut()
            .map(|p| p.take().unwrap_or_default())
            .collect();
        // A part that failed fails the command, as twemproxy answers it.
        if let Some(failed) = parts.iter().find(|p| p.first() == Some(&b'-')) {
            return failed.clone();
        }
        let mut out = Vec::new();
        match self.how {
            Split::Count => {
                let sum: i64 = parts.iter().filter_map(|p| reply::integer(p)).sum();
                write::integer(&mut out, sum);
            }
            Split::Pairs => write::simple(&mut out, "OK"),
            Split::Values => {
                let values: Vec<Vec<&[u8]>> = parts
                    .iter()
                    .map(|p| reply::elements(p).unwrap_or_default())
                    .collect();
                write::array_len(&mut out, self.order.len());
                for &(part, place) in &self.order {
                    match values[part as usize].get(place as usize) {
                        Some(v) => out.extend_from_slice(v),
                        None => write::null(&mut out),
                    }
                }
            }
        }
        out
    }
}

impl Handler for Proxy {
    type Message = ();

    fn on_start(&mut self, cx: &mut Context<'_>) {
        cx.set_timer(TICK, TICK_TOKEN);
    }

    fn on_timer(&mut self, cx: &mut Context<'_>, token: u64) {
        if token == TICK_TOKEN {
            self.tick(cx);
            cx.set_timer(TICK, TICK_TOKEN);
        }
    }

    fn on_open(&mut self, cx: &mut Context<'_>, conn: ConnId) {
        if self.stats && cx.listener(conn).map(|l| l.index()) == Some(STATS_LISTENER) {
            let page = self.page(cx);
            let _ = cx.write(conn, page.as_bytes());
            return cx.close(conn);
        }
        if let Some(u) = self.upstream(conn) {
            u.opened = true;
            return;
        }
        self.clients += 1;
        self.put(
            conn.index(),
            Slot::Client(Box::new(Client {
                id: conn,
                progress: resp::Progress::default(),
                authenticated: false,
                base: 0,
                pending: VecDeque::new(),
                quit: false,
                paused: false,
                blocked: false,
                held: 0,
                eof: false,
                leftover: Vec::new(),
            })),
        );
    }

    fn on_data(&mut self, cx: &mut Context<'_>, conn: ConnId, input: &[u8]) -> usize {
        match self.slots.get(conn.index()) {
            Some(Some(Slot::Upstream(_))) => self.replies(cx, conn, input),
            Some(Some(Slot::Client(_))) => self.requests(cx, conn, input),
            _ => input.len(), // a status page's request: not read
        }
    }

    fn on_flushed(&mut self, cx: &mut Context<'_>, conn: ConnId) {
        if let Some(u) = self.upstream(conn) {
            let b = u.backend;
            self.wake(cx, b);
        } else {
            self.resume(cx, conn);
        }
    }

    fn on_read_closed(&mut self, cx: &mut Context<'_>, conn: ConnId, rest: &[u8]) {
        // A client that hung up its side is answered all it asked, then
        // closed, as Redis does: what it sent while paused is run as room
        // allows. A backend's FIN is its close.
        let Some(c) = self.client(conn) else {
            return cx.close(conn);
        };
        c.eof = true;
        c.leftover = rest.to_vec();
        if !c.paused {
            self.run_leftover(cx, conn);
        }
        self.flush(cx, conn);
    }

    fn on_close(&mut self, cx: &mut Context<'_>, conn: ConnId, reason: CloseReason) {
        let Some(slot) = self.slots.get_mut(conn.index()) else {
            return;
        };
        let ours = match slot {
            Some(Slot::Client(c)) => c.id == conn,
            Some(Slot::Upstream(u)) => u.id == conn,
            None => false,
        };
        if !ours {
            return;
        }
        match slot.take() {
            Some(Slot::Client(c)) => {
                self.clients -= 1;
                if c.blocked {
                    for b in &mut self.backends {
                        b.waiting.retain(|&w| w != conn);
                    }
                }
            }
            Some(Slot::Upstream(up)) => self.upstream_closed(cx, *up, reason),
            None => {}
        }
    }

    fn is_busy(&self, conn: ConnId) -> bool {
        match self.slots.get(conn.index()) {
            Some(Some(Slot::Client(c))) => c.id == conn && !c.pending.is_empty(),
            Some(Some(Slot::Upstream(u))) => u.id == conn && !u.in_flight.is_empty(),
            _ => false,
        }
    }
}

fn main() -> std::io::Result<std::process::ExitCode> {
    let cli = Cli::parse();
    common::init();
    let mut config = cli.server.config();
    // The reactor's rule (stop reading a connection whose own output is
    // high) would stop reading a backend's replies while its requests
    // wait to be written, and a backend that writes while it reads would
    // deadlock with us: the proxy's own backpressure replaces it.
    config.high_water = config.hard_limit;
    // A partial request is refused before it passes resp::MAX_COMMAND, a
    // partial reply before reply::MAX_REPLY; the slack holds the header.
    config.max_input = resp::MAX_COMMAND.max(reply::MAX_REPLY) + 64;
    if cli.server.coalesce_us.is_none() {
        config.coalesce = COALESCE;
    }
    let stats: Vec<SocketAddr> = cli.stats_addr.into_iter().collect();
    let has_stats = !stats.is_empty();
    let server = cli.server.clone();
    // One proxy per shard (`--threads`): each its own connections to every
    // backend (--pool-size each), its own view of their health, and, with
    // --stats-addr, its own status page on a listener they all share.
    server.serve_all(config, &[], &stats, move |_shard, _| {
        let members: Vec<Member> = cli
            .backends
            .iter()
            .map(|b| Member::named(&b.name, b.weight))
            .collect();
        let ring = Ring::new(cli.hash, cli.hash_function, &members, &[]).with_tag(cli.hash_tag);
        Proxy {
            backends: cli
                .backends
                .iter()
                .map(|b| Backend {
                    addr: b.addr,
                    conns: vec![None; cli.pool_size as usize],
                    next: 0,
                    failures: 0,
                    ejected_until: None,
                    down_until: None,
                    waiting: Vec::new(),
                    requests: 0,
                    errors: 0,
                    timeouts: 0,
                    ejections: 0,
                })
                .collect(),
            members,
            distribution: cli.hash,
            key_hash: cli.hash_function,
            tag: cli.hash_tag,
            ring,
            slots: Vec::new(),
            connect: Connect::default(),
            timeout: (cli.timeout > 0).then(|| Duration::from_millis(cli.timeout)),
            failure_limit: cli.failure_limit,
            retry_timeout: Duration::from_millis(cli.retry_timeout),
            password: cli
                .requirepass
                .clone()
                .filter(|p| !p.is_empty())
                .map(String::into_bytes),
            stats: has_stats,
            clients: 0,
        }
    })
}
