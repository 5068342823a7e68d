//! Example 2 of 11: an echo server on the reactor.
//!
//! ```sh
//! cargo run --release --example echo -- --addr 127.0.0.1:7000
//! nc 127.0.0.1 7000        # type a line: it comes back
//! ```
//!
//! What it teaches: the server of example 1 (`examples/raw_echo.rs`)
//! with the loop taken out of the program. The whole protocol is one
//! method, `Echo::on_data`, below: every byte that arrives is queued back
//! and reported consumed. The reactor does the rest, including the three
//! things raw_echo gets wrong: backpressure for clients that do not read,
//! idle timeouts, and accept back-off when descriptors run out; and one
//! write per dispatch, and a graceful shutdown on SIGINT/SIGTERM. Run it
//! with `RUST_LOG=evloop=trace` to watch every event and state change.
//!
//! Read next: examples/client.rs (example 3), the other end of the
//! connection on the same reactor.

mod common;

use clap::Parser;
use evloop::{ConnId, Context, Handler};

/// The echo protocol, whole: every byte that arrives is queued back to the
/// sender and reported consumed. The reactor does the rest: it writes the
/// echo in one call at the end of the serve, stops reading a client that
/// does not read its echoes (backpressure), and closes quiet ones.
struct Echo;

impl Handler for Echo {
    type Message = ();

    fn on_data(&mut self, cx: &mut Context<'_>, conn: ConnId, input: &[u8]) -> usize {
        // A write fails only if the client is gone or past the output
        // limit; the reactor has already closed it then.
        let _ = cx.write(conn, input);
        input.len()
    }
}

#[derive(Parser, Debug)]
#[command(about = "Echo server on the evloop reactor")]
struct Cli {
    #[command(flatten)]
    server: common::ServerArgs,
}

fn main() -> std::io::Result<std::process::ExitCode> {
    let cli = Cli::parse();
    common::init();
    // One reactor, or --threads N shards each with its own Echo (it has
    // no state to share). SIGINT/SIGTERM: close connections as they go
    // quiet and exit 0; a second signal stops at once.
    cli.server.serve(cli.server.config(), &[], |_shard| Echo)
}
