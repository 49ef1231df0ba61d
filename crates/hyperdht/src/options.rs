//! [`AnnounceOptions`]: what announce, lookup and unannounce send besides the key.

use std::net::SocketAddrV4;

use dht_wire::{PeersRequest, PeersRequestType};

/// Options of announce, lookup and unannounce.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AnnounceOptions {
    /// The port we listen on; our UDP port when `None`.
    pub port: Option<u16>,
    /// Our LAN address: announced so that peers on the same LAN find it; in a lookup, asks
    /// for the local peers sharing its first two octets.
    pub local_address: Option<SocketAddrV4>,
}

impl AnnounceOptions {
    /// The `peers` request of `kind` with these options.
    pub fn request(&self, kind: PeersRequestType) -> PeersRequest {
        PeersRequest::new(kind, self.port, self.local_address)
    }
}
