//! The commands, one module each, and what they share.

pub mod announce;
pub mod datagram;
pub mod demo;
pub mod lookup;
pub mod node;
pub mod ping;
pub mod testnet;

use std::net::SocketAddrV4;
use std::sync::OnceLock;

use anyhow::Context as _;
use dht_rpc::guard::Ipv4Range;
use hyperdht::{HyperDht, HyperDhtBuilder};
use hyperdht_cli::UsageError;
use serde_json::{Value, json};

use crate::out::Out;

/// The ranges given with `--trust`, for every node the process starts.
static TRUSTED: OnceLock<(Vec<Ipv4Range>, bool)> = OnceLock::new();

/// Sets the `--trust` ranges, and whether loopback stays trusted (once, at start).
pub fn set_trusted(ranges: Vec<Ipv4Range>, no_loopback: bool) {
    let _ = TRUSTED.set((ranges, no_loopback));
}

/// The `--trust` ranges, and loopback unless `--no-trust-loopback` (as the defences
/// trust it).
pub fn trusted_ranges() -> Vec<dht_rpc::guard::Ipv4Range> {
    let (mut ranges, no_loopback) = TRUSTED.get().cloned().unwrap_or_default();
    if !no_loopback {
        ranges.push("127.0.0.0/8".parse().expect("a valid range"));
    }
    ranges
}

/// A node builder with the `--trust` ranges applied.
pub fn builder() -> HyperDhtBuilder {
    let (ranges, no_loopback) = TRUSTED.get().cloned().unwrap_or_default();
    let mut b = HyperDht::builder();
    if no_loopback {
        b = b.distrust_loopback();
    }
    b.trust(ranges)
}

/// Where a one-shot command's node binds (the top-level `--host` and `-p/--port`:
/// `0.0.0.0:0` by default) and whom it bootstraps from.
pub struct Client<'a> {
    /// The bootstrap nodes (`HOST[:PORT]`).
    pub bootstrap: Vec<String>,
    /// The address to bind.
    pub bind: &'a str,
}

impl Client<'_> {
    /// Starts an ephemeral node for the command: it asks, and is never added to routing
    /// tables. Without bootstrap nodes it is a usage error when the command `needs` them.
    pub async fn start(self, needs: bool) -> anyhow::Result<HyperDht> {
        if needs && self.bootstrap.is_empty() {
            return Err(UsageError(
                "this command needs a bootstrap node: --bootstrap HOST[:PORT]".into(),
            )
            .into());
        }
        builder()
            .rpc(|b| b.ephemeral(true))
            .bootstrap(self.bootstrap)
            .bind(self.bind)
            .await
            .context("starting the node")
    }
}

/// Checks `HOST[:PORT]` arguments before anything resolves them: a port that is not a
/// number from 1 to 65535 is a usage error (exit 2), not an unknown host.
pub fn check_addresses(what: &str, addrs: &[String]) -> Result<(), UsageError> {
    for a in addrs {
        if let Some((_, port)) = a.rsplit_once(':')
            && port.parse::<u16>().map_or(true, |p| p == 0)
        {
            return Err(UsageError(format!(
                "malformed {what} {a:?}: the port must be a number from 1 to 65535"
            )));
        }
    }
    Ok(())
}

/// Parses `HOST[:PORT]`, resolving names; port 49737 when absent.
pub async fn address(s: &str) -> anyhow::Result<SocketAddrV4> {
    Ok(dht_rpc::driver::resolve(s, Some(dht_rpc::driver::DEFAULT_BOOTSTRAP_PORT)).await?)
}

/// Parses a LAN address `IP[:PORT]` (port 0 when absent).
pub fn lan_address(s: &str) -> Result<SocketAddrV4, UsageError> {
    let with_port = if s.contains(':') {
        s.to_owned()
    } else {
        format!("{s}:0")
    };
    with_port.parse().map_err(|_| {
        UsageError(format!(
            "malformed local address {s:?}: expected an IPv4 address such as 192.168.1.2:8080"
        ))
    })
}

/// A node as JSON: `{"id": hex or null, "host": ..., "port": ...}` (see the README's "JSON
/// output").
pub fn node_json(n: &dht_rpc::NodeAddr) -> Value {
    json!({"id": n.id.to_string(), "host": n.addr.ip().to_string(), "port": n.addr.port()})
}

/// An address as JSON: `{"host": ..., "port": ...}`, the shape of every address the commands
/// print (the reference's data events use it too).
pub fn addr_json(a: &SocketAddrV4) -> Value {
    json!({"host": a.ip().to_string(), "port": a.port()})
}

/// Addresses as JSON objects.
pub fn addrs_json(a: &[SocketAddrV4]) -> Value {
    Value::Array(a.iter().map(addr_json).collect())
}

/// Milliseconds, to the microsecond (no `0.32151599999999997`).
pub fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Addresses as text.
pub fn addrs_text(a: &[SocketAddrV4]) -> String {
    if a.is_empty() {
        return "none".into();
    }
    a.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What `--relay` names: a relay found on the DHT's relay key (`auto`), or an address.
pub enum RelayArg {
    /// `auto`.
    Auto,
    /// A relay's address.
    At(SocketAddrV4),
}

impl RelayArg {
    /// Reads `--relay` (`None` when it is absent).
    pub async fn parse(arg: Option<&str>) -> anyhow::Result<Option<RelayArg>> {
        Ok(match arg {
            None => None,
            Some("auto") => Some(RelayArg::Auto),
            Some(r) => Some(RelayArg::At(
                address(r).await.context("the relay's address")?,
            )),
        })
    }
}

/// Reserves on a relay found on the DHT and says which; or says that none could be, logs
/// `warning` (what that costs), and goes on.
pub async fn reserve_found(out: &Out, dht: &HyperDht, warning: &str) {
    match dht.reserve_any_relay().await {
        Ok(relay) => out.emit(
            || format!("relay: reserved on {relay} (found on the DHT)"),
            || json!({"event": "relay", "relay": addr_json(&relay)}),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "{warning}");
            out.note(|| format!("relay: none reserved ({e})"));
        }
    }
}
