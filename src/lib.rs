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
//!  1. wait = 0 if work is pending, else until the wheel's next deadline
//!  2. poll(events, wait)               EINTR is a turn with no events
//!  3. now = clock()                    read once per turn, passed down
//!  4. for each event:
//!       listener -> accept until WouldBlock, batch limit, max_conns or EMFILE
//!       waker    -> drain the command queue (shutdown, posted messages)
//!       signal   -> SIGINT/SIGTERM: begin graceful shutdown (again: stop now)
//!       conn     -> note readiness; read (budgeted), hand input to the
//!                   handler, write its output once
//!  5. service the ready list           conns cut short by a budget or resumed
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
//! ## Timers
//!
//! Every timeout is an entry on one [`timer::TimerWheel`]. A connection has
//! one entry, armed for its earliest deadline (idle, write stall, soft
//! limit, connect); I/O only records the tick it happened, and when the
//! entry fires the reactor checks what has really passed and re-arms. So
//! an I/O event never touches the wheel.
//!
//! ## Modules
//!
//! | module | teaches |
//! | --- | --- |
//! | [`timer`] | timing wheels: slot arithmetic, levels, cascading |
//! | `reactor` | the loop's steps; `reactor/read.rs` the readiness rules |
//! | `conn` | the connection state machine and generational ids |
//! | `buffer` | buffers with cursors, and the pool |
//! | `config` | every limit, with its reason |
#![deny(unsafe_code)]
#![deny(missing_docs)]

mod admission;
mod buffer;
mod config;
mod conn;
mod handle;
mod handler;
mod reactor;
mod stats;
pub mod sys;
pub mod timer;

pub use admission::{Cidr, CidrError, RejectReason};
pub use config::*;
pub use conn::{CloseReason, ConnId, State};
pub use handle::{Handle, PostError};
pub use handler::{Context, Handler, SendError};
pub use reactor::{Reactor, Status};
pub use stats::Stats;
