//! Peer discovery and UDP hole punching on a Kademlia DHT, packet-compatible with
//! `hyperdht@1.3.0`: nodes announce that they listen on a 32-byte key, others look the key
//! up and get the announcers' addresses (and LAN addresses when they share a network), and
//! two peers behind NATs open a direct UDP path through a DHT node both can reach.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use futures::StreamExt;
//! use hyperdht::{AnnounceOptions, HyperDht, Key};
//!
//! let a = HyperDht::builder().bootstrap(["localhost:10000"]).bind("0.0.0.0:0").await?;
//! let b = HyperDht::builder().bootstrap(["localhost:10000"]).bind("0.0.0.0:0").await?;
//! a.ready().await;
//! let key = Key::from_bytes(*b"01234567012345670123456701234567");
//! b.announce(key, AnnounceOptions::new(Some(10000), None)).collect_all().await?;
//! let mut found = a.lookup(key, AnnounceOptions::default());
//! while let Some(reply) = found.next().await {
//!     println!("found peers: {:?} via {}", reply.peers, reply.node.addr);
//! }
//! # Ok(()) }
//! ```
//!
//! - [`HyperDht`]: the handle (announce, lookup, unannounce, ping, holepunch), the tokio
//!   driver of a [`Core`].
//! - [`Core`]: the node without I/O (the dht-rpc core, hole-punch rounds, hint limits).
//! - [`PeersHandler`] and [`PeerStore`]: the server side, without I/O, as the dht-rpc core's
//!   handler.
#![forbid(unsafe_code)]

#[cfg(feature = "tokio")]
mod announcement;
mod core;
mod events;
#[cfg(feature = "tokio")]
mod find_relay;
mod hints;
#[cfg(feature = "tokio")]
mod node;
mod options;
#[cfg(feature = "tokio")]
mod punch;
pub mod relay;
#[cfg(feature = "tokio")]
mod reply;
mod serve;
mod store;
#[cfg(feature = "tokio")]
mod testnet;

pub use crate::core::{
    BirthdayTry, Core, CoreEvent, Holepunch, HolepunchError, HolepunchPath, KeepId,
    MAX_CIRCUIT_PATHS, MAX_PATHS, PUNCH_INTERVAL, PUNCH_ROUNDS, PunchId, REANNOUNCE, RELAY_WAIT,
    RENEW_AFTER, UPGRADE_EVERY,
};
#[cfg(feature = "tokio")]
pub use announcement::Announcement;
pub use bytes;
pub use dht_rpc;
/// Resolves `"host[:port]"` to an IPv4 address (port 49737 when absent and `None`), as
/// the builders do: for [`HyperDht::ping`] and [`HyperDht::holepunch`], which take addresses.
#[cfg(feature = "tokio")]
pub use dht_rpc::driver::resolve;
pub use dht_wire::{Key, NodeId, PEERS, PeersRequest, PeersRequestType, PeersResponse};
pub use events::PeerEvent;
#[cfg(feature = "tokio")]
pub use find_relay::{FindRelayError, RELAYS_TRIED, RESERVE_WAIT};
pub use hints::{Hint, SOCKETS as BIRTHDAY_SOCKETS, SPRAYS as BIRTHDAY_SPRAYS, Token};
#[cfg(feature = "tokio")]
pub use node::{HyperDht, HyperDhtBuilder, PeerEvents, PingError, SHUTDOWN_UNANNOUNCE};
pub use options::{AnnounceOptions, LookupOptions, PeerOptions};
#[cfg(feature = "tokio")]
pub use reply::{PeersReply, PeersStream};
pub use serve::{ANSWER_BYTES, PeersHandler};
pub use store::{DEFAULT_MAX, DEFAULT_MAX_AGE, Entry, OverQuota, PeerStore, QuotaStats, Quotas};
#[cfg(feature = "tokio")]
pub use testnet::Testnet;
