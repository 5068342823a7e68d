//! Where connections come from: listeners, each with an id, opened,
//! adopted, paused, resumed and closed at run time; and connections
//! adopted already connected.
//!
//! A listener's id is its index in the reactor's table, never reused
//! while the reactor lives (a closed listener leaves its place empty), so
//! a connection can say which listener accepted it: one reactor serves
//! HTTP on one port and an admin protocol on another by asking
//! [`Context::listener`](crate::Context::listener).
//!
//! Adopting: a program that was handed its sockets (systemd socket
//! activation passes them as descriptors 3, 4, ... with `LISTEN_FDS` set;
//! a restarting server passes them to its successor) builds a
//! `std::net::TcpListener` from each and gives it to
//! [`Reactor::adopt_listener`]:
//!
//! ```no_run
//! use std::net::TcpListener;
//! use std::os::fd::FromRawFd;
//! # use evloop::{Config, ConnId, Context, Handler, Reactor};
//! # struct Echo;
//! # impl Handler for Echo {
//! #     type Message = ();
//! #     fn on_data(&mut self, cx: &mut Context<'_>, c: ConnId, i: &[u8]) -> usize { i.len() }
//! # }
//! let mut reactor = Reactor::new(Echo, Config::default())?;
//! let fds: i32 = std::env::var("LISTEN_FDS").ok().and_then(|n| n.parse().ok()).unwrap_or(0);
//! for fd in 3..3 + fds {
//!     // SAFETY (the caller's): systemd passed this descriptor, open, a
//!     // listening TCP socket, to this process alone.
//!     let listener = unsafe { TcpListener::from_raw_fd(fd) };
//!     reactor.adopt_listener(listener)?;
//! }
//! # Ok::<(), std::io::Error>(())
//! ```

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use mio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use mio::{Interest, Token};

use super::accept::Listener;
use super::{Reactor, FIRST_LISTENER};
use crate::conn::{ConnId, NO_LISTENER};
use crate::handler::Handler;
use crate::state::State;
use crate::stream::{ListenSocket, Stream};

/// Names a listener of one reactor ([`Reactor::listen`]); the connections
/// it accepts say so ([`Context::listener`](crate::Context::listener)).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListenerId(pub(crate) u32);

impl ListenerId {
    /// The listener's place in the reactor's table: 0 for the first one
    /// opened, and so on.
    ///
    /// ```
    /// # use evloop::{Config, ConnId, Context, Handler, Reactor};
    /// # struct Echo;
    /// # impl Handler for Echo {
    /// #     type Message = ();
    /// #     fn on_data(&mut self, cx: &mut Context<'_>, c: ConnId, i: &[u8]) -> usize { let _ = cx.write(c, i); i.len() }
    /// # }
    /// let mut reactor = Reactor::new(Echo, Config::default())?;
    /// let web = reactor.listen("127.0.0.1:0".parse().unwrap())?;
    /// let admin = reactor.listen("127.0.0.1:0".parse().unwrap())?;
    /// assert_eq!((web.index(), admin.index()), (0, 1));
    /// // A handler can keep what it knows of each listener in a Vec.
    /// let protocols = ["http", "admin"];
    /// assert_eq!(protocols[admin.index()], "admin");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn index(&self) -> usize {
        self.0 as usize
    }
}

impl fmt::Debug for ListenerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "listener#{}", self.0)
    }
}

impl fmt::Display for ListenerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A change to a listener asked from inside a callback, applied before
/// the next accept (the listeners live beside the handler, not in the
/// `Context`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ListenerChange {
    Pause,
    Resume,
    Close,
}

impl<H: Handler> Reactor<H> {
    /// Listens on `addr` (port 0 picks a free port). SO_REUSEADDR is
    /// always set, so a restarted server can bind while old connections
    /// sit in TIME_WAIT. [`listener_addr`](Self::listener_addr) says
    /// which address was bound.
    ///
    /// ```no_run
    /// # use evloop::{Config, ConnId, Context, Handler, Reactor};
    /// # struct Echo;
    /// # impl Handler for Echo {
    /// #     type Message = ();
    /// #     fn on_data(&mut self, cx: &mut Context<'_>, c: ConnId, i: &[u8]) -> usize { i.len() }
    /// # }
    /// let mut reactor = Reactor::new(Echo, Config::default())?;
    /// let web = reactor.listen("127.0.0.1:0".parse().unwrap())?;
    /// let admin = reactor.listen("127.0.0.1:0".parse().unwrap())?;
    /// println!("web on {:?}, admin on {:?}", reactor.listener_addr(web), reactor.listener_addr(admin));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn listen(&mut self, addr: SocketAddr) -> io::Result<ListenerId> {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        if self.core.config().reuse_port {
            socket.set_reuse_port(true)?;
        }
        socket.bind(&addr.into())?;
        socket.listen(self.core.config().backlog)?;
        self.adopt_listener(socket.into())
    }

    /// Takes a listener bound and listening elsewhere (systemd socket
    /// activation, a predecessor's hand-over; see the module docs): it is
    /// made non-blocking, registered, and accepted from like any other.
    /// The module docs in `src/reactor/listeners.rs` show systemd's
    /// descriptors adopted; here, one bound by std:
    ///
    /// ```
    /// # use evloop::{Config, ConnId, Context, Handler, Reactor};
    /// # struct Echo;
    /// # impl Handler for Echo {
    /// #     type Message = ();
    /// #     fn on_data(&mut self, cx: &mut Context<'_>, c: ConnId, i: &[u8]) -> usize { let _ = cx.write(c, i); i.len() }
    /// # }
    /// let mut reactor = Reactor::new(Echo, Config::default())?;
    /// // Bound and listening already, blocking: adopting makes it neither.
    /// let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// let addr = listener.local_addr()?;
    /// let web = reactor.adopt_listener(listener)?;
    /// assert_eq!(reactor.listener_addr(web), Some(addr));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn adopt_listener(&mut self, listener: std::net::TcpListener) -> io::Result<ListenerId> {
        listener.set_nonblocking(true)?;
        let socket = TcpListener::from_std(listener);
        log::info!("listening on {}", socket.local_addr()?);
        self.add_listener(ListenSocket::Tcp(socket))
    }

    /// Listens on a Unix domain stream socket at `path`. Its connections
    /// are served like TCP ones (the handler sees no difference but
    /// [`Context::is_unix`](crate::Context::is_unix) and a `None`
    /// [`peer_addr`](crate::Context::peer_addr)); the allow and deny
    /// lists and the per-IP cap do not apply (a Unix peer has no IP
    /// address: the socket file's permissions are its access control),
    /// `max_conns` does.
    ///
    /// The path must not exist: a file left by an earlier run makes this
    /// fail with `AddrInUse` (remove it first, as Redis and nginx do, once
    /// sure no other process serves it). The reactor does not remove the
    /// file when the listener closes; the program owns its paths.
    ///
    /// ```no_run
    /// # use evloop::{Config, ConnId, Context, Handler, Reactor};
    /// # struct Echo;
    /// # impl Handler for Echo {
    /// #     type Message = ();
    /// #     fn on_data(&mut self, cx: &mut Context<'_>, c: ConnId, i: &[u8]) -> usize { i.len() }
    /// # }
    /// let mut reactor = Reactor::new(Echo, Config::default())?;
    /// let path = "/run/myapp/admin.sock";
    /// let _ = std::fs::remove_file(path); // a previous run's
    /// let admin = reactor.listen_unix(path)?;
    /// # let _ = admin;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn listen_unix(&mut self, path: impl AsRef<Path>) -> io::Result<ListenerId> {
        let socket = UnixListener::bind(path.as_ref())?;
        log::info!("listening on {}", path.as_ref().display());
        self.add_listener(ListenSocket::Unix(socket))
    }

    /// Takes a Unix domain listener bound elsewhere (socket activation,
    /// a predecessor's hand-over), as [`adopt_listener`](Self::adopt_listener)
    /// does a TCP one.
    ///
    /// ```
    /// # use evloop::{Config, ConnId, Context, Handler, Reactor};
    /// # struct Echo;
    /// # impl Handler for Echo {
    /// #     type Message = ();
    /// #     fn on_data(&mut self, cx: &mut Context<'_>, c: ConnId, i: &[u8]) -> usize { let _ = cx.write(c, i); i.len() }
    /// # }
    /// let mut reactor = Reactor::new(Echo, Config::default())?;
    /// let path = std::env::temp_dir().join(format!("evloop-adopt-{}.sock", std::process::id()));
    /// # let _ = std::fs::remove_file(&path);
    /// // Bound elsewhere (here by std; in a real program, handed over).
    /// let listener = std::os::unix::net::UnixListener::bind(&path)?;
    /// let admin = reactor.adopt_unix_listener(listener)?;
    /// assert_eq!(reactor.listener_path(admin), Some(path.clone()));
    /// // The program owns the path: the reactor never removes it.
    /// std::fs::remove_file(&path)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn adopt_unix_listener(
        &mut self,
        listener: std::os::unix::net::UnixListener,
    ) -> io::Result<ListenerId> {
        listener.set_nonblocking(true)?;
        self.add_listener(ListenSocket::Unix(UnixListener::from_std(listener)))
    }

    fn add_listener(&mut self, mut socket: ListenSocket) -> io::Result<ListenerId> {
        let index = self.listeners.len();
        let id = u32::try_from(index)
            .ok()
            .filter(|&i| i < NO_LISTENER && index < FIRST_LISTENER)
            .ok_or_else(|| io::Error::other("too many listeners"))?;
        self.core.registry().register(
            &mut socket,
            Token(FIRST_LISTENER - index),
            Interest::READABLE,
        )?;
        self.listeners.push(Some(Listener::new(socket)));
        Ok(ListenerId(id))
    }

    /// Takes a TCP connection already established (by a blocking connect,
    /// or handed over): it is opened as if accepted, without a listener
    /// (`on_open`, then served like any other).
    ///
    /// ```
    /// # use evloop::{Config, ConnId, Context, Handler, Reactor};
    /// # struct Echo;
    /// # impl Handler for Echo {
    /// #     type Message = ();
    /// #     fn on_data(&mut self, cx: &mut Context<'_>, c: ConnId, i: &[u8]) -> usize { let _ = cx.write(c, i); i.len() }
    /// # }
    /// # let server = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// # let addr = server.local_addr()?;
    /// let mut reactor = Reactor::new(Echo, Config::default())?;
    /// // Connected the blocking way (at start-up, say), then served by the loop.
    /// let stream = std::net::TcpStream::connect(addr)?;
    /// let conn = reactor.adopt_stream(stream)?;
    /// # let _ = conn;
    /// assert_eq!(reactor.stats().active, 1);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn adopt_stream(&mut self, stream: std::net::TcpStream) -> io::Result<ConnId> {
        stream.set_nonblocking(true)?;
        let peer = stream.peer_addr()?;
        self.adopt(Stream::Tcp(TcpStream::from_std(stream)), Some(peer))
    }

    /// Takes a Unix domain stream connection already established (one
    /// end of a `UnixStream::pair`, or one handed over), as
    /// [`adopt_stream`](Self::adopt_stream) does a TCP one.
    ///
    /// ```
    /// # use evloop::{Config, ConnId, Context, Handler, Reactor};
    /// # struct Echo;
    /// # impl Handler for Echo {
    /// #     type Message = ();
    /// #     fn on_data(&mut self, cx: &mut Context<'_>, c: ConnId, i: &[u8]) -> usize { i.len() }
    /// # }
    /// let mut reactor = Reactor::new(Echo, Config::default())?;
    /// // A channel to a worker thread, served by the same loop.
    /// let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
    /// reactor.adopt_unix_stream(ours)?;
    /// # drop(theirs);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn adopt_unix_stream(
        &mut self,
        stream: std::os::unix::net::UnixStream,
    ) -> io::Result<ConnId> {
        stream.set_nonblocking(true)?;
        self.adopt(Stream::Unix(UnixStream::from_std(stream)), None)
    }

    /// Opens an adopted connection as if accepted.
    fn adopt(&mut self, stream: Stream, peer: Option<SocketAddr>) -> io::Result<ConnId> {
        self.core.read_clock();
        let id = self.core.add_conn(stream, peer, NO_LISTENER, State::Open)?;
        self.opened(id);
        // Bytes may already wait: no edge will announce them.
        if let Some(conn) = self.core.conn_mut(id) {
            conn.readable = true;
        }
        self.core.push_ready(id);
        Ok(id)
    }

    /// The address `listener` is bound to; `None` once it is closed, or
    /// for a Unix domain listener (see [`listener_path`](Self::listener_path)).
    ///
    /// ```
    /// # use evloop::{Config, ConnId, Context, Handler, Reactor};
    /// # struct Echo;
    /// # impl Handler for Echo {
    /// #     type Message = ();
    /// #     fn on_data(&mut self, cx: &mut Context<'_>, c: ConnId, i: &[u8]) -> usize { let _ = cx.write(c, i); i.len() }
    /// # }
    /// let mut reactor = Reactor::new(Echo, Config::default())?;
    /// let web = reactor.listen("127.0.0.1:0".parse().unwrap())?;
    /// // Port 0 asked for any free port: this says which one to tell clients.
    /// let addr = reactor.listener_addr(web);
    /// assert!(addr.is_some_and(|a| a.port() != 0));
    /// reactor.close_listener(web);
    /// assert_eq!(reactor.listener_addr(web), None);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn listener_addr(&self, listener: ListenerId) -> Option<SocketAddr> {
        let l = self.listeners.get(listener.index())?.as_ref()?;
        l.socket.local_addr()
    }

    /// The path a Unix domain listener is bound to; `None` once it is
    /// closed, or for TCP.
    ///
    /// ```
    /// # use evloop::{Config, ConnId, Context, Handler, Reactor};
    /// # struct Echo;
    /// # impl Handler for Echo {
    /// #     type Message = ();
    /// #     fn on_data(&mut self, cx: &mut Context<'_>, c: ConnId, i: &[u8]) -> usize { let _ = cx.write(c, i); i.len() }
    /// # }
    /// let mut reactor = Reactor::new(Echo, Config::default())?;
    /// let path = std::env::temp_dir().join(format!("evloop-path-{}.sock", std::process::id()));
    /// # let _ = std::fs::remove_file(&path);
    /// let admin = reactor.listen_unix(&path)?;
    /// let web = reactor.listen("127.0.0.1:0".parse().unwrap())?;
    /// assert_eq!(reactor.listener_path(admin), Some(path.clone()));
    /// assert_eq!(reactor.listener_path(web), None); // TCP: see listener_addr
    /// std::fs::remove_file(&path)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn listener_path(&self, listener: ListenerId) -> Option<PathBuf> {
        let l = self.listeners.get(listener.index())?.as_ref()?;
        l.socket.path()
    }

    /// Stops accepting on `listener`: new connections wait in its queue
    /// (up to the backlog; the kernel refuses the rest) until
    /// [`resume_listener`](Self::resume_listener). `false` if it is
    /// closed.
    ///
    /// ```
    /// use std::time::Duration;
    /// # use evloop::{Config, ConnId, Context, Handler, Reactor};
    /// # struct Echo;
    /// # impl Handler for Echo {
    /// #     type Message = ();
    /// #     fn on_data(&mut self, cx: &mut Context<'_>, c: ConnId, i: &[u8]) -> usize { let _ = cx.write(c, i); i.len() }
    /// # }
    /// let mut reactor = Reactor::new(Echo, Config::default())?;
    /// let web = reactor.listen("127.0.0.1:0".parse().unwrap())?;
    /// // Overloaded: let new clients wait in the kernel's queue.
    /// assert!(reactor.pause_listener(web));
    /// reactor.run_once(Some(Duration::ZERO))?;
    /// // Load fell: take what waited, then go on accepting.
    /// assert!(reactor.resume_listener(web));
    /// reactor.run_once(Some(Duration::ZERO))?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn pause_listener(&mut self, listener: ListenerId) -> bool {
        self.change_listener(listener, ListenerChange::Pause)
    }

    /// Accepts on `listener` again, starting with what waited.
    pub fn resume_listener(&mut self, listener: ListenerId) -> bool {
        self.change_listener(listener, ListenerChange::Resume)
    }

    /// Closes `listener`: the kernel resets connections still in its
    /// queue, and refuses new ones. Connections it accepted live on.
    /// `false` if it was closed already.
    ///
    /// ```
    /// # use evloop::{Config, ConnId, Context, Handler, Reactor};
    /// # struct Echo;
    /// # impl Handler for Echo {
    /// #     type Message = ();
    /// #     fn on_data(&mut self, cx: &mut Context<'_>, c: ConnId, i: &[u8]) -> usize { let _ = cx.write(c, i); i.len() }
    /// # }
    /// let mut reactor = Reactor::new(Echo, Config::default())?;
    /// let web = reactor.listen("127.0.0.1:0".parse().unwrap())?;
    /// assert!(reactor.close_listener(web));
    /// // Its id is never reused: asking again finds nothing to close.
    /// assert!(!reactor.close_listener(web));
    /// assert_eq!(reactor.listener_addr(web), None);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn close_listener(&mut self, listener: ListenerId) -> bool {
        self.change_listener(listener, ListenerChange::Close)
    }

    /// Applies what callbacks asked through the `Context` (step 4, before
    /// accepting).
    pub(super) fn apply_listener_changes(&mut self) {
        for (listener, change) in self.core.take_listener_changes() {
            self.change_listener(listener, change);
        }
    }

    fn change_listener(&mut self, listener: ListenerId, change: ListenerChange) -> bool {
        let Some(slot) = self.listeners.get_mut(listener.index()) else {
            return false;
        };
        let Some(l) = slot.as_mut() else {
            return false;
        };
        match change {
            ListenerChange::Pause => l.paused = true,
            ListenerChange::Resume => {
                l.paused = false;
                // What waited produced its edge while paused.
                l.pending = true;
            }
            ListenerChange::Close => {
                // Closing the descriptor removes it from the epoll set.
                log::info!("closing {listener}");
                *slot = None;
            }
        }
        true
    }
}
