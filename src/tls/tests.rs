//! The configuration against a rustls client, handshakes in memory: keys
//! of every kind load, SNI picks the certificate, ALPN agrees, both
//! versions work, sessions resume, and bad files are clear errors.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, HandshakeKind, ServerConfig, ServerConnection};

use super::{TlsConfig, TlsError};

/// A directory of its own for one test's files, removed at the end.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let path = std::env::temp_dir().join(format!("evloop-tls-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        Dir(path)
    }

    /// A self-signed certificate for `names` with a key of `alg`,
    /// written as `<stem>.crt` and `<stem>.key`.
    fn cert(
        &self,
        stem: &str,
        names: &[&str],
        alg: &'static rcgen::SignatureAlgorithm,
    ) -> (PathBuf, PathBuf, CertificateDer<'static>) {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.self_signed(&key).unwrap();
        let (c, k) = (
            self.0.join(format!("{stem}.crt")),
            self.0.join(format!("{stem}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k, cert.der().clone())
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Accepts any certificate, and keeps nothing: these tests look at which
/// certificate came, not at the chain of trust.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn client_config(tls12_only: bool, alpn: &[&str]) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13]
    };
    let mut config = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Arc::new(config)
}

/// Runs a handshake in memory; the client afterwards (or the error).
fn handshake(
    server: &Arc<ServerConfig>,
    client: &Arc<ClientConfig>,
    sni: &str,
) -> Result<ClientConnection, rustls::Error> {
    let name = ServerName::try_from(sni.to_string()).unwrap();
    let mut c = ClientConnection::new(Arc::clone(client), name)?;
    let mut s = ServerConnection::new(Arc::clone(server))?;
    let mut wire = Vec::new();
    for _ in 0..10 {
        wire.clear();
        while c.wants_write() {
            c.write_tls(&mut wire).unwrap();
        }
        let mut bytes = &wire[..];
        while !bytes.is_empty() {
            s.read_tls(&mut bytes).unwrap();
        }
        let server_result = s.process_new_packets().map(drop);
        wire.clear();
        while s.wants_write() {
            s.write_tls(&mut wire).unwrap();
        }
        let mut bytes = &wire[..];
        while !bytes.is_empty() {
            c.read_tls(&mut bytes).unwrap();
        }
        c.process_new_packets()?;
        server_result?;
        if !c.is_handshaking() && !s.is_handshaking() && !c.wants_write() && !s.wants_write() {
            return Ok(c);
        }
    }
    panic!("handshake did not finish");
}

fn leaf(c: &ClientConnection) -> CertificateDer<'static> {
    c.peer_certificates().unwrap()[0].clone().into_owned()
}

#[test]
fn ecdsa_and_ed25519_keys_serve_both_versions() {
    let dir = Dir::new("kinds");
    for (stem, alg) in [
        ("ecdsa", &rcgen::PKCS_ECDSA_P256_SHA256),
        ("ed25519", &rcgen::PKCS_ED25519),
    ] {
        let (c, k, der) = dir.cert(stem, &["kind.test"], alg);
        let server = TlsConfig::new()
            .certificate(&c, &k)
            .unwrap()
            .build()
            .unwrap();
        for tls12 in [false, true] {
            let client = handshake(&server, &client_config(tls12, &[]), "kind.test").unwrap();
            assert_eq!(leaf(&client), der, "{stem}");
            let expect = if tls12 {
                rustls::ProtocolVersion::TLSv1_2
            } else {
                rustls::ProtocolVersion::TLSv1_3
            };
            assert_eq!(client.protocol_version(), Some(expect), "{stem}");
        }
    }
}

#[test]
fn rsa_keys_serve_too() {
    // ring cannot make RSA keys; openssl (installed by CI) can.
    let dir = Dir::new("rsa");
    let (c, k) = (dir.0.join("rsa.crt"), dir.0.join("rsa.key"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=rsa.test",
        ])
        .args(["-addext", "subjectAltName=DNS:rsa.test", "-keyout"])
        .arg(&k)
        .arg("-out")
        .arg(&c)
        .output();
    match made {
        Ok(out) if out.status.success() => {}
        _ if std::env::var_os("CI").is_some() => panic!("openssl is needed to make an RSA key"),
        _ => return eprintln!("skipped: openssl not installed"),
    }
    let server = TlsConfig::new()
        .certificate(&c, &k)
        .unwrap()
        .build()
        .unwrap();
    for tls12 in [false, true] {
        handshake(&server, &client_config(tls12, &[]), "rsa.test").unwrap();
    }
}

#[test]
fn sni_chooses_the_certificate_and_the_first_is_the_default() {
    let dir = Dir::new("sni");
    let (ac, ak, a) = dir.cert("a", &["a.test"], &rcgen::PKCS_ECDSA_P256_SHA256);
    let (bc, bk, b) = dir.cert(
        "b",
        &["b.test", "www.b.test"],
        &rcgen::PKCS_ECDSA_P256_SHA256,
    );
    let server = TlsConfig::new()
        .certificate_for(["a.test"], &ac, &ak)
        .unwrap()
        .certificate_for(["b.test", "WWW.B.test"], &bc, &bk)
        .unwrap()
        .build()
        .unwrap();
    let client = client_config(false, &[]);
    assert_eq!(leaf(&handshake(&server, &client, "a.test").unwrap()), a);
    assert_eq!(leaf(&handshake(&server, &client, "b.test").unwrap()), b);
    assert_eq!(
        leaf(&handshake(&server, &client, "www.b.test").unwrap()),
        b,
        "names match in any case"
    );
    assert_eq!(
        leaf(&handshake(&server, &client, "other.test").unwrap()),
        a,
        "unknown name: the default"
    );
    // An IP address sends no SNI at all.
    assert_eq!(
        leaf(&handshake(&server, &client, "127.0.0.1").unwrap()),
        a,
        "no name: the default"
    );
}

#[test]
fn alpn_agrees_on_the_servers_preference_or_refuses() {
    let dir = Dir::new("alpn");
    let (c, k, _) = dir.cert("alpn", &["alpn.test"], &rcgen::PKCS_ECDSA_P256_SHA256);
    let server = TlsConfig::new()
        .certificate(&c, &k)
        .unwrap()
        .alpn(["h2", "http/1.1"])
        .build()
        .unwrap();
    let agreed = handshake(
        &server,
        &client_config(false, &["http/1.1", "h2"]),
        "alpn.test",
    )
    .unwrap();
    assert_eq!(agreed.alpn_protocol(), Some(&b"h2"[..]));
    let only = handshake(&server, &client_config(false, &["http/1.1"]), "alpn.test").unwrap();
    assert_eq!(only.alpn_protocol(), Some(&b"http/1.1"[..]));
    let refused = handshake(&server, &client_config(false, &["imap"]), "alpn.test");
    assert!(refused.is_err(), "no protocol in common is refused");
}

#[test]
fn a_second_connection_resumes_with_either_version() {
    let dir = Dir::new("resume");
    let (c, k, _) = dir.cert("resume", &["resume.test"], &rcgen::PKCS_ECDSA_P256_SHA256);
    let server = TlsConfig::new()
        .certificate(&c, &k)
        .unwrap()
        .build()
        .unwrap();
    for tls12 in [false, true] {
        // One client config: its session store carries the ticket or id.
        let client = client_config(tls12, &[]);
        let first = handshake(&server, &client, "resume.test").unwrap();
        assert_eq!(first.handshake_kind(), Some(HandshakeKind::Full));
        let second = handshake(&server, &client, "resume.test").unwrap();
        assert_eq!(
            second.handshake_kind(),
            Some(HandshakeKind::Resumed),
            "tls12={tls12}"
        );
    }
}

#[test]
fn bad_files_are_clear_errors() {
    let dir = Dir::new("bad");
    let (c, k, _) = dir.cert("one", &["one.test"], &rcgen::PKCS_ECDSA_P256_SHA256);
    let (_, other_key, _) = dir.cert("two", &["two.test"], &rcgen::PKCS_ECDSA_P256_SHA256);
    let missing = dir.0.join("missing.pem");
    let err = |r: Result<TlsConfig, TlsError>| r.map(drop).unwrap_err().to_string();

    let e = err(TlsConfig::new().certificate(&missing, &k));
    assert!(e.starts_with(&missing.display().to_string()), "{e}");
    let e = err(TlsConfig::new().certificate(&k, &k));
    assert!(
        e.contains("no certificate"),
        "a key file given as the chain: {e}"
    );
    let e = err(TlsConfig::new().certificate(&c, &c));
    assert!(
        e.starts_with(&c.display().to_string()),
        "a chain given as the key: {e}"
    );
    let e = err(TlsConfig::new().certificate(&c, &other_key));
    assert!(e.contains("does not belong"), "{e}");
    assert!(matches!(
        TlsConfig::new().build(),
        Err(TlsError::NoCertificate)
    ));
    let _: &Path = &dir.0;
}

#[test]
fn server_names_are_checked_when_given() {
    let dir = Dir::new("names");
    let (ac, ak, a) = dir.cert("a", &["a.test"], &rcgen::PKCS_ECDSA_P256_SHA256);
    let (bc, bk, _) = dir.cert("b", &["b.test"], &rcgen::PKCS_ECDSA_P256_SHA256);
    // A final dot is the same name, as clients send it without.
    let server = TlsConfig::new()
        .certificate(&bc, &bk)
        .unwrap()
        .certificate_for(["A.test."], &ac, &ak)
        .unwrap()
        .build()
        .unwrap();
    let client = client_config(false, &[]);
    assert_eq!(leaf(&handshake(&server, &client, "a.test").unwrap()), a);
    let name_error = |r: Result<TlsConfig, TlsError>| match r {
        Err(TlsError::Name(name, why)) => format!("{name}: {why}"),
        other => panic!("expected a name error, got {:?}", other.map(drop)),
    };
    let twice = TlsConfig::new()
        .certificate_for(["a.test"], &ac, &ak)
        .and_then(|c| c.certificate_for(["a.test"], &ac, &ak));
    assert!(name_error(twice).contains("twice"));
    let uncovered = TlsConfig::new().certificate_for(["b.test"], &ac, &ak);
    let e = name_error(uncovered);
    assert!(e.starts_with("b.test"), "{e}");
    let not_dns = TlsConfig::new().certificate_for(["not a name"], &ac, &ak);
    name_error(not_dns);
    let empty_alpn = TlsConfig::new()
        .certificate(&ac, &ak)
        .unwrap()
        .alpn([""])
        .build();
    assert!(matches!(empty_alpn, Err(TlsError::Alpn(0))));
}
