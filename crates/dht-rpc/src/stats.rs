//! [`Stats`]: counters of what a node received, sent, answered and dropped.

/// Counters since the node started. Every datagram that is dropped is counted in one of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Datagrams received.
    pub datagrams_in: u64,
    /// Datagrams sent.
    pub datagrams_out: u64,
    /// Datagrams that did not decode (too short, bad protobuf, missing field), dropped.
    pub malformed: u64,
    /// Datagrams not of the protocol handed to the application (when it asked for them).
    pub unrecognized: u64,
    /// Responses that matched no request in flight (unknown tid, or the wrong sender), dropped.
    pub unknown_responses: u64,
    /// Requests answered.
    pub requests_answered: u64,
    /// Requests dropped by the protocol's rules: a missing or malformed target, a forward of
    /// anything but `_ping`, a malformed forward address, a handler that declined.
    pub requests_dropped: u64,
    /// Hole-punch pings relayed to their target.
    pub forwards: u64,
    /// Hole-punch pings not relayed because a requester or target exceeded its rate.
    pub forwards_limited: u64,
    /// Requests of ours that timed out.
    pub timeouts: u64,
    /// Query requests sent a second time after half the timeout without an answer.
    pub resent: u64,
    /// Requests of ours refused because the queue was full.
    pub overloaded: u64,
}
