//! A connection whose handler paused reading still notices the peer: a
//! FIN with nothing unread reaches `on_read_closed` and closes it, a RST
//! closes it, and a FIN that follows data does not lose the data, which is
//! delivered once the handler resumes.

mod common;
mod harness;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::thread;
use std::time::Duration;

use common::*;
use evloop::{CloseReason, Config, ConnId, Context, Handler};
use harness::{spawn, Shared};

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
