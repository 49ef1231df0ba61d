//! `hyperdht ping NODE` and `hyperdht holepunch PEER --via NODE`.

use std::time::Duration;

use anyhow::Context as _;
use serde_json::json;

use super::{Client, RelayArg, addr_json, address, ms, reserve_found};
use crate::out::Out;

/// `hyperdht ping NODE`: one `_ping`, and what it answered.
pub async fn run(out: &Out, bind: &str, node: &str, timeout_ms: u64) -> anyhow::Result<()> {
    let to = address(node).await?;
    let dht = crate::cmd::builder()
        .rpc(|b| b.ephemeral(true))
        .rpc(|b| b.request_timeout(Duration::from_millis(timeout_ms)))
        .bind(bind)
        .await
        .context("starting the node")?;
    let pong = dht
        .ping(to)
        .await
        .with_context(|| format!("no answer from {to}"))?;
    let id = pong
        .id
        .map_or_else(|| "none (ephemeral)".to_owned(), |i| i.to_string());
    let seen = pong
        .observed
        .map_or_else(|| "unknown".to_owned(), |a| a.to_string());
    out.emit(
        || format!("pong from {to}: id {id}, it sees us as {seen}, round trip {:.2} ms", pong.rtt.as_secs_f64() * 1e3),
        || json!({"event": "pong", "node": addr_json(&to), "id": pong.id.map(|i| i.to_string()), "observed": pong.observed.map(|a| addr_json(&a)), "rtt_ms": ms(pong.rtt)}),
    );
    dht.shutdown().await;
    Ok(())
}

/// What `holepunch` does besides punching.
pub struct PunchOptions<'a> {
    /// Text to send over the opened path.
    pub send: Option<&'a str>,
    /// `auto` or the relay to reserve on first.
    pub relay: Option<&'a str>,
}

/// `hyperdht holepunch PEER --via NODE`: punches (through a relay when no punch opens,
/// with `--relay`), says which path opened, and sends `--send`'s text over it.
pub async fn holepunch(
    out: &Out,
    client: Client<'_>,
    peer: &str,
    via: &str,
    opts: PunchOptions<'_>,
) -> anyhow::Result<()> {
    let peer = address(peer).await?;
    let via = address(via).await?;
    let relay = RelayArg::parse(opts.relay).await?;
    let auto = matches!(relay, Some(RelayArg::Auto));
    let dht = client.start(auto).await?;
    if auto {
        dht.ready().await;
        let warning = "no relay of ours: only the peer's can carry a circuit";
        reserve_found(out, &dht, warning).await;
    } else if let Some(RelayArg::At(relay)) = relay {
        if dht
            .reserve_relay_within(relay, hyperdht::RESERVE_WAIT)
            .await
        {
            out.emit(
                || format!("relay: reserved on {relay}"),
                || json!({"event": "relay", "relay": addr_json(&relay)}),
            );
        } else {
            tracing::warn!(%relay, "the relay did not hold our reservation");
            out.note(|| format!("relay: {relay} did not hold our reservation"));
        }
    }
    let send = opts.send;
    let punch = dht
        .holepunch(peer, via)
        .await
        .with_context(|| format!("no path to {peer} opened through {via}"))?;
    let (path, relay) = path_name(punch.path);
    out.emit(
        || match relay {
            Some(r) => format!("no direct path; a circuit to {peer} through the relay {r} opened in {:.2} ms", punch.elapsed.as_secs_f64() * 1e3),
            None => format!("{path} path to {peer} opened in {:.2} ms", punch.elapsed.as_secs_f64() * 1e3),
        },
        || json!({"event": "holepunched", "peer": addr_json(&peer), "via": addr_json(&via), "path": path, "relay": relay.as_ref().map(addr_json), "ms": ms(punch.elapsed)}),
    );
    if let Some(text) = send {
        dht.send_datagram(punch.addr, super::datagram::encode(text));
        // Give the driver a moment to send it before the node closes.
        tokio::time::sleep(Duration::from_millis(100)).await;
        out.emit(
            || format!("sent {text:?} to {}", punch.addr),
            || json!({"event": "sent", "to": addr_json(&punch.addr), "text": text}),
        );
    }
    dht.shutdown().await;
    Ok(())
}

/// A path's name in the output, and the relay of a circuit.
pub fn path_name(path: hyperdht::HolepunchPath) -> (&'static str, Option<std::net::SocketAddrV4>) {
    use hyperdht::HolepunchPath::*;
    match path {
        Direct => ("direct", None),
        Relayed => ("relayed", None),
        Birthday => ("birthday", None),
        Circuit { relay } => ("circuit", Some(relay)),
    }
}
