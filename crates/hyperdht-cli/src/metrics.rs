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
    })
    .await
    .with_context(|| format!("serving metrics on {at}"))
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
