//! Roundtrip tokens: `sha256(secret || the host's 4 octets)`, two secrets rotated every five
//! minutes (the reference hashes the dotted host string; a token is opaque to everyone but
//! its issuer, and the octets spare a formatting and an allocation per answer). A token
//! proves that the requester received an earlier response at its address, so an update (an
//! announce) cannot come from a spoofed source.
//!
//! Every answer carries a token, and a busy node answers the same hosts again and again (a
//! walk asks, then commits): the current secret's tokens of recent hosts are kept in a small
//! cache (slots in sets of [`CACHE_WAYS`], the most recent first; emptied when the secret
//! rotates), so that a repeat costs a compare instead of a SHA-256. It starts at
//! [`CACHE_MIN_SLOTS`] on first use and doubles, up to [`CACHE_SLOTS`], each time it has
//! evicted an eighth as many hosts as it holds: a node that answers a few hundred hosts
//! keeps a few KiB, a busy one the full 144 KiB. Which set a host takes depends on the secret, so nobody outside can aim floods of
//! hosts at one set; a flood of new hosts only evicts, and a miss costs what every token cost
//! before. (Direct-mapped, 1,024 hosts asking in turn missed on about a fifth of their
//! requests, as hosts that share a slot evict each other; in sets of four, on under 1 %.)

use std::net::Ipv4Addr;

use sha2::{Digest, Sha256};

use crate::guard::budget::mix;

/// Hosts whose current token is cached at most (36 bytes each: 144 KiB).
pub const CACHE_SLOTS: usize = 4096;
/// Hosts the cache holds at first (2.3 KiB).
pub const CACHE_MIN_SLOTS: usize = 64;
/// Slots per set: a host may take any slot of its set.
pub const CACHE_WAYS: usize = 4;

/// A cached token: the host's octets (as a `u32`; 0, which no requester has, marks an
/// empty slot) and its token under the current secret.
#[derive(Debug, Clone, Copy)]
struct Cached {
    host: u32,
    token: [u8; 32],
}

/// The current and previous token secrets.
#[derive(Debug, Clone)]
pub struct Tokens {
    secrets: [[u8; 32]; 2],
    /// Current tokens of recent hosts, by a keyed hash of the host (empty until first used).
    cache: Vec<Cached>,
    /// Cached hosts evicted since the cache last grew.
    evicted: usize,
    /// The most slots the cache grows to.
    max: usize,
    /// The key of the slot hash (from the current secret).
    key: u64,
}

impl Tokens {
    /// Tokens from two initial secrets.
    pub fn new(current: [u8; 32], previous: [u8; 32]) -> Self {
        Tokens {
            secrets: [current, previous],
            cache: Vec::new(),
            evicted: 0,
            max: CACHE_SLOTS,
            key: slot_key(&current),
        }
    }

    /// Caps the cache at `max` hosts (rounded down to a power of two, at least
    /// the set size, 4).
    pub fn with_max(mut self, max: usize) -> Self {
        let max = max.max(CACHE_WAYS);
        self.max = 1 << (usize::BITS - 1 - max.leading_zeros());
        self
    }

    /// Makes `secret` current; the current one becomes the previous.
    pub fn rotate(&mut self, secret: [u8; 32]) {
        self.secrets[1] = self.secrets[0];
        self.secrets[0] = secret;
        self.key = slot_key(&secret);
        self.cache.fill(EMPTY);
    }

    /// The first slot of `host`'s set.
    fn set(&self, host: u32) -> usize {
        let sets = (self.cache.len() / CACHE_WAYS).max(1);
        ((mix(u64::from(host) ^ self.key) as usize) & (sets - 1)) * CACHE_WAYS
    }

    fn token(secret: &[u8; 32], host: Ipv4Addr) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(secret);
        h.update(host.octets());
        h.finalize().into()
    }

    /// The token to hand `host` now.
    pub fn issue(&mut self, host: Ipv4Addr) -> [u8; 32] {
        let h = u32::from(host);
        let i = self.set(h);
        if h != 0
            && let Some(ways) = self.cache.get_mut(i..i + CACHE_WAYS)
            && let Some(k) = ways.iter().position(|c| c.host == h)
        {
            // The most recent first.
            ways[..=k].rotate_right(1);
            return ways[0].token;
        }
        let token = Self::token(&self.secrets[0], host);
        if self.cache.is_empty() {
            self.cache = vec![EMPTY; CACHE_MIN_SLOTS.min(self.max)];
        } else if self.evicted * 8 >= self.cache.len() && self.cache.len() < self.max {
            self.grow();
        }
        self.insert(Cached { host: h, token });
        token
    }

    /// Puts a token in its host's set; the least recent of the set leaves.
    fn insert(&mut self, c: Cached) {
        let i = self.set(c.host);
        let ways = &mut self.cache[i..i + CACHE_WAYS];
        if ways[CACHE_WAYS - 1].host != 0 {
            self.evicted += 1;
        }
        ways.rotate_right(1);
        ways[0] = c;
    }

    /// Doubles the cache, keeping what it holds.
    fn grow(&mut self) {
        let bigger = vec![EMPTY; 2 * self.cache.len()];
        let old = std::mem::replace(&mut self.cache, bigger);
        self.evicted = 0;
        // The least recent first, so that each set keeps its order.
        for set in old.chunks(CACHE_WAYS) {
            for c in set.iter().rev().filter(|c| c.host != 0) {
                self.insert(*c);
            }
        }
        self.evicted = 0;
    }

    /// Slots the cache has now (for memory reports).
    pub fn cache_slots(&self) -> usize {
        self.cache.len()
    }

    /// Whether `token` is one we handed `host` under the current or previous secret.
    pub fn is_valid(&mut self, host: Ipv4Addr, token: &[u8]) -> bool {
        token.len() == 32
            && (self.issue(host).as_slice() == token
                || Self::token(&self.secrets[1], host).as_slice() == token)
    }
}

const EMPTY: Cached = Cached {
    host: 0,
    token: [0; 32],
};

/// The slot hash's key, derived from a secret (which nobody outside knows).
fn slot_key(secret: &[u8; 32]) -> u64 {
    let mut h = Sha256::new();
    h.update(secret);
    h.update(b"token cache slot");
    let d: [u8; 32] = h.finalize().into();
    let mut k = [0u8; 8];
    k.copy_from_slice(&d[..8]);
    u64::from_le_bytes(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_survive_one_rotation_and_bind_to_the_host() {
        let mut t = Tokens::new([1; 32], [2; 32]);
        let host = Ipv4Addr::new(10, 1, 2, 3);
        let tok = t.issue(host);
        assert!(t.is_valid(host, &tok));
        assert!(!t.is_valid(Ipv4Addr::new(10, 1, 2, 4), &tok));
        assert!(!t.is_valid(host, &tok[..31]));
        t.rotate([3; 32]);
        assert!(t.is_valid(host, &tok), "previous secret still accepted");
        t.rotate([4; 32]);
        assert!(!t.is_valid(host, &tok), "two rotations later it expires");
    }

    #[test]
    fn hashes_the_secret_then_the_octets() {
        // sha256(secret || 127 0 0 1). The reference hashes the dotted string; a token is
        // opaque to all but its issuer, so the two need not agree (and never meet).
        let mut t = Tokens::new([0; 32], [0; 32]);
        let mut h = Sha256::new();
        h.update([0u8; 32]);
        h.update([127, 0, 0, 1]);
        let want: [u8; 32] = h.finalize().into();
        assert_eq!(t.issue(Ipv4Addr::LOCALHOST), want);
        assert_eq!(t.issue(Ipv4Addr::LOCALHOST), want, "from the cache");
    }

    #[test]
    fn the_cache_never_changes_a_token() {
        // Many more hosts than slots, each asked twice in interleaved orders, through two
        // rotations: every token equals the uncached hash of the secret it was issued under.
        let mut t = Tokens::new([5; 32], [6; 32]);
        let hosts: Vec<Ipv4Addr> = (0..3 * CACHE_SLOTS as u32)
            .map(|i| Ipv4Addr::from(0x0a00_0000 + i * 7))
            .chain([Ipv4Addr::UNSPECIFIED])
            .collect();
        for (round, secret) in [[5u8; 32], [7; 32], [8; 32]].into_iter().enumerate() {
            if round > 0 {
                t.rotate(secret);
            }
            for pass in 0..2 {
                for (i, &h) in hosts.iter().enumerate() {
                    let h = if pass == 0 {
                        h
                    } else {
                        hosts[(i * 31) % hosts.len()]
                    };
                    let tok = t.issue(h);
                    assert_eq!(tok, Tokens::token(&secret, h), "{h} round {round}");
                    assert!(t.is_valid(h, &tok));
                    assert!(!t.is_valid(Ipv4Addr::from(u32::from(h) ^ 1), &tok));
                }
            }
        }
    }

    #[test]
    fn a_thousand_hosts_in_turn_stay_cached() {
        // 1,024 hosts asking in turn (as a load generator's sources, or a busy node's
        // regulars): after a few passes (the cache grows as it evicts), nearly all of them
        // are cached.
        let mut t = Tokens::new([9; 32], [10; 32]);
        let hosts: Vec<u32> = (0..1024u32).map(|i| 0x2d00_0001 + i * 256).collect();
        for _pass in 0..4 {
            for &h in &hosts {
                t.issue(Ipv4Addr::from(h));
            }
        }
        let cached = hosts
            .iter()
            .filter(|&&h| t.cache.iter().any(|c| c.host == h))
            .count();
        // Direct-mapped at 4,096 slots, 901 of them were; in sets of four, 1,021.
        assert!(cached >= 990, "{cached} of 1,024 hosts cached");
    }

    #[test]
    fn a_few_hosts_keep_the_cache_small() {
        let mut t = Tokens::new([9; 32], [10; 32]);
        for round in 0..10 {
            for i in 0..40u32 {
                let h = Ipv4Addr::from(0x0a00_0001 + i * 256);
                assert_eq!(t.issue(h), Tokens::token(&[9; 32], h), "round {round}");
            }
        }
        assert!(
            t.cache_slots() <= 4 * CACHE_MIN_SLOTS,
            "{}",
            t.cache_slots()
        );
        let mut capped = Tokens::new([9; 32], [10; 32]).with_max(100);
        for i in 0..1000u32 {
            capped.issue(Ipv4Addr::from(0x0a00_0001 + i * 256));
        }
        assert_eq!(capped.cache_slots(), 64, "capped at a power of two");
    }
}
