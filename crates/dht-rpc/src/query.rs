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
    pub(crate) committing: bool,
    responses: usize,
    commits: usize,
    errors: usize,
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
            committing: false,
            responses: 0,
            commits: 0,
            errors: 0,
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

    /// Records a response. `id` and `token` are the responder's; `closer` the nodes it
    /// returned. Returns whether the response is a reply to report.
    pub(crate) fn on_response(
        &mut self,
        from: SocketAddrV4,
        id: Option<NodeId>,
        token: Option<&Bytes>,
        closer: &[NodeAddr],
    ) -> bool {
        self.inflight = self.inflight.saturating_sub(1);
        self.responses += 1;
        if self.committing {
            self.commits += 1;
        } else {
            if let (Some(id), Some(token)) = (id, token) {
                self.add_closest(NodeAddr { id, addr: from }, token.clone());
            }
            for n in closer {
                self.add_candidate(*n, Some(from));
            }
        }
        id.is_some() && (!self.spec.update || self.spec.verbose || self.committing)
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
    pub(crate) fn on_failure(&mut self) {
        self.inflight = self.inflight.saturating_sub(1);
        self.errors += 1;
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
                free -= 1;
                out.push(Send {
                    addr: c.addr,
                    id: Some(c.id),
                    token: None,
                });
            }
            if out.is_empty() && self.inflight == 0 && self.spec.update {
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

    /// Takes back one of [`QueryState::next_sends`]'s requests that the core chose not to
    /// send (the node stays marked as asked, and counts as no error).
    pub(crate) fn unsend(&mut self) {
        self.inflight = self.inflight.saturating_sub(1);
    }

    /// Counts a request sent outside [`QueryState::next_sends`] (to a bootstrap node, or a
    /// retry after a hole punch).
    pub(crate) fn on_extra_send(&mut self) {
        self.inflight += 1;
    }

    /// Whether the walk is over.
    pub(crate) fn is_done(&self) -> bool {
        self.inflight == 0
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
        let target = NodeId::from_bytes([0; 32]);
        let mut q = QueryState::new(
            QuerySpec::update("put", target, None),
            NodeId::from_bytes([9; 32]),
            20,
            16,
        );
        let a = node(1, [1; 32]);
        let b = node(2, [2; 32]);
        q.add_candidate(a, None);
        let sends = q.next_sends();
        assert_eq!(sends.len(), 1);
        assert!(!q.on_response(a.addr, Some(a.id), Some(&Bytes::from_static(b"t")), &[b]));
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
        assert!(!q.on_response(b.addr, Some(b.id), None, &[]));
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
            q.on_response(a.addr, Some(a.id), None, &[]),
            "commit replies are reported"
        );
        assert!(q.next_sends().is_empty());
        assert!(q.is_done());
        let out = q.finish().unwrap();
        assert_eq!((out.responses, out.commits), (3, 1));
    }

    #[test]
    fn failures_are_errors_and_no_response_is_an_error() {
        let mut q = QueryState::new(
            QuerySpec::update("put", NodeId::from_bytes([0; 32]), None),
            NodeId::from_bytes([9; 32]),
            20,
            16,
        );
        q.add_candidate(node(1, [1; 32]), None);
        assert_eq!(q.next_sends().len(), 1);
        q.on_failure();
        assert!(q.next_sends().is_empty());
        assert!(q.is_done());
        assert_eq!(q.finish(), Err(QueryError::NoNodesResponded));
    }
}
