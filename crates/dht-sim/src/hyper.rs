//! Whole `hyperdht` nodes ([`hyperdht::Core`]: the peer store, kept announcements, hole
//! punching with the birthday punch) in the simulator, and their operations run to the end:
//! the same `Core` calls the tokio handle makes.
//!
//! ```
//! use dht_sim::{Sim, SimConfig, hyper};
//! use hyperdht::{AnnounceOptions, Key};
//!
//! let mut sim = Sim::of_machines(SimConfig::default());
//! let (_entry, nodes) = hyper::network(&mut sim, 30);
//! sim.bootstrap_all();
//! let key = Key::from_bytes([9; 32]);
//! let stored = hyper::announce(&mut sim, nodes[0], key, AnnounceOptions::default());
//! assert!(stored.unwrap() >= 20);
//! let found = hyper::lookup(&mut sim, nodes[1], key);
//! assert_eq!(found.peers, vec![nodes[0]]);
//! ```

use std::net::SocketAddrV4;
use std::time::Duration;

use dht_rpc::{Config, Machine, QueryError, QueryId};
use dht_wire::PeersResponse;
use hyperdht::{AnnounceOptions, Core, CoreEvent, Holepunch, HolepunchError, Key};
use hyperdht::{PeerStore, PeersHandler};

use crate::Sim;

/// Adds a hyperdht node (a default peer store) configured as `config`.
pub fn add_node(sim: &mut Sim<Core>, config: Config) -> SocketAddrV4 {
    sim.add_machine(config, |config, now| {
        let seed = config.seed;
        let rpc =
            dht_rpc::Core::with_handler(config, PeersHandler::new(PeerStore::default(), seed), now);
        Core::new(rpc, now)
    })
}

/// Adds an ephemeral entry node (as `dht-bootstrap`) and `n` nodes whose bootstrap list is
/// it; none bootstrapped yet (put some behind NATs first, then [`Sim::bootstrap_all`]).
/// Returns the entry and the nodes.
pub fn network(sim: &mut Sim<Core>, n: usize) -> (SocketAddrV4, Vec<SocketAddrV4>) {
    let entry = add_node(
        sim,
        Config {
            ephemeral: true,
            ..Config::default()
        },
    );
    let config = Config {
        bootstrap: vec![entry],
        ..Config::default()
    };
    let nodes = (0..n).map(|_| add_node(sim, config.clone())).collect();
    (entry, nodes)
}

/// What a lookup found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    /// The peers the answers named, sorted, once each.
    pub peers: Vec<SocketAddrV4>,
    /// Answers that named at least one peer.
    pub answers_with_peers: usize,
    /// Answers in all.
    pub answers: usize,
    /// Each (answering node, peer it named), in the order the answers came, once each.
    pub named: Vec<(SocketAddrV4, SocketAddrV4)>,
    /// Virtual time from the start to the first answer that named a peer.
    pub first_peer: Option<Duration>,
    /// Virtual time to the walk's end.
    pub time: Duration,
    /// Datagrams the node sent and received meanwhile.
    pub datagrams: u64,
    /// Whether the walk ended without error.
    pub ok: bool,
}

/// Looks `key` up from `from` and runs the walk to its end.
pub fn lookup(sim: &mut Sim<Core>, from: SocketAddrV4, key: Key) -> Found {
    walk(sim, from, |m, now| {
        m.lookup(now, key, AnnounceOptions::default())
    })
    .0
}

/// Announces `key` from `from` and runs the walk to its end: how many nodes stored it.
pub fn announce(
    sim: &mut Sim<Core>,
    from: SocketAddrV4,
    key: Key,
    opts: AnnounceOptions,
) -> Result<usize, QueryError> {
    walk(sim, from, |m, now| m.announce(now, key, opts)).1
}

/// Runs the walk that `start` starts on `from`'s core to its end: what its answers named,
/// and its commits (or why it failed).
pub fn walk(
    sim: &mut Sim<Core>,
    from: SocketAddrV4,
    start: impl FnOnce(&mut Core, std::time::Instant) -> QueryId,
) -> (Found, Result<usize, QueryError>) {
    let before = sim.core(from).map(|c| c.stats());
    let t0 = sim.now();
    let Some(qid) = sim.start_query(from, start) else {
        return (Found::default(), Err(QueryError::Cancelled));
    };
    let (replies, result, times) = sim.run_query_timed(from, qid);
    let mut found = Found {
        time: sim.now() - t0,
        ok: result.is_ok(),
        ..Found::default()
    };
    // The simulator records when each query-round reply came, in order (commit-round
    // replies have no time of their own here).
    let mut times = times.into_iter().map(|(t, _)| t - t0);
    for reply in &replies {
        let at = if reply.commit { None } else { times.next() };
        found.answers += 1;
        let peers = reply
            .value
            .as_deref()
            .and_then(|v| PeersResponse::decode(v).ok())
            .and_then(|p| p.peers.and_then(|p| p.into_valid()))
            .unwrap_or_default();
        if !peers.is_empty() {
            found.answers_with_peers += 1;
            found.first_peer = found.first_peer.or(at);
        }
        for p in &peers {
            if !found.named.iter().any(|(_, q)| q == p) {
                found.named.push((reply.node.addr, *p));
            }
        }
        found.peers.extend(peers);
    }
    found.peers.sort_unstable();
    found.peers.dedup();
    if let (Some(b), Some(a)) = (before, sim.core(from).map(|c| c.stats())) {
        found.datagrams =
            (a.datagrams_out + a.datagrams_in).saturating_sub(b.datagrams_out + b.datagrams_in);
    }
    (found, result.map(|o| o.commits))
}

/// The set-up of a punch across NATs, as the NAT lab's: the peer and the referrer exchange
/// pings (so that the referrer's relayed ping reaches the peer, as it reaches a node of its
/// table), `us` pings the referrer and a `public` node (to compare its mappings with), and
/// two seconds pass. Returns the peer's address as the referrer sees it, which `us` then
/// punches to.
pub fn before_punch(
    sim: &mut Sim<Core>,
    us: SocketAddrV4,
    public: SocketAddrV4,
    referrer: SocketAddrV4,
    peer: SocketAddrV4,
) -> SocketAddrV4 {
    sim.with_core(peer, |c, now| c.ping(now, referrer));
    sim.with_core(referrer, |c, now| c.ping(now, peer));
    sim.with_core(us, |c, now| c.ping(now, referrer));
    sim.with_core(us, |c, now| c.ping(now, public));
    sim.run_for(Duration::from_secs(2));
    sim.seen_as(peer, referrer)
        .expect("the peer's binding toward the referrer")
}

/// How a punch ended: the path that opened, or why none did.
pub type Punched = Result<Holepunch, HolepunchError>;

/// Punches from `from` to `peer` through `referrer` and runs until the punch ends (at most
/// a minute of virtual time). `from`'s other own events stay for [`Sim::take_own_events`].
pub fn punch(
    sim: &mut Sim<Core>,
    from: SocketAddrV4,
    peer: SocketAddrV4,
    referrer: SocketAddrV4,
) -> Punched {
    let Some(id) = sim.with_machine(from, |m, now| m.holepunch(now, peer, referrer, true)) else {
        return Err(HolepunchError::Node(dht_rpc::RequestError::Cancelled));
    };
    let mut result = None;
    sim.run_until(Duration::from_secs(60), |s| {
        s.retain_own(from, |e| match e {
            CoreEvent::Punched { punch, result: r } if *punch == id => {
                result = Some(r.clone());
                false
            }
            _ => true,
        });
        result.is_some()
    });
    result.unwrap_or(Err(HolepunchError::Node(dht_rpc::RequestError::Timeout)))
}

/// The application datagrams `node` received since the last call (`Event::Unrecognized`:
/// those of a punched path or a relay's circuit), with whom they came from.
pub fn datagrams(sim: &mut Sim<Core>, node: SocketAddrV4) -> Vec<(SocketAddrV4, bytes::Bytes)> {
    sim.take_events(node)
        .into_iter()
        .filter_map(|e| match e {
            dht_rpc::Event::Unrecognized { from, payload } => Some((from, payload)),
            _ => None,
        })
        .collect()
}

/// The punches a node has running (for tests that the core forgets them).
pub fn punches(sim: &Sim<Core>, node: SocketAddrV4) -> usize {
    sim.machine(node).map_or(0, |m| m.punches())
}

/// Whether a machine is a hyperdht core whose store holds `key`.
pub fn holds(sim: &Sim<Core>, node: SocketAddrV4, key: &Key) -> bool {
    sim.machine(node)
        .is_some_and(|m| m.rpc().handler().store().has(key))
}
