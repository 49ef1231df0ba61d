//! Walks: the queries the application starts (and the table's own: bootstrap, bucket
//! refresh), from their first candidates to their last answer. The state of one walk is
//! [`QueryState`] (pure, in `query.rs`); here the core seeds it, sends what it asks, feeds it
//! each answer and failure, and reports its replies and its end. Its role decides what
//! follows the end: the first bootstrap walk makes the node ready, the table's own walks
//! start a reachability round, and a bootstrap walk refreshes the empty buckets.

use std::collections::VecDeque;
use std::net::SocketAddrV4;
use std::time::Instant;

use bytes::Bytes;
use dht_wire::{Checked, FIND_NODE, NodeAddr, Request, Response};
use rand::Rng;

use super::{Core, Purpose};
use crate::events::{Event, QueryId, RequestError};
use crate::handler::Handler;
use crate::query::{QuerySpec, QueryState, Role, Sent};

use super::requests::Phase;

/// Tokens of answering nodes kept for relayed hole punches: a lookup's punches go through
/// the few nodes that stored the announce, soon after the lookup. Only the application's
/// queries keep them (the node's own walks do not), so a node that looks nothing up keeps
/// none.
const TOKENS_KEPT: usize = 16;

impl<H: Handler> Core<H> {
    /// Starts a query or update; [`Event::QueryReply`]s then one [`Event::QueryDone`] follow.
    pub fn query(&mut self, now: Instant, spec: QuerySpec) -> QueryId {
        self.query_seeded(now, spec, Role::App)
    }

    /// A walk in `role`. The table's own walks always ask the bootstrap nodes too (the
    /// entry nodes hear from everyone, so they bridge regions of the id space that lost
    /// sight of each other). The role takes effect once the walk's first requests are out:
    /// its first round skips no node a reachability probe waits on (as the table's later
    /// rounds do), and a walk that ends at once (nothing to ask) has no aftermath.
    pub(super) fn query_seeded(&mut self, now: Instant, spec: QuerySpec, role: Role) -> QueryId {
        self.next_query += 1;
        let qid = QueryId(self.next_query);
        let mut q = QueryState::new(spec, self.id, self.config.k, self.config.concurrency);
        q.started = Some(now);
        q.span = tracing::debug_span!(
            "query",
            id = qid.0,
            command = %q.spec.command,
            target = %q.spec.target,
            update = q.spec.update
        );
        q.span
            .in_scope(|| tracing::debug!(contacts = self.table.len(), "started"));
        let seeds = self.table.closest(&q.spec.target, self.config.k);
        let use_bootstrap = role.is_own() || seeds.len() < self.config.bootstrap.len();
        for n in seeds {
            q.add_candidate(n, None);
        }
        let mut extra = Vec::new();
        if use_bootstrap {
            for addr in self.config.bootstrap.clone() {
                q.on_extra_send();
                extra.push(addr);
            }
        }
        let request = self.query_request(&q, None);
        self.queries.insert(qid, Box::new(q));
        for addr in extra {
            let purpose = Purpose::Query {
                query: qid,
                node: None,
                punched: true,
                commit: false,
            };
            self.send(now, addr, addr, request.clone(), purpose);
        }
        self.pump_query(now, qid);
        if let Some(q) = self.queries.get_mut(&qid) {
            q.role = role;
        }
        qid
    }

    /// Re-bootstraps: a `_find_node` query for our own id through the bootstrap nodes. The
    /// first one to finish makes the node ready ([`Event::Ready`]).
    pub fn bootstrap(&mut self, now: Instant) -> QueryId {
        let readies = !self.bootstrapped && !self.queries.values().any(|q| q.role.readies());
        let spec = QuerySpec::query(FIND_NODE, self.id, None);
        let qid = self.query_seeded(now, spec, Role::Bootstrap { readies });
        if !self.queries.contains_key(&qid) {
            // Nothing to ask (no contacts, no bootstrap nodes): done at once.
            self.mark_ready();
        }
        qid
    }

    /// Stops a query: no more replies are reported and no more requests sent for it.
    pub fn cancel_query(&mut self, query: QueryId) {
        let Some(q) = self.queries.remove(&query) else {
            return;
        };
        if q.role.readies() {
            self.mark_ready();
        }
    }

    pub(super) fn query_request(&self, q: &QueryState, token: Option<Bytes>) -> Request {
        Request {
            id: self.wire_id(),
            target: Some(Checked::Valid(q.spec.target)),
            roundtrip_token: token,
            value: q.spec.value.clone(),
            ..Request::new(q.spec.command.clone())
        }
    }

    /// Sends what the query wants to send, or finishes it.
    pub(super) fn pump_query(&mut self, now: Instant, qid: QueryId) {
        let Some(q) = self.queries.get_mut(&qid) else {
            return;
        };
        let sends = q.next_sends();
        if sends.is_empty() && q.is_done() {
            let result = q.finish();
            let Some(q) = self.queries.remove(&qid) else {
                return;
            };
            if let Some(started) = q.started {
                let took = now.saturating_duration_since(started);
                self.stats.query_done(result.is_ok(), took);
                q.span.in_scope(|| match &result {
                    Ok(o) => tracing::debug!(
                        ms = took.as_millis() as u64,
                        responses = o.responses,
                        errors = o.errors,
                        closest = o.closest.len(),
                        commits = o.commits,
                        "done"
                    ),
                    Err(e) => tracing::debug!(ms = took.as_millis() as u64, error = %e, "failed"),
                });
            }
            self.events
                .push_back(Event::QueryDone { query: qid, result });
            self.after_walk(now, &q);
            return;
        }
        let own_walk = q.role.is_own();
        let mut skipped = false;
        for s in sends {
            if own_walk && self.reach.is_probing(s.addr) {
                // Our own maintenance walk would open our NAT to a node whose relayed pong
                // we are waiting for, and spoil the probe: it asks the next candidate.
                if let Some(q) = self.queries.get_mut(&qid) {
                    q.unsend(s.id);
                }
                skipped = true;
                continue;
            }
            let Some(q) = self.queries.get(&qid) else {
                return;
            };
            let commit = s.token.is_some();
            let req = self.query_request(q, s.token);
            let purpose = Purpose::Query {
                query: qid,
                node: s.id,
                punched: false,
                commit,
            };
            self.send(now, s.addr, s.addr, req, purpose);
        }
        if skipped {
            self.pump_query(now, qid);
        }
    }

    /// Looks up a random id in the (first three) buckets we know nobody in, below the
    /// deepest one that holds contacts, so that the routing table covers the whole id space. A bootstrap walk
    /// only meets nodes near our own id, and the reference's tables stay that way: a lookup
    /// from a node that knows no one in the target's half may then never get there.
    pub(super) fn refresh_buckets(&mut self, now: Instant) {
        // The lowest buckets cover the most of the id space; deeper ones are often empty
        // for good (few nodes share that many bits with us), so a few suffice.
        for i in self.table.empty_buckets().into_iter().take(3) {
            let target = self.table.id_in_bucket(i, self.rng.random());
            self.query_seeded(
                now,
                QuerySpec::query(FIND_NODE, target, None),
                Role::Refresh,
            );
        }
    }

    /// What a finished walk's role starts: the first bootstrap makes the node ready (and
    /// schedules its maintenance); the table's own walks start a reachability round; a
    /// bootstrap refreshes the empty buckets.
    fn after_walk(&mut self, now: Instant, q: &QueryState) {
        if q.role.readies() {
            self.mark_ready();
            self.maintain(now);
        }
        if q.role.is_own() {
            let probes = self.reach_targets(now, q);
            self.start_reach_round(now, probes);
        }
        if let Role::Bootstrap { .. } = q.role {
            self.refresh_buckets(now);
        }
    }

    pub(super) fn mark_ready(&mut self) {
        if !self.bootstrapped {
            self.bootstrapped = true;
            self.events.push_back(Event::Ready);
        }
    }

    /// An answer to a walk's request: its closer nodes become candidates (within the
    /// defences' limits), the application's walks keep the node's token for relayed hole
    /// punches, and a reply with the node's id is reported.
    pub(super) fn on_walk_answer(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        query: QueryId,
        sent: Sent,
        res: Response,
    ) {
        let closer = self.admit_candidates(now, from, query, res.closer_nodes());
        let Some(q) = self.queries.get_mut(&query) else {
            return;
        };
        let id = res.sender_id();
        let commit = sent.commit;
        let token = res.roundtrip_token.as_ref();
        let kept = token.and_then(|t| <[u8; 32]>::try_from(&t[..]).ok());
        if let Some(t) = kept.filter(|_| q.role == Role::App) {
            keep_token(&mut self.tokens_from, from, t);
        }
        let report = q.on_response(sent, from, id, token, &closer);
        if let (true, Some(id)) = (report, id) {
            let reply = crate::events::Reply {
                node: NodeAddr { id, addr: from },
                value: res.value,
                commit,
            };
            self.events.push_back(Event::QueryReply { query, reply });
        }
        self.pump_query(now, query);
    }

    /// A walk's request to `to` failed (`phase`: how far it had got; a given-up one's walk
    /// stopped waiting for it).
    pub(super) fn on_walk_failure(
        &mut self,
        now: Instant,
        query: QueryId,
        sent: Sent,
        error: RequestError,
        to: SocketAddrV4,
        phase: Phase,
    ) {
        let node = sent.node;
        if let Some(q) = self.queries.get_mut(&query)
            && phase != Phase::GivenUp
        {
            q.on_failure(sent);
        }
        // Silent: dead, unless a hole punch (sent when it stalled) may still show it is
        // only behind a NAT. Nothing listening is dead whatever a punch says.
        let timeout = matches!(error, RequestError::Timeout | RequestError::Unreachable);
        let refused = error == RequestError::Unreachable;
        if timeout && node.is_some() && (refused || !self.requests.punching(to)) {
            self.mark_dead(now, node, to);
        }
        self.pump_query(now, query);
    }
}

/// Keeps `from`'s token, newest last, at most [`TOKENS_KEPT`] (a node's token replaces its
/// older one).
fn keep_token(kept: &mut VecDeque<(SocketAddrV4, [u8; 32])>, from: SocketAddrV4, t: [u8; 32]) {
    kept.retain(|(a, _)| *a != from);
    if kept.len() >= TOKENS_KEPT {
        kept.pop_front();
    }
    kept.push_back((from, t));
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{Config, Maintenance};
    use crate::handler::NoHandler;

    /// A walk's role goes with it: cancelling the first bootstrap makes the node ready and
    /// leaves no own walk behind to hold off the maintenance's re-bootstraps (the side set
    /// that held the table's own walks once kept a cancelled one for good).
    #[test]
    fn a_cancelled_bootstrap_readies_the_node_and_leaves_maintenance_running() {
        let t = Instant::now();
        let minute = Duration::from_secs(60);
        let config = Config {
            bootstrap: vec!["192.0.2.1:49737".parse().expect("addr")],
            maintenance: Some(Maintenance::every(minute, minute)),
            ..Config::default()
        };
        let mut core: Core<NoHandler> = Core::new(config, t);
        let q = core.bootstrap(t);
        assert_eq!(core.active_queries(), 1);
        core.cancel_query(q);
        assert_eq!(core.active_queries(), 0);
        let ready = std::iter::from_fn(|| core.poll_event()).any(|e| matches!(e, Event::Ready));
        assert!(ready, "the cancelled first bootstrap readies the node");
        // The first timeout schedules the maintenance; a minute later it re-bootstraps.
        core.handle_timeout(t + Duration::from_secs(1));
        assert_eq!(core.stats().rebootstraps, 0);
        core.handle_timeout(t + Duration::from_secs(62));
        assert_eq!(core.stats().rebootstraps, 1);
        assert_eq!(core.active_queries(), 1, "the re-bootstrap walks");
    }
}
