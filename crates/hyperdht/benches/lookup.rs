//! A `peers` lookup through the whole hyperdht core, without I/O: decode, the per-source
//! budgets, the token, the store's sample and its shuffle, the answer's encoding. Keys with
//! 0 and 20 peers, from a source that is not trusted (the defences on, as on the internet).
//!
//! `cargo bench -p hyperdht --bench lookup`

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use dht_rpc::Machine;
use dht_rpc::wire::{Datagram, Request, Tid};
use hyperdht::{DEFAULT_MAX, DEFAULT_MAX_AGE, Entry, Key, PEERS, PeerStore, PeersHandler};
use hyperdht::{PeersRequest, PeersRequestType, Quotas};

fn lookup(key: Key) -> Vec<u8> {
    let value = PeersRequest::new(PeersRequestType::Lookup, None, None).encode();
    Datagram::request(
        Tid::from_masked(3),
        Request {
            target: Some(dht_rpc::wire::Checked::Valid(key)),
            value: Some(value),
            ..Request::new(PEERS)
        },
    )
    .encode()
    .to_vec()
}

fn through_the_core(c: &mut Criterion) {
    let t = Instant::now();
    let mut g = c.benchmark_group("lookup through the core");
    g.measurement_time(Duration::from_secs(3));
    for n in [0u32, 20] {
        let key = Key::from_bytes([9; 32]);
        let mut store = PeerStore::with_quotas(DEFAULT_MAX, DEFAULT_MAX_AGE, Quotas::none());
        for i in 0..n {
            let peer = SocketAddrV4::new(Ipv4Addr::from(0x0b00_0000 + i * 7), 4000);
            let e = Entry {
                peer,
                local: None,
                at: t,
            };
            store.put(key, e).expect("no quotas");
        }
        let mut config = dht_rpc::Config::default();
        // The bench's sources are public addresses: every defence applies.
        config.defences.trusted.clear();
        let rpc = dht_rpc::Core::with_handler(config, PeersHandler::new(store, 1), t);
        let mut core = hyperdht::Core::new(rpc, t);
        core.rpc_mut().set_local_port(49737);
        let req = lookup(key);
        // 1,024 sources, one per /24, as the load generator's; the clock moves 2 us per
        // lookup (500,000 a second: within the node-wide budget, and within every source's).
        let mut i = 0u32;
        let one = |core: &mut hyperdht::Core, i: u32| {
            let now = t + Duration::from_micros(2 * u64::from(i));
            let from = SocketAddrV4::new(Ipv4Addr::from(0x0c00_0001 + (i % 1024) * 256), 5000);
            core.handle_datagram(now, from, &req);
            core.poll_transmit().map(|t| t.payload.len())
        };
        // An answer, with the peers in it (20 take 120 bytes).
        let len = one(&mut core, 0).expect("answered");
        assert!(n == 0 || len > 120, "{len} bytes");
        g.bench_function(format!("{n} peers on the key"), |b| {
            b.iter(|| {
                i = i.wrapping_add(1);
                black_box(one(&mut core, black_box(i)))
            })
        });
        // Every lookup was answered: none met a budget (which would make it cheaper).
        let s = core.rpc().stats();
        assert_eq!(s.served_other, s.datagrams_in, "{s:?}");
    }
    g.finish();
}

criterion_group!(benches, through_the_core);
criterion_main!(benches);
