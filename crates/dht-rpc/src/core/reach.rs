//! Reachability: can nodes we never sent to reach us? (See [`Config::adaptive`].)
//!
//! A round probes up to [`PROBES`] nodes that a bootstrap walk learned of but never queried,
//! so that our NAT or firewall (if any) holds no state for them. Each probe is an ordinary
//! hole-punch ping sent through the node that named the target (the relay forwards it, the
//! target answers straight to us), so JavaScript dht-rpc 2.x nodes serve as relays and
//! targets unchanged:
//! - the target's pong arrives: unsolicited datagrams reach us, we are **reachable**;
//! - it times out: we ping the target directly. If it answers now, it was alive and the relay
//!   path worked for others, so its earlier pong was dropped on the way in: one vote for
//!   **firewalled**. If it does not answer either, the probe says nothing.
//!
//! A round ends reachable if any probe got through, firewalled if none did and at least
//! [`VOTES`] targets answered directly, and changes nothing otherwise (the next bootstrap walk
//! then tries again; after a verdict, the next round waits [`RECHECK`]).
//!
//! [`Config::adaptive`]: crate::Config::adaptive

use std::collections::BTreeMap;
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

/// Targets probed in one round.
pub(crate) const PROBES: usize = 5;
/// Probes that must show a drop, with none getting through, to decide "firewalled".
pub(crate) const VOTES: usize = 2;
/// At most one round this often (rounds start after bootstrap walks).
pub(crate) const RECHECK: Duration = Duration::from_secs(10 * 60);
/// How long a NAT may keep a mapping open after our last datagram to an address: a target
/// we sent to within this is not probed. (Linux keeps an answered UDP flow 120-180 s.)
pub(crate) const MAPPING_LIFETIME: Duration = Duration::from_secs(3 * 60);
/// Destinations remembered at most; past it, no round starts until old ones expire.
pub(crate) const MAX_REMEMBERED: usize = 65_536;
/// While `sent` is full, expired entries are swept at most this often.
const FULL_SWEEP_EVERY: Duration = Duration::from_secs(10);

/// The state of the reachability check.
#[derive(Debug, Default)]
pub(crate) struct Reach {
    /// The last round's verdict: true while we send no id because of it.
    pub(crate) firewalled: bool,
    last_round: Option<Instant>,
    /// Probes of the current round still out (relayed, or confirming directly).
    outstanding: usize,
    reached: usize,
    blocked: usize,
    /// The current round's targets, and whether each sent us a request during the round
    /// (then its own NAT, if any, may have opened to us, and a direct answer proves nothing).
    targets: Vec<(SocketAddrV4, bool)>,
    /// When we last sent to each address (within about [`MAPPING_LIFETIME`]).
    sent: BTreeMap<SocketAddrV4, Instant>,
    /// The size of `sent` after its last sweep of expired entries.
    swept: usize,
    /// `sent` was full and missed some destinations: no round until it has been swept.
    overflowed: bool,
    last_sweep: Option<Instant>,
}

impl Reach {
    /// Remembers that we sent a datagram to `to`.
    pub(crate) fn note_sent(&mut self, now: Instant, to: SocketAddrV4) {
        let grown = self.sent.len() >= 2 * self.swept.max(1024);
        let full = self.sent.len() >= MAX_REMEMBERED
            && self
                .last_sweep
                .is_none_or(|t| now.saturating_duration_since(t) >= FULL_SWEEP_EVERY);
        if grown || full {
            self.sent
                .retain(|_, t| now.saturating_duration_since(*t) < MAPPING_LIFETIME);
            self.swept = self.sent.len();
            self.last_sweep = Some(now);
            self.overflowed = false;
        }
        if self.sent.len() < MAX_REMEMBERED {
            self.sent.insert(to, now);
        } else if !self.sent.contains_key(&to) {
            self.overflowed = true;
        }
    }

    /// Whether we sent to `addr` recently enough that a NAT may still let it in.
    pub(crate) fn recently_sent(&self, now: Instant, addr: SocketAddrV4) -> bool {
        self.overflowed
            || self
                .sent
                .get(&addr)
                .is_some_and(|t| now.saturating_duration_since(*t) < MAPPING_LIFETIME)
    }

    /// Whether a new round may start now.
    pub(crate) fn due(&self, now: Instant) -> bool {
        self.outstanding == 0
            && self
                .last_round
                .is_none_or(|t| now.saturating_duration_since(t) >= RECHECK)
    }

    /// A round probing `targets` starts.
    pub(crate) fn start(&mut self, now: Instant, targets: &[SocketAddrV4]) {
        self.last_round = Some(now);
        self.outstanding = targets.len();
        self.targets = targets.iter().map(|t| (*t, false)).collect();
        self.reached = 0;
        self.blocked = 0;
    }

    /// A probe's relayed pong arrived. Returns the new verdict if the round ended with one.
    pub(crate) fn on_reached(&mut self) -> Option<bool> {
        self.reached += 1;
        self.finish_one()
    }

    /// A request arrived from `from`.
    pub(crate) fn heard_request(&mut self, from: SocketAddrV4) {
        if self.outstanding > 0 {
            for (t, tainted) in &mut self.targets {
                if *t == from {
                    *tainted = true;
                }
            }
        }
    }

    /// A probe's target answered directly after its relayed pong never came.
    pub(crate) fn on_blocked(&mut self, peer: SocketAddrV4) -> Option<bool> {
        if !self
            .targets
            .iter()
            .any(|(t, tainted)| *t == peer && *tainted)
        {
            self.blocked += 1;
        }
        self.finish_one()
    }

    /// A probe told nothing (its target is gone, or our queue was full).
    pub(crate) fn on_inconclusive(&mut self) -> Option<bool> {
        self.finish_one()
    }

    fn finish_one(&mut self) -> Option<bool> {
        self.outstanding = self.outstanding.saturating_sub(1);
        if self.outstanding > 0 {
            return None;
        }
        let verdict = if self.reached > 0 {
            false
        } else if self.blocked >= VOTES {
            true
        } else {
            // No verdict: the next bootstrap walk may try again.
            self.last_round = None;
            return None;
        };
        self.firewalled = verdict;
        Some(verdict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(i: u8) -> SocketAddrV4 {
        SocketAddrV4::new([10, 0, 0, i].into(), 1)
    }

    #[test]
    fn remembers_recent_destinations_within_bounds() {
        let mut r = Reach::default();
        let t = Instant::now();
        let a: SocketAddrV4 = "10.0.0.1:1".parse().expect("addr");
        let b: SocketAddrV4 = "10.0.0.2:1".parse().expect("addr");
        r.note_sent(t, a);
        assert!(r.recently_sent(t + Duration::from_secs(60), a));
        assert!(!r.recently_sent(t, b));
        assert!(!r.recently_sent(t + MAPPING_LIFETIME, a), "expired");
        for i in 0..200_000u32 {
            r.note_sent(t, SocketAddrV4::new(i.into(), 1));
        }
        assert!(r.sent.len() <= MAX_REMEMBERED);
        assert!(r.recently_sent(t, b), "too many to tell: treated as sent");
        r.note_sent(t + MAPPING_LIFETIME, b);
        assert!(r.sent.len() <= 2, "swept once they expired");
        assert!(!r.recently_sent(t + MAPPING_LIFETIME, a));
    }

    #[test]
    fn one_probe_through_means_reachable() {
        let mut r = Reach::default();
        let t = Instant::now();
        r.start(t, &[p(1), p(2), p(3)]);
        assert_eq!(r.on_blocked(p(1)), None);
        assert_eq!(r.on_blocked(p(2)), None);
        assert_eq!(r.on_reached(), Some(false));
        assert!(!r.firewalled);
    }

    #[test]
    fn enough_drops_and_nothing_through_means_firewalled() {
        let mut r = Reach::default();
        let t = Instant::now();
        r.start(t, &[p(1), p(2), p(3)]);
        assert_eq!(r.on_blocked(p(1)), None);
        assert_eq!(r.on_inconclusive(), None);
        assert_eq!(r.on_blocked(p(3)), Some(true));
        assert!(r.firewalled);
        assert!(!r.due(t + Duration::from_secs(1)), "one round per RECHECK");
        assert!(r.due(t + RECHECK));
        // A later round where a probe gets through turns it back.
        r.start(t + RECHECK, &[p(1), p(2)]);
        assert_eq!(r.on_inconclusive(), None);
        assert_eq!(r.on_reached(), Some(false));
        assert!(!r.firewalled);
    }

    #[test]
    fn a_target_that_wrote_to_us_meanwhile_proves_nothing() {
        let mut r = Reach::default();
        let t = Instant::now();
        r.start(t, &[p(1), p(2)]);
        r.heard_request(p(2));
        assert_eq!(r.on_blocked(p(1)), None);
        assert_eq!(r.on_blocked(p(2)), None, "one vote only");
        assert!(!r.firewalled);
    }

    #[test]
    fn too_little_evidence_changes_nothing() {
        let mut r = Reach::default();
        let t = Instant::now();
        r.start(t, &[p(1), p(2), p(3)]);
        assert_eq!(r.on_blocked(p(1)), None);
        assert_eq!(r.on_inconclusive(), None);
        assert_eq!(r.on_inconclusive(), None);
        assert!(!r.firewalled);
        assert!(r.due(t), "no verdict: try again at the next bootstrap");
    }
}
