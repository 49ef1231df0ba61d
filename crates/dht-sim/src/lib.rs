//! A deterministic simulator: many `dht-rpc` / `hyperdht` cores in one process, on a virtual
//! network with latency, loss, churn and NAT boxes, in virtual time under a seed.
//!
//! It will drive exactly the cores that run in production; it is being built.
#![forbid(unsafe_code)]

pub use dht_rpc;
