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

/// An echo server that flips one bit of the 1,000th byte it returns.
fn corrupting_echo() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut total = 0usize;
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        return;
                    }
                    if total <= 1000 && 1000 < total + n {
                        buf[1000 - total] ^= 1;
                    }
                    total += n;
                    if s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

#[test]
fn loadgen_catches_a_corrupted_byte() {
    let port = corrupting_echo();
    let out = Command::new(example("loadgen"))
        .args([
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--conns",
            "2",
            "--duration",
            "0.5",
        ])
        .args(["--size", "100", "--json"])
        .output()
        .expect("run loadgen");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert!(
        !out.status.success(),
        "a corrupted stream must fail the run"
    );
    assert!(
        report["errors"]["corrupt"].as_u64().unwrap_or(0) >= 1,
        "{report}"
    );
}

#[test]
fn loadgen_counts_http_error_statuses() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        return;
                    }
                    // One answer per request line seen (requests are small).
                    let requests = buf[..n].windows(4).filter(|w| w == b"\r\n\r\n").count();
                    for _ in 0..requests {
                        let reply = b"HTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\nbusy";
                        if s.write_all(reply).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    let out = Command::new(example("loadgen"))
        .args([
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--conns",
            "2",
            "--duration",
            "0.3",
        ])
        .args(["--protocol", "http", "--json"])
        .output()
        .expect("run loadgen");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert!(!out.status.success());
    assert!(
        report["errors"]["http_status"].as_u64().unwrap_or(0) > 0,
        "{report}"
    );
}
