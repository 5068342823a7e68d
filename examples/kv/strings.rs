//! The string commands, as Redis's docs group them: GET and SET with
//! their variants, counters and ranges.
//!
//! Each follows Redis 7.0's `t_string.c` in the order it checks things
//! (arguments, then the key's type, then the value), because that order
//! decides which error a client sees. A string never grows past
//! [`MAX_VALUE`]: SETRANGE, APPEND (and SETBIT, in `bitmaps.rs`) refuse
//! to build one larger, as Redis refuses past `proto-max-bulk-len`. LCS
//! has a file of its own (`lcs.rs`).

use crate::command::{Call, Next, SYNTAX, WRONGTYPE};
use crate::db::Db;
use crate::number::{format_float, redis_float, redis_int, NOT_AN_INTEGER, NOT_A_FLOAT};
use crate::resp::{reply, MAX_BULK};
use crate::value::{Made, Str, Value};

/// The largest string SETRANGE, APPEND and SETBIT may build: the largest
/// a client can send in one bulk, so any value can be read back in one
/// reply no larger than a request may be (Redis's `proto-max-bulk-len`
/// plays both roles too).
pub const MAX_VALUE: usize = MAX_BULK;

const TOO_BIG: &str = "string exceeds maximum allowed size (proto-max-bulk-len)";

/// A key's string for reading: `Ok(None)` if missing (or past due).
pub fn string<'d>(db: &'d Db, now: i64, key: &[u8]) -> Result<Option<&'d Vec<u8>>, WrongType> {
    match db.get(now, key).map(|e| &e.value) {
        Some(Value::Str(s)) => Ok(Some(&s.bytes)),
        Some(_) => Err(WrongType),
        None => Ok(None),
    }
}

/// The key holds another type.
pub struct WrongType;

pub fn get(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    let db = c.ks.db(c.client.db);
    match string(db, c.now, args[1]) {
        Ok(Some(value)) => reply::bulk(&mut c.out.buf, value),
        Ok(None) => reply::null(&mut c.out.buf),
        Err(WrongType) => c.out.buf.extend_from_slice(WRONGTYPE),
    }
}

/// How an expiry amount is given.
#[derive(Clone, Copy, PartialEq)]
enum Unit {
    Ex,
    Px,
    ExAt,
    PxAt,
}

impl Unit {
    fn seconds(self) -> bool {
        matches!(self, Unit::Ex | Unit::ExAt)
    }

    fn relative(self) -> bool {
        matches!(self, Unit::Ex | Unit::Px)
    }
}

/// SET's and GETEX's options, as Redis's
/// `parseExtendedStringArgumentsOrReply` takes them: each option once
/// (an expiry may be repeated in the same unit; the last one counts), and
/// the ones that contradict each other refused as a syntax error.
#[derive(Default)]
struct Options<'a> {
    nx: bool,
    xx: bool,
    get: bool,
    keep_ttl: bool,
    persist: bool,
    expire: Option<(Unit, &'a [u8])>,
}

impl<'a> Options<'a> {
    /// `None` is a syntax error. `for_set`: SET's options, else GETEX's.
    fn parse(words: &[&'a [u8]], for_set: bool) -> Option<Options<'a>> {
        let mut o = Options::default();
        let mut i = 0;
        while i < words.len() {
            let word = words[i];
            let next = words.get(i + 1).copied();
            let is = |name: &[u8]| word.eq_ignore_ascii_case(name);
            let unit = o.expire.map(|(unit, _)| unit);
            // An expiry in another unit, or none allowed beside it.
            let expiry_blocked = |wanted: Unit| {
                o.keep_ttl || o.persist || unit.is_some_and(|u| u != wanted) || next.is_none()
            };
            if is(b"NX") && !o.xx && for_set {
                o.nx = true;
            } else if is(b"XX") && !o.nx && for_set {
                o.xx = true;
            } else if is(b"GET") && for_set {
                o.get = true;
            } else if is(b"KEEPTTL") && !o.persist && unit.is_none() && for_set {
                o.keep_ttl = true;
            } else if is(b"PERSIST") && !for_set && unit.is_none() && !o.keep_ttl {
                o.persist = true;
            } else if let Some(wanted) = [
                (&b"EX"[..], Unit::Ex),
                (b"PX", Unit::Px),
                (b"EXAT", Unit::ExAt),
                (b"PXAT", Unit::PxAt),
            ]
            .iter()
            .find(|(name, _)| is(name))
            .map(|&(_, unit)| unit)
            .filter(|&wanted| !expiry_blocked(wanted))
            {
                o.expire = Some((wanted, next.unwrap_or_default()));
                i += 1;
            } else {
                return None;
            }
            i += 1;
        }
        Some(o)
    }
}

/// Why an expiry amount was refused.
enum BadExpire {
    NotAnInteger,
    Invalid,
}

/// When an expiry given as `amount` in `unit` falls (Unix ms), checked as
/// Redis's `getExpireMillisecondsOrReply` checks it: a positive 64-bit
/// integer whose deadline in milliseconds fits in one.
fn deadline(amount: &[u8], unit: Unit, now: i64) -> Result<i64, BadExpire> {
    let n = redis_int(amount).ok_or(BadExpire::NotAnInteger)?;
    if n <= 0 || (unit.seconds() && n > i64::MAX / 1000) {
        return Err(BadExpire::Invalid);
    }
    let ms = if unit.seconds() { n * 1000 } else { n };
    let at = if unit.relative() {
        ms.checked_add(now).ok_or(BadExpire::Invalid)?
    } else {
        ms
    };
    Ok(at)
}

/// Answers a refused expiry: "invalid expire time in 'set' command".
fn bad_expire(c: &mut Call<'_, '_>, why: BadExpire, command: &str) {
    match why {
        BadExpire::NotAnInteger => c.error(NOT_AN_INTEGER),
        BadExpire::Invalid => c.error(&format!("invalid expire time in '{command}' command")),
    }
}

pub fn set(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    let Some(o) = Options::parse(&args[3..], true) else {
        return c.error(SYNTAX);
    };
    let at = match o.expire.map(|(unit, amount)| deadline(amount, unit, c.now)) {
        Some(Err(why)) => return bad_expire(c, why, "set"),
        Some(Ok(at)) => Some(at),
        None => None,
    };
    set_generic(c, args[1], args[2], &o, at, SetReply::Ok);
}

/// What SET's variants answer when they store (or, after `nx`/`xx`, do
/// not).
#[derive(Clone, Copy, PartialEq)]
enum SetReply {
    /// `+OK`, or nil.
    Ok,
    /// `:1`, or `:0` (SETNX).
    One,
}

/// Redis's `setGenericCommand`: GET's answer first, then the NX/XX
/// condition, then the store and its expiry.
fn set_generic(
    c: &mut Call<'_, '_>,
    key: &[u8],
    value: &[u8],
    o: &Options<'_>,
    at: Option<i64>,
    answer: SetReply,
) {
    let db = c.ks.db(c.client.db);
    if o.get {
        match string(db, c.now, key) {
            Ok(Some(old)) => reply::bulk(&mut c.out.buf, old),
            Ok(None) => reply::null(&mut c.out.buf),
            Err(WrongType) => return c.out.buf.extend_from_slice(WRONGTYPE),
        }
    }
    // A plain SET does not look first: it stores in one lookup.
    let refused = (o.nx || o.xx) && {
        let found = db.contains(c.now, key);
        (o.nx && found) || (o.xx && !found)
    };
    if refused {
        if !o.get {
            match answer {
                SetReply::Ok => reply::null(&mut c.out.buf),
                SetReply::One => reply::integer(&mut c.out.buf, 0),
            }
        }
        return;
    }
    db.set(
        &mut c.wheel,
        c.now,
        key,
        Value::sent(value.to_vec()),
        o.keep_ttl,
    );
    if let Some(at) = at {
        db.set_expiry(&mut c.wheel, c.now, key, at);
    }
    if !o.get {
        match answer {
            SetReply::Ok => reply::simple(&mut c.out.buf, "OK"),
            SetReply::One => reply::integer(&mut c.out.buf, 1),
        }
    }
}

pub fn setnx(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    let o = Options {
        nx: true,
        ..Options::default()
    };
    set_generic(c, args[1], args[2], &o, None, SetReply::One);
}

pub fn setex(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    set_with_expiry(c, args, Unit::Ex, "setex");
}

pub fn psetex(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    set_with_expiry(c, args, Unit::Px, "psetex");
}

/// SETEX and PSETEX: `key amount value`.
fn set_with_expiry(c: &mut Call<'_, '_>, args: &[&[u8]], unit: Unit, name: &str) {
    match deadline(args[2], unit, c.now) {
        Ok(at) => set_generic(
            c,
            args[1],
            args[3],
            &Options::default(),
            Some(at),
            SetReply::Ok,
        ),
        Err(why) => bad_expire(c, why, name),
    }
}

pub fn getset(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    let o = Options {
        get: true,
        ..Options::default()
    };
    set_generic(c, args[1], args[2], &o, None, SetReply::Ok);
}

pub fn getdel(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    let db = c.ks.db(c.client.db);
    match string(db, c.now, args[1]) {
        Ok(Some(value)) => reply::bulk(&mut c.out.buf, value),
        Ok(None) => return reply::null(&mut c.out.buf),
        Err(WrongType) => return c.out.buf.extend_from_slice(WRONGTYPE),
    }
    db.remove(&mut c.wheel, args[1]);
}

/// GETEX: the value, and a new expiry (or none) for the key.
pub fn getex(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    let Some(o) = Options::parse(&args[2..], false) else {
        return c.error(SYNTAX);
    };
    let key = args[1];
    let db = c.ks.db(c.client.db);
    match string(db, c.now, key) {
        Ok(Some(_)) => {}
        Ok(None) => return reply::null(&mut c.out.buf),
        Err(WrongType) => return c.out.buf.extend_from_slice(WRONGTYPE),
    }
    let expire = match o.expire {
        Some((unit, amount)) => match deadline(amount, unit, c.now) {
            Ok(at) => Some((unit, at)),
            Err(why) => return bad_expire(c, why, "getex"),
        },
        None => None,
    };
    let db = c.ks.db(c.client.db);
    if let Ok(Some(value)) = string(db, c.now, key) {
        reply::bulk(&mut c.out.buf, value);
    }
    match expire {
        // An absolute time already past deletes the key.
        Some((unit, at)) if !unit.relative() && at <= c.now => {
            db.remove(&mut c.wheel, key);
        }
        Some((_, at)) => {
            db.set_expiry(&mut c.wheel, c.now, key, at);
        }
        None if o.persist => {
            db.persist(&mut c.wheel, key);
        }
        None => {}
    }
}

pub fn mget(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    reply::array_len(&mut c.out.buf, args.len() - 1);
    let db = c.ks.db(c.client.db);
    for key in &args[1..] {
        match string(db, c.now, key) {
            Ok(Some(value)) => reply::bulk(&mut c.out.buf, value),
            // Another type is nil here, not an error.
            _ => reply::null(&mut c.out.buf),
        }
        if !c.out.spill_large(c.wheel.cx, c.conn) {
            c.next = Next::Gone;
            return;
        }
    }
}

pub fn mset(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    mset_generic(c, args, false);
}

pub fn msetnx(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    mset_generic(c, args, true);
}

/// MSET and MSETNX (which sets nothing if any key exists).
fn mset_generic(c: &mut Call<'_, '_>, args: &[&[u8]], nx: bool) {
    if args.len() % 2 == 0 {
        let name = if nx { "msetnx" } else { "mset" };
        return crate::command::arity_error(&mut c.out.buf, name);
    }
    let db = c.ks.db(c.client.db);
    if nx && args[1..].chunks(2).any(|pair| db.contains(c.now, pair[0])) {
        return reply::integer(&mut c.out.buf, 0);
    }
    for pair in args[1..].chunks(2) {
        db.set(
            &mut c.wheel,
            c.now,
            pair[0],
            Value::sent(pair[1].to_vec()),
            false,
        );
    }
    if nx {
        reply::integer(&mut c.out.buf, 1);
    } else {
        reply::simple(&mut c.out.buf, "OK");
    }
}

/// Whether a string of `size` bytes may grow by `more` (Redis's
/// `checkStringLength`, against [`MAX_VALUE`]).
fn may_grow(size: u64, more: usize) -> bool {
    size.saturating_add(more as u64) <= MAX_VALUE as u64
}

pub fn append(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    let (key, tail) = (args[1], args[2]);
    let db = c.ks.db(c.client.db);
    if let Some(mut value) = db.get_mut(&mut c.wheel, c.now, key) {
        let Value::Str(s) = &mut *value else {
            return c.out.buf.extend_from_slice(WRONGTYPE);
        };
        if !may_grow(s.bytes.len() as u64, tail.len()) {
            return reply::error(&mut c.out.buf, TOO_BIG);
        }
        s.bytes.extend_from_slice(tail);
        s.made = Made::Edited;
        return reply::integer(&mut c.out.buf, s.bytes.len() as i64);
    }
    db.set(&mut c.wheel, c.now, key, Value::sent(tail.to_vec()), false);
    reply::integer(&mut c.out.buf, tail.len() as i64);
}

pub fn strlen(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    let db = c.ks.db(c.client.db);
    match string(db, c.now, args[1]) {
        Ok(value) => reply::integer(&mut c.out.buf, value.map_or(0, Vec::len) as i64),
        Err(WrongType) => c.out.buf.extend_from_slice(WRONGTYPE),
    }
}

/// GETRANGE (and its old name SUBSTR): the bytes from `start` to `end`,
/// both inclusive, counted from the end when negative.
pub fn getrange(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    let (Some(mut start), Some(mut end)) = (redis_int(args[2]), redis_int(args[3])) else {
        return c.error(NOT_AN_INTEGER);
    };
    let db = c.ks.db(c.client.db);
    let value = match string(db, c.now, args[1]) {
        Ok(Some(value)) => value,
        Ok(None) => return reply::bulk(&mut c.out.buf, b""),
        Err(WrongType) => return c.out.buf.extend_from_slice(WRONGTYPE),
    };
    let len = value.len() as i64;
    if start < 0 && end < 0 && start > end {
        return reply::bulk(&mut c.out.buf, b"");
    }
    if start < 0 {
        start = start.saturating_add(len).max(0);
    }
    if end < 0 {
        end = end.saturating_add(len).max(0);
    }
    end = end.min(len - 1);
    if start > end || len == 0 {
        return reply::bulk(&mut c.out.buf, b"");
    }
    reply::bulk(&mut c.out.buf, &value[start as usize..=end as usize]);
}

pub fn setrange(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    let (key, patch) = (args[1], args[3]);
    let Some(offset) = redis_int(args[2]) else {
        return c.error(NOT_AN_INTEGER);
    };
    let Ok(offset) = u64::try_from(offset) else {
        return c.error("offset is out of range");
    };
    let db = c.ks.db(c.client.db);
    if let Some(mut value) = db.get_mut(&mut c.wheel, c.now, key) {
        let Value::Str(s) = &mut *value else {
            return c.out.buf.extend_from_slice(WRONGTYPE);
        };
        if patch.is_empty() {
            // Nothing set: the value stays as it was, encoding too.
            return reply::integer(&mut c.out.buf, s.bytes.len() as i64);
        }
        if !may_grow(offset, patch.len()) {
            return reply::error(&mut c.out.buf, TOO_BIG);
        }
        let offset = offset as usize;
        let end = offset + patch.len();
        if s.bytes.len() < end {
            s.bytes.resize(end, 0);
        }
        s.bytes[offset..end].copy_from_slice(patch);
        s.made = Made::Edited;
        return reply::integer(&mut c.out.buf, s.bytes.len() as i64);
    }
    if patch.is_empty() {
        return reply::integer(&mut c.out.buf, 0);
    }
    if !may_grow(offset, patch.len()) {
        return c.error(TOO_BIG);
    }
    let mut bytes = vec![0; offset as usize];
    bytes.extend_from_slice(patch);
    let len = bytes.len();
    let value = Value::Str(Str {
        bytes,
        made: Made::Edited,
    });
    c.ks.db(c.client.db)
        .set(&mut c.wheel, c.now, key, value, false);
    reply::integer(&mut c.out.buf, len as i64);
}

pub fn incr(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    incr_by(c, args[1], 1);
}

pub fn decr(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    incr_by(c, args[1], -1);
}

pub fn incrby(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    match redis_int(args[2]) {
        Some(step) => incr_by(c, args[1], step),
        None => c.error(NOT_AN_INTEGER),
    }
}

pub fn decrby(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    match redis_int(args[2]) {
        Some(i64::MIN) => c.error("decrement would overflow"),
        Some(step) => incr_by(c, args[1], -step),
        None => c.error(NOT_AN_INTEGER),
    }
}

/// INCR and its kin: the value read as Redis reads integers, `step`
/// added unless it overflows, the result written in place (the key keeps
/// its expiry).
fn incr_by(c: &mut Call<'_, '_>, key: &[u8], step: i64) {
    let db = c.ks.db(c.client.db);
    if let Some(mut value) = db.get_mut(&mut c.wheel, c.now, key) {
        let Value::Str(s) = &mut *value else {
            return c.out.buf.extend_from_slice(WRONGTYPE);
        };
        let Some(current) = redis_int(&s.bytes) else {
            return reply::error(&mut c.out.buf, NOT_AN_INTEGER);
        };
        let Some(n) = current.checked_add(step) else {
            return reply::error(&mut c.out.buf, "increment or decrement would overflow");
        };
        s.bytes.clear();
        reply::decimal(&mut s.bytes, n);
        s.made = Made::Sent;
        return reply::integer(&mut c.out.buf, n);
    }
    let mut bytes = Vec::new();
    reply::decimal(&mut bytes, step);
    db.set(&mut c.wheel, c.now, key, Value::sent(bytes), false);
    reply::integer(&mut c.out.buf, step);
}

/// INCRBYFLOAT: both numbers read as Redis reads floats, the sum refused
/// if it is not finite, written back in plain decimals.
pub fn incrbyfloat(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    let key = args[1];
    let db = c.ks.db(c.client.db);
    let current = match string(db, c.now, key) {
        Ok(Some(value)) => redis_float(value),
        Ok(None) => Some(0.0),
        Err(WrongType) => return c.out.buf.extend_from_slice(WRONGTYPE),
    };
    let (Some(current), Some(step)) = (current, redis_float(args[2])) else {
        return c.error(NOT_A_FLOAT);
    };
    let sum = current + step;
    if !sum.is_finite() {
        return c.error("increment would produce NaN or Infinity");
    }
    let text = format_float(sum).into_bytes();
    reply::bulk(&mut c.out.buf, &text);
    let value = Value::Str(Str {
        bytes: text,
        made: Made::Float,
    });
    db.set(&mut c.wheel, c.now, key, value, true);
}
