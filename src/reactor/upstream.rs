//! The upstream pool: idle outbound connections kept for the next request
//! to the same address, as nginx's `upstream keepalive` and HAProxy's
//! connection reuse keep them.
//!
//! A handler **checks out** a connection to an address
//! ([`Context::checkout`](crate::Context::checkout)): an idle one from the
//! pool if a live one is there (a *hit*), else a new connect (a *miss*).
//! When its protocol has left the connection clean (a whole answer read,
//! nothing queued), it **checks it back in**
//! ([`Context::checkin`](crate::Context::checkin)), and from then on the
//! pool owns it: the handler hears nothing more of it until it is checked
//! out again, not even its close. The id it checked in names a connection
//! that is gone from then on, and a checkout hands the connection out
//! under a new one (`Core::renew`): an id kept by mistake can never write
//! into the next user's exchange, the mix-up generational ids exist to
//! prevent.
//!
//! While a connection sits in the pool nobody reads it, so the pool
//! watches it: its events are not the handler's. Any readable event on an
//! idle connection means it is no longer fit: the peer's FIN (the backend
//! closed it, as backends do after their own keepalive timeout), a RST, or
//! bytes nobody asked for (a late answer, a protocol error). Each closes
//! it and takes it out (*found dead*). A checkout also peeks before it
//! hands a connection out, since an event may be on its way in this very
//! turn: a stale connection handed to a request is the bug sozu fixed in
//! its issue 1442, and the reason pingora and nginx watch theirs.
//!
//! Bounded, every way a pool can grow:
//! - at most [`Config::pool_idle_per_addr`] idle connections per address
//!   and [`Config::pool_idle_max`] in all; past either, the one idle the
//!   longest goes (*evicted*);
//! - [`Config::pool_idle_timeout`] in the pool, then closed (*evicted*);
//! - [`Config::pool_max_uses`] checkouts per connection, then it is closed
//!   at checkin instead (*evicted*), as nginx's `keepalive_requests`.
//!
//! Checkouts hand out the connection checked in last (LIFO): the
//! connections used least are the ones left to time out, so a pool
//! shrinks to what the load needs.
//!
//! **Warm-up** ([`Context::warm`](crate::Context::warm)) keeps N idle
//! connections to an address open ahead of demand: a checkout then finds
//! one ready instead of paying a connect, and the pool connects another
//! behind it. Warm connections are the pool's from the start (the handler
//! hears no `on_open`). A warm connect that fails waits before the next
//! (0.5 s, doubling to 30 s), and the pool tops up only when it is asked
//! (a checkout) or loses one, so a backend that is down costs one connect
//! per wait, never a loop of them.
//!
//! [`Config::pool_idle_per_addr`]: crate::Config::pool_idle_per_addr
//! [`Config::pool_idle_max`]: crate::Config::pool_idle_max
//! [`Config::pool_idle_timeout`]: crate::Config::pool_idle_timeout
//! [`Config::pool_max_uses`]: crate::Config::pool_max_uses

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use super::core::{Core, Lifecycle};
use super::side_table::SideTable;
use super::Connect;
use crate::conn::{CloseReason, ConnId, NO_LISTENER};
use crate::state::State;
use crate::timer::Tick;

/// What [`Context::checkout`](crate::Context::checkout) gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checkout {
    /// An idle connection from the pool, open: write the request now.
    Reused(ConnId),
    /// A new connection, connecting: the handler hears `on_open` when it
    /// is up; what it writes before then waits for it.
    New(ConnId),
}

impl Checkout {
    /// The connection, either way.
    pub fn conn(&self) -> ConnId {
        match *self {
            Checkout::Reused(id) | Checkout::New(id) => id,
        }
    }
}

/// Why [`Context::checkin`](crate::Context::checkin) refused a connection
/// (it stays the handler's, unchanged).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckinError {
    /// No such connection: it closed, or the id is stale.
    Gone,
    /// Not an outbound TCP connection this reactor made: only those have
    /// an address to be checked out by.
    NotOutbound,
    /// Not open, or output still waits, or input the handler left is
    /// held: its protocol has not left it clean.
    NotClean,
    /// Already in the pool.
    Pooled,
}

impl fmt::Display for CheckinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CheckinError::Gone => "no such connection",
            CheckinError::NotOutbound => "only outbound TCP connections can be pooled",
            CheckinError::NotClean => {
                "the connection is not clean (not open, output or input waiting)"
            }
            CheckinError::Pooled => "the connection is in the pool already",
        })
    }
}

impl std::error::Error for CheckinError {}

/// One connection idle in the pool.
#[derive(Clone, Copy, Debug)]
struct Idle {
    id: ConnId,
    /// When it was checked in (the LRU order across addresses).
    since: Tick,
}

/// What the pool knows of a connection it made or holds, by slot.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Entry {
    addr: SocketAddr,
    /// Checkouts so far.
    uses: u32,
    /// A warm-up connect not yet up.
    warming: bool,
}

/// A warm connect that failed waits this long before the next, doubling
/// after each failure up to [`WARM_BACKOFF_MAX`].
const WARM_BACKOFF_MIN: Duration = Duration::from_millis(500);
const WARM_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// An address's warm-up.
#[derive(Clone, Copy, Debug)]
struct Warm {
    /// Idle connections to keep ready.
    target: usize,
    /// Warm connects under way.
    connecting: usize,
    /// No warm connect before this tick (after a failure).
    next_try: Tick,
    backoff: Duration,
}

/// The pool's state.
#[derive(Default)]
pub(crate) struct Upstreams {
    /// Idle connections by address, oldest first.
    idle: HashMap<SocketAddr, VecDeque<Idle>>,
    /// Idle connections in all.
    count: usize,
    /// Every connection a checkout made or handed out, while it lives.
    entries: SideTable<Entry>,
    /// Warm-up targets by address.
    warm: HashMap<SocketAddr, Warm>,
}

impl Upstreams {
    /// Takes `id` off its address's idle list, if it is there.
    fn unlist(&mut self, id: ConnId) -> bool {
        let Some(entry) = self.entries.get(id.index) else {
            return false;
        };
        let Some(list) = self.idle.get_mut(&entry.addr) else {
            return false;
        };
        let Some(at) = list.iter().position(|i| i.id == id) else {
            return false;
        };
        list.remove(at);
        if list.is_empty() {
            let addr = entry.addr;
            self.idle.remove(&addr);
        }
        self.count -= 1;
        true
    }

    /// The idle connection checked in longest ago, across addresses.
    fn oldest(&self) -> Option<ConnId> {
        self.idle
            .values()
            .filter_map(|list| list.front())
            .min_by_key(|i| i.since)
            .map(|i| i.id)
    }
}

/// Whether an idle connection has nothing to read, its FIN and errors
/// included (a peek: one system call, retried if a signal cut it short).
fn nothing_to_read(stream: &crate::stream::Stream) -> bool {
    loop {
        match stream.peek_one() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return e.kind() == io::ErrorKind::WouldBlock,
            Ok(_) => return false,
        }
    }
}

impl Core {
    /// A connection to `addr` for the handler: an idle live one from the
    /// pool, or a new connect (see the module docs).
    pub(crate) fn checkout(&mut self, addr: SocketAddr) -> io::Result<Checkout> {
        let now = self.now();
        // A new id for the new user: the one who checked it in may still
        // hold the old one, which from now on names nothing.
        if let Some(id) = self.take_fit(addr).and_then(|id| self.renew(id)) {
            if let Some(conn) = self.conn_mut(id) {
                conn.pooled = false;
                conn.last_read = now; // its idle timeout counts from here
            }
            if let Some(entry) = self.upstreams.entries.get_mut(id.index) {
                if entry.uses == 0 {
                    // A warm connection served: warming this address
                    // works, and its wait starts over.
                    if let Some(w) = self.upstreams.warm.get_mut(&addr) {
                        w.backoff = WARM_BACKOFF_MIN;
                    }
                }
                entry.uses = entry.uses.saturating_add(1);
            }
            self.counters().pool_hits += 1;
            self.arm(id);
            self.top_up(addr);
            return Ok(Checkout::Reused(id));
        }
        self.counters().pool_misses += 1;
        let id = self.connect(addr, Connect::default())?;
        self.upstreams.entries.insert(
            id.index,
            Entry {
                addr,
                uses: 1,
                warming: false,
            },
        );
        self.top_up(addr);
        Ok(Checkout::New(id))
    }

    /// Keeps `n` idle connections to `addr` ready (see the module docs);
    /// 0 stops warming it (those idle stay until they time out).
    pub(crate) fn warm(&mut self, addr: SocketAddr, n: usize) {
        if n == 0 {
            self.upstreams.warm.remove(&addr);
            return;
        }
        // No more than the pool keeps for one address, nor, with the other
        // addresses' targets, in all: past those it would evict its own
        // warm connections to make room for new ones, for ever.
        let others: usize = self
            .upstreams
            .warm
            .iter()
            .filter(|(a, _)| **a != addr)
            .map(|(_, w)| w.target)
            .sum();
        let n = n
            .min(self.config().pool_idle_per_addr)
            .min(self.config().pool_idle_max.saturating_sub(others));
        if n == 0 {
            return;
        }
        let warm = self.upstreams.warm.entry(addr).or_insert(Warm {
            target: n,
            connecting: 0,
            next_try: 0,
            backoff: WARM_BACKOFF_MIN,
        });
        warm.target = n;
        self.top_up(addr);
    }

    /// Connects as many as `addr`'s warm-up lacks, unless a failure's wait
    /// is not over.
    fn top_up(&mut self, addr: SocketAddr) {
        let now = self.now();
        if self.lifecycle() != Lifecycle::Running {
            return;
        }
        let Some(&warm) = self.upstreams.warm.get(&addr) else {
            return;
        };
        if now < warm.next_try {
            return;
        }
        let idle = self.upstreams.idle.get(&addr).map_or(0, VecDeque::len);
        for _ in (idle + warm.connecting)..warm.target {
            match self.connect(addr, Connect::default()) {
                Ok(id) => {
                    if let Some(conn) = self.conn_mut(id) {
                        conn.pooled = true; // the pool's from the start
                    }
                    self.upstreams.entries.insert(
                        id.index,
                        Entry {
                            addr,
                            uses: 0,
                            warming: true,
                        },
                    );
                    if let Some(w) = self.upstreams.warm.get_mut(&addr) {
                        w.connecting += 1;
                    }
                    self.counters().pool_warm += 1;
                }
                Err(e) => {
                    log::debug!("warming {addr}: {e}");
                    self.warm_failed(addr);
                    break;
                }
            }
        }
    }

    /// A warm connect failed: the next waits.
    fn warm_failed(&mut self, addr: SocketAddr) {
        let now = self.now();
        if let Some(w) = self.upstreams.warm.get_mut(&addr) {
            let wait = u64::try_from(w.backoff.as_millis()).unwrap_or(u64::MAX);
            w.next_try = now.saturating_add(wait);
            w.backoff = (w.backoff * 2).min(WARM_BACKOFF_MAX);
        }
    }

    /// A warm connect is up: into the pool, idle; the handler hears
    /// nothing of it.
    pub(crate) fn warmed(&mut self, id: ConnId) {
        let now = self.now();
        let Some(entry) = self.upstreams.entries.get_mut(id.index) else {
            return;
        };
        entry.warming = false;
        let addr = entry.addr;
        if let Some(w) = self.upstreams.warm.get_mut(&addr) {
            w.connecting = w.connecting.saturating_sub(1);
        }
        if self.lifecycle() != Lifecycle::Running {
            return self.close(id, CloseReason::Shutdown);
        }
        if let Some(conn) = self.conn_mut(id) {
            conn.last_read = now;
        }
        self.upstreams
            .idle
            .entry(addr)
            .or_default()
            .push_back(Idle { id, since: now });
        self.upstreams.count += 1;
        while self.upstreams.count > self.config().pool_idle_max {
            match self.upstreams.oldest() {
                Some(old) => self.evict(old, false),
                None => break,
            }
        }
        self.arm(id);
    }

    /// The newest idle connection to `addr`, off the list.
    fn take_newest(&mut self, addr: SocketAddr) -> Option<Idle> {
        let list = self.upstreams.idle.get_mut(&addr)?;
        let idle = list.pop_back();
        if list.is_empty() {
            self.upstreams.idle.remove(&addr);
        }
        if idle.is_some() {
            self.upstreams.count -= 1;
        }
        idle
    }

    /// The newest idle connection to `addr` that is still fit, off the
    /// list; those found unfit on the way are closed. The connection whose
    /// own callback runs now is passed over and stays: checked in from its
    /// `on_data`, what the handler left of that input is not settled until
    /// the call returns.
    fn take_fit(&mut self, addr: SocketAddr) -> Option<ConnId> {
        let mut own = None;
        let mut fit = None;
        while let Some(idle) = self.take_newest(addr) {
            if self.dispatching() == Some(idle.id) {
                own = Some(idle);
            } else if self.still_fit(idle.id) {
                fit = Some(idle.id);
                break;
            }
        }
        if let Some(idle) = own {
            self.upstreams.idle.entry(addr).or_default().push_back(idle);
            self.upstreams.count += 1;
        }
        fit
    }

    /// A last look before an idle connection is handed out: open, and
    /// nothing waiting to be read (a peek: one system call). One that is
    /// not is closed here, found dead.
    fn still_fit(&mut self, id: ConnId) -> bool {
        let Some(conn) = self.conn(id) else {
            return false;
        };
        let fit = conn.state() == State::Open && nothing_to_read(&conn.stream);
        if !fit {
            self.found_dead(id);
        }
        fit
    }

    /// The handler gives `id` back (see the module docs): the pool owns it
    /// now, or closes it if it has been used enough or there is no room.
    pub(crate) fn checkin(&mut self, id: ConnId) -> Result<(), CheckinError> {
        let now = self.now();
        let (max_uses, per_addr, max_idle) = {
            let c = self.config();
            (c.pool_max_uses, c.pool_idle_per_addr, c.pool_idle_max)
        };
        let conn = self.conn(id).ok_or(CheckinError::Gone)?;
        if conn.pooled {
            return Err(CheckinError::Pooled);
        }
        let addr = match conn.peer {
            Some(addr) if conn.listener == NO_LISTENER => addr,
            _ => return Err(CheckinError::NotOutbound),
        };
        let clean = conn.state() == State::Open
            && !conn.has_output()
            && conn.input.is_none()
            && !self.plaintext_waiting(id);
        if !clean {
            return Err(CheckinError::NotClean);
        }
        let entry = *self.upstreams.entries.get(id.index).unwrap_or(&Entry {
            addr,
            uses: 1,
            warming: false,
        });
        self.upstreams.entries.insert(id.index, entry);
        if entry.uses >= max_uses {
            // Used enough (nginx's `keepalive_requests`): closed, not kept.
            self.evict(id, true);
            return Ok(());
        }
        // The handler's own settings for it end here: the next checkout
        // gets it with the reactor's.
        self.settings_table().remove(id.index);
        let Some(conn) = self.conn_mut(id) else {
            return Err(CheckinError::Gone);
        };
        conn.pooled = true;
        conn.read_paused = false;
        conn.last_read = now;
        conn.last_write = now;
        let list = self.upstreams.idle.entry(addr).or_default();
        list.push_back(Idle { id, since: now });
        let crowded = list.len() > per_addr;
        let oldest_here = list.front().map(|i| i.id);
        self.upstreams.count += 1;
        if crowded {
            if let Some(old) = oldest_here {
                self.evict(old, false);
            }
        }
        while self.upstreams.count > max_idle {
            match self.upstreams.oldest() {
                Some(old) => self.evict(old, false),
                None => break,
            }
        }
        self.arm(id);
        Ok(())
    }

    /// Closes an idle (or just checked-in) connection to make room, or
    /// because it was used enough.
    fn evict(&mut self, id: ConnId, used_up: bool) {
        self.upstreams.unlist(id);
        if let Some(conn) = self.conn_mut(id) {
            conn.pooled = true; // the handler gave it up: it hears no close
        }
        self.counters().pool_evicted += 1;
        log::trace!(
            "conn {id}: evicted from the pool{}",
            if used_up { " (used up)" } else { "" }
        );
        self.close(id, CloseReason::Closed);
    }

    /// A pooled connection is no longer fit (FIN, RST, bytes nobody asked
    /// for): out of the pool, and closed.
    fn found_dead(&mut self, id: ConnId) {
        self.upstreams.unlist(id);
        self.counters().pool_found_dead += 1;
        log::debug!("conn {id}: idle in the pool, and no longer fit: closed");
        self.abort(id, CloseReason::PeerClosed);
    }

    /// An event on a connection idle in the pool: a look at what came,
    /// without taking it. Anything but "nothing to read" ends it.
    pub(crate) fn watch_pooled(&mut self, id: ConnId) {
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        conn.writable = true; // written nothing since; the cache stays right
        if !nothing_to_read(&conn.stream) {
            self.found_dead(id);
        }
    }

    /// A pooled connection's timer fired past the pool's idle timeout.
    pub(crate) fn pool_expired(&mut self, id: ConnId) {
        self.upstreams.unlist(id);
        self.counters().pool_evicted += 1;
        self.close(id, CloseReason::IdleTimeout);
    }

    /// The pool forgets a connection that is going (step 8). A warm
    /// connection that goes before any checkout used it (its connect
    /// failed; the backend closed it at once, or spoke first; the pool
    /// evicted it) is a failure to wait after, or a backend that accepts
    /// and closes would be dialed in a loop; an idle one that served is
    /// topped up.
    pub(crate) fn forget_upstream(&mut self, id: ConnId) {
        let was_idle = self.upstreams.unlist(id);
        let Some(entry) = self.upstreams.entries.remove(id.index) else {
            return;
        };
        if entry.warming {
            if let Some(w) = self.upstreams.warm.get_mut(&entry.addr) {
                w.connecting = w.connecting.saturating_sub(1);
            }
        }
        if entry.uses == 0 {
            self.warm_failed(entry.addr);
        } else if was_idle {
            self.top_up(entry.addr);
        }
    }

    /// Shutdown: every idle connection and warm connect is closed, and
    /// warming stops.
    pub(crate) fn close_pool(&mut self) {
        self.upstreams.warm.clear();
        let idle: Vec<ConnId> = self
            .upstreams
            .idle
            .drain()
            .flat_map(|(_, list)| list.into_iter().map(|i| i.id))
            .collect();
        self.upstreams.count = 0;
        let warming: Vec<ConnId> = self
            .all_ids()
            .into_iter()
            .filter(|&id| {
                self.conn(id)
                    .is_some_and(|c| c.pooled && c.state() == State::Connecting)
            })
            .collect();
        for id in idle.into_iter().chain(warming) {
            self.close(id, CloseReason::Shutdown);
        }
    }

    /// A pooled connection that its handler's read left unclean (checked
    /// in from `on_data` with input left over, or its FIN read): not fit
    /// to hand out.
    pub(crate) fn pooled_unfit(&mut self, id: ConnId) {
        self.found_dead(id);
    }

    /// Idle connections in the pool now.
    pub(crate) fn pool_idle(&self) -> usize {
        self.upstreams.count
    }
}
