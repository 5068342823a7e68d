//! SIGTERM drains: every byte the server produced reaches its client and
//! the process exits 0 within the deadline. A second SIGTERM stops at
//! once. Real processes, real signals.

mod process;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use process::Proc;

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| ((seed * 131) ^ (i * 7) ^ (i >> 8)) as u8)
        .collect()
}

#[test]
fn sigterm_drains_large_responses_in_flight_and_exits_zero() {
    let mut server = Proc::start(&[], "echo", &["--shutdown-timeout", "20"]);
    let conns = 100;
    // 4 MiB each, read at about 3 MB/s: most of it is still to come when
    // SIGTERM arrives.
    let size = 4 << 20;
    let received = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    // One pattern; each connection sends it from its own offset, so a
    // byte crossing connections is caught (and setup takes no time).
    let base = Arc::new(pattern(7, size + conns as usize * 17));
    for c in 0..conns {
        // A small receive buffer keeps loopback's multi-megabyte autotuned
        // buffers from swallowing the whole response: the backlog stays in
        // the server, where shutdown must drain it.
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.set_recv_buffer_size(32 * 1024).unwrap();
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], server.port).into();
        socket.connect(&addr.into()).unwrap();
        let s: TcpStream = socket.into();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let offset = c as usize * 17;
        let mut w = s.try_clone().unwrap();
        let sent = Arc::clone(&base);
        // The writer may be cut off when the server stops reading: fine.
        thread::spawn(move || {
            let _ = w.write_all(&sent[offset..offset + size]);
        });
        let data = Arc::clone(&base);
        let total = Arc::clone(&received);
        let mut r = s;
        readers.push(thread::spawn(move || {
            // A slow reader: the server has output queued when SIGTERM comes.
            let mut got = Vec::new();
            let mut buf = vec![0; 16 * 1024];
            loop {
                match r.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) => panic!("connection {c}: {e} after {} bytes", got.len()),
                }
                thread::sleep(Duration::from_millis(5));
            }
            assert!(
                got == data[offset..offset + got.len()],
                "connection {c}: bytes differ"
            );
            total.fetch_add(got.len() as u64, Ordering::Relaxed);
            let _ = r.shutdown(Shutdown::Write); // our FIN ends the server's linger
        }));
    }
    thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    server.signal("TERM");
    let status = server.wait(Duration::from_secs(25));
    let took = start.elapsed();
    for r in readers {
        r.join().expect("reader");
    }
    eprintln!("drain took {took:?}; log:\n{}", server.log());
    assert!(status.success(), "exit status {status}");
    let bytes_out = server.logged("bytes_out").expect("final stats line");
    let bytes_in = server.logged("bytes_in").expect("final stats line");
    let got = received.load(Ordering::Relaxed);
    eprintln!(
        "sent {} MiB in all; server read {bytes_in}, wrote {bytes_out}; clients got {got}",
        (conns * size as u64) >> 20
    );
    // The signal came with every connection open and streaming: the
    // shutdown went on serving them (what arrives during it is answered)
    // until each went quiet.
    assert!(
        server
            .log()
            .contains(&format!("shutting down: closing {conns} connections")),
        "SIGTERM did not find every connection open"
    );
    assert_eq!(
        got, bytes_out,
        "the server produced {bytes_out} bytes, clients got {got}"
    );
    assert!(server
        .log()
        .contains(&format!("{conns} connections closed, 0 cut")));
}

#[test]
fn second_sigterm_stops_at_once() {
    let mut server = Proc::start(&[], "echo", &["--shutdown-timeout", "60"]);
    // Clients that send and never read: nothing can drain.
    let clients: Vec<_> = (0..20)
        .map(|c| {
            let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
            s.set_write_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let _ = s.write_all(&pattern(c, 4 << 20));
            s
        })
        .collect();
    server.signal("TERM");
    thread::sleep(Duration::from_millis(300));
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "exited before draining"
    );
    let start = Instant::now();
    server.signal("TERM");
    let status = server.wait(Duration::from_secs(5));
    eprintln!("stopped {:?} after the second SIGTERM", start.elapsed());
    assert!(
        !status.success(),
        "connections were cut: exit status must say so"
    );
    assert!(server.log().contains("stopping now"));
    assert!(server.log().contains("20 cut"), "log:\n{}", server.log());
    drop(clients);
}
