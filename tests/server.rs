//! A server of N shards (`src/server.rs`) over real loopback sockets: how
//! the kernel spreads connections, one shutdown for all, limits that hold
//! for the whole server, posting to one shard or to all, a shard that
//! fails, and steering by CPU.

mod process;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use evloop::{Config, ConnId, Context, Handler, Server};

/// Echoes; counts connections open across shards (and the most at once);
/// records messages as (shard, message); answers "later" a second late.
struct Shard {
    index: usize,
    open: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    messages: Arc<Mutex<Vec<(usize, u32)>>>,
    later: Vec<ConnId>,
}

impl Handler for Shard {
    type Message = u32;
    fn on_open(&mut self, _: &mut Context<'_>, _: ConnId) {
        let now = self.open.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
    }
    fn on_data(&mut self, cx: &mut Context<'_>, conn: ConnId, input: &[u8]) -> usize {
        if input == b"later" {
            // Answered from a timer: the connection is busy until then.
            self.later.push(conn);
            cx.set_timer(Duration::from_millis(300), 0);
        } else {
            let _ = cx.write(conn, input);
        }
        input.len()
    }
    fn on_timer(&mut self, cx: &mut Context<'_>, _: u64) {
        for conn in self.later.drain(..) {
            let _ = cx.write(conn, b"done");
        }
    }
    fn is_busy(&self, conn: ConnId) -> bool {
        self.later.contains(&conn)
    }
    fn on_message(&mut self, _: &mut Context<'_>, message: u32) {
        assert_ne!(message, 666, "shard {} told to fail", self.index);
        self.messages.lock().unwrap().push((self.index, message));
    }
    fn on_close(&mut self, _: &mut Context<'_>, _: ConnId, _: evloop::CloseReason) {
        self.open.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Counters {
    open: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    messages: Arc<Mutex<Vec<(usize, u32)>>>,
}

fn start(threads: usize, config: Config, addr: &str) -> (Server<u32>, Counters) {
    let counters = Counters {
        open: Arc::new(AtomicUsize::new(0)),
        most: Arc::new(AtomicUsize::new(0)),
        messages: Arc::new(Mutex::new(Vec::new())),
    };
    let (open, most, messages) = (
        Arc::clone(&counters.open),
        Arc::clone(&counters.most),
        Arc::clone(&counters.messages),
    );
    let server = Server::builder(config)
        .threads(threads)
        .listen(addr.parse().unwrap())
        .start(move |index| Shard {
            index,
            open: Arc::clone(&open),
            most: Arc::clone(&most),
            messages: Arc::clone(&messages),
            later: Vec::new(),
        })
        .unwrap();
    (server, counters)
}

fn echo(addr: SocketAddr) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"x").unwrap();
    let mut b = [0];
    s.read_exact(&mut b).unwrap();
}

/// `total` connect-echo-close rounds, spread over 127.0.0.1 to 127.0.0.4
/// (each closed connection holds a client port in TIME_WAIT for 60 s).
fn churn(port: u16, total: usize) {
    let workers: Vec<_> = (0..4u8)
        .map(|w| {
            thread::spawn(move || {
                let addr = SocketAddr::from((Ipv4Addr::new(127, 0, 0, 1 + w), port));
                for _ in 0..total / 4 {
                    echo(addr);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
}

#[test]
fn ten_thousand_connects_spread_over_two_and_four_shards() {
    for (threads, low, high) in [(2, 0.40, 0.60), (4, 0.15, 0.35)] {
        let (server, _) = start(threads, Config::default(), "0.0.0.0:0");
        let port = server.local_addrs()[0].port();
        let handle = server.handle();
        churn(port, 10_000);
        handle.shutdown();
        let stats = server.run().unwrap();
        assert_eq!(stats.total.accepted, 10_000, "{stats}");
        for (i, s) in stats.shards.iter().enumerate() {
            let share = s.accepted as f64 / 10_000.0;
            assert!(
                (low..=high).contains(&share),
                "{threads} shards: shard {i} took {:.1}%\n{stats}",
                share * 100.0
            );
        }
        eprintln!(
            "{threads} shards: {:?}",
            stats.shards.iter().map(|s| s.accepted).collect::<Vec<_>>()
        );
    }
}

#[test]
fn one_shutdown_drains_every_shard_with_every_answer_delivered() {
    let (server, counters) = start(4, Config::default(), "127.0.0.1:0");
    let addr = server.local_addrs()[0];
    let clients: Vec<TcpStream> = (0..40)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(b"later").unwrap();
            s
        })
        .collect();
    let until = Instant::now() + Duration::from_secs(10);
    while counters.open.load(Ordering::SeqCst) < 40 {
        assert!(Instant::now() < until, "not all connected");
        thread::sleep(Duration::from_millis(5));
    }
    thread::sleep(Duration::from_millis(50)); // the requests are read
    assert!(server.handle().shutdown());
    let stats = server.run().unwrap();
    for mut c in clients {
        let mut answer = Vec::new();
        c.read_to_end(&mut answer).unwrap();
        assert_eq!(answer, b"done", "an answer was cut by the shutdown");
    }
    assert_eq!(stats.total.shutdown_cut, 0, "{stats}");
    assert_eq!(stats.total.accepted, 40);
    let shards_used = stats.shards.iter().filter(|s| s.accepted > 0).count();
    assert!(shards_used >= 2, "one shard took all 40: {stats}");
}

#[test]
fn max_conns_holds_for_the_whole_server_not_each_shard() {
    let config = Config {
        max_conns: 10,
        reject_line: Some(b"full\r\n".to_vec()),
        ..Config::default()
    };
    let (server, counters) = start(4, config, "127.0.0.1:0");
    let addr = server.local_addrs()[0];
    let held: Vec<TcpStream> = (0..40)
        .map(|_| {
            let s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s
        })
        .collect();
    // Each is echoed (let in) or told "full" and closed.
    let mut let_in = 0;
    for mut s in held.iter() {
        s.write_all(b"x").unwrap();
        let mut got = [0; 6];
        let n = s.read(&mut got).unwrap();
        if &got[..n] == b"x" {
            let_in += 1;
        } else {
            assert!(got[..n].starts_with(b"f") || n == 0, "{:?}", &got[..n]);
        }
    }
    assert_eq!(
        let_in, 10,
        "the server let in {let_in}, its max_conns is 10"
    );
    assert!(counters.most.load(Ordering::SeqCst) <= 10);
    // Room made on any shard is room for all.
    drop(held);
    let until = Instant::now() + Duration::from_secs(10);
    while counters.open.load(Ordering::SeqCst) > 0 {
        assert!(Instant::now() < until, "the closes were not seen");
        thread::sleep(Duration::from_millis(5));
    }
    for _ in 0..10 {
        echo(addr);
    }
    server.handle().shutdown();
    let stats = server.run().unwrap();
    assert_eq!(
        stats.total.rejected_for(evloop::RejectReason::MaxConns),
        30,
        "{stats}"
    );
}

#[test]
fn the_per_address_cap_holds_for_the_whole_server() {
    let config = Config {
        max_per_ip: Some(5),
        ..Config::default()
    };
    let (server, counters) = start(4, config, "127.0.0.1:0");
    let addr = server.local_addrs()[0];
    let held: Vec<TcpStream> = (0..20).map(|_| TcpStream::connect(addr).unwrap()).collect();
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        counters.open.load(Ordering::SeqCst),
        5,
        "the cap is per server"
    );
    drop(held);
    server.handle().shutdown();
    let stats = server.run().unwrap();
    assert_eq!(
        stats.total.rejected_for(evloop::RejectReason::PerIpLimit),
        15,
        "{stats}"
    );
}

#[test]
fn posting_reaches_one_shard_or_all() {
    let (server, counters) = start(3, Config::default(), "127.0.0.1:0");
    let handle = server.handle();
    assert_eq!(handle.len(), 3);
    handle.post(1, 7).unwrap();
    assert_eq!(handle.post(3, 8), Err(8), "there is no shard 3");
    assert_eq!(handle.post_all(9), 3);
    let until = Instant::now() + Duration::from_secs(10);
    while counters.messages.lock().unwrap().len() < 4 {
        assert!(Instant::now() < until, "messages lost");
        thread::sleep(Duration::from_millis(5));
    }
    handle.shutdown();
    server.run().unwrap();
    let mut got = counters.messages.lock().unwrap().clone();
    got.sort();
    assert_eq!(got, vec![(0, 9), (1, 7), (1, 9), (2, 9)]);
}

#[test]
fn a_shard_that_fails_stops_the_server_and_run_says_which() {
    let (server, _) = start(3, Config::default(), "127.0.0.1:0");
    let addr = server.local_addrs()[0];
    echo(addr);
    server.handle().post(2, 666).unwrap();
    let err = server.run().expect_err("a shard panicked");
    assert!(err.to_string().contains("shard 2"), "{err}");
    assert!(err.to_string().contains("told to fail"), "{err}");
    // Every shard is gone: nothing listens any more.
    thread::sleep(Duration::from_millis(100));
    assert!(TcpStream::connect(addr).is_err(), "a shard still listens");
}

#[test]
fn threads_out_of_range_and_no_address_are_refused() {
    let make = |_| Shard {
        index: 0,
        open: Arc::default(),
        most: Arc::default(),
        messages: Arc::default(),
        later: Vec::new(),
    };
    let zero = Server::builder(Config::default())
        .threads(0)
        .listen("127.0.0.1:0".parse().unwrap())
        .start(make);
    assert!(zero.is_err());
    let nowhere = Server::builder(Config::default()).threads(2).start(make);
    assert!(nowhere.is_err());
}

#[test]
fn steering_sends_a_connection_to_the_shard_of_the_cpu_it_arrived_on() {
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        eprintln!("skipped: one CPU, nothing to steer between");
        return;
    }
    let counters = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&counters);
    let server = Server::builder(Config::default())
        .threads(2)
        .pin_cpus(true)
        .steer_by_cpu(true)
        .listen("127.0.0.1:0".parse().unwrap())
        .start(move |index| Shard {
            index,
            open: Arc::clone(&c),
            most: Arc::default(),
            messages: Arc::default(),
            later: Vec::new(),
        })
        .unwrap();
    if !server.steering() {
        eprintln!("skipped: this kernel refused SO_ATTACH_REUSEPORT_CBPF");
        server.handle().shutdown();
        server.run().unwrap();
        return;
    }
    let addr = server.local_addrs()[0];
    // On loopback a packet arrives on the sender's CPU: a client pinned
    // to CPU 1 is steered to shard 1, every time.
    thread::spawn(move || {
        evloop::sys::pin_to_cpu(1).unwrap();
        for _ in 0..200 {
            echo(addr);
        }
    })
    .join()
    .unwrap();
    server.handle().shutdown();
    let stats = server.run().unwrap();
    assert_eq!(
        (stats.shards[0].accepted, stats.shards[1].accepted),
        (0, 200),
        "{stats}"
    );
}

#[test]
fn echo_runs_shards_with_threads_and_logs_each_shards_stats() {
    let mut server = process::Proc::start(&[], "echo", &["--threads", "2"]);
    let addr = SocketAddr::from(([127, 0, 0, 1], server.port));
    for _ in 0..50 {
        echo(addr);
    }
    server.signal("TERM");
    let status = server.wait(Duration::from_secs(10));
    let log = server.log();
    assert!(status.success(), "exit {status}: {log}");
    assert!(
        log.contains("shard 0: accepted=") && log.contains("shard 1: accepted="),
        "{log}"
    );
    assert!(log.contains("accepted=50 "), "the sum: {log}");
}

/// Reads lines from a chat member until one contains `what`.
fn until_line(reader: &mut std::io::BufReader<TcpStream>, what: &str) -> String {
    use std::io::BufRead;
    loop {
        let mut line = String::new();
        let n = reader
            .read_line(&mut line)
            .expect("a line before the timeout");
        assert!(n > 0, "closed before {what:?}");
        if line.contains(what) {
            return line;
        }
    }
}

#[test]
fn chat_members_on_different_shards_are_one_room() {
    let mut server = process::Proc::start(&[], "chat", &["--threads", "2"]);
    let addr = SocketAddr::from(([127, 0, 0, 1], server.port));
    // Twelve members: with two shards, both hold some (the kernel's hash).
    let mut members: Vec<(TcpStream, std::io::BufReader<TcpStream>)> = (0..12)
        .map(|_| {
            let s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut r = std::io::BufReader::new(s.try_clone().unwrap());
            until_line(&mut r, "welcome");
            (s, r)
        })
        .collect();
    // Names are the room's: unique across shards.
    for (i, (s, r)) in members.iter_mut().enumerate() {
        s.write_all(format!("/nick m{i}\n").as_bytes()).unwrap();
        until_line(r, &format!("is now m{i}"));
    }
    let (s, r) = &mut members[0];
    s.write_all(b"/nick m5\n").unwrap();
    until_line(r, "m5 is taken");
    s.write_all(b"/who\n").unwrap();
    let who = until_line(r, "online");
    assert!(who.contains("online (12)"), "{who}");
    // A line reaches every other member, whichever shard holds them.
    members[3].0.write_all(b"hello room\n").unwrap();
    for (i, (_, r)) in members.iter_mut().enumerate() {
        if i != 3 {
            assert_eq!(until_line(r, "hello room"), "m3: hello room\n");
        }
    }
    drop(members);
    server.signal("TERM");
    assert!(server.wait(Duration::from_secs(10)).success());
    // Both shards held members (all twelve on one: 1 run in 2,000).
    let log = server.log();
    for shard in ["shard 0: accepted=", "shard 1: accepted="] {
        let n: u64 = log
            .split(shard)
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(n > 0, "{shard}0: the room was not split\n{log}");
    }
}

#[test]
fn a_server_dropped_without_run_stops_its_shards() {
    let (server, counters) = start(2, Config::default(), "127.0.0.1:0");
    let addr = server.local_addrs()[0];
    let mut client = TcpStream::connect(addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    while counters.open.load(Ordering::SeqCst) < 1 {
        assert!(Instant::now() < until, "never accepted");
        thread::sleep(Duration::from_millis(5));
    }
    drop(server); // stops every shard and waits for them
    let mut rest = Vec::new();
    let _ = client.read_to_end(&mut rest); // EOF or reset: closed either way
    assert!(TcpStream::connect(addr).is_err(), "a shard still listens");
}

/// One echo of `x` on `s`, or `None` if nothing came within `wait`.
fn echoed(s: &mut TcpStream, wait: Duration) -> Option<bool> {
    s.set_read_timeout(Some(wait)).unwrap();
    let _ = s.write_all(b"x");
    let mut b = [0];
    match s.read(&mut b) {
        Ok(1) => Some(b[0] == b'x'),
        _ => None,
    }
}

#[test]
fn at_the_servers_limit_clients_wait_and_are_let_in_as_any_shard_frees_room() {
    let config = Config {
        max_conns: 10,
        ..Config::default()
    };
    let (server, counters) = start(4, config, "127.0.0.1:0");
    let addr = server.local_addrs()[0];
    let mut conns: Vec<TcpStream> = (0..16).map(|_| TcpStream::connect(addr).unwrap()).collect();
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        counters.open.load(Ordering::SeqCst),
        10,
        "past the server's max_conns"
    );
    // The ten let in echo; the six others wait in the listen queues.
    let (served, waiting): (Vec<usize>, Vec<usize>) =
        (0..16).partition(|&i| echoed(&mut conns[i], Duration::from_millis(200)) == Some(true));
    assert_eq!((served.len(), waiting.len()), (10, 6));
    // Five leave, from whichever shards held them: five who waited are
    // let in, by the shards' look again at the shared count.
    for &i in &served[..5] {
        conns[i].shutdown(std::net::Shutdown::Both).unwrap();
    }
    let until = Instant::now() + Duration::from_secs(10);
    let mut let_in = 0;
    while let_in < 5 {
        assert!(
            Instant::now() < until,
            "only {let_in} of the waiting were let in"
        );
        let_in = waiting
            .iter()
            .filter(|&&i| echoed(&mut conns[i], Duration::from_millis(50)) == Some(true))
            .count();
    }
    assert!(counters.most.load(Ordering::SeqCst) <= 10);
    server.handle().shutdown();
    server.run().unwrap();
}

#[test]
fn per_address_counts_are_given_back_when_connections_close() {
    let config = Config {
        max_per_ip: Some(3),
        ..Config::default()
    };
    let (server, counters) = start(2, config, "127.0.0.1:0");
    let addr = server.local_addrs()[0];
    for round in 0..5 {
        let held: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
        let until = Instant::now() + Duration::from_secs(10);
        while counters.open.load(Ordering::SeqCst) < 3 {
            assert!(
                Instant::now() < until,
                "round {round}: the cap kept a count it gave back"
            );
            thread::sleep(Duration::from_millis(5));
        }
        drop(held);
        while counters.open.load(Ordering::SeqCst) > 0 {
            assert!(Instant::now() < until, "round {round}: closes not seen");
            thread::sleep(Duration::from_millis(5));
        }
    }
    server.handle().shutdown();
    let stats = server.run().unwrap();
    assert_eq!(
        stats.total.rejected_for(evloop::RejectReason::PerIpLimit),
        0,
        "{stats}"
    );
}

#[test]
fn a_shard_whose_handler_cannot_be_made_fails_the_start_naming_it() {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let started = Server::builder(Config::default())
        .threads(3)
        .listen(addr)
        .start(|shard| {
            assert_ne!(shard, 1, "shard 1 cannot be made");
            Shard {
                index: shard,
                open: Arc::default(),
                most: Arc::default(),
                messages: Arc::default(),
                later: Vec::new(),
            }
        });
    let err = started.err().expect("start failed");
    assert!(err.to_string().contains("shard 1"), "{err}");
}

#[test]
fn chat_joins_on_one_shard_are_announced_on_the_others() {
    let server = process::Proc::start(&[], "chat", &["--threads", "2"]);
    let addr = SocketAddr::from(([127, 0, 0, 1], server.port));
    let first = TcpStream::connect(addr).unwrap();
    first
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut watcher = std::io::BufReader::new(first.try_clone().unwrap());
    until_line(&mut watcher, "welcome");
    // Each newcomer, one at a time: the first member hears of every one,
    // whichever shard took them.
    let mut others = Vec::new();
    for _ in 0..8 {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut r = std::io::BufReader::new(s.try_clone().unwrap());
        let welcome = until_line(&mut r, "welcome");
        let name = welcome
            .split_whitespace()
            .nth(2)
            .unwrap()
            .trim_end_matches('.')
            .to_string();
        until_line(&mut watcher, &format!("{name} joined"));
        others.push(s);
    }
}
