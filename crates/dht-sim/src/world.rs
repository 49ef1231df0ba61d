//! A whole network of hyperdht nodes for the experiments ([`crate::experiments`]): an entry
//! node and `n` nodes, each behind a NAT of a population's mix, bootstrapped one after the
//! other as a network that grows; announces and lookups measured against what is true.

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use dht_rpc::{Config, Maintenance};
use hyperdht::{AnnounceOptions, Core, Key};
use rand::Rng;

use crate::{NatKind, Sim, SimConfig, hyper};

/// The share of each NAT kind in a population, in [`NatKind::ALL`]'s order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NatMix(pub [f64; 5]);

impl NatMix {
    /// Every node on a public address.
    pub const OPEN: NatMix = NatMix([1.0, 0.0, 0.0, 0.0, 0.0]);
    /// 40 % open, 30 % cone (15 % full cone, 15 % restricted), 20 % port-restricted, 10 %
    /// symmetric.
    pub const INTERNET: NatMix = NatMix([0.40, 0.15, 0.15, 0.20, 0.10]);

    /// The kind of the `i`-th node: spread evenly, in a fixed order (so a network of any
    /// size has the mix's shares, to a node).
    pub fn kind(&self, i: usize) -> NatKind {
        // The golden ratio's low-discrepancy sequence over [0, 1).
        let u = (i as f64 * 0.618_033_988_749_895).fract();
        let mut acc = 0.0;
        for (k, share) in NatKind::ALL.into_iter().zip(self.0) {
            acc += share;
            if u < acc {
                return k;
            }
        }
        NatKind::Open
    }
}

/// How to build a [`World`].
#[derive(Debug, Clone)]
pub struct WorldConfig {
    /// Nodes beside the entry.
    pub nodes: usize,
    /// The network's behaviour (seed, latency, loss).
    pub sim: SimConfig,
    /// Which NATs the nodes sit behind.
    pub mix: NatMix,
    /// Nodes check their reachability and go ephemeral while firewalled.
    pub adaptive: bool,
    /// Nodes re-bootstrap every 5 to 65 s as a long-lived node does (`None`: only when
    /// told).
    pub maintenance: Option<Maintenance>,
    /// Virtual time between two nodes' first bootstraps.
    pub join_every: Duration,
}

impl WorldConfig {
    /// `nodes` open nodes, no loss, 25 ms each way (round trips are then multiples of
    /// 50 ms), joining 10 ms apart, no maintenance.
    pub fn new(nodes: usize, seed: u64) -> Self {
        WorldConfig {
            nodes,
            sim: SimConfig {
                seed,
                latency: (Duration::from_millis(25), Duration::from_millis(25)),
                event_ring: 0,
                ..SimConfig::default()
            },
            mix: NatMix::OPEN,
            adaptive: false,
            maintenance: None,
            join_every: Duration::from_millis(10),
        }
    }
}

/// A built network.
pub struct World {
    /// The simulator.
    pub sim: Sim<Core>,
    /// The entry node (ephemeral, as `dht-bootstrap`).
    pub entry: SocketAddrV4,
    /// The other nodes, in the order they joined.
    pub nodes: Vec<SocketAddrV4>,
    /// Each node's NAT.
    pub kinds: Vec<NatKind>,
    /// How the build went.
    pub built: Built,
    config: WorldConfig,
}

/// What building a world took.
#[derive(Debug, Clone, Copy, Default)]
pub struct Built {
    /// Wall time.
    pub wall: Duration,
    /// Virtual time.
    pub virtual_time: Duration,
    /// The process's resident memory before and after (bytes; 0 where `/proc` is absent).
    pub rss_before: u64,
    /// See `rss_before`.
    pub rss_after: u64,
}

impl Built {
    /// Resident memory the world added, per node.
    pub fn bytes_per_node(&self, nodes: usize) -> u64 {
        self.rss_after.saturating_sub(self.rss_before) / nodes.max(1) as u64
    }

    /// Virtual seconds per wall second.
    pub fn speed(&self) -> f64 {
        self.virtual_time.as_secs_f64() / self.wall.as_secs_f64().max(1e-9)
    }
}

/// The resident memory of this process now (`VmRSS`), in bytes; 0 where unknown.
pub fn rss() -> u64 {
    status_bytes("VmRSS:")
}

/// The most resident memory this process has had (`VmHWM`), in bytes; 0 where unknown.
pub fn peak_rss() -> u64 {
    status_bytes("VmHWM:")
}

/// A `kB` field of `/proc/self/status`, in bytes.
fn status_bytes(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

impl World {
    /// Builds the network: the entry, then each node (behind its NAT) bootstraps
    /// `join_every` after the last, then a second bootstrap round as long-lived nodes do.
    pub fn build(config: WorldConfig) -> World {
        let (wall, rss_before) = (Instant::now(), rss());
        let mut sim: Sim<Core> = Sim::of_machines(config.sim.clone());
        sim.reserve(config.nodes + 1);
        let entry = hyper::add_node(
            &mut sim,
            Config {
                ephemeral: true,
                ..Config::default()
            },
        );
        let mut world = World {
            sim,
            entry,
            nodes: Vec::new(),
            kinds: Vec::new(),
            built: Built::default(),
            config,
        };
        let n = world.config.nodes;
        world.join(n);
        // A second round, as long-lived nodes re-bootstrap (their tables fill in).
        world.rebootstrap();
        world.built = Built {
            wall: wall.elapsed(),
            virtual_time: world.sim.elapsed(),
            rss_before,
            rss_after: rss(),
        };
        world
    }

    /// Adds `n` nodes, each bootstrapping `join_every` after the last, and runs until they
    /// are all ready (at most a minute more).
    pub fn join(&mut self, n: usize) -> Vec<SocketAddrV4> {
        let config = Config {
            bootstrap: vec![self.entry],
            adaptive: self.config.adaptive,
            maintenance: self.config.maintenance,
            ..Config::default()
        };
        let mut added = Vec::with_capacity(n);
        self.sim.reserve(n);
        self.nodes.reserve_exact(n);
        self.kinds.reserve_exact(n);
        for _ in 0..n {
            let kind = self.config.mix.kind(self.nodes.len());
            let a = hyper::add_node(&mut self.sim, config.clone());
            self.sim.set_nat(a, kind.nat());
            self.sim.with_core(a, |c, now| c.bootstrap(now));
            self.sim.run_for(self.config.join_every);
            self.nodes.push(a);
            self.kinds.push(kind);
            added.push(a);
        }
        self.sim.run_until(Duration::from_secs(60), |s| {
            added
                .iter()
                .all(|a| !s.is_up(*a) || s.core(*a).is_some_and(|c| c.is_bootstrapped()))
        });
        added
    }

    /// Every node bootstraps again, 2 ms apart, as long-lived nodes do now and then; then
    /// 10 s more.
    pub fn rebootstrap(&mut self) {
        for i in 0..self.nodes.len() {
            let a = self.nodes[i];
            self.sim.with_core(a, |c, now| c.bootstrap(now));
            self.sim.run_for(Duration::from_millis(2));
        }
        self.sim.run_for(Duration::from_secs(10));
    }

    /// The mean of `f` over the dht-rpc cores of the nodes that are up (0 with none).
    pub fn mean_over_live(&self, f: impl Fn(&dht_rpc::Core<hyperdht::PeersHandler>) -> f64) -> f64 {
        let v: Vec<f64> = self
            .nodes
            .iter()
            .filter(|a| self.sim.is_up(**a))
            .filter_map(|a| self.sim.core(*a))
            .map(f)
            .collect();
        crate::experiments::mean(&v)
    }

    /// The nodes that are up.
    pub fn live(&self) -> Vec<SocketAddrV4> {
        self.nodes
            .iter()
            .copied()
            .filter(|a| self.sim.is_up(*a))
            .collect()
    }

    /// A random node that is up.
    pub fn random_live(&mut self) -> SocketAddrV4 {
        loop {
            let i = self.sim.rng().random_range(0..self.nodes.len());
            if self.sim.is_up(self.nodes[i]) {
                return self.nodes[i];
            }
        }
    }

    /// A fresh random key.
    pub fn random_key(&mut self) -> Key {
        Key::from_bytes(self.sim.rng().random())
    }

    /// The live, non-ephemeral nodes closest to `key`, closest first (at most `k`).
    pub fn closest(&self, key: &Key, k: usize) -> Vec<SocketAddrV4> {
        let mut v: Vec<(dht_wire::Distance, SocketAddrV4)> = self
            .sim
            .machines()
            .filter(|(a, m)| self.sim.is_up(*a) && !dht_rpc::Machine::rpc(*m).is_ephemeral())
            .map(|(a, m)| (dht_rpc::Machine::rpc(m).id().distance(key), a))
            .collect();
        v.sort_unstable();
        v.truncate(k);
        v.into_iter().map(|(_, a)| a).collect()
    }

    /// How many of the `k` closest live nodes to `key` hold an announce on it.
    pub fn holders_among_closest(&self, key: &Key, k: usize) -> usize {
        self.closest(key, k)
            .into_iter()
            .filter(|a| hyper::holds(&self.sim, *a, key))
            .count()
    }

    /// Announces a fresh key from `from` and keeps it announced (every 4 to 5 minutes).
    pub fn keep(&mut self, from: SocketAddrV4) -> Key {
        let key = self.random_key();
        self.sim.with_machine(from, |m, now| {
            m.keep(now, key, AnnounceOptions::default(), true)
        });
        key
    }
}
