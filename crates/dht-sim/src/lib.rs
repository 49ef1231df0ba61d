//! A deterministic simulator: many `dht-rpc` or `hyperdht` cores in one process, on a
//! virtual network with latency, loss, duplication, reordering, ICMP errors and NATs, in
//! virtual time under a seed. No threads, no sockets: the network is a priority queue of
//! datagrams, and time jumps from one event to the next.
//!
//! It drives exactly the [`Machine`] that runs in production (dht-rpc's [`Core`], or
//! hyperdht's core), the way the tokio driver does: after every input it opens and closes
//! the sockets the machine asks for, sends its transmits from the socket each names, and
//! takes its events. So what it shows about routing, queries and hole punching holds for
//! the real node. Each host can sit behind a NAT ([`Nat`], [`NatKind`]: the NAT lab's five
//! kinds), whose mappings and filters apply to its extra sockets too (the birthday punch's
//! 256). The same seed gives the same run, datagram for datagram ([`Sim::trace`]).
//!
//! ```
//! use dht_rpc::{Config, QuerySpec};
//! use dht_sim::{Sim, SimConfig};
//!
//! let mut sim = Sim::new(SimConfig::default());
//! let entry = sim.add_node(Config { ephemeral: true, ..Config::default() });
//! let nodes: Vec<_> = (0..20).map(|_| sim.add_node(Config { bootstrap: vec![entry], ..Config::default() })).collect();
//! sim.bootstrap_all();
//! let target = sim.random_id();
//! let (_replies, result) = sim.run_query(nodes[0], QuerySpec::query("_find_node", target, None));
//! assert_eq!(result.unwrap().closest.len(), 19); // everyone but the querier
//! ```
#![forbid(unsafe_code)]

pub mod experiments;
pub mod hyper;
pub mod lab;
mod nat;
mod ops;
pub mod world;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dht_rpc::{
    Config, Core, Event, Handler, Machine, MachineEvent, NoHandler, NodeId, QueryId, SocketId,
    SocketOp,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub use nat::{Filtering, Mapping, Nat, NatKind};
pub use ops::Op;

use nat::NatBox;

/// The port every simulated host's DHT socket is bound to.
pub const PORT: u16 = 49737;

/// The virtual network's behaviour.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Seeds the network and, through it, every node.
    pub seed: u64,
    /// One-way latency, drawn uniformly from this range for each datagram (unless
    /// `internet`).
    pub latency: (Duration, Duration),
    /// Path delays like the internet's instead: each node sits at its own distance from a
    /// well-connected core (log-normal, median 20 ms, at most 150 ms), a pair's one-way delay
    /// is the sum of both distances plus 2.5 ms (about 5 to 300 ms, median about 45 ms, with
    /// a long tail), and each datagram adds jitter (up to 10 % of the path, and 2 % of them
    /// up to 100 ms more).
    pub internet: bool,
    /// The probability that a datagram is lost.
    pub loss: f64,
    /// The probability that a datagram arrives twice (the copy with a delay of its own).
    pub duplicate: f64,
    /// The probability that a datagram is held back by up to twice its delay, so that later
    /// ones overtake it.
    pub reorder: f64,
    /// A datagram to a node that is down comes back as an ICMP port-unreachable (its host is
    /// up, its process gone) instead of vanishing (host gone, or a NAT that drops).
    pub refuse_down: bool,
    /// How many events nobody waits for (not of a query or request the simulator runs) a
    /// node keeps, the most recent: for tests that look at them. 0 at scale.
    pub event_ring: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            latency: (Duration::from_millis(5), Duration::from_millis(50)),
            internet: false,
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            refuse_down: false,
            event_ring: 64,
        }
    }
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct InFlight {
    at: Instant,
    seq: u64,
    from: SocketAddrV4,
    to: SocketAddrV4,
    payload: Bytes,
    /// An ICMP port-unreachable from `from`'s host about the datagram that starts with
    /// `payload`, which `to` sent it (see [`SimConfig::refuse_down`]).
    icmp: bool,
}

/// A datagram a node sent (see [`Sim::log_sends`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// Virtual time since the start.
    pub at: Duration,
    /// The sending node (its host address).
    pub node: SocketAddrV4,
    /// The socket it left from.
    pub socket: SocketId,
    /// Where to.
    pub to: SocketAddrV4,
    /// Its size.
    pub len: usize,
}

/// A simulated host: its machine, its sockets and NAT, and what it reported.
struct Host<M: Machine> {
    addr: SocketAddrV4,
    core: M,
    /// Events of the queries the simulator runs for a caller ([`Sim::start_query`]).
    events: VecDeque<Event>,
    /// Other events, the most recent [`SimConfig::event_ring`].
    recent: VecDeque<Event>,
    watched: BTreeSet<QueryId>,
    /// The machine's own events that answer a caller ([`Machine::waiter`]), and the most
    /// recent others.
    own: VecDeque<M::Own>,
    own_recent: VecDeque<M::Own>,
    up: bool,
    nat: Option<Box<NatBox>>,
    /// Extra sockets open, and their ports.
    sockets: BTreeMap<SocketId, u16>,
    /// The timeout queued for this node in the timer heap (older entries are stale).
    scheduled: Option<Instant>,
    /// Its distance from the network's core (with [`SimConfig::internet`]).
    access: Duration,
}

/// Many nodes on a virtual network: dht-rpc cores (`Sim<Core<H>>`, the default), or any
/// [`Machine`] that wraps one (hyperdht's core), with [`Sim::add_machine`].
pub struct Sim<M: Machine = Core<NoHandler>> {
    config: SimConfig,
    rng: StdRng,
    start: Instant,
    now: Instant,
    seq: u64,
    hosts: Vec<Host<M>>,
    network: BinaryHeap<Reverse<InFlight>>,
    /// Node timeouts, earliest first; an entry is stale unless it is its node's `scheduled`.
    timers: BinaryHeap<Reverse<(Instant, u32)>>,
    trace: u64,
    /// Every datagram sent, while [`Sim::log_sends`] is on.
    log: Option<Vec<Sent>>,
    /// Reused room for one node's transmits.
    scratch: Vec<dht_rpc::Transmit>,
    /// Datagrams delivered so far.
    pub delivered: u64,
    /// Datagrams lost so far (by the loss rate, to a node that is down or absent, to a
    /// closed port, or from a socket that is not open).
    pub lost: u64,
    /// Datagrams a NAT's filter dropped so far (no live binding, or a source it does not
    /// admit).
    pub filtered: u64,
    /// Datagrams from behind a NAT to its own address, dropped (no hairpinning).
    pub hairpinned: u64,
    /// Datagrams delivered twice ([`SimConfig::duplicate`]).
    pub duplicated: u64,
}

impl Sim<Core<NoHandler>> {
    /// An empty network of dht-rpc cores.
    pub fn new(config: SimConfig) -> Self {
        Sim::of_machines(config)
    }

    /// Adds a node that serves no application command.
    pub fn add_node(&mut self, config: Config) -> SocketAddrV4 {
        self.add_node_with(config, NoHandler)
    }

    /// A network: an ephemeral entry node and `n` nodes that bootstrap from it, all ready.
    /// Returns the entry's address and the nodes'.
    pub fn network(config: SimConfig, n: usize) -> (Self, SocketAddrV4, Vec<SocketAddrV4>) {
        Self::network_with(config, n, 0.0, Config::default())
    }

    /// As [`Sim::network`], with a fraction `nat` of the nodes (spread evenly) behind a
    /// port-restricted NAT from the start (see [`Sim::set_filtering`]), and each node
    /// configured as `node` (its bootstrap list and seed are set here).
    pub fn network_with(
        config: SimConfig,
        n: usize,
        nat: f64,
        node: Config,
    ) -> (Self, SocketAddrV4, Vec<SocketAddrV4>) {
        let mut sim = Sim::new(config);
        let entry = sim.add_node(Config {
            ephemeral: true,
            ..Config::default()
        });
        let nodes = (0..n)
            .map(|_| {
                sim.add_node(Config {
                    bootstrap: vec![entry],
                    ..node.clone()
                })
            })
            .collect::<Vec<_>>();
        let mut behind = 0.0;
        for &a in &nodes {
            behind += nat.clamp(0.0, 1.0);
            if behind >= 1.0 {
                behind -= 1.0;
                sim.set_filtering(a, true);
            }
        }
        sim.bootstrap_all();
        (sim, entry, nodes)
    }
}

impl<H: Handler + Send + 'static> Sim<Core<H>> {
    /// Adds a node with a handler; its seed comes from the simulation's. Returns its address.
    pub fn add_node_with(&mut self, config: Config, handler: H) -> SocketAddrV4 {
        self.add_machine(config, |config, now| {
            Core::with_handler(config, handler, now)
        })
    }
}

/// The address the `i`-th node added to a simulation gets (from 0): one host per /24 of
/// 10/8 (the defences limit what one /24 holds in a routing table), then a second host in
/// each, and so on; every one on [`PORT`]. A test can name nodes before they exist.
pub fn host_addr(i: usize) -> SocketAddrV4 {
    let i = i as u32 + 1;
    let (net, host) = (i & 0xffff, 1 + (i >> 16));
    SocketAddrV4::new(Ipv4Addr::from(0x0a00_0000 | net << 8 | host), PORT)
}

/// The host behind an IP, if [`host_addr`] made it.
fn host_index(ip: &Ipv4Addr) -> Option<usize> {
    let v = u32::from(*ip);
    if v >> 24 != 10 || v & 0xff == 0 {
        return None;
    }
    let (net, host) = ((v >> 8) & 0xffff, v & 0xff);
    let i = net | ((host - 1) << 16);
    (i > 0).then(|| i as usize - 1)
}

/// FNV-1a over bytes, folded into the trace.
fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl<M: Machine> Sim<M> {
    /// An empty network (of machines of type `M`: see [`Sim::add_machine`]).
    pub fn of_machines(config: SimConfig) -> Self {
        let start = Instant::now();
        Sim {
            rng: StdRng::seed_from_u64(config.seed),
            config,
            start,
            now: start,
            seq: 0,
            hosts: Vec::new(),
            network: BinaryHeap::new(),
            timers: BinaryHeap::new(),
            trace: 0xcbf2_9ce4_8422_2325,
            log: None,
            scratch: Vec::new(),
            delivered: 0,
            lost: 0,
            filtered: 0,
            hairpinned: 0,
            duplicated: 0,
        }
    }

    /// Makes room for `n` more nodes at once (a large network grows its table of hosts
    /// once, not by doubling).
    pub fn reserve(&mut self, n: usize) {
        self.hosts.reserve_exact(n);
    }

    /// The virtual time since the simulation started.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// The virtual time now.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// A hash of everything that happened so far: each datagram delivered (when, from
    /// where, to where, its bytes) and each timer fired. Two runs with the same seed and
    /// the same calls give the same trace.
    pub fn trace(&self) -> u64 {
        self.trace
    }

    /// A random id from the simulation's generator.
    pub fn random_id(&mut self) -> NodeId {
        NodeId::from_bytes(self.rng.random())
    }

    /// The simulation's generator, for choices of an experiment that should replay too.
    pub fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }

    /// Adds a node that `make` builds from its configuration (seeded from the simulation's)
    /// at the current time. Returns its address.
    pub fn add_machine(
        &mut self,
        mut config: Config,
        make: impl FnOnce(Config, Instant) -> M,
    ) -> SocketAddrV4 {
        let addr = host_addr(self.hosts.len());
        config.seed = self.rng.random();
        // Thousands of cores in one process: small budget tables (a simulated node's
        // sources are few and slow, so sharing slots changes nothing but memory) and a
        // token cache of one set of 4: the cache spares a busy server SHA-256s, gives the same
        // tokens either way, and at 64 hosts was 2.3 KB of every simulated node.
        config.defences.budget_slots = config.defences.budget_slots.min(32);
        config.token_cache = config.token_cache.min(4);
        let mut core = make(config, self.now);
        core.rpc_mut().set_local_port(PORT);
        let access = self.draw_access();
        self.hosts.push(Host {
            addr,
            core,
            events: VecDeque::new(),
            recent: VecDeque::new(),
            watched: BTreeSet::new(),
            own: VecDeque::new(),
            own_recent: VecDeque::new(),
            up: true,
            nat: None,
            sockets: BTreeMap::new(),
            scheduled: None,
            access,
        });
        self.reschedule(self.hosts.len() - 1);
        addr
    }

    fn index(&self, addr: SocketAddrV4) -> Option<usize> {
        host_index(addr.ip()).filter(|i| *i < self.hosts.len())
    }

    fn host(&self, addr: SocketAddrV4) -> Option<&Host<M>> {
        self.index(addr).map(|i| &self.hosts[i])
    }

    fn host_mut(&mut self, addr: SocketAddrV4) -> Option<&mut Host<M>> {
        let i = self.index(addr)?;
        Some(&mut self.hosts[i])
    }

    /// A node's distance from the core: log-normal (median 20 ms, sigma 0.8), at most
    /// 150 ms.
    fn draw_access(&mut self) -> Duration {
        // Box-Muller: a standard normal from two uniforms.
        let (u1, u2): (f64, f64) = (self.rng.random_range(1e-12..1.0), self.rng.random());
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        Duration::from_secs_f64((0.020 * (0.8 * z).exp()).min(0.150))
    }

    /// The one-way delay of one datagram from `from` to `to`.
    fn delay(&mut self, from: SocketAddrV4, to: SocketAddrV4) -> Duration {
        let mut d = if !self.config.internet {
            let (lo, hi) = self.config.latency;
            if hi > lo {
                self.rng.random_range(lo..hi)
            } else {
                lo
            }
        } else {
            let access = |a| self.host(a).map_or(Duration::ZERO, |n| n.access);
            let path = Duration::from_micros(2500) + access(from) + access(to);
            let mut jitter = path.mul_f64(self.rng.random_range(0.0..0.1));
            if self.rng.random_bool(0.02) {
                jitter += Duration::from_millis(self.rng.random_range(0..100));
            }
            path + jitter
        };
        if self.config.reorder > 0.0 && self.rng.random_bool(self.config.reorder.min(1.0)) {
            d += d.mul_f64(self.rng.random_range(0.0..2.0));
        }
        d
    }

    /// How many (node, address) pairs have a node marking a live, up node dead, over the
    /// nodes in `from` (a diagnostic of the dead-node cache).
    pub fn wrongly_dead(&self, from: &[SocketAddrV4]) -> usize {
        let up: Vec<SocketAddrV4> = self.hosts.iter().filter(|n| n.up).map(|n| n.addr).collect();
        from.iter()
            .filter_map(|a| self.core(*a))
            .map(|c| {
                up.iter()
                    .filter(|u| c.is_marked_dead(self.now, **u))
                    .count()
            })
            .sum()
    }

    /// Changes the loss rate from now on.
    pub fn set_loss(&mut self, loss: f64) {
        self.config.loss = loss;
    }

    /// The addresses of all nodes, in the order they were added.
    pub fn addrs(&self) -> Vec<SocketAddrV4> {
        self.hosts.iter().map(|h| h.addr).collect()
    }

    /// A node's core.
    pub fn core(&self, addr: SocketAddrV4) -> Option<&Core<M::Handler>> {
        self.host(addr).map(|n| n.core.rpc())
    }

    /// A node's machine.
    pub fn machine(&self, addr: SocketAddrV4) -> Option<&M> {
        self.host(addr).map(|n| &n.core)
    }

    /// Every node's address and machine.
    pub fn machines(&self) -> impl Iterator<Item = (SocketAddrV4, &M)> {
        self.hosts.iter().map(|h| (h.addr, &h.core))
    }

    /// Whether a node is up.
    pub fn is_up(&self, addr: SocketAddrV4) -> bool {
        self.host(addr).is_some_and(|h| h.up)
    }

    /// Calls `f` on a node's machine at the current time, then collects what it sends.
    pub fn with_machine<R>(
        &mut self,
        addr: SocketAddrV4,
        f: impl FnOnce(&mut M, Instant) -> R,
    ) -> Option<R> {
        let now = self.now;
        let i = self.index(addr)?;
        let r = f(&mut self.hosts[i].core, now);
        self.collect(i);
        Some(r)
    }

    /// Starts a query on a node's machine with `f` (which returns its id) and keeps its
    /// events for [`Sim::take_events`] and the simulator's query runs, whatever
    /// [`SimConfig::event_ring`] says.
    pub fn start_query(
        &mut self,
        addr: SocketAddrV4,
        f: impl FnOnce(&mut M, Instant) -> QueryId,
    ) -> Option<QueryId> {
        let now = self.now;
        let i = self.index(addr)?;
        let q = f(&mut self.hosts[i].core, now);
        self.hosts[i].watched.insert(q);
        self.collect(i);
        Some(q)
    }

    /// Stops keeping the events of query `q` of a node (the caller gave up on it).
    pub fn unwatch(&mut self, addr: SocketAddrV4, q: QueryId) {
        if let Some(h) = self.host_mut(addr) {
            h.watched.remove(&q);
            h.events.retain(|e| {
                !matches!(e, Event::QueryReply { query, .. } | Event::QueryDone { query, .. } if *query == q)
            });
        }
    }

    /// The own events of a node's machine since the last call: those that answer a caller,
    /// then the most recent others.
    pub fn take_own_events(&mut self, addr: SocketAddrV4) -> Vec<M::Own> {
        self.host_mut(addr)
            .map(|n| n.own.drain(..).chain(n.own_recent.drain(..)).collect())
            .unwrap_or_default()
    }

    /// Keeps only the own events of a node that answer a caller for which `keep` holds (a
    /// caller takes the one it waits for this way, and leaves the others).
    pub fn retain_own(&mut self, addr: SocketAddrV4, keep: impl FnMut(&M::Own) -> bool) {
        if let Some(h) = self.host_mut(addr) {
            h.own.retain(keep);
        }
    }

    /// Calls `f` on a node's core at the current time, then collects what it sends.
    pub fn with_core<R>(
        &mut self,
        addr: SocketAddrV4,
        f: impl FnOnce(&mut Core<M::Handler>, Instant) -> R,
    ) -> Option<R> {
        self.with_machine(addr, |m, now| f(m.rpc_mut(), now))
    }

    /// Takes a node down (it drops everything) or brings it back.
    pub fn set_up(&mut self, addr: SocketAddrV4, up: bool) {
        let Some(i) = self.index(addr) else {
            return;
        };
        self.hosts[i].up = up;
        self.hosts[i].scheduled = None;
        self.reschedule(i);
    }

    /// Queues the node's next timeout in the timer heap if it changed.
    fn reschedule(&mut self, i: usize) {
        let node = &mut self.hosts[i];
        let next = node.core.poll_timeout().filter(|_| node.up);
        if next != node.scheduled {
            node.scheduled = next;
            if let Some(t) = next {
                self.timers.push(Reverse((t, i as u32)));
            }
        }
    }

    /// The earliest live timer, dropping stale heap entries.
    fn next_timer(&mut self) -> Option<(Instant, usize)> {
        while let Some(Reverse((t, i))) = self.timers.peek().copied() {
            if self.hosts[i as usize].scheduled == Some(t) {
                return Some((t, i as usize));
            }
            self.timers.pop();
        }
        None
    }

    /// Whether a node is behind a NAT that filters (restricted, port-restricted or
    /// symmetric).
    pub fn is_filtering(&self, addr: SocketAddrV4) -> bool {
        self.nat(addr)
            .is_some_and(|n| n.filtering != Filtering::Open)
    }

    /// The NAT in front of a node, if any.
    pub fn nat(&self, addr: SocketAddrV4) -> Option<Nat> {
        self.host(addr).and_then(|h| h.nat.as_ref().map(|b| b.nat))
    }

    /// Puts a node behind a NAT (a new one, with no bindings yet), or takes it away.
    pub fn set_nat(&mut self, addr: SocketAddrV4, nat: Option<Nat>) {
        if let Some(h) = self.host_mut(addr) {
            h.nat = nat.map(|n| Box::new(NatBox::new(n)));
        }
    }

    /// Puts a node behind a port-restricted NAT (it gets datagrams only from addresses it
    /// sent to lately), or takes it away.
    pub fn set_filtering(&mut self, addr: SocketAddrV4, filtering: bool) {
        let nat = filtering.then(|| NatKind::PortRestricted.nat()).flatten();
        self.set_nat(addr, nat);
    }

    /// The address a node's DHT socket is seen from by `to` now: its own, or its NAT's
    /// binding toward `to` (`None` behind a NAT that has none yet).
    pub fn seen_as(&self, addr: SocketAddrV4, to: SocketAddrV4) -> Option<SocketAddrV4> {
        let h = self.host(addr)?;
        match &h.nat {
            None => Some(addr),
            Some(b) => b
                .port_of(self.now, SocketId::MAIN, to)
                .map(|p| SocketAddrV4::new(*addr.ip(), p)),
        }
    }

    /// Starts (or stops and forgets) a log of every datagram sent: for tests that assert
    /// exactly what went where.
    pub fn log_sends(&mut self, on: bool) {
        self.log = on.then(Vec::new);
    }

    /// The datagrams sent since [`Sim::log_sends`] was turned on.
    pub fn sends(&self) -> &[Sent] {
        self.log.as_deref().unwrap_or_default()
    }

    /// NAT flows held by all hosts (for memory reports).
    pub fn nat_flows(&self) -> usize {
        self.hosts
            .iter()
            .filter_map(|h| h.nat.as_ref())
            .map(|b| b.flows())
            .sum()
    }

    /// Extra sockets open on a node.
    pub fn sockets(&self, addr: SocketAddrV4) -> usize {
        self.host(addr).map_or(0, |h| h.sockets.len())
    }

    /// The events a node reported since the last call: those of the queries the simulator
    /// watches, then the most recent others.
    pub fn take_events(&mut self, addr: SocketAddrV4) -> Vec<Event> {
        self.host_mut(addr)
            .map(|n| n.events.drain(..).chain(n.recent.drain(..)).collect())
            .unwrap_or_default()
    }

    /// Drives node `i` after an input: its socket operations, its events, its transmits
    /// (each from the socket it names, through the host's NAT), then its next timeout.
    fn collect(&mut self, i: usize) {
        let ring = self.config.event_ring;
        let now = self.now;
        let node = &mut self.hosts[i];
        let mut sent = std::mem::take(&mut self.scratch);
        // The drive shape's step 2 (`Machine::drain`): socket operations, transmits, events.
        let (sockets, events, recent, watched, own, own_recent) = (
            &mut node.sockets,
            &mut node.events,
            &mut node.recent,
            &mut node.watched,
            &mut node.own,
            &mut node.own_recent,
        );
        node.core.drain(
            |op| match op {
                SocketOp::Open(id) => {
                    let port = (20_000..)
                        .find(|p| !sockets.values().any(|q| q == p))
                        .unwrap_or(20_000);
                    sockets.insert(id, port);
                }
                SocketOp::Close(id) => {
                    sockets.remove(&id);
                }
            },
            |t| sent.push(t),
            |e| match e {
                MachineEvent::Rpc(e) => {
                    let is_watched = match &e {
                        Event::QueryReply { query, .. } => watched.contains(query),
                        Event::QueryDone { query, .. } => watched.remove(query),
                        _ => false,
                    };
                    if is_watched {
                        events.push_back(e);
                    } else if ring > 0 {
                        if recent.len() >= ring {
                            recent.pop_front();
                        }
                        recent.push_back(e);
                    }
                }
                MachineEvent::Own(o) if M::waiter(&o).is_some() => own.push_back(o),
                MachineEvent::Own(o) if ring > 0 => {
                    if own_recent.len() >= ring {
                        own_recent.pop_front();
                    }
                    own_recent.push_back(o);
                }
                MachineEvent::Own(_) => {}
            },
        );
        let mut out = Vec::new();
        let host = node.addr;
        let up = node.up;
        for t in sent.drain(..) {
            if let Some(log) = &mut self.log {
                log.push(Sent {
                    at: now - self.start,
                    node: host,
                    socket: t.from,
                    to: t.to,
                    len: t.payload.len(),
                });
            }
            let port = if t.from == SocketId::MAIN {
                PORT
            } else if let Some(p) = node.sockets.get(&t.from) {
                *p
            } else {
                out.push(None);
                continue;
            };
            let from = match &mut node.nat {
                None => SocketAddrV4::new(*host.ip(), port),
                Some(_) if t.to.ip() == host.ip() => {
                    self.hairpinned += 1;
                    continue;
                }
                Some(b) => {
                    let p = b.outbound(now, t.from, port, t.to, &mut self.rng);
                    SocketAddrV4::new(*host.ip(), p)
                }
            };
            out.push(Some((from, t.to, t.payload)));
        }
        self.scratch = sent;
        self.reschedule(i);
        for t in out {
            let Some((from, to, payload)) = t else {
                self.lost += 1;
                continue;
            };
            if !up || self.rng.random_bool(self.config.loss.clamp(0.0, 1.0)) {
                self.lost += 1;
                continue;
            }
            // A copy of the bytes: a transmit may be a slice of the core's answer buffer,
            // which it reuses once every slice is dropped.
            let payload = Bytes::copy_from_slice(&payload);
            if self.config.duplicate > 0.0 && self.rng.random_bool(self.config.duplicate.min(1.0)) {
                self.duplicated += 1;
                self.launch(from, to, payload.clone(), false);
            }
            self.launch(from, to, payload, false);
        }
    }

    /// Puts a datagram (or an ICMP error, `icmp`) from `from` to `to` on the network, to arrive
    /// after the path's delay.
    fn launch(&mut self, from: SocketAddrV4, to: SocketAddrV4, payload: Bytes, icmp: bool) {
        let latency = self.delay(from, to);
        self.seq += 1;
        self.network.push(Reverse(InFlight {
            at: self.now + latency,
            seq: self.seq,
            from,
            to,
            payload,
            icmp,
        }));
    }

    /// Delivers one datagram that arrived now: through the receiving host's NAT to the
    /// socket it reaches.
    fn arrive(&mut self, p: InFlight) {
        let now = self.now;
        let Some(i) = self.index(p.to) else {
            self.lost += 1;
            return;
        };
        if !self.hosts[i].up {
            // A NAT in front of a host that is down still drops what it would not let in.
            let through = self.hosts[i]
                .nat
                .as_ref()
                .is_none_or(|b| b.admits(now, p.to.port(), p.from));
            if !p.icmp
                && through
                && self.config.refuse_down
                && !self.rng.random_bool(self.config.loss.clamp(0.0, 1.0))
            {
                // The host answers for its gone process, quoting the datagram's start.
                let quoted = p.payload.slice(..p.payload.len().min(64));
                self.launch(p.to, p.from, quoted, true);
            }
            self.lost += 1;
            return;
        }
        let host = &mut self.hosts[i];
        let socket = match &mut host.nat {
            Some(b) => match b.inbound(now, p.to.port(), p.from, p.icmp) {
                Some(s) => s,
                None => {
                    self.filtered += 1;
                    return;
                }
            },
            None if p.to.port() == PORT => SocketId::MAIN,
            None => match host.sockets.iter().find(|(_, q)| **q == p.to.port()) {
                Some((s, _)) => *s,
                None => {
                    self.lost += 1;
                    return;
                }
            },
        };
        if socket != SocketId::MAIN && !host.sockets.contains_key(&socket) {
            self.lost += 1;
            return;
        }
        let mut h = fnv(self.trace, &(now - self.start).as_nanos().to_le_bytes());
        h = fnv(h, &p.from.ip().octets());
        h = fnv(h, &p.from.port().to_le_bytes());
        h = fnv(h, &p.to.ip().octets());
        h = fnv(h, &p.to.port().to_le_bytes());
        self.trace = fnv(h, &p.payload);
        if p.icmp {
            if socket == SocketId::MAIN {
                host.core.handle_unreachable(now, p.from, &p.payload);
            }
        } else {
            self.delivered += 1;
            host.core
                .handle_socket_datagram(now, socket, p.from, &p.payload);
        }
        self.collect(i);
    }

    /// Runs one step: the next datagram delivery or node timer. `false` when nothing is left
    /// before `until`.
    pub fn step(&mut self, until: Instant) -> bool {
        let next_packet = self.network.peek().map(|Reverse(p)| p.at);
        let next_timer = self.next_timer();
        let packet_first = match (next_packet, next_timer) {
            (Some(p), Some((t, _))) => p <= t,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return false,
        };
        if packet_first {
            let Some(Reverse(p)) = self.network.pop() else {
                return false;
            };
            if p.at > until {
                self.network.push(Reverse(p));
                self.now = until;
                return false;
            }
            self.now = self.now.max(p.at);
            self.arrive(p);
        } else if let Some((t, i)) = next_timer {
            if t > until {
                self.now = until;
                return false;
            }
            self.now = self.now.max(t);
            self.trace = fnv(self.trace, &(i as u32).to_le_bytes());
            self.hosts[i].scheduled = None;
            self.hosts[i].core.handle_timeout(self.now);
            self.collect(i);
        }
        true
    }

    /// Runs the network for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        while self.step(until) {}
    }

    /// Runs until `done` holds (checked after each step) or `limit` of virtual time passes.
    /// Returns whether `done` held.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&mut Self) -> bool) -> bool {
        let until = self.now + limit;
        loop {
            if done(self) {
                return true;
            }
            if !self.step(until) {
                return done(self);
            }
        }
    }

    /// Bootstraps every node, 10 ms apart in virtual time, and runs until all are ready.
    pub fn bootstrap_all(&mut self) {
        for addr in self.addrs() {
            self.with_core(addr, |c, now| c.bootstrap(now));
            self.run_for(Duration::from_millis(10));
        }
        self.run_until(Duration::from_secs(60), |s| {
            s.hosts
                .iter()
                .all(|n| n.core.rpc().is_bootstrapped() || !n.up)
        });
    }

    /// The ids of the live nodes that offer themselves to routing tables (not ephemeral,
    /// by configuration or because they found themselves firewalled).
    pub fn live_ids(&self) -> Vec<NodeId> {
        self.hosts
            .iter()
            .filter(|n| n.up && !n.core.rpc().is_ephemeral())
            .map(|n| n.core.rpc().id())
            .collect()
    }

    /// Which query ids a node still runs (for tests of cancellation).
    pub fn active_queries(&self, addr: SocketAddrV4) -> usize {
        self.host(addr).map_or(0, |n| n.core.rpc().active_queries())
    }
}
