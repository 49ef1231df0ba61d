//! [`Peers`]: the entries of one key, sorted by announcer address, in as little memory as
//! their number allows: a sorted vector while they are few (almost every key holds one or
//! two), a B-tree once they are many (a crowded key stays O(log n) per announce).
//!
//! A B-tree allocates a whole node (room for 11 entries, about 600 bytes) for a key's first
//! entry; with 100,000 announces of distinct keys that was three quarters of the node's
//! memory.

use std::collections::BTreeMap;
use std::collections::btree_map;
use std::net::SocketAddrV4;
use std::ops::Bound;

use super::Entry;

/// Entries a key holds in a vector before it moves them to a B-tree.
const FEW: usize = 32;

/// The entries of one key, by address.
#[derive(Debug)]
pub(super) enum Peers {
    /// Sorted by `peer`.
    Few(Vec<Entry>),
    Many(BTreeMap<SocketAddrV4, Entry>),
}

impl Default for Peers {
    fn default() -> Self {
        Peers::Few(Vec::new())
    }
}

impl Peers {
    pub(super) fn get_mut(&mut self, peer: &SocketAddrV4) -> Option<&mut Entry> {
        match self {
            Peers::Few(v) => match v.binary_search_by(|e| e.peer.cmp(peer)) {
                Ok(i) => Some(&mut v[i]),
                Err(_) => None,
            },
            Peers::Many(m) => m.get_mut(peer),
        }
    }

    /// Inserts or replaces the entry of `entry.peer`.
    pub(super) fn insert(&mut self, entry: Entry) {
        match self {
            Peers::Few(v) => match v.binary_search_by(|e| e.peer.cmp(&entry.peer)) {
                Ok(i) => v[i] = entry,
                Err(i) if v.len() < FEW => {
                    if v.capacity() == v.len() {
                        // Grow by one or two, not by doubling: most keys stay at one entry.
                        v.reserve_exact(v.len().clamp(1, 4));
                    }
                    v.insert(i, entry)
                }
                Err(_) => {
                    let mut m: BTreeMap<SocketAddrV4, Entry> =
                        std::mem::take(v).into_iter().map(|e| (e.peer, e)).collect();
                    m.insert(entry.peer, entry);
                    *self = Peers::Many(m);
                }
            },
            Peers::Many(m) => {
                m.insert(entry.peer, entry);
            }
        }
    }

    pub(super) fn remove(&mut self, peer: &SocketAddrV4) -> Option<Entry> {
        match self {
            Peers::Few(v) => {
                let i = v.binary_search_by(|e| e.peer.cmp(peer)).ok()?;
                let e = v.remove(i);
                if v.len() * 4 < v.capacity() {
                    v.shrink_to_fit();
                }
                Some(e)
            }
            Peers::Many(m) => m.remove(peer),
        }
    }

    /// Keeps the entries `keep` says to keep; `gone` sees each one dropped.
    pub(super) fn retain(
        &mut self,
        mut keep: impl FnMut(&Entry) -> bool,
        mut gone: impl FnMut(&Entry),
    ) {
        let mut judge = |e: &Entry| {
            let k = keep(e);
            if !k {
                gone(e);
            }
            k
        };
        match self {
            Peers::Few(v) => v.retain(|e| judge(e)),
            Peers::Many(m) => m.retain(|_, e| judge(e)),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        match self {
            Peers::Few(v) => v.is_empty(),
            Peers::Many(m) => m.is_empty(),
        }
    }

    /// The announcers' addresses, in order.
    pub(super) fn peers(&self) -> impl Iterator<Item = &SocketAddrV4> {
        self.range((Bound::Unbounded, Bound::Unbounded))
            .map(|e| &e.peer)
    }

    /// The entries whose address is within `bounds`, in order.
    pub(super) fn range(&self, bounds: (Bound<SocketAddrV4>, Bound<SocketAddrV4>)) -> Range<'_> {
        match self {
            Peers::Few(v) => {
                let lo = match bounds.0 {
                    Bound::Included(a) => v.partition_point(|e| e.peer < a),
                    Bound::Excluded(a) => v.partition_point(|e| e.peer <= a),
                    Bound::Unbounded => 0,
                };
                let hi = match bounds.1 {
                    Bound::Included(a) => v.partition_point(|e| e.peer <= a),
                    Bound::Excluded(a) => v.partition_point(|e| e.peer < a),
                    Bound::Unbounded => v.len(),
                };
                Range::Few(v[lo..hi.max(lo)].iter())
            }
            Peers::Many(m) => Range::Many(m.range(bounds)),
        }
    }
}

/// Entries of a [`Peers`] within bounds, in address order.
pub(super) enum Range<'a> {
    Few(std::slice::Iter<'a, Entry>),
    Many(btree_map::Range<'a, SocketAddrV4, Entry>),
}

impl<'a> Iterator for Range<'a> {
    type Item = &'a Entry;

    fn next(&mut self) -> Option<&'a Entry> {
        match self {
            Range::Few(i) => i.next(),
            Range::Many(r) => r.next().map(|(_, e)| e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::time::Instant;

    use super::*;

    fn e(i: u32) -> Entry {
        Entry {
            peer: SocketAddrV4::new(Ipv4Addr::from(i * 7919 % 1000), 1),
            local: None,
            at: Instant::now(),
        }
    }

    /// Few and many answer alike: the same entries in the same order for any range, across
    /// the move from vector to tree and back down by removals.
    #[test]
    fn few_and_many_agree_with_a_btree() {
        let mut p = Peers::default();
        let mut model = BTreeMap::new();
        for i in 0..100u32 {
            p.insert(e(i));
            model.insert(e(i).peer, e(i));
            p.insert(e(i / 2)); // a refresh (or a comeback)
            model.insert(e(i / 2).peer, e(i / 2));
            if i % 3 == 0 {
                let gone = e(i / 3).peer;
                assert_eq!(p.remove(&gone).is_some(), model.remove(&gone).is_some());
            }
            let lo = SocketAddrV4::new(Ipv4Addr::from(i * 5), 0);
            let hi = SocketAddrV4::new(Ipv4Addr::from(i * 9), 1);
            for b in [
                (Bound::Included(lo), Bound::Included(hi)),
                (Bound::Included(lo), Bound::Unbounded),
                (Bound::Unbounded, Bound::Excluded(lo)),
                (Bound::Excluded(lo), Bound::Excluded(hi)),
            ] {
                let got: Vec<_> = p.range(b).map(|e| e.peer).collect();
                let want: Vec<_> = model.range(b).map(|(a, _)| *a).collect();
                assert_eq!(got, want, "step {i}, bounds {b:?}");
            }
            assert_eq!(p.peers().count(), model.len());
            assert_eq!(p.is_empty(), model.is_empty());
            assert_eq!(
                p.get_mut(&e(i).peer).is_some(),
                model.contains_key(&e(i).peer)
            );
        }
        assert!(matches!(p, Peers::Many(_)), "moved to the tree past {FEW}");
    }
}
