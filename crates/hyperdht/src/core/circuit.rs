//! The bounded relay in the core (the wire format, limits and relay state are in
//! [`crate::relay`]): the relay role, when [`Core::set_relay`] turned it on; a reservation
//! of ours on a relay, kept fresh ([`Core::reserve`]); and the paths through circuits.
//! Datagrams to a peer reached so go through the relay in [`Core::send_datagram`], and the
//! relay's come out as the peer's. A circuit a direct path or a fresh circuit replaced is
//! released at once; the relay's `Released` tells the other end to send directly. The
//! fallback of a punch that failed (asking the peer for a relay, binding and joining
//! pairings, until the punch ends with [`HolepunchPath::Circuit`]) is in `fallback.rs`.
//!
//! Abuse: the relay role answers a message without its token with a challenge no larger
//! than the message, within a rate per IP and in all; it acts only on tokened messages. As
//! a client we act only on a relay's datagrams from the relay we reserved on or joined,
//! never send toward a special-purpose relay address a hint names, and offer a relay at
//! the birthday challenges' rate per requester.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use dht_rpc::{Event, MachineEvent, RateLimiter};

use super::punch::Phase;
use super::{BirthdayTry, Core, HolepunchPath, PunchId};
use crate::hints::Token;
use crate::relay::{Pairing, RelayLimits, RelayMsg, RelayServer, RelayStats};

mod fallback;

/// How long a failed punch waits for the peer's relay and the join before it fails.
pub const RELAY_WAIT: Duration = Duration::from_secs(3);
/// A reservation is refreshed this often at most (or at half its lifetime).
const REFRESH: Duration = Duration::from_secs(10 * 60);
/// How soon an unanswered reservation is asked again.
const RESERVE_RETRY: Duration = Duration::from_secs(5);
/// Paths through circuits kept at most (the oldest go).
pub const MAX_CIRCUIT_PATHS: usize = 16;
/// While a circuit carries a peer's datagrams, we punch again this often...
pub const UPGRADE_EVERY: Duration = Duration::from_secs(30);
/// ...this many times at most (a circuit lasts two minutes).
const UPGRADE_TRIES: u32 = 4;
/// How long a release waits for the relay's confirmation (a challenge answered meanwhile).
const RELEASE_WAIT: Duration = Duration::from_secs(10);
/// A circuit we joined that carried our datagrams is renewed this long after it opened
/// (before the relay's two minutes end it): a retry that falls back to a relay again, so a
/// fresh circuit replaces it. One that carried nothing is left to end.
pub const RENEW_AFTER: Duration = Duration::from_secs(90);

/// Punching again while relayed: through whom, when next, how many direct tries are left,
/// and when the circuit is renewed if we sent through it.
#[derive(Debug)]
struct Upgrade {
    referrer: SocketAddrV4,
    next: Instant,
    left: u32,
    renew_at: Instant,
    used: bool,
}

/// The relay role: its state and the rate of its challenges.
#[derive(Debug)]
struct Role {
    server: RelayServer,
    per_ip: RateLimiter<Ipv4Addr>,
    total: RateLimiter<()>,
}

/// Our reservation on one relay.
#[derive(Debug)]
struct Reservation {
    relay: SocketAddrV4,
    /// The relay's roundtrip token for us, from its last challenge.
    token: Option<Token>,
    /// Until when the relay holds it (once it said so).
    until: Option<Instant>,
    /// When to send the next reserve.
    next: Instant,
}

/// The core's relay state (see the module docs).
#[derive(Debug, Default)]
pub(super) struct Circuits {
    role: Option<Box<Role>>,
    reservation: Option<Reservation>,
    /// Peers reached through a circuit: the relay and the pairing.
    paths: BTreeMap<SocketAddrV4, (SocketAddrV4, Pairing)>,
    /// Pairings we joined or are joining: the relay, our punch (none when a peer whose
    /// punch to us failed offered its own relay) and the peer.
    joins: BTreeMap<Pairing, (SocketAddrV4, Option<PunchId>, SocketAddrV4)>,
    /// Pairings we bound on our relay for a punch of ours that failed (our side of the
    /// fallback when we hold a reservation): the punch and its peer, until the peer joins.
    binds: BTreeMap<Pairing, (PunchId, SocketAddrV4)>,
    /// When we last answered a relay's challenge (one a second at most: a forged one
    /// must not make us repeat every bind to the relay).
    last_challenge: Option<Instant>,
    /// Circuits we joined, punched again at a bounded pace (by the peer's address).
    upgrades: BTreeMap<SocketAddrV4, Upgrade>,
    /// Peers a retry reached directly: the address that answered, which datagrams to the
    /// peer now go to (a symmetric NAT answers from another port than the announced one).
    direct: BTreeMap<SocketAddrV4, SocketAddrV4>,
    /// Circuits we released and the relay has not confirmed closed: the relay, and until
    /// when we ask again after its challenge.
    releases: BTreeMap<Pairing, (SocketAddrV4, Instant)>,
    /// The last token each relay we joined through gave us (for our releases).
    tokens: BTreeMap<SocketAddrV4, Token>,
}

impl Circuits {
    /// Forgets the joins of a punch that ended (the circuit's path stays, once joined).
    pub(super) fn forget_punch(&mut self, punch: PunchId) {
        self.joins.retain(|_, (_, p, _)| *p != Some(punch));
        self.binds.retain(|_, (p, _)| *p != punch);
    }
}

impl Core {
    /// Turns the relay role on with `limits` (or off with `None`): this node then holds
    /// reservations and forwards between the two ends of each circuit (see
    /// [`crate::relay`]).
    pub fn set_relay(&mut self, limits: Option<RelayLimits>) {
        self.circuits.role = limits.map(|limits| {
            Box::new(Role {
                server: RelayServer::new(limits),
                per_ip: RateLimiter::new(4, Duration::from_secs(10), 1024),
                total: RateLimiter::new(200, Duration::from_secs(1), 1),
            })
        });
    }

    /// What the relay role did, when it is on.
    pub fn relay_stats(&self) -> Option<RelayStats> {
        self.circuits.role.as_ref().map(|r| r.server.stats())
    }

    /// The relay role's reservations and circuits held now, when it is on.
    pub fn relay_load(&self) -> Option<(usize, usize)> {
        let r = self.circuits.role.as_ref()?;
        Some((r.server.reservations(), r.server.circuits()))
    }

    /// Reserves a slot on `relay` and keeps it fresh, so that peers whose punch to us
    /// fails can reach us through it (replacing an earlier reservation's relay).
    pub fn reserve(&mut self, now: Instant, relay: SocketAddrV4) {
        self.now = now;
        self.circuits.reservation = Some(Reservation {
            relay,
            token: None,
            until: None,
            next: now,
        });
        self.relay_timers(now);
        self.pump();
    }

    /// The relay we reserved on, and whether it holds the reservation now.
    pub fn reservation(&self) -> Option<(SocketAddrV4, bool)> {
        let r = self.circuits.reservation.as_ref()?;
        Some((r.relay, r.until.is_some_and(|t| t > self.now)))
    }

    /// Peers reached through a relay's circuit.
    pub fn circuit_paths(&self) -> usize {
        self.circuits.paths.len()
    }

    /// The relay and pairing of the circuit to `peer`, if it is reached through one.
    pub(super) fn circuit_to(&self, peer: SocketAddrV4) -> Option<(SocketAddrV4, Pairing)> {
        self.circuits.paths.get(&peer).copied()
    }

    /// We sent to `peer` through its circuit: it is renewed before it ends.
    pub(super) fn circuit_used(&mut self, peer: SocketAddrV4) {
        if let Some(u) = self.circuits.upgrades.get_mut(&peer) {
            u.used = true;
        }
    }

    /// Where datagrams to `peer` go: the address a retry reached it at directly, if one did.
    pub(super) fn direct_to(&self, peer: SocketAddrV4) -> SocketAddrV4 {
        self.circuits.direct.get(&peer).copied().unwrap_or(peer)
    }

    /// A retry of a relayed peer ended: a direct path (not another circuit) replaces the
    /// circuit, which we release at once (the relay tells the peer, which then sends
    /// directly too).
    pub(super) fn on_upgrade(&mut self, peer: SocketAddrV4, opened: Option<super::Holepunch>) {
        let Some(h) = opened else {
            return;
        };
        if matches!(h.path, HolepunchPath::Circuit { .. }) {
            return;
        }
        tracing::debug!(%peer, path = ?h.path, addr = %h.addr, "a direct path replaces the circuit");
        if let Some((relay, pairing)) = self.circuits.paths.remove(&peer) {
            self.release(relay, pairing);
        }
        self.circuits.upgrades.remove(&peer);
        insert_bounded(&mut self.circuits.direct, peer, h.addr);
    }

    /// Asks `relay` to close `pairing` now, rather than at the end of its lifetime.
    fn release(&mut self, relay: SocketAddrV4, pairing: Pairing) {
        let now = self.now;
        let releases = &mut self.circuits.releases;
        releases.retain(|_, (_, until)| *until > now);
        if releases.len() >= MAX_CIRCUIT_PATHS {
            releases.pop_first();
        }
        releases.insert(pairing, (relay, now + RELEASE_WAIT));
        let token = self.relay_token(relay);
        self.send_relay(relay, &RelayMsg::Release(pairing, token));
    }

    /// The token `relay` last gave us, if any.
    fn relay_token(&self, relay: SocketAddrV4) -> Option<Token> {
        let ours = self.circuits.reservation.as_ref();
        let ours = ours.filter(|r| r.relay == relay).and_then(|r| r.token);
        ours.or_else(|| self.circuits.tokens.get(&relay).copied())
    }

    /// `relay` closed `pairing`: our release is done, or the peer released it (a direct
    /// path replaced it), so datagrams to the peer go directly now.
    fn on_released(&mut self, relay: SocketAddrV4, pairing: Pairing) {
        if self
            .circuits
            .releases
            .get(&pairing)
            .is_some_and(|(r, _)| *r == relay)
        {
            self.circuits.releases.remove(&pairing);
        }
        let peer = self
            .circuits
            .paths
            .iter()
            .find(|(_, v)| **v == (relay, pairing))
            .map(|(peer, _)| *peer);
        if let Some(peer) = peer {
            tracing::debug!(%peer, %relay, "the peer released our circuit: sending directly");
            self.circuits.paths.remove(&peer);
            self.circuits.upgrades.remove(&peer);
        }
    }

    /// Circuits we asked a relay to close that it has not confirmed yet.
    pub fn releases_pending(&self) -> usize {
        let now = self.now;
        let releases = self.circuits.releases.values();
        releases.filter(|(_, until)| *until > now).count()
    }

    /// Direct paths that replaced a circuit.
    pub fn upgraded_paths(&self) -> usize {
        self.circuits.direct.len()
    }

    fn send_relay(&mut self, to: SocketAddrV4, msg: &RelayMsg) {
        self.rpc.send_datagram(to, msg.encode());
    }

    /// The next deadline of the relay's timers.
    pub(super) fn next_relay(&self) -> Option<Instant> {
        let res = self.circuits.reservation.as_ref().map(|r| r.next);
        // (Not for a peer being punched: its retry waits for that punch, which ends in a
        // handled datagram or deadline of its own.)
        let upgrades = self
            .circuits
            .upgrades
            .iter()
            .filter(|(peer, _)| !self.punches.values().any(|p| p.peer == **peer))
            .map(|(_, u)| {
                if u.left > 0 {
                    u.next.min(u.renew_at)
                } else {
                    u.renew_at
                }
            });
        let waits = self.punches.values().filter_map(|p| match p.phase {
            Phase::RelayWait { until, .. } => Some(until),
            _ => None,
        });
        let role = self
            .circuits
            .role
            .as_ref()
            .and_then(|r| r.server.next_deadline());
        res.into_iter()
            .chain(waits)
            .chain(role)
            .chain(upgrades)
            .min()
    }

    /// Reserves again when due; fails the punches whose relay never came.
    pub(super) fn relay_timers(&mut self, now: Instant) {
        if let Some(r) = &mut self.circuits.reservation
            && r.next <= now
        {
            r.next = now + RESERVE_RETRY;
            let (relay, token) = (r.relay, r.token);
            self.send_relay(relay, &RelayMsg::Reserve(token));
        }
        if let Some(role) = &mut self.circuits.role {
            role.server.expire(now);
        }
        let late: Vec<(PunchId, BirthdayTry)> = self
            .punches
            .iter()
            .filter_map(|(id, p)| match p.phase {
                Phase::RelayWait { until, birthday } if until <= now => Some((*id, birthday)),
                _ => None,
            })
            .collect();
        for (punch, birthday) in late {
            self.fail_punch(punch, birthday);
        }
        // Punch again to relayed peers, at a bounded pace, while no punch to them runs;
        // renew the circuits that carry our datagrams before they end.
        let due: Vec<(SocketAddrV4, SocketAddrV4, bool)> = self
            .circuits
            .upgrades
            .iter()
            .filter(|(peer, u)| {
                (u.renew_at <= now || u.left > 0 && u.next <= now)
                    && !self.punches.values().any(|p| p.peer == **peer)
            })
            .map(|(peer, u)| (*peer, u.referrer, u.renew_at <= now))
            .collect();
        for (peer, referrer, renew) in due {
            let Some(u) = self.circuits.upgrades.get_mut(&peer) else {
                continue;
            };
            if renew {
                if !u.used {
                    // Idle: let the relay end it.
                    self.circuits.upgrades.remove(&peer);
                    continue;
                }
                u.used = false;
                u.renew_at = now + RENEW_AFTER;
                u.next = u.next.max(now + UPGRADE_EVERY);
            } else {
                u.left -= 1;
                u.next = now + UPGRADE_EVERY;
            }
            let id = self.holepunch(now, peer, referrer, true);
            if let Some(p) = self.punches.get_mut(&id) {
                p.upgrade = true;
                p.renew = renew;
            }
        }
    }

    /// The circuit to `peer` is `pairing` on `relay` now; the one it replaces, if another.
    fn add_circuit_path(
        &mut self,
        peer: SocketAddrV4,
        relay: SocketAddrV4,
        pairing: Pairing,
    ) -> Option<(SocketAddrV4, Pairing)> {
        let old = self.circuits.paths.get(&peer).copied();
        insert_bounded(&mut self.circuits.paths, peer, (relay, pairing));
        old.filter(|o| *o != (relay, pairing))
    }

    /// The circuit to `peer` is open: the one it renewed, if any, is released.
    fn circuit_replaced(&mut self, peer: SocketAddrV4, relay: SocketAddrV4, pairing: Pairing) {
        if let Some((old_relay, old)) = self.add_circuit_path(peer, relay, pairing) {
            tracing::debug!(%peer, "a fresh circuit replaces the old: releasing it");
            self.release(old_relay, old);
        }
    }

    /// A relay datagram (`raw` is all of it).
    pub(super) fn on_relay(&mut self, from: SocketAddrV4, msg: RelayMsg, raw: &bytes::Bytes) {
        let now = self.now;
        match msg {
            RelayMsg::Reserve(t)
            | RelayMsg::Bind(_, t)
            | RelayMsg::Join(_, t)
            | RelayMsg::Release(_, t) => {
                self.relay_request(from, &msg, t);
            }
            RelayMsg::Released(pairing) => self.on_released(from, pairing),
            RelayMsg::Data(pairing, payload) => {
                if let Some(role) = &mut self.circuits.role
                    && let Some(to) = role.server.forward(now, from, &pairing, raw.len())
                {
                    // The datagram as it came: bytes out = bytes in.
                    self.rpc.send_datagram(to, raw.clone());
                    return;
                }
                if payload.is_empty() {
                    // The peer joined a pairing we bound: our punch ends through it.
                    return self.on_bind_joined(from, pairing);
                }
                let peer = self
                    .circuits
                    .paths
                    .iter()
                    .find(|(_, (r, p))| *r == from && *p == pairing)
                    .map(|(peer, _)| *peer);
                if let Some(peer) = peer {
                    self.pending
                        .push_back(MachineEvent::Rpc(Event::Unrecognized {
                            from: peer,
                            payload,
                        }));
                }
            }
            RelayMsg::Challenge(token) => self.on_relay_challenge(from, token),
            RelayMsg::Reserved(secs) => {
                if let Some(r) = &mut self.circuits.reservation
                    && r.relay == from
                {
                    let held = Duration::from_secs(u64::from(secs));
                    r.until = Some(now + held);
                    r.next = now + (held / 2).min(REFRESH);
                    tracing::debug!(relay = %from, secs, "relay reservation held");
                }
            }
            RelayMsg::Joined(pairing) => {
                let Some(&(relay, punch, peer)) = self.circuits.joins.get(&pairing) else {
                    return;
                };
                if relay != from {
                    return;
                }
                self.circuit_replaced(peer, relay, pairing);
                let Some(punch) = punch else {
                    // The peer's relay, for the peer's punch: tell it the circuit is open
                    // (an empty datagram, which no application receives).
                    self.send_relay(relay, &RelayMsg::Data(pairing, bytes::Bytes::new()));
                    return;
                };
                self.circuit_opened(now, punch, peer, relay);
            }
            RelayMsg::Refused(why) => {
                tracing::debug!(relay = %from, ?why, "the relay refused");
            }
        }
    }

    /// A reserve, bind or join at the relay role: a challenge unless it carries our token.
    fn relay_request(&mut self, from: SocketAddrV4, msg: &RelayMsg, token: Option<Token>) {
        let now = self.now;
        let ip = *from.ip();
        if self.circuits.role.is_none() {
            return;
        }
        let valid = token.is_some_and(|t| self.rpc.is_roundtrip_token(ip, &t));
        if !valid {
            let challenge = RelayMsg::Challenge(self.rpc.roundtrip_token(ip));
            let Some(role) = &mut self.circuits.role else {
                return;
            };
            let sent = role.per_ip.allow(now, ip) && role.total.allow(now, ());
            role.server.challenged(sent);
            if sent {
                self.send_relay(from, &challenge);
            }
            return;
        }
        let Some(role) = &mut self.circuits.role else {
            return;
        };
        let out = match *msg {
            RelayMsg::Reserve(_) => role.server.reserve(now, from).into_iter().collect(),
            RelayMsg::Bind(p, _) => role.server.bind(now, from, p).into_iter().collect(),
            RelayMsg::Join(p, _) => role.server.join(now, from, p).into_iter().collect(),
            RelayMsg::Release(p, _) => role.server.release(now, from, p),
            _ => Vec::new(),
        };
        for (to, m) in out {
            self.send_relay(to, &m);
        }
    }

    /// A relay we talk to asks for its token: send again what we asked it.
    fn on_relay_challenge(&mut self, from: SocketAddrV4, token: Token) {
        let now = self.now;
        if self
            .circuits
            .last_challenge
            .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        self.circuits.last_challenge = Some(now);
        self.circuits.releases.retain(|_, (_, until)| *until > now);
        let known = self.circuits.paths.values().any(|(r, _)| *r == from)
            || self.circuits.joins.values().any(|(r, _, _)| *r == from)
            || self.circuits.releases.values().any(|(r, _)| *r == from);
        if known {
            insert_bounded(&mut self.circuits.tokens, from, token);
        }
        let mut again = Vec::new();
        if let Some(r) = &mut self.circuits.reservation
            && r.relay == from
        {
            let first = r.token.is_none();
            r.token = Some(token);
            if first || r.until.is_none_or(|t| t <= self.now) {
                again.push(RelayMsg::Reserve(Some(token)));
            }
            // Binds the relay did not take for want of a fresh token.
            for (_, (relay, p)) in self.circuits.paths.iter() {
                if *relay == from && !self.circuits.joins.contains_key(p) {
                    again.push(RelayMsg::Bind(*p, Some(token)));
                }
            }
            for p in self.circuits.binds.keys() {
                again.push(RelayMsg::Bind(*p, Some(token)));
            }
        }
        for (p, (relay, _, _)) in &self.circuits.joins {
            if *relay == from {
                again.push(RelayMsg::Join(*p, Some(token)));
            }
        }
        for (p, (relay, _)) in &self.circuits.releases {
            if *relay == from {
                again.push(RelayMsg::Release(*p, Some(token)));
            }
        }
        for m in again {
            self.send_relay(from, &m);
        }
    }
}

/// Inserts into a per-peer map of at most [`MAX_CIRCUIT_PATHS`] entries: a new peer past the
/// bound takes the lowest address's place.
fn insert_bounded<V>(map: &mut BTreeMap<SocketAddrV4, V>, peer: SocketAddrV4, v: V) {
    if map.len() >= MAX_CIRCUIT_PATHS
        && !map.contains_key(&peer)
        && let Some(first) = map.keys().next().copied()
    {
        map.remove(&first);
    }
    map.insert(peer, v);
}
