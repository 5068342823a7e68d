//! Example 9 of 11: evloop as the networking core of a host program.
//!
//! ```sh
//! cargo run --release --example embed -- --web 127.0.0.1:7000 --admin 127.0.0.1:7001 --udp 127.0.0.1:7002
//! nc 127.0.0.1 7000              # web: every line comes back
//! echo stats | nc 127.0.0.1 7001 # admin: the host's counters
//! echo ping | nc -u 127.0.0.1 7002
//! max_conns 100                  # typed on stdin: applied from another thread
//! ```
//!
//! What it teaches: what a program that embeds the reactor needs from it.
//! One reactor, one thread, serves two listeners with different protocols
//! (it asks [`Context::listener`] which one accepted a connection), and
//! watches two sources it does not own the I/O of: a UDP socket and a
//! `timerfd`, registered with [`Context::register`] and heard in
//! `on_ready` (edge-triggered: each is read until `WouldBlock`). Another
//! thread, the host's console, changes `max_conns` through the
//! [`evloop::Handle`] while it runs. The guide's chapter "Embedding
//! evloop" walks through it.
//!
//! Read next: the guide's chapter 9, and `src/reactor/sources.rs`; then
//! `examples/proxy.rs` (example 10), a client and a server on one reactor.

mod common;

use std::fs::File;
use std::io::{BufRead, Read};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;

use clap::Parser;
use evloop::{ConnId, Context, Handler, ListenerId, Reactor, Readiness, SourceId};
use mio::net::UdpSocket;
use mio::unix::SourceFd;
use mio::Interest;

#[derive(Parser, Debug)]
#[command(about = "A host program with evloop as its networking core")]
struct Cli {
    /// The echo protocol's listener.
    #[arg(long, default_value = "127.0.0.1:7000")]
    web: SocketAddr,
    /// The admin protocol's listener: `stats`, one per line.
    #[arg(long, default_value = "127.0.0.1:7001")]
    admin: SocketAddr,
    /// A UDP echo on the same thread.
    #[arg(long, default_value = "127.0.0.1:7002")]
    udp: SocketAddr,
    /// The host's own periodic timer (a timerfd), in milliseconds.
    #[arg(long, default_value_t = 100)]
    tick_ms: u64,
}

/// The host's state, served by one handler.
struct Host {
    web: Option<ListenerId>,
    udp: UdpSocket,
    udp_id: Option<SourceId>,
    timer: File,
    timer_id: Option<SourceId>,
    ticks: u64,
    datagrams: u64,
}

impl Host {
    /// Reads the UDP socket until `WouldBlock`, echoing each datagram.
    fn udp_ready(&mut self) {
        let mut buf = [0; 1500];
        while let Ok((n, from)) = self.udp.recv_from(&mut buf) {
            self.datagrams += 1;
            let _ = self.udp.send_to(&buf[..n], from);
        }
    }

    /// Reads the timerfd: the expirations since the last read.
    fn timer_ready(&mut self) {
        let mut count = [0; 8];
        while let Ok(8) = self.timer.read(&mut count) {
            self.ticks += u64::from_ne_bytes(count);
        }
    }
}

impl Handler for Host {
    type Message = ();

    fn on_start(&mut self, cx: &mut Context<'_>) {
        self.udp_id = cx.register(&mut self.udp, Interest::READABLE).ok();
        let fd = self.timer.as_raw_fd();
        self.timer_id = cx.register(&mut SourceFd(&fd), Interest::READABLE).ok();
        if self.udp_id.is_none() || self.timer_id.is_none() {
            log::error!("registering the host's sources failed");
            cx.shutdown();
        }
    }

    fn on_ready(&mut self, _: &mut Context<'_>, source: SourceId, _: Readiness) {
        if Some(source) == self.udp_id {
            self.udp_ready();
        } else if Some(source) == self.timer_id {
            self.timer_ready();
        }
    }

    fn on_data(&mut self, cx: &mut Context<'_>, conn: ConnId, input: &[u8]) -> usize {
        if cx.listener(conn) == self.web {
            let _ = cx.write(conn, input); // echo
            return input.len();
        }
        // Admin: whole lines only; the rest waits for its newline.
        let Some(end) = input.iter().rposition(|&b| b == b'\n') else {
            return 0;
        };
        for line in input[..end].split(|&b| b == b'\n') {
            let answer = match line.trim_ascii() {
                b"stats" => format!(
                    "ticks={} datagrams={} {}\n",
                    self.ticks,
                    self.datagrams,
                    cx.stats()
                ),
                _ => "commands: stats\n".to_string(),
            };
            let _ = cx.write(conn, answer.as_bytes());
        }
        end + 1
    }
}

fn main() -> std::io::Result<std::process::ExitCode> {
    let cli = Cli::parse();
    common::init();
    let host = Host {
        web: None,
        udp: UdpSocket::bind(cli.udp)?,
        udp_id: None,
        timer: evloop::sys::timerfd(Duration::from_millis(cli.tick_ms))?,
        timer_id: None,
        ticks: 0,
        datagrams: 0,
    };
    let mut reactor = Reactor::new(host, evloop::Config::default())?;
    let web = reactor.listen(cli.web)?;
    reactor.listen(cli.admin)?;
    reactor.handler_mut().web = Some(web);
    reactor.handle_signals()?;
    // The host's console, on its own thread: `max_conns N` changes the
    // limit while the reactor runs.
    let handle = reactor.handle();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            let mut words = line.split_whitespace();
            match (words.next(), words.next().map(str::parse::<usize>)) {
                (Some("max_conns"), Some(Ok(n))) if handle.set_max_conns(n) => {
                    log::info!("console: max_conns is now {n}");
                }
                _ => log::warn!("console: try `max_conns N`"),
            }
        }
    });
    reactor.run()?;
    Ok(common::exit_code(&reactor.stats()))
}
