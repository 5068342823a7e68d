//! # evloop
//!
//! A single-threaded TCP reactor built the way nginx and Redis are built
//! underneath: one `mio::Poll`, a slab of connection state machines each
//! owning its read and write buffers, and a hashed timer wheel for timeouts.
//!
//! This crate is being built in steps; what exists today:
//!
//! - [`timer`]: the hierarchical hashed timing wheel behind every timeout.
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod timer;
