//! Example 7 of 11: a load generator on the reactor's own outbound
//! connections: one thread holding thousands of connections, each checked
//! byte for byte.
//!
//! ```sh
//! cargo run --release --example loadgen -- --addr 127.0.0.1:7000 --conns 1000 --duration 5
//! cargo run --release --features tls --example loadgen -- --tls --ca cert.pem --idle-conns 10000 --hold 5
//! ```
//!
//! A run has phases: **ramp** (open `--idle-conns` then `--conns`
//! connections, at `--ramp` per second; idle ones do one exchange and then
//! sit), **active** (`--duration` seconds: closed loop with `--depth`
//! requests in flight per connection, or open loop at `--rate` requests per
//! second in all), **hold** (`--hold` seconds with every connection open and
//! quiet: the moment to read a server's idle memory), then the report.
//!
//! What it teaches: a client is the same reactor as a server. Connections
//! are outbound, timers pace the ramp and the open loop, and per-connection
//! state lives in a `Vec` indexed by `ConnId::index`.
//!
//! Read next: examples/c10k.rs (example 8), which runs this against the
//! echo server with 10,000 connections and reports what it measured.

#[path = "../common/mod.rs"]
mod common;
mod report;
mod wire;

use std::collections::VecDeque;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use evloop::{CloseReason, Config, ConnId, Context, Handler, Reactor};
use report::{Summary, Tally};
use wire::{Pattern, Protocol, Reply};

#[derive(Parser, Debug, Clone)]
#[command(about = "Load generator on the evloop reactor")]
pub struct Cli {
    /// Target (repeatable), or a range of addresses sharing a port, as
    /// 127.0.0.1-127.0.0.8:7000, to spread past one address's ports.
    #[arg(long, default_value = "127.0.0.1:7000")]
    pub addr: Vec<String>,
    /// Active connections.
    #[arg(long, default_value_t = 100)]
    pub conns: usize,
    /// Extra connections that do one exchange, then stay open and quiet.
    #[arg(long, default_value_t = 0)]
    pub idle_conns: usize,
    /// Connections opened per second (0: in batches, as fast as accepted).
    #[arg(long, default_value_t = 0)]
    pub ramp: u64,
    /// Seconds of measured load.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Seconds to hold every connection open and quiet after the load.
    #[arg(long, default_value_t = 0.0)]
    pub hold: f64,
    /// Bytes per echo message.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Requests in flight per connection (closed loop).
    #[arg(long, default_value_t = 1)]
    pub depth: usize,
    /// Requests per second in all (open loop); overrides --depth.
    #[arg(long)]
    pub rate: Option<f64>,
    #[arg(long, value_enum, default_value = "echo")]
    pub protocol: Protocol,
    /// Seconds a reply may take before the connection counts as failed.
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Print `phase NAME` lines on stdout as phases begin (for c10k).
    #[arg(long, hide = true)]
    pub phases: bool,
    #[command(flatten)]
    pub tls: common::ClientTlsArgs,
}

/// Timer tokens.
const TICK: u64 = 1;
const RATE_TICK: u64 = 2;
/// The pacing tick: ramp, phase changes, progress, reply deadlines.
const TICK_EVERY: Duration = Duration::from_millis(10);
/// Open-loop sends are spread over 1 ms slices.
const RATE_EVERY: Duration = Duration::from_millis(1);
/// Without --ramp, at most this many connects per tick: a server's listen
/// backlog (1,024 by default) overflowing would cost SYN retries (1 s).
const CONNECT_BATCH: usize = 500;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    Ramp,
    Active { until: Instant },
    Hold { until: Instant },
    Done,
}

struct Slot {
    id: ConnId,
    /// This connection's number: seeds its pattern.
    number: usize,
    idle: bool,
    /// An idle connection's one exchange completed.
    answered: bool,
    up: bool,
    /// Bytes (echo) sent and received so far.
    sent: u64,
    recv: u64,
    /// When each request in flight was sent, oldest first.
    stamps: VecDeque<Instant>,
}

struct Load {
    cli: Cli,
    /// `--tls`: every connection is a TLS client.
    tls: Option<common::ClientTls>,
    targets: Vec<SocketAddr>,
    pattern: Pattern,
    slots: Vec<Option<Slot>>,
    out: Vec<u8>,
    tally: Tally,
    phase: Phase,
    started: Instant,
    active_from: Option<Instant>,
    /// How long the active phase really lasted.
    measured: Duration,
    /// Connections started, and how many of them ended before the report.
    opened: usize,
    up: usize,
    failed: usize,
    /// Idle connections still waiting for their one reply.
    idle_pending: usize,
    next_progress: Instant,
    progress_ops: u64,
    rate_sent: u64,
    rate_cursor: usize,
}

impl Load {
    fn total(&self) -> usize {
        self.cli.conns + self.cli.idle_conns
    }

    fn phase_line(&self, name: &str) {
        if self.cli.phases {
            println!("phase {name}");
            let _ = std::io::stdout().flush();
        }
    }

    fn measuring(&self) -> bool {
        matches!(self.phase, Phase::Active { .. })
    }

    /// Connected, busy (not idle) connections.
    fn active_ids(&self) -> Vec<ConnId> {
        self.slots
            .iter()
            .flatten()
            .filter(|s| s.up && !s.idle)
            .map(|s| s.id)
            .collect()
    }

    /// Sends `n` requests on a connection.
    fn send(&mut self, cx: &mut Context<'_>, conn: ConnId, n: usize, now: Instant) {
        let Some(slot) = self.slots.get_mut(conn.index()).and_then(Option::as_mut) else {
            return;
        };
        self.out.clear();
        match self.cli.protocol {
            Protocol::Echo => {
                let len = self.cli.size * n;
                self.pattern
                    .fill(slot.number, slot.sent, len, &mut self.out);
                slot.sent += len as u64;
            }
            protocol => {
                for _ in 0..n {
                    self.out.extend_from_slice(wire::request(protocol));
                }
            }
        }
        slot.stamps.extend(std::iter::repeat_n(now, n));
        if cx.write(conn, &self.out).is_err() {
            self.tally.error("write_refused");
        }
    }

    /// Handles `done` completed requests on a connection.
    fn completed(&mut self, cx: &mut Context<'_>, conn: ConnId, done: usize, now: Instant) {
        let measuring = self.measuring();
        let Some(slot) = self.slots.get_mut(conn.index()).and_then(Option::as_mut) else {
            return;
        };
        for _ in 0..done {
            match slot.stamps.pop_front() {
                Some(sent) => self.tally.record(now - sent),
                None => self.tally.error("unrequested_reply"),
            }
        }
        self.tally.ops_total += done as u64;
        if measuring {
            self.tally.ops += done as u64;
        }
        if slot.idle {
            // Its one exchange is done; from now on it only sits there.
            if !slot.answered && slot.stamps.is_empty() {
                slot.answered = true;
                self.idle_pending -= 1;
            }
            return;
        }
        if measuring && self.cli.rate.is_none() {
            self.send(cx, conn, done, now);
        }
    }

    /// Opens connections due by the ramp.
    fn ramp(&mut self, cx: &mut Context<'_>, now: Instant) {
        let due = if self.cli.ramp == 0 {
            self.opened + CONNECT_BATCH
        } else {
            ((now - self.started).as_secs_f64() * self.cli.ramp as f64) as usize + 1
        };
        while self.opened < due.min(self.total()) {
            let number = self.opened;
            let target = self.targets[number % self.targets.len()];
            self.opened += 1;
            let connected = cx.connect(target).and_then(|id| match &self.tls {
                Some(tls) => tls.start(cx, id).map(|()| id).inspect_err(|_| cx.abort(id)),
                None => Ok(id),
            });
            match connected {
                Ok(id) => {
                    let idle = number < self.cli.idle_conns;
                    if self.slots.len() <= id.index() {
                        self.slots.resize_with(id.index() + 1, || None);
                    }
                    self.slots[id.index()] = Some(Slot {
                        id,
                        number,
                        idle,
                        answered: false,
                        up: false,
                        sent: 0,
                        recv: 0,
                        stamps: VecDeque::new(),
                    });
                    if idle {
                        self.idle_pending += 1;
                    }
                }
                Err(e) => {
                    log::debug!("connect to {target}: {e}");
                    self.tally.error("connect_error");
                    self.failed += 1;
                }
            }
        }
    }

    /// The pacing tick.
    fn tick(&mut self, cx: &mut Context<'_>) {
        let now = Instant::now();
        match self.phase {
            Phase::Ramp => {
                self.ramp(cx, now);
                let settled = self.up + self.failed >= self.total() && self.idle_pending == 0;
                if settled {
                    self.start_active(cx, now);
                }
            }
            Phase::Active { until } if now >= until => {
                self.measured = self.active_from.map_or(Duration::ZERO, |from| now - from);
                self.phase = Phase::Hold {
                    until: now + Duration::from_secs_f64(self.cli.hold),
                };
                self.phase_line("hold");
            }
            Phase::Hold { until } if now >= until => {
                self.phase = Phase::Done;
                self.phase_line("done");
                cx.shutdown();
                return;
            }
            _ => {}
        }
        if now >= self.next_progress {
            self.progress(now);
            self.check_deadlines(cx, now);
        }
        cx.set_timer(TICK_EVERY, TICK);
    }

    fn start_active(&mut self, cx: &mut Context<'_>, now: Instant) {
        let until = now + Duration::from_secs_f64(self.cli.duration);
        self.phase = Phase::Active { until };
        self.active_from = Some(now);
        self.phase_line("active");
        if self.cli.rate.is_some() {
            cx.set_timer(RATE_EVERY, RATE_TICK);
            return;
        }
        for id in self.active_ids() {
            self.send(cx, id, self.cli.depth, now);
        }
    }

    /// Open loop: send what is due since the active phase began, spread
    /// round-robin over the active connections.
    fn rate_tick(&mut self, cx: &mut Context<'_>) {
        let (Some(rate), Some(from)) = (self.cli.rate, self.active_from) else {
            return;
        };
        if !self.measuring() {
            return;
        }
        let now = Instant::now();
        let due = ((now - from).as_secs_f64() * rate) as u64;
        let active = self.active_ids();
        if !active.is_empty() {
            while self.rate_sent < due {
                let id = active[self.rate_cursor % active.len()];
                self.rate_cursor += 1;
                self.rate_sent += 1;
                self.send(cx, id, 1, now);
            }
        }
        cx.set_timer(RATE_EVERY, RATE_TICK);
    }

    fn progress(&mut self, now: Instant) {
        let ops = self.tally.ops_total - self.progress_ops;
        self.progress_ops = self.tally.ops_total;
        self.next_progress = now + Duration::from_secs(1);
        eprintln!(
            "[loadgen {:>3.0}s] {} up {}/{} ops/s {} errors {}",
            (now - self.started).as_secs_f64(),
            match self.phase {
                Phase::Ramp => "ramp",
                Phase::Active { .. } => "active",
                Phase::Hold { .. } => "hold",
                Phase::Done => "done",
            },
            self.up,
            self.total(),
            ops,
            self.tally.error_count()
        );
    }

    /// Aborts connections whose oldest request waited past --timeout.
    fn check_deadlines(&mut self, cx: &mut Context<'_>, now: Instant) {
        let limit = Duration::from_secs(self.cli.timeout);
        let late: Vec<ConnId> = self
            .slots
            .iter()
            .flatten()
            .filter(|s| s.stamps.front().is_some_and(|&t| now - t > limit))
            .map(|s| s.id)
            .collect();
        for id in late {
            self.tally.error("reply_timeout");
            cx.abort(id);
        }
    }
}

impl Handler for Load {
    type Message = ();

    fn on_open(&mut self, cx: &mut Context<'_>, conn: ConnId) {
        let Some(slot) = self.slots.get_mut(conn.index()).and_then(Option::as_mut) else {
            return;
        };
        slot.up = true;
        let idle = slot.idle;
        self.up += 1;
        self.tally.held = self.tally.held.max(self.up);
        if idle {
            self.send(cx, conn, 1, Instant::now());
        } else if self.measuring() && self.cli.rate.is_none() {
            self.send(cx, conn, self.cli.depth, Instant::now());
        }
    }

    fn on_data(&mut self, cx: &mut Context<'_>, conn: ConnId, input: &[u8]) -> usize {
        let now = Instant::now();
        let measuring = self.measuring();
        let Some(slot) = self.slots.get_mut(conn.index()).and_then(Option::as_mut) else {
            return input.len();
        };
        if self.cli.protocol == Protocol::Echo {
            if !self.pattern.check(slot.number, slot.recv, input) {
                self.tally.error("corrupt");
                cx.abort(conn);
                return input.len();
            }
            let size = self.cli.size as u64;
            let before = slot.recv / size;
            slot.recv += input.len() as u64;
            let done = (slot.recv / size - before) as usize;
            self.tally.verified += input.len() as u64;
            if measuring {
                self.tally.bytes += input.len() as u64;
            }
            self.completed(cx, conn, done, now);
            return input.len();
        }
        let mut used = 0;
        let mut done = 0;
        loop {
            match wire::parse_reply(self.cli.protocol, &input[used..]) {
                Reply::Ok(n) => {
                    used += n;
                    done += 1;
                    self.tally.verified += n as u64;
                }
                Reply::Bad(kind, n) => {
                    used += n;
                    done += 1;
                    self.tally.error(kind);
                }
                Reply::Partial => break,
                Reply::Garbage(kind) => {
                    self.tally.error(kind);
                    cx.abort(conn);
                    return input.len();
                }
            }
        }
        if measuring {
            self.tally.bytes += used as u64;
        }
        if let Some(slot) = self.slots.get_mut(conn.index()).and_then(Option::as_mut) {
            slot.recv += used as u64;
        }
        self.completed(cx, conn, done, now);
        used
    }

    /// Posted once by `main`: the first tick starts the ramp.
    fn on_message(&mut self, cx: &mut Context<'_>, _: ()) {
        self.tick(cx);
    }

    fn on_timer(&mut self, cx: &mut Context<'_>, token: u64) {
        match token {
            TICK => self.tick(cx),
            RATE_TICK => self.rate_tick(cx),
            _ => {}
        }
    }

    fn on_close(&mut self, _cx: &mut Context<'_>, conn: ConnId, reason: CloseReason) {
        let Some(slot) = self.slots.get_mut(conn.index()).and_then(|s| s.take()) else {
            return;
        };
        if slot.up {
            self.up -= 1;
        } else {
            self.failed += 1;
        }
        if slot.idle && !slot.answered {
            self.idle_pending -= 1;
        }
        if self.phase != Phase::Done {
            self.tally.error(CloseReason::NAMES[reason.index()]);
        }
    }
}

/// `127.0.0.1:7000`, or `127.0.0.1-127.0.0.8:7000` for every address in
/// the range.
fn targets(specs: &[String]) -> Result<Vec<SocketAddr>, String> {
    let mut out = Vec::new();
    for spec in specs {
        let Some((first, rest)) = spec.split_once('-') else {
            out.push(spec.parse().map_err(|e| format!("--addr {spec}: {e}"))?);
            continue;
        };
        let (last, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| format!("--addr {spec}: expected FIRST-LAST:PORT"))?;
        let parse_v4 = |s: &str| match s.parse::<IpAddr>() {
            Ok(IpAddr::V4(v4)) => Ok(u32::from(v4)),
            _ => Err(format!("--addr {spec}: {s} is not an IPv4 address")),
        };
        let (a, b) = (parse_v4(first)?, parse_v4(last)?);
        let port: u16 = port
            .parse()
            .map_err(|_| format!("--addr {spec}: bad port"))?;
        if b < a || b - a > 255 {
            return Err(format!(
                "--addr {spec}: the range must ascend, 256 addresses at most"
            ));
        }
        out.extend((a..=b).map(|ip| SocketAddr::from((std::net::Ipv4Addr::from(ip), port))));
    }
    Ok(out)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let targets = match targets(&cli.addr) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    let limit = evloop::sys::raise_fd_limit().unwrap_or(1024) as usize;
    let total = cli.conns + cli.idle_conns;
    if total + 32 > limit {
        eprintln!(
            "loadgen: {total} connections need {} descriptors; the open-file limit is {limit}",
            total + 32
        );
        return ExitCode::from(2);
    }
    let config = Config {
        idle_timeout: None, // held connections are quiet on purpose
        connect_timeout: Duration::from_secs(cli.timeout),
        max_conns: total,
        ..Config::default()
    };
    let tls = match cli.tls.load() {
        Ok(tls) => tls,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    let now = Instant::now();
    let load = Load {
        cli: cli.clone(),
        tls,
        targets,
        pattern: Pattern::new(),
        slots: Vec::new(),
        out: Vec::new(),
        tally: Tally::new(),
        phase: Phase::Ramp,
        started: now,
        active_from: None,
        measured: Duration::ZERO,
        opened: 0,
        up: 0,
        failed: 0,
        idle_pending: 0,
        next_progress: now + Duration::from_secs(1),
        progress_ops: 0,
        rate_sent: 0,
        rate_cursor: 0,
    };
    let mut reactor = match Reactor::new(load, config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::FAILURE;
        }
    };
    reactor.handler_mut().phase_line("ramp");
    // The first tick starts the ramp.
    let _ = reactor.handle().post(());
    if let Err(e) = reactor.run() {
        eprintln!("loadgen: the reactor failed: {e}");
        return ExitCode::FAILURE;
    }
    let load = reactor.handler();
    let seconds = load.measured.as_secs_f64().max(1e-9);
    let summary = Summary {
        protocol: format!("{:?}", load.cli.protocol).to_lowercase(),
        conns: load.cli.conns,
        idle_conns: load.cli.idle_conns,
        seconds,
        size: load.cli.size,
        depth: load.cli.depth,
    };
    if load.cli.json {
        println!("{}", report::json(&summary, &load.tally));
    } else {
        println!("{}", report::human(&summary, &load.tally));
    }
    let complete = load.tally.held == total && load.tally.error_count() == 0;
    if complete {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
