//! `announce`: tell the DHT we listen on a key, once or kept alive.
//!
//! `cargo run -p hyperdht --example announce`

mod common;

use futures::StreamExt;
use hyperdht::{AnnounceOptions, Key};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (_entry, nodes) = common::local_network(10).await?;
    let key = Key::from_bytes([1; 32]);
    let opts = AnnounceOptions::new(Some(8080), Some("192.168.1.20:8080".parse()?));

    // One-shot: the stream carries the peers already announced that we meet on the way
    // (none here: we are the first).
    let mut stream = nodes[0].announce(key, opts);
    while let Some(reply) = stream.next().await {
        println!("node {} knows {:?}", reply.node.addr, reply.peers);
    }
    if let Some(Ok(outcome)) = stream.outcome() {
        println!("announced: stored on the {} closest nodes", outcome.commits);
    }

    // Kept alive: re-announced every 4-5 minutes until stopped (or dropped), then removed.
    let keep = nodes[1].announce_and_keep(key, AnnounceOptions::default());
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let seen = nodes[2]
        .lookup(key, AnnounceOptions::default())
        .replies()
        .await?;
    println!(
        "a lookup now sees {:?}",
        seen.iter()
            .flat_map(|r| r.peers.clone())
            .collect::<std::collections::BTreeSet<_>>()
    );
    keep.stop().await?;
    Ok(())
}
