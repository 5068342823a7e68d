//! Connection ids count generations per slab slot, so a slot's ids move
//! on only when that slot is reused, and a stale id reaches nothing.
//! `Context::cancel_timer` cancels the handler's own live timers and
//! nothing else: not a fired timer whose wheel slot a connection's idle
//! timer took, and not an id that happens to name a connection deadline.

mod common;
mod harness;

use std::time::Duration;

use common::*;
use evloop::timer::{TimerId, TimerWheel};
use evloop::{CloseReason, Config, ConnId, Context, Handler, Reactor, SendError};
use harness::turn_until;

fn generation(id: ConnId) -> u32 {
    id.as_u64() as u32
}

#[test]
fn conn_id_generations_count_per_slot_and_stale_ids_do_nothing() {
    let server = Server::start_with(Config::default(), false);
    // A new client, and the id the server gave it.
    let connect = || {
        let n = server.record().opened.len() + 1;
        let s = client(server.addr);
        server.wait_for("open", |r| r.opened.len() == n);
        let id = server.record().opened[n - 1];
        (s, id)
    };
    let closed = |id: ConnId| server.wait_for("close", |r| r.reason_of(id).is_some());

    let (first, first_id) = connect();
    let (_holder, holder_id) = connect();
    assert_eq!((first_id.index(), holder_id.index()), (0, 1));
    drop(first);
    closed(first_id);

    // Slot 0 is reused again and again while slot 1 is held; each round
    // also opens and closes a connection on slot 2.
    let (mut zero, mut two) = (vec![first_id], Vec::new());
    for _ in 0..20 {
        let (a, a_id) = connect();
        zero.push(a_id);
        let (b, b_id) = connect();
        two.push(b_id);
        drop(b);
        closed(*two.last().unwrap());
        drop(a);
        closed(*zero.last().unwrap());
    }
    assert!(zero.iter().all(|id| id.index() == 0), "{zero:?}");
    assert!(two.iter().all(|id| id.index() == 2), "{two:?}");
    // Per slot: each reuse of slot 0 is its next generation, however many
    // connections other slots saw meanwhile; a fresh slot starts over.
    for pair in zero.windows(2) {
        assert_eq!(
            generation(pair[1]),
            generation(pair[0]).wrapping_add(1),
            "slot 0: {zero:?}"
        );
    }
    for pair in two.windows(2) {
        assert_eq!(
            generation(pair[1]),
            generation(pair[0]).wrapping_add(1),
            "slot 2: {two:?}"
        );
    }
    assert_eq!(generation(holder_id), generation(two[0]), "fresh slots");

    // A new tenant on slot 0: no old id reaches it.
    let (mut tenant, tenant_id) = connect();
    assert_eq!(tenant_id.index(), 0);
    assert!(!zero.contains(&tenant_id));
    let results = server.exec(move |cx, _| {
        zero.iter()
            .map(|&old| {
                let wrote = cx.write(old, b"for an old tenant");
                cx.close(old);
                cx.abort(old);
                (wrote, cx.state(old), cx.peer_addr(old))
            })
            .collect::<Vec<_>>()
    });
    for result in results {
        assert_eq!(result, (Err(SendError::Gone), None, None));
    }
    server.exec(move |cx, _| cx.write(tenant_id, b"yours").unwrap());
    assert_eq!(read_n(&mut tenant, 5), b"yours");
    assert!(server.record().reason_of(tenant_id).is_none());
}

/// What the timer handler did.
#[derive(Default)]
struct TimerLog {
    set: Vec<TimerId>,
    fired: Vec<u64>,
    cancels: Vec<bool>,
    closed: Vec<(ConnId, CloseReason)>,
}

#[derive(Debug)]
enum Cmd {
    /// Set a timer: after, token.
    Set(Duration, u64),
    /// Set a timer, then cancel it at once (twice).
    SetAndCancel(Duration, u64),
}

/// Sets timers on command; cancels `victim` when a connection opens.
struct Timers {
    victim: Option<TimerId>,
    log: TimerLog,
}

impl Timers {
    fn new(victim: Option<TimerId>) -> Self {
        Timers {
            victim,
            log: TimerLog::default(),
        }
    }
}

impl Handler for Timers {
    type Message = Cmd;

    fn on_open(&mut self, cx: &mut Context<'_>, _conn: ConnId) {
        if let Some(victim) = self.victim {
            self.log.cancels.push(cx.cancel_timer(victim));
        }
    }

    fn on_data(&mut self, _cx: &mut Context<'_>, _conn: ConnId, input: &[u8]) -> usize {
        input.len()
    }

    fn on_timer(&mut self, _cx: &mut Context<'_>, token: u64) {
        self.log.fired.push(token);
    }

    fn on_message(&mut self, cx: &mut Context<'_>, cmd: Cmd) {
        match cmd {
            Cmd::Set(after, token) => self.log.set.push(cx.set_timer(after, token)),
            Cmd::SetAndCancel(after, token) => {
                let id = cx.set_timer(after, token);
                self.log.set.push(id);
                self.log.cancels.push(cx.cancel_timer(id));
                self.log.cancels.push(cx.cancel_timer(id));
            }
        }
    }

    fn on_close(&mut self, _cx: &mut Context<'_>, conn: ConnId, reason: CloseReason) {
        self.log.closed.push((conn, reason));
    }
}

const IDLE: Duration = Duration::from_millis(100);

fn reactor(victim: Option<TimerId>) -> (Reactor<Timers>, std::net::SocketAddr) {
    let config = Config {
        idle_timeout: Some(IDLE),
        ..Config::default()
    };
    let mut reactor = Reactor::new(Timers::new(victim), config).expect("reactor");
    let listener = reactor.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = reactor.listener_addr(listener).unwrap();
    (reactor, addr)
}

#[test]
fn stale_user_timer_id_cannot_cancel_the_idle_timer_that_took_its_slot() {
    let (mut reactor, addr) = reactor(None);
    reactor
        .handle()
        .post(Cmd::Set(Duration::from_millis(5), 1))
        .unwrap();
    turn_until(&mut reactor, "the user timer", |r| {
        r.handler().log.fired == [1]
    });
    // Its wheel slot is free; the connection's idle timer takes it.
    let stale = reactor.handler().log.set[0];
    reactor.handler_mut().victim = Some(stale);
    let _s = client(addr);
    turn_until(&mut reactor, "the idle timeout", |r| {
        !r.handler().log.closed.is_empty()
    });
    let log = &reactor.handler().log;
    assert_eq!(log.cancels, [false], "a fired timer was cancelled");
    assert_eq!(log.closed[0].1, CloseReason::IdleTimeout);
}

#[test]
fn timer_id_from_another_wheel_cannot_cancel_a_connection_deadline() {
    // A handler may run a `TimerWheel` of its own, and its ids have the
    // same shape as the reactor's: the first insert in any wheel gets the
    // same id. Check that on a reactor whose first timer is a user timer.
    let mut own = TimerWheel::new();
    let forged = own.insert(0, ());
    let (mut control, _) = reactor(None);
    control
        .handle()
        .post(Cmd::Set(Duration::from_secs(60), 1))
        .unwrap();
    turn_until(&mut control, "the control timer", |r| {
        !r.handler().log.set.is_empty()
    });
    assert_eq!(
        control.handler().log.set[0],
        forged,
        "ids differ between wheels: this test no longer names a reactor timer"
    );

    // Here the reactor's first timer is the connection's idle deadline.
    let (mut reactor, addr) = reactor(Some(forged));
    let _s = client(addr);
    turn_until(&mut reactor, "the idle timeout", |r| {
        !r.handler().log.closed.is_empty()
    });
    let log = &reactor.handler().log;
    assert_eq!(log.cancels, [false], "the idle timer was cancelled");
    assert_eq!(log.closed[0].1, CloseReason::IdleTimeout);
}

#[test]
fn live_user_timer_cancels_and_never_fires() {
    let (mut reactor, _) = reactor(None);
    let handle = reactor.handle();
    handle
        .post(Cmd::SetAndCancel(Duration::from_millis(10), 1))
        .unwrap();
    handle.post(Cmd::Set(Duration::from_millis(40), 2)).unwrap();
    turn_until(&mut reactor, "the later timer", |r| {
        r.handler().log.fired.contains(&2)
    });
    let log = &reactor.handler().log;
    assert_eq!(log.cancels, [true, false], "cancel, then cancel again");
    assert_eq!(log.fired, [2], "the cancelled timer fired");
}
