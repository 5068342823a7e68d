//! # The guide: non-blocking I/O, from threads to a reactor
//!
//! Twelve chapters, in a learner's order. Each starts from how the previous
//! step fails, and each ends with a pointer to the next. The same text is
//! in `docs/guide/*.md`, readable on GitHub; here it is rendered by
//! rustdoc, and its Rust code blocks are compiled (and, where they do not
//! open sockets for good, run) by `cargo test --doc`. Chapter 10 needs the
//! feature `tls`: it is rendered, and its code tested, only with it
//! (`cargo test --features tls --doc tls`).
//!
//! 1. [Blocking sockets and a thread per connection](threads): the
//!    simplest server, and what a thread costs, measured.
//! 2. [Readiness](readiness): non-blocking sockets, epoll, level and edge
//!    triggering, spurious events, emptying a socket, the short-read rule.
//! 3. [A raw loop, and how it breaks](raw_loop): `examples/raw_echo.rs`,
//!    bare mio, and three failures you can run.
//! 4. [What the reactor adds](the_reactor): the turn's steps, each mapped
//!    to the file that holds it.
//! 5. [A connection's life](connection_life): one connection from `SYN`
//!    to `on_close`, with the file at each step.
//! 6. [Time and the wheel](time): ticks, one clock read per turn, the
//!    lazy re-arm, the wheel's levels.
//! 7. [Backpressure and memory](backpressure): water marks, output
//!    limits, the input limit, the scratch buffer, the budget.
//! 8. [Glossary](glossary): every word, one meaning.
//! 9. [Embedding evloop](embedding): listeners with ids, foreign sources,
//!    the reactor inside another loop, changes while it runs, one
//!    connection's own settings.
#![cfg_attr(
    feature = "tls",
    doc = "10. [TLS under the handler](tls) (feature `tls`): the transport on \
           the seams, the handshake and its deadline, sans-I/O sessions, \
           close_notify, mutual TLS, outbound TLS."
)]
#![cfg_attr(
    not(feature = "tls"),
    doc = "10. TLS under the handler (feature `tls`; `docs/guide/10-tls.md`): \
           rendered here in a build with the feature."
)]
//!
//! 11. [Pools and proxies](pools_and_proxies): checking connections out
//!     and in, what the pool watches, whose id it is, bounds and warm-up;
//!     a proxy's backpressure across a pair, half-close, balancing and
//!     health; sharing a connection among many clients (multiplexing).
//! 12. [A shard per core](shards): `Server`, how the kernel spreads
//!     connections, what the shards share and when, state that crosses
//!     shards, a shard that fails, and what it costs.
//!
//! The examples follow the same path, numbered 1 to 11, from
//! `examples/raw_echo.rs` to `examples/c10k.rs`, `examples/embed.rs`,
//! `examples/proxy.rs` and `examples/resp_proxy/`;
//! each says what it teaches and what to read next.

#[doc = include_str!("../docs/guide/01-threads.md")]
pub mod threads {}

#[doc = include_str!("../docs/guide/02-readiness.md")]
pub mod readiness {}

#[doc = include_str!("../docs/guide/03-raw-loop.md")]
pub mod raw_loop {}

#[doc = include_str!("../docs/guide/04-the-reactor.md")]
pub mod the_reactor {}

#[doc = include_str!("../docs/guide/05-connection-life.md")]
pub mod connection_life {}

#[doc = include_str!("../docs/guide/06-time.md")]
pub mod time {}

#[doc = include_str!("../docs/guide/07-backpressure.md")]
pub mod backpressure {}

#[doc = include_str!("../docs/guide/08-glossary.md")]
pub mod glossary {}

#[doc = include_str!("../docs/guide/09-embedding.md")]
pub mod embedding {}

#[cfg(feature = "tls")]
#[doc = include_str!("../docs/guide/10-tls.md")]
pub mod tls {}

#[doc = include_str!("../docs/guide/11-pools-and-proxies.md")]
pub mod pools_and_proxies {}

#[doc = include_str!("../docs/guide/12-shards.md")]
pub mod shards {}
