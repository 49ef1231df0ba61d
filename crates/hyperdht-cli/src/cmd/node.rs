//! `hyperdht` with no command: a long-lived node.

use dht_rpc::Event;
use hyperdht::PeerEvent;
use sd_notify::NotifyState;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use crate::out::Out;
use crate::state;

/// How often the state directory gets a fresh snapshot of the contacts.
const SNAPSHOT_EVERY: std::time::Duration = std::time::Duration::from_secs(300);

/// The node's options beyond its address and bootstrap.
pub struct NodeOptions {
    /// Run the reachability check.
    pub adaptive: bool,
    /// How the socket is read and written.
    pub io: dht_rpc::DatagramIo,
    /// Where to serve Prometheus metrics.
    pub metrics: Option<String>,
    /// Where to keep the id and contacts across restarts.
    pub state_dir: Option<std::path::PathBuf>,
    /// Serve as a relay (default limits).
    pub relay: bool,
}

/// `hyperdht` with no command: a long-lived node on `host:port` until interrupted.
pub async fn run(
    out: &Out,
    host: &str,
    port: u16,
    bootstrap: Vec<String>,
    opts: NodeOptions,
) -> anyhow::Result<()> {
    let NodeOptions {
        adaptive,
        io,
        metrics,
        state_dir,
        relay,
    } = opts;
    let bind = format!("{host}:{port}");
    let restored = state_dir.as_deref().map(state::load).unwrap_or_default();
    // The configured bootstrap first, then the contacts of the last run.
    let mut entry = bootstrap.clone();
    entry.extend(restored.contacts.iter().map(|a| a.to_string()));
    let id = restored.id;
    let mut builder = crate::cmd::builder();
    if relay {
        builder = builder.relay(hyperdht::relay::RelayLimits {
            trusted: crate::cmd::trusted_ranges(),
            ..hyperdht::relay::RelayLimits::default()
        });
    }
    let dht = builder
        .bootstrap(entry)
        .rpc(|b| {
            let b = b.adaptive(adaptive).datagram_io(io);
            match id {
                Some(id) => b.id(id),
                None => b,
            }
        })
        .bind(&bind)
        .await?;
    let save = |dht: &hyperdht::HyperDht| {
        if let Some(dir) = &state_dir {
            let now = state::State {
                id: Some(dht.id()),
                contacts: dht
                    .contacts(state::MAX_CONTACTS)
                    .into_iter()
                    .map(|n| n.addr)
                    .collect(),
            };
            match state::save(dir, &now) {
                Ok(()) => tracing::debug!(contacts = now.contacts.len(), "state saved"),
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "could not save the state")
                }
            }
        }
    };
    // The id at once (a crash before the first snapshot keeps it).
    if restored.id.is_none() {
        save(&dht);
    }
    let mut snapshots = tokio::time::interval(SNAPSHOT_EVERY);
    snapshots.tick().await;
    // Quiet: no receiver at all, so that the node keeps no backlog of unprinted events.
    let mut events = if out.quiet {
        hyperdht::PeerEvents::none()
    } else {
        dht.events()
    };
    if let Some(at) = metrics {
        let served = crate::metrics::serve(&dht, &at).await?;
        tracing::info!(%served, "metrics on http://{served}/metrics");
    }
    let mut rpc_events = dht.rpc_events();
    // Made once, before "listening" is printed (a supervisor that reads it may signal at
    // once) and before the loop: the signals are caught from here on, and one that comes
    // while another branch wins waits for the next turn.
    let mut shutdown = hyperdht_cli::Shutdown::new();
    out.emit(
        || format!("hyperdht listening on {} (id {}){}", dht.local_addr(), dht.id(), if relay { ", relay on" } else { "" }),
        || json!({"event": "listening", "address": crate::cmd::addr_json(&dht.local_addr()), "id": dht.id().to_string(), "relay": relay}),
    );
    let ready = dht.ready();
    tokio::pin!(ready);
    // Re-bootstrap, bucket refresh and reachability rounds run inside the node (the
    // builder's default `Maintenance`: every 5 to 65 seconds, as the original).
    let mut bootstrapped = false;
    // A relay lists itself on the DHT's relay key once bootstrapped, and not while the
    // reachability check says nodes cannot reach it (a relay nobody reaches helps nobody).
    let mut listing: Option<hyperdht::Announcement> = None;
    loop {
        tokio::select! {
            () = &mut ready, if !bootstrapped => {
                bootstrapped = true;
                let nodes = dht.rpc().read_core(|c| c.table().len());
                // Under systemd (Type=notify): ready once the first bootstrap walk ended.
                // Nothing happens without NOTIFY_SOCKET.
                let status = format!("serving on {}, {nodes} nodes known", dht.local_addr());
                if let Err(e) = sd_notify::notify(false, &[NotifyState::Ready, NotifyState::Status(&status)]) {
                    tracing::warn!(error = %e, "could not notify the service manager");
                }
                // Anyone answered? (An entry node answers without an id, so it is in no table.)
                let answered = dht.stats().datagrams_in > 0;
                if !out.quiet {
                    out.emit(
                        || match (bootstrap.is_empty(), nodes, answered) {
                            (true, 0, _) => "no bootstrap nodes given: serving as an entry node; others join with -b THIS_HOST:PORT".to_string(),
                            (false, 0, true) => "bootstrapped (0 nodes known: the entry node answered, no other node yet)".to_string(),
                            _ => format!("bootstrapped ({nodes} nodes known)"),
                        },
                        || json!({"event": "bootstrapped", "nodes": nodes}),
                    );
                }
                if relay {
                    listing = Some(dht.announce_as_relay());
                    tracing::info!(key = %hyperdht::relay::RELAY_KEY, "listed as a relay on the DHT");
                }
                if nodes == 0 && !bootstrap.is_empty() && !answered {
                    tracing::warn!("no node answered the bootstrap: check --bootstrap and that UDP gets through");
                }
            }
            e = events.recv() => match e {
                Ok(e) if !out.quiet => print_event(out, e),
                Ok(_) => {}
                Err(RecvError::Lagged(n)) => tracing::warn!(missed = n, "too many events to print"),
                Err(RecvError::Closed) => break,
            },
            e = rpc_events.recv() => match e {
                Ok(Event::Reachability { firewalled }) => {
                    if relay && bootstrapped && firewalled == listing.is_some() {
                        listing = (!firewalled).then(|| dht.announce_as_relay());
                        tracing::info!(listed = !firewalled, "relay listing follows reachability");
                    }
                    out.emit(
                    || if firewalled {
                        "reachability: nodes we never sent to cannot reach us; sending no id (ephemeral) until they can".to_string()
                    } else {
                        "reachability: reachable by nodes we never sent to; sending our id".to_string()
                    },
                    || json!({"event": "reachability", "firewalled": firewalled}),
                    );
                }
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => break,
            },
            _ = snapshots.tick() => save(&dht),
            () = shutdown.recv() => break,
        }
    }
    tracing::info!("shutting down");
    drop(listing);
    save(&dht);
    let _ = sd_notify::notify(false, &[NotifyState::Stopping]);
    let stats = dht.rpc().stats();
    let store = dht.rpc().read_core(|c| c.handler().store().refused());
    let mut all: Vec<(&str, u64)> = stats.fields().to_vec();
    all.extend([
        ("store_refused_ip", store.ip),
        ("store_refused_prefix", store.prefix),
        ("store_refused_key_ip", store.key_ip),
        ("store_refused_key_prefix", store.key_prefix),
    ]);
    out.emit(
        || {
            let nonzero: Vec<String> = all
                .iter()
                .filter(|(_, v)| *v > 0)
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            format!("stats: {}", nonzero.join(" "))
        },
        || {
            let mut m = serde_json::Map::new();
            m.insert("event".into(), json!("stats"));
            for (k, v) in &all {
                m.insert((*k).into(), json!(v));
            }
            serde_json::Value::Object(m)
        },
    );
    dht.shutdown().await;
    Ok(())
}

fn print_event(out: &Out, e: PeerEvent) {
    let (kind, key, peer) = match e {
        PeerEvent::Announce { key, peer } => ("announce", key, peer),
        PeerEvent::Unannounce { key, peer } => ("unannounce", key, peer),
        PeerEvent::Lookup { key, peer } => ("lookup", key, peer),
    };
    out.emit(
        || format!("{kind}: {key} {peer}"),
        || json!({"event": kind, "key": key.to_string(), "peer": crate::cmd::addr_json(&peer)}),
    );
}
