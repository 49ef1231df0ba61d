//! The libraries' `serde` feature: the public data types round-trip through JSON, with ids
//! as 64 hex characters and addresses as serde's "host:port".

use std::net::SocketAddrV4;

use dht_rpc::{NodeAddr, NodeId, Stats};
use hyperdht::PeerEvent;

#[test]
fn public_types_round_trip_through_json() {
    let id = NodeId::from_bytes([0xab; 32]);
    let node = NodeAddr {
        id,
        addr: "127.0.0.1:49737".parse::<SocketAddrV4>().expect("addr"),
    };
    let json = serde_json::to_value(node).expect("serialize");
    assert_eq!(json["id"], "ab".repeat(32));
    assert_eq!(json["addr"], "127.0.0.1:49737");
    assert_eq!(
        serde_json::from_value::<NodeAddr>(json).expect("back"),
        node
    );
    assert!(serde_json::from_str::<NodeId>("\"not hex\"").is_err());

    let event = PeerEvent::Announce {
        key: id,
        peer: node.addr,
    };
    let text = serde_json::to_string(&event).expect("serialize");
    assert_eq!(
        serde_json::from_str::<PeerEvent>(&text).expect("back"),
        event
    );

    let stats = Stats::default();
    let v = serde_json::to_value(stats).expect("serialize");
    assert_eq!(v["datagrams_in"], 0);
    assert_eq!(serde_json::from_value::<Stats>(v).expect("back"), stats);
}
