//! The fallback of a punch that failed: we ask the peer, through the referrer, for a relay
//! (`Hint::RelayMe`) and, holding a reservation ourselves, offer ours (`Hint::UseRelay`);
//! a peer that asks us gets a fresh pairing bound on our relay; a pairing named to us is
//! joined. The punch ends through the circuit that opens first ([`HolepunchPath::Circuit`]),
//! and retries toward a direct path follow it (see `upgrades` in the parent module).

use std::net::SocketAddrV4;
use std::time::Instant;

use rand::Rng;

use super::{
    MAX_CIRCUIT_PATHS, RELAY_WAIT, RENEW_AFTER, UPGRADE_EVERY, UPGRADE_TRIES, Upgrade,
    insert_bounded,
};
use crate::core::punch::Phase;
use crate::core::{BirthdayTry, Core, HolepunchPath, PunchId};
use crate::hints::Hint;
use crate::relay::{Pairing, RelayMsg};

impl Core {
    /// A punch of ours failed: ask the peer for a relay, once, before it fails.
    pub(in crate::core) fn ask_for_relay(&mut self, punch: PunchId, birthday: BirthdayTry) -> bool {
        let now = self.now;
        let Some(p) = self.punches.get_mut(&punch) else {
            return false;
        };
        if !p.relay || (p.upgrade && !p.renew) || matches!(p.phase, Phase::RelayWait { .. }) {
            return false;
        }
        p.phase = Phase::RelayWait {
            until: now + RELAY_WAIT,
            birthday,
        };
        let (peer, referrer) = (p.peer, p.referrer);
        self.rpc
            .holepunch_with(now, peer, referrer, Some(Hint::RelayMe.encode()));
        // Holding a reservation ourselves, we also offer our relay: the peer may hold none.
        if let Some(r) = &self.circuits.reservation
            && r.until.is_some_and(|t| t > now)
        {
            let (relay, token) = (r.relay, r.token);
            let pairing: Pairing = self.rpc.rng().random();
            self.send_relay(relay, &RelayMsg::Bind(pairing, token));
            if self.circuits.binds.len() >= MAX_CIRCUIT_PATHS {
                self.circuits.binds.pop_first();
            }
            self.circuits.binds.insert(pairing, (punch, peer));
            let hint = Hint::UseRelay(relay, pairing).encode();
            self.rpc.holepunch_with(now, peer, referrer, Some(hint));
        }
        true
    }

    /// A peer whose punch to us failed asks for our relay (through `via`): bind a pairing
    /// for it on our relay and tell it.
    pub(in crate::core) fn offer_relay(&mut self, requester: SocketAddrV4, via: SocketAddrV4) {
        let now = self.now;
        let Some(r) = &self.circuits.reservation else {
            return;
        };
        let (relay, token) = (r.relay, r.token);
        if r.until.is_none_or(|t| t <= now) {
            tracing::debug!(%requester, "asked for a relay, but none holds our reservation");
            return;
        }
        if !self.hints.challenge(now, *requester.ip()) {
            tracing::debug!(%requester, "relay offers over the rate limit");
            return;
        }
        let pairing: Pairing = self.rpc.rng().random();
        self.send_relay(relay, &RelayMsg::Bind(pairing, token));
        // A circuit this renews stays until the joiner has the fresh one and releases it.
        let _renewed = self.add_circuit_path(requester, relay, pairing);
        let hint = Hint::UseRelay(relay, pairing).encode();
        self.rpc.holepunch_with(now, requester, via, Some(hint));
    }

    /// The peer of one of our failed punches named a relay and pairing: join it.
    pub(in crate::core) fn join_relay(
        &mut self,
        from: SocketAddrV4,
        relay: SocketAddrV4,
        pairing: Pairing,
    ) {
        let found = self.punches.iter().find_map(|(id, p)| {
            (matches!(p.phase, Phase::RelayWait { .. }) && p.peer.ip() == from.ip())
                .then_some((*id, p.peer))
        });
        if dht_rpc::guard::dest::may_send_for(*from.ip(), relay).is_err() {
            tracing::debug!(%from, %relay, "a relay offer of a special-purpose address");
            return;
        }
        let (punch, peer) = match found {
            Some((punch, peer)) => (Some(punch), peer),
            // A peer whose punch to us failed offers its own relay: join it, at the rate
            // we offer ours (a forged offer costs us one small join toward its "relay").
            None if self.hints.challenge(self.now, *from.ip()) => (None, from),
            None => {
                tracing::debug!(%from, "relay offers over the rate limit");
                return;
            }
        };
        if self.circuits.joins.len() >= MAX_CIRCUIT_PATHS
            && !self.circuits.joins.contains_key(&pairing)
        {
            self.circuits.joins.pop_first();
        }
        self.circuits.joins.insert(pairing, (relay, punch, peer));
        self.send_relay(relay, &RelayMsg::Join(pairing, None));
    }

    /// Our punch to `peer` ends through a circuit on `relay`; retries to move to a direct
    /// path follow.
    pub(super) fn circuit_opened(
        &mut self,
        now: Instant,
        punch: PunchId,
        peer: SocketAddrV4,
        relay: SocketAddrV4,
    ) {
        if let Some(referrer) = self.punches.get(&punch).map(|p| p.referrer) {
            insert_bounded(
                &mut self.circuits.upgrades,
                peer,
                Upgrade {
                    referrer,
                    next: now + UPGRADE_EVERY,
                    left: UPGRADE_TRIES,
                    renew_at: now + RENEW_AFTER,
                    used: false,
                },
            );
        }
        self.succeed_punch(punch, HolepunchPath::Circuit { relay }, peer, None);
    }

    /// The empty datagram through a pairing we bound on our relay: the peer joined it.
    pub(super) fn on_bind_joined(&mut self, from: SocketAddrV4, pairing: Pairing) {
        let ours = self.circuits.reservation.as_ref().map(|r| r.relay);
        if ours != Some(from) {
            return;
        }
        let Some((punch, peer)) = self.circuits.binds.remove(&pairing) else {
            return;
        };
        if !self.punches.contains_key(&punch) {
            return;
        }
        self.circuit_replaced(peer, from, pairing);
        self.circuit_opened(self.now, punch, peer, from);
    }
}
