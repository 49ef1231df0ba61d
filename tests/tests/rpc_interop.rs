//! Interop with the JavaScript `dht-rpc@2.3.0`, both directions, on 127.0.0.1.

use std::collections::BTreeSet;
use std::net::SocketAddrV4;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use dht_rpc::{Answer, Node, NodeId};
use hyperdht_tests::js::JsGroup;
use serde_json::json;

/// A Rust node serving "kv" as the JavaScript script does, recording updates it stores.
async fn rust_node(bootstrap: SocketAddrV4, log: Arc<Mutex<Vec<(SocketAddrV4, String)>>>) -> Node {
    let node = Node::builder()
        .bootstrap([bootstrap.to_string()])
        .bind("127.0.0.1:0")
        .await
        .expect("bind");
    let me = node.local_addr();
    let store: Arc<Mutex<std::collections::HashMap<NodeId, Bytes>>> = Arc::default();
    node.on_command("kv", move |req| {
        let mut store = store.lock().expect("lock");
        if req.update {
            if let Some(v) = req.value {
                store.insert(req.target, Bytes::copy_from_slice(v));
                log.lock().expect("lock").push((me, hex::encode(v)));
            }
            Answer::Value(None)
        } else {
            Answer::Value(store.get(&req.target).cloned())
        }
    });
    node
}

async fn rust_nodes_join_a_javascript_network_and_the_reverse() {
    let reference = hyperdht_tests::reference();

    // Rust nodes bootstrap from a JavaScript entry node.
    let js_entry = JsGroup::spawn(&reference, "rpc-nodes.js", 1, &[], true).await;
    let entry = js_entry.nodes[0].addr;
    let log = Arc::default();
    let a = rust_node(entry, Arc::clone(&log)).await;
    let b = rust_node(entry, Arc::clone(&log)).await;
    a.ready().await;
    b.ready().await;
    b.bootstrap()
        .await
        .expect("bootstrap through the JavaScript entry");
    let closest = a.bootstrap().await.expect("bootstrap").closest;
    assert!(
        closest.iter().any(|n| n.id == b.id()),
        "a found b through the JavaScript entry"
    );

    // JavaScript nodes bootstrap from a Rust entry node.
    let rust_entry = Node::builder()
        .ephemeral(true)
        .bind("127.0.0.1:0")
        .await
        .expect("entry");
    let mut js = JsGroup::spawn(
        &reference,
        "rpc-nodes.js",
        3,
        &[rust_entry.local_addr()],
        false,
    )
    .await;
    let r = js.call(json!({"op": "bootstrap", "node": 0})).await;
    assert_eq!(r["ok"], true, "{r}");
    let table = js.call(json!({"op": "table", "node": 0})).await;
    let known: BTreeSet<String> = table["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["id"].as_str().expect("id").to_owned())
        .collect();
    for other in &js.nodes[1..] {
        assert!(
            known.contains(&other.id.to_string()),
            "JavaScript node 0 knows its peers through the Rust entry: {table}"
        );
    }
}

async fn mixed_network_queries_updates_ping_and_holepunch() {
    let reference = hyperdht_tests::reference();
    let entry = Node::builder()
        .ephemeral(true)
        .bind("127.0.0.1:0")
        .await
        .expect("entry");
    let log: Arc<Mutex<Vec<(SocketAddrV4, String)>>> = Arc::default();
    let mut rust = Vec::new();
    for _ in 0..10 {
        rust.push(rust_node(entry.local_addr(), Arc::clone(&log)).await);
    }
    let mut js = JsGroup::spawn(&reference, "rpc-nodes.js", 10, &[entry.local_addr()], false).await;
    for n in &rust {
        n.ready().await;
    }
    // A second round so that everyone knows the late joiners.
    for n in &rust {
        n.bootstrap().await.expect("bootstrap");
    }
    js.bootstrap_all().await;

    // Routing across the two: a Rust _find_node finds the exact 20 closest of 19 others.
    let mut all: Vec<NodeId> = rust
        .iter()
        .map(Node::id)
        .chain(js.nodes.iter().map(|n| n.id))
        .collect();
    let target = NodeId::from_bytes([0x5a; 32]);
    let (_, outcome) = rust[0]
        .query("_find_node", target, None)
        .collect_all()
        .await
        .expect("find_node");
    all.retain(|id| *id != rust[0].id());
    all.sort_by_key(|id| id.distance(&target));
    let got: Vec<NodeId> = outcome.closest.iter().map(|n| n.id).collect();
    assert_eq!(got, all, "exact closest across Rust and JavaScript nodes");

    // A Rust update reaches the JavaScript handlers, and a JavaScript query reads it back.
    let key1 = NodeId::from_bytes([1; 32]);
    let (commits, _) = rust[3]
        .update("kv", key1, Some(Bytes::from_static(b"from-rust")))
        .collect_all()
        .await
        .expect("update");
    // Committed to the closest 20 of 19 others: every node but the ephemeral entry.
    assert_eq!(commits.len(), 19, "{commits:?}");
    let handled = js.handled().await;
    let js_updates = handled
        .iter()
        .filter(|h| h["kind"] == "update" && h["value"] == hex::encode("from-rust"))
        .count();
    assert_eq!(
        js_updates, 10,
        "every JavaScript node stored the Rust update ({handled:?})"
    );
    let r = js
        .call(json!({"op": "query", "node": 4, "command": "kv", "target": key1.to_string()}))
        .await;
    let readers: Vec<&serde_json::Value> = r["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter(|x| x["value"] == hex::encode("from-rust"))
        .collect();
    let rust_ports: BTreeSet<u16> = rust.iter().map(|n| n.local_addr().port()).collect();
    assert!(
        readers
            .iter()
            .any(|x| rust_ports.contains(&(x["port"].as_u64().expect("port") as u16))),
        "a Rust node answered the JavaScript query with the value: {r}"
    );
    assert!(readers.len() >= 10, "{r}");

    // A JavaScript update reaches the Rust handlers, and a Rust query reads it back.
    let key2 = NodeId::from_bytes([2; 32]);
    log.lock().expect("lock").clear();
    let r = js.call(json!({"op": "update", "node": 7, "command": "kv", "target": key2.to_string(), "value": hex::encode("from-js")})).await;
    assert!(r.get("error").is_none(), "{r}");
    let stored = log
        .lock()
        .expect("lock")
        .iter()
        .filter(|(_, v)| *v == hex::encode("from-js"))
        .count();
    assert!(
        stored >= 5,
        "Rust nodes stored the JavaScript update: {stored}"
    );
    let (replies, _) = rust[6]
        .query("kv", key2, None)
        .collect_all()
        .await
        .expect("query");
    let js_ports: BTreeSet<u16> = js.nodes.iter().map(|n| n.addr.port()).collect();
    assert!(
        replies
            .iter()
            .any(|r| js_ports.contains(&r.node.addr.port())
                && r.value.as_deref() == Some(b"from-js".as_slice())),
        "a JavaScript node answered the Rust query with the value"
    );

    // Plain queries reach handlers on the other side too.
    js.handled().await;
    rust[0]
        .query(
            "kv",
            NodeId::from_bytes([3; 32]),
            Some(Bytes::from_static(b"q")),
        )
        .collect_all()
        .await
        .expect("query");
    assert!(
        js.handled()
            .await
            .iter()
            .any(|h| h["kind"] == "query" && h["value"] == hex::encode("q"))
    );

    // ping both ways.
    let pong = rust[1]
        .ping(js.nodes[2].addr)
        .await
        .expect("pong from JavaScript");
    assert_eq!(pong.id, Some(js.nodes[2].id));
    assert_eq!(pong.observed, Some(rust[1].local_addr()));
    let r = js.call(json!({"op": "ping", "node": 2, "host": "127.0.0.1", "port": rust[1].local_addr().port()})).await;
    assert_eq!(r["id"], rust[1].id().to_string(), "{r}");
    assert_eq!(r["observed"]["port"], js.nodes[2].addr.port(), "{r}");

    // holepunch: every combination of requester, referrer and peer across the two.
    let pong = rust[2]
        .holepunch(js.nodes[3].addr, js.nodes[4].addr)
        .await
        .expect("Rust -> JS peer via JS referrer");
    assert_eq!(pong.from, js.nodes[3].addr);
    let pong = rust[2]
        .holepunch(js.nodes[3].addr, rust[5].local_addr())
        .await
        .expect("Rust -> JS peer via Rust referrer");
    assert_eq!(pong.id, Some(js.nodes[3].id));
    let pong = rust[2]
        .holepunch(rust[7].local_addr(), js.nodes[4].addr)
        .await
        .expect("Rust -> Rust peer via JS referrer");
    assert_eq!(pong.id, Some(rust[7].id()));
    for (peer, referrer) in [
        (rust[8].local_addr(), rust[9].local_addr()),
        (rust[8].local_addr(), js.nodes[5].addr),
        (js.nodes[6].addr, rust[9].local_addr()),
    ] {
        let r = js.call(json!({"op": "holepunch", "node": 1, "host": "127.0.0.1", "port": peer.port(), "refHost": "127.0.0.1", "refPort": referrer.port()})).await;
        assert_eq!(
            r["ok"], true,
            "JavaScript holepunch to {peer} via {referrer}: {r}"
        );
    }
}

fn main() {
    use hyperdht_tests::{block_on, trial};
    hyperdht_tests::run_trials(vec![
        trial(
            "rust_nodes_join_a_javascript_network_and_the_reverse",
            hyperdht_tests::reference_missing(),
            block_on(rust_nodes_join_a_javascript_network_and_the_reverse),
        ),
        trial(
            "mixed_network_queries_updates_ping_and_holepunch",
            hyperdht_tests::reference_missing(),
            block_on(mixed_network_queries_updates_ping_and_holepunch),
        ),
    ]);
}
