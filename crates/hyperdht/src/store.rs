//! [`PeerStore`]: who announced which key, bounded in memory, as the reference keeps it.
//!
//! Entries are keyed by key and announcer address. The store has two generations: when the
//! current one passes `max` (keys + entries, 65,536 by default), it becomes the previous one
//! and the old previous is dropped, so memory stays bounded whatever arrives. An entry older
//! than `max_age` (about 6 minutes: announcers re-announce every 4-5) is not returned.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use dht_wire::{Key, LocalPeer};
use rand::Rng;

/// The reference's store size: keys and entries of the current generation.
pub const DEFAULT_MAX: usize = 65_536;
/// The reference's entry lifetime: `6 * 60 * 1024` ms.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_millis(6 * 60 * 1024);

/// One announcement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The announcer's address: its source IP with the announced port.
    pub peer: SocketAddrV4,
    /// Its LAN address: the first two octets (to match a requester's) and the rest.
    pub local: Option<([u8; 2], LocalPeer)>,
    /// When it was last announced.
    pub at: Instant,
}

#[derive(Debug, Default)]
struct Generation {
    keys: HashMap<Key, BTreeMap<SocketAddrV4, Entry>>,
    size: usize,
}

/// The peers announced on keys, in two generations.
#[derive(Debug)]
pub struct PeerStore {
    current: Generation,
    previous: Generation,
    max: usize,
    max_age: Duration,
}

impl Default for PeerStore {
    fn default() -> Self {
        PeerStore::new(DEFAULT_MAX, DEFAULT_MAX_AGE)
    }
}

impl PeerStore {
    /// A store of at most `max` keys and entries per generation.
    pub fn new(max: usize, max_age: Duration) -> Self {
        PeerStore {
            current: Generation::default(),
            previous: Generation::default(),
            max: max.max(1),
            max_age,
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

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stores or refreshes an announcement.
    pub fn put(&mut self, key: Key, entry: Entry) {
        if let Some(e) = self
            .current
            .keys
            .get_mut(&key)
            .and_then(|m| m.get_mut(&entry.peer))
        {
            *e = entry;
            return;
        }
        remove(&mut self.previous, &key, &entry.peer);
        let list = match self.current.keys.get_mut(&key) {
            Some(l) => l,
            None => {
                self.current.size += 1;
                self.current.keys.entry(key).or_default()
            }
        };
        list.insert(entry.peer, entry);
        self.current.size += 1;
        if self.current.size > self.max {
            self.previous = std::mem::take(&mut self.current);
        }
    }

    /// Removes the announcement of `peer` on `key`, from both generations.
    pub fn remove(&mut self, key: &Key, peer: &SocketAddrV4) {
        remove(&mut self.current, key, peer);
        remove(&mut self.previous, key, peer);
    }

    /// The fresh entries of `key`, in random order.
    pub fn entries(&self, key: &Key, now: Instant, rng: &mut impl Rng) -> Vec<&Entry> {
        let mut out: Vec<&Entry> = [&self.current, &self.previous]
            .into_iter()
            .filter_map(|g| g.keys.get(key))
            .flat_map(|m| m.values())
            .filter(|e| now.saturating_duration_since(e.at) <= self.max_age)
            .collect();
        // Fisher-Yates with the caller's (seeded) generator.
        for i in (1..out.len()).rev() {
            out.swap(i, rng.random_range(0..=i));
        }
        out
    }
}

fn remove(g: &mut Generation, key: &Key, peer: &SocketAddrV4) {
    if let Some(m) = g.keys.get_mut(key)
        && m.remove(peer).is_some()
    {
        g.size -= 1;
        if m.is_empty() {
            g.keys.remove(key);
            g.size -= 1;
        }
    }
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
    fn put_refresh_remove_and_expire() {
        let t = Instant::now();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut s = PeerStore::default();
        s.put(key(1), entry(1, t));
        s.put(key(1), entry(2, t));
        s.put(key(1), entry(1, t + Duration::from_secs(100)));
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
            s.put(key(i), entry(i, t));
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
        s.put(key(1), entry(1, t));
        s.put(key(2), entry(2, t));
        s.put(key(3), entry(3, t)); // 6 > 4: rotate
        s.put(key(1), entry(1, t)); // back into the current generation
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        assert_eq!(
            s.entries(&key(1), t, &mut rng).len(),
            1,
            "no duplicate across generations"
        );
    }

    #[test]
    fn order_is_random_but_seeded() {
        let t = Instant::now();
        let mut s = PeerStore::default();
        for i in 0..50 {
            s.put(key(7), entry(i, t));
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
