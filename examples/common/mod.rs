//! What every example server shares: its command-line flags and start-up.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use evloop::Config;

/// Flags every server example takes.
#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7000")]
    pub addr: SocketAddr,
    /// Close connections idle this many seconds (0: never).
    #[arg(long, default_value_t = 60)]
    pub idle_timeout: u64,
    /// Stop accepting at this many connections.
    #[arg(long, default_value_t = evloop::DEFAULT_MAX_CONNS)]
    pub max_conns: usize,
    /// Seconds graceful shutdown waits before cutting connections.
    #[arg(long, default_value_t = evloop::DEFAULT_SHUTDOWN_TIMEOUT.as_secs())]
    pub shutdown_timeout: u64,
}

impl ServerArgs {
    /// The reactor configuration these flags describe.
    pub fn config(&self) -> Config {
        Config {
            idle_timeout: (self.idle_timeout > 0).then(|| Duration::from_secs(self.idle_timeout)),
            max_conns: self.max_conns,
            shutdown_timeout: Duration::from_secs(self.shutdown_timeout),
            ..Config::default()
        }
    }
}

/// Logging through `RUST_LOG` (default `info`), and the open-file limit
/// raised as far as the hard limit allows: every connection is a
/// descriptor.
pub fn init() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match evloop::sys::raise_fd_limit() {
        Ok(limit) => log::info!("open-file limit: {limit}"),
        Err(e) => log::warn!("could not raise the open-file limit: {e}"),
    }
}
