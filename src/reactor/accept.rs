//! Accepting connections, and admission: who gets in, and what happens
//! when the process runs out of descriptors.
//!
//! A listener is accepted from until `WouldBlock`, a per-turn batch, or
//! `max_conns`; it is edge-triggered like everything else, so a batch cut
//! short is remembered (`pending`) and continued next turn.
//!
//! Out of descriptors (`EMFILE`, `ENFILE`) is the classic way an event
//! loop dies: the listener stays readable, every `accept` fails, and a
//! naive loop spins at 100% CPU while the clients in the queue hang. Here
//! a descriptor held in reserve is closed so one waiting connection can
//! be accepted and closed at once (its client hears "no" instead of
//! hanging; the trick is libev's and nginx's), and accepting pauses with
//! exponential back-off. One log line per episode.

use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use super::core::Lifecycle;
use super::timeouts::TimerEvent;
use super::Reactor;
use crate::admission::RejectReason;
use crate::conn::ConnId;
use crate::handler::Handler;
use crate::state::State;
use crate::stream::{ListenSocket, Stream};

/// Accept back-off after an error such as `EMFILE`: from 5 ms, doubling,
/// to at most 1 s (what Go's net/http settles on), so a process out of
/// descriptors neither spins nor stays deaf for long once they free up.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Accepting resumes once connections fall below this share of
/// `max_conns`: hysteresis, so a server at its limit does not flap.
const RESUME_BELOW_PERCENT: usize = 90;
/// In a `Server`, a shard full at the server's `max_conns` looks again
/// this often: the room may come from another shard's closes, which it
/// does not see. Short against a human's wait, long against a turn.
const SERVER_FULL_RECHECK: Duration = Duration::from_millis(20);

/// Whether a listener accepts now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Gate {
    Open,
    /// At `max_conns`: reopens below 90 % of it.
    Full,
    /// After an accept error: reopens on a timer.
    BackingOff,
}

pub(super) struct Listener {
    pub(super) socket: ListenSocket,
    /// The last accept batch stopped before `WouldBlock`: connections are
    /// still queued, and no new edge will say so.
    pub(super) pending: bool,
    /// Paused by the program (`pause_listener`), apart from the gate's
    /// own reasons.
    pub(super) paused: bool,
    gate: Gate,
    /// Its connections are TLS, with this configuration (see `tls.rs`).
    #[cfg(feature = "tls")]
    pub(super) tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// The next back-off; back at the minimum once an accept succeeds,
    /// which also ends the episode for logging.
    backoff: Duration,
    /// In a server, full: a look-again timer is on the wheel (one chain
    /// of them at most, however often the gate closes).
    recheck: bool,
}

impl Listener {
    pub(super) fn new(socket: ListenSocket) -> Self {
        Listener {
            socket,
            pending: true,
            paused: false,
            gate: Gate::Open,
            #[cfg(feature = "tls")]
            tls: None,
            backoff: ACCEPT_BACKOFF_MIN,
            recheck: false,
        }
    }

    /// Connections wait, the gate is open, and the program has not paused
    /// it.
    pub(super) fn ready(&self) -> bool {
        self.pending && self.gate == Gate::Open && !self.paused
    }
}

impl<H: Handler> Reactor<H> {
    /// Accepts from every listener with connections waiting (only while
    /// running: shutdown closes the listeners first, but a handler's panic
    /// in the middle of it must not leave them accepting).
    pub(super) fn accept_all(&mut self) {
        if self.core.lifecycle() != Lifecycle::Running {
            return;
        }
        self.apply_listener_changes();
        for i in 0..self.listeners.len() {
            if self.listeners[i].as_ref().is_some_and(Listener::ready) {
                self.accept(i);
            }
        }
    }

    /// Listener `i`, if it is open.
    fn listener(&mut self, i: usize) -> Option<&mut Listener> {
        self.listeners.get_mut(i)?.as_mut()
    }

    fn accept(&mut self, i: usize) {
        for _ in 0..self.core.config().accept_batch {
            // In a server, a place is taken before the accept, so a shard
            // that loses the race for the last one leaves its client
            // queued instead of accepting and resetting it.
            let full =
                self.core.headcount() >= self.core.config().max_conns || !self.core.reserve_place();
            if full && self.core.config().reject_line.is_none() {
                log::warn!(
                    "max_conns ({}) reached: not accepting until below {}%",
                    self.core.config().max_conns,
                    RESUME_BELOW_PERCENT
                );
                let in_census = self.core.in_census();
                let arm = match self.listener(i) {
                    Some(l) => {
                        l.gate = Gate::Full;
                        // Other shards' closes free room too, and this
                        // reactor hears nothing of them: look again soon.
                        in_census && !std::mem::replace(&mut l.recheck, true)
                    }
                    None => false,
                };
                if arm {
                    let at = self.core.time().after(SERVER_FULL_RECHECK);
                    self.core.wheel().insert(at, TimerEvent::AcceptResume(i));
                }
                return;
            }
            let Some(l) = self.listener(i) else {
                self.core.release_place();
                return;
            };
            let accepted = l.socket.accept();
            if accepted.is_err() {
                self.core.release_place(); // nobody to give it to
            }
            let Some(l) = self.listener(i) else {
                return;
            };
            match accepted {
                Ok((stream, peer)) => {
                    l.backoff = ACCEPT_BACKOFF_MIN;
                    if full {
                        self.reject_with_line(stream);
                    } else if let Err(reason) = self.check(peer) {
                        log::debug!("rejected {peer:?}: {}", RejectReason::NAMES[reason.index()]);
                        self.core.release_place();
                        self.reject(stream, reason);
                    } else {
                        self.admit(stream, peer, i as u32);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    l.pending = false;
                    return;
                }
                // The connection died in the queue, or a signal came: the
                // next one may be fine.
                Err(e) if is_per_connection(&e) => {}
                Err(e) => return self.accept_failed(i, e),
            }
        }
    }

    /// The access rules, for a peer with an IP address (a Unix domain
    /// peer has none: the socket file's permissions are its rules).
    fn check(&mut self, peer: Option<SocketAddr>) -> Result<(), RejectReason> {
        match peer {
            Some(peer) => self.core.admission().check(peer.ip()),
            None => Ok(()),
        }
    }

    /// A connection in: the handler hears `on_open` now, or, from a TLS
    /// listener, once its handshake is done.
    fn admit(&mut self, stream: Stream, peer: Option<SocketAddr>, listener: u32) -> Option<ConnId> {
        #[cfg(feature = "tls")]
        let tls = self
            .listeners
            .get(listener as usize)
            .and_then(|l| l.as_ref()?.tls.clone());
        #[cfg(feature = "tls")]
        let state = match tls {
            Some(_) => State::Handshaking,
            None => State::Open,
        };
        #[cfg(not(feature = "tls"))]
        let state = State::Open;
        match self.core.add_conn(stream, peer, listener, state) {
            Ok(id) => {
                self.core.counters().accepted += 1;
                if let Some(peer) = peer {
                    self.core.admission().opened(id.index as usize, peer.ip());
                }
                log::trace!("conn {id}: accepted from {peer:?}");
                #[cfg(feature = "tls")]
                if let Some(config) = tls {
                    self.core.begin_tls(id, config);
                    return Some(id);
                }
                self.opened(id);
                Some(id)
            }
            Err(e) => {
                log::warn!("registering a connection from {peer:?}: {e}");
                if let Some(peer) = peer {
                    self.core.admission().release(peer.ip());
                }
                self.core.release_place();
                None
            }
        }
    }

    /// Shutdown begins: take every connection that already waits in a
    /// listen queue, since closing the listener would reset them. No
    /// handler code runs here; [`admit_backlog`](Self::admit_backlog) does
    /// that once the listeners are closed.
    ///
    /// Bounded: at most `Config::backlog` per listener (what its queue can
    /// hold), so clients that keep connecting cannot hold shutdown here;
    /// an accept error ends the listener's share.
    pub(super) fn take_backlog(&mut self) -> Vec<(Stream, Option<SocketAddr>, u32)> {
        let most = usize::try_from(self.core.config().backlog).unwrap_or(0);
        let mut queued = Vec::new();
        for (i, l) in self.listeners.iter().enumerate() {
            let Some(l) = l else {
                continue;
            };
            if l.gate == Gate::BackingOff {
                continue; // out of descriptors: nothing can be accepted
            }
            let mut attempts = 0;
            while attempts < most {
                attempts += 1;
                match l.socket.accept() {
                    Ok((stream, peer)) => queued.push((stream, peer, i as u32)),
                    Err(e) if is_per_connection(&e) => {}
                    Err(_) => break, // WouldBlock: the queue is empty
                }
            }
        }
        queued
    }

    /// Each connection taken from the queues is served at once (its
    /// request may already be here) and then closed like the others once
    /// quiet; past `max_conns` or the access rules it is turned away as
    /// usual. Taken one at a time from `queued`, so a handler that panics
    /// in `on_open` leaves the rest for the next turn.
    pub(super) fn admit_backlog(&mut self) {
        while let Some((stream, peer, listener)) = self.queued.pop() {
            if self.core.headcount() >= self.core.config().max_conns || !self.core.reserve_place() {
                self.reject_with_line(stream);
            } else if let Err(reason) = self.check(peer) {
                self.core.release_place();
                self.reject(stream, reason);
            } else if let Some(id) = self.admit(stream, peer, listener) {
                if let Some(conn) = self.core.conn_mut(id) {
                    conn.readable = true;
                }
                self.serve(id);
            }
        }
    }

    /// Turned away before the handler hears of it: closed with RST, so no
    /// TIME_WAIT is left on our side.
    fn reject(&mut self, stream: Stream, reason: RejectReason) {
        self.core.counters().rejected[reason.index()] += 1;
        stream.reset_on_close();
    }

    /// At `max_conns` with a reject line: one write (a short line fits any
    /// socket buffer), then a normal close so the line is delivered.
    /// Caveat: a client that already sent data gets RST from the close,
    /// which may destroy the line; Redis has the same edge.
    fn reject_with_line(&mut self, stream: Stream) {
        self.core.counters().rejected[RejectReason::MaxConns.index()] += 1;
        if let Some(line) = &self.core.config().reject_line {
            let _ = stream.write(line);
        }
    }

    /// `accept` failed for the listener as a whole (`EMFILE`, `ENFILE`,
    /// `ENOBUFS`, `ENOMEM`): shed one waiting connection if descriptors
    /// ran out, and pause this listener with back-off.
    fn accept_failed(&mut self, i: usize, e: io::Error) {
        self.core.counters().accept_errors += 1;
        let Some(l) = self.listener(i) else {
            return;
        };
        let episode_starts = l.backoff == ACCEPT_BACKOFF_MIN;
        if crate::sys::is_out_of_descriptors(&e) {
            self.shed_one(i);
        }
        if episode_starts {
            self.core.counters().accept_pauses += 1;
            log::warn!(
                "accept failed: {e}; pausing accepts with back-off from {ACCEPT_BACKOFF_MIN:?} to {ACCEPT_BACKOFF_MAX:?} (logged once per episode)"
            );
        }
        let Some(l) = self.listeners.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        l.gate = Gate::BackingOff;
        let backoff = l.backoff;
        l.backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
        let at = self.core.time().after(backoff);
        self.core.wheel().insert(at, TimerEvent::AcceptResume(i));
    }

    /// Spends the reserve descriptor on accepting one waiting connection
    /// and closing it, then takes the descriptor back.
    fn shed_one(&mut self, i: usize) {
        let Some(reserve) = self.reserve.take() else {
            return;
        };
        drop(reserve);
        let accepted = self.listener(i).map(|l| l.socket.accept());
        if let Some(Ok((stream, peer))) = accepted {
            log::debug!("shed {peer:?}: out of descriptors");
            self.reject(stream, RejectReason::OutOfDescriptors);
        }
        self.reserve = File::open("/dev/null").ok();
    }

    /// The back-off timer fired, or (in a server) the look again at a
    /// full one.
    pub(super) fn resume_accepting(&mut self, i: usize) {
        let Some(l) = self.listener(i) else {
            return;
        };
        if std::mem::take(&mut l.recheck) {
            // The server-full look again. A back-off timer shares the
            // event: whichever of the two fires first is taken as this
            // one, and the other, later, ends a back-off, so a back-off is
            // never cut short and always ends.
            if l.gate == Gate::Full {
                // Any room at all: the 90% hysteresis keeps one listener
                // from flapping, and the 20 ms between looks does that
                // here; with it, a shard whose room was taken to 90% by
                // the others would leave its queue waiting beside a free
                // place.
                self.reopen_when_raised();
                if let Some(l) = self.listener(i).filter(|l| l.gate == Gate::Full) {
                    l.recheck = true;
                    let at = self.core.time().after(SERVER_FULL_RECHECK);
                    self.core.wheel().insert(at, TimerEvent::AcceptResume(i));
                }
            }
            return;
        }
        if l.gate == Gate::BackingOff {
            l.gate = Gate::Open;
            l.pending = true;
        }
    }

    /// After reaping: reopen listeners closed by `max_conns` once below
    /// 90 % of it.
    pub(super) fn reopen_when_below_limit(&mut self) {
        // In u128: `max_conns` may be `usize::MAX` ("no limit").
        let below =
            (self.core.config().max_conns as u128 * RESUME_BELOW_PERCENT as u128 / 100) as usize;
        if self.core.headcount() < below.max(1) {
            self.open_full_gates();
        }
    }

    /// `max_conns` was raised (or, in a server, another shard's closes
    /// made room): reopen listeners held at the limit if there is room
    /// (no hysteresis: the program asked, or the look again is paced).
    pub(super) fn reopen_when_raised(&mut self) {
        if self.core.headcount() < self.core.config().max_conns {
            self.open_full_gates();
        }
    }

    fn open_full_gates(&mut self) {
        for l in self.listeners.iter_mut().flatten() {
            if l.gate == Gate::Full {
                log::info!("below max_conns: accepting again");
                l.gate = Gate::Open;
                l.pending = true;
            }
        }
    }
}

/// Accept errors that concern one connection, not the listener.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::PermissionDenied
    )
}
