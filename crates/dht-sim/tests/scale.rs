//! What must hold of whole hyperdht networks (docs/SCALE.md, at full size from
//! `sim-report`), asserted on small networks in bounded time: every lookup finds the
//! announcer without loss or churn, nearly every one under 5 % loss, and after 20 % of the
//! nodes fail at once right after an announce; round trips grow like the logarithm of the
//! network's size.

use std::time::Duration;

use dht_rpc::Maintenance;
use dht_sim::experiments::{self, mean};
use dht_sim::world::{NatMix, World, WorldConfig};

const RTT: Duration = Duration::from_millis(50);

#[test]
fn without_loss_or_churn_every_lookup_finds_the_announcer() {
    let mut w = World::build(WorldConfig::new(300, 1));
    let l = experiments::announce_and_look_up(&mut w, 10, 100, RTT);
    assert_eq!((l.found, l.runs), (100, 100), "{l:?}");
}

#[test]
fn behind_a_realistic_mix_of_nats_every_lookup_finds_the_announcer() {
    let mut c = WorldConfig::new(300, 2);
    c.mix = NatMix::INTERNET;
    c.adaptive = true;
    let mut w = World::build(c);
    let l = experiments::announce_and_look_up(&mut w, 10, 100, RTT);
    assert_eq!((l.found, l.runs), (100, 100), "{l:?}");
}

#[test]
fn with_five_percent_loss_nearly_every_lookup_finds_the_announcer() {
    let mut c = WorldConfig::new(300, 3);
    c.sim.loss = 0.05;
    let mut w = World::build(c);
    let l = experiments::announce_and_look_up(&mut w, 10, 200, RTT);
    assert!(l.success() >= 0.99, "{} of {}", l.found, l.runs);
}

#[test]
fn a_fifth_of_the_nodes_failing_after_an_announce_loses_few_lookups_and_none_after_the_next() {
    let mut c = WorldConfig::new(400, 4);
    c.maintenance = Some(Maintenance::default());
    let mut w = World::build(c);
    let f = experiments::mass_failure(&mut w, 10, 100, 0.2, RTT);
    assert_eq!(f.before.found, f.before.runs, "before: {:?}", f.before);
    assert!(
        f.right_after.success() >= 0.95,
        "right after: {} of {}",
        f.right_after.found,
        f.right_after.runs
    );
    assert!(
        f.after_reannounce.success() >= 0.99,
        "after the re-announce: {} of {}",
        f.after_reannounce.found,
        f.after_reannounce.runs
    );
    assert!(
        f.holders_reannounced > f.holders_after,
        "the re-announce refills the closest: {} -> {}",
        f.holders_after,
        f.holders_reannounced
    );
}

#[test]
fn round_trips_grow_like_the_logarithm_of_the_size() {
    let rounds: Vec<f64> = [100, 400, 1600]
        .into_iter()
        .map(|n| {
            let mut w = World::build(WorldConfig::new(n, 5));
            mean(&experiments::announce_and_look_up(&mut w, 5, 60, RTT).rounds)
        })
        .collect();
    eprintln!("round trips at 100, 400, 1600 nodes: {rounds:?}");
    // Each fourfold size adds about the same number of round trips: not a fourfold, nor
    // even a doubled, count.
    assert!(rounds[2] > rounds[0], "{rounds:?}");
    assert!(rounds[2] < 2.0 * rounds[0], "{rounds:?}");
    let (d1, d2) = (rounds[1] - rounds[0], rounds[2] - rounds[1]);
    assert!(d2 <= d1 + 1.0, "steps of {d1:.2} then {d2:.2}: {rounds:?}");
}
