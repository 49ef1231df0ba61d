//! Round-trip times and the timeouts drawn from them (RFC 6298's estimator).
//!
//! Each direct answer gives a sample (not an answer to a request sent twice: it could answer
//! either copy, Karn's rule). The core keeps a smoothed RTT and its variation per address it
//! heard from (bounded) and one for the whole node. A request's *retransmission timeout*
//! (RTO) is `srtt + 4 * rttvar` of its destination if known, else the node's, clamped to
//! [`Config::rto_floor`] .. [`Config::request_timeout`]; with no sample at all it is the
//! ceiling. After its RTO a walk's request is *stalled*: it is sent once more, the walk asks
//! the next candidate, and a late answer is still used; after three RTOs the walk stops
//! waiting for it, and only the request's own timeout makes it a failure.
//!
//! Abuse: only an answer to one of our requests, from the address it went to, gives a
//! sample, so nobody can feed samples for someone else. A node that answers slowly raises
//! its own estimate and moves the node-wide one by an eighth of a sample at most; many
//! slow nodes together can push walks back toward the fixed 1.25 s, never beyond it.
//!
//! [`Config::rto_floor`]: crate::Config::rto_floor
//! [`Config::request_timeout`]: crate::Config::request_timeout

use std::collections::BTreeMap;
use std::net::SocketAddrV4;
use std::time::Duration;

/// Addresses whose RTT is remembered at most (about 40 bytes each).
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

/// Estimates per address (bounded) and for the node as a whole.
#[derive(Debug, Default)]
pub struct Rtts {
    node: Option<Estimator>,
    per: BTreeMap<SocketAddrV4, Estimator>,
}

impl Rtts {
    /// A direct answer from `from` took `rtt`.
    pub fn sample(&mut self, from: SocketAddrV4, rtt: Duration) {
        match &mut self.node {
            Some(e) => e.update(rtt),
            None => self.node = Some(Estimator::new(rtt)),
        }
        if let Some(e) = self.per.get_mut(&from) {
            e.update(rtt);
            return;
        }
        if self.per.len() >= MAX_TRACKED {
            // Forget one (the lowest address: deterministic, and unrelated to who is
            // asking, so a flood of new addresses cannot pick what we forget).
            self.per.pop_first();
        }
        self.per.insert(from, Estimator::new(rtt));
    }

    /// The estimate for `addr`, if it ever answered us directly.
    pub fn of(&self, addr: SocketAddrV4) -> Option<Estimator> {
        self.per.get(&addr).copied()
    }

    /// The node-wide estimate, once anyone answered.
    pub fn node(&self) -> Option<Estimator> {
        self.node
    }

    /// The RTO for a request to `to` (see the module docs).
    pub fn rto(&self, to: SocketAddrV4, floor: Duration, ceiling: Duration) -> Duration {
        match self.per.get(&to).or(self.node.as_ref()) {
            Some(e) => e.rto(floor, ceiling),
            None => ceiling,
        }
    }

    /// Forgets `addr` (it went silent: its next answer starts a new estimate).
    pub fn forget(&mut self, addr: SocketAddrV4) {
        self.per.remove(&addr);
    }

    /// Addresses tracked.
    pub fn len(&self) -> usize {
        self.per.len()
    }

    /// Whether no address is tracked.
    pub fn is_empty(&self) -> bool {
        self.per.is_empty()
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
    fn memory_is_bounded() {
        let mut r = Rtts::default();
        for i in 0..(MAX_TRACKED as u32 + 100) {
            r.sample(SocketAddrV4::new(i.into(), 1), MS);
        }
        assert_eq!(r.len(), MAX_TRACKED);
    }
}
