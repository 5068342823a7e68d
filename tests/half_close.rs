//! Half-close in both directions: the peer's FIN reaches the handler while
//! output still flushes; `shutdown_write` sends our FIN after pending
//! output and keeps reading.

mod common;
mod harness;

use std::io::{Read, Write};
use std::net::Shutdown;

use common::*;
use evloop::{CloseReason, Config, State};

#[test]
fn peer_fin_reaches_handler_and_echo_still_flushes() {
    let server = Server::start(Config::default());
    let mut s = client(server.addr);
    let data = pattern(3, 1 << 20);
    s.write_all(&data).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    assert!(
        got == data,
        "echo after FIN: {} of {} bytes",
        got.len(),
        data.len()
    );
    server.wait_for("close", |r| !r.closed.is_empty());
    let rec = server.record();
    assert_eq!(rec.read_closed.len(), 1);
    assert_eq!(rec.closed[0].1, CloseReason::PeerClosed);
}

#[test]
fn shutdown_write_sends_fin_after_output_and_keeps_reading() {
    let server = Server::start_with(Config::default(), false);
    let mut s = client(server.addr);
    server.wait_for("open", |r| r.opened.len() == 1);
    let conn = server.record().opened[0];
    let big = pattern(9, 512 * 1024);
    let sent = big.clone();
    server.exec(move |cx, _| {
        cx.write(conn, &sent).unwrap();
        cx.shutdown_write(conn);
    });
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    assert!(got == big, "all output before the FIN");
    assert_eq!(
        server.exec(move |cx, _| cx.state(conn)),
        Some(State::WriteClosed)
    );
    // Our side is closed, theirs is not: the server still reads.
    s.write_all(b"after your FIN").unwrap();
    server.wait_for("data after FIN", |r| {
        r.received
            .get(&conn)
            .is_some_and(|v| v.ends_with(b"after your FIN"))
    });
    s.shutdown(Shutdown::Write).unwrap();
    server.wait_for("close", |r| {
        r.reason_of(conn) == Some(CloseReason::PeerClosed)
    });
}

/// After our FIN, the peer's: what the handler sees in `on_read_closed`,
/// and what it may still do there.
#[derive(Clone, Copy, PartialEq)]
enum Then {
    Nothing,
    Abort,
}

#[derive(Default)]
struct BothSeen {
    state: Option<State>,
    write: Option<Result<(), evloop::SendError>>,
    closed: Option<CloseReason>,
}

struct BothFins(harness::Shared<BothSeen>, Then);

impl evloop::Handler for BothFins {
    type Message = ();

    fn on_open(&mut self, cx: &mut evloop::Context<'_>, conn: evloop::ConnId) {
        cx.shutdown_write(conn);
    }

    fn on_data(&mut self, _: &mut evloop::Context<'_>, _: evloop::ConnId, input: &[u8]) -> usize {
        input.len()
    }

    fn on_read_closed(&mut self, cx: &mut evloop::Context<'_>, conn: evloop::ConnId, _: &[u8]) {
        let mut seen = self.0.lock();
        seen.state = cx.state(conn);
        seen.write = Some(cx.write(conn, b"late"));
        if self.1 == Then::Abort {
            cx.abort(conn);
        }
    }

    fn on_close(&mut self, _: &mut evloop::Context<'_>, _: evloop::ConnId, reason: CloseReason) {
        self.0.lock().closed = Some(reason);
    }
}

fn both_fins(then: Then) -> BothSeen {
    let seen = harness::Shared::<BothSeen>::default();
    let running = harness::spawn(BothFins(seen.clone(), then), Config::default());
    let mut s = client(running.addr);
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap(); // our FIN
    s.shutdown(Shutdown::Write).unwrap(); // theirs
    seen.wait_for("close", |s| s.closed.is_some());
    let mut seen = seen.lock();
    std::mem::take(&mut *seen)
}

#[test]
fn the_peers_fin_after_ours_is_heard_while_write_closed_then_closes() {
    let seen = both_fins(Then::Nothing);
    assert_eq!(seen.state, Some(State::WriteClosed));
    assert_eq!(seen.write, Some(Err(evloop::SendError::Closing)));
    assert_eq!(seen.closed, Some(CloseReason::PeerClosed));
}

#[test]
fn an_abort_when_the_peers_fin_follows_ours_is_an_abort() {
    let seen = both_fins(Then::Abort);
    assert_eq!(seen.state, Some(State::WriteClosed));
    assert_eq!(seen.closed, Some(CloseReason::Aborted));
}
