//! Property tests: `decode(encode(x)) == x` for every message type, and decoding arbitrary
//! or mutated bytes never panics.

use std::net::SocketAddrV4;

use bytes::Bytes;
use dht_wire::compact::{self, NODE_LEN};
use dht_wire::{
    Checked, Datagram, LocalPeer, Message, NodeAddr, NodeId, PeersRequest, PeersResponse, Request,
    Response, Tid,
};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn id() -> impl Strategy<Value = NodeId> {
    any::<[u8; 32]>().prop_map(NodeId::from_bytes)
}

fn checked_id() -> impl Strategy<Value = Checked<NodeId>> {
    prop_oneof![
        4 => id().prop_map(Checked::Valid),
        1 => bytes(64).prop_filter("not 32 bytes", |b| b.len() != 32).prop_map(Checked::Invalid),
    ]
}

fn peer() -> impl Strategy<Value = SocketAddrV4> {
    (any::<[u8; 4]>(), 1u16..).prop_map(|(ip, port)| SocketAddrV4::new(ip.into(), port))
}

fn checked_peer() -> impl Strategy<Value = Checked<SocketAddrV4>> {
    prop_oneof![
        4 => peer().prop_map(Checked::Valid),
        1 => bytes(12).prop_filter("not a valid peer", |b| compact::decode_peer(b).is_none()).prop_map(Checked::Invalid),
    ]
}

fn node() -> impl Strategy<Value = NodeAddr> {
    (id(), peer()).prop_map(|(id, addr)| NodeAddr { id, addr })
}

fn checked_nodes() -> impl Strategy<Value = Checked<Vec<NodeAddr>>> {
    prop_oneof![
        4 => vec(node(), 0..25).prop_map(Checked::Valid),
        // A list with a zero port somewhere is kept raw.
        1 => (vec(node(), 0..3), bytes(40)).prop_map(|(n, tail)| {
            let mut b = compact::encode_nodes(&n).to_vec();
            b.extend_from_slice(&[7u8; NODE_LEN - 2]);
            b.extend_from_slice(&[0, 0]);
            b.extend_from_slice(&tail);
            Checked::Invalid(Bytes::from(b))
        }),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    (
        "[_a-z\\-ü]{0,16}",
        option::of(checked_id()),
        option::of(checked_id()),
        option::of(checked_peer()),
        option::of(checked_peer()),
        option::of(bytes(40)),
        option::of(bytes(200)),
    )
        .prop_map(|(command, id, target, fq, fr, token, value)| Request {
            command,
            id,
            target,
            forward_request: fq,
            forward_response: fr,
            roundtrip_token: token,
            value,
        })
}

fn response() -> impl Strategy<Value = Response> {
    (
        option::of(checked_id()),
        option::of(checked_nodes()),
        option::of(bytes(200)),
        option::of(bytes(40)),
    )
        .prop_map(|(id, nodes, value, token)| Response {
            id,
            nodes,
            value,
            roundtrip_token: token,
        })
}

fn datagram() -> impl Strategy<Value = Datagram> {
    (
        0u16..=Tid::MAX.get(),
        prop_oneof![
            request().prop_map(Message::Request),
            response().prop_map(Message::Response)
        ],
    )
        .prop_map(|(tid, message)| Datagram {
            tid: Tid::from_masked(tid),
            message,
        })
}

fn peers_request() -> impl Strategy<Value = PeersRequest> {
    (
        any::<u32>(),
        option::of(any::<u32>()),
        option::of(prop_oneof![
            (any::<[u8; 4]>(), any::<u16>())
                .prop_map(|(ip, port)| Checked::Valid(SocketAddrV4::new(ip.into(), port))),
            bytes(12)
                .prop_filter("not 6 bytes", |b| b.len() != 6)
                .prop_map(Checked::Invalid),
        ]),
    )
        .prop_map(|(kind, port, local_address)| PeersRequest {
            kind: kind.into(),
            port,
            local_address,
        })
}

fn peers_response() -> impl Strategy<Value = PeersResponse> {
    (
        option::of(vec(peer(), 0..150).prop_map(Checked::Valid)),
        option::of(vec(
            (any::<[u8; 2]>(), 1u16..).prop_map(|(suffix, port)| LocalPeer { suffix, port }),
            0..20,
        )),
    )
        .prop_map(|(peers, local_peers)| PeersResponse { peers, local_peers })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn datagrams_round_trip(d in datagram()) {
        prop_assert_eq!(Datagram::decode(&d.encode()), Ok(d));
    }

    #[test]
    fn peers_requests_round_trip(r in peers_request()) {
        prop_assert_eq!(PeersRequest::decode(&r.encode()), Ok(r));
    }

    #[test]
    fn peers_responses_round_trip(r in peers_response()) {
        prop_assert_eq!(PeersResponse::decode(&r.encode()), Ok(r));
    }

    #[test]
    fn peers_responses_from_borrowed_parts_equal_the_owned_encoding(
        peers in vec(any::<([u8; 4], u16)>(), 0..200),
        locals in option::of(vec(any::<([u8; 2], u16)>(), 0..200)),
        prefix in vec(any::<u8>(), 0..8),
    ) {
        let peers: Vec<SocketAddrV4> =
            peers.into_iter().map(|(ip, port)| SocketAddrV4::new(ip.into(), port)).collect();
        let locals: Option<Vec<LocalPeer>> = locals.map(|l| {
            l.into_iter().map(|(suffix, port)| LocalPeer { suffix, port }).collect()
        });
        // Appended after what the buffer already holds.
        let mut out = bytes::BytesMut::from(&prefix[..]);
        PeersResponse::encode_parts(&peers, locals.as_deref(), &mut out);
        let owned = PeersResponse { peers: Some(Checked::Valid(peers)), local_peers: locals };
        prop_assert_eq!(&out[..prefix.len()], &prefix[..]);
        prop_assert_eq!(&out[prefix.len()..], &owned.encode()[..]);
    }

    #[test]
    fn arbitrary_bytes_never_panic(b in vec(any::<u8>(), 0..1500)) {
        let _ = Datagram::decode(&b);
        let _ = PeersRequest::decode(&b);
        let _ = PeersResponse::decode(&b);
    }

    #[test]
    fn mutated_datagrams_never_panic(d in datagram(), flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..8), cut in any::<prop::sample::Index>()) {
        let mut b = d.encode().to_vec();
        for (i, x) in flips {
            let i = i.index(b.len());
            b[i] ^= x;
        }
        let cut = cut.index(b.len() + 1);
        if let Ok(d) = Datagram::decode(&b[..cut]) {
            // Whatever decodes re-encodes and decodes to the same value.
            prop_assert_eq!(Datagram::decode(&d.encode()), Ok(d));
        }
    }
}
