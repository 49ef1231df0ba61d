//! [`Core`]: the hyperdht node without I/O. It wraps the dht-rpc core (whose handler is the
//! peer store's [`PeersHandler`]) and adds what hyperdht does on top: hole-punch rounds as
//! timers, and the limits on what peers' birthday hints may ask of us. The tokio driver
//! (`dht_rpc::Driver`) runs it as it runs a plain dht-rpc core; the simulator and fuzzers can
//! run it with no runtime at all.
//!
//! A hole punch ([`Core::holepunch`]) sends, in [`PUNCH_ROUNDS`] rounds [`PUNCH_INTERVAL`]
//! apart, a direct ping to the peer and a ping relayed through the referrer (the reference
//! sends only the latter). The first answer ends it with [`CoreEvent::Punched`] and says
//! which path opened; when every request of every round failed, it ends with the last error.
//! Answers to its other requests are then dropped.
//!
//! Abuse: a relayed hint (a birthday punch's request to spray or to open sockets) costs us
//! datagrams or sockets; the core lets through at most one per requester IP every 10 s, two
//! per relay IP a minute and six a minute in all ([`CoreEvent::Hint`]), and the dht-rpc core
//! passes hints on only from relays that proved they receive at their address.

mod kept;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use dht_rpc::{
    Event, Machine, MachineEvent, NodeId, Pong, QueryError, RateLimiter, RequestError, RequestId,
    Transmit,
};
use dht_wire::Key;
use rand::SeedableRng;
use rand::rngs::StdRng;

use kept::Kept;
pub use kept::{KeepId, REANNOUNCE};

use crate::birthday::Hint;
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
}

/// A successful hole punch.
#[derive(Debug, Clone, PartialEq, Eq)]
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
        result: Result<Holepunch, RequestError>,
    },
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
    /// A peer's birthday hint that the limits let through: the driver acts on it (it may
    /// need sockets).
    Hint {
        /// The peer that asked.
        requester: SocketAddrV4,
        /// The node that relayed its ping.
        relay: SocketAddrV4,
        /// What it asks.
        hint: Hint,
    },
}

/// What peers' birthday hints may ask of us (see the module docs).
#[derive(Debug)]
struct HintLimits {
    per_requester: RateLimiter<Ipv4Addr>,
    per_relay: RateLimiter<Ipv4Addr>,
    total: RateLimiter<()>,
}

impl Default for HintLimits {
    fn default() -> Self {
        HintLimits {
            per_requester: RateLimiter::new(1, Duration::from_secs(10), 1024),
            per_relay: RateLimiter::new(2, Duration::from_secs(60), 4096),
            total: RateLimiter::new(6, Duration::from_secs(60), 1),
        }
    }
}

impl HintLimits {
    /// Counts a hint relayed by `relay` for `requester`; whether to act on it.
    fn allow(&mut self, now: Instant, relay: Ipv4Addr, requester: Ipv4Addr) -> bool {
        self.per_relay.allow(now, relay)
            && self.per_requester.allow(now, requester)
            && self.total.allow(now, ())
    }
}

/// One hole punch in progress.
#[derive(Debug)]
struct Punch {
    peer: SocketAddrV4,
    referrer: SocketAddrV4,
    /// Whether to relay through the referrer (not when it is the peer or ourselves).
    relay: bool,
    start: Instant,
    rounds_sent: u32,
    next_round: Instant,
    /// Requests sent and not yet answered or failed.
    outstanding: usize,
    last_error: RequestError,
}

/// The hyperdht node without I/O (see the module docs).
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
    /// Seeded from the rpc core's seed: the re-announce waits.
    rng: StdRng,
}

impl Core {
    /// A hyperdht core around a dht-rpc core whose handler is the peer store.
    pub fn new(rpc: dht_rpc::Core<PeersHandler>, now: Instant) -> Self {
        let rng = StdRng::seed_from_u64(rpc.config().seed ^ 0x6b65_6570);
        Core {
            kept: BTreeMap::new(),
            next_keep: 0,
            rng,
            rpc,
            punches: BTreeMap::new(),
            requests: BTreeMap::new(),
            next_punch: 0,
            hints: HintLimits::default(),
            now,
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
                start: now,
                rounds_sent: 0,
                next_round: now,
                outstanding: 0,
                last_error: RequestError::Timeout,
            },
        );
        self.send_rounds(now);
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
            .filter(|(_, p)| p.rounds_sent < PUNCH_ROUNDS && p.next_round <= now)
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

    /// A ping or relayed ping of a punch ended.
    fn on_pong(
        &mut self,
        punch: PunchId,
        path: HolepunchPath,
        result: Result<Pong, RequestError>,
    ) -> Option<CoreEvent> {
        let p = self.punches.get_mut(&punch)?;
        p.outstanding = p.outstanding.saturating_sub(1);
        let result = match result {
            Ok(pong) => Ok(Holepunch {
                path,
                addr: pong.from,
                id: pong.id,
                elapsed: self.now.saturating_duration_since(p.start),
            }),
            Err(e) => {
                p.last_error = e;
                if p.outstanding > 0 || p.rounds_sent < PUNCH_ROUNDS {
                    return None;
                }
                Err(p.last_error.clone())
            }
        };
        self.punches.remove(&punch);
        self.requests.retain(|_, (id, _)| *id != punch);
        Some(CoreEvent::Punched { punch, result })
    }

    /// Turns the dht-rpc core's event into ours where it is about our work.
    fn translate(&mut self, e: Event) -> Option<MachineEvent<CoreEvent>> {
        let e = match self.kept_event(e) {
            Ok(own) => return own.map(MachineEvent::Own),
            Err(e) => e,
        };
        match e {
            Event::Pong { request, result } => match self.requests.remove(&request) {
                Some((punch, path)) => self.on_pong(punch, path, result).map(MachineEvent::Own),
                None => Some(MachineEvent::Rpc(Event::Pong { request, result })),
            },
            Event::PunchRequest {
                requester,
                relay,
                value,
            } => {
                let hint = Hint::decode(&value)?;
                if !matches!(hint, Hint::SprayMe | Hint::ProbeMe) {
                    return None;
                }
                if !self.hints.allow(self.now, *relay.ip(), *requester.ip()) {
                    tracing::debug!(%requester, %relay, "birthday hint over the rate limit");
                    return None;
                }
                Some(MachineEvent::Own(CoreEvent::Hint {
                    requester,
                    relay,
                    hint,
                }))
            }
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
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        self.rpc.handle_timeout(now);
        self.send_rounds(now);
        self.announce_due(now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let rounds = self
            .punches
            .values()
            .filter(|p| p.rounds_sent < PUNCH_ROUNDS)
            .map(|p| p.next_round)
            .chain(self.next_announce())
            .min();
        match (self.rpc.poll_timeout(), rounds) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.rpc.poll_transmit()
    }

    fn poll_event(&mut self) -> Option<MachineEvent<CoreEvent>> {
        while let Some(e) = self.rpc.poll_event() {
            if let Some(e) = self.translate(e) {
                return Some(e);
            }
        }
        None
    }

    fn waiter(own: &CoreEvent) -> Option<u64> {
        match own {
            CoreEvent::Punched { punch, .. } => Some(punch.0),
            CoreEvent::Hint { .. } | CoreEvent::Announced { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::options::AnnounceOptions;
    use crate::store::PeerStore;

    fn addr(i: u8) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(i, 0, 0, 1), 1000 + u16::from(i))
    }

    /// Nodes on fake public addresses in virtual time, datagrams delivered at once (a
    /// filtering node takes datagrams only from addresses it sent to; a silent one, none).
    struct Net {
        nodes: Vec<(SocketAddrV4, Core)>,
        now: Instant,
        filtering: BTreeSet<SocketAddrV4>,
        silent: BTreeSet<SocketAddrV4>,
        contacted: BTreeSet<(SocketAddrV4, SocketAddrV4)>,
        sent: Vec<(SocketAddrV4, SocketAddrV4)>,
        own: Vec<CoreEvent>,
    }

    impl Net {
        fn new(n: u8) -> Self {
            let now = Instant::now();
            let nodes = (1..=n)
                .map(|i| {
                    // The first node bootstraps from the others.
                    let bootstrap = if i == 1 {
                        (2..=n).map(addr).collect()
                    } else {
                        Vec::new()
                    };
                    let config = dht_rpc::Config {
                        seed: u64::from(i),
                        bootstrap,
                        ..dht_rpc::Config::default()
                    };
                    let handler = PeersHandler::new(PeerStore::default(), u64::from(i));
                    let mut rpc = dht_rpc::Core::with_handler(config, handler, now);
                    rpc.set_local_port(addr(i).port());
                    (addr(i), Core::new(rpc, now))
                })
                .collect();
            Net {
                nodes,
                now,
                filtering: BTreeSet::new(),
                silent: BTreeSet::new(),
                contacted: BTreeSet::new(),
                sent: Vec::new(),
                own: Vec::new(),
            }
        }

        fn a(&mut self) -> &mut Core {
            &mut self.nodes[0].1
        }

        /// Moves datagrams and fires timers until `d` of virtual time passed.
        fn run_for(&mut self, d: Duration) {
            let until = self.now + d;
            loop {
                let mut moved = true;
                while moved {
                    moved = false;
                    for i in 0..self.nodes.len() {
                        let from = self.nodes[i].0;
                        while let Some(t) = self.nodes[i].1.poll_transmit() {
                            moved = true;
                            self.sent.push((from, t.to));
                            self.contacted.insert((from, t.to));
                            let open = !self.filtering.contains(&t.to)
                                || self.contacted.contains(&(t.to, from));
                            if self.silent.contains(&t.to) || !open {
                                continue;
                            }
                            let now = self.now;
                            if let Some((_, n)) = self.nodes.iter_mut().find(|(a, _)| *a == t.to) {
                                n.handle_datagram(now, from, &t.payload);
                            }
                        }
                        while let Some(e) = self.nodes[i].1.poll_event() {
                            if let (0, MachineEvent::Own(e)) = (i, e) {
                                self.own.push(e);
                            }
                        }
                    }
                }
                let next = self
                    .nodes
                    .iter()
                    .filter_map(|(_, n)| n.poll_timeout())
                    .min();
                match next {
                    Some(t) if t <= until => {
                        self.now = self.now.max(t);
                        let now = self.now;
                        for (_, n) in &mut self.nodes {
                            if n.poll_timeout().is_some_and(|t| t <= now) {
                                n.handle_timeout(now);
                            }
                        }
                    }
                    _ => {
                        self.now = until;
                        return;
                    }
                }
            }
        }

        fn punched(&self) -> Vec<&Result<Holepunch, RequestError>> {
            self.own
                .iter()
                .filter_map(|e| match e {
                    CoreEvent::Punched { result, .. } => Some(result),
                    _ => None,
                })
                .collect()
        }
    }

    #[test]
    fn an_open_peer_answers_the_direct_probe_at_once() {
        let mut net = Net::new(3);
        let now = net.now;
        net.a().holepunch(now, addr(2), addr(3), true);
        net.run_for(Duration::from_secs(5));
        let done = net.punched();
        assert_eq!(done.len(), 1, "one ending: {:?}", net.own);
        let h = done[0].as_ref().expect("opened");
        assert_eq!(h.path, HolepunchPath::Direct);
        assert_eq!(h.addr, addr(2));
        assert_eq!(net.nodes[0].1.punches(), 0, "forgotten once done");
    }

    #[test]
    fn behind_a_filter_the_relayed_ping_opens_the_path() {
        let mut net = Net::new(3);
        net.filtering.insert(addr(2));
        // The referrer knows the peer (the peer wrote to it, as it does to be in its table).
        net.contacted.insert((addr(2), addr(3)));
        let now = net.now;
        net.a().holepunch(now, addr(2), addr(3), true);
        net.run_for(Duration::from_secs(5));
        let done = net.punched();
        assert_eq!(done.len(), 1, "{:?}", net.own);
        let h = done[0].as_ref().expect("opened");
        assert_eq!(h.path, HolepunchPath::Relayed, "the peer's pong came back");
        assert!(
            net.sent.contains(&(addr(3), addr(2))),
            "relayed by the referrer"
        );
    }

    #[test]
    fn a_silent_peer_gets_every_round_then_the_punch_fails() {
        let mut net = Net::new(3);
        net.silent.insert(addr(2));
        let now = net.now;
        net.a().holepunch(now, addr(2), addr(3), true);
        net.run_for(PUNCH_INTERVAL * (PUNCH_ROUNDS - 1) - Duration::from_millis(1));
        let direct = |net: &Net| {
            net.sent
                .iter()
                .filter(|s| **s == (addr(1), addr(2)))
                .count()
        };
        assert_eq!(
            direct(&net),
            PUNCH_ROUNDS as usize - 1,
            "a round every interval"
        );
        assert!(net.punched().is_empty());
        net.run_for(Duration::from_secs(5));
        let relayed = net
            .sent
            .iter()
            .filter(|s| **s == (addr(1), addr(3)))
            .count();
        assert!(direct(&net) >= PUNCH_ROUNDS as usize, "every round");
        assert!(relayed >= PUNCH_ROUNDS as usize, "each with a relayed ping");
        let done = net.punched();
        assert_eq!(done.len(), 1, "ends once: {:?}", net.own);
        assert_eq!(*done[0], Err(RequestError::Timeout));
        assert_eq!(net.nodes[0].1.punches(), 0);
    }

    #[test]
    fn without_a_relay_only_direct_probes_go_out() {
        let mut net = Net::new(2);
        net.silent.insert(addr(2));
        let now = net.now;
        net.a().holepunch(now, addr(2), addr(2), true);
        net.run_for(Duration::from_secs(5));
        assert!(net.sent.iter().all(|(_, to)| *to == addr(2)));
        assert_eq!(net.punched().len(), 1);
    }

    fn announced(net: &Net) -> Vec<&Result<usize, QueryError>> {
        net.own
            .iter()
            .filter_map(|e| match e {
                CoreEvent::Announced { result, .. } => Some(result),
                _ => None,
            })
            .collect()
    }

    fn stored(net: &Net, key: &Key) -> usize {
        net.nodes[1..]
            .iter()
            .filter(|(_, n)| n.rpc().handler().store().has(key))
            .count()
    }

    #[test]
    fn a_kept_announcement_is_announced_again_then_unannounced() {
        let mut net = Net::new(4);
        let key = Key::from_bytes([7; 32]);
        let now = net.now;
        let opts = AnnounceOptions::new(Some(7777), None);
        let id = net.a().keep(now, key, opts, true);
        net.run_for(Duration::from_secs(10));
        assert_eq!(
            announced(&net),
            vec![&Ok(3)],
            "announced at once, on all three"
        );
        assert_eq!(stored(&net, &key), 3);
        net.run_for(REANNOUNCE.0 - Duration::from_secs(20));
        assert_eq!(announced(&net).len(), 1, "not before 4 minutes");
        net.run_for(REANNOUNCE.1 - REANNOUNCE.0 + Duration::from_secs(20));
        assert_eq!(announced(&net).len(), 2, "again within 5 minutes");
        net.run_for(REANNOUNCE.1 * 2);
        assert_eq!(announced(&net).len(), 4, "and so on");
        assert!(announced(&net).iter().all(|r| **r == Ok(3)));
        let now = net.now;
        let q = net.a().stop_keeping(now, id);
        assert!(q.is_some(), "an unannounce walk");
        assert_eq!(net.a().kept(), 0);
        net.run_for(Duration::from_secs(10));
        assert_eq!(stored(&net, &key), 0, "unannounced everywhere");
        net.run_for(REANNOUNCE.1 * 2);
        assert_eq!(announced(&net).len(), 4, "never again");
        assert!(net.a().stop_keeping(now, id).is_none(), "stopped once");
    }

    #[test]
    fn a_key_kept_after_its_own_announce_waits_for_the_first_deadline() {
        let mut net = Net::new(3);
        let key = Key::from_bytes([8; 32]);
        let now = net.now;
        net.a().keep(now, key, AnnounceOptions::default(), false);
        net.run_for(REANNOUNCE.0 - Duration::from_secs(1));
        assert!(announced(&net).is_empty());
        assert_eq!(stored(&net, &key), 0);
        net.run_for(REANNOUNCE.1 - REANNOUNCE.0 + Duration::from_secs(2));
        assert_eq!(announced(&net), vec![&Ok(2)]);
    }

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
