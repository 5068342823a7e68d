//! Settings for one connection over the reactor's `Config`: its own idle
//! and write timeouts and output limits, and an outbound connect from a
//! chosen address with its own timeout. Deadlines run on a manual clock,
//! checked a millisecond early and at the deadline.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use common::*;
use evloop::{CloseReason, Config, ConnId, Connect, SendError};

const MS: Duration = Duration::from_millis(1);

fn two_conns(server: &Server) -> (TcpStream, TcpStream, ConnId, ConnId) {
    let a = client(server.addr);
    server.wait_for("a", |r| r.opened.len() == 1);
    let b = client(server.addr);
    server.wait_for("b", |r| r.opened.len() == 2);
    let opened = server.record().opened.clone();
    (a, b, opened[0], opened[1])
}

fn still_open(server: &Server, conn: ConnId) {
    assert_eq!(server.record().reason_of(conn), None, "{conn} closed");
}

fn closed_for(server: &Server, conn: ConnId, reason: CloseReason) {
    server.wait_for("close", |r| r.reason_of(conn).is_some());
    assert_eq!(server.record().reason_of(conn), Some(reason));
}

#[test]
fn one_connection_gets_a_shorter_idle_timeout_and_another_none() {
    let server = Server::start_clocked(Config {
        idle_timeout: Some(Duration::from_secs(60)),
        ..Config::default()
    });
    let (_a, _b, short, never) = two_conns(&server);
    let (_c, _d, default, _) = {
        let c = client(server.addr);
        server.wait_for("c", |r| r.opened.len() == 3);
        let id = server.record().opened[2];
        (c, (), id, ())
    };
    assert!(server.exec(move |cx, _| cx.set_idle_timeout(short, Some(Duration::from_secs(5)))));
    assert!(server.exec(move |cx, _| cx.set_idle_timeout(never, None)));
    server.advance(Duration::from_secs(5) - MS);
    still_open(&server, short);
    server.advance(MS);
    closed_for(&server, short, CloseReason::IdleTimeout);
    server.advance(Duration::from_secs(55));
    closed_for(&server, default, CloseReason::IdleTimeout);
    server.advance(Duration::from_secs(3600));
    still_open(&server, never);
}

#[test]
fn one_connection_gets_its_own_write_timeout() {
    let server = Server::start_clocked(Config {
        write_timeout: Duration::from_secs(30),
        soft_limit: 16 << 20,
        ..Config::default()
    });
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    socket.connect(&server.addr.into()).unwrap();
    let _stalled: TcpStream = socket.into();
    server.wait_for("open", |r| r.opened.len() == 1);
    let conn = server.record().opened[0];
    assert!(server.exec(move |cx, _| cx.set_write_timeout(conn, Duration::from_secs(2))));
    server.exec(move |cx, _| cx.write(conn, &vec![b'a'; 4 << 20]).unwrap());
    assert!(server.exec(move |cx, _| cx.output_len(conn).unwrap_or(0)) > 0);
    server.advance(Duration::from_secs(2) - MS);
    still_open(&server, conn);
    server.advance(MS);
    closed_for(&server, conn, CloseReason::WriteTimeout);
}

#[test]
fn one_connection_gets_its_own_output_limits() {
    let server = Server::start(Config::default());
    let (_a, _b, small, other) = two_conns(&server);
    assert!(
        !server.exec(move |cx, _| cx.set_output_limits(small, 2000, 1000)),
        "a soft limit above the hard one was taken"
    );
    assert!(server.exec(move |cx, _| cx.set_output_limits(small, 500, 1000)));
    let big = vec![b'x'; 2000];
    let copy = big.clone();
    // Written from outside the connection's dispatch: queued whole first.
    let refused = server.exec(move |cx, _| cx.write(small, &big));
    assert_eq!(refused, Err(SendError::SlowConsumer));
    closed_for(&server, small, CloseReason::SlowConsumer);
    // The other connection keeps the reactor's 16 MiB.
    assert_eq!(server.exec(move |cx, _| cx.write(other, &copy)), Ok(()));
    still_open(&server, other);
}

#[test]
fn a_connect_from_a_chosen_address() {
    let server = Server::start(Config::default());
    let target = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = target.local_addr().unwrap();
    let from: SocketAddr = "127.0.0.2:0".parse().unwrap();
    let conn = server.exec(move |cx, rec| {
        let id = cx.connect_with(
            addr,
            Connect {
                bind: Some(from),
                timeout: None,
            },
        );
        if let Ok(id) = id {
            rec.quiet.insert(id);
        }
        id.map_err(|e| e.kind())
    });
    let conn = conn.expect("connect_with");
    let (_peer, peer_addr) = target.accept().unwrap();
    assert_eq!(peer_addr.ip(), from.ip());
    server.wait_for("open", |r| r.opened.contains(&conn));
}

#[test]
fn a_connect_with_its_own_timeout() {
    let target = unanswered();
    let addr = target.addr;
    let server = Server::start_clocked(Config {
        connect_timeout: Duration::from_secs(10),
        ..Config::default()
    });
    let conn = server.exec(move |cx, _| {
        cx.connect_with(
            addr,
            Connect {
                bind: None,
                timeout: Some(Duration::from_secs(1)),
            },
        )
        .expect("connect_with")
    });
    server.advance(Duration::from_secs(1) - MS);
    still_open(&server, conn);
    server.advance(MS);
    closed_for(&server, conn, CloseReason::ConnectTimeout);
}
