//! [`Stats`]: counters of what a node received, sent, answered and dropped, and how long its
//! queries took.

use std::time::Duration;

/// Upper bounds (seconds) of the query-duration histogram's buckets ([`Stats::query_buckets`];
/// longer queries count in the total only, as Prometheus's `+Inf`).
pub const QUERY_BUCKETS: [f64; 9] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0];

/// Counters since the node started. Every datagram that is dropped is counted in one of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct Stats {
    /// Datagrams received.
    pub datagrams_in: u64,
    /// Datagrams sent.
    pub datagrams_out: u64,
    /// Bytes received (UDP payloads).
    pub bytes_in: u64,
    /// Bytes sent (UDP payloads).
    pub bytes_out: u64,
    /// Requests served, by command: `_ping`.
    pub served_ping: u64,
    /// ... `_find_node`.
    pub served_find_node: u64,
    /// ... any other command (a layer's, such as hyperdht's `peers`).
    pub served_other: u64,
    /// Queries (walks and updates) that ended with a result.
    pub queries_ok: u64,
    /// Queries that failed (no node answered, or cancelled).
    pub queries_failed: u64,
    /// Queries per duration bucket (not cumulative): `query_buckets[i]` counts those that took
    /// at most [`QUERY_BUCKETS`]`[i]` seconds and more than the bucket before.
    pub query_buckets: [u64; QUERY_BUCKETS.len()],
    /// The durations of all ended queries, summed, in microseconds.
    pub query_micros: u64,
    /// Datagrams that did not decode (too short, bad protobuf, missing field), dropped.
    pub malformed: u64,
    /// Datagrams not of the protocol handed to the application (when it asked for them).
    pub unrecognized: u64,
    /// Responses that matched no request in flight (unknown tid, or the wrong sender), dropped.
    /// A request that was sent twice and answered twice adds one (the second answer).
    pub unknown_responses: u64,
    /// Responses dropped unread because their source sent too many that matched nothing (a
    /// forger guessing tids; see [`crate::guard::Defences::unmatched_responses_per_ip`]).
    pub guesses_limited: u64,
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
    /// Requests of ours failed at once because an ICMP port-unreachable came back for them.
    pub unreachable: u64,
    /// Walk requests to nodes that never answered us, refused by an ICMP port-unreachable
    /// (perhaps a NAT in front of them): stalled at once, given up sooner.
    pub refused_strangers: u64,
    /// ICMP errors that matched no request in flight (late, or forged), or a request that
    /// waits as before: ignored.
    pub icmp_ignored: u64,
    /// Query requests sent a second time when they stalled.
    pub resent: u64,
    /// Walk requests without an answer after their expected round trip: the walk moved on
    /// (a late answer still counts).
    pub stalled: u64,
    /// Stalled walk requests answered after their walk had stopped waiting for them (two
    /// RTOs, or for a node never heard from the stall plus the tail of recent round trips):
    /// a sign that the waits are too short for some paths.
    pub answered_after_give_up: u64,
    /// Nodes named in answers that walks did not take because they stopped answering us
    /// lately.
    pub dead_skipped: u64,
    /// Re-bootstraps the node's own maintenance started (see `Config::maintenance`).
    pub rebootstraps: u64,
    /// Requests of ours refused because the queue was full.
    pub overloaded: u64,
    /// Datagrams dropped unread: their source cannot be real (port 0, an unspecified,
    /// multicast, reserved or broadcast address), and an answer would go to it.
    pub bogus_sources: u64,
    /// Requests dropped before decoding: their source IP was over its budget.
    pub limited_ip: u64,
    /// Requests dropped before decoding: their source /24 was over its budget.
    pub limited_prefix: u64,
    /// Requests dropped before decoding: untrusted sources in all were over budget.
    pub limited_total: u64,
    /// Answers not sent: their destination was over its response byte budget (tight for
    /// IPs that never proved they receive, so that spoofed requests reflect little).
    pub responses_limited: u64,
    /// Forwards, pongs, walk candidates and punch hints refused for their destination: a
    /// special-purpose address, or loopback or a private range the requester is not in.
    pub refused_destinations: u64,
    /// Pongs of forwarded pings not sent: their third-party target or all pongs over rate.
    pub pongs_limited: u64,
    /// Punch hints (a relayed ping's value) ignored because the relay never proved it
    /// receives at its address.
    pub hints_unproven: u64,
    /// Contacts not added: their IP or /24 already holds its share of the routing table.
    pub table_limited: u64,
    /// Pings sent to requesters we did not know, so that they enter the table only once they
    /// answered.
    pub verify_pings: u64,
    /// Requesters not pinged for the table: the verification pings were over their rate.
    pub verify_limited: u64,
    /// Nodes named in answers that a walk did not take: past the per-answer or per-IP cap,
    /// or at a refused destination.
    pub candidates_refused: u64,
}

impl Stats {
    /// Counts a query that ended after `took`.
    pub(crate) fn query_done(&mut self, ok: bool, took: Duration) {
        if ok {
            self.queries_ok += 1;
        } else {
            self.queries_failed += 1;
        }
        let secs = took.as_secs_f64();
        if let Some(i) = QUERY_BUCKETS.iter().position(|b| secs <= *b) {
            self.query_buckets[i] += 1;
        }
        self.query_micros = self
            .query_micros
            .saturating_add(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
    }

    /// Every counter with its name, in declaration order (for logs and metrics; the
    /// duration histogram apart).
    pub fn fields(&self) -> [(&'static str, u64); 40] {
        [
            ("datagrams_in", self.datagrams_in),
            ("datagrams_out", self.datagrams_out),
            ("bytes_in", self.bytes_in),
            ("bytes_out", self.bytes_out),
            ("served_ping", self.served_ping),
            ("served_find_node", self.served_find_node),
            ("served_other", self.served_other),
            ("queries_ok", self.queries_ok),
            ("queries_failed", self.queries_failed),
            ("query_micros", self.query_micros),
            ("malformed", self.malformed),
            ("unrecognized", self.unrecognized),
            ("unknown_responses", self.unknown_responses),
            ("guesses_limited", self.guesses_limited),
            ("requests_answered", self.requests_answered),
            ("requests_dropped", self.requests_dropped),
            ("forwards", self.forwards),
            ("forwards_limited", self.forwards_limited),
            ("timeouts", self.timeouts),
            ("unreachable", self.unreachable),
            ("refused_strangers", self.refused_strangers),
            ("icmp_ignored", self.icmp_ignored),
            ("resent", self.resent),
            ("stalled", self.stalled),
            ("answered_after_give_up", self.answered_after_give_up),
            ("dead_skipped", self.dead_skipped),
            ("rebootstraps", self.rebootstraps),
            ("overloaded", self.overloaded),
            ("bogus_sources", self.bogus_sources),
            ("limited_ip", self.limited_ip),
            ("limited_prefix", self.limited_prefix),
            ("limited_total", self.limited_total),
            ("responses_limited", self.responses_limited),
            ("refused_destinations", self.refused_destinations),
            ("pongs_limited", self.pongs_limited),
            ("hints_unproven", self.hints_unproven),
            ("table_limited", self.table_limited),
            ("verify_pings", self.verify_pings),
            ("verify_limited", self.verify_limited),
            ("candidates_refused", self.candidates_refused),
        ]
    }
}
