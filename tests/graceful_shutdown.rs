//! Graceful shutdown loses nothing: a request that came before or during
//! shutdown gets its whole answer, even one written later by a timer or a
//! posted message; idle connections close at once with FIN; connections
//! waiting in the listen queue are served, not reset; output cut at the
//! deadline ends with RST; asking again while shutting down does not spin.

mod common;

use std::collections::HashSet;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::{client, PATIENCE};
use evloop::{Config, ConnId, Context, Handle, Handler, ManualClock, Reactor, Stats, Status};

/// What the test sees of the handler.
#[derive(Default)]
struct Seen {
    /// Connections that asked for a slow answer.
    slow: Vec<ConnId>,
    shutdown: bool,
}

enum Msg {
    /// Write the answer owed to this connection.
    Answer(ConnId),
    /// Say so once handled (the test knows a turn has run).
    Sync(std::sync::mpsc::Sender<()>),
}

/// A line protocol: `slow\n` is answered later (by a timer after `delay`,
/// or by a posted `Msg::Answer` when `delay` is `None`), with `answer\n`
/// preceded by `big` bytes when set; any other line is echoed at once.
struct Owed {
    delay: Option<Duration>,
    big: usize,
    busy: HashSet<ConnId>,
    seen: Arc<Mutex<Seen>>,
}

impl Owed {
    fn answer(&mut self, cx: &mut Context<'_>, conn: ConnId) {
        if self.busy.remove(&conn) {
            if self.big > 0 {
                let _ = cx.write(conn, &vec![b'x'; self.big]);
            }
            let _ = cx.write(conn, b"answer\n");
        }
    }
}

impl Handler for Owed {
    type Message = Msg;

    fn on_data(&mut self, cx: &mut Context<'_>, conn: ConnId, input: &[u8]) -> usize {
        let Some(end) = input.iter().rposition(|&b| b == b'\n') else {
            return 0;
        };
        for line in input[..end].split(|&b| b == b'\n') {
            if line == b"slow" {
                self.busy.insert(conn);
                self.seen.lock().unwrap().slow.push(conn);
                if let Some(delay) = self.delay {
                    cx.set_timer(delay, conn.as_u64());
                }
            } else {
                let _ = cx.write(conn, line);
                let _ = cx.write(conn, b"\n");
            }
        }
        end + 1
    }

    fn on_timer(&mut self, cx: &mut Context<'_>, token: u64) {
        self.answer(cx, ConnId::from_u64(token));
    }

    fn on_message(&mut self, cx: &mut Context<'_>, msg: Msg) {
        match msg {
            Msg::Answer(conn) => self.answer(cx, conn),
            Msg::Sync(done) => {
                let _ = done.send(());
            }
        }
    }

    fn is_busy(&self, conn: ConnId) -> bool {
        self.busy.contains(&conn)
    }

    fn on_shutdown(&mut self, cx: &mut Context<'_>) {
        self.seen.lock().unwrap().shutdown = true;
        cx.shutdown(); // asking again from inside changes nothing
    }
}

struct Running {
    addr: SocketAddr,
    handle: Handle<Msg>,
    seen: Arc<Mutex<Seen>>,
    thread: JoinHandle<Stats>,
}

fn start(config: Config, delay: Option<Duration>, big: usize) -> Running {
    start_with(config, delay, big, None)
}

/// As `start`, with a clock the test moves itself.
fn start_clocked(config: Config, delay: Option<Duration>, big: usize) -> (Running, ManualClock) {
    let clock = ManualClock::new();
    (start_with(config, delay, big, Some(clock.clone())), clock)
}

fn start_with(
    config: Config,
    delay: Option<Duration>,
    big: usize,
    clock: Option<ManualClock>,
) -> Running {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let owed = Owed {
        delay,
        big,
        busy: HashSet::new(),
        seen: Arc::clone(&seen),
    };
    let mut reactor = match clock {
        Some(clock) => Reactor::with_clock(owed, config, clock),
        None => Reactor::new(owed, config),
    }
    .expect("reactor");
    let listener = reactor.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = reactor.listener_addr(listener).unwrap();
    let handle = reactor.handle();
    let thread = thread::spawn(move || {
        reactor.run().expect("run");
        reactor.stats()
    });
    Running {
        addr,
        handle,
        seen,
        thread,
    }
}

impl Running {
    fn wait_slow(&self, n: usize) -> Vec<ConnId> {
        let end = Instant::now() + PATIENCE;
        loop {
            let slow = self.seen.lock().unwrap().slow.clone();
            if slow.len() >= n {
                return slow;
            }
            assert!(
                Instant::now() < end,
                "the server never saw {n} slow requests"
            );
            thread::sleep(Duration::from_millis(2));
        }
    }

    fn join(self) -> Stats {
        common::join_within(self.thread)
    }

    /// Shutdown, then the deadline passes on the manual clock: a
    /// millisecond early the reactor still runs; at the deadline it cuts
    /// what is left and stops.
    fn shut_down_past_the_deadline(self, clock: &ManualClock, timeout: Duration) -> Stats {
        assert!(self.handle.shutdown());
        let end = Instant::now() + PATIENCE;
        while !self.seen.lock().unwrap().shutdown {
            assert!(Instant::now() < end, "shutdown never began");
            thread::sleep(Duration::from_millis(2));
        }
        clock.advance(timeout - Duration::from_millis(1));
        // A posted message wakes the loop, which reads the clock; the
        // second runs only after the turn that read it ended.
        for _ in 0..2 {
            let (done, turned) = std::sync::mpsc::channel();
            assert!(self.handle.post(Msg::Sync(done)).is_ok());
            turned
                .recv_timeout(PATIENCE)
                .expect("the reactor did not turn");
        }
        assert!(!self.thread.is_finished(), "cut before the deadline");
        clock.advance(Duration::from_millis(1));
        assert!(self.handle.shutdown());
        self.join()
    }
}

/// Reads to the end; `Ok(bytes)` on FIN (and then sends ours, as a polite
/// client does, so the server's lingering close ends at once), `Err(kind)`
/// on an error.
fn read_to_end(s: &mut TcpStream) -> Result<Vec<u8>, ErrorKind> {
    let mut got = Vec::new();
    let mut buf = [0; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => {
                let _ = s.shutdown(Shutdown::Write);
                return Ok(got);
            }
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => return Err(e.kind()),
        }
    }
}

#[test]
fn an_answer_written_by_a_timer_during_shutdown_is_delivered() {
    let server = start(Config::default(), Some(Duration::from_millis(150)), 0);
    let mut c = client(server.addr);
    c.write_all(b"slow\n").unwrap();
    server.wait_slow(1);
    assert!(server.handle.shutdown());
    assert_eq!(read_to_end(&mut c), Ok(b"answer\n".to_vec()));
    let stats = server.join();
    assert_eq!(stats.shutdown_cut, 0, "{stats}");
    assert_eq!(stats.shutdown_closed, 1, "{stats}");
}

#[test]
fn an_answer_from_a_posted_message_during_shutdown_is_delivered() {
    let server = start(Config::default(), None, 0);
    let mut c = client(server.addr);
    c.write_all(b"slow\n").unwrap();
    let conn = server.wait_slow(1)[0];
    assert!(server.handle.shutdown());
    // Shutdown has begun (or is about to); the answer comes after.
    thread::sleep(Duration::from_millis(50));
    assert!(server.handle.post(Msg::Answer(conn)).is_ok());
    assert_eq!(read_to_end(&mut c), Ok(b"answer\n".to_vec()));
    let stats = server.join();
    assert_eq!(stats.shutdown_cut, 0, "{stats}");
}

#[test]
fn a_request_completed_during_shutdown_is_answered() {
    let server = start(Config::default(), None, 0);
    // A slow request keeps shutdown going; the other connection holds a
    // partial line when shutdown begins, and finishes it during shutdown.
    let mut slow = client(server.addr);
    slow.write_all(b"slow\n").unwrap();
    let owed = server.wait_slow(1)[0];
    let mut partial = client(server.addr);
    partial.write_all(b"hel").unwrap();
    thread::sleep(Duration::from_millis(50)); // the reactor reads "hel"
    assert!(server.handle.shutdown());
    thread::sleep(Duration::from_millis(50));
    partial.write_all(b"lo\n").unwrap();
    assert_eq!(read_to_end(&mut partial), Ok(b"hello\n".to_vec()));
    assert!(server.handle.post(Msg::Answer(owed)).is_ok());
    assert_eq!(read_to_end(&mut slow), Ok(b"answer\n".to_vec()));
    let stats = server.join();
    assert_eq!(stats.shutdown_cut, 0, "{stats}");
}

#[test]
fn idle_connections_close_at_once_with_fin_while_a_busy_one_waits() {
    let server = start(Config::default(), None, 0);
    let mut idle: Vec<TcpStream> = (0..10).map(|_| client(server.addr)).collect();
    for s in &mut idle {
        s.write_all(b"hi\n").unwrap();
        let mut buf = [0; 3];
        s.read_exact(&mut buf).unwrap();
    }
    let mut busy = client(server.addr);
    busy.write_all(b"slow\n").unwrap();
    let owed = server.wait_slow(1)[0];
    assert!(server.handle.shutdown());
    // Every idle connection ends with a clean FIN while the busy one is
    // still owed its answer (nothing has been posted yet).
    for s in &mut idle {
        assert_eq!(read_to_end(s), Ok(Vec::new()));
    }
    busy.set_nonblocking(true).unwrap();
    let mut buf = [0; 16];
    let still_open = matches!(busy.read(&mut buf), Err(e) if e.kind() == ErrorKind::WouldBlock);
    assert!(
        still_open,
        "the busy connection was closed with the idle ones"
    );
    busy.set_nonblocking(false).unwrap();
    assert!(server.handle.post(Msg::Answer(owed)).is_ok());
    assert_eq!(read_to_end(&mut busy), Ok(b"answer\n".to_vec()));
    let stats = server.join();
    assert_eq!(stats.shutdown_closed, 11, "{stats}");
}

#[test]
fn connections_waiting_in_the_listen_queue_are_served_not_reset() {
    // Driven on this thread, so the connections are made while no turn
    // runs: they wait in the kernel's queue. One accept per turn, so the
    // shutdown's turn finds all but one still queued.
    let config = Config {
        accept_batch: 1,
        ..Config::default()
    };
    let seen = Arc::new(Mutex::new(Seen::default()));
    let owed = Owed {
        delay: None,
        big: 0,
        busy: HashSet::new(),
        seen,
    };
    let mut reactor = Reactor::new(owed, config).unwrap();
    let listener = reactor.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = reactor.listener_addr(listener).unwrap();
    let mut clients: Vec<TcpStream> = (0..20)
        .map(|i| {
            let mut c = client(addr);
            c.write_all(format!("ping {i}\n").as_bytes()).unwrap();
            c
        })
        .collect();
    thread::sleep(Duration::from_millis(50)); // the requests are in
    let readers: Vec<_> = clients
        .drain(..)
        .map(|mut c| thread::spawn(move || read_to_end(&mut c)))
        .collect();
    reactor.shutdown();
    let end = Instant::now() + PATIENCE;
    while reactor.run_once(Some(Duration::from_millis(10))).unwrap() == Status::Running {
        assert!(Instant::now() < end, "shutdown did not finish");
    }
    for (i, reader) in readers.into_iter().enumerate() {
        assert_eq!(
            reader.join().unwrap(),
            Ok(format!("ping {i}\n").into_bytes()),
            "client {i}"
        );
    }
    let stats = reactor.stats();
    assert_eq!(stats.accepted, 20, "{stats}");
    assert_eq!(stats.shutdown_cut, 0, "{stats}");
}

#[test]
fn output_cut_at_the_deadline_ends_with_rst_not_fin() {
    let timeout = Duration::from_secs(5);
    let config = Config {
        shutdown_timeout: timeout,
        ..Config::default()
    };
    // 4 MiB of answer to a client that reads none of it: most of it is
    // still in the server's buffer at the deadline.
    let (server, clock) = start_clocked(config, Some(Duration::ZERO), 4 << 20);
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    socket.connect(&server.addr.into()).unwrap();
    let mut stalled: TcpStream = socket.into();
    stalled.set_read_timeout(Some(PATIENCE)).unwrap();
    stalled.write_all(b"slow\n").unwrap();
    server.wait_slow(1);
    let stats = server.shut_down_past_the_deadline(&clock, timeout);
    assert_eq!(stats.shutdown_cut, 1, "{stats}");
    match read_to_end(&mut stalled) {
        Err(kind) => assert_eq!(kind, ErrorKind::ConnectionReset),
        Ok(got) => panic!(
            "a cut answer ended with FIN after {} of {} bytes: it looks complete",
            got.len(),
            (4 << 20) + 7
        ),
    }
}

#[test]
fn a_connection_owed_an_answer_at_the_deadline_is_reset() {
    let timeout = Duration::from_secs(5);
    let config = Config {
        shutdown_timeout: timeout,
        ..Config::default()
    };
    let (server, clock) = start_clocked(config, None, 0);
    let mut c = client(server.addr);
    c.write_all(b"slow\n").unwrap();
    server.wait_slow(1);
    let stats = server.shut_down_past_the_deadline(&clock, timeout);
    assert_eq!(stats.shutdown_cut, 1, "{stats}");
    assert_eq!(read_to_end(&mut c), Err(ErrorKind::ConnectionReset));
}

#[test]
fn asking_again_while_shutting_down_changes_nothing_and_does_not_spin() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let owed = Owed {
        delay: Some(Duration::from_millis(300)),
        big: 0,
        busy: HashSet::new(),
        seen: Arc::clone(&seen),
    };
    let mut reactor = Reactor::new(owed, Config::default()).unwrap();
    let listener = reactor.listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = reactor.listener_addr(listener).unwrap();
    let handle = reactor.handle();
    let mut c = client(addr);
    c.write_all(b"slow\n").unwrap();
    let end = Instant::now() + PATIENCE;
    while seen.lock().unwrap().slow.is_empty() {
        assert!(Instant::now() < end);
        reactor.run_once(Some(Duration::from_millis(10))).unwrap();
    }
    reactor.shutdown();
    reactor.run_once(Some(Duration::ZERO)).unwrap();
    assert!(seen.lock().unwrap().shutdown, "shutdown did not begin");
    let turns_at_start = reactor.stats().turns;
    let reader = thread::spawn(move || read_to_end(&mut c));
    // Ask again every way there is, while the 300 ms answer is pending.
    assert!(handle.shutdown());
    assert!(handle.shutdown());
    reactor.shutdown();
    let mut status = Status::Running;
    while status == Status::Running {
        assert!(Instant::now() < end, "shutdown did not finish");
        status = reactor.run_once(None).unwrap();
    }
    let turns = reactor.stats().turns - turns_at_start;
    // A spinning loop makes tens of thousands of turns in 300 ms; a
    // sleeping one a handful (the waker, the timer, the flush, the reap).
    assert!(
        turns < 50,
        "{turns} turns while shutting down: the loop spun"
    );
    assert_eq!(reader.join().unwrap(), Ok(b"answer\n".to_vec()));
    assert!(!handle.shutdown(), "a stopped reactor still takes commands");
}
