//! Walks that do not wait on the dead: what happens when a walk's request stalls (passes
//! its expected round trip without an answer), when a hole punch opens the way to a silent
//! candidate, and when a node is found dead.
//!
//! A stalled request frees its slot at once, so the walk asks its next candidate; its late
//! answer still counts, and while the candidate is among the closest the walk does not end
//! before the request is given up (two RTOs after it was sent, or later for a node we never
//! heard from: see [`crate::rtt`]). If the silent candidate was named by another node and
//! never answered us directly, it may sit behind a NAT that
//! only lets in hosts it wrote to: we then ask the node that named it to relay a ping (a
//! hole punch), which takes no slot of the walk, and ask the candidate again if its pong
//! comes while the walk runs. A candidate that answered us directly before is never punched
//! (it is slow, lossy or gone, not behind a NAT that keeps us out). A candidate that answers
//! neither way is dead: it leaves the routing table and walks do not take it from others'
//! answers for a while (see [`crate::dead`]). An ICMP port-unreachable from a stranger
//! stalls the request it names at once ([`Core::handle_unreachable`]).

use std::net::SocketAddrV4;
use std::time::Instant;

use dht_wire::{Datagram, NodeAddr, NodeId};

use super::Core;
use super::requests::Purpose;
use crate::events::{QueryId, RequestError};
use crate::handler::Handler;
use crate::query::Sent;

impl<H: Handler> Core<H> {
    /// An ICMP port-unreachable came back for a datagram we sent to `to`; `quoted` is the start
    /// of that datagram as the error quotes it (its transaction id).
    ///
    /// - If `to` answered us directly before, the request it was (same transaction id, sent
    ///   straight to `to`) fails at once, as a timeout would: the process there is gone (or
    ///   our way in closed), so its node is dead.
    /// - If `to` never answered us, the refusal may come from a NAT or firewall in front of
    ///   it that refuses strangers (a Linux NAT answers so for a port it has no mapping for)
    ///   until the node writes to us. A walk's request then stalls at once (the hole punch
    ///   through the node that named it goes now) and is given up two RTOs later, not after
    ///   the tail of round trips; other requests (a hole punch's own pings among them) wait
    ///   as before.
    ///
    /// Anything else is ignored and counted (`Stats::icmp_ignored`): an error about a request
    /// already answered or about a response of ours, or one forged by someone who would
    /// have to guess the transaction id, as for a forged response.
    pub fn handle_unreachable(&mut self, now: Instant, to: SocketAddrV4, quoted: &[u8]) {
        // Only a request of ours can be failed (a refused answer of ours matches nothing).
        let Some((tid, true, _)) = Datagram::split_header(quoted) else {
            self.stats.icmp_ignored += 1;
            return;
        };
        if self.rtts.of(to).is_none() {
            let rto = self
                .rtts
                .rto(to, self.config.rto_floor, self.config.request_timeout);
            match self.requests.stall_refused(tid, to, now, rto * 2) {
                Some(purpose) => {
                    self.stats.refused_strangers += 1;
                    self.stats.stalled += 1;
                    self.on_stall(now, purpose);
                    self.flush_requests(now);
                }
                None => self.stats.icmp_ignored += 1,
            }
            return;
        }
        let Some(p) = self.requests.take_sent_to(tid, to) else {
            self.stats.icmp_ignored += 1;
            return;
        };
        self.stats.unreachable += 1;
        tracing::debug!(%to, "nothing listens there (ICMP port unreachable)");
        self.fail(now, p.purpose, RequestError::Unreachable, to, p.phase);
        self.flush_requests(now);
    }

    /// A request passed its RTO without an answer (it was just sent once more if it is a
    /// query-round request).
    pub(super) fn on_stall(&mut self, now: Instant, purpose: Purpose) {
        let Purpose::Query {
            query,
            node,
            punched,
            commit,
        } = purpose
        else {
            return;
        };
        let Some(q) = self.queries.get_mut(&query) else {
            return;
        };
        q.on_stall(Sent {
            node,
            commit,
            late: false,
        });
        // A punch can help only a candidate someone named that never answered us directly
        // (one that did is not behind a NAT that keeps us out: it is slow, lossy or gone).
        let punch = match node.and_then(|id| q.candidate(&id)) {
            Some(c) if !punched && !commit && self.rtts.of(c.addr).is_none() => {
                c.referrer.map(|r| {
                    (
                        NodeAddr {
                            id: c.id,
                            addr: c.addr,
                        },
                        r,
                    )
                })
            }
            _ => None,
        };
        if let Some((node, referrer)) = punch {
            let req = self.holepunch_request(node.addr, referrer);
            self.send(
                now,
                referrer,
                node.addr,
                req,
                Purpose::QueryPunch { query, node },
            );
        }
        self.pump_query(now, query);
    }

    /// A stalled request's walk stops waiting for it (its give-up time passed): if it was among
    /// the closest, the walk may now end without it.
    pub(super) fn on_give_up(&mut self, now: Instant, purpose: Purpose) {
        let Purpose::Query {
            query,
            node,
            commit,
            ..
        } = purpose
        else {
            return;
        };
        if let Some(q) = self.queries.get_mut(&query) {
            q.on_failure(Sent {
                node,
                commit,
                late: true,
            });
            self.pump_query(now, query);
        }
    }

    /// A walk's hole punch to `node` failed. (It took no slot of the walk.) Silent both
    /// directly and through the node that named it: unreachable for now, so our table
    /// should stop sending walks to it, and walks should not take it from others' answers.
    pub(super) fn on_punch_failure(&mut self, now: Instant, node: NodeAddr, error: RequestError) {
        if matches!(error, RequestError::Timeout | RequestError::Unreachable) {
            self.mark_dead(now, Some(node.id), node.addr);
        }
    }

    /// A walk's hole punch to `node` got its pong: ask it again, unless it answered
    /// meanwhile (its first request was only slow) or the walk is over.
    pub(super) fn on_punched(&mut self, now: Instant, query: QueryId, node: NodeAddr) {
        let Some(q) = self.queries.get_mut(&query) else {
            return;
        };
        if q.committing || q.candidate(&node.id).is_none_or(|c| c.answered) {
            self.pump_query(now, query);
            return;
        }
        q.on_retry(node.id);
        let Some(q) = self.queries.get(&query) else {
            return;
        };
        let req = self.query_request(q, None);
        let purpose = Purpose::Query {
            query,
            node: Some(node.id),
            punched: true,
            commit: false,
        };
        self.send(now, node.addr, node.addr, req, purpose);
    }

    /// `addr` did not answer: out of the routing table (if `id` is there at that address),
    /// and out of walks for a while.
    pub(super) fn mark_dead(&mut self, now: Instant, id: Option<NodeId>, addr: SocketAddrV4) {
        self.dead.mark(now, addr);
        self.rtts.forget(addr);
        if let Some(id) = id {
            self.remove_node_at(&id, addr);
        }
    }
}
