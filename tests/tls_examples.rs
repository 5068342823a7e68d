//! The example servers over TLS (`--tls-cert`, `--tls-key`; feature
//! `tls`), checked by clients nobody here wrote: curl over https,
//! `redis-cli --tls`, `openssl s_client`, wrk. The certificate is made at
//! run time; nothing secret is committed. `.ci/run` installs the clients;
//! elsewhere a missing one skips its test with a message, and under CI it
//! fails.
#![cfg(feature = "tls")]

mod process;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use process::{have, run, Proc};

/// A certificate for `localhost` and 127.0.0.1 (ECDSA P-256), in a
/// directory of its own removed at the end.
struct Cert {
    dir: PathBuf,
}

impl Cert {
    fn new(name: &str) -> Cert {
        let dir = std::env::temp_dir().join(format!("evloop-tls-ex-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .unwrap();
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
        Cert { dir }
    }

    fn cert(&self) -> String {
        self.dir.join("cert.pem").display().to_string()
    }

    fn key(&self) -> String {
        self.dir.join("key.pem").display().to_string()
    }

    /// The server flags for it.
    fn flags(&self) -> [String; 4] {
        [
            "--tls-cert".into(),
            self.cert(),
            "--tls-key".into(),
            self.key(),
        ]
    }
}

impl Drop for Cert {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start(name: &str, cert: &Cert, extra: &[&str]) -> Proc {
    let flags = cert.flags();
    let mut args: Vec<&str> = flags.iter().map(String::as_str).collect();
    args.extend_from_slice(extra);
    Proc::start(&[], name, &args)
}

#[test]
fn curl_over_https_keeps_alive_posts_and_agrees_http_1_1() {
    if !have("curl") {
        return;
    }
    let cert = Cert::new("curl");
    let server = start("http", &cert, &[]);
    let url = format!("https://localhost:{}", server.port);
    let ca = cert.cert();
    let (body, trace, ok) = run(
        "curl",
        &[
            "-sv",
            "--cacert",
            &ca,
            &format!("{url}/"),
            &format!("{url}/"),
        ],
    );
    assert!(ok, "{trace}");
    assert_eq!(body, "Hello, World!Hello, World!");
    assert!(
        trace.contains("Re-using existing connection"),
        "no keep-alive reuse:\n{trace}"
    );
    assert!(
        trace.contains("ALPN: server accepted http/1.1")
            || trace.contains("ALPN, server accepted to use http/1.1"),
        "{trace}"
    );
    let big = "x".repeat(200_000);
    let body_file = cert.dir.join("body");
    std::fs::write(&body_file, &big).unwrap();
    let data = format!("@{}", body_file.display());
    let (body, trace, ok) = run(
        "curl",
        &[
            "-s",
            "--cacert",
            &ca,
            "--data-binary",
            &data,
            &format!("{url}/echo"),
        ],
    );
    assert!(ok, "{trace}");
    assert!(body == big, "the posted body came back different");
    // Plain HTTP on the TLS port is a failed handshake for that client
    // alone; the server goes on.
    let (_, _, ok) = run(
        "curl",
        &[
            "-s",
            "--max-time",
            "5",
            &format!("http://127.0.0.1:{}/", server.port),
        ],
    );
    assert!(!ok, "plain HTTP was answered on the TLS port");
    let (body, _, ok) = run("curl", &["-s", "--cacert", &ca, &format!("{url}/")]);
    assert!(ok);
    assert_eq!(body, "Hello, World!");
}

#[test]
fn redis_cli_over_tls() {
    if !have("redis-cli") {
        return;
    }
    let cert = Cert::new("redis");
    let server = start("kv", &cert, &[]);
    let port = server.port.to_string();
    let ca = cert.cert();
    let cli = |args: &[&str]| {
        let mut all = vec!["-p", &port, "--tls", "--cacert", &ca];
        all.extend_from_slice(args);
        let (out, err, _) = run("redis-cli", &all);
        assert!(err.is_empty() || !err.contains("Could not"), "{err}");
        out.trim_end().to_string()
    };
    assert_eq!(cli(&["ping"]), "PONG");
    assert_eq!(cli(&["set", "k", "over tls"]), "OK");
    assert_eq!(cli(&["get", "k"]), "over tls");
    // A plain client on the TLS port gets nothing it can read as RESP.
    let (out, _, _) = run("redis-cli", &["-p", &port, "ping"]);
    assert_ne!(out.trim_end(), "PONG");
}

#[test]
fn echo_over_tls_with_openssl_s_client() {
    if !have("openssl") {
        return;
    }
    let cert = Cert::new("echo");
    let server = start("echo", &cert, &[]);
    let mut child = Command::new("openssl")
        .args(["s_client", "-quiet", "-no_ign_eof", "-connect"])
        .arg(format!("127.0.0.1:{}", server.port))
        .args(["-servername", "localhost", "-CAfile", &cert.cert()])
        .args(["-verify_return_error"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl s_client");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    stdin.write_all(b"through TLS and back\n").unwrap();
    let mut got = vec![0; "through TLS and back\n".len()];
    stdout.read_exact(&mut got).expect("the echo");
    assert_eq!(got, b"through TLS and back\n");
    drop(stdin);
    let status = child.wait().unwrap();
    assert!(status.success());
}

#[test]
fn bad_tls_flags_are_clear_errors() {
    let cert = Cert::new("bad");
    // The key of another certificate: refused at start, naming the files.
    let other = Cert::new("other");
    let exe = process::example("echo");
    let out = Command::new(exe)
        .args(["--addr", "127.0.0.1:0", "--tls-cert", &cert.cert()])
        .args(["--tls-key", &other.key()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not belong"), "{err}");
    // --tls-cert alone is refused by the flags.
    let out = Command::new(process::example("echo"))
        .args(["--addr", "127.0.0.1:0", "--tls-cert", &cert.cert()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--tls-key"), "{err}");
}

#[test]
fn wrk_over_https_runs_with_zero_errors() {
    if !have("wrk") {
        return;
    }
    let cert = Cert::new("wrk");
    let mut server = start("http", &cert, &[]);
    let (out, err, ok) = run(
        "wrk",
        &[
            "-t1",
            "-c32",
            "-d1",
            &format!("https://127.0.0.1:{}/", server.port),
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("requests in"), "{out}");
    assert!(!out.contains("Socket errors"), "{out}");
    assert!(!out.contains("Non-2xx"), "{out}");
    server.signal("INT");
    assert!(server.wait(std::time::Duration::from_secs(10)).success());
    let log = server.log();
    assert!(log.contains("tls_handshakes="), "{log}");
}

#[test]
fn redis_cli_over_tls_must_auth_with_the_password() {
    if !have("redis-cli") {
        return;
    }
    let cert = Cert::new("auth");
    let server = start("kv", &cert, &["--requirepass", "s3cret"]);
    let port = server.port.to_string();
    let ca = cert.cert();
    let both = |args: &[&str]| {
        let mut all = vec!["-p", &port, "--tls", "--cacert", &ca, "--no-auth-warning"];
        all.extend_from_slice(args);
        let (out, err, _) = run("redis-cli", &all);
        (out.trim_end().to_string(), err)
    };
    let cli = |args: &[&str]| both(args).0;
    assert_eq!(cli(&["set", "k", "v"]), "NOAUTH Authentication required.");
    assert_eq!(cli(&["ping"]), "NOAUTH Authentication required.");
    // redis-cli says the AUTH failed, and runs the command unauthenticated.
    let (out, err) = both(&["-a", "wrong", "get", "k"]);
    assert!(
        err.contains("WRONGPASS invalid username-password pair or user is disabled."),
        "{err}"
    );
    assert_eq!(out, "NOAUTH Authentication required.");
    assert_eq!(cli(&["-a", "s3cret", "set", "k", "v"]), "OK");
    assert_eq!(cli(&["-a", "s3cret", "get", "k"]), "v");
    assert_eq!(
        cli(&["--user", "default", "--pass", "s3cret", "ping"]),
        "PONG"
    );
    // HELLO with AUTH authenticates too; an unknown command is still
    // named as such first, as Redis does.
    assert!(cli(&["hello", "2", "auth", "default", "s3cret"]).contains("redis"));
    assert!(cli(&["nosuchcommand"]).starts_with("ERR unknown command"));
}

/// A CA, and a client certificate it signed (`CN=alice,O=Example`).
struct ClientPki {
    dir: PathBuf,
}

impl ClientPki {
    fn new(name: &str) -> ClientPki {
        let dir = std::env::temp_dir().join(format!("evloop-mtls-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "evloop test CA");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut client = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        client.distinguished_name = rcgen::DistinguishedName::new();
        client
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Example");
        client
            .distinguished_name
            .push(rcgen::DnType::CommonName, "alice");
        client.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = client.signed_by(&key, &ca_cert, &ca_key).unwrap();
        std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
        std::fs::write(dir.join("client.pem"), client_cert.pem()).unwrap();
        std::fs::write(dir.join("client.key"), key.serialize_pem()).unwrap();
        ClientPki { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

impl Drop for ClientPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn mutual_tls_lets_a_signed_client_in_and_refuses_one_without() {
    if !have("curl") {
        return;
    }
    let cert = Cert::new("mtls");
    let pki = ClientPki::new("curl");
    let ca_flag = pki.path("ca.pem");
    let mut server = start("http", &cert, &["--tls-client-ca", &ca_flag]);
    let url = format!("https://localhost:{}/", server.port);
    let ca = cert.cert();
    let (body, trace, ok) = run(
        "curl",
        &[
            "-sv",
            "--cacert",
            &ca,
            "--cert",
            &pki.path("client.pem"),
            "--key",
            &pki.path("client.key"),
            &url,
        ],
    );
    assert!(ok, "{trace}");
    assert_eq!(body, "Hello, World!");
    let (_, trace, ok) = run("curl", &["-sv", "--cacert", &ca, &url]);
    assert!(!ok, "a client without a certificate was served:\n{trace}");
    // A certificate its own key signed (no CA's): refused too.
    let (_, trace, ok) = run(
        "curl",
        &[
            "-sv",
            "--cacert",
            &ca,
            "--cert",
            &cert.cert(),
            "--key",
            &cert.key(),
            &url,
        ],
    );
    assert!(!ok, "a self-signed client certificate was served:\n{trace}");
    server.signal("INT");
    assert!(server.wait(std::time::Duration::from_secs(10)).success());
    let log = server.log();
    assert!(log.contains("tls_failed_certificate=2"), "{log}");
}

#[test]
fn the_client_and_the_load_generator_speak_tls_and_verify_the_server() {
    let cert = Cert::new("client");
    let server = start("echo", &cert, &[]);
    let addr = format!("127.0.0.1:{}", server.port);
    let ca = cert.cert();
    let out = Command::new(process::example("client"))
        .args(["--addr", &addr, "--tls", "--ca", &ca, "hello", "over tls"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\nover tls\n");
    // A server the CA did not sign: refused, and the client says why.
    let other = Cert::new("client-other");
    let out = Command::new(process::example("client"))
        .args(["--addr", &addr, "--tls", "--ca", &other.cert(), "hello"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("TLS with") && err.contains("certificate"),
        "{err}"
    );
    // The load generator: every connection a TLS client, every byte
    // checked.
    let out = Command::new(process::example("loadgen"))
        .args(["--addr", &addr, "--tls", "--ca", &ca, "--conns", "20"])
        .args(["--idle-conns", "200", "--duration", "1", "--json"])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("\"held\":220"), "{report}");
    assert!(report.contains("\"errors\":{}"), "{report}");
}
