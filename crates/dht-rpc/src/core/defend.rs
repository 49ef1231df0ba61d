//! The core's side of the defences (see [`crate::guard`]): who may enter the routing table,
//! which named nodes a walk takes, what is never sent to ourselves, and the byte budget of
//! answers.

use std::net::SocketAddrV4;
use std::time::Instant;

use dht_wire::{NodeAddr, NodeId, RequestRef, ResponseRef, Tid};

use super::Core;
use crate::events::QueryId;
use crate::guard::dest;
use crate::handler::Handler;

impl<H: Handler> Core<H> {
    /// A request from `from` carried the id `id`: refresh it if the table has it there;
    /// otherwise ping it, and let it in only when it answers (a spoofed source never does).
    pub(super) fn heard_id(&mut self, now: Instant, id: NodeId, from: SocketAddrV4) {
        if !self.guard.cfg.verify_requesters {
            self.add_node(now, id, from);
            return;
        }
        if self.table.get(&id).is_some_and(|c| c.addr == from) {
            // A contact's id and address are public: only a source that proved lately that
            // it receives keeps it fresh (a spoofed one would keep a dead contact from the
            // liveness sweep's check). Otherwise the sweep asks it when it goes stale.
            if self.guard.vouched(*from.ip()) {
                self.add_node(now, id, from);
            }
            return;
        }
        // A request of ours to it is out: its answer adds it, and a ping would only take a
        // slot from the walk that sent that request.
        // One check per IP at a time: a host that never answers (its ports are many) holds
        // one, not all of them. Trusted IPs are exempt (a local network of many nodes).
        let trusted = self.guard.is_trusted(*from.ip());
        if !self.liveness.may_verify(from, trusted) || self.requests.pending_to(from) {
            return;
        }
        // Only a newcomer the table could take is worth a ping (a full bucket of fresh
        // contacts, or a full share for its IP, would refuse it anyway).
        let stale = super::liveness::stale_before(self.bootstrapped, now);
        if !self.table.could_take(&id, from, stale) {
            return;
        }
        if !self.guard.admit_verify(now, *from.ip()) {
            self.stats.verify_limited += 1;
            return;
        }
        self.liveness.start_verify(from);
        self.stats.verify_pings += 1;
        self.send_alive(now, from, super::liveness::Alive::Newcomer(from));
    }

    /// The nodes of `from`'s answer that query `query` may take as candidates: at most
    /// [`Defences::candidates_per_answer`] new ones, at most
    /// [`Defences::candidates_per_ip`] per IP in the whole walk (trusted IPs exempt), and
    /// none at a destination `from` may not make us send to.
    ///
    /// [`Defences::candidates_per_answer`]: crate::Defences::candidates_per_answer
    /// [`Defences::candidates_per_ip`]: crate::Defences::candidates_per_ip
    pub(super) fn admit_candidates(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        query: QueryId,
        named: &[NodeAddr],
    ) -> Vec<NodeAddr> {
        let Some(q) = self.queries.get(&query) else {
            return Vec::new();
        };
        let per_answer = self.guard.cfg.candidates_per_answer;
        let per_ip = self.guard.cfg.candidates_per_ip;
        let mut taken: Vec<NodeAddr> = Vec::new();
        let mut refused = 0;
        let mut dead = 0;
        for n in named {
            if q.candidate(&n.id).is_some() || taken.iter().any(|t| t.id == n.id) {
                continue;
            }
            if self.dead.is_dead(now, n.addr) {
                // It stopped answering us lately: others' tables may still name it.
                dead += 1;
                continue;
            }
            let ok = taken.len() < per_answer
                && dest::may_send_for(*from.ip(), n.addr).is_ok()
                && !self.is_self(n.addr)
                && (self.guard.is_trusted(*n.addr.ip())
                    || q.candidates_on(n.addr.ip())
                        + taken.iter().filter(|t| t.addr.ip() == n.addr.ip()).count()
                        < per_ip);
            if ok {
                taken.push(*n);
            } else {
                refused += 1;
            }
        }
        self.stats.candidates_refused += refused;
        self.stats.dead_skipped += dead;
        taken
    }

    /// Whether `to` is our own socket (as loopback or as others see us).
    pub(super) fn is_self(&self, to: SocketAddrV4) -> bool {
        Some(to.port()) == self.local_port
            && (to.ip().is_loopback() || to.ip().is_unspecified() || Some(to) == self.observed)
    }

    /// Sends `response` to `to` if its bytes fit the destination's response budget. It is
    /// encoded into the core's arena: no allocation per answer.
    pub(super) fn answer(
        &mut self,
        now: Instant,
        to: SocketAddrV4,
        tid: Tid,
        response: ResponseRef<'_>,
    ) {
        let len = response.encoded_len();
        if !self.guard.admit_response(now, *to.ip(), len) {
            self.stats.responses_limited += 1;
            return;
        }
        if self.arena.capacity() < len && !self.arena.try_reclaim(len) {
            // Answers split off the buffer are still in flight: a new buffer, and a bigger
            // one the next time (a quiet node keeps a small one).
            self.arena.reserve(self.arena_chunk.max(len));
            self.arena_chunk = (self.arena_chunk * 2).min(super::ANSWER_ARENA);
        }
        response.encode_into(tid, &mut self.arena);
        let payload = self.arena.split().freeze();
        self.stats.requests_answered += 1;
        self.transmit_encoded(now, to, payload);
    }

    /// Records that `from` showed it receives at its address (it answered a request of ours,
    /// or came back with our token).
    pub(super) fn proved(&mut self, now: Instant, from: SocketAddrV4) {
        self.guard.proven.insert(now, *from.ip());
    }
}

/// The sender id of a request, unless it is relayed (then it is the requester's, and the
/// address the relay's).
pub(super) fn direct_sender(req: &RequestRef<'_>) -> Option<NodeId> {
    match req.forward_response {
        None => req.sender_id(),
        Some(_) => None,
    }
}
