//! [`Announcement`]: an announce kept alive until dropped.

use std::time::Duration;

use dht_wire::Key;
use rand::Rng;
use tokio::sync::oneshot;

use crate::node::{AnnounceOptions, HyperDht};

/// An announcement that re-announces every 4 to 5 minutes (at random, so that many
/// announcers do not move in step) and unannounces when dropped or stopped.
pub struct Announcement {
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Announcement {
    pub(crate) fn start(dht: HyperDht, key: Key, opts: AnnounceOptions) -> Self {
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            loop {
                match dht.announce(key, opts).collect_all().await {
                    Ok(replies) => tracing::debug!(%key, nodes = replies.len(), "announced"),
                    Err(e) => {
                        tracing::warn!(%key, error = %e, "announce failed; retrying at the next interval")
                    }
                }
                let wait = Duration::from_millis(rand::rng().random_range(240_000..300_000));
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    _ = &mut stopped => break,
                }
            }
            if let Err(e) = dht.unannounce(key, opts).await {
                tracing::debug!(%key, error = %e, "unannounce failed");
            }
        });
        Announcement {
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops re-announcing and waits for the unannounce to finish.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for Announcement {
    fn drop(&mut self) {
        // The task unannounces in the background.
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}
