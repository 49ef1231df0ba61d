//! Load generator: `_find_node` requests per second answered by one node on loopback, for
//! our node and for the JavaScript `dht-rpc@2.3.0`, side by side in one run.
//!
//! `cargo bench -p hyperdht-tests --bench rpc_load [-- SECONDS [WINDOW]]`
//!
//! Each target first gets 64 pings from distinct ids (so its routing table answers full
//! `_find_node` responses), then a closed-loop load: WINDOW requests outstanding (64 by
//! default), a new one sent as each answer arrives, for SECONDS (5 by default). Requests
//! carry no id, so the table does not change during the run. Both servers run one thread:
//! ours on a current-thread tokio runtime, the reference in its node process.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use dht_rpc::Node;
use dht_wire::{Checked, Datagram, Message, NodeId, Request, Tid};
use hyperdht_tests::js::JsGroup;
use rand::{Rng, SeedableRng};

struct Result {
    answered: u64,
    lost: u64,
    secs: f64,
    nodes_per_answer: f64,
}

fn load(target: SocketAddrV4, secs: f64, window: usize) -> Result {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut buf = [0u8; 2048];

    // Fill the routing table: pings from 64 ids.
    for i in 0..64u16 {
        let d = Datagram::request(
            Tid::from_masked(i),
            Request {
                id: Some(Checked::Valid(NodeId::from_bytes(rng.random()))),
                ..Request::new("_ping")
            },
        );
        sock.send_to(&d.encode(), target).expect("send");
        let _ = sock.recv_from(&mut buf);
    }

    let mut next_tid = 100u16;
    let mut outstanding: HashMap<u16, Instant> = HashMap::new();
    let mut send = |sock: &UdpSocket,
                    outstanding: &mut HashMap<u16, Instant>,
                    rng: &mut rand::rngs::StdRng| {
        next_tid = Tid::from_masked(next_tid).next().get();
        let d = Datagram::request(
            Tid::from_masked(next_tid),
            Request {
                target: Some(Checked::Valid(NodeId::from_bytes(rng.random()))),
                ..Request::new("_find_node")
            },
        );
        sock.send_to(&d.encode(), target).expect("send");
        outstanding.insert(next_tid, Instant::now());
    };
    for _ in 0..window {
        send(&sock, &mut outstanding, &mut rng);
    }
    let start = Instant::now();
    let (mut answered, mut lost, mut nodes) = (0u64, 0u64, 0u64);
    while start.elapsed().as_secs_f64() < secs {
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => {
                if let Ok(Datagram {
                    tid,
                    message: Message::Response(r),
                }) = Datagram::decode(&buf[..n])
                    && outstanding.remove(&tid.get()).is_some()
                {
                    answered += 1;
                    nodes += r.closer_nodes().len() as u64;
                    send(&sock, &mut outstanding, &mut rng);
                }
            }
            Err(_) => {
                // Refill what was lost.
                let now = Instant::now();
                let stale: Vec<u16> = outstanding
                    .iter()
                    .filter(|(_, t)| now - **t > Duration::from_millis(500))
                    .map(|(k, _)| *k)
                    .collect();
                for k in stale {
                    outstanding.remove(&k);
                    lost += 1;
                    send(&sock, &mut outstanding, &mut rng);
                }
            }
        }
    }
    Result {
        answered,
        lost,
        secs: start.elapsed().as_secs_f64(),
        nodes_per_answer: nodes as f64 / answered.max(1) as f64,
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let secs: f64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let window: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(64);

    // Our node, alone on a current-thread runtime in its own thread.
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let node = Node::builder()
                .no_bootstrap_on_start()
                .bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(node.local_addr()).expect("send addr");
            let _ = stop_rx.await;
            node.shutdown().await;
        });
    });
    let rust_addr = rx.recv().expect("addr");
    let rust = load(rust_addr, secs, window);
    let _ = stop_tx.send(());
    let _ = server.join();

    let Some(reference) = hyperdht_tests::reference("rpc_load") else {
        print_one("hyperdht-rs", &rust);
        return;
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let group = rt.block_on(JsGroup::spawn(&reference, "rpc-nodes.js", 1, &[], false));
    let js_addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, group.nodes[0].addr.port());
    let js = load(js_addr, secs, window);
    let js_rss = group.pid().and_then(rss_kib);
    drop(group);

    println!("_find_node load, {secs} s, window {window}, one server thread each:");
    print_one("hyperdht-rs", &rust);
    print_one("dht-rpc@2.3.0 (node)", &js);
    if let Some(kib) = js_rss {
        println!("  reference node process RSS after the run: {kib} KiB");
    }
    let ratio = (rust.answered as f64 / rust.secs) / (js.answered as f64 / js.secs).max(1e-9);
    println!("  ratio (ours / reference): {ratio:.2}x");
}

fn print_one(name: &str, r: &Result) {
    println!(
        "  {name:<22} {:>9.0} answers/s  ({} answered, {} lost, {:.1} nodes per answer)",
        r.answered as f64 / r.secs,
        r.answered,
        r.lost,
        r.nodes_per_answer
    );
}
