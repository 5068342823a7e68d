//! The reactor as a guest: nested in a host program's own poll loop (its
//! descriptor and `next_wait`), and admission changed from another thread
//! through the `Handle` while it runs.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use common::*;
use evloop::{Cidr, Config, RejectReason};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

#[test]
fn a_host_loop_waits_on_the_reactors_descriptor_and_drives_it() {
    let record = std::sync::Arc::new(std::sync::Mutex::new(Record::default()));
    let probe = Probe {
        echo: true,
        lines: false,
        record,
    };
    let mut reactor = evloop::Reactor::new(probe, Config::default()).unwrap();
    let listener = reactor.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = reactor.listener_addr(listener).unwrap();
    // The host: its own poll, with the reactor's descriptor in it.
    let mut host = Poll::new().unwrap();
    let fd = reactor.as_raw_fd();
    host.registry()
        .register(&mut SourceFd(&fd), Token(7), Interest::READABLE)
        .unwrap();
    let mut events = Events::with_capacity(16);
    let mut c = TcpStream::connect(addr).unwrap();
    c.write_all(b"nested").unwrap();
    c.set_nonblocking(true).unwrap();
    let mut got = Vec::new();
    let mut woken = 0;
    let end = Instant::now() + PATIENCE;
    while got != b"nested" {
        assert!(Instant::now() < end, "no echo through the host loop");
        let wait = reactor.next_wait().map_or(Duration::from_millis(100), |w| {
            w.min(Duration::from_millis(100))
        });
        host.poll(&mut events, Some(wait)).unwrap();
        woken += events.iter().filter(|e| e.token() == Token(7)).count();
        reactor.run_once(Some(Duration::ZERO)).unwrap();
        let mut buf = [0; 64];
        if let Ok(n) = c.read(&mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
    }
    assert!(woken > 0, "the reactor's descriptor never woke the host");
    // With nothing to do and no timer due soon, the host may sleep.
    assert_ne!(reactor.next_wait(), Some(Duration::ZERO));
}

/// Two turns of the reactor have run since this call began.
fn turned(server: &Server) {
    server.exec(|_, _| ());
    server.exec(|_, _| ());
}

#[test]
fn max_conns_changes_while_running() {
    let server = Server::start(Config::default());
    assert!(server.handle.set_max_conns(1));
    turned(&server);
    let mut a = client(server.addr);
    round_trip(&mut a, b"first");
    let mut b = client(server.addr);
    b.write_all(b"second").unwrap();
    turned(&server);
    assert_eq!(server.record().opened.len(), 1, "accepted past max_conns");
    // Raised: the listener held at the old limit opens at once.
    assert!(server.handle.set_max_conns(2));
    server.wait_for("the second", |r| r.opened.len() == 2);
    assert_eq!(read_n(&mut b, 6), b"second");
    // Zero is taken as one: a reactor never stops accepting this way.
    assert!(server.handle.set_max_conns(0));
}

#[test]
fn deny_and_allow_lists_change_while_running() {
    let server = Server::start(Config::default());
    let loopback: Cidr = "127.0.0.0/8".parse().unwrap();
    assert!(server.handle.set_deny(vec![loopback]));
    turned(&server);
    let mut denied = client(server.addr);
    let mut buf = [0; 1];
    assert!(
        matches!(denied.read(&mut buf), Ok(0) | Err(_)),
        "a denied client was served"
    );
    assert_eq!(server.stats().rejected_for(RejectReason::Denied), 1);
    // Denied no longer, but not on the allow list either.
    assert!(server.handle.set_deny(Vec::new()));
    assert!(server.handle.set_allow(vec!["10.0.0.0/8".parse().unwrap()]));
    turned(&server);
    let mut other = client(server.addr);
    assert!(matches!(other.read(&mut buf), Ok(0) | Err(_)));
    assert_eq!(server.stats().rejected_for(RejectReason::NotAllowed), 1);
    assert!(server.handle.set_allow(vec![loopback]));
    turned(&server);
    let mut allowed = client(server.addr);
    round_trip(&mut allowed, b"in");
}

#[test]
fn a_per_address_cap_set_while_running_counts_from_then_on() {
    let server = Server::start(Config::default());
    let mut before = client(server.addr);
    round_trip(&mut before, b"uncounted");
    assert!(server.handle.set_max_per_ip(Some(1)));
    turned(&server);
    let mut first = client(server.addr);
    round_trip(&mut first, b"counted");
    let mut second = client(server.addr);
    let mut buf = [0; 1];
    assert!(matches!(second.read(&mut buf), Ok(0) | Err(_)));
    assert_eq!(server.stats().rejected_for(RejectReason::PerIpLimit), 1);
    assert!(server.handle.set_max_per_ip(None));
    turned(&server);
    let mut third = client(server.addr);
    round_trip(&mut third, b"no cap");
}
