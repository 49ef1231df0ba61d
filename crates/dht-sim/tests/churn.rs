//! Churn: the oldest 10% of a 2000-node network leave, 1% of datagrams are lost; after the
//! liveness sweeps and one re-bootstrap round, lookups still find the true closest nodes.
//! (The oldest are the hard case: every table's far buckets hold them, and at this size,
//! without the bootstrap nodes bridging the table's own walks, only ~81% are found.)

use std::time::Duration;

use dht_sim::{Sim, SimConfig};

#[test]
fn lookups_survive_the_oldest_nodes_leaving() {
    let (mut sim, _entry, nodes) = Sim::network(
        SimConfig {
            seed: 3,
            loss: 0.01,
            ..SimConfig::default()
        },
        2000,
    );
    let (gone, live) = nodes.split_at(200);
    for &a in gone {
        sim.set_up(a, false);
    }
    sim.run_for(Duration::from_secs(600));
    for &a in live {
        sim.with_core(a, |c, now| c.bootstrap(now));
        sim.run_for(Duration::from_millis(2));
    }
    sim.run_for(Duration::from_secs(10));
    let (exact, found) = sim.check_lookups(live, 50);
    eprintln!(
        "after churn: {exact}/50 lookups exact, {:.1}% of the true closest found",
        found * 100.0
    );
    assert!(
        found >= 0.97,
        "only {:.1}% of the true closest found",
        found * 100.0
    );
}
