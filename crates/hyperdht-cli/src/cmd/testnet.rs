//! `hyperdht testnet`: a bootstrap node and N nodes on one address (127.0.0.1 by default),
//! until Ctrl-C.

use std::time::Instant;

use anyhow::Context as _;
use hyperdht::{HyperDht, Testnet};
use serde_json::json;

use super::addr_json;
use crate::out::Out;

/// Starts an ephemeral bootstrap node on `host:port` and `n` nodes on `host` bootstrapping
/// from it (the library's [`Testnet`], with the CLI's trust settings).
pub async fn start(host: &str, n: usize, port: u16) -> anyhow::Result<(HyperDht, Vec<HyperDht>)> {
    let net = Testnet::start_with(host, port, n, crate::cmd::builder)
        .await
        .context("starting the test network")?;
    Ok((net.entry, net.nodes))
}

pub async fn run(out: &Out, host: &str, n: usize, port: u16) -> anyhow::Result<()> {
    let started = Instant::now();
    let (entry, nodes) = start(host, n, port).await?;
    let addr = entry.local_addr();
    out.emit(
        || format!("testnet: bootstrap node at {addr} and {} nodes, up in {:.0} ms; use --bootstrap {addr}; Ctrl-C to stop", nodes.len(), started.elapsed().as_secs_f64() * 1e3),
        || json!({"event": "testnet", "bootstrap": addr_json(&addr), "nodes": nodes.iter().map(|n| addr_json(&n.local_addr())).collect::<Vec<_>>()}),
    );
    hyperdht_cli::Shutdown::new().recv().await;
    for node in &nodes {
        node.shutdown().await;
    }
    entry.shutdown().await;
    Ok(())
}
