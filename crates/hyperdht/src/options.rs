//! [`PeerOptions`]: what announce, lookup and unannounce send besides the key (one type, as
//! the reference takes one `{ port, localAddress }` object for all three; the names
//! [`AnnounceOptions`] and [`LookupOptions`] say which call a value is for).

use std::net::SocketAddrV4;

use dht_wire::{PeersRequest, PeersRequestType};

/// Options of announce, unannounce and lookup.
///
/// ```
/// use hyperdht::{AnnounceOptions, LookupOptions};
///
/// let opts = AnnounceOptions::new(Some(7777), Some("192.168.1.20:7777".parse().unwrap()));
/// assert_eq!(opts, AnnounceOptions::default().port(7777).local_address("192.168.1.20:7777".parse().unwrap()));
///
/// // A lookup that also asks for the local peers sharing our LAN's first two octets, and
/// // leaves out our own announce on port 7777.
/// let opts = LookupOptions::default().port(7777).local_address("10.0.3.3:0".parse().unwrap());
/// assert!(opts.local_address.is_some());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerOptions {
    /// The port we listen on, announced (our UDP port when `None`). In a lookup, the port
    /// we announced the key with, if we did: answers leave out the entry of our address
    /// with that port, as the reference's.
    pub port: Option<u16>,
    /// Our LAN address: announced so that peers on the same LAN find it; in a lookup, asks
    /// for the local peers sharing its first two octets.
    pub local_address: Option<SocketAddrV4>,
}

/// The options of an announce or unannounce.
pub type AnnounceOptions = PeerOptions;
/// The options of a lookup.
pub type LookupOptions = PeerOptions;

impl PeerOptions {
    /// The port we listen on (our UDP port when `None`) and our LAN address.
    pub fn new(port: Option<u16>, local_address: Option<SocketAddrV4>) -> Self {
        PeerOptions {
            port,
            local_address,
        }
    }

    /// With this port announced (rather than our UDP port).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// With this LAN address announced.
    pub fn local_address(mut self, addr: SocketAddrV4) -> Self {
        self.local_address = Some(addr);
        self
    }

    /// The `peers` request of `kind` with these options.
    pub fn request(&self, kind: PeersRequestType) -> PeersRequest {
        PeersRequest::new(kind, self.port, self.local_address)
    }
}
