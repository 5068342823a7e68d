//! Lists and sets, the least of them: enough that keys of other types
//! exist, so the string commands' type rules (WRONGTYPE, MGET's nil) are
//! real and tested. LPUSH, RPUSH, LPOP, RPOP, LLEN, LRANGE; SADD, SREM,
//! SCARD, SISMEMBER, SMEMBERS; each answering as Redis 7.0 does. A list
//! or set emptied by a pop or a removal is deleted, as in Redis.

use crate::command::{Call, WRONGTYPE};
use crate::number::{redis_int, NOT_AN_INTEGER};
use crate::resp::reply;
use crate::value::{List, Set, Value};

pub fn lpush(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    push(c, args, true);
}

pub fn rpush(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    push(c, args, false);
}

fn push(c: &mut Call<'_, '_>, args: &[&[u8]], front: bool) {
    let db = c.ks.db(c.client.db);
    if let Some(mut value) = db.get_mut(&mut c.wheel, c.now, args[1]) {
        let Value::List(list) = &mut *value else {
            return c.out.buf.extend_from_slice(WRONGTYPE);
        };
        for item in &args[2..] {
            list.push(item, front);
        }
        return reply::integer(&mut c.out.buf, list.len() as i64);
    }
    let mut list = Box::<List>::default();
    for item in &args[2..] {
        list.push(item, front);
    }
    let len = list.len();
    db.set(&mut c.wheel, c.now, args[1], Value::List(list), false);
    reply::integer(&mut c.out.buf, len as i64);
}

pub fn lpop(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    pop(c, args, true);
}

pub fn rpop(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    pop(c, args, false);
}

/// Largest reply LPOP or RPOP with a count may build: half the reactor's
/// hard output limit (16 MiB), so it fits with room for what the
/// connection has queued already.
const MAX_POP_REPLY: usize = 8 * 1024 * 1024;
/// LPOP and RPOP key [count]: one element (or nil), or with a count an
/// array of up to that many (or a nil array).
fn pop(c: &mut Call<'_, '_>, args: &[&[u8]], front: bool) {
    if args.len() > 3 {
        let name = if front { "lpop" } else { "rpop" };
        return crate::command::arity_error(&mut c.out.buf, name);
    }
    let count = match args.get(2) {
        None => None,
        Some(word) => match redis_int(word).and_then(|n| usize::try_from(n).ok()) {
            Some(n) => Some(n),
            None => return c.error("value is out of range, must be positive"),
        },
    };
    let db = c.ks.db(c.client.db);
    let emptied = {
        let Some(mut value) = db.get_mut(&mut c.wheel, c.now, args[1]) else {
            return match count {
                Some(_) => c.out.buf.extend_from_slice(b"*-1\r\n"),
                None => reply::null(&mut c.out.buf),
            };
        };
        let Value::List(list) = &mut *value else {
            return c.out.buf.extend_from_slice(WRONGTYPE);
        };
        match count {
            None => {
                if let Some(item) = list.pop(front) {
                    reply::bulk(&mut c.out.buf, &item);
                }
            }
            Some(n) => {
                let n = n.min(list.len());
                // Items taken out must reach the client: a reply past the
                // hard output limit would close the connection with them
                // already gone from the list. Such a pop is refused whole.
                let size: usize = if front {
                    list.iter().take(n).map(|i| i.len() + 16).sum()
                } else {
                    list.iter().rev().take(n).map(|i| i.len() + 16).sum()
                };
                if size > MAX_POP_REPLY {
                    let why = format!(
                        "the reply would be {size} bytes, more than {MAX_POP_REPLY}: pop fewer"
                    );
                    reply::error(&mut c.out.buf, &why);
                    return;
                }
                reply::array_len(&mut c.out.buf, n);
                for _ in 0..n {
                    if let Some(item) = list.pop(front) {
                        reply::bulk(&mut c.out.buf, &item);
                    }
                }
            }
        }
        list.len() == 0
    };
    if emptied {
        db.remove(&mut c.wheel, args[1]);
    }
}

pub fn llen(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    let db = c.ks.db(c.client.db);
    match db.get(c.now, args[1]).map(|e| &e.value) {
        Some(Value::List(list)) => reply::integer(&mut c.out.buf, list.len() as i64),
        Some(_) => c.out.buf.extend_from_slice(WRONGTYPE),
        None => reply::integer(&mut c.out.buf, 0),
    }
}

/// LRANGE key start stop: both inclusive, negative from the end.
pub fn lrange(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    let (Some(start), Some(stop)) = (redis_int(args[2]), redis_int(args[3])) else {
        return c.error(NOT_AN_INTEGER);
    };
    let db = c.ks.db(c.client.db);
    let list = match db.get(c.now, args[1]).map(|e| &e.value) {
        Some(Value::List(list)) => list,
        Some(_) => return c.out.buf.extend_from_slice(WRONGTYPE),
        None => return reply::array_len(&mut c.out.buf, 0),
    };
    let len = list.len() as i64;
    let start = if start < 0 {
        (len + start).max(0)
    } else {
        start
    };
    let stop = if stop < 0 {
        len + stop
    } else {
        stop.min(len - 1)
    };
    if start >= len || start > stop {
        return reply::array_len(&mut c.out.buf, 0);
    }
    let (start, stop) = (start as usize, stop as usize);
    reply::array_len(&mut c.out.buf, stop - start + 1);
    for item in list.iter().skip(start).take(stop - start + 1) {
        reply::bulk(&mut c.out.buf, item);
        if !c.out.spill_large(c.wheel.cx, c.conn) {
            c.next = crate::command::Next::Gone;
            return;
        }
    }
}

pub fn sadd(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    let db = c.ks.db(c.client.db);
    if let Some(mut value) = db.get_mut(&mut c.wheel, c.now, args[1]) {
        let Value::Set(set) = &mut *value else {
            return c.out.buf.extend_from_slice(WRONGTYPE);
        };
        let added = args[2..].iter().filter(|m| set.insert(m)).count();
        return reply::integer(&mut c.out.buf, added as i64);
    }
    let mut set = Box::<Set>::default();
    let added = args[2..].iter().filter(|m| set.insert(m)).count();
    db.set(&mut c.wheel, c.now, args[1], Value::Set(set), false);
    reply::integer(&mut c.out.buf, added as i64);
}

pub fn srem(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    let db = c.ks.db(c.client.db);
    let emptied = {
        let Some(mut value) = db.get_mut(&mut c.wheel, c.now, args[1]) else {
            return reply::integer(&mut c.out.buf, 0);
        };
        let Value::Set(set) = &mut *value else {
            return c.out.buf.extend_from_slice(WRONGTYPE);
        };
        let removed = args[2..].iter().filter(|m| set.remove(m)).count();
        reply::integer(&mut c.out.buf, removed as i64);
        set.len() == 0
    };
    if emptied {
        db.remove(&mut c.wheel, args[1]);
    }
}

pub fn scard(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    let db = c.ks.db(c.client.db);
    match db.get(c.now, args[1]).map(|e| &e.value) {
        Some(Value::Set(set)) => reply::integer(&mut c.out.buf, set.len() as i64),
        Some(_) => c.out.buf.extend_from_slice(WRONGTYPE),
        None => reply::integer(&mut c.out.buf, 0),
    }
}

pub fn sismember(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    let db = c.ks.db(c.client.db);
    match db.get(c.now, args[1]).map(|e| &e.value) {
        Some(Value::Set(set)) => {
            reply::integer(&mut c.out.buf, i64::from(set.contains(args[2])));
        }
        Some(_) => c.out.buf.extend_from_slice(WRONGTYPE),
        None => reply::integer(&mut c.out.buf, 0),
    }
}

pub fn smembers(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    let db = c.ks.db(c.client.db);
    let set = match db.get(c.now, args[1]).map(|e| &e.value) {
        Some(Value::Set(set)) => set,
        Some(_) => return c.out.buf.extend_from_slice(WRONGTYPE),
        None => return reply::array_len(&mut c.out.buf, 0),
    };
    reply::array_len(&mut c.out.buf, set.len());
    for member in set.iter() {
        reply::bulk(&mut c.out.buf, member);
        if !c.out.spill_large(c.wheel.cx, c.conn) {
            c.next = crate::command::Next::Gone;
            return;
        }
    }
}
