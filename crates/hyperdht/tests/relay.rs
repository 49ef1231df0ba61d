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
    peer.reserve_relay(relay.local_addr());
    let held = tokio::time::timeout(Duration::from_secs(5), async {
        while peer.reservation() != Some((relay.local_addr(), true)) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(held.is_ok(), "held within 5 s: {:?}", peer.reservation());
    let stats = relay.relay_stats().expect("the relay role");
    assert_eq!((stats.challenged, stats.reserved), (1, 1));
    assert_eq!(plain.relay_stats(), None);
    // A node without the role never answers: the reservation is never held.
    let other = node(false).await;
    other.reserve_relay(plain.local_addr());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(other.reservation(), Some((plain.local_addr(), false)));
}
