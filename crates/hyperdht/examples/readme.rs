//! The original README's example, in Rust: `b` announces on a 32-byte key, `a` looks it up.
//!
//! `cargo run -p hyperdht --example readme`
//! (it starts its own bootstrap node; with `BOOTSTRAP=host:port` it uses yours instead)

use futures::StreamExt;
use hyperdht::{AnnounceOptions, HyperDht, Key};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // First run a bootstrap node (here, in-process on a random port).
    let own = HyperDht::builder()
        .rpc(|b| b.ephemeral(true))
        .bind("127.0.0.1:0")
        .await?;
    let bootstrap = std::env::var("BOOTSTRAP").unwrap_or_else(|_| own.local_addr().to_string());

    let a = HyperDht::builder()
        .bootstrap([bootstrap.clone()])
        .bind("0.0.0.0:0")
        .await?;
    let b = HyperDht::builder()
        .bootstrap([bootstrap])
        .bind("0.0.0.0:0")
        .await?;

    a.ready().await;
    // announce on a 32 byte key
    let key = Key::from_bytes(*b"01234567012345670123456701234567");
    let (_, outcome) = b
        .announce(key, AnnounceOptions::new(Some(10000), None))
        .collect_all()
        .await?;
    println!("announced on {} nodes", outcome.commits);

    let mut stream = a.lookup(key, AnnounceOptions::default());
    while let Some(data) = stream.next().await {
        println!(
            "found peers: {:?} (from node {})",
            data.peers, data.node.addr
        );
    }
    Ok(())
}
