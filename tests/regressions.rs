//! Regressions for defects an adversarial review of the core found: a
//! panic that lost the commands and signals of its turn, a panic in the
//! middle of beginning shutdown, a shutdown that closed connections with
//! requests received but unread (behind backpressure, whose reproduction
//! depends on socket sizes, and behind a pause, which pins the cause), and
//! the peer's FIN after ours that skipped `on_read_closed`.

mod common;
mod harness;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use evloop::{CloseReason, Config, ConnId, Context, Handler, Reactor, Status};

/// Panics on "boom"; echoes otherwise.
#[derive(Default)]
struct Boom {
    opened: usize,
    shutdowns: usize,
    panic_on_open: Option<usize>,
    notes: Vec<u32>,
}

impl Handler for Boom {
    type Message = u32;
    fn on_open(&mut self, _cx: &mut Context<'_>, _conn: ConnId) {
        self.opened += 1;
        if Some(self.opened) == self.panic_on_open {
            panic!("on purpose: on_open #{}", self.opened);
        }
    }
    fn on_data(&mut self, cx: &mut Context<'_>, conn: ConnId, input: &[u8]) -> usize {
        if input.windows(4).any(|w| w == b"boom") {
            panic!("on purpose: boom");
        }
        let _ = cx.write(conn, input);
        input.len()
    }
    fn on_message(&mut self, _cx: &mut Context<'_>, m: u32) {
        self.notes.push(m);
    }
    fn on_shutdown(&mut self, _cx: &mut Context<'_>) {
        self.shutdowns += 1;
    }
}

#[test]
fn a_panic_does_not_lose_the_shutdown_and_post_of_its_turn() {
    let mut reactor = Reactor::new(Boom::default(), Config::default()).unwrap();
    let listener = reactor.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = reactor.listener_addr(listener).unwrap();
    let handle = reactor.handle();
    let mut c = client(addr);
    harness::turn_until(&mut reactor, "opened", |r| r.handler().opened == 1);
    c.write_all(b"boom").unwrap();
    thread::sleep(Duration::from_millis(50));
    handle.post(7).unwrap();
    assert!(handle.shutdown());
    let r = catch_unwind(AssertUnwindSafe(|| {
        reactor.run_once(Some(Duration::from_millis(10)))
    }));
    assert!(r.is_err(), "expected the handler panic");
    let end = Instant::now() + Duration::from_secs(2);
    let mut stopped = false;
    while Instant::now() < end {
        if reactor.run_once(Some(Duration::from_millis(20))).unwrap() == Status::Stopped {
            stopped = true;
            break;
        }
    }
    eprintln!(
        "notes={:?} shutdowns={} stopped={stopped}",
        reactor.handler().notes,
        reactor.handler().shutdowns
    );
    assert!(stopped, "Handle::shutdown posted before the panic was lost");
}

#[test]
fn a_panic_while_opening_the_listen_queue_leaves_the_listeners_closed_and_shutdown_going() {
    let config = Config {
        accept_batch: 1,
        ..Config::default()
    };
    let boom = Boom {
        panic_on_open: Some(2),
        ..Boom::default()
    };
    let mut reactor = Reactor::new(boom, config).unwrap();
    let listener = reactor.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = reactor.listener_addr(listener).unwrap();
    let _a = client(addr);
    let _b = client(addr);
    reactor.shutdown();
    let r = catch_unwind(AssertUnwindSafe(|| {
        reactor.run_once(Some(Duration::from_millis(10)))
    }));
    assert!(r.is_err(), "expected the on_open panic in accept_backlog");
    // After shutdown began, a new client should find no listener.
    let c = TcpStream::connect(addr);
    let end = Instant::now() + Duration::from_millis(500);
    while Instant::now() < end {
        let _ = reactor.run_once(Some(Duration::from_millis(10)));
    }
    eprintln!(
        "connect after shutdown: {:?}; opened={} on_shutdown calls={}",
        c.as_ref().map(|_| ()),
        reactor.handler().opened,
        reactor.handler().shutdowns
    );
    assert_eq!(reactor.handler().shutdowns, 1, "on_shutdown never called");
    assert_eq!(
        reactor.handler().opened,
        2,
        "accepted a connection during shutdown"
    );
}

/// Each byte in is answered with 1 KiB out; everything is consumed.
struct Amplify;
impl Handler for Amplify {
    type Message = ();
    fn on_data(&mut self, cx: &mut Context<'_>, conn: ConnId, input: &[u8]) -> usize {
        let _ = cx.write(conn, &vec![b'a'; input.len() * 1024]);
        input.len()
    }
}

#[test]
fn shutdown_answers_requests_waiting_behind_backpressure() {
    let config = Config {
        soft_limit: 256 << 20,
        hard_limit: 256 << 20,
        ..Config::default()
    };
    let running = harness::spawn(Amplify, config);
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(64 * 1024).unwrap();
    sock.connect(&running.addr.into()).unwrap();
    let mut c: TcpStream = sock.into();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // 100 requests bring 100 KiB of answers, past the high-water mark: the
    // server stops reading. The next 10,000 wait in its socket, received
    // but unread, when shutdown begins.
    c.write_all(&[b'r'; 100]).unwrap();
    thread::sleep(Duration::from_millis(100));
    c.write_all(&[b'r'; 10_000]).unwrap();
    thread::sleep(Duration::from_millis(100));
    running.handle.shutdown();
    thread::sleep(Duration::from_millis(100));
    let mut got = 0usize;
    let mut buf = vec![0; 1 << 16];
    let end = loop {
        match c.read(&mut buf) {
            Ok(0) => break "clean EOF (FIN)".to_string(),
            Ok(n) => got += n,
            Err(e) => break format!("error {e:?}"),
        }
    };
    assert_eq!(
        (got, end.as_str()),
        (10_100 * 1024, "clean EOF (FIN)"),
        "requests received before shutdown were not all answered"
    );
}

#[derive(Default)]
struct HalfSeen {
    read_closed: Option<Vec<u8>>,
    closed: Option<CloseReason>,
}

/// Answers "req\n" with "ok\n" and shuts its write side; after that it
/// waits for EOF to end the last record.
struct Half(Arc<Mutex<HalfSeen>>);
impl Handler for Half {
    type Message = ();
    fn on_data(&mut self, cx: &mut Context<'_>, conn: ConnId, input: &[u8]) -> usize {
        if input.starts_with(b"req\n") {
            let _ = cx.write(conn, b"ok\n");
            cx.shutdown_write(conn);
            return 4;
        }
        0
    }
    fn on_read_closed(&mut self, cx: &mut Context<'_>, conn: ConnId, input: &[u8]) {
        self.0.lock().unwrap().read_closed = Some(input.to_vec());
        cx.close(conn);
    }
    fn on_close(&mut self, _cx: &mut Context<'_>, _conn: ConnId, reason: CloseReason) {
        self.0.lock().unwrap().closed = Some(reason);
    }
}

#[test]
fn the_peers_fin_after_ours_reaches_on_read_closed_with_the_last_record() {
    let seen = Arc::new(Mutex::new(HalfSeen::default()));
    let running = harness::spawn(Half(Arc::clone(&seen)), Config::default());
    let mut c = client(running.addr);
    c.write_all(b"req\n").unwrap();
    let mut buf = [0; 16];
    let mut got = Vec::new();
    loop {
        let n = c.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, b"ok\n");
    c.write_all(b"last record, no newline").unwrap();
    thread::sleep(Duration::from_millis(50));
    c.shutdown(Shutdown::Write).unwrap();
    let end = Instant::now() + Duration::from_secs(3);
    while seen.lock().unwrap().closed.is_none() && Instant::now() < end {
        thread::sleep(Duration::from_millis(5));
    }
    let s = seen.lock().unwrap();
    eprintln!(
        "on_read_closed input: {:?}; on_close: {:?}",
        s.read_closed
            .as_ref()
            .map(|v| String::from_utf8_lossy(v).into_owned()),
        s.closed
    );
    assert_eq!(
        s.read_closed.as_deref(),
        Some(&b"last record, no newline"[..])
    );
}

/// Takes one line per call, answers it, and pauses reading for 100 ms (a
/// rate limit): it owes nothing while paused.
struct OneAtATime;
impl Handler for OneAtATime {
    type Message = ();
    fn on_data(&mut self, cx: &mut Context<'_>, conn: ConnId, input: &[u8]) -> usize {
        let Some(end) = input.iter().position(|&b| b == b'\n') else {
            return 0;
        };
        let _ = cx.write(conn, b"ok\n");
        cx.pause_read(conn);
        cx.set_timer(Duration::from_millis(100), conn.as_u64());
        end + 1
    }
    fn on_timer(&mut self, cx: &mut Context<'_>, token: u64) {
        cx.resume_read(ConnId::from_u64(token));
    }
}

#[test]
fn shutdown_answers_a_request_waiting_unread_behind_a_pause() {
    let running = harness::spawn(OneAtATime, Config::default());
    let mut c = client(running.addr);
    c.write_all(b"1\n").unwrap();
    let mut buf = [0; 3];
    c.read_exact(&mut buf).unwrap();
    // The second request arrives while reading is paused: it waits in
    // the server's socket, unread, when shutdown begins.
    c.write_all(b"2\n").unwrap();
    thread::sleep(Duration::from_millis(30));
    running.handle.shutdown();
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    assert_eq!(
        rest, b"ok\n",
        "the request waiting behind the pause was dropped"
    );
}
