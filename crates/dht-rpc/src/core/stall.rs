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
//! answers for a while (see [`crate::dead`]).

use std::net::SocketAddrV4;
use std::time::Instant;

use dht_wire::{NodeAddr, NodeId};

use super::Core;
use super::requests::Purpose;
use crate::events::QueryId;
use crate::handler::Handler;
use crate::query::Sent;

impl<H: Handler> Core<H> {
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
