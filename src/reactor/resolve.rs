//! Connecting by host name without blocking the loop.
//!
//! Resolving a name (`getaddrinfo`) blocks: it reads `/etc/hosts`, asks a
//! DNS server and waits, for a millisecond or for seconds. A loop that
//! called it would stall every connection it serves. So the reactor hands
//! names to a resolver thread of its own (started at the first name; it
//! ends once the reactor stops or is dropped, after the lookup it is in,
//! if any, and skips the lookups of connections that closed first), which
//! resolves them with the system's resolver and posts the addresses back
//! through the queue and waker the [`Handle`](crate::Handle) uses. The
//! connection exists from the start: [`Context::connect_host`] returns its
//! id at once, in
//! `Connecting`, with no socket yet (`Stream::Resolving`), and the handler
//! hears `on_open` or `on_close` as for any connect. Its connect timeout
//! covers the lookup and every attempt.
//!
//! Why a thread calling the system resolver, and not an asynchronous DNS
//! client in the loop: the system's resolver is the one every other
//! program on the machine uses (`/etc/hosts`, `nsswitch.conf`, search
//! domains, mDNS, whatever the host configured); a DNS client of our own
//! would be a second configuration that answers differently, and a
//! dependency. libuv makes the same choice (`getaddrinfo` on its thread
//! pool). The cost: one thread, and lookups one at a time, so a slow one
//! delays those behind it; at most [`MAX_LOOKUPS`] wait.
//!
//! A name with several addresses is tried in the order the resolver gives
//! them (RFC 6724's preference), one at a time: a connect that fails moves
//! on to the next address, as `std::net::TcpStream::connect` does with a
//! host name. There is no Happy Eyeballs race of IPv6 against IPv4.
//!
//! [`Context::connect_host`]: crate::Context::connect_host

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

use super::side_table::SideTable;
use crate::conn::ConnId;

/// Lookups that may wait for the resolver thread at once: a handler that
/// connects to many names faster than they resolve is told `WouldBlock`
/// instead of growing the queue without bound.
pub(crate) const MAX_LOOKUPS: usize = 1024;

/// The longest host name DNS allows (RFC 1035: 253 characters written
/// out); a longer one cannot resolve and is refused before it is asked.
const MAX_HOST_LEN: usize = 253;

/// What a lookup found: the addresses, or why there are none.
pub(crate) type Found = io::Result<Vec<SocketAddr>>;

/// Posts a lookup's result back to the reactor (through its command
/// queue and waker; made by the reactor, which knows its message type).
/// `false` once the reactor has stopped: the thread ends.
pub(crate) type Poster = Arc<dyn Fn(ConnId, Found) -> bool + Send + Sync>;

/// One lookup for the resolver thread.
struct Lookup {
    id: ConnId,
    host: String,
    port: u16,
    /// Set when the connection closes first: the thread skips the lookup
    /// if it has not begun it.
    cancelled: Arc<AtomicBool>,
}

/// A connection being resolved, or trying its addresses.
pub(crate) struct Pending {
    /// The connection (the slot's tenant when it asked).
    id: ConnId,
    /// Its lookup is still with the thread.
    resolving: bool,
    cancelled: Arc<AtomicBool>,
    /// Addresses not tried yet.
    pub(crate) left: VecDeque<SocketAddr>,
    /// The local address to connect from (`Connect::bind`).
    pub(crate) bind: Option<SocketAddr>,
}

/// The reactor's side of the resolver: the thread's queue, and the
/// connections waiting on it (by slab slot).
#[derive(Default)]
pub(crate) struct Resolver {
    /// How the thread posts back.
    poster: Option<Poster>,
    lookups: Option<mpsc::Sender<Lookup>>,
    /// Lookups with the thread, not yet answered or cancelled.
    in_flight: usize,
    pending: SideTable<Pending>,
}

impl Resolver {
    /// How results will come back; set once, when the reactor is built.
    pub(crate) fn set_poster(&mut self, poster: Poster) {
        self.poster = Some(poster);
    }

    /// Checks a name before a connection is made for it: not empty, not
    /// longer than DNS allows, no NUL byte; and room in the queue.
    pub(crate) fn check(&self, host: &str) -> io::Result<()> {
        if host.is_empty() || host.len() > MAX_HOST_LEN || host.contains('\0') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("not a host name: {} bytes", host.len()),
            ));
        }
        if self.in_flight >= MAX_LOOKUPS {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("{MAX_LOOKUPS} host name lookups already wait"),
            ));
        }
        Ok(())
    }

    /// Starts the thread if it is not running yet (again, if it could not
    /// be started before).
    pub(crate) fn start(&mut self) -> io::Result<()> {
        if self.lookups.is_some() {
            return Ok(());
        }
        let post = self
            .poster
            .clone()
            .ok_or_else(|| io::Error::other("the reactor has no resolver"))?;
        let (tx, rx) = mpsc::channel::<Lookup>();
        std::thread::Builder::new()
            .name("evloop-resolver".into())
            .spawn(move || {
                // Ends when the reactor (the sender) is dropped, or has
                // stopped.
                for lookup in rx {
                    if lookup.cancelled.load(Ordering::Relaxed) {
                        continue;
                    }
                    let found = (lookup.host.as_str(), lookup.port)
                        .to_socket_addrs()
                        .map(|addrs| addrs.collect());
                    if !post(lookup.id, found) {
                        break;
                    }
                }
            })?;
        self.lookups = Some(tx);
        Ok(())
    }

    /// Asks the thread to resolve `host` for connection `id`. `false` if
    /// the thread is gone (it ends only with the reactor, or by a panic).
    pub(crate) fn ask(
        &mut self,
        id: ConnId,
        host: &str,
        port: u16,
        bind: Option<SocketAddr>,
    ) -> bool {
        let cancelled = Arc::new(AtomicBool::new(false));
        let lookup = Lookup {
            id,
            host: host.to_owned(),
            port,
            cancelled: Arc::clone(&cancelled),
        };
        let sent = self.lookups.as_ref().map(|tx| tx.send(lookup));
        if !matches!(sent, Some(Ok(()))) {
            return false;
        }
        self.in_flight += 1;
        let pending = Pending {
            id,
            resolving: true,
            cancelled,
            left: VecDeque::new(),
            bind,
        };
        self.pending.insert(id.index, pending);
        true
    }

    /// The thread answered for `id`: its pending entry, if `id` still
    /// waits for that answer (not closed, not a new tenant of the slot).
    pub(crate) fn answered(&mut self, id: ConnId) -> Option<&mut Pending> {
        let pending = self
            .pending
            .get_mut(id.index)
            .filter(|p| p.id == id && p.resolving)?;
        pending.resolving = false;
        self.in_flight -= 1;
        Some(pending)
    }

    pub(crate) fn pending_mut(&mut self, slot: u32) -> Option<&mut Pending> {
        self.pending.get_mut(slot)
    }

    /// Connections by name still resolving or trying addresses, and
    /// lookups with the thread.
    #[cfg(test)]
    pub(crate) fn counts(&self) -> (usize, usize) {
        (self.pending.len(), self.in_flight)
    }

    /// The slot's connection connected, or closed: a lookup it still
    /// waits for is cancelled.
    pub(crate) fn forget(&mut self, slot: u32) {
        if let Some(pending) = self.pending.remove(slot) {
            pending.cancelled.store(true, Ordering::Relaxed);
            if pending.resolving {
                self.in_flight -= 1;
            }
        }
    }
}

impl Drop for Resolver {
    /// The reactor is going: lookups still queued are skipped, so the
    /// thread ends as soon as the one it is in (if any) returns.
    fn drop(&mut self) {
        for pending in self.pending.values() {
            pending.cancelled.store(true, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{SocketAddr, TcpListener};
    use std::time::{Duration, Instant};

    use crate::{CloseReason, Config, ConnId, Connect, Context, Handler, Reactor};

    #[derive(Default)]
    struct Seen {
        opened: Vec<ConnId>,
        closed: Vec<(ConnId, CloseReason)>,
    }

    impl Handler for Seen {
        type Message = ();
        fn on_open(&mut self, _: &mut Context<'_>, conn: ConnId) {
            self.opened.push(conn);
        }
        fn on_data(&mut self, _: &mut Context<'_>, _: ConnId, input: &[u8]) -> usize {
            input.len()
        }
        fn on_close(&mut self, _: &mut Context<'_>, conn: ConnId, reason: CloseReason) {
            self.closed.push((conn, reason));
        }
    }

    fn turn_until(reactor: &mut Reactor<Seen>, done: impl Fn(&Seen) -> bool) {
        let end = Instant::now() + Duration::from_secs(20);
        while !done(reactor.handler()) {
            assert!(Instant::now() < end, "timed out");
            reactor.run_once(Some(Duration::from_millis(5))).unwrap();
        }
    }

    /// A port nothing listens on (bound, then closed).
    fn refused() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    }

    #[test]
    fn a_refused_address_moves_on_to_the_next() {
        let good = TcpListener::bind("127.0.0.1:0").unwrap();
        let good_addr = good.local_addr().unwrap();
        let mut reactor = Reactor::new(Seen::default(), Config::default()).unwrap();
        let id = reactor
            .connect_host("localhost", good_addr.port(), Connect::default())
            .unwrap();
        // The lookup's own answer comes later and finds the connection
        // already on its way: it is dropped. These stand in for it.
        reactor
            .core
            .resolved(id, Ok(vec![refused(), refused(), good_addr]));
        turn_until(&mut reactor, |s| s.opened.contains(&id));
        let (_peer, from) = good.accept().unwrap();
        assert_eq!(reactor.core.conn(id).and_then(|c| c.peer), Some(good_addr));
        assert_eq!(
            reactor.core.conn(id).and_then(|c| c.stream.local_addr()),
            Some(from)
        );
        assert_eq!(
            reactor.core.lookup_counts(),
            (0, 0),
            "nothing left once connected"
        );
    }

    #[test]
    fn when_every_address_refuses_the_last_failure_is_the_reason() {
        let mut reactor = Reactor::new(Seen::default(), Config::default()).unwrap();
        let id = reactor
            .connect_host("localhost", 1, Connect::default())
            .unwrap();
        reactor.core.resolved(id, Ok(vec![refused(), refused()]));
        turn_until(&mut reactor, |s| !s.closed.is_empty());
        assert_eq!(
            reactor.handler().closed,
            vec![(
                id,
                CloseReason::ConnectFailed(std::io::ErrorKind::ConnectionRefused)
            )]
        );
        assert!(reactor.handler().opened.is_empty());
    }

    #[test]
    fn a_name_with_no_addresses_fails_with_not_found() {
        let mut reactor = Reactor::new(Seen::default(), Config::default()).unwrap();
        let id = reactor
            .connect_host("localhost", 1, Connect::default())
            .unwrap();
        reactor.core.resolved(id, Ok(Vec::new()));
        turn_until(&mut reactor, |s| !s.closed.is_empty());
        assert_eq!(
            reactor.handler().closed,
            vec![(id, CloseReason::ConnectFailed(std::io::ErrorKind::NotFound))]
        );
    }

    #[test]
    fn a_connection_closed_while_resolving_gives_its_lookup_back() {
        let mut reactor = Reactor::new(Seen::default(), Config::default()).unwrap();
        let id = reactor
            .connect_host("localhost", 1, Connect::default())
            .unwrap();
        assert_eq!(reactor.core.lookup_counts(), (1, 1));
        reactor.core.abort(id, CloseReason::Aborted);
        // Its answer may still come: it finds nobody waiting for it.
        reactor.core.resolved(id, Ok(vec![refused()]));
        turn_until(&mut reactor, |s| !s.closed.is_empty());
        assert_eq!(reactor.core.lookup_counts(), (0, 0));
        assert_eq!(reactor.handler().closed, vec![(id, CloseReason::Aborted)]);
        assert!(reactor.handler().opened.is_empty());
    }
}
