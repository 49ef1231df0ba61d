//! `hyperdht lookup KEY`: the peers announced on a key, and which node answered.

use std::collections::BTreeSet;

use anyhow::Context as _;
use futures::StreamExt;
use hyperdht::AnnounceOptions;
use serde_json::json;

use super::{Client, addrs_json, addrs_text, lan_address, node_json};
use crate::out::Out;

/// `hyperdht lookup KEY`: prints the peers the nodes nearest the key know (exit 5 when
/// none).
pub async fn run(
    out: &Out,
    client: Client<'_>,
    key: &str,
    local: Option<&str>,
) -> anyhow::Result<()> {
    let key = hyperdht_cli::parse_key(key)?;
    let local_address = local.map(lan_address).transpose()?;
    let dht = client.start(true).await?;
    let started = std::time::Instant::now();
    let mut stream = dht.lookup(key, AnnounceOptions::new(None, local_address));
    let mut all = BTreeSet::new();
    let mut with_peers = 0;
    while let Some(reply) = stream.next().await {
        with_peers += usize::from(!reply.peers.is_empty() || !reply.local_peers.is_empty());
        all.extend(reply.peers.iter().copied());
        out.emit(
            || {
                let mut s = format!("{} ({}): peers {}", reply.node.addr, short(&reply.node.id), addrs_text(&reply.peers));
                if !reply.local_peers.is_empty() {
                    s.push_str(&format!("; local peers {}", addrs_text(&reply.local_peers)));
                }
                s
            },
            || json!({"event": "reply", "node": node_json(&reply.node), "peers": addrs_json(&reply.peers), "local_peers": addrs_json(&reply.local_peers)}),
        );
    }
    // Every node that answered, with peers or not (the stream yields only those with).
    let nodes = match stream.outcome() {
        Some(Ok(o)) => o.responses,
        Some(Err(e)) => {
            return Err(e.clone()).context(
                "lookup failed: no node answered (check --bootstrap and that UDP gets through)",
            );
        }
        None => anyhow::bail!("the lookup was cancelled"),
    };
    tracing::info!(%key, peers = all.len(), nodes, ms = started.elapsed().as_millis() as u64, "lookup done");
    out.note(|| {
        format!(
            "found {} peer(s); {nodes} node(s) answered, {with_peers} with peers",
            all.len()
        )
    });
    dht.shutdown().await;
    if all.is_empty() {
        return Err(hyperdht_cli::NotFound(format!("no peer announced {key}")).into());
    }
    Ok(())
}

/// The first 8 hex characters of an id.
pub fn short(id: &dht_rpc::NodeId) -> String {
    id.to_string()[..8].to_owned()
}
