//! Out of descriptors: a server limited to 64 open files, flooded with 300
//! connections, neither spins nor dies, sheds what it cannot hold, and
//! serves again once descriptors free up.

mod process;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use process::Proc;

const LIMIT: u32 = 64;

fn round_trip(s: &mut TcpStream, msg: &[u8]) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut buf = vec![0; msg.len()];
    s.write_all(msg).is_ok() && s.read_exact(&mut buf).is_ok() && buf == msg
}

#[test]
fn flood_past_the_descriptor_limit_keeps_cpu_low_and_recovers() {
    let nofile = format!("--nofile={LIMIT}:{LIMIT}");
    let server = Proc::start(&["prlimit", &nofile, "--"], "echo", &[]);
    // Let the start-up probe's connection close first: a descriptor freed
    // in mid-flood rightly ends one episode and starts another.
    thread::sleep(Duration::from_millis(300));
    // The flood: far more connections than the server has descriptors.
    let mut flood = Vec::new();
    for _ in 0..300 {
        match TcpStream::connect(("127.0.0.1", server.port)) {
            Ok(s) => flood.push(s),
            Err(_) => break, // the listen queue is full: also fine
        }
    }
    thread::sleep(Duration::from_millis(300));

    // While the flood sits there, the server must not spin.
    let cpu0 = server.cpu_seconds();
    let wall = Instant::now();
    thread::sleep(Duration::from_secs(2));
    let cpu = server.cpu_seconds() - cpu0;
    let share = cpu / wall.elapsed().as_secs_f64();
    eprintln!(
        "flood of {} connections against {LIMIT} descriptors: server CPU {:.1}% over 2 s",
        flood.len(),
        share * 100.0
    );
    assert!(
        share < 0.10,
        "server spins at {:.0}% CPU while out of descriptors",
        share * 100.0
    );
    // One sustained flood is one episode: one log line, however many
    // accepts failed.
    let during = server.log().matches("pausing accepts").count();
    assert_eq!(during, 1, "log lines about pausing during one flood");

    // Some connections were served (the ones that got descriptors).
    let mut served = 0;
    for s in flood.iter_mut().take(20) {
        served += usize::from(round_trip(s, b"ping"));
    }
    assert!(served > 0, "nothing was served at all");

    // Free every descriptor: the server accepts and serves again.
    drop(flood);
    let start = Instant::now();
    let mut ok = false;
    while start.elapsed() < Duration::from_secs(10) {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", server.port)) {
            if round_trip(&mut s, b"back in business") {
                ok = true;
                break;
            }
        }
        thread::sleep(Duration::from_millis(50));
    }
    eprintln!("served again {:?} after the flood ended", start.elapsed());
    assert!(ok, "the server did not recover; log:\n{}", server.log());
    // Recovery may run out again briefly while the queue of dead flood
    // connections drains: each such episode is logged once.
    let episodes = server.log().matches("pausing accepts").count();
    eprintln!("episodes logged in all: {episodes}");
}
