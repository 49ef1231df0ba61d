//! `ping`: is a node reachable without hole punching, and how does it see us?
//!
//! `cargo run -p hyperdht --example ping`

use hyperdht::HyperDht;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = HyperDht::builder().bind("127.0.0.1:0").await?;
    let b = HyperDht::builder().bind("127.0.0.1:0").await?;
    let pong = a.ping(b.local_addr()).await?;
    println!(
        "{} answered in {:?}: its id is {:?}, it sees us as {:?}",
        pong.from, pong.rtt, pong.id, pong.observed
    );
    Ok(())
}
