//! Whole `hyperdht` nodes ([`hyperdht::Core`]: the peer store, kept announcements, hole
//! punching with the birthday punch) in the simulator.

use std::net::SocketAddrV4;

use dht_rpc::Config;
use hyperdht::{Core, PeerStore, PeersHandler};

use crate::Sim;

/// Adds a hyperdht node (a default peer store) configured as `config`.
pub fn add_node(sim: &mut Sim<Core>, config: Config) -> SocketAddrV4 {
    sim.add_machine(config, |config, now| {
        let seed = config.seed;
        let rpc =
            dht_rpc::Core::with_handler(config, PeersHandler::new(PeerStore::default(), seed), now);
        Core::new(rpc, now)
    })
}
