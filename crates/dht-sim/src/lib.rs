//! A deterministic simulator: many `dht-rpc` cores in one process, on a virtual network with
//! latency and loss, in virtual time under a seed. No threads, no sockets: the network is a
//! priority queue of datagrams, and time jumps from one event to the next.
//!
//! It drives exactly the [`Core`] that runs in production, so what it shows about routing
//! and queries holds for the real node.
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

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dht_rpc::{
    Config, Core, Event, Handler, Machine, MachineEvent, NoHandler, NodeId, QueryError,
    QueryOutcome, QuerySpec, Reply, SocketId,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

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
    /// A datagram to a node that is down comes back as an ICMP port-unreachable (its host is
    /// up, its process gone) instead of vanishing (host gone, or a NAT that drops).
    pub refuse_down: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            latency: (Duration::from_millis(5), Duration::from_millis(50)),
            internet: false,
            loss: 0.0,
            refuse_down: false,
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

struct SimNode<M: Machine> {
    core: M,
    events: VecDeque<Event>,
    /// The machine's own events (a layer's, such as hyperdht's), since the last take.
    own: VecDeque<M::Own>,
    up: bool,
    /// Behind a port-restricted NAT-like filter: only datagrams from addresses the node has
    /// sent to within [`FILTER_TIMEOUT`] get in.
    filtering: bool,
    /// When each address last exchanged a datagram with this node (the filter's state, as a
    /// connection-tracking entry: refreshed by traffic both ways).
    contacted: BTreeMap<SocketAddrV4, Instant>,
    /// The size of `contacted` after its last sweep of expired entries.
    contacted_swept: usize,
    /// The timeout queued for this node in the timer heap (older entries are stale).
    scheduled: Option<Instant>,
    /// Its distance from the network's core (with [`SimConfig::internet`]).
    access: Duration,
}

/// How long a filtering node's "contacted" entry lets replies in without traffic: Linux's
/// `nf_conntrack_udp_timeout` (30 s) for an unreplied UDP flow.
pub const FILTER_TIMEOUT: Duration = Duration::from_secs(30);

impl<M: Machine> SimNode<M> {
    /// Whether the filter lets a datagram from `from` in at `now` (refreshing the entry).
    fn admits(&self, from: SocketAddrV4, now: Instant) -> bool {
        self.contacted
            .get(&from)
            .is_some_and(|t| now.saturating_duration_since(*t) < FILTER_TIMEOUT)
    }
}

/// One measured operation (see [`Sim::timed_ops`]).
#[derive(Debug, Clone, Copy)]
pub struct Op {
    /// Virtual time from start to end.
    pub time: Duration,
    /// Datagrams the node sent and received meanwhile.
    pub datagrams: u64,
    /// How many of the true closest 20 it found.
    pub found: usize,
    /// It found exactly the true closest 20.
    pub exact: bool,
    /// From start to the last query-round answer of a node among the closest it ended with:
    /// what is left of `time` is waiting for nodes that did not answer.
    pub last_closest: Duration,
    /// Its requests that failed or were given up (the walk's `errors`).
    pub unanswered: usize,
    /// Of the true closest 20 it missed, how many it had asked and was still waiting for
    /// when it ended (it gave them up too soon), against never asked.
    pub missed_asked: usize,
    /// Of those it never asked, how many some node it heard from knew, but behind 20 closer
    /// entries, gone nodes among them (crowded out of every answer that could name them).
    pub missed_crowded: usize,
}

/// Many nodes on a virtual network: dht-rpc cores (`Sim<Core<H>>`, the default), or any
/// [`Machine`] that wraps one (hyperdht's core), with [`Sim::add_machine`]. A machine's
/// extra sockets are not simulated: what it sends from them is lost.
pub struct Sim<M: Machine = Core<NoHandler>> {
    config: SimConfig,
    rng: StdRng,
    start: Instant,
    now: Instant,
    seq: u64,
    nodes: BTreeMap<SocketAddrV4, SimNode<M>>,
    network: BinaryHeap<Reverse<InFlight>>,
    /// Node timeouts, earliest first; an entry is stale unless it is its node's `scheduled`.
    timers: BinaryHeap<Reverse<(Instant, SocketAddrV4)>>,
    /// Datagrams delivered so far.
    pub delivered: u64,
    /// Datagrams lost so far (by the loss rate, or to a node that is down or absent).
    pub lost: u64,
    /// Datagrams a node's filter dropped so far.
    pub filtered: u64,
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
    /// port-restricted filter from the start (see [`Sim::set_filtering`]), and each node
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

impl<M: Machine> Sim<M> {
    /// An empty network (of machines of type `M`: see [`Sim::add_machine`]).
    pub fn of_machines(config: SimConfig) -> Self {
        Sim {
            rng: StdRng::seed_from_u64(config.seed),
            config,
            start: Instant::now(),
            now: Instant::now(),
            seq: 0,
            nodes: BTreeMap::new(),
            network: BinaryHeap::new(),
            timers: BinaryHeap::new(),
            delivered: 0,
            lost: 0,
            filtered: 0,
        }
    }

    /// The virtual time since the simulation started.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// A random id from the simulation's generator.
    pub fn random_id(&mut self) -> NodeId {
        NodeId::from_bytes(self.rng.random())
    }

    /// Adds a node that `make` builds from its configuration (seeded from the simulation's)
    /// at the current time. Returns its address.
    pub fn add_machine(
        &mut self,
        mut config: Config,
        make: impl FnOnce(Config, Instant) -> M,
    ) -> SocketAddrV4 {
        let i = self.nodes.len() as u32 + 1;
        // One node per /24 of 10/8 (the defences limit what one /24 holds in a routing
        // table), then a second host in each, and so on.
        let (net, host) = (i & 0xffff, 1 + (i >> 16));
        let addr = SocketAddrV4::new(Ipv4Addr::from(0x0a00_0000 | net << 8 | host), 49737);
        config.seed = self.rng.random();
        // Thousands of cores in one process: small budget tables (a simulated node's sources
        // are few and slow, so sharing slots changes nothing but memory).
        config.defences.budget_slots = config.defences.budget_slots.min(256);
        let core = make(config, self.now);
        let access = self.draw_access();
        self.nodes.insert(
            addr,
            SimNode {
                core,
                events: VecDeque::new(),
                own: VecDeque::new(),
                up: true,
                filtering: false,
                contacted: BTreeMap::new(),
                contacted_swept: 0,
                scheduled: None,
                access,
            },
        );
        self.reschedule(addr);
        addr
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
        if !self.config.internet {
            let (lo, hi) = self.config.latency;
            return if hi > lo {
                self.rng.random_range(lo..hi)
            } else {
                lo
            };
        }
        let access = |a| self.nodes.get(&a).map_or(Duration::ZERO, |n| n.access);
        let path = Duration::from_micros(2500) + access(from) + access(to);
        let mut jitter = path.mul_f64(self.rng.random_range(0.0..0.1));
        if self.rng.random_bool(0.02) {
            jitter += Duration::from_millis(self.rng.random_range(0..100));
        }
        path + jitter
    }

    /// How many (node, address) pairs have a node marking a live, up node dead, over the
    /// nodes in `from` (a diagnostic of the dead-node cache).
    pub fn wrongly_dead(&self, from: &[SocketAddrV4]) -> usize {
        let up: Vec<SocketAddrV4> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.up)
            .map(|(a, _)| *a)
            .collect();
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

    /// The addresses of all nodes.
    pub fn addrs(&self) -> Vec<SocketAddrV4> {
        self.nodes.keys().copied().collect()
    }

    /// A node's core.
    pub fn core(&self, addr: SocketAddrV4) -> Option<&Core<M::Handler>> {
        self.nodes.get(&addr).map(|n| n.core.rpc())
    }

    /// A node's machine.
    pub fn machine(&self, addr: SocketAddrV4) -> Option<&M> {
        self.nodes.get(&addr).map(|n| &n.core)
    }

    /// Calls `f` on a node's machine at the current time, then collects what it sends.
    pub fn with_machine<R>(
        &mut self,
        addr: SocketAddrV4,
        f: impl FnOnce(&mut M, Instant) -> R,
    ) -> Option<R> {
        let now = self.now;
        let r = f(&mut self.nodes.get_mut(&addr)?.core, now);
        self.collect(addr);
        Some(r)
    }

    /// The own events of a node's machine since the last call.
    pub fn take_own_events(&mut self, addr: SocketAddrV4) -> Vec<M::Own> {
        self.nodes
            .get_mut(&addr)
            .map(|n| n.own.drain(..).collect())
            .unwrap_or_default()
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
        if let Some(n) = self.nodes.get_mut(&addr) {
            n.up = up;
            n.scheduled = None;
        }
        self.reschedule(addr);
    }

    /// Queues the node's next timeout in the timer heap if it changed.
    fn reschedule(&mut self, addr: SocketAddrV4) {
        let Some(node) = self.nodes.get_mut(&addr) else {
            return;
        };
        let next = node.core.poll_timeout().filter(|_| node.up);
        if next != node.scheduled {
            node.scheduled = next;
            if let Some(t) = next {
                self.timers.push(Reverse((t, addr)));
            }
        }
    }

    /// The earliest live timer, dropping stale heap entries.
    fn next_timer(&mut self) -> Option<(Instant, SocketAddrV4)> {
        while let Some(Reverse((t, addr))) = self.timers.peek().copied() {
            if self
                .nodes
                .get(&addr)
                .is_some_and(|n| n.scheduled == Some(t))
            {
                return Some((t, addr));
            }
            self.timers.pop();
        }
        None
    }

    /// Whether a node is behind a filter.
    pub fn is_filtering(&self, addr: SocketAddrV4) -> bool {
        self.nodes.get(&addr).is_some_and(|n| n.filtering)
    }

    /// Puts a node behind a filter that lets in only datagrams from addresses it has sent
    /// to in the last [`FILTER_TIMEOUT`] (as a port-restricted NAT does), or takes it away.
    pub fn set_filtering(&mut self, addr: SocketAddrV4, filtering: bool) {
        if let Some(n) = self.nodes.get_mut(&addr) {
            n.filtering = filtering;
        }
    }

    /// The events a node reported since the last call.
    pub fn take_events(&mut self, addr: SocketAddrV4) -> Vec<Event> {
        self.nodes
            .get_mut(&addr)
            .map(|n| n.events.drain(..).collect())
            .unwrap_or_default()
    }

    fn collect(&mut self, addr: SocketAddrV4) {
        let Some(node) = self.nodes.get_mut(&addr) else {
            return;
        };
        while let Some(e) = node.core.poll_event() {
            match e {
                MachineEvent::Rpc(e) => node.events.push_back(e),
                MachineEvent::Own(o) => node.own.push_back(o),
            }
        }
        // Extra sockets are not simulated: what leaves from them is lost.
        while node.core.poll_socket_op().is_some() {}
        let mut out = Vec::new();
        while let Some(t) = node.core.poll_transmit() {
            if t.from == SocketId::MAIN {
                out.push(t);
            } else {
                self.lost += 1;
            }
        }
        let up = node.up;
        {
            // Recorded for every node, so that a filter put up later knows the recent flows.
            let now = self.now;
            node.contacted.extend(out.iter().map(|t| (t.to, now)));
            // Expired entries go once the map has doubled since the last sweep: bounded, and
            // cheap on average.
            if node.contacted.len() >= 2 * node.contacted_swept.max(64) {
                node.contacted
                    .retain(|_, t| now.saturating_duration_since(*t) < FILTER_TIMEOUT);
                node.contacted_swept = node.contacted.len();
            }
        }
        self.reschedule(addr);
        for t in out {
            if !up || self.rng.random_bool(self.config.loss.clamp(0.0, 1.0)) {
                self.lost += 1;
                continue;
            }
            self.launch(addr, t.to, t.payload, false);
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
            let now = self.now;
            if !p.icmp
                && self.config.refuse_down
                && self.nodes.get(&p.to).is_some_and(|n| !n.up)
                && !self.rng.random_bool(self.config.loss.clamp(0.0, 1.0))
            {
                // The host answers for its gone process, quoting the datagram's start.
                let quoted = p.payload.slice(..p.payload.len().min(64));
                self.launch(p.to, p.from, quoted, true);
            }
            let node = self.nodes.get_mut(&p.to).filter(|n| n.up);
            match node {
                Some(n) if p.icmp => {
                    n.core.handle_unreachable(self.now, p.from, &p.payload);
                    self.collect(p.to);
                }
                Some(n) if n.filtering && !n.admits(p.from, now) => self.filtered += 1,
                Some(n) => {
                    if let Some(t) = n.contacted.get_mut(&p.from) {
                        *t = now;
                    }
                    self.delivered += 1;
                    n.core.handle_datagram(self.now, p.from, &p.payload);
                    self.collect(p.to);
                }
                _ => self.lost += 1,
            }
        } else if let Some((t, addr)) = next_timer {
            if t > until {
                self.now = until;
                return false;
            }
            self.now = self.now.max(t);
            if let Some(n) = self.nodes.get_mut(&addr) {
                n.scheduled = None;
                n.core.handle_timeout(self.now);
            }
            self.collect(addr);
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
            s.nodes
                .values()
                .all(|n| n.core.rpc().is_bootstrapped() || !n.up)
        });
    }

    /// Runs a query from `from` to its end: its replies and result.
    pub fn run_query(
        &mut self,
        from: SocketAddrV4,
        spec: QuerySpec,
    ) -> (Vec<Reply>, Result<QueryOutcome, QueryError>) {
        let Some(qid) = self.with_core(from, |c, now| c.query(now, spec)) else {
            return (Vec::new(), Err(QueryError::Cancelled));
        };
        let (replies, result, _) = self.run_query_timed(from, qid);
        (replies, result)
    }

    /// Runs the query `qid` of `from` to its end: its replies, each with the virtual time
    /// it came, and its result.
    #[allow(clippy::type_complexity)]
    fn run_query_timed(
        &mut self,
        from: SocketAddrV4,
        qid: dht_rpc::QueryId,
    ) -> (
        Vec<Reply>,
        Result<QueryOutcome, QueryError>,
        Vec<(Instant, NodeId)>,
    ) {
        let mut replies = Vec::new();
        let mut times = Vec::new();
        let mut result = None;
        self.run_until(Duration::from_secs(120), |s| {
            let now = s.now;
            if let Some(n) = s.nodes.get_mut(&from) {
                n.events.retain(|e| match e {
                    Event::QueryReply { query, reply } if *query == qid => {
                        if !reply.commit {
                            times.push((now, reply.node.id));
                        }
                        replies.push(reply.clone());
                        false
                    }
                    Event::QueryDone { query, result: r } if *query == qid => {
                        result = Some(r.clone());
                        false
                    }
                    _ => true,
                });
            }
            result.is_some()
        });
        (replies, result.unwrap_or(Err(QueryError::Cancelled)), times)
    }

    /// Runs `queries` `_find_node` lookups for random targets from the nodes in `from` (in
    /// turn) and checks each against brute force over the live nodes. Returns how many
    /// found exactly the true closest 20, and the fraction of the true closest found.
    pub fn check_lookups(&mut self, from: &[SocketAddrV4], queries: usize) -> (usize, f64) {
        let ops = self.timed_ops(from, queries, false);
        let exact = ops.iter().filter(|o| o.exact).count();
        let found: usize = ops.iter().map(|o| o.found).sum();
        (exact, found as f64 / (queries.max(1) * 20) as f64)
    }

    /// Runs `n` operations from the nodes in `from` (in turn), each a `_find_node` lookup
    /// (or, with `update`, an update: the same walk, then a commit round to the closest) for
    /// a random target, and measures each: virtual time, the datagrams the node sent and
    /// received meanwhile, and whether it found exactly the true closest 20 of the live nodes.
    /// One operation at a time.
    pub fn timed_ops(&mut self, from: &[SocketAddrV4], n: usize, update: bool) -> Vec<Op> {
        self.timed_ops_parallel(from, n, update, 1)
    }

    /// As [`Sim::timed_ops`], with up to `parallel` operations running at once (each from
    /// its own node), as on a network in use: the operations then all meet the network in
    /// about the same state (say, shortly after nodes went down), where one at a time they
    /// would spread over minutes in which tables heal.
    pub fn timed_ops_parallel(
        &mut self,
        from: &[SocketAddrV4],
        n: usize,
        update: bool,
        parallel: usize,
    ) -> Vec<Op> {
        struct Running {
            node: SocketAddrV4,
            qid: dht_rpc::QueryId,
            own: NodeId,
            target: NodeId,
            start: Instant,
            before: dht_rpc::Stats,
            times: Vec<(Instant, NodeId)>,
        }
        let ids = self.live_ids();
        let mut out = Vec::with_capacity(n);
        let mut running: Vec<Running> = Vec::new();
        let (mut next, mut tries) = (0usize, 0usize);
        loop {
            // Start operations up to `parallel`, each from a node that runs none.
            while running.len() < parallel.max(1) && next < n && tries < n * 4 + from.len() {
                let node = from[((next + tries) * 7919) % from.len()];
                tries += 1;
                if running.iter().any(|r| r.node == node) {
                    continue;
                }
                let Some((own, before)) = self.core(node).map(|c| (c.id(), c.stats())) else {
                    continue;
                };
                let target = self.random_id();
                let spec = if update {
                    QuerySpec::update("_find_node", target, None)
                } else {
                    QuerySpec::query("_find_node", target, None)
                };
                let Some(qid) = self.with_core(node, |c, now| c.query(now, spec)) else {
                    continue;
                };
                tries -= 1;
                next += 1;
                running.push(Running {
                    node,
                    qid,
                    own,
                    target,
                    start: self.now,
                    before,
                    times: Vec::new(),
                });
            }
            if running.is_empty() {
                break;
            }
            // Run until one of them ends.
            let mut ended = None;
            self.run_until(Duration::from_secs(120), |s| {
                let now = s.now;
                for (i, r) in running.iter_mut().enumerate() {
                    let Some(node) = s.nodes.get_mut(&r.node) else {
                        continue;
                    };
                    node.events.retain(|e| match e {
                        Event::QueryReply { query, reply } if *query == r.qid => {
                            if !reply.commit {
                                r.times.push((now, reply.node.id));
                            }
                            false
                        }
                        Event::QueryDone { query, result } if *query == r.qid => {
                            ended = Some((i, result.clone()));
                            false
                        }
                        _ => true,
                    });
                    if ended.is_some() {
                        return true;
                    }
                }
                false
            });
            let (i, result) = match ended.take() {
                Some(e) => e,
                // Past the limit: the first one is taken as failed.
                None => (0, Err(QueryError::Cancelled)),
            };
            let r = running.swap_remove(i);
            let time = self.now - r.start;
            let after = self.core(r.node).map(|c| c.stats()).unwrap_or(r.before);
            let unanswered = result.as_ref().map_or(0, |o| o.errors);
            let got: Vec<NodeId> = result
                .map(|o| o.closest.iter().map(|c| c.id).collect())
                .unwrap_or_default();
            let last_closest = r
                .times
                .iter()
                .filter(|(_, id)| got.contains(id))
                .map(|(t, _)| *t - r.start)
                .max()
                .unwrap_or(time);
            let mut want: Vec<NodeId> = ids.iter().copied().filter(|id| *id != r.own).collect();
            want.sort_by_key(|id| id.distance(&r.target));
            want.truncate(20);
            // The true closest it missed, where they are, and whether it still waited on them.
            let up_addr = |id: &NodeId| {
                self.nodes
                    .iter()
                    .find(|(_, n)| n.up && n.core.rpc().id() == *id)
                    .map(|(a, _)| *a)
            };
            let awaited = |a: SocketAddrV4| self.core(r.node).is_some_and(|c| c.awaits(a));
            let (asked, unasked): (Vec<_>, Vec<_>) = want
                .iter()
                .filter(|w| !got.contains(w))
                .filter_map(|w| up_addr(w).map(|a| (*w, a)))
                .partition(|(_, a)| awaited(*a));
            let got_addrs: Vec<SocketAddrV4> = got.iter().filter_map(up_addr).collect();
            // Some node it got knows `w`, but `w` is not in that node's 20 closest.
            let missed_crowded = unasked
                .iter()
                .filter(|(w, _)| {
                    got_addrs.iter().any(|ga| {
                        self.core(*ga).is_some_and(|c| {
                            c.table().iter().any(|x| x.id == *w)
                                && !c.table().closest(&r.target, 20).iter().any(|x| x.id == *w)
                        })
                    })
                })
                .count();
            let missed_asked = asked.len();
            out.push(Op {
                time,
                datagrams: (after.datagrams_out + after.datagrams_in)
                    .saturating_sub(r.before.datagrams_out + r.before.datagrams_in),
                found: got.iter().filter(|g| want.contains(g)).count(),
                exact: got == want,
                last_closest,
                unanswered,
                missed_asked,
                missed_crowded,
            });
        }
        out
    }

    /// The ids of the live nodes that offer themselves to routing tables (not ephemeral,
    /// by configuration or because they found themselves firewalled).
    pub fn live_ids(&self) -> Vec<NodeId> {
        self.nodes
            .values()
            .filter(|n| n.up && !n.core.rpc().is_ephemeral())
            .map(|n| n.core.rpc().id())
            .collect()
    }

    /// Which query ids a node still runs (for tests of cancellation).
    pub fn active_queries(&self, addr: SocketAddrV4) -> usize {
        self.nodes
            .get(&addr)
            .map_or(0, |n| n.core.rpc().active_queries())
    }
}
