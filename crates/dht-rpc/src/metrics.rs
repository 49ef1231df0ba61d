//! Prometheus metrics of a node (feature `metrics`): its counters, round trips, routing
//! table and reachability in a `prometheus-client` [`Registry`], and a minimal HTTP endpoint
//! that serves `GET /metrics` in the OpenMetrics text format.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use dht_rpc::Node;
//!
//! let node = Node::builder().bind("0.0.0.0:0").await?;
//! let addr = dht_rpc::metrics::serve_node("127.0.0.1:9100", &node, |_, _| {}).await?;
//! println!("metrics on http://{addr}/metrics");
//! # Ok(()) }
//! ```

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::{Registry, Unit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::core::{Core, Reachability};
use crate::stats::{QUERY_BUCKETS, Stats};

/// Label sets: one `(name, value)` pair.
type Label = Vec<(&'static str, &'static str)>;

/// Adds the node's metrics to `registry` (names prefixed `dht_`). `started` is when the node
/// started, for its uptime.
pub fn register<H: crate::Handler>(registry: &mut Registry, core: &Core<H>, started: Instant) {
    let s = core.stats();
    let counter = |r: &mut Registry, name: &str, help: &str, v: u64| {
        r.register(name, help, ConstCounter::new(v))
    };
    counter(
        registry,
        "dht_datagrams_received",
        "UDP datagrams received",
        s.datagrams_in,
    );
    counter(
        registry,
        "dht_datagrams_sent",
        "UDP datagrams sent",
        s.datagrams_out,
    );
    registry.register_with_unit(
        "dht_received",
        "UDP payload bytes received",
        Unit::Bytes,
        ConstCounter::new(s.bytes_in),
    );
    registry.register_with_unit(
        "dht_sent",
        "UDP payload bytes sent",
        Unit::Bytes,
        ConstCounter::new(s.bytes_out),
    );
    labelled(
        registry,
        "dht_requests_served",
        "Requests served, by command (other: a layer's, such as hyperdht's peers)",
        "command",
        &[
            ("_ping", s.served_ping),
            ("_find_node", s.served_find_node),
            ("other", s.served_other),
        ],
    );
    counter(
        registry,
        "dht_requests_answered",
        "Answers sent",
        s.requests_answered,
    );
    labelled(
        registry,
        "dht_dropped",
        "Datagrams and requests dropped or not answered, by reason",
        "reason",
        &drops(&s),
    );
    labelled(
        registry,
        "dht_queries",
        "Queries (walks and updates) ended, by outcome",
        "outcome",
        &[("ok", s.queries_ok), ("failed", s.queries_failed)],
    );
    registry.register_with_unit(
        "dht_query_duration",
        "How long queries took",
        Unit::Seconds,
        QueryDurations(s),
    );
    for (name, help, v) in [
        (
            "dht_requests_timed_out",
            "Requests of ours that timed out",
            s.timeouts,
        ),
        (
            "dht_requests_unreachable",
            "Requests of ours failed at once by an ICMP port-unreachable",
            s.unreachable,
        ),
        (
            "dht_requests_refused_strangers",
            "Walk requests to never-heard nodes refused by ICMP: stalled at once",
            s.refused_strangers,
        ),
        (
            "dht_icmp_ignored",
            "ICMP errors that matched no request in flight",
            s.icmp_ignored,
        ),
        (
            "dht_requests_resent",
            "Walk requests sent again after stalling",
            s.resent,
        ),
        (
            "dht_requests_stalled",
            "Walk requests that outlived their RTO",
            s.stalled,
        ),
        (
            "dht_rebootstraps",
            "Re-bootstraps of the node's maintenance",
            s.rebootstraps,
        ),
        ("dht_forwards", "Hole-punch pings relayed", s.forwards),
        (
            "dht_verify_pings",
            "Pings sent to verify requesters for the table",
            s.verify_pings,
        ),
    ] {
        counter(registry, name, help, v);
    }
    let rtts = core.rtts();
    let secs = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64());
    for (name, help, v) in [
        (
            "dht_rtt_smoothed",
            "Smoothed round trip of the node's requests (RFC 6298), NaN before any answer",
            secs(rtts.node().map(|e| e.srtt)),
        ),
        (
            "dht_rtt_p50",
            "Median of recent round trips (a bucket's upper edge)",
            secs(rtts.recent_quantile(0.5)),
        ),
        (
            "dht_rtt_p99",
            "99th percentile of recent round trips (a bucket's upper edge)",
            secs(rtts.recent_quantile(0.99)),
        ),
        (
            "dht_uptime",
            "Time since the node started",
            started.elapsed().as_secs_f64(),
        ),
    ] {
        registry.register_with_unit(name, help, Unit::Seconds, ConstGauge::new(v));
    }
    let table = core.table();
    registry.register(
        "dht_routing_table_contacts",
        "Contacts in the routing table",
        ConstGauge::new(table.len() as i64),
    );
    let fill: Family<Vec<(&'static str, String)>, Gauge> = Family::default();
    for (i, n) in table.bucket_fill() {
        fill.get_or_create(&vec![("bucket", i.to_string())])
            .set(n as i64);
    }
    registry.register(
        "dht_routing_table_bucket_contacts",
        "Contacts per non-empty bucket (bucket 0: the farthest half of the id space)",
        fill,
    );
    let verdict: Family<Label, Gauge> = Family::default();
    let now = match core.reachability() {
        Reachability::Unknown => "unknown",
        Reachability::Reachable => "reachable",
        Reachability::Firewalled => "firewalled",
    };
    for v in ["unknown", "reachable", "firewalled"] {
        verdict
            .get_or_create(&vec![("verdict", v)])
            .set(i64::from(v == now));
    }
    registry.register(
        "dht_reachability",
        "The reachability check's verdict (1 for the current one)",
        verdict,
    );
}

/// A counter family with one label.
fn labelled(
    registry: &mut Registry,
    name: &str,
    help: &str,
    label: &'static str,
    values: &[(&'static str, u64)],
) {
    let family: Family<Label, prometheus_client::metrics::counter::Counter> = Family::default();
    for (v, n) in values {
        family.get_or_create(&vec![(label, *v)]).inc_by(*n);
    }
    registry.register(name, help, family);
}

/// Every drop counter with its reason.
fn drops(s: &Stats) -> Vec<(&'static str, u64)> {
    vec![
        ("malformed", s.malformed),
        ("unknown_response", s.unknown_responses),
        ("guessing_source", s.guesses_limited),
        ("request_refused", s.requests_dropped),
        ("bogus_source", s.bogus_sources),
        ("over_budget_ip", s.limited_ip),
        ("over_budget_prefix", s.limited_prefix),
        ("over_budget_total", s.limited_total),
        ("response_over_budget", s.responses_limited),
        ("refused_destination", s.refused_destinations),
        ("forward_over_rate", s.forwards_limited),
        ("pong_over_rate", s.pongs_limited),
        ("hint_unproven", s.hints_unproven),
        ("table_limited", s.table_limited),
        ("verify_over_rate", s.verify_limited),
        ("candidate_refused", s.candidates_refused),
        ("dead_skipped", s.dead_skipped),
        ("overloaded", s.overloaded),
    ]
}

/// The query-duration histogram of [`Stats`], encoded as a Prometheus histogram.
#[derive(Debug)]
struct QueryDurations(Stats);

impl EncodeMetric for QueryDurations {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        let buckets: Vec<(f64, u64)> = QUERY_BUCKETS
            .iter()
            .copied()
            .zip(s.query_buckets)
            // f64::MAX is how the encoder writes le="+Inf".
            .chain([(
                f64::MAX,
                (s.queries_ok + s.queries_failed).saturating_sub(s.query_buckets.iter().sum()),
            )])
            .collect();
        encoder.encode_histogram::<NoLabelSet>(
            s.query_micros as f64 / 1e6,
            s.queries_ok + s.queries_failed,
            &buckets,
            None,
        )
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Serves the metrics of `node` ([`register`], uptime from now) on `addr`, and those `extra`
/// adds (a layer's own) at each scrape, while the node lives (503 once it is gone).
pub async fn serve_node<M: crate::Machine>(
    addr: &str,
    node: &crate::Driver<M>,
    extra: impl Fn(&crate::Driver<M>, &mut Registry) + Send + Sync + 'static,
) -> std::io::Result<SocketAddr> {
    let started = Instant::now();
    let weak = node.downgrade();
    serve(addr, move || {
        let node = weak.upgrade()?;
        let mut registry = Registry::default();
        node.read_core(|c| register(&mut registry, c, started));
        if let Some(n) = kernel_drops(node.local_addr()) {
            registry.register(
                "dht_kernel_receive_drops",
                "Datagrams the kernel dropped on the node's socket before the node read them (mostly a full receive buffer; also failed checksums)",
                ConstCounter::new(n),
            );
        }
        extra(&node, &mut registry);
        Some(registry)
    })
    .await
}

/// What the kernel dropped for the UDP socket bound to `local` (its receive buffer was full),
/// from `/proc/net/udp`; `None` where that is not readable (not Linux).
fn kernel_drops(local: SocketAddrV4) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/udp").ok()?;
    drops_in_udp_table(&table, local)
}

/// The `drops` of the socket bound to `local` (or to every address on its port) in the text
/// of `/proc/net/udp`.
fn drops_in_udp_table(table: &str, local: SocketAddrV4) -> Option<u64> {
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next()?.split_whitespace().collect();
    let drops_at = header.iter().position(|h| *h == "drops")?;
    // The header names "tx_queue rx_queue" and "tr tm->when" as two columns each where the
    // rows have one: count back from the end, which lines up.
    let from_end = header.len() - drops_at;
    lines
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (ip, port) = f.get(1)?.split_once(':')?;
            let port = u16::from_str_radix(port, 16).ok()?;
            // The address as the kernel holds it (network order), printed as a native u32.
            let ip = Ipv4Addr::from(u32::from_str_radix(ip, 16).ok()?.to_ne_bytes());
            let matches = port == local.port() && (ip == *local.ip() || ip.is_unspecified());
            let drops = f.get(f.len().checked_sub(from_end)?)?.parse::<u64>().ok()?;
            matches.then_some(drops)
        })
        .reduce(|a, b| a + b)
}

/// The most a request's head may take (anything longer is refused).
const MAX_REQUEST: usize = 8 * 1024;

/// Serves `GET /metrics` on `addr` (HTTP/1.0-style: one request per connection), with the
/// registry `render` builds at each scrape (`None`: the node is gone, 503). Returns the bound
/// address; the server runs in a tokio task until the runtime ends.
pub async fn serve(
    addr: &str,
    render: impl Fn() -> Option<Registry> + Send + Sync + 'static,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let render = std::sync::Arc::new(render);
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                continue;
            };
            let render = render.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                let read = tokio::time::timeout(Duration::from_secs(5), async {
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                })
                .await;
                let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
                let (status, body) = if read.is_err() {
                    return;
                } else if line.starts_with(b"GET /metrics ") || line == b"GET /metrics" {
                    match render() {
                        Some(registry) => {
                            let mut text = String::new();
                            match prometheus_client::encoding::text::encode(&mut text, &registry) {
                                Ok(()) => ("200 OK", text),
                                Err(_) => ("500 Internal Server Error", String::new()),
                            }
                        }
                        None => ("503 Service Unavailable", String::new()),
                    }
                } else {
                    ("404 Not Found", "GET /metrics\n".to_string())
                };
                let reply = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(reply.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops            
12030: 0100007F:C166 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 777100 2 000000000262f22d 1275     
13814: 00000000:885E 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 777066 2 000000004d213fc6 7     
13815: 0200007F:885F 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 777067 2 000000004d213fc7 9     
";

    #[test]
    fn drops_are_read_for_our_socket_only() {
        let at = |s: &str| s.parse::<SocketAddrV4>().expect("addr");
        if cfg!(target_endian = "little") {
            assert_eq!(drops_in_udp_table(TABLE, at("127.0.0.1:49510")), Some(1275));
            assert_eq!(
                drops_in_udp_table(TABLE, at("127.0.0.1:34911")),
                None,
                "127.0.0.2"
            );
        }
        // Bound to every address: any of ours matches its port.
        assert_eq!(drops_in_udp_table(TABLE, at("10.0.0.1:34910")), Some(7));
        assert_eq!(drops_in_udp_table(TABLE, at("127.0.0.1:1")), None);
        assert_eq!(drops_in_udp_table("", at("127.0.0.1:1")), None);
        assert_eq!(
            drops_in_udp_table("garbage\nmore garbage", at("127.0.0.1:1")),
            None
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_real_socket_is_found_with_no_drops() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let SocketAddr::V4(local) = s.local_addr().expect("addr") else {
            panic!("not IPv4")
        };
        assert_eq!(kernel_drops(local), Some(0));
    }
}
