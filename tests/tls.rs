//! TLS under the handler, over real sockets (feature `tls`): a rustls
//! client and `openssl s_client` against the echoing probe. The handler
//! sees plaintext only; the transport does the handshake, its deadline,
//! close_notify both ways, and fails one connection at a time.
#![cfg(feature = "tls")]

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use evloop::tls::TlsConfig;
use evloop::{CloseReason, Config, TlsFailure};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use common::*;

/// A directory of its own for one test's certificates, removed at the
/// end.
struct Certs {
    dir: PathBuf,
}

/// One certificate: its files and its DER (a client's root).
struct Cert {
    cert: PathBuf,
    key: PathBuf,
    der: CertificateDer<'static>,
}

impl Certs {
    fn new(name: &str) -> Certs {
        let dir = std::env::temp_dir().join(format!("evloop-tls-it-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Certs { dir }
    }

    /// A self-signed ECDSA P-256 certificate for `name`, with `name` as
    /// its common name too (so `openssl s_client` shows which came).
    fn cert(&self, name: &str) -> Cert {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        let (c, k) = (
            self.dir.join(format!("{name}.crt")),
            self.dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        Cert {
            cert: c,
            key: k,
            der: cert.der().clone(),
        }
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn server_tls(cert: &Cert, alpn: &[&str]) -> Arc<rustls::ServerConfig> {
    TlsConfig::new()
        .certificate(&cert.cert, &cert.key)
        .unwrap()
        .alpn(alpn.iter().copied())
        .build()
        .unwrap()
}

/// A client that trusts `cert` alone, speaking `version` (or either).
fn client_tls(
    cert: &Cert,
    version: Option<&'static rustls::SupportedProtocolVersion>,
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(cert.der.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = match version {
        Some(v) => vec![v],
        None => vec![&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// A TLS client connected to `addr` as `name`, handshake done.
fn connect(addr: SocketAddr, config: &Arc<ClientConfig>, name: &str) -> Tls {
    let tcp = client(addr);
    let server_name = ServerName::try_from(name.to_string()).unwrap();
    let conn = ClientConnection::new(Arc::clone(config), server_name).unwrap();
    let mut tls = StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).expect("handshake");
    }
    tls
}

fn echo(tls: &mut Tls, msg: &[u8]) {
    tls.write_all(msg).unwrap();
    tls.flush().unwrap();
    let mut back = vec![0; msg.len()];
    tls.read_exact(&mut back).expect("echo");
    assert!(back == msg, "echo differs");
}

/// The first bytes a real client sends: its ClientHello record.
fn client_hello(config: &Arc<ClientConfig>) -> Vec<u8> {
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = ClientConnection::new(Arc::clone(config), name).unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    hello
}

#[test]
fn both_versions_echo_byte_exact_and_the_handler_sees_what_was_agreed() {
    let certs = Certs::new("echo");
    let cert = certs.cert("localhost");
    let server = Server::start_tls(Config::default(), server_tls(&cert, &["echo/1"]), false);
    for (version, expected) in [
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
    ] {
        let mut tls = connect(server.addr, &client_tls(&cert, Some(version)), "localhost");
        echo(&mut tls, b"hello");
        // Many records each way, in round trips that fit the socket
        // buffers: 2 MiB in 64 KiB steps, then one 256 KiB message.
        for step in 0..32 {
            echo(&mut tls, &pattern(step, 64 << 10));
        }
        echo(&mut tls, &pattern(99, 256 << 10));
        let conn = *server.record().opened.last().unwrap();
        let info = server
            .exec(move |cx, _| cx.tls(conn))
            .expect("a TLS connection");
        assert_eq!(info.version, Some(expected));
        assert!(info.cipher_suite.is_some());
        assert_eq!(info.alpn, None, "the client offered no ALPN");
        assert!(!info.peer_closed);
    }
    assert_eq!(server.stats().tls_handshakes, 2);
    // A plain connection is not TLS to the handler either.
    let stats = server.stats();
    assert_eq!(stats.tls_failed.iter().sum::<u64>(), 0, "{stats}");
}

#[test]
fn close_notify_is_told_from_a_bare_fin_and_ours_is_sent() {
    let certs = Certs::new("close");
    let cert = certs.cert("localhost");
    let server = Server::start_tls(Config::default(), server_tls(&cert, &[]), false);
    let config = client_tls(&cert, None);

    // The client ends cleanly: close_notify, then FIN.
    let mut tls = connect(server.addr, &config, "localhost");
    echo(&mut tls, b"one");
    tls.conn.send_close_notify();
    tls.flush().unwrap();
    tls.sock.shutdown(Shutdown::Write).unwrap();
    // The probe closes on the peer's end: our close_notify comes back,
    // so rustls reads a clean end (a bare FIN would be an error).
    let mut rest = Vec::new();
    tls.read_to_end(&mut rest)
        .expect("a clean end: close_notify came");
    server.wait_for("the first close", |r| r.closed.len() == 1);
    assert_eq!(server.stats().tls_truncated, 0);

    // The client ends with a bare FIN: truncation, counted; we still
    // answer with close_notify.
    let mut tls = connect(server.addr, &config, "localhost");
    echo(&mut tls, b"two");
    tls.sock.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    tls.read_to_end(&mut rest)
        .expect("a clean end: close_notify came");
    server.wait_for("the second close", |r| r.closed.len() == 2);
    assert_eq!(server.stats().tls_truncated, 1);
    let record = server.record();
    assert!(record
        .closed
        .iter()
        .all(|&(_, reason)| reason == CloseReason::PeerClosed));
}

#[test]
fn a_client_that_says_nothing_is_closed_at_the_handshake_timeout_unheard() {
    let certs = Certs::new("timeout");
    let cert = certs.cert("localhost");
    let config = Config {
        handshake_timeout: Duration::from_secs(10),
        ..Config::default()
    };
    let server = Server::start_tls(config, server_tls(&cert, &[]), true);
    let mut silent = client(server.addr);
    // One that trickles its ClientHello a byte at a time does not move
    // the deadline.
    let hello = client_hello(&client_tls(&cert, None));
    let mut trickle = client(server.addr);
    trickle.write_all(&hello[..3]).unwrap();
    let until = std::time::Instant::now() + PATIENCE;
    while server.stats().active < 2 {
        assert!(std::time::Instant::now() < until, "not accepted");
        std::thread::sleep(Duration::from_millis(5));
    }
    server.advance(Duration::from_secs(6));
    trickle.write_all(&hello[3..4]).unwrap();
    server.exec(|_, _| ());
    server.advance(Duration::from_secs(3));
    assert_eq!(server.stats().active, 2, "closed before the deadline");
    server.advance(Duration::from_secs(2));
    let stats = server.stats();
    assert_eq!(stats.active, 0, "{stats}");
    assert_eq!(stats.tls_failed_for(TlsFailure::Timeout), 2, "{stats}");
    assert_eq!(
        stats.closed_for(CloseReason::Tls(TlsFailure::Timeout)),
        2,
        "{stats}"
    );
    for s in [&mut silent, &mut trickle] {
        let mut buf = [0; 16];
        assert!(matches!(s.read(&mut buf), Ok(0) | Err(_)), "still open");
    }
    // The handler never heard of either: no on_open, no on_close.
    let record = server.record();
    assert!(record.opened.is_empty() && record.closed.is_empty());
}

#[test]
fn garbage_for_a_client_hello_gets_an_alert_and_closes_only_that_connection() {
    let certs = Certs::new("garbage");
    let cert = certs.cert("localhost");
    let server = Server::start_tls(Config::default(), server_tls(&cert, &[]), false);
    let config = client_tls(&cert, None);
    let mut good = connect(server.addr, &config, "localhost");

    let mut bad = client(server.addr);
    bad.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = bad.read_to_end(&mut answer);
    assert_eq!(answer.first(), Some(&0x15), "an alert record: {answer:?}");

    echo(&mut good, b"still here");
    let stats = server.stats();
    assert_eq!(stats.tls_failed_for(TlsFailure::Protocol), 1, "{stats}");
    assert_eq!(stats.active, 1, "{stats}");
}

#[test]
fn a_reset_mid_handshake_closes_only_that_connection() {
    let certs = Certs::new("reset");
    let cert = certs.cert("localhost");
    let server = Server::start_tls(Config::default(), server_tls(&cert, &[]), false);
    let config = client_tls(&cert, None);
    let hello = client_hello(&config);
    let cut = client(server.addr);
    (&cut).write_all(&hello[..hello.len() / 2]).unwrap();
    let until = std::time::Instant::now() + PATIENCE;
    while server.stats().buffered_bytes == 0 {
        assert!(
            std::time::Instant::now() < until,
            "the half record is not held"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // RST: linger 0, then close.
    socket2::SockRef::from(&cut)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(cut);
    let until = std::time::Instant::now() + PATIENCE;
    while server.stats().closed_for(CloseReason::Reset) == 0 {
        assert!(std::time::Instant::now() < until, "the reset is not seen");
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut good = connect(server.addr, &config, "localhost");
    echo(&mut good, b"fine");
    let stats = server.stats();
    assert_eq!(stats.active, 1, "{stats}");
    // The half record's bytes were counted, and freed with it.
    assert_eq!(stats.buffered_bytes, 0, "{stats}");
    assert!(
        server.record().closed.is_empty(),
        "the handler never knew it"
    );
}

#[test]
fn an_idle_tls_connection_holds_no_buffer() {
    let certs = Certs::new("idle");
    let cert = certs.cert("localhost");
    let server = Server::start_tls(Config::default(), server_tls(&cert, &[]), false);
    let config = client_tls(&cert, None);
    let mut conns: Vec<Tls> = (0..4)
        .map(|_| connect(server.addr, &config, "localhost"))
        .collect();
    for (i, tls) in conns.iter_mut().enumerate() {
        echo(tls, &pattern(i as u64, 100_000));
    }
    let stats = server.stats();
    assert_eq!(stats.buffered_bytes, 0, "{stats}");
    assert_eq!(stats.buffers_in_use, 0, "{stats}");
}

#[test]
fn files_and_owned_buffers_are_encrypted_in_order() {
    let certs = Certs::new("file");
    let cert = certs.cert("localhost");
    let server = Server::start_tls(Config::default(), server_tls(&cert, &[]), false);
    let mut tls = connect(server.addr, &client_tls(&cert, None), "localhost");
    echo(&mut tls, b"ready");
    let path = certs.dir.join("payload");
    let body = pattern(7, 300_000);
    std::fs::write(&path, &body).unwrap();
    let conn = server.record().opened[0];
    let file = std::fs::File::open(&path).unwrap();
    server.exec(move |cx, _| {
        cx.write(conn, b"<").unwrap();
        cx.send_file(conn, file, 1000, 200_000).unwrap();
        cx.write_owned(conn, b"|owned|".to_vec()).unwrap();
        cx.write(conn, b">").unwrap();
    });
    let mut expected = b"<".to_vec();
    expected.extend_from_slice(&body[1000..201_000]);
    expected.extend_from_slice(b"|owned|>");
    let mut got = vec![0; expected.len()];
    tls.read_exact(&mut got).unwrap();
    assert!(got == expected, "the stream differs");
}

#[test]
fn a_thousand_tls_connections_echo_byte_exact() {
    let want = 1000;
    // Each connection is two descriptors in this process (client and
    // server), plus the test harness's own.
    let limit = fd_limit() as usize;
    let n = want.min(limit.saturating_sub(200) / 2);
    if n < want {
        eprintln!("open-file limit {limit}: scaled down to {n} connections");
    }
    let certs = Certs::new("thousand");
    let cert = certs.cert("localhost");
    let server = Server::start_tls(Config::default(), server_tls(&cert, &[]), false);
    let config = client_tls(&cert, None);
    let mut conns: Vec<Tls> = (0..n)
        .map(|_| connect(server.addr, &config, "localhost"))
        .collect();
    for (i, tls) in conns.iter_mut().enumerate() {
        tls.write_all(&pattern(i as u64, 1000)).unwrap();
        tls.flush().unwrap();
    }
    for (i, tls) in conns.iter_mut().enumerate() {
        let mut back = vec![0; 1000];
        tls.read_exact(&mut back).unwrap();
        assert!(back == pattern(i as u64, 1000), "connection {i} differs");
    }
    let stats = server.stats();
    assert_eq!(stats.tls_handshakes, n as u64, "{stats}");
    assert_eq!(stats.active, n, "{stats}");
}

/// `openssl s_client` against the reactor: the handshake, ALPN, SNI
/// choosing the certificate, and close_notify at its end.
#[test]
fn openssl_s_client_agrees_alpn_and_sni_and_ends_cleanly() {
    if Command::new("openssl").arg("version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "openssl is not installed (CI installs it)"
        );
        eprintln!("skipped: openssl not installed");
        return;
    }
    let certs = Certs::new("s_client");
    let a = certs.cert("a.test");
    let b = certs.cert("b.test");
    let tls = TlsConfig::new()
        .certificate(&a.cert, &a.key)
        .unwrap()
        .certificate_for(["b.test"], &b.cert, &b.key)
        .unwrap()
        .alpn(["h2", "http/1.1"])
        .build()
        .unwrap();
    let server = Server::start_tls(Config::default(), tls, false);
    for (name, cert, version, alpn) in [
        ("b.test", &b, "-tls1_3", "http/1.1"),
        ("a.test", &a, "-tls1_2", "h2"),
    ] {
        let out = s_client(server.addr, name, &cert.cert, version, alpn);
        assert!(out.contains(&format!("ALPN protocol: {alpn}")), "{out}");
        assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
        let subject = out
            .lines()
            .find(|l| l.starts_with("subject="))
            .unwrap_or_default();
        assert!(subject.contains(name), "{name}: {subject}");
    }
    server.wait_for("both closed", |r| r.closed.len() == 2);
    let stats = server.stats();
    // s_client ends with close_notify when its input ends.
    assert_eq!(stats.tls_truncated, 0, "{stats}");
    assert_eq!(stats.tls_handshakes, 2, "{stats}");
}

/// Runs `openssl s_client`, sends a line, waits for its echo, then ends
/// its input; returns what it printed.
fn s_client(
    addr: SocketAddr,
    name: &str,
    ca: &std::path::Path,
    version: &str,
    alpn: &str,
) -> String {
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-servername",
            name,
        ])
        .args(["-CAfile", ca.to_str().unwrap(), version, "-alpn", alpn])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_client");
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&all).contains("ping-from-s_client") {
                let _ = tx.send(());
            }
        }
        String::from_utf8_lossy(&all).into_owned()
    });
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"ping-from-s_client\n").unwrap();
    // What it sends is not printed; what comes back is: the echo.
    let echoed = rx.recv_timeout(PATIENCE);
    drop(stdin);
    let status = child.wait().unwrap();
    let out = reader.join().unwrap();
    assert!(status.success(), "s_client failed: {out}");
    assert!(echoed.is_ok(), "no echo: {out}");
    out
}

#[test]
fn with_mutual_tls_the_handler_reads_the_clients_subject() {
    let certs = Certs::new("mtls");
    let server_cert = certs.cert("localhost");
    // A CA, and a client certificate it signed.
    let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let ca_path = certs.dir.join("ca.pem");
    std::fs::write(&ca_path, ca_cert.pem()).unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Example, Inc.");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "alice");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = params.signed_by(&key, &ca_cert, &ca_key).unwrap();

    let tls = TlsConfig::new()
        .certificate(&server_cert.cert, &server_cert.key)
        .unwrap()
        .client_ca(&ca_path)
        .unwrap()
        .build()
        .unwrap();
    let server = Server::start_tls(Config::default(), tls, false);
    let mut roots = RootCertStore::empty();
    roots.add(server_cert.der.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client_key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    let with_cert = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![client_cert.der().clone()], client_key)
        .unwrap();
    let mut tls = connect(server.addr, &Arc::new(with_cert), "localhost");
    echo(&mut tls, b"signed");
    let conn = server.record().opened[0];
    let info = server.exec(move |cx, _| cx.tls(conn)).unwrap();
    assert_eq!(
        info.peer_subject.as_deref(),
        Some("CN=alice,O=Example\\, Inc.")
    );

    // Without a certificate: the handshake fails, the handler never hears.
    let tcp = client(server.addr);
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(client_tls(&server_cert, None), name).unwrap();
    let mut bare = StreamOwned::new(conn, tcp);
    let refused = bare
        .write_all(b"x")
        .and_then(|()| bare.flush())
        .and_then(|()| bare.read(&mut [0; 8]));
    assert!(refused.is_err() || refused.is_ok_and(|n| n == 0));
    let until = std::time::Instant::now() + PATIENCE;
    while server.stats().tls_failed_for(TlsFailure::Certificate) == 0 {
        assert!(std::time::Instant::now() < until, "not refused");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(server.record().opened.len(), 1);
}

#[test]
fn an_outbound_tls_connection_verifies_the_server_and_sends_what_was_queued_before() {
    let certs = Certs::new("outbound");
    let cert = certs.cert("localhost");
    let server = Server::start_tls(Config::default(), server_tls(&cert, &[]), false);
    let addr = server.addr;
    let roots = evloop::tls::client_config(&cert.cert).unwrap();
    // From the same reactor: the client side is quiet (no echo), the
    // accepted side echoes.
    let conn = server.exec(move |cx, rec| {
        let conn = cx.connect(addr).unwrap();
        rec.quiet.insert(conn);
        cx.start_tls(conn, roots, "localhost").unwrap();
        // Queued while connecting: sent encrypted after the handshake.
        cx.write(conn, b"queued early|").unwrap();
        assert_eq!(cx.state(conn), Some(evloop::State::Connecting));
        conn
    });
    server.wait_for("the client side to open", |r| r.opened.contains(&conn));
    server.exec(move |cx, _| cx.write(conn, b"after").unwrap());
    server.wait_for("the echo", |r| {
        r.received.get(&conn).map(Vec::as_slice) == Some(b"queued early|after")
    });
    let info = server.exec(move |cx, _| cx.tls(conn)).unwrap();
    assert_eq!(info.version, Some(rustls::ProtocolVersion::TLSv1_3));
    assert_eq!(server.stats().tls_handshakes, 2, "both ends counted");

    // A server whose certificate the roots do not cover: the client side
    // fails, and its handler hears why (it made the connection).
    let other = certs.cert("other");
    let wrong = evloop::tls::client_config(&other.cert).unwrap();
    let failed = server.exec(move |cx, _| {
        let conn = cx.connect(addr).unwrap();
        cx.start_tls(conn, wrong, "localhost").unwrap();
        conn
    });
    server.wait_for("the refused connect", |r| r.reason_of(failed).is_some());
    assert_eq!(
        server.record().reason_of(failed),
        Some(CloseReason::Tls(TlsFailure::Certificate))
    );
    // TLS starts only before the connect finishes, and only once.
    let roots = evloop::tls::client_config(&cert.cert).unwrap();
    let err = server.exec(move |cx, _| cx.start_tls(conn, roots, "localhost").unwrap_err());
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

#[test]
fn lines_before_close_notify_are_all_answered_even_past_max_input() {
    // A line protocol with a small input limit: the peer sends far more
    // than the limit in whole lines, then close_notify, all at once. Every
    // line is answered before the end is heard; none is lost in the
    // session behind the close.
    let certs = Certs::new("lines");
    let cert = certs.cert("localhost");
    let config = Config {
        max_input: 4096,
        ..Config::default()
    };
    let server = Server::start_tls_lines(config, server_tls(&cert, &[]), false, true);
    let mut tls = connect(server.addr, &client_tls(&cert, None), "localhost");
    let mut sent = Vec::new();
    for i in 0..1500 {
        sent.extend_from_slice(format!("line {i:05} {}\n", "x".repeat(i % 90)).as_bytes());
    }
    tls.write_all(&sent).unwrap();
    tls.conn.send_close_notify();
    tls.flush().unwrap();
    let mut back = Vec::new();
    tls.read_to_end(&mut back).expect("a clean end");
    assert_eq!(back.len(), sent.len(), "lines were lost");
    assert!(back == sent);
    assert_eq!(server.stats().tls_truncated, 0);
}

#[test]
fn the_buffer_budget_closes_tls_connections_parking_partial_records() {
    // Each connection finishes its handshake, then sends most of one
    // record and stops: its session holds the piece. Past max_buffered,
    // the largest holders are closed, as for plain connections.
    let certs = Certs::new("budget");
    let cert = certs.cert("localhost");
    let max = 200_000;
    let config = Config {
        max_buffered: max,
        ..Config::default()
    };
    let server = Server::start_tls(config, server_tls(&cert, &[]), false);
    let client_config = client_tls(&cert, None);
    let mut conns = Vec::new();
    for _ in 0..30 {
        let mut tls = connect(server.addr, &client_config, "localhost");
        echo(&mut tls, b"up");
        // A record header promising 16 KiB, and 10,000 bytes of it.
        let mut piece = vec![0x17, 0x03, 0x03, 0x40, 0x00];
        piece.extend_from_slice(&[0u8; 10_000]);
        tls.sock.write_all(&piece).unwrap();
        conns.push(tls);
    }
    let until = std::time::Instant::now() + PATIENCE;
    loop {
        let stats = server.stats();
        if stats.closed_for(CloseReason::OverBudget) > 0 && stats.buffered_bytes <= max {
            break;
        }
        assert!(std::time::Instant::now() < until, "not shed: {stats}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn shutdown_closes_a_handshake_that_never_began_without_waiting() {
    let certs = Certs::new("shutdown");
    let cert = certs.cert("localhost");
    let server = Server::start_tls(Config::default(), server_tls(&cert, &[]), false);
    let _silent = client(server.addr);
    let until = std::time::Instant::now() + PATIENCE;
    while server.stats().active == 0 {
        assert!(std::time::Instant::now() < until, "not accepted");
        std::thread::sleep(Duration::from_millis(5));
    }
    let started = std::time::Instant::now();
    let reactor = server.stop();
    let stats = reactor.stats();
    assert_eq!(stats.shutdown_cut, 0, "{stats}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "waited for the deadline"
    );
}

#[test]
fn a_peer_that_does_not_read_is_held_by_the_water_marks_over_tls_too() {
    // The client sends 8 MiB without reading the echo. The server stops
    // reading once its plaintext output passes the high-water mark, so
    // what it holds stays bounded; then the client reads, and every byte
    // comes back.
    let certs = Certs::new("backpressure");
    let cert = certs.cert("localhost");
    let server = Server::start_tls(Config::default(), server_tls(&cert, &[]), false);
    let tls = connect(server.addr, &client_tls(&cert, None), "localhost");
    let StreamOwned { mut conn, sock } = tls;
    let total = 8 << 20;
    let sent = pattern(5, total);
    // Encrypted up front, so one thread can write while this one reads.
    let mut wire = Vec::new();
    for chunk in sent.chunks(16 << 10) {
        let mut rest = chunk;
        while !rest.is_empty() {
            let n = conn.writer().write(rest).unwrap();
            rest = &rest[n..];
            while conn.wants_write() {
                conn.write_tls(&mut wire).unwrap();
            }
        }
    }
    let mut writer = sock.try_clone().unwrap();
    let sender = std::thread::spawn(move || writer.write_all(&wire));
    std::thread::sleep(Duration::from_millis(300));
    let opened = server.record().opened[0];
    let (waiting, stats) = server.exec(move |cx, _| (cx.output_len(opened), cx.stats()));
    let high = evloop::DEFAULT_HIGH_WATER;
    assert!(
        waiting.unwrap_or(0) <= high + (64 << 10),
        "output {waiting:?} past the high-water mark"
    );
    assert!(stats.buffered_bytes < 1 << 20, "{stats}");
    // Now read it all back.
    let mut sock = sock;
    let mut back = Vec::with_capacity(total);
    while back.len() < total {
        conn.read_tls(&mut sock).expect("read");
        conn.process_new_packets().expect("records");
        let _ = conn.reader().read_to_end(&mut back);
    }
    sender.join().unwrap().unwrap();
    assert!(back == sent, "the echo differs");
    assert!(
        server.record().drains > 0,
        "reading never paused and resumed"
    );
}

#[test]
fn a_second_connection_resumes_its_session() {
    let certs = Certs::new("resume");
    let cert = certs.cert("localhost");
    let server = Server::start_tls(Config::default(), server_tls(&cert, &[]), false);
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let config = client_tls(&cert, Some(version));
        let mut first = connect(server.addr, &config, "localhost");
        echo(&mut first, b"first"); // the tickets come before the echo
        let mut second = connect(server.addr, &config, "localhost");
        echo(&mut second, b"second");
        let conn = *server.record().opened.last().unwrap();
        let info = server.exec(move |cx, _| cx.tls(conn)).unwrap();
        assert!(info.resumed, "{version:?} did not resume");
    }
}

#[test]
fn a_truncated_record_then_fin_ends_only_that_connection_as_truncated() {
    let certs = Certs::new("truncated");
    let cert = certs.cert("localhost");
    let server = Server::start_tls(Config::default(), server_tls(&cert, &[]), false);
    let config = client_tls(&cert, None);
    let mut good = connect(server.addr, &config, "localhost");
    let mut cut = connect(server.addr, &config, "localhost");
    echo(&mut cut, b"whole");
    cut.sock
        .write_all(&[0x17, 0x03, 0x03, 0x00, 0x40, 1, 2, 3])
        .unwrap();
    cut.sock.shutdown(Shutdown::Write).unwrap();
    server.wait_for("the cut connection to close", |r| r.closed.len() == 1);
    assert_eq!(server.stats().tls_truncated, 1);
    echo(&mut good, b"unaffected");
}
