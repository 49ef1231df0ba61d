//! Datagrams and timeouts into a `hyperdht::Core` (the dht-rpc core serving `peers`, with
//! hole-punch rounds and birthday-hint limits on top) while two hole punches run: the input
//! is split into datagrams (a length byte each) from a few source addresses, the punched
//! peers among them, with time moving on by an input-chosen step. Nothing may panic; each
//! punch ends exactly once and by its deadline (four rounds, then the request timeout);
//! hints that get through stay within their limits; the node still answers a ping.
#![no_main]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use dht_rpc::{Config, Machine, MachineEvent};
use dht_wire::{Datagram, NodeId, Request, Tid};
use hyperdht::{Core, CoreEvent, PeerStore, PeersHandler};
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

fn source(b: u8) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::from(SOURCES[usize::from(b & 7)]), 1000 + u16::from((b >> 3) & 3))
}

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let config = Config { id: Some(NodeId::from_bytes([0; 32])), ..Config::default() };
    let store = PeerStore::new(64, Duration::from_secs(360));
    let mut rpc = dht_rpc::Core::with_handler(config, PeersHandler::new(store, 1), t0);
    rpc.set_local_port(49737);
    let mut core = Core::new(rpc, t0);
    let a = core.holepunch(t0, source(0), source(2), true);
    let b = core.holepunch(t0, source(6), source(6), true);
    let (mut ended, mut hints) = (Vec::new(), 0u32);
    let drain = |core: &mut Core, ended: &mut Vec<_>, hints: &mut u32| {
        while let Some(t) = core.poll_transmit() {
            assert!(!t.to.ip().is_unspecified() && !t.to.ip().is_broadcast(), "{t:?}");
        }
        while let Some(e) = core.poll_event() {
            match e {
                MachineEvent::Own(CoreEvent::Punched { punch, .. }) => ended.push(punch),
                MachineEvent::Own(CoreEvent::Hint { .. }) => *hints += 1,
                _ => {}
            }
        }
    };
    // The driving rule: every deadline the core asks for, in order, up to `to`.
    let advance = |core: &mut Core, to: Instant, ended: &mut Vec<_>, hints: &mut u32| {
        while let Some(t) = core.poll_timeout().filter(|t| *t <= to) {
            core.handle_timeout(t);
            drain(core, ended, hints);
        }
    };
    let mut rest = data;
    let mut now = t0;
    while let [len, from, body @ ..] = rest {
        let n = (*len as usize).min(body.len());
        now += Duration::from_millis(u64::from(from >> 5) * 100);
        advance(&mut core, now, &mut ended, &mut hints);
        core.handle_datagram(now, source(*from), &body[..n]);
        drain(&mut core, &mut ended, &mut hints);
        rest = &body[n..];
    }
    // Past the last round and the timeout of its requests, both punches are over.
    now += Duration::from_secs(3);
    advance(&mut core, now, &mut ended, &mut hints);
    ended.sort();
    assert_eq!(ended, vec![a, b], "each punch ends exactly once");
    assert_eq!(core.punches(), 0);
    let minutes = u32::try_from(now.duration_since(t0).as_secs() / 60).unwrap_or(u32::MAX);
    assert!(hints <= 6 * (minutes + 1), "hints within the limit: {hints} in {minutes} min");
    let ping = Datagram::request(Tid::from_masked(1), Request::new("_ping")).encode();
    core.handle_datagram(now, SocketAddrV4::new(Ipv4Addr::new(9, 9, 9, 8), 9), &ping);
    assert!(core.poll_transmit().is_some(), "the node still answers");
});
