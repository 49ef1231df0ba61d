//! Encoding and decoding speed of the two datagrams a busy hyperdht node handles most: a
//! `peers` request (an announce with a LAN address) and a full `peers` response (20 closer
//! nodes and 150 peers, the most that fits under the reference's 900-byte cap).
//!
//! `cargo bench -p dht-wire --bench codec`

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddrV4};

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dht_wire::{
    Checked, Datagram, Message, NodeAddr, NodeId, PEERS, PeersRequest, PeersRequestType,
    PeersResponse, Request, Response, Tid,
};

fn id(n: u8) -> NodeId {
    NodeId::from_bytes([n; 32])
}

fn peers_request() -> Datagram {
    let value = PeersRequest::new(
        PeersRequestType::Announce,
        Some(10000),
        Some(SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 2), 8888)),
    );
    Datagram::request(
        Tid::from_masked(4242),
        Request {
            id: Some(Checked::Valid(id(1))),
            target: Some(Checked::Valid(id(2))),
            roundtrip_token: Some(vec![7u8; 32].into()),
            value: Some(value.encode()),
            ..Request::new(PEERS)
        },
    )
}

fn full_response() -> Datagram {
    let nodes = (0..20u8)
        .map(|i| NodeAddr {
            id: id(i),
            addr: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, i), 49737),
        })
        .collect();
    let peers = (0..150u16)
        .map(|i| SocketAddrV4::new(Ipv4Addr::new(172, 16, (i >> 8) as u8, i as u8), 20000 + i))
        .collect();
    let value = PeersResponse {
        peers: Some(Checked::Valid(peers)),
        local_peers: None,
    };
    Datagram::response(
        Tid::from_masked(4242),
        Response {
            id: Some(Checked::Valid(id(3))),
            nodes: Some(Checked::Valid(nodes)),
            value: Some(value.encode()),
            roundtrip_token: Some(vec![7u8; 32].into()),
        },
    )
}

fn bench(c: &mut Criterion) {
    for (name, d) in [
        ("peers_request", peers_request()),
        ("full_response", full_response()),
    ] {
        let wire = d.encode();
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Bytes(wire.len() as u64));
        g.bench_function("encode", |b| {
            let mut buf = BytesMut::with_capacity(2048);
            b.iter(|| {
                buf.clear();
                black_box(&d).encode_into(&mut buf);
                black_box(buf.len())
            })
        });
        g.bench_function("decode", |b| b.iter(|| Datagram::decode(black_box(&wire))));
        // What a hyperdht node does with each: decode the inner `peers` message too.
        g.bench_function("decode_with_peers_value", |b| {
            b.iter(|| {
                let d = Datagram::decode(black_box(&wire)).ok()?;
                match d.message {
                    Message::Request(r) => {
                        PeersRequest::decode(r.value.as_deref()?).ok().map(|_| ())
                    }
                    Message::Response(r) => {
                        PeersResponse::decode(r.value.as_deref()?).ok().map(|_| ())
                    }
                }
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
