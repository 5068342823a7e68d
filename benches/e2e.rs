//! End to end: the echo example driven by the loadgen example over
//! loopback, at 100, 1,000 and 10,000 connections, and 100 busy
//! connections with 10,000 idle ones beside them (what idle neighbours
//! cost the busy). Server on CPU 0, load on CPU 1, as compare.py does.
//!
//! ```sh
//! cargo build --release --examples && cargo bench --bench e2e
//! ```
//!
//! Each case runs `ROUNDS` times, alternating, and prints the median.
//! Not a criterion benchmark: one sample is a 3-second run of two
//! processes, and what matters is the side-by-side table.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const ROUNDS: usize = 3;
const SECONDS: &str = "3";

struct Case {
    name: &'static str,
    conns: usize,
    idle: usize,
}

const CASES: [Case; 5] = [
    Case {
        name: "100",
        conns: 100,
        idle: 0,
    },
    Case {
        name: "1,000",
        conns: 1_000,
        idle: 0,
    },
    Case {
        name: "10,000",
        conns: 10_000,
        idle: 0,
    },
    Case {
        name: "100 alone",
        conns: 100,
        idle: 0,
    },
    Case {
        name: "100 + 10,000 idle",
        conns: 100,
        idle: 10_000,
    },
];

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/examples")
}

fn pinned(cpu: &str, program: PathBuf) -> Command {
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", cpu]).arg(program);
    cmd
}

/// One run: a fresh server, one load; returns (ops/s, p99 us, errors).
fn run(case: &Case, port: u16) -> Option<(f64, f64, u64)> {
    let dir = examples_dir();
    let mut server = pinned("0", dir.join("echo"))
        .args(["--addr", &format!("127.0.0.1:{port}")])
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let end = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() && Instant::now() < end {
        thread::sleep(Duration::from_millis(20));
    }
    let out = pinned("1", dir.join("loadgen"))
        .args([
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--duration",
            SECONDS,
            "--json",
        ])
        .args([
            "--conns",
            &case.conns.to_string(),
            "--idle-conns",
            &case.idle.to_string(),
        ])
        .args(["--ramp", "10000"])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let _ = server.kill();
    let _ = server.wait();
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some((
        r["ops_per_s"].as_f64()?,
        r["latency_us"]["p99"].as_f64()?,
        r["error_total"].as_u64()?,
    ))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` does not: then
    // only check that the binaries are where they should be.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    if !examples_dir().join("loadgen").exists() {
        eprintln!("e2e: build the examples first: cargo build --release --examples");
        std::process::exit(2);
    }
    let mut results: Vec<Vec<(f64, f64, u64)>> = CASES.iter().map(|_| Vec::new()).collect();
    let mut port = 20_000 + (std::process::id() % 5_000) as u16;
    for _ in 0..ROUNDS {
        for (i, case) in CASES.iter().enumerate() {
            port += 1;
            match run(case, port) {
                Some(r) => results[i].push(r),
                None => eprintln!("e2e: {} connections: the run failed", case.name),
            }
        }
    }
    println!(
        "{:<22} {:>12} {:>10} {:>7}",
        "connections", "echoes/s", "p99 us", "errors"
    );
    for (case, rs) in CASES.iter().zip(&results) {
        println!(
            "{:<22} {:>12.0} {:>10.0} {:>7}",
            case.name,
            median(rs.iter().map(|r| r.0).collect()),
            median(rs.iter().map(|r| r.1).collect()),
            rs.iter().map(|r| r.2).sum::<u64>()
        );
    }
    let alone = median(results[3].iter().map(|r| r.0).collect());
    let crowded = median(results[4].iter().map(|r| r.0).collect());
    println!(
        "100 busy beside 10,000 idle / 100 alone: {:.2}",
        crowded / alone
    );
}
