//! The idle timeout closes a quiet connection, says why, and leaves busy
//! ones alone.

mod common;

use std::io::{Read, Write};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use evloop::{CloseReason, Config};

fn config(idle_ms: u64) -> Config {
    Config {
        idle_timeout: Some(Duration::from_millis(idle_ms)),
        ..Config::default()
    }
}

#[test]
fn quiet_connection_is_closed_with_idle_timeout() {
    let server = Server::start(config(200));
    let mut s = client(server.addr);
    let start = Instant::now();
    let mut buf = [0; 1];
    assert_eq!(s.read(&mut buf).expect("read"), 0, "expected EOF");
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(190),
        "closed early: {waited:?}"
    );
    server.wait_for("close", |r| !r.closed.is_empty());
    assert_eq!(server.record().closed[0].1, CloseReason::IdleTimeout);
    assert_eq!(server.stats().closed_for(CloseReason::IdleTimeout), 1);
}

#[test]
fn activity_keeps_a_connection_open() {
    let server = Server::start(config(300));
    let mut s = client(server.addr);
    // Ten round trips 100 ms apart: a full second, over three timeouts.
    for i in 0..10 {
        round_trip(&mut s, &pattern(i, 10));
        thread::sleep(Duration::from_millis(100));
    }
    assert!(server.record().closed.is_empty(), "closed while active");
}

#[test]
fn no_idle_timeout_keeps_connections() {
    let server = Server::start(Config {
        idle_timeout: None,
        ..Config::default()
    });
    let mut s = client(server.addr);
    thread::sleep(Duration::from_millis(300));
    round_trip(&mut s, b"still here");
    s.write_all(b"x").unwrap();
    assert!(server.record().closed.is_empty());
}
