//! Connecting by host name: the system resolver on the reactor's resolver
//! thread, the answer posted back, output queued meanwhile sent once
//! connected; names that do not resolve, names refused before asking,
//! and a connection closed while its name resolves.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpListener;

use common::{Server, PATIENCE};
use evloop::{CloseReason, Config, Connect};

#[test]
fn localhost_resolves_and_the_connection_talks_both_ways() {
    let server = Server::start_with(Config::default(), false);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let id = server.exec(move |cx, rec| {
        let id = cx
            .connect_host("localhost", port, Connect::default())
            .expect("connect_host");
        rec.quiet.insert(id);
        // Queued before the name is even resolved.
        cx.write(id, b"ping").unwrap();
        id
    });
    let (mut peer, _) = listener.accept().unwrap();
    peer.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut buf = [0; 4];
    peer.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping");
    peer.write_all(b"pong").unwrap();
    server.wait_for("the answer", |r| {
        r.received.get(&id).is_some_and(|b| b == b"pong")
    });
    let addr = server.exec(move |cx, _| cx.peer_addr(id));
    assert_eq!(addr, Some(listener.local_addr().unwrap()));
    assert!(server.record().opened.contains(&id));
}

#[test]
fn an_address_written_out_needs_no_lookup() {
    let server = Server::start_with(Config::default(), false);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let id = server.exec(move |cx, rec| {
        let id = cx
            .connect_host("127.0.0.1", port, Connect::default())
            .unwrap();
        rec.quiet.insert(id);
        // Connecting to an address has a peer address from the start.
        assert!(cx.peer_addr(id).is_some());
        id
    });
    let _peer = listener.accept().unwrap();
    server.wait_for("on_open", |r| r.opened.contains(&id));
}

#[test]
fn a_name_that_does_not_resolve_fails_the_connect() {
    let server = Server::start_with(Config::default(), false);
    // `.invalid` never resolves (RFC 6761).
    let id = server.exec(|cx, _| {
        let id = cx
            .connect_host("no-such-host.invalid", 80, Connect::default())
            .unwrap();
        // No address yet: nothing to report.
        assert_eq!(cx.peer_addr(id), None);
        id
    });
    server.wait_for("the close", |r| r.reason_of(id).is_some());
    let reason = server.record().reason_of(id);
    assert!(
        matches!(reason, Some(CloseReason::ConnectFailed(_))),
        "{reason:?}"
    );
    assert!(!server.record().opened.contains(&id));
}

#[test]
fn a_name_that_resolves_to_nobody_listening_is_refused() {
    let server = Server::start_with(Config::default(), false);
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let id = server.exec(move |cx, _| {
        cx.connect_host("localhost", port, Connect::default())
            .unwrap()
    });
    server.wait_for("the close", |r| r.reason_of(id).is_some());
    assert_eq!(
        server.record().reason_of(id),
        Some(CloseReason::ConnectFailed(ErrorKind::ConnectionRefused))
    );
}

#[test]
fn names_that_cannot_work_are_refused_before_asking() {
    let server = Server::start_with(Config::default(), false);
    let kinds = server.exec(|cx, _| {
        let long = "a".repeat(254);
        ["", long.as_str(), "bad\0name"].map(|host| {
            cx.connect_host(host, 80, Connect::default())
                .map(|_| ())
                .unwrap_err()
                .kind()
        })
    });
    assert_eq!(kinds, [ErrorKind::InvalidInput; 3]);
    assert_eq!(server.stats().connects, 0, "no connection was made");
}

#[test]
fn a_connection_closed_while_resolving_stays_closed() {
    let server = Server::start_with(Config::default(), false);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (first, second) = server.exec(move |cx, rec| {
        let first = cx
            .connect_host("localhost", port, Connect::default())
            .unwrap();
        cx.close(first);
        // The next connection may take the freed slot; the late answer
        // for the first must not reach it.
        let second = cx.connect(([127, 0, 0, 1], port).into()).unwrap();
        rec.quiet.insert(second);
        (first, second)
    });
    server.wait_for("both settled", |r| {
        r.reason_of(first).is_some() && r.opened.contains(&second)
    });
    assert_eq!(server.record().reason_of(first), Some(CloseReason::Closed));
    // Let the lookup's answer arrive and be dropped.
    std::thread::sleep(std::time::Duration::from_millis(100));
    server.exec(|_, _| ());
    let (mut only, _) = listener.accept().unwrap();
    listener.set_nonblocking(true).unwrap();
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == ErrorKind::WouldBlock),
        "the closed connection never connected"
    );
    only.set_read_timeout(Some(PATIENCE)).unwrap();
    server.exec(move |cx, _| cx.write(second, b"still mine").unwrap());
    let mut buf = [0; 10];
    only.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"still mine");
}
