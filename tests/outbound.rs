//! Outbound connections live in the same slab: a connect that succeeds,
//! and one that is refused. (One that times out is in `timeouts.rs`, on a
//! manual clock.)

mod common;

use std::io::Write;
use std::net::TcpListener;

use common::*;
use evloop::{CloseReason, Config, State};

#[test]
fn connect_succeeds_and_carries_data_both_ways() {
    let server = Server::start(Config::default());
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = upstream.local_addr().unwrap();
    let conn = server.exec(move |cx, rec| {
        let id = cx.connect(target).expect("connect");
        rec.quiet.insert(id);
        // Output queued before the connect completes is sent after.
        cx.write(id, b"hello upstream").unwrap();
        id
    });
    let (mut peer, _) = upstream.accept().unwrap();
    peer.set_read_timeout(Some(PATIENCE)).unwrap();
    assert_eq!(read_n(&mut peer, 14), b"hello upstream");
    server.wait_for("on_open", |r| r.opened.contains(&conn));
    assert_eq!(server.exec(move |cx, _| cx.state(conn)), Some(State::Open));
    peer.write_all(b"hello reactor").unwrap();
    server.wait_for("reply", |r| {
        r.received.get(&conn).is_some_and(|v| v == b"hello reactor")
    });
    drop(peer);
    server.wait_for("close", |r| {
        r.reason_of(conn) == Some(CloseReason::PeerClosed)
    });
}

#[test]
fn refused_connect_closes_with_connect_failed() {
    let server = Server::start(Config::default());
    // A port nobody listens on: bind one, then free it.
    let target = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let conn = server.exec(move |cx, _| cx.connect(target).expect("connect"));
    server.wait_for("close", |r| r.reason_of(conn).is_some());
    let rec = server.record();
    assert_eq!(
        rec.reason_of(conn),
        Some(CloseReason::ConnectFailed(
            std::io::ErrorKind::ConnectionRefused
        ))
    );
    assert!(!rec.opened.contains(&conn), "on_open for a failed connect");
}
