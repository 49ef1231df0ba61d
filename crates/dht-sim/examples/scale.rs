//! A large network in virtual time: N nodes bootstrap, then `_find_node` queries for random
//! targets are checked against brute force; optionally with packet loss and some nodes down.
//!
//! `cargo run --release -p dht-sim --example scale -- [NODES] [LOSS] [DOWN_FRACTION] [SETTLE_SECS]`
//! (defaults: 5000 nodes, no loss, none down, 600 s of virtual time after nodes go down).
//! `OLDEST=1`: the oldest nodes go down instead of a random sample. `NAT=0.3`: 30% of the
//! nodes sit behind a port-restricted filter (reachable only by hosts they sent to in the last
//! 30 s, so queries must hole-punch to them through the node that named them). `ADAPTIVE=1`:
//! nodes check their reachability and go ephemeral while firewalled (`Config::adaptive`).
//! `SEED=7`: another network (42 by default). `DEFENCES=off`: the reference's behaviour
//! (`Defences::off()`: requesters enter tables unverified, no limits), for comparison.

use std::time::{Duration, Instant};

use dht_rpc::Config;
use dht_sim::{Sim, SimConfig};
use rand::SeedableRng;
use rand::seq::SliceRandom;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args.first().and_then(|s| s.parse().ok()).unwrap_or(5000);
    let loss: f64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(0.0);
    let down: f64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(0.0);
    let nat: f64 = std::env::var("NAT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.0);
    let wall = Instant::now();
    let adaptive = std::env::var("ADAPTIVE").is_ok_and(|v| v == "1");
    let (mut sim, _entry, nodes) = Sim::network_with(
        SimConfig {
            seed: std::env::var("SEED")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(42),
            loss,
            ..SimConfig::default()
        },
        n,
        nat,
        Config {
            adaptive,
            defences: if std::env::var("DEFENCES").is_ok_and(|v| v == "off") {
                dht_rpc::Defences::off()
            } else {
                dht_rpc::Defences::default()
            },
            ..Config::default()
        },
    );
    // A second bootstrap round, as long-lived nodes do.
    for &a in &nodes {
        sim.with_core(a, |c, now| c.bootstrap(now));
        sim.run_for(Duration::from_millis(2));
    }
    sim.run_for(Duration::from_secs(10));
    let booted = wall.elapsed();
    // Which nodes leave: the oldest (`OLDEST=1`, the hard case: Kademlia tables favour old
    // contacts) or a random sample.
    let gone = (n as f64 * down) as usize;
    let oldest = std::env::var("OLDEST").is_ok_and(|v| v == "1");
    let mut order: Vec<usize> = (0..n).collect();
    if !oldest {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        order.shuffle(&mut rng);
    }
    let (down_idx, up_idx) = order.split_at(gone);
    for &i in down_idx {
        sim.set_up(nodes[i], false);
    }
    let live: Vec<_> = up_idx.iter().map(|&i| nodes[i]).collect();
    // Let the liveness sweeps notice (a node pings 3 stale contacts every 40 s).
    let settle: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(600);
    if gone > 0 || nat > 0.0 {
        sim.run_for(Duration::from_secs(settle));
        // Long-lived nodes re-bootstrap now and then (the hyperdht node every 5 to 65 s).
        for &a in &live {
            sim.with_core(a, |c, now| c.bootstrap(now));
            sim.run_for(Duration::from_millis(2));
        }
        sim.run_for(Duration::from_secs(10));
    }
    let queries = 100;
    let is_firewalled =
        |sim: &Sim, a: &std::net::SocketAddrV4| sim.core(*a).is_some_and(|c| c.is_firewalled());
    let firewalled = live.iter().filter(|a| is_firewalled(&sim, a)).count();
    let wrongly = live
        .iter()
        .filter(|a| is_firewalled(&sim, a) && !sim.is_filtering(**a))
        .count();
    let nat_count = live.iter().filter(|a| sim.is_filtering(**a)).count();
    let before = sim.elapsed();
    let (exact, found) = sim.check_lookups(&live, queries);
    let per_lookup = (sim.elapsed() - before) / queries as u32;
    println!(
        "{n} nodes ({nat_count} behind NAT, {firewalled} found themselves firewalled, {wrongly} of them wrongly{}), loss {:.0}%, {gone} {} down: exact closest 20 in {exact}/{queries} queries, {:.1}% of the true closest found, {:.2} s per lookup; {} datagrams delivered, {} lost, {} filtered; bootstrap {:.1} s, all {:.1} s of wall time, {:.0} s virtual",
        if adaptive { ", adaptive" } else { "" },
        loss * 100.0,
        if oldest { "oldest" } else { "random" },
        found * 100.0,
        per_lookup.as_secs_f64(),
        sim.delivered,
        sim.lost,
        sim.filtered,
        booted.as_secs_f64(),
        wall.elapsed().as_secs_f64(),
        sim.elapsed().as_secs_f64()
    );
}
