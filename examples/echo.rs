//! Example 2 of 8: an echo server on the reactor.
//!
//! ```sh
//! cargo run --release --example echo -- --addr 127.0.0.1:7000
//! nc 127.0.0.1 7000        # type a line: it comes back
//! ```
//!
//! What it teaches: the server of example 1 (`examples/raw_echo.rs`)
//! with the loop taken out of the program. The whole protocol is one
//! method, `Echo::on_data` in `examples/common/mod.rs` (shared with the
//! C10K demo): every byte that arrives is queued back and reported
//! consumed. The reactor does the rest, including the three things
//! raw_echo gets wrong: backpressure for clients that do not read, idle
//! timeouts, and accept back-off when descriptors run out; and one write
//! per dispatch, and a graceful shutdown on SIGINT/SIGTERM. Run it with
//! `RUST_LOG=evloop=trace` to watch every event and state change.
//!
//! Read next: examples/client.rs (example 3), the other end of the
//! connection on the same reactor.

mod common;

use clap::Parser;
use common::Echo;
use evloop::Reactor;

#[derive(Parser, Debug)]
#[command(about = "Echo server on the evloop reactor")]
struct Cli {
    #[command(flatten)]
    server: common::ServerArgs,
}

fn main() -> std::io::Result<std::process::ExitCode> {
    let cli = Cli::parse();
    common::init();
    let mut reactor = Reactor::new(Echo, cli.server.config())?;
    reactor.listen(cli.server.addr)?;
    // SIGINT/SIGTERM: drain and exit 0; a second one stops at once.
    reactor.handle_signals()?;
    reactor.run()?;
    Ok(common::exit_code(&reactor.stats()))
}
