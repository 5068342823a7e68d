//! 20,000 connect / echo / close cycles leave no descriptor behind and do
//! not grow memory.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use evloop::Config;

const CYCLES: usize = 20_000;
const WARM_UP: usize = 1_000;

/// Connects from one of several loopback addresses, so 20,000 client-side
/// TIME_WAIT entries spread over several port ranges.
fn cycle(server: SocketAddr, i: usize) {
    let source: SocketAddr = format!("127.0.0.{}:0", 10 + i % 8).parse().unwrap();
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&source.into()).unwrap();
    socket.connect(&server.into()).unwrap();
    let mut s: TcpStream = socket.into();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    round_trip(&mut s, &[i as u8; 32]);
}

fn rss_kib() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn wait_idle(server: &Server) {
    let end = Instant::now() + PATIENCE;
    while server.stats().active > 0 {
        assert!(Instant::now() < end, "connections never closed");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn twenty_thousand_cycles_leave_no_descriptor_and_flat_memory() {
    let server = Server::start(Config::default());
    for i in 0..WARM_UP {
        cycle(server.addr, i);
    }
    wait_idle(&server);
    // The probe records every connection; clear that so the test measures
    // the reactor, not its own bookkeeping.
    server.exec(|_, rec| *rec = Default::default());
    let (fds_before, rss_before) = (open_fds(), rss_kib());
    let start = Instant::now();
    for i in 0..CYCLES {
        cycle(server.addr, i);
        if i % 1000 == 999 {
            server.exec(|_, rec| *rec = Default::default());
        }
    }
    wait_idle(&server);
    server.exec(|_, rec| *rec = Default::default());
    let (fds_after, rss_after) = (open_fds(), rss_kib());
    let stats = server.stats();
    eprintln!(
        "{CYCLES} cycles in {:?}: fds {fds_before} -> {fds_after}, RSS {rss_before} -> {rss_after} KiB; {stats}",
        start.elapsed()
    );
    assert_eq!(fds_after, fds_before, "descriptors leaked");
    assert_eq!(stats.accepted as usize, WARM_UP + CYCLES);
    assert_eq!(stats.closed_total(), stats.accepted);
    assert!(
        rss_after <= rss_before + 1024,
        "memory grew {} KiB over {CYCLES} cycles",
        rss_after as i64 - rss_before as i64
    );
}
