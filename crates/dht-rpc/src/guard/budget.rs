//! [`Budget`]: token buckets for many sources in fixed memory, which spoofed sources cannot
//! lock and one loud source cannot share with a quiet one.
//!
//! Each source (an IP, a /24, an address) is hashed with a secret key to a *set* of four
//! buckets (48 bytes), and each bucket remembers a 32-bit tag of the source that owns
//! it. A source uses its own bucket; a newcomer takes a bucket of its set that is *full*
//! (refilled to its burst since its owner last spent from it), which is exactly what a fresh
//! bucket would be, so taking it over forgets nothing: a source that is being limited
//! keeps a spent bucket and cannot shake it off by making others evict it, however many
//! sources it spoofs. Only when all four buckets of a set are spent at once (four sources
//! of one set sending at their limits) does a newcomer share one of them, which makes the
//! limit stricter for both, never looser.
//!
//! With one bucket per slot and no tag (the design before), two sources shared a slot with
//! probability 1/slots, and a source flooding at its limit then starved the quiet source in
//! its slot: about one honest IP in 4,096, per node, for as long as the flood lasted.
//!
//! Memory never grows, whatever arrives; a flood from a million spoofed sources only spreads
//! a little load over every bucket, so a source that sends at its own modest rate still gets
//! through (a limiter that tracks keys until a table is full, as the first one did, refuses
//! every newcomer once a flood filled it). The key comes from the core's seeded RNG, so
//! nobody outside can aim at one set.
//!
//! Time is read once per datagram by the caller, as milliseconds of a [`Clock`], and handed
//! to every budget it consults.

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

/// Milliseconds since an origin, wrapping (about every 49 days): the time base of budgets.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
}

impl Clock {
    /// A clock that counts from `origin`.
    pub fn new(origin: Instant) -> Self {
        Clock { origin }
    }

    /// Milliseconds from the origin to `now` (0 before it).
    pub fn ms(&self, now: Instant) -> u32 {
        now.saturating_duration_since(self.origin).as_millis() as u32
    }
}

/// Buckets per set.
const WAYS: usize = 4;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// The owner's tag (the hash's high bits); 0 for a bucket nobody took yet.
    tag: u32,
    /// When it was last refilled ([`Clock::ms`]).
    at: u32,
    tokens: f32,
}

/// Four buckets, 48 bytes (not padded to a cache line: a node in a simulation of 100,000
/// keeps about fifty sets).
#[derive(Debug, Clone, Copy)]
struct Set([Bucket; WAYS]);

/// Token buckets for many sources, in sets of four tagged buckets (allocated on first use,
/// so that a budget nobody touches costs nothing).
#[derive(Debug, Clone)]
pub struct Budget {
    limit: Limit,
    sets: Vec<Set>,
    n: usize,
    key: u64,
}

impl Budget {
    /// A budget of `limit` per source over `slots` buckets (rounded up to a power of two, at
    /// least four); `key` keeps the hashing secret.
    pub fn new(limit: Limit, slots: usize, key: u64) -> Self {
        let n = slots.div_ceil(WAYS).max(1).next_power_of_two();
        Budget {
            limit,
            sets: Vec::new(),
            n,
            key,
        }
    }

    /// The limit per source.
    pub fn limit(&self) -> Limit {
        self.limit
    }

    /// Takes `cost` tokens from `source`'s bucket at `ms` (of the caller's [`Clock`]);
    /// `false` (and nothing taken) when it holds fewer.
    pub fn allow(&mut self, ms: u32, source: u64, cost: u32) -> bool {
        self.bucket(ms, source).take(cost)
    }

    /// Whether `source`'s bucket holds `cost` tokens at `ms` (nothing taken).
    pub fn has(&mut self, ms: u32, source: u64, cost: u32) -> bool {
        self.bucket(ms, source).tokens >= cost as f32
    }

    /// `source`'s bucket at `ms`, refilled (taken over, or shared, as the module says).
    fn bucket(&mut self, ms: u32, source: u64) -> &mut Bucket {
        let burst = self.limit.burst as f32;
        if self.sets.is_empty() {
            let empty = Bucket {
                tag: 0,
                at: ms,
                tokens: burst,
            };
            self.sets = vec![Set([empty; WAYS]); self.n];
        }
        let h = mix(source ^ self.key);
        // The low bits pick the set, the high ones tag the source within it (never 0, the
        // tag of an untaken bucket).
        let set = &mut self.sets[h as usize & (self.n - 1)].0;
        let tag = ((h >> 32) as u32).max(1);
        let rate = self.limit.rate as f32 / 1000.0;
        let refill = |b: &mut Bucket| {
            let elapsed = ms.wrapping_sub(b.at);
            if elapsed > 0 {
                b.tokens = (b.tokens + elapsed as f32 * rate).min(burst);
                b.at = ms;
            }
        };
        let way = match set.iter().position(|b| b.tag == tag) {
            Some(w) => w,
            None => {
                // A full bucket is as good as a fresh one: the newcomer takes it. Failing
                // that (four sources of this set at their limits), it shares the fullest,
                // stricter for both.
                let mut fullest = 0;
                for w in 0..WAYS {
                    refill(&mut set[w]);
                    if set[w].tokens > set[fullest].tokens {
                        fullest = w;
                    }
                }
                if set[fullest].tokens >= burst {
                    set[fullest].tag = tag;
                }
                fullest
            }
        };
        let b = &mut set[way];
        refill(b);
        b
    }
}

impl Bucket {
    /// Takes `cost` tokens; `false` (and nothing taken) when it holds fewer.
    fn take(&mut self, cost: u32) -> bool {
        let cost = cost as f32;
        if self.tokens >= cost {
            self.tokens -= cost;
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

    #[test]
    fn a_bucket_refills_at_its_rate_up_to_its_burst() {
        let mut b = Budget::new(Limit { rate: 10, burst: 5 }, 16, 1);
        assert!((0..5).all(|_| b.allow(0, 7, 1)));
        assert!(!b.allow(0, 7, 1), "burst spent");
        assert!(b.allow(100, 7, 1), "one token in 100 ms");
        assert!(!b.allow(100, 7, 1));
        let later = 60_000;
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
        // 100,000 sources a second, each once, against 65,536 buckets of 20/s: the honest
        // source's set sees about 6 spoofed requests a second besides its own 10.
        let mut b = Budget::new(Limit::per_second(20), 65_536, 42);
        let (mut honest_ok, mut honest) = (0, 0);
        for ms in 0..10_000u32 {
            for j in 0..100 {
                b.allow(ms, 1_000_000 + u64::from(ms) * 100 + j, 1);
            }
            if ms % 100 == 0 {
                honest += 1;
                honest_ok += u32::from(b.allow(ms, 5, 1));
            }
        }
        assert_eq!(honest_ok, honest, "{honest_ok} of {honest}");
    }

    #[test]
    fn a_flooding_source_shares_its_bucket_with_no_quiet_one() {
        // A tiny budget (4 sets of 4), so that every set holds several sources: one source
        // floods at many times its limit while 10 others ask once every 100 ms, each at its
        // own moment. Direct-mapped, the quiet sources in the flood's slot got nothing.
        let limit = Limit {
            rate: 100,
            burst: 10,
        };
        for key in 0..50 {
            let mut b = Budget::new(limit, 16, key);
            let (mut quiet_ok, mut quiet) = (0u32, 0u32);
            for ms in 0..2_000u32 {
                for _ in 0..10 {
                    b.allow(ms, 999, 1);
                }
                if ms % 10 == 1 {
                    let s = u64::from(ms / 10 % 10);
                    quiet += 1;
                    quiet_ok += u32::from(b.allow(ms, s, 1));
                }
            }
            assert_eq!(quiet_ok, quiet, "key {key}: {quiet_ok} of {quiet}");
            assert!(
                (0..20).filter(|_| b.allow(2_000, 999, 1)).count() <= 1,
                "the flood stays limited"
            );
        }
    }

    #[test]
    fn a_limited_source_cannot_shake_off_its_spent_bucket() {
        // The flooding source also sprays spoofed sources to evict its bucket: a spent bucket
        // is never taken over, so its own requests stay at its rate.
        let limit = Limit {
            rate: 100,
            burst: 10,
        };
        let mut b = Budget::new(limit, 16, 3);
        let mut passed = 0;
        let mut spoofed = 10_000u64;
        for ms in 0..1_000u32 {
            for _ in 0..50 {
                b.allow(ms, spoofed, 1);
                spoofed += 1;
            }
            passed += (0..10).filter(|_| b.allow(ms, 999, 1)).count();
        }
        // 1 s at 100/s plus a burst of 10.
        assert!(passed <= 110, "{passed} passed");
    }

    #[test]
    fn four_sources_at_their_limits_make_a_newcomer_share() {
        // One set only: four sources spend their buckets; a fifth shares one, which never
        // lets more through than the bucket allows.
        let limit = Limit { rate: 0, burst: 4 };
        let mut b = Budget::new(limit, 4, 9);
        for s in 1..=4u64 {
            assert!((0..4).all(|_| b.allow(0, s, 1)), "source {s} has its own");
        }
        assert!(!b.allow(0, 5, 1), "the newcomer shares a spent bucket");
    }

    #[test]
    fn clock_counts_milliseconds_from_its_origin() {
        let t = Instant::now();
        let c = Clock::new(t);
        assert_eq!(c.ms(t), 0);
        assert_eq!(c.ms(t + std::time::Duration::from_millis(1500)), 1500);
    }
}
