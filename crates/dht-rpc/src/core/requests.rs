//! The requests of one node: transaction ids, the requests in flight (at most
//! `concurrency` that are not stalled), the queue behind them, and timeouts.
//!
//! A walk's request has a retransmission timeout (RTO, see [`crate::rtt`]): when it passes
//! without an answer the request is sent once more (under a tid of its own, so that an
//! answer names the copy it answers) and *stalls*: it no longer takes a slot, so the walk
//! and the queue move on, and an answer to either copy is still taken. At its give-up time
//! (two RTOs after it was sent, or later for a node we never heard from: see
//! [`crate::rtt::Rtts::waits`]) its walk stops waiting for it (it is *given up*); only the
//! timeout makes it a failure (and its node dead).
//!
//! A response matches a request by its transaction id *and* the address it must come from:
//! the address the request went to, or for a hole punch the punched peer's IP (any port: a
//! symmetric NAT answers from a new one). The reference matches by tid alone, which lets
//! anyone who guesses 15 bits answer in a node's name. Tids are drawn at random (the
//! reference counts up, so one tid seen tells the next ones): a forger who spoofs a node's
//! address must guess among 32,768, and the core drops the responses of a source that
//! answers nothing too often (see [`crate::guard`]).

use std::collections::VecDeque;
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dht_wire::{Datagram, NodeAddr, NodeId, Request, Tid};
use rand::Rng;

use crate::events::{QueryId, RequestId};
use crate::rtt::Waits;

/// Why a request was sent: what to do with its answer or failure.
#[derive(Debug, Clone)]
pub(crate) enum Purpose {
    /// A user's ping.
    Ping(RequestId),
    /// A user's hole punch.
    Holepunch(RequestId),
    /// A query's request to a node (`node` is `None` for a bootstrap node). `punched`: it
    /// is already the retry after a hole punch (or needs none). `commit`: a commit of an
    /// update (it carries a token).
    Query {
        query: QueryId,
        node: Option<NodeId>,
        punched: bool,
        commit: bool,
    },
    /// A hole punch through a referrer, inside a query, before retrying `node`.
    QueryPunch { query: QueryId, node: NodeAddr },
    /// An "are you alive" ping: the sweep's, a newcomer's verification, or an eviction's
    /// (see `liveness.rs`).
    Alive(super::liveness::Alive),
    /// A request of a reachability round (see `reach.rs`).
    Reach(super::reach::Check),
}

impl Purpose {
    /// A hole-punch ping (sent through a referrer; the punched peer answers).
    fn punches(&self) -> bool {
        matches!(
            self,
            Purpose::Holepunch(_)
                | Purpose::QueryPunch { .. }
                | Purpose::Reach(super::reach::Check::Probe { .. })
        )
    }

    /// The node's own upkeep (checks, reachability, a walk's hole punches), not a walk's
    /// question or a user's request: it takes at most a [`BACKGROUND_SHARE`] of the slots,
    /// so that nodes that never answer it (strangers a request made us check, candidates a
    /// hostile node named) cannot hold every slot for a whole timeout.
    fn background(&self) -> bool {
        !matches!(
            self,
            Purpose::Ping(_) | Purpose::Holepunch(_) | Purpose::Query { .. }
        )
    }
}

/// The part of the slots (`concurrency`) that background requests may take at once (at
/// least one): a quarter.
const BACKGROUND_SHARE: usize = 4;

/// How far a request in flight has got without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// It takes a slot, and its sender waits for it.
    Active,
    /// Past its RTO: it takes no slot, and its sender was told (a late answer still counts).
    Stalled,
    /// Past its give-up time (two RTOs, or the tail of round trips): its sender stopped waiting for it (it stays in flight until its
    /// deadline: a late answer is still taken, and only the deadline makes it a failure).
    GivenUp,
}

/// A request in flight.
#[derive(Debug)]
pub(crate) struct Pending {
    tid: Tid,
    pub(crate) reply_from: SocketAddrV4,
    pub(crate) sent: Instant,
    deadline: Instant,
    /// A walk's request: when it stalls (its RTO) and when it is given up.
    waits: Option<(Instant, Instant)>,
    pub(crate) phase: Phase,
    /// A query's request is sent once more when it stalls (under a tid of its own): where,
    /// and the first copy's encoding (shared with it, not a second `Datagram`).
    resend: Option<(SocketAddrV4, Bytes)>,
    /// The second copy's tid and when it went: an answer names the copy it answers, so
    /// even a request sent twice gives a true RTT sample (Karn's ambiguity does not arise).
    pub(crate) resent: Option<(Tid, Instant)>,
    pub(crate) purpose: Purpose,
}

impl Pending {
    /// The round trip of the answer with `tid` (to whichever copy it names).
    pub(crate) fn round_trip(&self, tid: Tid, now: Instant) -> Duration {
        let sent = match self.resent {
            Some((again, at)) if again == tid => at,
            _ => self.sent,
        };
        now.saturating_duration_since(sent)
    }

    /// Whether `tid` names this request (either copy).
    fn has_tid(&self, tid: Tid) -> bool {
        self.tid == tid || self.resent.is_some_and(|(again, _)| again == tid)
    }

    /// Whether the answer comes straight back from where the request went (its time is a
    /// round trip to that node, not through a relay).
    pub(crate) fn direct(&self) -> bool {
        !self.purpose.punches()
    }

    /// Whether a response from `from` may answer this request: it must come from the
    /// address the request went to; the pong of a hole punch must come from the punched
    /// peer's IP, on any port, because a symmetric NAT in front of the peer gives its answer
    /// to us a new external port.
    fn accepts(&self, from: SocketAddrV4) -> bool {
        if self.purpose.punches() {
            self.reply_from.ip() == from.ip()
        } else {
            self.reply_from == from
        }
    }
}

#[derive(Debug)]
struct Queued {
    to: SocketAddrV4,
    reply_from: SocketAddrV4,
    request: Request,
    purpose: Purpose,
    waits: Option<Waits>,
}

/// Tids of requests that left kept for [`Requests::was_ours`]: the last 128 (a late answer
/// comes within seconds, and a late one past them only costs its sender one token of its
/// unmatched-responses budget).
const DONE_KEPT: usize = 128;

/// Requests in flight at most, stalled ones included, per slot of `concurrency`.
const STALLED_PER_SLOT: usize = 8;

/// `concurrency` at most: each request in flight holds up to two tids (the resend has its
/// own), so this keeps them to half of the 15-bit tid space and a free one is always found.
pub(crate) const MAX_CONCURRENCY: usize = 1024;

#[derive(Debug)]
pub(crate) struct Requests {
    /// Draws the tids.
    /// Tids of requests answered or timed out lately, with the IP they went to: a second
    /// answer (to a resent request) or a late one is not a guess.
    done: VecDeque<(Tid, std::net::Ipv4Addr)>,
    concurrency: usize,
    max_queued: usize,
    timeout: Duration,
    inflight: Vec<Pending>,
    queue: VecDeque<Queued>,
}

impl Requests {
    pub(crate) fn new(concurrency: usize, max_queued: usize, timeout: Duration) -> Self {
        Requests {
            done: VecDeque::new(),
            concurrency: concurrency.clamp(1, MAX_CONCURRENCY),
            max_queued,
            timeout,
            inflight: Vec::new(),
            queue: VecDeque::new(),
        }
    }

    /// Queues a request; gives the purpose back when the queue is full. With an `rto`, the
    /// request stalls after it (see the module docs).
    pub(crate) fn submit(
        &mut self,
        to: SocketAddrV4,
        reply_from: SocketAddrV4,
        request: Request,
        purpose: Purpose,
        waits: Option<Waits>,
    ) -> Result<(), Purpose> {
        if self.queue.len() >= self.max_queued {
            return Err(purpose);
        }
        self.queue.push_back(Queued {
            to,
            reply_from,
            request,
            purpose,
            waits,
        });
        Ok(())
    }

    /// Requests in flight that take a slot (not stalled).
    fn active(&self) -> usize {
        self.inflight
            .iter()
            .filter(|p| p.phase == Phase::Active)
            .count()
    }

    /// A random tid that no request in flight holds (there are at most
    /// `2 * 8 * MAX_CONCURRENCY`, half of the tid space, so a draw is free at least half
    /// of the time).
    fn allocate_tid(&mut self, rng: &mut impl Rng) -> Tid {
        loop {
            let tid = Tid::from_masked(rng.random());
            if !self.inflight.iter().any(|p| p.has_tid(tid)) {
                return tid;
            }
        }
    }

    /// The next queued request, if there is room in flight: where to send it, and its
    /// encoding.
    pub(crate) fn send_next(
        &mut self,
        now: Instant,
        rng: &mut impl Rng,
    ) -> Option<(SocketAddrV4, Bytes)> {
        self.shrink();
        if self.queue.is_empty()
            || self.active() >= self.concurrency
            || self.inflight.len() >= self.concurrency * STALLED_PER_SLOT
        {
            return None;
        }
        // The first queued request that may go: background ones only within their share
        // (the others pass them in the queue).
        let background = self
            .inflight
            .iter()
            .filter(|p| p.phase == Phase::Active && p.purpose.background())
            .count();
        let room = background < (self.concurrency / BACKGROUND_SHARE).max(1);
        let at = self
            .queue
            .iter()
            .position(|q| room || !q.purpose.background())?;
        let q = self.queue.remove(at)?;
        let tid = self.allocate_tid(rng);
        // A walk waits for its closest candidates: one lost datagram would otherwise cost
        // it a timeout. So a query-round request (no token: never an update, whose handler
        // may not be idempotent) goes out once more when it stalls. (The reference sends
        // once; a node answers a repeated request again, and the second answer is dropped
        // as unknown.)
        let resend_ok =
            matches!(q.purpose, Purpose::Query { .. }) && q.request.roundtrip_token.is_none();
        let datagram = Datagram::request(tid, q.request).encode();
        // A request stalls at its RTO and is given up later (the resend had the rest of
        // that time to come back), and both by the timeout.
        let at = |d: Duration| now + d.min(self.timeout);
        let waits = q.waits.map(|w| (at(w.stall), at(w.give_up)));
        let resend = (resend_ok && waits.is_some()).then(|| (q.to, datagram.clone()));
        self.inflight.push(Pending {
            tid,
            reply_from: q.reply_from,
            sent: now,
            deadline: now + self.timeout,
            waits,
            phase: Phase::Active,
            resend,
            resent: None,
            purpose: q.purpose,
        });
        Some((q.to, datagram))
    }

    /// A request that stalls now: it is marked stalled, and its purpose given back (with
    /// the datagram to send again, if it is one to resend) so that its sender moves on.
    pub(crate) fn stall_due(
        &mut self,
        now: Instant,
        rng: &mut impl Rng,
    ) -> Option<(Purpose, Option<(SocketAddrV4, Bytes)>)> {
        let pos = self.inflight.iter().position(|p| {
            p.phase == Phase::Active && p.waits.is_some_and(|(stall, _)| stall <= now)
        })?;
        let again = match self.inflight[pos].resend.take() {
            Some((to, first)) => {
                let tid = self.allocate_tid(rng);
                self.inflight[pos].resent = Some((tid, now));
                Datagram::retag(&first, tid).map(|again| (to, again))
            }
            None => None,
        };
        let p = &mut self.inflight[pos];
        p.phase = Phase::Stalled;
        Some((p.purpose.clone(), again))
    }

    /// Whether a request to `to` is in flight or queued: its answer will tell us about `to`
    /// anyway.
    pub(crate) fn pending_to(&self, to: SocketAddrV4) -> bool {
        self.inflight.iter().any(|p| p.reply_from == to) || self.queue.iter().any(|q| q.to == to)
    }

    /// A stalled request whose sender stops waiting for it now (it is marked so).
    pub(crate) fn give_up_due(&mut self, now: Instant) -> Option<Purpose> {
        let p = self.inflight.iter_mut().find(|p| {
            p.phase == Phase::Stalled && p.waits.is_some_and(|(_, give_up)| give_up <= now)
        })?;
        p.phase = Phase::GivenUp;
        Some(p.purpose.clone())
    }

    /// Whether a walk's hole punch to `peer` is in flight.
    pub(crate) fn punching(&self, peer: SocketAddrV4) -> bool {
        self.inflight
            .iter()
            .any(|p| matches!(p.purpose, Purpose::QueryPunch { node, .. } if node.addr == peer))
    }

    /// The request that a response with `tid` from `from` answers.
    pub(crate) fn take(&mut self, tid: Tid, from: SocketAddrV4) -> Option<Pending> {
        let pos = self
            .inflight
            .iter()
            .position(|p| p.has_tid(tid) && p.accepts(from))?;
        let p = self.inflight.swap_remove(pos);
        self.remember(&p);
        self.shrink();
        Some(p)
    }

    /// Gives back the room of a burst of requests: half of it once a quarter is in use (so
    /// that a steady load does not reallocate back and forth), and the queue's once empty.
    fn shrink(&mut self) {
        let (len, room) = (self.inflight.len(), self.inflight.capacity());
        if room > 4 && len <= room / 4 {
            self.inflight.shrink_to((room / 2).max(4));
        }
        if self.queue.is_empty() && self.queue.capacity() > 4 {
            self.queue = VecDeque::new();
        }
    }

    /// Keeps the tids of a request that left (see `done`).
    fn remember(&mut self, p: &Pending) {
        let ip = *p.reply_from.ip();
        for tid in std::iter::once(p.tid).chain(p.resent.map(|(t, _)| t)) {
            if self.done.len() >= DONE_KEPT {
                self.done.pop_front();
            }
            self.done.push_back((tid, ip));
        }
    }

    /// Whether a response with `tid` from `ip` answers a request of ours that was answered
    /// or timed out lately (a repeated or late answer, not a guess).
    pub(crate) fn was_ours(&self, tid: Tid, ip: std::net::Ipv4Addr) -> bool {
        self.done.iter().any(|d| *d == (tid, ip))
    }

    /// Where the request with `tid` that went straight to `to` (not a relayed hole punch)
    /// sits: the one an ICMP error about a datagram we sent to `to` is about.
    fn sent_to(&self, tid: Tid, to: SocketAddrV4) -> Option<usize> {
        self.inflight
            .iter()
            .position(|p| p.has_tid(tid) && p.direct() && p.reply_from == to)
    }

    /// Takes the request with `tid` sent straight to `to` (see [`Requests::sent_to`]).
    pub(crate) fn take_sent_to(&mut self, tid: Tid, to: SocketAddrV4) -> Option<Pending> {
        let pos = self.sent_to(tid, to)?;
        Some(self.inflight.swap_remove(pos))
    }

    /// The query-round request with `tid` sent straight to `to` was refused: if it still
    /// takes a slot, it stalls now (without a resend, which would only be refused again)
    /// and is given up `give_up` from now at the latest. Its purpose, when it stalled.
    pub(crate) fn stall_refused(
        &mut self,
        tid: Tid,
        to: SocketAddrV4,
        now: Instant,
        give_up: Duration,
    ) -> Option<Purpose> {
        let pos = self.sent_to(tid, to)?;
        let p = &mut self.inflight[pos];
        let (Phase::Active, Some((_, later)), Purpose::Query { commit: false, .. }) =
            (p.phase, p.waits, &p.purpose)
        else {
            return None;
        };
        p.phase = Phase::Stalled;
        p.resend = None;
        p.waits = Some((now, later.min(now + give_up)));
        Some(p.purpose.clone())
    }

    /// A request whose deadline has passed.
    pub(crate) fn expire(&mut self, now: Instant) -> Option<Pending> {
        let pos = self.inflight.iter().position(|p| p.deadline <= now)?;
        let p = self.inflight.swap_remove(pos);
        self.remember(&p);
        self.shrink();
        Some(p)
    }

    /// The earliest deadline in flight (a stall or a timeout).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.inflight
            .iter()
            .map(|p| match (p.phase, p.waits) {
                (Phase::Active, Some((stall, _))) => stall.min(p.deadline),
                (Phase::Stalled, Some((_, give_up))) => give_up.min(p.deadline),
                _ => p.deadline,
            })
            .min()
    }

    /// Everything in flight or queued, removed.
    pub(crate) fn drain(&mut self) -> Vec<Purpose> {
        let mut out: Vec<Purpose> = self.inflight.drain(..).map(|p| p.purpose).collect();
        out.extend(self.queue.drain(..).map(|q| q.purpose));
        out
    }
}

#[cfg(test)]
mod tests {
    /// The tid of an encoded datagram.
    fn tid_of(encoded: &[u8]) -> Tid {
        Datagram::split_header(encoded).expect("a header").0
    }
    use super::*;
    use bytes::Bytes;
    use dht_wire::{FIND_NODE, PING};

    fn addr(port: u16) -> SocketAddrV4 {
        SocketAddrV4::new([127, 0, 0, 1].into(), port)
    }

    /// A walk's request (`commit`: of its commit round).
    fn walk(commit: bool) -> Purpose {
        Purpose::Query {
            query: QueryId(1),
            node: None,
            punched: false,
            commit,
        }
    }

    #[test]
    fn tids_never_run_out() {
        let t = Instant::now();
        let timeout = Duration::from_secs(10);
        let waits = Some(Waits {
            stall: Duration::from_millis(1),
            give_up: Duration::from_secs(5),
        });
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1);
        let mut r = Requests::new(usize::MAX, usize::MAX, timeout);
        let n = MAX_CONCURRENCY * STALLED_PER_SLOT;
        for i in 0..n {
            let to = SocketAddrV4::new([10, 0, (i >> 8) as u8, i as u8].into(), 1);
            r.submit(to, to, Request::new(FIND_NODE), walk(false), waits)
                .expect("room");
        }
        // Every request goes out, stalls and is sent again: two tids each, all in flight.
        let mut tids = std::collections::HashSet::new();
        let mut at = t;
        for _ in 0..STALLED_PER_SLOT {
            while let Some((_, d)) = r.send_next(at, &mut rng) {
                assert!(tids.insert(tid_of(&d)), "a tid in use");
            }
            at += Duration::from_millis(2);
            while let Some((_, again)) = r.stall_due(at, &mut rng) {
                let (_, d) = again.expect("resent");
                assert!(tids.insert(tid_of(&d)), "a tid in use");
            }
        }
        assert_eq!(r.inflight.len(), n);
        assert_eq!(tids.len(), 2 * n, "every copy has its own tid");
    }

    #[test]
    fn walk_requests_stall_at_their_rto_and_are_sent_once_more() {
        let t = Instant::now();
        let timeout = Duration::from_millis(1000);
        let rto = Some(Waits {
            stall: Duration::from_millis(100),
            give_up: Duration::from_millis(300),
        });
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1);
        let mut r = Requests::new(2, 16, timeout);
        let query = |token: Option<Bytes>| Request {
            roundtrip_token: token,
            ..Request::new(FIND_NODE)
        };
        r.submit(addr(1), addr(1), query(None), walk(false), rto)
            .expect("room");
        let commit = query(Some(Bytes::from_static(b"t")));
        r.submit(addr(2), addr(2), commit, walk(true), rto)
            .expect("room");
        let ping = Purpose::Ping(RequestId(1));
        r.submit(addr(3), addr(3), Request::new(PING), ping, None)
            .expect("room");
        let first: Vec<_> = std::iter::from_fn(|| r.send_next(t, &mut rng)).collect();
        assert_eq!(first.len(), 2, "two slots");
        assert_eq!(r.next_deadline(), Some(t + Duration::from_millis(100)));
        assert!(
            r.stall_due(t + Duration::from_millis(99), &mut rng)
                .is_none()
        );
        let at = t + Duration::from_millis(100);
        let mut stalled: Vec<_> = std::iter::from_fn(|| r.stall_due(at, &mut rng)).collect();
        assert_eq!(stalled.len(), 2);
        let (_, again) = stalled.remove(0);
        let (to, again) = again.expect("the query round's request goes again");
        let again = Datagram::decode(&again).expect("a datagram");
        let first0 = Datagram::decode(&first[0].1).expect("a datagram");
        assert_eq!(to, addr(1));
        assert_eq!(again.message, first0.message, "the same request");
        assert_ne!(again.tid, first0.tid, "under a tid of its own");
        assert!(stalled.remove(0).1.is_none(), "never a commit");
        assert!(r.stall_due(at, &mut rng).is_none(), "once");
        assert!(
            r.send_next(at, &mut rng).is_some(),
            "stalled requests free their slots"
        );
        let give_up = t + Duration::from_millis(300);
        assert_eq!(
            r.next_deadline(),
            Some(give_up),
            "given up at its give-up time"
        );
        assert!(r.give_up_due(give_up).is_some());
        assert!(r.give_up_due(give_up).is_some(), "the commit too");
        assert!(r.give_up_due(give_up).is_none());
        assert_eq!(
            r.next_deadline(),
            Some(t + timeout),
            "then failed at the timeout"
        );
        let tid = first0.tid;
        let p = r
            .take(again.tid, addr(1))
            .expect("a late answer is still taken");
        assert!(p.phase == Phase::GivenUp && p.resent.is_some());
        assert_eq!(
            p.round_trip(again.tid, give_up),
            Duration::from_millis(200),
            "timed from the copy it names"
        );
        assert_eq!(p.round_trip(tid, give_up), Duration::from_millis(300));
        assert!(
            r.take(tid, addr(1)).is_none(),
            "the other copy's answer is unknown"
        );
    }
}
