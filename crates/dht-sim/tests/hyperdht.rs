//! hyperdht's core (`hyperdht::Core`: the peer store, kept announcements, maintenance) in
//! the simulator, in virtual time: a kept announcement outlives the nodes that first stored
//! it, where one announced once does not.

use std::net::SocketAddrV4;
use std::time::Duration;

use dht_rpc::{Config, QuerySpec};
use dht_sim::{Sim, SimConfig};
use dht_wire::{PEERS, PeersResponse};
use hyperdht::{AnnounceOptions, Core, Key, PeerStore, PeersHandler, REANNOUNCE};

fn node(sim: &mut Sim<Core>, config: Config) -> SocketAddrV4 {
    sim.add_machine(config, |config, now| {
        let seed = config.seed;
        let rpc =
            dht_rpc::Core::with_handler(config, PeersHandler::new(PeerStore::default(), seed), now);
        Core::new(rpc, now)
    })
}

/// The announced ports a lookup of `key` from `from` finds.
fn lookup(sim: &mut Sim<Core>, from: SocketAddrV4, key: Key) -> Vec<u16> {
    let value = AnnounceOptions::default()
        .request(dht_wire::PeersRequestType::Lookup)
        .encode();
    let (replies, _) = sim.run_query(from, QuerySpec::query(PEERS, key, Some(value)));
    let mut ports: Vec<u16> = replies
        .iter()
        .filter_map(|r| r.value.as_deref())
        .filter_map(|v| PeersResponse::decode(v).ok())
        .filter_map(|p| p.peers.and_then(|p| p.into_valid()))
        .flatten()
        .map(|a| a.port())
        .collect();
    ports.sort_unstable();
    ports.dedup();
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
    let entry = node(
        &mut sim,
        Config {
            ephemeral: true,
            ..Config::default()
        },
    );
    let config = Config {
        bootstrap: vec![entry],
        ..Config::default()
    };
    let nodes: Vec<_> = (0..150).map(|_| node(&mut sim, config.clone())).collect();
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
    let value = AnnounceOptions::default().port(2222);
    let value = value.request(dht_wire::PeersRequestType::Announce).encode();
    let (_, done) = sim.run_query(once, QuerySpec::update(PEERS, once_key, Some(value)));
    assert!(done.is_ok_and(|o| o.commits > 0), "announced once");
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
