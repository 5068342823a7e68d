//! # evloop
//!
//! A single-threaded TCP reactor, built the way nginx and Redis are built
//! underneath: one [`mio::Poll`], a slab of connection state machines each
//! owning its read and write buffers, and a hashed timer wheel for
//! timeouts. You write a [`Handler`] (the protocol); the [`Reactor`] does
//! every system call.
//!
//! ## One turn of the loop
//!
//! [`Reactor::run`] calls [`Reactor::run_once`] until shutdown completes.
//! `run_once` is these steps, in this order, one private method each:
//!
//! ```text
//!  0. on_start (first turn only)      the handler sets its first timers
//!  1. wait = 0 if work is pending, else until the wheel's next deadline
//!  2. poll(events, wait)               EINTR is a turn with no events;
//!                                      a nap first if coalescing (Config::coalesce)
//!  3. now = clock()                    read once per turn, passed down
//!  4. for each event:
//!       listener -> accept until WouldBlock, batch limit, max_conns or EMFILE
//!       waker    -> take the posted commands (shutdown, messages)
//!       signal   -> SIGINT/SIGTERM: begin graceful shutdown (again: stop now)
//!       conn     -> note readiness; read (budgeted), hand input to the
//!                   handler, write its output once
//!  5. serve the ready list             conns cut short by a budget or resumed
//!  6. flush output                     one write per conn with queued output
//!  7. expire timers                    idle (lazily re-armed), write, connect, user
//!  8. reap                             free closed slots, on_close
//!  9. shutdown requested? begin it; cut if asked; done? -> return Stopped
//! ```
//!
//! The clock is read *after* the poll, not before it: a turn that slept
//! 59 s and then read a byte must stamp that byte with the time it came,
//! or the idle timer would count the sleep as idleness. The wait in step 1
//! is measured from the previous turn's reading, which at worst oversleeps
//! a timer by one turn's work.
//!
//! ## Readiness, edges and `WouldBlock`
//!
//! A non-blocking socket never makes the thread wait: a read with nothing
//! to read returns `WouldBlock`. `epoll` says *when* to try. mio registers
//! sockets **edge-triggered**: an event means "something changed", once,
//! not "something is there" for as long as it is. So the reactor caches
//! readiness per connection (`readable`, `writable`), reads until it knows
//! the socket is empty, and remembers connections it left with bytes still
//! waiting (the *ready list*). Each socket is registered once, for both
//! directions; no message costs an `epoll_ctl`. The read path's rules are
//! written out in `src/reactor/read.rs`.
//!
//! ## Memory and backpressure
//!
//! An idle connection holds no buffer: reads land in one per-reactor
//! scratch buffer, the handler consumes whole frames straight from it, and
//! only a partial frame is copied into a buffer of the connection's own.
//! Output is queued while the handler runs and written in one call at the
//! end; only what the socket refuses is kept. Emptied buffers go back to a
//! bounded pool.
//!
//! A peer that sends but does not read would make a server buffer answers
//! without end. Above the output high-water mark ([`Config::high_water`])
//! the reactor stops reading that connection, so TCP's flow control slows
//! the peer; below the low-water mark it resumes and calls
//! [`Handler::on_drain`]. Output above a hard limit, or above a soft limit
//! for longer than a grace period, closes the connection as a slow
//! consumer, and input that never forms a frame closes it as too large.
//!
//! Per-connection limits do not bound a server: 10,000 connections each
//! just under its input limit hold 10 GiB. So the reactor keeps one sum of
//! the memory in every connection's buffers (their capacity, not only the
//! bytes waiting in them) and holds it under
//! [`Config::max_buffered`]: past it, the connections holding the most are
//! closed ([`CloseReason::OverBudget`]), as Redis's `maxmemory-clients`
//! does. A buffer that grew for a burst gives the capacity back once it is
//! mostly consumed, and the pool of empty buffers keeps a bounded number
//! of bytes ([`Config::pool_bytes`]).
//!
//! ## Input the handler left
//!
//! [`Handler::on_data`] returns how much it consumed. What it left (a
//! partial frame, or whole frames it chose not to take yet because its
//! output is full or it waits on a backend) is kept and offered again
//! *without new bytes from the peer*: from the ready list, after the
//! other connections, when the call consumed some of it; after
//! [`Context::resume_read`]; and after
//! [`Handler::on_drain`]. A call that consumes nothing waits for new
//! bytes, so old input can never make the loop spin. When the peer's FIN
//! comes, [`Handler::on_read_closed`] gets whatever is left, so "EOF ends
//! the last record" can be written.
//!
//! ## Graceful shutdown
//!
//! [`Handle::shutdown`], [`Context::shutdown`], [`Reactor::shutdown`] or
//! SIGINT/SIGTERM ([`Reactor::handle_signals`]): connections waiting in the
//! listen queue are accepted, listeners close, and every connection is
//! closed with FIN once it is quiet (no input left, no output waiting,
//! [`Handler::is_busy`] false). Until then it is served as usual, so an
//! answer written later by a timer or a posted message still arrives.
//! What is left at [`Config::shutdown_timeout`] is cut with RST, so a
//! truncated answer never looks complete.
//!
//! ## Timers
//!
//! Every timeout is an entry on one [`timer::TimerWheel`]. A connection has
//! one entry, armed for its earliest deadline (idle, write stall, soft
//! limit, connect, TLS handshake); I/O only records the tick it happened, and when the
//! entry fires the reactor checks what has really passed and re-arms. So
//! an I/O event never touches the wheel.
//!
//! ## Time as an input
//!
//! The reactor reads its [`Clock`] once per turn; a test hands it a
//! [`ManualClock`] ([`Reactor::with_clock`]) and moves time itself, so
//! timeouts are tested to the millisecond without sleeping.
//!
//! ## A connection's life
//!
//! A connection's [`State`] changes only by events fed to a pure state
//! machine (`src/state.rs`): an event in, the next state and what the
//! reactor must do out, tested edge by edge with no sockets. The guide's
//! chapter on a connection's life shows the whole table.
//!
//! ## Modules, along the data path
//!
//! | file | what it holds |
//! | --- | --- |
//! | `reactor/mod.rs` | the loop: `run_once`, one method per step; `dispatch`, the one way the handler is called |
//! | `reactor/listeners.rs` | listener ids; listen, adopt, pause, resume, close |
//! | `reactor/accept.rs` | accept batches, `max_conns`, `EMFILE` |
//! | `reactor/read.rs` | the read side: socket -> handler, the readiness rules; its seam `receive` |
//! | `reactor/write.rs` | the write side: handler -> socket, water marks and limits; its seams `send` and `send_file` |
//! | `reactor/tls.rs` | (feature `tls`) the TLS transport on both seams: handshake state and deadline, decrypt on read, encrypt at flush, close_notify |
//! | `tls.rs` | (feature `tls`) a TLS listener's configuration from PEM files: SNI, ALPN, resumption |
//! | `tls/session.rs` | (feature `tls`) one TLS session, server or client, without a socket, on rustls's unbuffered API |
//! | `stream.rs` | the sockets under connections and listeners: TCP or Unix domain |
//! | `reactor/connect.rs` | outbound connections: to an address, a Unix path, a host name |
//! | `reactor/resolve.rs` | connecting by host name: the resolver thread, and trying each address |
//! | `reactor/upstream.rs` | the upstream pool: checkout, checkin, watching idle connections, bounds, warm-up |
//! | `reactor/tail.rs` | output handed over whole (`write_owned`, `send_file`), queued behind the buffer |
//! | `reactor/timeouts.rs` | the turn's clock reading; connection deadlines, lazily re-armed |
//! | `reactor/shutdown.rs` | graceful shutdown, signals, recovery from a handler's panic |
//! | `reactor/budget.rs` | memory across connections |
//! | `reactor/coalesce.rs` | wake-up coalescing: whether the next poll naps first, measured |
//! | `reactor/side_table.rs` | state few connections have, by slab slot, beside the slab (settings, tails, lookups) |
//! | `reactor/settings.rs` | one connection's own timeouts and limits; connect options |
//! | `reactor/sources.rs` | foreign sources the program owns, in the same poll |
//! | `reactor/core.rs` | the reactor's state apart from the handler; `apply` feeds the state machine |
//! | `state` | the connection state machine, pure, with its table of edges |
//! | `conn` | generational ids, close reasons, the per-connection record |
//! | [`timer`] | timing wheels: slot arithmetic, levels, cascading |
//! | `clock` | [`Clock`], [`SystemClock`], [`ManualClock`] |
//! | `buffer` | buffers with cursors, and the pool |
//! | `config` | every limit, with its reason |
#![deny(unsafe_code)]
#![deny(missing_docs)]

mod admission;
mod buffer;
mod clock;
mod config;
mod conn;
pub mod guide;
mod handle;
mod handler;
mod reactor;
pub mod server;
mod state;
mod stats;
mod stream;
pub mod sys;
pub mod timer;
#[cfg(feature = "tls")]
pub mod tls;

/// Internals the fuzz targets in `fuzz/` drive directly. Built only with
/// `--cfg fuzzing`, which `cargo fuzz` sets: not part of the API.
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::buffer::{Buffer, BufferPool, SHRINK_ABOVE};
}

pub use admission::{Cidr, CidrError, RejectReason};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::*;
pub use conn::{CloseReason, ConnId, TlsFailure};
pub use handle::{Handle, PostError};
pub use handler::{Context, Handler, SendError};
pub use reactor::{
    CheckinError, Checkout, Connect, ListenerId, Reactor, Readiness, SourceId, Status,
};
pub use server::{Peers, Server, ServerBuilder, ServerHandle, ServerStats};
pub use state::State;
pub use stats::Stats;
pub use stream::PeerCred;
