//! Which backend owns a key: twemproxy's two distributions, and its key
//! hash, so this proxy can replace a twemproxy pool without moving a key.
//!
//! - **ketama** (consistent hashing, from libketama): each backend puts
//!   160 points on a ring of `u32`s (in proportion to its weight), each
//!   point an MD5 of `"NAME-i"`. A key belongs to the first point at or
//!   after its hash, wrapping round. Taking a backend out moves only the
//!   keys on its own points, about 1/N of them; with `modula` it would
//!   move nearly all.
//! - **modula**: the key's hash modulo the sum of the weights.
//!
//! A backend's NAME is the one given to it (`--backend "HOST:PORT:1 NAME"`,
//! as twemproxy's `servers:` lines take one), else `HOST:PORT`, as
//! twemproxy names a server given without a name (it leaves the port out
//! when it is 11211, memcached's, for libmemcached's sake; so does this).
//!
//! The key hash is one of twemproxy's (`--hash-function`):
//! - `fnv1a_64`, its default, quirks and all: FNV-1a with the 64-bit
//!   constants cut to 32 bits, and each byte widened as a C `char`
//!   (signed), so a byte of 0x80 or more is sign-extended before the xor.
//!   Cut to 32 bits the prime is 435, so keys that differ only in their
//!   last bytes (`user:1`, `user:2`, ...) hash close together and mostly
//!   land on one backend: `tests/resp_proxy.rs` saw 300 such keys split
//!   190, 110 and 0 over three backends. Kept as the default so a
//!   twemproxy pool's keys stay where they are;
//! - `fnv1a_32`, FNV-1a with its own 32-bit prime (16777619): as cheap,
//!   and spreads such keys evenly (bytes widened as a signed `char` here
//!   too, as twemproxy does);
//! - `md5`, the first four bytes of the key's MD5: even, and dearer.
//!
//! **Hash tags** (`--hash-tag`, `{}` by default; twemproxy's `hash_tag`,
//! which it leaves off unless configured): when a key holds the opening
//! character and, after it, the closing one with something between, only
//! what is between is hashed, so `{user1000}.following` and
//! `{user1000}.followers` land on the same backend (and a command on both
//! can go to it whole). As Redis Cluster does with `{}`.

use md5::{Digest, Md5};

/// Points each backend of weight 1 puts on the ring, in groups of 4 (one
/// MD5 gives four `u32`s): libketama's and twemproxy's number. More
/// points spread keys more evenly at the cost of a larger ring to search.
const POINTS_PER_SERVER: u32 = 160;

/// memcached's port, left out of a backend's name (see the module docs).
const MEMCACHED_PORT: u16 = 11211;

/// How keys are spread.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Distribution {
    /// Consistent hashing: a backend's removal moves only its own keys.
    Ketama,
    /// The hash modulo the total weight.
    Modula,
}

/// How a key is hashed (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyHash {
    /// twemproxy's default, with its 32-bit truncation.
    #[value(name = "fnv1a_64")]
    Fnv1a64,
    /// FNV-1a with its own 32-bit constants.
    #[value(name = "fnv1a_32")]
    Fnv1a32,
    /// The first four bytes of the MD5, little-endian.
    Md5,
}

impl KeyHash {
    /// The hash of `key` (its hash tag, if it has one, is the caller's
    /// business).
    pub fn of(self, key: &[u8]) -> u32 {
        match self {
            KeyHash::Fnv1a64 => fnv1a_64(key),
            KeyHash::Fnv1a32 => fnv1a_32(key),
            KeyHash::Md5 => {
                let d = Md5::digest(key);
                u32::from_le_bytes([d[0], d[1], d[2], d[3]])
            }
        }
    }
}

/// A backend as the ring sees it.
#[derive(Clone, Debug)]
pub struct Member {
    /// `HOST:PORT` (see the module docs).
    pub name: String,
    pub weight: u32,
}

/// The ring's name for a backend given as `host:port` with no name of
/// its own: as written, but for memcached's port, which twemproxy leaves
/// out (and an IPv6 address's brackets with it).
pub fn member_name(host: &str, port: u16) -> String {
    if port == MEMCACHED_PORT {
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string()
    } else {
        format!("{host}:{port}")
    }
}

impl Member {
    /// The member for a backend address, named by it (the tests' way).
    #[cfg(test)]
    pub fn new(addr: std::net::SocketAddr, weight: u32) -> Member {
        let host = addr.ip().to_string();
        let host = match addr {
            std::net::SocketAddr::V6(_) => format!("[{host}]"),
            std::net::SocketAddr::V4(_) => host,
        };
        Member::named(&member_name(&host, addr.port()), weight)
    }

    /// A backend with a name of its own.
    pub fn named(name: &str, weight: u32) -> Member {
        Member {
            name: name.to_string(),
            weight,
        }
    }
}

/// Keys to backends, built for the members that are in (see the module
/// docs). Index `i` in answers is the `i`th member given to [`Ring::new`].
#[derive(Debug)]
pub struct Ring {
    distribution: Distribution,
    hash: KeyHash,
    /// The hash tag's opening and closing characters, if tags are on.
    tag: Option<(u8, u8)>,
    /// ketama: `(point, member)`, sorted by point. modula: one entry per
    /// unit of weight, in member order.
    points: Vec<(u32, usize)>,
}

impl Ring {
    /// The ring over `members`, leaving out those for which `out[i]` is
    /// true (ejected). Empty if none is in.
    pub fn new(
        distribution: Distribution,
        hash: KeyHash,
        members: &[Member],
        out: &[bool],
    ) -> Ring {
        let live: Vec<usize> = (0..members.len())
            .filter(|&i| !out.get(i).copied().unwrap_or(false) && members[i].weight > 0)
            .collect();
        let points = match distribution {
            Distribution::Ketama => ketama(members, &live),
            Distribution::Modula => live
                .iter()
                .flat_map(|&i| std::iter::repeat_n((0, i), members[i].weight as usize))
                .collect(),
        };
        Ring {
            distribution,
            hash,
            tag: Some((b'{', b'}')),
            points,
        }
    }

    /// The same ring with hash tags between `open` and `close`, or none.
    pub fn with_tag(mut self, tag: Option<(u8, u8)>) -> Ring {
        self.tag = tag;
        self
    }

    /// The member that owns `key`, or `None` if no member is in.
    pub fn owner(&self, key: &[u8]) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let hash = self.hash.of(match self.tag {
            Some((open, close)) => hash_tag(key, open, close),
            None => key,
        });
        Some(match self.distribution {
            Distribution::Ketama => {
                let at = self.points.partition_point(|&(point, _)| point < hash);
                self.points[if at == self.points.len() { 0 } else { at }].1
            }
            Distribution::Modula => self.points[hash as usize % self.points.len()].1,
        })
    }
}

/// The ketama points of the `live` members, sorted.
fn ketama(members: &[Member], live: &[usize]) -> Vec<(u32, usize)> {
    let total: u32 = live.iter().map(|&i| members[i].weight).sum();
    let mut points = Vec::new();
    for &i in live {
        // twemproxy's arithmetic, in f32 as it does it, so weights that
        // do not divide evenly round the same way.
        let share = members[i].weight as f32 / total as f32;
        let groups =
            (share * POINTS_PER_SERVER as f32 / 4.0 * live.len() as f32 + 0.000_000_000_1).floor();
        for group in 0..groups as u32 {
            let digest = Md5::digest(format!("{}-{group}", members[i].name).as_bytes());
            for word in digest.chunks_exact(4) {
                let point = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
                points.push((point, i));
            }
        }
    }
    points.sort_by_key(|&(point, _)| point);
    points
}

/// The part of `key` that is hashed: what is between the first `open`
/// and the first `close` after it, if that is not empty; else all of it.
pub fn hash_tag(key: &[u8], open: u8, close: u8) -> &[u8] {
    let Some(open) = key.iter().position(|&b| b == open) else {
        return key;
    };
    match key[open + 1..].iter().position(|&b| b == close) {
        Some(len) if len > 0 => &key[open + 1..open + 1 + len],
        _ => key,
    }
}

/// twemproxy's `fnv1a_64` (see the module docs).
pub fn fnv1a_64(key: &[u8]) -> u32 {
    const INIT: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = INIT as u32;
    for &byte in key {
        hash ^= byte as i8 as i32 as u32; // a C `char`, sign-extended
        hash = hash.wrapping_mul(PRIME as u32);
    }
    hash
}

/// twemproxy's `fnv1a_32`: FNV-1a over 32 bits with its own constants,
/// each byte widened as a C `char`, as in `fnv1a_64`.
pub fn fnv1a_32(key: &[u8]) -> u32 {
    key.iter().fold(0x811c_9dc5u32, |hash, &byte| {
        (hash ^ byte as i8 as i32 as u32).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(n: usize) -> Vec<Member> {
        (0..n)
            .map(|i| Member::new(format!("127.0.0.1:{}", 7000 + i).parse().unwrap(), 1))
            .collect()
    }

    #[test]
    fn fnv1a_64_is_twemproxys() {
        // FNV-1a over 32 bits with the 64-bit offset basis cut to 32 bits:
        // the empty key is the basis itself.
        assert_eq!(fnv1a_64(b""), 0x8422_2325);
        // One byte by hand: (basis ^ 'a') * prime, mod 2^32.
        assert_eq!(
            fnv1a_64(b"a"),
            (0x8422_2325u32 ^ 0x61).wrapping_mul(0x0000_01b3)
        );
        // A high byte is sign-extended first, as C's char is.
        assert_eq!(
            fnv1a_64(&[0xff]),
            (0x8422_2325u32 ^ 0xffff_ffff).wrapping_mul(0x0000_01b3)
        );
    }

    #[test]
    fn hash_tags_take_the_part_between_the_first_braces() {
        assert_eq!(hash_tag(b"{user1000}.following", b'{', b'}'), b"user1000");
        assert_eq!(hash_tag(b"foo{bar}{zap}", b'{', b'}'), b"bar");
        assert_eq!(
            hash_tag(b"foo{}{bar}", b'{', b'}'),
            b"foo{}{bar}",
            "empty: the whole key"
        );
        assert_eq!(hash_tag(b"foo{bar", b'{', b'}'), b"foo{bar");
        assert_eq!(hash_tag(b"}{x}", b'{', b'}'), b"x");
        let ring = Ring::new(Distribution::Ketama, KeyHash::Fnv1a64, &members(3), &[]);
        assert_eq!(
            ring.owner(b"{user1000}.following"),
            ring.owner(b"{user1000}.followers")
        );
    }

    #[test]
    fn ketama_puts_160_points_per_member_and_spreads_keys_evenly() {
        for hash in [KeyHash::Fnv1a32, KeyHash::Md5] {
            let ring = Ring::new(Distribution::Ketama, hash, &members(4), &[]);
            assert_eq!(ring.points.len(), 4 * 160);
            let mut counts = [0usize; 4];
            for k in 0..40_000 {
                counts[ring.owner(format!("key:{k}").as_bytes()).unwrap()] += 1;
            }
            for c in counts {
                assert!((7_000..13_000).contains(&c), "{hash:?}: {counts:?}");
            }
        }
    }

    #[test]
    fn fnv1a_32_is_the_real_fnv1a() {
        // The published test vectors of FNV-1a, 32 bits.
        assert_eq!(fnv1a_32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a_32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a_32(b"foobar"), 0xbf9c_f968);
        // twemproxy's char: a high byte sign-extended.
        assert_eq!(
            fnv1a_32(&[0xe9]),
            (0x811c_9dc5u32 ^ 0xffff_ffe9).wrapping_mul(0x0100_0193)
        );
    }

    #[test]
    fn ejecting_a_member_moves_only_its_own_keys() {
        let all = members(4);
        let before = Ring::new(Distribution::Ketama, KeyHash::Fnv1a64, &all, &[]);
        let after = Ring::new(
            Distribution::Ketama,
            KeyHash::Fnv1a64,
            &all,
            &[false, true, false, false],
        );
        for k in 0..10_000 {
            let key = format!("key:{k}");
            let (b, a) = (before.owner(key.as_bytes()), after.owner(key.as_bytes()));
            if b != Some(1) {
                assert_eq!(a, b, "{key} moved though its member stayed");
            } else {
                assert_ne!(a, Some(1));
            }
        }
    }

    #[test]
    fn weights_share_points_and_modula_wraps() {
        let mut m = members(2);
        m[0].weight = 3;
        let ring = Ring::new(Distribution::Ketama, KeyHash::Fnv1a64, &m, &[]);
        let first = ring.points.iter().filter(|p| p.1 == 0).count();
        assert_eq!((first, ring.points.len() - first), (240, 80));
        let modula = Ring::new(Distribution::Modula, KeyHash::Fnv1a64, &m, &[]);
        assert_eq!(modula.points.len(), 4);
        let none = Ring::new(Distribution::Modula, KeyHash::Fnv1a64, &m, &[true, true]);
        assert_eq!(none.owner(b"k"), None);
    }
}
