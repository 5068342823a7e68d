//! Partial frames: kept in the connection's own buffer until a frame
//! completes, bounded by `max_input`.

mod common;

use std::io::{Read, Write};

use common::*;
use evloop::{CloseReason, Config};

#[test]
fn partial_frame_is_kept_then_released() {
    let server = Server::start_lines(Config::default());
    let mut s = client(server.addr);
    s.write_all(b"abc").unwrap();
    // Poll stats until the bytes were read into a buffer of their own.
    let mut kept = false;
    for _ in 0..400 {
        if server.stats().buffers_in_use == 1 {
            kept = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(kept, "a partial frame should hold exactly one buffer");
    s.write_all(b"def\nghi\n").unwrap();
    server.wait_for("two lines", |r| {
        r.received
            .values()
            .any(|v| v.as_slice() == b"abcdef\nghi\n")
    });
    assert_eq!(
        server.stats().buffers_in_use,
        0,
        "frame complete: buffer back in the pool"
    );
}

#[test]
fn input_that_never_forms_a_frame_closes_as_too_large() {
    let server = Server::start_lines(Config {
        max_input: 4096,
        ..Config::default()
    });
    let mut s = client(server.addr);
    // Two lines that fit, then 10 KiB without a newline.
    s.write_all(b"one\ntwo\n").unwrap();
    let _ = s.write_all(&[b'x'; 10 * 1024]);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf); // EOF or reset: either way it ends
    server.wait_for("close", |r| !r.closed.is_empty());
    let rec = server.record();
    assert_eq!(rec.closed[0].1, CloseReason::InputTooLarge);
    assert!(rec.received.values().any(|v| v.as_slice() == b"one\ntwo\n"));
    drop(rec);
    // The server goes on serving others.
    let server_addr = server.addr;
    let mut other = client(server_addr);
    other.write_all(b"fine\n").unwrap();
    server.wait_for("the other client", |r| {
        r.received.values().any(|v| v == b"fine\n")
    });
}
