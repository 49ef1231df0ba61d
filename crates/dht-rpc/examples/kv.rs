//! A tiny key-value store over the DHT, as the reference's README shows for dht-rpc: values
//! are stored under `sha256(value)` on the nodes closest to it, with an update (which needs
//! a roundtrip token, so nobody can store in someone else's name), and read back with a
//! query.
//!
//! `cargo run -p dht-rpc --example kv` starts an entry node and 20 nodes on 127.0.0.1, puts
//! a value from one node and gets it from another.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use dht_rpc::{Answer, Node, NodeId};
use futures::StreamExt;
use sha2::{Digest, Sha256};

fn key_of(value: &[u8]) -> NodeId {
    NodeId::from_bytes(Sha256::digest(value).into())
}

/// Serves the `values` command: updates store a value under its hash, queries read it.
fn serve_values(node: &Node) {
    let store: Arc<Mutex<HashMap<NodeId, Bytes>>> = Arc::default();
    node.on_command("values", move |req| {
        let mut store = store.lock().unwrap_or_else(|e| e.into_inner());
        if req.update {
            match req.value {
                // Only store values under their own hash.
                Some(v) if key_of(v) == req.target => {
                    store.insert(req.target, Bytes::copy_from_slice(v));
                    Answer::Value(None)
                }
                _ => Answer::Drop,
            }
        } else {
            Answer::Value(store.get(&req.target).cloned())
        }
    });
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let entry = Node::builder().ephemeral(true).bind("127.0.0.1:0").await?;
    let bootstrap = entry.local_addr().to_string();
    let mut nodes = Vec::new();
    for _ in 0..20 {
        let node = Node::builder()
            .bootstrap([bootstrap.clone()])
            .bind("127.0.0.1:0")
            .await?;
        serve_values(&node);
        nodes.push(node);
    }
    for node in &nodes {
        node.ready().await;
    }

    let value = Bytes::from_static(b"hello, distributed world");
    let key = key_of(&value);
    let (stored, _) = nodes[0]
        .update("values", key, Some(value.clone()))
        .collect_all()
        .await?;
    println!("put {key}: stored on {} nodes", stored.len());

    let mut replies = nodes[13].query("values", key, None);
    while let Some(reply) = replies.next().await {
        if let Some(v) = reply.value {
            println!(
                "get {key}: {:?} from {}",
                String::from_utf8_lossy(&v),
                reply.node.addr
            );
            return Ok(());
        }
    }
    Err("value not found".into())
}
