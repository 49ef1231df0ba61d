//! [`Config`]: everything a node is told at creation, with the reference's defaults.

use std::net::SocketAddrV4;
use std::time::Duration;

use dht_wire::NodeId;

use crate::guard::Defences;

/// How long a request waits for its response: the reference checks every 250 ms and gives a
/// request 5 ticks, sending it once.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_millis(1250);
/// The least time a walk waits for an answer before it asks the next candidate (see
/// [`crate::rtt`]): above the scheduling noise of a loaded machine.
pub const DEFAULT_RTO_FLOOR: Duration = Duration::from_millis(50);
/// Requests in flight at once per node, and per query.
pub const DEFAULT_CONCURRENCY: usize = 16;
/// Bucket size and the size of a query's closest set.
pub const DEFAULT_K: usize = 20;
/// The liveness tick.
pub const TICK: Duration = Duration::from_secs(5);
/// Token secrets rotate this often.
pub const SECRET_ROTATION: Duration = Duration::from_secs(5 * 60);
/// A contact seen this recently is not pinged by the liveness sweep or before eviction.
pub const RECENTLY_SEEN: Duration = Duration::from_secs(15);
/// The liveness sweep pings, every tick, enough of the contacts not seen for a minute
/// (least recently seen first) to go round the whole table in this time: about one ping
/// every two seconds for a table of 150. (The reference pings 3 every 40 s, so that a
/// quarter of an hour after nodes went down a table still holds about one in a hundred of
/// them, and each costs the walks that meet it a wait for a silent node.)
pub const SWEEP_PERIOD: Duration = Duration::from_secs(5 * 60);
/// A contact seen this recently is left out of the liveness sweep.
pub const SWEEP_AFTER: Duration = Duration::from_secs(60);
/// The liveness sweep pings at most this many contacts per tick.
pub const SWEEP_MAX: usize = 8;

/// What a long-lived node does by itself to keep its routing table fresh: every so often
/// (a uniformly drawn wait, so that nodes started together do not walk together) it
/// re-bootstraps, that is it walks for its own id through its contacts and the bootstrap
/// nodes, then refreshes up to three empty buckets, and with [`Config::adaptive`] runs a
/// reachability round after those walks. (The reference's library does none of this; its
/// `hyperdht` command re-bootstraps every 5 to 65 seconds, the default here.)
///
/// ```
/// use std::time::Duration;
/// use dht_rpc::{Config, Maintenance};
///
/// let config = Config {
///     maintenance: Some(Maintenance::every(Duration::from_secs(30), Duration::from_secs(90))),
///     ..Config::default()
/// };
/// assert_eq!(config.maintenance.unwrap().between, (Duration::from_secs(30), Duration::from_secs(90)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Maintenance {
    /// The least and the most time from the node's first bootstrap, or from the last
    /// re-bootstrap, to the next.
    pub between: (Duration, Duration),
}

impl Maintenance {
    /// A re-bootstrap every `min` to `max` (drawn anew each time; `max` below `min` counts
    /// as `min`).
    pub fn every(min: Duration, max: Duration) -> Self {
        Maintenance {
            between: (min, max.max(min)),
        }
    }
}

impl Default for Maintenance {
    /// Every 5 to 65 seconds, as the reference's `hyperdht` command.
    fn default() -> Self {
        Maintenance::every(Duration::from_secs(5), Duration::from_secs(65))
    }
}

/// The configuration of a node's core.
#[derive(Debug, Clone)]
pub struct Config {
    /// Our node id; random (from `seed`) when `None`.
    pub id: Option<NodeId>,
    /// An ephemeral node sends no id, so nobody adds it to a routing table. Bootstrap
    /// servers are ephemeral.
    pub ephemeral: bool,
    /// Entry nodes that queries start from while the routing table is small.
    pub bootstrap: Vec<SocketAddrV4>,
    /// Requests in flight at once (more wait in a queue), and per query. Node-wide, a value
    /// above 1,024 counts as 1,024, so that transaction ids never run out.
    pub concurrency: usize,
    /// Bucket size and the size of a query's closest set.
    pub k: usize,
    /// How long a request waits for its response. A walk moves on earlier, after the
    /// round-trip time it expects (see [`crate::rtt`]): this is the ceiling of that wait, for
    /// a node we know nothing about.
    pub request_timeout: Duration,
    /// The least time a walk waits for a node's answer before it asks the next candidate.
    pub rto_floor: Duration,
    /// Seeds the node's random choices (id, transaction ids, token secrets), so that a run
    /// can be replayed.
    pub seed: u64,
    /// Hole-punch forwards relayed per second for one requester address, and for one target.
    pub forward_rate: u32,
    /// Requests waiting for a free slot before new ones fail with `Overloaded`.
    pub max_queued: usize,
    /// Check, after the routing table's own walks (bootstrap, bucket refresh; a verdict at
    /// most every 10 minutes), whether nodes we never sent to can reach us, and behave as an
    /// ephemeral node (send no id) while they cannot.
    ///
    /// A node behind a NAT or firewall that sends its id lands in routing tables with an
    /// address nobody else can reach: every walk that meets it waits for a timeout and a hole
    /// punch, and an announce stored there may not be found. The check uses only hole-punch
    /// pings, so dht-rpc 2.x nodes serve it unchanged. Off by default, as in the reference.
    pub adaptive: bool,
    /// The defences against hostile networks (see [`crate::guard`]).
    pub defences: Defences,
    /// Periodic re-bootstrap, bucket refresh and reachability rounds, inside the core (see
    /// [`Maintenance`]). `None` here, so that a core does only what it is told (the
    /// simulator's networks stay quiet); the tokio builders (`NodeBuilder`,
    /// `HyperDhtBuilder`) turn it on by default, as a long-lived node needs it.
    pub maintenance: Option<Maintenance>,
    /// Hosts whose roundtrip token the node caches at most (36 bytes
    /// each). The cache starts at 64 and grows only as hosts evict each other, so a quiet
    /// node keeps it small whatever this says; a simulator of thousands of nodes caps it.
    pub token_cache: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            id: None,
            ephemeral: false,
            bootstrap: Vec::new(),
            concurrency: DEFAULT_CONCURRENCY,
            k: DEFAULT_K,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            rto_floor: DEFAULT_RTO_FLOOR,
            seed: 0,
            forward_rate: 20,
            max_queued: 4096,
            adaptive: false,
            defences: Defences::default(),
            maintenance: None,
            token_cache: crate::tokens::CACHE_SLOTS,
        }
    }
}
