//! What the proxy does with each command: answer it itself, send it whole
//! to the backend that owns its keys, split it by backend and put the
//! answers back together, or refuse it with a clear `-ERR`.
//!
//! The command name is matched in lower case from a small stack buffer:
//! no allocation per command.

/// How a command is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Answered by the proxy.
    Local(Local),
    /// Sent whole to the backend that owns its keys: those at `first`,
    /// `first + step`, ... up to `last` (an index from the end when
    /// negative: -1 is the last argument). With more than one key, all
    /// must be on one backend (a hash tag puts them there).
    Keys {
        first: usize,
        last: isize,
        step: usize,
    },
    /// EVAL and EVALSHA: `numkeys` at index 2, the keys after it.
    Script,
    /// Split by backend, each part sent as the same command over its own
    /// keys, the answers put back together.
    Split(Split),
    /// Refused, and why.
    Refused(&'static str),
}

/// Commands the proxy answers itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Local {
    Ping,
    Echo,
    Quit,
    Auth,
    Select,
}

/// How a split command's answers are put back together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// MGET: one value per key, in the client's order.
    Values,
    /// DEL, UNLINK, EXISTS, TOUCH: the parts' integers summed.
    Count,
    /// MSET (key value pairs): `+OK` once every part said so.
    Pairs,
}

/// The route for the command named `name` (any case).
pub fn route(name: &[u8]) -> Option<Route> {
    let mut lower = [0u8; 24];
    let name = lower.get_mut(..name.len()).map(|buf| {
        for (to, from) in buf.iter_mut().zip(name) {
            *to = from.to_ascii_lowercase();
        }
        &*buf
    })?;
    const ONE: Route = Route::Keys {
        first: 1,
        last: 1,
        step: 1,
    };
    const ALL: Route = Route::Keys {
        first: 1,
        last: -1,
        step: 1,
    };
    const TWO: Route = Route::Keys {
        first: 1,
        last: 2,
        step: 1,
    };
    Some(match name {
        b"ping" => Route::Local(Local::Ping),
        b"echo" => Route::Local(Local::Echo),
        b"quit" => Route::Local(Local::Quit),
        b"auth" => Route::Local(Local::Auth),
        b"select" => Route::Local(Local::Select),

        b"mget" => Route::Split(Split::Values),
        b"del" | b"unlink" | b"exists" | b"touch" => Route::Split(Split::Count),
        b"mset" => Route::Split(Split::Pairs),

        // strings and bits
        b"get" | b"set" | b"setnx" | b"setex" | b"psetex" | b"getset" | b"getdel" | b"getex"
        | b"append" | b"strlen" | b"getrange" | b"substr" | b"setrange" | b"incr" | b"decr"
        | b"incrby" | b"decrby" | b"incrbyfloat" | b"setbit" | b"getbit" | b"bitcount"
        | b"bitpos" | b"bitfield" | b"bitfield_ro"
        // keys and expiry
        | b"expire" | b"pexpire" | b"expireat" | b"pexpireat" | b"ttl" | b"pttl"
        | b"expiretime" | b"pexpiretime" | b"persist" | b"type" | b"dump" | b"restore"
        // hashes
        | b"hset" | b"hsetnx" | b"hget" | b"hmset" | b"hmget" | b"hdel" | b"hlen"
        | b"hexists" | b"hincrby" | b"hincrbyfloat" | b"hgetall" | b"hkeys" | b"hvals"
        | b"hstrlen" | b"hrandfield" | b"hscan"
        // lists
        | b"lpush" | b"rpush" | b"lpushx" | b"rpushx" | b"lpop" | b"rpop" | b"llen"
        | b"lrange" | b"lindex" | b"lset" | b"lrem" | b"ltrim" | b"linsert" | b"lpos"
        // sets
        | b"sadd" | b"srem" | b"scard" | b"sismember" | b"smismember" | b"smembers"
        | b"spop" | b"srandmember" | b"sscan"
        // sorted sets
        | b"zadd" | b"zrem" | b"zcard" | b"zcount" | b"zincrby" | b"zrange"
        | b"zrangebyscore" | b"zrevrange" | b"zrevrangebyscore" | b"zrank" | b"zrevrank"
        | b"zscore" | b"zmscore" | b"zremrangebyrank" | b"zremrangebyscore"
        | b"zrangebylex" | b"zrevrangebylex" | b"zlexcount" | b"zremrangebylex"
        | b"zpopmin" | b"zpopmax" | b"zrandmember" | b"zscan"
        // hyperloglog and geo
        | b"pfadd" | b"geoadd" | b"geodist" | b"geohash" | b"geopos" | b"geosearch" => ONE,

        // Several keys, sent whole: all must live on one backend.
        b"rename" | b"renamenx" | b"rpoplpush" | b"lmove" | b"smove" | b"copy" => TWO,
        b"sdiff" | b"sinter" | b"sunion" | b"sdiffstore" | b"sinterstore" | b"sunionstore"
        | b"pfcount" | b"pfmerge" => ALL,
        b"msetnx" => Route::Keys {
            first: 1,
            last: -1,
            step: 2,
        },
        b"bitop" => Route::Keys {
            first: 2,
            last: -1,
            step: 1,
        },
        b"eval" | b"evalsha" | b"eval_ro" | b"evalsha_ro" => Route::Script,

        b"multi" | b"exec" | b"discard" | b"watch" | b"unwatch" => Route::Refused(
            "transactions are not supported through the proxy: their keys may live on different backends",
        ),
        b"blpop" | b"brpop" | b"brpoplpush" | b"blmove" | b"blmpop" | b"bzpopmin"
        | b"bzpopmax" | b"bzmpop" => Route::Refused(
            "blocking commands are not supported through the proxy: one would hold a backend connection every client shares",
        ),
        b"subscribe" | b"psubscribe" | b"unsubscribe" | b"punsubscribe" | b"publish"
        | b"ssubscribe" | b"sunsubscribe" | b"spublish" => Route::Refused(
            "pub/sub is not supported through the proxy: it needs a backend connection of its own",
        ),
        _ => return None,
    })
}

/// Why a command's keys could not be found.
#[derive(Debug, PartialEq, Eq)]
pub enum NoKeys {
    /// Too few arguments: Redis's arity error.
    Arity,
    /// Anything else, answered as this `-ERR` text.
    Error(&'static str),
}

/// The keys of a `Keys` or `Script` route in `args` (the command name
/// first).
pub fn keys<'a>(route: Route, args: &[&'a [u8]]) -> Result<Vec<&'a [u8]>, NoKeys> {
    let (first, last, step) = match route {
        Route::Keys { first, last, step } => (first, last, step),
        Route::Script => return script_keys(args),
        _ => return Err(NoKeys::Arity),
    };
    let last = if last < 0 {
        args.len()
            .checked_sub(last.unsigned_abs())
            .ok_or(NoKeys::Arity)?
    } else {
        last as usize
    };
    if first > last || last >= args.len() {
        return Err(NoKeys::Arity);
    }
    Ok(args[first..=last].iter().step_by(step).copied().collect())
}

/// EVAL's keys: `numkeys` at index 2, the keys after it, with Redis's
/// own errors, and one of ours for a script with none (it has no
/// backend to go to).
fn script_keys<'a>(args: &[&'a [u8]]) -> Result<Vec<&'a [u8]>, NoKeys> {
    let numkeys = args.get(2).ok_or(NoKeys::Arity)?;
    let numkeys: i64 = std::str::from_utf8(numkeys)
        .ok()
        .and_then(|n| n.parse().ok())
        .ok_or(NoKeys::Error("ERR value is not an integer or out of range"))?;
    if numkeys < 0 {
        return Err(NoKeys::Error("ERR Number of keys can't be negative"));
    }
    if numkeys as u64 > (args.len() - 3) as u64 {
        return Err(NoKeys::Error(
            "ERR Number of keys can't be greater than number of args",
        ));
    }
    if numkeys == 0 {
        return Err(NoKeys::Error(
            "ERR a script with no keys cannot be routed through the proxy: pass the keys it uses",
        ));
    }
    Ok(args[3..3 + numkeys as usize].to_vec())
}

/// Appends the request `args` to `out` as a RESP array of bulk strings.
pub fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.push(b'*');
    out.extend_from_slice(args.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    for arg in args {
        out.push(b'$');
        out.extend_from_slice(arg.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_route_in_any_case_and_unknown_ones_do_not() {
        assert_eq!(route(b"GeT"), route(b"get"));
        assert!(matches!(route(b"MGET"), Some(Route::Split(Split::Values))));
        assert!(matches!(route(b"multi"), Some(Route::Refused(_))));
        assert_eq!(route(b"flushall"), None);
        assert_eq!(route(&[b'a'; 100]), None);
    }

    #[test]
    fn keys_are_found_where_each_command_keeps_them() {
        let args: Vec<&[u8]> = vec![b"sinter", b"a", b"b", b"c"];
        assert_eq!(keys(route(b"sinter").unwrap(), &args).unwrap(), args[1..]);
        let args: Vec<&[u8]> = vec![b"msetnx", b"a", b"1", b"b", b"2"];
        assert_eq!(
            keys(route(b"msetnx").unwrap(), &args).unwrap(),
            vec![&b"a"[..], b"b"]
        );
        let args: Vec<&[u8]> = vec![b"bitop", b"and", b"dest", b"x"];
        assert_eq!(
            keys(route(b"bitop").unwrap(), &args).unwrap(),
            vec![&b"dest"[..], b"x"]
        );
        let args: Vec<&[u8]> = vec![b"eval", b"return 1", b"2", b"k1", b"k2", b"arg"];
        assert_eq!(keys(Route::Script, &args).unwrap(), vec![&b"k1"[..], b"k2"]);
        let none: Vec<&[u8]> = vec![b"eval", b"return 1", b"0"];
        assert!(matches!(keys(Route::Script, &none), Err(NoKeys::Error(_))));
        let short: Vec<&[u8]> = vec![b"get"];
        assert_eq!(keys(route(b"get").unwrap(), &short), Err(NoKeys::Arity));
        for bad in [&b"99999999999999999999"[..], b"-1", b"3", b"x"] {
            let args: Vec<&[u8]> = vec![b"eval", b"s", bad, b"k"];
            assert!(
                matches!(keys(Route::Script, &args), Err(NoKeys::Error(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn encode_writes_an_array_of_bulk_strings() {
        let mut out = Vec::new();
        encode(&mut out, &[b"MGET", b"a", b""]);
        assert_eq!(out, b"*3\r\n$4\r\nMGET\r\n$1\r\na\r\n$0\r\n\r\n");
    }
}
