//! Liveness, eviction and hole punching inside queries, in virtual time.

use std::time::Duration;

use dht_rpc::{Config, QuerySpec};
use dht_sim::{Sim, SimConfig};

fn node(sim: &mut Sim, entry: std::net::SocketAddrV4) -> std::net::SocketAddrV4 {
    sim.add_node(Config {
        bootstrap: vec![entry],
        ..Config::default()
    })
}

/// An entry node and 30 nodes, bootstrapped.
fn thirty() -> (Sim, Vec<std::net::SocketAddrV4>) {
    let mut sim = Sim::new(SimConfig::default());
    let entry = sim.add_node(Config {
        ephemeral: true,
        ..Config::default()
    });
    let nodes: Vec<_> = (0..30).map(|_| node(&mut sim, entry)).collect();
    sim.bootstrap_all();
    (sim, nodes)
}

#[test]
fn a_node_that_goes_silent_is_dropped_by_the_sweep() {
    let (mut sim, nodes) = thirty();
    let gone = nodes[0];
    let gone_id = sim.core(gone).expect("node").id();
    let knew = nodes[1..]
        .iter()
        .filter(|a| {
            sim.core(**a)
                .is_some_and(|c| c.table().get(&gone_id).is_some())
        })
        .count();
    assert!(knew > 10, "most nodes know it first: {knew}");
    sim.set_up(gone, false);
    // The sweep goes round a table in SWEEP_PERIOD (the contacts not seen for
    // SWEEP_AFTER); a ping that fails is given up at the request timeout.
    sim.run_for(dht_rpc::SWEEP_PERIOD + dht_rpc::SWEEP_AFTER + Duration::from_secs(10));
    let still = nodes[1..]
        .iter()
        .filter(|a| {
            sim.core(**a)
                .is_some_and(|c| c.table().get(&gone_id).is_some())
        })
        .count();
    assert_eq!(still, 0, "no table keeps a silent node");
    // The live ones stay.
    let live_id = sim.core(nodes[2]).expect("node").id();
    let keep = nodes[3..]
        .iter()
        .filter(|a| {
            sim.core(**a)
                .is_some_and(|c| c.table().get(&live_id).is_some())
        })
        .count();
    assert!(keep > 10, "live nodes stay known: {keep}");
}

#[test]
fn a_query_punches_through_the_referrer_to_a_filtered_node_and_retries() {
    let mut sim = Sim::new(SimConfig::default());
    let entry = sim.add_node(Config {
        ephemeral: true,
        ..Config::default()
    });
    let _r = node(&mut sim, entry);
    let x = node(&mut sim, entry);
    let a = node(&mut sim, entry);
    // x sits behind a port-restricted NAT: it answers only those it has sent to; it talks to
    // the entry and r while bootstrapping, never to a (down meanwhile).
    sim.set_filtering(x, true);
    sim.set_up(a, false);
    sim.bootstrap_all();
    sim.set_up(a, true);
    let x_id = sim.core(x).expect("x").id();
    let (_, outcome) = sim.run_query(a, QuerySpec::query("_find_node", x_id, None));
    let outcome = outcome.expect("query");
    assert!(
        outcome.closest.iter().any(|n| n.id == x_id),
        "x answered after the punch: {outcome:?}"
    );
    let stats = sim.core(entry).expect("entry").stats();
    assert!(
        stats.forwards >= 1,
        "the referrer relayed the punch: {stats:?}"
    );
    assert!(
        sim.core(a).expect("a").stats().stalled >= 1,
        "the first try went unanswered"
    );
}

/// A walk that meets a dead node does not wait the timeout for it, drops it from the table,
/// and the next walk does not take it from others' answers (their tables still hold it).
#[test]
fn a_dead_node_costs_one_walk_a_few_round_trips_and_the_next_nothing() {
    let (mut sim, nodes) = thirty();
    let (gone, asker) = (nodes[0], nodes[1]);
    let gone_id = sim.core(gone).expect("gone").id();
    sim.set_up(gone, false);
    let start = sim.elapsed();
    let (_, outcome) = sim.run_query(asker, QuerySpec::query("_find_node", gone_id, None));
    let took = sim.elapsed() - start;
    let outcome = outcome.expect("the walk ends without it");
    assert!(outcome.closest.iter().all(|n| n.id != gone_id));
    assert_eq!(
        outcome.closest.len(),
        20,
        "the 20 closest of the 28 others alive"
    );
    assert!(
        took < dht_rpc::DEFAULT_REQUEST_TIMEOUT,
        "ended in {took:?}, before the dead node's timeout"
    );
    // Its requests time out later (1.25 s after they went out): then it is dead.
    sim.run_for(Duration::from_secs(3));
    let marked = sim
        .with_core(asker, |c, now| c.is_marked_dead(now, gone))
        .unwrap_or(false);
    assert!(marked, "marked dead");
    let a = sim.core(asker).expect("asker");
    assert!(a.table().get(&gone_id).is_none(), "out of the table");
    let before = a.stats();
    let (_, outcome) = sim.run_query(asker, QuerySpec::query("_find_node", gone_id, None));
    outcome.expect("walk");
    let after = sim.core(asker).expect("asker").stats();
    assert!(
        after.dead_skipped > before.dead_skipped,
        "others named it, the walk did not take it: {after:?}"
    );
    assert_eq!(after.stalled, before.stalled, "nothing to wait for");
}
