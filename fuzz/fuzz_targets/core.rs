//! Datagrams into a dht-rpc core that serves hyperdht's `peers`: the input is split into
//! datagrams (a length byte each) from a few source addresses (public, private, loopback,
//! one /24 shared by several), with time moving on by an input-chosen step. The defences
//! (budgets, destination rules, table and store limits) are on, as in production. Nothing
//! may panic, the store and table stay within their bounds, and the node must still answer
//! a ping afterwards.
#![no_main]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use dht_rpc::{Config, Core};
use dht_wire::{Datagram, NodeId, Request, Tid};
use hyperdht::{PeerStore, PeersHandler};
use libfuzzer_sys::fuzz_target;

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

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let config = Config { id: Some(NodeId::from_bytes([0; 32])), ..Config::default() };
    let store = PeerStore::new(64, Duration::from_secs(360));
    let mut core = Core::with_handler(config, PeersHandler::new(store, 1), t0);
    core.set_local_port(49737);
    let mut rest = data;
    let mut now = t0;
    while let [len, from, body @ ..] = rest {
        let n = (*len as usize).min(body.len());
        now += Duration::from_millis(u64::from(from >> 5) * 300);
        let ip = Ipv4Addr::from(SOURCES[usize::from(from & 7)]);
        let addr = SocketAddrV4::new(ip, 1000 + u16::from((from >> 3) & 3));
        core.handle_datagram(now, addr, &body[..n]);
        core.handle_timeout(now);
        while let Some(t) = core.poll_transmit() {
            // Never a datagram to an unspecified or broadcast address.
            assert!(!t.to.ip().is_unspecified() && !t.to.ip().is_broadcast(), "{t:?}");
        }
        while core.poll_event().is_some() {}
        rest = &body[n..];
    }
    assert!(core.table().len() <= 256 * 20);
    assert!(core.handler().store().len() <= 2 * 65);
    let ping = Datagram::request(Tid::from_masked(1), Request::new("_ping")).encode();
    core.handle_datagram(now, SocketAddrV4::new(Ipv4Addr::new(9, 9, 9, 8), 9), &ping);
    assert!(core.poll_transmit().is_some(), "the node still answers");
});
