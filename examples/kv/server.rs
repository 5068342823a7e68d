//! The connection and server commands (PING, SELECT, SWAPDB, FLUSHDB,
//! INFO, CLIENT, HELLO, TIME, ...), the state each connection has
//! ([`Client`]) and the counters INFO reports ([`Server`]).

use std::fmt::Write;
use std::time::{Duration, Instant};

use evloop::ConnId;

use crate::command::{arity_error, unknown_subcommand, Call, Next, SYNTAX};
use crate::db::{Clock, Rng, Timers, DBS};
use crate::glob::Glob;
use crate::keys::MAX_PATTERN;
use crate::number::{redis_i32, redis_int};
use crate::resp::{reply, Progress};

/// The Redis version this server answers as (HELLO, INFO): the one whose
/// replies it was checked against, and whose test suite it passes.
pub const REDIS_VERSION: &str = "7.0.15";

/// Longest client name CLIENT SETNAME takes. Redis has no limit; here a
/// name is kept for the connection's life outside `--max-memory`, so
/// 100,000 connections may not each park a megabyte in one.
const MAX_CLIENT_NAME: usize = 1024;

/// A connection's own state: kept in `Kv::clients` by the connection's
/// slot, from `on_open` to `on_close`.
pub struct Client {
    /// The whole id, to tell this connection from a later one in its slot.
    pub conn: ConnId,
    /// CLIENT ID: counts up from 1, never reused.
    pub id: u64,
    /// AUTH succeeded, or no password is required.
    pub authenticated: bool,
    /// The database SELECT chose.
    pub db: usize,
    pub name: Option<Vec<u8>>,
    /// Where the check of a partial command stopped (see [`Progress`]).
    pub progress: Progress,
}

impl Client {
    /// A new client; `authenticated` unless the server requires AUTH.
    pub fn new(conn: ConnId, id: u64, authenticated: bool) -> Client {
        Client {
            conn,
            id,
            authenticated,
            db: 0,
            name: None,
            progress: Progress::default(),
        }
    }
}

/// The server's settings and counters, for INFO.
pub struct Server {
    pub clock: Clock,
    pub started: Instant,
    pub port: u16,
    /// Past this much data, commands that add data are refused.
    pub max_memory: usize,
    pub max_clients: usize,
    pub connected: usize,
    pub connections_received: u64,
    pub commands: u64,
    /// The last CLIENT ID given (they count up from 1).
    pub next_client_id: u64,
    pub rng: Rng,
    /// `--requirepass`: clients AUTH with it before anything else.
    pub requirepass: Option<Vec<u8>>,
}

impl Server {
    pub fn new(port: u16, max_memory: usize, max_clients: usize) -> Server {
        let clock = Clock::new();
        let seed = clock.unix(Instant::now()).as_nanos() as u64;
        Server {
            clock,
            started: Instant::now(),
            port,
            max_memory,
            max_clients,
            connected: 0,
            connections_received: 0,
            commands: 0,
            next_client_id: 0,
            rng: Rng::new(seed),
            requirepass: None,
        }
    }
}

impl Server {
    /// Requires clients to AUTH with `password` (if any) first.
    pub fn with_password(mut self, password: Option<Vec<u8>>) -> Server {
        self.requirepass = password;
        self
    }
}

/// AUTH password, or AUTH default password (Redis 6's form with a user
/// name; the default user is the only one). The comparison takes the
/// same time wherever the guess goes wrong.
pub fn auth(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    let (user, given) = match args {
        [_, password] => (&b"default"[..], *password),
        [_, user, password] => (*user, *password),
        _ => return arity_error(&mut c.out.buf, "auth"),
    };
    let Some(password) = c.server.requirepass.as_deref() else {
        return c.error(
            "AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
        );
    };
    if user == b"default" && same(given, password) {
        c.client.authenticated = true;
        reply::simple(&mut c.out.buf, "OK");
    } else {
        c.out.buf.extend_from_slice(
            b"-WRONGPASS invalid username-password pair or user is disabled.\r\n",
        );
    }
}

/// Whether `given` equals `secret`, in a time that depends on the length
/// of `given` alone (the client's own input): not on where they differ,
/// nor on the secret's length.
fn same(given: &[u8], secret: &[u8]) -> bool {
    let mut differ = u8::from(given.len() != secret.len());
    for (i, &b) in given.iter().enumerate() {
        // Every byte of `given` is compared with something.
        let s = secret.get(i).copied().unwrap_or(!b);
        differ |= b ^ s;
    }
    differ == 0 && !secret.is_empty()
}

pub fn ping(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    match args {
        [_] => reply::simple(&mut c.out.buf, "PONG"),
        [_, message] => reply::bulk(&mut c.out.buf, message),
        _ => arity_error(&mut c.out.buf, "ping"),
    }
}

pub fn echo(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    reply::bulk(&mut c.out.buf, args[1]);
}

pub fn quit(c: &mut Call<'_, '_>, _args: &[&[u8]]) {
    reply::simple(&mut c.out.buf, "OK");
    c.next = Next::Close;
}

/// A database number from a client: `Err` is the message.
fn db_index(word: &[u8], custom: Option<&'static str>) -> Result<usize, &'static str> {
    let n = redis_i32(word, custom)?;
    usize::try_from(n)
        .ok()
        .filter(|&n| n < DBS)
        .ok_or("DB index is out of range")
}

pub fn select(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    match db_index(args[1], None) {
        Ok(db) => {
            c.client.db = db;
            reply::simple(&mut c.out.buf, "OK");
        }
        Err(message) => c.error(message),
    }
}

/// SWAPDB a b: every client of `a` sees `b`'s keys, and the other way
/// round; keys keep their expiries (`Keyspace::swap`).
pub fn swapdb(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    let a = redis_i32(args[1], Some("invalid first DB index"));
    let b = redis_i32(args[2], Some("invalid second DB index"));
    let (a, b) = match (a, b) {
        (Err(message), _) | (_, Err(message)) => return c.error(message),
        (Ok(a), Ok(b)) => (a, b),
    };
    let in_range = |n: i32| usize::try_from(n).ok().filter(|&n| n < DBS);
    match (in_range(a), in_range(b)) {
        (Some(a), Some(b)) => {
            c.ks.swap(a, b);
            reply::simple(&mut c.out.buf, "OK");
        }
        _ => c.error("DB index is out of range"),
    }
}

pub fn dbsize(c: &mut Call<'_, '_>, _args: &[&[u8]]) {
    let n = c.ks.db(c.client.db).len();
    reply::integer(&mut c.out.buf, n as i64);
}

/// FLUSHDB's and FLUSHALL's one option, ASYNC or SYNC (both synchronous
/// here).
fn flush_option(args: &[&[u8]]) -> bool {
    match args {
        [_] => true,
        [_, mode] => mode.eq_ignore_ascii_case(b"ASYNC") || mode.eq_ignore_ascii_case(b"SYNC"),
        _ => false,
    }
}

pub fn flushdb(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    if !flush_option(args) {
        return c.error(SYNTAX);
    }
    c.ks.db(c.client.db).flush(&mut c.wheel);
    reply::simple(&mut c.out.buf, "OK");
}

pub fn flushall(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    if !flush_option(args) {
        return c.error(SYNTAX);
    }
    c.ks.flush_all(&mut c.wheel);
    reply::simple(&mut c.out.buf, "OK");
}

/// CLIENT ID, GETNAME, SETNAME.
pub fn client(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    let sub = args[1].to_ascii_uppercase();
    let (name, words) = match sub.as_slice() {
        b"ID" => ("client|id", 2),
        b"GETNAME" => ("client|getname", 2),
        b"SETNAME" => ("client|setname", 3),
        _ => return unknown_subcommand(c, args),
    };
    if args.len() != words {
        return arity_error(&mut c.out.buf, name);
    }
    match sub.as_slice() {
        b"ID" => reply::integer(&mut c.out.buf, c.client.id as i64),
        b"GETNAME" => match &c.client.name {
            Some(name) => reply::bulk(&mut c.out.buf, name),
            None => reply::null(&mut c.out.buf),
        },
        _ => match set_name(c, args[2]) {
            Ok(()) => reply::simple(&mut c.out.buf, "OK"),
            Err(message) => c.error(message),
        },
    }
}

/// Names a client as Redis's `validateClientName` allows (printable
/// ASCII, no spaces; empty clears it), up to [`MAX_CLIENT_NAME`].
fn set_name(c: &mut Call<'_, '_>, name: &[u8]) -> Result<(), &'static str> {
    if !name.iter().all(|b| (b'!'..=b'~').contains(b)) {
        return Err("Client names cannot contain spaces, newlines or special characters.");
    }
    if name.len() > MAX_CLIENT_NAME {
        return Err("Client name is longer than 1024 bytes");
    }
    c.client.name = (!name.is_empty()).then(|| name.to_vec());
    Ok(())
}

/// Redis's answer to HELLO before AUTH, without the AUTH option.
const HELLO_NOAUTH: &[u8] = b"-NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time\r\n";

/// HELLO [protover [AUTH user pass] [SETNAME name]]: RESP2 only, so
/// `HELLO 3` is refused with NOPROTO, which clients take as "speak 2".
pub fn hello(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    if let Some(version) = args.get(1) {
        match redis_int(version) {
            None => return c.error("Protocol version is not an integer or out of range"),
            Some(2) => {}
            Some(_) => {
                return c
                    .out
                    .buf
                    .extend_from_slice(b"-NOPROTO unsupported protocol version\r\n")
            }
        }
    }
    let mut name = None;
    let mut authenticates = false;
    let mut i = 2;
    while i < args.len() {
        let more = args.len() - 1 - i;
        if args[i].eq_ignore_ascii_case(b"AUTH") && more >= 2 {
            // The default user, with `--requirepass` (any password
            // without one, as Redis without `requirepass`).
            let good = args[i + 1] == b"default"
                && c.server
                    .requirepass
                    .as_deref()
                    .is_none_or(|p| same(args[i + 2], p));
            if !good {
                return c.out.buf.extend_from_slice(
                    b"-WRONGPASS invalid username-password pair or user is disabled.\r\n",
                );
            }
            authenticates = true;
            i += 3;
        } else if args[i].eq_ignore_ascii_case(b"SETNAME") && more >= 1 {
            name = Some(args[i + 1]);
            i += 2;
        } else {
            let option = crate::command::clip(args[i], crate::command::QUOTED);
            return c.error(&format!("Syntax error in HELLO option '{option}'"));
        }
    }
    if !c.client.authenticated && !authenticates {
        return c.out.buf.extend_from_slice(HELLO_NOAUTH);
    }
    c.client.authenticated = true;
    if let Some(name) = name {
        if let Err(message) = set_name(c, name) {
            return c.error(message);
        }
    }
    // A map, which RESP2 sends as a flat array of fields and values.
    let out = &mut c.out.buf;
    reply::array_len(out, 14);
    let field = |out: &mut Vec<u8>, name: &str, value: &str| {
        reply::bulk(out, name.as_bytes());
        reply::bulk(out, value.as_bytes());
    };
    field(out, "server", "redis");
    field(out, "version", REDIS_VERSION);
    reply::bulk(out, b"proto");
    reply::integer(out, 2);
    reply::bulk(out, b"id");
    reply::integer(out, c.client.id as i64);
    field(out, "mode", "standalone");
    field(out, "role", "master");
    reply::bulk(out, b"modules");
    reply::array_len(out, 0);
}

/// TIME: the Unix time as this server's expiries see it (see `db::Clock`;
/// with shards, never before what another shard's command saw: see
/// `shards.rs`).
pub fn time(c: &mut Call<'_, '_>, _args: &[&[u8]]) {
    let seen = Duration::from_millis(u64::try_from(c.now).unwrap_or(0));
    let unix = c.server.clock.unix(c.wheel.cx.now()).max(seen);
    let out = &mut c.out.buf;
    reply::array_len(out, 2);
    for n in [unix.as_secs(), u64::from(unix.subsec_micros())] {
        let mut digits = Vec::new();
        reply::decimal(&mut digits, n as i64);
        reply::bulk(out, &digits);
    }
}

/// CONFIG GET pattern...: the parameters this server has, matched as
/// Redis matches them (globs; each listed once), with their values here:
/// it persists nothing, so `save` is empty and `appendonly` is no (what
/// redis-benchmark reads). A name it does not have is not listed.
pub fn config(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    if !args[1].eq_ignore_ascii_case(b"GET") {
        return unknown_subcommand(c, args);
    }
    if args.len() < 3 {
        return arity_error(&mut c.out.buf, "config|get");
    }
    let max_memory = c.server.max_memory.to_string();
    let databases = DBS.to_string();
    let params: [(&str, &str); 5] = [
        ("appendonly", "no"),
        ("databases", &databases),
        ("maxmemory", &max_memory),
        ("maxmemory-policy", "noeviction"),
        ("save", ""),
    ];
    if args[2..].iter().any(|p| p.len() > MAX_PATTERN) {
        return c.error(&format!("pattern longer than {MAX_PATTERN} bytes"));
    }
    let patterns: Vec<Glob> = args[2..]
        .iter()
        .map(|p| Glob::new(&p.to_ascii_lowercase()))
        .collect();
    let listed: Vec<&(&str, &str)> = params
        .iter()
        .filter(|(name, _)| patterns.iter().any(|g| g.matches(name.as_bytes())))
        .collect();
    let out = &mut c.out.buf;
    reply::array_len(out, 2 * listed.len());
    for (name, value) in listed {
        reply::bulk(out, name.as_bytes());
        reply::bulk(out, value.as_bytes());
    }
}

/// COMMAND: redis-cli asks for command docs at start; an empty answer
/// will do.
pub fn command(c: &mut Call<'_, '_>, _args: &[&[u8]]) {
    reply::array_len(&mut c.out.buf, 0);
}

/// FUNCTION FLUSH: there are no functions here, so there is nothing to
/// flush (Redis's test suite flushes them before each file).
pub fn function(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    if args[1].eq_ignore_ascii_case(b"FLUSH") && args.len() <= 3 {
        reply::simple(&mut c.out.buf, "OK");
    } else {
        unknown_subcommand(c, args);
    }
}

/// INFO [section ...]: the server, clients, memory, stats and keyspace
/// sections, in Redis's format (`name:value` lines under `# Section`
/// headers, a blank line between sections).
pub fn info(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    const SECTIONS: [&str; 5] = ["server", "clients", "memory", "stats", "keyspace"];
    let all = args.len() == 1
        || args[1..].iter().any(|a| {
            [&b"all"[..], b"default", b"everything"]
                .iter()
                .any(|w| a.eq_ignore_ascii_case(w))
        });
    let wanted = |name: &str| {
        all || args[1..]
            .iter()
            .any(|a| a.eq_ignore_ascii_case(name.as_bytes()))
    };
    let mut text = String::new();
    for section in SECTIONS.into_iter().filter(|s| wanted(s)) {
        if !text.is_empty() {
            text.push_str("\r\n");
        }
        info_section(c, section, &mut text);
    }
    reply::bulk(&mut c.out.buf, text.as_bytes());
}

fn info_section(c: &mut Call<'_, '_>, section: &str, text: &mut String) {
    let mut title = section.to_string();
    title[..1].make_ascii_uppercase();
    text.push_str(&format!("# {title}\r\n"));
    // Writing to a String cannot fail.
    let mut line = |name: &str, value: &dyn std::fmt::Display| {
        let _ = write!(text, "{name}:{value}\r\n");
    };
    match section {
        "server" => {
            let up = c.server.started.elapsed().as_secs();
            line("redis_version", &REDIS_VERSION);
            line("evloop_kv_version", &env!("CARGO_PKG_VERSION"));
            // Which shard serves this connection (`--threads`; 0 with
            // one reactor): the net and rejection counts under "stats"
            // are that shard's.
            line("evloop_shard", &c.wheel.shard());
            line("redis_mode", &"standalone");
            line("os", &std::env::consts::OS);
            line("arch_bits", &usize::BITS);
            line("multiplexing_api", &"epoll");
            line("process_id", &std::process::id());
            line("tcp_port", &c.server.port);
            line("uptime_in_seconds", &up);
            line("uptime_in_days", &(up / 86_400));
        }
        "clients" => {
            line("connected_clients", &c.server.connected);
            line("maxclients", &c.server.max_clients);
            line("blocked_clients", &0);
        }
        "memory" => {
            let used = c.ks.memory();
            line("used_memory", &used);
            line("used_memory_human", &human(used));
            line("maxmemory", &c.server.max_memory);
            line("maxmemory_human", &human(c.server.max_memory));
            line("maxmemory_policy", &"noeviction");
            line("mem_allocator", &"libc");
        }
        "stats" => {
            let stats = c.wheel.cx.stats();
            line("total_connections_received", &c.server.connections_received);
            line("total_commands_processed", &c.server.commands);
            line("total_net_input_bytes", &stats.bytes_in);
            line("total_net_output_bytes", &stats.bytes_out);
            line("rejected_connections", &stats.rejected.iter().sum::<u64>());
            line("expired_keys", &c.ks.expired);
            // Timers on this shard's wheel: expiries and the reactor's
            // own deadlines.
            line("evloop_timers", &stats.timers);
        }
        _ => {
            for i in 0..DBS {
                let db = c.ks.db_ref(i);
                if db.len() > 0 {
                    let keys = format!(
                        "keys={},expires={},avg_ttl={}",
                        db.len(),
                        db.expires(),
                        db.avg_ttl(c.now)
                    );
                    line(&format!("db{i}"), &keys);
                }
            }
        }
    }
}

/// Bytes as Redis's `bytesToHuman` writes them: `2.19M`.
fn human(n: usize) -> String {
    let n = n as f64;
    for (unit, size) in [
        ("P", 1u64 << 50),
        ("T", 1 << 40),
        ("G", 1 << 30),
        ("M", 1 << 20),
        ("K", 1 << 10),
    ] {
        if n >= size as f64 {
            return format!("{:.2}{unit}", n / size as f64);
        }
    }
    format!("{n}B")
}
