//! [`RoutingTable`]: Kademlia k-buckets around our own id.
//!
//! Bucket `i` holds contacts whose id shares exactly `i` leading bits with ours, so the
//! table is the k-bucket tree fully split along our own id's path (256 buckets at most, each
//! of at most `k` contacts, least recently seen first). Contacts are added or refreshed on
//! every message that carries a valid id; we never add ourselves.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Instant;

use dht_wire::{NodeAddr, NodeId};

use crate::guard::{Ipv4Range, in_ranges, prefix_of};

/// A node in the routing table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// The node's id.
    pub id: NodeId,
    /// Where it answers.
    pub addr: SocketAddrV4,
    /// When we last heard from it (see [`RoutingTable::seen_at`]).
    pub last_seen: Seen,
}

/// When a contact was last heard from: nanoseconds since the table's first contact, 8
/// bytes where an `Instant` takes 16 (a table in a network of 100,000 nodes holds about 150
/// contacts). Ordered as the times are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seen(u64);

impl Contact {
    /// The id and address.
    pub fn node(&self) -> NodeAddr {
        NodeAddr {
            id: self.id,
            addr: self.addr,
        }
    }
}

/// What [`RoutingTable::insert`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Insert {
    /// The contact was already known and was refreshed (moved to most recently seen).
    Refreshed,
    /// The contact was new and was added.
    Added,
    /// The bucket is full: these are its least recently seen contacts, oldest first.
    Full(Vec<Contact>),
    /// The id is ours.
    Own,
    /// The contact's IP or /24 already holds as many contacts as [`TableLimits`] allow.
    Limited,
}

/// How many contacts one IP and one /24 may hold, in all and per bucket, so that one host
/// cannot fill a table with crafted ids. Sources in `trusted` are exempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableLimits {
    /// Contacts per IP: in all, per bucket.
    pub per_ip: (usize, usize),
    /// Contacts per /24: in all, per bucket.
    pub per_prefix: (usize, usize),
    /// Exempt ranges.
    pub trusted: Vec<Ipv4Range>,
}

impl TableLimits {
    /// No limits (the reference's behaviour).
    pub fn none() -> Self {
        TableLimits {
            per_ip: (usize::MAX, usize::MAX),
            per_prefix: (usize::MAX, usize::MAX),
            trusted: Vec::new(),
        }
    }
}

/// Working space of [`RoutingTable::closest_into`], kept by a caller that answers often
/// so that answering does not allocate.
#[derive(Debug, Default)]
pub struct ClosestScratch(Vec<Candidate>);

/// A contact that may be among the closest: the top 64 bits of its distance, and its
/// bucket and place in it.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    top: u64,
    bucket: u16,
    pos: u16,
}

/// Kademlia k-buckets around `own`.
#[derive(Debug, Clone)]
pub struct RoutingTable {
    own: NodeId,
    k: usize,
    /// By index (0: the farthest half of the id space), as deep as the deepest bucket that
    /// ever held a contact (a table of N nodes' contacts uses about log2(N / k) of the 257).
    buckets: Vec<Vec<Contact>>,
    len: usize,
    limits: TableLimits,
    /// The time of the first contact: what [`Seen`] counts from.
    epoch: Option<Instant>,
}

impl RoutingTable {
    /// An empty table around `own` with buckets of `k` contacts.
    pub fn new(own: NodeId, k: usize) -> Self {
        Self::with_limits(own, k, TableLimits::none())
    }

    /// An empty table whose contacts per IP and per /24 are bounded by `limits`.
    pub fn with_limits(own: NodeId, k: usize, limits: TableLimits) -> Self {
        RoutingTable {
            own,
            k: k.max(1),
            buckets: Vec::new(),
            len: 0,
            limits,
            epoch: None,
        }
    }

    /// Whether a contact at `ip` may join bucket `b` (`except`: a contact that is moving
    /// there from another IP, not counted).
    fn within_limits(&self, b: usize, ip: &Ipv4Addr, except: Option<&NodeId>) -> bool {
        if in_ranges(&self.limits.trusted, *ip) {
            return true;
        }
        let p = prefix_of(ip);
        let others = self.bucket(b).iter().filter(|c| Some(&c.id) != except);
        let (mut bucket_ip, mut bucket_prefix) = (0, 0);
        for c in others {
            bucket_ip += usize::from(c.addr.ip() == ip);
            bucket_prefix += usize::from(prefix_of(c.addr.ip()) == p);
        }
        // A contact that moves keeps its old IP counted until it has moved: its old IP
        // differs from `ip`, so the counts below are of others only.
        let (all_ip, all_prefix) = self.held_by(ip);
        let moving_in_prefix = except
            .and_then(|id| self.bucket(b).iter().find(|c| c.id == *id))
            .is_some_and(|c| prefix_of(c.addr.ip()) == p);
        let all_prefix = all_prefix - usize::from(moving_in_prefix);
        bucket_ip < self.limits.per_ip.1
            && all_ip < self.limits.per_ip.0
            && bucket_prefix < self.limits.per_prefix.1
            && all_prefix < self.limits.per_prefix.0
    }

    /// `t` on the table's clock (times before its first contact all read as that contact's
    /// time, which no contact was seen before).
    pub fn seen(&self, t: Instant) -> Seen {
        let nanos = self
            .epoch
            .map_or(0, |e| t.saturating_duration_since(e).as_nanos());
        Seen(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// The time `seen` stands for (`None` before the first contact).
    pub fn seen_at(&self, seen: Seen) -> Option<Instant> {
        self.epoch
            .map(|e| e + std::time::Duration::from_nanos(seen.0))
    }

    /// The contacts at `ip`, and in its /24, in the whole table. A scan: a table holds a
    /// few hundred contacts at most, and a count kept beside them cost more memory than
    /// the contacts' addresses (a node in a simulation of 100,000 keeps ~150 of them).
    fn held_by(&self, ip: &Ipv4Addr) -> (usize, usize) {
        let p = prefix_of(ip);
        let (mut at_ip, mut in_prefix) = (0, 0);
        for c in self.buckets.iter().flatten() {
            at_ip += usize::from(c.addr.ip() == ip);
            in_prefix += usize::from(prefix_of(c.addr.ip()) == p);
        }
        (at_ip, in_prefix)
    }

    /// Our own id.
    pub fn own_id(&self) -> NodeId {
        self.own
    }

    /// The number of contacts.
    pub fn len(&self) -> usize {
        self.len
    }

    /// `(bucket index, contacts)` of every bucket that holds any (index 0: the farthest
    /// half of the id space).
    pub fn bucket_fill(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.buckets
            .iter()
            .enumerate()
            .filter(|(_, b)| !b.is_empty())
            .map(|(i, b)| (i, b.len()))
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bucket `b`'s contacts (none past the deepest bucket used).
    fn bucket(&self, b: usize) -> &[Contact] {
        self.buckets.get(b).map_or(&[], Vec::as_slice)
    }

    /// Bucket `b`, the table made as deep as it first.
    fn bucket_mut(&mut self, b: usize) -> &mut Vec<Contact> {
        if self.buckets.len() <= b {
            self.buckets.resize_with(b + 1, Vec::new);
        }
        &mut self.buckets[b]
    }

    /// The bucket of `id`.
    fn bucket_of(&self, id: &NodeId) -> usize {
        self.own.distance(id).leading_zeros() as usize
    }

    /// The contact with this id.
    pub fn get(&self, id: &NodeId) -> Option<&Contact> {
        self.bucket(self.bucket_of(id)).iter().find(|c| c.id == *id)
    }

    /// Adds or refreshes a contact. A full bucket is left unchanged and its least recently
    /// seen contacts are returned, for the caller to ping and evict.
    pub fn insert(&mut self, id: NodeId, addr: SocketAddrV4, now: Instant) -> Insert {
        if id == self.own {
            return Insert::Own;
        }
        let k = self.k;
        self.epoch.get_or_insert(now);
        let seen = self.seen(now);
        let b = self.bucket_of(&id);
        if let Some(pos) = self.bucket(b).iter().position(|c| c.id == id) {
            let old = self.bucket(b)[pos].addr;
            if old.ip() != addr.ip() && !self.within_limits(b, addr.ip(), Some(&id)) {
                return Insert::Limited;
            }
            let bucket = self.bucket_mut(b);
            let mut c = bucket.remove(pos);
            c.addr = addr;
            c.last_seen = seen;
            bucket.push(c);
            return Insert::Refreshed;
        }
        if !self.within_limits(b, addr.ip(), None) {
            return Insert::Limited;
        }
        let contact = Contact {
            id,
            addr,
            last_seen: seen,
        };
        if self.bucket(b).len() < k {
            let bucket = self.bucket_mut(b);
            if bucket.len() == bucket.capacity() {
                // Grow by doubling, but never past k (a full bucket holds no slack).
                let more = bucket.len().max(4).min(k - bucket.len());
                bucket.reserve_exact(more);
            }
            bucket.push(contact);
            self.len += 1;
            return Insert::Added;
        }
        Insert::Full(self.bucket(b).to_vec())
    }

    /// Whether [`RoutingTable::insert`] could take `id` at `addr` now, or after evicting a
    /// contact not seen since `stale_before`: its bucket has room or a stale contact, and
    /// its IP and /24 are within the limits. (No point verifying a newcomer that cannot
    /// get in.)
    pub fn could_take(
        &self,
        id: &NodeId,
        addr: SocketAddrV4,
        stale_before: Option<Instant>,
    ) -> bool {
        if *id == self.own {
            return false;
        }
        let b = self.bucket_of(id);
        let bucket = self.bucket(b);
        let stale_before = stale_before.map(|t| self.seen(t));
        let room = bucket.len() < self.k
            || stale_before.is_some_and(|t| bucket.iter().any(|c| c.last_seen < t));
        room && self.within_limits(b, addr.ip(), None)
    }

    /// Removes a contact; returns it if it was there.
    pub fn remove(&mut self, id: &NodeId) -> Option<Contact> {
        let b = self.bucket_of(id);
        let bucket = self.buckets.get_mut(b)?;
        let pos = bucket.iter().position(|c| c.id == *id)?;
        self.len -= 1;
        let c = bucket.remove(pos);
        Some(c)
    }

    /// The `n` contacts closest to `target`, closest first, by exact XOR distance.
    pub fn closest(&self, target: &NodeId, n: usize) -> Vec<NodeAddr> {
        let mut out = Vec::with_capacity(n.min(self.len()));
        self.closest_into(target, n, &mut ClosestScratch::default(), &mut out);
        out
    }

    /// [`RoutingTable::closest`] into `out` (cleared first), with `scratch` as working
    /// space: a caller that keeps both answers without allocating.
    pub fn closest_into(
        &self,
        target: &NodeId,
        n: usize,
        scratch: &mut ClosestScratch,
        out: &mut Vec<NodeAddr>,
    ) {
        out.clear();
        if self.is_empty() || n == 0 {
            return;
        }
        // Buckets in order of distance from the target, so that only the contacts that can
        // be among the `n` closest have their distance computed (a full bucket `i` is
        // usually all of them: 20 distances, not one per contact). With `i` the bits the
        // target shares with our id, bucket `i`'s contacts agree with the target on bit `i`
        // too: they are the closest. Every deeper bucket's differ from it first at bit `i`:
        // next, as one group. Bucket `j < i`'s differ from it first at bit `j`: after them,
        // from `i - 1` down to 0.
        let i = self.bucket_of(target);
        self.take_closest(target, n, scratch, out, i..i + 1);
        if out.len() < n {
            self.take_closest(target, n, scratch, out, i + 1..self.buckets.len());
        }
        for j in (0..i).rev() {
            if out.len() >= n {
                break;
            }
            self.take_closest(target, n, scratch, out, j..j + 1);
        }
    }

    /// Appends to `out`, closest first, as many of the contacts of `buckets` as `n` leaves
    /// room for: a group all of whose contacts are closer to `target` than any later
    /// group's. A candidate is the top 64 bits of its distance and where it is (16 bytes);
    /// the whole distance is computed only when those tie. The scratch holds at most twice
    /// the room: the deeper group can be most of the table (ids are unique, so keeping the
    /// `room` closest of each chunk keeps the same set).
    fn take_closest(
        &self,
        target: &NodeId,
        n: usize,
        scratch: &mut ClosestScratch,
        out: &mut Vec<NodeAddr>,
        buckets: std::ops::Range<usize>,
    ) {
        let room = n.saturating_sub(out.len());
        if room == 0 {
            return;
        }
        let contact = |c: &Candidate| &self.buckets[usize::from(c.bucket)][usize::from(c.pos)];
        let order = |a: &Candidate, b: &Candidate| {
            a.top.cmp(&b.top).then_with(|| {
                contact(a)
                    .id
                    .distance(target)
                    .cmp(&contact(b).id.distance(target))
            })
        };
        let top = |id: &NodeId| {
            let word = |x: &NodeId| {
                let b = x.as_bytes();
                u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
            };
            word(id) ^ word(target)
        };
        let list = &mut scratch.0;
        list.clear();
        for b in buckets {
            for (pos, c) in self.bucket(b).iter().enumerate() {
                if list.len() == 2 * room {
                    list.select_nth_unstable_by(room, order);
                    list.truncate(room);
                }
                // At most 256 buckets of at most `k` (a u16) contacts.
                list.push(Candidate {
                    top: top(&c.id),
                    bucket: b as u16,
                    pos: pos as u16,
                });
            }
        }
        if list.len() > room {
            list.select_nth_unstable_by(room, order);
            list.truncate(room);
        }
        list.sort_unstable_by(order);
        out.extend(list.iter().map(|c| contact(c).node()));
    }

    /// Up to `n` contacts not seen since `before`, least recently seen first.
    pub fn stale(&self, before: Instant, n: usize) -> Vec<Contact> {
        let before = self.seen(before);
        let mut old: Vec<&Contact> = self
            .buckets
            .iter()
            .flatten()
            .filter(|c| c.last_seen < before)
            .collect();
        old.sort_by_key(|c| (c.last_seen, c.id));
        old.into_iter().take(n).cloned().collect()
    }

    /// The buckets that are empty although a deeper one (closer to our id) holds contacts:
    /// regions of the id space we know nobody in, where a lookup would have to start blind.
    pub fn empty_buckets(&self) -> Vec<usize> {
        let Some(deepest) = self.buckets.iter().rposition(|b| !b.is_empty()) else {
            return Vec::new();
        };
        (0..deepest)
            .filter(|i| self.buckets[*i].is_empty())
            .collect()
    }

    /// An id in bucket `i`: our id with bit `i` flipped and the bits after it from `random`.
    pub fn id_in_bucket(&self, i: usize, random: [u8; 32]) -> NodeId {
        let own = self.own.as_bytes();
        let mut out = [0u8; 32];
        for bit in 0..256 {
            let (byte, mask) = (bit / 8, 0x80u8 >> (bit % 8));
            let b = match bit.cmp(&i) {
                std::cmp::Ordering::Less => own[byte] & mask,
                std::cmp::Ordering::Equal => !own[byte] & mask,
                std::cmp::Ordering::Greater => random[byte] & mask,
            };
            out[byte] |= b;
        }
        NodeId::from_bytes(out)
    }

    /// Every contact, bucket by bucket.
    pub fn iter(&self) -> impl Iterator<Item = &Contact> {
        self.buckets.iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    fn addr(i: u32) -> SocketAddrV4 {
        SocketAddrV4::new(i.to_be_bytes().into(), 1 + (i % 60000) as u16)
    }

    proptest! {
        #[test]
        fn buckets_never_exceed_k_and_closest_is_exact(
            own in any::<[u8; 32]>(),
            ids in proptest::collection::vec(any::<[u8; 32]>(), 0..300),
            target in any::<[u8; 32]>(),
            k in 1usize..25,
        ) {
            let own = NodeId::from_bytes(own);
            let target = NodeId::from_bytes(target);
            let now = Instant::now();
            let mut t = RoutingTable::new(own, k);
            let mut kept = Vec::new();
            for (i, id) in ids.iter().enumerate() {
                let id = NodeId::from_bytes(*id);
                match t.insert(id, addr(i as u32), now) {
                    Insert::Added => kept.push(id),
                    Insert::Own | Insert::Refreshed => {}
                    Insert::Full(old) => prop_assert_eq!(old.len(), k),
                    Insert::Limited => prop_assert!(false, "no limits configured"),
                }
            }
            for b in &t.buckets {
                prop_assert!(b.len() <= k);
            }
            prop_assert_eq!(t.len(), kept.len());
            prop_assert!(t.get(&own).is_none());
            // Brute force: the n closest of what the table holds.
            kept.sort_by_key(|id| id.distance(&target));
            let got: Vec<NodeId> = t.closest(&target, 20).into_iter().map(|n| n.id).collect();
            prop_assert_eq!(&got[..], &kept[..kept.len().min(20)]);
        }
    }

    proptest! {
        /// Targets that share `shared` leading bits with our id, so that every order of
        /// buckets is met (a random target shares one bit or none).
        #[test]
        fn closest_is_exact_for_targets_near_our_id(
            own in any::<[u8; 32]>(),
            ids in proptest::collection::vec(any::<[u8; 32]>(), 0..300),
            near in proptest::collection::vec(any::<[u8; 32]>(), 0..60),
            random in any::<[u8; 32]>(),
            shared in 0usize..=256,
            n in 0usize..30,
        ) {
            let own = NodeId::from_bytes(own);
            let mut t = RoutingTable::new(own, 20);
            let now = Instant::now();
            // Contacts deep in the table too: ids near ours fill the deep buckets.
            let deep = near.iter().enumerate().map(|(i, r)| t.id_in_bucket(8 + i % 40, *r));
            let all: Vec<NodeId> = ids.iter().map(|b| NodeId::from_bytes(*b)).chain(deep).collect();
            for (i, id) in all.iter().enumerate() {
                t.insert(*id, addr(i as u32), now);
            }
            let target = if shared == 256 { own } else { t.id_in_bucket(shared, random) };
            let mut kept: Vec<NodeId> = t.iter().map(|c| c.id).collect();
            kept.sort_by_key(|id| id.distance(&target));
            let got: Vec<NodeId> = t.closest(&target, n).into_iter().map(|c| c.id).collect();
            prop_assert_eq!(&got[..], &kept[..kept.len().min(n)]);
        }
    }

    proptest! {
        /// Ids whose first 64 bits are all the same: every candidate's top 64 bits of
        /// distance tie, and the rest of the distance must order them.
        #[test]
        fn closest_is_exact_when_the_top_bits_tie(
            own in any::<[u8; 32]>(),
            tails in proptest::collection::vec(any::<[u8; 24]>(), 1..60),
            head in any::<[u8; 8]>(),
            target in any::<[u8; 32]>(),
            n in 1usize..30,
        ) {
            let own = NodeId::from_bytes(own);
            let mut t = RoutingTable::new(own, 64);
            let now = Instant::now();
            let mut kept = Vec::new();
            for (i, tail) in tails.iter().enumerate() {
                let mut id = [0; 32];
                id[..8].copy_from_slice(&head);
                id[8..].copy_from_slice(tail);
                let id = NodeId::from_bytes(id);
                if t.insert(id, addr(i as u32), now) == Insert::Added {
                    kept.push(id);
                }
            }
            let target = NodeId::from_bytes(target);
            kept.sort_by_key(|id| id.distance(&target));
            let got: Vec<NodeId> = t.closest(&target, n).into_iter().map(|c| c.id).collect();
            prop_assert_eq!(&got[..], &kept[..kept.len().min(n)]);
        }
    }

    proptest! {
        #[test]
        fn id_in_bucket_lands_in_that_bucket(own in any::<[u8; 32]>(), random in any::<[u8; 32]>(), i in 0usize..256) {
            let t = RoutingTable::new(NodeId::from_bytes(own), 20);
            let id = t.id_in_bucket(i, random);
            prop_assert_eq!(t.bucket_of(&id), i);
        }
    }

    proptest! {
        #[test]
        fn one_ip_or_prefix_never_holds_more_than_its_share(
            own in any::<[u8; 32]>(),
            ids in proptest::collection::vec((any::<[u8; 32]>(), 0u32..8, 1u16..4), 0..400),
        ) {
            let limits = TableLimits {
                per_ip: (2, 1),
                per_prefix: (4, 2),
                trusted: vec!["127.0.0.0/8".parse().unwrap()],
            };
            let mut t = RoutingTable::with_limits(NodeId::from_bytes(own), 20, limits);
            let now = Instant::now();
            for (id, host, port) in &ids {
                // Eight hosts in two /24s, a few ports each; now and then on loopback.
                let ip = if *host == 7 {
                    Ipv4Addr::LOCALHOST
                } else {
                    Ipv4Addr::new(1, 2, (*host % 2) as u8, *host as u8)
                };
                t.insert(NodeId::from_bytes(*id), SocketAddrV4::new(ip, *port), now);
                let first = t.iter().next().map(|c| c.id);
                if let Some(c) = first && port % 3 == 0 {
                    t.remove(&c);
                }
            }
            let mut per_ip = std::collections::BTreeMap::<Ipv4Addr, usize>::new();
            let mut per_prefix = std::collections::BTreeMap::<u32, usize>::new();
            for c in t.iter().filter(|c| !c.addr.ip().is_loopback()) {
                *per_ip.entry(*c.addr.ip()).or_default() += 1;
                *per_prefix.entry(prefix_of(c.addr.ip())).or_default() += 1;
            }
            prop_assert!(per_ip.values().all(|n| *n <= 2), "{per_ip:?}");
            prop_assert!(per_prefix.values().all(|n| *n <= 4), "{per_prefix:?}");
            for b in &t.buckets {
                let mut ips: Vec<_> = b.iter().filter(|c| !c.addr.ip().is_loopback()).map(|c| *c.addr.ip()).collect();
                ips.sort();
                let n = ips.len();
                ips.dedup();
                prop_assert_eq!(ips.len(), n, "one contact per IP per bucket");
            }
            prop_assert_eq!(t.iter().count(), t.len());
        }
    }

    #[test]
    fn empty_buckets_are_those_below_the_deepest() {
        let own = NodeId::from_bytes([0; 32]);
        let mut t = RoutingTable::new(own, 20);
        assert!(t.empty_buckets().is_empty());
        let now = Instant::now();
        t.insert(t.id_in_bucket(3, [7; 32]), addr(1), now);
        t.insert(t.id_in_bucket(1, [7; 32]), addr(2), now);
        assert_eq!(t.empty_buckets(), vec![0, 2]);
    }

    #[test]
    fn refresh_moves_to_the_back_and_stale_orders_by_age() {
        let own = NodeId::from_bytes([0; 32]);
        let t0 = Instant::now();
        let mut t = RoutingTable::new(own, 2);
        let a = NodeId::from_bytes([0x80; 32]);
        let mut b = [0x80; 32];
        b[31] = 1;
        let b = NodeId::from_bytes(b);
        let mut c = [0x80; 32];
        c[31] = 2;
        let c = NodeId::from_bytes(c);
        assert_eq!(t.insert(a, addr(1), t0), Insert::Added);
        assert_eq!(
            t.insert(b, addr(2), t0 + Duration::from_secs(1)),
            Insert::Added
        );
        assert_eq!(
            t.insert(a, addr(3), t0 + Duration::from_secs(2)),
            Insert::Refreshed
        );
        match t.insert(c, addr(4), t0) {
            Insert::Full(old) => assert_eq!(old[0].id, b, "least recently seen first"),
            other => panic!("{other:?}"),
        }
        assert_eq!(t.get(&a).map(|c| c.addr), Some(addr(3)));
        let stale = t.stale(t0 + Duration::from_secs(10), 3);
        assert_eq!(stale.iter().map(|c| c.id).collect::<Vec<_>>(), vec![b, a]);
        assert!(t.remove(&b).is_some());
        assert_eq!(t.insert(c, addr(4), t0), Insert::Added);
        assert_eq!(t.insert(own, addr(5), t0), Insert::Own);
    }
}
