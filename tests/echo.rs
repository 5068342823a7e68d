//! Echo round trips over real loopback sockets: many connections at once,
//! small and multi-megabyte messages, every byte checked.

mod common;

use std::io::{Read, Write};
use std::thread;

use common::*;
use evloop::Config;

#[test]
fn small_messages_on_many_connections_come_back_exact() {
    let server = Server::start(Config::default());
    let threads: Vec<_> = (0..32u64)
        .map(|seed| {
            let addr = server.addr;
            thread::spawn(move || {
                let mut s = client(addr);
                for i in 0..50 {
                    round_trip(
                        &mut s,
                        &pattern(seed * 1000 + i, 1 + (i as usize * 37) % 300),
                    );
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    let stats = server.stats();
    assert_eq!(stats.accepted, 32);
    assert_eq!(stats.bytes_in, stats.bytes_out);
}

#[test]
fn multi_megabyte_messages_come_back_exact() {
    let server = Server::start(Config::default());
    let threads: Vec<_> = (0..4u64)
        .map(|seed| {
            let addr = server.addr;
            thread::spawn(move || {
                let data = pattern(seed, 8 << 20);
                let mut s = client(addr);
                let mut writer = s.try_clone().unwrap();
                let sent = data.clone();
                // Write and read at once: the echo comes back while the
                // message is still going out.
                let w = thread::spawn(move || writer.write_all(&sent).unwrap());
                let mut got = vec![0; data.len()];
                s.read_exact(&mut got).unwrap();
                w.join().unwrap();
                assert!(got == data, "connection {seed}: echoed bytes differ");
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
}

#[test]
fn idle_connections_hold_no_buffers() {
    let server = Server::start(Config::default());
    let mut clients: Vec<_> = (0..50).map(|_| client(server.addr)).collect();
    for (i, s) in clients.iter_mut().enumerate() {
        round_trip(s, &pattern(i as u64, 100));
    }
    let stats = server.stats();
    assert_eq!(stats.active, 50);
    assert_eq!(
        stats.buffers_in_use, 0,
        "idle connections keep buffers: {stats}"
    );
}
