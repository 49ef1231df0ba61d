//! hyperdht on real sockets on 127.0.0.1.

use std::collections::BTreeSet;
use std::net::SocketAddrV4;
use std::time::Duration;

use bytes::Bytes;
use dht_wire::{Checked, Datagram, PeersRequest, PeersRequestType, Request, Tid};
use hyperdht::{AnnounceOptions, HolepunchPath, HyperDht, Key, PeerEvent};

async fn network(n: usize) -> (HyperDht, Vec<HyperDht>) {
    let net = hyperdht::Testnet::start(n).await.expect("testnet");
    (net.entry, net.nodes)
}

/// All the replies of a lookup of `key` from `node`, telling LAN address `lan`.
async fn lookup_from_lan(node: &HyperDht, key: Key, lan: &str) -> Vec<hyperdht::PeersReply> {
    let opts = AnnounceOptions::new(None, Some(lan.parse().expect("addr")));
    node.lookup(key, opts).replies().await.expect("lookup")
}

/// The peers a lookup of `key` from `node` finds.
async fn peers_found(node: &HyperDht, key: Key) -> BTreeSet<SocketAddrV4> {
    let replies = node
        .lookup(key, AnnounceOptions::default())
        .replies()
        .await
        .expect("lookup");
    peers_of(&replies)
}

/// The key and outcome of the next announce the core reports on `events`.
async fn next_announced(
    events: &mut tokio::sync::broadcast::Receiver<hyperdht::CoreEvent>,
) -> (Key, Result<usize, dht_rpc::QueryError>) {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let hyperdht::CoreEvent::Announced { key, result, .. } =
                events.recv().await.expect("core event")
            {
                return (key, result);
            }
        }
    })
    .await
    .expect("the core reports the announce")
}

fn peers_of(replies: &[hyperdht::PeersReply]) -> BTreeSet<SocketAddrV4> {
    replies
        .iter()
        .flat_map(|r| r.peers.iter().copied())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announce_lookup_unannounce() {
    let (_entry, nodes) = network(12).await;
    let key = Key::from_bytes(*b"01234567012345670123456701234567");
    let announced = nodes[0]
        .announce(key, AnnounceOptions::new(Some(10000), None))
        .replies()
        .await
        .expect("announce");
    assert!(
        announced.iter().all(|r| r.peers.is_empty()),
        "nobody else announced yet"
    );

    let found = nodes[5]
        .lookup(key, AnnounceOptions::default())
        .replies()
        .await
        .expect("lookup");
    let want: BTreeSet<SocketAddrV4> = ["127.0.0.1:10000".parse().expect("addr")].into();
    assert_eq!(
        peers_of(&found),
        want,
        "exactly the announcer, with its announced port"
    );
    assert!(found.len() >= 5, "several nodes hold it: {}", found.len());

    // The announcer never sees itself; a second announcer sees the first.
    let own = nodes[0]
        .lookup(key, AnnounceOptions::new(Some(10000), None))
        .replies()
        .await
        .expect("lookup");
    assert!(peers_of(&own).is_empty(), "{own:?}");
    let second = nodes[7]
        .announce(key, AnnounceOptions::default())
        .replies()
        .await
        .expect("announce");
    assert_eq!(
        peers_of(&second),
        want,
        "the query round's replies are reported"
    );

    nodes[0]
        .unannounce(key, AnnounceOptions::new(Some(10000), None))
        .await
        .expect("unannounce");
    let after = nodes[5]
        .lookup(key, AnnounceOptions::default())
        .replies()
        .await
        .expect("lookup");
    assert_eq!(
        peers_of(&after),
        [nodes[7].local_addr()].into(),
        "only the second announcer is left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_peers_only_for_matching_prefixes() {
    let (_entry, nodes) = network(8).await;
    let key = Key::from_bytes([9; 32]);
    let lan: SocketAddrV4 = "192.168.1.2:8888".parse().expect("addr");
    nodes[1]
        .announce(key, AnnounceOptions::new(None, Some(lan)))
        .replies()
        .await
        .expect("announce");
    let same = lookup_from_lan(&nodes[2], key, "192.168.4.4:0").await;
    let locals: BTreeSet<SocketAddrV4> = same
        .iter()
        .flat_map(|r| r.local_peers.iter().copied())
        .collect();
    assert_eq!(locals, [lan].into());
    let other = lookup_from_lan(&nodes[2], key, "10.1.4.4:0").await;
    assert!(other.iter().all(|r| r.local_peers.is_empty()));
    assert_eq!(peers_of(&other), [nodes[1].local_addr()].into());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_and_the_keepalive_handle() {
    let (_entry, nodes) = network(6).await;
    let key = Key::from_bytes([5; 32]);
    let mut events = nodes[3].events();
    let mut kept = nodes[0].core_events();
    let keep = nodes[0].announce_and_keep(key, AnnounceOptions::default());
    let me = nodes[0].local_addr();
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let e = events.recv().await.expect("event");
            if e == (PeerEvent::Announce { key, peer: me }) {
                return;
            }
        }
    })
    .await;
    assert!(found.is_ok(), "node 3 stored the announce");
    let (k, outcome) = next_announced(&mut kept).await;
    assert_eq!(k, key);
    assert!(
        outcome.as_ref().is_ok_and(|n| *n >= 3),
        "stored on the closest: {outcome:?}"
    );
    // The handle says how the last announce went, without the event stream.
    assert_eq!(keep.last_result(), Some(outcome.clone()));
    keep.stop().await.expect("unannounced");
    let after = peers_found(&nodes[4], key).await;
    assert!(after.is_empty(), "stopping unannounces: {after:?}");
}

#[tokio::test]
async fn an_update_without_a_valid_token_stores_nothing() {
    let node = HyperDht::builder().bind("127.0.0.1:0").await.expect("node");
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("sock");
    let key = Key::from_bytes([1; 32]);
    let forged = Datagram::request(
        Tid::new(1).expect("tid"),
        Request {
            target: Some(Checked::Valid(key)),
            roundtrip_token: Some(Bytes::from(vec![0u8; 32])),
            value: Some(PeersRequest::new(PeersRequestType::Announce, Some(4000), None).encode()),
            ..Request::new("peers")
        },
    );
    sock.send_to(&forged.encode(), node.local_addr())
        .await
        .expect("send");
    let mut buf = [0u8; 2048];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .expect("answered")
        .expect("recv");
    assert!(Datagram::decode(&buf[..n]).is_ok(), "answered as a query");
    let stored = node.rpc().read_core(|c| c.handler().store().len());
    assert_eq!(stored, 0, "a forged token stores nothing");
}

#[tokio::test]
async fn holepunch_reports_the_path() {
    let referrer = HyperDht::builder().bind("127.0.0.1:0").await.expect("r");
    let peer = HyperDht::builder().bind("127.0.0.1:0").await.expect("p");
    let me = HyperDht::builder().bind("127.0.0.1:0").await.expect("me");
    let punch = me
        .holepunch(peer.local_addr(), referrer.local_addr())
        .await
        .expect("punch");
    assert!(matches!(
        punch.path,
        HolepunchPath::Direct | HolepunchPath::Relayed
    ));
    assert_eq!(punch.addr, peer.local_addr());
    let pong = me.ping(peer.local_addr()).await.expect("ping");
    assert_eq!(pong.id, Some(peer.id()));

    // Application datagrams on the DHT sockets, both ways, beside the protocol.
    let mut peer_in = peer.datagrams();
    let mut me_in = me.datagrams();
    me.send_datagram(punch.addr, Bytes::from_static(b"\0\0\x07hello"));
    let (from, data) = tokio::time::timeout(Duration::from_secs(5), peer_in.recv())
        .await
        .expect("in time")
        .expect("datagram");
    assert_eq!((from, &data[..]), (me.local_addr(), &b"\0\0\x07hello"[..]));
    peer.send_datagram(from, Bytes::from_static(b"\0\0\x07back"));
    let (_, data) = tokio::time::timeout(Duration::from_secs(5), me_in.recv())
        .await
        .expect("in time")
        .expect("datagram");
    assert_eq!(&data[..], b"\0\0\x07back");
    // The protocol still works on the same sockets.
    assert!(me.ping(peer.local_addr()).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_holepunch_says_what_was_tried() {
    let (_entry, nodes) = network(4).await;
    // A bound socket that never answers: no DHT node behind it.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let silent = match silent.local_addr().expect("addr") {
        std::net::SocketAddr::V4(a) => a,
        std::net::SocketAddr::V6(_) => unreachable!("bound on IPv4"),
    };
    let err = nodes[0]
        .holepunch(silent, nodes[1].local_addr())
        .await
        .expect_err("nobody answers");
    match &err {
        hyperdht::HolepunchError::NoAnswer {
            peer,
            rounds,
            relayed,
            birthday,
        } => {
            assert_eq!(*peer, silent);
            assert_eq!(*rounds, hyperdht::PUNCH_ROUNDS);
            assert!(*relayed, "the referrer relayed");
            assert_ne!(*birthday, hyperdht::BirthdayTry::NotTried);
        }
        other => panic!("not a NoAnswer: {other:?}"),
    }
    assert!(err.to_string().contains("DHT address"), "{err}");
}

/// `shutdown()` unannounces what the node keeps announced before it closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_unannounces_what_is_kept() {
    let (_entry, nodes) = network(6).await;
    let key = Key::from_bytes([6; 32]);
    let mut kept = nodes[0].core_events();
    let _keep = nodes[0].announce_and_keep(key, AnnounceOptions::default());
    let (k, outcome) = next_announced(&mut kept).await;
    assert!(k == key && outcome.is_ok(), "announced: {outcome:?}");
    let before = peers_found(&nodes[4], key).await;
    assert!(!before.is_empty(), "announced: {before:?}");
    nodes[0].shutdown().await;
    let after = peers_found(&nodes[4], key).await;
    assert!(after.is_empty(), "shutdown unannounced: {after:?}");
}

/// `ping_host` takes an address as a string, as `bind` does; a malformed one is an error.
#[tokio::test]
async fn ping_host_takes_a_string() {
    let (entry, nodes) = network(2).await;
    let pong = nodes[0]
        .ping_host(&entry.local_addr().to_string())
        .await
        .expect("pong");
    assert_eq!(pong.from, entry.local_addr());
    assert!(matches!(
        nodes[0].ping_host("no such host").await,
        Err(hyperdht::PingError::Resolve(_))
    ));
}
