//! [`AnnounceOptions`]: what announce, lookup and unannounce send besides the key.

use std::net::SocketAddrV4;

use dht_wire::{PeersRequest, PeersRequestType};

/// Options of announce and unannounce (a lookup takes [`LookupOptions`], which an
/// `AnnounceOptions` converts into).
///
/// ```
/// use hyperdht::AnnounceOptions;
///
/// let opts = AnnounceOptions::new(Some(7777), Some("192.168.1.20:7777".parse().unwrap()));
/// assert_eq!(opts, AnnounceOptions::default().port(7777).local_address("192.168.1.20:7777".parse().unwrap()));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AnnounceOptions {
    /// The port we listen on; our UDP port when `None`.
    pub port: Option<u16>,
    /// Our LAN address: announced so that peers on the same LAN find it; in a lookup, asks
    /// for the local peers sharing its first two octets.
    pub local_address: Option<SocketAddrV4>,
}

impl AnnounceOptions {
    /// The port we listen on (our UDP port when `None`) and our LAN address.
    pub fn new(port: Option<u16>, local_address: Option<SocketAddrV4>) -> Self {
        AnnounceOptions {
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

/// Options of a lookup.
///
/// ```
/// use hyperdht::LookupOptions;
///
/// // Also ask for the local peers that share our LAN's first two octets, and leave out our
/// // own announce on port 7777.
/// let opts = LookupOptions::new().port(7777).local_address("10.0.3.3:0".parse().unwrap());
/// assert!(opts.local_address.is_some());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LookupOptions {
    /// The port we announced the key with, if we did: answers leave out the entry of
    /// our address with that port (our UDP port when `None`), as the reference's.
    pub port: Option<u16>,
    /// Our LAN address: asks for the local peers sharing its first two octets.
    pub local_address: Option<SocketAddrV4>,
}

impl LookupOptions {
    /// No port, no LAN address.
    pub fn new() -> Self {
        LookupOptions::default()
    }

    /// Leave out our own announce on this port.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// With our LAN address.
    pub fn local_address(mut self, addr: SocketAddrV4) -> Self {
        self.local_address = Some(addr);
        self
    }
}

impl From<AnnounceOptions> for LookupOptions {
    /// The same port and LAN address.
    fn from(o: AnnounceOptions) -> Self {
        LookupOptions {
            port: o.port,
            local_address: o.local_address,
        }
    }
}
