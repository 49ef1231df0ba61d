//! `unannounce`: remove ourselves from a key.
//!
//! `cargo run -p hyperdht --example unannounce`

mod common;

use hyperdht::{AnnounceOptions, Key};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (_entry, nodes) = common::local_network(10).await?;
    let key = Key::from_bytes([3; 32]);
    let opts = AnnounceOptions::new(Some(7000), None);
    nodes[0].announce(key, opts).replies().await?;
    let count = |r: Vec<hyperdht::PeersReply>| r.iter().filter(|r| !r.peers.is_empty()).count();
    println!(
        "before: {} nodes list us",
        count(
            nodes[4]
                .lookup(key, AnnounceOptions::default())
                .replies()
                .await?
        )
    );
    // Pass the options used to announce.
    nodes[0].unannounce(key, opts).await?;
    println!(
        "after:  {} nodes list us",
        count(
            nodes[4]
                .lookup(key, AnnounceOptions::default())
                .replies()
                .await?
        )
    );
    Ok(())
}
