//! A peer that resets the connection in the middle of a large write: the
//! server closes it with `Reset` and goes on serving others.

mod common;

use std::io::Read;
use std::time::Duration;

use common::*;
use evloop::{CloseReason, Config};

#[test]
fn reset_during_large_write_closes_only_that_connection() {
    let server = Server::start_with(Config::default(), false);
    let mut victim = client(server.addr);
    server.wait_for("open", |r| r.opened.len() == 1);
    let conn = server.record().opened[0];
    // 8 MiB queued for a client that reads a little and then resets.
    let big = pattern(1, 8 << 20);
    server.exec(move |cx, _| cx.write(conn, &big).unwrap());
    let mut buf = vec![0; 4096];
    victim.read_exact(&mut buf).unwrap();
    // SO_LINGER 0: close sends RST.
    socket2::SockRef::from(&victim)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(victim);
    server.wait_for("close", |r| r.reason_of(conn).is_some());
    assert_eq!(server.record().reason_of(conn), Some(CloseReason::Reset));
    // Others are unaffected.
    let mut other = client(server.addr);
    server.exec(|_, rec| rec.quiet.clear());
    round_trip_via_probe(&server, &mut other);
}

/// The probe here does not echo; queue an answer through the context.
fn round_trip_via_probe(server: &Server, s: &mut std::net::TcpStream) {
    server.wait_for("second open", |r| r.opened.len() == 2);
    let conn = server.record().opened[1];
    server.exec(move |cx, _| cx.write(conn, b"still serving").unwrap());
    assert_eq!(read_n(s, 13), b"still serving");
}
