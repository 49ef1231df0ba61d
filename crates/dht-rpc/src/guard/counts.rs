//! [`SourceCounts`]: how many things each IP and each /24 holds, for limits per source (the
//! routing table's contacts, the peer store's entries).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::dest::Ipv4Range;

/// The /24 an IP is in, as a number.
pub fn prefix_of(ip: &Ipv4Addr) -> u32 {
    u32::from(*ip) >> 8
}

/// Whether `ip` is in any of `ranges`.
pub fn in_ranges(ranges: &[Ipv4Range], ip: Ipv4Addr) -> bool {
    ranges.iter().any(|r| r.contains(ip))
}

/// Counts per IP and per /24; an IP or /24 whose count drops to 0 is forgotten, so memory
/// follows what is held.
#[derive(Debug, Clone, Default)]
pub struct SourceCounts {
    per_ip: BTreeMap<Ipv4Addr, u32>,
    per_prefix: BTreeMap<u32, u32>,
}

impl SourceCounts {
    /// One more held for `ip`.
    pub fn add(&mut self, ip: Ipv4Addr) {
        *self.per_ip.entry(ip).or_default() += 1;
        *self.per_prefix.entry(prefix_of(&ip)).or_default() += 1;
    }

    /// One fewer held for `ip` (nothing if it holds none).
    pub fn remove(&mut self, ip: Ipv4Addr) {
        fn down<K: Ord>(m: &mut BTreeMap<K, u32>, k: K) -> bool {
            let Some(n) = m.get_mut(&k) else {
                return false;
            };
            *n -= 1;
            if *n == 0 {
                m.remove(&k);
            }
            true
        }
        if down(&mut self.per_ip, ip) {
            down(&mut self.per_prefix, prefix_of(&ip));
        }
    }

    /// Held for `ip`.
    pub fn ip(&self, ip: &Ipv4Addr) -> usize {
        self.per_ip.get(ip).map_or(0, |n| *n as usize)
    }

    /// Held for `ip`'s /24.
    pub fn prefix(&self, ip: &Ipv4Addr) -> usize {
        self.per_prefix
            .get(&prefix_of(ip))
            .map_or(0, |n| *n as usize)
    }

    /// Held in all (the sum over IPs).
    pub fn total(&self) -> usize {
        self.per_ip.values().map(|n| *n as usize).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_adds_and_removes() {
        let mut c = SourceCounts::default();
        let (a, b) = (Ipv4Addr::new(1, 2, 3, 4), Ipv4Addr::new(1, 2, 3, 5));
        c.add(a);
        c.add(a);
        c.add(b);
        assert_eq!((c.ip(&a), c.ip(&b), c.prefix(&a), c.total()), (2, 1, 3, 3));
        c.remove(a);
        c.remove(a);
        c.remove(a); // more removes than adds change nothing
        assert_eq!((c.ip(&a), c.prefix(&b), c.total()), (0, 1, 1));
        assert!(!c.per_ip.contains_key(&a), "forgotten at 0");
    }
}
