//! A client that sends but never reads: the server stops reading it once
//! its output passes the high-water mark, keeps memory bounded, and
//! resumes (with `on_drain`) once the client reads.

mod common;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::*;
use evloop::{Config, SCRATCH_SIZE};

#[test]
fn reading_pauses_above_high_water_and_resumes_below_low() {
    let config = Config::default();
    let high = config.high_water;
    let server = Server::start(config);
    let mut s = client(server.addr);
    let total = 64 << 20; // far more than all socket buffers together
    let data = pattern(7, total);
    let sent = Arc::new(AtomicUsize::new(0));
    let mut writer = s.try_clone().unwrap();
    writer.set_write_timeout(None).unwrap();
    let (payload, progress) = (data.clone(), Arc::clone(&sent));
    let w = thread::spawn(move || {
        for chunk in payload.chunks(64 * 1024) {
            writer.write_all(chunk).unwrap();
            progress.fetch_add(chunk.len(), Ordering::Relaxed);
        }
    });

    // The writer stalls: once both directions' socket buffers are full and
    // the server has stopped reading, nothing moves.
    let mut last = 0;
    loop {
        thread::sleep(Duration::from_millis(300));
        let now = sent.load(Ordering::Relaxed);
        if now == last {
            break;
        }
        assert!(
            now < total,
            "the whole 64 MiB went through without a reader"
        );
        last = now;
    }
    let max_output = server.record().max_output;
    assert!(
        max_output <= high + SCRATCH_SIZE,
        "output grew to {max_output} bytes (high-water {high})"
    );
    assert!(server.stats().buffers_in_use <= 2);

    // Now read: everything comes back, in order, and reading resumed.
    let mut got = vec![0; total];
    s.read_exact(&mut got).unwrap();
    w.join().unwrap();
    assert!(got == data, "echoed bytes differ");
    assert!(server.record().drains > 0, "on_drain never called");
}
