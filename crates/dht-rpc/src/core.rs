//! [`Core`]: a dht-rpc node without I/O.
//!
//! The rule for driving it: feed it with [`Core::handle_datagram`] and
//! [`Core::handle_timeout`] (and the calls that start work: [`Core::ping`],
//! [`Core::holepunch`], [`Core::query`], [`Core::bootstrap`]); after any of them, drain
//! [`Core::poll_transmit`] and [`Core::poll_event`]; then wait for a datagram or until
//! [`Core::poll_timeout`]. The core never reads the clock, touches a socket or asks the OS
//! for randomness: time comes in as `now`, randomness from the configured seed.

mod defend;
mod liveness;
mod maintain;
mod ping;
mod reach;
mod requests;
mod serve;
mod stall;
mod walk;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddrV4;
use std::time::Instant;

use bytes::Bytes;
use dht_wire::{Checked, Datagram, NodeAddr, NodeId, Request, RequestRef, Response};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::config::{Config, SECRET_ROTATION, TICK};
use crate::dead::DeadList;
use crate::events::{Event, QueryError, QueryId, RequestError, RequestId};
use crate::guard::{self, Guard, Over};
use crate::handler::{Handler, NoHandler};
use crate::query::{QueryState, Sent};
use crate::routing::{RoutingTable, TableLimits};
use crate::rtt::Rtts;
use crate::stats::Stats;
use crate::tokens::Tokens;
use crate::transmit::{SocketId, Transmit};

use reach::Reach;
pub use reach::Reachability;
use requests::{Phase, Purpose, Requests};

/// A dht-rpc node's protocol logic, without I/O. `H` answers application commands.
///
/// The driving rule: after anything that may change the core (a datagram given to
/// [`Core::handle_datagram`], a deadline passed to [`Core::handle_timeout`], a call that
/// starts a request or query), send every [`Core::poll_transmit`], take every
/// [`Core::poll_event`], and call `handle_timeout` again no later than
/// [`Core::poll_timeout`]. Time is only what the caller passes in (`now`), and every random
/// choice comes from [`Config::seed`]: the same inputs give the same outputs, which the
/// simulator relies on. The tokio driver (`dht_rpc::Driver`, feature `tokio`) does exactly
/// this for a real socket.
#[derive(Debug)]
pub struct Core<H = NoHandler> {
    config: Config,
    id: NodeId,
    rng: StdRng,
    table: RoutingTable,
    tokens: Tokens,
    requests: Requests,
    /// Boxed: a map's node holds eleven entries, and a query's state is ~300 bytes.
    queries: BTreeMap<QueryId, Box<QueryState>>,
    next_query: u64,
    next_request: u64,
    handler: H,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: Stats,
    bootstrapped: bool,
    next_tick: Instant,
    ticks: u64,
    next_rotation: Instant,
    /// When the node's own maintenance re-bootstraps next (see [`Config::maintenance`]).
    next_maintenance: Option<Instant>,
    /// The "are you alive" pings in flight: the sweep's, newcomers', evictions'.
    liveness: liveness::Liveness,
    guard: Guard,
    /// Our port and our address as others see it (from pongs), so that nothing is relayed
    /// or answered to ourselves.
    local_port: Option<u16>,
    observed: Option<SocketAddrV4>,
    deliver_unrecognized: bool,
    reach: Reach,
    /// Round-trip times: the timeouts after which walks move on.
    rtts: Rtts,
    /// Addresses that stopped answering, kept out of walks for a while.
    dead: DeadList,
    /// Answers are encoded here and split off (see [`ANSWER_ARENA`]).
    arena: bytes::BytesMut,
    /// The size of the arena's next buffer: it doubles, up to [`ANSWER_ARENA`], each time
    /// the last one could not be reused.
    arena_chunk: usize,
    /// The roundtrip tokens the last nodes that answered one of the application's queries
    /// handed us, newest last: a hole punch relayed through one of them presents its
    /// token, which shows the relay the request is really ours (see
    /// `TOKENS_KEPT` in `walk.rs`).
    tokens_from: VecDeque<(SocketAddrV4, [u8; 32])>,
    /// Working space of the closest nodes an answer carries.
    closest_scratch: crate::routing::ClosestScratch,
    closest_buf: Vec<NodeAddr>,
}

/// Answers are encoded into one buffer of at most this size and split off it: a transmit
/// holds a slice, and once the driver sent and dropped them all the buffer is reused, so
/// answering allocates once per this many bytes of answers, not once per answer.
const ANSWER_ARENA: usize = 32 * 1024;
/// Room the transmit and event queues may keep once drained: more is given back, down to
/// a quarter of it (every node in a simulation of 100,000 keeps its own).
const QUEUE_KEPT: usize = 32;
/// The arena's first buffer.
const ANSWER_ARENA_MIN: usize = 1024;

impl Core<NoHandler> {
    /// A core that serves no application command.
    pub fn new(config: Config, now: Instant) -> Self {
        Core::with_handler(config, NoHandler, now)
    }
}

impl<H: Handler> Core<H> {
    /// A core whose application commands `handler` answers.
    pub fn with_handler(config: Config, handler: H, now: Instant) -> Self {
        let mut rng = StdRng::seed_from_u64(config.seed);
        let id = config
            .id
            .unwrap_or_else(|| NodeId::from_bytes(rng.random()));
        let tokens = Tokens::new(rng.random(), rng.random()).with_max(config.token_cache);
        // The newest budget's key comes from a second stream, so that the first gives
        // every earlier draw (the id, the token secrets, the budgets' keys) as it did
        // before it was added. Everything after construction (tids included) draws from
        // the first: a node keeps one generator.
        let mut aux = StdRng::seed_from_u64(config.seed ^ 0x7469_6473_2d61_7578);
        let requests = Requests::new(
            config.concurrency,
            config.max_queued,
            config.request_timeout,
        );
        let d = &config.defences;
        let limits = TableLimits {
            per_ip: d.table_per_ip,
            per_prefix: d.table_per_prefix,
            trusted: d.trusted.clone(),
        };
        let guard = Guard::new(d.clone(), config.forward_rate, aux.random(), || {
            rng.random()
        });
        Core {
            table: RoutingTable::with_limits(id, config.k, limits),
            guard,
            local_port: None,
            observed: None,
            tokens_from: VecDeque::new(),
            config,
            id,
            rng,
            tokens,
            requests,
            queries: BTreeMap::new(),
            next_query: 0,
            next_request: 0,
            handler,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            bootstrapped: false,
            next_tick: now + TICK,
            ticks: 0,
            next_rotation: now + SECRET_ROTATION,
            next_maintenance: None,
            liveness: liveness::Liveness::default(),
            deliver_unrecognized: false,
            reach: Reach::default(),
            rtts: Rtts::default(),
            dead: DeadList::default(),
            arena: bytes::BytesMut::new(),
            arena_chunk: ANSWER_ARENA_MIN,
            closest_scratch: Default::default(),
            closest_buf: Vec::new(),
        }
    }

    /// Reports datagrams that are not of the protocol as [`Event::Unrecognized`] instead of
    /// only counting them as malformed: applications can then share the DHT socket (the
    /// path a hole punch opened) for their own datagrams.
    pub fn set_deliver_unrecognized(&mut self, on: bool) {
        self.deliver_unrecognized = on;
    }

    /// Tells the core the port its socket is bound to, so that it relays and answers nothing
    /// to itself (the driver calls it at bind).
    pub fn set_local_port(&mut self, port: u16) {
        self.local_port = Some(port);
    }

    /// Sends an application datagram from the DHT socket. Make it one that does not decode
    /// as the protocol (see [`Event::Unrecognized`]).
    pub fn send_datagram(&mut self, to: SocketAddrV4, payload: Bytes) {
        self.push_encoded(to, payload);
    }

    /// Our node id (not sent when ephemeral).
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Replaces the bootstrap nodes (the driver re-resolves their names before bootstraps);
    /// the next bootstrap uses them.
    pub fn set_bootstrap_nodes(&mut self, nodes: Vec<SocketAddrV4>) {
        self.config.bootstrap = nodes;
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The node's random source, seeded from [`Config::seed`]: a machine built around the
    /// core draws from it too, so that one seed gives one run and a node keeps one
    /// generator (a ChaCha generator's state is 320 bytes).
    pub fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }

    /// Whether `addr` stopped answering us lately, so that walks do not take it from
    /// others' answers (see [`crate::rtt`] and `Stats::dead_skipped`).
    pub fn is_marked_dead(&self, now: Instant, addr: SocketAddrV4) -> bool {
        self.dead.is_dead(now, addr)
    }

    /// Whether a request of ours to `addr` is in flight or queued (say, one a walk gave up
    /// on that may still be answered; a diagnostic for the simulator).
    pub fn awaits(&self, addr: SocketAddrV4) -> bool {
        self.requests.pending_to(addr)
    }

    /// The round-trip estimates.
    pub fn rtts(&self) -> &crate::rtt::Rtts {
        &self.rtts
    }

    /// The routing table.
    pub fn table(&self) -> &RoutingTable {
        &self.table
    }

    /// The application handler.
    pub fn handler(&self) -> &H {
        &self.handler
    }

    /// The application handler, to change its state.
    pub fn handler_mut(&mut self) -> &mut H {
        &mut self.handler
    }

    /// Counters of what happened so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Whether the first bootstrap has finished.
    pub fn is_bootstrapped(&self) -> bool {
        self.bootstrapped
    }

    /// The queries and updates running now.
    pub fn active_queries(&self) -> usize {
        self.queries.len()
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let t = self.transmits.pop_front();
        if t.is_none() && self.transmits.capacity() > QUEUE_KEPT {
            // A burst (a spray, a walk's first round) leaves no room behind it.
            self.transmits.shrink_to(QUEUE_KEPT / 4);
        }
        t
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        let e = self.events.pop_front();
        if e.is_none() && self.events.capacity() > QUEUE_KEPT / 8 {
            // Events are large (a reply carries its nodes): none kept once drained.
            self.events = VecDeque::new();
        }
        e
    }

    /// When to call [`Core::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.next_tick.min(self.next_rotation);
        if let Some(d) = self.requests.next_deadline() {
            t = t.min(d);
        }
        if let Some(m) = self.next_maintenance {
            t = t.min(m);
        }
        Some(t)
    }

    /// Our id as requests and responses carry it: none when ephemeral.
    fn wire_id(&self) -> Option<Checked<NodeId>> {
        (!self.is_ephemeral()).then_some(Checked::Valid(self.id))
    }

    /// The roundtrip token we hand `ip` (what a response to it carries): holding it shows a
    /// peer receives at `ip`. For protocols built on the core (hyperdht's birthday punch
    /// challenges with it).
    pub fn roundtrip_token(&mut self, ip: std::net::Ipv4Addr) -> [u8; 32] {
        self.tokens.issue(ip)
    }

    /// Whether `token` is one we handed `ip` (under the current or the previous secret).
    pub fn is_roundtrip_token(&mut self, ip: std::net::Ipv4Addr, token: &[u8]) -> bool {
        self.tokens.is_valid(ip, token)
    }

    fn new_request_id(&mut self) -> RequestId {
        self.next_request += 1;
        RequestId(self.next_request)
    }

    fn send(
        &mut self,
        now: Instant,
        to: SocketAddrV4,
        reply_from: SocketAddrV4,
        req: Request,
        purpose: Purpose,
    ) {
        if self.checks_reach() {
            // Counted when queued, not when sent: a reachability round must not pick a
            // target that a queued request is about to open our NAT to.
            self.reach.on_send(now, to);
        }
        // A walk's request stalls after its RTO (see `rtt`); the others wait the timeout.
        let waits = matches!(purpose, Purpose::Query { .. }).then(|| {
            self.rtts
                .waits(to, self.config.rto_floor, self.config.request_timeout)
        });
        if let Err(purpose) = self.requests.submit(to, reply_from, req, purpose, waits) {
            self.stats.overloaded += 1;
            self.fail(now, purpose, RequestError::Overloaded, to, Phase::Active);
            return;
        }
        self.flush_requests(now);
    }

    /// Sends queued requests while there is room in flight (the reachability check counted
    /// them when they were queued).
    fn flush_requests(&mut self, now: Instant) {
        while let Some((to, payload)) = self.requests.send_next(now, &mut self.rng) {
            self.push_encoded(to, payload);
        }
    }

    /// Sends a datagram that is not a queued request (a response, a relayed ping, a resend).
    fn transmit(&mut self, now: Instant, to: SocketAddrV4, datagram: Datagram) {
        self.transmit_encoded(now, to, datagram.encode());
    }

    /// [`Core::transmit`] of a datagram already encoded.
    fn transmit_encoded(&mut self, now: Instant, to: SocketAddrV4, payload: Bytes) {
        if self.checks_reach() {
            // Every datagram we send (responses too) keeps a NAT's mapping to `to` alive.
            self.reach.on_send(now, to);
        }
        self.push_encoded(to, payload);
    }

    fn push_encoded(&mut self, to: SocketAddrV4, payload: Bytes) {
        self.stats.datagrams_out += 1;
        self.stats.bytes_out += payload.len() as u64;
        self.transmits.push_back(Transmit {
            to,
            payload,
            from: SocketId::MAIN,
        });
    }

    /// Feeds a received datagram. Malformed ones are counted and dropped.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddrV4, bytes: &[u8]) {
        self.stats.datagrams_in += 1;
        self.stats.bytes_in += bytes.len() as u64;
        if guard::dest::is_bogus_source(from) {
            self.stats.bogus_sources += 1;
            return;
        }
        // A request (the header's top bit) is checked against its source's budgets before
        // anything is decoded, so that a flood costs a hash and a compare per datagram.
        if bytes.first().is_some_and(|b| b & 0x80 != 0)
            && let Err(over) = self.guard.admit_request(now, *from.ip())
        {
            match over {
                Over::Ip => self.stats.limited_ip += 1,
                Over::Prefix => self.stats.limited_prefix += 1,
                Over::Total => self.stats.limited_total += 1,
            }
            return;
        }
        // A request is decoded in place (its fields borrowed, no allocation); a response
        // into owned fields (the walk keeps its nodes).
        let decoded = match Datagram::split_header(bytes) {
            Some((tid, true, body)) => RequestRef::decode(body).map(|r| (tid, Ok(r))),
            Some((tid, false, body)) => Response::decode(body).map(|r| (tid, Err(r))),
            None => Err(dht_wire::DecodeError::TooShort(bytes.len())),
        };
        let (tid, message) = match decoded {
            Ok(d) => d,
            Err(_) if self.deliver_unrecognized => {
                self.stats.unrecognized += 1;
                self.events.push_back(Event::Unrecognized {
                    from,
                    payload: Bytes::copy_from_slice(bytes),
                });
                return;
            }
            Err(e) => {
                self.stats.malformed += 1;
                tracing::trace!(%from, error = %e, "dropping malformed datagram");
                self.events.push_back(Event::Warning {
                    from,
                    reason: "malformed datagram",
                });
                return;
            }
        };
        match message {
            Ok(req) => {
                // Anyone can send a request in a dead node's name: only a source that
                // proved it receives brings it back (an answer to us does, below).
                if self.guard.vouched(*from.ip()) {
                    self.dead.revive(from);
                }
                self.reach.heard_request(from);
                self.on_request(now, from, tid, req)
            }
            Err(res) => self.on_response(now, from, tid, res),
        }
    }

    fn on_response(&mut self, now: Instant, from: SocketAddrV4, tid: dht_wire::Tid, res: Response) {
        // A source whose responses answered nothing too often is guessing tids (to answer
        // in a spoofed node's name): its responses are dropped until its budget refills.
        if !self.guard.may_respond(now, *from.ip()) {
            self.stats.guesses_limited += 1;
            return;
        }
        let Some(pending) = self.requests.take(tid, from) else {
            self.stats.unknown_responses += 1;
            // A second answer to a resent request, or a late one, is no guess.
            if !self.requests.was_ours(tid, *from.ip()) {
                self.guard.answered_nothing(now, *from.ip());
            }
            return;
        };
        // It answered a request of ours: it receives at this address, and is alive.
        self.proved(now, from);
        self.dead.revive(from);
        let rtt = pending.round_trip(tid, now);
        if pending.direct() {
            self.rtts.sample(from, rtt);
        }
        if let Some(id) = res.sender_id() {
            self.add_node(now, id, from);
        } else if let Purpose::Alive(liveness::Alive::Sweep(asked))
        | Purpose::Query {
            node: Some(asked), ..
        } = pending.purpose
        {
            // A contact that answers without its id went ephemeral (or firewalled): nobody
            // should route to it any more.
            self.remove_node_at(&asked, from);
        }
        let late = pending.phase != Phase::Active;
        if pending.phase == Phase::GivenUp {
            self.stats.answered_after_give_up += 1;
        }
        match pending.purpose {
            Purpose::Ping(request) | Purpose::Holepunch(request) => {
                self.on_pong(from, request, rtt, &res)
            }
            Purpose::Query {
                query,
                node,
                commit,
                ..
            } => {
                let sent = Sent { node, commit, late };
                self.on_walk_answer(now, from, query, sent, res);
            }
            Purpose::QueryPunch { query, node } => self.on_punched(now, query, node),
            Purpose::Alive(alive) => self.on_alive(now, alive),
            Purpose::Reach(check) => self.on_check_answer(now, from, check, &res),
        }
        self.flush_requests(now);
    }

    /// What a failed or refused request to `to` means for whoever sent it (`phase`: how far
    /// it had got; a stalled one's sender was told then, a given-up one's stopped waiting).
    fn fail(
        &mut self,
        now: Instant,
        purpose: Purpose,
        error: RequestError,
        to: SocketAddrV4,
        phase: Phase,
    ) {
        match purpose {
            Purpose::Ping(request) | Purpose::Holepunch(request) => {
                self.on_pong_failure(request, error)
            }
            Purpose::Query {
                query,
                node,
                commit,
                ..
            } => {
                let sent = Sent {
                    node,
                    commit,
                    late: phase == Phase::Stalled,
                };
                self.on_walk_failure(now, query, sent, error, to, phase);
            }
            Purpose::QueryPunch { node, .. } => self.on_punch_failure(now, node, error),
            // One lost ping: out of the table, as in the reference, but not marked dead
            // (walks that meet it ask it twice, and punch, before they give up on it).
            Purpose::Alive(alive) => self.on_silent(now, alive, to),
            Purpose::Reach(check) => self.on_check_failure(now, check, error),
        }
    }

    /// Advances timers: request timeouts, the liveness tick, token rotation.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((purpose, again)) = self.requests.stall_due(now, &mut self.rng) {
            self.stats.stalled += 1;
            if let Some((to, payload)) = again {
                self.stats.resent += 1;
                self.transmit_encoded(now, to, payload);
            }
            self.on_stall(now, purpose);
        }
        while let Some(purpose) = self.requests.give_up_due(now) {
            self.on_give_up(now, purpose);
        }
        while let Some(p) = self.requests.expire(now) {
            self.stats.timeouts += 1;
            let to = p.reply_from;
            self.fail(now, p.purpose, RequestError::Timeout, to, p.phase);
        }
        if now >= self.next_rotation {
            self.tokens.rotate(self.rng.random());
            self.next_rotation = now + SECRET_ROTATION;
        }
        self.maintain(now);
        if now >= self.next_tick {
            self.ticks += 1;
            self.next_tick = now + TICK;
            self.ping_some(now);
        }
        self.flush_requests(now);
    }

    /// Fails everything in flight or queued (for shutdown).
    pub fn cancel_all(&mut self) {
        for p in self.requests.drain() {
            if let Purpose::Ping(request) | Purpose::Holepunch(request) = p {
                self.on_pong_failure(request, RequestError::Cancelled);
            }
        }
        let queries: Vec<QueryId> = self.queries.keys().copied().collect();
        for query in queries {
            self.queries.remove(&query);
            self.events.push_back(Event::QueryDone {
                query,
                result: Err(QueryError::Cancelled),
            });
        }
    }
}
