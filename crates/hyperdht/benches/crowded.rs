//! Answering a lookup on a crowded key: the reference's way (gather and shuffle every
//! entry, `PeerStore::entries`) against ours (a bounded sample, `PeerStore::sample`), side by
//! side, on keys with 20, 5,000, 20,000 and 40,000 entries.
//!
//! `cargo bench -p hyperdht --bench crowded`

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use hyperdht::{DEFAULT_MAX_AGE, Entry, Key, PeerStore, Quotas};
use rand::SeedableRng;

fn crowded(c: &mut Criterion) {
    let t = Instant::now();
    let key = Key::from_bytes([9; 32]);
    let mut g = c.benchmark_group("answer a crowded key");
    g.measurement_time(Duration::from_secs(3));
    for n in [20u32, 5_000, 20_000, 40_000] {
        let mut store = PeerStore::with_quotas(1 << 20, DEFAULT_MAX_AGE, Quotas::none());
        for i in 0..n {
            let peer = SocketAddrV4::new(Ipv4Addr::from(0x0b00_0000 + i * 7), 4000);
            store
                .put(
                    key,
                    Entry {
                        peer,
                        local: None,
                        at: t,
                    },
                )
                .expect("no quotas");
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        g.bench_function(format!("all entries, {n}"), |b| {
            b.iter(|| black_box(store.entries(&key, t, &mut rng).len()))
        });
        g.bench_function(format!("sample of 151, {n}"), |b| {
            b.iter(|| black_box(store.sample(&key, t, 151, &mut rng).len()))
        });
    }
    g.finish();
}

criterion_group!(benches, crowded);
criterion_main!(benches);
