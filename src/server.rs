//! One server, N reactors: a shard per core, nothing shared on the hot
//! path.
//!
//! One reactor is one core. A [`Server`] runs `threads` of them, each on
//! its own thread with its own poll, slab, timer wheel and buffers, and
//! its own listening socket bound to the same address with
//! `SO_REUSEPORT`: the kernel hands each new connection to one of the
//! sockets, and from then on the connection lives on that shard alone.
//! nginx's workers, sozu's, glommio's and monoio's executors are built
//! the same way.
//!
//! ```no_run
//! use evloop::{Config, ConnId, Context, Handler, Server};
//!
//! struct Echo;
//! impl Handler for Echo {
//!     type Message = ();
//!     fn on_data(&mut self, cx: &mut Context<'_>, conn: ConnId, input: &[u8]) -> usize {
//!         let _ = cx.write(conn, input);
//!         input.len()
//!     }
//! }
//!
//! // Two shards, each making its own handler, on one address.
//! let server = Server::builder(Config::default())
//!     .threads(2)
//!     .listen("127.0.0.1:7000".parse()?)
//!     .handle_signals()
//!     .start(|_shard| Echo)?;
//! let stats = server.run()?; // until SIGINT/SIGTERM, every shard drained
//! println!("{}", stats.total);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! What is shared, and why it is not the hot path:
//!
//! - **Limits mean what the user set.** `max_conns` counts every shard's
//!   connections in one atomic counter (a shard full at the server's
//!   limit looks again every 20 ms, since the room may come from another
//!   shard's closes), and the per-address cap counts in one map behind a
//!   lock. Both are touched at accept and close only.
//! - **One handle.** [`ServerHandle`] shuts every shard down gracefully,
//!   stops them at once, posts a message to one shard or to all, and
//!   changes admission (`set_max_conns`, `set_max_per_ip`, allow and deny
//!   lists) for all of them. With
//!   [`ServerBuilder::handle_signals`], the first SIGINT/SIGTERM is a
//!   graceful shutdown of every shard and a second stops them all.
//! - **Stats** from every shard, and their sum ([`ServerStats`]). The
//!   shards' `accepted` counts show how the kernel spread connections.
//!
//! **One port, one group.** Every socket of a `SO_REUSEPORT` group must
//! belong to the same user; a second server started by that user on the
//! same fixed port joins the first one's group instead of failing with
//! `EADDRINUSE`, and the kernel splits connections between them. (nginx's
//! `reuseport` has the same property; it is also how a new version takes
//! over from an old one without a gap.)
//!
//! **Balance.** The kernel picks a socket by a hash of the connection's
//! addresses and ports, which can leave one shard busier than the others
//! (Cloudflare's "why does one NGINX worker take all the load?").
//! [`ServerBuilder::steer_by_cpu`] attaches a classic BPF program to the
//! group instead (`SO_ATTACH_REUSEPORT_CBPF`, `ld #cpu; mod #N`): a
//! connection goes to the shard numbered as the CPU that received its
//! first packet, so with shards pinned to their CPUs
//! ([`ServerBuilder::pin_cpus`]) and the NIC's queues spread over the
//! CPUs, a connection is handled where its packets arrive. It needs one
//! shard per CPU the process may use (with more, some shards would never
//! get a connection). Where that does not hold, or the kernel refuses the
//! program, the server logs it and keeps the hash. On
//! loopback a packet arrives on the sender's CPU, so a load generator
//! pinned to one CPU sends every connection to one shard: steering is
//! for real NICs.
//!
//! **A shard that fails** (its handler panics, its loop returns an error)
//! stops the server: the others shut down gracefully (whether or not
//! anyone waits in [`Server::run`]), its connections give back their
//! places in the server's counts, and `run` returns the error, naming the
//! shard. Not restarted,
//! because a panic is a bug and the shard's handler state is gone with
//! it (a restarted kv shard would come back empty, silently); not left
//! running short, because its listener would go on taking its share of
//! new connections. A supervisor (systemd, a container runtime) restarts
//! the process, as it would any server that stopped.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;

use crate::{Config, Handle, Handler, Reactor, Stats};

/// Most shards one server runs: a thread and a listening socket each;
/// far past any machine's cores, so a typo is refused rather than obeyed.
pub const MAX_THREADS: usize = 1024;

/// Every shard's connections, counted together against `max_conns`.
#[derive(Debug, Default)]
pub(crate) struct Census {
    open: AtomicUsize,
}

impl Census {
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    pub(crate) fn opened(&self) {
        self.open.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one place if fewer than `max` are taken, in one atomic step:
    /// shards accepting at the same moment cannot pass the limit.
    pub(crate) fn reserve(&self, max: usize) -> bool {
        self.open
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    pub(crate) fn closed(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    /// A shard that stopped with `n` connections still in its slab (a
    /// panic) gives their places back.
    pub(crate) fn left(&self, n: usize) {
        self.open.fetch_sub(n, Ordering::Relaxed);
    }
}

/// How a [`Server`] is set up; from [`Server::builder`].
pub struct ServerBuilder {
    config: Config,
    threads: usize,
    pin_cpus: bool,
    steer_by_cpu: bool,
    signals: bool,
    addrs: Vec<SocketAddr>,
    /// The TLS configuration of each address's listeners, if any.
    #[cfg(feature = "tls")]
    tls: Vec<Option<Arc<rustls::ServerConfig>>>,
}

impl ServerBuilder {
    /// Shards to run (1 to [`MAX_THREADS`]; 1 by default).
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = n;
        self
    }

    /// Pins shard `i` to the `i`th CPU this process may use (modulo how
    /// many there are: a `taskset` or a cpuset is respected).
    pub fn pin_cpus(mut self, on: bool) -> Self {
        self.pin_cpus = on;
        self
    }

    /// Steers each new connection to the shard numbered as the CPU that
    /// received it (see the module docs), where the kernel allows it and
    /// there is one shard per CPU this process may use.
    pub fn steer_by_cpu(mut self, on: bool) -> Self {
        self.steer_by_cpu = on;
        self
    }

    /// Listens on `addr` in every shard (repeatable). Port 0 picks one
    /// free port, the same for every shard ([`Server::local_addrs`]).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.addrs.push(addr);
        #[cfg(feature = "tls")]
        self.tls.push(None);
        self
    }

    /// Listens on `addr` over TLS in every shard (feature `tls`; see
    /// [`Reactor::listen_tls`]).
    #[cfg(feature = "tls")]
    pub fn listen_tls(mut self, addr: SocketAddr, config: Arc<rustls::ServerConfig>) -> Self {
        self.addrs.push(addr);
        self.tls.push(Some(config));
        self
    }

    /// SIGINT and SIGTERM shut every shard down gracefully; a second
    /// stops them all at once.
    pub fn handle_signals(mut self) -> Self {
        self.signals = true;
        self
    }
}

/// N reactors on N threads, one server (see the module docs).
pub struct Server<M> {
    threads: Vec<thread::JoinHandle<()>>,
    handle: ServerHandle<M>,
    local_addrs: Vec<SocketAddr>,
    steering: bool,
    done: mpsc::Receiver<Finished>,
    signals: Option<SignalThread>,
}

/// The signal thread, and how to end it when the server does.
struct SignalThread {
    thread: thread::JoinHandle<()>,
    waker: mio::Waker,
}

/// What a shard's thread reports when its loop ends.
struct Finished {
    shard: usize,
    result: Result<Stats, String>,
}

/// Every shard's stats at the end, and their sum.
#[derive(Clone, Debug, Default)]
pub struct ServerStats {
    /// Shard `i`'s own stats (its `accepted` shows the kernel's spread).
    pub shards: Vec<Stats>,
    /// Their sum. Levels (`active`, `peak`, the buffers) are summed too:
    /// `peak` is then the most any shard held, added up, an upper bound
    /// of the server's own peak.
    pub total: Stats,
}

impl fmt::Display for ServerStats {
    /// One line per shard, `shard I: ...`, then the sum.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.shards.iter().enumerate() {
            writeln!(f, "shard {i}: {s}")?;
        }
        write!(f, "all shards: {}", self.total)
    }
}

/// The other shards of a server, for a handler that talks to them
/// ([`ServerBuilder::start_with_peers`]): set before any shard's loop
/// runs, so [`get`](Self::get) always answers from a handler.
pub struct Peers<M>(Arc<std::sync::OnceLock<ServerHandle<M>>>);

impl<M> Clone for Peers<M> {
    fn clone(&self) -> Self {
        Peers(Arc::clone(&self.0))
    }
}

impl<M> Peers<M> {
    /// The server's handle (`None` only before the server has started).
    pub fn get(&self) -> Option<&ServerHandle<M>> {
        self.0.get()
    }
}

/// Shuts down, stops or posts to every shard of a [`Server`], from any
/// thread. `Clone` and `Send`.
pub struct ServerHandle<M> {
    shards: Vec<Handle<M>>,
}

impl<M> Clone for ServerHandle<M> {
    fn clone(&self) -> Self {
        ServerHandle {
            shards: self.shards.clone(),
        }
    }
}

impl<M> fmt::Debug for ServerHandle<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerHandle")
            .field("shards", &self.shards.len())
            .finish()
    }
}

impl<M> ServerHandle<M> {
    /// Graceful shutdown of every shard (see [`Handle::shutdown`]).
    /// `false` if every shard had stopped already.
    pub fn shutdown(&self) -> bool {
        self.shards.iter().filter(|h| h.shutdown()).count() > 0
    }

    /// Stops every shard at once: open connections are cut (what a
    /// second signal does).
    pub fn stop(&self) -> bool {
        self.shards.iter().filter(|h| h.stop()).count() > 0
    }

    /// Posts `message` to shard `shard`'s handler; gives it back if that
    /// shard has stopped or does not exist.
    pub fn post(&self, shard: usize, message: M) -> Result<(), M> {
        match self.shards.get(shard) {
            Some(h) => h.post(message),
            None => Err(message),
        }
    }

    /// The shard `i`'s own handle.
    pub fn shard(&self, i: usize) -> Option<&Handle<M>> {
        self.shards.get(i)
    }

    /// How many shards.
    pub fn len(&self) -> usize {
        self.shards.len()
    }

    /// Never: a server has at least one shard.
    pub fn is_empty(&self) -> bool {
        self.shards.is_empty()
    }
}

/// Who may connect, and how many, for the whole server: each shard is
/// told, and they share one count (see the module docs). `false` if every
/// shard has stopped.
impl<M> ServerHandle<M> {
    /// See [`Handle::set_max_conns`]: the limit for all shards together.
    pub fn set_max_conns(&self, n: usize) -> bool {
        self.shards.iter().filter(|h| h.set_max_conns(n)).count() > 0
    }

    /// See [`Handle::set_allow`].
    pub fn set_allow(&self, allow: Vec<crate::Cidr>) -> bool {
        self.shards
            .iter()
            .filter(|h| h.set_allow(allow.clone()))
            .count()
            > 0
    }

    /// See [`Handle::set_deny`].
    pub fn set_deny(&self, deny: Vec<crate::Cidr>) -> bool {
        self.shards
            .iter()
            .filter(|h| h.set_deny(deny.clone()))
            .count()
            > 0
    }

    /// See [`Handle::set_max_per_ip`]: the cap for all shards together.
    pub fn set_max_per_ip(&self, cap: Option<usize>) -> bool {
        self.shards.iter().filter(|h| h.set_max_per_ip(cap)).count() > 0
    }
}

impl<M: Clone> ServerHandle<M> {
    /// Posts a copy of `message` to every shard; how many took it.
    pub fn post_all(&self, message: M) -> usize {
        self.shards
            .iter()
            .filter(|h| h.post(message.clone()).is_ok())
            .count()
    }
}

impl Server<()> {
    /// A server with `config` for every shard (its `max_conns` and
    /// `max_per_ip` hold for the whole server).
    pub fn builder(config: Config) -> ServerBuilder {
        ServerBuilder {
            config,
            threads: 1,
            pin_cpus: false,
            steer_by_cpu: false,
            signals: false,
            addrs: Vec::new(),
            #[cfg(feature = "tls")]
            tls: Vec::new(),
        }
    }
}

impl<M: Send + 'static> Server<M> {
    /// The handle for the whole server.
    pub fn handle(&self) -> ServerHandle<M> {
        self.handle.clone()
    }

    /// Where each `listen` address is bound (port 0 resolved).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Whether connections are steered by receiving CPU: asked for with
    /// [`ServerBuilder::steer_by_cpu`], and taken by the kernel.
    pub fn steering(&self) -> bool {
        self.steering
    }

    /// Waits until every shard has stopped: their stats, or the first
    /// failure (see the module docs: one shard failing stops the others
    /// gracefully).
    pub fn run(mut self) -> io::Result<ServerStats> {
        let n = self.threads.len();
        let mut stats = vec![Stats::default(); n];
        let mut failure: Option<io::Error> = None;
        for _ in 0..n {
            let Ok(finished) = self.done.recv() else {
                break;
            };
            match finished.result {
                Ok(s) => stats[finished.shard] = s,
                Err(why) => {
                    log::error!("shard {}: {why}; stopping the server", finished.shard);
                    if failure.is_none() {
                        failure = Some(io::Error::other(format!(
                            "shard {} failed: {why}",
                            finished.shard
                        )));
                    }
                    self.handle.shutdown();
                }
            }
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        if let Some(signals) = self.signals.take() {
            if signals.waker.wake().is_ok() {
                let _ = signals.thread.join();
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        let mut total = Stats::default();
        for s in &stats {
            total.add(s);
        }
        Ok(ServerStats {
            shards: stats,
            total,
        })
    }
}

impl<M> Drop for Server<M> {
    /// A server dropped without [`run`](Server::run) stops its shards
    /// (cutting their connections) and waits for their threads, rather
    /// than leave them running with nobody to stop them.
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.handle.stop();
            for thread in self.threads.drain(..) {
                let _ = thread.join();
            }
        }
        if let Some(signals) = self.signals.take() {
            if signals.waker.wake().is_ok() {
                let _ = signals.thread.join();
            }
        }
    }
}

/// The panic's message, as far as it has one.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        format!("handler panicked: {s}")
    } else if let Some(s) = payload.downcast_ref::<String>() {
        format!("handler panicked: {s}")
    } else {
        "handler panicked".to_string()
    }
}

/// One listening socket per shard and address, bound with `SO_REUSEPORT`
/// to the same port: `[address][shard]`.
fn bind_all(addrs: &[SocketAddr], n: usize, backlog: i32) -> io::Result<Vec<Vec<TcpListener>>> {
    use socket2::{Domain, Socket, Type};
    let mut all = Vec::with_capacity(addrs.len());
    for &addr in addrs {
        let mut group: Vec<TcpListener> = Vec::with_capacity(n);
        let mut bound = addr;
        for _ in 0..n {
            let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
            socket.set_reuse_address(true)?;
            socket.set_reuse_port(true)?;
            socket.bind(&bound.into())?;
            socket.listen(backlog)?;
            let listener: TcpListener = socket.into();
            // Port 0: the first socket's port is everyone's.
            bound = listener.local_addr()?;
            group.push(listener);
        }
        all.push(group);
    }
    Ok(all)
}

impl ServerBuilder {
    fn validate(&self) -> io::Result<()> {
        if self.threads == 0 || self.threads > MAX_THREADS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("threads must be 1 to {MAX_THREADS}, not {}", self.threads),
            ));
        }
        if self.addrs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a server needs at least one listen address",
            ));
        }
        Ok(())
    }
}

/// The shared parts every shard joins.
#[derive(Clone)]
struct Joint {
    census: Arc<Census>,
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl ServerBuilder {
    /// Binds the listeners, then starts the shards, each making its
    /// handler with `make(shard_index)` on its own thread (so a handler
    /// need not be `Send`). Returns once every shard is listening; a
    /// shard that cannot start stops the ones started before it.
    pub fn start<H, F>(self, make: F) -> io::Result<Server<H::Message>>
    where
        H: Handler + 'static,
        H::Message: Send + 'static,
        F: Fn(usize) -> H + Send + Sync + 'static,
    {
        self.start_with_peers(move |shard, _: Peers<H::Message>| make(shard))
    }

    /// Like [`start`](Self::start), for handlers that talk to the other
    /// shards (a chat room whose members are on every shard): `make` is
    /// given the server's [`Peers`] too. No shard's loop runs before the
    /// peers are known, so a handler always finds them.
    pub fn start_with_peers<H, F>(self, make: F) -> io::Result<Server<H::Message>>
    where
        H: Handler + 'static,
        H::Message: Send + 'static,
        F: Fn(usize, Peers<H::Message>) -> H + Send + Sync + 'static,
    {
        let peers = Peers(Arc::new(std::sync::OnceLock::new()));
        self.validate()?;
        let n = self.threads;
        let mut groups = bind_all(&self.addrs, n, self.config.backlog)?;
        let local_addrs = groups
            .iter()
            .map(|g| g[0].local_addr())
            .collect::<io::Result<Vec<_>>>()?;
        // The CPUs this process may use (a taskset, a cpuset), not every
        // CPU of the machine.
        let cpus = crate::sys::allowed_cpus()
            .ok()
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| {
                (0..thread::available_parallelism().map_or(1, |c| c.get())).collect()
            });
        let mut steering = self.steer_by_cpu;
        if self.steer_by_cpu && n != cpus.len() {
            // CPU k goes to shard k mod n: with more shards than CPUs
            // some would never get a connection, with fewer a connection
            // would not be served where it arrives.
            log::warn!(
                "steering by CPU needs one shard per CPU ({} allowed, {n} shards): the kernel's hash spreads connections",
                cpus.len()
            );
            steering = false;
        }
        if steering {
            for group in &groups {
                use std::os::fd::AsFd;
                match crate::sys::steer_by_cpu(group[0].as_fd(), n as u32) {
                    Ok(()) => log::info!("steering connections by receiving CPU over {n} shards"),
                    Err(e) => {
                        steering = false;
                        log::warn!(
                            "steering by CPU refused ({e}): the kernel's hash spreads connections"
                        );
                    }
                }
            }
        }
        let joint = Joint {
            census: Arc::new(Census::default()),
            per_ip: Arc::new(Mutex::new(HashMap::new())),
        };
        let make = Arc::new(make);
        let (done_tx, done) = mpsc::channel::<Finished>();
        let mut threads = Vec::with_capacity(n);
        let mut handles = Vec::with_capacity(n);
        let mut gos = Vec::with_capacity(n);
        for shard in 0..n {
            let listeners: Vec<TcpListener> = groups.iter_mut().map(|g| g.remove(0)).collect();
            let (ready_tx, ready) = mpsc::channel::<io::Result<Handle<H::Message>>>();
            let (go_tx, go) = mpsc::channel::<()>();
            let peers = peers.clone();
            let (make, config, joint, done_tx) = (
                Arc::clone(&make),
                self.config.clone(),
                joint.clone(),
                done_tx.clone(),
            );
            let pin = self.pin_cpus.then(|| cpus[shard % cpus.len()]);
            #[cfg(feature = "tls")]
            let tls = self.tls.clone();
            let thread = thread::Builder::new()
                .name(format!("evloop-shard-{shard}"))
                .spawn(move || {
                    if let Some(cpu) = pin {
                        if let Err(e) = crate::sys::pin_to_cpu(cpu) {
                            log::warn!("shard {shard}: pinning to CPU {cpu}: {e}");
                        }
                    }
                    let others = peers.clone();
                    let built = panic::catch_unwind(AssertUnwindSafe(|| make(shard, peers)));
                    let handler = match built {
                        Ok(h) => h,
                        Err(p) => {
                            let _ = ready_tx.send(Err(io::Error::other(panic_message(&*p))));
                            return;
                        }
                    };
                    let mut reactor = match Reactor::new(handler, config) {
                        Ok(r) => r,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    reactor.join_server(Arc::clone(&joint.census), Arc::clone(&joint.per_ip));
                    #[cfg(feature = "tls")]
                    let adopted = adopt_all(&mut reactor, listeners, &tls);
                    #[cfg(not(feature = "tls"))]
                    let adopted = adopt_all(&mut reactor, listeners);
                    if let Err(e) = adopted {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                    let _ = ready_tx.send(Ok(reactor.handle()));
                    if go.recv().is_err() {
                        return; // another shard failed to start
                    }
                    let ran = panic::catch_unwind(AssertUnwindSafe(|| reactor.run()));
                    let result = match ran {
                        Ok(Ok(())) => Ok(reactor.stats()),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(p) => Err(panic_message(&*p)),
                    };
                    // Its connections (none, after a clean run) no longer
                    // count against the server's limits.
                    reactor.leave_server();
                    if result.is_err() {
                        // The others stop too, whether or not anyone
                        // waits in `run` (see the module docs).
                        if let Some(server) = others.get() {
                            server.shutdown();
                        }
                    }
                    let _ = done_tx.send(Finished { shard, result });
                })?;
            threads.push(thread);
            let handle = match ready.recv() {
                Ok(Ok(h)) => h,
                Ok(Err(e)) => {
                    abandon(threads, gos);
                    return Err(io::Error::new(e.kind(), format!("shard {shard}: {e}")));
                }
                Err(_) => {
                    abandon(threads, gos);
                    return Err(io::Error::other(format!("shard {shard} did not start")));
                }
            };
            handles.push(handle);
            gos.push(go_tx);
        }
        let handle = ServerHandle { shards: handles };
        // The signal thread before any loop runs: if it cannot start,
        // nothing has served yet.
        let signals = if self.signals {
            match spawn_signal_thread(handle.clone()) {
                Ok(t) => Some(t),
                Err(e) => {
                    abandon(threads, gos);
                    return Err(e);
                }
            }
        } else {
            None
        };
        let _ = peers.0.set(handle.clone());
        for go in gos {
            let _ = go.send(());
        }
        Ok(Server {
            threads,
            handle,
            local_addrs,
            steering,
            done,
            signals,
        })
    }
}

/// Ends shards that were started but never told to run: without their
/// `go` they return, dropping their listeners, and are waited for.
fn abandon(threads: Vec<thread::JoinHandle<()>>, gos: Vec<mpsc::Sender<()>>) {
    drop(gos);
    for thread in threads {
        let _ = thread.join();
    }
}

/// A shard's reactor takes its listening sockets, one per address.
#[cfg(not(feature = "tls"))]
fn adopt_all<H: Handler>(reactor: &mut Reactor<H>, listeners: Vec<TcpListener>) -> io::Result<()> {
    for l in listeners {
        reactor.adopt_listener(l)?;
    }
    Ok(())
}

/// The same, each over TLS where its address is.
#[cfg(feature = "tls")]
fn adopt_all<H: Handler>(
    reactor: &mut Reactor<H>,
    listeners: Vec<TcpListener>,
    tls: &[Option<Arc<rustls::ServerConfig>>],
) -> io::Result<()> {
    for (l, tls) in listeners.into_iter().zip(tls) {
        let id = reactor.adopt_listener(l)?;
        if let Some(config) = tls {
            reactor.serve_tls(id, Arc::clone(config))?;
        }
    }
    Ok(())
}

/// SIGINT/SIGTERM for the whole server, on a thread of its own (the
/// shards do not take signals themselves): the first shuts every shard
/// down gracefully, a second stops them all.
fn spawn_signal_thread<M: Send + 'static>(handle: ServerHandle<M>) -> io::Result<SignalThread> {
    use crate::sys::{SIGINT, SIGTERM};
    use mio::{Events, Interest, Poll, Token};
    use signal_hook_mio::v1_0::Signals;
    const SIGNALS: Token = Token(0);
    const END: Token = Token(1);
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut signals, SIGNALS, Interest::READABLE)?;
    let waker = mio::Waker::new(poll.registry(), END)?;
    let thread = thread::Builder::new()
        .name("evloop-signals".into())
        .spawn(move || {
            let mut events = Events::with_capacity(4);
            let mut seen = 0;
            loop {
                if poll.poll(&mut events, None).is_err() {
                    continue; // EINTR
                }
                if events.iter().any(|e| e.token() == END) {
                    return; // the server has ended
                }
                for signal in signals.pending() {
                    let name = if signal == SIGINT {
                        "SIGINT"
                    } else {
                        "SIGTERM"
                    };
                    seen += 1;
                    if seen == 1 {
                        log::info!(
                            "{name}: shutting every shard down gracefully (again to stop at once)"
                        );
                        if !handle.shutdown() {
                            return;
                        }
                    } else {
                        log::warn!("{name} again: stopping every shard now");
                        handle.stop();
                        return;
                    }
                }
            }
        })?;
    Ok(SignalThread { thread, waker })
}
