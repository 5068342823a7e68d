//! The `Handle` from other threads: post messages in order, shut down.

mod common;

use std::thread;

use common::*;
use evloop::{CloseReason, Config};

#[test]
fn posts_from_many_threads_all_arrive_in_order_per_thread() {
    let server = Server::start(Config::default());
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let handle = server.handle.clone();
            thread::spawn(move || {
                for i in 0..250u64 {
                    let job: Job = Box::new(move |_, rec| rec.timers.push(t * 1000 + i));
                    assert!(handle.post(job).is_ok());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    server.wait_for("1000 posts", |r| r.timers.len() == 1000);
    let rec = server.record();
    for t in 0..4 {
        let mine: Vec<u64> = rec
            .timers
            .iter()
            .copied()
            .filter(|v| v / 1000 == t)
            .collect();
        assert_eq!(mine, (0..250).map(|i| t * 1000 + i).collect::<Vec<_>>());
    }
}

#[test]
fn shutdown_from_another_thread_closes_connections_and_returns() {
    let server = Server::start(Config::default());
    let mut clients: Vec<_> = (0..10).map(|_| client(server.addr)).collect();
    for s in &mut clients {
        round_trip(s, b"hi");
    }
    let handle = server.handle.clone();
    let record = server.record.clone();
    thread::spawn(move || assert!(handle.shutdown()))
        .join()
        .unwrap();
    let reactor = {
        let mut s = server;
        s.join()
    };
    let rec = record.lock().unwrap();
    assert!(rec.shutdown_seen);
    assert_eq!(rec.closed.len(), 10);
    assert!(rec.closed.iter().all(|&(_, r)| r == CloseReason::Shutdown));
    assert_eq!(reactor.stats().active, 0);
    // Every client sees EOF.
    for mut s in clients {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut s, &mut buf).unwrap();
        assert!(buf.is_empty());
    }
}

#[test]
fn post_after_the_reactor_is_gone_gives_the_message_back() {
    let server = Server::start(Config::default());
    let handle = server.handle.clone();
    drop(server.stop());
    let job: Job = Box::new(|_, _| {});
    assert!(handle.post(job).is_err());
    assert!(!handle.shutdown());
}

#[test]
fn user_timers_fire_and_cancelled_ones_do_not() {
    let server = Server::start(Config::default());
    server.exec(|cx, _| {
        cx.set_timer(std::time::Duration::from_millis(50), 1);
        let t = cx.set_timer(std::time::Duration::from_millis(60), 2);
        cx.set_timer(std::time::Duration::from_millis(100), 3);
        assert!(cx.cancel_timer(t));
    });
    server.wait_for("timers", |r| r.timers.len() == 2);
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(server.record().timers, vec![1, 3]);
}
