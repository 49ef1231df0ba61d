//! The Kademlia RPC layer of the `dht-rpc` 2.x protocol, packet-compatible with
//! `dht-rpc@2.3.0`: routing, requests, iterative queries, updates with roundtrip tokens and
//! forwarded (hole-punch) pings.
//!
//! - [`Core`]: the protocol as a state machine without I/O (see its docs for the rule that
//!   drives it). Deterministic under [`Config::seed`], so the simulator runs exactly the code
//!   that runs in production.
//! - [`RoutingTable`], [`Tokens`]: the pure data structures it is made of.
//! - [`Handler`]: how an application answers its own commands (queries and updates).
#![forbid(unsafe_code)]

mod config;
mod core;
mod dead;
#[cfg(feature = "tokio")]
pub mod driver;
mod events;
pub mod guard;
mod handler;
mod limiter;
mod machine;
#[cfg(feature = "metrics")]
pub mod metrics;
mod query;
mod routing;
pub mod rtt;
mod stats;
mod tokens;
mod transmit;

pub use crate::core::{Core, Reachability};
pub use config::{
    Config, DEFAULT_CONCURRENCY, DEFAULT_K, DEFAULT_REQUEST_TIMEOUT, DEFAULT_RTO_FLOOR,
    Maintenance, RECENTLY_SEEN, SECRET_ROTATION, SWEEP_AFTER, SWEEP_MAX, SWEEP_PERIOD, TICK,
};
pub use dht_wire as wire;
pub use dht_wire::{NodeAddr, NodeId};
#[cfg(feature = "tokio")]
pub use driver::{
    BindError, DatagramIo, Driver, Node, NodeBuilder, QueryStream, RECV_BUFFER, WeakDriver,
    WeakNode,
};
pub use events::{Event, Pong, QueryError, QueryId, QueryOutcome, Reply, RequestError, RequestId};
pub use guard::Defences;
pub use handler::{Answer, CommandFn, Handler, Handlers, Incoming, NoHandler};
pub use limiter::RateLimiter;
pub use machine::{Machine, MachineEvent};
pub use query::QuerySpec;
pub use routing::{ClosestScratch, Contact, Insert, RoutingTable, Seen, TableLimits};
pub use stats::{QUERY_BUCKETS, Stats};
pub use tokens::Tokens;
pub use transmit::{SocketId, SocketOp, Transmit};
