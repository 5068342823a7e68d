//! Shards (`--threads N`): one keyspace behind one lock, each shard's
//! expiry timers on its own wheel.
//!
//! A key set through one connection is seen through every other, whatever
//! shard each is on, so the shards share the data. Two ways were open
//! (`docs/guide/12-shards.md`): split the keys among the shards and
//! forward each command to the shard that owns its key (Dragonfly's
//! way), or keep one keyspace behind a lock. This example keeps the lock.
//! A shard takes it once per `on_data` (for every command the read
//! brought), once per expiry timer, and at a connection's open and
//! close. A command costs a fraction of a microsecond and the read and
//! write around it several, so the lock is held for a small part of the
//! time; forwarding instead adds a wake-up of the owning shard and
//! another of the asking one to every read whose keys live elsewhere,
//! half of them with two shards. Measured (`docs/BENCHMARKS.md`, "kv on
//! two shards"), forwarding cost 1.2 to 1.4 times the lock's CPU per
//! request; the lock itself cost 1% unpipelined and 12% at `-P 16`,
//! where each hold covers 16 commands and two shards do meet at it.
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
//! - Time never runs backwards between shards. A shard reads its clock
//!   once per turn, before it may wait for the lock; a command run after
//!   another shard's must not see an earlier time, or a key one client
//!   saw expire could be revived by another's PERSIST. So the store keeps
//!   the latest time any shard used ([`Store::now`]).
//! - CLIENT ID counts over every shard (the counter is in [`Store`]).
//! - INFO's byte and rejection counts and `evloop_timers` are the asking
//!   shard's own, from its reactor's stats; the rest is the whole
//!   server's.
//!
//! A command that runs long (KEYS over a million keys, FLUSHALL) holds up
//! every shard while it runs, as it holds up Redis.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use evloop::timer::TimerId;
use evloop::{Context, Peers};

use crate::db::{Keyspace, Timers};
use crate::server::Server;

/// What the shards share: the data and the server's counters.
pub struct Store {
    pub ks: Keyspace,
    pub server: Server,
    /// The latest Unix milliseconds a command or timer ran at, on any
    /// shard.
    latest: i64,
}

impl Store {
    pub fn new(server: Server) -> Arc<Mutex<Store>> {
        Arc::new(Mutex::new(Store {
            ks: Keyspace::new(),
            server,
            latest: i64::MIN,
        }))
    }

    /// The time (Unix milliseconds) for what runs under the lock now, on a
    /// shard whose turn began at `turn`: that turn's time, or a later
    /// shard's if one took the lock since with a later clock.
    pub fn now(&mut self, turn: Instant) -> i64 {
        self.latest = self.latest.max(self.server.clock.unix_ms(turn));
        self.latest
    }
}

/// Takes the store's lock.
///
/// # Panics
///
/// If a shard panicked while holding it: the keyspace may be half
/// changed (a key in the table but not in the scan order, say), and
/// serving from it could answer wrongly or panic later in a worse place.
/// `evloop::Server` stops every shard when one fails; each shard that
/// reaches the store after the failure fails too, at once.
pub fn lock(store: &Mutex<Store>) -> MutexGuard<'_, Store> {
    match store.lock() {
        Ok(guard) => guard,
        Err(_) => panic!("the keyspace's lock was poisoned: a shard panicked while changing it"),
    }
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
