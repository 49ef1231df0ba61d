//! Peer discovery and UDP hole punching on the DHT, packet-compatible with `hyperdht@1.3.0`.
//!
//! This crate will hold the peer store, `announce` / `lookup` / `unannounce` and hole
//! punching on top of [`dht_rpc`]. It is being built; today it re-exports the wire types of
//! its `peers` command.
#![forbid(unsafe_code)]

pub use dht_rpc;
pub use dht_wire::{Key, PEERS, PeersRequest, PeersRequestType, PeersResponse};
