//! What the core reports: [`Event`]s, replies, and the errors of requests and queries.

use std::net::SocketAddrV4;
use std::time::Duration;

use bytes::Bytes;
use dht_wire::{NodeAddr, NodeId};

/// Names a ping or hole punch started on the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub(crate) u64);

/// Names a query or update started on the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueryId(pub(crate) u64);

/// The answer to a ping (or a hole punch: then it came from the punched peer).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct Pong {
    /// Who answered.
    pub from: SocketAddrV4,
    /// Its node id, unless it is ephemeral.
    pub id: Option<NodeId>,
    /// Our address as the answering node saw it (for a hole punch: as the relay saw it).
    pub observed: Option<SocketAddrV4>,
    /// From sending the request to the answer.
    pub rtt: Duration,
}

/// Why a ping or hole punch failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// No answer within the request timeout: the node is down, or UDP is filtered between us.
    #[error("request timed out")]
    Timeout,
    /// Too many requests are waiting already; try again later.
    #[error("too many requests queued")]
    Overloaded,
    /// The node shut down before the answer came.
    #[error("the node is shutting down")]
    Cancelled,
    /// Nothing listens at that address: an ICMP port-unreachable came back for the request
    /// (where the driver can read such errors: Linux).
    #[error("nothing listens there (ICMP port unreachable)")]
    Unreachable,
}

/// One node's answer during a query or update.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reply {
    /// The node that answered, with the address it answered from.
    pub node: NodeAddr,
    /// What its handler answered, if anything.
    pub value: Option<Bytes>,
    /// Whether this came in the commit round of an update (with our token) rather than the
    /// query round.
    pub commit: bool,
}

/// How a finished query went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct QueryOutcome {
    /// The closest nodes that answered with an id, closest first (at most k).
    pub closest: Vec<NodeAddr>,
    /// Responses in all.
    pub responses: usize,
    /// Responses in the commit round.
    pub commits: usize,
    /// Requests that failed.
    pub errors: usize,
}

/// Why a query or update failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// No node answered at all: check the bootstrap addresses and that UDP is not blocked.
    #[error("no nodes responded")]
    NoNodesResponded,
    /// The query round worked but none of the closest nodes answered the commit round.
    #[error("no close nodes responded")]
    NoCloseNodesResponded,
    /// The node shut down before the query finished.
    #[error("the node is shutting down")]
    Cancelled,
}

/// Something the core reports. Drain them with `poll_event` after every input.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A ping or hole punch finished.
    Pong {
        /// The request.
        request: RequestId,
        /// Its answer or error.
        result: Result<Pong, RequestError>,
    },
    /// A node answered a query.
    QueryReply {
        /// The query.
        query: QueryId,
        /// The answer.
        reply: Reply,
    },
    /// A query finished; no more replies follow.
    QueryDone {
        /// The query.
        query: QueryId,
        /// How it went.
        result: Result<QueryOutcome, QueryError>,
    },
    /// The first bootstrap finished (whatever its result): the node is ready.
    Ready,
    /// A node entered the routing table.
    NodeAdded(NodeAddr),
    /// A node left the routing table (it stopped answering).
    NodeRemoved(NodeAddr),
    /// A datagram that is not of the protocol (only when the application asked for them,
    /// with `set_deliver_unrecognized`).
    Unrecognized {
        /// Who sent it.
        from: SocketAddrV4,
        /// Its bytes.
        payload: Bytes,
    },
    /// A peer hole-punched to us through `relay` and put a `value` in its ping: a hint for
    /// the application (hyperdht uses it to negotiate a birthday punch). `requester` is the
    /// peer's address as the relay saw it, where our pong went.
    PunchRequest {
        /// The peer that punched.
        requester: SocketAddrV4,
        /// The node that relayed the ping.
        relay: SocketAddrV4,
        /// The hint.
        value: Bytes,
    },
    /// A datagram was dropped: malformed, or a request the protocol's rules refuse. The
    /// counters in `Stats` say how many; this says which and why.
    Warning {
        /// Who sent it.
        from: SocketAddrV4,
        /// Why it was dropped.
        reason: &'static str,
    },
    /// A reachability check (see `Config::adaptive`) reached a verdict: `firewalled` means
    /// nodes we never sent to cannot reach us, so we now send no id (as an ephemeral node);
    /// otherwise we send it (again).
    Reachability {
        /// The verdict.
        firewalled: bool,
    },
    /// We relayed a hole-punch ping from `from` to `to`.
    HolepunchForwarded {
        /// The requester.
        from: SocketAddrV4,
        /// The peer it wants to reach.
        to: SocketAddrV4,
    },
}
