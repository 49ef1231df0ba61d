//! Operations on an unhealthy network, timed: one network with internet-like path delays
//! (see `SimConfig::internet`), lookups and updates (walk + commit round, as an announce)
//! measured healthy, then with 10 % and 30 % of the nodes gone (their entries still in
//! others' tables), each without and with 1 % loss.
//!
//! `cargo run --release -p dht-sim --example timing -- [NODES] [OPS] [SETTLE_SECS]`
//! (defaults: 10,000 nodes, 100 lookups and 100 updates per row, 30 s of virtual time
//! after nodes go down). `FIXED=1`: the RTO is pinned to the 1.25 s timeout (floor = ceiling),
//! so walks wait the full timeout for every silent node; this is not the code before RTT-based
//! timeouts (that one also resent at half the timeout; build an older commit for it).
//! `SEED=7`: another network. `PARALLEL=1`: one operation at a time (default 20 at once).
//! `REFUSE=1`: a gone node's host answers with an ICMP port-unreachable (its process exited)
//! instead of staying silent (host gone, or behind a NAT that drops). `QDIAG=1`: after each
//! row, the round-trip quantiles (p50, p90, p99, p99.9, largest) and the node-wide RTO of the
//! first 8 live nodes, the figures a walk's waits are drawn from.
//!
//! Each state (healthy, 10 % gone, 30 % gone) starts 600 s of virtual time after the one
//! before it (padded), so that the network has healed alike whatever the code's speed; its
//! two rows (0 % then 1 % loss) run back to back, 20 operations at once, so that both meet
//! the tables as they are shortly after the die-off. Prints a Markdown table: time per
//! operation (p50 / p90 / p99, virtual), datagrams per operation (mean, the querying node's
//! in + out), and how many found exactly the true closest 20; and on stderr the ratios to the
//! healthy rows, the nodes' counters, how many of the contacts in live nodes' tables are gone
//! nodes at each row's start, and for each row when the last of the closest answered, how
//! long the walk then waited for silent nodes, and how many of the true closest it missed
//! (of them, how many it had asked and gave up on while they would still answer).

use std::time::{Duration, Instant};

use dht_rpc::Config;
use dht_sim::{Op, Sim, SimConfig};
use rand::SeedableRng;
use rand::seq::SliceRandom;

/// Each state (its two rows) takes this much virtual time, padded if it took less.
const ROW_SPAN: Duration = Duration::from_secs(600);

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64()
}

fn row(label: &str, ops: &[Op]) -> (f64, f64) {
    let mut t: Vec<Duration> = ops.iter().map(|o| o.time).collect();
    t.sort();
    let dg = ops.iter().map(|o| o.datagrams).sum::<u64>() as f64 / ops.len().max(1) as f64;
    let exact = ops.iter().filter(|o| o.exact).count();
    let mut last: Vec<Duration> = ops.iter().map(|o| o.last_closest).collect();
    last.sort();
    let mut wait: Vec<Duration> = ops.iter().map(|o| o.time - o.last_closest).collect();
    wait.sort();
    eprintln!(
        "{label}: the last of the closest answered at p50 {:.3} s; then waited p50 {:.3} s, p90 {:.3} s; {:.1} requests unanswered per operation; missed {} of the closest, {} of them given up too soon, {} crowded out of answers",
        pct(&last, 0.5),
        pct(&wait, 0.5),
        pct(&wait, 0.9),
        ops.iter().map(|o| o.unanswered).sum::<usize>() as f64 / ops.len().max(1) as f64,
        ops.iter().map(|o| 20 - o.found).sum::<usize>(),
        ops.iter().map(|o| o.missed_asked).sum::<usize>(),
        ops.iter().map(|o| o.missed_crowded).sum::<usize>(),
    );
    println!(
        "| {label} | {:.3} | {:.3} | {:.3} | {dg:.0} | {exact}/{} |",
        pct(&t, 0.5),
        pct(&t, 0.9),
        pct(&t, 0.99),
        ops.len()
    );
    (pct(&t, 0.5), dg)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args.first().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let ops: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(100);
    let settle: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(30);
    let parallel: usize = std::env::var("PARALLEL")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let seed = std::env::var("SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(42);
    let fixed = std::env::var("FIXED").is_ok_and(|v| v == "1");
    let refuse = std::env::var("REFUSE").is_ok_and(|v| v == "1");
    let wall = Instant::now();
    let mut node = Config::default();
    if fixed {
        node.rto_floor = node.request_timeout;
    }
    let (mut sim, _entry, nodes) = Sim::network_with(
        SimConfig {
            seed,
            internet: true,
            refuse_down: refuse,
            ..SimConfig::default()
        },
        n,
        0.0,
        node,
    );
    for &a in &nodes {
        sim.with_core(a, |c, now| c.bootstrap(now));
        sim.run_for(Duration::from_millis(2));
    }
    sim.run_for(Duration::from_secs(10));
    eprintln!(
        "{n} nodes up in {:.0} s of wall time",
        wall.elapsed().as_secs_f64()
    );
    println!(
        "{n} nodes, internet-like delays{}{}, seed {seed}, {settle} s after nodes go down, {parallel} operations at once\n",
        if fixed { ", FIXED 1.25 s waits" } else { "" },
        if refuse {
            ", gone nodes' hosts answer ICMP port-unreachable"
        } else {
            ""
        }
    );
    println!("| network, operation | p50 s | p90 s | p99 s | datagrams | exact |");
    println!("|---|---|---|---|---|---|");
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(7));
    let mut down = 0;
    let mut healthy = Vec::new();
    for gone in [0.0, 0.1, 0.3] {
        let target = (n as f64 * gone) as usize;
        for &i in &order[down..target] {
            sim.set_up(nodes[i], false);
        }
        down = target;
        if gone > 0.0 {
            sim.run_for(Duration::from_secs(settle));
        }
        let live: Vec<_> = order[down..].iter().map(|&i| nodes[i]).collect();
        // Both loss rows of a state run back to back, their operations `parallel` at once,
        // so that both meet the tables as they are shortly after the die-off; the next
        // state starts ROW_SPAN after this one did, however long its rows took (a slower
        // walk must not hand the next state a network that had longer to heal).
        let state_start = sim.elapsed();
        let gone_set: std::collections::HashSet<_> =
            order[..down].iter().map(|&i| nodes[i]).collect();
        for loss in [0.0, 0.01] {
            let row_start = sim.elapsed();
            let (mut d, mut e) = (0, 0);
            for a in &live {
                if let Some(c) = sim.core(*a) {
                    for contact in c.table().iter() {
                        e += 1;
                        d += usize::from(gone_set.contains(&contact.addr));
                    }
                }
            }
            sim.set_loss(loss);
            let label = format!("{:.0} % gone, {:.0} % loss", gone * 100.0, loss * 100.0);
            eprintln!(
                "{label}: at the row's start ({:.0} s after the die-off), {d} of the {e} contacts in live nodes' tables are gone nodes",
                (row_start - state_start).as_secs_f64()
                    + if gone > 0.0 { settle as f64 } else { 0.0 }
            );
            let lookups = sim.timed_ops_parallel(&live, ops, false, parallel);
            let l = row(&format!("{label}, lookup"), &lookups);
            let updates = sim.timed_ops_parallel(&live, ops, true, parallel);
            let u = row(&format!("{label}, update"), &updates);
            let sum = |f: fn(&dht_rpc::Stats) -> u64| -> u64 {
                live.iter()
                    .filter_map(|a| sim.core(*a))
                    .map(|c| f(&c.stats()))
                    .sum()
            };
            eprintln!(
                "{label}: live nodes marked dead by the first 200 live nodes: {}; so far in all: {} stalled, {} answered after the walk gave up, {} timeouts, {} dead skipped",
                sim.wrongly_dead(&live[..live.len().min(200)]),
                sum(|s| s.stalled),
                sum(|s| s.answered_after_give_up),
                sum(|s| s.timeouts),
                sum(|s| s.dead_skipped),
            );
            if std::env::var("QDIAG").is_ok() {
                for a in live.iter().take(8) {
                    if let Some(c) = sim.core(*a) {
                        let r = c.rtts();
                        let q = |x| r.recent_quantile(x).map_or(0.0, |d| d.as_secs_f64());
                        let rto = r
                            .node()
                            .map_or(0.0, |e| e.rto(Duration::ZERO, Duration::MAX).as_secs_f64());
                        eprintln!(
                            "QDIAG {a}: p50 {:.3} p90 {:.3} p99 {:.3} p999 {:.3} max {:.3} rto {:.3}",
                            q(0.5),
                            q(0.9),
                            q(0.99),
                            q(0.999),
                            q(1.0),
                            rto
                        );
                    }
                }
            }
            if gone == 0.0 {
                healthy.push((l, u));
            } else if let Some(((hl, hd), (hu, hud))) = healthy.get((loss * 100.0) as usize) {
                eprintln!(
                    "{label}: lookup p50 {:.2}x healthy, datagrams {:.2}x; update p50 {:.2}x, datagrams {:.2}x",
                    l.0 / hl,
                    l.1 / hd,
                    u.0 / hu,
                    u.1 / hud
                );
            }
        }
        let spent = sim.elapsed() - state_start;
        sim.run_for(ROW_SPAN.saturating_sub(spent));
    }
    eprintln!(
        "{:.0} s of wall time, {:.0} s virtual",
        wall.elapsed().as_secs_f64(),
        sim.elapsed().as_secs_f64()
    );
}
