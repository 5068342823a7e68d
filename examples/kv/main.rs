//! Example 6 of 11: a Redis-compatible key-value server.
//!
//! redis-cli and redis-benchmark work against it, and so does Redis
//! 7.0.15's own test suite for strings, counters and expiry
//! (`unit/type/string`, `unit/type/incr`, `unit/expire`, run against it
//! as an external server).
//!
//! ```sh
//! cargo run --release --example kv -- --addr 127.0.0.1:6380
//! redis-cli -p 6380 set greeting hello
//! redis-benchmark -p 6380 -t ping_inline,set,get -q
//! ```
//!
//! Redis's own tests, from the redis repository at tag 7.0.15 (155 pass;
//! the 156th runs only when `INFO` reports jemalloc):
//!
//! ```sh
//! git clone --branch 7.0.15 --depth 1 https://github.com/redis/redis
//! cd redis && tclsh tests/test_helper.tcl --host 127.0.0.1 --port 6380 \
//!     --single unit/type/string --single unit/type/incr --single unit/expire \
//!     --tags -needs:debug --tags -needs:repl --tags -needs:config-maxmemory
//! ```
//!
//! What it teaches: a real protocol parsed in two phases
//! (`resp.rs`), **pipelining** (every whole command in the input is run and
//! all replies leave in one write), **per-connection state** kept by the
//! handler (the selected database, the client's name and id: `Client`,
//! indexed by the connection's slot, dropped in `on_close`), and **expiry
//! on the reactor's timer wheel**: `SET key value EX 10` is a timer, not a
//! scan.
//!
//! The files, by idea:
//!
//! | file | what it holds |
//! | --- | --- |
//! | `main.rs` | the handler: bytes in, commands run, replies out; limits on both |
//! | `resp.rs` | RESP requests checked and decoded; replies written |
//! | `command.rs` | the command table (name, arity, adds data) and what a command is given |
//! | `db.rs` | the keyspace: 16 databases, expiry, the SCAN order, the memory count |
//! | `value.rs` | strings, lists and sets, what each costs, OBJECT ENCODING |
//! | `strings.rs`, `bitmaps.rs`, `keys.rs`, `collections.rs`, `server.rs` | the commands, grouped as Redis's docs group them |
//! | `lcs.rs` | LCS: a dynamic-programming table, bounded before it is built |
//! | `glob.rs` | KEYS and SCAN patterns, matched without backtracking |
//! | `number.rs` | numbers read and written as Redis reads and writes them |
//! | `shards.rs` | `--threads N`: the shards share one keyspace behind a lock, each expiry's timer on its own shard's wheel |
//!
//! Commands, answered as Redis 7.0 answers them (replies and error texts
//! checked against redis-server 7.0.15):
//!
//! - strings: GET, SET (NX, XX, GET, EX, PX, EXAT, PXAT, KEEPTTL), SETNX,
//!   SETEX, PSETEX, GETSET, GETDEL, GETEX, MGET, MSET, MSETNX, APPEND,
//!   STRLEN, GETRANGE (SUBSTR), SETRANGE, INCR, DECR, INCRBY, DECRBY,
//!   INCRBYFLOAT, SETBIT, GETBIT, LCS;
//! - keys: DEL, UNLINK, EXISTS, TYPE, RENAME, RENAMENX, KEYS, SCAN (MATCH,
//!   COUNT, TYPE), RANDOMKEY, OBJECT ENCODING;
//! - expiry: EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT (NX, XX, GT, LT), TTL,
//!   PTTL, EXPIRETIME, PEXPIRETIME, PERSIST;
//! - lists and sets, the least of them: LPUSH, RPUSH, LPOP, RPOP, LLEN,
//!   LRANGE, SADD, SREM, SCARD, SISMEMBER, SMEMBERS;
//! - server: AUTH (with `--requirepass`), PING, ECHO, QUIT, SELECT, SWAPDB, DBSIZE, FLUSHDB, FLUSHALL,
//!   INFO (server, clients, memory, stats, keyspace), CLIENT ID, GETNAME,
//!   SETNAME, HELLO 2, TIME; enough of COMMAND, CONFIG GET and FUNCTION
//!   FLUSH for redis-cli, redis-benchmark and the test suite to start.
//!
//! Limits, each answered in the protocol: a bulk string past
//! `resp::MAX_BULK` (8 MiB) or a command past `resp::MAX_COMMAND` (16 MiB)
//! gets `-ERR` and the connection closes (nothing more of it is buffered);
//! a string grows to `strings::MAX_VALUE` (8 MiB) at most; LCS's table is
//! bounded; past `--max-memory` of data (all sixteen databases), commands
//! that add data get `-OOM` while reads and deletes go on. A command that
//! trickles in is checked once, not once per packet (`resp::Progress`).
//!
//! `--max-memory` counts what the data really costs (`Db::memory`): keys
//! and values with the allocator's overhead, the hash tables and scan
//! order whole (empty slots included), each expiry's box, index entry and
//! timer on the wheel. Measured against the server's RSS on 2026-11-28,
//! with the sixteen databases (`INFO`'s `used_memory` after pipelined
//! `SET`s of 16-byte keys and values, RSS over the empty server's):
//! 500,000 keys 1.00 of RSS (233 bytes a key), 900,000 keys 1.01 (174:
//! the same table, fuller), 500,000 keys with `EX` 1.00 (374), 100,000
//! keys with `EX` 1.05 (307).
//!
//! Replies are bounded too. While a connection's waiting output is above
//! the reactor's high-water mark, no more of its commands are taken: the
//! rest wait in its input and are offered again once the output drains
//! (so 64 KiB of pipelined `GET`s of a 512 KiB value cost a few hundred
//! KiB, not 5 GB). A reply that is large on its own (`MGET` of thousands
//! of large values, `KEYS` or `SCAN` over a large keyspace, `LRANGE`) is
//! handed to the reactor in pieces as it is built, so past the hard output
//! limit the connection is closed as a slow consumer after at most that
//! much, not after the whole reply was built.
//!
//! With `--threads N` the server is N shards (`evloop::Server`), and they
//! share one keyspace behind one lock, taken once per read for every
//! command the read brought: a key set through one connection is seen
//! through every other. Splitting the keys among the shards, each
//! command forwarded to its key's shard, was measured too and cost more
//! (`shards.rs` says why, `docs/BENCHMARKS.md` has the figures).
//!
//! Read next: examples/loadgen/main.rs (example 7), a client that holds
//! thousands of connections on the same reactor, to load any of these
//! servers.

mod bitmaps;
mod collections;
mod command;
#[path = "../common/mod.rs"]
mod common;
mod db;
mod glob;
mod keys;
mod lcs;
mod number;
mod resp;
mod server;
mod shards;
mod strings;
mod value;

use std::sync::{Arc, Mutex};

use clap::Parser;
use evloop::{ConnId, Context, Handler, Peers};
use resp::{reply, Check};

use command::{Call, Next, Out, SPILL_AT};
use server::{Client, Server};
use shards::{Away, Cancel, Store, Wheel};

#[derive(Parser, Debug)]
#[command(about = "Redis-compatible key-value server on the evloop reactor")]
struct Cli {
    #[command(flatten)]
    server: common::ServerArgs,
    /// Past this many bytes of data (keys, values, the hash tables, the
    /// expiry index and its timers, in all databases: see `Db::memory`),
    /// commands that add data are answered with -OOM.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_MEMORY)]
    max_memory: usize,
    /// Clients must AUTH with this password before any other command
    /// (Redis's `requirepass`); others are answered `-NOAUTH`. Use it with
    /// --tls-cert, or the password crosses the network in clear.
    #[arg(long, value_name = "PASSWORD")]
    requirepass: Option<String>,
}

/// The most of one request kept for a client that has not authenticated
/// (with `--requirepass`): AUTH with any password fits in far less, and
/// 16 KiB is Redis's bound on an unauthenticated bulk string. Without it,
/// anyone who can connect could make the server hold a 16 MiB partial
/// command per connection.
const UNAUTHENTICATED_REQUEST: usize = 16 * 1024;

/// The store's default bound. Redis's `maxmemory` is unlimited by default,
/// which lets any client that can connect fill the machine; here clients
/// cannot, and 1 GiB is far above what the tests and benchmarks store.
const DEFAULT_MAX_MEMORY: usize = 1 << 30;

/// One shard's handler (the only one without `--threads`).
struct Kv {
    /// This shard's number (0 with one reactor).
    shard: usize,
    /// The data and the server's counters, shared by every shard.
    store: Arc<Mutex<Store>>,
    /// The other shards, to post them timers to cancel (`None` with one
    /// reactor).
    peers: Option<Peers<Cancel>>,
    /// Timers on other shards' wheels to cancel after this call.
    away: Away,
    /// Each open connection's state, by its slot (`ConnId::index`): a
    /// vector, not a hash map, since slots are dense and every command
    /// needs its client. Connections are the shard's own.
    clients: Vec<Option<Client>>,
    out: Out,
    /// The reactor's output high-water mark: past it, no more commands are
    /// taken from the connection until its output drains.
    high_water: usize,
}

impl Kv {
    /// `conn`'s state, made if `on_open` did not (it always does).
    fn client<'a>(
        clients: &'a mut Vec<Option<Client>>,
        server: &mut Server,
        conn: ConnId,
    ) -> &'a mut Client {
        let slot = conn.index();
        if clients.len() <= slot {
            clients.resize_with(slot + 1, || None);
        }
        let entry = &mut clients[slot];
        let authenticated = server.requirepass.is_none();
        if entry.as_ref().is_none_or(|c| c.conn != conn) {
            server.next_client_id += 1;
            return entry.insert(Client::new(conn, server.next_client_id, authenticated));
        }
        // The slot holds this connection's state: no insert happens here.
        entry.get_or_insert_with(|| Client::new(conn, 0, authenticated))
    }
}

impl Handler for Kv {
    type Message = Cancel;

    fn on_open(&mut self, _cx: &mut Context<'_>, conn: ConnId) {
        let mut shared = shards::lock(&self.store);
        let server = &mut shared.server;
        Kv::client(&mut self.clients, server, conn);
        server.connected += 1;
        server.connections_received += 1;
    }

    fn on_data(&mut self, cx: &mut Context<'_>, conn: ConnId, input: &[u8]) -> usize {
        let Kv {
            shard,
            store,
            peers,
            away,
            clients,
            out,
            high_water,
        } = self;
        // Once for every command this read brought (see `shards.rs`).
        let mut shared = shards::lock(store);
        let now = shared.now(cx.now());
        let Store { ks, server, .. } = &mut *shared;
        let client = Kv::client(clients, server, conn);
        out.buf.clear();
        out.spilled = 0;
        let mut used = 0;
        let mut args = Vec::new();
        let mut next = Next::Continue;
        // Output already waiting, plus what this call adds: past the
        // high-water mark no more commands are taken (the rest is offered
        // again once the output drains).
        let waiting = cx.output_len(conn).unwrap_or(0);
        while next == Next::Continue {
            if waiting + out.spilled + out.buf.len() > *high_water {
                break;
            }
            match resp::check(&input[used..], &mut client.progress) {
                Check::Frame(n) => {
                    resp::decode(&input[used..used + n], &mut args);
                    used += n;
                    let mut call = Call {
                        wheel: Wheel::new(cx, *shard, away),
                        conn,
                        ks,
                        client,
                        server,
                        out,
                        now,
                        next: Next::Continue,
                    };
                    command::run(&mut call, &args);
                    next = call.next;
                    if out.buf.len() >= SPILL_AT && next == Next::Continue && !out.spill(cx, conn) {
                        next = Next::Gone;
                    }
                }
                Check::Incomplete
                    if !client.authenticated && input.len() - used > UNAUTHENTICATED_REQUEST =>
                {
                    // Only AUTH can help a client that has not
                    // authenticated, and it is short: a larger request is
                    // not kept for it.
                    reply::error(
                        &mut out.buf,
                        "Protocol error: unauthenticated request too large",
                    );
                    used = input.len();
                    next = Next::Close;
                }
                Check::Incomplete => break,
                Check::Invalid(why) => {
                    reply::error(&mut out.buf, why);
                    used = input.len();
                    next = Next::Close;
                }
            }
        }
        drop(shared);
        away.post(peers.as_ref());
        match next {
            Next::Gone => return input.len(),
            Next::Close => {
                let _ = cx.write(conn, &out.buf);
                cx.close(conn);
            }
            Next::Continue => {
                let _ = cx.write(conn, &out.buf);
            }
        }
        // A big reply grew the shared buffer (one 8 MiB value is enough);
        // it is not kept for the next call, whose reply is likely small.
        if out.buf.capacity() > 4 * SPILL_AT {
            out.buf = Vec::with_capacity(SPILL_AT);
        }
        used
    }

    fn on_close(&mut self, _cx: &mut Context<'_>, conn: ConnId, _reason: evloop::CloseReason) {
        if let Some(entry) = self.clients.get_mut(conn.index()) {
            if entry.as_ref().is_some_and(|c| c.conn == conn) {
                *entry = None;
                let server = &mut shards::lock(&self.store).server;
                server.connected = server.connected.saturating_sub(1);
            }
        }
    }

    /// An expiry timer this shard set.
    fn on_timer(&mut self, cx: &mut Context<'_>, token: u64) {
        let mut shared = shards::lock(&self.store);
        let now = shared.now(cx.now());
        let ks = &mut shared.ks;
        ks.on_timer(&mut Wheel::new(cx, self.shard, &mut self.away), now, token);
        drop(shared);
        self.away.post(self.peers.as_ref());
    }

    /// Timers on this shard's wheel that another shard's command ended.
    fn on_message(&mut self, cx: &mut Context<'_>, Cancel(timers): Cancel) {
        for timer in timers {
            cx.cancel_timer(timer);
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
    // `max_conns` is the whole server's, whatever the shards.
    let server = Server::new(cli.server.addr.port(), cli.max_memory, config.max_conns)
        // As Redis: an empty `requirepass` is none.
        .with_password(
            cli.requirepass
                .filter(|p| !p.is_empty())
                .map(String::into_bytes),
        );
    let store = Store::new(server);
    let high_water = config.high_water;
    cli.server
        .serve_with_peers(config, &[], move |shard, peers| Kv {
            shard,
            store: Arc::clone(&store),
            peers,
            away: Away::default(),
            clients: Vec::new(),
            out: Out::new(),
            high_water,
        })
}
