//! [`Proven`]: the IPs that showed they receive at their address.
//!
//! An IP is proven when it answered one of our requests (the response matched the tid we
//! sent to it) or came back with a roundtrip token we issued to it. A spoofed source can do
//! neither, so answers may be generous toward proven IPs and must be frugal toward the
//! rest, which may be victims of a reflection attack. Two generations bound the memory: an
//! IP stays proven for one to two [`Proven::lifetime`]s after its last proof, and when the
//! current generation is full it becomes the previous one (only real, answering addresses
//! can fill it, and new proofs always get in).

use std::collections::HashSet;
use std::hash::BuildHasherDefault;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

type Set = HashSet<Ipv4Addr, BuildHasherDefault<std::collections::hash_map::DefaultHasher>>;

/// Proven IPs, in two generations.
#[derive(Debug, Clone)]
pub struct Proven {
    current: Set,
    previous: Set,
    max: usize,
    lifetime: Duration,
    rotated: Option<Instant>,
}

impl Proven {
    /// At most `max` IPs a generation; a generation lasts `lifetime`.
    pub fn new(max: usize, lifetime: Duration) -> Self {
        Proven {
            current: Set::default(),
            previous: Set::default(),
            max: max.max(1),
            lifetime,
            rotated: None,
        }
    }

    /// How long a generation lasts.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// Records a proof from `ip`.
    pub fn insert(&mut self, now: Instant, ip: Ipv4Addr) {
        let rotated = *self.rotated.get_or_insert(now);
        if self.current.len() >= self.max || now.saturating_duration_since(rotated) >= self.lifetime
        {
            self.previous = std::mem::take(&mut self.current);
            self.rotated = Some(now);
        }
        self.current.insert(ip);
    }

    /// Whether `ip` proved itself lately.
    pub fn contains(&self, ip: &Ipv4Addr) -> bool {
        self.current.contains(ip) || self.previous.contains(ip)
    }

    /// IPs held, both generations.
    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_last_one_to_two_lifetimes_and_memory_is_bounded() {
        let t = Instant::now();
        let life = Duration::from_secs(600);
        let mut p = Proven::new(3, life);
        let ip = |i: u32| Ipv4Addr::from(i);
        p.insert(t, ip(1));
        assert!(p.contains(&ip(1)));
        p.insert(t + life, ip(2)); // rotates: 1 is in the previous generation
        assert!(p.contains(&ip(1)) && p.contains(&ip(2)));
        p.insert(t + life * 2, ip(3));
        assert!(!p.contains(&ip(1)), "gone after two lifetimes");
        for i in 10..10_000 {
            p.insert(t + life * 2, ip(i));
            assert!(p.len() <= 6);
        }
        assert!(p.contains(&ip(9_999)), "the newest always get in");
    }
}
