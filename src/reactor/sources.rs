//! Foreign sources: descriptors the program owns (a UDP socket, a pipe, a
//! Unix socket, an eventfd or timerfd, a database client's socket) in the
//! reactor's poll, with readiness handed to [`Handler::on_ready`].
//!
//! The rules are the reactor's own, edge-triggered, with one difference
//! that matters: for its connections the reactor reads until
//! `WouldBlock` and remembers what it left; for a foreign source it does
//! neither. An event means "something changed", once: the handler must
//! read (or write) until `WouldBlock`, or it will not hear of what is
//! left. Spurious events happen: a read that finds nothing returns
//! `WouldBlock`, which is no error.
//!
//! Ids are generational, as connection ids are: an event that comes for
//! a source already deregistered (it was in the same `epoll_wait` batch)
//! is dropped, and a stale id deregisters nothing.
//!
//! [`Handler::on_ready`]: crate::Handler::on_ready

use std::fmt;
use std::io;

use mio::event::Source;
use mio::{Interest, Token};
use slab::Slab;

/// Source tokens start here: above every connection token (slab indices
/// are below 2^32) and below the listeners, the waker and the signals
/// (counting down from `usize::MAX`).
pub(crate) const FIRST_SOURCE: usize = 1 << 40;

/// The most sources at once: a bound on the table, far above any use
/// (each is a descriptor the program holds), and what keeps source tokens
/// below the listeners'.
pub(crate) const MAX_SOURCES: usize = 1 << 20;

/// Names a foreign source registered with the reactor
/// ([`Context::register`](crate::Context::register)).
///
/// ```
/// use std::collections::HashMap;
/// use evloop::{Config, Readiness, Reactor, SourceId};
/// use mio::{net::UdpSocket, Interest};
/// # use evloop::{ConnId, Context, Handler};
///
/// /// UDP echo on any number of sockets: the id says which one is ready.
/// struct Udp(HashMap<SourceId, UdpSocket>);
/// impl Handler for Udp {
///     type Message = ();
///     fn on_ready(&mut self, _: &mut Context<'_>, id: SourceId, _: Readiness) {
///         let Some(socket) = self.0.get(&id) else { return };
///         let mut buf = [0; 1500];
///         // Edge-triggered: read until WouldBlock.
///         while let Ok((n, from)) = socket.recv_from(&mut buf) {
///             let _ = socket.send_to(&buf[..n], from);
///         }
///     }
/// #   fn on_data(&mut self, _: &mut Context<'_>, _: ConnId, i: &[u8]) -> usize { i.len() }
/// }
///
/// let mut reactor = Reactor::new(Udp(HashMap::new()), Config::default())?;
/// let mut socket = UdpSocket::bind("127.0.0.1:0".parse().unwrap())?;
/// let id = reactor.register(&mut socket, Interest::READABLE)?;
/// reactor.handler_mut().0.insert(id, socket); // registered first, then handed over
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceId {
    index: u32,
    generation: u32,
}

impl fmt::Debug for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "source#{}.{}", self.index, self.generation)
    }
}

/// What an event said of a foreign source. Any of these may be spurious;
/// the source's own read or write says what is really there.
///
/// ```
/// use std::io::Read;
/// use evloop::{Context, Readiness, SourceId};
/// use mio::unix::pipe::Receiver;
/// # use evloop::{ConnId, Handler};
///
/// /// Keeps what a child process writes to its stdout pipe.
/// struct Child { out: Receiver, log: Vec<u8> }
/// impl Handler for Child {
///     type Message = ();
///     fn on_ready(&mut self, cx: &mut Context<'_>, id: SourceId, ready: Readiness) {
///         if ready.readable || ready.read_closed {
///             // Read until WouldBlock (read_to_end keeps what it read
///             // before it); the last bytes may come with the hang-up.
///             let _ = self.out.read_to_end(&mut self.log);
///         }
///         if ready.read_closed || ready.error {
///             // The child exited (or the pipe failed): nothing more will come.
///             let _ = cx.deregister(&mut self.out, id);
///         }
///     }
/// #   fn on_data(&mut self, _: &mut Context<'_>, _: ConnId, i: &[u8]) -> usize { i.len() }
/// }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Readiness {
    /// It may be read.
    pub readable: bool,
    /// It may be written.
    pub writable: bool,
    /// The other end closed its writing side (or the source hung up).
    pub read_closed: bool,
    /// The other end closed its reading side.
    pub write_closed: bool,
    /// An error is pending (`take_error`, or the next read, says which).
    pub error: bool,
}

impl Readiness {
    pub(crate) fn of(event: &mio::event::Event) -> Self {
        Readiness {
            readable: event.is_readable(),
            writable: event.is_writable(),
            read_closed: event.is_read_closed(),
            write_closed: event.is_write_closed(),
            error: event.is_error(),
        }
    }
}

/// The reactor's table of foreign sources: only ids, since the program
/// owns each source itself.
#[derive(Default)]
pub(crate) struct Sources {
    /// Each live source's generation, by index.
    live: Slab<u32>,
    /// Each slot's last generation, so a reused slot gets a new one.
    generations: Vec<u32>,
}

impl Sources {
    /// Registers `source` for `interest`, edge-triggered.
    pub(crate) fn register(
        &mut self,
        registry: &mio::Registry,
        source: &mut impl Source,
        interest: Interest,
    ) -> io::Result<SourceId> {
        if self.live.len() >= MAX_SOURCES {
            return Err(io::Error::other("too many foreign sources"));
        }
        let entry = self.live.vacant_entry();
        let index = entry.key();
        registry.register(source, Token(FIRST_SOURCE + index), interest)?;
        if index >= self.generations.len() {
            self.generations.resize(index + 1, 0);
        }
        let generation = self.generations[index].wrapping_add(1);
        self.generations[index] = generation;
        entry.insert(generation);
        Ok(SourceId {
            index: index as u32,
            generation,
        })
    }

    /// Takes `source` out of the poll; `false` if `id` is stale (then the
    /// source is left as it is).
    pub(crate) fn deregister(
        &mut self,
        registry: &mio::Registry,
        source: &mut impl Source,
        id: SourceId,
    ) -> io::Result<bool> {
        if self.live.get(id.index as usize) != Some(&id.generation) {
            return Ok(false);
        }
        self.live.remove(id.index as usize);
        registry.deregister(source)?;
        Ok(true)
    }

    /// The live source a token names, if the token is a source's.
    pub(crate) fn of_token(&self, token: Token) -> Option<SourceId> {
        let index = token.0.checked_sub(FIRST_SOURCE)?;
        let generation = *self.live.get(index)?;
        Some(SourceId {
            index: index as u32,
            generation,
        })
    }

    /// Whether a token lies in the sources' range.
    pub(crate) fn owns(token: Token) -> bool {
        (FIRST_SOURCE..FIRST_SOURCE + MAX_SOURCES).contains(&token.0)
    }
}
