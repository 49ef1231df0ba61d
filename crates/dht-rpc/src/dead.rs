//! Addresses that stopped answering: a short-lived, bounded negative cache.
//!
//! A node that failed to answer a walk's request (sent twice, and where one could help, a
//! hole punch too) leaves the routing table at once, and its address goes here for
//! [`DEAD_FOR`]. (One that fails a single liveness or eviction ping leaves the table but is
//! not marked: one lost datagram should not keep a live node out of every walk.) While it is here, walks do not take it as a
//! candidate when others name it (their tables may still hold it). Its answer to a request
//! we still send it takes it out again, as does a request from it once its source proved
//! lately that it receives (a request alone is spoofable: the address is public).

use std::collections::BTreeMap;
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

/// How long an address stays marked dead.
pub const DEAD_FOR: Duration = Duration::from_secs(60);
/// Addresses held at most.
pub const MAX_DEAD: usize = 4096;

/// The addresses marked dead, with when each was marked.
#[derive(Debug, Default)]
pub struct DeadList {
    marked: BTreeMap<SocketAddrV4, Instant>,
}

impl DeadList {
    /// `addr` did not answer.
    pub fn mark(&mut self, now: Instant, addr: SocketAddrV4) {
        if self.marked.len() >= MAX_DEAD && !self.marked.contains_key(&addr) {
            self.marked
                .retain(|_, t| now.saturating_duration_since(*t) < DEAD_FOR);
            if self.marked.len() >= MAX_DEAD {
                // Still full of fresh entries: the oldest goes.
                if let Some(oldest) = self.marked.iter().min_by_key(|(_, t)| **t).map(|(a, _)| *a) {
                    self.marked.remove(&oldest);
                }
            }
        }
        self.marked.insert(addr, now);
    }

    /// Whether `addr` is marked dead now.
    pub fn is_dead(&self, now: Instant, addr: SocketAddrV4) -> bool {
        self.marked
            .get(&addr)
            .is_some_and(|t| now.saturating_duration_since(*t) < DEAD_FOR)
    }

    /// `addr` answered us, or sent a request from a source that proved it receives: it is
    /// alive.
    pub fn revive(&mut self, addr: SocketAddrV4) {
        if !self.marked.is_empty() {
            self.marked.remove(&addr);
        }
    }

    /// Addresses held (expired ones included until swept).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.marked.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_expire_revive_and_stay_bounded() {
        let t = Instant::now();
        let a: SocketAddrV4 = "10.0.0.1:1".parse().expect("addr");
        let mut d = DeadList::default();
        d.mark(t, a);
        assert!(d.is_dead(t + DEAD_FOR / 2, a));
        assert!(!d.is_dead(t + DEAD_FOR, a), "expired");
        d.revive(a);
        assert!(!d.is_dead(t, a));
        for i in 0..(MAX_DEAD as u32 * 2) {
            d.mark(t, SocketAddrV4::new(i.into(), 1));
        }
        assert!(d.len() <= MAX_DEAD);
        d.mark(t + DEAD_FOR, a);
        assert!(d.len() <= MAX_DEAD);
        assert!(d.is_dead(t + DEAD_FOR, a), "the newest is kept");
    }
}
