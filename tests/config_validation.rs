//! `Reactor::new` refuses a `Config` that cannot work, naming the field;
//! the extremes that can work do: `max_conns: usize::MAX` and
//! `Duration::MAX` timeouts neither overflow nor stall, and graceful
//! shutdown still completes.

mod common;

use std::io::{self, Read, Write};
use std::thread;
use std::time::Duration;

use common::*;
use evloop::{CloseReason, Config, ConnId, Context, Handler, Reactor};

struct Sink;

impl Handler for Sink {
    type Message = ();

    fn on_data(&mut self, _cx: &mut Context<'_>, _conn: ConnId, input: &[u8]) -> usize {
        input.len()
    }
}

#[test]
fn reactor_new_refuses_configs_that_cannot_work_and_names_the_field() {
    let default = Config::default();
    assert!(default.validate().is_ok());
    assert!(Reactor::new(Sink, default.clone()).is_ok());
    let bad = [
        (
            "read_budget",
            Config {
                read_budget: 0,
                ..default.clone()
            },
        ),
        (
            "accept_batch",
            Config {
                accept_batch: 0,
                ..default.clone()
            },
        ),
        (
            "low_water",
            Config {
                low_water: default.high_water + 1,
                ..default.clone()
            },
        ),
        (
            "soft_limit",
            Config {
                soft_limit: default.hard_limit + 1,
                ..default.clone()
            },
        ),
        (
            "max_buffered",
            Config {
                max_buffered: 0,
                ..default.clone()
            },
        ),
        (
            "max_conns",
            Config {
                max_conns: 0,
                ..default.clone()
            },
        ),
        (
            "coalesce",
            Config {
                coalesce: evloop::MAX_COALESCE + Duration::from_nanos(1),
                ..default.clone()
            },
        ),
    ];
    let longest = Config {
        coalesce: evloop::MAX_COALESCE,
        ..default.clone()
    };
    assert!(
        Reactor::new(Sink, longest).is_ok(),
        "coalesce at its maximum"
    );
    for (field, config) in bad {
        let why = config.validate().expect_err(field).to_string();
        assert!(why.contains(field), "validate() for {field}: {why:?}");
        let err = match Reactor::new(Sink, config) {
            Ok(_) => panic!("Reactor::new accepted a bad {field}"),
            Err(e) => e,
        };
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{field}: {err}");
        assert!(err.to_string().contains(field), "{field}: {err}");
    }
}

#[test]
fn max_conns_usize_max_accepts_serves_and_closes() {
    let server = Server::start(Config {
        max_conns: usize::MAX,
        ..Config::default()
    });
    for round in 0..3u64 {
        let mut clients: Vec<_> = (0..4).map(|_| client(server.addr)).collect();
        for (i, s) in clients.iter_mut().enumerate() {
            round_trip(s, &pattern(round * 10 + i as u64, 100));
        }
        drop(clients);
        let closed = 4 * (round as usize + 1);
        server.wait_for("closes", |r| r.closed.len() == closed);
    }
    let reactor = server.stop();
    let record = reactor.handler().record.lock().unwrap();
    assert_eq!(record.opened.len(), 12);
    assert!(record
        .closed
        .iter()
        .all(|&(_, reason)| reason == CloseReason::PeerClosed));
}

#[test]
fn duration_max_timeouts_serve_and_shut_down() {
    let mut server = Server::start(Config {
        idle_timeout: Some(Duration::MAX),
        write_timeout: Duration::MAX,
        connect_timeout: Duration::MAX,
        shutdown_timeout: Duration::MAX,
        soft_grace: Duration::MAX,
        ..Config::default()
    });
    let mut s = client(server.addr);
    round_trip(&mut s, b"hello");
    // A user timer as far off as it gets, too.
    server.exec(|cx, _| {
        cx.set_timer(Duration::MAX, 1);
    });
    // Output that waits on the socket arms the write deadline: echo 8 MiB
    // while the client is slow to read.
    let data = pattern(5, 8 << 20);
    let mut writer = s.try_clone().unwrap();
    let payload = data.clone();
    let w = thread::spawn(move || writer.write_all(&payload).unwrap());
    thread::sleep(Duration::from_millis(50));
    let mut got = vec![0; data.len()];
    s.read_exact(&mut got).unwrap();
    w.join().unwrap();
    assert!(got == data, "echo differs");

    // Graceful shutdown: the quiet connection gets FIN at once, and run
    // returns once it is closed (the deadline never comes into it).
    assert!(server.handle.shutdown());
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    drop(s);
    let reactor = server.join();
    let record = reactor.handler().record.lock().unwrap();
    assert_eq!(record.closed.len(), 1);
    assert_eq!(record.closed[0].1, CloseReason::Shutdown);
    assert_eq!(reactor.stats().shutdown_cut, 0);
}
