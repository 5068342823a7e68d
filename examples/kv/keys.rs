//! The generic key commands (DEL, EXISTS, TYPE, RENAME, KEYS, SCAN,
//! RANDOMKEY, OBJECT) and the expiry ones (EXPIRE and its kin, TTL and
//! its kin, PERSIST), as Redis 7.0's `db.c` and `expire.c` answer them.
//!
//! KEYS and SCAN build replies of any size: both are spilled to the
//! reactor as they grow (`Out::spill_large`), and both count their matches
//! first and then write them, since a RESP array says its length first
//! (two passes over the keys cost less than a list of the matches).

use crate::command::{arity_error, clip, unknown_subcommand, Call, Next, QUOTED, SYNTAX};
use crate::db::{Db, Entry, Key};
use crate::glob::Glob;
use crate::number::{redis_int, scan_cursor, NOT_AN_INTEGER};
use crate::resp::reply;

/// SCAN's COUNT when none is given (Redis's).
const SCAN_COUNT: usize = 10;

/// DEL and UNLINK (nothing here is freed lazily, so they are one).
pub fn del(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    let db = c.ks.db(c.client.db);
    let mut deleted = 0;
    for key in &args[1..] {
        let live = db.contains(c.now, key);
        if db.remove(&mut c.wheel, key).is_some() && live {
            deleted += 1;
        }
    }
    reply::integer(&mut c.out.buf, deleted);
}

pub fn exists(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    let db = c.ks.db(c.client.db);
    let n = args[1..].iter().filter(|k| db.contains(c.now, k)).count();
    reply::integer(&mut c.out.buf, n as i64);
}

pub fn type_(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    let db = c.ks.db(c.client.db);
    let name = db
        .get(c.now, args[1])
        .map_or("none", |e| e.value.type_name());
    reply::simple(&mut c.out.buf, name);
}

pub fn rename(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    rename_generic(c, args[1], args[2], false);
}

pub fn renamenx(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    rename_generic(c, args[1], args[2], true);
}

/// RENAME moves the value and its expiry, replacing whatever `to` held;
/// RENAMENX leaves an existing `to` alone.
fn rename_generic(c: &mut Call<'_, '_>, from: &[u8], to: &[u8], nx: bool) {
    let db = c.ks.db(c.client.db);
    let Some(at) = db.get(c.now, from).map(Entry::expires_at) else {
        return c.error("no such key");
    };
    let done = |c: &mut Call<'_, '_>, moved: bool| {
        if nx {
            reply::integer(&mut c.out.buf, i64::from(moved));
        } else {
            reply::simple(&mut c.out.buf, "OK");
        }
    };
    if from == to {
        return done(c, false);
    }
    if nx && db.contains(c.now, to) {
        return done(c, false);
    }
    if let Some(value) = db.remove(&mut c.wheel, from) {
        db.set(&mut c.wheel, c.now, to, value, false);
        if let Some(at) = at {
            db.set_expiry(&mut c.wheel, c.now, to, at);
        }
    }
    done(c, true);
}

/// Longest KEYS or SCAN MATCH pattern. Redis has no limit, but a pattern
/// is compiled to 40 bytes a byte here (an 8 MiB one took 320 MB), and
/// matching costs up to its length times a key's: 4 KiB is far longer
/// than any real pattern.
pub const MAX_PATTERN: usize = 4 * 1024;

/// A MATCH pattern; `*` alone matches every key without a look (so an
/// empty key is listed too, as Redis lists it). `Err` if it is longer
/// than `MAX_PATTERN`.
fn pattern(word: &[u8]) -> Result<Option<Glob>, String> {
    if word.len() > MAX_PATTERN {
        return Err(format!("pattern longer than {MAX_PATTERN} bytes"));
    }
    Ok((word != b"*").then(|| Glob::new(word)))
}

/// Whether SCAN and KEYS list this key.
fn listed(glob: Option<&Glob>, kind: Option<&[u8]>, key: &Key, entry: &Entry) -> bool {
    glob.is_none_or(|g| g.matches(key))
        && kind.is_none_or(|k| k.eq_ignore_ascii_case(entry.value.type_name().as_bytes()))
}

/// KEYS pattern: every live key that matches, in one reply. `O(keys)`,
/// as in Redis, and built in one call: a reply past the reactor's hard
/// output limit (16 MiB) closes the connection. SCAN is the way to walk a
/// large keyspace.
pub fn keys(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    let glob = match pattern(args[1]) {
        Ok(glob) => glob,
        Err(why) => return c.error(&why),
    };
    let db = c.ks.db(c.client.db);
    let matching = |(key, entry): &(&Key, &Entry)| listed(glob.as_ref(), None, key, entry);
    let n = db.iter(c.now).filter(matching).count();
    reply::array_len(&mut c.out.buf, n);
    for (key, _) in db.iter(c.now).filter(matching) {
        reply::bulk(&mut c.out.buf, key);
        if !c.out.spill_large(c.wheel.cx, c.conn) {
            c.next = Next::Gone;
            return;
        }
    }
}

/// SCAN cursor [MATCH pattern] [COUNT n] [TYPE type]: looks at `n` keys
/// (see `db.rs` for the cursor and what it promises).
pub fn scan(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    let Some(cursor) = scan_cursor(args[1]) else {
        return c.error("invalid cursor");
    };
    let (mut glob, mut kind, mut count) = (None, None, SCAN_COUNT);
    let mut i = 2;
    while i < args.len() {
        let (word, value) = (args[i], args.get(i + 1).copied());
        match value {
            Some(p) if word.eq_ignore_ascii_case(b"MATCH") => match pattern(p) {
                Ok(g) => glob = g,
                Err(why) => return c.error(&why),
            },
            Some(n) if word.eq_ignore_ascii_case(b"COUNT") => match redis_int(n) {
                None => return c.error(NOT_AN_INTEGER),
                Some(n) if n < 1 => return c.error(SYNTAX),
                Some(n) => count = usize::try_from(n).unwrap_or(usize::MAX),
            },
            Some(t) if word.eq_ignore_ascii_case(b"TYPE") => kind = Some(t),
            _ => return c.error(SYNTAX),
        }
        i += 2;
    }
    let db: &Db = c.ks.db(c.client.db);
    let mut n = 0;
    let next = db.scan(c.now, cursor, count, |key, entry| {
        n += usize::from(listed(glob.as_ref(), kind, key, entry));
    });
    let out = &mut c.out.buf;
    reply::array_len(out, 2);
    let mut digits = Vec::new();
    reply::decimal(&mut digits, next as i64);
    reply::bulk(out, &digits);
    reply::array_len(out, n);
    let mut open = true;
    db.scan(c.now, cursor, count, |key, entry| {
        if open && listed(glob.as_ref(), kind, key, entry) {
            reply::bulk(&mut c.out.buf, key);
            open = c.out.spill_large(c.wheel.cx, c.conn);
        }
    });
    if !open {
        c.next = Next::Gone;
    }
}

pub fn randomkey(c: &mut Call<'_, '_>, _args: &[&[u8]]) {
    let db = c.ks.db(c.client.db);
    match db.random(&mut c.wheel, c.now, &mut c.server.rng) {
        Some(key) => reply::bulk(&mut c.out.buf, key),
        None => reply::null(&mut c.out.buf),
    }
}

/// OBJECT ENCODING key (the one subcommand here; see `value.rs`).
pub fn object(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    let sub = args[1];
    if sub.eq_ignore_ascii_case(b"HELP") {
        let lines = [
            "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "ENCODING <key>",
            "    Return the kind of internal representation used in order to store the value",
            "    associated with a <key>.",
            "HELP",
            "    Print this help.",
        ];
        reply::array_len(&mut c.out.buf, lines.len());
        for line in lines {
            reply::simple(&mut c.out.buf, line);
        }
    } else if sub.eq_ignore_ascii_case(b"ENCODING") {
        if args.len() != 3 {
            return arity_error(&mut c.out.buf, "object|encoding");
        }
        let db = c.ks.db(c.client.db);
        match db.get(c.now, args[2]) {
            Some(entry) => reply::bulk(&mut c.out.buf, entry.value.encoding().as_bytes()),
            None => reply::null(&mut c.out.buf),
        }
    } else {
        unknown_subcommand(c, args);
    }
}

pub fn expire(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    expire_generic(c, args, Base::Now, true, "expire");
}

pub fn pexpire(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    expire_generic(c, args, Base::Now, false, "pexpire");
}

pub fn expireat(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    expire_generic(c, args, Base::Epoch, true, "expireat");
}

pub fn pexpireat(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    expire_generic(c, args, Base::Epoch, false, "pexpireat");
}

/// What an expiry amount counts from.
#[derive(Clone, Copy, PartialEq)]
enum Base {
    Now,
    Epoch,
}

/// EXPIRE's conditions (Redis 7: NX, XX, GT, LT).
#[derive(Default)]
struct Conditions {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
}

impl Conditions {
    /// As Redis's `parseExtendedExpireArgumentsOrReply`: `Err` is the
    /// message.
    fn parse(words: &[&[u8]]) -> Result<Conditions, String> {
        let mut f = Conditions::default();
        for word in words {
            match word.to_ascii_uppercase().as_slice() {
                b"NX" => f.nx = true,
                b"XX" => f.xx = true,
                b"GT" => f.gt = true,
                b"LT" => f.lt = true,
                _ => return Err(format!("Unsupported option {}", clip(word, QUOTED))),
            }
        }
        if f.nx && (f.xx || f.gt || f.lt) {
            return Err("NX and XX, GT or LT options at the same time are not compatible".into());
        }
        if f.gt && f.lt {
            return Err("GT and LT options at the same time are not compatible".into());
        }
        Ok(f)
    }

    /// Whether a key whose expiry is `current` takes `at`.
    fn allow(&self, current: Option<i64>, at: i64) -> bool {
        match current {
            // No expiry is an infinite one: GT never passes, LT always.
            None => !self.xx && !self.gt,
            Some(current) => {
                let refused = self.nx || (self.gt && at <= current) || (self.lt && at >= current);
                !refused
            }
        }
    }
}

/// Redis's `expireGenericCommand`: conditions, then the amount (an
/// integer, which in milliseconds from its base must fit in 64 bits:
/// negative is allowed and deletes the key), then the key.
fn expire_generic(c: &mut Call<'_, '_>, args: &[&[u8]], base: Base, seconds: bool, name: &str) {
    let conditions = match Conditions::parse(&args[3..]) {
        Ok(f) => f,
        Err(message) => return c.error(&message),
    };
    let Some(amount) = redis_int(args[2]) else {
        return c.error(NOT_AN_INTEGER);
    };
    let base = match base {
        Base::Now => c.now,
        Base::Epoch => 0,
    };
    let at = if seconds {
        amount.checked_mul(1000)
    } else {
        Some(amount)
    };
    let Some(at) = at.and_then(|ms| ms.checked_add(base)) else {
        return c.error(&format!("invalid expire time in '{name}' command"));
    };
    let key = args[1];
    let db = c.ks.db(c.client.db);
    let Some(current) = db.get(c.now, key).map(Entry::expires_at) else {
        return reply::integer(&mut c.out.buf, 0);
    };
    if !conditions.allow(current, at) {
        return reply::integer(&mut c.out.buf, 0);
    }
    if at <= c.now {
        db.remove(&mut c.wheel, key);
    } else {
        db.set_expiry(&mut c.wheel, c.now, key, at);
    }
    reply::integer(&mut c.out.buf, 1);
}

pub fn ttl(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    ttl_generic(c, args[1], false, false);
}

pub fn pttl(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    ttl_generic(c, args[1], true, false);
}

pub fn expiretime(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    ttl_generic(c, args[1], false, true);
}

pub fn pexpiretime(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    ttl_generic(c, args[1], true, true);
}

/// -2 for no key, -1 for no expiry, else the time left (or the time it
/// falls, `absolute`), in milliseconds or rounded seconds.
fn ttl_generic(c: &mut Call<'_, '_>, key: &[u8], millis: bool, absolute: bool) {
    let db = c.ks.db(c.client.db);
    let answer = match db.get(c.now, key).map(Entry::expires_at) {
        None => -2,
        Some(None) => -1,
        Some(Some(at)) => {
            let ms = if absolute { at } else { (at - c.now).max(0) };
            if millis {
                ms
            } else {
                // Rounded to the nearest second; past i64 for i64::MAX.
                ((i128::from(ms) + 500) / 1000) as i64
            }
        }
    };
    reply::integer(&mut c.out.buf, answer);
}

pub fn persist(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    let db = c.ks.db(c.client.db);
    let removed = db.contains(c.now, args[1]) && db.persist(&mut c.wheel, args[1]);
    reply::integer(&mut c.out.buf, i64::from(removed));
}
