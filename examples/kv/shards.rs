//! Shards (`--threads N`): one keyspace behind one lock, each shard's
//! expiry timers on its own wheel.
//!
//! A key set through one connection is seen through every other, whatever
//! shard each is on, so the shards share the data. Two ways were open
//! (`DESIGN.md`, "Shards"): split the keys among the shards and forward
//! each command to the shard that owns its key (Dragonfly's way), or keep
//! one keyspace behind a lock. This example keeps the lock, because a
//! command here costs a fraction of a microsecond and its read and write
//! several: a shard takes the lock once per `on_data` (for every command
//! the read brought) and once per expiry timer, so two shards seldom
//! meet at it, while forwarding would add a wake-up of the owning shard
//! and another of the asking one to every command whose key lives
//! elsewhere, half of them with two shards. `docs/BENCHMARKS.md` has the
//! figures ("kv on two shards").
//!
//! What the lock asks of the rest:
//!
//! - Keys are `Arc`s, so the keyspace may cross threads.
//! - An expiry's timer is on the wheel of the shard whose command set it,
//!   and its token says which ([`db::token_shard`](crate::db::token_shard)).
//!   It fires there; the shard takes the lock and deletes the key as with
//!   one reactor. A command on another shard that ends the expiry
//!   (PERSIST, a new SET, DEL, FLUSHALL) cannot reach that wheel itself:
//!   it takes the expiry out of the index at once, so the timer, if it
//!   fires, finds nothing, and posts the timer's id to its shard to be
//!   cancelled ([`Cancel`]). Without the post a client could park
//!   timers without end, by moving one key's expiry back and forth
//!   between two connections on different shards.
//! - CLIENT ID counts over every shard (the counter is in [`Store`]).
//! - INFO's byte and rejection counts are the asking shard's own, from
//!   its reactor's stats; the rest is the whole server's.
//!
//! A command that runs long (KEYS over a million keys, FLUSHALL) holds up
//! every shard while it runs, as it holds up Redis.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use evloop::timer::TimerId;
use evloop::{Context, Peers};

use crate::db::{Keyspace, Timers};
use crate::server::Server;

/// What the shards share: the data and the server's counters.
pub struct Store {
    pub ks: Keyspace,
    pub server: Server,
}

impl Store {
    pub fn new(server: Server) -> Arc<Mutex<Store>> {
        Arc::new(Mutex::new(Store {
            ks: Keyspace::new(),
            server,
        }))
    }
}

/// Takes the store's lock. A shard that panicked while holding it stops
/// the server (`evloop::Server` stops every shard when one fails), so
/// what it left is read only while the others drain.
pub fn lock(store: &Mutex<Store>) -> MutexGuard<'_, Store> {
    store.lock().unwrap_or_else(|e| e.into_inner())
}

/// Timers on a shard's wheel that a command on another shard no longer
/// needs: posted to that shard, which cancels them.
#[derive(Debug)]
pub struct Cancel(pub Vec<TimerId>);

/// Timers to cancel on other shards' wheels, by shard, gathered during a
/// call and posted after it ([`Away::post`]).
#[derive(Default)]
pub struct Away(Vec<Vec<TimerId>>);

impl Away {
    /// Posts each shard its timers to cancel; nothing if none. A shard
    /// that has stopped takes no post, and its wheel is gone anyway.
    pub fn post(&mut self, peers: Option<&Peers<Cancel>>) {
        let Some(server) = peers.and_then(Peers::get) else {
            return;
        };
        for (shard, ids) in self.0.iter_mut().enumerate() {
            if !ids.is_empty() {
                let _ = server.post(shard, Cancel(std::mem::take(ids)));
            }
        }
    }
}

/// This shard's wheel, as the keyspace sees it: timers set here, and
/// cancelled here or, when another shard holds them, gathered in
/// [`Away`].
pub struct Wheel<'a, 'c> {
    pub cx: &'a mut Context<'c>,
    shard: usize,
    away: &'a mut Away,
}

impl<'a, 'c> Wheel<'a, 'c> {
    pub fn new(cx: &'a mut Context<'c>, shard: usize, away: &'a mut Away) -> Wheel<'a, 'c> {
        Wheel { cx, shard, away }
    }
}

impl Timers for Wheel<'_, '_> {
    fn shard(&self) -> usize {
        self.shard
    }

    fn set_timer(&mut self, after: Duration, token: u64) -> TimerId {
        self.cx.set_timer(after, token)
    }

    fn cancel_timer(&mut self, shard: usize, timer: TimerId) {
        if shard == self.shard {
            self.cx.cancel_timer(timer);
            return;
        }
        if self.away.0.len() <= shard {
            self.away.0.resize_with(shard + 1, Vec::new);
        }
        self.away.0[shard].push(timer);
    }
}
