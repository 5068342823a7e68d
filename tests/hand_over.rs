//! Output handed over whole: `Context::write_owned` (no copy into the
//! connection's buffer) and `Context::send_file` (`sendfile(2)`), in order
//! with copied writes, under the output limits, and closed cleanly when a
//! file turns out shorter than promised.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use common::{client, pattern, read_n, Server};
use evloop::{CloseReason, Config, ConnId, SendError};

/// More than a loopback socket can hold in flight (send and receive
/// buffers together reach about 10 MiB), so some of it must wait.
const BIG: usize = 32 << 20;

/// Output limits above [`BIG`].
fn roomy() -> Config {
    Config {
        soft_limit: 2 * BIG,
        hard_limit: 2 * BIG,
        ..Config::default()
    }
}

/// A server that does not echo, with one client connected; returns the
/// client and its connection's id on the server.
fn connected(config: Config) -> (Server, TcpStream, ConnId) {
    let server = Server::start_with(config, false);
    let c = client(server.addr);
    server.wait_for("the connection", |r| r.opened.len() == 1);
    let id = server.record().opened[0];
    (server, c, id)
}

/// A file of `len` pattern bytes in the temp directory, open for reading.
fn temp_file(name: &str, len: usize) -> (File, Vec<u8>, std::path::PathBuf) {
    let path = std::env::temp_dir().join(format!("evloop-{}-{name}", std::process::id()));
    let bytes = pattern(7, len);
    std::fs::write(&path, &bytes).expect("write temp file");
    (File::open(&path).expect("open temp file"), bytes, path)
}

#[test]
fn an_owned_buffer_waits_where_it_is_until_the_peer_reads_it() {
    let (server, mut c, id) = connected(roomy());
    // Larger than loopback's send and receive buffers together (about
    // 10 MiB at most), so the socket cannot take it all.
    let payload = pattern(1, BIG);
    let expected = payload.clone();
    // The peer reads nothing yet: most of it must wait in the reactor.
    let (waiting, stats) = server.exec(move |cx, _| {
        cx.write_owned(id, payload).expect("write_owned");
        (cx.output_len(id), cx.stats())
    });
    assert_eq!(waiting, Some(BIG), "queued, not yet written");
    // Nothing went into a pooled buffer or the budget: it was not copied.
    assert_eq!(stats.buffers_in_use, 0);
    assert_eq!(stats.buffered_bytes, 0);
    let still = server.exec(move |cx, _| (cx.output_len(id), cx.stats().buffers_in_use));
    assert!(
        still.0.is_some_and(|n| n > 0 && n < BIG),
        "the socket took part of it and refused the rest: {still:?}"
    );
    assert_eq!(still.1, 0, "what the socket refused was not copied");
    assert_eq!(read_n(&mut c, expected.len()), expected);
    let left = server.exec(move |cx, _| cx.output_len(id));
    assert_eq!(left, Some(0));
}

#[test]
fn copies_hand_overs_and_file_ranges_leave_in_the_order_queued() {
    let (server, mut c, id) = connected(Config::default());
    let (file, bytes, path) = temp_file("order", 3 << 20);
    let big = pattern(2, 1 << 20);
    let mut expected = b"head:".to_vec();
    expected.extend_from_slice(&big);
    expected.extend_from_slice(b":between:");
    expected.extend_from_slice(&bytes[1000..1000 + (2 << 20)]);
    expected.extend_from_slice(b":tail");
    server.exec(move |cx, _| {
        cx.write(id, b"head:").unwrap();
        cx.write_owned(id, big).unwrap();
        // Copied behind the hand-over, not into the buffer in front of it.
        cx.write(id, b":between:").unwrap();
        cx.send_file(id, file, 1000, 2 << 20).unwrap();
        cx.write(id, b":tail").unwrap();
        cx.close(id);
    });
    let mut got = Vec::new();
    c.read_to_end(&mut got).expect("read to the FIN");
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "bytes out of order");
    server.wait_for("the close", |r| {
        r.reason_of(id) == Some(CloseReason::Closed)
    });
    let _ = std::fs::remove_file(path);
}

#[test]
fn many_small_hand_overs_all_arrive() {
    // More segments than one flush writes: the rest goes on in step 6.
    let (server, mut c, id) = connected(Config::default());
    server.exec(move |cx, _| {
        for i in 0..200u32 {
            cx.write_owned(id, i.to_be_bytes().to_vec()).unwrap();
        }
    });
    let got = read_n(&mut c, 800);
    let expected: Vec<u8> = (0..200u32).flat_map(|i| i.to_be_bytes()).collect();
    assert_eq!(got, expected);
}

#[test]
fn one_shared_buffer_serves_many_connections_and_is_freed_after() {
    let server = Server::start_with(Config::default(), false);
    let body: Arc<[u8]> = pattern(3, 256 << 10).into();
    let mut clients: Vec<TcpStream> = (0..20).map(|_| client(server.addr)).collect();
    server.wait_for("20 connections", |r| r.opened.len() == 20);
    let ids = server.record().opened.clone();
    let shared = Arc::clone(&body);
    server.exec(move |cx, _| {
        for &id in &ids {
            cx.write_owned(id, Arc::clone(&shared)).unwrap();
        }
    });
    for c in &mut clients {
        assert_eq!(read_n(c, body.len()), &body[..]);
    }
    // Every connection let go of its reference once its copy was sent.
    server.exec(|_, _| ());
    assert_eq!(Arc::strong_count(&body), 1);
}

#[test]
fn a_closed_connection_drops_what_it_was_handed() {
    let (server, c, id) = connected(roomy());
    let body: Arc<[u8]> = pattern(4, 16 << 20).into();
    let shared = Arc::clone(&body);
    server.exec(move |cx, _| {
        cx.write_owned(id, shared).unwrap();
    });
    assert_eq!(Arc::strong_count(&body), 2, "held while it waits");
    server.exec(move |cx, _| cx.abort(id));
    server.wait_for("the close", |r| r.reason_of(id).is_some());
    assert_eq!(Arc::strong_count(&body), 1, "dropped with the connection");
    drop(c);
}

#[test]
fn a_hand_over_past_the_hard_limit_is_a_slow_consumer() {
    let config = Config {
        soft_limit: 1 << 20,
        hard_limit: 2 << 20,
        ..Config::default()
    };
    let (server, _c, id) = connected(config);
    let result = server.exec(move |cx, _| cx.write_owned(id, vec![0u8; 3 << 20]));
    assert_eq!(result, Err(SendError::SlowConsumer));
    server.wait_for("the close", |r| {
        r.reason_of(id) == Some(CloseReason::SlowConsumer)
    });
}

#[test]
fn a_file_range_outside_the_file_is_refused_and_nothing_is_queued() {
    let (server, mut c, id) = connected(Config::default());
    let (file, bytes, path) = temp_file("range", 4096);
    let file = Arc::new(file);
    let results = server.exec(move |cx, _| {
        let past_end = cx.send_file(id, Arc::clone(&file), 4000, 97);
        let overflow = cx.send_file(id, Arc::clone(&file), u64::MAX, 2);
        let whole = cx.send_file(id, file, 0, 4096);
        (past_end, overflow, whole)
    });
    assert_eq!(results.0, Err(SendError::OutOfRange));
    assert_eq!(results.1, Err(SendError::OutOfRange));
    assert_eq!(results.2, Ok(()));
    assert_eq!(read_n(&mut c, 4096), bytes);
    let _ = std::fs::remove_file(path);
}

#[test]
fn a_file_cut_short_after_queueing_closes_the_connection() {
    let (server, mut c, id) = connected(roomy());
    let (file, bytes, path) = temp_file("short", 64 << 10);
    // The peer is not reading yet: the range waits behind BIG bytes.
    server.exec(move |cx, _| {
        cx.write_owned(id, vec![b'x'; BIG]).unwrap();
        cx.send_file(id, file, 0, 64 << 10).unwrap();
    });
    // Someone truncates the file behind the server's back.
    let writer = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    writer.set_len(1000).unwrap();
    drop(writer);
    let mut expected = vec![b'x'; BIG];
    expected.extend_from_slice(&bytes[..1000]);
    // The connection is reset (a short answer must not look complete), so
    // the client may lose what was in flight: what it got is a prefix.
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    assert!(got.len() <= expected.len() && got == expected[..got.len()]);
    server.wait_for("the close", |r| {
        r.reason_of(id) == Some(CloseReason::Io(std::io::ErrorKind::UnexpectedEof))
    });
    let _ = std::fs::remove_file(path);
}

#[test]
fn a_file_range_waiting_stops_reading_like_any_output() {
    // Backpressure counts file bytes: a pipelining peer cannot queue
    // request after request behind a large file it does not read.
    let (server, mut c, id) = connected(Config::default());
    let (file, bytes, path) = temp_file("marks", 16 << 20);
    server.exec(move |cx, _| cx.send_file(id, file, 0, 16 << 20).unwrap());
    c.write_all(b"next request").unwrap();
    // Give the reactor time to (wrongly) read it.
    std::thread::sleep(std::time::Duration::from_millis(200));
    server.exec(|_, _| ());
    assert!(
        !server.record().received.contains_key(&id),
        "read while a 16 MiB file range waited"
    );
    assert!(read_n(&mut c, bytes.len()) == bytes);
    server.wait_for("the request, once the file is sent", |r| {
        r.received.get(&id).is_some_and(|b| b == b"next request")
    });
    let _ = std::fs::remove_file(path);
}

#[test]
fn each_hand_over_costs_more_than_its_bytes() {
    // A million one-byte hand-overs are not a million bytes.
    let config = Config {
        high_water: 32 << 10,
        low_water: 16 << 10,
        soft_limit: 64 << 10,
        hard_limit: 64 << 10,
        ..Config::default()
    };
    let (server, _c, id) = connected(config);
    let refused_at =
        server.exec(move |cx, _| (0..2000).find(|_| cx.write_owned(id, vec![b'x']).is_err()));
    // 64 KiB at one byte and about 64 of cost each: about a thousand.
    let n = refused_at.expect("the hard limit was reached");
    assert!((900..1100).contains(&n), "refused at hand-over {n}");
    server.wait_for("the close", |r| {
        r.reason_of(id) == Some(CloseReason::SlowConsumer)
    });
}

/// Bytes whose `AsRef` panics once `armed` is set: a careless
/// embedder's type.
struct Trap {
    bytes: Vec<u8>,
    armed: Arc<std::sync::atomic::AtomicBool>,
}

impl AsRef<[u8]> for Trap {
    fn as_ref(&self) -> &[u8] {
        assert!(
            !self.armed.load(std::sync::atomic::Ordering::Relaxed),
            "a handler's AsRef panics"
        );
        &self.bytes
    }
}

#[test]
fn a_hand_over_whose_as_ref_panics_resets_only_its_connection() {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::time::{Duration, Instant};
    // The reactor runs on this thread, so the panic out of `run_once` is
    // caught here, as an embedder would (see tests/handler_panic.rs).
    let probe = common::Probe::default();
    let record = Arc::clone(&probe.record);
    let mut reactor = evloop::Reactor::new(probe, roomy()).unwrap();
    let listener = reactor.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = reactor.listener_addr(listener).unwrap();
    let handle = reactor.handle();
    let mut panics = 0;
    let mut turn_until = |reactor: &mut evloop::Reactor<common::Probe>,
                          done: &dyn Fn(&common::Record) -> bool| {
        let end = Instant::now() + common::PATIENCE;
        while !done(&record.lock().unwrap()) {
            assert!(Instant::now() < end, "timed out");
            let turn = catch_unwind(AssertUnwindSafe(|| {
                reactor.run_once(Some(Duration::from_millis(5)))
            }));
            panics += usize::from(turn.is_err());
        }
    };
    let c = client(addr);
    turn_until(&mut reactor, &|r| r.opened.len() == 1);
    let id = record.lock().unwrap().opened[0];
    let armed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let trap = Trap {
        bytes: vec![b'x'; BIG],
        armed: Arc::clone(&armed),
    };
    // Queued while the peer does not read; the trap is set after.
    let job: common::Job = Box::new(move |cx, rec| {
        cx.write_owned(id, trap).unwrap();
        rec.timers.push(1); // "queued"
    });
    assert!(handle.post(job).is_ok());
    turn_until(&mut reactor, &|r| r.timers == [1]);
    armed.store(true, std::sync::atomic::Ordering::Relaxed);
    // Reading makes the socket writable: the next flush asks the trap.
    let reader = std::thread::spawn(move || {
        let mut c = c;
        let mut got = Vec::new();
        let _ = c.read_to_end(&mut got);
        got.len()
    });
    turn_until(&mut reactor, &|r| {
        r.reason_of(id) == Some(CloseReason::HandlerPanic)
    });
    assert!(reader.join().unwrap() < BIG, "the rest was dropped");
    // The reactor goes on serving others.
    let other = client(addr);
    turn_until(&mut reactor, &|r| r.opened.len() == 2);
    let other_id = record.lock().unwrap().opened[1];
    let job: common::Job = Box::new(move |cx, _| cx.write(other_id, b"fine").unwrap());
    assert!(handle.post(job).is_ok());
    other.set_nonblocking(true).unwrap();
    let got = std::cell::RefCell::new(Vec::new());
    turn_until(&mut reactor, &|_| {
        let mut buf = [0; 16];
        if let Ok(n) = (&other).read(&mut buf) {
            got.borrow_mut().extend_from_slice(&buf[..n]);
        }
        *got.borrow() == b"fine"
    });
    assert_eq!(panics, 1, "one panic, once");
}
