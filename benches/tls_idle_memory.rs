//! Memory per idle TLS server connection with rustls's two APIs, measured
//! the way the `idle` scenario measures plain connections: resident memory
//! over a baseline, divided by the connections, here 10,000 server
//! connections after their handshake (TLS 1.3 and 1.2), with nothing in
//! flight.
//!
//! The buffered `ServerConnection` keeps its own buffers; the
//! `UnbufferedServerConnection` leaves every byte to the caller, so a
//! reactor can read into its one scratch buffer and hold nothing for an
//! idle connection (see `src/reactor/tls.rs`, and the guide's chapter
//! 10). This decides which one
//! the `tls` feature is built on. The handshakes run in memory, client to
//! server and back, with no sockets: only the server's state is measured
//! (the clients are dropped before the second reading).
//!
//! `cargo bench --bench tls_idle_memory --features tls`

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, UnbufferedStatus};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

const CONNECTIONS: usize = 10_000;

/// Resident memory now, in bytes (`VmRSS` of /proc/self/status).
fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib * 1024
}

fn configs(tls12: bool) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    let der: CertificateDer<'static> = cert.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der()));
    let versions: &[&rustls::SupportedProtocolVersion] = if tls12 {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13]
    };
    let server = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .expect("server config");
    let mut roots = RootCertStore::empty();
    roots.add(der).expect("root");
    let client = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

fn client(config: &Arc<ClientConfig>) -> ClientConnection {
    let name = ServerName::try_from("localhost").expect("name");
    ClientConnection::new(Arc::clone(config), name).expect("client")
}

/// Moves what `from` wants to send into `to`.
fn pump_to_server(from: &mut ClientConnection, into: &mut Vec<u8>) {
    while from.wants_write() {
        from.write_tls(into).expect("client write_tls");
    }
}

fn feed_client(client: &mut ClientConnection, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        client.read_tls(&mut bytes).expect("client read_tls");
    }
    client.process_new_packets().expect("client handshake");
}

fn buffered(server: &Arc<ServerConfig>, config: &Arc<ClientConfig>) -> ServerConnection {
    let mut c = client(config);
    let mut s = ServerConnection::new(Arc::clone(server)).expect("server");
    let mut wire = Vec::new();
    while c.is_handshaking() || s.is_handshaking() || c.wants_write() || s.wants_write() {
        wire.clear();
        pump_to_server(&mut c, &mut wire);
        let mut bytes = &wire[..];
        while !bytes.is_empty() {
            s.read_tls(&mut bytes).expect("server read_tls");
        }
        s.process_new_packets().expect("server handshake");
        wire.clear();
        while s.wants_write() {
            s.write_tls(&mut wire).expect("server write_tls");
        }
        feed_client(&mut c, &wire);
    }
    s
}

/// The caller's buffers (a reactor's scratch, shared by every
/// connection), lent to each handshake in turn.
struct Scratch {
    incoming: Vec<u8>,
    outgoing: Vec<u8>,
}

fn unbuffered(
    server: &Arc<ServerConfig>,
    config: &Arc<ClientConfig>,
    scratch: &mut Scratch,
) -> UnbufferedServerConnection {
    let mut c = client(config);
    let mut s = UnbufferedServerConnection::new(Arc::clone(server)).expect("server");
    let (mut in_used, mut out_used) = (0, 0);
    let mut wire = Vec::new();
    loop {
        wire.clear();
        pump_to_server(&mut c, &mut wire);
        scratch.incoming[in_used..in_used + wire.len()].copy_from_slice(&wire);
        in_used += wire.len();
        let mut ready = false;
        loop {
            let UnbufferedStatus { mut discard, state } =
                s.process_tls_records(&mut scratch.incoming[..in_used]);
            let mut blocked = false;
            match state.expect("server handshake") {
                ConnectionState::EncodeTlsData(mut state) => {
                    out_used += state
                        .encode(&mut scratch.outgoing[out_used..])
                        .expect("encode");
                }
                ConnectionState::TransmitTlsData(state) => {
                    feed_client(&mut c, &scratch.outgoing[..out_used]);
                    out_used = 0;
                    state.done();
                }
                ConnectionState::BlockedHandshake => blocked = true,
                ConnectionState::WriteTraffic(_) => {
                    ready = true;
                    blocked = true;
                }
                ConnectionState::ReadTraffic(mut state) => {
                    while let Some(record) = state.next_record() {
                        discard += record.expect("record").discard;
                    }
                }
                _ => panic!("unexpected state in a handshake"),
            }
            scratch.incoming.copy_within(discard..in_used, 0);
            in_used -= discard;
            if blocked {
                break;
            }
        }
        if ready && !c.wants_write() && !c.is_handshaking() {
            return s;
        }
    }
}

/// Bytes per connection that `make` adds to resident memory, with the
/// connections kept and everything else dropped.
fn per_connection<T>(mut make: impl FnMut() -> T) -> usize {
    let mut kept = Vec::with_capacity(CONNECTIONS);
    let base = rss();
    for _ in 0..CONNECTIONS {
        kept.push(make());
    }
    let grown = rss().saturating_sub(base);
    drop(kept);
    grown / CONNECTIONS
}

/// Measures one case in this process: `tls13` or `tls12`, then
/// `buffered` or `unbuffered`.
fn measure(version: &str, api: &str) -> usize {
    let (server, client) = configs(version == "tls12");
    let mut scratch = Scratch {
        incoming: vec![0; 64 << 10],
        outgoing: vec![0; 64 << 10],
    };
    match api {
        "buffered" => per_connection(|| buffered(&server, &client)),
        _ => per_connection(|| unbuffered(&server, &client, &mut scratch)),
    }
}

/// Each case runs in a process of its own: memory freed by one case is
/// kept by the allocator and would be reused, unseen, by the next.
fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--case") {
        println!("{}", measure(&args[i + 1], &args[i + 2]));
        return;
    }
    let me = std::env::current_exe().expect("own path");
    println!("idle rustls server connections, {CONNECTIONS} a run, resident bytes per connection:");
    for (version, name) in [("tls13", "TLS 1.3"), ("tls12", "TLS 1.2")] {
        let mut line = format!("  {name}:");
        for api in ["buffered", "unbuffered"] {
            let out = std::process::Command::new(&me)
                .args(["--case", version, api])
                .output()
                .expect("run a case");
            let bytes = String::from_utf8_lossy(&out.stdout).trim().to_string();
            line += &format!("  {api} {bytes:>6}");
        }
        println!("{line}");
    }
}
