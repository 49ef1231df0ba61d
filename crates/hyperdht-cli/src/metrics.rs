//! `hyperdht --metrics ADDR`: the dht-rpc node's metrics (`dht_*`, see
//! `dht_rpc::metrics`) and the peer store's (`hyperdht_*`), served at `GET /metrics`.

use std::net::SocketAddr;

use anyhow::Context as _;
use hyperdht::HyperDht;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// Serves the metrics of `dht` on `at` until the process ends; the bound address.
pub async fn serve(dht: &HyperDht, at: &str) -> anyhow::Result<SocketAddr> {
    dht_rpc::metrics::serve_node(at, dht.rpc(), |node, registry| {
        node.read_core(|c| register_store(registry, c.handler().store()));
        registry.register(
            "hyperdht_kept_announcements",
            "Announcements this node keeps re-announcing",
            ConstGauge::new(node.read_machine(|m| m.kept()) as i64),
        );
        let relay = node.read_machine(|m| m.relay_stats().zip(m.relay_load()));
        if let Some((stats, load)) = relay {
            register_relay(registry, &stats, load);
        }
    })
    .await
    .with_context(|| format!("serving metrics on {at}"))
}

/// The relay role's load, traffic and refusals (only with `--relay`).
fn register_relay(
    registry: &mut Registry,
    s: &hyperdht::relay::RelayStats,
    (reservations, circuits): (usize, usize),
) {
    registry.register(
        "hyperdht_relay_reservations",
        "Reservations the relay holds now",
        ConstGauge::new(reservations as i64),
    );
    registry.register(
        "hyperdht_relay_circuits",
        "Circuits (bound or joined) the relay holds now",
        ConstGauge::new(circuits as i64),
    );
    let counter = |n: u64| {
        let c: Counter = Counter::default();
        c.inc_by(n);
        c
    };
    registry.register(
        "hyperdht_relay_forwarded_datagrams",
        "Datagrams the relay forwarded between the ends of a circuit",
        counter(s.forwarded),
    );
    registry.register(
        "hyperdht_relay_forwarded_bytes",
        "Bytes the relay forwarded (as many as came in)",
        counter(s.forwarded_bytes),
    );
    registry.register(
        "hyperdht_relay_circuits_joined",
        "Circuits joined since start",
        counter(s.circuits),
    );
    registry.register(
        "hyperdht_relay_circuits_released",
        "Circuits an end released before their lifetime ended (a direct path or a fresh circuit replaced them)",
        counter(s.released),
    );
    let family: Family<Vec<(&'static str, &'static str)>, Counter> = Family::default();
    for (reason, n) in [
        ("reservations_full", s.refused_reservations_full),
        ("per_source", s.refused_per_source),
        ("circuits_full", s.refused_circuits_full),
        ("per_peer", s.refused_per_peer),
        ("no_reservation", s.refused_no_reservation),
        ("unknown_pairing", s.refused_unknown_pairing),
        ("destination", s.refused_destination),
        ("stranger", s.dropped_strangers),
        ("over_budget", s.dropped_over_budget),
        ("challenge_limited", s.challenge_limited),
        ("release_not_an_end", s.release_ignored),
    ] {
        family.get_or_create(&vec![("reason", reason)]).inc_by(n);
    }
    registry.register(
        "hyperdht_relay_refused",
        "Relay messages refused or dropped, by reason",
        family,
    );
    registry.register(
        "hyperdht_relay_challenges",
        "Challenges the relay sent (messages without its token)",
        counter(s.challenged),
    );
}

/// The peer store's gauges and refusals.
fn register_store(registry: &mut Registry, store: &hyperdht::PeerStore) {
    let keys = store.key_count();
    registry.register(
        "hyperdht_store_keys",
        "Keys in the peer store (both generations)",
        ConstGauge::new(keys as i64),
    );
    registry.register(
        "hyperdht_store_entries",
        "Announcements in the peer store (both generations)",
        ConstGauge::new(store.len().saturating_sub(keys) as i64),
    );
    let refused = store.refused();
    let family: Family<Vec<(&'static str, &'static str)>, Counter> = Family::default();
    for (quota, n) in [
        ("per_ip", refused.ip),
        ("per_prefix", refused.prefix),
        ("per_key_ip", refused.key_ip),
        ("per_key_prefix", refused.key_prefix),
    ] {
        family.get_or_create(&vec![("quota", quota)]).inc_by(n);
    }
    registry.register(
        "hyperdht_announces_refused",
        "Announces refused by the store's quotas, by quota",
        family,
    );
}
