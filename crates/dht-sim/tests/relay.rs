//! The bounded relay with the whole hyperdht core, behind the simulator's NATs: the one pair
//! no punch opens (symmetric <-> symmetric) connects through the peer's relay, datagrams go
//! both ways through the same call as on a direct path, and the relay forwards for nobody
//! else.

use std::net::SocketAddrV4;
use std::time::Duration;

use bytes::Bytes;
use dht_rpc::Config;
use dht_sim::{NatKind, Sim, SimConfig, hyper};
use hyperdht::relay::{RelayLimits, RelayMsg};
use hyperdht::{BirthdayTry, Core, HolepunchError, HolepunchPath, PUNCH_ROUNDS};

/// 0: us; 1: a public node to compare with; 2: the referrer; 3: the peer; 4: a relay. Us and
/// the peer behind `ours` and `theirs`; the peer reserves on the relay when `reserve`. Then
/// the peer and the referrer exchange pings, we ping the referrer and the public node, and
/// we punch to the peer as the referrer sees it.
fn punch_with_relay(
    ours: NatKind,
    theirs: NatKind,
    reserve: bool,
) -> (
    Sim<Core>,
    [SocketAddrV4; 5],
    SocketAddrV4,
    Result<hyperdht::Holepunch, HolepunchError>,
) {
    let mut sim = Sim::of_machines(SimConfig {
        seed: 5,
        ..SimConfig::default()
    });
    let others: Vec<SocketAddrV4> = (1..3).map(dht_sim::host_addr).collect();
    let us = hyper::add_node(
        &mut sim,
        Config {
            bootstrap: others,
            ..Config::default()
        },
    );
    let rest: Vec<_> = (0..4)
        .map(|_| hyper::add_node(&mut sim, Config::default()))
        .collect();
    let n = [us, rest[0], rest[1], rest[2], rest[3]];
    sim.with_machine(n[4], |m, _| m.set_relay(Some(RelayLimits::default())));
    sim.set_nat(n[0], ours.nat());
    sim.set_nat(n[3], theirs.nat());
    if reserve {
        sim.with_machine(n[3], |m, now| m.reserve(now, n[4]));
    }
    sim.with_core(n[3], |c, now| c.ping(now, n[2]));
    sim.with_core(n[2], |c, now| c.ping(now, n[3]));
    sim.with_core(n[0], |c, now| c.ping(now, n[2]));
    sim.with_core(n[0], |c, now| c.ping(now, n[1]));
    sim.run_for(Duration::from_secs(2));
    if reserve {
        assert_eq!(
            sim.machine(n[3]).and_then(|m| m.reservation()),
            Some((n[4], true)),
            "the relay holds the peer's reservation"
        );
    }
    let peer = sim.seen_as(n[3], n[2]).expect("the peer's binding");
    let result = hyper::punch(&mut sim, n[0], peer, n[2]);
    (sim, n, peer, result)
}

#[test]
fn symmetric_to_symmetric_connects_through_the_peers_relay_both_ways() {
    let (mut sim, n, peer, result) = punch_with_relay(NatKind::Symmetric, NatKind::Symmetric, true);
    let h = result.expect("a circuit opened");
    assert_eq!(h.path, HolepunchPath::Circuit { relay: n[4] });
    assert_eq!(h.addr, peer);
    eprintln!(
        "symmetric <-> symmetric through the relay in {:?}",
        h.elapsed
    );
    // Our datagrams reach the peer through the relay, and its answers reach us, each side
    // sending to the address it knows the other by, with the call of a direct path.
    for i in 0..5u8 {
        sim.with_machine(n[0], |m, _| {
            m.send_datagram(peer, Bytes::from(vec![0, 0, 9, i]))
        });
    }
    sim.run_for(Duration::from_millis(500));
    let got = hyper::datagrams(&mut sim, n[3]);
    assert_eq!(got.len(), 5, "every datagram, once: {got:?}");
    let from = got[0].0;
    assert!(got.iter().all(|(f, _)| *f == from));
    // Each of the five, in any order (the simulated network may reorder them).
    let mut payloads: Vec<Bytes> = got.iter().map(|(_, b)| b.clone()).collect();
    payloads.sort();
    let sent: Vec<Bytes> = (0..5u8).map(|i| Bytes::from(vec![0, 0, 9, i])).collect();
    assert_eq!(payloads, sent);
    sim.with_machine(n[3], |m, _| {
        m.send_datagram(from, Bytes::from_static(b"\0\0\x09back"))
    });
    sim.run_for(Duration::from_millis(500));
    let back = hyper::datagrams(&mut sim, n[0]);
    assert_eq!(back, vec![(peer, Bytes::from_static(b"\0\0\x09back"))]);
    let stats = sim
        .machine(n[4])
        .and_then(|m| m.relay_stats())
        .expect("the relay role");
    assert_eq!(stats.circuits, 1);
    assert_eq!(stats.forwarded, 6);
    assert_eq!(stats.dropped_strangers, 0);
}

#[test]
fn without_a_reservation_the_symmetric_pair_still_fails_after_asking() {
    let (sim, n, peer, result) = punch_with_relay(NatKind::Symmetric, NatKind::Symmetric, false);
    assert_eq!(
        result,
        Err(HolepunchError::NoAnswer {
            peer,
            rounds: PUNCH_ROUNDS,
            relayed: true,
            birthday: BirthdayTry::HardSide,
        })
    );
    let stats = sim
        .machine(n[4])
        .and_then(|m| m.relay_stats())
        .expect("role");
    assert_eq!((stats.circuits, stats.forwarded), (0, 0));
}

#[test]
fn pairs_that_punch_do_not_take_the_relay() {
    for (a, b) in [
        (NatKind::Open, NatKind::Symmetric),
        (NatKind::PortRestricted, NatKind::PortRestricted),
        (NatKind::Symmetric, NatKind::PortRestricted),
    ] {
        let (sim, n, _, result) = punch_with_relay(a, b, true);
        let h = result.expect("opened");
        assert!(
            !matches!(h.path, HolepunchPath::Circuit { .. }),
            "{a:?} -> {b:?}: {:?}",
            h.path
        );
        let stats = sim
            .machine(n[4])
            .and_then(|m| m.relay_stats())
            .expect("role");
        assert_eq!(stats.circuits, 0, "{a:?} -> {b:?}");
    }
}

#[test]
fn a_stranger_cannot_use_a_circuit_nor_reserve_without_the_token() {
    let (mut sim, n, _peer, result) =
        punch_with_relay(NatKind::Symmetric, NatKind::Symmetric, true);
    result.expect("a circuit opened");
    // The public node (a stranger to the circuit) tries its pairings and a reserve with a
    // made-up token: its data is dropped and counted, the reserve only challenged.
    let stranger = n[1];
    for i in 0..20u8 {
        let data = RelayMsg::Data([i; 16], Bytes::from_static(b"x")).encode();
        sim.with_core(stranger, |c, _| c.send_datagram(n[4], data));
    }
    let forged = RelayMsg::Reserve(Some([7; 32])).encode();
    sim.with_core(stranger, |c, _| c.send_datagram(n[4], forged));
    sim.run_for(Duration::from_secs(1));
    let stats = sim
        .machine(n[4])
        .and_then(|m| m.relay_stats())
        .expect("role");
    assert_eq!(stats.dropped_strangers, 20);
    assert_eq!(
        stats.challenged, 3,
        "the peer's first reserve, our first join, then the stranger's reserve"
    );
    assert_eq!(stats.reserved, 1, "only the peer's");
    assert_eq!(sim.machine(stranger).and_then(|m| m.reservation()), None);
    // The figure docs/RELIABILITY.md shows (the soak's report reads it).
    let line = format!(
        "stranger's 20 datagrams for guessed pairings: {} forwarded, {} dropped; its forged reserve: challenged, {} reservation (the honest peer's only)",
        stats.forwarded, stats.dropped_strangers, stats.reserved
    );
    println!("{line}");
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/reports/defences");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join("relay_strangers.txt"), line + "\n");
}

#[test]
fn a_direct_path_replaces_the_circuit_once_a_retry_opens_one() {
    let (mut sim, n, peer, result) = punch_with_relay(NatKind::Symmetric, NatKind::Symmetric, true);
    assert!(matches!(result, Ok(h) if matches!(h.path, HolepunchPath::Circuit { .. })));
    let forwarded = |sim: &Sim<Core>| {
        sim.machine(n[4])
            .and_then(|m| m.relay_stats())
            .map_or(0, |s| s.forwarded)
    };
    // Relayed while nothing changes: the retries (every UPGRADE_EVERY) fail quietly.
    sim.run_for(hyperdht::UPGRADE_EVERY + Duration::from_secs(10));
    let looker = sim.machine(n[0]).expect("us");
    assert_eq!((looker.circuit_paths(), looker.upgraded_paths()), (1, 0));
    assert!(
        sim.take_own_events(n[0]).is_empty(),
        "a retry reports nothing"
    );
    // Our NAT goes away (the filtering relaxes): the next retry opens a direct path, and
    // our datagrams to the peer leave the relay.
    sim.set_nat(n[0], None);
    sim.run_for(hyperdht::UPGRADE_EVERY + Duration::from_secs(10));
    let looker = sim.machine(n[0]).expect("us");
    assert_eq!((looker.circuit_paths(), looker.upgraded_paths()), (0, 1));
    let before = forwarded(&sim);
    hyper::datagrams(&mut sim, n[3]);
    sim.with_machine(n[0], |m, _| {
        m.send_datagram(peer, Bytes::from_static(b"\0\0\x09direct"))
    });
    sim.run_for(Duration::from_millis(500));
    let got = hyper::datagrams(&mut sim, n[3]);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, n[0], "straight from our own address now");
    assert_eq!(forwarded(&sim), before, "not through the relay");
}
