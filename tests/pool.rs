//! The upstream pool over real loopback sockets: a line backend (each
//! line answered `ok:LINE`) on std threads, and the reactor's handler
//! checking connections out and in through `exec`.

mod common;
mod harness;

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::*;
use evloop::{CheckinError, Checkout, Config, ConnId};

/// A backend answering each line with `ok:LINE`; it keeps a handle on
/// every connection it accepted, so a test can close one or send on it.
struct Backend {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

fn backend() -> Backend {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let conns = Arc::new(Mutex::new(Vec::new()));
    let (count, keep) = (Arc::clone(&accepted), Arc::clone(&conns));
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            count.fetch_add(1, Ordering::SeqCst);
            keep.lock().unwrap().push(stream.try_clone().unwrap());
            thread::spawn(move || {
                let mut out = stream.try_clone().unwrap();
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { return };
                    if out.write_all(format!("ok:{line}\n").as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    Backend {
        addr,
        accepted,
        conns,
    }
}

/// Checks a connection out for `addr` and sends `line` on it.
fn request(server: &Server, addr: SocketAddr, line: &str) -> Checkout {
    let line = format!("{line}\n");
    server.exec(move |cx, rec| {
        let got = cx.checkout(addr).expect("checkout");
        rec.quiet.insert(got.conn());
        cx.write(got.conn(), line.as_bytes()).unwrap();
        got
    })
}

/// Waits until `conn` has received exactly `text` in all.
fn answered(server: &Server, conn: ConnId, text: &str) {
    let text = text.to_string();
    server.wait_for("the answer", move |r| {
        r.received.get(&conn).map(Vec::as_slice) == Some(text.as_bytes())
    });
}

/// Waits until the backend has accepted `n` connections, and no more.
fn accepts(backend: &Backend, n: usize) {
    let until = std::time::Instant::now() + PATIENCE;
    while backend.accepted.load(Ordering::SeqCst) < n {
        assert!(
            std::time::Instant::now() < until,
            "the backend accepted too few"
        );
        thread::sleep(Duration::from_millis(5));
    }
    thread::sleep(Duration::from_millis(20));
    assert_eq!(backend.accepted.load(Ordering::SeqCst), n);
}

/// `n` connections to `addr`, all out at once, each answered, then all
/// checked in: their ids, in order.
fn used_and_checked_in(server: &Server, addr: SocketAddr, tag: &str, n: usize) -> Vec<ConnId> {
    let conns: Vec<ConnId> = (0..n)
        .map(|i| request(server, addr, &format!("{tag}{i}")).conn())
        .collect();
    for (i, &conn) in conns.iter().enumerate() {
        answered(server, conn, &format!("ok:{tag}{i}\n"));
    }
    for &conn in &conns {
        checkin(server, conn).unwrap();
    }
    conns
}

fn checkin(server: &Server, conn: ConnId) -> Result<(), CheckinError> {
    server.exec(move |cx, _| cx.checkin(conn))
}

fn wait_stats(server: &Server, what: &str, cond: impl Fn(&evloop::Stats) -> bool) {
    let until = std::time::Instant::now() + PATIENCE;
    loop {
        let stats = server.stats();
        if cond(&stats) {
            return;
        }
        assert!(std::time::Instant::now() < until, "{what}: {stats}");
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn connections_checked_in_are_reused_and_the_backend_accepts_one() {
    let backend = backend();
    let server = Server::start(Config::default());
    let first = request(&server, backend.addr, "a");
    let Checkout::New(conn) = first else {
        panic!("an empty pool connected: {first:?}");
    };
    answered(&server, conn, "ok:a\n");
    let mut conn = conn;
    for i in 0..10 {
        checkin(&server, conn).unwrap();
        assert_eq!(server.stats().pool_idle, 1);
        let got = request(&server, backend.addr, &format!("r{i}"));
        // The same connection, under a new id.
        assert!(
            matches!(got, Checkout::Reused(id) if id.index() == conn.index() && id != conn),
            "{got:?} after {conn}"
        );
        conn = got.conn();
        answered(&server, conn, &format!("ok:r{i}\n"));
    }
    let stats = server.stats();
    assert_eq!((stats.pool_hits, stats.pool_misses), (10, 1), "{stats}");
    assert_eq!(backend.accepted.load(Ordering::SeqCst), 1);
}

#[test]
fn a_pooled_connection_the_backend_closed_is_never_handed_out() {
    let backend = backend();
    let server = Server::start(Config::default());
    // Closed while idle: the pool's watch sees the FIN and drops it.
    let conn = request(&server, backend.addr, "a").conn();
    answered(&server, conn, "ok:a\n");
    checkin(&server, conn).unwrap();
    backend.conns.lock().unwrap()[0]
        .shutdown(Shutdown::Both)
        .unwrap();
    wait_stats(&server, "found dead", |s| {
        s.pool_found_dead == 1 && s.pool_idle == 0
    });
    // Closed in the very turn of the checkout, before any event for it
    // is handled: the peek before the hand-out finds it.
    let second = request(&server, backend.addr, "b").conn();
    answered(&server, second, "ok:b\n");
    checkin(&server, second).unwrap();
    let conns = Arc::clone(&backend.conns);
    let addr = backend.addr;
    let got = server.exec(move |cx, rec| {
        conns.lock().unwrap()[1].shutdown(Shutdown::Both).unwrap();
        thread::sleep(Duration::from_millis(50)); // the FIN is in, unread
        let got = cx.checkout(addr).unwrap();
        rec.quiet.insert(got.conn());
        got
    });
    assert!(matches!(got, Checkout::New(id) if id != second), "{got:?}");
    let stats = server.stats();
    assert_eq!(stats.pool_found_dead, 2, "{stats}");
    // The handler gave them up: it hears no close for either.
    let record = server.record();
    assert!(record.reason_of(conn).is_none() && record.reason_of(second).is_none());
}

#[test]
fn bytes_nobody_asked_for_end_a_pooled_connection_unseen() {
    let backend = backend();
    let server = Server::start(Config::default());
    let conn = request(&server, backend.addr, "a").conn();
    answered(&server, conn, "ok:a\n");
    checkin(&server, conn).unwrap();
    backend.conns.lock().unwrap()[0]
        .write_all(b"a late answer\n")
        .unwrap();
    wait_stats(&server, "found dead", |s| s.pool_found_dead == 1);
    assert_eq!(
        server.record().received.get(&conn).map(Vec::as_slice),
        Some(&b"ok:a\n"[..]),
        "the handler was handed what came while it was pooled"
    );
}

#[test]
fn the_pool_keeps_its_bounds_per_address_and_in_all_oldest_first() {
    let (a, b) = (backend(), backend());
    let config = Config {
        pool_idle_per_addr: 2,
        pool_idle_max: 3,
        ..Config::default()
    };
    let server = Server::start(config);
    let to_a = used_and_checked_in(&server, a.addr, "a", 3);
    let stats = server.stats();
    assert_eq!((stats.pool_idle, stats.pool_evicted), (2, 1), "{stats}");
    used_and_checked_in(&server, b.addr, "b", 2);
    let stats = server.stats();
    assert_eq!((stats.pool_idle, stats.pool_evicted), (3, 2), "{stats}");
    // The survivors: the newest to A (the older ones went first), both
    // to B.
    let got = request(&server, a.addr, "x");
    assert!(
        matches!(got, Checkout::Reused(id) if id.index() == to_a[2].index()),
        "{got:?}"
    );
    assert!(matches!(request(&server, a.addr, "y"), Checkout::New(_)));
}

#[test]
fn idle_too_long_or_used_enough_a_connection_is_closed() {
    let backend = backend();
    let config = Config {
        pool_idle_timeout: Duration::from_secs(5),
        pool_max_uses: 2,
        ..Config::default()
    };
    let server = Server::start_clocked(config);
    let conn = request(&server, backend.addr, "a").conn();
    answered(&server, conn, "ok:a\n");
    checkin(&server, conn).unwrap();
    server.advance(Duration::from_secs(4));
    assert_eq!(server.stats().pool_idle, 1, "closed before its timeout");
    server.advance(Duration::from_secs(2));
    let stats = server.stats();
    assert_eq!((stats.pool_idle, stats.pool_evicted), (0, 1), "{stats}");

    let conn = request(&server, backend.addr, "b").conn(); // use 1
    answered(&server, conn, "ok:b\n");
    checkin(&server, conn).unwrap();
    let again = request(&server, backend.addr, "c"); // use 2
    assert!(matches!(again, Checkout::Reused(id) if id.index() == conn.index()));
    let conn = again.conn();
    answered(&server, conn, "ok:c\n");
    checkin(&server, conn).unwrap(); // used up: closed, not kept
    let stats = server.stats();
    assert_eq!((stats.pool_idle, stats.pool_evicted), (0, 2), "{stats}");
    assert!(server.record().reason_of(conn).is_none());
}

#[test]
fn checkin_refuses_what_it_cannot_pool_and_changes_nothing() {
    let backend = backend();
    let server = Server::start(Config::default());
    // An accepted connection has no upstream address.
    let _client = client(server.addr);
    server.wait_for("the accept", |r| r.opened.len() == 1);
    let accepted = server.record().opened[0];
    assert_eq!(checkin(&server, accepted), Err(CheckinError::NotOutbound));
    // Still connecting: not clean.
    let err = server.exec(move |cx, rec| {
        let got = cx.checkout(backend.addr).unwrap();
        rec.quiet.insert(got.conn());
        cx.checkin(got.conn())
    });
    assert_eq!(err, Err(CheckinError::NotClean));
    // In the pool already; then gone.
    let conn = request(&server, backend.addr, "a").conn();
    answered(&server, conn, "ok:a\n");
    checkin(&server, conn).unwrap();
    assert_eq!(checkin(&server, conn), Err(CheckinError::Pooled));
    let stale = ConnId::from_u64(u64::MAX);
    assert_eq!(checkin(&server, stale), Err(CheckinError::Gone));
    // The accepted connection still echoes: nothing changed for it.
    let mut c = _client;
    round_trip(&mut c, b"still mine");
}

#[test]
fn warm_connections_wait_ready_unheard_and_are_topped_up_after_each_checkout() {
    let backend = backend();
    let server = Server::start(Config::default());
    let addr = backend.addr;
    server.exec(move |cx, _| cx.warm(addr, 3));
    wait_stats(&server, "three warm", |s| s.pool_idle == 3);
    // The kernel completes a connect before the backend's thread accepts.
    accepts(&backend, 3);
    assert!(
        server.record().opened.is_empty(),
        "the handler heard a warm connect"
    );
    // A checkout finds one ready; the pool connects another behind it.
    let got = request(&server, addr, "a");
    let Checkout::Reused(conn) = got else {
        panic!("a warm pool connected: {got:?}");
    };
    answered(&server, conn, "ok:a\n");
    wait_stats(&server, "topped up", |s| {
        s.pool_idle == 3 && s.pool_warm == 4
    });
    accepts(&backend, 4);
}

#[test]
fn warming_a_dead_address_waits_between_connects_instead_of_looping() {
    let spot = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = spot.local_addr().unwrap();
    drop(spot);
    let server = Server::start(Config::default());
    server.exec(move |cx, _| cx.warm(addr, 4));
    thread::sleep(Duration::from_millis(300));
    // The first round of connects failed; the next waits 0.5 s.
    let stats = server.stats();
    assert!(stats.pool_warm <= 4, "{stats}");
    assert_eq!(stats.pool_idle, 0, "{stats}");
    // Checkouts still work (and miss).
    let got = server.exec(move |cx, rec| {
        let got = cx.checkout(addr).unwrap();
        rec.quiet.insert(got.conn());
        got
    });
    assert!(matches!(got, Checkout::New(_)));
    assert!(
        server.stats().pool_warm <= 4,
        "a checkout made the pool retry early"
    );
}

#[test]
fn shutdown_closes_idle_and_warming_connections_without_waiting() {
    let backend = backend();
    let server = Server::start(Config::default());
    let conn = request(&server, backend.addr, "a").conn();
    answered(&server, conn, "ok:a\n");
    checkin(&server, conn).unwrap();
    // A warm connect to an address that never answers stays connecting.
    let silent: SocketAddr = "10.255.255.1:9".parse().unwrap();
    let addr = backend.addr;
    server.exec(move |cx, _| {
        cx.warm(addr, 2);
        cx.warm(silent, 1);
    });
    wait_stats(&server, "warm", |s| s.pool_idle == 3);
    let started = std::time::Instant::now();
    let stats = server.stop().stats();
    assert_eq!(stats.shutdown_cut, 0, "{stats}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "waited for the deadline"
    );
}

#[test]
fn a_backend_that_accepts_and_closes_is_not_warmed_in_a_loop() {
    // Accepts, and closes each connection at once.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    thread::spawn(move || {
        for stream in listener.incoming() {
            count.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    let server = Server::start(Config::default());
    server.exec(move |cx, _| cx.warm(addr, 4));
    thread::sleep(Duration::from_millis(1000));
    let stats = server.stats();
    // One round, then a wait that doubles: a handful, not thousands.
    assert!(stats.pool_warm <= 12, "{stats}");
    assert!(accepted.load(Ordering::SeqCst) <= 12);
}

#[test]
fn warm_targets_past_the_pools_bound_do_not_evict_each_other() {
    let (a, b) = (backend(), backend());
    let config = Config {
        pool_idle_max: 2,
        ..Config::default()
    };
    let server = Server::start(config);
    let (aa, ba) = (a.addr, b.addr);
    server.exec(move |cx, _| {
        cx.warm(aa, 2);
        cx.warm(ba, 2); // no room left: nothing to warm
    });
    wait_stats(&server, "warm", |s| s.pool_idle == 2);
    thread::sleep(Duration::from_millis(300));
    let stats = server.stats();
    assert_eq!((stats.pool_warm, stats.pool_evicted), (2, 0), "{stats}");
}

/// Checks its connection in from `on_data`, taking only the first line.
struct CheckinFromData {
    backend: SocketAddr,
    calls: usize,
    checkin: Option<Result<(), CheckinError>>,
    /// A checkout made right after the checkin, in the same call.
    next: Option<Checkout>,
}

impl evloop::Handler for CheckinFromData {
    type Message = ();
    fn on_start(&mut self, cx: &mut evloop::Context<'_>) {
        let got = cx.checkout(self.backend).unwrap();
        cx.write(got.conn(), b"a\n").unwrap();
    }
    fn on_data(&mut self, cx: &mut evloop::Context<'_>, conn: ConnId, input: &[u8]) -> usize {
        self.calls += 1;
        let line = input.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1);
        if line > 0 {
            self.checkin = Some(cx.checkin(conn));
            // Its input is not settled yet: it must not be handed out.
            self.next = cx.checkout(self.backend).ok();
        }
        line
    }
}

#[test]
fn a_connection_checked_in_with_input_left_over_is_never_handed_out() {
    // The answer and more bytes nobody asked for, in one write: the
    // handler takes the answer and checks the connection in during that
    // same read. The rest must not reach it, nor the next user.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut line = String::new();
        BufReader::new(s.try_clone().unwrap())
            .read_line(&mut line)
            .unwrap();
        s.write_all(b"ok:a\nEXTRA").unwrap();
        thread::sleep(Duration::from_secs(5));
    });
    let handler = CheckinFromData {
        backend: addr,
        calls: 0,
        checkin: None,
        next: None,
    };
    let mut reactor = evloop::Reactor::new(handler, Config::default()).unwrap();
    harness::turn_until(&mut reactor, "the unfit connection closed", |r| {
        r.stats().pool_found_dead == 1
    });
    assert_eq!(reactor.handler().checkin, Some(Ok(())));
    assert!(
        matches!(reactor.handler().next, Some(Checkout::New(_))),
        "{:?}",
        reactor.handler().next
    );
    assert_eq!(
        reactor.handler().calls,
        1,
        "stale bytes reached the handler"
    );
    assert_eq!(reactor.stats().pool_idle, 0);
}

#[test]
fn an_id_kept_after_checkin_reaches_nothing_not_even_the_next_user() {
    let backend = backend();
    let server = Server::start(Config::default());
    let old = request(&server, backend.addr, "a").conn();
    answered(&server, old, "ok:a\n");
    checkin(&server, old).unwrap();
    // In the pool: the old id is a connection that is gone.
    let refused = server.exec(move |cx, _| {
        let write = cx.write(old, b"stale\n");
        cx.close(old);
        cx.abort(old);
        (write, cx.state(old), cx.output_len(old))
    });
    assert_eq!(refused, (Err(evloop::SendError::Gone), None, None));
    assert_eq!(server.stats().pool_idle, 1, "a close through the old id");
    // Handed out again: a new id, and the old one still reaches nothing.
    let new = request(&server, backend.addr, "b").conn();
    assert!(
        new.index() == old.index() && new != old,
        "{new} after {old}"
    );
    let refused = server.exec(move |cx, _| {
        let write = cx.write(old, b"stale\n");
        cx.close(old);
        (write, cx.state(new))
    });
    assert_eq!(
        refused,
        (Err(evloop::SendError::Gone), Some(evloop::State::Open))
    );
    answered(&server, new, "ok:b\n");
    thread::sleep(Duration::from_millis(100));
    assert_eq!(
        server.record().received.get(&new).map(Vec::as_slice),
        Some(&b"ok:b\n"[..]),
        "the backend was sent what the old id wrote"
    );
    assert_eq!(backend.accepted.load(Ordering::SeqCst), 1);
}
