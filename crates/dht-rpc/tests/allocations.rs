//! Allocations on the hot path: requests through the core from many sources, counted by a
//! counting global allocator (dhat's), after a warm-up.
//!
//! A request is decoded in place ([`dht_wire::RequestRef`]), its answer encoded into the
//! core's arena ([`dht_wire::ResponseRef`]): nothing is allocated per request but what an
//! application's handler allocates for its own answer.
//!
//! One test: dhat's profiler is one per process.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use dht_rpc::{Answer, Config, Core, Handler, Incoming, NodeId};
use dht_wire::{Checked, Datagram, FIND_NODE, PING, Request, Tid};

#[path = "support/pair.rs"]
mod pair;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Allocations per request of `datagram`, sent from 1,024 sources, each on its own /24
/// (not loopback: every budget applies), 100,000 a second, to `core`; each answer is sent
/// and dropped as the driver does.
fn per_request<H: Handler>(core: &mut Core<H>, t: &mut Instant, datagram: &[u8], n: u32) -> f64 {
    let source = |i: u32| SocketAddrV4::new(Ipv4Addr::from(0x2d00_0001 + (i % 1024) * 256), 40_000);
    let mut answered = 0;
    let mut run = |core: &mut Core<H>, count: u32| {
        for i in 0..count {
            *t += Duration::from_micros(10);
            core.handle_datagram(*t, source(i), datagram);
            while let Some(tx) = core.poll_transmit() {
                answered += 1;
                drop(tx);
            }
        }
    };
    run(core, 2048);
    let before = dhat::HeapStats::get().total_blocks;
    run(core, n);
    let after = dhat::HeapStats::get().total_blocks;
    assert!(
        answered >= 2048 + n as usize,
        "every request answered: {answered}"
    );
    (after - before) as f64 / f64::from(n)
}

#[test]
fn answers_allocate_only_for_decoding_the_request() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let mut t = Instant::now();
    let config = Config::default();
    let mut core = Core::new(config.clone(), t);
    core.set_local_port(49737);

    let ping = Datagram::request(Tid::from_masked(1), Request::new(PING)).encode();
    let ping_allocs = per_request(&mut core, &mut t, &ping, 10_000);

    // A table of 300 contacts, each verified as a live node answers the core's ping.
    let mut full = Core::new(config, t);
    full.set_local_port(49737);
    let ids: Vec<NodeId> = (0..300)
        .map(|i| NodeId::from_bytes(*blake_ish(i)))
        .collect();
    pair::fill_table(&mut full, t, &ids);
    assert!(full.table().len() >= 60, "{}", full.table().len());
    let find = Datagram::request(
        Tid::from_masked(2),
        Request {
            target: Some(Checked::Valid(NodeId::from_bytes([0x55; 32]))),
            ..Request::new(FIND_NODE)
        },
    )
    .encode();
    let find_allocs = per_request(&mut full, &mut t, &find, 10_000);

    // An application command with a target and a value, answered with no value.
    let mut app = Core::with_handler(Config::default(), Quiet, t);
    app.set_local_port(49737);
    let lookup = Datagram::request(
        Tid::from_masked(4),
        Request {
            id: Some(Checked::Valid(NodeId::from_bytes([9; 32]))),
            target: Some(Checked::Valid(NodeId::from_bytes([0x55; 32]))),
            value: Some(bytes::Bytes::from_static(b"\x08\x00")),
            ..Request::new("peers")
        },
    )
    .encode();
    let app_allocs = per_request(&mut app, &mut t, &lookup, 10_000);
    eprintln!(
        "allocations per request: _ping {ping_allocs:.4}, _find_node ({} contacts) {find_allocs:.4}, an application command {app_allocs:.4}",
        full.table().len()
    );
    // Before RequestRef and ResponseRef: 8 and 14 per request.
    assert!(ping_allocs < 0.01, "_ping: {ping_allocs}");
    assert!(find_allocs < 0.01, "_find_node: {find_allocs}");
    assert!(app_allocs < 0.01, "application command: {app_allocs}");
}

/// Answers every command, with no value.
struct Quiet;

impl Handler for Quiet {
    fn on_request(&mut self, _now: Instant, req: &Incoming<'_>) -> Answer {
        assert!(req.value.is_some());
        Answer::Value(None)
    }
}

/// A spread-out id for `i`.
fn blake_ish(i: u32) -> Box<[u8; 32]> {
    let mut out = [0u8; 32];
    let mut x = u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for b in &mut out {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    Box::new(out)
}
