//! Announcements kept alive by the core: each is announced again every 4 to 5 minutes (a
//! wait drawn from the core's seeded generator, so that many announcers do not move in
//! step), and unannounced when the caller stops keeping it. The outcome of every
//! re-announce is a [`CoreEvent::Announced`].
//!
//! Abuse: nothing from the network starts or stops a kept announcement; a failed
//! re-announce is tried again at the next deadline, never sooner, so an unreachable network
//! costs one walk per 4 to 5 minutes per key.

use std::time::{Duration, Instant};

use dht_rpc::{Event, QueryError, QueryId};
use dht_wire::{Key, PeersRequestType};
use rand::Rng;

use super::{Core, CoreEvent};
use crate::options::AnnounceOptions;

/// The least and the most time between two announces of a kept key.
pub const REANNOUNCE: (Duration, Duration) = (Duration::from_secs(240), Duration::from_secs(300));

/// Identifies an announcement kept by a [`Core`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeepId(pub u64);

/// One kept announcement.
#[derive(Debug)]
pub(super) struct Kept {
    key: Key,
    opts: AnnounceOptions,
    next: Instant,
    /// The announce walk running now.
    running: Option<QueryId>,
    /// How the last announce went: the nodes that stored it, or why it failed.
    last: Option<Result<usize, QueryError>>,
}

impl Core {
    /// Keeps `key` announced with `opts`: now (unless `announce_now` is false, when the
    /// caller has just announced it), then every 4 to 5 minutes, until
    /// [`Core::stop_keeping`].
    pub fn keep(
        &mut self,
        now: Instant,
        key: Key,
        opts: AnnounceOptions,
        announce_now: bool,
    ) -> KeepId {
        self.now = now;
        let id = KeepId(self.next_keep);
        self.next_keep += 1;
        let next = if announce_now {
            now
        } else {
            now + self.reannounce_wait()
        };
        self.kept.insert(
            id,
            Kept {
                key,
                opts,
                next,
                running: None,
                last: None,
            },
        );
        self.announce_due(now);
        self.pump();
        id
    }

    /// Stops keeping an announcement and unannounces it; the unannounce walk's id, to wait
    /// for it (its events come as any query's).
    pub fn stop_keeping(&mut self, now: Instant, id: KeepId) -> Option<QueryId> {
        self.now = now;
        let k = self.kept.remove(&id)?;
        if let Some(q) = k.running {
            self.rpc.cancel_query(q);
        }
        Some(self.unannounce(now, k.key, k.opts))
    }

    /// Announcements kept now.
    pub fn kept(&self) -> usize {
        self.kept.len()
    }

    /// How the last announce of kept announcement `id` went: `Ok(nodes that stored it)` or
    /// the query's error; `None` before the first one ended (or for an unknown id).
    pub fn last_announce(&self, id: KeepId) -> Option<Result<usize, QueryError>> {
        self.kept.get(&id)?.last.clone()
    }

    /// The ids of the announcements kept now.
    pub fn kept_ids(&self) -> Vec<KeepId> {
        self.kept.keys().copied().collect()
    }

    fn reannounce_wait(&mut self) -> Duration {
        self.rpc.rng().random_range(REANNOUNCE.0..=REANNOUNCE.1)
    }

    /// Starts the announces that are due.
    pub(super) fn announce_due(&mut self, now: Instant) {
        let due: Vec<KeepId> = self
            .kept
            .iter()
            .filter(|(_, k)| k.running.is_none() && k.next <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let wait = self.reannounce_wait();
            let Some(k) = self.kept.get_mut(&id) else {
                continue;
            };
            k.next = now + wait;
            let spec = super::peers::spec(PeersRequestType::Announce, k.key, k.opts);
            let q = self.rpc.query(now, spec);
            if let Some(k) = self.kept.get_mut(&id) {
                k.running = Some(q);
            }
        }
    }

    /// The next deadline of a kept announcement.
    pub(super) fn next_announce(&self) -> Option<Instant> {
        self.kept
            .values()
            .filter(|k| k.running.is_none())
            .map(|k| k.next)
            .min()
    }

    /// Takes the events of the kept announcements' walks; gives back the others.
    pub(super) fn kept_event(&mut self, e: Event) -> Result<Option<CoreEvent>, Event> {
        let query = match &e {
            Event::QueryReply { query, .. } | Event::QueryDone { query, .. } => *query,
            _ => return Err(e),
        };
        let Some((id, k)) = self.kept.iter_mut().find(|(_, k)| k.running == Some(query)) else {
            return Err(e);
        };
        let Event::QueryDone { result, .. } = e else {
            return Ok(None);
        };
        k.running = None;
        k.last = Some(result.clone().map(|o| o.commits));
        if let Err(err) = &result {
            tracing::warn!(key = %k.key, error = %err, "re-announce failed; trying again at the next deadline");
        }
        Ok(Some(CoreEvent::Announced {
            keep: *id,
            key: k.key,
            result: result.map(|o| o.commits),
        }))
    }
}
