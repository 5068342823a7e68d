//! Example 3 of 11: the TCP guide's echo client, on the reactor.
//!
//! ```sh
//! cargo run --example client -- hello world       # two messages
//! printf 'a\nb\n' | cargo run --example client    # one per stdin line
//! cargo run --features tls --example client -- --tls --ca cert.pem hello   # over TLS
//! ```
//!
//! Each message goes out with a newline; the client waits for all of it to
//! come back, prints it, and sends the next. It exits 0 once every echo is
//! back, and non-zero with a reason if it cannot connect, the server
//! closes early, or an echo takes longer than `--timeout`.
//!
//! What it teaches: an outbound connection (a non-blocking connect) in the
//! same slab as accepted ones, a thread feeding the reactor through a
//! `Handle` (stdin is blocking; the reactor must never be), and a user
//! timer as the reply deadline.
//!
//! Read next: examples/chat/main.rs (example 4), a server that writes to
//! connections other than the one it is serving.

mod common;

use std::collections::VecDeque;
use std::io::BufRead;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use clap::Parser;
use evloop::timer::TimerId;
use evloop::{CloseReason, Config, ConnId, Context, Handler, Reactor};

#[derive(Parser, Debug)]
#[command(about = "Echo client on the evloop reactor")]
struct Cli {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:7000")]
    addr: SocketAddr,
    /// Seconds to wait for each echo (and for the connect).
    #[arg(long, default_value_t = 5)]
    timeout: u64,
    #[command(flatten)]
    tls: common::ClientTlsArgs,
    /// Messages to send; without any, each line of stdin is one.
    messages: Vec<String>,
}

/// One message on its way: what must come back, what has, and its deadline.
struct InFlight {
    expected: Vec<u8>,
    got: Vec<u8>,
    deadline: TimerId,
}

struct Client {
    addr: SocketAddr,
    conn: Option<ConnId>,
    open: bool,
    queue: VecDeque<String>,
    in_flight: Option<InFlight>,
    /// No more messages will be queued.
    input_done: bool,
    timeout: Duration,
    /// Why the client failed, if it did.
    error: Option<String>,
}

impl Client {
    /// Sends the next message if none is in flight; closes when all are done.
    fn send_next(&mut self, cx: &mut Context<'_>) {
        let Some(conn) = self.conn.filter(|_| self.open && self.in_flight.is_none()) else {
            return;
        };
        match self.queue.pop_front() {
            Some(message) => {
                let mut line = message.into_bytes();
                line.push(b'\n');
                if let Err(e) = cx.write(conn, &line) {
                    return self.fail(cx, format!("sending: {e}"));
                }
                let deadline = cx.set_timer(self.timeout, 0);
                self.in_flight = Some(InFlight {
                    expected: line,
                    got: Vec::new(),
                    deadline,
                });
            }
            None if self.input_done => cx.close(conn),
            None => {}
        }
    }

    fn fail(&mut self, cx: &mut Context<'_>, why: String) {
        self.error.get_or_insert(why);
        if let Some(conn) = self.conn {
            cx.abort(conn);
        }
        cx.shutdown();
    }
}

impl Handler for Client {
    /// A line from stdin, or `None` at its end.
    type Message = Option<String>;

    fn on_open(&mut self, cx: &mut Context<'_>, _conn: ConnId) {
        self.open = true;
        self.send_next(cx);
    }

    fn on_data(&mut self, cx: &mut Context<'_>, _conn: ConnId, input: &[u8]) -> usize {
        let Some(flight) = self.in_flight.as_mut() else {
            self.fail(cx, format!("{} bytes nobody asked for", input.len()));
            return input.len();
        };
        let want = flight.expected.len() - flight.got.len();
        let take = want.min(input.len());
        flight.got.extend_from_slice(&input[..take]);
        if flight.got.len() == flight.expected.len() {
            if flight.got != flight.expected {
                self.fail(cx, "the echo differs from what was sent".into());
                return input.len();
            }
            cx.cancel_timer(flight.deadline);
            print!("{}", String::from_utf8_lossy(&flight.got));
            self.in_flight = None;
            self.send_next(cx);
        }
        if take < input.len() {
            self.fail(cx, "the server sent more than it was sent".into());
        }
        input.len()
    }

    fn on_timer(&mut self, cx: &mut Context<'_>, _token: u64) {
        let what = if self.open {
            "answer"
        } else {
            "accept the connection"
        };
        self.fail(
            cx,
            format!("{} did not {what} within {:?}", self.addr, self.timeout),
        );
    }

    fn on_message(&mut self, cx: &mut Context<'_>, line: Option<String>) {
        match line {
            Some(line) => self.queue.push_back(line),
            None => self.input_done = true,
        }
        self.send_next(cx);
    }

    fn on_close(&mut self, cx: &mut Context<'_>, _conn: ConnId, reason: CloseReason) {
        let finished = self.input_done && self.queue.is_empty() && self.in_flight.is_none();
        if !finished || reason != CloseReason::Closed {
            let why = match reason {
                CloseReason::ConnectFailed(kind) => {
                    format!("cannot connect to {}: {kind}", self.addr)
                }
                CloseReason::ConnectTimeout => {
                    format!("cannot connect to {}: timed out", self.addr)
                }
                CloseReason::Tls(why) => format!("TLS with {} failed: {why}", self.addr),
                other => format!("connection closed before all echoes came back: {other}"),
            };
            self.error.get_or_insert(why);
        }
        cx.shutdown();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let timeout = Duration::from_secs(cli.timeout);
    let from_args = !cli.messages.is_empty();
    let client = Client {
        addr: cli.addr,
        conn: None,
        open: false,
        queue: cli.messages.into(),
        in_flight: None,
        input_done: from_args,
        timeout,
        error: None,
    };
    let config = Config {
        connect_timeout: timeout,
        idle_timeout: None, // a person at a prompt may think for a while
        ..Config::default()
    };
    let result = Reactor::new(client, config).and_then(|mut reactor| {
        let tls = cli.tls.load()?;
        let conn = reactor.connect(cli.addr)?;
        if let Some(tls) = &tls {
            tls.start_outside(&mut reactor, conn)?;
        }
        reactor.handler_mut().conn = Some(conn);
        if !from_args {
            let handle = reactor.handle();
            // stdin blocks, so it gets a thread of its own; the reactor
            // hears each line as a posted message.
            thread::spawn(move || {
                for line in std::io::stdin().lock().lines() {
                    let Ok(line) = line else { break };
                    if handle.post(Some(line)).is_err() {
                        return;
                    }
                }
                let _ = handle.post(None);
            });
        }
        reactor.run()?;
        Ok(reactor)
    });
    match result {
        Ok(reactor) => match &reactor.handler().error {
            None => ExitCode::SUCCESS,
            Some(why) => {
                eprintln!("client: {why}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("client: {e}");
            ExitCode::FAILURE
        }
    }
}
