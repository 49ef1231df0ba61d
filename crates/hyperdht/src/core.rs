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
//!
//! The hole punching, the relay fallback and the kept announcements are tested on the
//! simulator, behind its NATs: `crates/dht-sim/tests/punch.rs`, `relay.rs` and
//! `hyperdht.rs`.

mod birthday;
mod circuit;
mod peers;
mod punch;
mod reannounce;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use dht_rpc::{
    Event, Machine, MachineEvent, NodeId, QueryError, RequestError, SocketId, SocketOp, Transmit,
};
use dht_wire::Key;

pub use birthday::MAX_PATHS;
use birthday::{Easy, Hard, HintLimits};
pub use circuit::{MAX_CIRCUIT_PATHS, RELAY_WAIT, RENEW_AFTER, UPGRADE_EVERY};
use reannounce::Kept;
pub use reannounce::{KeepId, REANNOUNCE};

use crate::events::PeerEvent;
use crate::hints::Hint;
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
    /// Our hole punches, with the requests each sent.
    punches: punch::Punches,
    hints: HintLimits,
    /// The time of the last datagram or timeout handled.
    now: Instant,
    kept: BTreeMap<KeepId, Kept>,
    next_keep: u64,
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
            punches: punch::Punches::default(),
            hints: HintLimits::default(),
            now,
            circuits: circuit::Circuits::default(),
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
                self.punch_pong(request, result).map(MachineEvent::Rpc)
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

    fn handle_extra_datagram(
        &mut self,
        now: Instant,
        socket: SocketId,
        from: SocketAddrV4,
        bytes: &[u8],
    ) {
        self.now = now;
        self.bday_on_extra(socket, from, bytes);
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
            .next_punch_timer()
            .into_iter()
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
