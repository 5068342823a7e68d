//! Wake-up coalescing (`Config::coalesce`) over real loopback sockets:
//! a lone client hardly ever waits for a nap, a crowd gets them and every
//! answer, an idle server sleeps, and off means off. Whether a nap pays
//! is measured by the reactor over 200 ms stretches (unit tests in
//! `src/reactor/coalesce.rs` drive that logic with made-up loads); these
//! runs last past the first stretch and probe, so naps are allowed in
//! them.

mod common;

use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use evloop::{Config, COALESCE_PROBE, COALESCE_STRETCH};

const NAP: Duration = Duration::from_micros(200);
/// Between a client's round trips in a crowd.
const PAUSE: Duration = Duration::from_micros(100);

/// One test at a time: the reactor measures in stretches of wall-clock
/// time, and a gap of a probe's length between two turns (a thread
/// starved of the CPU by the other tests' clients) would restart them.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn alone() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Past the first stretch and the probe after it, with room to spare.
fn long_enough() -> Duration {
    (COALESCE_STRETCH + COALESCE_PROBE) * 2
}

fn coalescing(nap: Duration) -> Config {
    Config {
        coalesce: nap,
        ..Config::default()
    }
}

/// `clients` connections, each in its own thread doing echo round trips
/// (every byte checked), `pause` apart, until `run` has passed; the round
/// trips done.
fn crowd(server: &Server, clients: u64, pause: Duration, run: Duration) -> u64 {
    let threads: Vec<_> = (0..clients)
        .map(|seed| {
            let addr = server.addr;
            thread::spawn(move || {
                let mut s = client(addr);
                let start = Instant::now();
                let mut done = 0;
                while start.elapsed() < run {
                    round_trip(
                        &mut s,
                        &pattern(seed * 1_000_000 + done, 1 + (done as usize * 37) % 200),
                    );
                    done += 1;
                    thread::sleep(pause);
                }
                done
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().expect("client thread"))
        .sum()
}

#[test]
fn a_lone_client_in_request_and_reply_hardly_ever_naps() {
    let _alone = alone();
    let server = Server::start(coalescing(NAP));
    let trips = crowd(&server, 1, Duration::ZERO, long_enough());
    let stats = server.stats();
    // One event a turn is no crowd, so no nap; the bound leaves room
    // for a stray turn with two, after which the nap gathers one event
    // and ends the naps again.
    assert!(
        stats.naps <= 2,
        "{} naps in {trips} round trips of a lone client: {stats}",
        stats.naps
    );
    assert!(trips > 100, "only {trips} round trips");
}

#[test]
fn a_crowd_gets_naps_and_every_answer() {
    let _alone = alone();
    let server = Server::start(coalescing(NAP));
    // Clients that pause leave the reactor idle now and then: without a
    // nap it would sleep and wake for each. (A crowd that never pauses
    // keeps the reactor busy: the look before a nap always finds work.)
    let trips = crowd(&server, 16, PAUSE, long_enough() * 2);
    let stats = server.stats();
    // Every byte was checked by round_trip; the probes of napping (four
    // of them), at the latest, nap while 16 clients keep several events
    // in a turn.
    assert!(
        stats.naps > 0,
        "no nap in {trips} round trips of 16 clients: {stats}"
    );
    assert_eq!(stats.bytes_in, stats.bytes_out);
}

#[test]
fn an_idle_server_sleeps_after_a_crowd() {
    let _alone = alone();
    let server = Server::start(coalescing(NAP));
    crowd(&server, 16, PAUSE, long_enough());
    server.wait_for("the clients' closes", |r| r.closed.len() == 16);
    let before = server.stats();
    thread::sleep(Duration::from_millis(300));
    let after = server.stats();
    // At most a nap and a blocking poll after the last event: no spin.
    assert!(
        after.turns - before.turns <= 3,
        "{} turns and {} naps in 300 ms with nothing to do",
        after.turns - before.turns,
        after.naps - before.naps
    );
}

#[test]
fn off_means_no_naps_under_any_load() {
    let _alone = alone();
    let server = Server::start(Config::default());
    assert!(Config::default().coalesce.is_zero());
    crowd(&server, 16, PAUSE, long_enough());
    assert_eq!(server.stats().naps, 0);
}
