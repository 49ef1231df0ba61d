//! The experiments of docs/SCALE.md, on a [`World`] of whole hyperdht nodes: lookups
//! against the truth, announces through a mass failure and under churn, NAT populations
//! with hole punching between random pairs, and a network growing from empty. The
//! `sim-report` command runs them at full size and writes the document; the tests in
//! `tests/scale.rs` assert their properties on small networks.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use hyperdht::{AnnounceOptions, HolepunchPath, Key, REANNOUNCE};

use crate::world::World;
use crate::{NatKind, hyper};

/// Lookups of announced keys, each against its announcer.
#[derive(Debug, Clone, Default)]
pub struct Lookups {
    /// Lookups run.
    pub runs: usize,
    /// Lookups whose answers named the announcer.
    pub found: usize,
    /// Per lookup: round trips to the walk's end (its virtual time over one round trip).
    pub rounds: Vec<f64>,
    /// Per lookup that found the announcer: round trips to the first answer that named it.
    pub first: Vec<f64>,
    /// Per lookup: datagrams the looker sent and received.
    pub messages: Vec<f64>,
    /// Per lookup that found it: the virtual time to the first answer that named it (s).
    pub first_secs: Vec<f64>,
}

impl Lookups {
    /// The share of lookups that found the announcer.
    pub fn success(&self) -> f64 {
        self.found as f64 / self.runs.max(1) as f64
    }

    /// Adds another batch's figures.
    pub fn merge(&mut self, other: Lookups) {
        self.runs += other.runs;
        self.found += other.found;
        self.rounds.extend(other.rounds);
        self.first.extend(other.first);
        self.messages.extend(other.messages);
        self.first_secs.extend(other.first_secs);
    }
}

/// The mean of `v` (0 when empty).
pub fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// The `q` quantile of `v` (0 when empty).
pub fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[((s.len() - 1) as f64 * q).round() as usize]
}

/// Looks `key` up from `from` and scores it against `announcer`'s IP (a symmetric NAT
/// shows each storer another port).
pub fn score(
    world: &mut World,
    from: SocketAddrV4,
    key: Key,
    announcer: SocketAddrV4,
    rtt: Duration,
) -> Lookups {
    let f = hyper::lookup(&mut world.sim, from, key);
    let rt = rtt.as_secs_f64().max(1e-9);
    let hit = f.named.iter().any(|(_, p)| p.ip() == announcer.ip());
    let mut l = Lookups {
        runs: 1,
        found: usize::from(hit),
        rounds: vec![f.time.as_secs_f64() / rt],
        messages: vec![f.datagrams as f64],
        ..Lookups::default()
    };
    if hit && let Some(t) = f.first_peer {
        l.first.push(t.as_secs_f64() / rt);
        l.first_secs.push(t.as_secs_f64());
    }
    l
}

/// Announces `keys` fresh keys from random nodes (once each), then runs `lookups` lookups,
/// each of a random one of them from a random other node. `rtt`: the network's round
/// trip, to count round trips in.
pub fn announce_and_look_up(
    world: &mut World,
    keys: usize,
    lookups: usize,
    rtt: Duration,
) -> Lookups {
    let announced = announce_fresh(world, keys);
    look_up(world, &announced, lookups, rtt)
}

/// Announces `keys` fresh keys from random live nodes, once each: (key, announcer).
pub fn announce_fresh(world: &mut World, keys: usize) -> Vec<(Key, SocketAddrV4)> {
    (0..keys)
        .map(|_| {
            let (key, from) = (world.random_key(), world.random_live());
            let _ = hyper::announce(&mut world.sim, from, key, AnnounceOptions::default());
            (key, from)
        })
        .collect()
}

/// `lookups` lookups, each of a random one of `announced` from a random live node other
/// than its announcer.
pub fn look_up(
    world: &mut World,
    announced: &[(Key, SocketAddrV4)],
    lookups: usize,
    rtt: Duration,
) -> Lookups {
    let mut out = Lookups::default();
    if announced.is_empty() {
        return out;
    }
    for i in 0..lookups {
        let (key, announcer) = announced[i % announced.len()];
        let from = loop {
            let f = world.random_live();
            if f != announcer {
                break f;
            }
        };
        out.merge(score(world, from, key, announcer, rtt));
    }
    out
}

/// Fresh keys kept announced (every 4 to 5 minutes) from `keys` random live nodes:
/// (key, keeper).
pub fn keep_fresh(world: &mut World, keys: usize) -> Vec<(Key, SocketAddrV4)> {
    (0..keys)
        .map(|_| {
            let from = world.random_live();
            (world.keep(from), from)
        })
        .collect()
}

/// Takes a random share of the live nodes down at once, keepers of `kept` spared; how many.
pub fn fail_others(world: &mut World, kept: &[(Key, SocketAddrV4)], share: f64) -> usize {
    let mut others: Vec<SocketAddrV4> = world
        .live()
        .into_iter()
        .filter(|a| !kept.iter().any(|(_, k)| k == a))
        .collect();
    let gone = (others.len() as f64 * share).round() as usize;
    rand::seq::SliceRandom::shuffle(others.as_mut_slice(), world.sim.rng());
    for a in &others[..gone] {
        world.sim.set_up(*a, false);
    }
    gone
}

/// A mass failure right after an announce: lookups before it, right after it, and after the
/// next re-announce.
#[derive(Debug, Clone, Default)]
pub struct Failure {
    /// Lookups before the failure.
    pub before: Lookups,
    /// Lookups right after it.
    pub right_after: Lookups,
    /// Lookups after the keepers' next re-announce (5 minutes and 30 s later).
    pub after_reannounce: Lookups,
    /// Of the 20 closest live nodes, how many held each key right after the failure, and
    /// after the re-announce (means over the keys).
    pub holders_after: f64,
    /// See `holders_after`.
    pub holders_reannounced: f64,
}

/// `keys` keepers keep a key announced; 30 s later a share `fraction` of the other nodes
/// fails at once; lookups (`lookups` per phase) before, right after, and after the next
/// re-announce.
pub fn mass_failure(
    world: &mut World,
    keys: usize,
    lookups: usize,
    fraction: f64,
    rtt: Duration,
) -> Failure {
    let kept = keep_fresh(world, keys);
    world.sim.run_for(Duration::from_secs(30));
    let before = look_up(world, &kept, lookups, rtt);
    fail_others(world, &kept, fraction);
    let holders = |w: &World| {
        mean(
            &kept
                .iter()
                .map(|(k, _)| w.holders_among_closest(k, 20) as f64)
                .collect::<Vec<_>>(),
        )
    };
    let holders_after = holders(world);
    let right_after = look_up(world, &kept, lookups, rtt);
    world.sim.run_for(REANNOUNCE.1 + Duration::from_secs(30));
    let holders_reannounced = holders(world);
    let after_reannounce = look_up(world, &kept, lookups, rtt);
    Failure {
        before,
        right_after,
        after_reannounce,
        holders_after,
        holders_reannounced,
    }
}

/// One sample of [`churn`].
#[derive(Debug, Clone, Copy)]
pub struct ChurnSample {
    /// Virtual time since the keys were first announced (s).
    pub at: f64,
    /// Of the 20 closest live nodes, how many hold each key: the mean over the keys.
    pub mean: f64,
    /// The fewest of any key.
    pub min: usize,
    /// Nodes up.
    pub live: usize,
}

/// `keys` keepers keep a key announced while, every minute for `minutes`, a share
/// `per_minute` of the other live nodes leaves and as many new ones join. Samples every
/// 30 s of how many of the 20 closest hold each key; then `lookups` lookups of the keys
/// from live nodes (new ones among them), at the end of the churn.
pub fn churn(
    world: &mut World,
    keys: usize,
    minutes: usize,
    per_minute: f64,
    lookups: usize,
    rtt: Duration,
) -> (Vec<ChurnSample>, Lookups) {
    let kept = keep_fresh(world, keys);
    let start = world.sim.now();
    let mut samples = Vec::new();
    let sample = |w: &World| {
        let h: Vec<usize> = kept
            .iter()
            .map(|(k, _)| w.holders_among_closest(k, 20))
            .collect();
        ChurnSample {
            at: (w.sim.now() - start).as_secs_f64(),
            mean: mean(&h.iter().map(|x| *x as f64).collect::<Vec<_>>()),
            min: h.iter().copied().min().unwrap_or(0),
            live: w.live().len(),
        }
    };
    world.sim.run_for(Duration::from_secs(30));
    samples.push(sample(world));
    for _ in 0..minutes {
        let n = fail_others(world, &kept, per_minute);
        world.join(n);
        let elapsed = (world.sim.now() - start).as_secs_f64();
        let next = (elapsed / 30.0).floor() * 30.0 + 30.0;
        world
            .sim
            .run_for(Duration::from_secs_f64((next - elapsed).max(0.0)));
        samples.push(sample(world));
        world.sim.run_for(Duration::from_secs(30));
        samples.push(sample(world));
    }
    let found = look_up(world, &kept, lookups, rtt);
    (samples, found)
}

/// A NAT population: routing health and hole punching between random pairs.
#[derive(Debug, Clone, Default)]
pub struct NatRun {
    /// Contacts in the live nodes' routing tables, and how many of them are behind a NAT
    /// that filters (a stranger's datagram does not get in).
    pub contacts: usize,
    /// See `contacts`.
    pub unreachable: usize,
    /// Nodes that found themselves firewalled (with the reachability check), by kind.
    pub firewalled: BTreeMap<NatKind, (usize, usize)>,
    /// Lookups of announced keys.
    pub lookups: Lookups,
    /// Hole punches after a lookup, by (announcer's kind, looker's kind): opened, tried,
    /// and how many of the opened went by the birthday punch (a circuit through the
    /// announcer's relay counts as opened).
    pub punches: BTreeMap<(NatKind, NatKind), (usize, usize, usize)>,
}

/// Measures a NAT population's routing health, its lookups (`lookups` of `keys` keys) and,
/// for every pair of kinds, `per_cell` hole punches: an announcer of the row's kind
/// announces a fresh key, a looker of the column's kind looks it up and punches to the
/// address the first answer named, through the node that named it.
pub fn nat_population(
    world: &mut World,
    keys: usize,
    lookups: usize,
    per_cell: usize,
    rtt: Duration,
) -> NatRun {
    let kind_of: BTreeMap<Ipv4Addr, NatKind> = world
        .nodes
        .iter()
        .zip(&world.kinds)
        .map(|(a, k)| (*a.ip(), *k))
        .collect();
    let mut run = NatRun::default();
    for (a, k) in world.nodes.iter().zip(&world.kinds) {
        if !world.sim.is_up(*a) {
            continue;
        }
        let Some(core) = world.sim.core(*a) else {
            continue;
        };
        let e = run.firewalled.entry(*k).or_default();
        e.1 += 1;
        e.0 += usize::from(core.is_firewalled());
        for c in core.table().iter() {
            run.contacts += 1;
            let kind = kind_of.get(c.addr.ip()).copied().unwrap_or(NatKind::Open);
            if !matches!(kind, NatKind::Open | NatKind::FullCone) {
                run.unreachable += 1;
            }
        }
    }
    run.lookups = announce_and_look_up(world, keys, lookups, rtt);
    let by_kind = |w: &World, k: NatKind| -> Vec<SocketAddrV4> {
        w.nodes
            .iter()
            .zip(&w.kinds)
            .filter(|(a, kk)| **kk == k && w.sim.is_up(**a))
            .map(|(a, _)| *a)
            .collect()
    };
    // Four open nodes serve as relays, and every announcer behind a NAT reserves on one
    // first, as the NAT lab's do: the pairs no punch opens connect through it.
    let relays: Vec<SocketAddrV4> = by_kind(world, NatKind::Open).into_iter().take(4).collect();
    for r in &relays {
        world.sim.with_machine(*r, |m, _| {
            m.set_relay(Some(hyperdht::relay::RelayLimits::default()))
        });
    }
    for a in NatKind::ALL {
        for b in NatKind::ALL {
            let (announcers, lookers) = (by_kind(world, a), by_kind(world, b));
            if announcers.is_empty() || lookers.is_empty() {
                continue;
            }
            let cell = run.punches.entry((a, b)).or_default();
            for i in 0..per_cell {
                let r = rand::Rng::random_range(world.sim.rng(), 0..1_000_000usize);
                let announcer = announcers[(r + i) % announcers.len()];
                let looker = lookers[(r / 7 + 3 * i) % lookers.len()];
                if announcer == looker {
                    continue;
                }
                cell.1 += 1;
                if a != NatKind::Open && !relays.is_empty() {
                    let relay = relays[i % relays.len()];
                    world
                        .sim
                        .with_machine(announcer, |m, now| m.reserve(now, relay));
                }
                let key = world.random_key();
                let _ = hyper::announce(&mut world.sim, announcer, key, AnnounceOptions::default());
                let found = hyper::lookup(&mut world.sim, looker, key);
                let Some((referrer, peer)) = found
                    .named
                    .iter()
                    .find(|(_, p)| p.ip() == announcer.ip())
                    .copied()
                else {
                    continue;
                };
                if let Ok(h) = hyper::punch(&mut world.sim, looker, peer, referrer) {
                    cell.0 += 1;
                    cell.2 += usize::from(h.path == HolepunchPath::Birthday);
                }
            }
        }
    }
    run
}

/// One step of [`growth`].
#[derive(Debug, Clone, Copy)]
pub struct GrowthStep {
    /// Nodes in the network after the step.
    pub nodes: usize,
    /// Datagrams the entry node received per virtual second during the step.
    pub entry_in: f64,
    /// Datagrams it sent per virtual second.
    pub entry_out: f64,
    /// The mean routing-table size of the live nodes.
    pub table: f64,
    /// The mean number of non-empty buckets.
    pub buckets: f64,
}

/// Grows `world` by `step` nodes `steps` times, joining as [`World::join`] does, and
/// measures the entry node's load and the tables' fill after each step.
pub fn growth(world: &mut World, step: usize, steps: usize) -> Vec<GrowthStep> {
    let mut out = Vec::new();
    for _ in 0..steps {
        let stats = |w: &World| w.sim.core(w.entry).map(|c| c.stats()).unwrap_or_default();
        let (before, t0) = (stats(world), world.sim.now());
        world.join(step);
        let (after, t1) = (stats(world), world.sim.now());
        let secs = (t1 - t0).as_secs_f64().max(1e-9);
        out.push(GrowthStep {
            nodes: world.nodes.len(),
            entry_in: (after.datagrams_in - before.datagrams_in) as f64 / secs,
            entry_out: (after.datagrams_out - before.datagrams_out) as f64 / secs,
            table: world.mean_over_live(|c| c.table().len() as f64),
            buckets: world.mean_over_live(|c| c.table().bucket_fill().count() as f64),
        });
    }
    out
}
