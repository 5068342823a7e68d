//! The kv example's commands over real sockets, family by family, with
//! Redis 7.0's exact replies and error texts (each checked against
//! redis-server 7.0.15), and the hostile cases each family invites: a
//! string grown past its limit, a float that becomes infinite, an expiry
//! that overflows, a SCAN of no keys or of all of them, a glob that would
//! backtrack for ever, a database number out of range.

mod process;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use process::Proc;

/// A reply, as RESP2 sends it.
#[derive(Debug, PartialEq)]
enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// A short text to compare with: `+OK`, `-ERR ...`, `:1`, the bulk's
    /// bytes, `(nil)`, `[a, b]`.
    fn text(&self) -> String {
        match self {
            Reply::Simple(s) => format!("+{s}"),
            Reply::Error(e) => format!("-{e}"),
            Reply::Int(n) => format!(":{n}"),
            Reply::Bulk(Some(b)) => String::from_utf8_lossy(b).into_owned(),
            Reply::Bulk(None) | Reply::Array(None) => "(nil)".into(),
            Reply::Array(Some(items)) => {
                let items: Vec<String> = items.iter().map(Reply::text).collect();
                format!("[{}]", items.join(", "))
            }
        }
    }
}

/// One connection to the server.
struct Session {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Session {
    fn open(port: u16) -> Session {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Session {
            writer: s.try_clone().unwrap(),
            reader: BufReader::new(s),
        }
    }

    /// Sends a command as a RESP array of bulk strings.
    fn send(&mut self, args: &[&[u8]]) {
        let mut frame = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            frame.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            frame.extend_from_slice(a);
            frame.extend_from_slice(b"\r\n");
        }
        self.writer.write_all(&frame).unwrap();
    }

    /// A command (words split on spaces) and its reply as text.
    fn c(&mut self, command: &str) -> String {
        let words: Vec<&[u8]> = command.split(' ').map(str::as_bytes).collect();
        self.send(&words);
        self.reply().text()
    }

    /// A command given word by word (a word may hold spaces).
    fn words(&mut self, words: &[&str]) -> String {
        let words: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
        self.send(&words);
        self.reply().text()
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("a reply");
        assert!(line.ends_with("\r\n"), "cut reply: {line:?}");
        line.truncate(line.len() - 2);
        line
    }

    fn reply(&mut self) -> Reply {
        let line = self.line();
        let (kind, rest) = line.split_at(1);
        match kind {
            "+" => Reply::Simple(rest.into()),
            "-" => Reply::Error(rest.into()),
            ":" => Reply::Int(rest.parse().unwrap()),
            "$" => match rest.parse::<i64>().unwrap() {
                -1 => Reply::Bulk(None),
                n => {
                    let mut data = vec![0; n as usize + 2];
                    self.reader.read_exact(&mut data).unwrap();
                    data.truncate(n as usize);
                    Reply::Bulk(Some(data))
                }
            },
            "*" => match rest.parse::<i64>().unwrap() {
                -1 => Reply::Array(None),
                n => Reply::Array(Some((0..n).map(|_| self.reply()).collect())),
            },
            _ => panic!("not a reply: {line:?}"),
        }
    }
}

fn kv() -> (Proc, Session) {
    let kv = Proc::start(&[], "kv", &[]);
    let s = Session::open(kv.port);
    (kv, s)
}

const WRONGTYPE: &str = "-WRONGTYPE Operation against a key holding the wrong kind of value";
const SYNTAX: &str = "-ERR syntax error";
const NOT_AN_INTEGER: &str = "-ERR value is not an integer or out of range";
const TOO_BIG: &str = "-ERR string exceeds maximum allowed size (proto-max-bulk-len)";

/// The largest string (examples/kv/strings.rs, MAX_VALUE).
const MAX_VALUE: usize = 8 << 20;

// ---- strings ----------------------------------------------------------

#[test]
fn set_and_its_options_answer_as_redis() {
    let (_kv, mut s) = kv();
    // XX with GET on a missing key: GET's nil, and nothing stored.
    assert_eq!(s.c("SET d v XX GET"), "(nil)");
    assert_eq!(s.c("EXISTS d"), ":0");
    assert_eq!(s.c("SET d v NX GET"), "(nil)");
    assert_eq!(s.c("SET d w NX GET"), "v", "NX refused: the old value");
    assert_eq!(s.c("SET d w XX GET"), "v");
    assert_eq!(s.c("SET d x XX"), "+OK");
    assert_eq!(s.c("SET d y NX"), "(nil)");
    assert_eq!(s.c("GET d"), "x");
    for bad in [
        "SET d v NX XX",
        "SET d v EX",
        "SET d v EX 10 PX 10",
        "SET d v KEEPTTL EX 10",
        "SET d v EX 10 KEEPTTL",
        "SET d v PERSIST",
        "SET d v foo",
    ] {
        assert_eq!(s.c(bad), SYNTAX, "{bad}");
    }
    assert_eq!(s.c("SET d v EX 10 EX 20"), "+OK", "the same unit twice");
    assert_eq!(s.c("TTL d"), ":20");
    assert_eq!(s.c("SET d v KEEPTTL"), "+OK");
    assert_eq!(s.c("TTL d"), ":20");
    assert_eq!(s.c("SET d v"), "+OK");
    assert_eq!(s.c("TTL d"), ":-1", "a plain SET drops the expiry");
    assert_eq!(
        s.c("SET d v EX 0"),
        "-ERR invalid expire time in 'set' command"
    );
    assert_eq!(s.c("SET d v PX x"), NOT_AN_INTEGER);
    // GET on another type: WRONGTYPE, and the list stays.
    assert_eq!(s.c("RPUSH list waffle"), ":1");
    assert_eq!(s.c("SET list bar GET"), WRONGTYPE);
    assert_eq!(s.c("LRANGE list 0 -1"), "[waffle]");
    // Without GET, SET replaces any type.
    assert_eq!(s.c("SET list bar"), "+OK");
    assert_eq!(s.c("TYPE list"), "+string");
}

#[test]
fn absolute_expiry_times_are_kept_to_the_millisecond() {
    let (_kv, mut s) = kv();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let at = now_ms + 100_000;
    assert_eq!(s.c(&format!("SET k v PXAT {at}")), "+OK");
    assert_eq!(s.c("PEXPIRETIME k"), format!(":{at}"));
    assert_eq!(s.c(&format!("SET k v EXAT {}", at / 1000)), "+OK");
    assert_eq!(s.c("EXPIRETIME k"), format!(":{}", at / 1000));
    // A time already past stores a key that is already gone.
    assert_eq!(s.c("SET k v PXAT 1"), "+OK");
    assert_eq!(s.c("EXISTS k"), ":0");
}

#[test]
fn getex_getdel_getset_setnx_setex_msetnx() {
    let (_kv, mut s) = kv();
    assert_eq!(s.c("SET k v"), "+OK");
    assert_eq!(s.c("GETEX k EX 100"), "v");
    assert_eq!(s.c("TTL k"), ":100");
    assert_eq!(s.c("GETEX k PERSIST"), "v");
    assert_eq!(s.c("TTL k"), ":-1");
    assert_eq!(s.c("GETEX k PERSIST EX 10"), SYNTAX);
    assert_eq!(s.c("GETEX k NX"), SYNTAX, "SET's options are not GETEX's");
    assert_eq!(
        s.c("GETEX k EX 10000000000000000"),
        "-ERR invalid expire time in 'getex' command"
    );
    assert_eq!(s.c("GETEX nokey EX x"), "(nil)", "no key: no check");
    assert_eq!(s.c("GETEX k PXAT 1"), "v", "answered, then deleted");
    assert_eq!(s.c("EXISTS k"), ":0");
    assert_eq!(
        s.c("GETEX"),
        "-ERR wrong number of arguments for 'getex' command"
    );
    assert_eq!(s.c("SET k v"), "+OK");
    assert_eq!(s.c("GETDEL k"), "v");
    assert_eq!(s.c("GETDEL k"), "(nil)");
    assert_eq!(s.c("GETSET k a"), "(nil)");
    assert_eq!(s.c("GETSET k b"), "a");
    assert_eq!(s.c("SETNX k c"), ":0");
    assert_eq!(s.c("SETNX n c"), ":1");
    assert_eq!(s.c("SETEX e 100 v"), "+OK");
    assert_eq!(s.c("TTL e"), ":100");
    assert_eq!(
        s.c("SETEX e -10 v"),
        "-ERR invalid expire time in 'setex' command"
    );
    assert_eq!(
        s.c("PSETEX e 0 v"),
        "-ERR invalid expire time in 'psetex' command"
    );
    assert_eq!(s.c("MSETNX a 1 k 2"), ":0", "k exists: nothing set");
    assert_eq!(s.c("EXISTS a"), ":0");
    assert_eq!(s.c("MSETNX a 1 b 2"), ":1");
    assert_eq!(s.c("MGET a b nokey"), "[1, 2, (nil)]");
    assert_eq!(
        s.c("MSET a 1 b"),
        "-ERR wrong number of arguments for 'mset' command"
    );
    assert_eq!(
        s.c("MSETNX a"),
        "-ERR wrong number of arguments for 'msetnx' command"
    );
}

#[test]
fn counters_refuse_overflow_and_what_is_not_a_number() {
    let (_kv, mut s) = kv();
    assert_eq!(s.c("INCRBY n 17179869184"), ":17179869184");
    assert_eq!(s.c("DECRBY n 17179869185"), ":-1");
    assert_eq!(s.c("INCRBY n x"), NOT_AN_INTEGER);
    assert_eq!(
        s.c("DECRBY n -9223372036854775808"),
        "-ERR decrement would overflow"
    );
    assert_eq!(s.c("SET n 9223372036854775807"), "+OK");
    assert_eq!(
        s.c("INCRBY n 1"),
        "-ERR increment or decrement would overflow"
    );
    assert_eq!(s.c("GET n"), "9223372036854775807");
    for not_a_number in ["    11", "11    ", "1.5", "+1", ""] {
        assert_eq!(s.words(&["SET", "n", not_a_number]), "+OK");
        assert_eq!(s.c("INCR n"), NOT_AN_INTEGER, "{not_a_number:?}");
    }
}

#[test]
fn incrbyfloat_refuses_infinity_nan_and_what_is_not_a_float() {
    let (_kv, mut s) = kv();
    assert_eq!(s.c("INCRBYFLOAT f 1"), "1");
    assert_eq!(s.c("INCRBYFLOAT f 0.25"), "1.25");
    assert_eq!(s.c("INCRBYFLOAT f -1.25"), "0", "no negative zero");
    assert_eq!(s.c("SET f 17179869184"), "+OK");
    assert_eq!(s.c("INCRBYFLOAT f 1.5"), "17179869185.5");
    for infinite in ["+inf", "-inf", "inf", "infinity"] {
        assert_eq!(
            s.c(&format!("INCRBYFLOAT f {infinite}")),
            "-ERR increment would produce NaN or Infinity"
        );
    }
    assert_eq!(s.c("SET big 1.7976931348623157e308"), "+OK");
    assert_eq!(
        s.c("INCRBYFLOAT big 1.7976931348623157e308"),
        "-ERR increment would produce NaN or Infinity"
    );
    for bad in ["nan", "abc", "1e400", " 1", "1 ", ""] {
        assert_eq!(
            s.words(&["INCRBYFLOAT", "f", bad]),
            "-ERR value is not a valid float",
            "{bad:?}"
        );
    }
    assert_eq!(s.c("SET f 1"), "+OK");
    assert_eq!(s.c("SETRANGE f 2 2"), ":3");
    assert_eq!(
        s.c("INCRBYFLOAT f 1"),
        "-ERR value is not a valid float",
        "a value with a NUL inside"
    );
    assert_eq!(s.c("GET f").as_bytes(), b"1\x002");
}

#[test]
fn ranges_appends_and_bits() {
    let (_kv, mut s) = kv();
    assert_eq!(s.words(&["SET", "k", "Hello World"]), "+OK");
    assert_eq!(s.c("GETRANGE k 0 3"), "Hell");
    assert_eq!(s.c("GETRANGE k -4 -1"), "orld");
    assert_eq!(s.c("GETRANGE k 5 3"), "");
    assert_eq!(s.c("GETRANGE k -1 -5"), "");
    assert_eq!(s.c("GETRANGE k 0 4294967297"), "Hello World");
    assert_eq!(
        s.c("GETRANGE k -9223372036854775808 9223372036854775807"),
        "Hello World"
    );
    assert_eq!(s.c("GETRANGE k x 1"), NOT_AN_INTEGER);
    assert_eq!(s.c("SETRANGE k 6 Redis"), ":11");
    assert_eq!(s.c("GET k"), "Hello Redis");
    assert_eq!(s.c("SETRANGE new 1 foo"), ":4");
    assert_eq!(s.c("GET new").as_bytes(), b"\0foo");
    assert_eq!(s.c("SETRANGE none 5 "), ":0");
    assert_eq!(s.c("EXISTS none"), ":0");
    assert_eq!(s.c("SETRANGE k -1 x"), "-ERR offset is out of range");
    assert_eq!(s.c("APPEND k !"), ":12");
    assert_eq!(s.c("STRLEN k"), ":12");
    assert_eq!(s.c("STRLEN nokey"), ":0");
    assert_eq!(s.c("SETBIT b 1 1"), ":0");
    assert_eq!(s.c("GET b"), "@");
    assert_eq!(s.c("SETBIT b 1 0"), ":1");
    assert_eq!(s.c("GETBIT b 1"), ":0");
    assert_eq!(s.c("GETBIT b 100000"), ":0");
    assert_eq!(s.c("GETBIT nokey 0"), ":0");
    for bad in ["SETBIT b -1 1", "SETBIT b x 1", "GETBIT b -1"] {
        assert_eq!(
            s.c(bad),
            "-ERR bit offset is not an integer or out of range",
            "{bad}"
        );
    }
    for bad in ["SETBIT b 0 2", "SETBIT b 0 -1", "SETBIT b 0 x"] {
        assert_eq!(
            s.c(bad),
            "-ERR bit is not an integer or out of range",
            "{bad}"
        );
    }
}

#[test]
fn a_string_never_grows_past_the_value_limit() {
    let (kv, mut s) = kv();
    // SETRANGE far out: refused before anything is allocated.
    for offset in ["9223372036854775807", "2147483647", "536870908"] {
        assert_eq!(s.c(&format!("SETRANGE k {offset} world")), TOO_BIG);
        assert_eq!(s.c(&format!("SETRANGE k {offset} ")), ":0");
    }
    assert_eq!(s.c(&format!("SETRANGE k {} world", MAX_VALUE - 4)), TOO_BIG);
    assert_eq!(
        s.c(&format!("SETRANGE k {} world", MAX_VALUE - 5)),
        format!(":{MAX_VALUE}")
    );
    // APPEND to a value at the limit.
    assert_eq!(s.c("APPEND k x"), TOO_BIG);
    assert_eq!(s.c("APPEND k "), format!(":{MAX_VALUE}"));
    assert_eq!(s.c("STRLEN k"), format!(":{MAX_VALUE}"));
    // SETBIT: a bit past the limit's last byte.
    assert_eq!(
        s.c(&format!("SETBIT k {} 1", MAX_VALUE * 8)),
        "-ERR bit offset is not an integer or out of range"
    );
    assert_eq!(s.c(&format!("SETBIT k {} 1", MAX_VALUE * 8 - 1)), ":0");
    // The whole value comes back in one reply.
    s.send(&[b"GET", b"k"]);
    match s.reply() {
        Reply::Bulk(Some(v)) => assert_eq!(v.len(), MAX_VALUE),
        other => panic!("{:?}", other.text()),
    }
    drop(s);
    assert_eq!(Session::open(kv.port).c("PING"), "+PONG");
}

#[test]
fn lcs_answers_as_redis_and_its_table_is_bounded() {
    let (_kv, mut s) = kv();
    assert_eq!(s.c("SET a ohmytext"), "+OK");
    assert_eq!(s.c("SET b mynewtext"), "+OK");
    assert_eq!(s.c("LCS a b"), "mytext");
    assert_eq!(s.c("LCS a b LEN"), ":6");
    assert_eq!(
        s.c("LCS a b IDX"),
        "[matches, [[[:4, :7], [:5, :8]], [[:2, :3], [:0, :1]]], len, :6]"
    );
    assert_eq!(
        s.c("LCS a b IDX MINMATCHLEN 4 WITHMATCHLEN"),
        "[matches, [[[:4, :7], [:5, :8], :4]], len, :6]"
    );
    assert_eq!(s.c("LCS a nokey"), "");
    assert_eq!(
        s.c("LCS a b LEN IDX"),
        "-ERR If you want both the length and indexes, please just use IDX."
    );
    assert_eq!(s.c("LCS a b MINMATCHLEN"), SYNTAX);
    assert_eq!(s.c("RPUSH l x"), ":1");
    assert_eq!(
        s.c("LCS a l"),
        "-ERR The specified keys must contain string values"
    );
    // Two 2,000-byte strings make a 16 MB table: refused.
    let long = "x".repeat(2000);
    assert_eq!(s.words(&["SET", "a", &long]), "+OK");
    assert_eq!(s.words(&["SET", "b", &long]), "+OK");
    assert_eq!(
        s.c("LCS a b"),
        "-ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len"
    );
}

#[test]
fn object_encoding_follows_how_a_string_was_made() {
    let (_kv, mut s) = kv();
    for (value, encoding) in [
        ("1234", "int"),
        ("-5", "int"),
        ("00", "embstr"),
        ("12345678901234567890", "embstr"),
        (&"x".repeat(44), "embstr"),
        (&"x".repeat(45), "raw"),
    ] {
        assert_eq!(s.words(&["SET", "k", value]), "+OK");
        assert_eq!(s.c("OBJECT ENCODING k"), encoding, "{value}");
    }
    assert_eq!(s.c("SET k 1234"), "+OK");
    assert_eq!(s.c("SETRANGE k 0 "), ":4");
    assert_eq!(
        s.c("OBJECT ENCODING k"),
        "int",
        "nothing set, nothing changed"
    );
    assert_eq!(s.c("SETRANGE k 0 2"), ":4");
    assert_eq!(s.c("OBJECT ENCODING k"), "raw");
    assert_eq!(s.c("INCR k"), ":2235");
    assert_eq!(s.c("OBJECT ENCODING k"), "int");
    assert_eq!(s.c("INCRBYFLOAT f 3"), "3");
    assert_eq!(s.c("OBJECT ENCODING f"), "embstr");
    assert_eq!(s.c("RPUSH l a"), ":1");
    assert_eq!(s.c("OBJECT ENCODING l"), "quicklist");
    assert_eq!(s.c("SADD s 1 2"), ":2");
    assert_eq!(s.c("OBJECT ENCODING s"), "intset");
    assert_eq!(s.c("SADD s a"), ":1");
    assert_eq!(s.c("OBJECT ENCODING s"), "hashtable");
    assert_eq!(s.c("OBJECT ENCODING nokey"), "(nil)");
    assert_eq!(
        s.c("OBJECT ENCODING"),
        "-ERR wrong number of arguments for 'object|encoding' command"
    );
    assert_eq!(
        s.c("OBJECT FOO"),
        "-ERR unknown subcommand 'FOO'. Try OBJECT HELP."
    );
}

// ---- expiry -----------------------------------------------------------

#[test]
fn expire_conditions_and_what_each_answers() {
    let (_kv, mut s) = kv();
    assert_eq!(s.c("SET k v EX 100"), "+OK");
    assert_eq!(s.c("EXPIRE k 200 NX"), ":0");
    assert_eq!(s.c("EXPIRE k 200 XX"), ":1");
    assert_eq!(s.c("EXPIRE k 100 GT"), ":0");
    assert_eq!(s.c("EXPIRE k 300 GT"), ":1");
    assert_eq!(s.c("EXPIRE k 400 LT"), ":0");
    assert_eq!(s.c("EXPIRE k 50 LT XX"), ":1");
    assert_eq!(s.c("TTL k"), ":50");
    assert_eq!(s.c("PERSIST k"), ":1");
    assert_eq!(s.c("PERSIST k"), ":0");
    assert_eq!(s.c("EXPIRE k 100 GT"), ":0", "no expiry is an infinite one");
    assert_eq!(s.c("EXPIRE k 100 XX"), ":0");
    assert_eq!(s.c("EXPIRE k 100 LT"), ":1");
    assert_eq!(s.c("PERSIST k"), ":1");
    assert_eq!(s.c("EXPIRE nokey 100"), ":0");
    for (options, answer) in [
        (
            "LT GT",
            "-ERR GT and LT options at the same time are not compatible",
        ),
        (
            "NX GT",
            "-ERR NX and XX, GT or LT options at the same time are not compatible",
        ),
        (
            "NX XX",
            "-ERR NX and XX, GT or LT options at the same time are not compatible",
        ),
        ("AB", "-ERR Unsupported option AB"),
        ("XX AB", "-ERR Unsupported option AB"),
    ] {
        assert_eq!(s.c(&format!("EXPIRE k 200 {options}")), answer);
    }
    assert_eq!(s.words(&["EXPIRE", "k", ""]), NOT_AN_INTEGER);
    assert_eq!(s.c("TTL k"), ":-1", "refused options changed nothing");
    assert_eq!(s.c("TTL nokey"), ":-2");
    assert_eq!(s.c("PTTL nokey"), ":-2");
    assert_eq!(s.c("EXPIRETIME k"), ":-1");
    assert_eq!(s.c("PEXPIRETIME nokey"), ":-2");
    // A time in the past deletes the key, and says it did.
    assert_eq!(s.c("EXPIRE k -10 LT"), ":1");
    assert_eq!(s.c("EXISTS k"), ":0");
    assert_eq!(s.c("SET k v"), "+OK");
    assert_eq!(s.c("EXPIREAT k 1"), ":1");
    assert_eq!(s.c("EXISTS k"), ":0");
}

#[test]
fn expiry_amounts_that_overflow_are_refused() {
    let (_kv, mut s) = kv();
    assert_eq!(s.c("SET k v"), "+OK");
    for amount in [
        "9223370399119966",
        "9223372036854776",
        "10000000000000000",
        "18446744073709561",
        "-9223372036854776",
        "-9999999999999999",
    ] {
        assert_eq!(
            s.c(&format!("EXPIRE k {amount}")),
            "-ERR invalid expire time in 'expire' command",
            "{amount}"
        );
    }
    assert_eq!(
        s.c("PEXPIRE k 9223372036854770000"),
        "-ERR invalid expire time in 'pexpire' command"
    );
    assert_eq!(s.c("EXPIRE k 99999999999999999999"), NOT_AN_INTEGER);
    assert_eq!(s.c("TTL k"), ":-1");
    // Far but representable: taken, and the server lives on.
    assert_eq!(s.c("PEXPIREAT k 9223372036854775807"), ":1");
    assert_eq!(s.c("EXPIRETIME k"), ":9223372036854776");
    assert_eq!(s.c("PEXPIREAT k -9223372036854770000"), ":1");
    assert_eq!(s.c("TTL k"), ":-2");
    assert_eq!(s.c("PING"), "+PONG");
}

#[test]
fn keys_expire_exactly_when_due_and_their_timers_remove_them() {
    let (_kv, mut s) = kv();
    assert_eq!(s.c("PSETEX k 100 v"), "+OK");
    assert_eq!(s.c("SET other v PX 100"), "+OK");
    assert_eq!(s.c("GET k"), "v");
    thread::sleep(Duration::from_millis(150));
    assert_eq!(s.c("GET k"), "(nil)");
    assert_eq!(s.c("DBSIZE"), ":0", "the timers deleted both");
    assert_eq!(s.c("SET k v PX 100"), "+OK");
    assert_eq!(s.c("SET k w KEEPTTL"), "+OK");
    thread::sleep(Duration::from_millis(150));
    assert_eq!(s.c("EXISTS k"), ":0", "KEEPTTL kept the expiry");
    assert_eq!(s.c("INCR c"), ":1");
    assert_eq!(s.c("PEXPIRE c 100"), ":1");
    assert_eq!(s.c("INCR c"), ":2", "INCR keeps the expiry");
    thread::sleep(Duration::from_millis(150));
    assert_eq!(s.c("GET c"), "(nil)");
    let info = s.c("INFO stats");
    assert!(info.contains("expired_keys:4\r\n"), "{info}");
}

// ---- databases --------------------------------------------------------

#[test]
fn select_takes_0_to_15_and_refuses_the_rest_as_redis_does() {
    let (_kv, mut s) = kv();
    assert_eq!(s.c("SELECT 16"), "-ERR DB index is out of range");
    assert_eq!(s.c("SELECT -1"), "-ERR DB index is out of range");
    assert_eq!(s.c("SELECT x"), NOT_AN_INTEGER);
    assert_eq!(s.c("SELECT 01"), NOT_AN_INTEGER);
    assert_eq!(
        s.c("SELECT 99999999999"),
        "-ERR value is out of range, value must between -2147483648 and 2147483647"
    );
    assert_eq!(s.c("SET k zero"), "+OK");
    assert_eq!(s.c("SELECT 15"), "+OK");
    assert_eq!(s.c("GET k"), "(nil)");
    assert_eq!(s.c("SET k fifteen"), "+OK");
    assert_eq!(s.c("DBSIZE"), ":1");
    assert_eq!(s.c("FLUSHDB"), "+OK");
    assert_eq!(s.c("DBSIZE"), ":0");
    assert_eq!(s.c("SELECT 0"), "+OK");
    assert_eq!(s.c("GET k"), "zero", "FLUSHDB flushed only its database");
    assert_eq!(s.c("FLUSHDB foo"), SYNTAX);
    assert_eq!(s.c("FLUSHALL SYNC extra"), SYNTAX);
    assert_eq!(s.c("FLUSHALL ASYNC"), "+OK");
    assert_eq!(s.c("DBSIZE"), ":0");
}

#[test]
fn swapdb_swaps_keys_with_their_expiries() {
    let (_kv, mut s) = kv();
    assert_eq!(s.c("SELECT 1"), "+OK");
    assert_eq!(s.c("SET timed v PX 300"), "+OK");
    assert_eq!(s.c("SET kept v"), "+OK");
    let mut other = Session::open(_kv.port);
    assert_eq!(other.c("SET zero v"), "+OK");
    assert_eq!(s.c("SWAPDB 0 1"), "+OK");
    // This client is still on 1, which now holds what 0 held.
    assert_eq!(s.c("KEYS *"), "[zero]");
    let ttl: i64 = other.c("PTTL timed")[1..].parse().unwrap();
    assert!((1..=300).contains(&ttl), "{ttl}");
    thread::sleep(Duration::from_millis(400));
    assert_eq!(other.c("EXISTS timed"), ":0");
    assert_eq!(
        other.c("DBSIZE"),
        ":1",
        "the timer deleted it in its new place"
    );
    assert_eq!(s.c("DBSIZE"), ":1");
    let info = s.c("INFO keyspace");
    assert!(info.contains("db0:keys=1,expires=0"), "{info}");
    assert!(info.contains("db1:keys=1,expires=0"), "{info}");
    assert_eq!(s.c("SWAPDB 0 x"), "-ERR invalid second DB index");
    assert_eq!(s.c("SWAPDB x 0"), "-ERR invalid first DB index");
    assert_eq!(s.c("SWAPDB 0 16"), "-ERR DB index is out of range");
    assert_eq!(s.c("SWAPDB 0 99999999999"), "-ERR invalid second DB index");
}

#[test]
fn max_memory_counts_every_database() {
    let kv = Proc::start(&[], "kv", &["--max-memory", "200000"]);
    let mut s = Session::open(kv.port);
    let value = "x".repeat(50_000);
    for db in ["0", "5", "9"] {
        assert_eq!(s.c(&format!("SELECT {db}")), "+OK");
        assert_eq!(s.words(&["SET", "a", &value]), "+OK");
    }
    assert_eq!(s.c("SELECT 12"), "+OK");
    assert_eq!(s.words(&["SET", "a", &value]), "+OK", "the last one past");
    assert_eq!(
        s.words(&["SET", "b", "x"]),
        "-OOM command not allowed when used memory > 'maxmemory'."
    );
    assert_eq!(
        s.c("APPEND a x"),
        "-OOM command not allowed when used memory > 'maxmemory'."
    );
    assert_eq!(s.c("GET b"), "(nil)", "reads go on");
    assert_eq!(s.c("FLUSHALL"), "+OK");
    assert_eq!(s.c("SET b x"), "+OK");
}

// ---- keys ---------------------------------------------------------------

#[test]
fn del_exists_type_rename_randomkey() {
    let (_kv, mut s) = kv();
    assert_eq!(s.c("RANDOMKEY"), "(nil)");
    assert_eq!(s.c("MSET a 1 b 2"), "+OK");
    assert_eq!(s.c("EXISTS a b a nokey"), ":3");
    assert_eq!(s.c("DEL a a nokey"), ":1");
    assert_eq!(s.c("UNLINK b"), ":1");
    assert_eq!(s.c("SET k v EX 100"), "+OK");
    assert_eq!(s.c("RANDOMKEY"), "k");
    assert_eq!(s.c("RENAME k r"), "+OK");
    assert_eq!(s.c("TTL r"), ":100", "the expiry moves with the value");
    assert_eq!(s.c("RENAME k r"), "-ERR no such key");
    assert_eq!(s.c("RENAME r r"), "+OK");
    assert_eq!(s.c("SET o v"), "+OK");
    assert_eq!(s.c("RENAMENX r o"), ":0");
    assert_eq!(s.c("RENAMENX r n"), ":1");
    assert_eq!(s.c("RENAME n o"), "+OK");
    assert_eq!(s.c("TTL o"), ":100");
    assert_eq!(s.c("RPUSH l x"), ":1");
    assert_eq!(s.c("SADD s x"), ":1");
    assert_eq!(s.c("TYPE o"), "+string");
    assert_eq!(s.c("TYPE l"), "+list");
    assert_eq!(s.c("TYPE s"), "+set");
    assert_eq!(s.c("TYPE nokey"), "+none");
}

#[test]
fn keys_matches_redis_globs() {
    let (_kv, mut s) = kv();
    assert_eq!(
        s.c("MSET hello 1 hallo 2 hxllo 3 hllo 4 heeeello 5 a*b 6"),
        "+OK"
    );
    for (pattern, expected) in [
        ("h?llo", "[hallo, hello, hxllo]"),
        ("h*llo", "[hallo, heeeello, hello, hllo, hxllo]"),
        ("h[ae]llo", "[hallo, hello]"),
        ("h[^e]llo", "[hallo, hxllo]"),
        ("h[a-b]llo", "[hallo]"),
        ("a\\*b", "[a*b]"),
        ("nothing*", "[]"),
    ] {
        s.send(&[b"KEYS", pattern.as_bytes()]);
        let Reply::Array(Some(keys)) = s.reply() else {
            panic!("KEYS {pattern}: not an array");
        };
        let mut keys: Vec<String> = keys.iter().map(Reply::text).collect();
        keys.sort();
        assert_eq!(format!("[{}]", keys.join(", ")), expected, "{pattern}");
    }
}

/// SCAN's cursor walk, collected.
fn scan_all(s: &mut Session, options: &[&str]) -> (Vec<String>, usize) {
    let mut cursor = "0".to_string();
    let mut keys = Vec::new();
    let mut calls = 0;
    loop {
        let mut words = vec!["SCAN", cursor.as_str()];
        words.extend_from_slice(options);
        let words: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
        s.send(&words);
        calls += 1;
        let Reply::Array(Some(parts)) = s.reply() else {
            panic!("SCAN: not an array");
        };
        let [next, Reply::Array(Some(found))] = &parts[..] else {
            panic!("SCAN: {parts:?}");
        };
        keys.extend(found.iter().map(Reply::text));
        cursor = next.text();
        if cursor == "0" {
            break;
        }
    }
    keys.sort();
    (keys, calls)
}

#[test]
fn scan_walks_every_key_in_count_sized_steps() {
    let (_kv, mut s) = kv();
    let mut mset = vec!["MSET".to_string()];
    for i in 0..100 {
        mset.push(format!("key:{i:03}"));
        mset.push("v".into());
    }
    let mset: Vec<&str> = mset.iter().map(String::as_str).collect();
    assert_eq!(s.words(&mset), "+OK");
    assert_eq!(s.c("RPUSH list x"), ":1");
    let (keys, calls) = scan_all(&mut s, &["COUNT", "7"]);
    assert_eq!(keys.len(), 101);
    assert_eq!(calls, 101usize.div_ceil(7));
    let (keys, _) = scan_all(&mut s, &["MATCH", "key:0[0-4]?", "COUNT", "30"]);
    assert_eq!(keys.len(), 50);
    let (keys, _) = scan_all(&mut s, &["TYPE", "list"]);
    assert_eq!(keys, ["list"]);
    // COUNT larger than the keyspace: all of it in one call.
    let (keys, calls) = scan_all(&mut s, &["COUNT", "9223372036854775807"]);
    assert_eq!((keys.len(), calls), (101, 1));
    assert_eq!(s.c("SCAN 0 COUNT 0"), SYNTAX);
    assert_eq!(s.c("SCAN 0 COUNT -1"), SYNTAX);
    assert_eq!(s.c("SCAN 0 COUNT x"), NOT_AN_INTEGER);
    assert_eq!(s.c("SCAN 0 MATCH"), SYNTAX);
    assert_eq!(s.c("SCAN 0 FOO bar"), SYNTAX);
    assert_eq!(s.c("SCAN x"), "-ERR invalid cursor");
    assert_eq!(s.c("SCAN 1.5"), "-ERR invalid cursor");
    // A cursor from nowhere is taken (as Redis takes any number).
    assert!(s.c("SCAN 18446744073709551615").starts_with('['));
}

#[test]
fn scan_returns_every_key_that_stays_while_others_come_and_go() {
    let (kv, mut s) = kv();
    let mut mset = vec!["MSET".to_string()];
    for i in 0..500 {
        mset.push(format!("stay:{i}"));
        mset.push("v".into());
        mset.push(format!("go:{i}"));
        mset.push("v".into());
    }
    let mset: Vec<&str> = mset.iter().map(String::as_str).collect();
    assert_eq!(s.words(&mset), "+OK");
    let mut churn = Session::open(kv.port);
    let mut cursor = "0".to_string();
    let mut seen = std::collections::HashSet::new();
    let mut step = 0;
    loop {
        s.send(&[b"SCAN", cursor.as_bytes(), b"COUNT", b"25"]);
        let Reply::Array(Some(parts)) = s.reply() else {
            panic!("SCAN: not an array");
        };
        let [next, Reply::Array(Some(found))] = &parts[..] else {
            panic!("SCAN: {parts:?}");
        };
        seen.extend(found.iter().map(Reply::text));
        cursor = next.text();
        if cursor == "0" {
            break;
        }
        // Between steps, another client deletes some keys and adds others.
        for i in 0..10 {
            assert_eq!(churn.c(&format!("DEL go:{}", step * 10 + i)), ":1");
            assert_eq!(churn.c(&format!("SET new:{step}:{i} v")), "+OK");
        }
        step += 1;
    }
    for i in 0..500 {
        assert!(
            seen.contains(&format!("stay:{i}")),
            "stay:{i} was never returned"
        );
    }
}

#[test]
fn a_pathological_pattern_over_long_keys_returns_quickly() {
    let (_kv, mut s) = kv();
    let a = "a".repeat(100_000);
    for i in 0..50 {
        assert_eq!(s.words(&["SET", &format!("{a}-{i}"), "v"]), "+OK");
    }
    // Matched by backtracking, each of these tries every way to place
    // sixteen stars in 100,000 bytes.
    let stars = "*a".repeat(16);
    let start = Instant::now();
    assert_eq!(s.words(&["KEYS", &format!("{stars}*b")]), "[]");
    assert_eq!(
        s.words(&[
            "SCAN",
            "0",
            "MATCH",
            &format!("{stars}*b*"),
            "COUNT",
            "1000"
        ]),
        "[0, []]"
    );
    s.send(&[b"KEYS", format!("{stars}*-7").as_bytes()]);
    let Reply::Array(Some(keys)) = s.reply() else {
        panic!("KEYS: not an array");
    };
    assert_eq!(keys.len(), 1);
    assert!(keys[0] == Reply::Bulk(Some(format!("{a}-7").into_bytes())));
    // A pass over 5 MB of keys per command, in a debug build on a busy
    // machine: well under a second. Backtracking would take years.
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(s.c("PING"), "+PONG");
}

/// One reply may not pass the reactor's hard output limit (16 MiB): it is
/// built in one call, so the socket cannot drain it meanwhile. A KEYS or
/// SCAN past it closes the connection, after at most that much, and the
/// server lives on; smaller ones, and a SCAN walk, return every key.
#[test]
fn keys_and_scan_replies_are_spilled_and_cut_at_the_output_limit() {
    let (kv, mut s) = kv();
    // 100,000 keys of 200 bytes: a 21 MB KEYS reply.
    for batch in 0..100 {
        let mut mset = vec!["MSET".to_string()];
        for i in 0..1000 {
            mset.push(format!("{:0>200}", batch * 1000 + i));
            mset.push("v".into());
        }
        let mset: Vec<&str> = mset.iter().map(String::as_str).collect();
        assert_eq!(s.words(&mset), "+OK");
    }
    let before = kv.rss();
    for command in [
        &[&b"KEYS"[..], b"*"][..],
        &[b"SCAN", b"0", b"COUNT", b"1000000"],
    ] {
        let mut sloth = Session::open(kv.port);
        sloth.send(command);
        thread::sleep(Duration::from_millis(300));
        assert!(
            kv.rss() < before + (64 << 20),
            "RSS went from {} MiB to {} MiB",
            before >> 20,
            kv.rss() >> 20
        );
        let mut got = 0usize;
        let mut buf = vec![0; 1 << 16];
        loop {
            match sloth.reader.get_mut().read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        assert!(got < 17 << 20, "read {got} bytes of a cut reply");
    }
    s.send(&[b"KEYS", b"*7"]);
    let Reply::Array(Some(keys)) = s.reply() else {
        panic!("KEYS: not an array");
    };
    assert_eq!(keys.len(), 10_000);
    let (keys, calls) = scan_all(&mut s, &["COUNT", "10000"]);
    assert_eq!((keys.len(), calls), (100_000, 10));
    assert_eq!(s.c("DBSIZE"), ":100000");
}

// ---- lists and sets -------------------------------------------------------

#[test]
fn lists_and_sets_and_the_type_rules() {
    let (_kv, mut s) = kv();
    assert_eq!(s.c("RPUSH l a b c"), ":3");
    assert_eq!(s.c("LPUSH l z"), ":4");
    assert_eq!(s.c("LRANGE l 0 -1"), "[z, a, b, c]");
    assert_eq!(s.c("LRANGE l -2 100"), "[b, c]");
    assert_eq!(s.c("LRANGE l 3 1"), "[]");
    assert_eq!(s.c("LRANGE l x 1"), NOT_AN_INTEGER);
    assert_eq!(s.c("LPOP l"), "z");
    assert_eq!(s.c("RPOP l 2"), "[c, b]");
    assert_eq!(s.c("LPOP l 0"), "[]");
    assert_eq!(
        s.c("LPOP l -1"),
        "-ERR value is out of range, must be positive"
    );
    assert_eq!(s.c("LLEN l"), ":1");
    assert_eq!(s.c("RPOP l 5"), "[a]");
    assert_eq!(s.c("EXISTS l"), ":0", "an emptied list is deleted");
    assert_eq!(s.c("LPOP l 2"), "(nil)");
    assert_eq!(s.c("SADD s a b a"), ":2");
    assert_eq!(s.c("SREM s a x"), ":1");
    assert_eq!(s.c("SCARD s"), ":1");
    assert_eq!(s.c("SISMEMBER s b"), ":1");
    assert_eq!(s.c("SMEMBERS s"), "[b]");
    assert_eq!(s.c("SREM s b"), ":1");
    assert_eq!(s.c("EXISTS s"), ":0", "an emptied set is deleted");
    // The string commands on another type.
    assert_eq!(s.c("RPUSH l x"), ":1");
    assert_eq!(s.c("SET str v"), "+OK");
    for command in [
        "GET l",
        "INCR l",
        "INCRBYFLOAT l 1",
        "APPEND l x",
        "SETRANGE l 0 x",
        "GETRANGE l 0 1",
        "STRLEN l",
        "SETBIT l 0 1",
        "GETBIT l 0",
        "GETDEL l",
        "GETEX l",
        "GETSET l x",
        "LPUSH str x",
        "SADD str x",
        "LRANGE str 0 1",
    ] {
        assert_eq!(s.c(command), WRONGTYPE, "{command}");
    }
    assert_eq!(s.c("MGET str l nokey"), "[v, (nil), (nil)]");
}

// ---- server -----------------------------------------------------------------

#[test]
fn connection_commands_and_errors_answer_as_redis() {
    let (_kv, mut s) = kv();
    assert_eq!(s.c("PING"), "+PONG");
    assert_eq!(s.c("PING hi"), "hi");
    assert_eq!(
        s.c("PING a b"),
        "-ERR wrong number of arguments for 'ping' command"
    );
    assert_eq!(s.c("ECHO hi"), "hi");
    assert_eq!(
        s.c("GET"),
        "-ERR wrong number of arguments for 'get' command"
    );
    assert_eq!(
        s.c("Foo bar baz"),
        "-ERR unknown command 'Foo', with args beginning with: 'bar' 'baz' "
    );
    // A name with CR LF in it cannot end the error line early.
    s.send(&[b"X\r\n+OK", b"y\r\n:1"]);
    assert_eq!(
        s.reply().text(),
        "-ERR unknown command 'X  +OK', with args beginning with: 'y  :1' "
    );
    assert_eq!(s.c("PING"), "+PONG", "nothing was injected");
    assert_eq!(s.c("CLIENT GETNAME"), "(nil)");
    assert_eq!(s.c("CLIENT SETNAME worker-1"), "+OK");
    assert_eq!(s.c("CLIENT GETNAME"), "worker-1");
    assert_eq!(
        s.words(&["CLIENT", "SETNAME", "a b"]),
        "-ERR Client names cannot contain spaces, newlines or special characters."
    );
    assert_eq!(
        s.c("CLIENT SETNAME"),
        "-ERR wrong number of arguments for 'client|setname' command"
    );
    assert_eq!(
        s.c("CLIENT foo"),
        "-ERR unknown subcommand 'foo'. Try CLIENT HELP."
    );
    let id = s.c("CLIENT ID");
    assert_eq!(
        s.c("HELLO 2"),
        format!("[server, redis, version, 7.0.15, proto, :2, id, {id}, mode, standalone, role, master, modules, []]")
    );
    assert_eq!(s.c("HELLO 3"), "-NOPROTO unsupported protocol version");
    assert_eq!(
        s.c("HELLO x"),
        "-ERR Protocol version is not an integer or out of range"
    );
    assert_eq!(s.c("HELLO 2 SETNAME other"), format!("[server, redis, version, 7.0.15, proto, :2, id, {id}, mode, standalone, role, master, modules, []]"));
    assert_eq!(s.c("CLIENT GETNAME"), "other");
    assert_eq!(s.c("FUNCTION FLUSH"), "+OK");
    assert_eq!(s.c("CONFIG GET appendonly"), "[appendonly, no]");
    s.send(&[b"TIME"]);
    let Reply::Array(Some(time)) = s.reply() else {
        panic!("TIME: not an array");
    };
    let secs: u64 = time[0].text().parse().unwrap();
    let system = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(secs.abs_diff(system) <= 2, "{secs} vs {system}");
    assert_eq!(s.c("QUIT"), "+OK");
}

#[test]
fn each_connection_has_its_own_database_name_and_id() {
    let (kv, mut a) = kv();
    let mut b = Session::open(kv.port);
    assert_eq!(a.c("SELECT 3"), "+OK");
    assert_eq!(a.c("CLIENT SETNAME a"), "+OK");
    assert_eq!(a.c("SET k a"), "+OK");
    assert_eq!(b.c("GET k"), "(nil)", "b is still on 0");
    assert_eq!(b.c("CLIENT GETNAME"), "(nil)");
    let (ida, idb): (i64, i64) = (
        a.c("CLIENT ID")[1..].parse().unwrap(),
        b.c("CLIENT ID")[1..].parse().unwrap(),
    );
    assert!(idb > ida);
    drop(a);
    thread::sleep(Duration::from_millis(100));
    // A new connection (perhaps in a's old slot) starts afresh.
    let mut c = Session::open(kv.port);
    assert_eq!(c.c("GET k"), "(nil)");
    assert_eq!(c.c("CLIENT GETNAME"), "(nil)");
    let idc: i64 = c.c("CLIENT ID")[1..].parse().unwrap();
    assert!(idc > idb);
    let info = c.c("INFO clients");
    assert!(info.contains("connected_clients:2\r\n"), "{info}");
}

#[test]
fn info_reports_the_sections_in_redis_format() {
    let (_kv, mut s) = kv();
    assert_eq!(s.c("SET k v EX 100"), "+OK");
    let info = s.c("INFO");
    for wanted in [
        "# Server\r\nredis_version:7.0.15\r\n",
        "\r\n\r\n# Clients\r\nconnected_clients:1\r\n",
        "\r\n\r\n# Memory\r\nused_memory:",
        "mem_allocator:libc\r\n",
        "\r\n\r\n# Stats\r\ntotal_connections_received:",
        "\r\n\r\n# Keyspace\r\ndb0:keys=1,expires=1,avg_ttl=",
    ] {
        assert!(info.contains(wanted), "{wanted:?} not in {info}");
    }
    let memory = s.c("INFO memory");
    assert!(memory.starts_with("# Memory\r\n"), "{memory}");
    assert!(!memory.contains("# Server"));
    assert_eq!(s.c("INFO nosuchsection"), "");
}

// ---- any input --------------------------------------------------------------

/// A small deterministic generator (xorshift), so a failure repeats.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Every command with arguments drawn from the edges (numbers at and past
/// 64 bits, the value limit, floats that are not, options out of place,
/// glob syntax, empty words): each gets one well-formed reply, and the
/// server (a debug build, its assertions on) never goes down.
#[test]
fn random_commands_with_edge_arguments_each_get_one_reply() {
    let (_kv, mut s) = kv();
    let commands: Vec<&str> = "GET SET SETNX SETEX PSETEX GETSET GETDEL GETEX MGET MSET MSETNX \
        APPEND STRLEN GETRANGE SUBSTR SETRANGE INCR DECR INCRBY DECRBY INCRBYFLOAT SETBIT \
        GETBIT LCS DEL UNLINK EXISTS TYPE RENAME RENAMENX KEYS SCAN RANDOMKEY OBJECT EXPIRE \
        PEXPIRE EXPIREAT PEXPIREAT TTL PTTL EXPIRETIME PEXPIRETIME PERSIST LPUSH RPUSH LPOP \
        RPOP LLEN LRANGE SADD SREM SCARD SISMEMBER SMEMBERS PING ECHO SELECT SWAPDB DBSIZE \
        FLUSHDB INFO CLIENT HELLO TIME CONFIG COMMAND FUNCTION NOSUCH"
        .split_whitespace()
        .collect();
    // Words with a space or none at all first; the rest split on spaces.
    let mut words = vec!["", " 1"];
    words.extend(
        "k1 k2 k3 0 1 -1 2 100 9223372036854775807 -9223372036854775808 9223372036854775808 \
         18446744073709551615 8388603 8388608 67108863 67108864 1.5 -0 1e400 inf nan 0x10 EX \
         PX EXAT PXAT NX XX GT LT GET KEEPTTL PERSIST IDX LEN WITHMATCHLEN MINMATCHLEN MATCH \
         COUNT TYPE ENCODING SETNAME GETNAME ID AUTH ASYNC FLUSH * ? [ [^a- \\ *a*b*?[a-z]* \
         string list set"
            .split_whitespace(),
    );
    let mut rng = Rng(0x5eed);
    for _ in 0..20_000 {
        let mut args = vec![commands[rng.below(commands.len())]];
        for _ in 0..rng.below(6) {
            args.push(words[rng.below(words.len())]);
        }
        let frame: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        s.send(&frame);
        // One reply, whole: a second one, or a broken one, would put the
        // next read out of step and fail it.
        s.reply();
    }
    assert_eq!(s.c("PING"), "+PONG");
}

/// Found by a review that attacked the server: each cost seconds of the
/// loop, or lost data, before.
#[test]
fn randomkey_deletes_the_past_due_keys_it_meets_and_finds_the_live_one() {
    let (_kv, mut s) = kv();
    // 20,000 keys past due in one pipeline, their timers not yet fired,
    // and one live key: RANDOMKEY deletes what it meets (as Redis's does)
    // instead of walking all of them on every call.
    let mut pipeline = Vec::new();
    for i in 0..20_000 {
        let key = format!("gone{i}");
        let mut frame = format!(
            "*5\r\n$3\r\nSET\r\n${}\r\n{key}\r\n$1\r\nv\r\n$4\r\nPXAT\r\n$1\r\n1\r\n",
            key.len()
        )
        .into_bytes();
        pipeline.append(&mut frame);
    }
    pipeline.extend_from_slice(b"*3\r\n$3\r\nSET\r\n$4\r\nlive\r\n$1\r\nv\r\n");
    for _ in 0..200 {
        pipeline.extend_from_slice(b"*1\r\n$9\r\nRANDOMKEY\r\n");
    }
    s.writer.write_all(&pipeline).unwrap();
    for _ in 0..20_001 {
        assert_eq!(s.reply().text(), "+OK");
    }
    for _ in 0..200 {
        assert_eq!(s.reply().text(), "live");
    }
    assert_eq!(s.c("DBSIZE"), ":1");
}

#[test]
fn incr_on_a_long_string_of_digits_is_refused_without_reading_it() {
    let (_kv, mut s) = kv();
    let digits = "1".repeat(1 << 20);
    assert_eq!(s.words(&["SET", "n", &digits]), "+OK");
    assert_eq!(
        s.c("INCR n"),
        "-ERR value is not an integer or out of range"
    );
    assert_eq!(s.c("STRLEN n"), format!(":{}", 1 << 20));
}

#[test]
fn a_pop_whose_reply_would_pass_the_output_limit_is_refused_and_nothing_is_lost() {
    let (_kv, mut s) = kv();
    let item = "i".repeat(1 << 20);
    for _ in 0..12 {
        s.words(&["RPUSH", "big", &item]);
    }
    let refused = s.c("LPOP big 12");
    assert!(refused.starts_with("-ERR the reply would be"), "{refused}");
    assert_eq!(s.c("LLEN big"), ":12");
    // Fewer fit, and arrive whole.
    let popped = s.c("RPOP big 4");
    assert_eq!(popped.len(), 4 * (1 << 20) + 2 + 3 * 2, "{}", &popped[..40]);
    assert_eq!(s.c("LLEN big"), ":8");
}

#[test]
fn a_glob_pattern_past_its_limit_is_refused() {
    let (_kv, mut s) = kv();
    s.c("SET a 1");
    let long = "a*".repeat(4 * 1024);
    let keys = s.words(&["KEYS", &long]);
    assert!(keys.starts_with("-ERR pattern longer than"), "{keys}");
    let scan = s.words(&["SCAN", "0", "MATCH", &long]);
    assert!(scan.starts_with("-ERR pattern longer than"), "{scan}");
    assert_eq!(s.c("KEYS a*"), "[a]");
}

#[test]
fn an_inline_command_may_end_in_a_bare_lf_as_nc_sends_it() {
    let (_kv, mut s) = kv();
    s.writer.write_all(b"PING\nSET a 1\r\nGET a\n").unwrap();
    assert_eq!(s.reply().text(), "+PONG");
    assert_eq!(s.reply().text(), "+OK");
    assert_eq!(s.reply().text(), "1");
}

#[test]
fn config_get_lists_only_the_parameters_the_server_has_matching_globs() {
    let (_kv, mut s) = kv();
    assert_eq!(s.c("CONFIG GET foo"), "[]");
    assert_eq!(s.c("CONFIG GET databases"), "[databases, 16]");
    assert_eq!(
        s.c("CONFIG GET save appendonly"),
        "[appendonly, no, save, ]"
    );
    assert_eq!(
        s.c("CONFIG GET maxmemory*"),
        format!("[maxmemory, {}, maxmemory-policy, noeviction]", 1u64 << 30)
    );
}

// ---- shards (--threads) ---------------------------------------------------

/// A field of an INFO section, as a number.
fn info_field(s: &mut Session, section: &str, name: &str) -> usize {
    let info = s.c(&format!("INFO {section}"));
    let line = info
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in {info}"));
    line.parse().unwrap()
}

/// Sessions to a server of `shards` shards, one on each (the kernel
/// spreads connections by a hash of their ports, so a few tries reach
/// every shard; 200 that do not would be a one-in-2^200 draw).
fn one_per_shard(port: u16, shards: usize) -> Vec<Session> {
    let mut found: Vec<Option<Session>> = (0..shards).map(|_| None).collect();
    for _ in 0..200 {
        let mut s = Session::open(port);
        let shard = info_field(&mut s, "server", "evloop_shard");
        if found[shard].is_none() {
            found[shard] = Some(s);
        }
        if found.iter().all(Option::is_some) {
            return found.into_iter().flatten().collect();
        }
    }
    panic!("200 connections did not reach all {shards} shards");
}

/// Polls `probe` until it answers `want`, for at most two seconds.
fn eventually(what: &str, want: usize, mut probe: impl FnMut() -> usize) {
    let end = Instant::now() + Duration::from_secs(2);
    let mut got = probe();
    while got != want && Instant::now() < end {
        thread::sleep(Duration::from_millis(10));
        got = probe();
    }
    assert_eq!(got, want, "{what}");
}

#[test]
fn on_two_shards_every_connection_sees_every_key_and_expiry() {
    let kv = Proc::start(&[], "kv", &["--threads", "2"]);
    let mut s = one_per_shard(kv.port, 2);
    let (a, b) = s.split_at_mut(1);
    let (a, b) = (&mut a[0], &mut b[0]);
    assert_eq!(a.c("SET k v"), "+OK");
    assert_eq!(b.c("GET k"), "v");
    assert_eq!(b.c("APPEND k w"), ":2");
    assert_eq!(a.c("GET k"), "vw");
    // CLIENT ID counts over both shards: each new connection's is the
    // number of connections the server has had, wherever it landed.
    let mut ids = Vec::new();
    for _ in 0..6 {
        let mut s = Session::open(kv.port);
        let id: usize = s.c("CLIENT ID")[1..].parse().unwrap();
        assert_eq!(
            id,
            info_field(&mut s, "stats", "total_connections_received")
        );
        ids.push(id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 6, "{ids:?}");
    // And the connection count is the server's: these two, once the
    // others' closes are in.
    for s in [&mut *a, &mut *b] {
        eventually("connected_clients", 2, || {
            info_field(s, "clients", "connected_clients")
        });
    }
    // An expiry set on one shard's wheel: read through the other, and
    // deleted by its timer (DBSIZE counts a key past due until then).
    assert_eq!(a.c("SET e v PX 300"), "+OK");
    let pttl: i64 = b.c("PTTL e")[1..].parse().unwrap();
    assert!((1..=300).contains(&pttl), "{pttl}");
    assert_eq!(b.c("DBSIZE"), ":2");
    eventually("the expired key deleted", 1, || {
        b.c("DBSIZE")[1..].parse().unwrap()
    });
    assert_eq!(a.c("GET e"), "(nil)");
    assert_eq!(info_field(b, "stats", "expired_keys"), 1);
    // And the other way round, with SELECT: the database is the client's.
    assert_eq!(b.c("SELECT 3"), "+OK");
    assert_eq!(b.c("SET f v PX 200"), "+OK");
    assert_eq!(a.c("SELECT 3"), "+OK");
    assert_eq!(a.c("GET f"), "v");
    eventually("the key expired on the other shard", 0, || {
        a.c("DBSIZE")[1..].parse().unwrap()
    });
}

/// A client moving one key's expiry back and forth between two shards
/// must not park a timer on a wheel each time: the shard that ends an
/// expiry set on the other posts that shard its timer to cancel.
#[test]
fn an_expiry_moved_between_shards_leaves_no_timer_behind() {
    // No idle deadlines: every timer on a wheel is an expiry.
    let kv = Proc::start(&[], "kv", &["--threads", "2", "--idle-timeout", "0"]);
    let mut s = one_per_shard(kv.port, 2);
    let idle = [0, 0];
    for (shard, s) in s.iter_mut().enumerate() {
        eventually(&format!("shard {shard}'s timers at rest"), 0, || {
            info_field(s, "stats", "evloop_timers")
        });
    }
    assert_eq!(s[0].c("SET k v"), "+OK");
    const MOVES: usize = 2000;
    for i in 0..MOVES {
        assert_eq!(s[i % 2].c("PEXPIRE k 100000000"), ":1");
    }
    // The last PEXPIRE was shard 1's: its wheel holds the one timer.
    for (shard, extra) in [(0, 0), (1, 1)] {
        eventually(
            &format!("shard {shard}'s timers"),
            idle[shard] + extra,
            || info_field(&mut s[shard], "stats", "evloop_timers"),
        );
    }
    // Every other way to end an expiry from the other shard: PERSIST,
    // SET, DEL, FLUSHALL (here over 1,000 keys).
    for end in ["PERSIST k", "SET k v", "DEL k"] {
        assert_eq!(s[1].c("PEXPIRE k 100000000").len(), 2);
        s[0].c(end);
        eventually(&format!("{end}: shard 1's timers"), idle[1], || {
            info_field(&mut s[1], "stats", "evloop_timers")
        });
        s[0].c("SET k v");
    }
    for i in 0..1000 {
        s[1].send(&[b"SET", format!("key:{i}").as_bytes(), b"v", b"EX", b"1000"]);
    }
    for _ in 0..1000 {
        assert_eq!(s[1].reply().text(), "+OK");
    }
    assert_eq!(
        info_field(&mut s[1], "stats", "evloop_timers"),
        idle[1] + 1000
    );
    assert_eq!(s[0].c("FLUSHALL"), "+OK");
    eventually("FLUSHALL: shard 1's timers", idle[1], || {
        info_field(&mut s[1], "stats", "evloop_timers")
    });
    // The key set last, on shard 0, still expires on time.
    assert_eq!(s[0].c("SET k v PX 100"), "+OK");
    eventually("the last key expired", 0, || {
        s[1].c("DBSIZE")[1..].parse().unwrap()
    });
}

/// Two clients on two shards change the expiries of the same few keys
/// at once, pipelined, so the shards meet at the lock and cancel each
/// other's timers while their own fire nothing (the expiries are far
/// off). Afterwards every expiring key has exactly one timer, on one
/// wheel or the other, and no other timer is left.
#[test]
fn expiries_changed_from_two_shards_at_once_leave_one_timer_per_expiring_key() {
    let kv = Proc::start(&[], "kv", &["--threads", "2", "--idle-timeout", "0"]);
    let sessions = one_per_shard(kv.port, 2);
    let clients: Vec<_> = sessions
        .into_iter()
        .enumerate()
        .map(|(shard, mut s)| {
            thread::spawn(move || {
                let mut rng = Rng(0x9e37_79b9 + shard as u64);
                for _ in 0..30 {
                    const BATCH: usize = 100;
                    for _ in 0..BATCH {
                        let key = format!("k{}", rng.below(8));
                        let command: &[&str] = match rng.below(5) {
                            0 => &["SET", &key, "v"],
                            1 => &["SET", &key, "v", "PX", "100000000"],
                            2 => &["PEXPIRE", &key, "100000000"],
                            3 => &["PERSIST", &key],
                            _ => &["DEL", &key],
                        };
                        let words: Vec<&[u8]> = command.iter().map(|w| w.as_bytes()).collect();
                        s.send(&words);
                    }
                    for _ in 0..BATCH {
                        let reply = s.reply().text();
                        assert!(!reply.starts_with('-'), "{reply}");
                    }
                }
                s
            })
        })
        .collect();
    let mut s: Vec<Session> = clients.into_iter().map(|t| t.join().unwrap()).collect();
    let keyspace = s[0].c("INFO keyspace");
    let expires: usize = keyspace
        .split("expires=")
        .nth(1)
        .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap());
    eventually(
        "timers on both wheels against expiring keys",
        expires,
        || {
            let a = info_field(&mut s[0], "stats", "evloop_timers");
            a + info_field(&mut s[1], "stats", "evloop_timers")
        },
    );
}
