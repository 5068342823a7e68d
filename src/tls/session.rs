//! One TLS session, server or client, with no socket: ciphertext in,
//! plaintext out, and the other way round. The TLS transport puts this
//! between the read and write seams and the socket; here it is driven, and tested, on its
//! own (sans I/O).
//!
//! It is rustls's unbuffered API (`UnbufferedServerConnection`), where
//! the caller owns every byte: the session keeps ciphertext only while it
//! must (an incomplete record received, records not yet sent), and holds
//! no buffer at all when idle, which is what keeps an idle TLS connection
//! near 3.5 KB (`benches/tls_idle_memory.rs`) instead of the buffered
//! API's 7.5 KB.
//!
//! The loop (rustls's `process_tls_records`) answers with a state each
//! time; what each one asks of us:
//! - `EncodeTlsData`: encode a handshake record into `outgoing`;
//! - `TransmitTlsData`: those records may go; they wait in `outgoing`
//!   until the caller has sent them (rustls only needs to hear `done`);
//! - `ReadTraffic`: a record's plaintext is ready: it is taken at once
//!   (rustls answers nothing else while plaintext waits, so leaving it
//!   there would block writing too), copied out as far as the caller's
//!   room goes, and the rest kept in `pending` for the next call;
//! - `BlockedHandshake`: more ciphertext is needed;
//! - `WriteTraffic`: the handshake is done and nothing waits: we may
//!   encrypt;
//! - `PeerClosed`: the peer's close_notify came (once): a clean end,
//!   unlike a bare end of stream, which is truncation;
//! - `Closed`: close_notify went both ways.

use std::sync::Arc;
use std::time::Instant;

use std::ops::DerefMut;

use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::pki_types::ServerName;
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, UnbufferedConnectionCommon, UnbufferedStatus,
    WriteTraffic,
};
use rustls::{ClientConfig, ServerConfig};

/// Ciphertext a session keeps while a record or a handshake message is
/// incomplete. A record is at most 18,437 bytes and a handshake message
/// at most 64 KiB, joined in place from its records; a peer that needs
/// more (a message cut into tiny records, or bytes sent without end) is
/// refused rather than given memory.
pub(crate) const MAX_INCOMING: usize = 96 << 10;

/// Bytes of ciphertext a record adds to its plaintext, at most (TLS 1.3
/// AES-GCM: 22; TLS 1.2 AES-GCM: 29), rounded up: encryption asks for
/// this much room beyond the plaintext per 16 KiB record, and is told
/// the exact size if that was not enough.
const RECORD_OVERHEAD: usize = 64;

/// The largest plaintext in one record (TLS's 2^14).
const RECORD_PLAINTEXT: usize = 16 << 10;

/// Where the session is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Handshaking,
    /// Application data flows both ways.
    Open,
    /// The peer sent close_notify: nothing more will come from it.
    PeerClosed,
    /// close_notify went both ways.
    Closed,
    /// A fatal error: its alert, if rustls had one, waits in `outgoing`;
    /// then close. Nothing more is done with the session.
    Failed,
}

/// What feeding ciphertext did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Fed {
    /// Plaintext bytes written into the caller's buffer.
    pub(crate) plaintext: usize,
    /// Plaintext waits that did not fit the room offered: call
    /// [`Session::feed`] again (with no new ciphertext) once there is
    /// room, and read no more from the socket until then.
    pub(crate) more: bool,
}

/// Why [`Session::process`] stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// A record's plaintext was taken (into `pending`).
    Plaintext,
    /// More bytes are needed, the handshake is done, or the session
    /// closed.
    Other,
}

/// Where decrypted plaintext goes first: the caller's buffer, and how
/// much of it is filled.
struct Sink<'a> {
    plain: &'a mut [u8],
    filled: &'a mut usize,
}

/// Ciphertext waiting for the socket, sent from a cursor (no memmove per
/// partial write).
#[derive(Default)]
struct Out {
    bytes: Vec<u8>,
    at: usize,
}

impl Out {
    /// Room for `extra` more bytes at the end; returns where they start.
    fn grow(&mut self, extra: usize) -> usize {
        if self.at > 0 && self.at == self.bytes.len() {
            self.bytes.clear();
            self.at = 0;
        } else if self.at > self.bytes.len() / 2 {
            self.bytes.drain(..self.at);
            self.at = 0;
        }
        let start = self.bytes.len();
        self.bytes.resize(start + extra, 0);
        start
    }
}

/// The two ends of rustls's unbuffered API, as a session drives them: the
/// same states, told apart only by their data.
pub(crate) trait Side:
    DerefMut<Target = UnbufferedConnectionCommon<Self::Data>> + Send
{
    type Data;
    /// rustls's `process_tls_records`, which each end has of its own.
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data>;
}

impl Side for UnbufferedServerConnection {
    type Data = ServerConnectionData;
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(incoming)
    }
}

impl Side for UnbufferedClientConnection {
    type Data = ClientConnectionData;
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(incoming)
    }
}

/// What the reactor asks of a session, server or client (a trait object
/// in its side table, so both kinds live in one).
pub(crate) trait Transport: Send {
    fn phase(&self) -> Phase;
    /// Ciphertext waiting to be sent.
    fn outgoing(&self) -> &[u8];
    /// The socket took `n` bytes of [`outgoing`](Self::outgoing).
    fn sent(&mut self, n: usize);
    /// The capacity of the buffers it holds, for the reactor's budget.
    fn held(&self) -> usize;
    /// Plaintext waits that the caller had no room for.
    fn has_pending(&self) -> bool;
    /// What the handshake agreed.
    fn info(&self) -> crate::tls::TlsInfo;
    /// See [`Session::feed`].
    fn feed(&mut self, ciphertext: &[u8], plain: &mut [u8]) -> Result<Fed, rustls::Error>;
    /// See [`Session::encrypt`].
    fn encrypt(&mut self, plaintext: &[u8]) -> Result<bool, rustls::Error>;
    /// See [`Session::close_notify`].
    fn close_notify(&mut self) -> Result<bool, rustls::Error>;
    /// When the connection began, while its handshake is under way.
    fn handshake_began(&mut self) -> &mut Option<Instant>;
    /// What the reactor's budget counts for its buffers.
    fn counted(&mut self) -> &mut usize;
    /// The same, to read.
    fn counted_now(&self) -> usize;
    /// Drops records waiting to be sent: our side of the connection is
    /// shut, and nothing can go any more.
    fn drop_outgoing(&mut self);
}

impl<S: Side> Transport for Session<S> {
    fn phase(&self) -> Phase {
        self.phase
    }
    fn outgoing(&self) -> &[u8] {
        Session::outgoing(self)
    }
    fn sent(&mut self, n: usize) {
        Session::sent(self, n)
    }
    fn held(&self) -> usize {
        Session::held(self)
    }
    fn has_pending(&self) -> bool {
        self.pending.is_some()
    }
    fn info(&self) -> crate::tls::TlsInfo {
        Session::info(self)
    }
    fn feed(&mut self, ciphertext: &[u8], plain: &mut [u8]) -> Result<Fed, rustls::Error> {
        Session::feed(self, ciphertext, plain)
    }
    fn encrypt(&mut self, plaintext: &[u8]) -> Result<bool, rustls::Error> {
        Session::encrypt(self, plaintext)
    }
    fn close_notify(&mut self) -> Result<bool, rustls::Error> {
        Session::close_notify(self)
    }
    fn handshake_began(&mut self) -> &mut Option<Instant> {
        &mut self.handshake_began
    }
    fn counted(&mut self) -> &mut usize {
        &mut self.counted
    }
    fn counted_now(&self) -> usize {
        self.counted
    }
    fn drop_outgoing(&mut self) {
        self.outgoing = None;
    }
}

/// A TLS session without a socket: a server's by default, a client's with
/// [`Session::client`].
pub(crate) struct Session<S: Side = UnbufferedServerConnection> {
    conn: S,
    phase: Phase,
    /// When the connection began, while its handshake is under way; `None`
    /// once the reactor has told the handler it is open.
    pub(crate) handshake_began: Option<Instant>,
    /// What the reactor's buffer budget counts for this session's buffers
    /// (`Config::max_buffered`).
    pub(crate) counted: usize,
    /// We queued close_notify: nothing more is encrypted.
    closing: bool,
    /// Ciphertext received and not yet processed (an incomplete record).
    /// `None` while empty.
    incoming: Option<Vec<u8>>,
    /// Plaintext taken from rustls that the caller had no room for.
    /// `None` while empty.
    pending: Option<Vec<u8>>,
    /// Ciphertext to send: handshake records, alerts, encrypted data the
    /// socket has not taken. `None` while empty.
    outgoing: Option<Out>,
}

impl Session {
    /// A session for one accepted connection. Early data (0-RTT) is not
    /// served: a configuration that allows it is refused.
    pub(crate) fn new(config: Arc<ServerConfig>) -> Result<Session, rustls::Error> {
        if config.max_early_data_size != 0 {
            return Err(rustls::Error::General("early data is not served".into()));
        }
        if config.send_half_rtt_data {
            // The handler would hear `on_open` before the client finished
            // its handshake.
            return Err(rustls::Error::General("half-RTT data is not sent".into()));
        }
        Ok(Session::with(UnbufferedServerConnection::new(config)?))
    }
}

impl Session<UnbufferedClientConnection> {
    /// A session for one outbound connection to `name`, which the
    /// server's certificate must be for. Its first flight (the
    /// ClientHello) is made by the first [`feed`](Session::feed), with
    /// nothing to feed. Early data is not sent.
    pub(crate) fn client(
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> Result<Self, rustls::Error> {
        if config.enable_early_data {
            return Err(rustls::Error::General("early data is not sent".into()));
        }
        Ok(Session::with(UnbufferedClientConnection::new(
            config, name,
        )?))
    }
}

impl<S: Side> Session<S> {
    fn with(conn: S) -> Self {
        Session {
            conn,
            phase: Phase::Handshaking,
            handshake_began: None,
            counted: 0,
            closing: false,
            incoming: None,
            pending: None,
            outgoing: None,
        }
    }

    /// Ciphertext waiting to be sent.
    pub(crate) fn outgoing(&self) -> &[u8] {
        self.outgoing.as_ref().map_or(&[], |o| &o.bytes[o.at..])
    }

    /// The socket took `n` bytes of [`outgoing`](Self::outgoing).
    pub(crate) fn sent(&mut self, n: usize) {
        if let Some(out) = self.outgoing.as_mut() {
            out.at = (out.at + n).min(out.bytes.len());
            if out.at == out.bytes.len() {
                self.outgoing = None;
            }
        }
    }

    /// Whether the session holds any buffer (an idle one holds none).
    #[cfg(test)]
    pub(crate) fn holds_buffers(&self) -> bool {
        self.incoming.is_some() || self.pending.is_some() || self.outgoing.is_some()
    }

    /// The capacity of the buffers it holds, for the reactor's budget.
    pub(crate) fn held(&self) -> usize {
        self.incoming.as_ref().map_or(0, Vec::capacity)
            + self.pending.as_ref().map_or(0, Vec::capacity)
            + self.outgoing.as_ref().map_or(0, |o| o.bytes.capacity())
    }

    /// What the handshake agreed, and whether the peer's close_notify
    /// came.
    pub(crate) fn info(&self) -> crate::tls::TlsInfo {
        crate::tls::TlsInfo {
            version: self.conn.protocol_version(),
            cipher_suite: self.conn.negotiated_cipher_suite().map(|s| s.suite()),
            alpn: self.conn.alpn_protocol().map(<[u8]>::to_vec),
            resumed: self.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
            peer_subject: self
                .conn
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|leaf| super::subject::subject(leaf)),
            peer_closed: matches!(self.phase, Phase::PeerClosed | Phase::Closed),
        }
    }

    /// Takes `ciphertext` from the socket (empty to go on after
    /// [`Fed::more`]) and writes the plaintext it carries into `plain`,
    /// as much as fits. Handshake records to send, and alerts, go to
    /// [`outgoing`](Self::outgoing). `Err` is fatal: the alert (if any) is
    /// in `outgoing`, and the phase is [`Phase::Failed`].
    pub(crate) fn feed(
        &mut self,
        ciphertext: &[u8],
        plain: &mut [u8],
    ) -> Result<Fed, rustls::Error> {
        if self.phase == Phase::Failed {
            return Err(rustls::Error::General("the session failed before".into()));
        }
        let mut incoming = self.incoming.take().unwrap_or_default();
        if incoming.len() + ciphertext.len() > MAX_INCOMING {
            return Err(self.fail(incoming, too_much()));
        }
        incoming.extend_from_slice(ciphertext);
        let mut fed = Fed::default();
        self.give(plain, &mut fed);
        // Record after record while the caller has room: plaintext it has
        // no room for stops decrypting (the rest waits as ciphertext,
        // which is bounded), and so does needing more bytes. A
        // close_notify behind the last record is reached here too, or it
        // would wait for bytes that never come. Processed records are
        // passed over with a cursor and dropped once at the end: a
        // memmove per record would make many tiny records quadratic.
        let mut at = 0;
        while self.pending.is_none() && !matches!(self.phase, Phase::PeerClosed | Phase::Closed) {
            let sink = Sink {
                plain: &mut *plain,
                filled: &mut fed.plaintext,
            };
            match self.process(&mut incoming, &mut at, Some(sink), false) {
                Ok(Stop::Plaintext) => {}
                Ok(Stop::Other) => break,
                Err(e) => {
                    incoming.drain(..at);
                    return Err(self.fail(incoming, e));
                }
            }
        }
        incoming.drain(..at);
        if matches!(self.phase, Phase::PeerClosed | Phase::Closed) {
            // rustls reads nothing after close_notify: later bytes are
            // dropped, not kept forever.
            incoming.clear();
        }
        self.keep_incoming(incoming);
        fed.more = self.pending.is_some();
        Ok(fed)
    }

    /// Keeps what is left of an incomplete record, in no more memory than
    /// it needs: a buffer that grew for a burst is not held for a few
    /// bytes (the budget counts capacity).
    fn keep_incoming(&mut self, mut incoming: Vec<u8>) {
        if incoming.is_empty() {
            return;
        }
        if incoming.capacity() > 2 * incoming.len() {
            incoming.shrink_to_fit();
        }
        self.incoming = Some(incoming);
    }

    /// Copies pending plaintext into what is left of `plain`.
    fn give(&mut self, plain: &mut [u8], fed: &mut Fed) {
        let Some(pending) = self.pending.as_mut() else {
            return;
        };
        let n = pending.len().min(plain.len() - fed.plaintext);
        plain[fed.plaintext..fed.plaintext + n].copy_from_slice(&pending[..n]);
        fed.plaintext += n;
        pending.drain(..n);
        if pending.is_empty() {
            self.pending = None;
        }
    }

    /// Runs rustls over `incoming[*at..]` until it needs more bytes, the
    /// handshake is done, or the session closed; with `until_writable`,
    /// on past plaintext to the state that lets us encrypt. Decrypted
    /// records go to `sink` as far as it has room, then to `pending`.
    /// `*at` moves past what rustls is done with.
    fn process(
        &mut self,
        incoming: &mut [u8],
        at: &mut usize,
        mut sink: Option<Sink<'_>>,
        until_writable: bool,
    ) -> Result<Stop, rustls::Error> {
        loop {
            let UnbufferedStatus { mut discard, state } = self.conn.process(&mut incoming[*at..]);
            let stop = match state {
                Err(e) => {
                    *at += discard;
                    return Err(e);
                }
                Ok(ConnectionState::ReadTraffic(mut state)) => {
                    let mut failed = None;
                    while let Some(record) = state.next_record() {
                        match record {
                            Ok(record) => {
                                discard += record.discard;
                                take_plaintext(&mut self.pending, record.payload, sink.as_mut());
                            }
                            Err(e) => {
                                failed = Some(e);
                                break;
                            }
                        }
                    }
                    *at += discard;
                    if let Some(e) = failed {
                        return Err(e);
                    }
                    if !until_writable {
                        return Ok(Stop::Plaintext);
                    }
                    continue;
                }
                Ok(ConnectionState::EncodeTlsData(mut state)) => {
                    let out = self.outgoing.get_or_insert_with(Out::default);
                    encode(out, |buf| state.encode(buf))?;
                    false
                }
                Ok(ConnectionState::TransmitTlsData(state)) => {
                    // The records wait in `outgoing` for the socket.
                    state.done();
                    false
                }
                Ok(ConnectionState::WriteTraffic(_)) => {
                    if self.phase == Phase::Handshaking {
                        self.phase = Phase::Open;
                    }
                    true
                }
                Ok(ConnectionState::PeerClosed) => {
                    // Reported once; `Closed` follows at once if ours went.
                    self.phase = Phase::PeerClosed;
                    false
                }
                Ok(ConnectionState::Closed) => {
                    self.phase = Phase::Closed;
                    true
                }
                Ok(ConnectionState::BlockedHandshake) => true,
                Ok(_) => {
                    // Early data is refused in `new`; any other state is
                    // one this code does not know: end here, never loop.
                    *at += discard;
                    return Err(rustls::Error::General("unexpected TLS state".into()));
                }
            };
            *at += discard;
            if stop {
                return Ok(Stop::Other);
            }
        }
    }

    /// Encrypts `plaintext` into [`outgoing`](Self::outgoing). Only once
    /// the handshake is done and before our close_notify: `false`
    /// (nothing taken) otherwise.
    pub(crate) fn encrypt(&mut self, plaintext: &[u8]) -> Result<bool, rustls::Error> {
        self.write(|write, out| {
            for chunk in plaintext.chunks(RECORD_PLAINTEXT) {
                let start = out.grow(chunk.len() + RECORD_OVERHEAD);
                let n = match write.encrypt(chunk, &mut out.bytes[start..]) {
                    Ok(n) => n,
                    Err(EncryptError::InsufficientSize(e)) => {
                        out.bytes.resize(start + e.required_size, 0);
                        match write.encrypt(chunk, &mut out.bytes[start..]) {
                            Ok(n) => n,
                            Err(e) => {
                                out.bytes.truncate(start);
                                return Err(e);
                            }
                        }
                    }
                    Err(e) => {
                        out.bytes.truncate(start);
                        return Err(e);
                    }
                };
                out.bytes.truncate(start + n);
            }
            Ok(())
        })
    }

    /// Queues close_notify in [`outgoing`](Self::outgoing), once; not
    /// before the handshake is done (`false` then).
    pub(crate) fn close_notify(&mut self) -> Result<bool, rustls::Error> {
        let queued = self.write(|write, out| {
            let start = out.grow(RECORD_OVERHEAD);
            match write.queue_close_notify(&mut out.bytes[start..]) {
                Ok(n) => {
                    out.bytes.truncate(start + n);
                    Ok(())
                }
                Err(e) => {
                    out.bytes.truncate(start);
                    Err(e)
                }
            }
        })?;
        if queued {
            self.closing = true;
            if self.phase == Phase::PeerClosed {
                self.phase = Phase::Closed;
            }
        }
        Ok(queued)
    }

    /// Runs `f` with the state that lets us encrypt, reached by processing
    /// what already came (rustls offers it only then; plaintext met on the
    /// way is kept in `pending`). `false` if the session may not send.
    fn write(
        &mut self,
        f: impl FnOnce(&mut WriteTraffic<'_, S::Data>, &mut Out) -> Result<(), EncryptError>,
    ) -> Result<bool, rustls::Error> {
        if !matches!(self.phase, Phase::Open | Phase::PeerClosed) || self.closing {
            return Ok(false);
        }
        let mut incoming = self.incoming.take().unwrap_or_default();
        let mut at = 0;
        if let Err(e) = self.process(&mut incoming, &mut at, None, true) {
            incoming.drain(..at);
            return Err(self.fail(incoming, e));
        }
        let UnbufferedStatus { discard, state } = self.conn.process(&mut incoming[at..]);
        let result = match state {
            Ok(ConnectionState::WriteTraffic(mut write)) => {
                let out = self.outgoing.get_or_insert_with(Out::default);
                let done = f(&mut write, out);
                if out.at == out.bytes.len() {
                    self.outgoing = None;
                }
                done.map(|()| true)
                    .map_err(|e| rustls::Error::General(e.to_string()))
            }
            Ok(_) => Ok(false),
            Err(e) => Err(e),
        };
        incoming.drain(..at + discard);
        match result {
            Err(e) => Err(self.fail(incoming, e)),
            Ok(sent) => {
                self.keep_incoming(incoming);
                Ok(sent)
            }
        }
    }

    /// The session failed: rustls has its alert to send (it is encoded
    /// from the same buffer, as rustls requires: an empty one would not
    /// match where it left off), and nothing more is done.
    fn fail(&mut self, mut incoming: Vec<u8>, e: rustls::Error) -> rustls::Error {
        self.phase = Phase::Failed;
        if let Ok(ConnectionState::EncodeTlsData(mut state)) =
            self.conn.process(&mut incoming).state
        {
            let out = self.outgoing.get_or_insert_with(Out::default);
            let _ = encode(out, |buf| state.encode(buf));
        }
        self.incoming = None;
        self.pending = None;
        e
    }
}

/// The kind of failure a rustls error is, for the close reason and the
/// counters.
pub(crate) fn failure(e: &rustls::Error) -> crate::TlsFailure {
    use crate::TlsFailure;
    use rustls::Error;
    match e {
        Error::AlertReceived(_) => TlsFailure::Alert,
        Error::InvalidCertificate(_) | Error::NoCertificatesPresented => TlsFailure::Certificate,
        Error::PeerIncompatible(_) | Error::NoApplicationProtocol => TlsFailure::Incompatible,
        _ => TlsFailure::Protocol,
    }
}

/// A record's plaintext: into the caller's room while it has some and
/// nothing waits before it (in `pending`), the rest into `pending`.
fn take_plaintext(pending: &mut Option<Vec<u8>>, payload: &[u8], sink: Option<&mut Sink<'_>>) {
    let mut rest = payload;
    if let Some(sink) = sink.filter(|_| pending.is_none()) {
        let room = sink.plain.len() - *sink.filled;
        let n = room.min(rest.len());
        sink.plain[*sink.filled..*sink.filled + n].copy_from_slice(&rest[..n]);
        *sink.filled += n;
        rest = &rest[n..];
    }
    if !rest.is_empty() {
        pending.get_or_insert_with(Vec::new).extend_from_slice(rest);
    }
}

fn too_much() -> rustls::Error {
    rustls::Error::General(format!(
        "more than {MAX_INCOMING} bytes of incomplete TLS records"
    ))
}

/// Encodes one handshake record at the end of `out`, growing it as
/// rustls says.
fn encode(
    out: &mut Out,
    mut encode: impl FnMut(&mut [u8]) -> Result<usize, EncodeError>,
) -> Result<(), rustls::Error> {
    let start = out.grow(RECORD_OVERHEAD);
    let n = match encode(&mut out.bytes[start..]) {
        Ok(n) => n,
        Err(EncodeError::InsufficientSize(e)) => {
            out.bytes.resize(start + e.required_size, 0);
            match encode(&mut out.bytes[start..]) {
                Ok(n) => n,
                Err(e) => {
                    out.bytes.truncate(start);
                    return Err(rustls::Error::General(e.to_string()));
                }
            }
        }
        Err(e) => {
            out.bytes.truncate(start);
            return Err(rustls::Error::General(e.to_string()));
        }
    };
    out.bytes.truncate(start + n);
    Ok(())
}

#[cfg(test)]
mod tests;
