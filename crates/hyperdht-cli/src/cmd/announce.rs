//! `hyperdht announce KEY` (kept alive until interrupted) and `hyperdht unannounce KEY`.

use std::time::Duration;

use anyhow::Context as _;
use hyperdht::{AnnounceOptions, HyperDht, Key};
use rand::Rng;
use serde_json::json;

use super::{client, lan_address};
use crate::out::Out;

pub async fn run(
    out: &Out,
    bootstrap: Vec<String>,
    key: &str,
    port: Option<u16>,
    local: Option<&str>,
) -> anyhow::Result<()> {
    let key = hyperdht_cli::parse_key(key)?;
    let local_address = local.map(lan_address).transpose()?;
    let opts = AnnounceOptions {
        port,
        local_address,
    };
    let dht = client(bootstrap, true).await?;
    announce_once(out, &dht, key, opts).await?;
    loop {
        let wait = Duration::from_millis(rand::rng().random_range(240_000..300_000));
        tokio::select! {
            () = tokio::time::sleep(wait) => {
                if let Err(e) = announce_once(out, &dht, key, opts).await {
                    tracing::warn!(error = %format!("{e:#}"), "re-announce failed; trying again at the next interval");
                }
            }
            () = hyperdht_cli::shutdown_signal() => break,
        }
    }
    let result = dht.unannounce(key, opts).await;
    finish_unannounce(out, &dht, key, result).await
}

async fn finish_unannounce(
    out: &Out,
    dht: &HyperDht,
    key: Key,
    result: Result<(), dht_rpc::QueryError>,
) -> anyhow::Result<()> {
    result.context("unannounce failed")?;
    out.emit(
        || format!("unannounced {key}"),
        || json!({"event": "unannounced", "key": key.to_string()}),
    );
    dht.shutdown().await;
    Ok(())
}

async fn announce_once(
    out: &Out,
    dht: &HyperDht,
    key: Key,
    opts: AnnounceOptions,
) -> anyhow::Result<()> {
    let mut stream = dht.announce(key, opts);
    let mut peers = std::collections::BTreeSet::new();
    while let Some(r) = futures::StreamExt::next(&mut stream).await {
        peers.extend(r.peers);
    }
    let outcome = match stream.outcome() {
        Some(Ok(o)) => o.clone(),
        Some(Err(e)) => return Err(e.clone()).context("announce failed"),
        None => anyhow::bail!("announce was cancelled"),
    };
    out.emit(
        || format!("announced {key} on {} node(s); {} other peer(s) on it; re-announcing every 4-5 minutes until Ctrl-C", outcome.commits, peers.len()),
        || json!({"event": "announced", "key": key.to_string(), "nodes": outcome.commits, "peers": peers.iter().map(ToString::to_string).collect::<Vec<_>>()}),
    );
    Ok(())
}

pub async fn unannounce(
    out: &Out,
    bootstrap: Vec<String>,
    key: &str,
    port: Option<u16>,
) -> anyhow::Result<()> {
    let key = hyperdht_cli::parse_key(key)?;
    let dht = client(bootstrap, true).await?;
    let result = dht
        .unannounce(
            key,
            AnnounceOptions {
                port,
                local_address: None,
            },
        )
        .await;
    finish_unannounce(out, &dht, key, result).await
}
