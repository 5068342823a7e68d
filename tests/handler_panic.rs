//! A handler that panics unwinds out of `run_once`, and the reactor stays
//! usable: the connection whose callback panicked is reset
//! (`CloseReason::HandlerPanic`), other connections keep working, new ones
//! are accepted, timers due in the same tick as one whose `on_timer`
//! panicked still fire on a later turn, and messages taken in the same
//! turn as one whose `on_message` panicked are still delivered.

mod common;
mod harness;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use common::*;
use evloop::{CloseReason, Config, ConnId, Context, Handler, Reactor};

#[derive(Default)]
struct Fragile {
    opened: Vec<ConnId>,
    received: Vec<(ConnId, Vec<u8>)>,
    closed: Vec<(ConnId, CloseReason)>,
    timers: Vec<u64>,
    timer_panicked: bool,
    notes: Vec<u64>,
}

#[derive(Debug)]
enum Msg {
    /// Set timers with these tokens, all due at the same tick.
    Timers(Vec<u64>),
    /// Record this; panic on 0.
    Note(u64),
}

/// Echoes, but panics on "boom"; panics in the first `on_timer` it gets,
/// and on message `Note(0)`.
impl Handler for Fragile {
    type Message = Msg;

    fn on_open(&mut self, _cx: &mut Context<'_>, conn: ConnId) {
        self.opened.push(conn);
    }

    fn on_data(&mut self, cx: &mut Context<'_>, conn: ConnId, input: &[u8]) -> usize {
        self.received.push((conn, input.to_vec()));
        if input.windows(4).any(|w| w == b"boom") {
            panic!("handler panics on purpose: boom");
        }
        cx.write(conn, input).unwrap();
        input.len()
    }

    fn on_timer(&mut self, _cx: &mut Context<'_>, token: u64) {
        self.timers.push(token);
        if !self.timer_panicked {
            self.timer_panicked = true;
            panic!("handler panics on purpose: timer {token}");
        }
    }

    fn on_message(&mut self, cx: &mut Context<'_>, message: Msg) {
        match message {
            Msg::Timers(tokens) => {
                for token in tokens {
                    cx.set_timer(Duration::from_millis(20), token);
                }
            }
            Msg::Note(n) => {
                self.notes.push(n);
                if n == 0 {
                    panic!("handler panics on purpose: message 0");
                }
            }
        }
    }

    fn on_close(&mut self, _cx: &mut Context<'_>, conn: ConnId, reason: CloseReason) {
        self.closed.push((conn, reason));
    }
}

/// Runs turns, catching the handler's panics, until `cond` holds; returns
/// how many turns panicked.
fn turn_until(
    reactor: &mut Reactor<Fragile>,
    what: &str,
    cond: impl Fn(&Fragile) -> bool,
) -> usize {
    let end = Instant::now() + PATIENCE;
    let mut panics = 0;
    while !cond(reactor.handler()) {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        let turn = catch_unwind(AssertUnwindSafe(|| {
            reactor.run_once(Some(Duration::from_millis(5)))
        }));
        match turn {
            Ok(status) => {
                status.expect("run_once");
            }
            Err(_) => panics += 1,
        }
    }
    panics
}

fn start() -> (Reactor<Fragile>, SocketAddr) {
    let _ = env_logger::builder().is_test(true).try_init();
    let mut reactor = Reactor::new(Fragile::default(), Config::default()).expect("reactor");
    let listener = reactor.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = reactor.listener_addr(listener).unwrap();
    (reactor, addr)
}

/// Connects and turns until the reactor has opened the connection.
fn connect(reactor: &mut Reactor<Fragile>, addr: SocketAddr) -> (TcpStream, ConnId) {
    let n = reactor.handler().opened.len() + 1;
    let s = client(addr);
    assert_eq!(turn_until(reactor, "open", |h| h.opened.len() == n), 0);
    (s, reactor.handler().opened[n - 1])
}

/// Sends `msg` and reads it back, turning the reactor in between (it runs
/// on this thread).
fn echo(reactor: &mut Reactor<Fragile>, s: &mut TcpStream, conn: ConnId, msg: &[u8]) {
    s.write_all(msg).unwrap();
    let got = |h: &Fragile| -> usize {
        h.received
            .iter()
            .filter(|(c, _)| *c == conn)
            .map(|(_, d)| d.len())
            .sum()
    };
    let want = got(reactor.handler()) + msg.len();
    assert_eq!(
        turn_until(reactor, "echo", |h| got(h) >= want),
        0,
        "panicked"
    );
    // The echo was written in the turn that read it.
    assert_eq!(read_n(s, msg.len()), msg);
}

#[test]
fn panic_in_on_data_resets_that_connection_and_the_reactor_goes_on() {
    let (mut reactor, addr) = start();
    let (mut good, good_id) = connect(&mut reactor, addr);
    let (mut bad, bad_id) = connect(&mut reactor, addr);
    echo(&mut reactor, &mut good, good_id, b"before");

    bad.write_all(b"boom").unwrap();
    let panics = turn_until(&mut reactor, "the panicking connection to close", |h| {
        h.closed.iter().any(|(c, _)| *c == bad_id)
    });
    assert_eq!(panics, 1);
    assert_eq!(
        reactor.handler().closed,
        [(bad_id, CloseReason::HandlerPanic)]
    );
    // Its client sees the connection end (reset, or EOF).
    let mut buf = [0; 16];
    match bad.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("the panicking connection's client got {other:?}"),
    }

    // The other connection is untouched, and new ones are served.
    echo(&mut reactor, &mut good, good_id, b"after");
    let (mut fresh, fresh_id) = connect(&mut reactor, addr);
    echo(&mut reactor, &mut fresh, fresh_id, b"new");
    echo(&mut reactor, &mut good, good_id, b"still");
    assert_eq!(reactor.handler().closed.len(), 1);
    assert_eq!(reactor.stats().closed_for(CloseReason::HandlerPanic), 1);
}

#[test]
fn panic_in_on_timer_leaves_the_other_timers_of_the_tick_to_fire_later() {
    let (mut reactor, addr) = start();
    let (mut s, conn) = connect(&mut reactor, addr);
    reactor.handle().post(Msg::Timers(vec![1, 2, 3])).unwrap();
    let panics = turn_until(&mut reactor, "all three timers", |h| h.timers.len() >= 3);
    assert_eq!(panics, 1);
    let mut fired = reactor.handler().timers.clone();
    fired.sort_unstable();
    assert_eq!(fired, [1, 2, 3], "each timer fires once");
    // No connection was being served: none is reset.
    assert!(reactor.handler().closed.is_empty());
    echo(&mut reactor, &mut s, conn, b"still here");
}

#[test]
fn panic_in_on_message_leaves_the_later_messages_for_a_later_turn() {
    let (mut reactor, addr) = start();
    let (mut s, conn) = connect(&mut reactor, addr);
    let handle = reactor.handle();
    // All three wait in the queue when the turn takes them; no other post
    // (and no other wake-up) follows.
    for n in 0..3 {
        handle.post(Msg::Note(n)).unwrap();
    }
    let panics = turn_until(&mut reactor, "the messages after the panic", |h| {
        h.notes.len() >= 3
    });
    assert_eq!(panics, 1);
    assert_eq!(
        reactor.handler().notes,
        [0, 1, 2],
        "each message once, in order"
    );
    assert!(reactor.handler().closed.is_empty());
    echo(&mut reactor, &mut s, conn, b"still here");
}
