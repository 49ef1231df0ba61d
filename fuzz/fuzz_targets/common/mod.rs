//! What the core fuzz targets share: the source addresses datagrams come from, the node
//! they feed (a dht-rpc core serving hyperdht's `peers`, defences on), and the check that it
//! still answers a ping afterwards.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use dht_rpc::{Config, Core, Transmit};
use dht_wire::{Datagram, NodeId, Request, Tid};
use hyperdht::{PeerStore, PeersHandler};

/// Public, private, loopback, one /24 shared by two, and broadcast.
const SOURCES: [[u8; 4]; 8] = [
    [6, 6, 6, 6],
    [6, 6, 6, 7],
    [9, 9, 9, 9],
    [10, 0, 0, 1],
    [127, 0, 0, 1],
    [198, 18, 0, 2],
    [1, 2, 3, 4],
    [255, 255, 255, 255],
];

/// The source an input byte names: one of [`SOURCES`] (low 3 bits), one of 4 ports.
pub fn source(b: u8) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::from(SOURCES[usize::from(b & 7)]), 1000 + u16::from((b >> 3) & 3))
}

/// A dht-rpc core serving `peers` with a small store, on port 49737.
pub fn peers_node(t0: Instant) -> Core<PeersHandler> {
    let config = Config { id: Some(NodeId::from_bytes([0; 32])), ..Config::default() };
    let store = PeerStore::new(64, Duration::from_secs(360));
    let mut core = Core::with_handler(config, PeersHandler::new(store, 1), t0);
    core.set_local_port(49737);
    core
}

/// Never a datagram to an unspecified or broadcast address.
pub fn check_destination(t: &Transmit) {
    assert!(!t.to.ip().is_unspecified() && !t.to.ip().is_broadcast(), "{t:?}");
}

/// A `_ping` from a new source, for [`Core::handle_datagram`]: it must be answered.
pub fn ping() -> (SocketAddrV4, Vec<u8>) {
    let ping = Datagram::request(Tid::from_masked(1), Request::new("_ping")).encode();
    (SocketAddrV4::new(Ipv4Addr::new(9, 9, 9, 8), 9), ping.to_vec())
}
