//! The session against a rustls client, bytes passed by hand: the
//! handshake, data both ways (in records split at every byte, and larger
//! than one record), plaintext held back when there is no room,
//! close_notify told from a bare end, garbage refused with an alert, and
//! no buffer held once idle.

use std::io::{Read, Write};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig};

use super::{Phase, Session, Transport};

fn configs(tls12: bool) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cert = rcgen::generate_simple_self_signed(vec!["session.test".into()]).unwrap();
    let der: CertificateDer<'static> = cert.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der()));
    let versions: &[&rustls::SupportedProtocolVersion] = if tls12 {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13]
    };
    let server = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(versions)
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(der).unwrap();
    let client = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

/// A client and a server session, and what the server decrypted.
struct Pair {
    client: ClientConnection,
    server: Session,
    plaintext: Vec<u8>,
    /// What the client decrypted.
    answer: Vec<u8>,
    /// Hand the server its ciphertext this many bytes at a time.
    step: usize,
}

impl Pair {
    fn new(tls12: bool, step: usize) -> Pair {
        let (server, client) = configs(tls12);
        let name = ServerName::try_from("session.test").unwrap();
        Pair {
            client: ClientConnection::new(client, name).unwrap(),
            server: Session::new(server).unwrap(),
            plaintext: Vec::new(),
            answer: Vec::new(),
            step,
        }
    }

    /// Client to server: what the client wants to send, `step` bytes a
    /// feed, the plaintext collected with 64 KiB of room.
    fn send_to_server(&mut self) -> Result<(), rustls::Error> {
        let mut wire = Vec::new();
        while self.client.wants_write() {
            self.client.write_tls(&mut wire).unwrap();
        }
        let mut room = vec![0; 64 << 10];
        for piece in wire.chunks(self.step.max(1)) {
            let mut fed = self.server.feed(piece, &mut room)?;
            self.plaintext.extend_from_slice(&room[..fed.plaintext]);
            while fed.more {
                fed = self.server.feed(&[], &mut room)?;
                self.plaintext.extend_from_slice(&room[..fed.plaintext]);
            }
        }
        Ok(())
    }

    /// Server to client: all of the server's ciphertext, read and
    /// decrypted a piece at a time (the client's buffers are bounded).
    fn send_to_client(&mut self) {
        let out = self.server.outgoing().to_vec();
        self.server.sent(out.len());
        let mut bytes = &out[..];
        loop {
            if !bytes.is_empty() {
                self.client.read_tls(&mut bytes).unwrap();
            }
            self.client.process_new_packets().unwrap();
            let _ = self.client.reader().read_to_end(&mut self.answer);
            if bytes.is_empty() {
                return;
            }
        }
    }

    fn handshake(&mut self) {
        for _ in 0..10 {
            self.send_to_server().unwrap();
            self.send_to_client();
            if !self.client.is_handshaking() && self.server.phase() == Phase::Open {
                return;
            }
        }
        panic!("no handshake: {:?}", self.server.phase());
    }

    /// What the client has decrypted so far, taken.
    fn client_reads(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.answer)
    }
}

#[test]
fn a_handshake_then_data_both_ways_with_either_version() {
    for tls12 in [false, true] {
        let mut pair = Pair::new(tls12, usize::MAX);
        pair.handshake();
        pair.client.writer().write_all(b"ping").unwrap();
        pair.send_to_server().unwrap();
        assert_eq!(pair.plaintext, b"ping", "tls12={tls12}");
        assert!(pair.server.encrypt(b"pong").unwrap());
        pair.send_to_client();
        assert_eq!(pair.client_reads(), b"pong", "tls12={tls12}");
        assert!(!pair.server.holds_buffers(), "idle: no buffer held");
    }
}

#[test]
fn ciphertext_split_at_every_byte_gives_the_same_plaintext() {
    let mut pair = Pair::new(false, 1);
    pair.handshake();
    let message: Vec<u8> = (0..40_000u32).map(|i| i as u8).collect();
    pair.client.writer().write_all(&message).unwrap();
    pair.send_to_server().unwrap();
    assert!(pair.plaintext == message);
    assert!(!pair.server.holds_buffers());
}

#[test]
fn a_large_answer_goes_in_many_records() {
    let mut pair = Pair::new(false, usize::MAX);
    pair.handshake();
    let answer: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    assert!(pair.server.encrypt(&answer).unwrap());
    pair.send_to_client();
    assert!(pair.client_reads() == answer);
}

#[test]
fn plaintext_that_does_not_fit_waits_for_room_and_does_not_block_writing() {
    let mut pair = Pair::new(false, usize::MAX);
    pair.handshake();
    // Two records' worth, offered 1,000 bytes of room a time.
    let message: Vec<u8> = (0..20_000u32).map(|i| i as u8).collect();
    pair.client.writer().write_all(&message).unwrap();
    let mut wire = Vec::new();
    while pair.client.wants_write() {
        pair.client.write_tls(&mut wire).unwrap();
    }
    let mut room = vec![0; 1000];
    let fed = pair.server.feed(&wire, &mut room).unwrap();
    assert_eq!(fed.plaintext, 1000);
    assert!(fed.more, "the rest waits for room");
    let mut got = room[..1000].to_vec();
    // The handler answers before it has read everything: writing is not
    // blocked by plaintext waiting.
    assert!(pair.server.encrypt(b"answer").unwrap());
    let mut fed = fed;
    while fed.more {
        fed = pair.server.feed(&[], &mut room).unwrap();
        assert!(
            fed.plaintext > 0,
            "stuck with {} of {}",
            got.len(),
            message.len()
        );
        got.extend_from_slice(&room[..fed.plaintext]);
    }
    assert_eq!(got, message);
    pair.send_to_client();
    assert_eq!(pair.client_reads(), b"answer");
    assert!(!pair.server.holds_buffers());
}

#[test]
fn after_both_close_notifies_the_session_is_closed_and_sends_nothing() {
    let mut pair = Pair::new(false, usize::MAX);
    pair.handshake();
    pair.client.send_close_notify();
    pair.send_to_server().unwrap();
    assert_eq!(pair.server.phase(), Phase::PeerClosed);
    assert!(pair.server.close_notify().unwrap());
    assert_eq!(pair.server.phase(), Phase::Closed);
    assert!(
        !pair.server.encrypt(b"late").unwrap(),
        "nothing after our close_notify"
    );
    assert!(!pair.server.close_notify().unwrap(), "once");
}

#[test]
fn a_handshake_message_larger_than_allowed_fails_without_a_panic() {
    let (server, _) = configs(false);
    let mut session = Session::new(server).unwrap();
    let mut room = vec![0; 1024];
    // A handshake record whose message says it is 65,536 bytes long.
    let record = [0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x01, 0x00, 0x00];
    assert!(session.feed(&record, &mut room).is_err());
    assert_eq!(session.phase(), Phase::Failed);
    assert!(!session.encrypt(b"x").unwrap());
    assert!(
        session.feed(b"more", &mut room).is_err(),
        "failed stays failed"
    );
}

#[test]
fn a_handshake_message_in_endless_tiny_records_is_refused_at_the_cap() {
    let (server, _) = configs(false);
    let mut session = Session::new(server).unwrap();
    let mut room = vec![0; 1024];
    // A ClientHello of 65,535 bytes, one byte a record: rustls joins the
    // fragments in place, so every record stays until the message is
    // whole. The session refuses to hold that much.
    let message = [0x01u8, 0x00, 0xff, 0xff]
        .into_iter()
        .chain(std::iter::repeat(0));
    let mut refused = false;
    for (i, byte) in message.take(40_000).enumerate() {
        match session.feed(&[0x16, 0x03, 0x01, 0x00, 0x01, byte], &mut room) {
            Ok(_) => {}
            Err(e) => {
                assert!(
                    i * 6 > super::MAX_INCOMING / 2,
                    "refused early, at record {i}: {e}"
                );
                refused = true;
                break;
            }
        }
    }
    assert!(refused, "a never-ending handshake message is refused");
    assert!(!session.holds_buffers() || !session.outgoing().is_empty());
}
#[test]
fn close_notify_is_told_from_a_bare_end() {
    let mut pair = Pair::new(false, usize::MAX);
    pair.handshake();
    pair.client.writer().write_all(b"last").unwrap();
    pair.client.send_close_notify();
    pair.send_to_server().unwrap();
    assert_eq!(pair.plaintext, b"last");
    assert_eq!(pair.server.phase(), Phase::PeerClosed);
    // We may still answer, then close ours.
    assert!(pair.server.encrypt(b"bye").unwrap());
    assert!(pair.server.close_notify().unwrap());
    pair.send_to_client();
    assert_eq!(pair.client_reads(), b"bye");
    assert!(pair.client.process_new_packets().unwrap().peer_has_closed());
    // A session that saw no close_notify stays Open: an end of stream
    // then is truncation, for the transport to report.
    let mut other = Pair::new(false, usize::MAX);
    other.handshake();
    assert_eq!(other.server.phase(), Phase::Open);
}

#[test]
fn garbage_instead_of_a_client_hello_fails_with_an_alert() {
    let (server, _) = configs(false);
    let mut session = Session::new(server).unwrap();
    let mut room = vec![0; 1024];
    let garbage = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    assert!(session.feed(garbage, &mut room).is_err());
    assert_eq!(session.phase(), Phase::Failed);
    // An alert record: content type 21.
    assert_eq!(
        session.outgoing().first(),
        Some(&21),
        "{:?}",
        session.outgoing()
    );
}

#[test]
fn nothing_can_be_sent_before_the_handshake() {
    let (server, _) = configs(false);
    let mut session = Session::new(server).unwrap();
    assert!(!session.encrypt(b"too early").unwrap());
    assert!(!session.close_notify().unwrap());
    assert!(!session.holds_buffers());
}

#[test]
fn many_tiny_records_in_one_read_give_every_byte_in_order() {
    // 3,000 one-byte records arrive together: each is passed over with a
    // cursor (a memmove per record would be quadratic), and the bytes
    // come out whole and in order, across calls when room runs out.
    let mut pair = Pair::new(false, usize::MAX);
    pair.handshake();
    let sent: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    let mut wire = Vec::new();
    for (i, byte) in sent.iter().enumerate() {
        pair.client
            .writer()
            .write_all(std::slice::from_ref(byte))
            .unwrap();
        if i % 500 == 499 {
            while pair.client.wants_write() {
                pair.client.write_tls(&mut wire).unwrap();
            }
        }
    }
    assert!(wire.len() > 3000 * 22, "one record per byte");
    let mut got = Vec::new();
    let mut room = [0u8; 1000];
    let mut fed = pair.server.feed(&wire, &mut room).unwrap();
    got.extend_from_slice(&room[..fed.plaintext]);
    while fed.more {
        fed = pair.server.feed(&[], &mut room).unwrap();
        got.extend_from_slice(&room[..fed.plaintext]);
    }
    assert!(got == sent, "{} bytes differ", got.len());
    assert!(!pair.server.holds_buffers() || !pair.server.outgoing().is_empty());
}
