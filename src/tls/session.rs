//! One TLS server session, with no socket: ciphertext in, plaintext out,
//! and the other way round. The TLS transport puts this between the read
//! and write seams and the socket; here it is driven, and tested, on its
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

use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, UnbufferedStatus, WriteTraffic,
};
use rustls::ServerConfig;

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

/// A TLS server session without a socket.
pub(crate) struct Session {
    conn: UnbufferedServerConnection,
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
        Ok(Session {
            conn: UnbufferedServerConnection::new(config)?,
            phase: Phase::Handshaking,
            handshake_began: None,
            counted: 0,
            closing: false,
            incoming: None,
            pending: None,
            outgoing: None,
        })
    }

    pub(crate) fn phase(&self) -> Phase {
        self.phase
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

    /// Plaintext waits that the caller had no room for (see
    /// [`Fed::more`]).
    pub(crate) fn has_pending(&self) -> bool {
        self.pending.is_some()
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
        // would wait for bytes that never come.
        while self.pending.is_none() && !matches!(self.phase, Phase::PeerClosed | Phase::Closed) {
            match self.process(&mut incoming, false) {
                Ok(Stop::Plaintext) => self.give(plain, &mut fed),
                Ok(Stop::Other) => break,
                Err(e) => return Err(self.fail(incoming, e)),
            }
        }
        if matches!(self.phase, Phase::PeerClosed | Phase::Closed) {
            // rustls reads nothing after close_notify: later bytes are
            // dropped, not kept forever.
            incoming.clear();
        }
        if !incoming.is_empty() {
            self.incoming = Some(incoming);
        }
        fed.more = self.pending.is_some();
        Ok(fed)
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

    /// Runs rustls over `incoming` until it needs more bytes, the
    /// handshake is done, or the session closed; with `until_writable`,
    /// on past plaintext (kept in `pending`) to the state that lets us
    /// encrypt. Decrypted records go to `pending`.
    fn process(
        &mut self,
        incoming: &mut Vec<u8>,
        until_writable: bool,
    ) -> Result<Stop, rustls::Error> {
        loop {
            let UnbufferedStatus { discard, state } = self.conn.process_tls_records(incoming);
            let stop = match state {
                Err(e) => {
                    incoming.drain(..discard);
                    return Err(e);
                }
                Ok(ConnectionState::ReadTraffic(mut state)) => {
                    while let Some(record) = state.next_record() {
                        let payload = record?.payload;
                        self.pending
                            .get_or_insert_with(Vec::new)
                            .extend_from_slice(payload);
                    }
                    incoming.drain(..discard);
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
                    incoming.drain(..discard);
                    return Err(rustls::Error::General("unexpected TLS state".into()));
                }
            };
            incoming.drain(..discard);
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
        f: impl FnOnce(
            &mut WriteTraffic<'_, ServerConnectionData>,
            &mut Out,
        ) -> Result<(), EncryptError>,
    ) -> Result<bool, rustls::Error> {
        if !matches!(self.phase, Phase::Open | Phase::PeerClosed) || self.closing {
            return Ok(false);
        }
        let mut incoming = self.incoming.take().unwrap_or_default();
        if let Err(e) = self.process(&mut incoming, true) {
            return Err(self.fail(incoming, e));
        }
        let UnbufferedStatus { discard, state } = self.conn.process_tls_records(&mut incoming);
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
        incoming.drain(..discard);
        match result {
            Err(e) => Err(self.fail(incoming, e)),
            Ok(sent) => {
                if !incoming.is_empty() {
                    self.incoming = Some(incoming);
                }
                Ok(sent)
            }
        }
    }

    /// The session failed: rustls has its alert to send (it is encoded
    /// from the same buffer, as rustls requires: an empty one would not
    /// match where it left off), and nothing more is done.
    fn fail(&mut self, mut incoming: Vec<u8>, e: rustls::Error) -> rustls::Error {
        log::debug!("TLS session failed: {e}");
        self.phase = Phase::Failed;
        if let Ok(ConnectionState::EncodeTlsData(mut state)) =
            self.conn.process_tls_records(&mut incoming).state
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
