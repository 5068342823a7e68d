//! `on_flushed`: a producer hears when its output has all been written,
//! and sends the next chunk only then, so its memory stays at one chunk
//! however large the answer.

mod common;
mod harness;

use std::io::{Read, Write};

use common::client;
use evloop::{Config, ConnId, Context, Handler};
use harness::{spawn, Shared};

const CHUNK: usize = 64 * 1024;
const CHUNKS: usize = 64;

#[derive(Default)]
struct Seen {
    told: usize,
    most_waiting: usize,
}

/// Streams `CHUNKS` chunks, one per `on_flushed`.
struct Producer {
    left: usize,
    seen: Shared<Seen>,
}

impl Producer {
    fn next(&mut self, cx: &mut Context<'_>, conn: ConnId) {
        if self.left == 0 {
            cx.close(conn);
            return;
        }
        self.left -= 1;
        let _ = cx.write(conn, &[b'x'; CHUNK]);
        let waiting = cx.output_len(conn).unwrap_or(0);
        let mut seen = self.seen.lock();
        seen.most_waiting = seen.most_waiting.max(waiting);
        drop(seen);
        assert!(cx.notify_flushed(conn));
    }
}

impl Handler for Producer {
    type Message = ();

    fn on_data(&mut self, cx: &mut Context<'_>, conn: ConnId, input: &[u8]) -> usize {
        self.next(cx, conn);
        input.len()
    }

    fn on_flushed(&mut self, cx: &mut Context<'_>, conn: ConnId) {
        self.seen.lock().told += 1;
        self.next(cx, conn);
    }
}

#[test]
fn a_producer_writes_each_chunk_after_the_last_has_left() {
    let seen = Shared::<Seen>::default();
    let producer = Producer {
        left: CHUNKS,
        seen: seen.clone(),
    };
    let running = spawn(producer, Config::default());
    let mut c = client(running.addr);
    c.write_all(b"go").unwrap();
    let mut got = Vec::new();
    c.read_to_end(&mut got).unwrap();
    assert_eq!(got.len(), CHUNK * CHUNKS);
    let seen = seen.lock();
    // One notice per chunk written (the last one closes instead).
    assert_eq!(seen.told, CHUNKS);
    // Never more than one chunk waited in the reactor.
    assert!(
        seen.most_waiting <= CHUNK,
        "{} bytes waited",
        seen.most_waiting
    );
}
