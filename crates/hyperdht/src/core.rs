//! [`Core`]: the hyperdht node without I/O. It wraps the dht-rpc core (whose handler is the
//! peer store's [`PeersHandler`]) and adds what hyperdht does on top: hole punching (rounds,
//! the symmetric-NAT check, the birthday punch) as timers and extra sockets, kept
//! announcements, application datagrams on punched paths. The tokio driver
//! (`dht_rpc::Driver`) runs it as it runs a plain dht-rpc core; the simulator and fuzzers can
//! run it with no runtime at all.
//!
//! A hole punch ([`Core::holepunch`]) sends, in [`PUNCH_ROUNDS`] rounds [`PUNCH_INTERVAL`]
//! apart, a direct ping to the peer and a ping relayed through the referrer (the reference
//! sends only the latter). The first answer ends it with [`CoreEvent::Punched`] and says
//! which path opened. When every request of every round failed and there is a referrer to
//! carry a hint, the core asks two DHT nodes how they see us: if they see different ports,
//! our NAT is symmetric (remembered for a minute) and we are the birthday punch's hard side,
//! else its easy side (see [`crate::hints`]). The punch then ends with the birthday's
//! outcome, or [`HolepunchError::NoAnswer`].
//!
//! Abuse: a relayed hint (a birthday punch's request to spray or to open sockets) costs us
//! a thousand datagrams or 256 sockets toward the requester's IP, which a forger could name
//! as anyone's. So a hint first gets a challenge, relayed back through the same relay: our
//! roundtrip token for the requester's IP, which only a requester that receives there sees.
//! The core acts only on a hint that echoes it, at most one per requester IP every 10 s, two
//! per relay IP a minute and six a minute in all; it sends at most two challenges per
//! requester IP every 10 s and sixty a minute; it runs one hard side for peers at a time; and
//! the dht-rpc core passes hints on only from relays that proved they receive at their
//! address.

mod birthday;
mod circuit;
mod peers;
mod reannounce;

use std::collections::{BTreeMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use dht_rpc::{
    Event, Machine, MachineEvent, NodeId, Pong, QueryError, RateLimiter, RequestError, RequestId,
    SocketId, SocketOp, Transmit,
};
use dht_wire::Key;

pub use birthday::MAX_PATHS;
use birthday::{Easy, Hard};
pub use circuit::{MAX_CIRCUIT_PATHS, RELAY_WAIT, RENEW_AFTER, UPGRADE_EVERY};
use reannounce::Kept;
pub use reannounce::{KeepId, REANNOUNCE};

use crate::events::PeerEvent;
use crate::hints::{Hint, Token};
use crate::serve::PeersHandler;

/// Rounds of direct probe + relayed ping.
pub const PUNCH_ROUNDS: u32 = 4;
/// The time between two rounds.
pub const PUNCH_INTERVAL: Duration = Duration::from_millis(300);

/// Which path a hole punch opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HolepunchPath {
    /// Our direct probe was answered.
    Direct,
    /// The ping relayed through the referrer was answered.
    Relayed,
    /// The birthday punch (a symmetric NAT on one side) met.
    Birthday,
    /// No direct path opened; the peer's relay joined us in a circuit (see
    /// [`crate::relay`]): datagrams to the peer go through `relay`.
    Circuit {
        /// The relay that forwards between us.
        relay: SocketAddrV4,
    },
}

/// A successful hole punch.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Holepunch {
    /// The path that opened first.
    pub path: HolepunchPath,
    /// Where the peer answered from: send to this address (a symmetric NAT in front of the
    /// peer makes it differ from the announced one).
    pub addr: SocketAddrV4,
    /// The peer's id, when it answered a ping.
    pub id: Option<NodeId>,
    /// From the start of the punch to the first answer.
    pub elapsed: Duration,
}

/// Whether the birthday punch (two Rust peers, one behind a symmetric NAT) was tried after the
/// ordinary rounds failed, and from which side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BirthdayTry {
    /// Not tried: the referrer is ourselves, so there is nobody to carry the hint.
    NotTried,
    /// We are behind a symmetric NAT: we opened 256 sockets toward the peer and asked it
    /// to spray us; nothing met.
    HardSide,
    /// We have a stable address: we asked the peer to open sockets toward us and sprayed
    /// its IP; no acknowledgement came (the peer is not ours, or not behind a symmetric NAT,
    /// or too many ports away).
    EasySide,
}

/// Why a hole punch failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HolepunchError {
    /// No answer came to any round of direct probes and relayed pings, and the birthday
    /// punch (if tried) did not meet. Usually: the peer is gone, the address is not its DHT
    /// socket (an announced service port, say), or both sides are behind NATs that map each
    /// destination to a new port.
    #[error(
        "no answer from {peer} to {rounds} rounds of direct probes{} ({birthday:?} for the birthday punch); is it the peer's DHT address, and is the peer up?",
        if *.relayed { " and pings relayed by the referrer" } else { "" }
    )]
    NoAnswer {
        /// The peer.
        peer: SocketAddrV4,
        /// Rounds sent.
        rounds: u32,
        /// Whether pings were relayed by the referrer (not when it is the peer or us).
        relayed: bool,
        /// What came of the birthday punch.
        birthday: BirthdayTry,
    },
    /// Our node could not send (too many requests queued) or shut down.
    #[error("the hole punch could not run: {0}")]
    Node(RequestError),
}

/// Identifies a hole punch of a [`Core`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PunchId(pub u64);

/// What the hyperdht layer reports, beside the dht-rpc core's events.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum CoreEvent {
    /// A hole punch ended.
    Punched {
        /// Which one.
        punch: PunchId,
        /// The path that opened first, or why none did.
        result: Result<Holepunch, HolepunchError>,
    },
    /// A `peers` request this node served (an announce stored, an unannounce, a lookup).
    Peer(PeerEvent),
    /// A kept announcement was announced again (see [`Core::keep`]).
    Announced {
        /// Which one.
        keep: KeepId,
        /// Its key.
        key: Key,
        /// How many nodes stored it, or why the announce failed (it is tried again at the
        /// next deadline).
        result: Result<usize, QueryError>,
    },
}

/// What peers' birthday hints may ask of us (see the module docs).
#[derive(Debug)]
struct HintLimits {
    per_requester: RateLimiter<Ipv4Addr>,
    per_relay: RateLimiter<Ipv4Addr>,
    total: RateLimiter<()>,
    /// Challenges sent back, per requester IP and in all (each is one relayed ping).
    challenges_per_requester: RateLimiter<Ipv4Addr>,
    challenges: RateLimiter<()>,
}

impl Default for HintLimits {
    fn default() -> Self {
        HintLimits {
            per_requester: RateLimiter::new(1, Duration::from_secs(10), 1024),
            per_relay: RateLimiter::new(2, Duration::from_secs(60), 4096),
            total: RateLimiter::new(6, Duration::from_secs(60), 1),
            challenges_per_requester: RateLimiter::new(2, Duration::from_secs(10), 1024),
            challenges: RateLimiter::new(60, Duration::from_secs(60), 1),
        }
    }
}

impl HintLimits {
    /// Counts a challenge to `requester`; whether to send it.
    fn challenge(&mut self, now: Instant, requester: Ipv4Addr) -> bool {
        self.challenges_per_requester.allow(now, requester) && self.challenges.allow(now, ())
    }

    /// Counts a hint relayed by `relay` for `requester`; whether to act on it.
    fn allow(&mut self, now: Instant, relay: Ipv4Addr, requester: Ipv4Addr) -> bool {
        self.per_relay.allow(now, relay)
            && self.per_requester.allow(now, requester)
            && self.total.allow(now, ())
    }
}

/// How long a symmetric-NAT verdict is trusted.
const SYMMETRIC_TTL: Duration = Duration::from_secs(60);
/// How long after opening its sockets the hard side asks the peer to spray.
const HARD_HINT_DELAY: Duration = Duration::from_millis(100);
/// How long after answering the peer's challenge (its sockets open when our answer
/// arrives) the easy side starts spraying.
const EASY_SPRAY_DELAY: Duration = Duration::from_millis(300);
/// How long the easy side waits for the peer's challenge before it gives up.
const CHALLENGE_WAIT: Duration = Duration::from_secs(2);

/// One hole punch in progress.
#[derive(Debug)]
struct Punch {
    peer: SocketAddrV4,
    referrer: SocketAddrV4,
    /// Whether to relay through the referrer (not when it is the peer or ourselves).
    relay: bool,
    /// A retry of ours while a relay's circuit carries the peer's datagrams: it reports
    /// nothing, and a direct path it opens replaces the circuit.
    upgrade: bool,
    /// A retry that renews the circuit: it may fall back to a relay again (a fresh
    /// circuit replaces the one that is about to end).
    renew: bool,
    start: Instant,
    rounds_sent: u32,
    next_round: Instant,
    /// Requests sent and not yet answered or failed.
    outstanding: usize,
    last_error: RequestError,
    phase: Phase,
}

/// Where a punch is.
#[derive(Debug)]
enum Phase {
    /// Direct probes and relayed pings.
    Rounds,
    /// Asking two nodes how they see us; their answers so far.
    Symmetric(Vec<Option<SocketAddrV4>>),
    /// The birthday punch (the hard side's hint goes out at `hint_at`). `hard`: we are the
    /// hard side. `proved`: we answered the peer's challenge (once).
    Birthday {
        hint_at: Option<Instant>,
        hard: bool,
        proved: bool,
    },
    /// Every path failed (`birthday` says how the birthday punch went): we asked the peer
    /// for a relay and wait for it until `until`.
    RelayWait {
        until: Instant,
        birthday: BirthdayTry,
    },
}

/// The hyperdht node without I/O (see the module docs). Drive it as [`dht_rpc::Core`]'s
/// docs say; `HyperDht` does so on tokio, and an embedder can do so on its own sockets (to run
/// another protocol on a punched path, say).
///
/// ```
/// use std::time::Instant;
/// use dht_rpc::{Config, Machine, MachineEvent, SocketId};
/// use hyperdht::{BirthdayTry, Core, CoreEvent, HolepunchError, PeerStore, PeersHandler};
///
/// let now = Instant::now();
/// let handler = PeersHandler::new(PeerStore::default(), 1);
/// let mut core = Core::new(dht_rpc::Core::with_handler(Config::default(), handler, now), now);
/// let (peer, referrer) = ("203.0.113.7:49737".parse()?, "198.51.100.1:49737".parse()?);
/// let punch = core.holepunch(now, peer, referrer, true);
/// // Nobody answers here: send what it emits, then wake it at each deadline until it ends.
/// let result = loop {
///     while let Some(t) = core.poll_transmit() {
///         assert_eq!(t.from, SocketId::MAIN); // (a real driver sends it from that socket)
///     }
///     while core.poll_socket_op().is_some() {} // (a real driver opens or closes sockets)
///     if let Some(MachineEvent::Own(CoreEvent::Punched { punch: p, result })) = core.poll_event() {
///         assert_eq!(p, punch);
///         break result;
///     }
///     let next = core.poll_timeout().expect("a deadline");
///     core.handle_timeout(next);
/// };
/// assert!(matches!(
///     result,
///     Err(HolepunchError::NoAnswer { relayed: true, birthday: BirthdayTry::EasySide, .. })
/// ));
/// # Ok::<(), std::net::AddrParseError>(())
/// ```
#[derive(Debug)]
pub struct Core {
    rpc: dht_rpc::Core<PeersHandler>,
    punches: BTreeMap<PunchId, Punch>,
    /// Which punch, and which path, each of their requests is.
    requests: BTreeMap<RequestId, (PunchId, HolepunchPath)>,
    next_punch: u64,
    hints: HintLimits,
    /// The time of the last datagram or timeout handled.
    now: Instant,
    kept: BTreeMap<KeepId, Kept>,
    next_keep: u64,
    /// Pings of the symmetric-NAT check, by punch.
    sym_pings: BTreeMap<RequestId, PunchId>,
    /// The last symmetric-NAT verdict and when it was made.
    symmetric: Option<(Instant, bool)>,
    hards: Vec<Hard>,
    easies: Vec<Easy>,
    /// Peers reached through an extra socket, and which.
    paths: BTreeMap<SocketAddrV4, SocketId>,
    next_socket: u32,
    socket_ops: VecDeque<SocketOp>,
    /// Our own datagrams (from extra sockets); the rpc core queues those of the DHT socket.
    transmits: VecDeque<Transmit>,
    /// Events made outside `poll_event` (a punch that ended on a timer or a datagram).
    pending: VecDeque<MachineEvent<CoreEvent>>,
    /// The relay role, our reservation and paths through circuits.
    circuits: circuit::Circuits,
}

impl Core {
    /// A hyperdht core around a dht-rpc core whose handler is the peer store.
    pub fn new(mut rpc: dht_rpc::Core<PeersHandler>, now: Instant) -> Self {
        // Birthday datagrams and application datagrams are not of the protocol: the core
        // sorts them.
        rpc.set_deliver_unrecognized(true);
        Core {
            sym_pings: BTreeMap::new(),
            symmetric: None,
            hards: Vec::new(),
            easies: Vec::new(),
            paths: BTreeMap::new(),
            next_socket: 1,
            socket_ops: VecDeque::new(),
            transmits: VecDeque::new(),
            pending: VecDeque::new(),
            kept: BTreeMap::new(),
            next_keep: 0,
            rpc,
            punches: BTreeMap::new(),
            requests: BTreeMap::new(),
            next_punch: 0,
            hints: HintLimits::default(),
            now,
            circuits: circuit::Circuits::default(),
        }
    }

    /// Starts a hole punch to `peer` through `referrer` (see the module docs); with `relay`
    /// false, only the direct probes go out (the referrer is the peer, or ourselves). It ends
    /// with [`CoreEvent::Punched`].
    pub fn holepunch(
        &mut self,
        now: Instant,
        peer: SocketAddrV4,
        referrer: SocketAddrV4,
        relay: bool,
    ) -> PunchId {
        self.now = now;
        let id = PunchId(self.next_punch);
        self.next_punch += 1;
        self.punches.insert(
            id,
            Punch {
                peer,
                referrer,
                relay: relay && referrer != peer,
                upgrade: false,
                renew: false,
                start: now,
                rounds_sent: 0,
                next_round: now,
                outstanding: 0,
                last_error: RequestError::Timeout,
                phase: Phase::Rounds,
            },
        );
        self.send_rounds(now);
        self.pump();
        id
    }

    /// Hole punches in progress.
    pub fn punches(&self) -> usize {
        self.punches.len()
    }

    /// Sends the rounds that are due.
    fn send_rounds(&mut self, now: Instant) {
        let due: Vec<PunchId> = self
            .punches
            .iter()
            .filter(|(_, p)| {
                matches!(p.phase, Phase::Rounds)
                    && p.rounds_sent < PUNCH_ROUNDS
                    && p.next_round <= now
            })
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let Some(p) = self.punches.get_mut(&id) else {
                continue;
            };
            p.rounds_sent += 1;
            p.next_round = now + PUNCH_INTERVAL;
            let (peer, referrer, relay) = (p.peer, p.referrer, p.relay);
            let direct = self.rpc.ping(now, peer);
            self.requests.insert(direct, (id, HolepunchPath::Direct));
            let mut sent = 1;
            if relay {
                let relayed = self.rpc.holepunch(now, peer, referrer);
                self.requests.insert(relayed, (id, HolepunchPath::Relayed));
                sent += 1;
            }
            if let Some(p) = self.punches.get_mut(&id) {
                p.outstanding += sent;
            }
        }
    }

    /// A ping or relayed ping of a punch's rounds ended.
    fn on_pong(&mut self, punch: PunchId, path: HolepunchPath, result: Result<Pong, RequestError>) {
        let Some(p) = self.punches.get_mut(&punch) else {
            return;
        };
        if !matches!(p.phase, Phase::Rounds) {
            // A late answer of a round while the birthday runs: the path is open.
            if let Ok(pong) = result {
                self.succeed_punch(punch, path, pong.from, pong.id);
            }
            return;
        }
        p.outstanding = p.outstanding.saturating_sub(1);
        match result {
            Ok(pong) => self.succeed_punch(punch, path, pong.from, pong.id),
            Err(e) => {
                p.last_error = e;
                if p.outstanding > 0 || p.rounds_sent < PUNCH_ROUNDS {
                    return;
                }
                match p.last_error.clone() {
                    RequestError::Timeout if p.relay => self.check_symmetric(punch),
                    RequestError::Timeout => self.fail_punch(punch, BirthdayTry::NotTried),
                    e => self.end_punch(punch, Err(HolepunchError::Node(e))),
                }
            }
        }
    }

    /// Ends a punch: its event, and its requests forgotten.
    fn end_punch(&mut self, punch: PunchId, result: Result<Holepunch, HolepunchError>) {
        let Some(p) = self.punches.remove(&punch) else {
            return;
        };
        self.requests.retain(|_, (id, _)| *id != punch);
        self.circuits.forget_punch(punch);
        self.sym_pings.retain(|_, id| *id != punch);
        self.hards.retain(|h| h.punch != Some(punch));
        self.easies.retain(|e| e.punch != Some(punch));
        if p.upgrade {
            self.on_upgrade(p.peer, result.ok());
            return;
        }
        self.pending
            .push_back(MachineEvent::Own(CoreEvent::Punched { punch, result }));
    }

    fn succeed_punch(
        &mut self,
        punch: PunchId,
        path: HolepunchPath,
        addr: SocketAddrV4,
        id: Option<NodeId>,
    ) {
        let Some(p) = self.punches.get(&punch) else {
            return;
        };
        let elapsed = self.now.saturating_duration_since(p.start);
        self.end_punch(punch, Ok(Holepunch::new(path, addr, id, elapsed)));
    }

    fn fail_punch(&mut self, punch: PunchId, birthday: BirthdayTry) {
        if self.ask_for_relay(punch, birthday) {
            return;
        }
        let Some(p) = self.punches.get(&punch) else {
            return;
        };
        let err = HolepunchError::NoAnswer {
            peer: p.peer,
            rounds: PUNCH_ROUNDS,
            relayed: p.relay,
            birthday,
        };
        self.end_punch(punch, Err(err));
    }

    /// The rounds failed: is our NAT symmetric? (A verdict of the last minute is reused.)
    fn check_symmetric(&mut self, punch: PunchId) {
        let now = self.now;
        if let Some((at, symmetric)) = self.symmetric
            && now.saturating_duration_since(at) < SYMMETRIC_TTL
        {
            self.start_birthday(punch, symmetric);
            return;
        }
        let Some(referrer) = self.punches.get(&punch).map(|p| p.referrer) else {
            return;
        };
        let target = NodeId::from_bytes(rand::Rng::random(self.rpc.rng()));
        let other = self
            .rpc
            .table()
            .closest(&target, 8)
            .into_iter()
            .map(|n| n.addr)
            .chain(self.rpc.config().bootstrap.clone())
            .find(|a| *a != referrer);
        let Some(other) = other else {
            // Nobody to compare with: take the easy side, which needs no sockets.
            self.start_birthday(punch, false);
            return;
        };
        if let Some(p) = self.punches.get_mut(&punch) {
            p.phase = Phase::Symmetric(Vec::new());
        }
        for to in [referrer, other] {
            let r = self.rpc.ping(now, to);
            self.sym_pings.insert(r, punch);
        }
    }

    fn on_symmetric_pong(&mut self, punch: PunchId, result: Result<Pong, RequestError>) {
        let Some(Phase::Symmetric(seen)) = self.punches.get_mut(&punch).map(|p| &mut p.phase)
        else {
            return;
        };
        seen.push(result.ok().and_then(|p| p.observed));
        if seen.len() < 2 {
            return;
        }
        let symmetric = matches!(seen[..], [Some(a), Some(b)] if a.port() != b.port());
        if seen.iter().all(Option::is_some) {
            self.symmetric = Some((self.now, symmetric));
        }
        self.start_birthday(punch, symmetric);
    }

    /// Starts the birthday punch of `punch` from our side.
    fn start_birthday(&mut self, punch: PunchId, symmetric: bool) {
        let now = self.now;
        let Some(p) = self.punches.get_mut(&punch) else {
            return;
        };
        let (peer, referrer) = (p.peer, p.referrer);
        if symmetric {
            // We are the hard side: open sockets toward the peer, then ask it to spray us
            // (it challenges first: see `on_challenge`).
            p.phase = Phase::Birthday {
                hint_at: Some(now + HARD_HINT_DELAY),
                hard: true,
                proved: false,
            };
            self.start_hard(now, peer, Some(punch));
        } else {
            // We have a stable address: ask the peer to open sockets toward us; we spray
            // once we answered its challenge.
            p.phase = Phase::Birthday {
                hint_at: None,
                hard: false,
                proved: false,
            };
            self.rpc
                .holepunch_with(now, peer, referrer, Some(Hint::ProbeMe(None).encode()));
            // Our spraying session waits for the challenge (`on_challenge` starts it), and
            // ends the punch unmet if none comes (a peer that ignores hints, say).
            self.start_easy(now, *peer.ip(), Some(punch));
            if let Some(e) = self.easies.last_mut() {
                e.wait_for_challenge(now + CHALLENGE_WAIT);
            }
        }
    }

    /// The hard side's hints that are due.
    fn send_hints(&mut self, now: Instant) {
        let mut due = Vec::new();
        for p in self.punches.values_mut() {
            if let Phase::Birthday { hint_at, .. } = &mut p.phase
                && hint_at.is_some_and(|t| t <= now)
            {
                *hint_at = None;
                due.push((p.peer, p.referrer));
            }
        }
        for (peer, referrer) in due {
            self.rpc
                .holepunch_with(now, peer, referrer, Some(Hint::SprayMe(None).encode()));
        }
    }

    /// A peer's hint, relayed to us. A hint without our token gets a challenge back through
    /// the relay; one with it (the asker receives at its IP) starts our side, within the
    /// limits.
    fn on_hint(&mut self, requester: SocketAddrV4, relay: SocketAddrV4, value: &[u8]) {
        let now = self.now;
        let ip = *requester.ip();
        let (token, spray) = match Hint::decode(value) {
            Some(Hint::Challenge(token)) => return self.on_challenge(requester, token),
            Some(Hint::SprayMe(token)) => (token, true),
            Some(Hint::ProbeMe(token)) => (token, false),
            Some(Hint::RelayMe) => return self.offer_relay(requester, relay),
            Some(Hint::UseRelay(to, pairing)) => return self.join_relay(requester, to, pairing),
            _ => return,
        };
        let Some(token) = token else {
            if self.hints.challenge(now, ip) {
                let token = self.rpc.roundtrip_token(ip);
                let challenge = Hint::Challenge(token).encode();
                self.rpc
                    .holepunch_with(now, requester, relay, Some(challenge));
            } else {
                tracing::debug!(%requester, %relay, "birthday challenge over the rate limit");
            }
            return;
        };
        if !self.rpc.is_roundtrip_token(ip, &token) {
            tracing::debug!(%requester, %relay, "birthday hint with a token not ours for its IP");
            return;
        }
        if !self.hints.allow(now, *relay.ip(), ip) {
            tracing::debug!(%requester, %relay, "birthday hint over the rate limit");
            return;
        }
        if spray {
            // The requester is behind a symmetric NAT: spray its IP.
            self.start_easy(now, ip, None);
        } else {
            // The requester has a stable address: open sockets toward it.
            self.start_hard(now, requester, None);
        }
    }

    /// The peer of one of our birthday punches challenged us (through a relay): send our
    /// hint again with its token, once; the easy side starts spraying then.
    fn on_challenge(&mut self, challenger: SocketAddrV4, token: Token) {
        let now = self.now;
        let found = self
            .punches
            .iter_mut()
            .find_map(|(id, p)| match &mut p.phase {
                Phase::Birthday { hard, proved, .. }
                    if !*proved && p.peer.ip() == challenger.ip() =>
                {
                    *proved = true;
                    Some((*id, p.peer, p.referrer, *hard))
                }
                _ => None,
            });
        let Some((punch, peer, referrer, hard)) = found else {
            tracing::debug!(%challenger, "a birthday challenge for no punch of ours");
            return;
        };
        let hint = if hard {
            Hint::SprayMe(Some(token))
        } else {
            Hint::ProbeMe(Some(token))
        };
        self.rpc
            .holepunch_with(now, peer, referrer, Some(hint.encode()));
        if !hard && let Some(e) = self.easies.iter_mut().find(|e| e.punch == Some(punch)) {
            e.challenged(now + EASY_SPRAY_DELAY);
        }
    }

    /// Does the protocol work the rpc core's events call for (a punch's pong, a relayed
    /// hint, a kept announcement's walk ending) and queues what is left for
    /// [`Machine::poll_event`], with the peer store's events: every input and operation ends
    /// with it, so the order a driver drains in changes nothing.
    fn pump(&mut self) {
        while let Some(e) = self.rpc.poll_event() {
            if let Some(e) = self.translate(e) {
                self.pending.push_back(e);
            }
        }
        while let Some(e) = self.rpc.handler_mut().poll_event() {
            self.pending
                .push_back(MachineEvent::Own(CoreEvent::Peer(e)));
        }
    }

    /// Turns the dht-rpc core's event into ours where it is about our work.
    fn translate(&mut self, e: Event) -> Option<MachineEvent<CoreEvent>> {
        let e = match self.kept_event(e) {
            Ok(own) => return own.map(MachineEvent::Own),
            Err(e) => e,
        };
        match e {
            Event::Pong { request, result } => {
                if let Some((punch, path)) = self.requests.remove(&request) {
                    self.on_pong(punch, path, result);
                    None
                } else if let Some(punch) = self.sym_pings.remove(&request) {
                    self.on_symmetric_pong(punch, result);
                    None
                } else {
                    Some(MachineEvent::Rpc(Event::Pong { request, result }))
                }
            }
            Event::PunchRequest {
                requester,
                relay,
                value,
            } => {
                self.on_hint(requester, relay, &value);
                None
            }
            Event::Unrecognized { from, payload }
                if let Some(msg) = crate::relay::RelayMsg::decode(&payload) =>
            {
                self.on_relay(from, msg, &payload);
                None
            }
            Event::Unrecognized { from, payload } => match Hint::decode(&payload) {
                Some(hint) => {
                    self.bday_on_main(from, hint);
                    None
                }
                None => Some(MachineEvent::Rpc(Event::Unrecognized { from, payload })),
            },
            other => Some(MachineEvent::Rpc(other)),
        }
    }
}

impl Machine for Core {
    type Handler = PeersHandler;
    type Own = CoreEvent;

    fn rpc(&self) -> &dht_rpc::Core<PeersHandler> {
        &self.rpc
    }

    fn rpc_mut(&mut self) -> &mut dht_rpc::Core<PeersHandler> {
        &mut self.rpc
    }

    fn handle_datagram(&mut self, now: Instant, from: SocketAddrV4, bytes: &[u8]) {
        self.now = now;
        self.rpc.handle_datagram(now, from, bytes);
        self.pump();
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        self.rpc.handle_timeout(now);
        self.pump();
        self.send_rounds(now);
        self.send_hints(now);
        self.bday_timers(now);
        self.relay_timers(now);
        self.announce_due(now);
        self.pump();
    }

    fn handle_socket_datagram(
        &mut self,
        now: Instant,
        socket: SocketId,
        from: SocketAddrV4,
        bytes: &[u8],
    ) {
        self.now = now;
        if socket == SocketId::MAIN {
            self.rpc.handle_datagram(now, from, bytes);
        } else {
            self.bday_on_extra(socket, from, bytes);
        }
        self.pump();
    }

    fn handle_socket_gone(&mut self, now: Instant, socket: SocketId) {
        self.now = now;
        self.bday_socket_gone(socket);
        self.pump();
    }

    fn handle_unreachable(&mut self, now: Instant, to: SocketAddrV4, quoted: &[u8]) {
        self.now = now;
        self.rpc.handle_unreachable(now, to, quoted);
        self.pump();
    }

    fn poll_socket_op(&mut self) -> Option<SocketOp> {
        self.socket_ops.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let rounds = self
            .punches
            .values()
            .filter(|p| matches!(p.phase, Phase::Rounds) && p.rounds_sent < PUNCH_ROUNDS)
            .map(|p| p.next_round)
            .chain(self.punches.values().filter_map(|p| match p.phase {
                Phase::Birthday { hint_at, .. } => hint_at,
                _ => None,
            }))
            .chain(self.next_announce())
            .chain(self.next_bday())
            .chain(self.next_relay())
            .min();
        match (self.rpc.poll_timeout(), rounds) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits
            .pop_front()
            .or_else(|| self.rpc.poll_transmit())
    }

    /// The queue the inputs filled. (Work started on the rpc core directly, through
    /// [`Machine::rpc_mut`], is taken in here when the queue is empty.)
    fn poll_event(&mut self) -> Option<MachineEvent<CoreEvent>> {
        if self.pending.is_empty() {
            self.pump();
        }
        let e = self.pending.pop_front();
        if e.is_none() && self.pending.capacity() > 32 {
            // Events are large: none kept once drained.
            self.pending = VecDeque::new();
        }
        e
    }

    fn waiter(own: &CoreEvent) -> Option<u64> {
        match own {
            CoreEvent::Punched { punch, .. } => Some(punch.0),
            CoreEvent::Announced { .. } | CoreEvent::Peer(_) => None,
        }
    }
}

/// The core's hole punching and kept announcements run on the simulator, behind its NATs:
/// `crates/dht-sim/tests/punch.rs` and `crates/dht-sim/tests/hyperdht.rs`.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_relay_cannot_take_every_birthday_slot() {
        let t = Instant::now();
        let mut l = HintLimits::default();
        let ip = |i: u32| Ipv4Addr::from(0x0600_0000 + i);
        // A lying relay names 100 victims in a second: it gets two.
        let attacker = Ipv4Addr::new(6, 6, 6, 6);
        let got = (0..100).filter(|i| l.allow(t, attacker, ip(*i))).count();
        assert_eq!(got, 2);
        // An honest relay's punch still goes through.
        assert!(l.allow(t, Ipv4Addr::new(9, 9, 9, 9), Ipv4Addr::new(8, 8, 8, 8)));
        // One requester IP at most once every 10 s, whoever relays.
        assert!(!l.allow(t, Ipv4Addr::new(9, 9, 9, 10), Ipv4Addr::new(8, 8, 8, 8)));
        assert!(l.allow(
            t + Duration::from_secs(10),
            Ipv4Addr::new(9, 9, 9, 10),
            Ipv4Addr::new(8, 8, 8, 8)
        ));
    }
}
