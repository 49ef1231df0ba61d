//! Destinations: which addresses a node may send to on a remote requester's behalf.
//!
//! A relayed hole-punch ping, the pong of a forwarded ping, a walk's next request and the
//! spray of a birthday punch all go to an address that somebody else named. Named freely,
//! they would let a stranger reach services on the node's own loopback, its LAN, or a
//! broadcast address. The rule ([`may_send_for`]): never to an unspecified, multicast,
//! broadcast, reserved, link-local or documentation address, nor to port 0; to loopback
//! only for a requester on loopback; to a private range (RFC 1918, carrier-grade NAT,
//! benchmarking) only for a requester in that same range.

use std::net::{Ipv4Addr, SocketAddrV4};

/// A range of IPv4 addresses: `base/len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Range {
    base: u32,
    len: u8,
}

impl Ipv4Range {
    /// The range `base/len` (`len` is clamped to 32; host bits of `base` are ignored).
    pub const fn new(base: Ipv4Addr, len: u8) -> Self {
        let len = if len > 32 { 32 } else { len };
        Ipv4Range {
            base: u32::from_be_bytes(base.octets()) & mask(len),
            len,
        }
    }

    /// Whether `ip` is in the range.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.len) == self.base
    }
}

impl std::fmt::Display for Ipv4Range {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.len)
    }
}

impl std::str::FromStr for Ipv4Range {
    type Err = String;

    /// `a.b.c.d/len`, or a single address (`/32`).
    fn from_str(s: &str) -> Result<Self, String> {
        let (ip, len) = match s.split_once('/') {
            Some((ip, len)) => {
                let len: u8 = len
                    .parse()
                    .ok()
                    .filter(|l| *l <= 32)
                    .ok_or_else(|| format!("bad prefix length in {s:?} (0 to 32)"))?;
                (ip, len)
            }
            None => (s, 32),
        };
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("bad IPv4 address in {s:?}"))?;
        Ok(Ipv4Range::new(ip, len))
    }
}

const fn mask(len: u8) -> u32 {
    if len == 0 { 0 } else { u32::MAX << (32 - len) }
}

/// Ranges a node never sends to for a requester: "this network", link-local, documentation
/// and reserved (including the limited broadcast address), and multicast.
const NEVER: [Ipv4Range; 8] = [
    Ipv4Range::new(Ipv4Addr::new(0, 0, 0, 0), 8),
    Ipv4Range::new(Ipv4Addr::new(169, 254, 0, 0), 16),
    Ipv4Range::new(Ipv4Addr::new(192, 0, 0, 0), 24),
    Ipv4Range::new(Ipv4Addr::new(192, 0, 2, 0), 24),
    Ipv4Range::new(Ipv4Addr::new(198, 51, 100, 0), 24),
    Ipv4Range::new(Ipv4Addr::new(203, 0, 113, 0), 24),
    Ipv4Range::new(Ipv4Addr::new(224, 0, 0, 0), 4),
    Ipv4Range::new(Ipv4Addr::new(240, 0, 0, 0), 4),
];

/// Ranges a node sends to only for a requester inside the same range.
const LOCAL: [Ipv4Range; 6] = [
    Ipv4Range::new(Ipv4Addr::new(127, 0, 0, 0), 8),
    Ipv4Range::new(Ipv4Addr::new(10, 0, 0, 0), 8),
    Ipv4Range::new(Ipv4Addr::new(172, 16, 0, 0), 12),
    Ipv4Range::new(Ipv4Addr::new(192, 168, 0, 0), 16),
    Ipv4Range::new(Ipv4Addr::new(100, 64, 0, 0), 10),
    Ipv4Range::new(Ipv4Addr::new(198, 18, 0, 0), 15),
];

/// Loopback, `127.0.0.0/8`.
pub const LOOPBACK: Ipv4Range = LOCAL[0];

/// Why a destination is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Unspecified, multicast, broadcast, reserved, link-local, documentation, or port 0.
    Special,
    /// Loopback or a private range the requester is not in.
    Local,
}

/// Whether a node may send to `dest` because `requester` asked it to (directly or through
/// what it answered).
pub fn may_send_for(requester: Ipv4Addr, dest: SocketAddrV4) -> Result<(), Refused> {
    let ip = *dest.ip();
    if dest.port() == 0 || NEVER.iter().any(|r| r.contains(ip)) {
        return Err(Refused::Special);
    }
    match LOCAL.iter().find(|r| r.contains(ip)) {
        Some(r) if !r.contains(requester) => Err(Refused::Local),
        _ => Ok(()),
    }
}

/// Whether a datagram cannot really have come from `from`: port 0, or an unspecified,
/// "this network", multicast, reserved or broadcast source. Answering one would send to a
/// special-purpose address.
pub fn is_bogus_source(from: SocketAddrV4) -> bool {
    let ip = *from.ip();
    from.port() == 0
        || [NEVER[0], NEVER[6], NEVER[7]]
            .iter()
            .any(|r| r.contains(ip))
}

/// Whether `ip` is a public address: in none of the special-purpose ranges above.
pub fn is_public(ip: Ipv4Addr) -> bool {
    !NEVER.iter().chain(LOCAL.iter()).any(|r| r.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    #[test]
    fn special_addresses_are_never_destinations() {
        let public = Ipv4Addr::new(8, 8, 8, 8);
        for d in [
            "0.0.0.0:1",
            "0.1.2.3:1",
            "255.255.255.255:1",
            "224.0.0.1:5353",
            "239.255.255.250:1900",
            "240.0.0.1:1",
            "169.254.1.1:1",
            "192.0.2.1:1",
            "8.8.8.8:0",
        ] {
            assert_eq!(may_send_for(public, a(d)), Err(Refused::Special), "{d}");
            // Not even for a requester on loopback or a LAN.
            assert!(may_send_for(Ipv4Addr::LOCALHOST, a(d)).is_err(), "{d}");
        }
    }

    #[test]
    fn loopback_and_lan_only_for_requesters_on_them() {
        let public = Ipv4Addr::new(8, 8, 8, 8);
        for d in [
            "127.0.0.1:9999",
            "10.0.0.1:22",
            "192.168.1.1:80",
            "172.16.0.1:1",
            "100.64.0.1:1",
        ] {
            assert_eq!(may_send_for(public, a(d)), Err(Refused::Local), "{d}");
        }
        assert_eq!(
            may_send_for(Ipv4Addr::LOCALHOST, a("127.0.0.1:9999")),
            Ok(())
        );
        assert_eq!(
            may_send_for(Ipv4Addr::new(10, 9, 9, 9), a("10.0.0.1:22")),
            Ok(())
        );
        assert_eq!(
            may_send_for(Ipv4Addr::new(10, 9, 9, 9), a("192.168.1.1:80")),
            Err(Refused::Local),
            "another private range"
        );
        assert_eq!(
            may_send_for(Ipv4Addr::LOCALHOST, a("10.0.0.1:22")),
            Err(Refused::Local)
        );
        assert_eq!(may_send_for(public, a("1.2.3.4:5")), Ok(()));
        assert_eq!(may_send_for(Ipv4Addr::LOCALHOST, a("1.2.3.4:5")), Ok(()));
    }

    #[test]
    fn ranges_parse_and_contain() {
        let r: Ipv4Range = "198.18.0.0/15".parse().unwrap();
        assert!(r.contains(Ipv4Addr::new(198, 19, 255, 1)));
        assert!(!r.contains(Ipv4Addr::new(198, 20, 0, 1)));
        assert_eq!(r.to_string(), "198.18.0.0/15");
        let one: Ipv4Range = "1.2.3.4".parse().unwrap();
        assert!(one.contains(Ipv4Addr::new(1, 2, 3, 4)));
        assert!(!one.contains(Ipv4Addr::new(1, 2, 3, 5)));
        assert!("1.2.3.4/33".parse::<Ipv4Range>().is_err());
        assert!("x/8".parse::<Ipv4Range>().is_err());
        let all: Ipv4Range = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(Ipv4Addr::new(9, 9, 9, 9)));
        assert!(is_public(Ipv4Addr::new(9, 9, 9, 9)));
        for bogus in [
            "0.0.0.0:1",
            "255.255.255.255:1",
            "224.0.0.1:1",
            "250.1.1.1:1",
            "1.2.3.4:0",
        ] {
            assert!(is_bogus_source(a(bogus)), "{bogus}");
        }
        assert!(!is_bogus_source(a("1.2.3.4:5")));
        assert!(!is_bogus_source(a("127.0.0.1:5")));
        assert!(!is_public(Ipv4Addr::new(10, 9, 9, 9)));
    }
}
