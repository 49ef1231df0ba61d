//! A local network for the examples: an ephemeral entry node and `n` nodes on 127.0.0.1
//! (the library's `Testnet`).

use hyperdht::{HyperDht, Testnet};

pub async fn local_network(
    n: usize,
) -> Result<(HyperDht, Vec<HyperDht>), Box<dyn std::error::Error>> {
    let net = Testnet::start(n).await?;
    Ok((net.entry, net.nodes))
}
