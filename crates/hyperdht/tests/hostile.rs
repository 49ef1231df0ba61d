//! Hostile input on the bare cores: arbitrary and mutated datagrams into a dht-rpc core
//! serving hyperdht's `peers`, from many addresses, never panic, never corrupt state, and
//! never grow memory past the store's bound.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dht_rpc::{Config, Core};
use dht_wire::{Checked, Datagram, NodeId, PeersRequest, PeersRequestType, Request, Response, Tid};
use hyperdht::{PeerStore, PeersHandler};
use proptest::collection::vec;
use proptest::prelude::*;

// The `report!` macro the defence tests share (one source).
#[path = "../../dht-rpc/tests/common/mod.rs"]
#[macro_use]
mod common;

fn core() -> Core<PeersHandler> {
    Core::with_handler(
        Config {
            id: Some(NodeId::from_bytes([0; 32])),
            ..Config::default()
        },
        PeersHandler::new(PeerStore::new(1000, Duration::from_secs(360)), 1),
        Instant::now(),
    )
}

/// Plausible datagrams: requests of every command with random fields, and responses.
fn datagram() -> impl Strategy<Value = Vec<u8>> {
    let command = prop_oneof![
        Just("_ping".to_owned()),
        Just("_find_node".to_owned()),
        Just("peers".to_owned()),
        "[a-z]{0,8}"
    ];
    let bytes = |n| vec(any::<u8>(), 0..n).prop_map(Bytes::from);
    let request = (
        command,
        proptest::option::of(any::<[u8; 32]>()),
        proptest::option::of(prop_oneof![
            any::<[u8; 32]>().prop_map(|b| Bytes::copy_from_slice(&b)),
            bytes(40)
        ]),
        proptest::option::of(bytes(8)),
        proptest::option::of(bytes(8)),
        proptest::option::of(bytes(40)),
        proptest::option::of(prop_oneof![
            (
                0u32..4,
                proptest::option::of(any::<u32>()),
                proptest::option::of(bytes(8))
            )
                .prop_map(|(t, p, l)| PeersRequest {
                    kind: t.into(),
                    port: p,
                    local_address: l.map(Checked::Invalid),
                }
                .encode()),
            bytes(64),
        ]),
        any::<u16>(),
    )
        .prop_map(|(command, id, target, fq, fr, token, value, tid)| {
            Datagram::request(
                Tid::from_masked(tid),
                Request {
                    command,
                    id: id.map(|b| Checked::Valid(NodeId::from_bytes(b))),
                    target: target.map(Checked::Invalid),
                    forward_request: fq.map(Checked::Invalid),
                    forward_response: fr.map(Checked::Invalid),
                    roundtrip_token: token,
                    value,
                },
            )
            .encode()
            .to_vec()
        });
    let response = (
        any::<u16>(),
        proptest::option::of(bytes(200)),
        proptest::option::of(bytes(40)),
    )
        .prop_map(|(tid, nodes, value)| {
            Datagram::response(
                Tid::from_masked(tid),
                Response {
                    nodes: nodes.map(Checked::Invalid),
                    value,
                    ..Response::default()
                },
            )
            .encode()
            .to_vec()
        });
    prop_oneof![request, response, vec(any::<u8>(), 0..300)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_datagrams_from_anyone(datagrams in vec((any::<u32>(), 1u16.., datagram()), 1..200)) {
        let t0 = Instant::now();
        let mut core = core();
        for (i, (ip, port, d)) in datagrams.iter().enumerate() {
            let now = t0 + Duration::from_millis(i as u64 * 10);
            core.handle_datagram(now, SocketAddrV4::new(Ipv4Addr::from(*ip), *port), d);
            core.handle_timeout(now);
            while core.poll_transmit().is_some() {}
            while core.poll_event().is_some() {}
        }
        let s = core.stats();
        prop_assert_eq!(s.datagrams_in, datagrams.len() as u64);
        prop_assert!(core.table().len() <= 256 * 20);
        prop_assert!(core.handler().store().len() <= 2 * 1001);
        // Still a working node: it answers a ping.
        let ping = Datagram::request(Tid::from_masked(7), Request::new("_ping")).encode();
        core.handle_datagram(t0, SocketAddrV4::new(Ipv4Addr::new(9, 9, 9, 9), 9), &ping);
        prop_assert!(core.poll_transmit().is_some());
    }
}

#[test]
fn a_flood_of_announces_through_the_core_stays_bounded() {
    // 200,000 announces of distinct keys from distinct addresses, each with a valid token
    // (obtained as a real client would, from a first response).
    let t0 = Instant::now();
    let mut core = Core::with_handler(
        Config::default(),
        PeersHandler::new(PeerStore::default(), 1),
        t0,
    );
    for i in 0..200_000u32 {
        // 20,000 announces a second: within the request budgets of the defences.
        let t0 = t0 + Duration::from_micros(u64::from(i) * 50);
        let from = SocketAddrV4::new(Ipv4Addr::from(0x0b00_0000 + i), 1000 + (i % 60000) as u16);
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(&i.to_be_bytes());
        announce_from(&mut core, t0, from, key);
    }
    let held = core.handler().store().len();
    assert!(held <= 2 * (hyperdht::DEFAULT_MAX + 1), "{held}");
    assert!(held > 65_536, "both generations in use: {held}");
}

/// A client at `from` that takes a token from a ping (expecting one) and announces on
/// `key`, as a real announcer does.
fn announce_from(core: &mut Core<PeersHandler>, now: Instant, from: SocketAddrV4, key: [u8; 32]) {
    let ping = Datagram::request(Tid::from_masked(1), Request::new("_ping")).encode();
    core.handle_datagram(now, from, &ping);
    let token = std::iter::from_fn(|| core.poll_transmit())
        .filter(|t| t.to == from)
        .find_map(|t| match Datagram::decode(&t.payload).ok()?.message {
            dht_wire::Message::Response(r) => r.roundtrip_token,
            dht_wire::Message::Request(_) => None,
        })
        .expect("a token");
    let value = PeersRequest::new(PeersRequestType::Announce, None, None).encode();
    let announce = Datagram::request(
        Tid::from_masked(2),
        Request {
            target: Some(Checked::Valid(NodeId::from_bytes(key))),
            roundtrip_token: Some(token),
            value: Some(value),
            ..Request::new("peers")
        },
    );
    core.handle_datagram(now, from, &announce.encode());
    while core.poll_transmit().is_some() {}
    while core.poll_event().is_some() {}
}

fn key_n(i: u32) -> [u8; 32] {
    let mut key = [0u8; 32];
    key[..4].copy_from_slice(&i.to_be_bytes());
    key[31] = 1;
    key
}

#[test]
fn one_ip_or_one_prefix_cannot_wipe_the_store() {
    let t0 = Instant::now();
    let mut core = Core::with_handler(
        Config::default(),
        PeersHandler::new(PeerStore::default(), 1),
        t0,
    );
    let honest = SocketAddrV4::new(Ipv4Addr::new(9, 9, 9, 9), 4000);
    announce_from(&mut core, t0, honest, [7; 32]);
    // One IP, 100,000 announces of distinct keys (1,000 a second: within its request budget).
    let attacker = Ipv4Addr::new(6, 6, 6, 6);
    for i in 0..100_000u32 {
        let now = t0 + Duration::from_millis(u64::from(i));
        announce_from(&mut core, now, SocketAddrV4::new(attacker, 5000), key_n(i));
    }
    // Then its whole /24, 200 hosts with 1,000 keys each.
    for host in 0..200u32 {
        for i in 0..1_000u32 {
            let now = t0
                + Duration::from_secs(100)
                + Duration::from_millis(u64::from(host * 1_000 + i) / 4);
            let from = SocketAddrV4::new(Ipv4Addr::new(6, 6, 6, host as u8), 5000);
            announce_from(&mut core, now, from, key_n(1_000_000 + host * 1_000 + i));
        }
    }
    let store = core.handler().store();
    let one = store.held_by(&attacker);
    let prefix: usize = (0..=255u8)
        .map(|h| store.held_by(&Ipv4Addr::new(6, 6, 6, h)))
        .sum();
    let refused = store.refused();
    report!(
        "one_ip_or_one_prefix_cannot_wipe_the_store",
        "one IP announcing 100,000 keys holds {one} entries; its /24 announcing 200,000 more holds {prefix} ({} + {} refused); the store holds {}",
        refused.ip,
        refused.prefix,
        store.len()
    );
    assert!(one <= 256, "{one}");
    assert!(prefix <= 1024, "{prefix}");
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1);
    let later = t0 + Duration::from_secs(160);
    assert_eq!(
        store
            .entries(&hyperdht::Key::from_bytes([7; 32]), later, &mut rng)
            .len(),
        1,
        "the honest announce survives"
    );
}

/// What a hyperdht node sends in the 3 s after a birthday hint for `requester` (relayed by
/// `relay`, which proved it receives): datagrams to the requester's IP, and to the relay.
fn after_hint(
    hint: hyperdht::Hint,
    requester: SocketAddrV4,
    token_of_ours: bool,
) -> (usize, usize) {
    use dht_rpc::Machine;
    let t0 = Instant::now();
    let rpc = Core::with_handler(
        Config::default(),
        PeersHandler::new(PeerStore::default(), 1),
        t0,
    );
    let mut core = hyperdht::Core::new(rpc, t0);
    core.rpc_mut().set_local_port(49737);
    // The relay answers a ping of ours: it proved it receives.
    let relay = SocketAddrV4::new(Ipv4Addr::new(5, 5, 5, 5), 7000);
    core.rpc_mut().ping(t0, relay);
    while let Some(t) = core.poll_transmit() {
        if let Ok(Datagram { tid, .. }) = Datagram::decode(&t.payload) {
            let pong = Datagram::response(tid, Response::default()).encode();
            core.handle_datagram(t0, relay, &pong);
        }
    }
    while core.poll_event().is_some() {}
    let hint = match hint {
        hyperdht::Hint::SprayMe(Some(_)) if token_of_ours => {
            hyperdht::Hint::SprayMe(Some(core.rpc_mut().roundtrip_token(*requester.ip())))
        }
        other => other,
    };
    let forwarded = Datagram::request(
        Tid::from_masked(9),
        Request {
            forward_response: Some(Checked::Valid(requester)),
            value: Some(hint.encode()),
            ..Request::new("_ping")
        },
    )
    .encode();
    core.handle_datagram(t0, relay, &forwarded);
    let (mut to_requester, mut to_relay) = (0, 0);
    for ms in (0..3000).step_by(10) {
        let now = t0 + Duration::from_millis(ms);
        core.handle_timeout(now);
        while core.poll_event().is_some() {}
        while let Some(t) = core.poll_transmit() {
            to_requester += usize::from(t.to.ip() == requester.ip());
            to_relay += usize::from(t.to == relay);
        }
    }
    (to_requester, to_relay)
}

#[test]
fn a_spoofed_birthday_hint_gets_a_challenge_not_a_spray() {
    use hyperdht::Hint;
    let victim = SocketAddrV4::new(Ipv4Addr::new(7, 7, 7, 7), 4000);
    // Spoofed: "I am the victim, spray me" (no token: the forger never saw our challenge).
    let (sprayed, to_relay) = after_hint(Hint::SprayMe(None), victim, false);
    let (opened, _) = after_hint(Hint::ProbeMe(None), victim, false);
    // A made-up token.
    let (forged, _) = after_hint(Hint::SprayMe(Some([3; 32])), victim, false);
    // The victim's own answer to our challenge (it receives at its IP).
    let (proved, _) = after_hint(Hint::SprayMe(Some([0; 32])), victim, true);
    report!(
        "a_spoofed_birthday_hint_gets_a_challenge_not_a_spray",
        "one spoofed birthday hint: {sprayed} datagram(s) to the victim's IP (spray asked: the relayed ping's pong), {opened} (sockets asked), {to_relay} to the relay (the challenge); a made-up token: {forged}; with the requester's proof: {proved}"
    );
    // One datagram each: the pong that any relayed ping gets (the protocol's, 1:1).
    assert_eq!((sprayed, opened, forged), (1, 1, 1));
    assert_eq!(to_relay, 1, "one challenge, through the relay");
    assert_eq!(
        proved,
        1 + hyperdht::BIRTHDAY_SPRAYS,
        "a proved requester is sprayed"
    );
}
