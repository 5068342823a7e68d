//! An echo server (RFC 862, the first program of every TCP tutorial), on
//! the reactor.
//!
//! ```sh
//! cargo run --release --example echo -- --addr 127.0.0.1:7000
//! nc 127.0.0.1 7000        # type a line: it comes back
//! ```
//!
//! The whole protocol is one method, `Echo::on_data` in
//! `examples/common/mod.rs` (shared with the C10K demo): every byte that
//! arrives is queued back and reported consumed. The reactor does the
//! rest: one write per dispatch, backpressure for clients that do not
//! read, idle timeouts, and a graceful drain on SIGINT/SIGTERM.

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
