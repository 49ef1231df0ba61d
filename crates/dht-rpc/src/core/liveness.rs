//! Liveness: every ping that asks a node "are you alive", and what its answer or silence
//! means, owned in one place.
//!
//! Three rules ask it (the reachability check's direct ping is a different question: can
//! the node be reached without a hole punch; see `reach.rs`):
//! - **Sweep**: the liveness sweep pings the least recently seen contacts; one that stays
//!   silent leaves the table (not marked dead: one lost datagram should not keep a live
//!   node out of every walk).
//! - **Newcomer**: a requester whose id we do not know is pinged before it may enter the
//!   table (a spoofed source never answers), one per IP at a time.
//! - **Evict**: a newcomer meets a full bucket: up to three of its stale contacts are
//!   pinged in turn; the first that stays silent makes room for the newcomer, and if all
//!   answer the newcomer is dropped. One eviction per bucket's contacts at a time.
//!
//! [`Liveness`] holds which of these are in flight and decides, without I/O; the core's
//! methods below send the pings and apply the outcome to the routing table.

use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddrV4;
use std::time::Instant;

use dht_wire::{NodeAddr, NodeId, PING, Request};

use super::{Core, Purpose};
use crate::config::{RECENTLY_SEEN, SWEEP_AFTER, SWEEP_MAX, SWEEP_PERIOD, TICK};
use crate::events::Event;
use crate::handler::Handler;
use crate::routing::{Contact, Insert, Seen};

/// Requesters being verified at once (queued or in flight), at most; one per IP.
const MAX_VERIFYING: usize = 32;
/// Stale contacts of a full bucket pinged for one newcomer, at most.
const EVICT_TRIES: usize = 3;

/// Which "are you alive" ping a request is, with what its outcome needs.
#[derive(Debug, Clone)]
pub(crate) enum Alive {
    /// The liveness sweep's check of a contact.
    Sweep(NodeId),
    /// A requester we do not know, before it may enter the table.
    Newcomer(SocketAddrV4),
    /// A full bucket's stale contact, for a newcomer (boxed: the other purposes are half
    /// its size, and every request in flight holds one).
    Evict(Box<Eviction>),
}

/// One eviction in progress: the contact pinged now, those to ping after it if it answers,
/// and the newcomer waiting for room.
#[derive(Debug, Clone)]
pub(crate) struct Eviction {
    pub(crate) contact: NodeId,
    pub(crate) rest: VecDeque<Contact>,
    pub(crate) newcomer: NodeAddr,
}

/// Which liveness pings are in flight (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Liveness {
    sweeping: BTreeSet<NodeId>,
    verifying: BTreeSet<SocketAddrV4>,
    evicting: BTreeSet<NodeId>,
}

/// Since when a contact not seen counts as stale, hence as room for a newcomer: only once
/// the table is bootstrapped (before, every contact is young and every bucket still
/// filling), and then [`RECENTLY_SEEN`] ago. The one place this rule is written: eviction
/// and the check whether a newcomer is worth verifying both use it.
pub(super) fn stale_before(bootstrapped: bool, now: Instant) -> Option<Instant> {
    bootstrapped
        .then(|| now.checked_sub(RECENTLY_SEEN))
        .flatten()
}

impl Liveness {
    /// The sweep may check `id` (no check of it is in flight); marks it.
    pub(crate) fn start_sweep(&mut self, id: NodeId) -> bool {
        self.sweeping.insert(id)
    }

    /// Whether a newcomer at `from` may be verified now: none of its IP is being verified
    /// (unless `trusted`) and fewer than [`MAX_VERIFYING`] are.
    pub(crate) fn may_verify(&self, from: SocketAddrV4, trusted: bool) -> bool {
        let ip = *from.ip();
        let on_ip = SocketAddrV4::new(ip, 0)..=SocketAddrV4::new(ip, u16::MAX);
        (trusted || self.verifying.range(on_ip).next().is_none())
            && self.verifying.len() < MAX_VERIFYING
    }

    /// A newcomer at `from` is being verified.
    pub(crate) fn start_verify(&mut self, from: SocketAddrV4) {
        self.verifying.insert(from);
    }

    /// The stale contacts of a full bucket (`oldest`, least recently seen first) to ping
    /// for a newcomer, the first now and the others in turn: up to [`EVICT_TRIES`] not
    /// seen since `stale` (none without it). None while one of them is already being
    /// pinged for another newcomer; else all are marked.
    pub(crate) fn start_eviction(
        &mut self,
        oldest: Vec<Contact>,
        stale: Option<Seen>,
    ) -> Option<(Contact, VecDeque<Contact>)> {
        let mut tries: VecDeque<Contact> = oldest
            .into_iter()
            .filter(|c| stale.is_some_and(|b| c.last_seen < b))
            .take(EVICT_TRIES)
            .collect();
        if tries.iter().any(|c| self.evicting.contains(&c.id)) {
            return None;
        }
        let first = tries.pop_front()?;
        self.evicting.insert(first.id);
        self.evicting.extend(tries.iter().map(|c| c.id));
        Some((first, tries))
    }

    /// The ping answered: where to ping next, and for what, if an eviction goes on.
    pub(crate) fn answered(&mut self, alive: Alive) -> Option<(SocketAddrV4, Eviction)> {
        match alive {
            Alive::Sweep(id) => {
                self.sweeping.remove(&id);
                None
            }
            Alive::Newcomer(addr) => {
                self.verifying.remove(&addr);
                None
            }
            Alive::Evict(e) => {
                let Eviction {
                    contact,
                    mut rest,
                    newcomer,
                } = *e;
                self.evicting.remove(&contact);
                // When all answer, the newcomer is dropped.
                let next = rest.pop_front()?;
                let e = Eviction {
                    contact: next.id,
                    rest,
                    newcomer,
                };
                Some((next.addr, e))
            }
        }
    }

    /// The ping got no answer: the contact to remove from the table, and the newcomer to
    /// add in its place, if any.
    pub(crate) fn silent(&mut self, alive: Alive) -> (Option<NodeId>, Option<NodeAddr>) {
        match alive {
            Alive::Sweep(id) => {
                self.sweeping.remove(&id);
                (Some(id), None)
            }
            Alive::Newcomer(addr) => {
                self.verifying.remove(&addr);
                (None, None)
            }
            Alive::Evict(e) => {
                self.evicting.remove(&e.contact);
                for c in &e.rest {
                    self.evicting.remove(&c.id);
                }
                (Some(e.contact), Some(e.newcomer))
            }
        }
    }
}

impl<H: Handler> Core<H> {
    /// The liveness sweep: ping a few of the least recently seen contacts, enough to go
    /// round the table in [`SWEEP_PERIOD`] (one while more than two queries run); drop those
    /// that fail to answer.
    pub(super) fn ping_some(&mut self, now: Instant) {
        let per_tick = (self.table.len() as u128 * TICK.as_millis())
            .div_ceil(SWEEP_PERIOD.as_millis())
            .clamp(1, SWEEP_MAX as u128) as usize;
        let n = if self.queries.len() > 2 { 1 } else { per_tick };
        let Some(before) = now.checked_sub(SWEEP_AFTER) else {
            return;
        };
        for c in self.table.stale(before, n) {
            if self.liveness.start_sweep(c.id) {
                self.send_alive(now, c.addr, Alive::Sweep(c.id));
            }
        }
    }

    /// Sends an "are you alive" ping to `to`, with our id.
    pub(super) fn send_alive(&mut self, now: Instant, to: SocketAddrV4, alive: Alive) {
        let req = Request {
            id: self.wire_id(),
            ..Request::new(PING)
        };
        self.send(now, to, to, req, Purpose::Alive(alive));
    }

    /// Adds or refreshes a contact; on a full bucket, pings its stale contacts and evicts
    /// the first that fails.
    pub(super) fn add_node(&mut self, now: Instant, id: NodeId, addr: SocketAddrV4) {
        match self.table.insert(id, addr, now) {
            Insert::Added => self
                .events
                .push_back(Event::NodeAdded(NodeAddr { id, addr })),
            Insert::Refreshed | Insert::Own => {}
            Insert::Limited => self.stats.table_limited += 1,
            Insert::Full(oldest) => {
                let stale = stale_before(self.bootstrapped, now).map(|b| self.table.seen(b));
                if let Some((first, rest)) = self.liveness.start_eviction(oldest, stale) {
                    let newcomer = NodeAddr { id, addr };
                    let e = Eviction {
                        contact: first.id,
                        rest,
                        newcomer,
                    };
                    self.send_alive(now, first.addr, Alive::Evict(Box::new(e)));
                }
            }
        }
    }

    /// A liveness ping was answered (the answer itself already refreshed the contact).
    pub(super) fn on_alive(&mut self, now: Instant, alive: Alive) {
        if let Some((addr, next)) = self.liveness.answered(alive) {
            self.send_alive(now, addr, Alive::Evict(Box::new(next)));
        }
    }

    /// A liveness ping to `to` got no answer.
    pub(super) fn on_silent(&mut self, now: Instant, alive: Alive, to: SocketAddrV4) {
        let (gone, newcomer) = self.liveness.silent(alive);
        if let Some(id) = gone {
            self.rtts.forget(to);
            self.remove_node(&id);
        }
        if let Some(n) = newcomer {
            self.add_node(now, n.id, n.addr);
        }
    }

    pub(super) fn remove_node(&mut self, id: &NodeId) {
        if let Some(c) = self.table.remove(id) {
            self.events.push_back(Event::NodeRemoved(c.node()));
        }
    }

    /// Removes the contact `id` if our table has it at `addr` (not if it moved since).
    pub(super) fn remove_node_at(&mut self, id: &NodeId, addr: SocketAddrV4) {
        if self.table.get(id).is_some_and(|c| c.addr == addr) {
            self.remove_node(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::RoutingTable;
    use std::net::Ipv4Addr;
    use std::time::Duration;

    fn contact(table: &RoutingTable, i: u8, seen: Instant) -> Contact {
        Contact {
            id: NodeId::from_bytes([i; 32]),
            addr: SocketAddrV4::new(Ipv4Addr::new(20, 0, i, 1), 1000),
            last_seen: table.seen(seen),
        }
    }

    #[test]
    fn an_eviction_pings_up_to_three_stale_contacts_in_turn_and_one_at_a_time() {
        let t = Instant::now();
        let mut table = RoutingTable::new(NodeId::from_bytes([0; 32]), 20);
        // (Its first contact starts the clock its `Seen` stamps count on.)
        let first_addr = SocketAddrV4::new(Ipv4Addr::new(40, 0, 0, 1), 1);
        table.insert(NodeId::from_bytes([0x80; 32]), first_addr, t);
        let later = t + Duration::from_secs(600);
        // Four old contacts and a fresh one, least recently seen first.
        let mut oldest: Vec<Contact> = (1..=4).map(|i| contact(&table, i, t)).collect();
        oldest.push(contact(&table, 5, later));
        let stale = Some(table.seen(later - Duration::from_secs(1)));
        let mut l = Liveness::default();
        assert_eq!(
            l.start_eviction(oldest.clone(), None),
            None,
            "not bootstrapped"
        );
        let (first, rest) = l.start_eviction(oldest.clone(), stale).expect("stale ones");
        assert_eq!(first.id, NodeId::from_bytes([1; 32]));
        let rest_ids: Vec<NodeId> = rest.iter().map(|c| c.id).collect();
        assert_eq!(rest_ids, [2, 3].map(|i| NodeId::from_bytes([i; 32])));
        // Another newcomer for the same bucket waits for this one.
        assert_eq!(l.start_eviction(oldest.clone(), stale), None);
        let newcomer = NodeAddr {
            id: NodeId::from_bytes([9; 32]),
            addr: SocketAddrV4::new(Ipv4Addr::new(30, 0, 0, 1), 1),
        };
        let e = Eviction {
            contact: first.id,
            rest,
            newcomer,
        };
        // The first answers: the second is next, at its address.
        let (addr, next) = l.answered(Alive::Evict(Box::new(e))).expect("the next");
        assert_eq!(next.contact, NodeId::from_bytes([2; 32]));
        assert_eq!(addr, contact(&table, 2, t).addr);
        // It stays silent: it goes, the newcomer comes in, and all marks are gone.
        let (gone, came) = l.silent(Alive::Evict(Box::new(next)));
        assert_eq!(
            (gone, came),
            (Some(NodeId::from_bytes([2; 32])), Some(newcomer))
        );
        assert!(l.start_eviction(oldest, stale).is_some(), "free again");
    }

    #[test]
    fn newcomers_are_verified_one_per_ip_unless_trusted_and_a_bounded_number_in_all() {
        let mut l = Liveness::default();
        let at = |ip: u32, port| SocketAddrV4::new(Ipv4Addr::from(ip), port);
        assert!(l.may_verify(at(1, 1), false));
        l.start_verify(at(1, 1));
        assert!(!l.may_verify(at(1, 2), false), "one per IP");
        assert!(l.may_verify(at(1, 2), true), "trusted");
        for i in 2..=MAX_VERIFYING as u32 {
            l.start_verify(at(i, 1));
        }
        assert!(!l.may_verify(at(1000, 1), false), "{MAX_VERIFYING} in all");
        assert_eq!(l.silent(Alive::Newcomer(at(1, 1))), (None, None));
        assert!(l.may_verify(at(1, 3), false));
    }

    #[test]
    fn the_sweep_checks_a_contact_once_at_a_time_and_a_silent_one_goes() {
        let mut l = Liveness::default();
        let id = NodeId::from_bytes([4; 32]);
        assert!(l.start_sweep(id));
        assert!(!l.start_sweep(id));
        assert!(l.answered(Alive::Sweep(id)).is_none());
        assert!(l.start_sweep(id));
        assert_eq!(l.silent(Alive::Sweep(id)), (Some(id), None));
    }

    #[test]
    fn stale_counts_as_room_only_once_bootstrapped() {
        let t = Instant::now() + RECENTLY_SEEN;
        assert_eq!(stale_before(false, t), None);
        assert_eq!(stale_before(true, t), t.checked_sub(RECENTLY_SEEN));
    }
}
