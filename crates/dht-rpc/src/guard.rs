//! Defences against hostile networks, as protocol rules inside the core.
//!
//! Every datagram may be malformed, spoofed or sent by someone who wants to use the node
//! against a third party. The rules, each configured in [`Defences`] and counted in
//! [`Stats`](crate::Stats) by reason:
//! - **Destinations** ([`dest`]): nothing is sent on a stranger's behalf to a special-purpose
//!   address, nor to loopback or a private range unless the requester is in it.
//! - **Per-source budgets**: requests per IP, per /24 and in total, checked on the first
//!   byte before anything is decoded, in fixed memory ([`Budget`]).
//! - **Response budgets**: bytes per second toward each IP, tight for IPs that never proved
//!   they receive ([`Proven`]), so that a spoofed-source flood reflects little at its victim.
//! - **Forwards**: hole-punch relays and forwarded pongs per requester, per target and (for
//!   targets that never proved they receive) in total.
//! - **Routing table**: contacts per IP and per /24, per bucket and in all; a requester enters
//!   only once it answered a ping of ours.
//! - **Walks**: a bounded number of new candidates from any one answer, and per IP.
//!
//! Sources in [`Defences::trusted`] (loopback by default, so that local test networks keep
//! working) skip the per-source budgets and limits; the destination rules apply to all.

pub mod budget;
pub mod counts;
pub mod dest;
pub mod proven;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

pub use budget::{Budget, Clock, Limit};
pub use counts::{SourceCounts, in_ranges, prefix_of};
pub use dest::{Ipv4Range, Refused};
pub use proven::Proven;

/// The knobs of the defences, with defaults for a public node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defences {
    /// Sources exempt from the per-source budgets, response budgets, table and store limits
    /// (not from the destination rules). Default: loopback only.
    pub trusted: Vec<Ipv4Range>,
    /// Requests per source IP (`None`: unlimited). Default 2,000/s, burst 4,000.
    pub requests_per_ip: Option<Limit>,
    /// Requests per source /24. Default 8,000/s, burst 16,000.
    pub requests_per_prefix: Option<Limit>,
    /// Requests from untrusted sources in all. Default 1,000,000/s: a backstop above what one
    /// core answers (about 240,000/s on loopback, `docs/PERFORMANCE.md`), so that it never
    /// sheds load the node could serve; beyond its capacity the kernel's socket buffer drops.
    pub requests_total: Option<Limit>,
    /// Response bytes per second toward an IP that never proved it receives. Default
    /// 128 KiB/s, burst 256 KiB: a spoofed-source flood reflects at most that at its victim.
    pub unproven_bytes_per_ip: Option<Limit>,
    /// The same per /24. Default 512 KiB/s, burst 1 MiB.
    pub unproven_bytes_per_prefix: Option<Limit>,
    /// Response bytes per second toward a proven IP. Default 512 KiB/s, burst 1 MiB (about
    /// 650 full answers a second: a spoofed flood aimed at a real node still reflects no
    /// more than that at it).
    pub proven_bytes_per_ip: Option<Limit>,
    /// Relays per second to targets that never proved they receive, in all (relays to
    /// proven targets are limited only per requester and per target, by
    /// [`Config::forward_rate`](crate::Config::forward_rate)). Default 20/s, burst 40.
    pub unproven_relays_total: Limit,
    /// Pongs of forwarded pings sent to one third IP (the requester a relay names). Default
    /// 10/s, burst 20.
    pub pongs_per_target: Limit,
    /// Pongs of forwarded pings in all. Default 500/s, burst 1,000.
    pub pongs_total: Limit,
    /// Routing-table contacts per IP in all, and per bucket. Default 2 and 1.
    pub table_per_ip: (usize, usize),
    /// Routing-table contacts per /24 in all, and per bucket. Default 16 and 2.
    pub table_per_prefix: (usize, usize),
    /// A requester we do not know enters the routing table only once it answered a ping of
    /// ours (a spoofed source never does). `false`: it enters at once, as in the reference.
    /// Default `true`.
    pub verify_requesters: bool,
    /// Pings per second that let requesters we do not know yet into the routing table.
    /// Default 200/s, burst 400.
    pub verify_pings: Limit,
    /// New candidates a walk takes from one answer (past them the rest are ignored).
    /// Default 20 (the reference's k).
    pub candidates_per_answer: usize,
    /// Candidates of one walk on one IP. Default 2.
    pub candidates_per_ip: usize,
    /// Responses per IP that answer no request of ours (a late or repeated answer, or a
    /// guess at a tid). Past it, the IP's responses are dropped unread until it refills: a
    /// forger spoofing a node's address to answer in its name gets a few dozen guesses of
    /// the 32,768 tids while our request waits, not thousands. Default 16/s, burst 32.
    pub unmatched_responses_per_ip: Limit,
    /// Buckets of each per-IP budget (16 bytes each, in sets of four, allocated on first use;
    /// per-/24 budgets get a quarter). A source shares a bucket only when the four of its
    /// set are all spent by others at once; a flood from spoofed sources spreads over all
    /// of them. Default 4,096 (64 KiB a budget).
    pub budget_slots: usize,
}

impl Default for Defences {
    fn default() -> Self {
        Defences {
            trusted: vec![dest::LOOPBACK],
            requests_per_ip: Some(Limit {
                rate: 2_000,
                burst: 4_000,
            }),
            requests_per_prefix: Some(Limit::per_second(8_000)),
            requests_total: Some(Limit::per_second(1_000_000)),
            unproven_bytes_per_ip: Some(Limit::per_second(128 * 1024)),
            unproven_bytes_per_prefix: Some(Limit::per_second(512 * 1024)),
            proven_bytes_per_ip: Some(Limit::per_second(512 * 1024)),
            unproven_relays_total: Limit::per_second(20),
            pongs_per_target: Limit::per_second(10),
            pongs_total: Limit::per_second(500),
            table_per_ip: (2, 1),
            table_per_prefix: (16, 2),
            verify_requesters: true,
            verify_pings: Limit::per_second(200),
            candidates_per_answer: 20,
            candidates_per_ip: 2,
            unmatched_responses_per_ip: Limit::per_second(16),
            budget_slots: 4_096,
        }
    }
}

impl Defences {
    /// Everything off but the destination rules: the reference's behaviour, for comparison
    /// (and for networks where every node is trusted).
    pub fn off() -> Self {
        let none = (usize::MAX, usize::MAX);
        let lots = Limit {
            rate: u32::MAX / 2,
            burst: u32::MAX / 2,
        };
        Defences {
            trusted: vec![Ipv4Range::new(Ipv4Addr::UNSPECIFIED, 0)],
            requests_per_ip: None,
            requests_per_prefix: None,
            requests_total: None,
            unproven_bytes_per_ip: None,
            unproven_bytes_per_prefix: None,
            proven_bytes_per_ip: None,
            unproven_relays_total: lots,
            pongs_per_target: lots,
            pongs_total: lots,
            table_per_ip: none,
            table_per_prefix: none,
            verify_requesters: false,
            verify_pings: lots,
            candidates_per_answer: usize::MAX,
            candidates_per_ip: usize::MAX,
            unmatched_responses_per_ip: lots,
            budget_slots: 1,
        }
    }

    /// Whether `ip` is in a trusted range.
    pub fn is_trusted(&self, ip: Ipv4Addr) -> bool {
        in_ranges(&self.trusted, ip)
    }
}

/// The /24 of an IP, as a budget key.
fn prefix(ip: Ipv4Addr) -> u64 {
    u64::from(prefix_of(&ip)) | 1 << 40
}

fn ip_key(ip: Ipv4Addr) -> u64 {
    u64::from(u32::from(ip))
}

/// Set in the keys of tokened relay requests (see [`Guard::admit_relay`]): above the 48
/// bits an address key uses.
const TOKENED: u64 = 1 << 56;

fn addr_key(a: SocketAddrV4) -> u64 {
    u64::from(u32::from(*a.ip())) << 16 | u64::from(a.port())
}

/// Why a request was dropped before decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Over {
    Ip,
    Prefix,
    Total,
}

/// How a relay request fares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Relay {
    Allowed,
    Limited,
}

/// The state of the defences: budgets and the proven set.
#[derive(Debug, Clone)]
pub(crate) struct Guard {
    pub(crate) cfg: Defences,
    requests_ip: Option<Budget>,
    requests_prefix: Option<Budget>,
    requests_total: Option<Budget>,
    unproven_ip: Option<Budget>,
    unproven_prefix: Option<Budget>,
    proven_ip: Option<Budget>,
    relay_from: Budget,
    relay_to: Budget,
    relay_unproven: Budget,
    pong_to: Budget,
    pong_total: Budget,
    verify: Budget,
    unmatched: Budget,
    pub(crate) proven: Proven,
    /// The budgets' time base, from the first datagram.
    clock: Option<Clock>,
}

/// Proven IPs per generation, and how long a generation lasts.
const PROVEN_MAX: usize = 65_536;
const PROVEN_LIFETIME: Duration = Duration::from_secs(10 * 60);

impl Guard {
    /// The defences of `cfg`; `key` draws the budgets' secret keys, `unmatched_key` is the
    /// unmatched responses' (drawn apart, see `Core::with_handler`).
    pub(crate) fn new(
        cfg: Defences,
        forward_rate: u32,
        unmatched_key: u64,
        mut key: impl FnMut() -> u64,
    ) -> Self {
        let mut b = |l: Limit, slots| Budget::new(l, slots, key());
        let forward = Limit::per_second(forward_rate);
        let (ip_slots, prefix_slots) = (cfg.budget_slots, cfg.budget_slots / 4);
        Guard {
            requests_ip: cfg.requests_per_ip.map(|l| b(l, ip_slots)),
            requests_prefix: cfg.requests_per_prefix.map(|l| b(l, prefix_slots)),
            requests_total: cfg.requests_total.map(|l| b(l, 1)),
            unproven_ip: cfg.unproven_bytes_per_ip.map(|l| b(l, ip_slots)),
            unproven_prefix: cfg.unproven_bytes_per_prefix.map(|l| b(l, prefix_slots)),
            proven_ip: cfg.proven_bytes_per_ip.map(|l| b(l, ip_slots)),
            relay_from: b(forward, ip_slots),
            relay_to: b(forward, ip_slots),
            relay_unproven: b(cfg.unproven_relays_total, 1),
            pong_to: b(cfg.pongs_per_target, ip_slots),
            pong_total: b(cfg.pongs_total, 1),
            verify: b(cfg.verify_pings, 1),
            unmatched: Budget::new(cfg.unmatched_responses_per_ip, ip_slots, unmatched_key),
            proven: Proven::new(PROVEN_MAX, PROVEN_LIFETIME),
            clock: None,
            cfg,
        }
    }

    pub(crate) fn is_trusted(&self, ip: Ipv4Addr) -> bool {
        self.cfg.is_trusted(ip)
    }

    /// `now` in the budgets' milliseconds (converted once per admission, for every budget it
    /// consults).
    fn ms(&mut self, now: Instant) -> u32 {
        self.clock.get_or_insert(Clock::new(now)).ms(now)
    }

    /// Whether `ip` proved it receives, or is trusted.
    pub(crate) fn vouched(&self, ip: Ipv4Addr) -> bool {
        self.proven.contains(&ip) || self.is_trusted(ip)
    }

    /// A request from `from` arrived: within its source's budgets?
    pub(crate) fn admit_request(&mut self, now: Instant, from: Ipv4Addr) -> Result<(), Over> {
        if self.is_trusted(from) {
            return Ok(());
        }
        let now = self.ms(now);
        let take = |b: &mut Option<Budget>, key| b.as_mut().is_none_or(|b| b.allow(now, key, 1));
        if !take(&mut self.requests_ip, ip_key(from)) {
            return Err(Over::Ip);
        }
        if !take(&mut self.requests_prefix, prefix(from)) {
            return Err(Over::Prefix);
        }
        if !take(&mut self.requests_total, 0) {
            return Err(Over::Total);
        }
        Ok(())
    }

    /// May a response of `bytes` go to `to` now?
    pub(crate) fn admit_response(&mut self, now: Instant, to: Ipv4Addr, bytes: usize) -> bool {
        if self.is_trusted(to) {
            return true;
        }
        let cost = bytes as u32;
        let now = self.ms(now);
        if self.proven.contains(&to) {
            return self
                .proven_ip
                .as_mut()
                .is_none_or(|b| b.allow(now, ip_key(to), cost));
        }
        self.unproven_ip
            .as_mut()
            .is_none_or(|b| b.allow(now, ip_key(to), cost))
            && self
                .unproven_prefix
                .as_mut()
                .is_none_or(|b| b.allow(now, prefix(to), cost))
    }

    /// May `from` have a ping relayed to `to` now? `tokened`: the request carried the
    /// roundtrip token we hand `from`, so it really comes from there (a spoofer never
    /// receives the token of the address it writes in).
    ///
    /// Requests without one share a budget per requester, one per target and, for
    /// targets that never proved they receive, one in all: a spoofed flood to random
    /// targets spends that last one. A tokened request is counted apart (its own buckets
    /// per requester and per target, and not the shared one), so that the flood cannot
    /// spend what an honest requester (which holds the token of the lookup that found the
    /// target) relays to a target this node never heard from. A tokened requester still
    /// gets at most the forward rate, and so does each target from tokened requesters in
    /// all.
    pub(crate) fn admit_relay(
        &mut self,
        now: Instant,
        from: Ipv4Addr,
        to: SocketAddrV4,
        tokened: bool,
    ) -> Relay {
        if self.is_trusted(from) && self.is_trusted(*to.ip()) {
            return Relay::Allowed;
        }
        let now = self.ms(now);
        if !tokened && !self.proven.contains(to.ip()) && !self.relay_unproven.allow(now, 0, 1) {
            return Relay::Limited;
        }
        let apart = if tokened { TOKENED } else { 0 };
        if self.relay_to.allow(now, addr_key(to) | apart, 1)
            && self.relay_from.allow(now, ip_key(from) | apart, 1)
        {
            Relay::Allowed
        } else {
            Relay::Limited
        }
    }

    /// May the pong of a forwarded ping go to the third address `to` now?
    pub(crate) fn admit_pong(&mut self, now: Instant, to: Ipv4Addr) -> bool {
        if self.is_trusted(to) {
            return true;
        }
        let now = self.ms(now);
        self.pong_to.allow(now, ip_key(to), 1) && self.pong_total.allow(now, 0, 1)
    }

    /// May a response from `from` be read (its source has not answered nothing too often)?
    pub(crate) fn may_respond(&mut self, now: Instant, from: Ipv4Addr) -> bool {
        if self.is_trusted(from) {
            return true;
        }
        let now = self.ms(now);
        self.unmatched.has(now, ip_key(from), 1)
    }

    /// A response from `from` answered no request of ours.
    pub(crate) fn answered_nothing(&mut self, now: Instant, from: Ipv4Addr) {
        if !self.is_trusted(from) {
            let now = self.ms(now);
            self.unmatched.allow(now, ip_key(from), 1);
        }
    }

    /// May we ping `to` so that it can enter the routing table?
    pub(crate) fn admit_verify(&mut self, now: Instant, to: Ipv4Addr) -> bool {
        if self.is_trusted(to) {
            return true;
        }
        let now = self.ms(now);
        self.verify.allow(now, 0, 1)
    }
}
