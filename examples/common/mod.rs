#![allow(dead_code)] // each example uses its own part of this module

//! What every example server shares: its command-line flags and start-up.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use evloop::{Cidr, Config, ConnId, Context, Handler, Keepalive, ListenerId, Reactor, Stats};

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
    /// Only these networks may connect (repeatable; CIDR or address).
    #[arg(long, value_name = "CIDR")]
    pub allow: Vec<Cidr>,
    /// These networks may not connect (repeatable; checked first).
    #[arg(long, value_name = "CIDR")]
    pub deny: Vec<Cidr>,
    /// At most this many connections from one address.
    #[arg(long, value_name = "N")]
    pub max_per_ip: Option<usize>,
    /// At --max-conns, accept, write this line and close, instead of
    /// leaving new connections waiting in the listen queue.
    #[arg(long, value_name = "TEXT")]
    pub reject_line: Option<String>,
    /// TCP keepalive: first probe after this many idle seconds (then every
    /// 10 s, 3 probes).
    #[arg(long, value_name = "SECS")]
    pub keepalive: Option<u64>,
    /// Bytes all connections' buffers may hold together before the largest
    /// holders are closed: a number with an optional K, M or G suffix
    /// (powers of 1024), e.g. 512M. Default 1G (chat: 256M for the room).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_buffered: Option<usize>,
    /// Serve TLS with this certificate chain (PEM, leaf first); needs
    /// --tls-key, and a build with `--features tls`.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Mutual TLS: clients must present a certificate signed by a CA in
    /// this PEM file.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Reactors to run, one per thread, each with its own SO_REUSEPORT
    /// listener on --addr (`evloop::Server`); --max-conns and
    /// --max-per-ip hold for all of them together.
    #[arg(long, default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=evloop::server::MAX_THREADS as i64))]
    pub threads: u16,
    /// With --threads: pin shard i to CPU i (modulo the CPUs there are).
    #[arg(long, requires = "threads")]
    pub pin_cpus: bool,
    /// With --threads: send each new connection to the shard numbered as
    /// the CPU its first packet arrived on (SO_ATTACH_REUSEPORT_CBPF),
    /// where the kernel allows it; for real NICs (on loopback a packet
    /// arrives on its sender's CPU).
    #[arg(long, requires = "threads")]
    pub steer_by_cpu: bool,
    /// Wake-up coalescing: under load, nap this many microseconds (plus
    /// the kernel's 50 us timer slack) before polling again, so what
    /// arrives meanwhile shares one wake-up; at most 1000, 0 turns it off
    /// (`evloop::Config::coalesce`). Default 0, except where a server
    /// says otherwise.
    #[arg(long, value_name = "US",
          value_parser = clap::value_parser!(u64).range(0..=evloop::MAX_COALESCE.as_micros() as u64))]
    pub coalesce_us: Option<u64>,
}

/// `HOST:PORT` split, the host a name or an IP address (IPv6 in
/// brackets, `[::1]:6379`); `None` if `s` is not one.
pub fn host_port(s: &str) -> Option<(&str, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port = port.parse().ok().filter(|&p| p != 0)?;
    let bracketed = host.len() > 2 && host.starts_with('[') && host.ends_with(']');
    if host.is_empty() || (host.contains(':') && !bracketed) {
        return None;
    }
    Some((host, port))
}

/// A backend's `HOST:PORT` as an address. A host name is looked up here,
/// once, before the loop starts, with the system's resolver (`/etc/hosts`,
/// DNS), and its first address is used: what twemproxy, HAProxy and nginx
/// do with a name in their configuration by default. A name whose
/// address changes needs a restart; an IP address is taken as it is.
pub fn resolve(s: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let (host, port) = host_port(s).ok_or_else(|| format!("{s}: not HOST:PORT"))?;
    if let Ok(addr) = s.parse() {
        return Ok(addr); // an IP address: nothing to look up
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("{s}: {host} does not resolve: {e}"))?
        .next()
        .ok_or_else(|| format!("{s}: {host} has no address"))
}

/// A size such as `65536`, `64K`, `512M` or `1G` (powers of 1024).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let (digits, shift) = match s.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&s[..s.len() - 1], 10),
        Some('M') => (&s[..s.len() - 1], 20),
        Some('G') => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    let n: usize = digits
        .parse()
        .map_err(|_| format!("'{s}' is not a size (a number, optionally with K, M or G)"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("'{s}' is too large"))
}

impl ServerArgs {
    /// The reactor configuration these flags describe.
    pub fn config(&self) -> Config {
        self.config_buffered(evloop::DEFAULT_MAX_BUFFERED)
    }

    /// The same, for a server whose own default for `--max-buffered` is
    /// `default`.
    pub fn config_buffered(&self, default: usize) -> Config {
        let max_buffered = self.max_buffered.unwrap_or(default);
        log::info!("max buffered: {max_buffered} bytes across all connections (--max-buffered)");
        Config {
            max_buffered,
            idle_timeout: (self.idle_timeout > 0).then(|| Duration::from_secs(self.idle_timeout)),
            max_conns: self.max_conns,
            shutdown_timeout: Duration::from_secs(self.shutdown_timeout),
            allow: self.allow.clone(),
            deny: self.deny.clone(),
            max_per_ip: self.max_per_ip,
            reject_line: self
                .reject_line
                .as_ref()
                .map(|l| format!("{l}\r\n").into_bytes()),
            coalesce: Duration::from_micros(self.coalesce_us.unwrap_or(0)),
            keepalive: self.keepalive.map(|idle| Keepalive {
                idle: Duration::from_secs(idle),
                interval: Duration::from_secs(10),
                count: 3,
            }),
            ..Config::default()
        }
    }
}

impl ServerArgs {
    /// Listens on `--addr`: over TLS if `--tls-cert` is given (offering
    /// `alpn`, in that order), else plain.
    fn listen<H: Handler>(
        &self,
        reactor: &mut Reactor<H>,
        alpn: &[&str],
    ) -> io::Result<ListenerId> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => listen_tls(reactor, self, cert, key, alpn),
            _ => reactor.listen(self.addr),
        }
    }

    /// Runs the server until it has shut down: one reactor on this
    /// thread, or `--threads N` shards, each making its handler with
    /// `make(shard)`. SIGINT/SIGTERM shut it down. The exit code says
    /// whether shutdown had to cut connections; with shards, each logs its
    /// own stats line (`shard 0: accepted=...`) beside the sum.
    pub fn serve<H, F>(
        &self,
        config: Config,
        alpn: &[&str],
        make: F,
    ) -> io::Result<std::process::ExitCode>
    where
        H: Handler + 'static,
        H::Message: Send + 'static,
        F: Fn(usize) -> H + Send + Sync + 'static,
    {
        self.serve_with_peers(config, alpn, move |shard, _| make(shard))
    }

    /// [`serve`](Self::serve) for a handler that talks to the other
    /// shards: `make(shard, peers)`, with `peers` `None` for one reactor.
    pub fn serve_with_peers<H, F>(
        &self,
        config: Config,
        alpn: &[&str],
        make: F,
    ) -> io::Result<std::process::ExitCode>
    where
        H: Handler + 'static,
        H::Message: Send + 'static,
        F: Fn(usize, Option<evloop::Peers<H::Message>>) -> H + Send + Sync + 'static,
    {
        self.serve_all(config, alpn, &[], make)
    }

    /// The general form: `--addr` first (listener index 0 in every
    /// reactor), then each of `extra` in order (index 1, 2, ...: a status
    /// page, say, which each shard then serves for itself).
    pub fn serve_all<H, F>(
        &self,
        config: Config,
        alpn: &[&str],
        extra: &[SocketAddr],
        make: F,
    ) -> io::Result<std::process::ExitCode>
    where
        H: Handler + 'static,
        H::Message: Send + 'static,
        F: Fn(usize, Option<evloop::Peers<H::Message>>) -> H + Send + Sync + 'static,
    {
        if self.threads <= 1 {
            let mut reactor = Reactor::new(make(0, None), config)?;
            self.listen(&mut reactor, alpn)?;
            for &addr in extra {
                reactor.listen(addr)?;
            }
            reactor.handle_signals()?;
            reactor.run()?;
            return Ok(exit_code(&reactor.stats()));
        }
        let builder = evloop::Server::builder(config)
            .threads(usize::from(self.threads))
            .pin_cpus(self.pin_cpus)
            .steer_by_cpu(self.steer_by_cpu)
            .handle_signals();
        let mut builder = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => shard_tls(builder, self, cert, key, alpn)?,
            _ => builder.listen(self.addr),
        };
        for &addr in extra {
            builder = builder.listen(addr);
        }
        let stats = builder
            .start_with_peers(move |shard, peers| make(shard, Some(peers)))?
            .run()?;
        for (i, shard) in stats.shards.iter().enumerate() {
            log::info!("shard {i}: {shard}");
        }
        Ok(exit_code(&stats.total))
    }
}

#[cfg(feature = "tls")]
fn shard_tls(
    builder: evloop::ServerBuilder,
    args: &ServerArgs,
    cert: &std::path::Path,
    key: &std::path::Path,
    alpn: &[&str],
) -> io::Result<evloop::ServerBuilder> {
    Ok(builder.listen_tls(args.addr, tls_config(args, cert, key, alpn)?))
}

#[cfg(not(feature = "tls"))]
fn shard_tls(
    _: evloop::ServerBuilder,
    _: &ServerArgs,
    _: &std::path::Path,
    _: &std::path::Path,
    _: &[&str],
) -> io::Result<evloop::ServerBuilder> {
    Err(no_tls())
}

#[cfg(feature = "tls")]
fn tls_config(
    args: &ServerArgs,
    cert: &std::path::Path,
    key: &std::path::Path,
    alpn: &[&str],
) -> io::Result<std::sync::Arc<rustls::ServerConfig>> {
    // The error's text, not its structure: `main` prints it as it is.
    let invalid =
        |e: evloop::tls::TlsError| io::Error::new(io::ErrorKind::InvalidInput, e.to_string());
    let mut tls = evloop::tls::TlsConfig::new()
        .certificate(cert, key)
        .map_err(invalid)?
        .alpn(alpn.iter().copied());
    if let Some(ca) = &args.tls_client_ca {
        tls = tls.client_ca(ca).map_err(invalid)?;
        log::info!(
            "mutual TLS: clients need a certificate from {}",
            ca.display()
        );
    }
    log::info!("TLS on {}: {}", args.addr, cert.display());
    tls.build().map_err(invalid)
}

#[cfg(feature = "tls")]
fn listen_tls<H: Handler>(
    reactor: &mut Reactor<H>,
    args: &ServerArgs,
    cert: &std::path::Path,
    key: &std::path::Path,
    alpn: &[&str],
) -> io::Result<ListenerId> {
    reactor.listen_tls(args.addr, tls_config(args, cert, key, alpn)?)
}

#[cfg(not(feature = "tls"))]
fn listen_tls<H: Handler>(
    _: &mut Reactor<H>,
    _: &ServerArgs,
    _: &std::path::Path,
    _: &std::path::Path,
    _: &[&str],
) -> io::Result<ListenerId> {
    Err(no_tls())
}

#[cfg(not(feature = "tls"))]
fn no_tls() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "--tls-cert needs TLS: build with `cargo build --release --examples --features tls`",
    )
}

/// Flags of the examples that connect out: TLS to the server.
#[derive(Args, Debug, Clone)]
pub struct ClientTlsArgs {
    /// Connect over TLS, verifying the server with --ca (needs a build
    /// with `--features tls`).
    #[arg(long, requires = "ca")]
    pub tls: bool,
    /// The CA certificate(s) the server's certificate must chain to (PEM).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// The name the server's certificate must be for (and sent by SNI).
    #[arg(long, value_name = "NAME", default_value = "localhost")]
    pub server_name: String,
}

/// What `--tls` asks for: a client configuration and the server's name.
pub struct ClientTls {
    #[cfg(feature = "tls")]
    config: std::sync::Arc<rustls::ClientConfig>,
    name: String,
}

impl ClientTlsArgs {
    /// The TLS client these flags describe, if `--tls` was given.
    pub fn load(&self) -> io::Result<Option<ClientTls>> {
        if !self.tls {
            return Ok(None);
        }
        #[cfg(feature = "tls")]
        {
            let ca = self.ca.as_ref().expect("clap requires --ca with --tls");
            let config = evloop::tls::client_config(ca)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
            Ok(Some(ClientTls {
                config,
                name: self.server_name.clone(),
            }))
        }
        #[cfg(not(feature = "tls"))]
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "--tls needs TLS: build with `cargo build --release --examples --features tls`",
        ))
    }
}

impl ClientTls {
    /// Makes `conn`, just connected from a callback, a TLS client.
    pub fn start(&self, cx: &mut Context<'_>, conn: ConnId) -> io::Result<()> {
        #[cfg(feature = "tls")]
        return cx.start_tls(conn, std::sync::Arc::clone(&self.config), &self.name);
        #[cfg(not(feature = "tls"))]
        {
            let _ = (cx, conn, &self.name);
            Ok(())
        }
    }

    /// The same, for a connection made outside the loop.
    pub fn start_outside<H: Handler>(
        &self,
        reactor: &mut Reactor<H>,
        conn: ConnId,
    ) -> io::Result<()> {
        #[cfg(feature = "tls")]
        return reactor.start_tls(conn, std::sync::Arc::clone(&self.config), &self.name);
        #[cfg(not(feature = "tls"))]
        {
            let _ = (reactor, conn, &self.name);
            Ok(())
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

/// The exit code after `run` returned: 0 when shutdown closed every
/// connection, 1 when some had to be cut.
pub fn exit_code(stats: &Stats) -> std::process::ExitCode {
    log::info!("{stats}");
    if stats.shutdown_cut == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_take_k_m_g_suffixes() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert!(parse_size("").is_err());
        assert!(parse_size("12X").is_err());
        assert!(parse_size("-1K").is_err());
        assert!(parse_size("99999999999999999999G").is_err());
        assert!(parse_size(&format!("{}G", usize::MAX >> 20)).is_err());
    }
}
