//! A local network for the examples: an ephemeral entry node and `n` nodes on 127.0.0.1.

use hyperdht::HyperDht;

pub async fn local_network(
    n: usize,
) -> Result<(HyperDht, Vec<HyperDht>), Box<dyn std::error::Error>> {
    let entry = HyperDht::builder()
        .rpc(|b| b.ephemeral(true))
        .bind("127.0.0.1:0")
        .await?;
    let bootstrap = entry.local_addr().to_string();
    let mut nodes = Vec::new();
    for _ in 0..n {
        nodes.push(
            HyperDht::builder()
                .bootstrap([bootstrap.clone()])
                .bind("127.0.0.1:0")
                .await?,
        );
    }
    for node in &nodes {
        node.ready().await;
    }
    Ok((entry, nodes))
}
