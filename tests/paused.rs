//! A connection whose handler paused reading still notices the peer: a
//! FIN with nothing unread reaches `on_read_closed` (with the frames the
//! handler left) and closes it, whether the handler paused before the FIN's
//! event or while dispatching the input that came with it; a RST closes
//! it; and a FIN that follows unread data does not lose the data, which is
//! delivered once the handler resumes.

mod common;
mod harness;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::Duration;

use common::*;
use evloop::{CloseReason, Config, ConnId, Context, Handler, Reactor};
use harness::{first_line, spawn, turn_until, Shared};

#[derive(Default)]
struct Log {
    opened: Vec<ConnId>,
    data: Vec<u8>,
    read_closed: Vec<(ConnId, Vec<u8>)>,
    closed: Vec<(ConnId, CloseReason)>,
}

/// Pauses every connection as it opens; resumes one when a message names
/// it. Echoes what it reads.
struct PausedEcho {
    log: Shared<Log>,
}

impl Handler for PausedEcho {
    type Message = ConnId;

    fn on_open(&mut self, cx: &mut Context<'_>, conn: ConnId) {
        cx.pause_read(conn);
        self.log.lock().opened.push(conn);
    }

    fn on_data(&mut self, cx: &mut Context<'_>, conn: ConnId, input: &[u8]) -> usize {
        self.log.lock().data.extend_from_slice(input);
        cx.write(conn, input).unwrap();
        input.len()
    }

    fn on_read_closed(&mut self, cx: &mut Context<'_>, conn: ConnId, input: &[u8]) {
        self.log.lock().read_closed.push((conn, input.to_vec()));
        cx.close(conn);
    }

    fn on_message(&mut self, cx: &mut Context<'_>, conn: ConnId) {
        cx.resume_read(conn);
    }

    fn on_close(&mut self, _cx: &mut Context<'_>, conn: ConnId, reason: CloseReason) {
        self.log.lock().closed.push((conn, reason));
    }
}

/// No idle timeout: nothing but the peer can close these connections.
fn start() -> (harness::Running<PausedEcho>, Shared<Log>) {
    let log = Shared::<Log>::default();
    let config = Config {
        idle_timeout: None,
        ..Config::default()
    };
    let server = spawn(PausedEcho { log: log.clone() }, config);
    (server, log)
}

#[test]
fn paused_connection_whose_peer_closes_is_closed() {
    let (server, log) = start();
    let s = client(server.addr);
    log.wait_for("open", |l| l.opened.len() == 1);
    let conn = log.lock().opened[0];
    drop(s); // FIN, nothing unread
    log.wait_for("close", |l| !l.closed.is_empty());
    let log = log.lock();
    assert_eq!(log.read_closed, [(conn, Vec::new())]);
    assert_eq!(log.closed, [(conn, CloseReason::PeerClosed)]);
    assert!(log.data.is_empty());
}

#[test]
fn paused_connection_whose_peer_resets_is_closed() {
    let (server, log) = start();
    let s = client(server.addr);
    log.wait_for("open", |l| l.opened.len() == 1);
    let conn = log.lock().opened[0];
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(s); // RST
    log.wait_for("close", |l| !l.closed.is_empty());
    let log = log.lock();
    // Linux reports the RST as an error on the socket: the peek that checks
    // a paused connection gets ECONNRESET, and no FIN was ever seen.
    assert_eq!(log.closed, [(conn, CloseReason::Reset)]);
    assert!(log.read_closed.is_empty());
}

#[test]
fn paused_connection_keeps_data_sent_before_fin_until_resumed() {
    let (server, log) = start();
    let mut s = client(server.addr);
    log.wait_for("open", |l| l.opened.len() == 1);
    let conn = log.lock().opened[0];
    s.write_all(b"hello").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    // Give the reactor time to see the FIN event while paused: it must
    // not take "hello" for nothing and close.
    thread::sleep(Duration::from_millis(50));
    {
        let log = log.lock();
        assert!(log.closed.is_empty(), "closed while input waited");
        assert!(log.read_closed.is_empty(), "FIN reported before the data");
        assert!(log.data.is_empty(), "read while paused");
    }
    server.handle.post(conn).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"hello");
    log.wait_for("close", |l| !l.closed.is_empty());
    let log = log.lock();
    assert_eq!(log.data, b"hello");
    assert_eq!(log.read_closed, [(conn, Vec::new())]);
    assert_eq!(log.closed, [(conn, CloseReason::PeerClosed)]);
}

/// Takes one line, then pauses for good: a handler waiting on a backend
/// that never answers.
struct OneThenPause {
    log: Log,
}

impl Handler for OneThenPause {
    type Message = ();

    fn on_open(&mut self, _cx: &mut Context<'_>, conn: ConnId) {
        self.log.opened.push(conn);
    }

    fn on_data(&mut self, cx: &mut Context<'_>, conn: ConnId, input: &[u8]) -> usize {
        let Some(line) = first_line(input) else {
            return 0;
        };
        self.log.data.extend_from_slice(line);
        cx.pause_read(conn);
        line.len()
    }

    fn on_read_closed(&mut self, cx: &mut Context<'_>, conn: ConnId, input: &[u8]) {
        self.log.read_closed.push((conn, input.to_vec()));
        cx.close(conn);
    }

    fn on_close(&mut self, _cx: &mut Context<'_>, conn: ConnId, reason: CloseReason) {
        self.log.closed.push((conn, reason));
    }
}

/// A reactor on this thread running [`OneThenPause`], with one client
/// whose connection it has opened.
fn one_then_pause() -> (Reactor<OneThenPause>, TcpStream, ConnId) {
    let _ = env_logger::builder().is_test(true).try_init();
    let config = Config {
        idle_timeout: None,
        ..Config::default()
    };
    let handler = OneThenPause {
        log: Log::default(),
    };
    let mut reactor = Reactor::new(handler, config).expect("reactor");
    let listener = reactor.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = reactor.listener_addr(listener).unwrap();
    let s = client(addr);
    turn_until(&mut reactor, "open", |r| !r.handler().log.opened.is_empty());
    let conn = reactor.handler().log.opened[0];
    (reactor, s, conn)
}

#[test]
fn connection_paused_with_frames_left_hears_a_later_fin_with_them() {
    let (mut reactor, mut s, conn) = one_then_pause();
    s.write_all(b"a\nb\n").unwrap();
    turn_until(&mut reactor, "the first line", |r| {
        !r.handler().log.data.is_empty()
    });
    // The FIN comes in an event of its own, while the connection is paused
    // with "b" left.
    s.shutdown(Shutdown::Write).unwrap();
    turn_until(&mut reactor, "the peer's FIN", |r| {
        !r.handler().log.closed.is_empty()
    });
    let log = &reactor.handler().log;
    assert_eq!(log.data, b"a\n");
    assert_eq!(log.read_closed, [(conn, b"b\n".to_vec())]);
    assert_eq!(log.closed, [(conn, CloseReason::PeerClosed)]);
}

#[test]
fn connection_paused_while_reading_hears_the_fin_that_came_with_the_data() {
    let (mut reactor, mut s, conn) = one_then_pause();
    // Data and FIN before the next turn: one readiness event carries both
    // (edge-triggered, so no other will come), and the handler pauses
    // while that event's input is dispatched.
    s.write_all(b"a\nb\n").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    turn_until(&mut reactor, "the peer's FIN", |r| {
        !r.handler().log.closed.is_empty()
    });
    let log = &reactor.handler().log;
    assert_eq!(log.data, b"a\n");
    assert_eq!(log.read_closed, [(conn, b"b\n".to_vec())]);
    assert_eq!(log.closed, [(conn, CloseReason::PeerClosed)]);
}
