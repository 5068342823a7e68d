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
//! - `ReadTraffic`: a record's plaintext is ready: it is copied out if it
//!   fits the room the caller offered, else left for the next call;
//! - `BlockedHandshake`: more ciphertext is needed;
//! - `WriteTraffic`: the handshake is done and nothing waits: we may
//!   encrypt;
//! - `PeerClosed`: the peer's close_notify came (once): a clean end,
//!   unlike a bare end of stream, which is truncation;
//! - `Closed`: close_notify went both ways.

use std::num::NonZeroUsize;
use std::sync::Arc;

use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, UnbufferedStatus, WriteTraffic,
};
use rustls::ServerConfig;

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
    /// A fatal error: its alert waits in `outgoing`; then close.
    Failed,
}

/// What feeding ciphertext did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Fed {
    /// Plaintext bytes written into the caller's buffer.
    pub(crate) plaintext: usize,
    /// Plaintext is ready that did not fit the room offered: call
    /// [`Session::feed`] again (with no new ciphertext) once there is room.
    pub(crate) more: bool,
}

/// A TLS server session without a socket.
pub(crate) struct Session {
    conn: UnbufferedServerConnection,
    phase: Phase,
    /// Ciphertext received and not yet processed: the start of a record
    /// whose rest has not come. `None` while empty.
    incoming: Option<Vec<u8>>,
    /// Ciphertext to send: handshake records, alerts, encrypted data the
    /// socket has not taken. `None` while empty.
    outgoing: Option<Vec<u8>>,
}

/// Bytes of ciphertext a record adds to its plaintext, at most (TLS 1.3
/// AES-GCM: 22; TLS 1.2 AES-GCM: 29), rounded up: encryption asks for
/// this much room beyond the plaintext per 16 KiB record, and is told
/// the exact size if that was not enough.
const RECORD_OVERHEAD: usize = 64;

/// The largest plaintext in one record (TLS's 2^14).
const RECORD_PLAINTEXT: usize = 16 << 10;

impl Session {
    pub(crate) fn new(config: Arc<ServerConfig>) -> Result<Session, rustls::Error> {
        Ok(Session {
            conn: UnbufferedServerConnection::new(config)?,
            phase: Phase::Handshaking,
            incoming: None,
            outgoing: None,
        })
    }

    pub(crate) fn phase(&self) -> Phase {
        self.phase
    }

    /// Ciphertext waiting to be sent.
    pub(crate) fn outgoing(&self) -> &[u8] {
        self.outgoing.as_deref().unwrap_or_default()
    }

    /// The socket took `n` bytes of [`outgoing`](Self::outgoing).
    pub(crate) fn sent(&mut self, n: usize) {
        if let Some(out) = self.outgoing.as_mut() {
            out.drain(..n.min(out.len()));
            if out.is_empty() {
                self.outgoing = None;
            }
        }
    }

    /// Whether the session holds any buffer (an idle one holds none).
    pub(crate) fn holds_buffers(&self) -> bool {
        self.incoming.is_some() || self.outgoing.is_some()
    }

    /// Takes `ciphertext` from the socket (empty to go on after
    /// [`Fed::more`]) and writes the plaintext it carries into `plain`,
    /// as much as fits. Handshake records to send, and alerts, go to
    /// [`outgoing`](Self::outgoing). `Err` is fatal: the alert is in
    /// `outgoing`, and the phase is [`Phase::Failed`].
    pub(crate) fn feed(
        &mut self,
        ciphertext: &[u8],
        plain: &mut [u8],
    ) -> Result<Fed, rustls::Error> {
        let mut incoming = self.incoming.take().unwrap_or_default();
        incoming.extend_from_slice(ciphertext);
        let result = self.process(&mut incoming, plain);
        if !incoming.is_empty() {
            self.incoming = Some(incoming);
        }
        if let Err(e) = &result {
            log::debug!("TLS session failed: {e}");
            self.phase = Phase::Failed;
            self.incoming = None;
            self.encode_alert();
        }
        result
    }

    fn process(&mut self, incoming: &mut Vec<u8>, plain: &mut [u8]) -> Result<Fed, rustls::Error> {
        let mut fed = Fed::default();
        loop {
            let UnbufferedStatus { discard, state } = self.conn.process_tls_records(incoming);
            let mut stop = false;
            match state? {
                ConnectionState::EncodeTlsData(mut state) => {
                    let out = self.outgoing.get_or_insert_with(Vec::new);
                    encode(out, |buf| state.encode(buf))?;
                }
                ConnectionState::TransmitTlsData(state) => {
                    // The records wait in `outgoing` for the socket.
                    state.done();
                }
                ConnectionState::ReadTraffic(mut state) => {
                    let room = plain.len() - fed.plaintext;
                    match state.peek_len().map(NonZeroUsize::get) {
                        Some(len) if len <= room => {
                            if let Some(record) = state.next_record() {
                                let payload = record?.payload;
                                plain[fed.plaintext..fed.plaintext + payload.len()]
                                    .copy_from_slice(payload);
                                fed.plaintext += payload.len();
                            }
                        }
                        Some(_) => {
                            fed.more = true;
                            stop = true;
                        }
                        None => {}
                    }
                }
                ConnectionState::BlockedHandshake => stop = true,
                ConnectionState::WriteTraffic(_) => {
                    if self.phase == Phase::Handshaking {
                        self.phase = Phase::Open;
                    }
                    stop = true;
                }
                ConnectionState::PeerClosed => {
                    self.phase = Phase::PeerClosed;
                    stop = true;
                }
                ConnectionState::Closed => {
                    self.phase = Phase::Closed;
                    stop = true;
                }
                _ => {
                    // Early data is not offered (the config does not
                    // enable it), and no other state is known: treat one
                    // as the end of what this call can do.
                    stop = true;
                }
            }
            incoming.drain(..discard);
            if stop {
                // After close_notify, rustls reads no further records:
                // bytes that still come are dropped, not kept forever.
                if matches!(self.phase, Phase::PeerClosed | Phase::Closed) {
                    incoming.clear();
                }
                return Ok(fed);
            }
        }
    }

    /// Encrypts `plaintext` into [`outgoing`](Self::outgoing). Only once
    /// the handshake is done ([`Phase::Open`] or [`Phase::PeerClosed`]);
    /// `false` (nothing taken) before.
    pub(crate) fn encrypt(&mut self, plaintext: &[u8]) -> Result<bool, rustls::Error> {
        let Some(mut write) = write_traffic(&mut self.conn, self.phase)? else {
            return Ok(false);
        };
        let out = self.outgoing.get_or_insert_with(Vec::new);
        for chunk in plaintext.chunks(RECORD_PLAINTEXT) {
            let start = out.len();
            out.resize(start + chunk.len() + RECORD_OVERHEAD, 0);
            let n = match write.encrypt(chunk, &mut out[start..]) {
                Ok(n) => n,
                Err(EncryptError::InsufficientSize(e)) => {
                    out.resize(start + e.required_size, 0);
                    write
                        .encrypt(chunk, &mut out[start..])
                        .map_err(encrypt_error)?
                }
                Err(e) => return Err(encrypt_error(e)),
            };
            out.truncate(start + n);
        }
        Ok(true)
    }

    /// Queues close_notify in [`outgoing`](Self::outgoing) (once; not
    /// possible before the handshake is done: `false` then).
    pub(crate) fn close_notify(&mut self) -> Result<bool, rustls::Error> {
        let Some(mut write) = write_traffic(&mut self.conn, self.phase)? else {
            return Ok(false);
        };
        let out = self.outgoing.get_or_insert_with(Vec::new);
        let start = out.len();
        out.resize(start + RECORD_OVERHEAD, 0);
        let n = write
            .queue_close_notify(&mut out[start..])
            .map_err(encrypt_error)?;
        out.truncate(start + n);
        if out.is_empty() {
            self.outgoing = None;
        }
        Ok(true)
    }

    /// After an error, rustls has the alert to send: encode it.
    fn encode_alert(&mut self) {
        if let Ok(ConnectionState::EncodeTlsData(mut state)) =
            self.conn.process_tls_records(&mut []).state
        {
            let out = self.outgoing.get_or_insert_with(Vec::new);
            let _ = encode(out, |buf| state.encode(buf));
        }
    }
}

/// The state that lets us encrypt, if the session is in it.
fn write_traffic(
    conn: &mut UnbufferedServerConnection,
    phase: Phase,
) -> Result<Option<WriteTraffic<'_, ServerConnectionData>>, rustls::Error> {
    if !matches!(phase, Phase::Open | Phase::PeerClosed) {
        return Ok(None);
    }
    match conn.process_tls_records(&mut []).state? {
        ConnectionState::WriteTraffic(write) => Ok(Some(write)),
        _ => Ok(None),
    }
}

/// Encodes one handshake record at the end of `out`, growing it as
/// rustls says.
fn encode(
    out: &mut Vec<u8>,
    mut encode: impl FnMut(&mut [u8]) -> Result<usize, EncodeError>,
) -> Result<(), rustls::Error> {
    let start = out.len();
    out.resize(start + RECORD_PLAINTEXT + RECORD_OVERHEAD, 0);
    let n = match encode(&mut out[start..]) {
        Ok(n) => n,
        Err(EncodeError::InsufficientSize(e)) => {
            out.resize(start + e.required_size, 0);
            encode(&mut out[start..]).map_err(|e| rustls::Error::General(e.to_string()))?
        }
        Err(e) => return Err(rustls::Error::General(e.to_string())),
    };
    out.truncate(start + n);
    Ok(())
}

fn encrypt_error(e: EncryptError) -> rustls::Error {
    rustls::Error::General(e.to_string())
}

#[cfg(test)]
mod tests;
