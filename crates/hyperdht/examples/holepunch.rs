//! `holepunch`: open a UDP path to a peer found by a lookup, through the node that returned it.
//!
//! `cargo run -p hyperdht --example holepunch`

mod common;

use hyperdht::{AnnounceOptions, Key};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (_entry, nodes) = common::local_network(10).await?;
    let key = Key::from_bytes([4; 32]);
    nodes[0]
        .announce(key, AnnounceOptions::default())
        .replies()
        .await?;
    let replies = nodes[7]
        .lookup(key, AnnounceOptions::default())
        .replies()
        .await?;
    let reply = replies
        .iter()
        .find(|r| !r.peers.is_empty())
        .ok_or("nobody announced")?;
    // Pass the peer and the node that returned it.
    let punch = nodes[7].holepunch(reply.peers[0], reply.node.addr).await?;
    println!(
        "{:?} path to {} opened in {:?}",
        punch.path, punch.addr, punch.elapsed
    );
    Ok(())
}
