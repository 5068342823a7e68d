//! The kv example against clients that send values meant to break it:
//! every number a client sends is checked before it is used, and a bad one
//! gets Redis's error while the server goes on serving. Raw sockets, one
//! command per line (the inline form), the server as a real process.

mod process;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use process::Proc;

/// One connection, one command per call, one reply line back.
struct Session {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Session {
    fn open(port: u16) -> Session {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Session {
            writer: s.try_clone().unwrap(),
            reader: BufReader::new(s),
        }
    }

    /// An inline command: words split on spaces.
    fn say(&mut self, command: &str) -> String {
        self.writer
            .write_all(format!("{command}\r\n").as_bytes())
            .unwrap();
        self.reply(command)
    }

    /// A command as a RESP array, so an argument may hold anything.
    fn send(&mut self, args: &[&str]) -> String {
        let mut frame = format!("*{}\r\n", args.len());
        for a in args {
            frame += &format!("${}\r\n{a}\r\n", a.len());
        }
        self.writer.write_all(frame.as_bytes()).unwrap();
        self.reply(&args.join(" "))
    }

    /// Sends `command` `n` times in one write, then FIN, and reads every
    /// reply to the server's close.
    fn pipeline_with_fin(&mut self, command: &str, n: usize) -> Vec<u8> {
        self.writer
            .write_all(format!("{command}\r\n").repeat(n).as_bytes())
            .unwrap();
        self.writer.shutdown(std::net::Shutdown::Write).unwrap();
        let mut all = Vec::new();
        let _ = self.reader.read_to_end(&mut all);
        all
    }

    fn reply(&mut self, command: &str) -> String {
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("{command}: no reply: {e}"));
        assert!(!line.is_empty(), "{command}: the server closed");
        line.trim_end().to_string()
    }
}

const INVALID_EXPIRE: &str = "-ERR invalid expire time in 'set' command";
const NOT_AN_INTEGER: &str = "-ERR value is not an integer or out of range";

/// What Redis 7.0 answers to each (checked against redis-server 7.0.15).
#[test]
fn expire_times_are_answered_as_redis_answers_them() {
    let kv = Proc::start(&[], "kv", &[]);
    let mut s = Session::open(kv.port);
    for (amount, unit, answer) in [
        // Past a 64-bit integer: not a number at all.
        ("18446744073709551615", "EX", NOT_AN_INTEGER),
        ("18446744073709551615", "PX", NOT_AN_INTEGER),
        ("9223372036854775808", "PX", NOT_AN_INTEGER),
        // A number, but the deadline overflows: an invalid expire time.
        ("9223372036854775807", "EX", INVALID_EXPIRE),
        ("9223372036854776", "EX", INVALID_EXPIRE),
        ("9223372036854775", "EX", INVALID_EXPIRE),
        ("9223372036854775807", "PX", INVALID_EXPIRE),
        // Not positive.
        ("0", "EX", INVALID_EXPIRE),
        ("0", "PX", INVALID_EXPIRE),
        ("-1", "EX", INVALID_EXPIRE),
        ("-100", "PX", INVALID_EXPIRE),
        // Not an integer as Redis reads one.
        ("1.5", "EX", NOT_AN_INTEGER),
        ("+5", "EX", NOT_AN_INTEGER),
        (" 5", "EX", NOT_AN_INTEGER),
        ("", "EX", NOT_AN_INTEGER),
        ("05", "EX", NOT_AN_INTEGER),
    ] {
        assert_eq!(
            s.send(&["SET", "k", "v", unit, amount]),
            answer,
            "SET k v {unit} {amount:?}"
        );
    }
    assert_eq!(s.say("EXISTS k"), ":0", "a refused SET stored nothing");
    // A deadline far away but within range is taken, and the server
    // lives on.
    assert_eq!(s.say("SET k v EX 9223372036854"), "+OK");
    assert_eq!(s.say("GET k"), "$1");
    assert_eq!(s.say(""), "v");
    assert_eq!(s.say("PING"), "+PONG");
}

#[test]
fn increments_that_overflow_are_refused_and_the_value_kept() {
    let kv = Proc::start(&[], "kv", &[]);
    let mut s = Session::open(kv.port);
    assert_eq!(s.say("SET max 9223372036854775807"), "+OK");
    assert_eq!(
        s.say("INCR max"),
        "-ERR increment or decrement would overflow"
    );
    assert_eq!(s.say("GET max"), "$19");
    assert_eq!(s.reply("payload"), "9223372036854775807");
    assert_eq!(s.say("SET min -9223372036854775808"), "+OK");
    assert_eq!(
        s.say("DECR min"),
        "-ERR increment or decrement would overflow"
    );
    for not_a_number in ["abc", "1.5", "+5", " 5", "99999999999999999999", ""] {
        assert_eq!(s.send(&["SET", "n", not_a_number]), "+OK");
        assert_eq!(s.say("INCR n"), NOT_AN_INTEGER, "{not_a_number:?}");
    }
    assert_eq!(s.say("SET n -5"), "+OK");
    assert_eq!(s.say("INCR n"), ":-4");
    assert_eq!(s.say("PING"), "+PONG");
}

/// Holds the RSS probe's bound: a few hundred MiB over the baseline, where
/// the unbounded server reached gigabytes.
const RSS_SLACK: u64 = 200 << 20;

const BIG: usize = 512 * 1024;

/// A server holding one 512 KiB value under `big`, and its RSS with it.
fn with_big_value() -> (Proc, u64) {
    let kv = Proc::start(&[], "kv", &[]);
    let mut s = Session::open(kv.port);
    let value = "v".repeat(BIG);
    assert_eq!(s.send(&["SET", "big", &value]), "+OK");
    let baseline = kv.rss();
    (kv, baseline)
}

/// Watches the server's RSS for `how_long`; returns the most seen.
fn peak_rss(kv: &Proc, how_long: Duration) -> u64 {
    let end = std::time::Instant::now() + how_long;
    let mut peak = 0;
    while std::time::Instant::now() < end {
        peak = peak.max(kv.rss());
        std::thread::sleep(Duration::from_millis(20));
    }
    peak
}

#[test]
fn pipelined_gets_that_nobody_reads_do_not_build_gigabytes() {
    let (kv, baseline) = with_big_value();
    let mut c = Session::open(kv.port);
    // 64 KiB of GETs: 7,281 replies of 512 KiB, 3.8 GB if built at once.
    let pipeline = "GET big\r\n".repeat(64 * 1024 / 9);
    c.writer.write_all(pipeline.as_bytes()).unwrap();
    let peak = peak_rss(&kv, Duration::from_millis(800));
    assert!(
        peak < baseline + RSS_SLACK,
        "RSS went from {} MiB to {} MiB",
        baseline >> 20,
        peak >> 20
    );
    drop(c);
    assert_eq!(Session::open(kv.port).say("PING"), "+PONG");
}

#[test]
fn an_mget_reply_past_the_hard_limit_closes_that_connection_only() {
    let (kv, baseline) = with_big_value();
    let mut c = Session::open(kv.port);
    // 65,535 copies of a 512 KiB value: a 34 GB reply.
    let keys = vec!["big"; 65_535];
    let mut args = vec!["MGET"];
    args.extend_from_slice(&keys);
    let mut frame = format!("*{}\r\n", args.len());
    for a in &args {
        frame += &format!("${}\r\n{a}\r\n", a.len());
    }
    c.writer.write_all(frame.as_bytes()).unwrap();
    let peak = peak_rss(&kv, Duration::from_millis(800));
    assert!(
        peak < baseline + RSS_SLACK,
        "RSS went from {} MiB to {} MiB",
        baseline >> 20,
        peak >> 20
    );
    // The connection was closed (as a slow consumer: with RST) after at
    // most the hard output limit of its reply.
    let mut got = 0usize;
    let mut buf = vec![0; 1 << 16];
    loop {
        match c.reader.get_mut().read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    assert!(
        got < 64 << 20,
        "read {got} bytes of a reply that should have been cut"
    );
    assert_eq!(Session::open(kv.port).say("PING"), "+PONG");
}

#[test]
fn a_pipeline_behind_backpressure_is_answered_whole_even_after_the_clients_fin() {
    let (kv, _) = with_big_value();
    let mut c = Session::open(kv.port);
    // 300 replies of 512 KiB: far past the high-water mark, so the server
    // takes them a few at a time as the client reads; the client's FIN
    // comes long before the last is taken, and must not cut the rest.
    let n = 300;
    let all = c.pipeline_with_fin("GET big", n);
    let reply = format!("${BIG}\r\n{}\r\n", "v".repeat(BIG));
    assert_eq!(all.len(), n * reply.len(), "replies lost");
    assert!(all.chunks(reply.len()).all(|r| r == reply.as_bytes()));
}

/// `used_memory` from INFO.
fn used_memory(s: &mut Session) -> u64 {
    let header = s.say("INFO");
    assert!(header.starts_with('$'), "{header}");
    loop {
        let line = s.reply("INFO");
        if let Some(n) = line.strip_prefix("used_memory:") {
            let n = n.parse().unwrap();
            // Read the rest of the bulk, then its closing CRLF.
            while !s.reply("INFO").starts_with("db0:") {}
            assert_eq!(s.reply("INFO"), "");
            return n;
        }
    }
}

#[test]
fn the_memory_count_includes_the_expiry_index_and_comes_back_on_delete() {
    let kv = Proc::start(&[], "kv", &[]);
    let mut s = Session::open(kv.port);
    // A first key makes the tables; the count is then compared with them.
    assert_eq!(s.say("SET warm v"), "+OK");
    let start = used_memory(&mut s);
    assert_eq!(s.say("SET plain value"), "+OK");
    let plain = used_memory(&mut s) - start;
    assert_eq!(s.say("DEL plain"), ":1");
    assert_eq!(
        used_memory(&mut s),
        start,
        "a deleted key left its bytes counted"
    );
    assert_eq!(s.say("SET timed value EX 100"), "+OK");
    let timed = used_memory(&mut s) - start;
    assert!(
        timed >= plain + 5 + 48,
        "an expiry costs its index entry and its timer: {timed} vs {plain}"
    );
    assert_eq!(s.say("SET timed other"), "+OK"); // drops the expiry
    assert_eq!(s.say("DEL timed"), ":1");
    assert_eq!(
        used_memory(&mut s),
        start,
        "the expiry's bytes stayed counted"
    );
}

#[test]
fn pipelined_mgets_are_held_back_by_the_high_water_mark_too() {
    // Each MGET hands its reply to the reactor as it is built; the next
    // command must still wait for the output to drain, or 40 of them
    // (20 MiB) pass the hard limit and a well-behaved client is dropped.
    let (kv, _) = with_big_value();
    let mut c = Session::open(kv.port);
    let n = 40;
    let all = c.pipeline_with_fin("MGET big", n);
    let one = format!("*1\r\n${BIG}\r\n{}\r\n", "v".repeat(BIG)).len();
    assert_eq!(
        all.len(),
        n * one,
        "got {} of {n} MGET replies",
        all.len() / one
    );
}
