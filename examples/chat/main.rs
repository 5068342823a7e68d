//! Example 4 of 11: a chat server, where every line goes to everyone else.
//!
//! ```sh
//! cargo run --release --example chat -- --addr 127.0.0.1:7070
//! nc 127.0.0.1 7070      # in two terminals; type away
//! ```
//!
//! Commands: `/nick NAME`, `/who`, `/quit`. Joins and leaves are
//! announced.
//!
//! What it teaches: **writing to connections other than the one being
//! served** (a broadcast: the reactor queues each copy and flushes them
//! all in step 6 of the turn), and **the slow consumer**: a member who
//! stops reading cannot make the server buffer without end, nor slow the
//! room down. Past the soft output limit for the grace period, or past the
//! hard limit at once, the reactor disconnects them.
//!
//! And what a room owes its members: one member's flood is taken a
//! bounded amount of work per call (`WORK_PER_CALL`; the reactor offers
//! the rest after the others have been served), joins and departures are
//! announced together once per tick instead of one broadcast each (a room
//! that fills up does not cost the square of its size, and a slow
//! member's drop cannot set off a cascade of drops), the room's queued
//! output is capped (`ROOM_BUFFERED`, or `--max-buffered`: past it the
//! reactor drops the members furthest behind), `/who` costs one pass over
//! the room and lists at most `WHO_NAMED` names, names are unique, and
//! control characters (terminal escapes among them) are stripped before a
//! line is relayed, so no member can rewrite another's screen or pass for
//! someone else.
//!
//! Read next: examples/http/main.rs (example 5), a real protocol with
//! pipelining, strict framing and limits answered in the protocol.

#[path = "../common/mod.rs"]
mod common;
mod text;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use clap::Parser;
use evloop::{CloseReason, ConnId, Context, Handler, Peers};
use text::{clean, valid_name, MAX_NAME};

#[derive(Parser, Debug)]
#[command(about = "Chat server on the evloop reactor")]
struct Cli {
    #[command(flatten)]
    server: common::ServerArgs,
}

/// Longest line accepted: a chat line is a sentence, not a file.
const MAX_LINE: usize = 4 * 1024;
/// A member more than this far behind for `SOFT_GRACE` is dropped: 256 KiB
/// is thousands of lines nobody is reading.
const SOFT_LIMIT: usize = 256 * 1024;
const SOFT_GRACE: Duration = Duration::from_secs(5);
/// ... and at once past 1 MiB, so a room of 10,000 cannot hold 10 GiB of
/// unread chat.
const HARD_LIMIT: usize = 1024 * 1024;
/// Bytes one `on_data` call may queue across the room: a relayed line
/// costs its length once per member, `/who` its list. A member who sends
/// more in one go is taken in pieces, the others served and every output
/// flushed in between (at least one line per call, whatever the room's
/// size). 256 KiB is a few milliseconds of copying, and a quarter of a
/// member's hard limit, so a fast reader is never dropped because
/// someone else pasted a lot at once.
///
/// What it costs and buys, measured 2026-11-29 with
/// `benches/chat_flood.py` (every member reads everything; one sends
/// 64 KiB of `a\n` at once; a probe line every 5 ms is timed between two
/// others; the clients share one core, so the latencies are upper
/// bounds):
///
/// | members | probe latency during the flood (p50 / max) | flood delivered in |
/// | --- | --- | --- |
/// | 1,000, whole flood in one call (before) | 2.4 ms / 1,108 ms | 1.1 s |
/// | 1,000, bounded (`WORK_PER_MEMBER` applies) | 5.4 ms / 26 ms | 5.1 s |
/// | 10,000, whole flood in one call (before) | 25,226 ms / 26,400 ms | 26 s |
/// | 10,000, bounded | 69 ms / 160 ms | 58 s |
///
/// A flood takes longer to reach everyone because each turn writes a
/// slice of it to every socket: more, smaller system calls.
const WORK_PER_CALL: usize = 256 * 1024;
/// What the whole room's queued output (every member's buffers together)
/// may hold before the members furthest behind are dropped, unless
/// `--max-buffered` says otherwise. The per-member limits alone allow
/// 10,000 members x 1 MiB = 10 GiB; 256 MiB is a thousand members each at
/// the soft limit, far more than a room that is being read ever queues
/// (a line to 10,000 members is a few MB, flushed the same turn).
const ROOM_BUFFERED: usize = 256 * 1024 * 1024;
/// Names a `/who` lists (sorted); the rest of a big room is counted. A
/// list of 10,000 names would be 100 KB and a sort for one command.
const WHO_NAMED: usize = 100;
/// In a big room, what one call may queue per member on average, when
/// that is more than `WORK_PER_CALL`. Each turn the reactor writes to
/// every member's socket once; a call that queued a few bytes per member
/// would spend its turn on those system calls, not on the flood (10,000
/// members and 256 KiB a call is 26 bytes each: a 64 KiB paste would
/// take 18,000 turns). 512 bytes each keeps a turn's copying within the
/// same order as its system calls: tens of milliseconds at 10,000.
const WORK_PER_MEMBER: usize = 512;
/// Joins or departures announced in one line; more are counted ("and 12
/// more").
const ANNOUNCED_NAMED: usize = 8;
/// The timer token of the departures' announcement.
const ANNOUNCE: u64 = u64::MAX;

struct Member {
    id: ConnId,
    name: String,
    /// Joined since the last announcement (and so is not told of it).
    new: bool,
}

/// What every shard of the room shares (`--threads`): the names in use,
/// the guest numbers, and how many members there are. Taken at a join,
/// a rename, a departure and `/who`, never per line: a line crosses to
/// the other shards as a posted message instead (see `Relay`).
#[derive(Default)]
struct Room {
    names: Mutex<HashSet<String>>,
    guests: AtomicU64,
    members: AtomicUsize,
}

impl Room {
    fn names(&self) -> MutexGuard<'_, HashSet<String>> {
        // A shard that panicked while holding it left a valid set.
        self.names.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A line for every member of another shard: a member's line, a rename,
/// an announcement. One `Arc` for all the shards it goes to.
#[derive(Clone, Debug)]
struct Relay(Arc<str>);

struct Chat {
    members: Vec<Option<Member>>,
    room: Arc<Room>,
    /// This shard's number, and the others (`None` with one reactor).
    shard: usize,
    peers: Option<Peers<Relay>>,
    /// Members joined since the last announcement.
    arrived: Tally,
    /// Members gone since the last announcement ("name left (why)").
    departed: Tally,
    announce_pending: bool,
}

/// Joins or departures waiting for the next announcement: the first
/// `ANNOUNCED_NAMED` by name, the rest counted.
#[derive(Default)]
struct Tally {
    named: Vec<String>,
    more: usize,
}

impl Tally {
    fn add(&mut self, entry: String) {
        if self.named.len() < ANNOUNCED_NAMED {
            self.named.push(entry);
        } else {
            self.more += 1;
        }
    }

    /// The announcement (`* a joined, b joined, and 3 more joined`), if
    /// there is anything to say; the tally starts again.
    fn take_line(&mut self, verb: &str) -> Option<String> {
        if self.named.is_empty() {
            return None;
        }
        let mut line = format!("* {}", self.named.join(", "));
        if self.more > 0 {
            line += &format!(", and {} more {verb}", self.more);
        }
        line.push('\n');
        *self = Tally::default();
        Some(line)
    }
}

impl Chat {
    fn member(&self, conn: ConnId) -> Option<&Member> {
        self.members
            .get(conn.index())?
            .as_ref()
            .filter(|m| m.id == conn)
    }

    fn new(shard: usize, room: Arc<Room>, peers: Option<Peers<Relay>>) -> Chat {
        Chat {
            members: Vec::new(),
            room,
            shard,
            peers,
            arrived: Tally::default(),
            departed: Tally::default(),
            announce_pending: false,
        }
    }

    /// Sends `line` to everyone but `except`: this shard's members, one
    /// write each, and every other shard's, by one posted message each.
    fn broadcast(&self, cx: &mut Context<'_>, except: Option<ConnId>, line: &str) {
        self.local_broadcast(cx, except, line);
        self.relay(line);
    }

    /// Sends `line` to every other shard's members (nothing with one
    /// reactor).
    fn relay(&self, line: &str) {
        if let Some(server) = self.peers.as_ref().and_then(Peers::get) {
            let relay = Relay(Arc::from(line));
            for shard in (0..server.len()).filter(|&s| s != self.shard) {
                let _ = server.post(shard, relay.clone());
            }
        }
    }

    /// Sends `line` to this shard's members but `except`.
    fn local_broadcast(&self, cx: &mut Context<'_>, except: Option<ConnId>, line: &str) {
        for m in self.members.iter().flatten() {
            if Some(m.id) != except {
                // A member past the hard limit is closed by this write;
                // the rest of the room is unaffected.
                let _ = cx.write(m.id, line.as_bytes());
            }
        }
    }

    /// Arms the announcement of joins and departures for the next tick.
    fn announce_soon(&mut self, cx: &mut Context<'_>) {
        if !self.announce_pending {
            self.announce_pending = true;
            cx.set_timer(Duration::ZERO, ANNOUNCE);
        }
    }

    /// What one `on_data` call may queue across the room (see
    /// `WORK_PER_CALL` and `WORK_PER_MEMBER`).
    fn work_per_call(&self) -> usize {
        WORK_PER_CALL.max(self.room.members.load(Ordering::Relaxed) * WORK_PER_MEMBER)
    }

    fn tell(cx: &mut Context<'_>, conn: ConnId, line: &str) {
        let _ = cx.write(conn, line.as_bytes());
    }

    /// Handles one line; returns the bytes it queued across the room (see
    /// `WORK_PER_CALL`), counting at least one per member it went through.
    fn line(&mut self, cx: &mut Context<'_>, conn: ConnId, line: &str) -> usize {
        let Some(name) = self.member(conn).map(|m| m.name.clone()) else {
            return 0;
        };
        // Every member of the room, whichever shard holds them.
        let cost = self.room.members.load(Ordering::Relaxed).max(1) * (name.len() + line.len() + 3);
        let (command, arg) = line.split_once(' ').unwrap_or((line, ""));
        match command {
            "/nick" => self.rename(cx, conn, &name, arg.trim()),
            "/who" => Self::tell(cx, conn, &self.who()),
            "/quit" => {
                Self::tell(cx, conn, "* bye\n");
                cx.close(conn);
            }
            c if c.starts_with('/') => {
                Self::tell(cx, conn, "* commands: /nick NAME, /who, /quit\n")
            }
            _ if line.is_empty() => {}
            _ => self.broadcast(cx, Some(conn), &format!("{name}: {line}\n")),
        }
        cost
    }

    /// `* online (N): a, b, c` with the first `WHO_NAMED` names in order
    /// and the rest counted: one pass over the room, whatever its size.
    fn who(&self) -> String {
        let all = self.room.names();
        let mut names: Vec<&str> = all.iter().map(String::as_str).collect();
        let total = names.len();
        if total > WHO_NAMED {
            names.select_nth_unstable(WHO_NAMED);
            names.truncate(WHO_NAMED);
        }
        names.sort_unstable();
        let mut line = format!("* online ({total}): {}", names.join(", "));
        if total > WHO_NAMED {
            line += &format!(", and {} more", total - WHO_NAMED);
        }
        line.push('\n');
        line
    }

    fn rename(&mut self, cx: &mut Context<'_>, conn: ConnId, old: &str, new: &str) {
        if !valid_name(new) {
            return Self::tell(
                cx,
                conn,
                &format!("* a name is 1 to {MAX_NAME} letters, digits, _ or -\n"),
            );
        }
        {
            let mut names = self.room.names();
            if names.contains(new) {
                drop(names);
                return Self::tell(cx, conn, &format!("* {new} is taken\n"));
            }
            names.remove(old);
            names.insert(new.to_owned());
        }
        if let Some(Some(m)) = self.members.get_mut(conn.index()) {
            m.name = new.to_owned();
        }
        self.broadcast(cx, None, &format!("* {old} is now {new}\n"));
    }
}

impl Handler for Chat {
    type Message = Relay;

    fn on_open(&mut self, cx: &mut Context<'_>, conn: ConnId) {
        // A member may have taken the next guest name with /nick; taken
        // here under the room's lock, so no other shard takes it too.
        let name = {
            let mut names = self.room.names();
            loop {
                let n = self.room.guests.fetch_add(1, Ordering::Relaxed) + 1;
                let name = format!("guest{n}");
                if names.insert(name.clone()) {
                    break name;
                }
            }
        };
        self.room.members.fetch_add(1, Ordering::Relaxed);
        Self::tell(
            cx,
            conn,
            &format!("* welcome, {name}. Commands: /nick NAME, /who, /quit\n"),
        );
        // Announced with the others who join this tick, in one line: a
        // broadcast per join would make a room of 10,000 that fills up
        // cost 50 million writes (1.7 GB of "joined" lines).
        self.arrived.add(format!("{name} joined"));
        self.announce_soon(cx);
        if self.members.len() <= conn.index() {
            self.members.resize_with(conn.index() + 1, || None);
        }
        self.members[conn.index()] = Some(Member {
            id: conn,
            name,
            new: true,
        });
    }

    fn on_data(&mut self, cx: &mut Context<'_>, conn: ConnId, input: &[u8]) -> usize {
        // Whole lines only; the reactor keeps a partial one.
        let Some(end) = input.iter().rposition(|&b| b == b'\n') else {
            if input.len() >= MAX_LINE {
                Self::tell(cx, conn, "* line too long\n");
                cx.close(conn);
                return input.len();
            }
            return 0;
        };
        let mut used = 0;
        let mut work = 0;
        for raw in input[..end].split(|&b| b == b'\n') {
            if raw.len() > MAX_LINE {
                Self::tell(cx, conn, "* line too long\n");
                cx.close(conn);
                return input.len();
            }
            used += raw.len() + 1;
            let line = clean(&String::from_utf8_lossy(raw));
            work += self.line(cx, conn, &line);
            if work >= self.work_per_call() {
                break; // the rest is offered again after the others
            }
        }
        used
    }

    fn on_timer(&mut self, cx: &mut Context<'_>, token: u64) {
        if token != ANNOUNCE {
            return;
        }
        self.announce_pending = false;
        if let Some(line) = self.arrived.take_line("joined") {
            // Those who just joined were welcomed; they are not told.
            for m in self.members.iter_mut().flatten() {
                if !std::mem::take(&mut m.new) {
                    let _ = cx.write(m.id, line.as_bytes());
                }
            }
            self.relay(&line);
        }
        if let Some(line) = self.departed.take_line("left") {
            self.broadcast(cx, None, &line);
        }
    }

    fn on_message(&mut self, cx: &mut Context<'_>, relay: Relay) {
        // Another shard's line: for this shard's members (never posted
        // on again).
        self.local_broadcast(cx, None, &relay.0);
    }

    fn on_close(&mut self, cx: &mut Context<'_>, conn: ConnId, reason: CloseReason) {
        let Some(m) = self.members.get_mut(conn.index()).and_then(Option::take) else {
            return;
        };
        self.room.names().remove(&m.name);
        self.room.members.fetch_sub(1, Ordering::Relaxed);
        let why = match reason {
            CloseReason::SlowConsumer => " (too far behind)",
            CloseReason::OverBudget => " (too far behind: the room's memory is full)",
            CloseReason::IdleTimeout => " (idle)",
            _ => "",
        };
        // Announced with the others that leave this tick, in one line: a
        // broadcast per departure could push other slow members past their
        // limit, whose departures would be broadcast in turn.
        self.departed.add(format!("{} left{why}", m.name));
        self.announce_soon(cx);
    }
}

fn main() -> std::io::Result<std::process::ExitCode> {
    let cli = Cli::parse();
    common::init();
    let mut config = cli.server.config_buffered(ROOM_BUFFERED);
    config.soft_limit = SOFT_LIMIT;
    config.soft_grace = SOFT_GRACE;
    config.hard_limit = HARD_LIMIT;
    config.max_input = MAX_LINE + 1;
    // One room, whatever the shards: with --threads N each shard serves
    // its own members, and lines cross to the others as messages.
    let room = Arc::new(Room::default());
    cli.server
        .serve_with_peers(config, &[], move |shard, peers| {
            Chat::new(shard, Arc::clone(&room), peers)
        })
}
