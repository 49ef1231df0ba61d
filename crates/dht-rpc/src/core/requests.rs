//! The requests of one node: transaction ids, the requests in flight (at most
//! `concurrency`), the queue behind them, and timeouts.
//!
//! A response matches a request by its transaction id *and* the address it must come from:
//! the address the request went to, or for a hole punch the punched peer's IP (any port: a
//! symmetric NAT answers from a new one). The reference matches by tid alone, which lets
//! anyone who guesses 15 bits answer in a node's name.

use std::collections::VecDeque;
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use dht_wire::{Datagram, NodeAddr, NodeId, Request, Tid};

use crate::events::{QueryId, RequestId};
use crate::routing::Contact;

/// Why a request was sent: what to do with its answer or failure.
#[derive(Debug, Clone)]
pub(crate) enum Purpose {
    /// A user's ping.
    Ping(RequestId),
    /// A user's hole punch.
    Holepunch(RequestId),
    /// A query's request to a node (`node` is `None` for a bootstrap node). `punched`: it
    /// is already the retry after a hole punch (or needs none).
    Query {
        query: QueryId,
        node: Option<NodeId>,
        punched: bool,
    },
    /// A hole punch through a referrer, inside a query, before retrying `node`.
    QueryPunch { query: QueryId, node: NodeAddr },
    /// The liveness sweep.
    Check(NodeId),
    /// A ping to a requester we do not know: its answer lets it into the routing table.
    Verify(SocketAddrV4),
    /// A reachability probe: a hole-punch ping to `peer` through the node that named it.
    ReachProbe { peer: SocketAddrV4 },
    /// A `_find_node` to a contact, for reachability targets.
    ReachFind,
    /// A direct ping to a probe's `peer` after its relayed pong never came.
    ReachConfirm { peer: SocketAddrV4 },
    /// Pinging a full bucket's stale contacts to make room for `newcomer`.
    Reping {
        contact: NodeId,
        rest: VecDeque<Contact>,
        newcomer: NodeAddr,
    },
}

/// A request in flight.
#[derive(Debug)]
pub(crate) struct Pending {
    tid: Tid,
    reply_from: SocketAddrV4,
    pub(crate) sent: Instant,
    deadline: Instant,
    /// A query's request is sent once more, unchanged, if no answer came by this time.
    resend: Option<(Instant, SocketAddrV4, Datagram)>,
    pub(crate) purpose: Purpose,
}

impl Pending {
    /// Whether a response from `from` may answer this request: it must come from the
    /// address the request went to; the pong of a hole punch must come from the punched
    /// peer's IP, on any port, because a symmetric NAT in front of the peer gives its answer
    /// to us a new external port.
    fn accepts(&self, from: SocketAddrV4) -> bool {
        match self.purpose {
            Purpose::Holepunch(_) | Purpose::QueryPunch { .. } | Purpose::ReachProbe { .. } => {
                self.reply_from.ip() == from.ip()
            }
            _ => self.reply_from == from,
        }
    }
}

#[derive(Debug)]
struct Queued {
    to: SocketAddrV4,
    reply_from: SocketAddrV4,
    request: Request,
    purpose: Purpose,
}

#[derive(Debug)]
pub(crate) struct Requests {
    next_tid: Tid,
    concurrency: usize,
    max_queued: usize,
    timeout: Duration,
    inflight: Vec<Pending>,
    queue: VecDeque<Queued>,
}

impl Requests {
    pub(crate) fn new(
        first_tid: u16,
        concurrency: usize,
        max_queued: usize,
        timeout: Duration,
    ) -> Self {
        Requests {
            next_tid: Tid::from_masked(first_tid),
            concurrency: concurrency.max(1),
            max_queued,
            timeout,
            inflight: Vec::new(),
            queue: VecDeque::new(),
        }
    }

    /// Queues a request; gives the purpose back when the queue is full.
    pub(crate) fn submit(
        &mut self,
        to: SocketAddrV4,
        reply_from: SocketAddrV4,
        request: Request,
        purpose: Purpose,
    ) -> Result<(), Purpose> {
        if self.queue.len() >= self.max_queued {
            return Err(purpose);
        }
        self.queue.push_back(Queued {
            to,
            reply_from,
            request,
            purpose,
        });
        Ok(())
    }

    fn allocate_tid(&mut self) -> Tid {
        loop {
            let tid = self.next_tid;
            self.next_tid = tid.next();
            if !self.inflight.iter().any(|p| p.tid == tid) {
                return tid;
            }
        }
    }

    /// The next queued request, if there is room in flight: where to send it, and what.
    pub(crate) fn send_next(&mut self, now: Instant) -> Option<(SocketAddrV4, Datagram)> {
        if self.inflight.len() >= self.concurrency {
            return None;
        }
        let q = self.queue.pop_front()?;
        let tid = self.allocate_tid();
        // A walk waits for its closest candidates: one lost datagram would otherwise cost
        // it the whole timeout and a hole punch. So a query-round request (no token: never
        // an update, whose handler may not be idempotent) goes out once more after half the
        // timeout. (The reference sends once; a node answers a repeated request again, and
        // the second answer is dropped as unknown.)
        let resend_ok =
            matches!(q.purpose, Purpose::Query { .. }) && q.request.roundtrip_token.is_none();
        let datagram = Datagram::request(tid, q.request);
        let resend = resend_ok.then(|| (now + self.timeout / 2, q.to, datagram.clone()));
        self.inflight.push(Pending {
            tid,
            reply_from: q.reply_from,
            sent: now,
            deadline: now + self.timeout,
            resend,
            purpose: q.purpose,
        });
        Some((q.to, datagram))
    }

    /// A request due to be sent again.
    pub(crate) fn resend_due(&mut self, now: Instant) -> Option<(SocketAddrV4, Datagram)> {
        let p = self
            .inflight
            .iter_mut()
            .find(|p| p.resend.as_ref().is_some_and(|(at, _, _)| *at <= now))?;
        p.resend.take().map(|(_, to, d)| (to, d))
    }

    /// The request that a response with `tid` from `from` answers.
    /// Whether a request to `to` is in flight or queued: its answer will tell us about `to`
    /// anyway.
    pub(crate) fn pending_to(&self, to: SocketAddrV4) -> bool {
        self.inflight.iter().any(|p| p.reply_from == to) || self.queue.iter().any(|q| q.to == to)
    }

    pub(crate) fn take(&mut self, tid: Tid, from: SocketAddrV4) -> Option<Pending> {
        let pos = self
            .inflight
            .iter()
            .position(|p| p.tid == tid && p.accepts(from))?;
        Some(self.inflight.swap_remove(pos))
    }

    /// A request whose deadline has passed.
    pub(crate) fn expire(&mut self, now: Instant) -> Option<Pending> {
        let pos = self.inflight.iter().position(|p| p.deadline <= now)?;
        Some(self.inflight.swap_remove(pos))
    }

    /// The earliest deadline in flight.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.inflight
            .iter()
            .map(|p| p.resend.as_ref().map_or(p.deadline, |(at, _, _)| *at))
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
    use super::*;
    use bytes::Bytes;
    use dht_wire::{FIND_NODE, PING};

    fn addr(port: u16) -> SocketAddrV4 {
        SocketAddrV4::new([127, 0, 0, 1].into(), port)
    }

    #[test]
    fn query_round_requests_are_sent_once_more_at_half_the_timeout() {
        let t = Instant::now();
        let timeout = Duration::from_millis(1000);
        let mut r = Requests::new(1, 16, 16, timeout);
        let query = |token: Option<Bytes>| Request {
            roundtrip_token: token,
            ..Request::new(FIND_NODE)
        };
        let purpose = Purpose::Query {
            query: QueryId(1),
            node: None,
            punched: false,
        };
        r.submit(addr(1), addr(1), query(None), purpose.clone())
            .expect("room");
        r.submit(
            addr(2),
            addr(2),
            query(Some(Bytes::from_static(b"t"))),
            purpose,
        )
        .expect("room");
        r.submit(
            addr(3),
            addr(3),
            Request::new(PING),
            Purpose::Ping(RequestId(1)),
        )
        .expect("room");
        let first: Vec<_> = std::iter::from_fn(|| r.send_next(t)).collect();
        assert_eq!(first.len(), 3);
        assert_eq!(r.next_deadline(), Some(t + timeout / 2));
        assert!(r.resend_due(t + timeout / 4).is_none());
        let (to, again) = r.resend_due(t + timeout / 2).expect("resend");
        assert_eq!(
            to,
            addr(1),
            "only the query round's request, not the commit or the ping"
        );
        assert_eq!(again, first[0].1, "the same datagram, same tid");
        assert!(r.resend_due(t + timeout / 2).is_none(), "once");
        assert_eq!(r.next_deadline(), Some(t + timeout));
    }
}
