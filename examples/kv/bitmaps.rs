//! SETBIT and GETBIT (Redis's "bitmap" group): a string read and written
//! a bit at a time, bit 0 the most significant of byte 0. A bit past the
//! end reads as 0; setting one grows the string with zeros, up to
//! [`MAX_VALUE`], so an offset is checked before anything is allocated.

use crate::command::{Call, WRONGTYPE};
use crate::number::redis_int;
use crate::resp::reply;
use crate::strings::{string, WrongType, MAX_VALUE};
use crate::value::{Made, Str, Value};

/// A bit offset as Redis reads one: an integer whose byte is inside
/// [`MAX_VALUE`].
fn bit_offset(word: &[u8]) -> Option<usize> {
    let offset = usize::try_from(redis_int(word)?).ok()?;
    (offset >> 3 < MAX_VALUE).then_some(offset)
}

const BAD_OFFSET: &str = "bit offset is not an integer or out of range";

pub fn setbit(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    let Some(offset) = bit_offset(args[2]) else {
        return c.error(BAD_OFFSET);
    };
    let on = match redis_int(args[3]) {
        Some(bit @ (0 | 1)) => bit == 1,
        _ => return c.error("bit is not an integer or out of range"),
    };
    let (byte, mask) = (offset >> 3, 0x80u8 >> (offset & 7));
    let set = |bytes: &mut Vec<u8>| {
        if bytes.len() <= byte {
            bytes.resize(byte + 1, 0);
        }
        let was = bytes[byte] & mask != 0;
        if on {
            bytes[byte] |= mask;
        } else {
            bytes[byte] &= !mask;
        }
        was
    };
    let db = c.ks.db(c.client.db);
    if let Some(mut value) = db.get_mut(&mut c.wheel, c.now, args[1]) {
        let Value::Str(s) = &mut *value else {
            return c.out.buf.extend_from_slice(WRONGTYPE);
        };
        let was = set(&mut s.bytes);
        s.made = Made::Edited;
        return reply::integer(&mut c.out.buf, i64::from(was));
    }
    let mut bytes = Vec::new();
    set(&mut bytes);
    let value = Value::Str(Str {
        bytes,
        made: Made::Edited,
    });
    db.set(&mut c.wheel, c.now, args[1], value, false);
    reply::integer(&mut c.out.buf, 0);
}

pub fn getbit(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    let Some(offset) = bit_offset(args[2]) else {
        return c.error(BAD_OFFSET);
    };
    let db = c.ks.db(c.client.db);
    match string(db, c.now, args[1]) {
        Ok(value) => {
            let byte = value.and_then(|v| v.get(offset >> 3)).copied().unwrap_or(0);
            let bit = byte & (0x80 >> (offset & 7)) != 0;
            reply::integer(&mut c.out.buf, i64::from(bit));
        }
        Err(WrongType) => c.out.buf.extend_from_slice(WRONGTYPE),
    }
}
