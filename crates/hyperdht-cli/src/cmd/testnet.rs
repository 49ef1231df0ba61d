//! `hyperdht testnet`: a bootstrap node and N nodes on one address (127.0.0.1 by default),
//! until Ctrl-C.

use std::time::Instant;

use anyhow::Context as _;
use dht_rpc::guard::Ipv4Range;
use hyperdht::HyperDht;
use serde_json::json;

use crate::out::Out;

/// Starts an ephemeral bootstrap node on `host:port` and `n` nodes on `host` bootstrapping
/// from it.
///
/// All its nodes share one IP, so they trust it: the defences' limits per IP (routing
/// table, walks, store) would otherwise keep them from knowing each other. Hosts that join
/// it from elsewhere need `--trust IP` for the same reason.
pub async fn start(host: &str, n: usize, port: u16) -> anyhow::Result<(HyperDht, Vec<HyperDht>)> {
    let own: Vec<Ipv4Range> = host.parse::<Ipv4Range>().into_iter().collect();
    let entry = crate::cmd::builder()
        .trust(own.clone())
        .rpc(|b| b.ephemeral(true))
        .bind(&format!("{host}:{port}"))
        .await?;
    let addr = entry.local_addr().to_string();
    let mut nodes = Vec::with_capacity(n);
    for _ in 0..n {
        let node = crate::cmd::builder()
            .trust(own.clone())
            .bootstrap([addr.clone()])
            .bind(&format!("{host}:0"))
            .await
            .context("starting a node")?;
        nodes.push(node);
    }
    for node in &nodes {
        node.ready().await;
    }
    // A second round, so that the early nodes learn of the late ones.
    for node in &nodes {
        let _ = node.bootstrap().await;
    }
    Ok((entry, nodes))
}

pub async fn run(out: &Out, host: &str, n: usize, port: u16) -> anyhow::Result<()> {
    let started = Instant::now();
    let (entry, nodes) = start(host, n, port).await?;
    let addr = entry.local_addr();
    out.emit(
        || format!("testnet: bootstrap node at {addr} and {} nodes, up in {:.0} ms; use --bootstrap {addr}; Ctrl-C to stop", nodes.len(), started.elapsed().as_secs_f64() * 1e3),
        || json!({"event": "testnet", "bootstrap": addr.to_string(), "nodes": nodes.iter().map(|n| n.local_addr().to_string()).collect::<Vec<_>>()}),
    );
    hyperdht_cli::shutdown_signal().await;
    for node in &nodes {
        node.shutdown().await;
    }
    entry.shutdown().await;
    Ok(())
}
