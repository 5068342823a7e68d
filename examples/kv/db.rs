//! The keyspace: sixteen databases, each a hash table of entries with its
//! expiry index, its scan order and its memory count.
//!
//! # Expiry
//!
//! An expiry time is a Unix time in milliseconds, as in Redis (`PEXPIRETIME`
//! answers what `PXAT` set, to the millisecond). The Unix clock is the
//! reactor's: [`Clock`] reads the system clock once at start and adds the
//! reactor's monotonic time to it, so time is an input here too, and a
//! wall-clock step after start neither expires every key at once nor makes
//! them immortal.
//!
//! Each expiring key has one timer on the reactor's wheel, whose token
//! names the database, the shard whose wheel holds it (`--threads`: see
//! `shards.rs`) and a serial number; the database's `expiries` index maps
//! the token back to the key. The wheel fires on its tick, so
//! every read also checks the deadline itself ([`Db::get`]): a key is gone
//! exactly when its time has come, whether or not its timer has fired. A
//! key whose timer fires a millisecond early (the wheel's ticks and this
//! clock round differently) is given a new timer for the rest.
//!
//! # The scan order, and what SCAN promises
//!
//! Beside the table, each database keeps its keys in a vector (`order`),
//! each entry knowing its position. A key is added at the end; a deleted
//! key's place is taken by the last key (`swap_remove`). SCAN walks the
//! vector from the top down, and its cursor is the position it stopped
//! at: everything below is still to visit. A deletion moves the last key
//! into a hole: if the hole is below the cursor, the moved key (from above
//! it) is visited again, which SCAN allows; nothing below the cursor moves
//! above it. So every key present for the whole scan is returned at least
//! once, and `COUNT` keys are looked at per call, whatever the keyspace
//! does between calls. (Redis gets the same promise from scanning its hash
//! table's buckets in reversed-bit order; std's table hides its buckets.)
//! The vector also gives RANDOMKEY in `O(1)`.
//!
//! # Memory
//!
//! Each database counts what its data costs ([`Db::memory`]): keys and
//! values with the allocator's overhead, both hash tables and the scan
//! order whole (empty slots included: a table at half its load holds
//! twice the slots it needs, and that is memory too), and each expiry's
//! index entry and timer. `--max-memory` is checked against the sum over
//! all sixteen databases.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use evloop::timer::TimerId;

use crate::value::{heap, table_bytes, Value};

/// Databases, as in Redis's default `databases 16`; SELECT takes 0 to 15.
pub const DBS: usize = 16;

/// Bits of a timer token that name the (physical) database: enough for
/// [`DBS`].
const DB_BITS: u32 = 4;
const _: () = assert!(DBS <= 1 << DB_BITS);

/// Bits of a timer token, above the database's, that name the shard whose
/// wheel holds the timer: enough for `evloop::server::MAX_THREADS`. The 50 bits
/// left are the serial number, which at a million expiries a second lasts
/// 35 years.
const SHARD_BITS: u32 = 10;
const _: () = assert!(evloop::server::MAX_THREADS <= 1 << SHARD_BITS);

/// What a key is: shared between the table and the scan order (and the
/// expiry index), so it is stored once. An `Arc`, not an `Rc`, so that
/// shards on other threads can share the keyspace (behind its lock).
pub type Key = Arc<[u8]>;

/// Each key's heap block holds its bytes after `Arc`'s two counts.
const RC_COUNTS: usize = 2 * std::mem::size_of::<usize>();

/// What a timer costs on the reactor's wheel: its slab entry and its
/// record in a slot.
const TIMER_COST: usize = 48;

/// Where timers are set and cancelled: a shard's wheel (`shards::Wheel`),
/// or a plain wheel in unit tests.
pub trait Timers {
    /// The shard whose wheel `set_timer` uses (0 with one reactor).
    fn shard(&self) -> usize;
    fn set_timer(&mut self, after: Duration, token: u64) -> TimerId;
    /// Cancels `timer`, which shard `shard`'s wheel holds.
    fn cancel_timer(&mut self, shard: usize, timer: TimerId);
}

/// The shard whose wheel holds the timer with `token`.
pub fn token_shard(token: u64) -> usize {
    ((token >> DB_BITS) & ((1 << SHARD_BITS) - 1)) as usize
}

/// Unix time from the reactor's clock (see the module docs).
pub struct Clock {
    start: Instant,
    unix_start: Duration,
}

impl Clock {
    /// Reads the system clock, once.
    pub fn new() -> Clock {
        Clock {
            start: Instant::now(),
            unix_start: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
        }
    }

    /// Unix time at `now` (an instant of the reactor's clock).
    pub fn unix(&self, now: Instant) -> Duration {
        self.unix_start + now.saturating_duration_since(self.start)
    }

    /// The same, in milliseconds.
    pub fn unix_ms(&self, now: Instant) -> i64 {
        i64::try_from(self.unix(now).as_millis()).unwrap_or(i64::MAX)
    }
}

/// A key's value and, if it expires, when.
pub struct Entry {
    pub value: Value,
    /// Boxed: most keys do not expire, and a table slot costs the same
    /// for every key.
    expiry: Option<Box<Expiry>>,
    /// Where the key is in `Db::order`.
    slot: usize,
}

struct Expiry {
    /// Unix milliseconds.
    at: i64,
    timer: TimerId,
    token: u64,
}

/// What an expiry costs beyond its slot in the index: its box and its
/// timer.
const EXPIRY_COST: usize = heap(std::mem::size_of::<Expiry>()) + TIMER_COST;

impl Entry {
    /// When the key expires (Unix milliseconds), if it does.
    pub fn expires_at(&self) -> Option<i64> {
        self.expiry.as_ref().map(|e| e.at)
    }

    fn due(&self, now: i64) -> bool {
        self.expiry.as_ref().is_some_and(|e| e.at <= now)
    }
}

/// One database.
pub struct Db {
    /// Its physical number, which its timer tokens carry (SWAPDB moves
    /// the logical numbers, not the databases).
    home: usize,
    entries: HashMap<Key, Entry>,
    /// Every key, in the order SCAN walks (see the module docs).
    order: Vec<Key>,
    expiries: Expiries,
    next_serial: u64,
    /// Bytes held by keys and values outside the tables (see
    /// [`Db::memory`]).
    used: usize,
}

/// A value borrowed for change: when dropped, the database's memory
/// count follows whatever the change did to the value's cost.
pub struct ValueMut<'a> {
    value: &'a mut Value,
    used: &'a mut usize,
    before: usize,
}

impl Deref for ValueMut<'_> {
    type Target = Value;
    fn deref(&self) -> &Value {
        self.value
    }
}

impl DerefMut for ValueMut<'_> {
    fn deref_mut(&mut self) -> &mut Value {
        self.value
    }
}

impl Drop for ValueMut<'_> {
    fn drop(&mut self) {
        *self.used = *self.used - self.before + self.value.cost();
    }
}

/// What an entry costs beyond its slots: its key's block and its value.
fn entry_cost(key: &[u8], value: &Value) -> usize {
    heap(RC_COUNTS + key.len()) + value.cost()
}

impl Db {
    fn new(home: usize) -> Db {
        Db {
            home,
            entries: HashMap::new(),
            order: Vec::new(),
            expiries: Expiries::default(),
            next_serial: 0,
            used: 0,
        }
    }

    /// Keys, counting any whose time has come but whose timer has not
    /// fired yet (as Redis's DBSIZE counts keys not yet expired lazily).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Keys with an expiry.
    pub fn expires(&self) -> usize {
        self.expiries.by_token.len()
    }

    /// The mean time to live of the keys with an expiry, in milliseconds
    /// (INFO's `avg_ttl`; Redis estimates it by sampling, this is exact).
    pub fn avg_ttl(&self, now: i64) -> i64 {
        match self.expiries.by_token.len() {
            0 => 0,
            n => {
                (self.expiries.sum / n as i128 - i128::from(now)).clamp(0, i64::MAX as i128) as i64
            }
        }
    }

    /// What the data costs: `used`, plus both hash tables and the order
    /// whole.
    pub fn memory(&self) -> usize {
        table_bytes(&self.entries)
            + heap(self.order.capacity() * std::mem::size_of::<Key>())
            + self.used
            + self.expiries.memory()
    }

    /// `key`'s entry, unless it is missing or its time has come. Reads
    /// change nothing: a key past due is left for its timer.
    pub fn get(&self, now: i64, key: &[u8]) -> Option<&Entry> {
        self.entries.get(key).filter(|e| !e.due(now))
    }

    pub fn contains(&self, now: i64, key: &[u8]) -> bool {
        self.get(now, key).is_some()
    }

    /// `key`'s value for change (a key past due is deleted first, so a
    /// change never revives it).
    pub fn get_mut(&mut self, t: &mut impl Timers, now: i64, key: &[u8]) -> Option<ValueMut<'_>> {
        if self.entries.get(key)?.due(now) {
            self.remove(t, key);
            return None;
        }
        let entry = self.entries.get_mut(key)?;
        Some(ValueMut {
            before: entry.value.cost(),
            value: &mut entry.value,
            used: &mut self.used,
        })
    }

    /// Stores `value` under `key`, replacing whatever was there, of any
    /// type. The key's expiry goes, unless `keep_ttl` (and it has not
    /// passed).
    pub fn set(&mut self, t: &mut impl Timers, now: i64, key: &[u8], value: Value, keep_ttl: bool) {
        let Some(entry) = self.entries.get_mut(key) else {
            self.insert(key, value);
            return;
        };
        self.used = self.used - entry.value.cost() + value.cost();
        entry.value = value;
        if !keep_ttl || entry.due(now) {
            if let Some(expiry) = entry.expiry.take() {
                self.expiries.forget(t, &expiry);
            }
        }
    }

    /// Adds a key that is not there.
    fn insert(&mut self, key: &[u8], value: Value) {
        debug_assert!(!self.entries.contains_key(key), "{key:?} is already there");
        let key: Key = Arc::from(key);
        self.used += entry_cost(&key, &value);
        let slot = self.order.len();
        self.order.push(Arc::clone(&key));
        let entry = Entry {
            value,
            expiry: None,
            slot,
        };
        self.entries.insert(key, entry);
    }

    /// Deletes `key` (whether or not its time has come) and returns its
    /// value.
    pub fn remove(&mut self, t: &mut impl Timers, key: &[u8]) -> Option<Value> {
        let (key, entry) = self.entries.remove_entry(key)?;
        self.used -= entry_cost(&key, &entry.value);
        if let Some(expiry) = &entry.expiry {
            self.expiries.forget(t, expiry);
        }
        let removed = self.order.swap_remove(entry.slot);
        debug_assert!(
            Arc::ptr_eq(&removed, &key),
            "slot {} holds {removed:?}, not {key:?}",
            entry.slot
        );
        if let Some(moved) = self.order.get(entry.slot) {
            if let Some(m) = self.entries.get_mut(moved) {
                m.slot = entry.slot;
            }
        }
        Some(entry.value)
    }

    /// Makes a live `key` expire at `at` (Unix milliseconds), replacing
    /// any expiry it had; `false` if it is not there.
    pub fn set_expiry(&mut self, t: &mut impl Timers, now: i64, key: &[u8], at: i64) -> bool {
        let Some(entry) = self.entries.get_mut(key) else {
            return false;
        };
        if let Some(old) = entry.expiry.take() {
            self.expiries.forget(t, &old);
        }
        let token = (self.next_serial << (DB_BITS + SHARD_BITS))
            | ((t.shard() as u64) << DB_BITS)
            | self.home as u64;
        self.next_serial += 1;
        let timer = t.set_timer(until(now, at), token);
        entry.expiry = Some(Box::new(Expiry { at, timer, token }));
        let key = Arc::clone(&self.order[entry.slot]);
        self.expiries.add(token, key, at);
        true
    }

    /// Drops `key`'s expiry; `true` if it had one.
    pub fn persist(&mut self, t: &mut impl Timers, key: &[u8]) -> bool {
        let Some(expiry) = self.entries.get_mut(key).and_then(|e| e.expiry.take()) else {
            return false;
        };
        self.expiries.forget(t, &expiry);
        true
    }

    /// An expiry timer fired: deletes its key if the key's time has come
    /// (`true`), or sets a timer for the rest if the wheel was early.
    fn on_timer(&mut self, t: &mut impl Timers, now: i64, token: u64) -> bool {
        let Some(key) = self.expiries.by_token.get(&token).cloned() else {
            return false; // cancelled after it was due, or a flushed database's
        };
        let Some(entry) = self.entries.get_mut(&key) else {
            debug_assert!(false, "expiry index names {key:?}, which is gone");
            return false;
        };
        match &mut entry.expiry {
            Some(e) if e.token == token && e.at > now => {
                // A timer fires on the shard that set it: the token's.
                debug_assert_eq!(t.shard(), token_shard(token));
                e.timer = t.set_timer(until(now, e.at), token);
                false
            }
            Some(e) if e.token == token => {
                self.remove(t, &key);
                true
            }
            _ => {
                debug_assert!(false, "expiry index has a stale token for {key:?}");
                false
            }
        }
    }

    /// Deletes every key, cancelling their timers. `O(keys)`, as Redis's
    /// synchronous FLUSHDB.
    pub fn flush(&mut self, t: &mut impl Timers) {
        for entry in self.entries.values() {
            if let Some(e) = &entry.expiry {
                t.cancel_timer(token_shard(e.token), e.timer);
            }
        }
        // The serial goes on: no token of the old keys can name a new one.
        let serial = self.next_serial;
        *self = Db::new(self.home);
        self.next_serial = serial;
    }

    /// Every live key, in the table's order.
    pub fn iter(&self, now: i64) -> impl Iterator<Item = (&Key, &Entry)> {
        self.entries.iter().filter(move |(_, e)| !e.due(now))
    }

    /// One step of SCAN: visits the live keys among the next `count`
    /// below `cursor` (0 starts from the top) and returns the cursor to go
    /// on from (0 when the walk is done). See the module docs for what it
    /// promises.
    pub fn scan<'a>(
        &'a self,
        now: i64,
        cursor: u64,
        count: usize,
        mut visit: impl FnMut(&'a Key, &'a Entry),
    ) -> u64 {
        let len = self.order.len();
        let top = match cursor {
            0 => len,
            c => usize::try_from(c).map_or(len, |c| c.min(len)),
        };
        let bottom = top.saturating_sub(count);
        for key in self.order[bottom..top].iter().rev() {
            if let Some(entry) = self.get(now, key) {
                visit(key, entry);
            }
        }
        bottom as u64
    }

    /// A key picked at random from the live ones. A key picked whose time
    /// has passed (its timer not yet fired) is deleted on the spot, as
    /// Redis's RANDOMKEY does, and another is picked: each such key is
    /// deleted once, so the picks cost what its timer would have, however
    /// many are past due at once.
    pub fn random(&mut self, t: &mut impl Timers, now: i64, rng: &mut Rng) -> Option<&Key> {
        loop {
            let len = self.order.len();
            if len == 0 {
                return None;
            }
            let i = rng.below(len);
            if self.contains(now, &self.order[i]) {
                return self.order.get(i);
            }
            let key = self.order[i].clone();
            self.remove(t, &key);
        }
    }
}

/// How long from `now` to `at` (none if it has passed).
fn until(now: i64, at: i64) -> Duration {
    Duration::from_millis(u64::try_from(at.saturating_sub(now)).unwrap_or(0))
}

/// A database's expiry index: which key each timer is for, and what the
/// expiries add up to.
#[derive(Default)]
struct Expiries {
    by_token: HashMap<u64, Key>,
    /// The sum of every expiry's time, for INFO's `avg_ttl`.
    sum: i128,
    /// What the expiries cost beyond their slots in `by_token`.
    used: usize,
}

impl Expiries {
    fn add(&mut self, token: u64, key: Key, at: i64) {
        self.by_token.insert(token, key);
        self.sum += i128::from(at);
        self.used += EXPIRY_COST;
    }

    /// Takes an expiry out of the index and off the wheel.
    fn forget(&mut self, t: &mut impl Timers, e: &Expiry) {
        t.cancel_timer(token_shard(e.token), e.timer);
        self.by_token.remove(&e.token);
        self.sum -= i128::from(e.at);
        self.used -= EXPIRY_COST;
    }

    fn memory(&self) -> usize {
        table_bytes(&self.by_token) + self.used
    }
}

/// The sixteen databases.
pub struct Keyspace {
    /// By physical number.
    dbs: Vec<Db>,
    /// Logical number (what SELECT names) to physical: SWAPDB swaps two
    /// of these, so timer tokens, which name the physical database, stay
    /// right and no key moves.
    map: [usize; DBS],
    /// Keys deleted by their expiry (INFO's `expired_keys`).
    pub expired: u64,
}

impl Keyspace {
    pub fn new() -> Keyspace {
        Keyspace {
            dbs: (0..DBS).map(Db::new).collect(),
            map: std::array::from_fn(|i| i),
            expired: 0,
        }
    }

    /// Database `index` (0 to [`DBS`] - 1: SELECT checks).
    pub fn db(&mut self, index: usize) -> &mut Db {
        &mut self.dbs[self.map[index]]
    }

    pub fn db_ref(&self, index: usize) -> &Db {
        &self.dbs[self.map[index]]
    }

    /// SWAPDB: clients of `a` see `b`'s data, and the other way round.
    pub fn swap(&mut self, a: usize, b: usize) {
        self.map.swap(a, b);
    }

    /// What all the data costs.
    pub fn memory(&self) -> usize {
        self.dbs.iter().map(Db::memory).sum()
    }

    /// An expiry timer fired.
    pub fn on_timer(&mut self, t: &mut impl Timers, now: i64, token: u64) {
        let home = (token & ((1 << DB_BITS) - 1)) as usize;
        if let Some(db) = self.dbs.get_mut(home) {
            if db.on_timer(t, now, token) {
                self.expired += 1;
            }
        }
    }

    pub fn flush_all(&mut self, t: &mut impl Timers) {
        for db in &mut self.dbs {
            db.flush(t);
        }
    }
}

/// xorshift64*: RANDOMKEY's choices need to be spread, not secret.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    /// A number below `n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use evloop::timer::TimerWheel;

    /// The reactor's wheel, driven by hand: time is a number of
    /// milliseconds here.
    #[derive(Default)]
    struct Wheel(TimerWheel<u64>);

    impl Timers for Wheel {
        fn shard(&self) -> usize {
            0
        }

        fn set_timer(&mut self, after: Duration, token: u64) -> TimerId {
            let at = self.0.now() + after.as_millis() as u64;
            self.0.insert(at, token)
        }

        fn cancel_timer(&mut self, shard: usize, timer: TimerId) {
            assert_eq!(shard, 0, "one wheel here");
            self.0.cancel(timer);
        }
    }

    impl Wheel {
        /// Fires what is due at `now` into `ks`.
        fn advance(&mut self, ks: &mut Keyspace, now: i64) {
            let mut due = Vec::new();
            self.0.expire(now as u64, &mut due);
            for token in due {
                ks.on_timer(self, now, token);
            }
        }
    }

    fn string(bytes: &str) -> Value {
        Value::sent(bytes.as_bytes().to_vec())
    }

    #[test]
    fn a_key_past_due_is_not_read_and_its_timer_deletes_it() {
        let (mut ks, mut t) = (Keyspace::new(), Wheel::default());
        let db = ks.db(0);
        db.set(&mut t, 0, b"k", string("v"), false);
        assert!(db.set_expiry(&mut t, 0, b"k", 100));
        assert!(db.contains(99, b"k"));
        assert!(!db.contains(100, b"k"), "exact at its time, timer or not");
        assert_eq!(db.len(), 1, "reads change nothing");
        t.advance(&mut ks, 100);
        assert_eq!(ks.db(0).len(), 0);
        assert_eq!(ks.db(0).expires(), 0);
        assert_eq!(ks.expired, 1);
    }

    #[test]
    fn a_timer_that_fires_early_is_set_again_for_the_rest() {
        let (mut ks, mut t) = (Keyspace::new(), Wheel::default());
        ks.db(0).set(&mut t, 0, b"k", string("v"), false);
        ks.db(0).set_expiry(&mut t, 0, b"k", 50);
        // The wheel says 50, this clock says 49: not yet.
        let mut due = Vec::new();
        t.0.expire(50, &mut due);
        for token in due {
            ks.on_timer(&mut t, 49, token);
        }
        assert!(ks.db(0).contains(49, b"k"));
        t.advance(&mut ks, 51);
        assert_eq!(ks.db(0).len(), 0);
    }

    #[test]
    fn overwriting_or_persisting_cancels_the_timer() {
        let (mut ks, mut t) = (Keyspace::new(), Wheel::default());
        let db = ks.db(0);
        db.set(&mut t, 0, b"a", string("v"), false);
        db.set_expiry(&mut t, 0, b"a", 10);
        db.set(&mut t, 0, b"a", string("w"), false);
        db.set(&mut t, 0, b"b", string("v"), false);
        db.set_expiry(&mut t, 0, b"b", 10);
        assert!(db.persist(&mut t, b"b"));
        assert!(!db.persist(&mut t, b"b"));
        assert_eq!(t.0.len(), 0, "no timer left on the wheel");
        t.advance(&mut ks, 1000);
        assert_eq!(ks.db(0).len(), 2);
    }

    #[test]
    fn keep_ttl_keeps_the_expiry_unless_it_has_passed() {
        let (mut ks, mut t) = (Keyspace::new(), Wheel::default());
        let db = ks.db(0);
        db.set(&mut t, 0, b"k", string("v"), false);
        db.set_expiry(&mut t, 0, b"k", 100);
        db.set(&mut t, 10, b"k", string("w"), true);
        assert_eq!(db.get(10, b"k").and_then(Entry::expires_at), Some(100));
        db.set(&mut t, 200, b"k", string("x"), true);
        assert_eq!(db.get(200, b"k").and_then(Entry::expires_at), None);
    }

    #[test]
    fn swapped_databases_keep_their_expiries() {
        let (mut ks, mut t) = (Keyspace::new(), Wheel::default());
        ks.db(1).set(&mut t, 0, b"k", string("v"), false);
        ks.db(1).set_expiry(&mut t, 0, b"k", 100);
        ks.swap(0, 1);
        assert!(ks.db(0).contains(0, b"k"));
        assert_eq!(ks.db(1).len(), 0);
        t.advance(&mut ks, 100);
        assert_eq!(ks.db(0).len(), 0, "the timer found the key after the swap");
        assert_eq!(ks.expired, 1);
    }

    #[test]
    fn memory_comes_back_when_keys_and_expiries_go() {
        let (mut ks, mut t) = (Keyspace::new(), Wheel::default());
        let db = ks.db(0);
        db.set(&mut t, 0, b"warm", string("v"), false);
        let start = db.memory();
        db.set(&mut t, 0, b"key", string("value"), false);
        let plain = db.memory() - start;
        assert!(plain >= 3 + 5 + 2 * crate::value::ALLOC_OVERHEAD, "{plain}");
        db.set_expiry(&mut t, 0, b"key", 1000);
        assert!(db.memory() - start >= plain + TIMER_COST);
        if let Some(mut v) = db.get_mut(&mut t, 0, b"key") {
            if let Value::Str(s) = &mut *v {
                s.bytes.extend_from_slice(&[0; 1000]);
            }
        }
        assert!(db.memory() - start >= plain + 1000, "a change is counted");
        db.remove(&mut t, b"key");
        assert_eq!(db.memory(), start);
        db.flush(&mut t);
        assert_eq!(db.memory(), 0);
    }

    /// SCAN's promise (see the module docs), under random churn: every
    /// key present for the whole walk is visited, whatever is added and
    /// deleted between steps.
    #[test]
    fn scan_visits_every_key_present_for_the_whole_walk() {
        let mut rng = Rng::new(7);
        for round in 0..50 {
            let (mut ks, mut t) = (Keyspace::new(), Wheel::default());
            let db = ks.db(0);
            let stable: Vec<String> = (0..200).map(|i| format!("stable{i}")).collect();
            for k in &stable {
                db.set(&mut t, 0, k.as_bytes(), string("v"), false);
            }
            let mut churn: Vec<String> = (0..200).map(|i| format!("churn{i}")).collect();
            for k in &churn {
                db.set(&mut t, 0, k.as_bytes(), string("v"), false);
            }
            let mut seen = std::collections::HashSet::new();
            let mut cursor = 0;
            let mut next = 1000;
            loop {
                cursor = db.scan(0, cursor, 1 + rng.below(20), |k, _| {
                    seen.insert(String::from_utf8_lossy(k).into_owned());
                });
                if cursor == 0 {
                    break;
                }
                for _ in 0..rng.below(30) {
                    if rng.below(2) == 0 && !churn.is_empty() {
                        let gone = churn.swap_remove(rng.below(churn.len()));
                        db.remove(&mut t, gone.as_bytes());
                    } else {
                        let k = format!("churn{next}");
                        next += 1;
                        db.set(&mut t, 0, k.as_bytes(), string("v"), false);
                        churn.push(k);
                    }
                }
            }
            for k in &stable {
                assert!(seen.contains(k), "round {round}: {k} never visited");
            }
        }
    }

    #[test]
    fn a_scan_looks_at_count_keys_per_step() {
        let (mut ks, mut t) = (Keyspace::new(), Wheel::default());
        let db = ks.db(0);
        for i in 0..25 {
            db.set(&mut t, 0, format!("k{i}").as_bytes(), string("v"), false);
        }
        let mut steps = Vec::new();
        let mut cursor = 0;
        loop {
            let mut n = 0;
            cursor = db.scan(0, cursor, 10, |_, _| n += 1);
            steps.push(n);
            if cursor == 0 {
                break;
            }
        }
        assert_eq!(steps, [10, 10, 5]);
        // A cursor past the end (the keyspace shrank) starts at the top.
        assert_eq!(db.scan(0, 1 << 40, 100, |_, _| {}), 0);
    }

    #[test]
    fn randomkey_skips_keys_past_due_and_finds_the_live_one() {
        let (mut ks, mut t) = (Keyspace::new(), Wheel::default());
        let db = ks.db(0);
        for i in 0..100 {
            let k = format!("k{i}");
            db.set(&mut t, 0, k.as_bytes(), string("v"), false);
            if i != 42 {
                db.set_expiry(&mut t, 0, k.as_bytes(), 10);
            }
        }
        let mut rng = Rng::new(1);
        for _ in 0..20 {
            assert_eq!(
                db.random(&mut t, 10, &mut rng).map(|k| &k[..]),
                Some(&b"k42"[..])
            );
        }
        // The keys past due it met were deleted, not walked again.
        assert_eq!(db.len(), 1);
        assert_eq!(Keyspace::new().db(0).random(&mut t, 0, &mut rng), None);
    }
}
