//! The proxy example (`examples/proxy.rs`) as a real process between real
//! clients and backends on loopback: bytes through it exact, balancing,
//! retries, half-close both ways, RST, and bounded memory when one side
//! does not read.

mod common;
mod process;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use common::{pattern, Server};
use evloop::Config;
use process::{connect, Proc};

fn proxy(backends: &[String], extra: &[&str]) -> Proc {
    let mut args: Vec<String> = Vec::new();
    for b in backends {
        args.push("--backend".into());
        args.push(b.clone());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Proc::start(&[], "proxy", &args)
}

fn echo_through(port: u16, msg: &[u8]) {
    let mut s = connect(port);
    s.write_all(msg).unwrap();
    let mut back = vec![0; msg.len()];
    s.read_exact(&mut back).unwrap();
    assert!(back == msg, "the echo through the proxy differs");
}

#[test]
fn bytes_pass_exact_and_round_robin_spreads_evenly() {
    let backends: Vec<Server> = (0..3).map(|_| Server::start(Config::default())).collect();
    let addrs: Vec<String> = backends.iter().map(|b| b.addr.to_string()).collect();
    // No health checks: their connects would count as clients here.
    let p = proxy(
        &addrs,
        &["--balance", "round-robin", "--health-interval", "0"],
    );
    for i in 0..9 {
        echo_through(p.port, &pattern(i, 100_000));
    }
    for b in &backends {
        assert_eq!(b.record().opened.len(), 3, "round robin is not even");
    }
}

#[test]
fn a_backend_given_by_name_is_looked_up_at_start_and_a_bad_one_refused() {
    // `localhost` is in every /etc/hosts: no network needed.
    let backend = Server::start(Config::default());
    let by_name = format!("localhost:{}", backend.addr.port());
    let p = proxy(&[by_name], &["--health-interval", "0"]);
    echo_through(p.port, &pattern(1, 10_000));
    assert_eq!(backend.record().opened.len(), 1);
    let exe = process::example("proxy");
    for (bad, says) in [
        ("nosuchhost.invalid:7000", "does not resolve"),
        ("localhost", "not HOST:PORT"),
        ("::1:7000", "not HOST:PORT"),
        ("localhost:0", "not HOST:PORT"),
        ("127.0.0.1:0", "not HOST:PORT"),
        ("[::1]:0", "not HOST:PORT"),
    ] {
        let (_, err, ok) = process::run(
            exe.to_str().unwrap(),
            &["--addr", "127.0.0.1:0", "--backend", bad],
        );
        assert!(!ok && err.contains(says), "{bad}: {err}");
    }
}

#[test]
fn least_conn_sends_a_new_client_to_the_idlest_backend() {
    let (a, b) = (
        Server::start(Config::default()),
        Server::start(Config::default()),
    );
    let addrs = [a.addr.to_string(), b.addr.to_string()];
    let p = proxy(
        &addrs,
        &["--balance", "least-conn", "--health-interval", "0"],
    );
    let opened = |s: &Server| s.record().opened.len();
    let up = |port| {
        let mut s = connect(port);
        s.write_all(b"x").unwrap();
        s.read_exact(&mut [0]).unwrap();
        s
    };
    // Three clients held open: A, B, then A again (a tie goes round).
    let mut held: Vec<TcpStream> = (0..3).map(|_| up(p.port)).collect();
    assert_eq!((opened(&a), opened(&b)), (2, 1));
    // A's two clients leave: A has no pair open, B one. Round robin would
    // pick B next; least-conn picks A.
    held.remove(2);
    held.remove(0);
    a.wait_for("A's pairs closed", |r| r.closed.len() == 2);
    thread::sleep(Duration::from_millis(200)); // the proxy hears of it
    let _c4 = up(p.port);
    assert_eq!(
        (opened(&a), opened(&b)),
        (3, 1),
        "least-conn did not pick the idle backend"
    );
}

#[test]
fn a_backend_that_refuses_is_retried_on_another() {
    let good = Server::start(Config::default());
    let dead = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap().to_string();
    drop(dead); // nothing listens there now
    let p = proxy(
        &[dead_addr, good.addr.to_string()],
        &[
            "--balance",
            "round-robin",
            "--retries",
            "2",
            "--health-interval",
            "0",
        ],
    );
    for i in 0..4 {
        echo_through(p.port, &pattern(i, 1000));
    }
    assert_eq!(good.record().opened.len(), 4);
}

#[test]
fn a_clients_fin_reaches_the_backend_and_the_answer_still_comes_back() {
    let backend = Server::start(Config::default());
    let p = proxy(&[backend.addr.to_string()], &[]);
    let mut s = connect(p.port);
    s.write_all(b"last words").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut back = Vec::new();
    s.read_to_end(&mut back).unwrap();
    assert_eq!(back, b"last words");
    backend.wait_for("the FIN at the backend", |r| r.read_closed.len() == 1);
}

#[test]
fn a_backends_fin_reaches_the_client_while_the_client_still_sends() {
    // The backend greets, sends its FIN, and goes on reading.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let backend = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.write_all(b"hello, then FIN").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        got
    });
    let p = proxy(&[addr], &[]);
    let mut s = connect(p.port);
    let mut greeting = Vec::new();
    s.read_to_end(&mut greeting).unwrap(); // the FIN came through
    assert_eq!(greeting, b"hello, then FIN");
    s.write_all(b"after your FIN").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(backend.join().unwrap(), b"after your FIN");
}

#[test]
fn a_backends_reset_reaches_the_client_as_a_reset() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let backend = thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        let mut first = [0u8; 1];
        (&s).read_exact(&mut first).unwrap();
        socket2::SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(s); // RST
    });
    let p = proxy(&[addr], &[]);
    let mut s = connect(p.port);
    s.write_all(b"x").unwrap();
    backend.join().unwrap();
    let mut buf = [0u8; 16];
    let got = s.read(&mut buf);
    assert!(
        matches!(got, Err(ref e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "{got:?}"
    );
}

#[test]
fn a_client_that_never_reads_holds_the_proxys_memory_bounded() {
    // The backend floods 64 MiB; the client reads nothing. The proxy stops
    // reading the backend once the client's side is full, so TCP flow
    // control holds the rest in the backend.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let chunk = vec![7u8; 1 << 20];
        for _ in 0..64 {
            if s.write_all(&chunk).is_err() {
                return;
            }
        }
    });
    let p = proxy(&[addr], &[]);
    let before = p.rss();
    let s = connect(p.port);
    thread::sleep(Duration::from_millis(1500));
    let grown = p.rss().saturating_sub(before);
    assert!(
        grown < 4 << 20,
        "the proxy grew by {grown} bytes for one pair"
    );
    drop(s);
}

/// The status page, fetched with a bare HTTP/1.0 request.
fn status(port: u16) -> String {
    let mut s = connect(port);
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut page = String::new();
    s.read_to_string(&mut page).unwrap();
    page
}

#[test]
fn with_every_backend_down_clients_are_closed_and_a_health_check_finds_one_back() {
    let spot = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = spot.local_addr().unwrap();
    drop(spot); // down: nothing listens
    let stats_port = process::free_port();
    let stats_addr = format!("127.0.0.1:{stats_port}");
    let p = proxy(
        &[addr.to_string()],
        &["--health-interval", "100", "--stats-addr", &stats_addr],
    );
    // The first client finds it down; the next is closed at once.
    for _ in 0..2 {
        let mut s = connect(p.port);
        let _ = s.write_all(b"anyone?");
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        assert!(buf.is_empty());
    }
    assert!(status(stats_port).contains(&format!("{addr} down")));
    // It comes back: a health check finds it, with no client needed.
    let back = TcpListener::bind(addr).unwrap();
    let until = std::time::Instant::now() + Duration::from_secs(20);
    while !status(stats_port).contains(&format!("{addr} up")) {
        assert!(std::time::Instant::now() < until, "{}", status(stats_port));
        thread::sleep(Duration::from_millis(50));
    }
    let server = thread::spawn(move || loop {
        let (mut s, _) = back.accept().unwrap();
        let mut buf = [0u8; 5];
        if s.read_exact(&mut buf).is_ok() {
            s.write_all(&buf).unwrap();
            return;
        }
    });
    echo_through(p.port, b"hello");
    server.join().unwrap();
    assert_eq!(
        p.log().matches("every backend is down").count(),
        1,
        "one line per episode"
    );
}

#[test]
fn a_backend_that_stops_closes_its_clients_and_new_ones_go_to_the_others() {
    let a = Server::start(Config::default());
    let b = Server::start(Config::default());
    let stats_port = process::free_port();
    let stats_addr = format!("127.0.0.1:{stats_port}");
    let p = proxy(
        &[a.addr.to_string(), b.addr.to_string()],
        &["--stats-addr", &stats_addr, "--health-interval", "0"],
    );
    let mut on_a = connect(p.port);
    on_a.write_all(b"x").unwrap();
    on_a.read_exact(&mut [0]).unwrap();
    assert_eq!(a.record().opened.len(), 1);
    let a_addr = a.addr;
    a.stop(); // its connections closed, its port shut
    let mut rest = Vec::new();
    assert!(on_a.read_to_end(&mut rest).is_ok() && rest.is_empty());
    for i in 0..4 {
        echo_through(p.port, &pattern(i, 1000));
    }
    assert_eq!(b.record().opened.len(), 4);
    let page = status(stats_port);
    assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");
    assert!(page.contains("pool hits="), "{page}");
    assert!(page.contains(&format!("{a_addr} down")), "{page}");
}

#[test]
fn with_warm_connections_a_client_is_paired_with_one_already_open() {
    let backend = Server::start(Config::default());
    let p = proxy(
        &[backend.addr.to_string()],
        &["--warm", "2", "--health-interval", "0"],
    );
    // Two connections open before any client comes.
    backend.wait_for("two warm", |r| r.opened.len() == 2);
    let warm: Vec<evloop::ConnId> = backend.record().opened.clone();
    echo_through(p.port, b"over a warm one");
    let record = backend.record();
    let used = warm
        .iter()
        .filter(|c| {
            record
                .received
                .get(c)
                .is_some_and(|r| r == b"over a warm one")
        })
        .count();
    assert_eq!(used, 1, "the client did not get a warm connection");
}

#[test]
fn a_backend_whose_connect_times_out_is_retried_on_another() {
    // A listener whose accept queue is full (backlog 0, one connection
    // waiting in it, never accepted): the kernel drops further SYNs, so a
    // connect to it never completes and only the timeout ends it.
    let silent = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    silent
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    silent.listen(0).unwrap();
    let silent_addr = silent.local_addr().unwrap().as_socket().unwrap();
    let _queued = TcpStream::connect(silent_addr).unwrap();
    let probe = TcpStream::connect_timeout(&silent_addr, Duration::from_millis(200));
    assert!(probe.is_err(), "the full queue still took a connection");
    let good = Server::start(Config::default());
    let p = proxy(
        &[silent_addr.to_string(), good.addr.to_string()],
        &[
            "--balance",
            "round-robin",
            "--connect-timeout",
            "300",
            "--retries",
            "1",
            "--health-interval",
            "0",
        ],
    );
    let started = std::time::Instant::now();
    echo_through(p.port, &pattern(7, 10_000)); // the silent one first
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "the first client waited {waited:?}, not about the 300 ms timeout"
    );
    echo_through(p.port, &pattern(8, 10_000));
    assert_eq!(good.record().opened.len(), 2);
}

#[test]
fn an_answer_on_its_way_at_shutdown_still_reaches_the_client() {
    // A backend that answers half a second after the request.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut req = [0; 4];
        s.read_exact(&mut req).unwrap();
        thread::sleep(Duration::from_millis(500));
        s.write_all(b"pong").unwrap();
        let _ = s.read(&mut req); // until the proxy passes the client's FIN
    });
    let mut p = proxy(&[addr], &["--health-interval", "0"]);
    let mut client = connect(p.port);
    client.write_all(b"ping").unwrap();
    thread::sleep(Duration::from_millis(100));
    p.signal("TERM");
    let mut answer = [0; 4];
    client.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"pong", "the answer in flight was cut");
    client.shutdown(Shutdown::Write).unwrap();
    let started = std::time::Instant::now();
    let status = p.wait(Duration::from_secs(10));
    assert!(status.success(), "the proxy exited {status}: {}", p.log());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the proxy waited out its deadline after the pair closed"
    );
}

#[test]
fn with_two_shards_the_proxy_passes_bytes_exact_from_both() {
    let backends: Vec<Server> = (0..2).map(|_| Server::start(Config::default())).collect();
    let addrs: Vec<String> = backends.iter().map(|b| b.addr.to_string()).collect();
    let mut p = proxy(&addrs, &["--threads", "2", "--health-interval", "0"]);
    for i in 0..40 {
        echo_through(p.port, &pattern(i, 5_000));
    }
    p.signal("TERM");
    assert!(p.wait(Duration::from_secs(10)).success(), "{}", p.log());
    let log = p.log();
    assert!(
        log.contains("shard 0: accepted=") && log.contains("shard 1: accepted="),
        "{log}"
    );
    assert!(log.contains("accepted=40 "), "{log}");
}
