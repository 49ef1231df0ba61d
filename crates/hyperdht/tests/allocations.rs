//! Allocations on a `peers` lookup's hot path: lookups of a key with 20 announcers (some
//! on the looker's LAN) through a dht-rpc core serving hyperdht's `peers`, from many
//! sources, counted by a counting global allocator (dhat's), after a warm-up.
//!
//! The request is decoded in place, the store's sample goes into a reused buffer and the
//! answer is encoded from borrowed parts into the handler's arena: nothing is allocated per
//! lookup.
//!
//! One test: dhat's profiler is one per process.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use dht_rpc::{Config, Core};
use dht_wire::{
    Checked, Datagram, Key, LocalPeer, NodeId, PeersRequest, PeersRequestType, Request, Tid,
};
use hyperdht::{DEFAULT_MAX, DEFAULT_MAX_AGE, Entry, PeerStore, PeersHandler};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

#[test]
fn a_lookup_of_a_crowded_key_allocates_nothing() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let mut t = Instant::now();
    let key = Key::from_bytes([0x42; 32]);
    let mut store = PeerStore::new(DEFAULT_MAX, DEFAULT_MAX_AGE);
    for i in 0..20u8 {
        let local = (i % 2 == 0).then_some((
            [10, 0],
            LocalPeer {
                suffix: [1, i],
                port: 7000,
            },
        ));
        let entry = Entry {
            peer: SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, i + 1), 9000),
            local,
            at: t,
        };
        store.put(key, entry).expect("within the quotas");
    }
    let mut core = Core::with_handler(Config::default(), PeersHandler::new(store, 7), t);
    core.set_local_port(49737);

    // A lookup from a looker on the 10.0/16 LAN: 20 peers and 10 LAN addresses come back.
    let lookup = Datagram::request(
        Tid::from_masked(3),
        Request {
            id: Some(Checked::Valid(NodeId::from_bytes([9; 32]))),
            target: Some(Checked::Valid(NodeId::from_bytes(*key.as_bytes()))),
            value: Some(
                PeersRequest::new(
                    PeersRequestType::Lookup,
                    None,
                    Some(SocketAddrV4::new(Ipv4Addr::new(10, 0, 9, 9), 0)),
                )
                .encode(),
            ),
            ..Request::new("peers")
        },
    )
    .encode();
    // 1,024 sources, each on its own /24 (not loopback: every budget applies), 100,000 a
    // second; each answer dropped as the driver drops it once sent.
    let source = |i: u32| SocketAddrV4::new(Ipv4Addr::from(0x2d00_0001 + (i % 1024) * 256), 40_000);
    let mut answered = 0usize;
    let mut bytes = 0usize;
    let mut run = |core: &mut Core<PeersHandler>, count: u32| {
        for i in 0..count {
            t += Duration::from_micros(10);
            core.handle_datagram(t, source(i), &lookup);
            while let Some(tx) = core.poll_transmit() {
                answered += 1;
                bytes += tx.payload.len();
                drop(tx);
            }
        }
    };
    run(&mut core, 4096);
    let before = dhat::HeapStats::get().total_blocks;
    const N: u32 = 10_000;
    run(&mut core, N);
    let after = dhat::HeapStats::get().total_blocks;
    assert!(
        answered >= 4096 + N as usize,
        "every lookup answered: {answered}"
    );
    // 20 peers of 6 bytes and 10 LAN addresses of 4 in every answer, beside the header.
    assert!(
        bytes / answered > 20 * 6 + 10 * 4,
        "answers carry the peers: {} bytes each",
        bytes / answered
    );
    let per = (after - before) as f64 / f64::from(N);
    eprintln!("allocations per lookup of a key with 20 peers: {per:.4}");
    // With prost decoding the request: 1 per lookup (its copy of the LAN address).
    assert!(per < 0.01, "allocations per lookup: {per}");
}
