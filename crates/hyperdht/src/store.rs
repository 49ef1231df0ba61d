//! [`PeerStore`]: who announced which key, bounded in memory, with a bounded share for any
//! one source.
//!
//! Entries are keyed by key and announcer address. The store has two generations: when the
//! current one passes `max` (keys + entries, 65,536 by default), it becomes the previous one
//! and the old previous is dropped, so memory stays bounded whatever arrives. An entry older
//! than `max_age` (about 6 minutes: announcers re-announce every 4-5) is not returned.
//!
//! [`Quotas`] bound what one announcer IP and one /24 may hold, in the whole store and on one
//! key, so that no single source can push everyone else's announces out (the reference lets
//! one IP evict the whole store with 65,536 announces) or crowd a key. A lookup's answer
//! costs O(answer), not O(entries): [`PeerStore::sample`] reads a window of the key's
//! entries from a random starting address.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::ops::Bound;
use std::time::{Duration, Instant};

use dht_rpc::guard::{Ipv4Range, SourceCounts, in_ranges, prefix_of};
use dht_wire::{Key, LocalPeer};
use rand::Rng;

mod peers;
use peers::Peers;

/// The reference's store size: keys and entries of the current generation.
pub const DEFAULT_MAX: usize = 65_536;
/// The reference's entry lifetime: `6 * 60 * 1024` ms.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_millis(6 * 60 * 1024);
/// Entries a sample scans per generation, per entry it may return (expired ones are
/// skipped).
const SCAN_PER_ENTRY: usize = 4;
/// How often at most an announce over a quota makes the store drop its expired entries
/// (a pass over all of them) before it is refused.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// One announcement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The announcer's address: its source IP with the announced port.
    pub peer: SocketAddrV4,
    /// Its LAN address: the first two octets (to match a requester's) and the rest.
    pub local: Option<([u8; 2], LocalPeer)>,
    /// When it was last announced.
    pub at: Instant,
}

/// What one source may hold. Announcers in `trusted` are exempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quotas {
    /// Entries one IP holds in the whole store. Default 256.
    pub per_ip: usize,
    /// Entries one /24 holds in the whole store. Default 1,024.
    pub per_prefix: usize,
    /// Entries one IP holds on one key (several peers behind one NAT). Default 16.
    pub per_key_ip: usize,
    /// Entries one /24 holds on one key. Default 64.
    pub per_key_prefix: usize,
    /// Exempt ranges. Default: loopback.
    pub trusted: Vec<Ipv4Range>,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            per_ip: 256,
            per_prefix: 1024,
            per_key_ip: 16,
            per_key_prefix: 64,
            trusted: vec![dht_rpc::guard::dest::LOOPBACK],
        }
    }
}

impl Quotas {
    /// No quotas (the reference's behaviour).
    pub fn none() -> Self {
        Quotas {
            per_ip: usize::MAX,
            per_prefix: usize::MAX,
            per_key_ip: usize::MAX,
            per_key_prefix: usize::MAX,
            trusted: Vec::new(),
        }
    }
}

/// Why [`PeerStore::put`] refused a new entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverQuota {
    /// The announcer's IP holds [`Quotas::per_ip`] entries.
    Ip,
    /// Its /24 holds [`Quotas::per_prefix`].
    Prefix,
    /// Its IP holds [`Quotas::per_key_ip`] on this key.
    KeyIp,
    /// Its /24 holds [`Quotas::per_key_prefix`] on this key.
    KeyPrefix,
}

/// Announces refused by quota, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct QuotaStats {
    /// Over [`Quotas::per_ip`].
    pub ip: u64,
    /// Over [`Quotas::per_prefix`].
    pub prefix: u64,
    /// Over [`Quotas::per_key_ip`].
    pub key_ip: u64,
    /// Over [`Quotas::per_key_prefix`].
    pub key_prefix: u64,
}

#[derive(Debug, Default)]
struct Generation {
    keys: HashMap<Key, Peers>,
    size: usize,
}

/// The peers announced on keys, in two generations.
#[derive(Debug)]
pub struct PeerStore {
    current: Generation,
    previous: Generation,
    max: usize,
    max_age: Duration,
    quotas: Quotas,
    counts: SourceCounts,
    refused: QuotaStats,
    /// When expired entries were last dropped.
    swept: Option<Instant>,
}

impl Default for PeerStore {
    fn default() -> Self {
        PeerStore::new(DEFAULT_MAX, DEFAULT_MAX_AGE)
    }
}

impl PeerStore {
    /// A store of at most `max` keys and entries per generation, with the default
    /// [`Quotas`].
    pub fn new(max: usize, max_age: Duration) -> Self {
        Self::with_quotas(max, max_age, Quotas::default())
    }

    /// A store with its own quotas.
    pub fn with_quotas(max: usize, max_age: Duration, quotas: Quotas) -> Self {
        PeerStore {
            current: Generation::default(),
            previous: Generation::default(),
            max: max.max(1),
            max_age,
            quotas,
            counts: SourceCounts::default(),
            refused: QuotaStats::default(),
            swept: None,
        }
    }

    /// Whether any entry (fresh or not) exists for `key`.
    pub fn has(&self, key: &Key) -> bool {
        self.current.keys.contains_key(key) || self.previous.keys.contains_key(key)
    }

    /// Keys and entries held, both generations.
    pub fn len(&self) -> usize {
        self.current.size + self.previous.size
    }

    /// Keys held, both generations (a key in both counts twice).
    pub fn key_count(&self) -> usize {
        self.current.keys.len() + self.previous.keys.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries held for announcer IP `ip` (both generations).
    pub fn held_by(&self, ip: &Ipv4Addr) -> usize {
        self.counts.ip(ip)
    }

    /// Announces refused by quota so far.
    pub fn refused(&self) -> QuotaStats {
        self.refused
    }

    /// Stores or refreshes an announcement. A new entry over one of the [`Quotas`] is
    /// refused (a refresh of an existing one never is).
    pub fn put(&mut self, key: Key, entry: Entry) -> Result<(), OverQuota> {
        if let Some(e) = self
            .current
            .keys
            .get_mut(&key)
            .and_then(|m| m.get_mut(&entry.peer))
        {
            *e = entry;
            return Ok(());
        }
        let ip = *entry.peer.ip();
        let moving = remove(&mut self.previous, &key, &entry.peer);
        // Expired entries count against the quotas until they are dropped: a source whose
        // entries merely aged (a peer that came back on a new port, say) is refused only
        // if it still holds its quota once they are gone.
        let mut over = if moving {
            Ok(())
        } else {
            self.check(&key, &ip)
        };
        if over.is_err() && self.swept.is_none_or(|t| entry.at >= t + SWEEP_EVERY) {
            self.drop_expired(entry.at);
            over = self.check(&key, &ip);
        }
        if moving {
            self.counts.remove(ip);
        } else if let Err(why) = over {
            match why {
                OverQuota::Ip => self.refused.ip += 1,
                OverQuota::Prefix => self.refused.prefix += 1,
                OverQuota::KeyIp => self.refused.key_ip += 1,
                OverQuota::KeyPrefix => self.refused.key_prefix += 1,
            }
            return Err(why);
        }
        let list = match self.current.keys.get_mut(&key) {
            Some(l) => l,
            None => {
                self.current.size += 1;
                self.current.keys.entry(key).or_default()
            }
        };
        list.insert(entry);
        self.current.size += 1;
        self.counts.add(ip);
        if self.current.size > self.max {
            let dropped = std::mem::replace(&mut self.previous, std::mem::take(&mut self.current));
            for peer in dropped.keys.values().flat_map(Peers::peers) {
                self.counts.remove(*peer.ip());
            }
        }
        Ok(())
    }

    /// Drops every entry announced before `now - max_age` (a pass over the whole store).
    fn drop_expired(&mut self, now: Instant) {
        self.swept = Some(now);
        let Some(oldest) = now.checked_sub(self.max_age) else {
            return;
        };
        let counts = &mut self.counts;
        for g in [&mut self.current, &mut self.previous] {
            let mut gone = 0;
            g.keys.retain(|_, m| {
                m.retain(
                    |e| e.at >= oldest,
                    |e| {
                        counts.remove(*e.peer.ip());
                        gone += 1;
                    },
                );
                // An emptied key goes too (it counted as one).
                gone += usize::from(m.is_empty());
                !m.is_empty()
            });
            g.size -= gone;
        }
    }

    fn check(&self, key: &Key, ip: &Ipv4Addr) -> Result<(), OverQuota> {
        let q = &self.quotas;
        if in_ranges(&q.trusted, *ip) {
            return Ok(());
        }
        if self.held_by(ip) >= q.per_ip {
            return Err(OverQuota::Ip);
        }
        if self.counts.prefix(ip) >= q.per_prefix {
            return Err(OverQuota::Prefix);
        }
        // Entries sort by address, so one IP's or one /24's entries on a key are a range.
        let on_key = |from: Ipv4Addr, to: Ipv4Addr, cap: usize| {
            let range = (
                Bound::Included(SocketAddrV4::new(from, 0)),
                Bound::Included(SocketAddrV4::new(to, u16::MAX)),
            );
            [&self.current, &self.previous]
                .into_iter()
                .filter_map(|g| g.keys.get(key))
                .map(|m| m.range(range).take(cap).count())
                .sum::<usize>()
        };
        if on_key(*ip, *ip, q.per_key_ip) >= q.per_key_ip {
            return Err(OverQuota::KeyIp);
        }
        let p = prefix_of(ip);
        let (lo, hi) = (Ipv4Addr::from(p << 8), Ipv4Addr::from(p << 8 | 0xff));
        if on_key(lo, hi, q.per_key_prefix) >= q.per_key_prefix {
            return Err(OverQuota::KeyPrefix);
        }
        Ok(())
    }

    /// Removes the announcement of `peer` on `key`, from both generations.
    pub fn remove(&mut self, key: &Key, peer: &SocketAddrV4) {
        let held = usize::from(remove(&mut self.current, key, peer))
            + usize::from(remove(&mut self.previous, key, peer));
        for _ in 0..held {
            self.counts.remove(*peer.ip());
        }
    }

    /// Up to `max` fresh entries of `key`, in random order, at a cost of O(`max`) whatever
    /// the key holds: a window of each generation's entries (sorted by address) from a
    /// random address, wrapping around, skipping expired ones (at most
    /// `SCAN_PER_ENTRY * max` looked at per generation). On a key with at most `max`
    /// fresh entries, that is all of them.
    pub fn sample(&self, key: &Key, now: Instant, max: usize, rng: &mut impl Rng) -> Vec<Entry> {
        let mut out = Vec::new();
        self.sample_into(key, now, max, rng, &mut out);
        out
    }

    /// [`PeerStore::sample`] into `out` (cleared first), so that a caller that answers many
    /// lookups reuses one buffer.
    pub fn sample_into(
        &self,
        key: &Key,
        now: Instant,
        max: usize,
        rng: &mut impl Rng,
        out: &mut Vec<Entry>,
    ) {
        out.clear();
        // Fresh: announced at or after this (all of them when the clock is younger).
        let oldest = now.checked_sub(self.max_age);
        for m in [&self.current, &self.previous]
            .into_iter()
            .filter_map(|g| g.keys.get(key))
        {
            let start = SocketAddrV4::new(Ipv4Addr::from(rng.random::<u32>()), rng.random());
            let window = m
                .range((Bound::Included(start), Bound::Unbounded))
                .chain(m.range((Bound::Unbounded, Bound::Excluded(start))));
            let fresh = window
                .take(max.saturating_mul(SCAN_PER_ENTRY))
                .filter(|e| oldest.is_none_or(|o| e.at >= o));
            for e in fresh {
                if out.len() >= max {
                    break;
                }
                out.push(*e);
            }
        }
        // Fisher-Yates with the caller's (seeded) generator.
        for i in (1..out.len()).rev() {
            out.swap(i, rng.random_range(0..=i));
        }
    }

    /// The fresh entries of `key`, in random order (all of them: O(entries)).
    pub fn entries(&self, key: &Key, now: Instant, rng: &mut impl Rng) -> Vec<Entry> {
        self.sample(key, now, usize::MAX, rng)
    }
}

/// Removes `peer` from `key` in `g`; whether it was there.
fn remove(g: &mut Generation, key: &Key, peer: &SocketAddrV4) -> bool {
    let Some(m) = g.keys.get_mut(key) else {
        return false;
    };
    if m.remove(peer).is_none() {
        return false;
    }
    g.size -= 1;
    if m.is_empty() {
        g.keys.remove(key);
        g.size -= 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn entry(i: u32, at: Instant) -> Entry {
        Entry {
            peer: SocketAddrV4::new(i.to_be_bytes().into(), 1 + (i % 65000) as u16),
            local: None,
            at,
        }
    }

    fn key(i: u32) -> Key {
        let mut b = [0u8; 32];
        b[..4].copy_from_slice(&i.to_be_bytes());
        Key::from_bytes(b)
    }

    #[test]
    fn expired_entries_stop_counting_against_the_quotas() {
        let t0 = Instant::now();
        let q = Quotas::default();
        let mut s = PeerStore::with_quotas(DEFAULT_MAX, DEFAULT_MAX_AGE, q.clone());
        let ip = Ipv4Addr::new(203, 0, 113, 7);
        let at = |port: u16, t: Instant| Entry {
            peer: SocketAddrV4::new(ip, port),
            local: None,
            at: t,
        };
        // A peer that comes back on a new port each time fills its quota on one key, and
        // on the whole store.
        for port in 0..q.per_key_ip as u16 {
            s.put(key(1), at(1000 + port, t0))
                .expect("within the quota");
        }
        assert_eq!(s.put(key(1), at(2000, t0)), Err(OverQuota::KeyIp));
        for k in 2..=(q.per_ip - q.per_key_ip) as u32 + 1 {
            s.put(key(k), at(3000, t0)).expect("within the quota");
        }
        assert_eq!(s.put(key(9999), at(3000, t0)), Err(OverQuota::Ip));
        // Once they all expired, it may announce again (the store holds only the new one).
        let later = t0 + DEFAULT_MAX_AGE + Duration::from_secs(1);
        s.put(key(1), at(2000, later))
            .expect("the expired entries no longer count");
        assert_eq!(s.held_by(&ip), 1);
        assert_eq!(s.len(), 2, "one key, one entry");
        s.put(key(9999), at(3000, later))
            .expect("the IP's quota is free again");
        // A source still over its quota with fresh entries stays refused (and the store
        // passes over its entries at most once a minute for it).
        for port in 1..q.per_key_ip as u16 {
            s.put(key(1), at(2000 + port, later))
                .expect("within the quota");
        }
        assert_eq!(s.put(key(1), at(2100, later)), Err(OverQuota::KeyIp));
    }

    #[test]
    fn put_refresh_remove_and_expire() {
        let t = Instant::now();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut s = PeerStore::default();
        s.put(key(1), entry(1, t)).unwrap();
        s.put(key(1), entry(2, t)).unwrap();
        s.put(key(1), entry(1, t + Duration::from_secs(100)))
            .unwrap();
        assert_eq!(s.len(), 3, "one key and two entries");
        assert_eq!(s.entries(&key(1), t, &mut rng).len(), 2);
        let later = t + DEFAULT_MAX_AGE + Duration::from_secs(1);
        let fresh = s.entries(&key(1), later, &mut rng);
        assert_eq!(fresh.len(), 1, "the refreshed entry outlives the other");
        s.remove(&key(1), &entry(1, t).peer);
        s.remove(&key(1), &entry(2, t).peer);
        assert!(!s.has(&key(1)));
        assert!(s.is_empty());
    }

    #[test]
    fn a_flood_of_200k_distinct_announces_stays_bounded() {
        let t = Instant::now();
        let mut s = PeerStore::default();
        for i in 0..200_000 {
            s.put(key(i), entry(i, t)).unwrap();
            assert!(s.len() <= 2 * (DEFAULT_MAX + 1), "{} at {i}", s.len());
        }
        // The newest are still there; the oldest are gone.
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        assert_eq!(s.entries(&key(199_999), t, &mut rng).len(), 1);
        assert!(!s.has(&key(0)));
    }

    #[test]
    fn an_entry_moves_from_the_previous_generation_on_refresh() {
        let t = Instant::now();
        let mut s = PeerStore::new(4, DEFAULT_MAX_AGE);
        s.put(key(1), entry(1, t)).unwrap();
        s.put(key(2), entry(2, t)).unwrap();
        s.put(key(3), entry(3, t)).unwrap(); // 6 > 4: rotate
        s.put(key(1), entry(1, t)).unwrap(); // back into the current generation
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        assert_eq!(
            s.entries(&key(1), t, &mut rng).len(),
            1,
            "no duplicate across generations"
        );
    }

    fn at(ip: [u8; 4], port: u16, t: Instant) -> Entry {
        Entry {
            peer: SocketAddrV4::new(ip.into(), port),
            local: None,
            at: t,
        }
    }

    #[test]
    fn one_ip_or_prefix_holds_a_bounded_share_and_others_survive() {
        let t = Instant::now();
        let mut s = PeerStore::default();
        // Someone else's announce, then one IP floods with 100,000 distinct keys.
        s.put(key(1), at([9, 9, 9, 9], 1, t)).unwrap();
        let mut refused = 0;
        for i in 0..100_000u32 {
            refused += u32::from(s.put(key(10 + i), at([6, 6, 6, 6], 1, t)).is_err());
        }
        assert_eq!(s.held_by(&Ipv4Addr::new(6, 6, 6, 6)), 256);
        assert_eq!(refused, 100_000 - 256);
        assert_eq!(s.refused().ip, u64::from(refused));
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        assert_eq!(
            s.entries(&key(1), t, &mut rng).len(),
            1,
            "the other announce survives"
        );
        // Its /24 as a whole: 4 more IPs fill the prefix's 1,024.
        for host in 1..=8u8 {
            for i in 0..256u32 {
                let _ = s.put(key(200_000 + i), at([6, 6, 6, host], 1, t));
            }
        }
        let prefix: usize = (0..=255u8)
            .map(|h| s.held_by(&Ipv4Addr::new(6, 6, 6, h)))
            .sum();
        assert_eq!(prefix, 1024);
        assert!(s.refused().prefix > 0);
        // On one key: 16 per IP, 64 per /24.
        let crowded = key(7_000_000);
        for port in 1..100u16 {
            let _ = s.put(crowded, at([5, 5, 5, 5], port, t));
        }
        for host in 6..20u8 {
            for port in 1..100u16 {
                let _ = s.put(crowded, at([5, 5, 5, host], port, t));
            }
        }
        assert_eq!(s.entries(&crowded, t, &mut rng).len(), 64);
        assert!(s.refused().key_ip > 0 && s.refused().key_prefix > 0);
        // A refresh of an entry already held is never refused.
        assert!(s.put(crowded, at([5, 5, 5, 5], 1, t)).is_ok());
        // Loopback is exempt.
        for i in 0..1000u32 {
            s.put(key(8_000_000 + i), at([127, 0, 0, 1], 1, t)).unwrap();
        }
    }

    #[test]
    fn a_sample_is_bounded_and_fresh() {
        let t = Instant::now();
        let mut s = PeerStore::with_quotas(1 << 20, DEFAULT_MAX_AGE, Quotas::none());
        let k = key(1);
        for i in 0..40_000u32 {
            let when = if i % 2 == 0 {
                t
            } else {
                t + Duration::from_secs(300)
            };
            s.put(k, entry(i, when)).unwrap();
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let later = t + DEFAULT_MAX_AGE + Duration::from_secs(10);
        let got = s.sample(&k, later, 150, &mut rng);
        assert_eq!(got.len(), 150);
        assert!(got.iter().all(|e| e.at > t), "only fresh entries");
        let again = s.sample(&k, later, 150, &mut rng);
        assert_ne!(
            got.iter().map(|e| e.peer).collect::<Vec<_>>(),
            again.iter().map(|e| e.peer).collect::<Vec<_>>(),
            "another window"
        );
    }

    #[test]
    fn order_is_random_but_seeded() {
        let t = Instant::now();
        let mut s = PeerStore::default();
        for i in 0..50 {
            s.put(key(7), entry(i, t)).unwrap();
        }
        let order = |seed| {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            s.entries(&key(7), t, &mut rng)
                .iter()
                .map(|e| e.peer)
                .collect::<Vec<_>>()
        };
        assert_eq!(order(1), order(1));
        assert_ne!(order(1), order(2));
    }
}
