//! The unit tests inside example modules: the kv server's RESP parser,
//! keyspace, glob patterns and number rules, and the load generator's
//! byte-pattern checker. Examples are built as programs (the process
//! tests run them), so their own `#[cfg(test)]` modules are compiled here
//! instead.
#![allow(dead_code)]

#[path = "../examples/kv/resp.rs"]
mod resp;

#[path = "../examples/kv/db.rs"]
mod db;

#[path = "../examples/kv/value.rs"]
mod value;

#[path = "../examples/kv/glob.rs"]
mod glob;

#[path = "../examples/kv/number.rs"]
mod number;

#[path = "../examples/loadgen/wire.rs"]
mod wire;

#[path = "../examples/common/mod.rs"]
mod common;
