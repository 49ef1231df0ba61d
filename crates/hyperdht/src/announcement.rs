//! [`Announcement`]: an announce kept alive by the node's core until stopped or dropped.

use std::time::Instant;

use dht_rpc::{QueryError, WeakDriver};
use dht_wire::Key;

use crate::core::{Core, KeepId};
use crate::node::{AnnounceOptions, HyperDht};

/// An announcement that the node's core re-announces every 4 to 5 minutes (a seeded random
/// wait, so that many announcers do not move in step) and unannounces when stopped or
/// dropped. Each re-announce's outcome is a [`crate::CoreEvent::Announced`] on
/// [`HyperDht::core_events`].
#[must_use = "dropping an Announcement unannounces it at once"]
pub struct Announcement {
    node: WeakDriver<Core>,
    id: Option<KeepId>,
}

impl Announcement {
    /// Keeps `key` announced: the first announce at once when `announce_now`, else after
    /// the re-announce wait.
    pub(crate) fn start(
        dht: &HyperDht,
        key: Key,
        opts: AnnounceOptions,
        announce_now: bool,
    ) -> Self {
        let id = dht
            .node
            .with_machine(|m| m.keep(Instant::now(), key, opts, announce_now));
        Announcement {
            node: dht.node.downgrade(),
            id: Some(id),
        }
    }

    /// Which kept announcement this is (as [`crate::CoreEvent::Announced`] names it).
    pub fn id(&self) -> Option<KeepId> {
        self.id
    }

    /// How the last announce went: `Ok(nodes that stored it)`, or why it failed (it is tried
    /// again at the next deadline); `None` before the first one ended, or once stopped.
    pub fn last_result(&self) -> Option<Result<usize, QueryError>> {
        let (id, node) = (self.id?, self.node.upgrade()?);
        node.read_machine(|m| m.last_announce(id))
    }

    /// Stops re-announcing and waits for the unannounce to finish.
    pub async fn stop(mut self) -> Result<(), QueryError> {
        let (Some(id), Some(node)) = (self.id.take(), self.node.upgrade()) else {
            return Err(QueryError::Cancelled);
        };
        node.machine_query(|m| m.stop_keeping(Instant::now(), id))
            .collect_all()
            .await
            .map(|_| ())
    }
}

impl HyperDht {
    /// Announces `key` now and every 4-5 minutes until the handle is stopped or dropped
    /// (then it unannounces). The node's core does the re-announcing: no task of its own.
    pub fn announce_and_keep(&self, key: Key, opts: AnnounceOptions) -> Announcement {
        Announcement::start(self, key, opts, true)
    }

    /// [`HyperDht::announce_and_keep`] for a key just announced (with
    /// [`HyperDht::announce`], to see its replies): the first re-announce comes in 4-5
    /// minutes.
    pub fn keep_announced(&self, key: Key, opts: AnnounceOptions) -> Announcement {
        Announcement::start(self, key, opts, false)
    }
}

impl Drop for Announcement {
    fn drop(&mut self) {
        // The core unannounces in the background.
        if let (Some(id), Some(node)) = (self.id.take(), self.node.upgrade()) {
            node.with_machine(|m| m.stop_keeping(Instant::now(), id));
        }
    }
}
