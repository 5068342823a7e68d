//! The sockets under connections and listeners: TCP, or Unix domain
//! stream sockets.
//!
//! Both are byte streams with the same readiness rules (a read of 0 is
//! the peer's close, `WouldBlock` ends an edge, a short write means the
//! socket buffer is full), so everything above this module (the read and
//! write sides, the state machine, the timers, the handler) is the same
//! for both. What differs lives here: how they are accepted and
//! connected, what a peer's address is (a Unix peer has no IP address, so
//! the allow and deny lists and the per-IP cap do not apply to it: the
//! socket file's permissions are its access control), and the socket
//! options only TCP has (`TCP_NODELAY`, keepalive, reset on close).

use std::io::{self, Read, Write};
use std::mem::MaybeUninit;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use mio::event::Source;
use mio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use mio::{Interest, Registry, Token};

/// Who is at the other end of a Unix domain connection: the process
/// that connected (or accepted), as the kernel recorded it then
/// ([`Context::peer_cred`](crate::Context::peer_cred)). A Unix socket's
/// access control beyond its file's permissions starts here: a server can
/// serve only its own user, or root.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PeerCred {
    /// The peer's process id, when it connected.
    pub pid: u32,
    /// The peer's effective user id.
    pub uid: u32,
    /// The peer's effective group id.
    pub gid: u32,
}

/// A connection's socket.
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    /// No socket yet: an outbound connection whose host name is being
    /// resolved (`src/reactor/resolve.rs`). It is never read or written
    /// (no event comes for it); closing it closes nothing.
    Resolving,
}

/// What any I/O on a connection with no socket yet answers.
fn no_socket() -> io::Error {
    io::Error::from(io::ErrorKind::WouldBlock)
}

impl Stream {
    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => (&*s).read(buf),
            Stream::Unix(s) => (&*s).read(buf),
            Stream::Resolving => Err(no_socket()),
        }
    }

    pub(crate) fn write(&self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => (&*s).write(bytes),
            // `write(2)` on a Unix socket whose peer is gone raises
            // SIGPIPE; `send` with MSG_NOSIGNAL returns EPIPE instead, as
            // std's TCP writes do.
            Stream::Unix(s) => socket2::SockRef::from(s).send_with_flags(bytes, libc::MSG_NOSIGNAL),
            Stream::Resolving => Err(no_socket()),
        }
    }

    /// Peeks at one byte without taking it: 1 if input waits, 0 if the
    /// peer's FIN is all there is (for a paused connection, which is not
    /// read). The byte itself is not wanted.
    pub(crate) fn peek_one(&self) -> io::Result<usize> {
        let mut byte = [MaybeUninit::<u8>::uninit(); 1];
        match self {
            Stream::Tcp(s) => socket2::SockRef::from(s).peek(&mut byte),
            Stream::Unix(s) => socket2::SockRef::from(s).peek(&mut byte),
            Stream::Resolving => Err(no_socket()),
        }
    }

    pub(crate) fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(how),
            Stream::Unix(s) => s.shutdown(how),
            Stream::Resolving => Ok(()),
        }
    }

    pub(crate) fn take_error(&self) -> io::Result<Option<io::Error>> {
        match self {
            Stream::Tcp(s) => s.take_error(),
            Stream::Unix(s) => s.take_error(),
            Stream::Resolving => Ok(None),
        }
    }

    /// Whether an outbound connect has finished (mio's rule: asked on a
    /// writable event after `take_error` said nothing).
    pub(crate) fn is_connected(&self) -> io::Result<bool> {
        let result = match self {
            Stream::Tcp(s) => s.peer_addr().map(drop),
            Stream::Unix(s) => s.peer_addr().map(drop),
            Stream::Resolving => return Ok(false),
        };
        match result {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The local address of a TCP connection; `None` for a Unix one.
    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Stream::Tcp(s) => s.local_addr().ok(),
            Stream::Unix(_) | Stream::Resolving => None,
        }
    }

    /// Sets the options the `Config` asks for; TCP's only. They fail only
    /// on a socket that is already dead, which the first read or write
    /// will report, so failures are ignored.
    pub(crate) fn set_tcp_options(&self, nodelay: bool, keepalive: Option<&socket2::TcpKeepalive>) {
        let Stream::Tcp(s) = self else {
            return;
        };
        if nodelay {
            let _ = s.set_nodelay(true);
        }
        if let Some(keepalive) = keepalive {
            let _ = socket2::SockRef::from(s).set_tcp_keepalive(keepalive);
        }
    }

    /// Makes the close send RST and drop unsent data (`SO_LINGER` 0), so
    /// a cut-short answer never looks complete. A Unix socket has no RST:
    /// its close drops unsent data, and the peer reads the end (or
    /// `ECONNRESET` if it had sent bytes we never read).
    pub(crate) fn reset_on_close(&self) {
        if let Stream::Tcp(s) = self {
            let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
        }
    }

    /// The peer process of a Unix domain connection; `None` for TCP.
    pub(crate) fn peer_cred(&self) -> Option<PeerCred> {
        let Stream::Unix(s) = self else {
            return None;
        };
        let (pid, uid, gid) = crate::sys::peer_cred(s.as_fd()).ok()?;
        Some(PeerCred { pid, uid, gid })
    }

    /// The socket's descriptor; `None` before it has one.
    pub(crate) fn fd(&self) -> Option<BorrowedFd<'_>> {
        match self {
            Stream::Tcp(s) => Some(s.as_fd()),
            Stream::Unix(s) => Some(s.as_fd()),
            Stream::Resolving => None,
        }
    }
}

impl Source for Stream {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.register(registry, token, interest),
            Stream::Unix(s) => s.register(registry, token, interest),
            Stream::Resolving => Ok(()), // registered once it has a socket
        }
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.reregister(registry, token, interest),
            Stream::Unix(s) => s.reregister(registry, token, interest),
            Stream::Resolving => Ok(()),
        }
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.deregister(registry),
            Stream::Unix(s) => s.deregister(registry),
            Stream::Resolving => Ok(()),
        }
    }
}

/// A listener's socket.
#[derive(Debug)]
pub(crate) enum ListenSocket {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl ListenSocket {
    /// Accepts one connection: its socket, and its peer's address if it
    /// has one (TCP).
    pub(crate) fn accept(&self) -> io::Result<(Stream, Option<SocketAddr>)> {
        match self {
            ListenSocket::Tcp(l) => l.accept().map(|(s, peer)| (Stream::Tcp(s), Some(peer))),
            ListenSocket::Unix(l) => l.accept().map(|(s, _)| (Stream::Unix(s), None)),
        }
    }

    /// The address a TCP listener is bound to; `None` for a Unix one.
    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            ListenSocket::Tcp(l) => l.local_addr().ok(),
            ListenSocket::Unix(_) => None,
        }
    }

    /// The path a Unix listener is bound to; `None` for TCP, or an
    /// unnamed socket.
    pub(crate) fn path(&self) -> Option<std::path::PathBuf> {
        match self {
            ListenSocket::Tcp(_) => None,
            ListenSocket::Unix(l) => l.local_addr().ok()?.as_pathname().map(Into::into),
        }
    }
}

impl Source for ListenSocket {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        match self {
            ListenSocket::Tcp(l) => l.register(registry, token, interest),
            ListenSocket::Unix(l) => l.register(registry, token, interest),
        }
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        match self {
            ListenSocket::Tcp(l) => l.reregister(registry, token, interest),
            ListenSocket::Unix(l) => l.reregister(registry, token, interest),
        }
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            ListenSocket::Tcp(l) => l.deregister(registry),
            ListenSocket::Unix(l) => l.deregister(registry),
        }
    }
}
