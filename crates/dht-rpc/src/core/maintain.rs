//! The node's own maintenance (see [`crate::Maintenance`]): a re-bootstrap every so often,
//! which walks for our id, then refreshes empty buckets and (adaptive) checks reachability.
//!
//! It is a timer of the core, so a node embedded as a library keeps its table fresh with no
//! loop of its own, and the simulator runs it in virtual time. A re-bootstrap does not start
//! while one of the table's own walks still runs (a slow network gets no pile of them), and
//! the waits come from the node's seeded generator.

use std::time::Instant;

use rand::Rng;

use super::Core;
use crate::handler::Handler;

impl<H: Handler> Core<H> {
    /// Runs the maintenance that is due: schedules the first re-bootstrap once the node is
    /// ready, and re-bootstraps when its time came.
    pub(super) fn maintain(&mut self, now: Instant) {
        let Some(m) = self.config.maintenance else {
            return;
        };
        if !self.bootstrapped {
            return;
        }
        let Some(due) = self.next_maintenance else {
            self.next_maintenance = Some(now + self.rng.random_range(m.between.0..=m.between.1));
            return;
        };
        if now < due {
            return;
        }
        self.next_maintenance = Some(now + self.rng.random_range(m.between.0..=m.between.1));
        if self.queries.values().any(|q| q.role.is_own()) {
            tracing::debug!("re-bootstrap skipped: the table's own walks still run");
            return;
        }
        self.stats.rebootstraps += 1;
        tracing::debug!(contacts = self.table.len(), "re-bootstrap");
        self.bootstrap(now);
    }
}
