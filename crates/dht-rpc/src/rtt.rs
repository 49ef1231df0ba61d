//! Round-trip times and the timeouts drawn from them (RFC 6298's estimator).
//!
//! Each direct answer gives a sample, even an answer to a request that was sent twice: the
//! second copy goes under a transaction id of its own, so an answer names the copy it
//! answers and Karn's ambiguity does not arise (dropping those samples, as Karn's rule
//! does, would hide exactly the slowest round trips, those past the RTO). The core keeps a
//! smoothed RTT and its variation per address it heard from (bounded) and one for the whole
//! node. A request's *retransmission timeout*
//! (RTO) is `srtt + 4 * rttvar` of its destination if known, else the node's, clamped to
//! [`Config::rto_floor`] .. [`Config::request_timeout`]; with no sample at all it is the
//! ceiling. After its RTO a walk's request is *stalled*: it is sent once more, the walk asks
//! the next candidate, and a late answer is still used; after two RTOs (the resend had one;
//! later for a node we never heard from, below) the walk stops waiting for it, and only the
//! request's own timeout makes it a failure.
//!
//! A node we never heard from is timed by the node-wide estimate, which says how long most
//! answers take, not how far the slowest live nodes are. So the walk gives the resend of a
//! request to such a node 1.1 times the 99th percentile of the round trips it measured
//! lately (a decayed log-scale histogram of samples) before it stops waiting: time for the
//! answer of a slow node whose first copy was lost. It only stalls at the RTO: the walk
//! still moves on at once, and only its end can wait longer. The factor was measured on
//! 2,000 simulated nodes with internet-like paths, 300 lookups per row
//! (`SEED=42 cargo run --release -p dht-sim --example timing -- 2000 300`): at 1.0, 4 of
//! 600 healthy lookups ended without one of the closest 20 (given up while it would still
//! answer); at 1.1, none did; 1.25 and 1.5 only made walks past dead nodes slower.
//!
//! Abuse: only an answer to one of our requests, from the address it went to, gives a
//! sample, so nobody can feed samples for someone else. A node that answers slowly raises
//! its own estimate and moves the node-wide one by an eighth of a sample at most. Slow
//! answers, up to the 1.25 s timeout, also go into the histogram of recent round trips, so
//! nodes that give about 1 % of a node's answers and all answer late can push the give-up
//! for nodes it never heard from up to the fixed 1.25 s (and the walks past dead nodes back
//! to the reference's pace), never beyond it; and only by answering, from their own
//! addresses, requests we chose to send them.
//!
//! [`Config::rto_floor`]: crate::Config::rto_floor
//! [`Config::request_timeout`]: crate::Config::request_timeout

use std::net::SocketAddrV4;
use std::time::Duration;

/// Addresses whose RTT is remembered at most (14 bytes each).
pub const MAX_TRACKED: usize = 8192;

/// A smoothed round-trip time and its mean deviation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimator {
    /// The smoothed round-trip time.
    pub srtt: Duration,
    /// The round-trip time's mean deviation.
    pub rttvar: Duration,
}

impl Estimator {
    /// The estimate after a first sample.
    pub fn new(sample: Duration) -> Self {
        Estimator {
            srtt: sample,
            rttvar: sample / 2,
        }
    }

    /// Takes a sample in (gains 1/8 and 1/4, as RFC 6298).
    pub fn update(&mut self, sample: Duration) {
        let delta = self.srtt.abs_diff(sample);
        self.rttvar = (self.rttvar * 3 + delta) / 4;
        self.srtt = (self.srtt * 7 + sample) / 8;
    }

    /// `srtt + 4 * rttvar`, clamped to `floor ..= ceiling`.
    pub fn rto(&self, floor: Duration, ceiling: Duration) -> Duration {
        (self.srtt + self.rttvar * 4).clamp(floor, ceiling.max(floor))
    }
}

/// How long a walk waits for one request: when it stalls (the walk moves on) and when the
/// walk stops waiting for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waits {
    /// The RTO: the request is sent once more and frees its slot.
    pub stall: Duration,
    /// The walk may end without its answer.
    pub give_up: Duration,
}

/// A walk stops waiting for a request after this many RTOs (at least).
pub const GIVE_UP_RTOS: u32 = 2;

/// Log-scale buckets of round-trip samples (four per doubling, in microseconds), decayed:
/// a high quantile of the round trips to everyone we heard from lately.
#[derive(Debug, Clone)]
struct Spread {
    /// Counts fit 16 bits: they are halved once they sum to [`DECAY_EVERY`].
    counts: [u16; BUCKETS],
    total: u32,
}

const BUCKETS: usize = 4 * 32;

/// After this many samples, every count is halved (recent samples weigh more).
const DECAY_EVERY: u32 = 1024;

impl Default for Spread {
    fn default() -> Self {
        Spread {
            counts: [0; BUCKETS],
            total: 0,
        }
    }
}

impl Spread {
    fn bucket(sample: Duration) -> usize {
        let us = (sample.as_micros() as u64).max(4);
        let exp = 63 - us.leading_zeros() as usize;
        let frac = ((us >> (exp - 2)) & 3) as usize;
        (exp * 4 + frac).min(BUCKETS - 1)
    }

    /// The largest round trip that falls in bucket `i`.
    fn upper(i: usize) -> Duration {
        let (exp, frac) = (i / 4, (i % 4) as u64);
        Duration::from_micros((5 + frac) << (exp - 2))
    }

    fn add(&mut self, sample: Duration) {
        if self.total >= DECAY_EVERY {
            self.total = 0;
            for c in &mut self.counts {
                *c /= 2;
                self.total += u32::from(*c);
            }
        }
        self.counts[Self::bucket(sample)] += 1;
        self.total += 1;
    }

    /// The round trip below which about `q` of the samples fell.
    fn quantile(&self, q: f64) -> Option<Duration> {
        let want = ((self.total as f64) * q).ceil() as u32;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += u32::from(*c);
            if seen >= want.max(1) {
                return Some(Self::upper(i));
            }
        }
        None
    }
}

/// An [`Estimator`] in 8 bytes: nanoseconds, exact up to 4.29 s (a sample is a response
/// that came before its request's timeout, so longer ones do not occur), saturating past
/// it. A busy node tracks thousands.
#[derive(Debug, Clone, Copy)]
struct Packed {
    srtt_ns: u32,
    rttvar_ns: u32,
}

impl Packed {
    fn of(e: Estimator) -> Self {
        let ns = |d: Duration| u32::try_from(d.as_nanos()).unwrap_or(u32::MAX);
        Packed {
            srtt_ns: ns(e.srtt),
            rttvar_ns: ns(e.rttvar),
        }
    }

    fn get(self) -> Estimator {
        Estimator {
            srtt: Duration::from_nanos(u64::from(self.srtt_ns)),
            rttvar: Duration::from_nanos(u64::from(self.rttvar_ns)),
        }
    }
}

/// One tracked address and its estimate in 14 bytes with no padding: the address as its
/// octets and big-endian port (so the bytes sort as `SocketAddrV4` does), the estimate's
/// two `u32`s as bytes.
#[derive(Debug, Clone, Copy)]
struct Slot {
    addr: [u8; 6],
    est: [u8; 8],
}

impl Slot {
    fn key(addr: SocketAddrV4) -> [u8; 6] {
        let [a, b, c, d] = addr.ip().octets();
        let [p, q] = addr.port().to_be_bytes();
        [a, b, c, d, p, q]
    }

    fn new(addr: SocketAddrV4, p: Packed) -> Self {
        let mut est = [0; 8];
        est[..4].copy_from_slice(&p.srtt_ns.to_le_bytes());
        est[4..].copy_from_slice(&p.rttvar_ns.to_le_bytes());
        Slot {
            addr: Self::key(addr),
            est,
        }
    }

    fn packed(&self) -> Packed {
        let [a, b, c, d, e, f, g, h] = self.est;
        Packed {
            srtt_ns: u32::from_le_bytes([a, b, c, d]),
            rttvar_ns: u32::from_le_bytes([e, f, g, h]),
        }
    }
}

/// The per-address estimates, sorted by address: 14 bytes each and a quarter more room at
/// most (a `BTreeMap` took about 24 per entry; a node of a 100,000-node network tracks a
/// few hundred). Only answers to our own requests add to it, so a new address costs a
/// shift of at most [`MAX_TRACKED`] slots at the pace of our own requests.
#[derive(Debug, Default)]
struct Tracked {
    slots: Vec<Slot>,
}

impl Tracked {
    fn find(&self, addr: SocketAddrV4) -> Result<usize, usize> {
        let key = Slot::key(addr);
        self.slots.binary_search_by(|s| s.addr.cmp(&key))
    }

    fn get(&self, addr: SocketAddrV4) -> Option<Packed> {
        self.find(addr).ok().map(|i| self.slots[i].packed())
    }

    fn contains(&self, addr: SocketAddrV4) -> bool {
        self.find(addr).is_ok()
    }

    fn set(&mut self, at: usize, addr: SocketAddrV4, p: Packed) {
        self.slots[at] = Slot::new(addr, p);
    }

    fn insert(&mut self, at: usize, addr: SocketAddrV4, p: Packed) {
        if self.slots.len() == self.slots.capacity() {
            self.slots.reserve_exact((self.slots.len() / 4).max(8));
        }
        self.slots.insert(at, Slot::new(addr, p));
    }

    fn remove(&mut self, addr: SocketAddrV4) {
        if let Ok(i) = self.find(addr) {
            self.slots.remove(i);
        }
    }

    fn len(&self) -> usize {
        self.slots.len()
    }
}

/// Estimates per address (bounded) and for the node as a whole.
#[derive(Debug, Default)]
pub struct Rtts {
    node: Option<Estimator>,
    per: Tracked,
    spread: Spread,
}

impl Rtts {
    /// A direct answer from `from` took `rtt`.
    pub fn sample(&mut self, from: SocketAddrV4, rtt: Duration) {
        self.spread.add(rtt);
        match &mut self.node {
            Some(e) => e.update(rtt),
            None => self.node = Some(Estimator::new(rtt)),
        }
        let mut at = match self.per.find(from) {
            Ok(i) => {
                let mut est = self.per.slots[i].packed().get();
                est.update(rtt);
                self.per.set(i, from, Packed::of(est));
                return;
            }
            Err(at) => at,
        };
        if self.per.len() >= MAX_TRACKED {
            // Forget one (the lowest address: deterministic, and unrelated to who is
            // asking, so a flood of new addresses cannot pick what we forget).
            self.per.slots.remove(0);
            at = at.saturating_sub(1);
        }
        self.per.insert(at, from, Packed::of(Estimator::new(rtt)));
    }

    /// The estimate for `addr`, if it ever answered us directly.
    pub fn of(&self, addr: SocketAddrV4) -> Option<Estimator> {
        self.per.get(addr).map(|p| p.get())
    }

    /// The `q` quantile (0 to 1) of recent round trips (a decaying histogram; an upper
    /// bucket edge), once anyone answered.
    pub fn recent_quantile(&self, q: f64) -> Option<Duration> {
        self.spread.quantile(q)
    }

    /// The node-wide estimate, once anyone answered.
    pub fn node(&self) -> Option<Estimator> {
        self.node
    }

    /// The RTO for a request to `to` (see the module docs).
    pub fn rto(&self, to: SocketAddrV4, floor: Duration, ceiling: Duration) -> Duration {
        match self.per.get(to).map(|p| p.get()).or(self.node) {
            Some(e) => e.rto(floor, ceiling),
            None => ceiling,
        }
    }

    /// How long a walk waits for a request to `to`. It stalls at its RTO, when it is sent
    /// once more; the walk then gives it as long again for the resend's answer (two RTOs in
    /// all). For an address that never answered us (see the module docs), the resend then
    /// has 1.1 times the 99th percentile of recent round trips.
    pub fn waits(&self, to: SocketAddrV4, floor: Duration, ceiling: Duration) -> Waits {
        let ceiling = ceiling.max(floor);
        let stall = self.rto(to, floor, ceiling);
        let mut give_up = stall * GIVE_UP_RTOS;
        if !self.per.contains(to)
            && let Some(p99) = self.spread.quantile(0.99)
        {
            give_up = give_up.max(stall + p99 * 11 / 10);
        }
        Waits {
            stall,
            give_up: give_up.min(ceiling),
        }
    }

    /// Forgets `addr` (it went silent: its next answer starts a new estimate).
    pub fn forget(&mut self, addr: SocketAddrV4) {
        self.per.remove(addr);
    }

    /// Addresses tracked.
    pub fn len(&self) -> usize {
        self.per.len()
    }

    /// Whether no address is tracked.
    pub fn is_empty(&self) -> bool {
        self.per.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn converges_and_clamps() {
        let mut e = Estimator::new(100 * MS);
        assert_eq!(e.rto(MS, 10_000 * MS), 300 * MS, "srtt + 4 * srtt/2");
        for _ in 0..50 {
            e.update(40 * MS);
        }
        let rto = e.rto(MS, 10_000 * MS);
        assert!(rto >= 40 * MS && rto < 45 * MS, "{rto:?}");
        assert_eq!(e.rto(50 * MS, 10_000 * MS), 50 * MS, "floor");
        assert_eq!(Estimator::new(5000 * MS).rto(MS, 1250 * MS), 1250 * MS);
    }

    #[test]
    fn unknown_addresses_use_the_node_estimate_then_the_ceiling() {
        let a: SocketAddrV4 = "10.0.0.1:1".parse().expect("addr");
        let b: SocketAddrV4 = "10.0.0.2:1".parse().expect("addr");
        let (floor, ceiling) = (10 * MS, 1250 * MS);
        let mut r = Rtts::default();
        assert_eq!(r.rto(a, floor, ceiling), ceiling);
        r.sample(a, 20 * MS);
        r.sample(b, 200 * MS);
        assert_eq!(r.rto(a, floor, ceiling), 60 * MS);
        let node = r.node().expect("node").rto(floor, ceiling);
        let c: SocketAddrV4 = "10.0.0.3:1".parse().expect("addr");
        assert_eq!(r.rto(c, floor, ceiling), node);
        r.forget(a);
        assert_eq!(r.rto(a, floor, ceiling), node);
    }

    #[test]
    fn tracking_is_bounded_and_forgets_the_lowest_address() {
        let addr =
            |i: u32| SocketAddrV4::new(std::net::Ipv4Addr::from(0x0a00_0000 + i), (i % 7) as u16);
        let mut r = Rtts::default();
        // In a scattered order, so that inserts land everywhere in the sorted slots.
        let n = MAX_TRACKED as u32;
        for i in (0..n).map(|i| i.wrapping_mul(2_654_435_761) % n) {
            r.sample(addr(i + 1), Duration::from_micros(u64::from(i) + 1));
        }
        assert_eq!(r.len(), MAX_TRACKED);
        r.sample(addr(5), 7 * MS); // known: updated, nothing forgotten
        assert_eq!(r.len(), MAX_TRACKED);
        r.sample(addr(0), MS); // new and lowest: the old lowest goes
        assert_eq!(r.len(), MAX_TRACKED);
        assert!(r.of(addr(1)).is_none(), "the lowest was forgotten");
        assert_eq!(r.of(addr(0)).map(|e| e.srtt), Some(MS));
        for i in [2, 77, n / 2, n] {
            let e = r.of(addr(i)).expect("still tracked");
            assert_eq!(e.srtt, Duration::from_micros(u64::from(i - 1) + 1), "{i}");
        }
        r.forget(addr(77));
        assert!(r.of(addr(77)).is_none());
        assert_eq!(r.len(), MAX_TRACKED - 1);
        assert!(
            r.per.slots.windows(2).all(|w| w[0].addr < w[1].addr),
            "sorted"
        );
    }

    #[test]
    fn spread_quantiles_are_upper_bucket_edges() {
        let mut s = Spread::default();
        assert_eq!(s.quantile(0.99), None);
        for _ in 0..98 {
            s.add(40 * MS);
        }
        s.add(100 * MS);
        s.add(300 * MS);
        let p50 = s.quantile(0.5).expect("samples");
        assert!(p50 >= 40 * MS && p50 < 48 * MS, "{p50:?}");
        let p99 = s.quantile(0.99).expect("samples");
        assert!(p99 >= 100 * MS && p99 < 120 * MS, "{p99:?}");
        let max = s.quantile(1.0).expect("samples");
        assert!(max >= 300 * MS && max < 360 * MS, "{max:?}");
        assert_eq!(
            Spread::bucket(Duration::ZERO),
            Spread::bucket(4 * Duration::from_micros(1))
        );
        assert_eq!(Spread::bucket(Duration::from_secs(100_000)), BUCKETS - 1);
    }

    #[test]
    fn spread_decays_old_samples() {
        let mut s = Spread::default();
        for _ in 0..DECAY_EVERY {
            s.add(500 * MS);
        }
        for _ in 0..(DECAY_EVERY * 4) {
            s.add(20 * MS);
        }
        let p99 = s.quantile(0.99).expect("samples");
        assert!(p99 < 30 * MS, "old slow samples fade: {p99:?}");
    }

    #[test]
    fn unknown_nodes_are_given_up_after_the_tail_of_round_trips() {
        let (floor, ceiling) = (50 * MS, 1250 * MS);
        let mut r = Rtts::default();
        let far: SocketAddrV4 = "10.9.0.99:1".parse().expect("addr");
        assert_eq!(
            r.waits(far, floor, ceiling),
            Waits {
                stall: ceiling,
                give_up: ceiling
            },
            "nothing measured: the timeout"
        );
        for i in 0..100u32 {
            let rtt = if i % 50 == 0 { 200 * MS } else { 30 * MS };
            r.sample(SocketAddrV4::new((0x0a00_0000 + i).into(), 1), rtt);
        }
        let known = SocketAddrV4::new(0x0a00_0001.into(), 1);
        let k = r.waits(known, floor, ceiling);
        assert_eq!(
            k.give_up,
            k.stall * GIVE_UP_RTOS,
            "its own estimate: two RTOs (the resend at the first has the second)"
        );
        let u = r.waits(far, floor, ceiling);
        assert_eq!(u.stall, r.node().expect("node").rto(floor, ceiling));
        assert!(u.stall < 200 * MS, "the walk moves on early: {:?}", u.stall);
        assert!(
            u.give_up >= u.stall + 220 * MS,
            "but the resend at the stall has 1.1 times the slowest round trip: {:?}",
            u.give_up
        );
        assert!(u.give_up <= ceiling);
    }

    #[test]
    fn memory_is_bounded() {
        let mut r = Rtts::default();
        for i in 0..(MAX_TRACKED as u32 + 100) {
            r.sample(SocketAddrV4::new(i.into(), 1), MS);
        }
        assert_eq!(r.len(), MAX_TRACKED);
    }
}
