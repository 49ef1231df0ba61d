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

/// Counts per IP; a /24's count is the sum over its IPs (one ordered map, whose IPs of a
/// /24 are neighbours: at most 256 of them). An IP whose count drops to 0 is forgotten, so
/// memory follows what is held.
#[derive(Debug, Clone, Default)]
pub struct SourceCounts {
    per_ip: BTreeMap<u32, u32>,
}

impl SourceCounts {
    /// One more held for `ip`.
    pub fn add(&mut self, ip: Ipv4Addr) {
        *self.per_ip.entry(u32::from(ip)).or_default() += 1;
    }

    /// One fewer held for `ip` (nothing if it holds none).
    pub fn remove(&mut self, ip: Ipv4Addr) {
        let k = u32::from(ip);
        let Some(n) = self.per_ip.get_mut(&k) else {
            return;
        };
        *n -= 1;
        if *n == 0 {
            self.per_ip.remove(&k);
        }
    }

    /// Held for `ip`.
    pub fn ip(&self, ip: &Ipv4Addr) -> usize {
        self.per_ip.get(&u32::from(*ip)).map_or(0, |n| *n as usize)
    }

    /// Held for `ip`'s /24.
    pub fn prefix(&self, ip: &Ipv4Addr) -> usize {
        let low = prefix_of(ip) << 8;
        self.per_ip
            .range(low..=low | 0xff)
            .map(|(_, n)| *n as usize)
            .sum()
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
        // Neighbours of the /24 on both sides are not in it.
        c.add(Ipv4Addr::new(1, 2, 2, 255));
        c.add(Ipv4Addr::new(1, 2, 4, 0));
        c.remove(Ipv4Addr::new(1, 2, 2, 255));
        c.remove(Ipv4Addr::new(1, 2, 4, 0));
        c.add(Ipv4Addr::new(1, 2, 4, 0));
        assert_eq!((c.ip(&a), c.ip(&b), c.prefix(&a), c.total()), (2, 1, 3, 4));
        c.remove(Ipv4Addr::new(1, 2, 4, 0));
        c.remove(a);
        c.remove(a);
        c.remove(a); // more removes than adds change nothing
        assert_eq!((c.ip(&a), c.prefix(&b), c.total()), (0, 1, 1));
        assert!(!c.per_ip.contains_key(&u32::from(a)), "forgotten at 0");
    }
}
