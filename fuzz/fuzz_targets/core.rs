//! Datagrams into a dht-rpc core that serves hyperdht's `peers`: the input is split into
//! datagrams (a length byte each) from a few source addresses, with time moving on. Nothing
//! may panic, and the node must still answer a ping afterwards.
#![no_main]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use dht_rpc::{Config, Core};
use dht_wire::{Datagram, NodeId, Request, Tid};
use hyperdht::{PeerStore, PeersHandler};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let config = Config { id: Some(NodeId::from_bytes([0; 32])), ..Config::default() };
    let mut core = Core::with_handler(config, PeersHandler::new(PeerStore::new(64, Duration::from_secs(360)), 1), t0);
    let mut rest = data;
    let mut step = 0u64;
    while let [len, from, body @ ..] = rest {
        let n = (*len as usize).min(body.len());
        let now = t0 + Duration::from_millis(step * 700);
        let addr = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, from & 7), 1000 + u16::from(from & 3));
        core.handle_datagram(now, addr, &body[..n]);
        core.handle_timeout(now);
        while core.poll_transmit().is_some() {}
        while core.poll_event().is_some() {}
        rest = &body[n..];
        step += 1;
    }
    let ping = Datagram::request(Tid::from_masked(1), Request::new("_ping")).encode();
    core.handle_datagram(t0, SocketAddrV4::new(Ipv4Addr::new(9, 9, 9, 9), 9), &ping);
    assert!(core.poll_transmit().is_some(), "the node still answers");
});
