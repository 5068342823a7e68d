//! The command table, and what a running command is given.
//!
//! Like Redis's `commands.def`, one line per command: its name, its arity
//! (Redis's convention: `n` exactly `n` words, `-n` at least `n`, the name
//! included) and whether it adds data (such commands get `-OOM` past
//! `--max-memory`, as Redis's `denyoom` ones do). A command is found by a
//! `match` on its upper-cased name, which the compiler turns into a jump on
//! the length and a few compares: no hashing, no allocation. Then its arity
//! is checked and it runs, appending its reply to the connection's output
//! ([`Out`]) and reading and writing the client's selected database.

use evloop::{ConnId, Context};

use crate::db::Keyspace;
use crate::resp::reply;
use crate::server::{Client, Server};
use crate::shards::Wheel;
use crate::{bitmaps, collections, keys, lcs, server, strings};

/// Redis's answer to a command on a key of another type.
pub const WRONGTYPE: &[u8] =
    b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";
/// Redis's answer to a command that would grow the data past `maxmemory`.
pub const OOM: &[u8] = b"-OOM command not allowed when used memory > 'maxmemory'.\r\n";
pub const SYNTAX: &str = "syntax error";

/// A reply being built is handed to the reactor each time it reaches this
/// much: one socket buffer's worth, so a huge reply (MGET, KEYS, SCAN,
/// LRANGE) never sits whole in [`Out`], and the reactor's output limits
/// see it grow.
pub const SPILL_AT: usize = 64 * 1024;

/// Most bytes of a client's word an error message quotes (Redis's
/// `%.128s`): an unknown 8 MiB command name is not echoed back whole.
pub const QUOTED: usize = 128;

/// Longest command name in the table ("INCRBYFLOAT", "PEXPIRETIME"), with
/// room: a name is upper-cased on the stack in this many bytes.
const MAX_NAME: usize = 16;

/// What a command asks of the connection.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Next {
    Continue,
    Close,
    /// The connection closed while its reply was handed over (past the
    /// hard output limit): nothing more to do for it.
    Gone,
}

/// A connection's reply being built during one `on_data` call.
pub struct Out {
    pub buf: Vec<u8>,
    /// Bytes handed to the reactor by [`Out::spill`] during the call.
    pub spilled: usize,
}

impl Out {
    pub fn new() -> Out {
        Out {
            buf: Vec::new(),
            spilled: 0,
        }
    }

    /// Hands the reply built so far to the reactor; `false` if the
    /// connection closed for it (past the hard output limit).
    pub fn spill(&mut self, cx: &mut Context<'_>, conn: ConnId) -> bool {
        let sent = cx.write(conn, &self.buf).is_ok();
        self.spilled += self.buf.len();
        self.buf.clear();
        sent
    }

    /// [`spill`](Self::spill)s once the reply has reached [`SPILL_AT`];
    /// `false` if the connection is gone.
    pub fn spill_large(&mut self, cx: &mut Context<'_>, conn: ConnId) -> bool {
        self.buf.len() < SPILL_AT || self.spill(cx, conn)
    }
}

/// What a command is given: the keyspace, its client, the server's
/// counters and the output, for one command.
pub struct Call<'a, 'c> {
    /// The reactor, and its wheel for expiry timers.
    pub wheel: Wheel<'a, 'c>,
    pub conn: ConnId,
    pub ks: &'a mut Keyspace,
    pub client: &'a mut Client,
    pub server: &'a mut Server,
    pub out: &'a mut Out,
    /// Unix milliseconds at this turn (see `db::Clock`).
    pub now: i64,
    /// Set by a command that closes the connection or found it gone.
    pub next: Next,
}

impl Call<'_, '_> {
    pub fn error(&mut self, message: &str) {
        reply::error(&mut self.out.buf, message);
    }
}

/// A command: how it is named in errors, its arity, and its code.
pub struct Command {
    /// Lower case, as Redis names commands in its errors.
    pub name: &'static str,
    /// Redis's arity (see the module docs).
    pub arity: i32,
    /// Refused with `-OOM` past `--max-memory`.
    pub adds_data: bool,
    pub run: fn(&mut Call<'_, '_>, &[&[u8]]),
}

impl Command {
    pub fn arity_fits(&self, words: usize) -> bool {
        let words = words as i64;
        let arity = i64::from(self.arity);
        if arity >= 0 {
            words == arity
        } else {
            words >= -arity
        }
    }
}

macro_rules! table {
    ($($upper:literal $name:literal $arity:literal $adds:ident $run:path;)*) => {
        /// The command named `upper` (upper case), if there is one.
        pub fn lookup(upper: &[u8]) -> Option<&'static Command> {
            match upper {
                $($upper => {
                    const C: Command = Command {
                        name: $name,
                        arity: $arity,
                        adds_data: table!(@adds $adds),
                        run: $run,
                    };
                    Some(&C)
                })*
                _ => None,
            }
        }
    };
    (@adds adds) => { true };
    (@adds keeps) => { false };
}

// `adds`: adds data, refused past --max-memory; `keeps`: does not.
table! {
    // Strings (strings.rs).
    b"GET" "get" 2 keeps strings::get;
    b"SET" "set" -3 adds strings::set;
    b"SETNX" "setnx" 3 adds strings::setnx;
    b"SETEX" "setex" 4 adds strings::setex;
    b"PSETEX" "psetex" 4 adds strings::psetex;
    b"GETSET" "getset" 3 adds strings::getset;
    b"GETDEL" "getdel" 2 keeps strings::getdel;
    b"GETEX" "getex" -2 keeps strings::getex;
    b"MGET" "mget" -2 keeps strings::mget;
    b"MSET" "mset" -3 adds strings::mset;
    b"MSETNX" "msetnx" -3 adds strings::msetnx;
    b"APPEND" "append" 3 adds strings::append;
    b"STRLEN" "strlen" 2 keeps strings::strlen;
    b"GETRANGE" "getrange" 4 keeps strings::getrange;
    b"SUBSTR" "substr" 4 keeps strings::getrange;
    b"SETRANGE" "setrange" 4 adds strings::setrange;
    b"INCR" "incr" 2 adds strings::incr;
    b"DECR" "decr" 2 adds strings::decr;
    b"INCRBY" "incrby" 3 adds strings::incrby;
    b"DECRBY" "decrby" 3 adds strings::decrby;
    b"INCRBYFLOAT" "incrbyfloat" 3 adds strings::incrbyfloat;
    b"LCS" "lcs" -3 keeps lcs::lcs;
    // Bitmaps (bitmaps.rs).
    b"SETBIT" "setbit" 4 adds bitmaps::setbit;
    b"GETBIT" "getbit" 3 keeps bitmaps::getbit;
    // Keys and expiry (keys.rs).
    b"DEL" "del" -2 keeps keys::del;
    b"UNLINK" "unlink" -2 keeps keys::del;
    b"EXISTS" "exists" -2 keeps keys::exists;
    b"TYPE" "type" 2 keeps keys::type_;
    b"RENAME" "rename" 3 keeps keys::rename;
    b"RENAMENX" "renamenx" 3 keeps keys::renamenx;
    b"KEYS" "keys" 2 keeps keys::keys;
    b"SCAN" "scan" -2 keeps keys::scan;
    b"RANDOMKEY" "randomkey" 1 keeps keys::randomkey;
    b"OBJECT" "object" -2 keeps keys::object;
    b"EXPIRE" "expire" -3 keeps keys::expire;
    b"PEXPIRE" "pexpire" -3 keeps keys::pexpire;
    b"EXPIREAT" "expireat" -3 keeps keys::expireat;
    b"PEXPIREAT" "pexpireat" -3 keeps keys::pexpireat;
    b"TTL" "ttl" 2 keeps keys::ttl;
    b"PTTL" "pttl" 2 keeps keys::pttl;
    b"EXPIRETIME" "expiretime" 2 keeps keys::expiretime;
    b"PEXPIRETIME" "pexpiretime" 2 keeps keys::pexpiretime;
    b"PERSIST" "persist" 2 keeps keys::persist;
    // Lists and sets, the least of them (collections.rs).
    b"LPUSH" "lpush" -3 adds collections::lpush;
    b"RPUSH" "rpush" -3 adds collections::rpush;
    b"LPOP" "lpop" -2 keeps collections::lpop;
    b"RPOP" "rpop" -2 keeps collections::rpop;
    b"LLEN" "llen" 2 keeps collections::llen;
    b"LRANGE" "lrange" 4 keeps collections::lrange;
    b"SADD" "sadd" -3 adds collections::sadd;
    b"SREM" "srem" -3 keeps collections::srem;
    b"SCARD" "scard" 2 keeps collections::scard;
    b"SISMEMBER" "sismember" 3 keeps collections::sismember;
    b"SMEMBERS" "smembers" 2 keeps collections::smembers;
    // Connection and server (server.rs).
    b"AUTH" "auth" -2 keeps server::auth;
    b"PING" "ping" -1 keeps server::ping;
    b"ECHO" "echo" 2 keeps server::echo;
    b"QUIT" "quit" -1 keeps server::quit;
    b"SELECT" "select" 2 keeps server::select;
    b"SWAPDB" "swapdb" 3 keeps server::swapdb;
    b"DBSIZE" "dbsize" 1 keeps server::dbsize;
    b"FLUSHDB" "flushdb" -1 keeps server::flushdb;
    b"FLUSHALL" "flushall" -1 keeps server::flushall;
    b"INFO" "info" -1 keeps server::info;
    b"CLIENT" "client" -2 keeps server::client;
    b"HELLO" "hello" -1 keeps server::hello;
    b"TIME" "time" 1 keeps server::time;
    b"CONFIG" "config" -2 keeps server::config;
    b"COMMAND" "command" -1 keeps server::command;
    b"FUNCTION" "function" -2 keeps server::function;
}

/// Redis's answer to a command before AUTH, with `requirepass` set.
const NOAUTH: &[u8] = b"-NOAUTH Authentication required.\r\n";

/// Runs one command (`args[0]` is its name), appending its reply.
pub fn run(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    let Some(name) = args.first() else {
        return; // an empty inline line: Redis ignores it
    };
    let mut upper = [0u8; MAX_NAME];
    let command = match upper.get_mut(..name.len()) {
        Some(upper) => {
            upper.copy_from_slice(name);
            upper.make_ascii_uppercase();
            lookup(upper)
        }
        None => None,
    };
    let Some(command) = command else {
        unknown_command(&mut c.out.buf, args);
        return;
    };
    c.server.commands += 1;
    if !command.arity_fits(args.len()) {
        arity_error(&mut c.out.buf, command.name);
        return;
    }
    // As Redis orders it: an unknown command or a wrong arity is said
    // first, then a client that has not authenticated may only AUTH,
    // HELLO with AUTH, or QUIT.
    if !c.client.authenticated && !matches!(command.name, "auth" | "hello" | "quit") {
        c.out.buf.extend_from_slice(NOAUTH);
        return;
    }
    // Like Redis, the check is made before a command that adds data, so
    // the data passes the limit by at most one command.
    if command.adds_data && c.ks.memory() > c.server.max_memory {
        c.out.buf.extend_from_slice(OOM);
        return;
    }
    (command.run)(c, args);
}

/// "wrong number of arguments for 'get' command" (or 'client|setname').
pub fn arity_error(out: &mut Vec<u8>, name: &str) {
    reply::error(
        out,
        &format!("wrong number of arguments for '{name}' command"),
    );
}

/// Redis 7's answer to an unknown command: its name and the start of its
/// arguments, quoted, each cut so the whole stays short.
fn unknown_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    let mut listed = String::new();
    for arg in &args[1..] {
        if listed.len() >= QUOTED {
            break;
        }
        listed += &format!("'{}' ", clip(arg, QUOTED - listed.len()));
    }
    reply::error(
        out,
        &format!(
            "unknown command '{}', with args beginning with: {listed}",
            clip(args[0], QUOTED)
        ),
    );
}

/// The first `n` bytes of a client's word, for an error message (which
/// `reply::error` keeps on one line; see [`QUOTED`]).
pub fn clip(word: &[u8], n: usize) -> String {
    String::from_utf8_lossy(&word[..word.len().min(n)]).into_owned()
}

/// "unknown subcommand 'foo'. Try CLIENT HELP."
pub fn unknown_subcommand(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    let message = format!(
        "unknown subcommand '{}'. Try {} HELP.",
        clip(args[1], QUOTED),
        String::from_utf8_lossy(args[0]).to_uppercase()
    );
    c.error(&message);
}
