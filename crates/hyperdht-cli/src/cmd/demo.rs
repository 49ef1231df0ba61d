//! `hyperdht demo`: the whole thing at work in one process, each step timed.

use std::time::Instant;

use anyhow::Context as _;
use bytes::Bytes;
use hyperdht::{AnnounceOptions, Key};
use serde_json::json;

use super::{addr_json, ms};
use crate::out::Out;

/// The next application datagram, within two seconds.
async fn recv(
    rx: &mut tokio::sync::mpsc::Receiver<(std::net::SocketAddrV4, Bytes)>,
) -> Option<(std::net::SocketAddrV4, Bytes)> {
    tokio::time::timeout(std::time::Duration::from_secs(2), rx.recv())
        .await
        .ok()
        .flatten()
}

/// Milliseconds since `t`, to the microsecond.
fn since(t: Instant) -> f64 {
    ms(t.elapsed())
}

/// `hyperdht demo`: a local network of `n` nodes (4 at least), and each step of an
/// announce, lookup, ping, hole punch, datagrams and unannounce through it, timed.
pub async fn run(out: &Out, n: usize) -> anyhow::Result<()> {
    let n = n.max(4);
    let step = |name: &str, text: String, extra: serde_json::Value, t: Instant| {
        let elapsed = since(t);
        out.emit(
            || format!("{text} ({elapsed:.1} ms)"),
            || json!({"step": name, "ms": elapsed, "detail": extra}),
        );
    };

    let t = Instant::now();
    let (entry, nodes) = super::testnet::start("127.0.0.1", n, 0).await?;
    step(
        "network",
        format!(
            "1. started a DHT of {} nodes and a bootstrap node on 127.0.0.1 (bootstrap at {})",
            nodes.len(),
            entry.local_addr()
        ),
        json!({"nodes": nodes.len(), "bootstrap": addr_json(&entry.local_addr())}),
        t,
    );

    let (a, b) = (&nodes[0], &nodes[nodes.len() - 1]);
    let key = Key::from_bytes(*b"01234567012345670123456701234567");

    let t = Instant::now();
    let mut announce = a.announce(key, AnnounceOptions::new(None, None));
    while futures::StreamExt::next(&mut announce).await.is_some() {}
    let stored = match announce.outcome() {
        Some(Ok(o)) => o.commits,
        Some(Err(e)) => return Err(e.clone()).context("announce failed"),
        None => 0,
    };
    step(
        "announce",
        format!(
            "2. peer A ({}) announced key {key} on the {stored} closest nodes",
            a.local_addr()
        ),
        json!({"peer": addr_json(&a.local_addr()), "nodes": stored}),
        t,
    );

    let t = Instant::now();
    let replies = b
        .lookup(key, AnnounceOptions::default())
        .replies()
        .await
        .context("lookup failed")?;
    let via = replies
        .iter()
        .find(|r| r.peers.contains(&a.local_addr()) && r.node.id != b.id())
        .with_context(|| {
            format!(
                "the lookup did not find peer A among {} replies",
                replies.len()
            )
        })?;
    step(
        "lookup",
        format!(
            "3. peer B ({}) looked the key up: {} node(s) answered, {} of them named A, the first {}",
            b.local_addr(),
            replies.len(),
            replies
                .iter()
                .filter(|r| r.peers.contains(&a.local_addr()))
                .count(),
            via.node.addr
        ),
        json!({"replies": replies.len(), "found": addr_json(&a.local_addr()), "via": addr_json(&via.node.addr)}),
        t,
    );

    let t = Instant::now();
    let pong = b.ping(a.local_addr()).await.context("ping failed")?;
    step(
        "ping",
        format!(
            "4. B pinged A: A answered, and sees B as {}",
            pong.observed.map_or("?".into(), |o| o.to_string())
        ),
        json!({"rtt_ms": ms(pong.rtt)}),
        t,
    );

    let t = Instant::now();
    let punch = b
        .holepunch(a.local_addr(), via.node.addr)
        .await
        .context("hole punch failed")?;
    step(
        "holepunch",
        format!(
            "5. B hole-punched to A through {}: the {:?} path opened",
            via.node.addr, punch.path
        ),
        json!({"path": super::ping::path_name(punch.path).0}),
        t,
    );

    // Application datagrams on the DHT sockets, over the path the punch opened.
    let t = Instant::now();
    let mut a_in = a.datagrams();
    let mut b_in = b.datagrams();
    b.send_datagram(punch.addr, Bytes::from_static(b"\0\0\x07hello from B"));
    let (from_b, hello) = recv(&mut a_in).await.context("A got no datagram from B")?;
    a.send_datagram(from_b, Bytes::from_static(b"\0\0\x07hello back from A"));
    let (_, back) = recv(&mut b_in).await.context("B got no answer from A")?;
    step(
        "datagrams",
        format!(
            "6. B sent A {:?} on its DHT socket and A answered {:?}",
            String::from_utf8_lossy(&hello[3..]),
            String::from_utf8_lossy(&back[3..])
        ),
        json!({"sent": 1, "answered": 1}),
        t,
    );

    let t = Instant::now();
    a.unannounce(key, AnnounceOptions::default())
        .await
        .context("unannounce failed")?;
    let after = b
        .lookup(key, AnnounceOptions::default())
        .replies()
        .await
        .context("lookup failed")?;
    let left = after
        .iter()
        .filter(|r| r.peers.contains(&a.local_addr()))
        .count();
    step(
        "unannounce",
        format!("7. A unannounced; a new lookup finds it on {left} node(s)"),
        json!({"left": left}),
        t,
    );
    for r in after.iter().filter(|r| r.peers.contains(&a.local_addr())) {
        tracing::warn!(node = %r.node.addr, id = %r.node.id, "still lists A");
    }
    anyhow::ensure!(
        left == 0,
        "A is still listed on {left} node(s) after unannouncing"
    );

    for node in &nodes {
        node.shutdown().await;
    }
    entry.shutdown().await;
    out.note(|| {
        "done: announce, lookup, ping, hole punch, datagrams and unannounce all worked".into()
    });
    Ok(())
}
