//! Example 8 of 11: the C10K demo, 10,000 connections on one reactor
//! thread, measured.
//!
//! ```sh
//! cargo run --release --example c10k                 # 10,000 connections
//! cargo run --release --example c10k -- --sweep      # 100 .. 19,000, with a chart
//! ```
//!
//! What it teaches: what one thread holds, measured honestly. This
//! process runs the echo server (one reactor thread); a child process
//! runs the load generator (`examples/loadgen`), because each process may
//! hold at most 20,000 descriptors on this machine and 10,000 connections
//! need 10,000 on each side. The load ramps up every connection, keeps all
//! of them busy for `--duration` seconds, then holds them quiet for
//! `--hold` seconds while this process reads its own memory. The report:
//! connections held, throughput, latency percentiles, server memory per
//! connection (busy and idle), errors, and the reactor's own counters.
//!
//! Exits non-zero, saying why, if any connection failed or any byte
//! differed. `--threads N` serves them with N reactors (`evloop::Server`)
//! instead of one, and adds each one's counters to the report.
//!
//! Read next: examples/embed.rs (example 9), the reactor as one part of
//! a larger program; docs/BENCHMARKS.md, this demo's figures and every other
//! measurement, each with the command that made it; or go back to
//! examples/raw_echo.rs (example 1) and the guide (`evloop::guide`,
//! `docs/guide/`) for why each piece is there.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use clap::Parser;
use evloop::{Config, ConnId, Context, Handler, Server, ServerHandle, ServerStats};
use serde_json::Value;

/// The echo server under test: `examples/echo.rs`'s protocol.
struct Echo;

impl Handler for Echo {
    type Message = ();

    fn on_data(&mut self, cx: &mut Context<'_>, conn: ConnId, input: &[u8]) -> usize {
        let _ = cx.write(conn, input);
        input.len()
    }
}

#[derive(Parser, Debug)]
#[command(about = "C10K: 10,000 connections on one evloop thread, measured")]
struct Cli {
    /// Connections.
    #[arg(long, default_value_t = 10_000)]
    conns: usize,
    /// Seconds with every connection busy.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds with every connection open and quiet, for the idle memory.
    #[arg(long, default_value_t = 3.0)]
    hold: f64,
    /// Connections opened per second.
    #[arg(long, default_value_t = 5_000)]
    ramp: u64,
    /// Bytes per echo message.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Messages in flight per connection.
    #[arg(long, default_value_t = 1)]
    depth: usize,
    /// Run 100, 1,000, 5,000, 10,000 and as many connections as the
    /// open-file limit allows, and draw throughput and p99 latency.
    #[arg(long)]
    sweep: bool,
    /// Where --sweep writes its chart.
    #[arg(long, default_value = "c10k-sweep.svg")]
    svg: PathBuf,
    /// Reactors serving the connections, one per thread (`evloop::Server`;
    /// 1, the demo's point, by default). On this 2-core machine the load
    /// generator needs a core too.
    #[arg(long, default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=evloop::server::MAX_THREADS as i64))]
    threads: u16,
}

/// Descriptors each side keeps for itself besides connections.
const FD_MARGIN: usize = 200;

/// Loopback addresses the server listens on, all on one port: 127.0.0.1
/// to 127.0.0.LISTEN_ADDRS. A client has about 28,000 ephemeral ports per
/// destination address (32768-60999), and every connection it closes
/// holds its port in TIME_WAIT for 60 s. A sweep's earlier points leave
/// 16,100 of them, so its last point (19,000 connections) could not get
/// ports from one address; four addresses give it four times the room.
const LISTEN_ADDRS: u8 = 4;

/// One run's figures.
struct Point {
    conns: usize,
    report: Value,
    rss_busy: usize,
    rss_idle: usize,
    loadgen_ok: bool,
}

fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// The loadgen binary beside this one.
fn loadgen_path() -> PathBuf {
    let mut path = std::env::current_exe().unwrap_or_default();
    path.set_file_name("loadgen");
    path
}

/// Runs one load against `addr` and measures this process meanwhile.
fn run_point(cli: &Cli, target: &str, conns: usize, duration: f64) -> Result<Point, String> {
    let mut child = Command::new(loadgen_path())
        .args(["--addr", target, "--conns", &conns.to_string()])
        .args([
            "--ramp",
            &cli.ramp.to_string(),
            "--duration",
            &duration.to_string(),
        ])
        .args([
            "--hold",
            &cli.hold.to_string(),
            "--size",
            &cli.size.to_string(),
        ])
        .args(["--depth", &cli.depth.to_string(), "--json", "--phases"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| {
            format!(
                "cannot start {}: {e} (build the examples first)",
                loadgen_path().display()
            )
        })?;
    let stdout = child.stdout.take().ok_or("no stdout from loadgen")?;
    let rss_busy = Arc::new(AtomicUsize::new(0));
    let (mut rss_idle, mut report) = (0, None);
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| format!("reading loadgen: {e}"))?;
        match line.as_str() {
            // Halfway through the busy phase: memory with every connection
            // in use.
            "phase active" => {
                let busy = Arc::clone(&rss_busy);
                thread::spawn(move || {
                    thread::sleep(Duration::from_secs_f64(duration / 2.0));
                    busy.store(rss_bytes(), Ordering::Relaxed);
                });
            }
            // Quiet: let in-flight echoes land, then read idle memory.
            "phase hold" => {
                thread::sleep(Duration::from_secs_f64((cli.hold / 2.0).min(1.0)));
                rss_idle = rss_bytes();
            }
            l if l.starts_with('{') => {
                report = Some(
                    serde_json::from_str::<Value>(l).map_err(|e| format!("loadgen report: {e}"))?,
                );
            }
            _ => {}
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for loadgen: {e}"))?;
    let report = report.ok_or("loadgen printed no report")?;
    Ok(Point {
        conns,
        report,
        rss_busy: rss_busy.load(Ordering::Relaxed),
        rss_idle,
        loadgen_ok: status.success(),
    })
}

fn per_conn(rss: usize, base: usize, conns: usize) -> f64 {
    rss.saturating_sub(base) as f64 / conns as f64
}

fn print_point(p: &Point, base: usize, stats: &ServerStats) {
    let r = &p.report;
    let f = |path: &[&str]| -> f64 {
        path.iter()
            .fold(r, |v, k| &v[*k])
            .as_f64()
            .unwrap_or(f64::NAN)
    };
    let errors = r["errors"].as_object().map_or(String::from("?"), |e| {
        if e.is_empty() {
            "none".into()
        } else {
            e.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        }
    });
    match stats.shards.len() {
        0 | 1 => println!("C10K: {} connections on one reactor thread", p.conns),
        n => println!("C10K: {} connections on {n} reactor threads", p.conns),
    }
    println!("  connections held   {} / {}", f(&["held"]), p.conns);
    println!(
        "  throughput         {:.0} echoes/s, {:.2} MB/s over {:.1} s",
        f(&["ops_per_s"]),
        f(&["mb_per_s"]),
        f(&["seconds"])
    );
    println!(
        "  latency            p50 {:.0} us  p90 {:.0} us  p99 {:.0} us  p99.9 {:.0} us  max {:.0} us",
        f(&["latency_us", "p50"]),
        f(&["latency_us", "p90"]),
        f(&["latency_us", "p99"]),
        f(&["latency_us", "p99_9"]),
        f(&["latency_us", "max"])
    );
    println!(
        "  server memory      {:.0} bytes/conn busy, {:.0} bytes/conn idle (RSS over the {:.1} MiB baseline)",
        per_conn(p.rss_busy, base, p.conns),
        per_conn(p.rss_idle, base, p.conns),
        base as f64 / 1048576.0
    );
    println!("  timeouts & errors  {errors}");
    println!("  bytes verified     {}", f(&["bytes_verified"]));
    println!("  server loop        {}", stats.total);
    if stats.shards.len() > 1 {
        for (i, shard) in stats.shards.iter().enumerate() {
            println!("    shard {i}          {shard}");
        }
    }
}

/// Whether the run was whole: every connection held, no error, the
/// loadgen satisfied.
fn verdict(p: &Point) -> Result<(), String> {
    let held = p.report["held"].as_u64().unwrap_or(0) as usize;
    let errors = p.report["error_total"].as_u64().unwrap_or(u64::MAX);
    if held < p.conns {
        return Err(format!("only {held} of {} connections were held", p.conns));
    }
    if errors > 0 {
        return Err(format!("{errors} errors (see above)"));
    }
    if !p.loadgen_ok {
        return Err("the load generator reported failure".into());
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let limit = evloop::sys::raise_fd_limit().unwrap_or(1024) as usize;
    let most = limit.saturating_sub(FD_MARGIN);
    if !cli.sweep && cli.conns > most {
        eprintln!("c10k: {} connections need more descriptors than the limit of {limit} allows (at most {most})", cli.conns);
        return ExitCode::from(2);
    }

    // The server: one reactor thread in this process.
    let config = Config {
        max_conns: most,
        ..Config::default()
    };
    let (target, handle, server) = match start_server(config, usize::from(cli.threads)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("c10k: starting the server: {e}");
            return ExitCode::FAILURE;
        }
    };
    thread::sleep(Duration::from_millis(100));
    let base = rss_bytes();

    let result = if cli.sweep {
        sweep(&cli, &target, most, base)
    } else {
        run_point(&cli, &target, cli.conns, cli.duration).map(|p| vec![p])
    };
    handle.shutdown();
    let stats = server.join().unwrap_or_default();
    match result {
        Ok(points) => {
            let mut failed = Vec::new();
            for p in &points {
                if !cli.sweep {
                    print_point(p, base, &stats);
                }
                if let Err(why) = verdict(p) {
                    failed.push(format!("{} connections: {why}", p.conns));
                }
            }
            if failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                eprintln!("c10k: FAILED: {}", failed.join("; "));
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("c10k: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The loadgen's target (an address range), the server's handle, the
/// thread waiting for it.
type Running = (String, ServerHandle<()>, thread::JoinHandle<ServerStats>);

/// The echo server: `threads` reactors (one, by default), each listening
/// on 127.0.0.1 to 127.0.0.LISTEN_ADDRS on one port.
fn start_server(config: Config, threads: usize) -> std::io::Result<Running> {
    // One free port for every address: asked of the kernel on the first
    // address, then bound again by the server (SO_REUSEADDR).
    let port = std::net::TcpListener::bind(("127.0.0.1", 0))?
        .local_addr()?
        .port();
    let mut builder = Server::builder(config).threads(threads);
    for last in 1..=LISTEN_ADDRS {
        builder = builder.listen(SocketAddr::from(([127, 0, 0, last], port)));
    }
    let server = builder.start(|_shard| Echo)?;
    let target = format!("127.0.0.1-127.0.0.{LISTEN_ADDRS}:{port}");
    let handle = server.handle();
    let thread = thread::spawn(move || match server.run() {
        Ok(stats) => stats,
        Err(e) => {
            eprintln!("c10k: the server failed: {e}");
            ServerStats::default()
        }
    });
    Ok((target, handle, thread))
}

/// Runs each connection count for a shorter period and draws the chart.
fn sweep(cli: &Cli, target: &str, most: usize, base: usize) -> Result<Vec<Point>, String> {
    let mut counts = vec![100, 1_000, 5_000, 10_000];
    let top = most / 1000 * 1000;
    if top > 10_000 {
        counts.push(top);
    }
    let mut points = Vec::new();
    println!(
        "{:>8} {:>12} {:>10} {:>10} {:>12} {:>8}",
        "conns", "echoes/s", "p50 us", "p99 us", "idle B/conn", "errors"
    );
    for conns in counts {
        let p = run_point(cli, target, conns, cli.duration.min(5.0))?;
        let r = &p.report;
        println!(
            "{:>8} {:>12.0} {:>10.0} {:>10.0} {:>12.0} {:>8}",
            conns,
            r["ops_per_s"].as_f64().unwrap_or(0.0),
            r["latency_us"]["p50"].as_f64().unwrap_or(0.0),
            r["latency_us"]["p99"].as_f64().unwrap_or(0.0),
            per_conn(p.rss_idle, base, conns),
            r["error_total"]
        );
        points.push(p);
    }
    std::fs::write(&cli.svg, chart(&points))
        .map_err(|e| format!("writing {}: {e}", cli.svg.display()))?;
    println!("chart: {}", cli.svg.display());
    Ok(points)
}

/// Throughput (left axis, bars' line) and p99 latency (right axis) against
/// connections on a log scale, as a self-contained SVG.
fn chart(points: &[Point]) -> String {
    let (w, h, left, right, top, bottom) = (720.0, 400.0, 80.0, 80.0, 40.0, 60.0);
    let plot_w = w - left - right;
    let plot_h = h - top - bottom;
    let ops: Vec<f64> = points
        .iter()
        .map(|p| p.report["ops_per_s"].as_f64().unwrap_or(0.0))
        .collect();
    let p99: Vec<f64> = points
        .iter()
        .map(|p| p.report["latency_us"]["p99"].as_f64().unwrap_or(0.0) / 1000.0)
        .collect();
    let xs: Vec<f64> = points.iter().map(|p| (p.conns as f64).log10()).collect();
    let (x0, x1) = (
        xs.first().copied().unwrap_or(2.0),
        xs.last().copied().unwrap_or(4.0).max(2.1),
    );
    let ops_max = nice(ops.iter().cloned().fold(0.0, f64::max));
    let p99_max = nice(p99.iter().cloned().fold(0.0, f64::max));
    let x = |v: f64| left + (v - x0) / (x1 - x0) * plot_w;
    let y = |v: f64, max: f64| top + plot_h - v / max * plot_h;
    let line = |vals: &[f64], max: f64| {
        xs.iter()
            .zip(vals)
            .map(|(&a, &b)| format!("{:.1},{:.1}", x(a), y(b, max)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut svg = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' font-family='sans-serif' font-size='12'>\n\
         <rect width='100%' height='100%' fill='white'/>\n\
         <text x='{}' y='22' text-anchor='middle' font-size='15'>evloop echo: throughput and p99 latency vs connections (one thread)</text>\n",
        w / 2.0
    );
    for i in 0..=4 {
        let f = i as f64 / 4.0;
        let yy = top + plot_h - f * plot_h;
        svg += &format!(
            "<line x1='{left}' y1='{yy:.1}' x2='{:.1}' y2='{yy:.1}' stroke='#ddd'/>\n\
             <text x='{:.1}' y='{:.1}' text-anchor='end' fill='#1f77b4'>{:.0}k</text>\n\
             <text x='{:.1}' y='{:.1}' fill='#d62728'>{:.1}</text>\n",
            left + plot_w,
            left - 6.0,
            yy + 4.0,
            ops_max * f / 1000.0,
            left + plot_w + 6.0,
            yy + 4.0,
            p99_max * f
        );
    }
    for (p, &xv) in points.iter().zip(&xs) {
        svg += &format!(
            "<text x='{:.1}' y='{:.1}' text-anchor='middle'>{}</text>\n",
            x(xv),
            top + plot_h + 18.0,
            p.conns
        );
    }
    svg += &format!(
        "<text x='{:.1}' y='{:.1}' text-anchor='middle'>connections (log scale)</text>\n\
         <text x='20' y='{:.1}' fill='#1f77b4' transform='rotate(-90 20 {:.1})' text-anchor='middle'>echoes per second</text>\n\
         <text x='{:.1}' y='{:.1}' fill='#d62728' transform='rotate(90 {:.1} {:.1})' text-anchor='middle'>p99 latency (ms)</text>\n\
         <polyline fill='none' stroke='#1f77b4' stroke-width='2.5' points='{}'/>\n\
         <polyline fill='none' stroke='#d62728' stroke-width='2.5' stroke-dasharray='6 4' points='{}'/>\n",
        left + plot_w / 2.0,
        h - 20.0,
        top + plot_h / 2.0,
        top + plot_h / 2.0,
        w - 20.0,
        top + plot_h / 2.0,
        w - 20.0,
        top + plot_h / 2.0,
        line(&ops, ops_max),
        line(&p99, p99_max)
    );
    for (i, &xv) in xs.iter().enumerate() {
        svg += &format!(
            "<circle cx='{:.1}' cy='{:.1}' r='4' fill='#1f77b4'/><circle cx='{:.1}' cy='{:.1}' r='4' fill='#d62728'/>\n",
            x(xv),
            y(ops[i], ops_max),
            x(xv),
            y(p99[i], p99_max)
        );
    }
    svg + "</svg>\n"
}

/// A round axis maximum at or above `v`.
fn nice(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|&c| c >= v)
        .unwrap_or(10.0 * mag)
}
