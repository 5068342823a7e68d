//! A Redis-compatible key-value server: redis-cli and redis-benchmark
//! work against it.
//!
//! ```sh
//! cargo run --release --example kv -- --addr 127.0.0.1:6380
//! redis-cli -p 6380 set greeting hello
//! redis-benchmark -p 6380 -t ping_inline,set,get -q
//! ```
//!
//! What it teaches beyond echo: a real protocol parsed in two phases
//! (`resp.rs`), **pipelining** (every whole command in the input is run and
//! all replies leave in one write), and **expiry on the reactor's timer
//! wheel**: `SET key value EX 10` is a timer, not a scan.
//!
//! Commands: PING, ECHO, GET, SET (EX, PX), DEL, EXISTS, INCR, DECR, MGET,
//! MSET, DBSIZE, FLUSHALL, QUIT, SELECT 0, and enough of COMMAND and
//! CONFIG GET for redis-cli and redis-benchmark to start.
//!
//! Limits, each answered in the protocol: a bulk string past
//! `resp::MAX_BULK` or a command past `resp::MAX_COMMAND` gets `-ERR` and
//! the connection closes (nothing more of it is buffered); past
//! `--max-memory` of data, commands that add data get `-OOM` while reads
//! and deletes go on. A command that trickles in is checked once, not once
//! per packet (`resp::Progress`).
//!
//! `--max-memory` counts what the data really costs (`Kv::memory`): keys
//! and values with the allocator's overhead, both hash tables whole (empty
//! slots included), the expiry index's copies of keys and the timers on
//! the wheel. Measured against the server's RSS on 2026-11-28 (`INFO`'s
//! `used_memory` after pipelined `SET`s of 16-byte keys and values, RSS
//! over the empty server's): 500,000 keys 1.00 of RSS (234 bytes a key),
//! 900,000 keys 1.00 (158: the same table, fuller), 500,000 keys with `EX`
//! 1.02 (383), 100,000 keys with `EX` 1.03 (293).
//!
//! Replies are bounded too. While a connection's waiting output is above
//! the reactor's high-water mark, no more of its commands are taken: the
//! rest wait in its input and are offered again once the output drains
//! (so 64 KiB of pipelined `GET`s of a 512 KiB value cost a few hundred
//! KiB, not 5 GB). A reply that is large on its own (`MGET` of thousands
//! of large values) is handed to the reactor in pieces as it is built, so
//! past the hard output limit the connection is closed as a slow consumer
//! after at most that much, not after the whole reply was built.

#[path = "../common/mod.rs"]
mod common;
mod resp;

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use evloop::timer::TimerId;
use evloop::{ConnId, Context, Handler, Reactor};
use resp::{reply, Check, Progress};

#[derive(Parser, Debug)]
#[command(about = "Redis-compatible key-value server on the evloop reactor")]
struct Cli {
    #[command(flatten)]
    server: common::ServerArgs,
    /// Past this many bytes of data (keys, values, the hash tables, the
    /// expiry index and its timers: see `Kv::memory`), commands that add
    /// data are answered with -OOM.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_MEMORY)]
    max_memory: usize,
}

/// The store's default bound. Redis's `maxmemory` is unlimited by default,
/// which lets any client that can connect fill the machine; here clients
/// cannot, and 1 GiB is far above what the tests and benchmarks store.
const DEFAULT_MAX_MEMORY: usize = 1 << 30;

/// What the allocator adds to each heap block: glibc's chunk header and
/// rounding to 16 bytes, for the small blocks keys and values mostly are.
const ALLOC_OVERHEAD: usize = 16;

/// What one entry costs beyond its key and value bytes and its slot in
/// the table (the table is counted whole, see `Kv::memory`): the
/// allocator's overhead on its two heap blocks.
const ENTRY_OVERHEAD: usize = 2 * ALLOC_OVERHEAD;

/// What an expiry costs beyond the index's copy of its key and its slot
/// in the index: the copy's allocator overhead, and the timer on the
/// reactor's wheel (its slab entry and its record in a slot, 48 bytes).
const EXPIRY_OVERHEAD: usize = ALLOC_OVERHEAD + 48;

/// Redis's answer to a command that would grow the data past `maxmemory`.
const OOM: &str = "-OOM command not allowed when used memory > 'maxmemory'.\r\n";

/// A stored value and, if it expires, when and by which timer.
struct Value {
    data: Vec<u8>,
    expiry: Option<Expiry>,
}

struct Expiry {
    at: Instant,
    timer: TimerId,
    token: u64,
}

struct Kv {
    store: HashMap<Vec<u8>, Value>,
    /// Which key each expiry timer is for.
    expiring: HashMap<u64, Vec<u8>>,
    next_token: u64,
    /// Bytes held by entries outside the tables (keys, values, the index's
    /// copies of keys, allocator overhead, timers): see `Kv::memory`.
    used: usize,
    /// Past `used` this, commands that add data are refused.
    max_memory: usize,
    out: Vec<u8>,
    /// The reactor's output high-water mark: past it, no more commands are
    /// taken from the connection until its output drains.
    high_water: usize,
    /// Bytes handed to the reactor by `spill` during this `on_data` call.
    spilled: usize,
    /// Where the check of each connection's partial command stopped (only
    /// connections holding one are here; see [`Progress`]).
    partial: HashMap<ConnId, Progress>,
}

/// What a command asks of the connection.
#[derive(PartialEq)]
enum Next {
    Continue,
    Close,
    /// The connection closed while its reply was handed over (past the
    /// hard output limit): nothing more to do for it.
    Gone,
}

/// A reply being built is handed to the reactor each time it reaches this
/// much: one socket buffer's worth, so a huge reply never sits whole in
/// `Kv::out`, and the reactor's output limits see it grow.
const SPILL_AT: usize = 64 * 1024;

impl Kv {
    /// What the data costs: `used`, plus the two hash tables whole (their
    /// slots, empty ones included: a table at half its load holds twice
    /// the slots it needs, and that is memory too). Compared with RSS it
    /// comes within a few per cent (the kv docs give the figures).
    fn memory(&self) -> usize {
        table_bytes(&self.store) + table_bytes(&self.expiring) + self.used
    }

    fn forget_expiry(&mut self, cx: &mut Context<'_>, expiry: Option<Expiry>) {
        if let Some(e) = expiry {
            cx.cancel_timer(e.timer);
            if let Some(key) = self.expiring.remove(&e.token) {
                self.used -= expiry_size(&key);
            }
        }
    }

    /// Drops `key` if its expiry has passed, even if its timer has not
    /// fired yet (the wheel fires on the tick; this check is exact). Call
    /// before reading `self.store`.
    fn expire_due(&mut self, cx: &mut Context<'_>, key: &[u8]) {
        let expired = self
            .store
            .get(key)
            .and_then(|v| v.expiry.as_ref())
            .is_some_and(|e| e.at <= cx.now());
        if expired {
            self.delete(cx, key);
        }
    }

    /// Appends `key`'s value as a bulk string, or null.
    fn reply_value(&mut self, cx: &mut Context<'_>, key: &[u8]) {
        self.expire_due(cx, key);
        match self.store.get(key) {
            Some(v) => reply::bulk(&mut self.out, &v.data),
            None => reply::null(&mut self.out),
        }
    }

    fn exists(&mut self, cx: &mut Context<'_>, key: &[u8]) -> bool {
        self.expire_due(cx, key);
        self.store.contains_key(key)
    }

    /// Stores `data` under `key`; `ttl` is how long it lives and the
    /// instant that makes (checked by [`ttl`]: it cannot overflow).
    fn set(
        &mut self,
        cx: &mut Context<'_>,
        key: &[u8],
        data: Vec<u8>,
        ttl: Option<(Duration, Instant)>,
    ) {
        let expiry = ttl.map(|(ttl, at)| {
            self.next_token += 1;
            let token = self.next_token;
            self.expiring.insert(token, key.to_vec());
            self.used += expiry_size(key);
            Expiry {
                at,
                timer: cx.set_timer(ttl, token),
                token,
            }
        });
        self.used += entry_size(key, &data);
        if let Some(old) = self.store.insert(key.to_vec(), Value { data, expiry }) {
            self.used -= entry_size(key, &old.data);
            self.forget_expiry(cx, old.expiry);
        }
    }

    fn delete(&mut self, cx: &mut Context<'_>, key: &[u8]) -> bool {
        match self.store.remove(key) {
            Some(v) => {
                self.used -= entry_size(key, &v.data);
                self.forget_expiry(cx, v.expiry);
                true
            }
            None => false,
        }
    }

    /// Hands the reply built so far to the reactor; `false` if the
    /// connection closed for it (past the hard output limit).
    fn spill(&mut self, cx: &mut Context<'_>, conn: ConnId) -> bool {
        let sent = cx.write(conn, &self.out).is_ok();
        self.spilled += self.out.len();
        self.out.clear();
        sent
    }

    /// Runs one command, appending its reply.
    fn run(&mut self, cx: &mut Context<'_>, conn: ConnId, args: &[&[u8]]) -> Next {
        let Some((name, rest)) = args.split_first() else {
            return Next::Continue; // an empty inline line: Redis ignores it
        };
        // Upper-cased on the stack: every known command fits in 16 bytes.
        let mut upper = [0u8; 16];
        let name = match name.len() {
            n if n <= upper.len() => {
                upper[..n].copy_from_slice(name);
                upper[..n].make_ascii_uppercase();
                &upper[..n]
            }
            _ => *name,
        };
        let arity_error = |out: &mut Vec<u8>| {
            reply::error(
                out,
                &format!(
                    "wrong number of arguments for '{}' command",
                    String::from_utf8_lossy(name).to_lowercase()
                ),
            )
        };
        // Like Redis, the check is made before a command that adds data,
        // so the store passes the limit by at most one command
        // (`resp::MAX_COMMAND`).
        let adds_data = matches!(name, b"SET" | b"MSET" | b"INCR" | b"DECR");
        if adds_data && self.memory() > self.max_memory {
            self.out.extend_from_slice(OOM.as_bytes());
            return Next::Continue;
        }
        match (name, rest.len()) {
            (b"PING", 0) => reply::simple(&mut self.out, "PONG"),
            (b"PING", 1) | (b"ECHO", 1) => reply::bulk(&mut self.out, rest[0]),
            (b"GET", 1) => self.reply_value(cx, rest[0]),
            (b"SET", n) if n >= 2 => match ttl(&rest[2..], cx.now()) {
                Ok(ttl) => {
                    self.set(cx, rest[0], rest[1].to_vec(), ttl);
                    reply::simple(&mut self.out, "OK");
                }
                Err(e) => reply::error(&mut self.out, e),
            },
            (b"DEL", n) if n >= 1 => {
                let n = rest.iter().filter(|k| self.delete(cx, k)).count();
                reply::integer(&mut self.out, n as i64);
            }
            (b"EXISTS", n) if n >= 1 => {
                let n = rest.iter().filter(|k| self.exists(cx, k)).count();
                reply::integer(&mut self.out, n as i64);
            }
            (b"INCR", 1) | (b"DECR", 1) => {
                let step = if name == b"INCR" { 1 } else { -1 };
                self.expire_due(cx, rest[0]);
                let parsed = match self.store.get(rest[0]) {
                    None => Some(0),
                    Some(v) => redis_int(&v.data),
                };
                let Some(current) = parsed else {
                    reply::error(&mut self.out, NOT_AN_INTEGER);
                    return Next::Continue;
                };
                match current.checked_add(step) {
                    Some(n) => {
                        // INCR keeps an existing expiry, as Redis does.
                        if let Some(v) = self.store.get_mut(rest[0]) {
                            let data = n.to_string().into_bytes();
                            self.used = self.used + data.len() - v.data.len();
                            v.data = data;
                        } else {
                            self.set(cx, rest[0], n.to_string().into_bytes(), None);
                        }
                        reply::integer(&mut self.out, n);
                    }
                    None => reply::error(&mut self.out, "increment or decrement would overflow"),
                }
            }
            (b"MGET", n) if n >= 1 => {
                reply::array_len(&mut self.out, n);
                for key in rest {
                    self.reply_value(cx, key);
                    if self.out.len() >= SPILL_AT && !self.spill(cx, conn) {
                        return Next::Gone;
                    }
                }
            }
            (b"MSET", n) if n >= 2 && n % 2 == 0 => {
                for pair in rest.chunks(2) {
                    self.set(cx, pair[0], pair[1].to_vec(), None);
                }
                reply::simple(&mut self.out, "OK");
            }
            (b"DBSIZE", 0) => reply::integer(&mut self.out, self.store.len() as i64),
            // The part of Redis's INFO that says what the data costs.
            (b"INFO", _) => {
                let info = format!(
                    "# Memory\r\nused_memory:{}\r\nmaxmemory:{}\r\n# Keyspace\r\ndb0:keys={},expires={}\r\n",
                    self.memory(),
                    self.max_memory,
                    self.store.len(),
                    self.expiring.len()
                );
                reply::bulk(&mut self.out, info.as_bytes());
            }
            (b"FLUSHALL", _) => {
                for (_, v) in self.store.drain() {
                    if let Some(e) = v.expiry {
                        cx.cancel_timer(e.timer);
                    }
                }
                self.expiring.clear();
                self.used = 0;
                reply::simple(&mut self.out, "OK");
            }
            (b"SELECT", 1) if rest[0] == b"0" => reply::simple(&mut self.out, "OK"),
            (b"SELECT", 1) => reply::error(&mut self.out, "DB index is out of range"),
            // redis-cli asks for command docs at start: an empty answer
            // will do. redis-benchmark reads `save` and `appendonly`: this
            // server persists nothing, so both are off.
            (b"COMMAND", _) => reply::array_len(&mut self.out, 0),
            (b"CONFIG", n) if n >= 2 && rest[0].eq_ignore_ascii_case(b"GET") => {
                reply::array_len(&mut self.out, 2 * (n - 1));
                for param in &rest[1..] {
                    reply::bulk(&mut self.out, param);
                    let off: &[u8] = if param.eq_ignore_ascii_case(b"appendonly") {
                        b"no"
                    } else {
                        b""
                    };
                    reply::bulk(&mut self.out, off);
                }
            }
            (b"QUIT", _) => {
                reply::simple(&mut self.out, "OK");
                return Next::Close;
            }
            (
                b"PING" | b"ECHO" | b"GET" | b"SET" | b"DEL" | b"EXISTS" | b"INCR" | b"DECR"
                | b"MGET" | b"MSET" | b"DBSIZE" | b"SELECT" | b"CONFIG",
                _,
            ) => arity_error(&mut self.out),
            _ => reply::error(
                &mut self.out,
                &format!(
                    "unknown command '{}'",
                    String::from_utf8_lossy(name).to_lowercase()
                ),
            ),
        }
        Next::Continue
    }
}

/// An entry's share of `Kv::used`.
fn entry_size(key: &[u8], data: &[u8]) -> usize {
    key.len() + data.len() + ENTRY_OVERHEAD
}

/// An expiry's share of `Kv::used`: the index's copy of the key and
/// `EXPIRY_OVERHEAD`.
fn expiry_size(key: &[u8]) -> usize {
    key.len() + EXPIRY_OVERHEAD
}

/// The memory a hash table's slots take: hashbrown keeps a power of two
/// of buckets, at most 7/8 full, each an entry plus one control byte
/// (`capacity` is the 7/8).
fn table_bytes<K, V>(map: &HashMap<K, V>) -> usize {
    let buckets = map.capacity() / 7 * 8;
    buckets * (std::mem::size_of::<(K, V)>() + 1)
}

/// SET's options: `EX seconds` or `PX milliseconds`, and the instant
/// they make from `now`, answered as Redis 7 answers them: an amount that
/// is not a 64-bit integer is "not an integer", and one that is not
/// positive, or whose deadline in Unix milliseconds would pass
/// `i64::MAX` (`EX 18446744073709551615`'s smaller cousins), is an
/// invalid expire time. Nothing here can overflow the clock.
fn ttl(options: &[&[u8]], now: Instant) -> Result<Option<(Duration, Instant)>, &'static str> {
    const INVALID: &str = "invalid expire time in 'set' command";
    match options {
        [] => Ok(None),
        [unit, amount] => {
            let scale = match unit.to_ascii_uppercase().as_slice() {
                b"EX" => 1000,
                b"PX" => 1,
                _ => return Err("syntax error"),
            };
            let n = redis_int(amount).ok_or(NOT_AN_INTEGER)?;
            let millis = u64::try_from(n)
                .ok()
                .filter(|&n| n > 0)
                .and_then(|n| n.checked_mul(scale))
                .ok_or(INVALID)?;
            let unix_now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            if millis > i64::MAX as u64 - unix_now.min(i64::MAX as u64) {
                return Err(INVALID);
            }
            let ttl = Duration::from_millis(millis);
            let at = now.checked_add(ttl).ok_or(INVALID)?;
            Ok(Some((ttl, at)))
        }
        _ => Err("syntax error"),
    }
}

/// Redis's answer to a number that is not one.
const NOT_AN_INTEGER: &str = "value is not an integer or out of range";

/// A signed 64-bit integer the way Redis reads one (`string2ll`): an
/// optional `-`, then digits with no leading zero; no `+`, no spaces, no
/// overflow.
fn redis_int(s: &[u8]) -> Option<i64> {
    let digits = s.strip_prefix(b"-").unwrap_or(s);
    let canonical = match digits {
        [] => false,
        [b'0'] => s.len() == 1,
        [first, ..] => *first != b'0' && digits.iter().all(u8::is_ascii_digit),
    };
    if !canonical {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

impl Handler for Kv {
    type Message = ();

    fn on_data(&mut self, cx: &mut Context<'_>, conn: ConnId, input: &[u8]) -> usize {
        self.out.clear();
        let mut used = 0;
        let mut args = Vec::new();
        let mut next = Next::Continue;
        let mut progress = if self.partial.is_empty() {
            Progress::default()
        } else {
            self.partial.remove(&conn).unwrap_or_default()
        };
        // Output already waiting, plus what this call adds: past the
        // high-water mark no more commands are taken (the rest is offered
        // again once the output drains).
        let waiting = cx.output_len(conn).unwrap_or(0);
        self.spilled = 0;
        while next == Next::Continue {
            if waiting + self.spilled + self.out.len() > self.high_water {
                break;
            }
            match resp::check(&input[used..], &mut progress) {
                Check::Frame(n) => {
                    resp::decode(&input[used..used + n], &mut args);
                    used += n;
                    next = self.run(cx, conn, &args);
                    if self.out.len() >= SPILL_AT && next == Next::Continue && !self.spill(cx, conn)
                    {
                        next = Next::Gone;
                    }
                }
                Check::Incomplete => {
                    if progress != Progress::default() {
                        self.partial.insert(conn, progress);
                    }
                    break;
                }
                Check::Invalid(why) => {
                    reply::error(&mut self.out, why);
                    used = input.len();
                    next = Next::Close;
                }
            }
        }
        match next {
            Next::Gone => return input.len(),
            Next::Close => {
                let _ = cx.write(conn, &self.out);
                cx.close(conn);
            }
            Next::Continue => {
                let _ = cx.write(conn, &self.out);
            }
        }
        used
    }

    fn on_close(&mut self, _cx: &mut Context<'_>, conn: ConnId, _reason: evloop::CloseReason) {
        self.partial.remove(&conn);
    }

    /// An expiry timer: delete the key if the timer is still its own.
    fn on_timer(&mut self, cx: &mut Context<'_>, token: u64) {
        let Some(key) = self.expiring.remove(&token) else {
            return;
        };
        self.used -= expiry_size(&key);
        let current = self
            .store
            .get(&key)
            .and_then(|v| v.expiry.as_ref())
            .is_some_and(|e| e.token == token);
        if current {
            self.delete(cx, &key);
        }
    }
}

fn main() -> std::io::Result<std::process::ExitCode> {
    let cli = Cli::parse();
    common::init();
    let mut config = cli.server.config();
    // A partial command is refused with -ERR before it passes
    // MAX_COMMAND; the slack holds the header that says so.
    config.max_input = resp::MAX_COMMAND + 64;
    let high_water = config.high_water;
    let kv = Kv {
        high_water,
        spilled: 0,
        store: HashMap::new(),
        expiring: HashMap::new(),
        next_token: 0,
        used: 0,
        max_memory: cli.max_memory,
        out: Vec::new(),
        partial: HashMap::new(),
    };
    let mut reactor = Reactor::new(kv, config)?;
    reactor.listen(cli.server.addr)?;
    reactor.handle_signals()?;
    reactor.run()?;
    Ok(common::exit_code(&reactor.stats()))
}
