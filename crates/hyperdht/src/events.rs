//! [`PeerEvent`]: what other peers asked of this node.

use std::net::SocketAddrV4;

use dht_wire::Key;

/// A `peers` request this node served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum PeerEvent {
    /// `peer` announced itself on `key` (stored).
    Announce {
        /// The key.
        key: Key,
        /// The announcer's address, as stored.
        peer: SocketAddrV4,
    },
    /// `peer` removed its announcement on `key`.
    Unannounce {
        /// The key.
        key: Key,
        /// The announcer's address.
        peer: SocketAddrV4,
    },
    /// `peer` looked `key` up.
    Lookup {
        /// The key.
        key: Key,
        /// The requester's address.
        peer: SocketAddrV4,
    },
}
