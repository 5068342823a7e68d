//! Example 1 of 11: an echo server on bare mio, with no reactor.
//!
//! ```sh
//! cargo run --example raw_echo                  # listens on 127.0.0.1:7000
//! nc 127.0.0.1 7000                             # type a line: it comes back
//! ```
//!
//! What it teaches: the loop every reactor is built around, with nothing
//! hidden. One `mio::Poll`; each socket registered once, edge-triggered,
//! for both directions; a connection read until `WouldBlock`, because an
//! edge is reported once and bytes left behind would get no second event;
//! output the socket refused kept per connection until a writable event.
//! It also breaks in three ways, on purpose, each shown by a command in
//! chapter 3 of the guide (`docs/guide/03-raw-loop.md`): a client that
//! sends and never reads grows `unsent` without bound, an idle client
//! holds its descriptor forever, and out of descriptors (`EMFILE`) the
//! accept loop spins.
//!
//! Read next: examples/echo.rs (example 2), the same server on the
//! reactor, which mends all three.

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token};

/// The listener's token; connections count up from 1 and are never reused.
const LISTENER: Token = Token(0);

/// One connection: its socket, and the echo the socket has not taken yet.
struct Conn {
    stream: TcpStream,
    /// Bytes read and not yet written back. Nothing bounds it: failure 1.
    unsent: Vec<u8>,
    /// The peer sent FIN: nothing more to read; close once `unsent` is out.
    peer_closed: bool,
}

fn main() -> io::Result<()> {
    let addr: SocketAddr = match std::env::args().nth(1) {
        // An address on the command line, e.g. 127.0.0.1:7001.
        Some(arg) => arg
            .parse()
            .map_err(|e| io::Error::new(ErrorKind::InvalidInput, e))?,
        // None: the address the guide's commands use.
        None => SocketAddr::from(([127, 0, 0, 1], 7000)),
    };
    let mut poll = Poll::new()?;
    let mut listener = TcpListener::bind(addr)?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    println!("raw_echo: listening on {addr}");

    let mut conns: HashMap<Token, Conn> = HashMap::new();
    let mut next_token = 1;
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0; 64 * 1024];
    loop {
        // No timeout: with no timers, nothing can happen but an event.
        // That is failure 2: an idle client is never looked at again.
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == ErrorKind::Interrupted {
                // A signal arrived during the wait: a turn with no events.
                continue;
            }
            // epoll itself failed: no loop can go on from here.
            return Err(e);
        }
        for event in events.iter() {
            let token = event.token();
            if token == LISTENER {
                // New connections wait in the listen queue.
                accept_all(&listener, poll.registry(), &mut conns, &mut next_token);
                continue;
            }
            let Some(conn) = conns.get_mut(&token) else {
                // No such connection. Tokens are never reused here, so
                // this is only ever a closed one; a reactor that reuses
                // slots needs generations to tell them apart (chapter 4).
                continue;
            };
            let finished = match serve(conn, &mut buf) {
                // Served: finished if the peer is gone and the echo is out.
                Ok(()) => conn.peer_closed && conn.unsent.is_empty(),
                // Reset or another error: the connection is over.
                Err(_) => true,
            };
            if finished {
                // Dropping the socket closes it, which also takes it out
                // of the epoll set: no `deregister` needed.
                conns.remove(&token);
            }
        }
    }
}

/// Accepts until the listen queue is empty.
fn accept_all(
    listener: &TcpListener,
    registry: &Registry,
    conns: &mut HashMap<Token, Conn>,
    next_token: &mut usize,
) {
    loop {
        match listener.accept() {
            Ok((mut stream, _peer)) => {
                let token = Token(*next_token);
                *next_token += 1;
                // Registered once, for both directions, so no message ever
                // costs another `epoll_ctl`.
                let both = Interest::READABLE | Interest::WRITABLE;
                match registry.register(&mut stream, token, both) {
                    Ok(()) => {
                        let conn = Conn {
                            stream,
                            unsent: Vec::new(),
                            peer_closed: false,
                        };
                        conns.insert(token, conn);
                    }
                    // Cannot watch it (the kernel is out of memory): drop
                    // it, which closes it.
                    Err(e) => eprintln!("raw_echo: register: {e}"),
                }
            }
            // The queue is empty: this edge is used up.
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            // Anything else is skipped, which is right for ECONNABORTED (a
            // client gave up while queued). But EMFILE lands here too: the
            // connection stays queued, the next accept fails the same way,
            // and this loop spins at 100% CPU. Failure 3.
            Err(e) => eprintln!("raw_echo: accept: {e}"),
        }
    }
}

/// Reads until `WouldBlock`, then writes back as much as the socket takes.
/// An error means the connection is broken.
fn serve(conn: &mut Conn, buf: &mut [u8]) -> io::Result<()> {
    // Edge-triggered: read until the kernel says the socket is empty.
    while !conn.peer_closed {
        match conn.stream.read(buf) {
            // 0 is the peer's FIN: stop reading, finish writing.
            Ok(0) => conn.peer_closed = true,
            // Data: queue it behind what already waits, and read on. It
            // is kept however much the peer leaves unread: failure 1.
            Ok(n) => conn.unsent.extend_from_slice(&buf[..n]),
            // Empty: the next edge brings us back.
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            // A signal interrupted the read: try again.
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            // ECONNRESET and the like.
            Err(e) => return Err(e),
        }
    }
    while !conn.unsent.is_empty() {
        match conn.stream.write(&conn.unsent) {
            // A socket that takes nothing from a non-empty buffer is broken.
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            // Taken, perhaps only part (a short write is not an error):
            // keep the rest at the front.
            Ok(n) => {
                conn.unsent.copy_within(n.., 0);
                conn.unsent.truncate(conn.unsent.len() - n);
            }
            // Socket buffer full: the rest waits for the writable edge
            // that comes when the peer reads.
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            // A signal interrupted the write: try again.
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            // EPIPE, ECONNRESET and the like.
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
