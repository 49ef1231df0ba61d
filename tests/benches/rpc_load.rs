//! Load generator: requests per second answered by one node on loopback, for our `hyperdht`
//! node and for the JavaScript `hyperdht@1.3.0` (on `dht-rpc@2.3.0`), side by side in one
//! run, and the memory each process holds afterwards.
//!
//! `cargo bench -p hyperdht-tests --bench rpc_load [-- SECONDS [WINDOW]]`
//!
//! Each target is a separate process with one node on 127.0.0.1: ours is the `hyperdht`
//! binary, the reference is `tests/interop/hyperdht-nodes.js`. The generator first sends 64
//! pings from distinct ids (so `_find_node` answers carry 20 nodes) and 50 announces of one
//! key (with the roundtrip token, each naming another port); then two closed-loop phases of
//! SECONDS each (5 by default) with WINDOW requests outstanding (64 by default), a new one
//! sent as each answer arrives: `_find_node` for random targets, then `peers` lookups of the
//! announced key (answers carry 50 peers). Requests carry no id, so the table stays as is.

use std::collections::HashMap;
use std::net::{SocketAddrV4, UdpSocket};
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dht_wire::{
    Checked, Datagram, Message, NodeId, PeersRequest, PeersRequestType, PeersResponse, Request, Tid,
};
use hyperdht_tests::js::JsGroup;
use hyperdht_tests::procs::binary;
use rand::{Rng, SeedableRng};

struct Phase {
    answered: u64,
    secs: f64,
    per_answer: f64,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.answered as f64 / self.secs
    }
}

struct Gen {
    sock: UdpSocket,
    target: SocketAddrV4,
    rng: rand::rngs::StdRng,
    tid: Tid,
    buf: Vec<u8>,
}

impl Gen {
    fn new(target: SocketAddrV4) -> Gen {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        Gen {
            sock,
            target,
            rng: rand::rngs::StdRng::seed_from_u64(1),
            tid: Tid::from_masked(1),
            buf: vec![0; 4096],
        }
    }

    fn send(&mut self, req: Request) -> Tid {
        self.tid = self.tid.next();
        self.sock
            .send_to(&Datagram::request(self.tid, req).encode(), self.target)
            .expect("send");
        self.tid
    }

    /// One request and its answer.
    fn ask(&mut self, req: Request) -> Option<dht_wire::Response> {
        let tid = self.send(req);
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            let Ok((n, _)) = self.sock.recv_from(&mut self.buf) else {
                continue;
            };
            if let Ok(Datagram {
                tid: t,
                message: Message::Response(r),
            }) = Datagram::decode(&self.buf[..n])
                && t == tid
            {
                return Some(r);
            }
        }
        None
    }

    fn setup(&mut self, key: NodeId) {
        for _ in 0..64 {
            let id = NodeId::from_bytes(self.rng.random());
            self.ask(Request {
                id: Some(Checked::Valid(id)),
                ..Request::new("_ping")
            });
        }
        let token = self
            .ask(Request::new("_ping"))
            .and_then(|r| r.roundtrip_token)
            .expect("a token");
        for i in 0..50u16 {
            let value =
                PeersRequest::new(PeersRequestType::Announce, Some(20000 + i), None).encode();
            let r = self.ask(Request {
                target: Some(Checked::Valid(key)),
                roundtrip_token: Some(token.clone()),
                value: Some(value),
                ..Request::new("peers")
            });
            assert!(r.is_some(), "announce {i} answered");
        }
    }

    /// Closed-loop load for `secs`; `count` says how many items an answer carries.
    fn run(
        &mut self,
        secs: f64,
        window: usize,
        make: impl Fn(&mut rand::rngs::StdRng) -> Request,
        count: impl Fn(&dht_wire::Response) -> usize,
    ) -> Phase {
        let mut outstanding: HashMap<u16, Instant> = HashMap::new();
        for _ in 0..window {
            let req = make(&mut self.rng);
            outstanding.insert(self.send(req).get(), Instant::now());
        }
        let start = Instant::now();
        let (mut answered, mut items) = (0u64, 0u64);
        while start.elapsed().as_secs_f64() < secs {
            match self.sock.recv_from(&mut self.buf) {
                Ok((n, _)) => {
                    if let Ok(Datagram {
                        tid,
                        message: Message::Response(r),
                    }) = Datagram::decode(&self.buf[..n])
                        && outstanding.remove(&tid.get()).is_some()
                    {
                        answered += 1;
                        items += count(&r) as u64;
                        let req = make(&mut self.rng);
                        outstanding.insert(self.send(req).get(), Instant::now());
                    }
                }
                Err(_) => {
                    let now = Instant::now();
                    let lost: Vec<u16> = outstanding
                        .iter()
                        .filter(|(_, t)| now - **t > Duration::from_millis(500))
                        .map(|(k, _)| *k)
                        .collect();
                    for k in lost {
                        outstanding.remove(&k);
                        let req = make(&mut self.rng);
                        outstanding.insert(self.send(req).get(), Instant::now());
                    }
                }
            }
        }
        // Let the stragglers drain before the next phase.
        while self.sock.recv_from(&mut self.buf).is_ok() {}
        Phase {
            answered,
            secs: start.elapsed().as_secs_f64(),
            per_answer: items as f64 / answered.max(1) as f64,
        }
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

fn measure(target: SocketAddrV4, secs: f64, window: usize) -> (Phase, Phase) {
    let key = NodeId::from_bytes([0x42; 32]);
    let mut g = Gen::new(target);
    g.setup(key);
    let find = g.run(
        secs,
        window,
        |rng| Request {
            target: Some(Checked::Valid(NodeId::from_bytes(rng.random()))),
            ..Request::new("_find_node")
        },
        |r| r.closer_nodes().len(),
    );
    let lookup_value: Bytes = PeersRequest::new(PeersRequestType::Lookup, None, None).encode();
    let peers = g.run(
        secs,
        window,
        move |_| Request {
            target: Some(Checked::Valid(key)),
            value: Some(lookup_value.clone()),
            ..Request::new("peers")
        },
        |r| {
            r.value
                .as_deref()
                .and_then(|v| PeersResponse::decode(v).ok())
                .and_then(|p| p.peers.and_then(|p| p.into_valid()))
                .map_or(0, |p| p.len())
        },
    );
    (find, peers)
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let secs: f64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let window: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(64);

    // Ours: the hyperdht binary, a separate process.
    let mut ours = std::process::Command::new(binary("hyperdht"))
        .args(["--host", "127.0.0.1", "--json", "-q"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn hyperdht");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(ours.stdout.as_mut().expect("stdout")),
        &mut line,
    )
    .expect("listening line");
    let v: serde_json::Value = serde_json::from_str(&line).expect("json");
    let ours_addr: SocketAddrV4 = v["address"]
        .as_str()
        .expect("address")
        .parse()
        .expect("addr");
    let (ours_find, ours_peers) = measure(ours_addr, secs, window);
    let ours_rss = rss_kib(ours.id());
    let _ = ours.kill();
    let _ = ours.wait();

    println!("load on one node on 127.0.0.1, {secs} s per phase, window {window}:");
    let row = |name: &str, p: &Phase, what: &str| {
        println!(
            "  {name:<28} {:>9.0} answers/s ({} answered, {:.1} {what} per answer)",
            p.rate(),
            p.answered,
            p.per_answer
        )
    };
    let Some(reference) = hyperdht_tests::reference("rpc_load") else {
        row("hyperdht-rs _find_node", &ours_find, "nodes");
        row("hyperdht-rs peers lookup", &ours_peers, "peers");
        return;
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let group = rt.block_on(JsGroup::spawn(
        &reference,
        "hyperdht-nodes.js",
        1,
        &[],
        false,
    ));
    let (js_find, js_peers) = measure(group.nodes[0].addr, secs, window);
    let js_rss = group.pid().and_then(rss_kib);
    drop(group);

    row("hyperdht-rs _find_node", &ours_find, "nodes");
    row("hyperdht@1.3.0 _find_node", &js_find, "nodes");
    println!(
        "  ratio (ours / reference): {:.2}x",
        ours_find.rate() / js_find.rate().max(1e-9)
    );
    row("hyperdht-rs peers lookup", &ours_peers, "peers");
    row("hyperdht@1.3.0 peers lookup", &js_peers, "peers");
    println!(
        "  ratio (ours / reference): {:.2}x",
        ours_peers.rate() / js_peers.rate().max(1e-9)
    );
    if let (Some(a), Some(b)) = (ours_rss, js_rss) {
        println!(
            "  resident memory after the run: hyperdht-rs {a} KiB, hyperdht@1.3.0 {b} KiB ({:.1}x less)",
            b as f64 / a as f64
        );
    }
}
