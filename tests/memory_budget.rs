//! Memory is bounded for the whole server, not per connection: hundreds of
//! connections that each trickle a large partial frame never take the
//! reactor's buffers past `Config::max_buffered`; the largest holders are
//! the ones closed (`CloseReason::OverBudget`), and a well-behaved
//! connection is served throughout.

mod common;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{client, fd_limit, PATIENCE};
use evloop::{CloseReason, Config, ConnId, Context, Handler, Reactor};

const BUDGET: usize = 8 << 20;
const BIG: usize = 512 << 10;
const SMALL: usize = 4 << 10;

#[derive(Default)]
struct Seen {
    /// The most buffered bytes any callback saw.
    max_buffered: usize,
    over_budget: HashSet<ConnId>,
    other_closes: Vec<(ConnId, CloseReason)>,
    /// Each connection's id, in the order its client connected.
    opened: Vec<ConnId>,
}

/// Echoes whole lines; keeps a partial line (the reactor holds it).
struct Lines {
    seen: Arc<Mutex<Seen>>,
}

impl Lines {
    fn watch(&self, cx: &Context<'_>) {
        let buffered = cx.stats().buffered_bytes;
        let mut seen = self.seen.lock().unwrap();
        seen.max_buffered = seen.max_buffered.max(buffered);
    }
}

impl Handler for Lines {
    type Message = ();

    fn on_open(&mut self, _cx: &mut Context<'_>, conn: ConnId) {
        self.seen.lock().unwrap().opened.push(conn);
    }

    fn on_data(&mut self, cx: &mut Context<'_>, conn: ConnId, input: &[u8]) -> usize {
        self.watch(cx);
        let end = input.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let _ = cx.write(conn, &input[..end]);
        end
    }

    fn on_close(&mut self, cx: &mut Context<'_>, conn: ConnId, reason: CloseReason) {
        self.watch(cx);
        let mut seen = self.seen.lock().unwrap();
        if reason == CloseReason::OverBudget {
            seen.over_budget.insert(conn);
        } else {
            seen.other_closes.push((conn, reason));
        }
    }
}

#[test]
fn partial_frames_past_the_budget_close_the_largest_holders_and_spare_the_rest() {
    let (bigs, smalls) = (50, 250);
    let limit = fd_limit();
    assert!(
        limit > 2 * (bigs + smalls + 50) as u64,
        "this test needs {} descriptors; the limit is {limit}",
        2 * (bigs + smalls + 50)
    );
    let seen = Arc::new(Mutex::new(Seen::default()));
    let config = Config {
        max_buffered: BUDGET,
        idle_timeout: None,
        ..Config::default()
    };
    let mut reactor = Reactor::new(
        Lines {
            seen: Arc::clone(&seen),
        },
        config,
    )
    .unwrap();
    let listener = reactor.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = reactor.listener_addr(listener).unwrap();
    let handle = reactor.handle();
    let server = thread::spawn(move || {
        reactor.run().unwrap();
        reactor.stats()
    });
    let connect = |n: usize| -> Vec<TcpStream> {
        (0..n)
            .map(|_| {
                let before = seen.lock().unwrap().opened.len();
                let c = client(addr);
                // Wait for on_open, so the ids come in client order.
                let end = Instant::now() + PATIENCE;
                while seen.lock().unwrap().opened.len() == before {
                    assert!(Instant::now() < end, "the server did not accept");
                    thread::sleep(Duration::from_millis(1));
                }
                c
            })
            .collect()
    };
    let mut good = connect(1).pop().unwrap();
    let mut round_trip = |i: usize| {
        let line = format!("still served {i}\n");
        good.write_all(line.as_bytes()).unwrap();
        let mut got = vec![0; line.len()];
        good.read_exact(&mut got).unwrap();
        assert_eq!(got, line.as_bytes());
    };
    // Small partial frames first: 1 MiB in all, well inside the budget.
    let mut small = connect(smalls);
    for c in &mut small {
        c.write_all(&vec![b's'; SMALL]).unwrap();
    }
    round_trip(0);
    // Then large ones: 25 MiB of partial frames against an 8 MiB budget.
    let mut big = connect(bigs);
    for (i, c) in big.iter_mut().enumerate() {
        // A connection closed mid-way fails the write: that is the point.
        let _ = c.write_all(&vec![b'b'; BIG]);
        round_trip(i + 1);
    }
    let ids = seen.lock().unwrap().opened.clone();
    let (small_ids, big_ids) = (&ids[1..1 + smalls], &ids[1 + smalls..]);
    // Every small connection is still there and loses nothing: ending its
    // line brings the whole of it back.
    for (i, c) in small.iter_mut().enumerate() {
        c.write_all(b"\n").unwrap();
        let mut got = vec![0; SMALL + 1];
        c.read_exact(&mut got)
            .unwrap_or_else(|e| panic!("small connection {i} lost: {e}"));
        assert!(got[..SMALL].iter().all(|&b| b == b's') && got[SMALL] == b'\n');
    }
    round_trip(bigs + 1);
    let stats = {
        let seen = seen.lock().unwrap();
        assert!(
            seen.max_buffered <= BUDGET,
            "buffers held {} bytes, past the budget of {BUDGET}",
            seen.max_buffered
        );
        assert!(!seen.over_budget.is_empty(), "nothing was closed");
        for id in &seen.over_budget {
            assert!(
                big_ids.contains(id),
                "{id:?} was closed but held a small frame"
            );
        }
        assert!(small_ids.iter().all(|id| !seen.over_budget.contains(id)));
        assert!(seen.other_closes.is_empty(), "{:?}", seen.other_closes);
        // At least enough large holders went to bring 26 MiB under 8.
        let freed_at_least = bigs * BIG + smalls * SMALL - BUDGET;
        assert!(
            seen.over_budget.len() * BIG >= freed_at_least,
            "{} closed",
            seen.over_budget.len()
        );
        seen.over_budget.len()
    };
    assert!(handle.shutdown());
    drop((small, big, good));
    let final_stats = common::join_within(server);
    assert_eq!(
        final_stats.closed_for(CloseReason::OverBudget),
        stats as u64,
        "{final_stats}"
    );
    assert_eq!(
        final_stats.buffered_bytes, 0,
        "bytes still counted: {final_stats}"
    );
    assert!(final_stats.pooled_bytes <= evloop::DEFAULT_POOL_BYTES);
}

#[test]
fn output_past_the_budget_closes_the_connection_that_does_not_read() {
    // Two connections ask for 8 MiB answers each against a 10 MiB budget;
    // neither reads. The kernel takes at most 4 MiB of the first (the
    // largest autotuned send buffer), so the second answer takes the
    // buffers past the budget, and the larger holder goes; the other
    // keeps its whole answer.
    const ANSWER: usize = 8 << 20;
    struct Big;
    impl Handler for Big {
        type Message = ();
        fn on_data(&mut self, cx: &mut Context<'_>, conn: ConnId, input: &[u8]) -> usize {
            for _ in input {
                let _ = cx.write(conn, &vec![b'x'; ANSWER]);
            }
            input.len()
        }
    }
    let config = Config {
        max_buffered: 10 << 20,
        hard_limit: 16 << 20,
        ..Config::default()
    };
    let mut reactor = Reactor::new(Big, config).unwrap();
    let listener = reactor.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = reactor.listener_addr(listener).unwrap();
    let handle = reactor.handle();
    let server = thread::spawn(move || {
        reactor.run().unwrap();
        reactor.stats()
    });
    let small_window = || {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_recv_buffer_size(8 * 1024).unwrap();
        s.connect(&addr.into()).unwrap();
        let s: TcpStream = s.into();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        s
    };
    let mut first = small_window();
    first.write_all(b"1").unwrap();
    thread::sleep(Duration::from_millis(100));
    let mut second = small_window();
    second.write_all(b"1").unwrap();
    thread::sleep(Duration::from_millis(100));
    // One of them was closed (reset); the other reads its answer whole.
    let mut totals = Vec::new();
    for s in [&mut first, &mut second] {
        let mut got = 0;
        let mut buf = vec![0; 64 * 1024];
        let reset = loop {
            match s.read(&mut buf) {
                Ok(0) => break false,
                Ok(n) => got += n,
                Err(_) => break true,
            }
            if got == ANSWER {
                break false;
            }
        };
        totals.push((got, reset));
    }
    let whole = totals.iter().filter(|&&(got, _)| got == ANSWER).count();
    let cut = totals.iter().filter(|&&(_, reset)| reset).count();
    assert_eq!((whole, cut), (1, 1), "{totals:?}");
    assert!(handle.shutdown());
    drop((first, second));
    let stats = common::join_within(server);
    assert_eq!(stats.closed_for(CloseReason::OverBudget), 1, "{stats}");
}

#[test]
fn the_budget_counts_capacity_not_just_the_bytes_left_in_it() {
    // A 200 KiB line grows the connection's input buffer; the handler takes
    // it and one byte stays. The memory is the buffer's capacity: counting
    // the one byte would let 10,000 such peers pin gigabytes unseen.
    struct TakeLines;
    impl Handler for TakeLines {
        type Message = ();
        fn on_data(&mut self, _cx: &mut Context<'_>, _conn: ConnId, input: &[u8]) -> usize {
            input.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)
        }
    }
    let mut reactor = Reactor::new(TakeLines, Config::default()).unwrap();
    let listener = reactor.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = reactor.listener_addr(listener).unwrap();
    let mut c = client(addr);
    let mut line = vec![b'l'; 200 << 10];
    line.extend_from_slice(b"\nx");
    let writer = thread::spawn(move || {
        c.write_all(&line).unwrap();
        c
    });
    let end = Instant::now() + PATIENCE;
    while reactor.stats().bytes_in < (200 << 10) + 2 {
        assert!(Instant::now() < end, "the line never arrived");
        reactor.run_once(Some(Duration::from_millis(10))).unwrap();
    }
    let stats = reactor.stats();
    assert_eq!(stats.buffers_in_use, 1, "{stats}");
    assert!(
        stats.buffered_bytes >= 64 << 10,
        "one byte left in a grown buffer counts {} bytes",
        stats.buffered_bytes
    );
    drop(writer.join().unwrap());
}
