//! Test harness: a reactor on its own thread, with a probe handler that
//! echoes (or not), records what happened, and runs closures the test
//! posts through the reactor's `Handle`, so a test acts on the reactor
//! thread through a real `Context`.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use evloop::{CloseReason, Config, ConnId, Context, Handle, Handler, ManualClock, Reactor, Stats};

/// How long a test waits for anything before failing.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Work for the reactor thread.
pub type Job = Box<dyn FnOnce(&mut Context<'_>, &mut Record) + Send>;

/// What the probe saw.
#[derive(Default)]
pub struct Record {
    pub opened: Vec<ConnId>,
    pub closed: Vec<(ConnId, CloseReason)>,
    pub read_closed: Vec<ConnId>,
    pub drains: usize,
    pub max_output: usize,
    pub received: HashMap<ConnId, Vec<u8>>,
    /// Connections the probe must not echo on (outbound ones).
    pub quiet: HashSet<ConnId>,
    pub timers: Vec<u64>,
    pub shutdown_seen: bool,
}

impl Record {
    pub fn reason_of(&self, conn: ConnId) -> Option<CloseReason> {
        self.closed
            .iter()
            .find(|(c, _)| *c == conn)
            .map(|&(_, r)| r)
    }
}

/// Echo (or only record) and report.
pub struct Probe {
    pub echo: bool,
    /// Consume only whole lines (up to the last `\n`), like a line
    /// protocol: the rest is a partial frame the reactor must keep.
    pub lines: bool,
    pub record: Arc<Mutex<Record>>,
}

impl Default for Probe {
    /// A probe that records and does not echo, for a test's own reactor.
    fn default() -> Self {
        Probe {
            echo: false,
            lines: false,
            record: Arc::default(),
        }
    }
}

impl Probe {
    /// A probe that echoes, for a test's own reactor.
    pub fn echoing() -> Self {
        Probe {
            echo: true,
            ..Probe::default()
        }
    }

    fn rec(&self) -> MutexGuard<'_, Record> {
        self.record.lock().unwrap()
    }
}

impl Handler for Probe {
    type Message = Job;

    fn on_open(&mut self, _cx: &mut Context<'_>, conn: ConnId) {
        self.rec().opened.push(conn);
    }

    fn on_data(&mut self, cx: &mut Context<'_>, conn: ConnId, input: &[u8]) -> usize {
        let input = if self.lines {
            let end = input.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            &input[..end]
        } else {
            input
        };
        let mut rec = self.record.lock().unwrap();
        rec.received
            .entry(conn)
            .or_default()
            .extend_from_slice(input);
        if self.echo && !rec.quiet.contains(&conn) {
            let _ = cx.write(conn, input);
            let out = cx.output_len(conn).unwrap_or(0);
            rec.max_output = rec.max_output.max(out);
        }
        input.len()
    }

    fn on_drain(&mut self, _cx: &mut Context<'_>, _conn: ConnId) {
        self.rec().drains += 1;
    }

    fn on_read_closed(&mut self, cx: &mut Context<'_>, conn: ConnId, _input: &[u8]) {
        self.rec().read_closed.push(conn);
        cx.close(conn);
    }

    fn on_timer(&mut self, _cx: &mut Context<'_>, token: u64) {
        self.rec().timers.push(token);
    }

    fn on_message(&mut self, cx: &mut Context<'_>, job: Job) {
        let mut rec = self.record.lock().unwrap();
        job(cx, &mut rec);
    }

    fn on_shutdown(&mut self, _cx: &mut Context<'_>) {
        self.rec().shutdown_seen = true;
    }

    fn on_close(&mut self, _cx: &mut Context<'_>, conn: ConnId, reason: CloseReason) {
        self.rec().closed.push((conn, reason));
    }
}

/// A reactor running a probe on its own thread.
pub struct Server {
    pub addr: SocketAddr,
    pub handle: Handle<Job>,
    pub record: Arc<Mutex<Record>>,
    thread: Option<JoinHandle<Reactor<Probe>>>,
    /// The reactor's clock, when the test moves time itself.
    clock: Option<ManualClock>,
    /// A Unix domain listener's path, beside the TCP one
    /// ([`Server::start_unix`]); removed when the server is dropped.
    pub unix: Option<PathBuf>,
}

impl Server {
    /// An echoing server with `config`.
    pub fn start(config: Config) -> Server {
        Self::start_with(config, true)
    }

    pub fn start_with(config: Config, echo: bool) -> Server {
        Self::spawn(config, echo, false)
    }

    /// A server that consumes whole lines only, and echoes nothing.
    pub fn start_lines(config: Config) -> Server {
        Self::spawn(config, false, true)
    }

    /// An echoing server whose clock moves only by [`Server::advance`]:
    /// timeouts are tested without sleeping them out.
    pub fn start_clocked(config: Config) -> Server {
        Self::spawn_with_clock(config, true, false, Some(ManualClock::new()))
    }

    /// Listens on a Unix domain socket too, at a fresh path in the temp
    /// directory ([`Server::unix`]).
    pub fn start_unix(config: Config, echo: bool) -> Server {
        Self::spawn_full(config, echo, false, None, true)
    }

    fn spawn(config: Config, echo: bool, lines: bool) -> Server {
        Self::spawn_with_clock(config, echo, lines, None)
    }

    /// An echoing server whose listener is TLS, served with `tls`; with a
    /// manual clock if `clocked`.
    #[cfg(feature = "tls")]
    pub fn start_tls(config: Config, tls: Arc<rustls::ServerConfig>, clocked: bool) -> Server {
        Self::start_tls_lines(config, tls, clocked, false)
    }

    /// The same, echoing whole lines only if `lines` (see
    /// [`Server::start_lines`]).
    #[cfg(feature = "tls")]
    pub fn start_tls_lines(
        config: Config,
        tls: Arc<rustls::ServerConfig>,
        clocked: bool,
        lines: bool,
    ) -> Server {
        let clock = clocked.then(ManualClock::new);
        Self::spawn_listening(config, true, lines, clock, false, move |reactor| {
            let id = reactor
                .listen_tls("127.0.0.1:0".parse().unwrap(), tls)
                .expect("listen_tls");
            reactor.listener_addr(id).expect("bound")
        })
    }

    fn spawn_with_clock(
        config: Config,
        echo: bool,
        lines: bool,
        clock: Option<ManualClock>,
    ) -> Server {
        Self::spawn_full(config, echo, lines, clock, false)
    }

    fn spawn_full(
        config: Config,
        echo: bool,
        lines: bool,
        clock: Option<ManualClock>,
        unix: bool,
    ) -> Server {
        Self::spawn_listening(config, echo, lines, clock, unix, |reactor| {
            let listener = reactor
                .listen("127.0.0.1:0".parse().unwrap())
                .expect("listen");
            reactor.listener_addr(listener).expect("bound")
        })
    }

    fn spawn_listening(
        config: Config,
        echo: bool,
        lines: bool,
        clock: Option<ManualClock>,
        unix: bool,
        listen: impl FnOnce(&mut Reactor<Probe>) -> SocketAddr,
    ) -> Server {
        let _ = env_logger::builder().is_test(true).try_init();
        let record = Arc::new(Mutex::new(Record::default()));
        let probe = Probe {
            echo,
            lines,
            record: Arc::clone(&record),
        };
        let mut reactor = match &clock {
            Some(clock) => Reactor::with_clock(probe, config, clock.clone()),
            None => Reactor::new(probe, config),
        }
        .expect("reactor");
        let addr = listen(&mut reactor);
        let unix = unix.then(|| {
            let path = unix_path("server");
            reactor.listen_unix(&path).expect("listen_unix");
            path
        });
        let handle = reactor.handle();
        let thread = thread::spawn(move || {
            reactor.run().expect("reactor run");
            reactor
        });
        Server {
            addr,
            handle,
            record,
            thread: Some(thread),
            clock,
            unix,
        }
    }

    /// Moves the reactor's manual clock by `by`, and returns once a whole
    /// turn has read it: a posted job wakes the loop (step 4 of a turn
    /// that read the new time; its step 7 fires what is due), and a
    /// second one runs only after that turn ended.
    pub fn advance(&self, by: Duration) {
        self.clock
            .as_ref()
            .expect("a server started with start_clocked")
            .advance(by);
        self.exec(|_, _| ());
        self.exec(|_, _| ());
    }

    /// Runs `f` on the reactor thread and returns its result.
    pub fn exec<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Context<'_>, &mut Record) -> R + Send + 'static,
    ) -> R {
        let (tx, rx) = mpsc::channel();
        let job: Job = Box::new(move |cx, rec| {
            let _ = tx.send(f(cx, rec));
        });
        assert!(self.handle.post(job).is_ok(), "reactor is gone");
        rx.recv_timeout(PATIENCE)
            .expect("reactor did not run the job")
    }

    pub fn stats(&self) -> Stats {
        self.exec(|cx, _| cx.stats())
    }

    pub fn record(&self) -> MutexGuard<'_, Record> {
        self.record.lock().unwrap()
    }

    /// Waits until `cond` holds of the record.
    pub fn wait_for(&self, what: &str, cond: impl Fn(&Record) -> bool) {
        let end = Instant::now() + PATIENCE;
        while Instant::now() < end {
            if cond(&self.record()) {
                return;
            }
            thread::sleep(Duration::from_millis(5));
        }
        panic!("timed out waiting for {what}");
    }

    /// Graceful shutdown; returns the reactor once `run` has returned.
    pub fn stop(mut self) -> Reactor<Probe> {
        self.handle.shutdown();
        self.join()
    }

    pub fn join(&mut self) -> Reactor<Probe> {
        join_within(self.thread.take().expect("joined twice"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.handle.shutdown();
        }
        if let Some(path) = &self.unix {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A path for a Unix domain socket no other test uses (this process's
/// id, a counter, and `what`).
pub fn unix_path(what: &str) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("evloop-{}-{n}-{what}.sock", std::process::id()))
}

/// Waits for a reactor's thread to end (someone asked for shutdown), at
/// most `PATIENCE`, and returns what it returned.
pub fn join_within<T>(thread: JoinHandle<T>) -> T {
    let end = Instant::now() + PATIENCE;
    while !thread.is_finished() {
        assert!(Instant::now() < end, "reactor did not stop");
        thread::sleep(Duration::from_millis(2));
    }
    thread.join().expect("reactor thread panicked")
}

/// A blocking client with timeouts, so a broken server fails the test
/// instead of hanging it.
pub fn client(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.set_write_timeout(Some(PATIENCE)).unwrap();
    s
}

/// Reads exactly `n` bytes.
pub fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    s.read_exact(&mut buf).expect("read_exact");
    buf
}

/// Sends `msg` and expects it back.
pub fn round_trip(s: &mut TcpStream, msg: &[u8]) {
    s.write_all(msg).expect("write");
    assert_eq!(read_n(s, msg.len()), msg);
}

/// Deterministic bytes that differ per connection and position, so a
/// byte delivered to the wrong connection or out of place is caught.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| (seed.wrapping_mul(131) ^ i.wrapping_mul(7) ^ (i >> 8)) as u8)
        .collect()
}

/// The process's soft open-file limit, after raising it to the hard one.
pub fn fd_limit() -> u64 {
    evloop::sys::raise_fd_limit().expect("raise fd limit")
}

/// Open descriptors of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// An address whose connects hang: a listener that never accepts, with
/// its accept queue filled, so Linux drops further SYNs and a connect
/// waits in SYN retries. Keep the value alive while it is used.
pub struct Unanswered {
    pub addr: SocketAddr,
    _listener: socket2::Socket,
    _fillers: Vec<TcpStream>,
}

pub fn unanswered() -> Unanswered {
    let listener =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    listener
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    listener.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    // Until a connect is not answered: the queue is full.
    while let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
        fillers.push(s);
        assert!(fillers.len() < 64, "the accept queue never filled");
    }
    Unanswered {
        addr,
        _listener: listener,
        _fillers: fillers,
    }
}
