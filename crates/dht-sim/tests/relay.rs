//! The bounded relay with the whole hyperdht core, behind the simulator's NATs: the one pair
//! no punch opens (symmetric <-> symmetric) connects through the peer's relay, datagrams go
//! both ways through the same call as on a direct path, and the relay forwards for nobody
//! else.

use std::net::SocketAddrV4;
use std::time::Duration;

use bytes::Bytes;
use dht_rpc::Config;
use dht_sim::hyper::Punched;
use dht_sim::{NatKind, Sim, SimConfig, hyper};
use hyperdht::relay::{RelayLimits, RelayMsg};
use hyperdht::{BirthdayTry, Core, HolepunchError, HolepunchPath, PUNCH_ROUNDS};

// The `report!` macro the defence tests share (one source).
#[path = "../../dht-rpc/tests/common/mod.rs"]
#[macro_use]
mod common;

/// 0: us; 1: a public node to compare with; 2: the referrer; 3: the peer; 4: a relay. Us and
/// the peer behind `ours` and `theirs`; the peer reserves on the relay when `reserve`. Then
/// the peer and the referrer exchange pings, we ping the referrer and the public node, and
/// we punch to the peer as the referrer sees it.
fn punch_with_relay(
    ours: NatKind,
    theirs: NatKind,
    reserve: bool,
) -> (Sim<Core>, [SocketAddrV4; 5], SocketAddrV4, Punched) {
    punch_with_relays(ours, theirs, reserve, false)
}

/// [`punch_with_relay`], where we (the looker) may hold a reservation too.
fn punch_with_relays(
    ours: NatKind,
    theirs: NatKind,
    reserve: bool,
    we_reserve: bool,
) -> (Sim<Core>, [SocketAddrV4; 5], SocketAddrV4, Punched) {
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
    if we_reserve {
        sim.with_machine(n[0], |m, now| m.reserve(now, n[4]));
    }
    let peer = hyper::before_punch(&mut sim, n[0], n[1], n[2], n[3]);
    if reserve {
        assert_eq!(
            sim.machine(n[3]).and_then(|m| m.reservation()),
            Some((n[4], true)),
            "the relay holds the peer's reservation"
        );
    }
    if we_reserve {
        assert_eq!(
            sim.machine(n[0]).and_then(|m| m.reservation()),
            Some((n[4], true)),
            "the relay holds our reservation"
        );
    }
    let result = hyper::punch(&mut sim, n[0], peer, n[2]);
    (sim, n, peer, result)
}

/// The punch ended through a circuit on `relay` to `peer` (`whose`: whose relay, for the
/// log).
fn expect_circuit(result: Punched, relay: SocketAddrV4, peer: SocketAddrV4, whose: &str) {
    let h = result.unwrap_or_else(|e| panic!("no circuit through {whose}: {e}"));
    assert_eq!(h.path, HolepunchPath::Circuit { relay });
    assert_eq!(h.addr, peer);
    eprintln!("symmetric <-> symmetric through {whose} in {:?}", h.elapsed);
}

/// What the relay at `relay` did (it has the role).
fn relay_stats(sim: &Sim<Core>, relay: SocketAddrV4) -> hyperdht::relay::RelayStats {
    sim.machine(relay)
        .and_then(|m| m.relay_stats())
        .expect("the relay role")
}

/// Sends `count` datagrams from us to the peer over the path the punch opened, checks the
/// peer got each of them once (in any order: the simulated network may reorder), answers
/// one to where they came from and checks it reached us as from the peer. Returns what the
/// peer got.
fn both_ways(
    sim: &mut Sim<Core>,
    n: &[SocketAddrV4; 5],
    peer: SocketAddrV4,
    count: u8,
) -> Vec<(SocketAddrV4, Bytes)> {
    for i in 0..count {
        sim.with_machine(n[0], |m, _| {
            m.send_datagram(peer, Bytes::from(vec![0, 0, 9, i]))
        });
    }
    sim.run_for(Duration::from_millis(500));
    let got = hyper::datagrams(sim, n[3]);
    let mut payloads: Vec<Bytes> = got.iter().map(|(_, b)| b.clone()).collect();
    payloads.sort();
    let sent: Vec<Bytes> = (0..count).map(|i| Bytes::from(vec![0, 0, 9, i])).collect();
    assert_eq!(payloads, sent, "every datagram, once: {got:?}");
    let from = got[0].0;
    sim.with_machine(n[3], |m, _| {
        m.send_datagram(from, Bytes::from_static(b"\0\0\x09back"))
    });
    sim.run_for(Duration::from_millis(500));
    let back = hyper::datagrams(sim, n[0]);
    assert_eq!(back, vec![(peer, Bytes::from_static(b"\0\0\x09back"))]);
    got
}

#[test]
fn symmetric_to_symmetric_connects_through_the_peers_relay_both_ways() {
    let (mut sim, n, peer, result) = punch_with_relay(NatKind::Symmetric, NatKind::Symmetric, true);
    expect_circuit(result, n[4], peer, "the peer's relay");
    // Our datagrams reach the peer through the relay, and its answers reach us, each side
    // sending to the address it knows the other by, with the call of a direct path.
    let got = both_ways(&mut sim, &n, peer, 5);
    let from = got[0].0;
    assert!(got.iter().all(|(f, _)| *f == from));
    let stats = relay_stats(&sim, n[4]);
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
    let stats = relay_stats(&sim, n[4]);
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
        let stats = relay_stats(&sim, n[4]);
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
    let stats = relay_stats(&sim, n[4]);
    assert_eq!(stats.dropped_strangers, 20);
    assert_eq!(
        stats.challenged, 3,
        "the peer's first reserve, our first join, then the stranger's reserve"
    );
    assert_eq!(stats.reserved, 1, "only the peer's");
    assert_eq!(sim.machine(stranger).and_then(|m| m.reservation()), None);
    // A forged release (a made-up token, a guessed pairing) is only challenged: the circuit
    // stays, and the relay's server never saw it.
    let forged = RelayMsg::Release([0; 16], Some([7; 32])).encode();
    sim.with_core(stranger, |c, _| c.send_datagram(n[4], forged));
    sim.run_for(Duration::from_secs(1));
    let after = relay_stats(&sim, n[4]);
    assert_eq!(after.challenged, stats.challenged + 1);
    assert_eq!((after.released, after.release_ignored), (0, 0));
    assert_eq!(sim.machine(n[4]).and_then(|m| m.relay_load()), Some((1, 1)));
    // The figure docs/RELIABILITY.md shows (the soak's report reads it).
    report!(
        "relay_strangers",
        "stranger's 20 datagrams for guessed pairings: {} forwarded, {} dropped; its forged reserve: challenged, {} reservation (the honest peer's only)",
        stats.forwarded,
        stats.dropped_strangers,
        stats.reserved
    );
}

#[test]
fn a_direct_path_replaces_the_circuit_once_a_retry_opens_one() {
    let (mut sim, n, peer, result) = punch_with_relay(NatKind::Symmetric, NatKind::Symmetric, true);
    assert!(matches!(result, Ok(h) if matches!(h.path, HolepunchPath::Circuit { .. })));
    let forwarded = |sim: &Sim<Core>| relay_stats(sim, n[4]).forwarded;
    // Relayed while nothing changes: the retries (every UPGRADE_EVERY) fail quietly.
    sim.run_for(hyperdht::UPGRADE_EVERY + Duration::from_secs(10));
    let looker = sim.machine(n[0]).expect("us");
    assert_eq!((looker.circuit_paths(), looker.upgraded_paths()), (1, 0));
    assert!(
        sim.take_own_events(n[0]).is_empty(),
        "a retry reports nothing"
    );
    // Our NAT goes away (our IP stays, our port changes): the next retry opens a direct
    // path, and our datagrams to the peer leave the relay. We release the circuit from our
    // new port: the relay closes it at once (not at the end of its two minutes) and tells
    // the peer, which sends directly too.
    sim.set_nat(n[0], None);
    sim.run_for(hyperdht::UPGRADE_EVERY + Duration::from_secs(10));
    let looker = sim.machine(n[0]).expect("us");
    assert_eq!((looker.circuit_paths(), looker.upgraded_paths()), (0, 1));
    assert_eq!(
        looker.releases_pending(),
        0,
        "the relay confirmed the release"
    );
    let stats = relay_stats(&sim, n[4]);
    assert_eq!((stats.circuits, stats.released, stats.expired), (1, 1, 0));
    assert_eq!(
        sim.machine(n[4]).and_then(|m| m.relay_load()),
        Some((1, 0)),
        "the peer's reservation stays; the circuit is gone"
    );
    let other = sim.machine(n[3]).expect("the peer");
    assert_eq!(other.circuit_paths(), 0, "the peer heard it");
    let before = forwarded(&sim);
    hyper::datagrams(&mut sim, n[3]);
    sim.with_machine(n[0], |m, _| {
        m.send_datagram(peer, Bytes::from_static(b"\0\0\x09direct"))
    });
    sim.run_for(Duration::from_millis(500));
    let got = hyper::datagrams(&mut sim, n[3]);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, n[0], "straight from our own address now");
    sim.with_machine(n[3], |m, _| {
        m.send_datagram(n[0], Bytes::from_static(b"\0\0\x09back"))
    });
    sim.run_for(Duration::from_millis(500));
    // It comes from the port the peer's NAT gave its punch to us: the direct path's.
    let back = hyper::datagrams(&mut sim, n[0]);
    assert_eq!(back.len(), 1, "{back:?}");
    assert_eq!(back[0].1, Bytes::from_static(b"\0\0\x09back"));
    assert_eq!(
        back[0].0.ip(),
        peer.ip(),
        "from the peer's NAT, not the relay"
    );
    assert_eq!(forwarded(&sim), before, "neither way through the relay");
}

/// Another source attacks the relay while an honest pair talks through it: two attacker
/// hosts (each proved its IP: they hold the relay's token, as a challenge gives it) reserve,
/// bind more pairings than a peer may, join each other's to open circuits and blast data
/// past the circuits' budgets, and try pairings they guess, joins included. The honest
/// pair's datagrams, ten a second each way for 30 s, all arrive; every attacker datagram
/// past a limit is dropped and counted by reason (each count exact), and the relay forwards
/// for the attackers exactly their circuits' budgets.
#[test]
fn honest_pairs_keep_their_datagrams_while_another_source_attacks_the_relay() {
    let (mut sim, n, peer, result) = punch_with_relay(NatKind::Symmetric, NatKind::Symmetric, true);
    let h = result.expect("a circuit opened");
    assert_eq!(h.path, HolepunchPath::Circuit { relay: n[4] });
    let relay = n[4];
    let (a, b) = (
        hyper::add_node(&mut sim, Config::default()),
        hyper::add_node(&mut sim, Config::default()),
    );
    let token = |sim: &mut Sim<Core>, who: SocketAddrV4| {
        sim.with_core(relay, |c, _| c.roundtrip_token(*who.ip()))
            .expect("the relay")
    };
    let (ta, tb) = (token(&mut sim, a), token(&mut sim, b));
    let send = |sim: &mut Sim<Core>, from: SocketAddrV4, m: RelayMsg| {
        sim.with_core(from, |c, _| c.send_datagram(relay, m.encode()));
    };
    // Reservations (one each: one address per host), then binds past the per-peer limit.
    send(&mut sim, a, RelayMsg::Reserve(Some(ta)));
    send(&mut sim, b, RelayMsg::Reserve(Some(tb)));
    sim.run_for(Duration::from_millis(200));
    let hog: Vec<[u8; 16]> = (0..8u8).map(|i| [0xa0 | i; 16]).collect();
    // One at a time, so that the relay takes them in order: it binds the first four.
    for p in &hog {
        send(&mut sim, a, RelayMsg::Bind(*p, Some(ta)));
        sim.run_for(Duration::from_millis(20));
    }
    for p in &hog {
        send(&mut sim, b, RelayMsg::Join(*p, Some(tb)));
        sim.run_for(Duration::from_millis(20));
    }
    sim.run_for(Duration::from_millis(200));
    let before = relay_stats(&sim, relay);
    assert_eq!(
        before.circuits, 5,
        "the honest pair's and the four the attacker may bind"
    );

    // The honest side learns where the peer's datagrams come from.
    sim.with_machine(n[0], |m, _| {
        m.send_datagram(peer, Bytes::from_static(b"\0\0\x09hello"))
    });
    sim.run_for(Duration::from_millis(300));
    let first = hyper::datagrams(&mut sim, n[3]);
    assert_eq!(first.len(), 1, "{first:?}");
    let looker_as_seen = first[0].0;

    let blast = Bytes::from(vec![0x5a; 1_200]);
    let (mut sent_out, mut sent_back) = (0u32, 0u32);
    let (mut got_out, mut got_back) = (0usize, 0usize);
    let mut attacker_sent = 0u64;
    for tick in 0..300u32 {
        let i = tick.to_be_bytes();
        sim.with_machine(n[0], |m, _| {
            m.send_datagram(peer, Bytes::from(vec![0, 0, 9, 1, i[2], i[3]]))
        });
        sim.with_machine(n[3], |m, _| {
            m.send_datagram(looker_as_seen, Bytes::from(vec![0, 0, 9, 2, i[2], i[3]]))
        });
        sent_out += 1;
        sent_back += 1;
        for k in 0..20u32 {
            // Through their own circuits, past the budgets.
            let p = hog[(k % 4) as usize];
            let (from, data) = if k % 2 == 0 { (a, &blast) } else { (b, &blast) };
            send(&mut sim, from, RelayMsg::Data(p, data.clone()));
            attacker_sent += 1;
        }
        for k in 0..5u32 {
            // Guessed pairings: data, joins, binds.
            let mut guess = [0u8; 16];
            guess[..4].copy_from_slice(&(tick * 5 + k).to_be_bytes());
            send(&mut sim, a, RelayMsg::Data(guess, Bytes::from_static(b"x")));
            send(&mut sim, b, RelayMsg::Join(guess, Some(tb)));
            send(&mut sim, a, RelayMsg::Bind(guess, Some(ta)));
            send(&mut sim, b, RelayMsg::Reserve(Some(tb)));
            attacker_sent += 4;
        }
        sim.run_for(Duration::from_millis(100));
        got_out += hyper::datagrams(&mut sim, n[3])
            .iter()
            .filter(|(_, d)| d.get(3) == Some(&1))
            .count();
        got_back += hyper::datagrams(&mut sim, n[0])
            .iter()
            .filter(|(_, d)| d.get(3) == Some(&2))
            .count();
    }
    sim.run_for(Duration::from_millis(500));
    got_out += hyper::datagrams(&mut sim, n[3]).len();
    got_back += hyper::datagrams(&mut sim, n[0]).len();
    let s = relay_stats(&sim, relay);
    report!(
        "relay_under_attack",
        "two attacker hosts sent {attacker_sent} relay datagrams in 30 s (own circuits past their budget, guessed pairings, extra binds and joins): honest pair delivered {got_out}/{sent_out} out and {got_back}/{sent_back} back; relay dropped {} over budget, {} for strangers, refused {} per peer and {} unknown pairings; attacker circuits forwarded {} bytes (budget 4 x 2 x 128 KiB)",
        s.dropped_over_budget,
        s.dropped_strangers,
        s.refused_per_peer,
        s.refused_unknown_pairing,
        s.forwarded_bytes - before.forwarded_bytes
    );
    // The relay drops none of the honest pair's (the network here loses none either).
    assert_eq!((got_out, got_back), (sent_out as usize, sent_back as usize));
    // Each of the four circuits carried one direction of the blasts up to its budget, and
    // no further: the rest (of 20 a tick for 300 ticks) was dropped over budget.
    let len = RelayMsg::Data(hog[0], blast.clone()).encode().len() as u64;
    let per_circuit = RelayLimits::default().circuit_bytes / len;
    let blasts = 4 * per_circuit;
    assert_eq!(
        s.dropped_over_budget - before.dropped_over_budget,
        6000 - blasts
    );
    // The honest pair's 600 datagrams and its first one went through as well.
    assert_eq!(s.forwarded - before.forwarded, blasts + 601);
    // Every guessed pairing's datagram is a stranger's, every guessed join an unknown
    // pairing, and every extra bind over the per-peer limit (the attacker holds four).
    let delta = |after: u64, before: u64| after - before;
    assert_eq!(delta(s.dropped_strangers, before.dropped_strangers), 1500);
    assert_eq!(
        delta(s.refused_unknown_pairing, before.refused_unknown_pairing),
        1500
    );
    assert_eq!(delta(s.refused_per_peer, before.refused_per_peer), 1500);
}

/// Only the looker holds a reservation (the announcer configured no relay): its failed
/// punch offers its own relay to the peer, which joins, and the circuit carries datagrams
/// both ways as in the announcer's case.
#[test]
fn the_lookers_own_relay_connects_when_the_peer_has_none() {
    let (mut sim, n, peer, result) =
        punch_with_relays(NatKind::Symmetric, NatKind::Symmetric, false, true);
    expect_circuit(result, n[4], peer, "the looker's relay");
    both_ways(&mut sim, &n, peer, 3);
    let stats = relay_stats(&sim, n[4]);
    assert_eq!(stats.circuits, 1);
    // The joined notice, three datagrams out, one back.
    assert_eq!(stats.forwarded, 5);
}

/// A relayed session longer than a circuit: while we send through it, the circuit is
/// renewed before the relay's two minutes end it (a fresh pairing replaces it), so
/// datagrams keep arriving for five minutes; an idle circuit is left to end.
#[test]
fn a_circuit_in_use_is_renewed_before_it_ends() {
    let (mut sim, n, peer, result) = punch_with_relay(NatKind::Symmetric, NatKind::Symmetric, true);
    assert!(matches!(result, Ok(h) if matches!(h.path, HolepunchPath::Circuit { .. })));
    let mut per_minute = Vec::new();
    for _minute in 0..5 {
        let mut got = 0;
        for i in 0..30u8 {
            sim.with_machine(n[0], |m, _| {
                m.send_datagram(peer, Bytes::from(vec![0, 0, 9, i]))
            });
            sim.run_for(Duration::from_secs(2));
            got += hyper::datagrams(&mut sim, n[3]).len();
        }
        per_minute.push(got);
    }
    let stats = relay_stats(&sim, n[4]);
    eprintln!(
        "datagrams per minute through renewed circuits: {per_minute:?}; circuits joined {}, expired {}",
        stats.circuits, stats.expired
    );
    // A lost datagram or two while a renewal lands may go; none of the minutes goes dark.
    assert!(per_minute.iter().all(|m| *m >= 28), "{per_minute:?}");
    assert!(stats.circuits >= 3, "renewed: {}", stats.circuits);
    // Each renewal released the circuit it replaced: none ran to the end of its lifetime.
    assert_eq!(stats.released, stats.circuits - 1, "{stats:?}");
    assert_eq!(stats.expired, 0, "{stats:?}");
    // Idle from here on: the circuit that carried the last datagrams is renewed once more
    // (it was used since its last renewal), then nothing is, and the circuits end.
    sim.run_for(hyperdht::RENEW_AFTER + Duration::from_secs(15));
    let joined = |sim: &Sim<Core>| relay_stats(sim, n[4]).circuits;
    let after_last_use = joined(&sim);
    assert!(after_last_use <= stats.circuits + 1);
    sim.run_for(Duration::from_secs(5 * 60));
    assert_eq!(joined(&sim), after_last_use, "no renewal while idle");
    let load = sim.machine(n[4]).and_then(|m| m.relay_load());
    assert_eq!(load.map(|(_, c)| c), Some(0), "no circuit left");
}
