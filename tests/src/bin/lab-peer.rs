//! A hyperdht peer for the NAT lab, driven by JSON lines on stdin (one answer line each).
//!
//! usage: lab-peer --bootstrap HOST:PORT
//! ops: reset (a fresh ephemeral node on a new port), announce {key}, lookup {key},
//! reserve {relay} (a slot on a relay, kept fresh; answers once the relay holds it, or after
//! 3 s), holepunch {peer, via}, send {to, data}, recv {timeout_ms}, echo {timeout_ms}
//! (answers one application datagram with "echo:" + its data, to where it came from).
//! Application datagrams start with [0, 0, 7], which never decodes as the protocol.

use std::io::BufRead;
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyperdht::{AnnounceOptions, HyperDht, Key};
use serde_json::{Value, json};
use tokio::sync::mpsc;

const PREFIX: &[u8] = &[0, 0, 7];

struct Peer {
    dht: HyperDht,
    inbox: mpsc::Receiver<(SocketAddrV4, Bytes)>,
}

async fn fresh(bootstrap: &str) -> Peer {
    // The lab's DHT nodes all sit on one IP of 198.18.0.0/15: trusted, or the defences'
    // per-IP limits would keep all but two of them out of our walks.
    let lab: dht_rpc::guard::Ipv4Range = "198.18.0.0/15".parse().expect("range");
    let dht = HyperDht::builder()
        .trust([lab])
        .rpc(|b| b.ephemeral(true))
        .bootstrap([bootstrap.to_owned()])
        .bind("0.0.0.0:0")
        .await
        .expect("bind");
    let inbox = dht.datagrams();
    dht.ready().await;
    Peer { dht, inbox }
}

fn key(v: &Value) -> Key {
    v["key"].as_str().and_then(|k| k.parse().ok()).expect("key")
}

fn addr(v: &Value, field: &str) -> SocketAddrV4 {
    v[field]
        .as_str()
        .and_then(|a| a.parse().ok())
        .expect("address")
}

async fn recv(peer: &mut Peer, timeout_ms: u64) -> Option<(SocketAddrV4, Bytes)> {
    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, peer.inbox.recv()).await {
            Ok(Some((from, data))) if data.starts_with(PREFIX) => {
                return Some((from, data.slice(PREFIX.len()..)));
            }
            Ok(Some(_)) => continue,
            _ => return None,
        }
    }
}

async fn handle(peer: &mut Peer, bootstrap: &str, req: &Value) -> Value {
    match req["op"].as_str().unwrap_or("") {
        "reset" => {
            peer.dht.shutdown().await;
            *peer = fresh(bootstrap).await;
            json!({"addr": peer.dht.local_addr().to_string()})
        }
        "announce" => match peer
            .dht
            .announce(key(req), AnnounceOptions::default())
            .replies()
            .await
        {
            Ok(r) => json!({"ok": true, "replies": r.len()}),
            Err(e) => json!({"error": e.to_string()}),
        },
        "lookup" => match peer
            .dht
            .lookup(key(req), AnnounceOptions::default())
            .replies()
            .await
        {
            Ok(r) => {
                json!({"results": r.iter().map(|r| json!({"node": r.node.addr.to_string(), "peers": r.peers.iter().map(ToString::to_string).collect::<Vec<_>>()})).collect::<Vec<_>>()})
            }
            Err(e) => json!({"error": e.to_string()}),
        },
        "reserve" => {
            let relay = addr(req, "relay");
            peer.dht.reserve_relay(relay);
            let deadline = Instant::now() + Duration::from_secs(3);
            while peer.dht.reservation() != Some((relay, true)) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            json!({"held": peer.dht.reservation() == Some((relay, true))})
        }
        "holepunch" => match peer
            .dht
            .holepunch(addr(req, "peer"), addr(req, "via"))
            .await
        {
            Ok(p) => {
                let path = match p.path {
                    hyperdht::HolepunchPath::Circuit { .. } => "circuit".to_owned(),
                    other => format!("{other:?}").to_lowercase(),
                };
                json!({"ok": true, "path": path, "from": p.addr.to_string(), "ms": p.elapsed.as_secs_f64() * 1e3})
            }
            Err(e) => json!({"error": e.to_string()}),
        },
        "send" => {
            let mut data = PREFIX.to_vec();
            data.extend_from_slice(req["data"].as_str().unwrap_or("").as_bytes());
            peer.dht.send_datagram(addr(req, "to"), data.into());
            json!({"ok": true})
        }
        "recv" => match recv(peer, req["timeout_ms"].as_u64().unwrap_or(1000)).await {
            Some((from, data)) => {
                json!({"from": from.to_string(), "data": String::from_utf8_lossy(&data)})
            }
            None => json!({"error": "timeout"}),
        },
        "echo" => match recv(peer, req["timeout_ms"].as_u64().unwrap_or(1000)).await {
            Some((from, data)) => {
                let mut back = PREFIX.to_vec();
                back.extend_from_slice(b"echo:");
                back.extend_from_slice(&data);
                peer.dht.send_datagram(from, back.into());
                json!({"from": from.to_string()})
            }
            None => json!({"error": "timeout"}),
        },
        other => json!({"error": format!("unknown op {other:?}")}),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bootstrap = args
        .iter()
        .position(|a| a == "--bootstrap")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .expect("--bootstrap HOST:PORT");
    // Bounded lifetime, whatever happens to the test that started it.
    tokio::spawn(async {
        tokio::time::sleep(Duration::from_secs(900)).await;
        std::process::exit(3);
    });
    let (tx, mut lines) = mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut peer = fresh(&bootstrap).await;
    println!(
        "{}",
        json!({"ready": true, "addr": peer.dht.local_addr().to_string()})
    );
    while let Some(line) = lines.recv().await {
        let Ok(req) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let mut answer = handle(&mut peer, &bootstrap, &req).await;
        answer["re"] = req["re"].clone();
        println!("{answer}");
    }
}
