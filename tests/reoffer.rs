//! Input the handler did not consume is offered again without new bytes
//! from the peer: after the other ready connections (later in the turn or
//! the next one) while each call consumes a frame, after `resume_read`,
//! and after `on_drain`. A call that consumes nothing is not
//! repeated for the same bytes. At the peer's FIN, what is left reaches
//! `on_read_closed`.

mod common;
mod harness;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::*;
use evloop::{Config, ConnId, Context, Handler};
use harness::{first_line, spawn, Shared};

/// Answers one line per call, then pauses reading until a timer resumes
/// it: a handler waiting on a backend between requests.
struct PausingLines;

impl Handler for PausingLines {
    type Message = ();

    fn on_data(&mut self, cx: &mut Context<'_>, conn: ConnId, input: &[u8]) -> usize {
        let Some(line) = first_line(input) else {
            return 0;
        };
        cx.write(conn, &line.to_ascii_uppercase()).unwrap();
        cx.pause_read(conn);
        cx.set_timer(Duration::from_millis(20), conn.as_u64());
        line.len()
    }

    fn on_timer(&mut self, cx: &mut Context<'_>, token: u64) {
        cx.resume_read(ConnId::from_u64(token));
    }
}

#[test]
fn one_frame_per_call_handler_paused_until_timer_answers_all_pipelined_requests() {
    let server = spawn(PausingLines, Config::default());
    let mut s = client(server.addr);
    s.write_all(b"a\nb\nc\n").unwrap();
    // Nothing more is sent: "b" and "c" wait in the reactor, and only
    // resume_read can bring them back.
    assert_eq!(read_n(&mut s, 6), b"A\nB\nC\n");
}

/// Every `on_data` call: the turn it ran in, and the input it was given.
type Calls = Shared<Vec<(u64, Vec<u8>)>>;

/// Answers one line per call and never pauses.
struct OneLine {
    calls: Calls,
}

impl Handler for OneLine {
    type Message = ();

    fn on_data(&mut self, cx: &mut Context<'_>, conn: ConnId, input: &[u8]) -> usize {
        self.calls.lock().push((cx.stats().turns, input.to_vec()));
        let Some(line) = first_line(input) else {
            return 0;
        };
        cx.write(conn, &line.to_ascii_uppercase()).unwrap();
        line.len()
    }
}

#[test]
fn one_frame_per_call_handler_gets_the_rest_on_the_next_turns_without_new_bytes() {
    let calls = Calls::default();
    let server = spawn(
        OneLine {
            calls: calls.clone(),
        },
        Config::default(),
    );
    let mut s = client(server.addr);
    s.write_all(b"a\nb\nc\n").unwrap();
    assert_eq!(read_n(&mut s, 6), b"A\nB\nC\n");
    let calls = calls.lock();
    let inputs: Vec<&[u8]> = calls.iter().map(|(_, input)| &input[..]).collect();
    assert_eq!(
        inputs,
        [&b"a\nb\nc\n"[..], b"b\nc\n", b"c\n"],
        "each call gets the rest of the same read"
    );
    // Not all in one dispatch: a handler that takes a bounded share of
    // its input lets the other connections in between (the rest comes
    // from the ready list, after every event of the turn, and from the
    // next turn's).
    let turns: Vec<u64> = calls.iter().map(|&(turn, _)| turn).collect();
    assert!(
        turns.windows(2).all(|w| w[0] <= w[1]) && turns[0] < turns[2],
        "the rest was offered within one dispatch: {turns:?}"
    );
}

const ANSWER: usize = 100 * 1024;

/// Answers each line with 100 KiB (more than the high-water mark), and
/// takes no frame while its output is above the low-water mark.
struct BigAnswers {
    threshold: usize,
    drains: Shared<usize>,
}

impl Handler for BigAnswers {
    type Message = ();

    fn on_data(&mut self, cx: &mut Context<'_>, conn: ConnId, input: &[u8]) -> usize {
        if cx.output_len(conn).unwrap_or(0) > self.threshold {
            return 0;
        }
        let Some(line) = first_line(input) else {
            return 0;
        };
        let mut answer = vec![line[0]; ANSWER - 1];
        answer.push(b'\n');
        cx.write(conn, &answer).unwrap();
        line.len()
    }

    fn on_drain(&mut self, _cx: &mut Context<'_>, _conn: ConnId) {
        *self.drains.lock() += 1;
    }
}

#[test]
fn frames_left_under_backpressure_are_offered_after_on_drain() {
    let config = Config {
        high_water: 64 * 1024,
        low_water: 16 * 1024,
        ..Config::default()
    };
    let drains = Shared::default();
    let server = spawn(
        BigAnswers {
            threshold: config.low_water,
            drains: drains.clone(),
        },
        config,
    );
    let mut s = client(server.addr);
    let requests = b"0\n1\n2\n3\n4\n5\n6\n7\n";
    s.write_all(requests).unwrap();
    // The client sends nothing more: frames the handler could not take
    // while its output was full come back only through on_drain.
    for &tag in requests.iter().step_by(2) {
        let answer = read_n(&mut s, ANSWER);
        assert!(
            answer[..ANSWER - 1].iter().all(|&b| b == tag) && answer[ANSWER - 1] == b'\n',
            "answer for request {}",
            tag as char
        );
    }
    assert!(*drains.lock() > 0, "on_drain never ran: nothing was tested");
}

/// Counts calls; consumes whole lines only.
struct Counting {
    calls: Shared<usize>,
}

impl Handler for Counting {
    /// Where to send the reactor's turn count.
    type Message = mpsc::Sender<u64>;

    fn on_data(&mut self, cx: &mut Context<'_>, conn: ConnId, input: &[u8]) -> usize {
        *self.calls.lock() += 1;
        let Some(line) = first_line(input) else {
            return 0;
        };
        cx.write(conn, &line.to_ascii_uppercase()).unwrap();
        line.len()
    }

    fn on_message(&mut self, cx: &mut Context<'_>, reply: mpsc::Sender<u64>) {
        let _ = reply.send(cx.stats().turns);
    }
}

#[test]
fn partial_frame_is_not_offered_again_until_new_bytes_come() {
    let calls = Shared::default();
    let server = spawn(
        Counting {
            calls: calls.clone(),
        },
        Config::default(),
    );
    let turns = || {
        let (tx, rx) = mpsc::channel();
        server.handle.post(tx).unwrap();
        rx.recv_timeout(PATIENCE).expect("turn count")
    };
    let mut s = client(server.addr);
    s.write_all(b"abc").unwrap();
    calls.wait_for("the partial frame", |&n| n >= 1);
    let before = turns();
    thread::sleep(Duration::from_millis(100));
    let after = turns();
    assert_eq!(*calls.lock(), 1, "called again for the same bytes");
    // Two posts, and a spare turn or two; a loop re-offering the partial
    // frame, or never sleeping in poll, makes thousands.
    assert!(
        after - before < 20,
        "{} turns in 100 ms with nothing to do",
        after - before
    );
    s.write_all(b"def\n").unwrap();
    assert_eq!(read_n(&mut s, 7), b"ABCDEF\n");
    assert_eq!(*calls.lock(), 2, "one call per read");
}

/// What a line handler saw: the lines it took, and the input left at FIN.
#[derive(Default)]
struct FinLog {
    lines: Vec<Vec<u8>>,
    at_fin: Option<Vec<u8>>,
}

/// Answers whole lines; at FIN answers the unterminated rest too.
struct LastRecord {
    log: Shared<FinLog>,
}

impl Handler for LastRecord {
    type Message = ();

    fn on_data(&mut self, cx: &mut Context<'_>, conn: ConnId, input: &[u8]) -> usize {
        let Some(line) = first_line(input) else {
            return 0;
        };
        self.log.lock().lines.push(line.to_vec());
        cx.write(conn, &line.to_ascii_uppercase()).unwrap();
        line.len()
    }

    fn on_read_closed(&mut self, cx: &mut Context<'_>, conn: ConnId, input: &[u8]) {
        self.log.lock().at_fin = Some(input.to_vec());
        if !input.is_empty() {
            cx.write(conn, &input.to_ascii_uppercase()).unwrap();
            cx.write(conn, b"\n").unwrap();
        }
        cx.close(conn);
    }
}

#[test]
fn fin_with_partial_frame_reaches_on_read_closed() {
    let log = Shared::<FinLog>::default();
    let server = spawn(LastRecord { log: log.clone() }, Config::default());
    let mut s = client(server.addr);
    s.write_all(b"abc\ndef").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"ABC\nDEF\n");
    let log = log.lock();
    assert_eq!(log.lines, [b"abc\n"]);
    assert_eq!(log.at_fin.as_deref(), Some(&b"def"[..]));
}
