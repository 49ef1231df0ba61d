//! hyperdht's core (`hyperdht::Core`: the peer store, kept announcements, maintenance) in
//! the simulator, in virtual time: a kept announcement outlives the nodes that first stored
//! it, where one announced once does not.

use std::net::SocketAddrV4;
use std::time::Duration;

use dht_rpc::{Config, QueryError};
use dht_sim::{Sim, SimConfig, hyper};
use hyperdht::{AnnounceOptions, Core, Key, REANNOUNCE};

/// The announced ports a lookup of `key` from `from` finds.
fn lookup(sim: &mut Sim<Core>, from: SocketAddrV4, key: Key) -> Vec<u16> {
    let mut ports: Vec<u16> = hyper::lookup(sim, from, key)
        .peers
        .iter()
        .map(|a| a.port())
        .collect();
    ports.sort_unstable();
    ports
}

/// The nodes whose store holds `key`.
fn holders(sim: &Sim<Core>, nodes: &[SocketAddrV4], key: &Key) -> Vec<SocketAddrV4> {
    nodes
        .iter()
        .copied()
        .filter(|a| sim.core(*a).is_some_and(|c| c.handler().store().has(key)))
        .collect()
}

#[test]
fn a_kept_announcement_outlives_the_nodes_that_stored_it() {
    let mut sim: Sim<Core> = Sim::of_machines(SimConfig::default());
    let (_entry, nodes) = hyper::network(&mut sim, 150);
    sim.bootstrap_all();
    let (keeper, once) = (nodes[0], nodes[1]);
    // Two keys far from the keeper (it must not store the other's announce).
    let ids = sim.live_ids();
    let keeper_id = sim.core(keeper).expect("keeper").id();
    let mut far = (1..=255u8).map(|b| Key::from_bytes([b; 32])).filter(|k| {
        let mut by: Vec<_> = ids.clone();
        by.sort_by_key(|id| id.distance(k));
        !by[..40].contains(&keeper_id)
    });
    let (kept_key, once_key) = (far.next().expect("a key"), far.next().expect("a key"));
    sim.with_machine(keeper, |m, now| {
        m.keep(now, kept_key, AnnounceOptions::default().port(1111), true)
    });
    let done = hyper::announce(
        &mut sim,
        once,
        once_key,
        AnnounceOptions::default().port(2222),
    );
    assert_eq!(done.ok(), Some(20), "announced once, to the 20 closest");
    sim.run_for(Duration::from_secs(10));
    assert_eq!(lookup(&mut sim, nodes[2], kept_key), vec![1111]);
    assert_eq!(lookup(&mut sim, nodes[2], once_key), vec![2222]);

    // Every node that stored either key goes down (the announcers stay).
    let mut gone = holders(&sim, &nodes, &kept_key);
    gone.extend(holders(&sim, &nodes, &once_key));
    gone.push(once);
    gone.retain(|a| *a != keeper);
    gone.sort_unstable();
    gone.dedup();
    assert!(gone.len() >= 20, "stored on the closest: {}", gone.len());
    for &a in &gone {
        sim.set_up(a, false);
    }
    let live: Vec<_> = nodes
        .iter()
        .copied()
        .filter(|a| !gone.contains(a))
        .collect();
    let still = holders(&sim, &live, &kept_key);
    assert!(
        lookup(&mut sim, live[2], kept_key).is_empty(),
        "gone with its storers: {still:?}, keeper {keeper}, {} gone",
        gone.len()
    );

    // Within one re-announce period, the keeper stores it on the new closest nodes.
    sim.run_for(REANNOUNCE.1 + Duration::from_secs(10));
    let events = sim.take_own_events(keeper);
    let announced = events
        .iter()
        .filter(|e| matches!(e, hyperdht::CoreEvent::Announced { result: Ok(n), .. } if *n > 0))
        .count();
    assert!(announced >= 2, "announced, then again: {events:?}");
    assert_eq!(
        lookup(&mut sim, live[3], kept_key),
        vec![1111],
        "found again"
    );
    assert!(
        lookup(&mut sim, live[3], once_key).is_empty(),
        "an announce that nobody keeps is lost with its storers"
    );
    assert!(holders(&sim, &live, &kept_key).len() >= 10);
}

/// Four nodes that know each other (the first bootstraps from the other three), no entry.
fn four() -> (Sim<Core>, Vec<SocketAddrV4>) {
    let mut sim: Sim<Core> = Sim::of_machines(SimConfig::default());
    let others: Vec<SocketAddrV4> = (1..4).map(dht_sim::host_addr).collect();
    let first = hyper::add_node(
        &mut sim,
        Config {
            bootstrap: others.clone(),
            ..Config::default()
        },
    );
    let rest: Vec<_> = (0..3)
        .map(|_| hyper::add_node(&mut sim, Config::default()))
        .collect();
    assert_eq!(rest, others);
    let mut all = vec![first];
    all.extend(rest);
    (sim, all)
}

fn announced(sim: &mut Sim<Core>, node: SocketAddrV4, seen: &mut Vec<Result<usize, QueryError>>) {
    for e in sim.take_own_events(node) {
        if let hyperdht::CoreEvent::Announced { result, .. } = e {
            seen.push(result);
        }
    }
}

#[test]
fn a_kept_announcement_is_announced_again_then_unannounced() {
    let (mut sim, n) = four();
    let key = Key::from_bytes([7; 32]);
    let mut seen = Vec::new();
    let opts = AnnounceOptions::new(Some(7777), None);
    let id = sim
        .with_machine(n[0], |m, now| m.keep(now, key, opts, true))
        .expect("node");
    sim.run_for(Duration::from_secs(10));
    announced(&mut sim, n[0], &mut seen);
    assert_eq!(seen, vec![Ok(3)], "announced at once, on all three");
    assert_eq!(holders(&sim, &n[1..], &key), n[1..].to_vec());
    sim.run_for(REANNOUNCE.0 - Duration::from_secs(20));
    announced(&mut sim, n[0], &mut seen);
    assert_eq!(seen.len(), 1, "not before 4 minutes");
    sim.run_for(REANNOUNCE.1 - REANNOUNCE.0 + Duration::from_secs(20));
    announced(&mut sim, n[0], &mut seen);
    assert_eq!(seen.len(), 2, "again within 5 minutes");
    sim.run_for(REANNOUNCE.1 * 2);
    announced(&mut sim, n[0], &mut seen);
    assert_eq!(seen, vec![Ok(3); 4], "and so on, on all three each time");
    let q = sim.start_query(n[0], |m, now| {
        m.stop_keeping(now, id).expect("an unannounce walk")
    });
    assert!(q.is_some());
    assert_eq!(sim.machine(n[0]).expect("node").kept(), 0);
    sim.run_for(Duration::from_secs(10));
    assert!(
        holders(&sim, &n[1..], &key).is_empty(),
        "unannounced everywhere"
    );
    sim.run_for(REANNOUNCE.1 * 2);
    announced(&mut sim, n[0], &mut seen);
    assert_eq!(seen.len(), 4, "never again");
    let again = sim.with_machine(n[0], |m, now| m.stop_keeping(now, id));
    assert_eq!(again, Some(None), "stopped once");
}

#[test]
fn a_key_kept_after_its_own_announce_waits_for_the_first_deadline() {
    let (mut sim, n) = four();
    let key = Key::from_bytes([8; 32]);
    let mut seen = Vec::new();
    sim.with_machine(n[0], |m, now| {
        m.keep(now, key, AnnounceOptions::default(), false)
    });
    sim.run_for(REANNOUNCE.0 - Duration::from_secs(1));
    announced(&mut sim, n[0], &mut seen);
    assert!(seen.is_empty());
    assert!(holders(&sim, &n[1..], &key).is_empty());
    sim.run_for(REANNOUNCE.1 - REANNOUNCE.0 + Duration::from_secs(2));
    announced(&mut sim, n[0], &mut seen);
    assert_eq!(seen, vec![Ok(3)]);
}

#[test]
fn the_same_seed_gives_the_same_run_and_another_seed_another() {
    let run = |seed: u64| {
        let mut sim: Sim<Core> = Sim::of_machines(SimConfig {
            seed,
            loss: 0.05,
            duplicate: 0.02,
            reorder: 0.05,
            internet: true,
            ..SimConfig::default()
        });
        let (_entry, nodes) = hyper::network(&mut sim, 40);
        for (i, &a) in nodes.iter().enumerate() {
            let kind = dht_sim::NatKind::ALL[i % 5];
            sim.set_nat(a, kind.nat());
        }
        sim.bootstrap_all();
        let key = Key::from_bytes([3; 32]);
        let stored = hyper::announce(&mut sim, nodes[0], key, AnnounceOptions::default());
        let found = hyper::lookup(&mut sim, nodes[7], key);
        sim.run_for(Duration::from_secs(30));
        (sim.trace(), sim.delivered, stored, found.peers)
    };
    let a = run(5);
    assert_eq!(a, run(5), "replayed");
    assert!(a.1 > 1000, "a real run: {} delivered", a.1);
    assert_ne!(a.0, run(6).0, "another seed, another run");
}
