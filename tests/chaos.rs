//! Chaos against the echo, http and kv servers at once: clients that split
//! their writes at random points, pipeline, half-close, reset in the middle
//! of a request and send garbage, from many threads. Invariants: every
//! well-formed request is answered exactly once and in order, the servers
//! live on, their memory stays bounded, and once the clients are gone
//! their loops sleep (no spin). Seeded, bounded in count and time.

mod process;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::Duration;

use process::{connect, Proc};

/// xorshift64*: a seeded generator, so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Echo,
    Http,
    Kv,
}

/// A request and the exact answer it must get.
fn request(kind: Kind, rng: &mut Rng, i: u64) -> (Vec<u8>, Vec<u8>) {
    match kind {
        Kind::Echo => {
            let len = 1 + rng.below(300) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            (bytes.clone(), bytes)
        }
        Kind::Http => {
            let body = format!("body {i} {}", rng.next());
            let req = format!(
                "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            (req.into_bytes(), body.into_bytes())
        }
        Kind::Kv => {
            let value = format!("v{i}-{}", rng.next());
            let req = format!("SET k{i} {value}\r\nGET k{i}\r\n");
            let answer = format!("+OK\r\n${}\r\n{value}\r\n", value.len());
            (req.into_bytes(), answer.into_bytes())
        }
    }
}

/// Reads one answer to a request of `kind` and returns the part to
/// compare (the body, for http).
fn answer(kind: Kind, r: &mut BufReader<TcpStream>, expect: &[u8]) -> Vec<u8> {
    match kind {
        Kind::Echo | Kind::Kv => {
            let mut got = vec![0; expect.len()];
            r.read_exact(&mut got).expect("an answer");
            got
        }
        Kind::Http => {
            let mut length = 0;
            loop {
                let mut line = String::new();
                r.read_line(&mut line).expect("a head");
                if let Some(n) = line.strip_prefix("Content-Length: ") {
                    length = n.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    break;
                }
                assert!(!line.is_empty(), "the server closed mid-answer");
            }
            let mut body = vec![0; length];
            r.read_exact(&mut body).expect("a body");
            body
        }
    }
}

/// Writes `bytes` in random pieces with random short pauses between.
fn write_split(s: &mut TcpStream, bytes: &[u8], rng: &mut Rng) {
    let mut at = 0;
    while at < bytes.len() {
        let n = 1 + rng.below(bytes.len() as u64 - at as u64) as usize;
        s.write_all(&bytes[at..at + n]).expect("write");
        at += n;
        if rng.below(3) == 0 {
            thread::sleep(Duration::from_micros(rng.below(2000)));
        }
    }
}

/// One client's life: a few connections, each one of the behaviours.
fn client(kind: Kind, port: u16, seed: u64) {
    let mut rng = Rng(seed | 1);
    for round in 0..12 {
        let mut s = connect(port);
        let mut r = BufReader::new(s.try_clone().unwrap());
        match rng.below(5) {
            // Pipelined requests, split anywhere, answered in order.
            0 | 1 => {
                let n = 1 + rng.below(5);
                let mut wire = Vec::new();
                let mut expected = Vec::new();
                for i in 0..n {
                    let (req, ans) = request(kind, &mut rng, seed * 1000 + round * 10 + i);
                    wire.extend_from_slice(&req);
                    expected.push(ans);
                }
                write_split(&mut s, &wire, &mut rng);
                for ans in expected {
                    assert_eq!(answer(kind, &mut r, &ans), ans, "seed {seed}");
                }
            }
            // A request, then our FIN: the answer still comes.
            2 => {
                let (req, ans) = request(kind, &mut rng, seed * 1000 + round * 10);
                write_split(&mut s, &req, &mut rng);
                s.shutdown(Shutdown::Write).unwrap();
                assert_eq!(answer(kind, &mut r, &ans), ans, "seed {seed}");
            }
            // Reset in the middle of a request.
            3 => {
                let (req, _) = request(kind, &mut rng, 0);
                let cut = rng.below(req.len() as u64) as usize;
                let _ = s.write_all(&req[..cut]);
                let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
            }
            // Garbage, then gone (a protocol may answer with an error).
            _ => {
                let junk: Vec<u8> = (0..1 + rng.below(2000)).map(|_| rng.next() as u8).collect();
                let _ = s.write_all(&junk);
                let _ = s.shutdown(Shutdown::Write);
            }
        }
    }
}

#[test]
fn chaos_against_echo_http_and_kv_keeps_every_promise() {
    let servers = [
        (Kind::Echo, Proc::start(&[], "echo", &[])),
        (Kind::Http, Proc::start(&[], "http", &[])),
        (Kind::Kv, Proc::start(&[], "kv", &[])),
    ];
    let mut clients = Vec::new();
    for (s, (kind, server)) in servers.iter().enumerate() {
        for c in 0..12u64 {
            let (kind, port) = (*kind, server.port);
            let seed = 0x5eed_0000 + (s as u64) * 100 + c;
            clients.push(thread::spawn(move || client(kind, port, seed)));
        }
    }
    for c in clients {
        c.join().expect("a client's invariant failed");
    }
    for (kind, server) in &servers {
        // Still serving, exactly.
        let mut rng = Rng(7);
        let (req, ans) = request(*kind, &mut rng, 424242);
        let mut s = connect(server.port);
        s.write_all(&req).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        assert_eq!(answer(*kind, &mut r, &ans), ans);
        drop((s, r));
        assert!(
            (server.rss() >> 20) < 200,
            "RSS {} MiB",
            (server.rss() >> 20)
        );
    }
    // The clients are gone: the loops sleep. Past the linger timeout (2 s),
    // nothing is left to do; a spinning loop would burn 100 ticks a second.
    thread::sleep(Duration::from_millis(2500));
    for (_, server) in &servers {
        let before = server.cpu_ticks();
        thread::sleep(Duration::from_millis(500));
        let spent = server.cpu_ticks() - before;
        assert!(spent <= 5, "{spent} ticks of CPU in 500 ms with no clients");
    }
}
