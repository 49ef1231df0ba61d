//! A 300-node network in virtual time: after bootstrap, `_find_node` queries for random
//! targets find exactly the 20 closest live nodes, and the same seed replays the same run.

use dht_rpc::{NodeId, QuerySpec};
use dht_sim::{Sim, SimConfig};

const NODES: usize = 300;
const QUERIES: usize = 100;

/// Runs the experiment; returns how many queries found exactly the 20 closest, and every
/// query's closest list (for the determinism check).
fn run(seed: u64) -> (usize, Vec<Vec<NodeId>>) {
    let (mut sim, _entry, nodes) = Sim::network(
        SimConfig {
            seed,
            ..SimConfig::default()
        },
        NODES,
    );
    let ids = sim.live_ids();
    let mut exact = 0;
    let mut lists = Vec::new();
    for i in 0..QUERIES {
        let target = sim.random_id();
        let from = nodes[(i * 7919) % NODES];
        let own = sim.core(from).map(|c| c.id()).expect("node");
        let (_, result) = sim.run_query(from, QuerySpec::query("_find_node", target, None));
        let got: Vec<NodeId> = result
            .expect("query succeeds")
            .closest
            .iter()
            .map(|n| n.id)
            .collect();
        let mut want: Vec<NodeId> = ids.iter().copied().filter(|id| *id != own).collect();
        want.sort_by_key(|id| id.distance(&target));
        want.truncate(20);
        if got == want {
            exact += 1;
        }
        lists.push(got);
    }
    (exact, lists)
}

#[test]
fn find_node_returns_the_20_closest_live_nodes_and_replays() {
    let (exact, lists) = run(7);
    eprintln!("exact closest-20 in {exact} of {QUERIES} queries on {NODES} nodes");
    assert!(
        exact * 100 >= QUERIES * 99,
        "only {exact} of {QUERIES} exact"
    );
    let (exact2, lists2) = run(7);
    assert_eq!((exact, &lists), (exact2, &lists2), "same seed, same run");
}
