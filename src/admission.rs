//! Who may connect: CIDR allow and deny lists and a per-address cap,
//! checked right after `accept`, before the handler hears of the
//! connection (nginx's `allow`/`deny` and `limit_conn`).
//!
//! Order: a matching deny entry rejects; then, if an allow list is given,
//! the address must match an entry of it; then the per-address cap. A
//! rejected connection is closed with RST (no TIME_WAIT left on our side)
//! and counted by [`RejectReason`].

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

/// A network in CIDR notation: `10.0.0.0/8`, `::1/128`, or a bare address
/// (all bits significant).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is inside this network. An IPv4 network also matches
    /// the IPv4-mapped IPv6 form (`::ffff:a.b.c.d`) of its addresses, which
    /// is how a dual-stack listener sees IPv4 peers.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(u32::from(net).into(), u32::from(ip).into(), 32, self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(u128::from(net), u128::from(ip), 128, self.prefix)
            }
            _ => false,
        }
    }
}

/// The top `prefix` of `bits` bits of `a` and `b` agree.
fn prefix_eq(a: u128, b: u128, bits: u8, prefix: u8) -> bool {
    let shift = u32::from(bits - prefix);
    a.checked_shr(shift).unwrap_or(0) == b.checked_shr(shift).unwrap_or(0)
}

/// Why a CIDR string was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CidrError(String);

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid CIDR {:?}: expected ADDRESS or ADDRESS/PREFIX",
            self.0
        )
    }
}

impl std::error::Error for CidrError {}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || CidrError(s.to_owned());
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| err())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.trim().parse::<u8>().map_err(|_| err())?,
            None => max,
        };
        if prefix > max {
            return Err(err());
        }
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Why a connection was turned away at accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// `max_conns` reached (with a reject line configured; without one the
    /// reactor simply stops accepting).
    MaxConns,
    /// The address matched the deny list.
    Denied,
    /// An allow list is set and the address is not on it.
    NotAllowed,
    /// The address already has `max_per_ip` connections.
    PerIpLimit,
    /// Shed to free a descriptor while the process was out of them.
    OutOfDescriptors,
}

impl RejectReason {
    /// Number of reasons.
    pub const COUNT: usize = 5;
    /// Names in [`index`](Self::index) order.
    pub const NAMES: [&'static str; Self::COUNT] = [
        "max_conns",
        "denied",
        "not_allowed",
        "per_ip_limit",
        "out_of_descriptors",
    ];

    /// A dense index for counters.
    pub fn index(&self) -> usize {
        *self as usize
    }
}

/// The access lists and the per-address counts.
/// Connections open per address: this reactor's own count, or one a
/// `Server`'s shards share (behind a lock, taken only at accept and
/// close: admission is not the hot path), so the cap holds for the whole
/// server.
#[derive(Debug)]
pub(crate) enum PerIp {
    Local(HashMap<IpAddr, usize>),
    Shared(Arc<Mutex<HashMap<IpAddr, usize>>>),
}

impl Default for PerIp {
    fn default() -> Self {
        PerIp::Local(HashMap::new())
    }
}

impl PerIp {
    fn with<R>(&mut self, f: impl FnOnce(&mut HashMap<IpAddr, usize>) -> R) -> R {
        match self {
            PerIp::Local(map) => f(map),
            // A shard that panicked while holding it left a valid map.
            PerIp::Shared(map) => f(&mut map.lock().unwrap_or_else(|e| e.into_inner())),
        }
    }

    /// One connection from `ip` is gone.
    fn release(&mut self, ip: IpAddr) {
        self.with(|map| {
            if let Some(n) = map.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&ip);
                }
            }
        });
    }
}

#[derive(Debug, Default)]
pub(crate) struct Admission {
    allow: Vec<Cidr>,
    deny: Vec<Cidr>,
    max_per_ip: Option<usize>,
    per_ip: PerIp,
    conn_ip: HashMap<usize, IpAddr>,
}

impl Admission {
    pub(crate) fn new(allow: Vec<Cidr>, deny: Vec<Cidr>, max_per_ip: Option<usize>) -> Self {
        Admission {
            allow,
            deny,
            max_per_ip,
            ..Admission::default()
        }
    }

    /// Counts per address with the other shards of a server.
    pub(crate) fn share_per_ip(&mut self, shared: Arc<Mutex<HashMap<IpAddr, usize>>>) {
        self.per_ip = PerIp::Shared(shared);
    }

    pub(crate) fn set_allow(&mut self, allow: Vec<Cidr>) {
        self.allow = allow;
    }

    pub(crate) fn set_deny(&mut self, deny: Vec<Cidr>) {
        self.deny = deny;
    }

    /// A new cap applies to connections accepted from now on; turning it
    /// off forgets this reactor's counts (each connection it counted takes
    /// its own out when it closes, so a shared count stays right).
    pub(crate) fn set_max_per_ip(&mut self, cap: Option<usize>) {
        if cap.is_none() {
            for (_, ip) in std::mem::take(&mut self.conn_ip) {
                self.per_ip.release(ip);
            }
        }
        self.max_per_ip = cap;
    }

    /// Whether `ip` may connect; under a per-address cap, a yes counts
    /// the connection at once (check and count are one step, so shards
    /// accepting from one address together cannot pass the cap). Follow
    /// a yes with [`opened`](Self::opened), or [`release`](Self::release)
    /// if the connection is not kept after all.
    pub(crate) fn check(&mut self, ip: IpAddr) -> Result<(), RejectReason> {
        if self.deny.iter().any(|c| c.contains(ip)) {
            return Err(RejectReason::Denied);
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|c| c.contains(ip)) {
            return Err(RejectReason::NotAllowed);
        }
        if let Some(cap) = self.max_per_ip {
            return self.per_ip.with(|map| {
                let n = map.entry(ip).or_default();
                if *n >= cap {
                    if *n == 0 {
                        map.remove(&ip);
                    }
                    return Err(RejectReason::PerIpLimit);
                }
                *n += 1;
                Ok(())
            });
        }
        Ok(())
    }

    /// The connection `check` let in has slot `index`.
    pub(crate) fn opened(&mut self, index: usize, ip: IpAddr) {
        if self.max_per_ip.is_some() {
            self.conn_ip.insert(index, ip);
        }
    }

    /// A connection `check` let in was not kept.
    pub(crate) fn release(&mut self, ip: IpAddr) {
        if self.max_per_ip.is_some() {
            self.per_ip.release(ip);
        }
    }

    /// Every connection counted here gives its count back (the reactor
    /// is leaving a server whose counts are shared).
    pub(crate) fn release_all(&mut self) {
        for (_, ip) in std::mem::take(&mut self.conn_ip) {
            self.per_ip.release(ip);
        }
    }

    /// The connection in slot `index` closed.
    pub(crate) fn closed(&mut self, index: usize) {
        if let Some(ip) = self.conn_ip.remove(&index) {
            self.per_ip.release(ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_matches_prefixes() {
        let net: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains(ip("10.1.255.7")));
        assert!(!net.contains(ip("10.2.0.1")));
        assert!("0.0.0.0/0"
            .parse::<Cidr>()
            .unwrap()
            .contains(ip("203.0.113.9")));
        let host: Cidr = "127.0.0.1".parse().unwrap();
        assert!(host.contains(ip("127.0.0.1")) && !host.contains(ip("127.0.0.2")));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:1::1")) && !v6.contains(ip("2001:db9::1")));
        assert!(!v6.contains(ip("10.0.0.1")));
        assert!(
            net.contains(ip("::ffff:10.1.2.3")),
            "IPv4-mapped IPv6 matches"
        );
        assert_eq!("::/0".parse::<Cidr>().unwrap().to_string(), "::/0");
    }

    #[test]
    fn rejects_malformed_cidrs() {
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "10.0.0.0/x",
            "host/8",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn deny_then_allow_then_cap() {
        let mut a = Admission::new(
            vec!["127.0.0.0/8".parse().unwrap()],
            vec!["127.0.0.9".parse().unwrap()],
            Some(2),
        );
        assert_eq!(a.check(ip("127.0.0.9")), Err(RejectReason::Denied));
        assert_eq!(a.check(ip("10.0.0.1")), Err(RejectReason::NotAllowed));
        for slot in 0..2 {
            assert_eq!(a.check(ip("127.0.0.1")), Ok(()));
            a.opened(slot, ip("127.0.0.1"));
        }
        assert_eq!(a.check(ip("127.0.0.1")), Err(RejectReason::PerIpLimit));
        assert_eq!(a.check(ip("127.0.0.2")), Ok(()));
        a.release(ip("127.0.0.2")); // let in, then not kept
        a.closed(0);
        assert_eq!(a.check(ip("127.0.0.1")), Ok(()));
        a.opened(0, ip("127.0.0.1"));
        a.closed(0);
        a.closed(1);
        assert!(a.per_ip.with(|m| m.is_empty()) && a.conn_ip.is_empty());
    }

    #[test]
    fn shards_sharing_counts_hold_one_cap_between_them() {
        let shared = Arc::new(Mutex::new(HashMap::new()));
        let mut shards: Vec<Admission> = (0..2)
            .map(|_| {
                let mut a = Admission::new(Vec::new(), Vec::new(), Some(3));
                a.share_per_ip(Arc::clone(&shared));
                a
            })
            .collect();
        let from = ip("10.1.1.1");
        let mut let_in = 0;
        for i in 0..6 {
            let shard = &mut shards[i % 2];
            if shard.check(from).is_ok() {
                shard.opened(i, from);
                let_in += 1;
            }
        }
        assert_eq!(let_in, 3, "the cap is the server's, not each shard's");
        shards[0].closed(0);
        assert_eq!(shards[1].check(from), Ok(()));
        // Turning the cap off gives back what a shard counted.
        shards[1].set_max_per_ip(None);
        assert_eq!(shared.lock().unwrap().get(&from), Some(&2));
    }
}
