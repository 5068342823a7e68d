//! 1,000 concurrent connections on one reactor thread, each echoing.

mod common;

use std::io::Write;

use common::*;
use evloop::Config;

#[test]
fn a_thousand_concurrent_connections() {
    // Server and clients share this process: 2 descriptors per connection.
    let want = 1000;
    let limit = fd_limit() as usize;
    let conns = want.min(limit.saturating_sub(100) / 2);
    if conns < want {
        eprintln!("open-file limit {limit}: scaled down to {conns} connections");
    }
    assert!(
        conns >= 100,
        "open-file limit {limit} is too low for this test"
    );
    let server = Server::start(Config::default());
    let mut clients: Vec<_> = (0..conns).map(|_| client(server.addr)).collect();
    // All write first, then all read: every connection is open and busy at
    // once.
    for (i, s) in clients.iter_mut().enumerate() {
        s.write_all(&pattern(i as u64, 512)).unwrap();
    }
    for (i, s) in clients.iter_mut().enumerate() {
        assert_eq!(read_n(s, 512), pattern(i as u64, 512), "connection {i}");
    }
    let stats = server.stats();
    assert_eq!(stats.active, conns);
    assert_eq!(stats.peak, conns);
}
