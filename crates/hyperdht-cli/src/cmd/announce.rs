//! `hyperdht announce KEY` (kept alive until interrupted) and `hyperdht unannounce KEY`.

use anyhow::Context as _;
use hyperdht::{AnnounceOptions, CoreEvent, HyperDht, Key};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::{Client, RelayArg, addrs_json, lan_address, reserve_found};
use crate::out::Out;

/// `announce`'s options beyond the key.
pub struct Options<'a> {
    /// The port announced (ours when absent).
    pub port: Option<u16>,
    /// Our LAN address.
    pub local: Option<&'a str>,
    /// The relay to reserve on.
    pub relay: Option<&'a str>,
}

/// `hyperdht announce KEY`: announces (reserving on a relay first, if asked) and keeps the
/// announcement alive until interrupted, then unannounces.
pub async fn run(
    out: &Out,
    client: Client<'_>,
    key: &str,
    options: Options<'_>,
) -> anyhow::Result<()> {
    let key = hyperdht_cli::parse_key(key)?;
    let local_address = options.local.map(lan_address).transpose()?;
    let relay = RelayArg::parse(options.relay).await?;
    let opts = AnnounceOptions::new(options.port, local_address);
    let dht = client.start(true).await?;
    match relay {
        Some(RelayArg::At(relay)) => {
            dht.reserve_relay(relay);
            tracing::info!(%relay, "reserving a slot on the relay");
        }
        // Announcing still helps every peer that can punch.
        Some(RelayArg::Auto) => {
            let warning = "no relay: peers whose punch to us fails cannot connect";
            reserve_found(out, &dht, warning).await;
        }
        None => {}
    }
    let mut events = dht.core_events();
    // Caught from before "announced" is printed: whoever reads it may signal at once.
    let mut shutdown = hyperdht_cli::Shutdown::new();
    announce_once(out, &dht, key, opts).await?;
    // The node's core re-announces every 4-5 minutes from here on.
    let kept = dht.keep_announced(key, opts);
    // Text that peers send over a punched path (`hyperdht holepunch ... --send TEXT`).
    let mut datagrams = dht.datagrams();
    loop {
        tokio::select! {
            Some((from, d)) = datagrams.recv() => {
                let Some(text) = super::datagram::decode(&d) else { continue };
                out.emit(
                    || format!("datagram from {from}: {text:?}"),
                    || json!({"event": "datagram", "from": super::addr_json(&from), "text": text}),
                );
            }
            e = events.recv() => match e {
                Ok(CoreEvent::Announced { key, result: Ok(nodes), .. }) => out.emit(
                    || format!("re-announced {key} on {nodes} node(s)"),
                    || json!({"event": "announced", "key": key.to_string(), "nodes": nodes}),
                ),
                // (A failed re-announce is logged by the library, and tried again.)
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => break,
            },
            () = shutdown.recv() => break,
        }
    }
    let result = kept.stop().await;
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
    let dht_port = dht.local_addr().port();
    let port = opts.port.unwrap_or(dht_port);
    tracing::info!(%key, nodes = outcome.commits, port, dht_port, "announced");
    out.emit(
        || {
            let mut s = format!("announced {key} on {} node(s) with port {port}; {} other peer(s) on it; re-announcing every 4-5 minutes until Ctrl-C", outcome.commits, peers.len());
            if port == dht_port {
                s.push_str(&format!("\n(hole punching reaches this DHT socket, port {dht_port}: peers can `hyperdht holepunch IP:{dht_port} --via NODE`)"));
            } else {
                s.push_str(&format!("\n(port {port} is your service's; hole punching reaches this node's DHT socket, port {dht_port}, which lookups do not return: announce without --port to punch to it)"));
            }
            s
        },
        || json!({"event": "announced", "key": key.to_string(), "nodes": outcome.commits, "port": port, "dht_port": dht_port, "peers": addrs_json(&peers.iter().copied().collect::<Vec<_>>())}),
    );
    Ok(())
}

/// `hyperdht unannounce KEY`: takes `port`'s announcement of ours off the nodes that
/// hold it.
pub async fn unannounce(
    out: &Out,
    client: Client<'_>,
    key: &str,
    port: Option<u16>,
) -> anyhow::Result<()> {
    let key = hyperdht_cli::parse_key(key)?;
    let dht = client.start(true).await?;
    let result = dht.unannounce(key, AnnounceOptions::new(port, None)).await;
    finish_unannounce(out, &dht, key, result).await
}
