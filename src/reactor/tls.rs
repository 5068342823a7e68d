//! TLS under the handler (feature `tls`): the transport between the
//! socket and the read and write seams. A handler sees plaintext and
//! never knows whether its connection is encrypted.
//!
//! - **Accept.** A connection from a TLS listener starts in
//!   [`State::Handshaking`] with a session (`src/tls/session.rs`) in a
//!   side table by slab slot, and one flag on its record. The handler
//!   hears nothing yet.
//! - **Read seam.** Ciphertext is read into a second scratch buffer (the
//!   same readiness rules: a short read counts the *ciphertext*), fed to
//!   the session, and the plaintext lands in the scratch buffer the
//!   handler consumes from, as a plain read's would. Plaintext that did
//!   not fit waits in the session and keeps the connection readable, so
//!   the read loop takes it without a new edge.
//! - **Handshake.** When the session says it is done, the machine's
//!   `Secured` event opens the connection and the handler hears
//!   `on_open`, before any plaintext that came with the last handshake
//!   record. The deadline is [`Config::handshake_timeout`] from accept;
//!   reads do not move it (a client that trickles a byte a second is
//!   still cut off).
//! - **Write seam.** At flush, records the session holds go first; then
//!   the plaintext output (the buffer, then the tail) is encrypted at
//!   most [`SEAL_CHUNK`] at a time, each chunk once the socket took the
//!   last: ciphertext never piles up, and plaintext waits where the
//!   water marks and output limits count it, exactly as on a plain
//!   connection. A file range is read and encrypted (`sendfile` cannot
//!   encrypt).
//! - **Close.** A graceful close or `shutdown_write` sends close_notify
//!   behind the last output, before the FIN. The peer's close_notify is
//!   its FIN as far as the handler is concerned; a bare FIN is too, but is
//!   counted as truncation ([`Stats::tls_truncated`]), and
//!   [`Context::tls`] tells the two apart.
//! - **Failure.** A session that fails sends its alert (one write, what
//!   the socket takes) and closes with [`CloseReason::Tls`], counted by
//!   kind in [`Stats::tls_failed`].
//! - **Memory.** An idle session holds no buffer; those it holds while
//!   busy count against [`Config::max_buffered`] like the connection's.
//!
//! [`Config::handshake_timeout`]: crate::Config::handshake_timeout
//! [`Config::max_buffered`]: crate::Config::max_buffered
//! [`Stats::tls_truncated`]: crate::Stats::tls_truncated
//! [`Stats::tls_failed`]: crate::Stats::tls_failed
//! [`Context::tls`]: crate::Context::tls

use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use rustls::ServerConfig;

use super::core::Core;
use super::read::{receive, Outcome};
use super::side_table::SideTable;
use super::tail::{Segment, Tails};
use super::write::send;
use super::Reactor;
use crate::config::SCRATCH_SIZE;
use crate::conn::{CloseReason, Conn, ConnId, TlsFailure, NO_LISTENER};
use crate::handler::Handler;
use crate::state::{Action, Event, State};
use crate::tls::session::{failure, Phase, Session, Transport};
use crate::tls::TlsInfo;

/// TLS sessions by slab slot, servers' and clients' alike. Boxed: a
/// session is about a kilobyte, and the table keeps room for more
/// entries than it has.
pub(crate) type Sessions = SideTable<Box<dyn Transport>>;

/// Plaintext encrypted per step of a flush: four full records. The next
/// chunk is encrypted only once the socket took this one, so at most
/// this much ciphertext (and a record's overhead) waits in a session.
pub(crate) const SEAL_CHUNK: usize = 64 << 10;

/// At most this many chunks per flush, so one connection sending a large
/// answer to a fast reader cannot hold the loop; cut short, it goes on
/// the flush list and continues next step 6 (as a tail does).
const SEALS_PER_FLUSH: usize = 4;

/// The largest piece of a file read per record: TLS's 2^14.
const FILE_PIECE: usize = 16 << 10;

/// Why sealing the next output failed.
enum SealError {
    Tls(rustls::Error),
    Io(io::Error),
}

impl Core {
    /// Gives `id`, just accepted from a TLS listener, its session.
    /// `false` if rustls refused (the connection is closed then).
    pub(crate) fn begin_tls(&mut self, id: ConnId, config: Arc<ServerConfig>) -> bool {
        let began = self.time().now_instant();
        match Session::new(config) {
            Ok(mut session) => {
                session.handshake_began = Some(began);
                self.sessions().insert(id.index, Box::new(session));
                if let Some(conn) = self.conn_mut(id) {
                    conn.tls = true;
                }
                true
            }
            Err(e) => {
                log::warn!("conn {id}: TLS session refused: {e}");
                // TLS without a session: never opened, so never told.
                if let Some(conn) = self.conn_mut(id) {
                    conn.tls = true;
                }
                self.abort(id, CloseReason::Tls(failure(&e)));
                false
            }
        }
    }

    /// Makes `id`, an outbound connection still connecting, a TLS client
    /// to `name` (see [`Context::start_tls`](crate::Context::start_tls)).
    pub(crate) fn start_tls(
        &mut self,
        id: ConnId,
        config: Arc<rustls::ClientConfig>,
        name: &str,
    ) -> io::Result<()> {
        let invalid = |e: String| io::Error::new(io::ErrorKind::InvalidInput, e);
        let conn = self
            .conn(id)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such connection"))?;
        if conn.state() != State::Connecting || conn.tls {
            return Err(invalid(format!(
                "conn {id}: TLS starts on an outbound connection before it connects"
            )));
        }
        let name = rustls::pki_types::ServerName::try_from(name.to_string())
            .map_err(|e| invalid(format!("server name {name:?}: {e}")))?;
        let session = Session::client(config, name).map_err(|e| invalid(e.to_string()))?;
        self.sessions().insert(id.index, Box::new(session));
        if let Some(conn) = self.conn_mut(id) {
            conn.tls = true;
        }
        Ok(())
    }

    /// A TLS client's connect finished: its handshake begins with the
    /// ClientHello, made here (nothing to feed) and sent at the flush.
    pub(crate) fn hello(&mut self, id: ConnId) {
        let began = self.time().now_instant();
        let Some((conn, _, sessions)) = self.conn_tails_sessions(id) else {
            return;
        };
        let Some(session) = sessions.get_mut(id.index) else {
            return;
        };
        *session.handshake_began() = Some(began);
        if let Err(e) = session.feed(&[], &mut []) {
            return self.tls_failed(id, failure(&e), &e);
        }
        conn.sealed = !session.outgoing().is_empty();
        self.count_session(id);
        self.push_flush(id);
        self.arm(id);
    }

    /// What `id`'s handshake agreed; `None` for a plain connection.
    pub(crate) fn tls_info(&mut self, id: ConnId) -> Option<TlsInfo> {
        self.conn(id).filter(|c| c.tls)?;
        Some(self.sessions().get(id.index)?.info())
    }

    /// The session failed (`why`): its alert goes in one write (what the
    /// socket takes), and the connection closes with the failure's kind.
    /// Logged as a warning for an outbound connection (the program asked
    /// for it, and wants to know why a server was refused), at debug for
    /// an accepted one (any client can fail a handshake, as often as it
    /// likes).
    pub(crate) fn tls_failed(&mut self, id: ConnId, kind: TlsFailure, why: &dyn std::fmt::Display) {
        if let Some((conn, _, sessions)) = self.conn_tails_sessions(id) {
            if let Some(session) = sessions.get_mut(id.index) {
                let alert = session.outgoing();
                if !alert.is_empty() && conn.state().may_write() {
                    if let Ok(n) = send(&conn.stream, alert) {
                        session.sent(n);
                    }
                }
            }
        }
        if self.conn(id).is_some_and(|c| c.listener == NO_LISTENER) {
            log::warn!("conn {id}: TLS failed: {why}");
        } else {
            log::debug!("conn {id}: TLS failed: {why}");
        }
        self.abort(id, CloseReason::Tls(kind));
    }

    /// The session's buffers, counted again against the reactor's budget.
    fn count_session(&mut self, id: ConnId) {
        let Some(session) = self.sessions().get_mut(id.index) else {
            return;
        };
        let held = session.held();
        let old = std::mem::replace(session.counted(), held);
        if old != held && self.conn(id).is_some_and(|c| !c.state().is_closed()) {
            self.count_tls(old, held);
        }
    }

    /// The write side of a TLS connection (`write.rs`'s `send_some`):
    /// records first, then output encrypted a chunk at a time, then
    /// close_notify if a FIN is due. `Err` when that aborted it.
    pub(crate) fn send_sealed(&mut self, id: ConnId, now: crate::timer::Tick) -> Result<(), ()> {
        let Some((conn, tails, sessions)) = self.conn_tails_sessions(id) else {
            return Err(());
        };
        let Some(session) = sessions.get_mut(id.index) else {
            return Err(());
        };
        if conn.state().is_closed() {
            // Closed: its buffers are returned and nothing more goes out;
            // what the session still holds is dropped with it.
            return Ok(());
        }
        if !(conn.writable && conn.state().may_write()) {
            conn.sealed = !session.outgoing().is_empty();
            return Ok(());
        }
        let mut sent = 0;
        let mut result: Result<bool, SealError> = Ok(true);
        let mut more = false;
        for round in 0..=SEALS_PER_FLUSH {
            let records = session.outgoing();
            if !records.is_empty() {
                match send(&conn.stream, records) {
                    Ok(n) => {
                        let all = n == records.len();
                        session.sent(n);
                        sent += n;
                        if !all {
                            result = Ok(false); // the socket is full
                            break;
                        }
                    }
                    Err(e) => {
                        result = Err(SealError::Io(e));
                        break;
                    }
                }
            }
            if round == SEALS_PER_FLUSH {
                more = true;
                break;
            }
            match seal_next(conn, tails, session.as_mut(), id) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        conn.sealed = !session.outgoing().is_empty();
        more &= conn.has_output();
        if sent > 0 {
            conn.last_write = now;
        }
        self.counters().bytes_out += sent as u64;
        self.count_session(id);
        let Some(conn) = self.conn_mut(id) else {
            return Err(());
        };
        match result {
            Ok(took_all) => {
                conn.writable = took_all;
                if more {
                    self.push_flush(id);
                }
                Ok(())
            }
            Err(SealError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                conn.writable = false;
                Ok(())
            }
            Err(SealError::Io(e)) => {
                self.abort(id, CloseReason::from_io(&e));
                Err(())
            }
            Err(SealError::Tls(e)) => {
                self.tls_failed(id, failure(&e), &e);
                Err(())
            }
        }
    }

    /// Drops the session's count when its connection closes.
    pub(crate) fn forget_session(&mut self, id: ConnId) -> usize {
        self.sessions()
            .get_mut(id.index)
            .map_or(0, |s| std::mem::take(s.counted()))
    }

    /// Takes the session out as its connection goes; `true` if the
    /// handler heard the connection open.
    pub(crate) fn end_session(&mut self, id: ConnId) -> bool {
        match self.sessions().remove(id.index) {
            Some(mut session) => session.handshake_began().is_none(),
            None => false, // refused before it began
        }
    }
}

/// Encrypts the next piece of plaintext output into the session: from
/// the buffer, else from the front of the tail; else close_notify, once,
/// if the state is about to send its FIN. `Ok(false)`: nothing to do (or
/// the handshake is not done: output waits for it).
fn seal_next(
    conn: &mut Conn,
    tails: &mut Tails,
    session: &mut dyn Transport,
    id: ConnId,
) -> Result<bool, SealError> {
    if let Some(out) = conn.output.as_mut().filter(|o| !o.is_empty()) {
        let take = out.len().min(SEAL_CHUNK);
        let sealed = session
            .encrypt(&out.as_slice()[..take])
            .map_err(SealError::Tls)?;
        if sealed {
            out.consume(take);
        }
        return Ok(sealed);
    }
    if conn.tail {
        if let Some(tail) = tails.get_mut(id.index) {
            while tail.front_mut().is_some_and(|s| s.is_done()) {
                tail.advance(0);
            }
            if let Some(segment) = tail.front_mut() {
                let n = seal_segment(segment, session)?;
                if n > 0 {
                    tail.advance(n);
                }
                return Ok(n > 0);
            }
        }
    }
    if matches!(conn.state(), State::WriteClosing | State::Closing(_)) {
        // The output is all sealed and a FIN is due: close_notify first.
        return session.close_notify().map_err(SealError::Tls);
    }
    Ok(false)
}

/// Encrypts from the front of a tail segment; returns the bytes taken.
fn seal_segment(segment: &mut Segment, session: &mut dyn Transport) -> Result<usize, SealError> {
    if let Segment::File { file, offset, left } = segment {
        let mut piece = [0u8; FILE_PIECE];
        let want = (*left).min(FILE_PIECE as u64) as usize;
        let n = loop {
            match file.read_at(&mut piece[..want], *offset) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                result => break result.map_err(SealError::Io)?,
            }
        };
        if n == 0 {
            let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "file ended inside the range");
            return Err(SealError::Io(eof));
        }
        let sealed = session.encrypt(&piece[..n]).map_err(SealError::Tls)?;
        return Ok(if sealed { n } else { 0 });
    }
    let bytes = segment.bytes().unwrap_or_default();
    let take = bytes.len().min(SEAL_CHUNK);
    let sealed = session.encrypt(&bytes[..take]).map_err(SealError::Tls)?;
    Ok(if sealed { take } else { 0 })
}

impl<H: Handler> Reactor<H> {
    /// The read seam of a TLS connection: ciphertext from the socket (or
    /// none, while plaintext waits in the session), plaintext into
    /// `scratch[..room]`. Returns `(ciphertext read, plaintext)`.
    pub(super) fn receive_tls(
        &mut self,
        id: ConnId,
        room: usize,
    ) -> Result<(usize, usize), Outcome> {
        if self.cipher.is_empty() {
            self.cipher = vec![0; SCRATCH_SIZE];
        }
        let pending = self
            .core
            .sessions()
            .get(id.index)
            .is_some_and(|s| s.has_pending());
        let raw = if pending {
            0
        } else {
            let Some(conn) = self.core.conn(id) else {
                return Err(Outcome::Closed);
            };
            let result = receive(&conn.stream, &mut self.cipher);
            match self.settle(id, result, self.cipher.len()) {
                Ok(n) => n,
                Err(Outcome::Eof) => return Err(self.tls_eof(id)),
                Err(outcome) => return Err(outcome),
            }
        };
        let Some((conn, _, sessions)) = self.core.conn_tails_sessions(id) else {
            return Err(Outcome::Closed);
        };
        let Some(session) = sessions.get_mut(id.index) else {
            return Err(Outcome::Closed);
        };
        let fed = session.feed(&self.cipher[..raw], &mut self.scratch[..room]);
        let phase = session.phase();
        let fed = match fed {
            Ok(fed) => fed,
            Err(e) => {
                self.core.tls_failed(id, failure(&e), &e);
                return Err(Outcome::Closed);
            }
        };
        if fed.more {
            // Plaintext waits in the session: take it without a new edge.
            conn.readable = true;
        }
        if matches!(phase, Phase::PeerClosed | Phase::Closed) && !fed.more {
            // close_notify, and every byte before it taken: the peer's
            // end, as a FIN is; nothing after it is read.
            conn.eof = true;
            conn.readable = false;
        }
        if !conn.state().may_write() && !session.outgoing().is_empty() {
            // Records rustls answers with after our FIN (an alert, a key
            // update) can never go: dropped, or they would wait for the
            // write timeout as output.
            session.drop_outgoing();
        }
        conn.sealed = !session.outgoing().is_empty();
        let handshaking = conn.state() == State::Handshaking;
        if conn.sealed {
            self.core.push_flush(id);
        }
        self.core.count_session(id);
        if handshaking && phase != Phase::Handshaking {
            self.secured(id);
        }
        Ok((raw, fed.plaintext))
    }

    /// The socket's FIN on a TLS connection: before the handshake is done
    /// a failure; after it, the peer's end, counted as truncation if no
    /// close_notify came first.
    fn tls_eof(&mut self, id: ConnId) -> Outcome {
        let Some(conn) = self.core.conn(id) else {
            return Outcome::Closed;
        };
        if conn.state() == State::Handshaking {
            self.core
                .tls_failed(id, TlsFailure::Eof, &"the peer closed during the handshake");
            return Outcome::Closed;
        }
        let clean = self
            .core
            .sessions()
            .get(id.index)
            .is_some_and(|s| matches!(s.phase(), Phase::PeerClosed | Phase::Closed));
        if !clean {
            self.core.counters().tls_truncated += 1;
        }
        Outcome::Eof
    }

    /// The handshake is done: the connection opens, and the handler hears
    /// `on_open`.
    fn secured(&mut self, id: ConnId) {
        let now = self.core.now();
        let now_instant = self.core.time().now_instant();
        if let Some(session) = self.core.sessions().get_mut(id.index) {
            if let Some(began) = session.handshake_began().take() {
                let took = now_instant.saturating_duration_since(began);
                let stats = self.core.counters();
                stats.tls_handshakes += 1;
                stats.tls_handshake_us += u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
            }
        }
        if let Some(conn) = self.core.conn_mut(id) {
            conn.last_read = now; // the idle timeout counts from here
        }
        if self.core.apply(id, Event::Secured) == Some(Action::TellOpen) {
            self.opened(id);
        }
    }
}

impl<H: Handler> Reactor<H> {
    /// Listens on `addr` for TLS connections served with `config` (made
    /// by [`TlsConfig`](crate::tls::TlsConfig), or any rustls
    /// `ServerConfig` without early data). The handler hears `on_open`
    /// once a connection's handshake is done, and sees only plaintext.
    ///
    /// ```no_run
    /// use evloop::tls::TlsConfig;
    /// # use evloop::{Config, ConnId, Context, Handler, Reactor};
    /// # struct Echo;
    /// # impl Handler for Echo {
    /// #     type Message = ();
    /// #     fn on_data(&mut self, cx: &mut Context<'_>, c: ConnId, i: &[u8]) -> usize { let _ = cx.write(c, i); i.len() }
    /// # }
    /// let tls = TlsConfig::new().certificate("cert.pem", "key.pem")?.build()?;
    /// let mut reactor = Reactor::new(Echo, Config::default())?;
    /// reactor.listen("127.0.0.1:7000".parse()?)?; // plain
    /// reactor.listen_tls("127.0.0.1:7443".parse()?, tls)?; // the same handler, over TLS
    /// reactor.run()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn listen_tls(
        &mut self,
        addr: std::net::SocketAddr,
        config: Arc<ServerConfig>,
    ) -> io::Result<super::ListenerId> {
        check(&config)?;
        let id = self.listen(addr)?;
        self.serve_tls(id, config)?;
        Ok(id)
    }

    /// Makes `conn`, an outbound connection not yet connected, a TLS
    /// client to `name` (see [`Context::start_tls`](crate::Context::start_tls)).
    pub fn start_tls(
        &mut self,
        conn: ConnId,
        config: Arc<rustls::ClientConfig>,
        name: &str,
    ) -> io::Result<()> {
        self.core.start_tls(conn, config, name)
    }

    /// Makes a listener TLS (one adopted, say): connections it accepts
    /// from now on are served with `config`. `NotFound` for a closed
    /// listener.
    pub fn serve_tls(
        &mut self,
        listener: super::ListenerId,
        config: Arc<ServerConfig>,
    ) -> io::Result<()> {
        check(&config)?;
        let l = self
            .listeners
            .get_mut(listener.0 as usize)
            .and_then(Option::as_mut)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such listener"))?;
        l.tls = Some(config);
        Ok(())
    }
}

/// A configuration a session can be made from, checked once at listen
/// rather than refused at every accept.
fn check(config: &Arc<ServerConfig>) -> io::Result<()> {
    Session::new(Arc::clone(config))
        .map(drop)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}
