//! Relays found through the DHT: a relay announces itself on [`RELAY_KEY`], and a peer that
//! may need one looks the key up and reserves on the first relay that holds its
//! reservation (`announce --relay auto`).
//!
//! Anyone can announce on the key, so a candidate is only a candidate: one that never
//! answers with a held reservation is passed over after [`RESERVE_WAIT`], and candidates
//! are tried in a random order so that a crowd of fake ones announced near the key does not
//! always come first.

use std::net::SocketAddrV4;
use std::time::Duration;

use futures::StreamExt;
use rand::seq::SliceRandom;

use crate::announcement::Announcement;
use crate::node::HyperDht;
use crate::options::AnnounceOptions;
use crate::relay::RELAY_KEY;

/// How long a candidate relay has to hold our reservation before the next is tried.
pub const RESERVE_WAIT: Duration = Duration::from_secs(3);

/// Candidates tried at most by [`HyperDht::reserve_any_relay`].
pub const RELAYS_TRIED: usize = 8;

/// Why no relay could be reserved on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FindRelayError {
    /// The lookup of [`RELAY_KEY`] found no relay.
    #[error("no relay is announced on the DHT (run one with `hyperdht --relay`)")]
    NoneAnnounced,
    /// Relays were found, but none held a reservation within [`RESERVE_WAIT`].
    #[error("{tried} relay(s) found, none held our reservation")]
    NoneHeld {
        /// How many were tried.
        tried: usize,
    },
}

impl HyperDht {
    /// Announces this node on [`RELAY_KEY`] and keeps the announce fresh, so that peers
    /// find it with [`HyperDht::find_relays`]. For a node built with
    /// [`crate::HyperDhtBuilder::relay`] on a host others can reach.
    pub fn announce_as_relay(&self) -> Announcement {
        self.announce_and_keep(RELAY_KEY, AnnounceOptions::default())
    }

    /// The relays announced on [`RELAY_KEY`], each once, in the order the lookup's replies
    /// named them (ourselves never).
    pub async fn find_relays(&self) -> Vec<SocketAddrV4> {
        let mut stream = self.lookup(RELAY_KEY, AnnounceOptions::default());
        let mut found = Vec::new();
        while let Some(reply) = stream.next().await {
            for p in reply.peers {
                if !found.contains(&p) && p != self.local_addr() {
                    found.push(p);
                }
            }
        }
        found
    }

    /// [`HyperDht::reserve_relay`], then waits up to `wait` for `relay` to hold the
    /// reservation; whether it does.
    pub async fn reserve_relay_within(&self, relay: SocketAddrV4, wait: Duration) -> bool {
        self.reserve_relay(relay);
        tokio::time::timeout(wait, async {
            while self.reservation() != Some((relay, true)) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .is_ok()
    }

    /// Finds relays on the DHT and reserves on one (tried in a random order, at most
    /// [`RELAYS_TRIED`], each given [`RESERVE_WAIT`] to hold the reservation); returns the
    /// relay that holds it. The core then keeps the reservation fresh, as
    /// [`HyperDht::reserve_relay`] does.
    pub async fn reserve_any_relay(&self) -> Result<SocketAddrV4, FindRelayError> {
        let mut relays = self.find_relays().await;
        if relays.is_empty() {
            return Err(FindRelayError::NoneAnnounced);
        }
        relays.shuffle(&mut rand::rng());
        relays.truncate(RELAYS_TRIED);
        for relay in &relays {
            if self.reserve_relay_within(*relay, RESERVE_WAIT).await {
                tracing::info!(%relay, "relay reservation held");
                return Ok(*relay);
            }
            tracing::debug!(%relay, "relay did not hold our reservation; trying the next");
        }
        Err(FindRelayError::NoneHeld {
            tried: relays.len(),
        })
    }
}
