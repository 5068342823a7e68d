//! Every limit the reactor enforces, each a named default with the reason
//! for its value. [`Config::default`] is what a server gets unless it says
//! otherwise; every field is public so an embedder sets exactly what it
//! needs.

use std::fmt;
use std::time::Duration;

use crate::admission::Cidr;

/// Idle timeout: nginx's `keepalive_timeout` is 75 s, Go's `IdleTimeout`
/// defaults to its read timeout; a minute frees a forgotten connection's
/// descriptor without bothering a human at a prompt.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Output waiting this long with no byte accepted by the peer is given up
/// (nginx's `send_timeout` is 60 s; a peer that reads nothing for 30 s is
/// gone or hostile).
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// An outbound connect on loopback or a LAN completes in well under a
/// millisecond; 10 s covers a slow WAN and SYN retries (1 s, 3 s).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A TLS handshake takes two round trips and a few milliseconds of CPU;
/// 10 s covers a slow WAN and a busy server, and frees the descriptor of a
/// client that connects and says nothing (nginx gives 60 s, its
/// `client_header_timeout`; Go's `tls.Conn` has no default at all).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle pooled connections kept per upstream address: enough for the
/// concurrency one backend usually sees from one core; nginx leaves its
/// `keepalive` count to the operator, and 32 is a common setting.
pub const DEFAULT_POOL_IDLE_PER_ADDR: usize = 32;
/// Idle pooled connections kept in all, across addresses: a bound on the
/// descriptors and records a pool holds for no request.
pub const DEFAULT_POOL_IDLE_MAX: usize = 1024;
/// How long a connection may sit idle in the pool: nginx's upstream
/// `keepalive_timeout` is 60 s, and backends commonly close idle
/// connections after about as long; a shorter wait finds fewer of them
/// dead.
pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Checkouts one pooled connection serves before it is closed at checkin:
/// nginx's `keepalive_requests` default, which lets a backend's per-
/// connection memory be freed now and then.
pub const DEFAULT_POOL_MAX_USES: u32 = 1000;
/// Graceful shutdown's deadline before remaining connections are cut
/// (Kubernetes gives 30 s in all; 5 s leaves room for the rest).
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// Above this much waiting output the reactor stops reading the
/// connection: a peer that sends requests but does not read answers cannot
/// make us buffer without bound. 64 KiB is a few socket buffers' worth.
pub const DEFAULT_HIGH_WATER: usize = 64 * 1024;
/// Reading resumes (and `on_drain` fires) below this: a gap to the high
/// mark so a connection at the edge does not flap every write.
pub const DEFAULT_LOW_WATER: usize = 16 * 1024;
/// Output above this for longer than the grace period closes the
/// connection as a slow consumer (Redis's client-output-buffer-limit soft
/// limit). Output can pass the high-water mark when the handler writes
/// without reading, e.g. a chat broadcast.
pub const DEFAULT_SOFT_LIMIT: usize = 1024 * 1024;
/// How long output may stay above the soft limit.
pub const DEFAULT_SOFT_GRACE: Duration = Duration::from_secs(10);
/// Output above this closes the connection at once: 16 MiB per connection
/// bounds the worst case at 10,000 connections to what this machine has.
pub const DEFAULT_HARD_LIMIT: usize = 16 * 1024 * 1024;
/// The largest partial frame kept for a connection; a handler that needs
/// more has a framing bug or a hostile peer. Protocols set their own,
/// smaller frame limits and answer with a protocol error first.
pub const DEFAULT_MAX_INPUT: usize = 1024 * 1024;
/// Bytes read from one connection per event before the others get a turn:
/// 4 full scratch reads. A fast sender cannot starve the rest; the
/// connection goes on the ready list and continues next turn.
pub const DEFAULT_READ_BUDGET: usize = 256 * 1024;
/// Connections accepted per listener event before the loop serves the
/// others; the listener is revisited next turn.
pub const DEFAULT_ACCEPT_BATCH: usize = 256;
/// Listen backlog: Linux caps it at `net.core.somaxconn` (4096 since
/// 5.4). A C10K ramp connects thousands per second; with 1,024 the queue
/// overflowed, SYNs were dropped and clients waited a 1 s retransmit
/// (measured: echo_load's connect_ms went from 1,017 to a few).
pub const DEFAULT_BACKLOG: i32 = 4096;
/// Connection limit: past it the reactor stops accepting.
pub const DEFAULT_MAX_CONNS: usize = 100_000;
/// Empty buffers kept for reuse: enough for every busy connection of a
/// typical turn, without keeping a burst's worth forever.
pub const DEFAULT_POOL_BUFFERS: usize = 1024;
/// Buffers larger than this are freed, not pooled (see `BufferPool`).
pub const DEFAULT_POOL_MAX_CAPACITY: usize = 256 * 1024;
/// Capacity the pool may keep in all: a busy turn's worth of 64 KiB
/// buffers (256 of them), so a burst of large messages does not leave
/// hundreds of megabytes parked in the pool for good.
pub const DEFAULT_POOL_BYTES: usize = 16 * 1024 * 1024;
/// Bytes all connections together may hold in their buffers (input left
/// by the handler, output not yet taken by the socket; counted as the
/// buffers' capacity, the memory they really take) before the reactor
/// closes the largest holders. Per-connection limits do not bound a
/// server: 10,000 connections each just under `max_input` would hold
/// 10 GiB. 1 GiB fits a machine with a few GiB to spare and is still
/// 16,384 connections each at the output high-water mark, or 64 at the
/// hard limit: well-behaved load never comes near it.
pub const DEFAULT_MAX_BUFFERED: usize = 1024 * 1024 * 1024;
/// Messages that may wait in a [`Handle`](crate::Handle)'s queue before
/// [`Handle::try_post`](crate::Handle::try_post) refuses more: a
/// producer thread faster than the reactor must not grow the queue
/// without end. 65,536 is a second of posts at a busy reactor's rate.
pub const DEFAULT_POST_QUEUE: usize = 65_536;
/// The per-reactor read buffer: every read lands here first. 64 KiB is
/// the largest a loopback read returns in one go at default socket sizes.
pub const SCRATCH_SIZE: usize = 64 * 1024;
/// Events taken from one `poll`: past this, the rest wait a turn.
pub const EVENTS_CAPACITY: usize = 1024;
/// The longest [`Config::coalesce`] accepted. A nap is latency every
/// request that arrives during it pays. Measured here, naps of tens of
/// microseconds already gather what there is to gather (50 clients:
/// about 4 requests a backend write); a millisecond is a generous ceiling, and a
/// value of seconds would stall the loop.
pub const MAX_COALESCE: Duration = Duration::from_millis(1);
/// A turn that handled at least this many events allows naps, and a nap
/// that gathered fewer stops them (see [`Config::coalesce`]). Two means
/// more than one peer is active at once: a lone client in request and
/// reply, one event a turn, waits for a nap at most once after a turn
/// that happened to bring two.
pub const COALESCE_MIN_EVENTS: usize = 2;
/// Wake-up coalescing runs this long in one mode (napping or not) before
/// it probes the other: long enough that the probe's cost (a worse mode,
/// a tenth of the time) stays small, short enough to follow a load that
/// changes within a second.
pub const COALESCE_STRETCH: Duration = Duration::from_millis(200);
/// The probe of the other mode: 20 ms is a thousand requests at 50,000 a
/// second, enough to see a difference the size of
/// [`COALESCE_MARGIN_DIVISOR`]'s margin. A gap this long between turns
/// is a quiet spell, after which measuring starts again.
pub const COALESCE_PROBE: Duration = Duration::from_millis(20);
/// Napping must move 1/16 (about 6%) more bytes per second than not to
/// be kept: a nap adds latency that a byte count does not show, and a
/// probe's measure is a few percent noisy.
pub const COALESCE_MARGIN_DIVISOR: u64 = 16;
/// After our FIN on a graceful close, how long to read and discard input
/// while waiting for the peer's FIN. Closing a socket with unread input
/// makes the kernel send RST, which destroys output not yet delivered;
/// nginx calls this `lingering_timeout` (5 s). 2 s covers a peer that is
/// still sending when we close, without holding descriptors long.
pub const LINGER_TIMEOUT: Duration = Duration::from_secs(2);

/// TCP keepalive probes (`SO_KEEPALIVE`, `TCP_KEEPIDLE`, `TCP_KEEPINTVL`,
/// `TCP_KEEPCNT`): the kernel notices a peer that vanished without a FIN
/// (a crashed host, a cut cable) after `idle + interval × count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    /// Quiet time before the first probe.
    pub idle: Duration,
    /// Time between probes.
    pub interval: Duration,
    /// Unanswered probes before the connection is reset.
    pub count: u32,
}

/// The reactor's limits and socket options.
#[derive(Clone, Debug)]
pub struct Config {
    /// Close connections with no input or output progress for this long;
    /// `None` keeps them forever.
    pub idle_timeout: Option<Duration>,
    /// Close connections whose output makes no progress for this long.
    pub write_timeout: Duration,
    /// Fail outbound connects that take longer.
    pub connect_timeout: Duration,
    /// Idle connections the upstream pool keeps per address
    /// ([`Context::checkin`](crate::Context::checkin)).
    pub pool_idle_per_addr: usize,
    /// Idle connections the upstream pool keeps in all.
    pub pool_idle_max: usize,
    /// How long a connection may stay idle in the upstream pool.
    pub pool_idle_timeout: Duration,
    /// Checkouts a pooled connection serves before it is closed.
    pub pool_max_uses: u32,
    /// Close TLS connections whose handshake takes longer (feature
    /// `tls`), counted from accept, or for an outbound connection from
    /// the moment it connected.
    pub handshake_timeout: Duration,
    /// Graceful shutdown cuts what has not closed after this long.
    pub shutdown_timeout: Duration,
    /// Stop reading a connection above this much waiting output.
    pub high_water: usize,
    /// Resume reading (and call `on_drain`) below this.
    pub low_water: usize,
    /// Output above this for longer than `soft_grace` is a slow consumer.
    pub soft_limit: usize,
    /// See `soft_limit`.
    pub soft_grace: Duration,
    /// Output above this is a slow consumer at once.
    pub hard_limit: usize,
    /// The largest partial frame kept per connection.
    pub max_input: usize,
    /// Bytes read from one connection per event.
    pub read_budget: usize,
    /// Connections accepted per listener event.
    pub accept_batch: usize,
    /// Listen backlog.
    pub backlog: i32,
    /// Stop accepting at this many connections.
    pub max_conns: usize,
    /// Set `TCP_NODELAY` on every connection (request/response protocols
    /// want it: Nagle's delay would hold small answers back).
    pub nodelay: bool,
    /// Set `SO_REUSEPORT` on listeners (one reactor per core, each with
    /// its own listener on the same port).
    pub reuse_port: bool,
    /// Empty buffers kept for reuse.
    pub pool_buffers: usize,
    /// Capacity the pool of empty buffers may keep, in bytes.
    pub pool_bytes: usize,
    /// Bytes all connections' buffers may hold together (their capacity);
    /// past it the largest holders are closed
    /// ([`CloseReason::OverBudget`]).
    ///
    /// [`CloseReason::OverBudget`]: crate::CloseReason::OverBudget
    pub max_buffered: usize,
    /// Messages [`Handle::try_post`](crate::Handle::try_post) lets wait.
    pub post_queue: usize,
    /// At `max_conns`, accept anyway, write this and close (Redis's
    /// "-ERR max number of clients reached"); `None` stops accepting
    /// instead, leaving new connections in the listen queue.
    pub reject_line: Option<Vec<u8>>,
    /// If not empty, only these networks may connect.
    pub allow: Vec<Cidr>,
    /// These networks may not connect (checked before `allow`).
    pub deny: Vec<Cidr>,
    /// At most this many connections from one address.
    pub max_per_ip: Option<usize>,
    /// TCP keepalive on every connection; `None` leaves the system default
    /// (off).
    pub keepalive: Option<Keepalive>,
    /// Wake-up coalescing (zero, the default: off). When a busy turn is
    /// over and no event is waiting, the reactor naps this long before it
    /// polls again, instead of sleeping until the first event: what
    /// arrives meanwhile is handled in one turn, with one wake-up instead
    /// of one each, and output to a backend leaves in larger writes. A
    /// NIC's interrupt moderation (`ethtool -C rx-usecs`) trades the same
    /// way: up to this much latency, plus the thread's timer slack (50 us
    /// unless changed with `PR_SET_TIMERSLACK`), for fewer wake-ups under
    /// load.
    ///
    /// Whether it pays depends on the peers, so the reactor measures: it
    /// naps only after turns with [`COALESCE_MIN_EVENTS`] or more events
    /// (a quiet server never naps, a lone client hardly ever), and only
    /// while a probe shows that napping moves more bytes per second than
    /// not, by [`COALESCE_MARGIN_DIVISOR`]'s margin ([`COALESCE_STRETCH`],
    /// [`COALESCE_PROBE`]): a few clients in lockstep with the reactor
    /// lose from a nap, a crowd whose other work fills the CPU gains.
    /// At most [`MAX_COALESCE`].
    ///
    /// A nap never makes the loop spin (the poll after it blocks as
    /// usual) and is cut to the time left before the next timer; a
    /// message posted from another thread, or a signal, waits for its
    /// end. A host loop that calls
    /// [`run_once`](crate::Reactor::run_once) with a zero wait never
    /// naps; with a longer one, a turn may nap within it, and may
    /// overrun it by the timer slack (on top of mio's rounding of the
    /// wait up to whole milliseconds, as without naps).
    pub coalesce: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            pool_idle_per_addr: DEFAULT_POOL_IDLE_PER_ADDR,
            pool_idle_max: DEFAULT_POOL_IDLE_MAX,
            pool_idle_timeout: DEFAULT_POOL_IDLE_TIMEOUT,
            pool_max_uses: DEFAULT_POOL_MAX_USES,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            high_water: DEFAULT_HIGH_WATER,
            low_water: DEFAULT_LOW_WATER,
            soft_limit: DEFAULT_SOFT_LIMIT,
            soft_grace: DEFAULT_SOFT_GRACE,
            hard_limit: DEFAULT_HARD_LIMIT,
            max_input: DEFAULT_MAX_INPUT,
            read_budget: DEFAULT_READ_BUDGET,
            accept_batch: DEFAULT_ACCEPT_BATCH,
            backlog: DEFAULT_BACKLOG,
            max_conns: DEFAULT_MAX_CONNS,
            nodelay: true,
            reuse_port: false,
            pool_buffers: DEFAULT_POOL_BUFFERS,
            pool_bytes: DEFAULT_POOL_BYTES,
            max_buffered: DEFAULT_MAX_BUFFERED,
            post_queue: DEFAULT_POST_QUEUE,
            reject_line: None,
            allow: Vec::new(),
            deny: Vec::new(),
            max_per_ip: None,
            keepalive: None,
            coalesce: Duration::ZERO,
        }
    }
}

impl Config {
    /// Checks that these values can work together. [`Reactor::new`]
    /// calls it, so a reactor never runs with a value that would make it
    /// spin (a read budget of 0), stall (an accept batch of 0), flap
    /// (a low-water mark above the high one) or close every connection at
    /// its first byte.
    ///
    /// [`Reactor::new`]: crate::Reactor::new
    pub fn validate(&self) -> Result<(), ConfigError> {
        let checks: [(bool, &str); 12] = [
            (self.read_budget == 0, "read_budget is 0: no connection could ever be read"),
            (self.accept_batch == 0, "accept_batch is 0: no connection could ever be accepted"),
            (self.max_conns == 0, "max_conns is 0: no connection could ever be accepted"),
            (self.max_input == 0, "max_input is 0: every byte of input would be too large"),
            (self.high_water == 0, "high_water is 0: reading would stop at the first byte of output"),
            (self.low_water > self.high_water, "low_water is above high_water: reading would never resume"),
            (self.high_water > self.hard_limit, "high_water is above hard_limit: reading would never stop before the connection is closed"),
            (self.soft_limit > self.hard_limit, "soft_limit is above hard_limit"),
            (self.max_buffered == 0, "max_buffered is 0: every buffered byte would close its connection"),
            (self.backlog <= 0, "backlog must be positive"),
            (self.post_queue == 0, "post_queue is 0: Handle::try_post could never succeed"),
            (self.coalesce > MAX_COALESCE, "coalesce is above MAX_COALESCE (1 ms): every request could wait that long"),
        ];
        match checks.iter().find(|(bad, _)| *bad) {
            Some((_, why)) => Err(ConfigError(why)),
            None => Ok(()),
        }
    }
}

/// Why a [`Config`] cannot work: which values, and what they would do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigError(&'static str);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid Config: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}
