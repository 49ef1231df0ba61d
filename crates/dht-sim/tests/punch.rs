//! Hole punching through the simulator's NATs, with the whole hyperdht core: the direct
//! probe, the relayed ping, the symmetric-NAT check and the birthday punch (its 256 extra
//! sockets each with a binding of its own), and the 5 x 5 matrix of the NAT lab, cell for
//! cell against docs/NAT.md.

use std::net::SocketAddrV4;
use std::time::Duration;

use dht_rpc::Config;
use dht_sim::hyper::Punched;
use dht_sim::{NatKind, Sim, SimConfig, hyper, lab};
use hyperdht::{
    BIRTHDAY_SPRAYS, BirthdayTry, Core, HolepunchError, HolepunchPath, PUNCH_INTERVAL, PUNCH_ROUNDS,
};

/// 0: us; 1: a public node to compare with; 2: the referrer; 3: the peer. We know the public
/// node and the referrer (our bootstrap list: the symmetric-NAT check asks two nodes).
fn four(seed: u64) -> (Sim<Core>, [SocketAddrV4; 4]) {
    let mut sim = Sim::of_machines(SimConfig {
        seed,
        ..SimConfig::default()
    });
    let others: Vec<SocketAddrV4> = (1..4).map(dht_sim::host_addr).collect();
    let us = hyper::add_node(
        &mut sim,
        Config {
            bootstrap: others[..2].to_vec(),
            ..Config::default()
        },
    );
    let rest: Vec<_> = (0..3)
        .map(|_| hyper::add_node(&mut sim, Config::default()))
        .collect();
    assert_eq!(rest, others, "the simulator's addresses");
    (sim, [us, rest[0], rest[1], rest[2]])
}

/// Puts us behind `a` and the peer behind `b`; the peer and the referrer exchange pings (so
/// that the referrer's relayed ping reaches the peer, as it reaches a node of its table), we
/// ping the referrer and the public node; then we punch to the peer as the referrer sees it.
/// The punch's outcome, and the peer's address it aimed at.
fn punch_across(a: NatKind, b: NatKind, seed: u64) -> (Sim<Core>, [SocketAddrV4; 4], Punched) {
    punch_across_with(a, b, seed, false)
}

/// [`punch_across`], with a relay (a fifth node) the peer reserves on first when `relay`,
/// as the NAT lab's announcers do.
fn punch_across_with(
    a: NatKind,
    b: NatKind,
    seed: u64,
    relay: bool,
) -> (Sim<Core>, [SocketAddrV4; 4], Punched) {
    let (mut sim, n) = four(seed);
    sim.set_nat(n[0], a.nat());
    sim.set_nat(n[3], b.nat());
    if relay {
        let r = hyper::add_node(&mut sim, Config::default());
        sim.with_machine(r, |m, _| {
            m.set_relay(Some(hyperdht::relay::RelayLimits::default()))
        });
        sim.with_machine(n[3], |m, now| m.reserve(now, r));
    }
    let peer = hyper::before_punch(&mut sim, n[0], n[1], n[2], n[3]);
    let result = hyper::punch(&mut sim, n[0], peer, n[2]);
    (sim, n, result)
}

#[test]
fn an_open_peer_answers_the_direct_probe_at_once() {
    let (mut sim, n) = four(1);
    let h = hyper::punch(&mut sim, n[0], n[3], n[2]).expect("opened");
    assert_eq!(h.path, HolepunchPath::Direct);
    assert_eq!(h.addr, n[3]);
    assert_eq!(hyper::punches(&sim, n[0]), 0, "forgotten once done");
}

#[test]
fn behind_a_filter_the_relayed_ping_opens_the_path() {
    let (sim, n, result) = punch_across(NatKind::Open, NatKind::PortRestricted, 1);
    let h = result.expect("opened");
    assert_eq!(h.path, HolepunchPath::Relayed, "the peer's pong came back");
    assert!(
        sim.core(n[2]).expect("referrer").stats().forwards >= 1,
        "relayed by the referrer"
    );
}

#[test]
fn a_silent_peer_gets_every_round_then_the_punch_fails() {
    let (mut sim, n) = four(1);
    sim.set_up(n[3], false);
    sim.log_sends(true);
    let to = |sim: &Sim<Core>, dest: SocketAddrV4| {
        sim.sends()
            .iter()
            .filter(|s| s.node == n[0] && s.to == dest)
            .count()
    };
    let id = sim
        .with_machine(n[0], |m, now| m.holepunch(now, n[3], n[2], true))
        .expect("us");
    sim.run_for(PUNCH_INTERVAL * (PUNCH_ROUNDS - 1) - Duration::from_millis(1));
    assert_eq!(
        to(&sim, n[3]),
        PUNCH_ROUNDS as usize - 1,
        "a direct probe every interval"
    );
    sim.run_for(Duration::from_secs(10));
    let ended: Vec<_> = sim
        .take_own_events(n[0])
        .into_iter()
        .filter_map(|e| match e {
            hyperdht::CoreEvent::Punched { punch, result } if punch == id => Some(result),
            _ => None,
        })
        .collect();
    assert_eq!(
        ended,
        vec![Err(HolepunchError::NoAnswer {
            peer: n[3],
            rounds: PUNCH_ROUNDS,
            relayed: true,
            birthday: BirthdayTry::EasySide,
        })],
        "ends once, after the birthday punch from the easy side (the two nodes we asked saw one port)"
    );
    assert!(
        to(&sim, n[3]) >= PUNCH_ROUNDS as usize,
        "every round's probe"
    );
    assert!(
        to(&sim, n[2]) >= PUNCH_ROUNDS as usize,
        "each with a relayed ping"
    );
    // The silent peer never challenged our hint: nothing sprayed at its IP (a peer that is
    // there would have), and the punch ended after the wait.
    let sprays = sim
        .sends()
        .iter()
        .filter(|s| s.node == n[0] && s.to.ip() == n[3].ip() && s.to != n[3])
        .count();
    assert_eq!(sprays, 0, "no spray without the peer's challenge");
    assert_eq!(hyper::punches(&sim, n[0]), 0);
}

#[test]
fn behind_a_symmetric_nat_the_birthday_punch_meets_a_port_restricted_peer() {
    let (mut sim, n, result) = punch_across(NatKind::Symmetric, NatKind::PortRestricted, 1);
    let h = result.expect("the birthday punch met");
    assert_eq!(h.path, HolepunchPath::Birthday);
    assert_eq!(h.addr, n[3]);
    let us = sim.machine(n[0]).expect("us");
    assert_eq!(us.paths(), 1, "the path through the socket that met");
    assert_eq!(sim.sockets(n[0]), 1, "the other 255 sockets closed");
    // Application datagrams now go both ways on that path.
    sim.with_machine(n[0], |m, _| {
        m.send_datagram(n[3], bytes::Bytes::from_static(b"\0\0\x07hi"))
    });
    sim.run_for(Duration::from_millis(200));
    let got = hyper::datagrams(&mut sim, n[3]);
    assert_eq!(got.len(), 1, "delivered once: {got:?}");
    assert_eq!(&got[0].1[..], b"\0\0\x07hi");
    let back = got[0].0;
    assert_ne!(
        back.port(),
        dht_sim::PORT,
        "from our NAT's port of that socket"
    );
    sim.with_machine(n[3], |m, _| {
        m.send_datagram(back, bytes::Bytes::from_static(b"\0\0\x07ho"))
    });
    sim.run_for(Duration::from_millis(200));
    let got = hyper::datagrams(&mut sim, n[0]);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(&got[0].1[..], b"\0\0\x07ho");
}

#[test]
fn toward_a_symmetric_nat_we_spray_and_the_peer_acknowledges() {
    let (sim, n, result) = punch_across(NatKind::PortRestricted, NatKind::Symmetric, 1);
    let h = result.expect("the birthday punch met");
    assert_eq!(h.path, HolepunchPath::Birthday);
    assert_eq!(h.addr.ip(), n[3].ip(), "the peer's NAT");
    assert_ne!(
        Some(h.addr),
        sim.seen_as(n[3], n[2]),
        "a port of its own, not the one toward the referrer"
    );
    let out = sim.core(n[0]).expect("us").stats().datagrams_out;
    assert!(
        out < BIRTHDAY_SPRAYS as u64,
        "spraying stopped at the acknowledgement: {out} sent in all"
    );
    assert_eq!(
        sim.machine(n[0]).expect("us").paths(),
        0,
        "our side uses the DHT socket"
    );
}

#[test]
fn without_a_relay_only_direct_probes_go_out() {
    let (mut sim, n) = four(1);
    sim.set_up(n[3], false);
    sim.log_sends(true);
    let result = hyper::punch(&mut sim, n[0], n[3], n[3]);
    assert!(
        matches!(
            result,
            Err(HolepunchError::NoAnswer {
                relayed: false,
                birthday: BirthdayTry::NotTried,
                ..
            })
        ),
        "{result:?}"
    );
    let ours: Vec<SocketAddrV4> = sim
        .sends()
        .iter()
        .filter(|s| s.node == n[0])
        .map(|s| s.to)
        .collect();
    assert!(
        ours.len() >= PUNCH_ROUNDS as usize,
        "every round's probe: {ours:?}"
    );
    assert!(
        ours.iter().all(|to| *to == n[3]),
        "only to the peer: {ours:?}"
    );
}

#[test]
fn every_cell_of_the_nat_lab_matrix_gives_the_labs_outcome() {
    let cells = lab::rust_matrix(lab::NAT_MD);
    assert_eq!(
        cells.len(),
        25,
        "docs/NAT.md has the 5 x 5 Rust <-> Rust matrix"
    );
    let mut table = String::new();
    for lab::LabCell {
        announcer,
        looker,
        opened,
        ms,
    } in cells
    {
        // We are the looker; the peer is the announcer.
        let (_sim, _n, result) = punch_across_with(looker, announcer, 7, true);
        let got = result.as_ref().map(|h| h.path);
        table += &format!("{announcer:?} <- {looker:?}: {got:?} (lab: {opened}, {ms:?} ms)\n");
        assert_eq!(
            got.is_ok(),
            opened,
            "{announcer:?} announcer, {looker:?} looker: {result:?}"
        );
        // The lab's slow cells (seconds) are the birthday punch's, and symmetric <->
        // symmetric's circuit through the announcer's relay.
        let both = announcer == NatKind::Symmetric && looker == NatKind::Symmetric;
        let birthday = ms.is_some_and(|t| t > 1000) && !both;
        if opened {
            assert_eq!(
                got == Ok(HolepunchPath::Birthday),
                birthday,
                "{announcer:?} announcer, {looker:?} looker: {got:?}, lab {ms:?} ms"
            );
            assert_eq!(
                matches!(got, Ok(HolepunchPath::Circuit { .. })),
                both,
                "{announcer:?} announcer, {looker:?} looker: {got:?}"
            );
        }
    }
    println!("{table}");
}
