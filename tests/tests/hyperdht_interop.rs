//! Interop with the JavaScript `hyperdht@1.3.0`, both directions, on 127.0.0.1.

use std::collections::BTreeSet;
use std::net::SocketAddrV4;

use hyperdht::{AnnounceOptions, HyperDht, Key, PeerEvent};
use hyperdht_tests::js::JsGroup;
use serde_json::{Value, json};

fn key(i: u8) -> Key {
    let mut b = [0x42u8; 32];
    b[0] = i;
    Key::from_bytes(b)
}

fn addr(v: &Value) -> SocketAddrV4 {
    format!("{}:{}", v["host"].as_str().expect("host"), v["port"])
        .parse()
        .expect("addr")
}

fn js_peers(r: &Value, field: &str) -> BTreeSet<SocketAddrV4> {
    r["results"]
        .as_array()
        .unwrap_or_else(|| panic!("results: {r}"))
        .iter()
        .flat_map(|x| x[field].as_array().cloned().unwrap_or_default())
        .map(|p| addr(&p))
        .collect()
}

fn rust_peers(replies: &[hyperdht::PeersReply]) -> BTreeSet<SocketAddrV4> {
    replies
        .iter()
        .flat_map(|r| r.peers.iter().copied())
        .collect()
}

async fn mixed_network_announces_are_found_from_either_side() {
    let reference = hyperdht_tests::reference();
    let entry = HyperDht::builder()
        .rpc(|b| b.ephemeral(true))
        .bind("127.0.0.1:0")
        .await
        .expect("entry");
    let mut rust = Vec::new();
    for _ in 0..10 {
        rust.push(
            HyperDht::builder()
                .bootstrap([entry.local_addr().to_string()])
                .bind("127.0.0.1:0")
                .await
                .expect("node"),
        );
    }
    let mut js = JsGroup::spawn(
        &reference,
        "hyperdht-nodes.js",
        10,
        &[entry.local_addr()],
        false,
    )
    .await;
    for n in &rust {
        n.ready().await;
    }
    for n in &rust {
        n.bootstrap().await.expect("bootstrap");
    }
    js.bootstrap_all().await;
    let mut rust_events: Vec<_> = rust.iter().map(HyperDht::events).collect();

    // Every node announces its own key: Rust nodes on their UDP port, JS nodes on port 20000 + i.
    let mut announcers = Vec::new();
    for (i, n) in rust.iter().enumerate() {
        n.announce(key(i as u8), AnnounceOptions::default())
            .replies()
            .await
            .expect("announce");
        announcers.push((key(i as u8), n.local_addr()));
    }
    for i in 0..10u8 {
        let port = 20000 + u16::from(i);
        let r = js
            .call(
                json!({"op": "announce", "node": i, "key": key(10 + i).to_string(), "port": port}),
            )
            .await;
        assert!(r.get("error").is_none(), "{r}");
        announcers.push((
            key(10 + i),
            format!("127.0.0.1:{port}").parse().expect("addr"),
        ));
    }

    // Every announce is found from a Rust node and from a JavaScript node.
    // (Never from the announcer itself: a requester is not told about itself.)
    for (i, (k, who)) in announcers.iter().enumerate() {
        let other = (i + 5) % 10;
        let found = rust[other]
            .lookup(*k, AnnounceOptions::default())
            .replies()
            .await
            .expect("lookup");
        assert_eq!(
            rust_peers(&found),
            [*who].into(),
            "Rust lookup of {k} from {other}: {found:?}"
        );
        let r = js
            .call(json!({"op": "lookup", "node": other, "key": k.to_string()}))
            .await;
        assert_eq!(
            js_peers(&r, "peers"),
            [*who].into(),
            "JavaScript lookup of {k}: {r}"
        );
    }

    // JavaScript nodes stored Rust announces, and Rust nodes stored JavaScript ones.
    let js_events = js.call(json!({"op": "events"})).await;
    let js_stored: BTreeSet<(String, u64)> = js_events["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["kind"] == "announce")
        .map(|e| {
            (
                e["key"].as_str().expect("key").to_owned(),
                e["port"].as_u64().expect("port"),
            )
        })
        .collect();
    for (i, n) in rust.iter().enumerate() {
        assert!(
            js_stored.contains(&(key(i as u8).to_string(), u64::from(n.local_addr().port()))),
            "a JavaScript node stored Rust announce {i}"
        );
    }
    let mut rust_stored = BTreeSet::new();
    for rx in &mut rust_events {
        while let Ok(e) = rx.try_recv() {
            if let PeerEvent::Announce { key, peer } = e {
                rust_stored.insert((key, peer));
            }
        }
    }
    for (k, who) in &announcers[10..] {
        assert!(
            rust_stored.contains(&(*k, *who)),
            "a Rust node stored JavaScript announce {k}"
        );
    }

    // Unannounce from either side.
    rust[2]
        .unannounce(key(2), AnnounceOptions::default())
        .await
        .expect("unannounce");
    let r = js
        .call(json!({"op": "lookup", "node": 1, "key": key(2).to_string()}))
        .await;
    assert!(js_peers(&r, "peers").is_empty(), "{r}");
    let r = js
        .call(json!({"op": "unannounce", "node": 4, "key": key(14).to_string(), "port": 20004}))
        .await;
    assert_eq!(r["ok"], true, "{r}");
    let found = rust[8]
        .lookup(key(14), AnnounceOptions::default())
        .replies()
        .await
        .expect("lookup");
    assert!(rust_peers(&found).is_empty(), "{found:?}");

    // Local peers across the two.
    let lan: SocketAddrV4 = "192.168.1.2:8888".parse().expect("addr");
    rust[5]
        .announce(key(50), AnnounceOptions::new(Some(7000), Some(lan)))
        .replies()
        .await
        .expect("announce");
    let r = js.call(json!({"op": "lookup", "node": 2, "key": key(50).to_string(), "localAddress": {"host": "192.168.77.1", "port": 0}})).await;
    assert_eq!(js_peers(&r, "localPeers"), [lan].into(), "{r}");
    let r = js.call(json!({"op": "announce", "node": 3, "key": key(51).to_string(), "port": 7001, "localAddress": {"host": "10.9.1.1", "port": 7777}})).await;
    assert!(r.get("error").is_none(), "{r}");
    let found = rust[1]
        .lookup(
            key(51),
            AnnounceOptions::new(None, Some("10.9.200.200:0".parse().expect("addr"))),
        )
        .replies()
        .await
        .expect("lookup");
    let locals: BTreeSet<SocketAddrV4> = found
        .iter()
        .flat_map(|r| r.local_peers.iter().copied())
        .collect();
    assert_eq!(locals, ["10.9.1.1:7777".parse().expect("addr")].into());

    // ping and holepunch across.
    let pong = rust[0]
        .ping(js.nodes[0].addr)
        .await
        .expect("ping JavaScript");
    assert_eq!(pong.id, Some(js.nodes[0].id));
    let r = js.call(json!({"op": "ping", "node": 0, "host": "127.0.0.1", "port": rust[0].local_addr().port()})).await;
    assert_eq!(r["id"], rust[0].id().to_string(), "{r}");
    let punch = rust[0]
        .holepunch(js.nodes[1].addr, js.nodes[2].addr)
        .await
        .expect("Rust punches to JavaScript");
    assert_eq!(punch.addr, js.nodes[1].addr);
    let r = js.call(json!({"op": "holepunch", "node": 3, "host": "127.0.0.1", "port": rust[4].local_addr().port(), "refHost": "127.0.0.1", "refPort": rust[6].local_addr().port()})).await;
    assert_eq!(
        r["ok"], true,
        "JavaScript punches to Rust through Rust: {r}"
    );
}

async fn javascript_entry_node_and_the_seed_readme_example() {
    let reference = hyperdht_tests::reference();
    // A JavaScript ephemeral entry; the original README's example with one Rust and one JS side.
    let js_entry = JsGroup::spawn(&reference, "hyperdht-nodes.js", 1, &[], true).await;
    let entry = js_entry.nodes[0].addr;
    let a = HyperDht::builder()
        .bootstrap([entry.to_string()])
        .bind("127.0.0.1:0")
        .await
        .expect("a");
    let mut b = JsGroup::spawn(&reference, "hyperdht-nodes.js", 1, &[entry], false).await;
    a.ready().await;
    let k = Key::from_bytes(*b"01234567012345670123456701234567");
    let r = b
        .call(json!({"op": "announce", "key": k.to_string(), "port": 10000}))
        .await;
    assert!(r.get("error").is_none(), "{r}");
    let found = a
        .lookup(k, AnnounceOptions::default())
        .replies()
        .await
        .expect("lookup");
    assert_eq!(
        rust_peers(&found),
        ["127.0.0.1:10000".parse().expect("addr")].into()
    );
    // And the reverse: Rust announces, JavaScript looks up.
    a.announce(key(99), AnnounceOptions::new(Some(10001), None))
        .replies()
        .await
        .expect("announce");
    let r = b
        .call(json!({"op": "lookup", "key": key(99).to_string()}))
        .await;
    assert_eq!(
        js_peers(&r, "peers"),
        ["127.0.0.1:10001".parse().expect("addr")].into(),
        "{r}"
    );
}

/// The reachability check (`adaptive`) needs nothing new from other nodes: on a network of
/// JavaScript nodes only (their entry node too), the relays that forward its probes are all
/// `hyperdht@1.3.0`, and a Rust node on loopback (reachable) must say so.
async fn the_reachability_check_runs_on_javascript_relays() {
    hyperdht_tests::logs();
    let reference = hyperdht_tests::reference();
    let entry = JsGroup::spawn(&reference, "hyperdht-nodes.js", 1, &[], true).await;
    let entry_addr = entry.nodes[0].addr;
    // 120 nodes: the check probes only nodes we never wrote to, and with 60 the node's own
    // bootstrap and refresh walks sometimes wrote to every one of them (the round then found
    // no target, and no verdict came in 30 s: about 2 runs in 40 under CI's parallel tests).
    let js = JsGroup::spawn(&reference, "hyperdht-nodes.js", 120, &[entry_addr], false).await;
    assert_eq!(js.nodes.len(), 120);
    let node = HyperDht::builder()
        .bootstrap([entry_addr.to_string()])
        .rpc(|b| b.adaptive(true))
        .bind("127.0.0.1:0")
        .await
        .expect("node");
    // Polled rather than awaited as an event: the first verdict may come before anyone
    // subscribes. Without one yet, re-bootstrap now and then, as a long-lived node does (a
    // round follows each of the table's walks).
    let mut verdict = dht_rpc::Reachability::Unknown;
    for second in 1..=30 {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        verdict = node.rpc().read_core(|c| c.reachability());
        if verdict != dht_rpc::Reachability::Unknown {
            break;
        }
        if second % 5 == 0 {
            let _ = node.bootstrap().await;
        }
    }
    assert_eq!(
        verdict,
        dht_rpc::Reachability::Reachable,
        "a loopback node is reachable"
    );
    assert!(
        !node.rpc().read_core(|c| c.is_ephemeral()),
        "and keeps sending its id"
    );
    node.shutdown().await;
}

fn main() {
    use hyperdht_tests::{block_on, trial};
    hyperdht_tests::run_trials(vec![
        trial(
            "mixed_network_announces_are_found_from_either_side",
            hyperdht_tests::reference_missing(),
            block_on(mixed_network_announces_are_found_from_either_side),
        ),
        trial(
            "javascript_entry_node_and_the_seed_readme_example",
            hyperdht_tests::reference_missing(),
            block_on(javascript_entry_node_and_the_seed_readme_example),
        ),
        trial(
            "the_reachability_check_runs_on_javascript_relays",
            hyperdht_tests::reference_missing(),
            block_on(the_reachability_check_runs_on_javascript_relays),
        ),
    ]);
}
