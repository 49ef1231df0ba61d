//! [`Budget`]: token buckets for many sources in fixed memory, which spoofed sources cannot
//! lock.
//!
//! Each source (an IP, a /24, an address) is hashed with a secret key to one of a fixed
//! number of slots, and each slot is a token bucket. Memory never grows, whatever arrives;
//! a flood from a million spoofed sources only spreads a little load over every slot, so a
//! source that sends at its own modest rate still gets through (a limiter that tracks keys
//! until a table is full, as the old one did, refuses every newcomer once a flood filled
//! it). Two sources that share a slot share its budget: with many slots that is rare, and it
//! only ever makes a limit stricter. The key comes from the core's seeded RNG, so nobody
//! outside can aim at one slot.

use std::time::Instant;

/// A rate: `rate` tokens a second, at most `burst` saved up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Tokens added per second.
    pub rate: u32,
    /// The most a bucket holds (and what a new source starts with).
    pub burst: u32,
}

impl Limit {
    /// `rate` a second with a burst of twice that.
    pub const fn per_second(rate: u32) -> Self {
        Limit {
            rate,
            burst: rate.saturating_mul(2),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    tokens: f32,
    /// Milliseconds since the budget's origin, wrapping (about every 49 days).
    at: u32,
}

/// Token buckets for many sources in `slots` slots (allocated on first use, so that a
/// budget nobody touches costs nothing).
#[derive(Debug, Clone)]
pub struct Budget {
    limit: Limit,
    slots: Vec<Slot>,
    n: usize,
    mask: usize,
    key: u64,
    origin: Option<Instant>,
}

impl Budget {
    /// A budget of `limit` per source over `slots` slots (rounded up to a power of two);
    /// `key` keeps the hashing secret.
    pub fn new(limit: Limit, slots: usize, key: u64) -> Self {
        let n = slots.max(1).next_power_of_two();
        Budget {
            limit,
            slots: Vec::new(),
            n,
            mask: n - 1,
            key,
            origin: None,
        }
    }

    /// The limit per source.
    pub fn limit(&self) -> Limit {
        self.limit
    }

    /// Takes `cost` tokens from `source`'s bucket; `false` (and nothing taken) when it holds
    /// fewer.
    pub fn allow(&mut self, now: Instant, source: u64, cost: u32) -> bool {
        let origin = *self.origin.get_or_insert(now);
        let ms = now.saturating_duration_since(origin).as_millis() as u32;
        if self.slots.is_empty() {
            let full = Slot {
                tokens: self.limit.burst as f32,
                at: ms,
            };
            self.slots = vec![full; self.n];
        }
        let i = (mix(source ^ self.key) as usize) & self.mask;
        let slot = &mut self.slots[i];
        let elapsed = ms.wrapping_sub(slot.at);
        if elapsed > 0 {
            let refill = elapsed as f32 * self.limit.rate as f32 / 1000.0;
            slot.tokens = (slot.tokens + refill).min(self.limit.burst as f32);
            slot.at = ms;
        }
        let cost = cost as f32;
        if slot.tokens >= cost {
            slot.tokens -= cost;
            true
        } else {
            false
        }
    }
}

/// splitmix64's finalizer: a keyed source spreads evenly over the slots (also the slot
/// hash of the token cache and of the reachability check's recent destinations).
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_bucket_refills_at_its_rate_up_to_its_burst() {
        let t = Instant::now();
        let mut b = Budget::new(Limit { rate: 10, burst: 5 }, 16, 1);
        assert!((0..5).all(|_| b.allow(t, 7, 1)));
        assert!(!b.allow(t, 7, 1), "burst spent");
        assert!(
            b.allow(t + Duration::from_millis(100), 7, 1),
            "one token in 100 ms"
        );
        assert!(!b.allow(t + Duration::from_millis(100), 7, 1));
        let later = t + Duration::from_secs(60);
        assert!(
            (0..5).all(|_| b.allow(later, 7, 1)),
            "refilled to the burst"
        );
        assert!(!b.allow(later, 7, 1), "not past it");
        assert!(
            !b.allow(later, 8, 6),
            "a cost larger than the burst never passes"
        );
    }

    #[test]
    fn a_spoofed_flood_does_not_lock_out_a_modest_source() {
        // 100,000 sources a second, each once, against 65,536 slots of 20/s: the honest
        // source's slot sees about 1.5 spoofed requests a second besides its own 10.
        let t = Instant::now();
        let mut b = Budget::new(Limit::per_second(20), 65_536, 42);
        let (mut honest_ok, mut honest) = (0, 0);
        for ms in 0..10_000u64 {
            let now = t + Duration::from_millis(ms);
            for j in 0..100 {
                b.allow(now, 1_000_000 + ms * 100 + j, 1);
            }
            if ms % 100 == 0 {
                honest += 1;
                honest_ok += u32::from(b.allow(now, 5, 1));
            }
        }
        assert_eq!(honest_ok, honest, "{honest_ok} of {honest}");
    }
}
