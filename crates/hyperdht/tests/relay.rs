//! The relay role on real sockets on 127.0.0.1: a reservation is challenged, then held and
//! counted; a node without the role ignores reservations. (The fallback of a failed punch
//! needs NATs: it runs in dht-sim's `tests/relay.rs` and the NAT lab.)

use std::time::Duration;

use hyperdht::HyperDht;
use hyperdht::relay::RelayLimits;

async fn node(relay: bool) -> HyperDht {
    let mut b = HyperDht::builder().bootstrap(Vec::<String>::new());
    if relay {
        b = b.relay(RelayLimits::default());
    }
    b.bind("127.0.0.1:0").await.expect("bind")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_holds_a_reservation_after_its_challenge() {
    let relay = node(true).await;
    let plain = node(false).await;
    let peer = node(false).await;
    let held = peer
        .reserve_relay_within(relay.local_addr(), Duration::from_secs(5))
        .await;
    assert!(held, "held within 5 s: {:?}", peer.reservation());
    let stats = relay.relay_stats().expect("the relay role");
    assert_eq!((stats.challenged, stats.reserved), (1, 1));
    assert_eq!(plain.relay_stats(), None);
    // A node without the role never answers: the reservation is never held.
    let other = node(false).await;
    other.reserve_relay(plain.local_addr());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(other.reservation(), Some((plain.local_addr(), false)));
}

/// A relay announces itself on the well-known key; a peer finds it there and reserves on
/// it, passing over a node that announced on the key without the role (anyone can).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_finds_a_relay_on_the_dht_and_passes_over_a_fake_one() {
    let net = hyperdht::Testnet::start(4).await.expect("testnet");
    let joined = |relay: bool| {
        let mut b = HyperDht::builder().bootstrap([net.bootstrap()]);
        if relay {
            b = b.relay(RelayLimits::default());
        }
        async move {
            let n = b.bind("127.0.0.1:0").await.expect("bind");
            n.ready().await;
            n
        }
    };
    let relay = joined(true).await;
    let fake = joined(false).await;
    let announced = [relay.announce_as_relay(), fake.announce_as_relay()];
    let stored = tokio::time::timeout(Duration::from_secs(10), async {
        while !announced
            .iter()
            .all(|a| matches!(a.last_result(), Some(Ok(n)) if n > 0))
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(stored.is_ok(), "both announces stored");
    let peer = joined(false).await;
    let mut found = peer.find_relays().await;
    found.sort();
    let mut both = vec![relay.local_addr(), fake.local_addr()];
    both.sort();
    assert_eq!(found, both, "both are candidates");
    let held = peer.reserve_any_relay().await;
    assert_eq!(held, Ok(relay.local_addr()), "the real relay holds it");
    assert_eq!(peer.reservation(), Some((relay.local_addr(), true)));
    assert_eq!(relay.relay_stats().map(|s| s.reserved), Some(1));
    // With nothing announced on the key, the error says so.
    let lonely = HyperDht::builder()
        .bootstrap(Vec::<String>::new())
        .bind("127.0.0.1:0")
        .await
        .expect("bind");
    assert_eq!(
        lonely.reserve_any_relay().await,
        Err(hyperdht::FindRelayError::NoneAnnounced)
    );
    drop(announced);
    net.shutdown().await;
}
