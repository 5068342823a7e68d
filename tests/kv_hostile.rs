//! The kv example against clients that send values meant to break it:
//! every number a client sends is checked before it is used, and a bad one
//! gets Redis's error while the server goes on serving. Raw sockets, one
//! command per line (the inline form), the server as a real process.

mod process;

use std::io::{BufRead, BufReader, Write};
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
