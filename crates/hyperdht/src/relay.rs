//! The bounded relay: a Rust-only extension for the pairs that cannot punch (symmetric <->
//! symmetric, or a network that drops unsolicited UDP). Its wire format, its limits and the
//! relay's own state, without I/O; the core runs it (`core/circuit.rs`).
//!
//! A peer that may need a relay *reserves* a slot on one; when a punch to it fails, it
//! *binds* a fresh pairing (16 random bytes) on that relay and tells the other peer, through
//! the referrer as the birthday hints travel, which relay and pairing to use; the other peer
//! *joins* it. From then on the relay forwards [`RelayMsg::Data`] between the two ends of
//! that pairing, and only between them: a datagram from anyone else, or for a pairing not
//! bound and joined, is dropped and counted. An end *releases* the circuit once a direct
//! path (or a fresh circuit) replaces it, and the relay tells both ends.
//!
//! Every message with an effect carries the relay's roundtrip token for the sender's IP
//! (the same proof as dht-rpc's announces): one without gets a [`RelayMsg::Challenge`]
//! with the token, and is padded so that the challenge is never larger than what asked for
//! it. A spoofed source never sees the token, so it cannot reserve, bind or join in another
//! host's name, and the relay never sends more toward an address than came from it: a
//! challenge is smaller than its request, [`RelayMsg::Joined`] goes to the joiner only, and
//! forwarded data is the datagram that came in, within the circuit's byte budget per
//! direction. The JavaScript reference never receives these datagrams (they start with
//! `[0, 0, 7]`, which does not decode as the protocol, and only a Rust relay is asked).

use std::collections::BTreeMap;
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};

use crate::hints::Token;

const MAGIC: &[u8] = b"\0\0\x07hyperdht-rs/relay/1/";

/// The key relays announce on (`hyperdht --relay` does, and
/// [`crate::HyperDht::announce_as_relay`]), so that a peer finds one through the DHT
/// itself with no list written in: [`crate::HyperDht::find_relays`] looks it up. An
/// ordinary announce, which JavaScript nodes store and answer as any other.
pub const RELAY_KEY: dht_wire::Key =
    dht_wire::Key::from_bytes(*b"hyperdht-rs/relays/v1/well-known");

/// A pairing: names one circuit on one relay (chosen at random by the peer that binds it).
pub type Pairing = [u8; 16];

/// What a relay datagram says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayMsg {
    /// Peer -> relay: reserve (or refresh) a slot for me; with the relay's token.
    Reserve(Option<Token>),
    /// Relay -> peer: the slot is held for this many seconds.
    Reserved(u32),
    /// Relay -> peer: refused (see [`Refusal`]).
    Refused(Refusal),
    /// Relay -> peer: prove that you receive at your IP: send again with this token.
    Challenge(Token),
    /// Reserved peer -> relay: open `pairing` for one other peer to join.
    Bind(Pairing, Option<Token>),
    /// Other peer -> relay: join `pairing`.
    Join(Pairing, Option<Token>),
    /// Relay -> joiner: the circuit is open.
    Joined(Pairing),
    /// Either end -> relay -> the other end: an application datagram.
    Data(Pairing, Bytes),
    /// Either end -> relay: close this circuit now (a direct path replaced it, or a fresh
    /// circuit did); with the relay's token.
    Release(Pairing, Option<Token>),
    /// Relay -> both ends: the circuit is closed (the releaser's acknowledgement, and the
    /// other end's notice to send directly).
    Released(Pairing),
}

/// Why a relay refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// All reservations are taken.
    ReservationsFull = 1,
    /// The sender's IP or /24 holds its share of reservations (or its /24 its share of
    /// circuits).
    PerSource = 2,
    /// All circuits are taken.
    CircuitsFull = 3,
    /// The peer's share of circuits is taken.
    PerPeer = 4,
    /// A bind without a reservation.
    NoReservation = 5,
    /// A join of a pairing not bound (or already joined, or closed).
    UnknownPairing = 6,
    /// The other end is an address the relay never sends to.
    Destination = 7,
}

impl Refusal {
    fn of(b: u8) -> Option<Self> {
        use Refusal::*;
        [
            ReservationsFull,
            PerSource,
            CircuitsFull,
            PerPeer,
            NoReservation,
            UnknownPairing,
            Destination,
        ]
        .into_iter()
        .find(|r| *r as u8 == b)
    }
}

/// The length of a message that asks for a challenge: a challenge is never larger.
const ASK_LEN: usize = MAGIC.len() + 1 + 1 + 32 + 16;
/// Zero bytes after a release's pairing.
const RELEASE_PAD: usize = 8;

impl RelayMsg {
    /// The bytes that carry it. Messages that may be answered with a challenge are padded
    /// to [`RelayMsg::Challenge`]'s size or more.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(ASK_LEN);
        b.put_slice(MAGIC);
        let token = |b: &mut BytesMut, t: &Option<Token>| match t {
            Some(t) => {
                b.put_u8(1);
                b.put_slice(t);
            }
            None => {
                b.put_u8(0);
                b.put_bytes(0, 32);
            }
        };
        match self {
            RelayMsg::Reserve(t) => {
                b.put_u8(1);
                token(&mut b, t);
                b.put_bytes(0, 16);
            }
            RelayMsg::Reserved(secs) => {
                b.put_u8(2);
                b.put_u32(*secs);
            }
            RelayMsg::Refused(r) => {
                b.put_u8(3);
                b.put_u8(*r as u8);
            }
            RelayMsg::Challenge(t) => {
                b.put_u8(4);
                b.put_slice(t);
            }
            RelayMsg::Bind(p, t) => {
                b.put_u8(5);
                token(&mut b, t);
                b.put_slice(p);
            }
            RelayMsg::Join(p, t) => {
                b.put_u8(6);
                token(&mut b, t);
                b.put_slice(p);
            }
            RelayMsg::Joined(p) => {
                b.put_u8(7);
                b.put_slice(p);
            }
            RelayMsg::Data(p, payload) => {
                b.put_u8(8);
                b.put_slice(p);
                b.put_slice(payload);
            }
            RelayMsg::Release(p, t) => {
                // Padded so that the two notices it brings are no larger in all.
                b.put_u8(9);
                token(&mut b, t);
                b.put_slice(p);
                b.put_bytes(0, RELEASE_PAD);
            }
            RelayMsg::Released(p) => {
                b.put_u8(10);
                b.put_slice(p);
            }
        }
        b.freeze()
    }

    /// Reads one; `None` for anything else. Never panics.
    pub fn decode(b: &[u8]) -> Option<RelayMsg> {
        let rest = b.strip_prefix(MAGIC)?;
        let (&tag, rest) = rest.split_first()?;
        let token = |t: &[u8]| -> Option<Option<Token>> {
            match t.split_first()? {
                (0, z) if z.len() == 32 => Some(None),
                (1, t) => Token::try_from(t).ok().map(Some),
                _ => None,
            }
        };
        let pairing = |p: &[u8]| Pairing::try_from(p).ok();
        match tag {
            1 if rest.len() == 33 + 16 => token(&rest[..33]).map(RelayMsg::Reserve),
            2 => <[u8; 4]>::try_from(rest)
                .ok()
                .map(|s| RelayMsg::Reserved(u32::from_be_bytes(s))),
            3 => match rest {
                [r] => Refusal::of(*r).map(RelayMsg::Refused),
                _ => None,
            },
            4 => Token::try_from(rest).ok().map(RelayMsg::Challenge),
            5 | 6 if rest.len() == 33 + 16 => {
                let t = token(&rest[..33])?;
                let p = pairing(&rest[33..])?;
                Some(if tag == 5 {
                    RelayMsg::Bind(p, t)
                } else {
                    RelayMsg::Join(p, t)
                })
            }
            9 if rest.len() == 33 + 16 + RELEASE_PAD => {
                let t = token(&rest[..33])?;
                Some(RelayMsg::Release(pairing(&rest[33..49])?, t))
            }
            7 => pairing(rest).map(RelayMsg::Joined),
            10 => pairing(rest).map(RelayMsg::Released),
            8 if rest.len() >= 16 => Some(RelayMsg::Data(
                pairing(&rest[..16])?,
                Bytes::copy_from_slice(&rest[16..]),
            )),
            _ => None,
        }
    }
}

/// A relay's limits (defaults as libp2p's circuit relay v2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayLimits {
    /// How long a reservation lasts unless refreshed.
    pub reservation_ttl: Duration,
    /// Reservations held at most.
    pub max_reservations: usize,
    /// Reservations per IP at most.
    pub reservations_per_ip: usize,
    /// Reservations per /24 at most.
    pub reservations_per_prefix: usize,
    /// Circuits (bound or joined) at most.
    pub max_circuits: usize,
    /// Circuits per reserved peer at most.
    pub circuits_per_peer: usize,
    /// Circuits bound by peers of one /24 at most (half of `max_circuits` by default, so
    /// that one network cannot hold them all; libp2p has no such limit).
    pub circuits_per_prefix: usize,
    /// How long a circuit lasts.
    pub circuit_lifetime: Duration,
    /// Bytes forwarded per direction of a circuit at most.
    pub circuit_bytes: u64,
    /// How long a bound pairing waits to be joined.
    pub join_wait: Duration,
    /// Sources in these ranges skip the per-IP and per-/24 limits (a private cluster, a
    /// lab whose hosts share a /24), as they skip the defences' (`--trust`).
    pub trusted: Vec<dht_rpc::guard::Ipv4Range>,
}

impl Default for RelayLimits {
    fn default() -> Self {
        RelayLimits {
            reservation_ttl: Duration::from_secs(3600),
            max_reservations: 128,
            reservations_per_ip: 2,
            reservations_per_prefix: 4,
            max_circuits: 16,
            circuits_per_peer: 4,
            circuits_per_prefix: 8,
            circuit_lifetime: Duration::from_secs(120),
            circuit_bytes: 128 * 1024,
            join_wait: Duration::from_secs(10),
            trusted: Vec::new(),
        }
    }
}

/// What a relay did, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Reservations made or refreshed.
    pub reserved: u64,
    /// Circuits joined.
    pub circuits: u64,
    /// Datagrams and bytes forwarded.
    pub forwarded: u64,
    /// Bytes forwarded.
    pub forwarded_bytes: u64,
    /// Challenges sent (a message without a valid token).
    pub challenged: u64,
    /// Messages that asked for a challenge over its rate limit: dropped.
    pub challenge_limited: u64,
    /// Refusals: reservations full, per source, circuits full, per peer, no reservation,
    /// unknown pairing, refused destination.
    pub refused_reservations_full: u64,
    /// See `refused_reservations_full`.
    pub refused_per_source: u64,
    /// See `refused_reservations_full`.
    pub refused_circuits_full: u64,
    /// See `refused_reservations_full`.
    pub refused_per_peer: u64,
    /// See `refused_reservations_full`.
    pub refused_no_reservation: u64,
    /// See `refused_reservations_full`.
    pub refused_unknown_pairing: u64,
    /// See `refused_reservations_full`.
    pub refused_destination: u64,
    /// Data from an address that is not an end of its pairing's open circuit: dropped.
    pub dropped_strangers: u64,
    /// Data past a circuit's byte budget: dropped.
    pub dropped_over_budget: u64,
    /// Circuits closed at the end of their lifetime or unjoined.
    pub expired: u64,
    /// Circuits an end released before their end.
    pub released: u64,
    /// Releases of a pairing the sender is not an end of (or that is closed): ignored.
    pub release_ignored: u64,
}

#[derive(Debug)]
struct Circuit {
    /// The reserved peer that bound it.
    bound: SocketAddrV4,
    joined: Option<SocketAddrV4>,
    until: Instant,
    /// Bytes forwarded from `bound` and to it.
    from_bound: u64,
    to_bound: u64,
}

/// A relay's state: reservations and circuits, within [`RelayLimits`].
#[derive(Debug, Default)]
pub struct RelayServer {
    limits: RelayLimits,
    reservations: BTreeMap<SocketAddrV4, Instant>,
    circuits: BTreeMap<Pairing, Circuit>,
    stats: RelayStats,
}

/// A message of the relay's to send.
pub type Out = (SocketAddrV4, RelayMsg);

impl RelayServer {
    /// A relay with `limits`.
    pub fn new(limits: RelayLimits) -> Self {
        RelayServer {
            limits,
            ..RelayServer::default()
        }
    }

    /// What it did.
    pub fn stats(&self) -> RelayStats {
        self.stats
    }

    /// Reservations held.
    pub fn reservations(&self) -> usize {
        self.reservations.len()
    }

    /// Circuits bound or joined.
    pub fn circuits(&self) -> usize {
        self.circuits.len()
    }

    /// When [`RelayServer::expire`] has work next.
    pub fn next_deadline(&self) -> Option<Instant> {
        let r = self.reservations.values().copied();
        r.chain(self.circuits.values().map(|c| c.until)).min()
    }

    /// Forgets what expired by `now`.
    pub fn expire(&mut self, now: Instant) {
        self.reservations.retain(|_, until| *until > now);
        let before = self.circuits.len();
        self.circuits.retain(|_, c| c.until > now);
        self.stats.expired += (before - self.circuits.len()) as u64;
    }

    /// Counts a challenge sent (the core checks the token and its rate).
    pub fn challenged(&mut self, sent: bool) {
        if sent {
            self.stats.challenged += 1;
        } else {
            self.stats.challenge_limited += 1;
        }
    }

    fn refuse(&mut self, to: SocketAddrV4, r: Refusal) -> Option<Out> {
        let s = &mut self.stats;
        *match r {
            Refusal::ReservationsFull => &mut s.refused_reservations_full,
            Refusal::PerSource => &mut s.refused_per_source,
            Refusal::CircuitsFull => &mut s.refused_circuits_full,
            Refusal::PerPeer => &mut s.refused_per_peer,
            Refusal::NoReservation => &mut s.refused_no_reservation,
            Refusal::UnknownPairing => &mut s.refused_unknown_pairing,
            Refusal::Destination => &mut s.refused_destination,
        } += 1;
        Some((to, RelayMsg::Refused(r)))
    }

    /// A reservation from `from`, whose token was valid.
    pub fn reserve(&mut self, now: Instant, from: SocketAddrV4) -> Option<Out> {
        self.expire(now);
        let until = now + self.limits.reservation_ttl;
        if let Some(t) = self.reservations.get_mut(&from) {
            *t = until;
        } else {
            if self.reservations.len() >= self.limits.max_reservations {
                return self.refuse(from, Refusal::ReservationsFull);
            }
            let ip = *from.ip();
            let prefix = u32::from(ip) >> 8;
            let same_ip = self.reservations.keys().filter(|a| *a.ip() == ip).count();
            let same_prefix = self
                .reservations
                .keys()
                .filter(|a| u32::from(*a.ip()) >> 8 == prefix)
                .count();
            let trusted = dht_rpc::guard::in_ranges(&self.limits.trusted, ip);
            if !trusted
                && (same_ip >= self.limits.reservations_per_ip
                    || same_prefix >= self.limits.reservations_per_prefix)
            {
                return self.refuse(from, Refusal::PerSource);
            }
            self.reservations.insert(from, until);
        }
        self.stats.reserved += 1;
        let secs = self
            .limits
            .reservation_ttl
            .as_secs()
            .min(u64::from(u32::MAX)) as u32;
        Some((from, RelayMsg::Reserved(secs)))
    }

    /// A bind of `pairing` from `from`, whose token was valid. Answers only a refusal.
    pub fn bind(&mut self, now: Instant, from: SocketAddrV4, pairing: Pairing) -> Option<Out> {
        self.expire(now);
        if !self.reservations.contains_key(&from) {
            return self.refuse(from, Refusal::NoReservation);
        }
        if let Some(c) = self.circuits.get(&pairing) {
            // A repeated bind (a lost datagram, say) of its own pairing changes nothing.
            return if c.bound == from {
                None
            } else {
                self.refuse(from, Refusal::UnknownPairing)
            };
        }
        if self.circuits.len() >= self.limits.max_circuits {
            return self.refuse(from, Refusal::CircuitsFull);
        }
        if self.circuits.values().filter(|c| c.bound == from).count()
            >= self.limits.circuits_per_peer
        {
            return self.refuse(from, Refusal::PerPeer);
        }
        let prefix = u32::from(*from.ip()) >> 8;
        let same_prefix = self
            .circuits
            .values()
            .filter(|c| u32::from(*c.bound.ip()) >> 8 == prefix)
            .count();
        if same_prefix >= self.limits.circuits_per_prefix
            && !dht_rpc::guard::in_ranges(&self.limits.trusted, *from.ip())
        {
            return self.refuse(from, Refusal::PerSource);
        }
        self.circuits.insert(
            pairing,
            Circuit {
                bound: from,
                joined: None,
                until: now + self.limits.join_wait,
                from_bound: 0,
                to_bound: 0,
            },
        );
        None
    }

    /// A join of `pairing` from `from`, whose token was valid.
    pub fn join(&mut self, now: Instant, from: SocketAddrV4, pairing: Pairing) -> Option<Out> {
        self.expire(now);
        let lifetime = self.limits.circuit_lifetime;
        let Some(c) = self.circuits.get_mut(&pairing) else {
            return self.refuse(from, Refusal::UnknownPairing);
        };
        match c.joined {
            Some(j) if j == from => {}
            Some(_) => return self.refuse(from, Refusal::UnknownPairing),
            None if from == c.bound => return self.refuse(from, Refusal::UnknownPairing),
            None => {
                // Both ends proved their addresses; neither may be a special-purpose one.
                let ok = |a: SocketAddrV4, b: SocketAddrV4| {
                    dht_rpc::guard::dest::may_send_for(*a.ip(), b).is_ok()
                };
                if !ok(from, c.bound) || !ok(c.bound, from) {
                    return self.refuse(from, Refusal::Destination);
                }
                c.joined = Some(from);
                c.until = now + lifetime;
                self.stats.circuits += 1;
            }
        }
        Some((from, RelayMsg::Joined(pairing)))
    }

    /// A release of `pairing` from `from`, whose token was valid: an end of the circuit
    /// closes it, and both hear [`RelayMsg::Released`] (each notice smaller than the
    /// release, to an address that proved it receives). An end is known by its address,
    /// or by its IP alone (a NAT that rebinds gives the end that moved to a direct path a
    /// new port; it still proves its IP and knows the secret pairing). Anyone else is
    /// ignored, unanswered.
    pub fn release(&mut self, now: Instant, from: SocketAddrV4, pairing: Pairing) -> Vec<Out> {
        self.expire(now);
        let other = self.circuits.get(&pairing).and_then(|c| {
            let ends = [Some(c.bound), c.joined];
            let ends = ends.into_iter().flatten();
            let by_ip = |a: &SocketAddrV4| a.ip() == from.ip();
            let me = ends
                .clone()
                .find(|a| *a == from)
                .or_else(|| ends.clone().find(by_ip))?;
            Some(ends.filter(|a| *a != me).collect::<Vec<_>>())
        });
        let Some(other) = other else {
            self.stats.release_ignored += 1;
            return Vec::new();
        };
        self.circuits.remove(&pairing);
        self.stats.released += 1;
        std::iter::once(from)
            .chain(other)
            .map(|to| (to, RelayMsg::Released(pairing)))
            .collect()
    }

    /// Data for `pairing` from `from` (`len` bytes on the wire): where to forward it, if
    /// `from` is an end of the pairing's open circuit and the direction's budget holds it.
    pub fn forward(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        pairing: &Pairing,
        len: usize,
    ) -> Option<SocketAddrV4> {
        let budget = self.limits.circuit_bytes;
        let c = self.circuits.get_mut(pairing).filter(|c| c.until > now);
        let Some((c, joined)) = c.and_then(|c| c.joined.map(|j| (c, j))) else {
            self.stats.dropped_strangers += 1;
            return None;
        };
        let (used, to) = if from == c.bound {
            (&mut c.from_bound, joined)
        } else if from == joined {
            (&mut c.to_bound, c.bound)
        } else {
            self.stats.dropped_strangers += 1;
            return None;
        };
        if *used + len as u64 > budget {
            self.stats.dropped_over_budget += 1;
            return None;
        }
        *used += len as u64;
        self.stats.forwarded += 1;
        self.stats.forwarded_bytes += len as u64;
        Some(to)
    }
}

/// Whether `ip` and `other` are in one /24 (for the tests' source limits).
#[cfg(test)]
fn same_prefix(ip: std::net::Ipv4Addr, other: std::net::Ipv4Addr) -> bool {
    u32::from(ip) >> 8 == u32::from(other) >> 8
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn a(i: u8, j: u8) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(44, 1, i, j), 4000 + u16::from(j))
    }

    #[test]
    fn messages_round_trip_and_never_decode_as_the_protocol() {
        let p = [3; 16];
        for m in [
            RelayMsg::Reserve(None),
            RelayMsg::Reserve(Some([9; 32])),
            RelayMsg::Reserved(3600),
            RelayMsg::Refused(Refusal::PerPeer),
            RelayMsg::Challenge([1; 32]),
            RelayMsg::Bind(p, None),
            RelayMsg::Bind(p, Some([2; 32])),
            RelayMsg::Join(p, Some([4; 32])),
            RelayMsg::Joined(p),
            RelayMsg::Data(p, Bytes::from_static(b"hello")),
            RelayMsg::Data(p, Bytes::new()),
            RelayMsg::Release(p, None),
            RelayMsg::Release(p, Some([5; 32])),
            RelayMsg::Released(p),
        ] {
            let b = m.encode();
            assert_eq!(RelayMsg::decode(&b), Some(m.clone()));
            assert!(dht_wire::Datagram::decode(&b).is_err());
            // Truncations never panic, and a message asking for a challenge is no smaller
            // than the challenge.
            for n in 0..b.len() {
                let _ = RelayMsg::decode(&b[..n]);
            }
            if matches!(
                m,
                RelayMsg::Reserve(None) | RelayMsg::Bind(_, None) | RelayMsg::Release(_, None)
            ) {
                assert!(b.len() >= RelayMsg::Challenge([0; 32]).encode().len());
            }
            // A release is answered by two notices, together no larger than it.
            if matches!(m, RelayMsg::Release(..)) {
                assert!(b.len() >= 2 * RelayMsg::Released(p).encode().len());
            }
        }
        assert_eq!(
            RelayMsg::decode(b"\0\0\x07hyperdht-rs/relay/1/\x03\x09"),
            None
        );
        assert_eq!(
            crate::hints::Hint::decode(&RelayMsg::Joined(p).encode()),
            None
        );
    }

    #[test]
    fn reservations_are_bounded_in_all_per_ip_and_per_prefix() {
        let t = Instant::now();
        let limits = RelayLimits {
            max_reservations: 6,
            ..RelayLimits::default()
        };
        let mut r = RelayServer::new(limits);
        // One IP: two ports reserve, the third is refused.
        let ip = |port| SocketAddrV4::new(Ipv4Addr::new(44, 1, 0, 1), port);
        assert!(matches!(
            r.reserve(t, ip(1)),
            Some((_, RelayMsg::Reserved(3600)))
        ));
        assert!(matches!(
            r.reserve(t, ip(2)),
            Some((_, RelayMsg::Reserved(_)))
        ));
        let refused = Some((ip(3), RelayMsg::Refused(Refusal::PerSource)));
        assert_eq!(r.reserve(t, ip(3)), refused);
        // A refresh is not a new reservation.
        assert!(matches!(
            r.reserve(t, ip(1)),
            Some((_, RelayMsg::Reserved(_)))
        ));
        // One /24: four in all.
        assert!(
            r.reserve(t, a(0, 2))
                .is_some_and(|(_, m)| m == RelayMsg::Reserved(3600))
        );
        assert!(
            r.reserve(t, a(0, 3))
                .is_some_and(|(_, m)| m == RelayMsg::Reserved(3600))
        );
        assert!(same_prefix(*a(0, 4).ip(), *ip(1).ip()));
        assert_eq!(
            r.reserve(t, a(0, 4)),
            Some((a(0, 4), RelayMsg::Refused(Refusal::PerSource)))
        );
        for i in 1..=2 {
            assert!(
                r.reserve(t, a(i, 1))
                    .is_some_and(|(_, m)| m == RelayMsg::Reserved(3600))
            );
        }
        assert_eq!(
            r.reserve(t, a(9, 1)),
            Some((a(9, 1), RelayMsg::Refused(Refusal::ReservationsFull)))
        );
        assert_eq!(r.reservations(), 6);
        // They expire.
        r.expire(t + Duration::from_secs(3600));
        assert_eq!(r.reservations(), 0);
        let s = r.stats();
        assert_eq!((s.refused_per_source, s.refused_reservations_full), (2, 1));
    }

    #[test]
    fn trusted_sources_skip_the_per_source_limits_but_not_the_total() {
        let t = Instant::now();
        let limits = RelayLimits {
            max_reservations: 10,
            trusted: vec!["44.1.0.0/16".parse().expect("range")],
            ..RelayLimits::default()
        };
        let mut r = RelayServer::new(limits);
        for port in 1..=10 {
            let from = SocketAddrV4::new(Ipv4Addr::new(44, 1, 0, 1), port);
            assert!(
                r.reserve(t, from)
                    .is_some_and(|(_, m)| m == RelayMsg::Reserved(3600))
            );
        }
        let from = SocketAddrV4::new(Ipv4Addr::new(44, 1, 0, 1), 11);
        assert_eq!(
            r.reserve(t, from),
            Some((from, RelayMsg::Refused(Refusal::ReservationsFull)))
        );
    }

    #[test]
    fn a_circuit_forwards_only_between_its_two_ends_and_within_its_budget() {
        let t = Instant::now();
        let limits = RelayLimits {
            circuit_bytes: 1000,
            ..RelayLimits::default()
        };
        let mut r = RelayServer::new(limits);
        let (server, client, stranger) = (a(1, 1), a(2, 2), a(3, 3));
        let p = [7; 16];
        // No bind without a reservation; no join of a pairing not bound.
        let refused = |to, why| Some((to, RelayMsg::Refused(why)));
        assert_eq!(
            r.bind(t, server, p),
            refused(server, Refusal::NoReservation)
        );
        assert_eq!(
            r.join(t, client, p),
            refused(client, Refusal::UnknownPairing)
        );
        r.reserve(t, server);
        assert_eq!(r.bind(t, server, p), None);
        assert_eq!(r.bind(t, server, p), None, "a repeated bind");
        assert_eq!(
            r.bind(t, stranger, p),
            refused(stranger, Refusal::NoReservation)
        );
        // Nothing is forwarded before the join.
        assert_eq!(r.forward(t, server, &p, 10), None);
        assert_eq!(
            r.join(t, server, p),
            refused(server, Refusal::UnknownPairing)
        );
        assert_eq!(r.join(t, client, p), Some((client, RelayMsg::Joined(p))));
        assert_eq!(
            r.join(t, stranger, p),
            refused(stranger, Refusal::UnknownPairing)
        );
        // Both ways; never for a stranger, nor for another pairing.
        assert_eq!(r.forward(t, server, &p, 100), Some(client));
        assert_eq!(r.forward(t, client, &p, 100), Some(server));
        assert_eq!(r.forward(t, stranger, &p, 100), None);
        assert_eq!(r.forward(t, client, &[8; 16], 100), None);
        // Each direction's budget: 1000 bytes.
        assert_eq!(r.forward(t, server, &p, 900), Some(client));
        assert_eq!(
            r.forward(t, server, &p, 1),
            None,
            "the server's direction is spent"
        );
        assert_eq!(r.forward(t, client, &p, 900), Some(server));
        assert_eq!(r.forward(t, client, &p, 1), None);
        let s = r.stats();
        assert_eq!((s.forwarded, s.forwarded_bytes), (4, 2000));
        assert_eq!((s.dropped_strangers, s.dropped_over_budget), (3, 2));
        // The circuit ends with its lifetime.
        r.expire(t + Duration::from_secs(120));
        assert_eq!(r.circuits(), 0);
    }

    #[test]
    fn circuits_are_bounded_in_all_and_per_peer_and_unjoined_ones_expire() {
        let t = Instant::now();
        let mut r = RelayServer::new(RelayLimits::default());
        let server = a(1, 1);
        r.reserve(t, server);
        for i in 0..4 {
            assert_eq!(r.bind(t, server, [i; 16]), None);
        }
        assert_eq!(
            r.bind(t, server, [9; 16]),
            Some((server, RelayMsg::Refused(Refusal::PerPeer)))
        );
        for i in 2..=13 {
            let s = a(i, 1);
            r.reserve(t, s);
            assert_eq!(r.bind(t, s, [100 + i; 16]), None);
        }
        assert_eq!(r.circuits(), 16);
        let s = a(20, 1);
        r.reserve(t, s);
        assert_eq!(
            r.bind(t, s, [99; 16]),
            Some((s, RelayMsg::Refused(Refusal::CircuitsFull)))
        );
        // Peers of one /24 hold at most half of them.
        let mut r2 = RelayServer::new(RelayLimits::default());
        let one_net: Vec<SocketAddrV4> = (1..=4).map(|j| a(30, j)).collect();
        for (k, s) in one_net.iter().enumerate() {
            r2.reserve(t, *s);
            for i in 0..2 {
                assert_eq!(r2.bind(t, *s, [(k * 2 + i) as u8; 16]), None);
            }
        }
        assert_eq!(r2.circuits(), 8);
        assert_eq!(
            r2.bind(t, one_net[0], [50; 16]),
            Some((one_net[0], RelayMsg::Refused(Refusal::PerSource)))
        );
        r2.reserve(t, a(31, 1));
        assert_eq!(r2.bind(t, a(31, 1), [51; 16]), None, "another /24's peer");
        // Unjoined, they give their room back after the join wait.
        r.expire(t + Duration::from_secs(10));
        assert_eq!(r.circuits(), 0);
        assert_eq!(r.bind(t + Duration::from_secs(10), s, [99; 16]), None);
    }

    #[test]
    fn only_an_end_releases_its_circuit_and_both_ends_hear_it() {
        let t = Instant::now();
        let mut r = RelayServer::new(RelayLimits::default());
        let (server, client, stranger) = (a(1, 1), a(2, 2), a(3, 3));
        let p = [7; 16];
        r.reserve(t, server);
        r.bind(t, server, p);
        r.join(t, client, p);
        // A stranger, or a pairing nobody bound, changes nothing and hears nothing.
        assert_eq!(r.release(t, stranger, p), vec![]);
        assert_eq!(r.release(t, client, [8; 16]), vec![]);
        assert_eq!(r.circuits(), 1);
        assert_eq!(r.forward(t, client, &p, 10), Some(server));
        // An end closes it at once; both ends hear it, and nothing more is forwarded.
        let released = RelayMsg::Released(p);
        assert_eq!(
            r.release(t, client, p),
            vec![(client, released.clone()), (server, released)]
        );
        assert_eq!(r.circuits(), 0);
        assert_eq!(r.forward(t, server, &p, 10), None);
        assert_eq!(r.release(t, client, p), vec![], "released once");
        // An unjoined bind is released by its binder alone.
        r.bind(t, server, [9; 16]);
        assert_eq!(
            r.release(t, server, [9; 16]),
            vec![(server, RelayMsg::Released([9; 16]))]
        );
        // An end whose NAT rebound it to another port (same IP) still releases; the notice
        // goes to where the release came from, and to the other end.
        r.bind(t, server, [10; 16]);
        r.join(t, client, [10; 16]);
        let moved = SocketAddrV4::new(*client.ip(), 9999);
        let released = RelayMsg::Released([10; 16]);
        assert_eq!(
            r.release(t, moved, [10; 16]),
            vec![(moved, released.clone()), (server, released)]
        );
        let s = r.stats();
        assert_eq!((s.released, s.release_ignored, s.expired), (3, 3, 0));
    }

    #[test]
    fn a_circuit_never_joins_special_purpose_addresses() {
        let t = Instant::now();
        let mut r = RelayServer::new(RelayLimits::default());
        let server = a(1, 1);
        r.reserve(t, server);
        r.bind(t, server, [1; 16]);
        let broadcast = SocketAddrV4::new(Ipv4Addr::BROADCAST, 9);
        assert_eq!(
            r.join(t, broadcast, [1; 16]),
            Some((broadcast, RelayMsg::Refused(Refusal::Destination)))
        );
        assert_eq!(r.stats().refused_destination, 1);
    }
}
