//! A `ConnId` kept after its connection closed does nothing, even once its
//! slab slot is taken by a new connection.

mod common;

use common::*;
use evloop::{Config, SendError};

#[test]
fn stale_id_cannot_reach_the_slots_new_tenant() {
    let server = Server::start_with(Config::default(), false);
    let first = client(server.addr);
    server.wait_for("first open", |r| r.opened.len() == 1);
    let old = server.record().opened[0];
    drop(first);
    server.wait_for("first close", |r| r.reason_of(old).is_some());

    let mut second = client(server.addr);
    server.wait_for("second open", |r| r.opened.len() == 2);
    let new = server.record().opened[1];
    assert_ne!(old, new);
    let slot = |id: evloop::ConnId| format!("{id:?}").split('.').next().unwrap().to_owned();
    assert_eq!(slot(old), slot(new), "the test needs the slot to be reused");
    let (wrote, state) = server.exec(move |cx, _| {
        let wrote = cx.write(old, b"for the old tenant");
        cx.close(old);
        cx.abort(old);
        cx.pause_read(old);
        (wrote, cx.state(old))
    });
    assert_eq!(wrote, Err(SendError::Gone));
    assert_eq!(state, None);
    // The new connection is untouched: it gets only its own bytes.
    server.exec(move |cx, _| cx.write(new, b"yours").unwrap());
    assert_eq!(read_n(&mut second, 5), b"yours");
    assert!(server.record().reason_of(new).is_none());
}
