//! The TCP guide's echo server, on the reactor.
//!
//! ```sh
//! cargo run --release --example echo -- --addr 127.0.0.1:7000
//! nc 127.0.0.1 7000        # type a line: it comes back
//! ```
//!
//! The whole protocol is `on_data`: every byte that arrives is queued back
//! to the sender and reported consumed. The reactor does the rest: it
//! writes the echo in one call at the end of the dispatch, stops reading a
//! client that does not read its echoes (backpressure), and closes clients
//! that go quiet for `--idle-timeout` seconds.

mod common;

use clap::Parser;
use evloop::{ConnId, Context, Handler, Reactor};

#[derive(Parser, Debug)]
#[command(about = "Echo server on the evloop reactor")]
struct Cli {
    #[command(flatten)]
    server: common::ServerArgs,
}

struct Echo;

impl Handler for Echo {
    type Message = ();

    fn on_data(&mut self, cx: &mut Context<'_>, conn: ConnId, input: &[u8]) -> usize {
        // A write can fail only if the client is gone or past the output
        // limit; the reactor has already closed it then, so there is
        // nothing more to do.
        let _ = cx.write(conn, input);
        input.len()
    }
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
