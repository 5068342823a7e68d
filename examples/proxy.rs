//! Example 10 of 11: a layer-4 TCP proxy and load balancer on one reactor.
//!
//! ```sh
//! cargo run --release --example echo -- --addr 127.0.0.1:7001 &
//! cargo run --release --example echo -- --addr 127.0.0.1:7002 &
//! cargo run --release --example proxy -- --addr 127.0.0.1:7000 \
//!     --backend 127.0.0.1:7001 --backend 127.0.0.1:7002 --balance least-conn
//! nc 127.0.0.1 7000        # type a line: a backend echoes it, through the proxy
//! ```
//!
//! Each client connection is paired with one backend connection, and the
//! bytes are copied both ways through the connections' own buffers: what
//! one side reads is queued on the other, with no buffer of the proxy's
//! own.
//!
//! What it teaches:
//! - **Backpressure across a pair.** A side whose partner has more than
//!   [`PAUSE_ABOVE`] waiting to go out is not read until that output is
//!   all written (`Context::notify_flushed`), so a fast backend and a
//!   slow client hold bounded memory, and the other way round. The
//!   reactor's own rule (stop reading a connection whose *own* output is
//!   high) is switched off here: in a proxy it would stop reading a
//!   backend that is busy sending, which then stops reading us, and the
//!   pair deadlocks.
//! - **Half-close crosses the pair.** A client's FIN becomes our FIN to
//!   the backend once what came before it is written, and the answer
//!   still flows back; the other way round too. A RST crosses as a RST.
//! - **Retries.** A backend that refuses or does not connect within
//!   `--connect-timeout` is left for the next one, up to `--retries`
//!   times; what the client sent meanwhile is kept and sent to the one
//!   that answers.
//! - **Balancing.** `round-robin`, `least-conn` (fewest open pairs), and
//!   `p2c` (the power of two choices: the less busy of two picked at
//!   random, nearly as good as least-conn and no scan), over the backends
//!   that are up.
//! - **Health.** A backend whose connect fails is down for 0.5 s, then
//!   twice as long after each failure that follows, up to 30 s (passive);
//!   every `--health-interval` a connect to each backend brings one that
//!   answers back at once (active), in the same loop. With every backend
//!   down, clients are closed at once, with one log line per episode.
//! - **Status.** `--stats-addr` serves a plain-text page to any HTTP
//!   client: each backend's state, open and total pairs, failures,
//!   retries and bytes each way, and the upstream pool's counters.
//!
//! Read next: `src/reactor/upstream.rs`, the pool a protocol-aware proxy
//! uses to reuse backend connections; then `examples/resp_proxy`
//! (example 11), a proxy that shares its backend connections instead.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use evloop::{Checkout, CloseReason, ConnId, Connect, Context, Handler};

#[derive(Parser, Debug)]
#[command(about = "Layer-4 TCP proxy and load balancer on the evloop reactor")]
struct Cli {
    #[command(flatten)]
    server: common::ServerArgs,
    /// A backend (repeatable): HOST a name (looked up once, at start-up)
    /// or an IP address.
    #[arg(long = "backend", value_name = "HOST:PORT", required = true,
          value_parser = common::resolve)]
    backends: Vec<SocketAddr>,
    /// How a new client's backend is chosen.
    #[arg(long, value_enum, default_value = "round-robin")]
    balance: Balance,
    /// Milliseconds a backend connect may take before the next backend is
    /// tried.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    connect_timeout: u64,
    /// Other backends tried after one refuses or times out.
    #[arg(long, value_name = "N", default_value_t = 2)]
    retries: usize,
    /// Milliseconds between active health checks (a connect to every
    /// backend); 0: passive checks only.
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    health_interval: u64,
    /// Serve a plain-text status page here (any HTTP client reads it).
    #[arg(long, value_name = "HOST:PORT")]
    stats_addr: Option<SocketAddr>,
    /// Connections kept open to each backend ahead of demand (the
    /// reactor's upstream pool), so a new client finds one ready.
    #[arg(long, value_name = "N", default_value_t = 0)]
    warm: usize,
}

/// How the backend for a new client is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Balance {
    RoundRobin,
    LeastConn,
    P2c,
}

/// A side is not read while its partner has more than this waiting to go
/// out: one read's worth (the reactor's 64 KiB scratch buffer) can land
/// on top of it, so a pair holds at most about twice this per direction.
const PAUSE_ABOVE: usize = 64 * 1024;

/// What the client sent before its backend was up, kept for a retry on
/// another backend: past this the client is not read until one is up.
const EARLY_MAX: usize = 64 * 1024;

/// A backend that failed is left alone this long at first, twice as long
/// after each failure that follows, up to [`DOWN_MAX`]: a backend that is
/// restarting is not hammered, and one that is back is found soon.
const DOWN_MIN: Duration = Duration::from_millis(500);
const DOWN_MAX: Duration = Duration::from_secs(30);

/// The health check's timer token.
const HEALTH: u64 = 1;

/// The status page's listener: the second each reactor opens, after
/// `--addr` (see `common::ServerArgs::serve_all`).
const STATS_LISTENER: usize = 1;

/// One backend and what it has been given.
struct Backend {
    addr: SocketAddr,
    /// Pairs open to it now.
    active: usize,
    /// Pairs it was given in all.
    total: u64,
    /// Connects that failed.
    failures: u64,
    /// Clients moved on to another backend after this one failed.
    retries: u64,
    /// Bytes from clients to it, and back.
    bytes_up: u64,
    bytes_down: u64,
    /// Not chosen until then, after a failure (passive health); a health
    /// check that connects brings it back at once.
    down_until: Option<Instant>,
    /// The next wait after a failure.
    backoff: Duration,
}

impl Backend {
    fn is_up(&self, now: Instant) -> bool {
        self.down_until.is_none_or(|t| now >= t)
    }

    /// A connect failed: down, for longer each time.
    fn failed(&mut self, now: Instant) {
        self.failures += 1;
        if self.down_until.is_some_and(|t| now < t) {
            // Down already, its wait not over: a connect begun before (a
            // burst of clients at once) is the same failure, so the wait
            // doubles once per episode, not once per connect.
            return;
        }
        if self.down_until.is_none() {
            log::warn!("backend {} is down", self.addr);
        }
        self.down_until = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(DOWN_MAX);
    }

    /// A connect succeeded: up.
    fn answered(&mut self) {
        if self.down_until.take().is_some() {
            log::info!("backend {} is up", self.addr);
        }
        self.backoff = DOWN_MIN;
    }
}

/// A connection's side of a pair.
enum Role {
    Client {
        /// Its backend connection, once one is dialed.
        backend: Option<ConnId>,
        /// Backends tried so far.
        tries: usize,
        /// Bytes sent before the backend was up (for a retry).
        early: Vec<u8>,
        /// The backend is up: `early` is done with.
        up: bool,
        /// The client's FIN came before the backend was up: it is passed
        /// on once it is.
        fin: bool,
    },
    Backend {
        client: ConnId,
        /// Which backend.
        index: usize,
    },
    /// An active health check's connect.
    Probe { index: usize },
}

struct Slot {
    id: ConnId,
    role: Role,
    /// Not read until its partner's output is written.
    paused: bool,
}

struct Proxy {
    backends: Vec<Backend>,
    balance: Balance,
    connect: Connect,
    retries: usize,
    /// Connections by slot index.
    slots: Vec<Option<Slot>>,
    /// Round robin's next backend.
    next: usize,
    /// xorshift state for p2c.
    rng: u64,
    /// Every backend was down when a client came: logged once per
    /// episode, not once per client.
    all_down: bool,
    health_interval: Option<Duration>,
    /// Warm connections per backend.
    warm: usize,
    /// The status page's listener.
    /// Whether `--stats-addr` is served: the second listener each reactor
    /// opens ([`STATS_LISTENER`]).
    stats: bool,
}

impl Proxy {
    fn slot(&mut self, id: ConnId) -> Option<&mut Slot> {
        self.slots
            .get_mut(id.index())?
            .as_mut()
            .filter(|s| s.id == id)
    }

    fn put(&mut self, id: ConnId, role: Role) {
        if self.slots.len() <= id.index() {
            self.slots.resize_with(id.index() + 1, || None);
        }
        self.slots[id.index()] = Some(Slot {
            id,
            role,
            paused: false,
        });
    }

    /// The other side of `id`'s pair, if there is one yet.
    fn partner(&mut self, id: ConnId) -> Option<ConnId> {
        match &self.slot(id)?.role {
            Role::Client { backend, .. } => *backend,
            Role::Backend { client, .. } => Some(*client),
            Role::Probe { .. } => None,
        }
    }

    fn random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// The backend for the next pair, among those up; `None` if every one
    /// is down.
    fn choose(&mut self, now: Instant) -> Option<usize> {
        let n = self.backends.len();
        let up: Vec<usize> = (0..n).filter(|&i| self.backends[i].is_up(now)).collect();
        if up.is_empty() {
            return None;
        }
        let pick = match self.balance {
            Balance::RoundRobin => {
                let i = up[self.next % up.len()];
                self.next = self.next.wrapping_add(1);
                i
            }
            Balance::LeastConn => {
                // Fewest open pairs; ties go round, so equal backends
                // share evenly.
                let start = self.next;
                self.next = self.next.wrapping_add(1);
                (0..up.len())
                    .map(|k| up[(start + k) % up.len()])
                    .min_by_key(|&i| self.backends[i].active)
                    .unwrap_or(up[0])
            }
            Balance::P2c => {
                let a = up[(self.random() % up.len() as u64) as usize];
                let b = up[(self.random() % up.len() as u64) as usize];
                if self.backends[b].active < self.backends[a].active {
                    b
                } else {
                    a
                }
            }
        };
        Some(pick)
    }

    /// Dials a backend for `client`, sending what it already sent. On a
    /// failure to even start, the next backend is tried, within the
    /// retries; past them the client is closed.
    fn dial(&mut self, cx: &mut Context<'_>, client: ConnId) {
        let retries = self.retries;
        loop {
            let Some(Slot {
                role: Role::Client { tries, early, .. },
                ..
            }) = self.slot(client)
            else {
                return;
            };
            if *tries > retries {
                log::debug!("client {client}: no backend answered");
                return cx.close(client);
            }
            *tries += 1;
            let early = std::mem::take(early);
            let Some(index) = self.choose(cx.now()) else {
                if !std::mem::replace(&mut self.all_down, true) {
                    log::warn!("every backend is down: clients are closed until one is back");
                }
                return cx.close(client);
            };
            self.all_down = false;
            let addr = self.backends[index].addr;
            // From the pool: a warm connection if one is ready (`--warm`),
            // else a new connect.
            match cx.checkout(addr) {
                Ok(got) => {
                    let backend = got.conn();
                    let _ = cx.write(backend, &early);
                    self.put(backend, Role::Backend { client, index });
                    let b = &mut self.backends[index];
                    b.active += 1;
                    b.total += 1;
                    if let Some(Slot {
                        role:
                            Role::Client {
                                backend: slot,
                                early: kept,
                                ..
                            },
                        ..
                    }) = self.slot(client)
                    {
                        *slot = Some(backend);
                        *kept = early;
                    }
                    if let Checkout::Reused(_) = got {
                        self.backend_up(cx, backend); // open already
                    }
                    return;
                }
                Err(e) => {
                    log::debug!("connect to {addr}: {e}");
                    self.backends[index].failed(cx.now());
                    self.backends[index].retries += 1;
                    if let Some(Slot {
                        role: Role::Client { early: kept, .. },
                        ..
                    }) = self.slot(client)
                    {
                        *kept = early;
                    }
                }
            }
        }
    }

    /// The status page: every backend, and the reactor's pool counters.
    fn page(&self, cx: &mut Context<'_>) -> String {
        use std::fmt::Write as _;
        let now = cx.now();
        let mut body = String::new();
        let _ = writeln!(
            body,
            "backend state active total failures retries bytes_up bytes_down"
        );
        for b in &self.backends {
            let state = if b.is_up(now) { "up" } else { "down" };
            let _ = writeln!(
                body,
                "{} {state} {} {} {} {} {} {}",
                b.addr, b.active, b.total, b.failures, b.retries, b.bytes_up, b.bytes_down
            );
        }
        let stats = cx.stats();
        let _ = writeln!(
            body,
            "pool hits={} misses={} evicted={} found_dead={} idle={} warm={}",
            stats.pool_hits,
            stats.pool_misses,
            stats.pool_evicted,
            stats.pool_found_dead,
            stats.pool_idle,
            stats.pool_warm
        );
        let _ = writeln!(body, "reactor {stats}");
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    }

    /// `from`'s partner has a lot waiting: stop reading `from` until it is
    /// written.
    fn pause(&mut self, cx: &mut Context<'_>, from: ConnId, to: ConnId) {
        if let Some(slot) = self.slot(from) {
            slot.paused = true;
        }
        cx.pause_read(from);
        cx.notify_flushed(to);
    }
}

impl Handler for Proxy {
    type Message = ();

    fn on_start(&mut self, cx: &mut Context<'_>) {
        if let Some(every) = self.health_interval {
            cx.set_timer(every, HEALTH);
        }
        for b in &self.backends {
            cx.warm(b.addr, self.warm);
        }
    }

    fn on_timer(&mut self, cx: &mut Context<'_>, token: u64) {
        if token != HEALTH {
            return;
        }
        // Active health: a connect to every backend; one that answers is
        // up (`on_open`), one that fails stays down, for longer.
        for index in 0..self.backends.len() {
            if let Ok(probe) = cx.connect_with(self.backends[index].addr, self.connect) {
                self.put(probe, Role::Probe { index });
            }
        }
        if let Some(every) = self.health_interval {
            cx.set_timer(every, HEALTH);
        }
    }

    fn on_open(&mut self, cx: &mut Context<'_>, conn: ConnId) {
        if self.stats && cx.listener(conn).map(|l| l.index()) == Some(STATS_LISTENER) {
            let page = self.page(cx);
            let _ = cx.write(conn, page.as_bytes());
            return cx.close(conn);
        }
        if let Some(Slot {
            role: Role::Probe { index },
            ..
        }) = self.slot(conn)
        {
            let index = *index;
            self.backends[index].answered();
            return cx.close(conn);
        }
        if cx.listener(conn).is_some() {
            // A client: pair it with a backend.
            self.put(
                conn,
                Role::Client {
                    backend: None,
                    tries: 0,
                    early: Vec::new(),
                    up: false,
                    fin: false,
                },
            );
            return self.dial(cx, conn);
        }
        self.backend_up(cx, conn);
    }

    fn on_data(&mut self, cx: &mut Context<'_>, conn: ConnId, input: &[u8]) -> usize {
        self.pass(cx, conn, input)
    }

    fn on_flushed(&mut self, cx: &mut Context<'_>, conn: ConnId) {
        self.flushed(cx, conn);
    }

    fn on_read_closed(&mut self, cx: &mut Context<'_>, conn: ConnId, rest: &[u8]) {
        self.read_closed(cx, conn, rest);
    }

    fn on_close(&mut self, cx: &mut Context<'_>, conn: ConnId, reason: CloseReason) {
        self.closed(cx, conn, reason);
    }

    /// During shutdown, a side whose partner is still open may have an
    /// answer on its way: it is not quiet (closing it would end the
    /// client's stream with a FIN that looks complete).
    fn is_busy(&self, conn: ConnId) -> bool {
        let Some(slot) = self.slots.get(conn.index()).and_then(Option::as_ref) else {
            return false;
        };
        slot.id == conn
            && matches!(
                slot.role,
                Role::Client {
                    backend: Some(_),
                    ..
                } | Role::Backend { .. }
            )
    }
}

impl Proxy {
    /// Our backend connection is up: what the client sent is on its way,
    /// and no retry will need it.
    fn backend_up(&mut self, cx: &mut Context<'_>, conn: ConnId) {
        let Some(client) = self.partner(conn) else {
            return cx.close(conn);
        };
        if let Some(Slot {
            role: Role::Backend { index, .. },
            ..
        }) = self.slot(conn)
        {
            let index = *index;
            self.backends[index].answered();
        }
        if let Some(Slot {
            role: Role::Client { early, up, fin, .. },
            paused,
            ..
        }) = self.slot(client)
        {
            *early = Vec::new();
            *up = true;
            if std::mem::take(paused) {
                cx.resume_read(client);
            }
            if *fin {
                cx.shutdown_write(conn);
            }
        }
    }

    /// Input from one side of a pair, queued on the other.
    fn pass(&mut self, cx: &mut Context<'_>, conn: ConnId, input: &[u8]) -> usize {
        let Some(to) = self.partner(conn) else {
            return input.len(); // a probe or a status page: nothing to pass on
        };
        let n = input.len() as u64;
        match self.slot(conn).map(|s| &s.role) {
            Some(Role::Backend { index, .. }) => {
                let index = *index;
                self.backends[index].bytes_down += n;
            }
            Some(Role::Client {
                backend: Some(b), ..
            }) => {
                let b = *b;
                if let Some(Slot {
                    role: Role::Backend { index, .. },
                    ..
                }) = self.slot(b)
                {
                    let index = *index;
                    self.backends[index].bytes_up += n;
                }
            }
            _ => {}
        }
        if let Some(Slot {
            role: Role::Client {
                early, up: false, ..
            },
            ..
        }) = self.slot(conn)
        {
            // Kept until the backend answers, for a retry elsewhere.
            early.extend_from_slice(input);
            if early.len() > EARLY_MAX {
                self.pause(cx, conn, to);
            }
        }
        if cx.write(to, input).is_err() {
            cx.close(conn);
            return input.len();
        }
        if cx.output_len(to).unwrap_or(0) > PAUSE_ABOVE {
            self.pause(cx, conn, to);
        }
        input.len()
    }

    /// `conn`'s output is all written: its partner may be read again.
    fn flushed(&mut self, cx: &mut Context<'_>, conn: ConnId) {
        let Some(from) = self.partner(conn) else {
            return;
        };
        let up = match self.slot(from) {
            Some(Slot {
                role: Role::Client { up, .. },
                ..
            }) => *up,
            Some(_) => true,
            None => return,
        };
        if let Some(slot) = self.slot(from).filter(|s| s.paused && up) {
            slot.paused = false;
            cx.resume_read(from);
        }
    }

    /// Half-close crosses the pair: our FIN to the partner once what
    /// came before is written; the other direction goes on.
    fn read_closed(&mut self, cx: &mut Context<'_>, conn: ConnId, _rest: &[u8]) {
        let Some(to) = self.partner(conn) else {
            return cx.close(conn);
        };
        if let Some(Slot {
            role: Role::Client { fin, up: false, .. },
            ..
        }) = self.slot(conn)
        {
            // No backend is up yet (one may be connecting, or have just
            // failed and be retried): the FIN goes once one is, in
            // `backend_up`.
            *fin = true;
            return;
        }
        cx.shutdown_write(to);
    }

    /// One side of a pair closed; the other follows (or, for a backend
    /// that did not connect, the client is dialed elsewhere).
    fn closed(&mut self, cx: &mut Context<'_>, conn: ConnId, reason: CloseReason) {
        let Some(slot) = self.slots.get_mut(conn.index()).and_then(Option::take) else {
            return;
        };
        if slot.id != conn {
            self.slots[conn.index()] = Some(slot); // a later tenant's
            return;
        }
        let failed = matches!(
            reason,
            CloseReason::ConnectFailed(_) | CloseReason::ConnectTimeout
        );
        match slot.role {
            Role::Probe { index } => {
                if failed {
                    self.backends[index].failed(cx.now());
                }
            }
            Role::Backend { client, index } => {
                let now = cx.now();
                let b = &mut self.backends[index];
                b.active = b.active.saturating_sub(1);
                if failed {
                    log::debug!("backend {}: {reason}", b.addr);
                    b.failed(now);
                    b.retries += 1;
                }
                let retry = failed
                    && matches!(
                        self.slot(client),
                        Some(Slot {
                            role: Role::Client { up: false, .. },
                            ..
                        })
                    );
                if retry {
                    if let Some(Slot {
                        role: Role::Client { backend, .. },
                        ..
                    }) = self.slot(client)
                    {
                        *backend = None;
                    }
                    return self.dial(cx, client);
                }
                end(cx, client, reason);
            }
            Role::Client { backend, .. } => {
                if let Some(backend) = backend {
                    end(cx, backend, reason);
                }
            }
        }
    }
}

/// One side of a pair closed for `reason`: the other follows, with a RST
/// if that is how this one ended, else once its output is written.
fn end(cx: &mut Context<'_>, partner: ConnId, reason: CloseReason) {
    if matches!(reason, CloseReason::Reset | CloseReason::Aborted) {
        cx.abort(partner);
    } else {
        cx.close(partner);
    }
}

fn main() -> std::io::Result<std::process::ExitCode> {
    let cli = Cli::parse();
    common::init();
    let mut config = cli.server.config();
    // The pair's own backpressure (see the module docs) replaces the
    // reactor's per-connection rule, which a proxy must not use.
    config.high_water = config.hard_limit;
    // Every backend connect, warm or not, has this long.
    config.connect_timeout = Duration::from_millis(cli.connect_timeout);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    let stats: Vec<SocketAddr> = cli.stats_addr.into_iter().collect();
    let server = cli.server.clone();
    // One proxy per shard (`--threads`), each with its own view of the
    // backends' health, its own pool and, with --stats-addr, its own
    // status page (on a listener every shard shares, as --addr).
    server.serve_all(config, &[], &stats.clone(), move |shard, _| Proxy {
        backends: cli
            .backends
            .iter()
            .map(|&addr| Backend {
                addr,
                active: 0,
                total: 0,
                failures: 0,
                retries: 0,
                bytes_up: 0,
                bytes_down: 0,
                down_until: None,
                backoff: DOWN_MIN,
            })
            .collect(),
        balance: cli.balance,
        connect: Connect {
            timeout: Some(Duration::from_millis(cli.connect_timeout)),
            ..Connect::default()
        },
        retries: cli.retries,
        slots: Vec::new(),
        next: 0,
        rng: seed.wrapping_add(shard as u64 * 0x9e37_79b9_7f4a_7c15) | 1,
        all_down: false,
        warm: cli.warm,
        health_interval: (cli.health_interval > 0)
            .then(|| Duration::from_millis(cli.health_interval)),
        stats: !stats.is_empty(),
    })
}
