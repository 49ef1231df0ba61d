//! The Kademlia RPC layer of the `dht-rpc` 2.x protocol (PROTOCOL.md sections 1, 3 and 5).
//!
//! This crate will hold a sans-I/O core (routing table, requests, iterative queries and
//! updates with roundtrip tokens, forwarded pings) and a thin tokio driver around it. It is
//! being built; today it re-exports the wire types it will speak.
#![forbid(unsafe_code)]

pub use dht_wire as wire;
