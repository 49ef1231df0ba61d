//! The hot paths of a node, without I/O: a roundtrip token, the routing table's closest 20,
//! a newcomer's insert and the check whether a stranger could get in, whole requests
//! through the core (`_ping`, and `_find_node` against a table filled from 1,000 nodes),
//! from a loopback source (trusted: no per-source budgets), and a ping of ours with its
//! answer (the response path).
//!
//! `cargo bench -p dht-rpc --bench core`

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};

#[path = "../tests/support/pair.rs"]
mod pair;
use dht_rpc::{Config, Core, NodeId, RoutingTable, Tokens};
use dht_wire::{Checked, Datagram, FIND_NODE, PING, Request, Tid};
use rand::{Rng, SeedableRng};

fn ids(n: usize) -> Vec<NodeId> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    (0..n).map(|_| NodeId::from_bytes(rng.random())).collect()
}

fn hot_paths(c: &mut Criterion) {
    let mut g = c.benchmark_group("core");
    g.measurement_time(Duration::from_secs(3));

    let mut tokens = Tokens::new([1; 32], [2; 32]);
    g.bench_function("token issue, cached host", |b| {
        b.iter(|| black_box(tokens.issue(black_box(Ipv4Addr::new(203, 0, 113, 9)))))
    });
    let mut host = 0x0b00_0000u32;
    g.bench_function("token issue, new host", |b| {
        b.iter(|| {
            host = host.wrapping_add(0x9e37);
            black_box(tokens.issue(black_box(Ipv4Addr::from(host))))
        })
    });

    let own = NodeId::from_bytes([0; 32]);
    let mut table = RoutingTable::new(own, 20);
    let t = Instant::now();
    for (i, id) in ids(1000).into_iter().enumerate() {
        let addr = SocketAddrV4::new(Ipv4Addr::from(0x0b00_0000 + (i as u32) * 256), 4000);
        table.insert(id, addr, t);
    }
    let target = NodeId::from_bytes([0x55; 32]);
    g.bench_function(format!("closest 20 of {} contacts", table.len()), |b| {
        b.iter(|| black_box(table.closest(black_box(&target), 20).len()))
    });
    // A target near our id (5 leading bits shared, where buckets are no longer full): the
    // table's sparse end, which random targets rarely meet.
    let near = NodeId::from_bytes([0x05; 32]);
    g.bench_function(
        format!("closest 20 of {} contacts, target near our id", table.len()),
        |b| b.iter(|| black_box(table.closest(black_box(&near), 20).len())),
    );

    // A newcomer whose bucket has room (it shares 16 or more bits with our id), from a /24
    // of its own: the per-IP and per-/24 limits are checked (by a scan of the table), then
    // it is added, then removed so that the table stays as it was.
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let newcomers: Vec<(NodeId, SocketAddrV4)> = (0..4096u32)
        .map(|i| {
            let mut id: [u8; 32] = rng.random();
            id[0] = 0;
            id[1] = 0;
            let addr = SocketAddrV4::new(Ipv4Addr::from(0x0c00_0000 + i * 256), 4000);
            (NodeId::from_bytes(id), addr)
        })
        .collect();
    let mut i = 0;
    g.bench_function(
        format!("insert and remove a newcomer ({} contacts)", table.len()),
        |b| {
            b.iter(|| {
                i = (i + 1) % newcomers.len();
                let (id, addr) = newcomers[i];
                black_box(table.insert(id, addr, t));
                black_box(table.remove(&id))
            })
        },
    );
    // Whether a stranger could get in (asked before verifying it): random ids, mostly
    // full buckets, each from a /24 of its own.
    let strangers: Vec<(NodeId, SocketAddrV4)> = ids(4096)
        .into_iter()
        .zip(newcomers.iter().map(|(_, a)| *a))
        .collect();
    let mut j = 0;
    g.bench_function(
        format!("could_take a stranger ({} contacts)", table.len()),
        |b| {
            b.iter(|| {
                j = (j + 1) % strangers.len();
                let (id, addr) = strangers[j];
                black_box(table.could_take(&id, addr, Some(t)))
            })
        },
    );

    let from = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 50_000);
    let mut core = Core::new(Config::default(), t);
    core.set_local_port(49737);
    let ping = Datagram::request(Tid::from_masked(1), Request::new(PING)).encode();
    g.bench_function("_ping through the core", |b| {
        b.iter(|| {
            core.handle_datagram(t, from, black_box(&ping));
            black_box(core.poll_transmit().is_some())
        })
    });

    let find = Datagram::request(
        Tid::from_masked(2),
        Request {
            target: Some(Checked::Valid(target)),
            ..Request::new(FIND_NODE)
        },
    )
    .encode();
    let mut full = Core::new(Config::default(), t);
    full.set_local_port(49737);
    // Fill its table as nodes that ping it with their ids would (each answers the verify).
    pair::fill_table(&mut full, t, &ids(1000));
    g.bench_function(
        format!(
            "_find_node through the core ({} contacts)",
            full.table().len()
        ),
        |b| {
            b.iter(|| {
                full.handle_datagram(t, from, black_box(&find));
                black_box(full.poll_transmit().map(|t| t.payload.len()))
            })
        },
    );
    // The response path: a `_ping` of ours to a contact and its answer (with the contact's
    // id and the address it saw us at), through the request table, the answer's checks and
    // the table's refresh, to the pong event. (The answer's encoding is the bench's own cost.)
    let contact = full.table().iter().next().map(|c| (c.id, c.addr));
    let (contact_id, contact_addr) = contact.expect("a contact");
    g.bench_function(
        format!(
            "a ping and its pong through the core ({} contacts)",
            full.table().len()
        ),
        |b| {
            b.iter(|| {
                full.ping(t, contact_addr);
                let sent = full.poll_transmit().expect("the ping");
                pair::answer(&mut full, t, &sent, Some(contact_id));
                black_box(full.poll_event().is_some())
            })
        },
    );
    g.finish();
}

criterion_group!(benches, hot_paths);
criterion_main!(benches);
