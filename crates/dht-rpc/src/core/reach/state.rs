//! The reachability check's own state, without the core: where we wrote lately (a filter
//! of recent destinations, so that a probe goes only where our NAT holds nothing), the
//! current round's targets and what each showed, and the verdict the votes give (see the
//! parent module for the rule).

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

/// Targets probed in one round.
pub(crate) const PROBES: usize = 5;
/// Probes that must show a drop, with none getting through, to decide "firewalled".
pub(crate) const VOTES: usize = 2;
/// At most one round this often (rounds start after the table's own walks).
pub(crate) const RECHECK: Duration = Duration::from_secs(10 * 60);
/// How long a NAT may keep a mapping open after our last datagram to an address: a target
/// we sent to within this is not probed. (Linux keeps an answered UDP flow 120-180 s.)
pub(crate) const MAPPING_LIFETIME: Duration = Duration::from_secs(3 * 60);
/// Slots of the filter of recent destinations at most (2 bytes each: 64 KiB). It starts at
/// [`SENT_SLOTS_MIN`] and doubles whenever the destinations new in the current
/// [`MAPPING_LIFETIME`] reach an eighth of its slots (a new slot `i` of the doubled filter
/// takes the stamp of old slot `i` modulo the old size, so nothing sent looks unsent). A slot
/// holds the second of the last send to any destination that hashes to it, so that
/// remembering a send costs a hash and a store (the node's every answer is a send), and two
/// destinations that share a slot only make one of them look sent to: a target skipped, never
/// one wrongly probed. A node that sends to more destinations than this in a
/// [`MAPPING_LIFETIME`] finds few targets left, as a full table of destinations did before.
pub(crate) const SENT_SLOTS: usize = 32_768;
/// The filter's first size (2 KiB).
pub(crate) const SENT_SLOTS_MIN: usize = 1024;
/// Requests for targets (`_find_node` to one contact), at most, between two verdicts.
pub(crate) const EXTRA_FINDS: usize = 3;

/// A target of the current round.
#[derive(Debug)]
struct Target {
    addr: SocketAddrV4,
    /// It sent us a request, or we sent it something other than the confirming ping, during
    /// the round: a NAT on either side may have opened between us, so its answers, relayed
    /// or direct, prove nothing.
    tainted: bool,
    /// The confirming ping is on its way (our own send to it then taints nothing).
    confirming: bool,
}

/// The state of the reachability check.
#[derive(Debug, Default)]
pub(crate) struct Reach {
    /// The last round's verdict (`Some(true)`: firewalled, so we send no id); `None` before
    /// the first.
    pub(crate) verdict: Option<bool>,
    last_round: Option<Instant>,
    /// Probes of the current round still out (relayed, or confirming directly).
    outstanding: usize,
    reached: usize,
    blocked: usize,
    /// The current round's targets.
    targets: Vec<Target>,
    /// When we last sent to each slot's destinations: 1 + whole seconds since `origin`,
    /// modulo 65,535 (0: never). Empty until the first send.
    sent: Vec<u16>,
    origin: Option<Instant>,
    /// Sends to a slot with no recent stamp since `window` began (see [`SENT_SLOTS`]).
    fresh: usize,
    window: Option<Instant>,
    /// Requests for targets sent since the last verdict.
    extra_finds: usize,
}

impl Reach {
    /// The stamp of `now` in `sent` (never 0).
    fn stamp(&self, now: Instant) -> u16 {
        let secs = self
            .origin
            .map_or(0, |o| now.saturating_duration_since(o).as_secs());
        (secs % 65_535) as u16 + 1
    }

    /// Remembers that we sent a datagram to `to`.
    fn note_sent(&mut self, now: Instant, to: SocketAddrV4) {
        if self.sent.is_empty() {
            self.origin = Some(now);
            self.sent = vec![0; SENT_SLOTS_MIN];
        }
        if self
            .window
            .is_none_or(|w| now.saturating_duration_since(w) >= MAPPING_LIFETIME)
        {
            self.window = Some(now);
            self.fresh = 0;
        }
        if !self.recently_sent(now, to) {
            self.fresh += 1;
            if self.fresh * 8 >= self.sent.len() && self.sent.len() < SENT_SLOTS {
                let n = self.sent.len();
                self.sent.extend_from_within(..);
                debug_assert_eq!(self.sent.len(), 2 * n);
            }
        }
        let stamp = self.stamp(now);
        let slot = sent_slot(to, self.sent.len());
        self.sent[slot] = stamp;
    }

    /// Whether we sent to `addr` recently enough that a NAT may still let it in (or to
    /// another destination of its slot: then it is skipped too).
    pub(crate) fn recently_sent(&self, now: Instant, addr: SocketAddrV4) -> bool {
        let Some(&at) = self.sent.get(sent_slot(addr, self.sent.len())) else {
            return false;
        };
        // Whole seconds: an age of 180 may be 179.x or 180.x, and counts as recent.
        let age = (u32::from(self.stamp(now)) + 65_535 - u32::from(at)) % 65_535;
        at != 0 && u64::from(age) <= MAPPING_LIFETIME.as_secs()
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
        self.targets = targets
            .iter()
            .map(|t| Target {
                addr: *t,
                tainted: false,
                confirming: false,
            })
            .collect();
    }

    fn target(&mut self, addr: SocketAddrV4) -> Option<&mut Target> {
        if self.outstanding == 0 {
            return None;
        }
        self.targets.iter_mut().find(|t| t.addr == addr)
    }

    /// Whether `addr` is a target of the running round whose answer is still worth
    /// something (our own walks leave it alone until the round ends).
    pub(crate) fn is_probing(&self, addr: SocketAddrV4) -> bool {
        self.outstanding > 0 && self.targets.iter().any(|t| t.addr == addr && !t.tainted)
    }

    fn is_tainted(&self, addr: SocketAddrV4) -> bool {
        self.targets.iter().any(|t| t.addr == addr && t.tainted)
    }

    /// A probe's relayed pong arrived from `peer`. Returns the new verdict if the round
    /// ended with one.
    pub(super) fn on_reached(&mut self, peer: SocketAddrV4) -> Option<bool> {
        if !self.is_tainted(peer) {
            self.reached += 1;
        }
        self.finish_one()
    }

    /// The confirming ping to `peer` is about to go out.
    pub(super) fn confirming(&mut self, peer: SocketAddrV4) {
        if let Some(t) = self.target(peer) {
            t.confirming = true;
        }
    }

    /// We are sending a datagram to `to` (a request now submitted, or any transmit).
    pub(crate) fn on_send(&mut self, now: Instant, to: SocketAddrV4) {
        if let Some(t) = self.target(to)
            && !t.confirming
        {
            tracing::debug!(target = %to, "reachability target tainted: we sent to it");
            t.tainted = true;
        }
        self.note_sent(now, to);
    }

    /// Whether to ask a contact for targets: a round is due (no verdict
    /// yet, or an old one) and fewer than [`EXTRA_FINDS`] were sent since the last verdict.
    pub(crate) fn wants_find(&mut self, now: Instant) -> bool {
        if !self.due(now) || self.extra_finds >= EXTRA_FINDS {
            return false;
        }
        self.extra_finds += 1;
        true
    }

    /// A request arrived from `from`.
    pub(crate) fn heard_request(&mut self, from: SocketAddrV4) {
        if let Some(t) = self.target(from) {
            tracing::debug!(target = %from, "reachability target tainted: it sent us a request");
            t.tainted = true;
        }
    }

    /// A probe's target answered directly after its relayed pong never came.
    pub(super) fn on_blocked(&mut self, peer: SocketAddrV4) -> Option<bool> {
        tracing::debug!(target = %peer, tainted = self.is_tainted(peer), "reachability probe blocked");
        if !self.is_tainted(peer) {
            self.blocked += 1;
        }
        self.finish_one()
    }

    /// A probe told nothing (its target is gone, or our queue was full).
    pub(super) fn on_inconclusive(&mut self) -> Option<bool> {
        tracing::debug!("reachability probe inconclusive");
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
            // No verdict: the table's next walk may try again. The votes so far stay, and a
            // later round (often of one or two targets, as few nodes stay unwritten-to for
            // long) adds to them.
            self.last_round = None;
            return None;
        };
        self.verdict = Some(verdict);
        self.reached = 0;
        self.blocked = 0;
        self.extra_finds = 0;
        Some(verdict)
    }
}

/// The slot of `to` in the filter of recent destinations (splitmix64's finalizer over the
/// address: unkeyed, since an address that shares a slot is only skipped, never probed).
fn sent_slot(to: SocketAddrV4, slots: usize) -> usize {
    let x = u64::from(u32::from(*to.ip())) << 16 | u64::from(to.port());
    crate::guard::budget::mix(x) as usize & (slots.max(1) - 1)
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
        assert!(!r.recently_sent(t, a), "nothing sent yet");
        r.on_send(t, a);
        assert!(r.recently_sent(t + Duration::from_secs(60), a));
        assert!(!r.recently_sent(t, b));
        let after = t + MAPPING_LIFETIME + Duration::from_secs(1);
        assert!(
            r.recently_sent(t + MAPPING_LIFETIME, a),
            "within the lifetime"
        );
        assert!(!r.recently_sent(after, a), "expired");
        // Hours later the stamps wrap (every 65,535 s): an old send never looks recent then
        // but for the seconds its stamp comes round again, and a new one always does.
        let later = t + Duration::from_secs(70_000);
        assert!(!r.recently_sent(later, a));
        r.on_send(later, a);
        assert!(r.recently_sent(later + Duration::from_secs(100), a));
        // Far more destinations than slots: every one of them looks sent to (none is probed
        // wrongly), the memory stays the filter's.
        for i in 0..200_000u32 {
            r.on_send(t, SocketAddrV4::new(i.into(), 1));
        }
        assert_eq!(r.sent.len(), SENT_SLOTS);
        assert!((0..200_000u32).all(|i| r.recently_sent(t, SocketAddrV4::new(i.into(), 1))));
        // Few destinations: a small filter, and a bounded share of false "sent" answers
        // (at least eight slots per destination; the first destinations' stamps were copied
        // at each doubling, so about three in ten never-sent ones look sent to: skipped as
        // targets, never probed wrongly).
        let mut r = Reach::default();
        for i in 0..1000u32 {
            r.on_send(t, SocketAddrV4::new(i.into(), 1));
        }
        assert_eq!(r.sent.len(), 8192);
        let wrong = (1000..11_000u32)
            .filter(|&i| r.recently_sent(t, SocketAddrV4::new(i.into(), 1)))
            .count();
        assert!(
            wrong < 3500,
            "{wrong} of 10,000 never-sent destinations looked sent to"
        );
    }

    #[test]
    fn one_probe_through_means_reachable() {
        let mut r = Reach::default();
        let t = Instant::now();
        r.start(t, &[p(1), p(2), p(3)]);
        assert_eq!(r.on_blocked(p(1)), None);
        assert_eq!(r.on_blocked(p(2)), None);
        assert_eq!(r.on_reached(p(9)), Some(false));
        assert_ne!(r.verdict, Some(true));
    }

    #[test]
    fn enough_drops_and_nothing_through_means_firewalled() {
        let mut r = Reach::default();
        let t = Instant::now();
        r.start(t, &[p(1), p(2), p(3)]);
        assert_eq!(r.on_blocked(p(1)), None);
        assert_eq!(r.on_inconclusive(), None);
        assert_eq!(r.on_blocked(p(3)), Some(true));
        assert_eq!(r.verdict, Some(true));
        assert!(!r.due(t + Duration::from_secs(1)), "one round per RECHECK");
        assert!(r.due(t + RECHECK));
        // A later round where a probe gets through turns it back.
        r.start(t + RECHECK, &[p(1), p(2)]);
        assert_eq!(r.on_inconclusive(), None);
        assert_eq!(r.on_reached(p(9)), Some(false));
        assert_ne!(r.verdict, Some(true));
    }

    #[test]
    fn a_target_that_wrote_to_us_meanwhile_proves_nothing() {
        let mut r = Reach::default();
        let t = Instant::now();
        r.start(t, &[p(1), p(2)]);
        r.heard_request(p(2));
        assert_eq!(r.on_blocked(p(1)), None);
        assert_eq!(r.on_blocked(p(2)), None, "one vote only");
        assert_ne!(r.verdict, Some(true));
    }

    #[test]
    fn votes_add_up_over_rounds_without_a_verdict() {
        let mut r = Reach::default();
        let t = Instant::now();
        r.start(t, &[p(1)]);
        assert_eq!(r.on_blocked(p(1)), None);
        assert!(r.due(t));
        r.start(t, &[p(2)]);
        assert_eq!(r.on_blocked(p(2)), Some(true));
        // The next verdict starts from nothing.
        r.start(t + RECHECK, &[p(3)]);
        assert_eq!(r.on_blocked(p(3)), None);
        assert_eq!(r.verdict, Some(true));
    }

    #[test]
    fn finds_for_targets_are_bounded_per_verdict() {
        let mut r = Reach::default();
        let t = Instant::now();
        let finds = (0..10).filter(|_| r.wants_find(t)).count();
        assert_eq!(finds, EXTRA_FINDS);
        r.start(t, &[p(1)]);
        assert!(!r.wants_find(t), "not while a round runs");
        assert_eq!(r.on_reached(p(9)), Some(false));
        assert!(!r.wants_find(t), "a fresh verdict needs no targets");
        assert!(
            r.wants_find(t + RECHECK),
            "the count starts again after a verdict"
        );
    }

    #[test]
    fn our_own_sends_taint_a_target_but_the_confirming_ping() {
        let mut r = Reach::default();
        let t = Instant::now();
        r.start(t, &[p(1), p(2), p(3)]);
        r.on_send(t, p(1));
        assert_eq!(
            r.on_reached(p(1)),
            None,
            "we wrote to it: its pong proves nothing"
        );
        r.confirming(p(2));
        r.on_send(t, p(2));
        assert_eq!(r.on_blocked(p(2)), None);
        r.confirming(p(3));
        r.on_send(t, p(3));
        assert_eq!(r.on_blocked(p(3)), Some(true));
    }

    #[test]
    fn too_little_evidence_changes_nothing() {
        let mut r = Reach::default();
        let t = Instant::now();
        r.start(t, &[p(1), p(2), p(3)]);
        assert_eq!(r.on_blocked(p(1)), None);
        assert_eq!(r.on_inconclusive(), None);
        assert_eq!(r.on_inconclusive(), None);
        assert_ne!(r.verdict, Some(true));
        assert!(r.due(t), "no verdict: try again at the next bootstrap");
    }
}
