//! Byte-for-byte agreement with the JavaScript reference's own encoders.
//!
//! `interop/fixtures/wire.json` was written by `interop/gen-fixtures.js` with dht-rpc's,
//! hyperdht's, ipv4-peers' and udp-request's code. Every fixture must decode to the value it
//! was made from, and that value must encode back to the same bytes. A second test regenerates
//! the fixtures with the reference and checks that the committed file is what it writes.

use std::net::SocketAddrV4;

use dht_wire::{
    Checked, Datagram, LocalPeer, Message, NodeAddr, NodeId, PeersRequest, PeersResponse, Request,
    Response, Tid,
};
use serde_json::Value;

fn fixtures() -> Vec<Value> {
    let path = hyperdht_tests::interop_dir().join("fixtures/wire.json");
    let text = std::fs::read_to_string(&path).expect("read fixtures");
    serde_json::from_str::<Value>(&text)
        .expect("parse fixtures")
        .as_array()
        .expect("an array")
        .clone()
}

fn b(v: &Value) -> Option<bytes::Bytes> {
    v.as_str()
        .map(|s| bytes::Bytes::from(hex::decode(s).expect("hex")))
}

fn peer(v: &Value) -> SocketAddrV4 {
    format!("{}:{}", v["host"].as_str().expect("host"), v["port"])
        .parse()
        .expect("peer")
}

fn invalid_or<T>(v: &Value, valid: impl FnOnce(&Value) -> T) -> Option<Checked<T>> {
    if v.is_null() {
        None
    } else if let Some(raw) = v.get("invalid") {
        Some(Checked::Invalid(b(raw).expect("invalid hex")))
    } else {
        Some(Checked::Valid(valid(v)))
    }
}

fn id(v: &Value) -> Option<Checked<NodeId>> {
    invalid_or(v, |v| v.as_str().expect("id").parse().expect("32-byte id"))
}

fn nodes(v: &Value) -> Option<Checked<Vec<NodeAddr>>> {
    invalid_or(v, |v| {
        v.as_array()
            .expect("nodes")
            .iter()
            .map(|n| NodeAddr {
                id: n["id"].as_str().expect("id").parse().expect("id"),
                addr: peer(n),
            })
            .collect()
    })
}

fn expected_request(r: &Value) -> Request {
    Request {
        command: r["command"].as_str().expect("command").to_owned(),
        id: id(&r["id"]),
        target: id(&r["target"]),
        forward_request: invalid_or(&r["forwardRequest"], peer),
        forward_response: invalid_or(&r["forwardResponse"], peer),
        roundtrip_token: b(&r["roundtripToken"]),
        value: b(&r["value"]),
    }
}

fn expected_response(r: &Value) -> Response {
    Response {
        id: id(&r["id"]),
        nodes: nodes(&r["nodes"]),
        value: b(&r["value"]),
        roundtrip_token: b(&r["roundtripToken"]),
    }
}

fn expected_peers_request(r: &Value) -> PeersRequest {
    PeersRequest {
        kind: u32::try_from(r["type"].as_u64().expect("type"))
            .expect("u32")
            .into(),
        port: r["port"].as_u64().map(|p| u32::try_from(p).expect("u32")),
        local_address: invalid_or(&r["localAddress"], peer),
    }
}

fn expected_peers_response(r: &Value) -> PeersResponse {
    PeersResponse {
        peers: invalid_or(&r["peers"], |v| {
            v.as_array().expect("peers").iter().map(peer).collect()
        }),
        local_peers: r["localPeers"].as_array().map(|l| {
            l.iter()
                .map(|p| LocalPeer {
                    suffix: [
                        u8::try_from(p["suffix"][0].as_u64().expect("octet")).expect("u8"),
                        u8::try_from(p["suffix"][1].as_u64().expect("octet")).expect("u8"),
                    ],
                    port: u16::try_from(p["port"].as_u64().expect("port")).expect("u16"),
                })
                .collect()
        }),
    }
}

fn every_fixture_decodes_to_its_value_and_encodes_to_its_bytes() {
    let fixtures = fixtures();
    assert!(fixtures.len() >= 30, "too few fixtures: {}", fixtures.len());
    let mut peers_checked = 0;
    for f in &fixtures {
        let name = f["name"].as_str().expect("name");
        let wire = hex::decode(f["hex"].as_str().expect("hex")).expect("hex");
        let tid = Tid::new(u16::try_from(f["tid"].as_u64().expect("tid")).expect("u16"))
            .expect("15-bit tid");
        let expected = if f.get("request").is_some() {
            Datagram::request(tid, expected_request(&f["request"]))
        } else {
            Datagram::response(tid, expected_response(&f["response"]))
        };

        let decoded = Datagram::decode(&wire).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(decoded, expected, "{name}: decoded value");
        assert_eq!(
            hex::encode(expected.encode()),
            f["hex"].as_str().expect("hex"),
            "{name}: encoding"
        );

        let value = match &decoded.message {
            Message::Request(r) => r.value.clone(),
            Message::Response(r) => r.value.clone(),
        };
        if let Some(pr) = f.get("peersRequest") {
            let v = value.as_deref().expect("a value");
            let want = expected_peers_request(pr);
            assert_eq!(PeersRequest::decode(v).expect(name), want, "{name}");
            assert_eq!(want.encode().as_ref(), v, "{name}: peers request encoding");
            peers_checked += 1;
        }
        if let Some(pr) = f.get("peersResponse") {
            let v = value.as_deref().expect("a value");
            let want = expected_peers_response(pr);
            assert_eq!(PeersResponse::decode(v).expect(name), want, "{name}");
            assert_eq!(want.encode().as_ref(), v, "{name}: peers response encoding");
            peers_checked += 1;
        }
    }
    assert!(
        peers_checked >= 10,
        "peers messages checked: {peers_checked}"
    );
}

fn the_committed_fixtures_are_what_the_reference_writes() {
    let reference = hyperdht_tests::reference();
    let out =
        std::env::temp_dir().join(format!("hyperdht-rs-fixtures-{}.json", std::process::id()));
    let status = reference
        .node("gen-fixtures.js")
        .arg(&out)
        .output()
        .expect("run node");
    assert!(
        status.status.success(),
        "gen-fixtures.js failed: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    let fresh = std::fs::read_to_string(&out).expect("read regenerated fixtures");
    let _ = std::fs::remove_file(&out);
    let committed =
        std::fs::read_to_string(hyperdht_tests::interop_dir().join("fixtures/wire.json"))
            .expect("read committed fixtures");
    assert!(
        fresh == committed,
        "the committed fixtures differ from what the reference writes now: rerun `node gen-fixtures.js fixtures/wire.json` in tests/interop"
    );
}

fn main() {
    use hyperdht_tests::trial;
    hyperdht_tests::run_trials(vec![
        trial(
            "every_fixture_decodes_to_its_value_and_encodes_to_its_bytes",
            None,
            every_fixture_decodes_to_its_value_and_encodes_to_its_bytes,
        ),
        trial(
            "the_committed_fixtures_are_what_the_reference_writes",
            hyperdht_tests::reference_missing(),
            the_committed_fixtures_are_what_the_reference_writes,
        ),
    ]);
}
