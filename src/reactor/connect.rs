//! Outbound connections: to an address, to a Unix socket's path, and to
//! a host name resolved off the loop (`resolve.rs` holds the resolver).
//! Each is a connection in the slab from the start, in `Connecting`; the
//! first writable event says how the connect went (`finish_connect` in
//! `mod.rs`), and the connect timeout is its deadline on the wheel.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use mio::net::{TcpStream, UnixStream};
use mio::{Interest, Token};

use super::core::Core;
use super::resolve::{Found, Poster};
use super::settings::{Connect, Settings};
use crate::conn::{CloseReason, ConnId, NO_LISTENER};
use crate::state::State;
use crate::stream::Stream;

impl Core {
    /// Starts a non-blocking connect (it returns at once with the socket
    /// in progress; the first writable event says how it went), from
    /// `options.bind` if set, with its own timeout if set.
    pub(crate) fn connect(&mut self, addr: SocketAddr, options: Connect) -> io::Result<ConnId> {
        let stream = start_connect(addr, options.bind)?;
        self.counters().connects += 1;
        let id = self.add_conn(
            Stream::Tcp(stream),
            Some(addr),
            NO_LISTENER,
            State::Connecting,
        )?;
        self.connect_timeout(id, options.timeout);
        Ok(id)
    }

    /// Connects to the Unix domain socket at `path`. A Unix connect
    /// finishes at once or fails at once (`WouldBlock` when the
    /// listener's queue is full); it still reports through the first
    /// writable event, as TCP's does, so the handler sees one path.
    pub(crate) fn connect_unix(&mut self, path: &Path) -> io::Result<ConnId> {
        let stream = UnixStream::connect(path)?;
        self.counters().connects += 1;
        self.add_conn(Stream::Unix(stream), None, NO_LISTENER, State::Connecting)
    }

    /// Starts a connection to `host` by name: it is made at once, with no
    /// socket yet, and the name goes to the resolver thread (see
    /// `resolve.rs`); an IP address written out is connected to at once.
    pub(crate) fn connect_host(
        &mut self,
        host: &str,
        port: u16,
        options: Connect,
    ) -> io::Result<ConnId> {
        let literal = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if let Ok(ip) = literal.parse::<std::net::IpAddr>() {
            return self.connect(SocketAddr::new(ip, port), options);
        }
        self.resolver().check(host)?;
        self.resolver().start()?;
        self.counters().connects += 1;
        let id = self.add_conn(Stream::Resolving, None, NO_LISTENER, State::Connecting)?;
        self.connect_timeout(id, options.timeout);
        if !self.resolver().ask(id, host, port, options.bind) {
            self.abort(id, CloseReason::ConnectFailed(io::ErrorKind::BrokenPipe));
        }
        Ok(id)
    }

    /// How the resolver thread posts back (set when the reactor is built).
    pub(crate) fn set_resolver_poster(&mut self, poster: Poster) {
        self.resolver().set_poster(poster);
    }

    /// The resolver thread answered for `id` (which may have closed or
    /// timed out meanwhile: then the answer is dropped).
    pub(crate) fn resolved(&mut self, id: ConnId, found: Found) {
        // Still connecting (not closed in this turn, before its reap),
        // and still its answer to wait for.
        let connecting = self
            .conn(id)
            .is_some_and(|c| c.state() == State::Connecting);
        let Some(pending) = self.resolver().answered(id).filter(|_| connecting) else {
            return;
        };
        let failed = match found {
            Ok(addrs) => {
                log::debug!("conn {id}: resolved to {addrs:?}");
                pending.left = addrs.into();
                self.next_address(id).err()
            }
            Err(e) => {
                log::debug!("conn {id}: resolving failed: {e}");
                self.resolver().forget(id.index);
                Some(e.kind())
            }
        };
        if let Some(kind) = failed {
            self.abort(id, CloseReason::ConnectFailed(kind));
        }
    }

    /// Moves a connection by name on to its next address: the socket of
    /// the attempt that failed (if any) is closed, and a connect to the
    /// next address that can start is started. `Err` with the last
    /// failure when none is left (`NotFound` if there were none), or for
    /// a connection that is not by name.
    pub(crate) fn next_address(&mut self, id: ConnId) -> Result<(), io::ErrorKind> {
        let mut last = io::ErrorKind::NotFound;
        loop {
            let Some(pending) = self.resolver().pending_mut(id.index) else {
                return Err(last);
            };
            let Some(addr) = pending.left.pop_front() else {
                self.resolver().forget(id.index);
                return Err(last);
            };
            let bind = pending.bind;
            let mut stream = match start_connect(addr, bind) {
                Ok(stream) => Stream::Tcp(stream),
                Err(e) => {
                    last = e.kind();
                    continue;
                }
            };
            let interest = Interest::READABLE | Interest::WRITABLE;
            let token = Token(id.index as usize);
            if let Err(e) = self.registry().register(&mut stream, token, interest) {
                last = e.kind();
                continue;
            }
            stream.set_tcp_options(self.config().nodelay, self.keepalive().as_ref());
            let conn = self.conn_mut(id).ok_or(io::ErrorKind::NotConnected)?;
            log::debug!("conn {id}: connecting to {addr}");
            // The failed attempt's socket, if any, closes here (and leaves
            // the epoll set with it).
            conn.stream = stream;
            conn.peer = Some(addr);
            // What the failed attempt's events said is not this socket's.
            conn.readable = false;
            conn.writable = false;
            conn.fin_seen = false;
            conn.eof = false;
            return Ok(());
        }
    }

    /// Connections by name still resolving or trying addresses, and
    /// lookups with the resolver thread.
    #[cfg(test)]
    pub(crate) fn lookup_counts(&mut self) -> (usize, usize) {
        self.resolver().counts()
    }

    /// A connect finished: a connection by name needs no more addresses.
    pub(crate) fn connected(&mut self, id: ConnId) {
        self.resolver().forget(id.index);
        // A connect's own timeout is done with: an entry that held only
        // that leaves the side table, so a proxy that dials every backend
        // with its own timeout does not pay a lookup on every write.
        if let Some(settings) = self.settings_table().get_mut(id.index) {
            settings.connect_timeout = None;
            if *settings == Settings::default() {
                self.settings_table().remove(id.index);
            }
        }
    }

    /// A connect's own timeout, if it has one.
    fn connect_timeout(&mut self, id: ConnId, timeout: Option<Duration>) {
        if let Some(timeout) = timeout {
            if let Some(settings) = self.settings_mut(id) {
                settings.connect_timeout = Some(timeout);
            }
            self.arm(id);
        }
    }
}

/// Starts a non-blocking TCP connect to `addr`, from `bind` if given: it
/// returns at once with the connect in progress.
fn start_connect(addr: SocketAddr, bind: Option<SocketAddr>) -> io::Result<TcpStream> {
    let Some(local) = bind else {
        return TcpStream::connect(addr);
    };
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    socket.bind(&local.into())?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(socket.into()))
}
