//! Real sockets on 127.0.0.1: 30 driver nodes and an ephemeral entry node.

use std::collections::BTreeMap;
use std::net::SocketAddrV4;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use dht_rpc::{Answer, Event, Node, NodeId};
use futures::StreamExt;

#[path = "support/walks.rs"]
mod walks;
use walks::{silent_walk_fails, walk_closest};

async fn network(n: usize) -> (Node, Vec<Node>) {
    let entry = Node::builder()
        .ephemeral(true)
        .bind("127.0.0.1:0")
        .await
        .expect("bind entry");
    let addr = entry.local_addr().to_string();
    let mut nodes = Vec::new();
    for _ in 0..n {
        let node = Node::builder()
            .bootstrap([addr.clone()])
            .bind("127.0.0.1:0")
            .await
            .expect("bind node");
        nodes.push(node);
    }
    for node in &nodes {
        node.ready().await;
    }
    // A second round, as long-lived nodes re-bootstrap: everyone learns of the late joiners.
    for node in &nodes {
        node.bootstrap().await.expect("bootstrap");
    }
    (entry, nodes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_nodes_find_the_exact_closest_twenty() {
    let (_entry, nodes) = network(30).await;
    let ids: Vec<NodeId> = nodes.iter().map(Node::id).collect();
    let mut exact = 0;
    let queries = 30;
    for i in 0..queries {
        let mut t = [0u8; 32];
        for (j, b) in t.iter_mut().enumerate() {
            *b = (i as u8)
                .wrapping_mul(37)
                .wrapping_add((j as u8).wrapping_mul(101));
        }
        let target = NodeId::from_bytes(t);
        let (got, want) = walk_closest(&nodes[i % nodes.len()], &ids, target).await;
        if got == want {
            exact += 1;
        }
    }
    eprintln!("exact closest-20 in {exact} of {queries} queries on 30 loopback nodes");
    assert!(exact * 100 >= queries * 99, "only {exact} of {queries}");
}

#[tokio::test]
async fn custom_commands_reach_handlers_as_queries_and_updates() {
    let (_entry, nodes) = network(8).await;
    // A tiny key-value store on every node: updates store, queries read.
    let stored: Arc<Mutex<BTreeMap<SocketAddrV4, Vec<u8>>>> = Arc::default();
    for node in &nodes {
        let me = node.local_addr();
        let kv: Arc<Mutex<Option<Bytes>>> = Arc::default();
        let stored = stored.clone();
        node.on_command("kv", move |req| {
            let mut kv = kv.lock().unwrap();
            if req.update {
                *kv = req.value.map(bytes::Bytes::copy_from_slice);
                stored
                    .lock()
                    .unwrap()
                    .insert(me, req.value.map(|v| v.to_vec()).unwrap_or_default());
                Answer::Value(None)
            } else {
                Answer::Value(kv.clone())
            }
        });
    }
    let key = NodeId::from_bytes([42; 32]);
    let (commits, outcome) = nodes[0]
        .update("kv", key, Some(Bytes::from_static(b"hello")))
        .collect_all()
        .await
        .expect("update");
    assert!(
        commits.iter().all(|r| r.commit),
        "only commit replies are reported"
    );
    assert_eq!(outcome.commits, commits.len());
    assert_eq!(
        stored.lock().unwrap().len(),
        7,
        "every other node stored it"
    );
    let mut found = nodes[5].query("kv", key, None);
    let mut values = 0;
    while let Some(reply) = found.next().await {
        if reply.value.as_deref() == Some(b"hello".as_slice()) {
            values += 1;
        }
    }
    assert!(found.outcome().expect("ended").is_ok());
    assert!(values >= 6, "read back from {values} nodes");
}

#[tokio::test]
async fn ping_reports_our_address_and_the_peer_id() {
    let a = Node::builder().bind("127.0.0.1:0").await.expect("a");
    let b = Node::builder().bind("127.0.0.1:0").await.expect("b");
    // The first node of a network (nothing to bootstrap from) is ready at once.
    tokio::time::timeout(std::time::Duration::from_secs(5), a.ready())
        .await
        .expect("ready without bootstrap nodes");
    let pong = a.ping(b.local_addr()).await.expect("pong");
    assert_eq!(pong.observed, Some(a.local_addr()));
    assert_eq!(pong.id, Some(b.id()));
    assert_eq!(pong.from, b.local_addr());
}

#[tokio::test]
async fn holepunch_through_a_referrer_gets_the_pong_from_the_peer() {
    let referrer = Node::builder().bind("127.0.0.1:0").await.expect("r");
    let mut relayed = referrer.events();
    let peer = Node::builder().bind("127.0.0.1:0").await.expect("p");
    let me = Node::builder().bind("127.0.0.1:0").await.expect("me");
    let pong = me
        .holepunch(peer.local_addr(), referrer.local_addr())
        .await
        .expect("pong");
    assert_eq!(pong.from, peer.local_addr());
    assert_eq!(pong.id, Some(peer.id()));
    assert_eq!(
        pong.observed,
        Some(me.local_addr()),
        "the relay's view of us"
    );
    // The relayed ping carries our id but arrives from the relay: the peer must not map our
    // id to the relay's address (the reference does, and then loses track of us).
    let mapped = peer.read_core(|c| c.table().get(&me.id()).map(|c| c.addr));
    assert_ne!(
        mapped,
        Some(referrer.local_addr()),
        "our id mapped to the relay"
    );
    loop {
        match relayed.recv().await.expect("event") {
            Event::HolepunchForwarded { from, to } => {
                assert_eq!((from, to), (me.local_addr(), peer.local_addr()));
                break;
            }
            _ => continue,
        }
    }
}

#[tokio::test]
async fn a_silent_peer_times_out_and_a_query_with_no_nodes_fails() {
    // A bound socket that never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("silent");
    let std::net::SocketAddr::V4(silent_addr) = silent.local_addr().expect("addr") else {
        panic!("v4")
    };
    let a = Node::builder()
        .bootstrap([silent_addr.to_string()])
        .request_timeout(std::time::Duration::from_millis(200))
        .bind("127.0.0.1:0")
        .await
        .expect("a");
    silent_walk_fails(&a, silent_addr).await;
}

#[tokio::test]
async fn garbage_is_counted_and_dropped_and_the_node_still_answers() {
    let a = Node::builder().bind("127.0.0.1:0").await.expect("a");
    let b = Node::builder().bind("127.0.0.1:0").await.expect("b");
    let mut warnings = a.events();
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("sock");
    let garbage: [&[u8]; 5] = [
        b"",
        b"\x80",
        b"\x80\x00\xff\xff\xff",
        b"\x00\x01\x0a\x03abc",
        b"\x00\x07",
    ];
    for g in garbage {
        sock.send_to(g, a.local_addr()).await.expect("send");
    }
    // A forward of something other than _ping, and a forwardResponse that is not 6 bytes.
    let bad_forward = dht_wire::Datagram::request(
        dht_wire::Tid::new(1).unwrap(),
        dht_wire::Request {
            forward_request: Some(dht_wire::Checked::Valid(b.local_addr())),
            target: Some(dht_wire::Checked::Valid(NodeId::from_bytes([1; 32]))),
            ..dht_wire::Request::new("_find_node")
        },
    );
    sock.send_to(&bad_forward.encode(), a.local_addr())
        .await
        .expect("send");
    let bad_response_to = dht_wire::Datagram::request(
        dht_wire::Tid::new(2).unwrap(),
        dht_wire::Request {
            forward_response: Some(dht_wire::Checked::Invalid(Bytes::from_static(b"\x01\x02"))),
            ..dht_wire::Request::new("_ping")
        },
    );
    sock.send_to(&bad_response_to.encode(), a.local_addr())
        .await
        .expect("send");
    assert!(b.ping(a.local_addr()).await.is_ok(), "still answers");
    let stats = a.stats();
    assert_eq!(stats.malformed, 3, "{stats:?}");
    assert_eq!(stats.unknown_responses, 2, "{stats:?}");
    assert_eq!(stats.requests_dropped, 2, "{stats:?}");
    assert_eq!(stats.forwards, 0);
    let mut reasons = Vec::new();
    while let Ok(e) = warnings.try_recv() {
        if let Event::Warning { reason, .. } = e {
            reasons.push(reason);
        }
    }
    assert_eq!(
        reasons
            .iter()
            .filter(|r| **r == "malformed datagram")
            .count(),
        3,
        "{reasons:?}"
    );
    assert_eq!(reasons.len(), 5, "{reasons:?}");
}

#[tokio::test]
async fn dropping_a_query_stream_cancels_the_query() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("silent");
    let std::net::SocketAddr::V4(silent_addr) = silent.local_addr().expect("addr") else {
        panic!("v4")
    };
    let a = Node::builder()
        .bootstrap([silent_addr.to_string()])
        .no_bootstrap_on_start()
        .bind("127.0.0.1:0")
        .await
        .expect("a");
    let stream = a.query("_find_node", NodeId::from_bytes([1; 32]), None);
    assert_eq!(a.read_core(|c| c.active_queries()), 1);
    drop(stream);
    assert_eq!(a.read_core(|c| c.active_queries()), 0, "cancelled on drop");
}

#[tokio::test]
async fn a_library_node_re_bootstraps_by_itself() {
    use dht_rpc::Maintenance;
    use std::time::Duration;
    let (entry, first) = network(10).await;
    let addr = entry.local_addr().to_string();
    let kept = Node::builder()
        .bootstrap([addr.clone()])
        .maintenance(Some(Maintenance::every(
            Duration::from_millis(100),
            Duration::from_millis(200),
        )))
        .bind("127.0.0.1:0")
        .await
        .expect("bind");
    let bare = Node::builder()
        .bootstrap([addr.clone()])
        .maintenance(None)
        .bind("127.0.0.1:0")
        .await
        .expect("bind");
    kept.ready().await;
    bare.ready().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (k, b) = (kept.stats(), bare.stats());
    assert!(
        k.rebootstraps >= 4,
        "every 100-200 ms for 1.5 s: {}",
        k.rebootstraps
    );
    assert_eq!(b.rebootstraps, 0, "turned off");
    assert!(
        kept.read_core(|c| c.table().len()) >= 8,
        "it knows the network"
    );
    assert_eq!(
        first[0].read_core(|c| c.config().maintenance),
        Some(Maintenance::default()),
        "a builder's node maintains itself unless told not to"
    );
}

/// A bootstrap name that does not resolve is left out and the others are used; a node whose
/// every bootstrap name fails does not start.
#[tokio::test]
async fn a_bootstrap_name_that_fails_does_not_stop_the_node() {
    let entry = Node::builder().bind("127.0.0.1:0").await.expect("entry");
    // Not a plausible host name: refused without asking a resolver (no DNS in tests).
    let bad = "no_such_host:10000".to_string();
    let node = Node::builder()
        .bootstrap([bad.clone(), entry.local_addr().to_string()])
        .bind("127.0.0.1:0")
        .await
        .expect("starts with one good bootstrap");
    node.ready().await;
    let known = node.read_core(|c| c.table().len());
    assert_eq!(known, 1, "bootstrapped from the entry node");
    let alone = Node::builder().bootstrap([bad]).bind("127.0.0.1:0").await;
    assert!(
        matches!(alone, Err(dht_rpc::BindError::Resolve { .. })),
        "no bootstrap resolves: {:?}",
        alone.err()
    );
}

/// A port in use: the error's message says why (the OS's reason), not only that it failed.
#[tokio::test]
async fn a_bind_error_says_why() {
    let first = Node::builder().bind("127.0.0.1:0").await.expect("first");
    let taken = first.local_addr().to_string();
    let err = Node::builder()
        .bind(&taken)
        .await
        .err()
        .expect("the port is taken");
    let text = err.to_string();
    assert!(text.contains(&taken) && text.contains("in use"), "{text}");
}
