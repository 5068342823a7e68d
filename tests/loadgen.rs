//! The load generator and the C10K demo as processes: a small C10K run
//! completes whole, and the generator catches a server that corrupts a
//! byte or answers HTTP with an error.

mod process;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::thread;

use process::example;

#[test]
fn c10k_small_run_holds_every_connection_and_exits_zero() {
    let out = Command::new(example("c10k"))
        .args([
            "--conns",
            "300",
            "--duration",
            "1",
            "--hold",
            "0.5",
            "--ramp",
            "3000",
        ])
        .output()
        .expect("run c10k");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "c10k failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("connections held   300 / 300"), "{stdout}");
    assert!(stdout.contains("timeouts & errors  none"), "{stdout}");
}

/// A thread-per-connection server whose answer to each read is
/// `reply(bytes read, bytes seen before them)`: a misbehaving peer in a
/// few lines.
fn tiny_server(reply: fn(&[u8], usize) -> Vec<u8>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut seen = 0;
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&reply(&buf[..n], seen)).is_err() {
                        return;
                    }
                    seen += n;
                }
            });
        }
    });
    port
}

/// Echoes, flipping one bit of the 1,000th byte.
fn corrupting_echo(input: &[u8], seen: usize) -> Vec<u8> {
    let mut out = input.to_vec();
    if (seen..seen + input.len()).contains(&1000) {
        out[1000 - seen] ^= 1;
    }
    out
}

/// Answers every request (they are small: one per read at most a few)
/// with 503.
fn busy_http(input: &[u8], _: usize) -> Vec<u8> {
    let requests = input.windows(4).filter(|w| w == b"\r\n\r\n").count();
    b"HTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\nbusy".repeat(requests)
}

/// Runs loadgen with two connections against `port` for a moment;
/// returns its JSON report and whether it exited 0.
fn loadgen(port: u16, extra: &[&str]) -> (serde_json::Value, bool) {
    let out = Command::new(example("loadgen"))
        .args(["--addr", &format!("127.0.0.1:{port}"), "--conns", "2"])
        .args(["--duration", "0.4", "--json"])
        .args(extra)
        .output()
        .expect("run loadgen");
    let report = serde_json::from_slice(&out.stdout).expect("JSON report");
    (report, out.status.success())
}

#[test]
fn loadgen_catches_a_corrupted_byte() {
    let (report, ok) = loadgen(tiny_server(corrupting_echo), &["--size", "100"]);
    assert!(!ok, "a corrupted stream must fail the run");
    assert!(
        report["errors"]["corrupt"].as_u64().unwrap_or(0) >= 1,
        "{report}"
    );
}

#[test]
fn loadgen_counts_http_error_statuses() {
    let (report, ok) = loadgen(tiny_server(busy_http), &["--protocol", "http"]);
    assert!(!ok, "error statuses must fail the run");
    assert!(
        report["errors"]["http_status"].as_u64().unwrap_or(0) > 0,
        "{report}"
    );
}
