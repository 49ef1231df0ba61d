//! `lookup`: find the peers announced on a key, and those on our LAN.
//!
//! `cargo run -p hyperdht --example lookup`

mod common;

use hyperdht::{AnnounceOptions, Key};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (_entry, nodes) = common::local_network(10).await?;
    let key = Key::from_bytes([2; 32]);
    nodes[0]
        .announce(
            key,
            AnnounceOptions::new(Some(9000), Some("10.0.0.5:9000".parse()?)),
        )
        .replies()
        .await?;

    // Give our own LAN address (port 0: we only ask) to be told of peers on 10.0.x.x.
    let opts = AnnounceOptions::new(None, Some("10.0.3.3:0".parse()?));
    for reply in nodes[5].lookup(key, opts).replies().await? {
        println!(
            "{} says: peers {:?}, local peers {:?}",
            reply.node.addr, reply.peers, reply.local_peers
        );
    }
    Ok(())
}
