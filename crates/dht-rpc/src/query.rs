//! [`QueryState`]: the iterative closest-nodes walk of one query or update, as a pure state
//! machine. The core feeds it responses and failures and asks it what to send next.
//!
//! Candidates (nodes learned from routing table and responses) are kept sorted by exact XOR
//! distance to the target, at most 4k; the walk sends to the closest unqueried candidates, at
//! most `concurrency` at once, and ends when nothing is in flight and no unqueried candidate
//! is closer than the k-th closest node that answered. (The reference keeps only k
//! candidates, so nodes that are down crowd out live ones and its walks end short.) An
//! update then runs its commit round: the request again, with each node's roundtrip token,
//! to the k closest nodes that answered with an id and a token.

use std::net::SocketAddrV4;

use bytes::Bytes;
use dht_wire::{Distance, NodeAddr, NodeId};

use crate::events::{QueryError, QueryOutcome};

/// Candidates kept per k.
const CANDIDATES_PER_K: usize = 4;

/// What to query and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuerySpec {
    /// The command.
    pub command: String,
    /// The key.
    pub target: NodeId,
    /// The payload.
    pub value: Option<Bytes>,
    /// An update: a query round, then a commit round with roundtrip tokens.
    pub update: bool,
    /// For an update: report the query round's replies too (hyperdht's announce does).
    pub verbose: bool,
}

impl QuerySpec {
    /// A query of `command` for `target`.
    pub fn query(command: impl Into<String>, target: NodeId, value: Option<Bytes>) -> Self {
        QuerySpec {
            command: command.into(),
            target,
            value,
            update: false,
            verbose: false,
        }
    }

    /// An update of `command` for `target`.
    pub fn update(command: impl Into<String>, target: NodeId, value: Option<Bytes>) -> Self {
        QuerySpec {
            update: true,
            ..Self::query(command, target, value)
        }
    }
}

/// A node the walk may query.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    pub(crate) id: NodeId,
    pub(crate) addr: SocketAddrV4,
    distance: Distance,
    /// The node that told us about this one: a hole punch goes through it.
    pub(crate) referrer: Option<SocketAddrV4>,
    queried: bool,
    /// A request to it takes a slot of the walk (sent, neither answered, failed nor stalled).
    inflight: bool,
    /// A request to it stalled, and may still be answered: it no longer takes a slot, but
    /// while it is among the closest the walk does not end without it.
    stalled: bool,
    /// It answered.
    pub(crate) answered: bool,
}

/// Which of a query's requests an answer, a failure or a stall is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sent {
    /// The candidate asked; `None` for a bootstrap node.
    pub(crate) node: Option<NodeId>,
    /// A commit of the update round (it carried a token).
    pub(crate) commit: bool,
    /// It had stalled: it no longer held a slot of the walk.
    pub(crate) late: bool,
}

/// A node that answered with an id and a token.
#[derive(Debug, Clone)]
struct Closest {
    node: NodeAddr,
    distance: Distance,
    token: Bytes,
    sent: bool,
}

/// Where a query's request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Send {
    pub(crate) addr: SocketAddrV4,
    /// The node's id; `None` for a bootstrap node, which we know only by address.
    pub(crate) id: Option<NodeId>,
    /// The token to present: set in the commit round.
    pub(crate) token: Option<Bytes>,
}

/// Whose a walk is, which decides what follows its end (see `core/walk.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// The application's: the tokens of the nodes that answer it are kept, for relayed
    /// hole punches.
    App,
    /// A bootstrap walk for our own id; empty buckets are refreshed after it. `readies`: it
    /// is the first one, whose end (or cancel) makes the node ready.
    Bootstrap { readies: bool },
    /// A refresh of an empty bucket.
    Refresh,
}

impl Role {
    /// The routing table's own walk (a bootstrap or a refresh): it also asks the bootstrap
    /// nodes, a reachability round may follow it, and it sends nothing to a node that a
    /// reachability probe waits on.
    pub(crate) fn is_own(self) -> bool {
        self != Role::App
    }

    /// The first bootstrap walk: its end (or cancel) makes the node ready.
    pub(crate) fn readies(self) -> bool {
        self == Role::Bootstrap { readies: true }
    }
}

/// The state of one query.
#[derive(Debug)]
pub(crate) struct QueryState {
    pub(crate) spec: QuerySpec,
    own: NodeId,
    k: usize,
    concurrency: usize,
    candidates: Vec<Candidate>,
    closest: Vec<Closest>,
    pub(crate) inflight: usize,
    /// Requests in flight to bootstrap nodes (no id, so no distance: they may name anyone).
    extra_inflight: usize,
    pub(crate) committing: bool,
    responses: usize,
    commits: usize,
    errors: usize,
    /// When the query started (for its duration in the stats); set by the core.
    pub(crate) started: Option<std::time::Instant>,
    /// The query's tracing span (`query`, with its id, command and target): what is logged
    /// about the query is logged inside it.
    pub(crate) span: tracing::Span,
    /// Whose walk it is; set by the core.
    pub(crate) role: Role,
}

impl QueryState {
    pub(crate) fn new(spec: QuerySpec, own: NodeId, k: usize, concurrency: usize) -> Self {
        QueryState {
            spec,
            own,
            k: k.max(1),
            concurrency: concurrency.max(1),
            candidates: Vec::new(),
            closest: Vec::new(),
            inflight: 0,
            extra_inflight: 0,
            committing: false,
            responses: 0,
            commits: 0,
            errors: 0,
            started: None,
            span: tracing::Span::none(),
            role: Role::App,
        }
    }

    /// Adds a candidate, keeping the list sorted and at most k long.
    pub(crate) fn add_candidate(&mut self, node: NodeAddr, referrer: Option<SocketAddrV4>) {
        if node.id == self.own || self.candidates.iter().any(|c| c.id == node.id) {
            return;
        }
        let distance = node.id.distance(&self.spec.target);
        let pos = self.candidates.partition_point(|c| c.distance < distance);
        let cap = self.k * CANDIDATES_PER_K;
        if pos >= cap {
            return;
        }
        self.candidates.insert(
            pos,
            Candidate {
                id: node.id,
                addr: node.addr,
                distance,
                referrer,
                queried: false,
                inflight: false,
                stalled: false,
                answered: false,
            },
        );
        self.candidates.truncate(cap);
    }

    /// Candidates this query never sent to, with the node that named each, closest first.
    pub(crate) fn unqueried(&self) -> impl Iterator<Item = (NodeAddr, SocketAddrV4)> + '_ {
        self.candidates
            .iter()
            .filter(|c| !c.queried)
            .filter_map(|c| {
                let node = NodeAddr {
                    id: c.id,
                    addr: c.addr,
                };
                Some((node, c.referrer?))
            })
    }

    /// The nodes that answered with an id and a token, closest first.
    pub(crate) fn responders(&self) -> impl Iterator<Item = NodeAddr> + '_ {
        self.closest.iter().map(|c| c.node)
    }

    /// How many candidates the walk holds.
    pub(crate) fn candidate_count(&self) -> usize {
        self.candidates.len()
    }

    /// How many candidates sit on `ip`.
    pub(crate) fn candidates_on(&self, ip: &std::net::Ipv4Addr) -> usize {
        self.candidates.iter().filter(|c| c.addr.ip() == ip).count()
    }

    /// The candidate with this id.
    pub(crate) fn candidate(&self, id: &NodeId) -> Option<&Candidate> {
        self.candidates.iter().find(|c| c.id == *id)
    }

    /// The request `sent` no longer holds a slot (answered, failed or stalled).
    fn release(&mut self, sent: Sent) {
        if sent.late {
            // Its answer, or its final failure: nothing more to wait for.
            if let Some(c) = sent
                .node
                .and_then(|n| self.candidates.iter_mut().find(|c| c.id == n))
            {
                c.stalled = false;
            }
            return;
        }
        self.inflight = self.inflight.saturating_sub(1);
        match sent.node {
            None if !sent.commit => self.extra_inflight = self.extra_inflight.saturating_sub(1),
            None => {}
            Some(id) => {
                if let Some(c) = self.candidates.iter_mut().find(|c| c.id == id) {
                    c.inflight = false;
                }
            }
        }
    }

    /// Records a response to `sent`. `id` and `token` are the responder's; `closer` the
    /// nodes it returned. Returns whether the response is a reply to report.
    pub(crate) fn on_response(
        &mut self,
        sent: Sent,
        from: SocketAddrV4,
        id: Option<NodeId>,
        token: Option<&Bytes>,
        closer: &[NodeAddr],
    ) -> bool {
        self.release(sent);
        self.responses += 1;
        if let Some(c) = sent
            .node
            .and_then(|n| self.candidates.iter_mut().find(|c| c.id == n))
        {
            c.answered = true;
        }
        if sent.commit {
            self.commits += 1;
        } else if !self.committing {
            // (A straggler of the query round that answers once the commits went out
            // changes nothing: the closest set was settled without it.)
            if let (Some(id), Some(token)) = (id, token) {
                self.add_closest(NodeAddr { id, addr: from }, token.clone());
            }
            for n in closer {
                self.add_candidate(*n, Some(from));
            }
        }
        id.is_some() && (!self.spec.update || self.spec.verbose || sent.commit)
    }

    fn add_closest(&mut self, node: NodeAddr, token: Bytes) {
        if node.id == self.own {
            return;
        }
        if let Some(c) = self.closest.iter_mut().find(|c| c.node.id == node.id) {
            c.token = token;
            return;
        }
        let distance = node.id.distance(&self.spec.target);
        let pos = self.closest.partition_point(|c| c.distance < distance);
        if pos >= self.k {
            return;
        }
        self.closest.insert(
            pos,
            Closest {
                node,
                distance,
                token,
                sent: false,
            },
        );
        self.closest.truncate(self.k);
    }

    /// Records a failed request.
    pub(crate) fn on_failure(&mut self, sent: Sent) {
        self.release(sent);
        self.errors += 1;
    }

    /// `sent` stalled: it frees its slot, and a late answer still counts.
    pub(crate) fn on_stall(&mut self, sent: Sent) {
        self.release(sent);
        if let Some(c) = sent
            .node
            .and_then(|n| self.candidates.iter_mut().find(|c| c.id == n))
        {
            c.stalled = true;
        }
    }

    /// Takes back one of [`QueryState::next_sends`]'s requests that the core chose not to
    /// send (the node stays marked as asked, and counts as no error).
    pub(crate) fn unsend(&mut self, node: Option<NodeId>) {
        self.release(Sent {
            node,
            commit: false,
            late: false,
        });
    }

    /// A candidate is asked again (after a hole punch opened the way to it).
    pub(crate) fn on_retry(&mut self, node: NodeId) {
        if let Some(c) = self.candidates.iter_mut().find(|c| c.id == node) {
            c.inflight = true;
            c.stalled = false;
            self.inflight += 1;
        }
    }

    /// Whether no answer still to come could change the closest set: every candidate
    /// closer than the k-th closest answer (all of them, before k answered) was asked and
    /// is no longer awaited, and no bootstrap node is awaited.
    fn settled(&self) -> bool {
        self.extra_inflight == 0 && !self.awaits(|c| !c.queried || c.inflight || c.stalled)
    }

    /// Whether a candidate closer than the k-th closest answer (any, before k answered)
    /// is in the state `f` tells.
    fn awaits(&self, f: impl Fn(&Candidate) -> bool) -> bool {
        let kth = (self.closest.len() >= self.k).then(|| self.closest[self.k - 1].distance);
        self.candidates
            .iter()
            .take_while(|c| kth.is_none_or(|kth| c.distance < kth))
            .any(f)
    }

    /// The next requests to send, marking them in flight. When it returns nothing and
    /// nothing is in flight, the query is finished ([`QueryState::finish`]).
    pub(crate) fn next_sends(&mut self) -> Vec<Send> {
        let mut out = Vec::new();
        let mut free = self.concurrency.saturating_sub(self.inflight);
        if !self.committing {
            // Once k nodes answered, a candidate farther than the k-th of them cannot improve
            // the result.
            let kth = (self.closest.len() >= self.k).then(|| self.closest[self.k - 1].distance);
            for c in self.candidates.iter_mut().filter(|c| !c.queried) {
                if free == 0 || kth.is_some_and(|kth| c.distance >= kth) {
                    break;
                }
                c.queried = true;
                c.inflight = true;
                free -= 1;
                out.push(Send {
                    addr: c.addr,
                    id: Some(c.id),
                    token: None,
                });
            }
            // The commits go out as soon as the closest set is settled, while requests to
            // farther candidates may still be out.
            if out.is_empty() && self.spec.update && self.settled() {
                self.committing = true;
            }
        }
        if self.committing {
            for c in self.closest.iter_mut().filter(|c| !c.sent) {
                if free == 0 {
                    break;
                }
                c.sent = true;
                free -= 1;
                out.push(Send {
                    addr: c.node.addr,
                    id: Some(c.node.id),
                    token: Some(c.token.clone()),
                });
            }
        }
        self.inflight += out.len();
        out
    }

    /// Counts a request to a bootstrap node, sent outside [`QueryState::next_sends`].
    pub(crate) fn on_extra_send(&mut self) {
        self.inflight += 1;
        self.extra_inflight += 1;
    }

    /// Whether the walk is over: nothing in flight, and no stalled request to one of the
    /// closest candidates may still be answered (it is given up at its own timeout, a few
    /// round trips).
    pub(crate) fn is_done(&self) -> bool {
        self.inflight == 0 && (self.committing || !self.awaits(|c| c.stalled))
    }

    /// The result, once done.
    pub(crate) fn finish(&self) -> Result<QueryOutcome, QueryError> {
        if self.responses == 0 {
            return Err(QueryError::NoNodesResponded);
        }
        if self.committing && self.commits == 0 {
            return Err(QueryError::NoCloseNodesResponded);
        }
        Ok(QueryOutcome {
            closest: self.closest.iter().map(|c| c.node).collect(),
            responses: self.responses,
            commits: self.commits,
            errors: self.errors,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn node(i: u8, id: [u8; 32]) -> NodeAddr {
        NodeAddr {
            id: NodeId::from_bytes(id),
            addr: SocketAddrV4::new([10, 0, 0, i].into(), 1000 + u16::from(i)),
        }
    }

    /// A walk (an update, or a query) for the id 0 by the node 9.., with `k` and
    /// `concurrency`.
    fn walk(update: bool, k: usize, concurrency: usize) -> QueryState {
        let target = NodeId::from_bytes([0; 32]);
        let spec = if update {
            QuerySpec::update("put", target, None)
        } else {
            QuerySpec::query("_find_node", target, None)
        };
        QueryState::new(spec, NodeId::from_bytes([9; 32]), k, concurrency)
    }

    fn sent(n: NodeAddr, commit: bool) -> Sent {
        Sent {
            node: Some(n.id),
            commit,
            late: false,
        }
    }

    proptest! {
        #[test]
        fn candidates_stay_sorted_unique_and_bounded(ids in proptest::collection::vec(any::<[u8; 32]>(), 0..80), target in any::<[u8; 32]>()) {
            let target = NodeId::from_bytes(target);
            let mut q = QueryState::new(QuerySpec::query("_find_node", target, None), NodeId::from_bytes([0; 32]), 20, 16);
            for (i, id) in ids.iter().enumerate() {
                q.add_candidate(node(i as u8, *id), None);
                q.add_candidate(node(i as u8, *id), None);
            }
            prop_assert!(q.candidates.len() <= 80);
            prop_assert!(q.candidates.windows(2).all(|w| w[0].distance < w[1].distance));
            let mut all: Vec<NodeId> = ids.iter().map(|b| NodeId::from_bytes(*b)).filter(|id| *id != NodeId::from_bytes([0; 32])).collect();
            all.sort_by_key(|id| id.distance(&target));
            all.dedup();
            let got: Vec<NodeId> = q.candidates.iter().map(|c| c.id).collect();
            prop_assert_eq!(&got[..], &all[..all.len().min(80)]);
        }
    }

    #[test]
    fn an_update_commits_to_the_nodes_that_gave_tokens() {
        let mut q = walk(true, 20, 16);
        let a = node(1, [1; 32]);
        let b = node(2, [2; 32]);
        q.add_candidate(a, None);
        let sends = q.next_sends();
        assert_eq!(sends.len(), 1);
        assert!(!q.on_response(
            sent(a, false),
            a.addr,
            Some(a.id),
            Some(&Bytes::from_static(b"t")),
            &[b]
        ));
        let sends = q.next_sends();
        assert_eq!(
            sends,
            vec![Send {
                addr: b.addr,
                id: Some(b.id),
                token: None
            }]
        );
        // b answers without a token: it takes no part in the commit round.
        assert!(!q.on_response(sent(b, false), b.addr, Some(b.id), None, &[]));
        let sends = q.next_sends();
        assert!(q.committing);
        assert_eq!(
            sends,
            vec![Send {
                addr: a.addr,
                id: Some(a.id),
                token: Some(Bytes::from_static(b"t"))
            }]
        );
        assert!(
            q.on_response(sent(a, true), a.addr, Some(a.id), None, &[]),
            "commit replies are reported"
        );
        assert!(q.next_sends().is_empty());
        assert!(q.is_done());
        let out = q.finish().unwrap();
        assert_eq!((out.responses, out.commits), (3, 1));
    }

    #[test]
    fn failures_are_errors_and_no_response_is_an_error() {
        let mut q = walk(true, 20, 16);
        let a = node(1, [1; 32]);
        q.add_candidate(a, None);
        assert_eq!(q.next_sends().len(), 1);
        q.on_failure(sent(a, false));
        assert!(q.next_sends().is_empty());
        assert!(q.is_done());
        assert_eq!(q.finish(), Err(QueryError::NoNodesResponded));
    }

    #[test]
    fn a_stalled_request_frees_its_slot_and_its_late_answer_still_counts() {
        let mut q = walk(false, 20, 1);
        let (a, b, c) = (node(1, [1; 32]), node(2, [2; 32]), node(3, [3; 32]));
        q.add_candidate(a, None);
        q.add_candidate(b, None);
        assert_eq!(q.next_sends().len(), 1, "one slot");
        q.on_stall(sent(a, false));
        let next = q.next_sends();
        assert_eq!(next.len(), 1, "the stall freed the slot");
        assert_eq!(next[0].id, Some(b.id));
        let late = Sent {
            late: true,
            ..sent(a, false)
        };
        q.on_response(
            late,
            a.addr,
            Some(a.id),
            Some(&Bytes::from_static(b"t")),
            &[c],
        );
        assert_eq!(q.inflight, 1, "a late answer takes no slot back");
        q.on_response(
            sent(b, false),
            b.addr,
            Some(b.id),
            Some(&Bytes::from_static(b"t")),
            &[],
        );
        assert_eq!(
            q.next_sends()[0].id,
            Some(c.id),
            "the late answer's nodes are asked"
        );
        q.on_stall(sent(c, false));
        assert!(q.next_sends().is_empty());
        assert!(
            !q.is_done(),
            "a stalled one among the closest may still answer"
        );
        q.on_failure(Sent {
            late: true,
            ..sent(c, false)
        });
        assert!(q.is_done(), "given up: the walk ends without it");
        let out = q.finish().expect("done");
        assert_eq!(out.closest.len(), 2);
    }

    #[test]
    fn commits_go_out_once_the_closest_set_is_settled() {
        let mut q = walk(true, 1, 16);
        let (a, far) = (node(1, [1; 32]), node(2, [0xf0; 32]));
        q.add_candidate(a, None);
        q.add_candidate(far, None);
        assert_eq!(q.next_sends().len(), 2);
        q.on_response(
            sent(a, false),
            a.addr,
            Some(a.id),
            Some(&Bytes::from_static(b"t")),
            &[],
        );
        let commits = q.next_sends();
        assert!(q.committing, "the far node cannot change the closest 1");
        assert_eq!(commits.len(), 1);
        assert_eq!(commits[0].token, Some(Bytes::from_static(b"t")));
        q.on_response(sent(far, false), far.addr, Some(far.id), None, &[]);
        q.on_response(sent(a, true), a.addr, Some(a.id), None, &[]);
        assert!(q.is_done());
        let out = q.finish().expect("done");
        assert_eq!((out.responses, out.commits), (3, 1));
    }
}
