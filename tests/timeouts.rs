//! Every connection deadline, with time as an input: the reactor reads a
//! [`ManualClock`](evloop::ManualClock) and the test moves it, so a 60 s
//! idle timeout is checked to the millisecond without sleeping, and no
//! test here can flake on a slow machine. Each deadline is checked on
//! both sides: a millisecond early nothing happens; at the deadline the
//! connection closes with its reason.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;
use evloop::{CloseReason, Config, ConnId};

const MS: Duration = Duration::from_millis(1);

/// A client with a small receive window, so an answer it does not read
/// stays mostly in the server's output buffer.
fn stalled_client(addr: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    socket.connect(&addr.into()).unwrap();
    let s: TcpStream = socket.into();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s
}

/// The server's one connection, once it is open.
fn the_conn(server: &Server) -> ConnId {
    server.wait_for("open", |r| r.opened.len() == 1);
    server.record().opened[0]
}

/// Queues `n` bytes for `conn` from the reactor thread, and waits until
/// the socket has refused some of them.
fn queue_unread(server: &Server, conn: ConnId, n: usize) {
    server.exec(move |cx, _| cx.write(conn, &vec![b'a'; n]).expect("write"));
    let waiting = server.exec(move |cx, _| cx.output_len(conn).unwrap_or(0));
    assert!(waiting > 0, "the socket took all {n} bytes");
}

/// Reads until EOF or an error: what a client sees at the end.
fn read_end(s: &mut TcpStream) -> Result<usize, ErrorKind> {
    let mut buf = vec![0; 64 * 1024];
    let mut total = 0;
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => total += n,
            Err(e) => return Err(e.kind()),
        }
    }
}

/// The deadline `after` from now, checked on both sides: a millisecond
/// early `conn` is still open; at the deadline it closes for `reason`.
fn closes_at(server: &Server, conn: ConnId, after: Duration, reason: CloseReason) {
    server.advance(after - MS);
    assert_eq!(server.record().reason_of(conn), None, "closed early");
    server.advance(MS);
    server.wait_for("close", |r| r.reason_of(conn).is_some());
    assert_eq!(server.record().reason_of(conn), Some(reason));
}

fn idle(after: Duration) -> Config {
    Config {
        idle_timeout: Some(after),
        ..Config::default()
    }
}

#[test]
fn idle_a_quiet_connection_is_closed_at_its_idle_timeout() {
    let server = Server::start_clocked(idle(Duration::from_secs(60)));
    let mut s = client(server.addr);
    let conn = the_conn(&server);
    closes_at(
        &server,
        conn,
        Duration::from_secs(60),
        CloseReason::IdleTimeout,
    );
    assert_eq!(server.stats().closed_for(CloseReason::IdleTimeout), 1);
    // An idle close is graceful: FIN, not RST.
    assert_eq!(read_end(&mut s), Ok(0));
}

#[test]
fn idle_activity_keeps_a_connection_open() {
    let server = Server::start_clocked(idle(Duration::from_millis(300)));
    let mut s = client(server.addr);
    let conn = the_conn(&server);
    // Ten round trips 100 ms apart: a full second, over three timeouts.
    for i in 0..10 {
        round_trip(&mut s, &pattern(i, 10));
        server.advance(Duration::from_millis(100));
    }
    assert!(server.record().closed.is_empty(), "closed while active");
    // The lazy re-arm counts from the last byte, not from the open.
    closes_at(
        &server,
        conn,
        Duration::from_millis(200),
        CloseReason::IdleTimeout,
    );
}

#[test]
fn idle_no_timeout_keeps_connections() {
    let server = Server::start_clocked(Config {
        idle_timeout: None,
        ..Config::default()
    });
    let mut s = client(server.addr);
    the_conn(&server);
    server.advance(Duration::from_secs(24 * 3600));
    round_trip(&mut s, b"still here");
    s.write_all(b"x").unwrap();
    assert!(server.record().closed.is_empty());
}

#[test]
fn write_stall_output_without_progress_is_reset_at_the_write_timeout() {
    let config = Config {
        write_timeout: Duration::from_secs(30),
        // Only the write timeout is under test: the soft limit never
        // starts its clock.
        soft_limit: 16 << 20,
        ..Config::default()
    };
    let server = Server::start_clocked(config);
    let mut s = stalled_client(server.addr);
    let conn = the_conn(&server);
    queue_unread(&server, conn, 4 << 20);
    closes_at(
        &server,
        conn,
        Duration::from_secs(30),
        CloseReason::WriteTimeout,
    );
    // Output that will never be delivered ends with RST.
    assert_eq!(read_end(&mut s), Err(ErrorKind::ConnectionReset));
}

#[test]
fn soft_limit_output_above_it_past_the_grace_is_a_slow_consumer() {
    let config = Config {
        soft_limit: 1 << 20,
        soft_grace: Duration::from_secs(10),
        write_timeout: Duration::from_secs(30),
        ..Config::default()
    };
    let server = Server::start_clocked(config);
    let mut s = stalled_client(server.addr);
    let conn = the_conn(&server);
    // Enough that what the socket buffers cannot take stays above the
    // soft limit.
    queue_unread(&server, conn, 8 << 20);
    let waiting = server.exec(move |cx, _| cx.output_len(conn).unwrap_or(0));
    assert!(waiting > 1 << 20, "only {waiting} bytes wait");
    closes_at(
        &server,
        conn,
        Duration::from_secs(10),
        CloseReason::SlowConsumer,
    );
    assert_eq!(read_end(&mut s), Err(ErrorKind::ConnectionReset));
}

#[test]
fn linger_a_peer_that_never_sends_its_fin_is_let_go_at_the_linger_timeout() {
    let server = Server::start_clocked(Config::default());
    let mut s = client(server.addr);
    let conn = the_conn(&server);
    round_trip(&mut s, b"bye");
    // Closed with nothing left to write: our FIN goes, and the connection
    // lingers, reading until the peer's FIN (which never comes).
    server.exec(move |cx, _| cx.close(conn));
    let state = server.exec(move |cx, _| cx.state(conn));
    assert_eq!(state, Some(evloop::State::Lingering(CloseReason::Closed)));
    assert_eq!(read_end(&mut s), Ok(0), "our FIN");
    closes_at(&server, conn, evloop::LINGER_TIMEOUT, CloseReason::Closed);
}

#[test]
fn connect_an_unanswered_connect_times_out() {
    let target = unanswered();
    let server = Server::start_clocked(Config {
        connect_timeout: Duration::from_secs(10),
        ..Config::default()
    });
    let addr = target.addr;
    let conn = server.exec(move |cx, _| cx.connect(addr).expect("connect"));
    closes_at(
        &server,
        conn,
        Duration::from_secs(10),
        CloseReason::ConnectTimeout,
    );
    drop(target);
}

/// Sets a timer when the reactor starts, and records what fires.
#[derive(Default)]
struct Ticker {
    started: u32,
    fired: Vec<u64>,
}

impl evloop::Handler for Ticker {
    type Message = ();

    fn on_data(&mut self, _: &mut evloop::Context<'_>, _: ConnId, input: &[u8]) -> usize {
        input.len()
    }

    fn on_start(&mut self, cx: &mut evloop::Context<'_>) {
        self.started += 1;
        cx.set_timer(Duration::from_secs(1), 7);
    }

    fn on_timer(&mut self, _: &mut evloop::Context<'_>, token: u64) {
        self.fired.push(token);
    }
}

#[test]
fn on_start_runs_once_and_its_timer_fires_on_time() {
    let clock = evloop::ManualClock::new();
    let mut reactor =
        evloop::Reactor::with_clock(Ticker::default(), Config::default(), clock.clone()).unwrap();
    let turn = |r: &mut evloop::Reactor<Ticker>| {
        r.run_once(Some(Duration::ZERO)).expect("run_once");
    };
    turn(&mut reactor);
    assert_eq!(reactor.handler().started, 1);
    clock.advance(Duration::from_secs(1) - MS);
    turn(&mut reactor);
    assert!(reactor.handler().fired.is_empty(), "fired early");
    clock.advance(MS);
    turn(&mut reactor);
    turn(&mut reactor);
    assert_eq!(reactor.handler().fired, [7]);
    assert_eq!(reactor.handler().started, 1, "on_start ran again");
}
