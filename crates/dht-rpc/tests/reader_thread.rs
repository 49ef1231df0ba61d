//! Nodes whose main socket is read by a thread of their own ([`DatagramIo::Single`]), on
//! real sockets on 127.0.0.1: walks, timers set by the thread and by the handle, hole punches,
//! and a shutdown that frees the port.

use std::net::SocketAddrV4;
use std::time::Duration;

use dht_rpc::{DatagramIo, Node, NodeId};

#[path = "support/walks.rs"]
mod walks;
use walks::{silent_walk_fails, walk_closest};

async fn threaded(bootstrap: Option<SocketAddrV4>, timeout: Option<Duration>) -> Node {
    let mut b = Node::builder().datagram_io(DatagramIo::Single);
    if let Some(addr) = bootstrap {
        b = b.bootstrap([addr.to_string()]);
    }
    if let Some(t) = timeout {
        b = b.request_timeout(t);
    }
    b.bind("127.0.0.1:0").await.expect("bind")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_threaded_network_finds_the_exact_closest() {
    let entry = threaded(None, None).await;
    let mut nodes = Vec::new();
    for _ in 0..12 {
        nodes.push(threaded(Some(entry.local_addr()), None).await);
    }
    for n in &nodes {
        tokio::time::timeout(Duration::from_secs(10), n.ready())
            .await
            .expect("ready");
    }
    for n in &nodes {
        n.bootstrap().await.expect("bootstrap");
    }
    let mut ids: Vec<NodeId> = nodes.iter().map(Node::id).collect();
    ids.push(entry.id());
    let target = NodeId::from_bytes([0x3c; 32]);
    let (got, want) = walk_closest(&nodes[0], &ids, target).await;
    assert_eq!(got, want, "closest nodes of a walk between threaded nodes");

    // A hole punch through a threaded referrer to a threaded peer.
    let pong = nodes[1]
        .holepunch(nodes[2].local_addr(), nodes[3].local_addr())
        .await
        .expect("pong");
    assert_eq!(pong.from, nodes[2].local_addr());
    assert_eq!(pong.observed, Some(nodes[1].local_addr()));
}

#[tokio::test]
async fn timers_fire_while_the_thread_blocks() {
    // A bound socket that never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("silent");
    let std::net::SocketAddr::V4(silent_addr) = silent.local_addr().expect("addr") else {
        panic!("v4")
    };
    let a = threaded(Some(silent_addr), Some(Duration::from_millis(200))).await;
    let started = std::time::Instant::now();
    silent_walk_fails(&a, silent_addr).await;
    // Generous: the point is that the timers fired at all (a task asleep forever would hang).
    assert!(started.elapsed() < Duration::from_secs(20));

    // A request the thread starts (a ping that verifies a requester we do not know) times
    // out by the task's timer: the thread woke it for the new deadline.
    let b = threaded(None, Some(Duration::from_millis(200))).await;
    // A _find_node from a client that claims an id (so b pings it back) and never answers;
    // on a blocking thread, so that the runtime (one thread in this test) runs b's task.
    let to = b.local_addr();
    let answer = tokio::task::spawn_blocking(move || {
        let asker = std::net::UdpSocket::bind("127.0.0.1:0").expect("asker");
        asker
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let req = dht_rpc::wire::Datagram::request(
            dht_rpc::wire::Tid::from_masked(7),
            dht_rpc::wire::Request {
                id: Some(dht_rpc::wire::Checked::Valid(NodeId::from_bytes([9; 32]))),
                command: dht_rpc::wire::FIND_NODE.into(),
                target: Some(dht_rpc::wire::Checked::Valid(NodeId::from_bytes([2; 32]))),
                ..Default::default()
            },
        );
        asker.send_to(&req.encode(), to).expect("send");
        let mut buf = [0u8; 2048];
        let n = asker.recv_from(&mut buf).map(|(n, _)| n);
        (n, asker)
    })
    .await
    .expect("asker");
    assert!(answer.0.expect("the answer") > 0);
    let before = b.stats().timeouts;
    let sent = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(10), async {
        while b.stats().timeouts == before {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the verifying ping the thread sent timed out by the task's timer");
    // Its timeout is at most the 1.25 s ceiling; without the thread's wake-up the task would
    // only have looked at its next tick, 5 s after the start.
    let took = sent.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "the timeout fired after {took:?}: the thread did not wake the task for it"
    );
}

#[tokio::test]
async fn shutdown_frees_the_port() {
    let a = threaded(None, None).await;
    let addr = a.local_addr();
    let b = threaded(None, None).await;
    b.ping(addr).await.expect("pong");
    a.shutdown().await;
    drop(a);
    let rebound = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match std::net::UdpSocket::bind(addr) {
                Ok(s) => return s,
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    })
    .await
    .expect("the reader thread let go of the port");
    drop(rebound);
}
