//! Reachability: can nodes we never sent to reach us? (See [`Config::adaptive`].)
//!
//! A round probes up to [`PROBES`] nodes we have not written to for [`MAPPING_LIFETIME`]
//! nor queued a request for, so that our NAT or firewall (if any) holds no state for them:
//! nodes one of the routing table's own walks (bootstrap, bucket refresh) heard of but
//! never asked, quiet contacts of the table, or, when neither is left, nodes a contact names
//! for a random id. Each probe is an ordinary hole-punch ping sent through the node that
//! named the target (the relay forwards it, the target answers straight to us), so
//! JavaScript dht-rpc 2.x nodes serve as relays and targets unchanged:
//! - the target's pong arrives: unsolicited datagrams reach us, we are **reachable**;
//! - it times out: we ping the target directly. If it answers now, it was alive and the relay
//!   path worked for others, so its earlier pong was dropped on the way in: one vote for
//!   **firewalled**. If it does not answer either, the probe says nothing.
//!
//! A round ends reachable if any probe got through, firewalled if none did and at least
//! [`VOTES`] targets answered directly (counting those of earlier rounds since the last
//! verdict), and changes nothing otherwise (the table's next walk then tries again; after a
//! verdict, the next round waits [`RECHECK`]). A target that writes to us, or that we write
//! to, during the round counts for nothing: a NAT may have opened between us.
//!
//! The check's own state (the filter of recent destinations, the round's targets, the
//! votes) is the pure [`Reach`], in `reach/state.rs`; here the core runs the rounds.
//!
//! [`MAPPING_LIFETIME`]: state::MAPPING_LIFETIME
//! [`VOTES`]: state::VOTES
//! [`RECHECK`]: state::RECHECK
//! [`Config::adaptive`]: crate::Config::adaptive

use std::net::SocketAddrV4;
use std::time::Instant;

use dht_wire::{Checked, FIND_NODE, NodeAddr, NodeId, PING, Request, Response};
use rand::Rng;

use super::{Core, Purpose};
use crate::events::{Event, RequestError};
use crate::handler::Handler;
use crate::query::QueryState;
use crate::routing::Contact;

mod state;
use state::PROBES;
pub(crate) use state::Reach;

/// What the reachability check (see [`Config::adaptive`](crate::Config::adaptive)) found last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum Reachability {
    /// No verdict yet (or the check is off).
    Unknown,
    /// Nodes we never wrote to reach us: we send our id.
    Reachable,
    /// They cannot: we send no id (we act as an ephemeral node) until a later check.
    Firewalled,
}

/// A reachability round's request, as the core's request table names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// A probe: a hole-punch ping to `peer` through the node that named it.
    Probe { peer: SocketAddrV4 },
    /// A `_find_node` to a contact, for targets.
    Find,
    /// A direct ping to a probe's `peer` after its relayed pong never came.
    Confirm { peer: SocketAddrV4 },
}

impl<H: Handler> Core<H> {
    /// Whether we send no id now: configured ephemeral, or found firewalled (see
    /// [`Config::adaptive`](crate::Config::adaptive)).
    pub fn is_ephemeral(&self) -> bool {
        self.config.ephemeral || self.is_firewalled()
    }

    /// Whether the reachability check runs: asked for, and we would send an id at all.
    pub(super) fn checks_reach(&self) -> bool {
        self.config.adaptive && !self.config.ephemeral
    }

    /// Whether the last reachability check found that nodes we never sent to cannot reach
    /// us (only with [`Config::adaptive`](crate::Config::adaptive)).
    pub fn is_firewalled(&self) -> bool {
        self.reach.verdict == Some(true)
    }

    /// The last reachability verdict (only with [`Config::adaptive`](crate::Config::adaptive)).
    pub fn reachability(&self) -> Reachability {
        match self.reach.verdict {
            None => Reachability::Unknown,
            Some(true) => Reachability::Firewalled,
            Some(false) => Reachability::Reachable,
        }
    }

    /// Up to [`PROBES`] nodes to probe reachability with, each with its relay, if a round is
    /// due: nodes the table's walk `q` (bootstrap or bucket refresh) heard of but never asked
    /// and we sent nothing to lately (so that our NAT, if any, holds no state for them), each
    /// named by a different node, preferring names from nodes other than the bootstrap nodes
    /// (an entry node may be busy relaying for everyone); then quiet contacts of our table.
    pub(super) fn reach_targets(
        &self,
        now: Instant,
        q: &QueryState,
    ) -> Vec<(NodeAddr, SocketAddrV4)> {
        if !self.checks_reach() || !self.reach.due(now) {
            return Vec::new();
        }
        let mut fresh: Vec<(NodeAddr, SocketAddrV4)> = q
            .unqueried()
            .filter(|(n, _)| !self.reach.recently_sent(now, n.addr))
            .collect();
        fresh.sort_by_key(|(_, r)| self.config.bootstrap.contains(r));
        let mut picked: Vec<(NodeAddr, SocketAddrV4)> = Vec::new();
        for (node, referrer) in fresh {
            if picked.len() == PROBES {
                break;
            }
            if picked
                .iter()
                .all(|(n, r)| *r != referrer && n.id != node.id)
            {
                picked.push((node, referrer));
            }
        }
        // In a small network the walk asks everyone it hears of: then take contacts of our
        // table we have not written to lately, relayed by nodes that just answered the walk.
        if picked.len() < PROBES {
            let relays: Vec<SocketAddrV4> = q
                .responders()
                .map(|n| n.addr)
                .filter(|a| picked.iter().all(|(n, r)| r != a && n.addr != *a))
                .collect();
            let mut relays = relays.into_iter();
            let quiet = self
                .table
                .iter()
                .filter(|c| !self.reach.recently_sent(now, c.addr))
                .map(Contact::node)
                .collect::<Vec<_>>();
            for node in quiet {
                if picked.len() == PROBES {
                    break;
                }
                if picked
                    .iter()
                    .any(|(n, r)| n.id == node.id || *r == node.addr)
                {
                    continue;
                }
                match relays.find(|a| *a != node.addr && picked.iter().all(|(n, _)| n.addr != *a)) {
                    Some(relay) => picked.push((node, relay)),
                    None => break,
                }
            }
        }
        tracing::debug!(
            targets = picked.len(),
            unqueried = q.unqueried().count(),
            candidates = q.candidate_count(),
            "reachability check"
        );
        picked
    }

    /// Sends a reachability round's probes (none: no round; the table's next walk tries
    /// again).
    pub(super) fn start_reach_round(
        &mut self,
        now: Instant,
        probes: Vec<(NodeAddr, SocketAddrV4)>,
    ) {
        if probes.is_empty() {
            self.find_targets(now);
            return;
        }
        let targets: Vec<SocketAddrV4> = probes.iter().map(|(n, _)| n.addr).collect();
        tracing::debug!(?probes, "reachability round");
        self.reach.start(now, &targets);
        for (node, referrer) in probes {
            let req = self.holepunch_request(node.addr, referrer);
            let purpose = Purpose::Reach(Check::Probe { peer: node.addr });
            self.send(now, referrer, node.addr, req, purpose);
        }
    }

    /// Asks one contact for the nodes nearest a random id: those we have not written to
    /// lately make the next round's targets, with the contact as their relay. For when a
    /// round is due but the table's walks left no targets (a walk asks most of the nodes it
    /// hears of, and in a small network we soon have written to everyone). At most
    /// [`EXTRA_FINDS`](state::EXTRA_FINDS) such requests between two verdicts.
    fn find_targets(&mut self, now: Instant) {
        if !self.checks_reach() || self.table.is_empty() {
            return;
        }
        if !self.reach.wants_find(now) {
            return;
        }
        let pick = self.rng.random_range(0..self.table.len());
        let Some(contact) = self.table.iter().nth(pick).map(Contact::node) else {
            return;
        };
        let req = Request {
            id: self.wire_id(),
            target: Some(Checked::Valid(NodeId::from_bytes(self.rng.random()))),
            ..Request::new(FIND_NODE)
        };
        let purpose = Purpose::Reach(Check::Find);
        self.send(now, contact.addr, contact.addr, req, purpose);
    }

    /// An answer to one of a round's requests: a probe's pong got through (reachable), a
    /// target answered directly after its relayed pong never came (a vote for firewalled),
    /// or a contact named nodes to probe.
    pub(super) fn on_check_answer(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        check: Check,
        res: &Response,
    ) {
        match check {
            Check::Probe { peer } => {
                let verdict = self.reach.on_reached(peer);
                self.on_reach_verdict(now, verdict);
            }
            Check::Find => self.on_found_targets(now, from, res.closer_nodes()),
            Check::Confirm { peer } => {
                let verdict = self.reach.on_blocked(peer);
                self.on_reach_verdict(now, verdict);
            }
        }
    }

    /// One of a round's requests failed: a probe that timed out is confirmed with a direct
    /// ping; a failed find looks for targets again; anything else says nothing.
    pub(super) fn on_check_failure(&mut self, now: Instant, check: Check, error: RequestError) {
        match check {
            Check::Probe { peer } if error == RequestError::Timeout => {
                // Is the target there at all? Ask it directly, without our id: a node that
                // hears an id it does not know pings it back to verify it, and that request
                // through our freshly opened NAT would taint the target.
                self.reach.confirming(peer);
                let req = Request::new(PING);
                self.send(
                    now,
                    peer,
                    peer,
                    req,
                    Purpose::Reach(Check::Confirm { peer }),
                );
            }
            Check::Find => self.find_targets(now),
            Check::Probe { .. } | Check::Confirm { .. } => {
                let verdict = self.reach.on_inconclusive();
                self.on_reach_verdict(now, verdict);
            }
        }
    }

    /// The nodes a contact at `relay` named for [`Core::find_targets`]: probe the fresh ones.
    fn on_found_targets(&mut self, now: Instant, relay: SocketAddrV4, nodes: &[NodeAddr]) {
        if !self.reach.due(now) {
            return;
        }
        let probes: Vec<(NodeAddr, SocketAddrV4)> = nodes
            .iter()
            .filter(|n| n.addr != relay && n.id != self.id)
            .filter(|n| !self.reach.recently_sent(now, n.addr))
            .take(PROBES)
            .map(|n| (*n, relay))
            .collect();
        tracing::debug!(targets = probes.len(), "reachability targets found");
        self.start_reach_round(now, probes);
    }

    /// The verdict of a reachability round, if it ended with one.
    fn on_reach_verdict(&mut self, now: Instant, verdict: Option<bool>) {
        let Some(firewalled) = verdict else {
            // The round is over without a verdict: find more targets.
            if self.reach.due(now) {
                self.find_targets(now);
            }
            return;
        };
        tracing::debug!(firewalled, "reachability check");
        self.events.push_back(Event::Reachability { firewalled });
    }
}
