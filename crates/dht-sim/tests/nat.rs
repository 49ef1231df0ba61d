//! NAT at scale: a third of a 1000-node network sits behind port-restricted NATs (a
//! datagram gets in only from an address the node sent to lately: 30 s, or 120 s once
//! something came back, as Linux's connection tracking keeps UDP flows).
//!
//! Without the reachability check those nodes send their ids like everyone else, land in
//! routing tables with addresses nobody can reach, and lookups miss them or wait on them.
//! With `Config::adaptive` they find out they are firewalled and go ephemeral: lookups find
//! the true closest of the nodes that offer themselves, and no public node wrongly calls
//! itself firewalled.

use std::time::Duration;

use dht_rpc::Config;
use dht_sim::{Sim, SimConfig};

/// Runs the network; returns (fraction of the true closest found, filtered nodes, filtered
/// nodes that found themselves firewalled, public nodes that wrongly did, exact lookups of 50).
fn run(adaptive: bool) -> (f64, usize, usize, usize, usize) {
    let (mut sim, _entry, nodes) = Sim::network_with(
        SimConfig {
            seed: 11,
            ..SimConfig::default()
        },
        1000,
        1.0 / 3.0,
        Config {
            adaptive,
            ..Config::default()
        },
    );
    // Time for liveness sweeps, then a re-bootstrap round as long-lived nodes do.
    sim.run_for(Duration::from_secs(300));
    for &a in &nodes {
        sim.with_core(a, |c, now| c.bootstrap(now));
        sim.run_for(Duration::from_millis(2));
    }
    sim.run_for(Duration::from_secs(10));
    let firewalled = |sim: &Sim, a| sim.core(a).is_some_and(|c| c.is_firewalled());
    let behind = nodes.iter().filter(|a| sim.is_filtering(**a)).count();
    let caught = nodes
        .iter()
        .filter(|a| sim.is_filtering(**a) && firewalled(&sim, **a))
        .count();
    let wrong = nodes
        .iter()
        .filter(|a| !sim.is_filtering(**a) && firewalled(&sim, **a))
        .count();
    let (exact, found) = sim.check_lookups(&nodes, 50);
    eprintln!(
        "adaptive {adaptive}: {caught}/{behind} filtered nodes found themselves firewalled, {wrong} public ones wrongly; {exact}/50 lookups exact, {:.1}% of the true closest found",
        found * 100.0
    );
    (found, behind, caught, wrong, exact)
}

#[test]
fn firewalled_nodes_go_ephemeral_and_lookups_stay_exact() {
    let (found, behind, caught, wrong, _exact) = run(true);
    assert!(behind > 300, "a third behind filters: {behind}");
    assert_eq!(wrong, 0, "no public node calls itself firewalled");
    assert!(
        caught * 10 >= behind * 8,
        "most filtered nodes notice: {caught}/{behind}"
    );
    assert!(found >= 0.95, "found {:.1}%", found * 100.0);
}

#[test]
fn without_the_check_filtered_nodes_poison_lookups() {
    // The reference's behaviour, kept as the default: this is what the check is for, and
    // it keeps the first test honest (the scenario really is hard).
    // (The liveness sweep drops many of the filtered nodes from tables, as they do not
    // answer its pings: 97.4 % of the true closest found at seed 11, 35/50 lookups exact,
    // where the check gives 99.7 % and 48/50. With the NAT's flows living only 30 s, as the
    // simulator's filter did before it modelled Linux's NATs, 94 % were found.)
    let (found, _behind, caught, _wrong, exact) = run(false);
    assert_eq!(caught, 0, "no check, no verdict");
    assert!(exact <= 40, "{exact}/50 exact");
    assert!(found < 0.99, "found {:.1}%", found * 100.0);
}

/// In a small network a joining node soon writes to everyone (its bootstrap walk, then the
/// bucket-refresh walks), which leaves few nodes to probe. The refresh walks must not write
/// to the round's targets while their pongs are on the way, or every probe is spoiled and
/// no verdict comes until the nodes have been quiet for minutes.
#[test]
fn a_node_joining_a_small_network_gets_a_verdict_at_once() {
    let mut verdicts = 0;
    let tries = 12;
    for seed in 0..tries {
        let (mut sim, entry, _nodes) = Sim::network_with(
            SimConfig {
                seed,
                ..SimConfig::default()
            },
            60,
            0.0,
            Config::default(),
        );
        let node = sim.add_node(Config {
            adaptive: true,
            bootstrap: vec![entry],
            ..Config::default()
        });
        sim.with_core(node, |c, now| c.bootstrap(now));
        let got = sim.run_until(Duration::from_secs(5), |s| {
            s.core(node)
                .is_some_and(|c| c.reachability() != dht_rpc::Reachability::Unknown)
        });
        if got {
            assert_eq!(
                sim.core(node).map(|c| c.reachability()),
                Some(dht_rpc::Reachability::Reachable),
                "seed {seed}: a public node is reachable"
            );
            verdicts += 1;
        }
    }
    eprintln!("{verdicts}/{tries} joining nodes had a verdict within 5 s");
    assert_eq!(verdicts, tries);
}
