//! Unix domain stream sockets: listened on, connected out, adopted, and
//! served by the same machinery as TCP (echo, large transfers, half-close,
//! hand-overs, shutdown), with the access rules that apply to them.

mod common;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

use common::{pattern, unix_path, Server, PATIENCE};
use evloop::{CloseReason, Config, ConnId};

fn unix_client(path: &Path) -> UnixStream {
    let s = UnixStream::connect(path).expect("connect");
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.set_write_timeout(Some(PATIENCE)).unwrap();
    s
}

fn read_n(s: &mut UnixStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    s.read_exact(&mut buf).expect("read_exact");
    buf
}

#[test]
fn a_unix_listener_serves_like_a_tcp_one() {
    let server = Server::start_unix(Config::default(), true);
    let path = server.unix.clone().unwrap();
    let mut c = unix_client(&path);
    c.write_all(b"hello over a path\n").unwrap();
    assert_eq!(read_n(&mut c, 18), b"hello over a path\n");
    server.wait_for("the connection", |r| r.opened.len() == 1);
    let id = server.record().opened[0];
    let (peer, local, unix, listener) = server.exec(move |cx, _| {
        (
            cx.peer_addr(id),
            cx.local_addr(id),
            cx.is_unix(id),
            cx.listener(id).map(|l| l.index()),
        )
    });
    assert_eq!(peer, None, "a Unix peer has no IP address");
    assert_eq!(local, None);
    assert_eq!(unix, Some(true));
    assert_eq!(listener, Some(1), "the second listener (after TCP's)");
}

#[test]
fn a_large_transfer_is_echoed_whole_through_backpressure() {
    let server = Server::start_unix(Config::default(), true);
    let path = server.unix.clone().unwrap();
    let mut c = unix_client(&path);
    let data = pattern(9, 4 << 20);
    let mut reader = c.try_clone().unwrap();
    let len = data.len();
    let read = std::thread::spawn(move || read_n(&mut reader, len));
    c.write_all(&data).unwrap();
    assert!(read.join().unwrap() == data, "echo differs");
}

#[test]
fn half_close_and_the_peers_close_work_over_unix() {
    let server = Server::start_unix(Config::default(), true);
    let path = server.unix.clone().unwrap();
    let mut c = unix_client(&path);
    c.write_all(b"last words").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    // The echo comes back, then the server's close (the probe closes on
    // the peer's FIN).
    let mut got = Vec::new();
    c.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"last words");
    server.wait_for("the close", |r| !r.closed.is_empty());
    let reason = server.record().closed[0].1;
    assert!(
        matches!(reason, CloseReason::Closed | CloseReason::PeerClosed),
        "{reason:?}"
    );
}

#[test]
fn the_ip_access_rules_do_not_apply_to_unix_peers() {
    // Only 10.0.0.0/8 may connect: loopback TCP is turned away, a Unix
    // peer (no IP address) is not.
    let config = Config {
        allow: vec!["10.0.0.0/8".parse().unwrap()],
        ..Config::default()
    };
    let server = Server::start_unix(config, true);
    let path = server.unix.clone().unwrap();
    let mut tcp = common::client(server.addr);
    let mut buf = [0; 1];
    assert!(
        matches!(tcp.read(&mut buf), Ok(0) | Err(_)),
        "TCP from 127.0.0.1 is rejected"
    );
    let mut c = unix_client(&path);
    c.write_all(b"in").unwrap();
    assert_eq!(read_n(&mut c, 2), b"in");
    let stats = server.stats();
    assert_eq!(stats.accepted, 1);
}

#[test]
fn an_outbound_unix_connection_talks_both_ways() {
    let server = Server::start_with(Config::default(), false);
    let path = unix_path("outbound");
    let listener = UnixListener::bind(&path).unwrap();
    let target = path.clone();
    let id = server.exec(move |cx, rec| {
        let id = cx.connect_unix(&target).expect("connect_unix");
        rec.quiet.insert(id);
        // Written before the connect completes: sent once it does.
        cx.write(id, b"ping").unwrap();
        id
    });
    let (mut peer, _) = listener.accept().unwrap();
    peer.set_read_timeout(Some(PATIENCE)).unwrap();
    assert_eq!(read_n(&mut peer, 4), b"ping");
    peer.write_all(b"pong").unwrap();
    server.wait_for("the answer", |r| {
        r.received.get(&id).is_some_and(|b| b == b"pong")
    });
    assert!(server.record().opened.contains(&id), "on_open came");
    drop(peer);
    server.wait_for("the close", |r| r.reason_of(id).is_some());
    let _ = std::fs::remove_file(path);
}

#[test]
fn connecting_to_a_path_nobody_listens_on_fails_at_once() {
    let server = Server::start_with(Config::default(), false);
    let missing = unix_path("missing");
    let err = server.exec(move |cx, _| cx.connect_unix(&missing).map(|_| ()).unwrap_err().kind());
    assert_eq!(err, std::io::ErrorKind::NotFound);
}

#[test]
fn listening_on_a_path_that_exists_is_refused() {
    let path = unix_path("taken");
    std::fs::write(&path, b"").unwrap();
    let mut reactor = evloop::Reactor::new(common::Probe::default(), Config::default()).unwrap();
    let err = reactor.listen_unix(&path).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    let _ = std::fs::remove_file(path);
}

#[test]
fn an_adopted_socket_pair_is_served() {
    let mut reactor = evloop::Reactor::new(common::Probe::echoing(), Config::default()).unwrap();
    let (ours, mut theirs) = UnixStream::pair().unwrap();
    theirs.set_read_timeout(Some(PATIENCE)).unwrap();
    let id: ConnId = reactor.adopt_unix_stream(ours).unwrap();
    theirs.write_all(b"over a pair").unwrap();
    let mut got = Vec::new();
    let end = std::time::Instant::now() + PATIENCE;
    theirs.set_nonblocking(true).unwrap();
    while got.len() < 11 {
        assert!(std::time::Instant::now() < end, "no echo");
        reactor.run_once(Some(Duration::from_millis(5))).unwrap();
        let mut buf = [0; 64];
        if let Ok(n) = theirs.read(&mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
    }
    assert_eq!(got, b"over a pair");
    assert_eq!(reactor.handler().record.lock().unwrap().opened, vec![id]);
}

#[test]
fn a_file_range_goes_out_over_unix_too() {
    let server = Server::start_unix(Config::default(), false);
    let path = server.unix.clone().unwrap();
    let mut c = unix_client(&path);
    server.wait_for("the connection", |r| r.opened.len() == 1);
    let id = server.record().opened[0];
    let file_path = unix_path("file");
    let bytes = pattern(5, 1 << 20);
    std::fs::write(&file_path, &bytes).unwrap();
    let file = std::fs::File::open(&file_path).unwrap();
    server.exec(move |cx, _| {
        cx.send_file(id, file, 0, 1 << 20).unwrap();
        cx.close(id);
    });
    let mut got = Vec::new();
    c.read_to_end(&mut got).unwrap();
    assert!(got == bytes);
    let _ = std::fs::remove_file(file_path);
}

#[test]
fn shutdown_closes_idle_unix_connections_with_the_end_of_stream() {
    let server = Server::start_unix(Config::default(), true);
    let path = server.unix.clone().unwrap();
    let mut c = unix_client(&path);
    c.write_all(b"x").unwrap();
    assert_eq!(read_n(&mut c, 1), b"x");
    server.handle.shutdown();
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
}

#[test]
fn a_unix_peer_is_known_by_its_process_and_user() {
    let server = Server::start_unix(Config::default(), true);
    let path = server.unix.clone().unwrap();
    let mut tcp = common::client(server.addr);
    let mut c = unix_client(&path);
    c.write_all(b"x").unwrap();
    assert_eq!(read_n(&mut c, 1), b"x");
    tcp.write_all(b"y").unwrap();
    server.wait_for("both connections", |r| r.opened.len() == 2);
    let ids = server.record().opened.clone();
    let creds = server.exec(move |cx, _| {
        ids.iter()
            .map(|&id| (cx.is_unix(id), cx.peer_cred(id)))
            .collect::<Vec<_>>()
    });
    // This process is the peer.
    let (uid, gid) = own_ids();
    let me = evloop::PeerCred {
        pid: std::process::id(),
        uid,
        gid,
    };
    for (unix, cred) in creds {
        match unix {
            Some(true) => assert_eq!(cred, Some(me)),
            _ => assert_eq!(cred, None, "a TCP peer has no credentials"),
        }
    }
    drop(tcp);
}

/// This process's effective uid and gid, read from /proc.
fn own_ids() -> (u32, u32) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| -> u32 {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap();
        line.split_whitespace().nth(2).unwrap().parse().unwrap()
    };
    (field("Uid:"), field("Gid:"))
}
