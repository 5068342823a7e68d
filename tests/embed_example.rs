//! `examples/embed.rs` as a user runs it: one process serving two
//! listeners with different protocols, a UDP echo and a timerfd on the
//! same thread, and `max_conns` changed from its console thread.

mod process;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use process::{example, free_port};

const PATIENCE: Duration = Duration::from_secs(20);

fn connect(port: u16) -> TcpStream {
    let end = Instant::now() + PATIENCE;
    loop {
        if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
            s.set_read_timeout(Some(PATIENCE)).unwrap();
            return s;
        }
        assert!(Instant::now() < end, "port {port} never listened");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `ask` and reads until a line ends.
fn line(s: &mut TcpStream, ask: &[u8]) -> String {
    s.write_all(ask).unwrap();
    let mut got = Vec::new();
    let mut buf = [0; 4096];
    while !got.ends_with(b"\n") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed before a line");
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(got).unwrap()
}

fn value(stats: &str, key: &str) -> u64 {
    stats
        .split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {stats}"))
}

#[test]
fn embed_serves_two_protocols_udp_and_a_timer_and_takes_max_conns_from_its_console() {
    let (web, admin, udp) = (free_port(), free_port(), free_port());
    let mut child = Command::new(example("embed"))
        .args(["--web", &format!("127.0.0.1:{web}")])
        .args(["--admin", &format!("127.0.0.1:{admin}")])
        .args(["--udp", &format!("127.0.0.1:{udp}"), "--tick-ms", "10"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start embed");
    let mut console = child.stdin.take().unwrap();
    // Web: echo.
    let mut w = connect(web);
    assert_eq!(line(&mut w, b"hello\n"), "hello\n");
    // UDP: echo, on the same thread.
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    u.set_read_timeout(Some(PATIENCE)).unwrap();
    u.send_to(b"ping", ("127.0.0.1", udp)).unwrap();
    let mut buf = [0; 16];
    let (n, _) = u.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"ping");
    // Admin: its own protocol; the timer has ticked.
    let mut a = connect(admin);
    thread::sleep(Duration::from_millis(50)); // five ticks of 10 ms
    let stats = line(&mut a, b"stats\n");
    assert!(value(&stats, "ticks") >= 1, "{stats}");
    assert_eq!(value(&stats, "datagrams"), 1, "{stats}");
    // The console lowers max_conns to the two connections open: a third
    // waits in the queue, unserved.
    console.write_all(b"max_conns 2\n").unwrap();
    console.flush().unwrap();
    let end = Instant::now() + PATIENCE;
    loop {
        // The admin connection sees the limit once the console's command
        // has been taken (the stats line has no max_conns: probe instead).
        let mut probe = TcpStream::connect(("127.0.0.1", web)).unwrap();
        probe
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        probe.write_all(b"x\n").unwrap();
        let mut b = [0; 4];
        if probe.read(&mut b).is_err() {
            break; // not served: the limit holds
        }
        assert!(Instant::now() < end, "max_conns 2 never took effect");
    }
    console.write_all(b"max_conns 100\n").unwrap();
    console.flush().unwrap();
    let mut later = connect(web);
    assert_eq!(line(&mut later, b"again\n"), "again\n");
    let _ = child.kill();
    let _ = child.wait();
}
