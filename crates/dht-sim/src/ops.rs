//! Queries run to their end from the simulator, and measured: a `_find_node` walk's
//! outcome against brute force over the live nodes (how many of the true closest it found,
//! its time, its datagrams).

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use dht_rpc::{Event, Machine, NodeId, QueryError, QueryOutcome, QuerySpec, Reply};

use crate::Sim;

/// One measured operation (see [`Sim::timed_ops`]).
#[derive(Debug, Clone, Copy)]
pub struct Op {
    /// Virtual time from start to end.
    pub time: Duration,
    /// Datagrams the node sent and received meanwhile.
    pub datagrams: u64,
    /// How many of the true closest 20 it found.
    pub found: usize,
    /// It found exactly the true closest 20.
    pub exact: bool,
    /// From start to the last query-round answer of a node among the closest it ended with:
    /// what is left of `time` is waiting for nodes that did not answer.
    pub last_closest: Duration,
    /// Its requests that failed or were given up (the walk's `errors`).
    pub unanswered: usize,
    /// Of the true closest 20 it missed, how many it had asked and was still waiting for
    /// when it ended (it gave them up too soon), against never asked.
    pub missed_asked: usize,
    /// Of those it never asked, how many some node it heard from knew, but behind 20 closer
    /// entries, gone nodes among them (crowded out of every answer that could name them).
    pub missed_crowded: usize,
}

impl<M: Machine> Sim<M> {
    /// Runs a query from `from` to its end: its replies and result.
    pub fn run_query(
        &mut self,
        from: SocketAddrV4,
        spec: QuerySpec,
    ) -> (Vec<Reply>, Result<QueryOutcome, QueryError>) {
        let Some(qid) = self.start_query(from, |m, now| m.rpc_mut().query(now, spec)) else {
            return (Vec::new(), Err(QueryError::Cancelled));
        };
        let (replies, result, _) = self.run_query_timed(from, qid);
        (replies, result)
    }

    /// Runs the query `qid` of `from` to its end: its replies, each with the virtual time
    /// it came, and its result.
    #[allow(clippy::type_complexity)]
    pub(crate) fn run_query_timed(
        &mut self,
        from: SocketAddrV4,
        qid: dht_rpc::QueryId,
    ) -> (
        Vec<Reply>,
        Result<QueryOutcome, QueryError>,
        Vec<(Instant, NodeId)>,
    ) {
        let mut replies = Vec::new();
        let mut times = Vec::new();
        let mut result = None;
        self.run_until(Duration::from_secs(120), |s| {
            let now = s.now;
            if let Some(n) = s.host_mut(from) {
                n.events.retain(|e| match e {
                    Event::QueryReply { query, reply } if *query == qid => {
                        if !reply.commit {
                            times.push((now, reply.node.id));
                        }
                        replies.push(reply.clone());
                        false
                    }
                    Event::QueryDone { query, result: r } if *query == qid => {
                        result = Some(r.clone());
                        false
                    }
                    _ => true,
                });
            }
            result.is_some()
        });
        if result.is_none() {
            // Given up: its later events are nobody's.
            self.unwatch(from, qid);
        }
        (replies, result.unwrap_or(Err(QueryError::Cancelled)), times)
    }

    /// Runs `queries` `_find_node` lookups for random targets from the nodes in `from` (in
    /// turn) and checks each against brute force over the live nodes. Returns how many
    /// found exactly the true closest 20, and the fraction of the true closest found.
    pub fn check_lookups(&mut self, from: &[SocketAddrV4], queries: usize) -> (usize, f64) {
        let ops = self.timed_ops(from, queries, false);
        let exact = ops.iter().filter(|o| o.exact).count();
        let found: usize = ops.iter().map(|o| o.found).sum();
        (exact, found as f64 / (queries.max(1) * 20) as f64)
    }

    /// Runs `n` operations from the nodes in `from` (in turn), each a `_find_node` lookup
    /// (or, with `update`, an update: the same walk, then a commit round to the closest) for
    /// a random target, and measures each: virtual time, the datagrams the node sent and
    /// received meanwhile, and whether it found exactly the true closest 20 of the live nodes.
    /// One operation at a time.
    pub fn timed_ops(&mut self, from: &[SocketAddrV4], n: usize, update: bool) -> Vec<Op> {
        self.timed_ops_parallel(from, n, update, 1)
    }

    /// As [`Sim::timed_ops`], with up to `parallel` operations running at once (each from
    /// its own node), as on a network in use: the operations then all meet the network in
    /// about the same state (say, shortly after nodes went down), where one at a time they
    /// would spread over minutes in which tables heal.
    pub fn timed_ops_parallel(
        &mut self,
        from: &[SocketAddrV4],
        n: usize,
        update: bool,
        parallel: usize,
    ) -> Vec<Op> {
        struct Running {
            node: SocketAddrV4,
            qid: dht_rpc::QueryId,
            own: NodeId,
            target: NodeId,
            start: Instant,
            before: dht_rpc::Stats,
            times: Vec<(Instant, NodeId)>,
        }
        let ids = self.live_ids();
        let mut out = Vec::with_capacity(n);
        let mut running: Vec<Running> = Vec::new();
        let (mut next, mut tries) = (0usize, 0usize);
        loop {
            // Start operations up to `parallel`, each from a node that runs none.
            while running.len() < parallel.max(1) && next < n && tries < n * 4 + from.len() {
                let node = from[((next + tries) * 7919) % from.len()];
                tries += 1;
                if running.iter().any(|r| r.node == node) {
                    continue;
                }
                let Some((own, before)) = self.core(node).map(|c| (c.id(), c.stats())) else {
                    continue;
                };
                let target = self.random_id();
                let spec = if update {
                    QuerySpec::update("_find_node", target, None)
                } else {
                    QuerySpec::query("_find_node", target, None)
                };
                let Some(qid) = self.start_query(node, |m, now| m.rpc_mut().query(now, spec))
                else {
                    continue;
                };
                tries -= 1;
                next += 1;
                running.push(Running {
                    node,
                    qid,
                    own,
                    target,
                    start: self.now,
                    before,
                    times: Vec::new(),
                });
            }
            if running.is_empty() {
                break;
            }
            // Run until one of them ends.
            let mut ended = None;
            self.run_until(Duration::from_secs(120), |s| {
                let now = s.now;
                for (i, r) in running.iter_mut().enumerate() {
                    let Some(node) = s.host_mut(r.node) else {
                        continue;
                    };
                    node.events.retain(|e| match e {
                        Event::QueryReply { query, reply } if *query == r.qid => {
                            if !reply.commit {
                                r.times.push((now, reply.node.id));
                            }
                            false
                        }
                        Event::QueryDone { query, result } if *query == r.qid => {
                            ended = Some((i, result.clone()));
                            false
                        }
                        _ => true,
                    });
                    if ended.is_some() {
                        return true;
                    }
                }
                false
            });
            let (i, result) = match ended.take() {
                Some(e) => e,
                // Past the limit: the first one is taken as failed.
                None => {
                    let (node, qid) = (running[0].node, running[0].qid);
                    self.unwatch(node, qid);
                    (0, Err(QueryError::Cancelled))
                }
            };
            let r = running.swap_remove(i);
            let time = self.now - r.start;
            let after = self.core(r.node).map(|c| c.stats()).unwrap_or(r.before);
            let unanswered = result.as_ref().map_or(0, |o| o.errors);
            let got: Vec<NodeId> = result
                .map(|o| o.closest.iter().map(|c| c.id).collect())
                .unwrap_or_default();
            let last_closest = r
                .times
                .iter()
                .filter(|(_, id)| got.contains(id))
                .map(|(t, _)| *t - r.start)
                .max()
                .unwrap_or(time);
            let mut want: Vec<NodeId> = ids.iter().copied().filter(|id| *id != r.own).collect();
            want.sort_by_key(|id| id.distance(&r.target));
            want.truncate(20);
            // The true closest it missed, where they are, and whether it still waited on them.
            let up_addr = |id: &NodeId| {
                self.hosts
                    .iter()
                    .find(|n| n.up && n.core.rpc().id() == *id)
                    .map(|n| n.addr)
            };
            let awaited = |a: SocketAddrV4| self.core(r.node).is_some_and(|c| c.awaits(a));
            let (asked, unasked): (Vec<_>, Vec<_>) = want
                .iter()
                .filter(|w| !got.contains(w))
                .filter_map(|w| up_addr(w).map(|a| (*w, a)))
                .partition(|(_, a)| awaited(*a));
            let got_addrs: Vec<SocketAddrV4> = got.iter().filter_map(up_addr).collect();
            // Some node it got knows `w`, but `w` is not in that node's 20 closest.
            let missed_crowded = unasked
                .iter()
                .filter(|(w, _)| {
                    got_addrs.iter().any(|ga| {
                        self.core(*ga).is_some_and(|c| {
                            c.table().iter().any(|x| x.id == *w)
                                && !c.table().closest(&r.target, 20).iter().any(|x| x.id == *w)
                        })
                    })
                })
                .count();
            let missed_asked = asked.len();
            out.push(Op {
                time,
                datagrams: (after.datagrams_out + after.datagrams_in)
                    .saturating_sub(r.before.datagrams_out + r.before.datagrams_in),
                found: got.iter().filter(|g| want.contains(g)).count(),
                exact: got == want,
                last_closest,
                unanswered,
                missed_asked,
                missed_crowded,
            });
        }
        out
    }
}
