//! An experiment, not built with the project: a minimal GET/SET server
//! on N shards of `evloop::Server`, to measure the two ways shards can
//! share a key-value store (`DESIGN.md`, "Shards"; the kv example kept
//! the first):
//!
//! - `--mode lock`: one map behind one lock, taken once per read;
//! - `--mode split`: each shard owns the keys that hash to it, and a
//!   command for another shard's key is posted there and its reply posted
//!   back, batched per read (Dragonfly's way), the client's replies kept
//!   in its order;
//! - `--mode own`: each shard its own map and no forwarding (wrong as a
//!   store: it measures what the shards cost without either).
//!
//! To run it (it needs nothing but the library):
//!
//! ```sh
//! cp benches/experiments/kv_split.rs examples/ && cargo build --release --example kv_split
//! target/release/examples/kv_split --addr 127.0.0.1:6400 --threads 2 --mode split
//! redis-benchmark -p 6400 -c 50 -n 2000000 -P 16 -t set,get -r 100000 -q
//! ```
//!
//! Its parser trusts its input (redis-benchmark's): it is a measurement,
//! not a server. The figures are in `docs/BENCHMARKS.md`, "kv on two
//! shards".

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use evloop::{Config, ConnId, Context, Handler, Peers, Server};

type Map = HashMap<Vec<u8>, Vec<u8>>;

enum Msg {
    /// Commands (GET key / SET key value) for the receiving shard's keys,
    /// from `from`'s connection `conn`, whose replies go to its slots
    /// `first..`.
    Run {
        from: usize,
        conn: ConnId,
        first: u64,
        cmds: Vec<Vec<Vec<u8>>>,
    },
    Done {
        conn: ConnId,
        first: u64,
        replies: Vec<Vec<u8>>,
    },
}

#[derive(Default)]
struct Client {
    /// Replies in the client's order; `None` while a shard has it.
    pending: VecDeque<Option<Vec<u8>>>,
    /// The slot number of `pending[0]`.
    base: u64,
}

struct Kvx {
    shard: usize,
    shards: usize,
    split: bool,
    own_only: bool,
    shared: Arc<Mutex<Map>>,
    own: Map,
    peers: Option<Peers<Msg>>,
    clients: HashMap<ConnId, Client>,
}

fn owner(key: &[u8], shards: usize) -> usize {
    let h = BuildHasherDefault::<DefaultHasher>::default().hash_one(key);
    (h % shards as u64) as usize
}

fn run(map: &mut Map, cmd: &[Vec<u8>]) -> Vec<u8> {
    let name = cmd[0].to_ascii_uppercase();
    match (name.as_slice(), cmd.len()) {
        (b"GET", 2) => match map.get(&cmd[1]) {
            Some(v) => {
                let mut r = format!("${}\r\n", v.len()).into_bytes();
                r.extend_from_slice(v);
                r.extend_from_slice(b"\r\n");
                r
            }
            None => b"$-1\r\n".to_vec(),
        },
        (b"SET", 3) => {
            map.insert(cmd[1].clone(), cmd[2].clone());
            b"+OK\r\n".to_vec()
        }
        (b"PING", _) => b"+PONG\r\n".to_vec(),
        (b"CONFIG", _) => b"*0\r\n".to_vec(),
        _ => b"-ERR unknown\r\n".to_vec(),
    }
}

/// One RESP array of bulk strings from the front of `input`.
fn parse(input: &[u8]) -> Option<(Vec<Vec<u8>>, usize)> {
    fn line(input: &[u8], at: usize) -> Option<(i64, usize)> {
        let end = input[at..].windows(2).position(|w| w == b"\r\n")? + at;
        let n = std::str::from_utf8(&input[at + 1..end]).ok()?.parse().ok()?;
        Some((n, end + 2))
    }
    if input.first() != Some(&b'*') {
        return None;
    }
    let (n, mut at) = line(input, 0)?;
    let mut args = Vec::new();
    for _ in 0..n {
        let (len, start) = line(input, at)?;
        let end = start + len as usize;
        if input.len() < end + 2 {
            return None;
        }
        args.push(input[start..end].to_vec());
        at = end + 2;
    }
    Some((args, at))
}

/// Posts `message` to shard `shard` (nothing before the server is up).
fn post(peers: &Option<Peers<Msg>>, shard: usize, message: Msg) {
    if let Some(server) = peers.as_ref().and_then(Peers::get) {
        let _ = server.post(shard, message);
    }
}

impl Kvx {
    fn flush(cx: &mut Context<'_>, conn: ConnId, c: &mut Client) {
        let mut out = Vec::new();
        while let Some(Some(_)) = c.pending.front() {
            if let Some(Some(r)) = c.pending.pop_front() {
                out.extend_from_slice(&r);
            }
            c.base += 1;
        }
        if !out.is_empty() {
            let _ = cx.write(conn, &out);
        }
    }
}

impl Handler for Kvx {
    type Message = Msg;

    fn on_data(&mut self, cx: &mut Context<'_>, conn: ConnId, input: &[u8]) -> usize {
        let mut used = 0;
        if !self.split {
            let mut out = Vec::new();
            let mut map = self.shared.lock().unwrap();
            while let Some((cmd, n)) = parse(&input[used..]) {
                used += n;
                out.extend_from_slice(&run(&mut map, &cmd));
            }
            drop(map);
            let _ = cx.write(conn, &out);
            return used;
        }
        let c = self.clients.entry(conn).or_default();
        let mut away: Vec<(u64, Vec<Vec<Vec<u8>>>)> = vec![(0, Vec::new()); self.shards];
        while let Some((cmd, n)) = parse(&input[used..]) {
            used += n;
            let slot = c.base + c.pending.len() as u64;
            let home = if cmd.len() >= 2 && !self.own_only {
                owner(&cmd[1], self.shards)
            } else {
                self.shard
            };
            if home == self.shard {
                c.pending.push_back(Some(run(&mut self.own, &cmd)));
            } else {
                c.pending.push_back(None);
                let (first, cmds) = &mut away[home];
                if cmds.is_empty() {
                    *first = slot;
                }
                // Slots for one shard are consecutive only if nothing
                // else came between; keep it simple: send singly then.
                if *first + cmds.len() as u64 != slot {
                    let batch = std::mem::take(cmds);
                    let f = *first;
                    *first = slot;
                    let message = Msg::Run {
                        from: self.shard,
                        conn,
                        first: f,
                        cmds: batch,
                    };
                    post(&self.peers, home, message);
                }
                cmds.push(cmd);
            }
        }
        for (home, (first, cmds)) in away.into_iter().enumerate() {
            if !cmds.is_empty() {
                let message = Msg::Run {
                    from: self.shard,
                    conn,
                    first,
                    cmds,
                };
                post(&self.peers, home, message);
            }
        }
        Kvx::flush(cx, conn, c);
        used
    }

    fn on_close(&mut self, _cx: &mut Context<'_>, conn: ConnId, _r: evloop::CloseReason) {
        self.clients.remove(&conn);
    }

    fn on_message(&mut self, cx: &mut Context<'_>, msg: Msg) {
        match msg {
            Msg::Run {
                from,
                conn,
                first,
                cmds,
            } => {
                let replies = cmds.iter().map(|c| run(&mut self.own, c)).collect();
                let done = Msg::Done {
                    conn,
                    first,
                    replies,
                };
                post(&self.peers, from, done);
            }
            Msg::Done {
                conn,
                first,
                replies,
            } => {
                let Some(c) = self.clients.get_mut(&conn) else {
                    return;
                };
                for (i, r) in replies.into_iter().enumerate() {
                    let at = (first + i as u64 - c.base) as usize;
                    c.pending[at] = Some(r);
                }
                Kvx::flush(cx, conn, c);
            }
        }
    }
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let get = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let addr: SocketAddr = get("--addr").unwrap_or("127.0.0.1:6379".into()).parse().unwrap();
    let threads: usize = get("--threads").unwrap_or("1".into()).parse().unwrap();
    let split = matches!(get("--mode").as_deref(), Some("split") | Some("own"));
    let own_only = get("--mode").as_deref() == Some("own");
    let shared = Arc::new(Mutex::new(Map::new()));
    let stats = Server::builder(Config::default())
        .threads(threads)
        .listen(addr)
        .handle_signals()
        .start_with_peers(move |shard, peers| Kvx {
            shard,
            shards: threads,
            split,
            own_only,
            shared: Arc::clone(&shared),
            own: Map::new(),
            peers: Some(peers),
            clients: HashMap::new(),
        })?
        .run()?;
    eprintln!("{}", stats.total);
    Ok(())
}
