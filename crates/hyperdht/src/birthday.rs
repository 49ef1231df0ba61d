//! The birthday punch: how two Rust peers reach each other when one sits behind a symmetric
//! NAT (a new external port per destination) and the other behind a port-restricted one,
//! which the relayed ping and direct probes cannot open.
//!
//! The *hard* side (symmetric) opens [`SOCKETS`] extra sockets, each sending one datagram to
//! the easy side's (endpoint-independent) address, so its NAT holds that many mappings
//! toward it. The *easy* side sprays up to [`SPRAYS`] datagrams from its DHT socket to random
//! ports of the hard side's IP, at most [`SPRAY_RATE`] a second. A spray that lands on one
//! of the mapped ports gets in (it comes from exactly the address that socket sent to); the
//! hard side acknowledges from that socket, and both now have a direct path. With 256
//! sockets and 1024 sprays over 64,512 ports, one lands with probability about 98 %.
//!
//! The two sides agree through the value of the relayed hole-punch ping ([`Hint`]), which the
//! reference ignores: JavaScript peers are unaffected. Every datagram here starts with
//! `[0, 0, 7]`, which never decodes as the protocol.

#[cfg(feature = "tokio")]
use std::net::{Ipv4Addr, SocketAddrV4};
#[cfg(feature = "tokio")]
use std::sync::Arc;
#[cfg(feature = "tokio")]
use std::time::Duration;

use bytes::Bytes;
#[cfg(feature = "tokio")]
use rand::Rng;
#[cfg(feature = "tokio")]
use tokio::net::UdpSocket;
#[cfg(feature = "tokio")]
use tokio::sync::mpsc;

/// Extra sockets the hard side opens.
#[cfg(feature = "tokio")]
pub(crate) const SOCKETS: usize = 256;
/// Datagrams the easy side sprays at most.
#[cfg(feature = "tokio")]
pub(crate) const SPRAYS: usize = 1024;
/// Sprays per second at most.
#[cfg(feature = "tokio")]
pub(crate) const SPRAY_RATE: u32 = 2000;
/// How long the hard side keeps its sockets open for a spray to land.
#[cfg(feature = "tokio")]
pub(crate) const HARD_WAIT: Duration = Duration::from_secs(4);

const MAGIC: &[u8] = b"\0\0\x07hyperdht-rs/bday/1/";

/// What a birthday datagram or hint says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hint {
    /// In a punch ping: "I am behind a symmetric NAT and opened sockets toward you: spray
    /// my IP".
    SprayMe,
    /// In a punch ping: "I am reachable at a stable address: open sockets toward me, I will
    /// spray your IP".
    ProbeMe,
    /// From the hard side's sockets, opening their mappings.
    Open,
    /// From the easy side, at random ports.
    Spray,
    /// From the hard side's socket that a spray reached.
    Ack,
}

impl Hint {
    fn tag(self) -> u8 {
        match self {
            Hint::SprayMe => 1,
            Hint::ProbeMe => 2,
            Hint::Open => 3,
            Hint::Spray => 4,
            Hint::Ack => 5,
        }
    }

    /// The bytes that carry it.
    pub fn encode(self) -> Bytes {
        let mut b = MAGIC.to_vec();
        b.push(self.tag());
        b.into()
    }

    /// Reads one; `None` for anything else.
    pub fn decode(b: &[u8]) -> Option<Hint> {
        let rest = b.strip_prefix(MAGIC)?;
        match rest {
            [1] => Some(Hint::SprayMe),
            [2] => Some(Hint::ProbeMe),
            [3] => Some(Hint::Open),
            [4] => Some(Hint::Spray),
            [5] => Some(Hint::Ack),
            _ => None,
        }
    }
}

/// The hard side: opens the sockets toward `easy`, waits for a spray from `easy`'s IP, and
/// acknowledges it. Returns the socket that was reached and the sprayer's address.
#[cfg(feature = "tokio")]
pub(crate) async fn hard_side(easy: SocketAddrV4) -> Option<(Arc<UdpSocket>, SocketAddrV4)> {
    let (tx, mut rx) = mpsc::channel(1);
    let mut tasks = Vec::with_capacity(SOCKETS);
    for _ in 0..SOCKETS {
        let Ok(socket) = UdpSocket::bind("0.0.0.0:0").await else {
            break;
        };
        let socket = Arc::new(socket);
        let _ = socket.send_to(&Hint::Open.encode(), easy).await;
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            let mut buf = [0u8; 128];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                if let std::net::SocketAddr::V4(from) = from
                    && from.ip() == easy.ip()
                    && Hint::decode(&buf[..n]) == Some(Hint::Spray)
                {
                    let _ = socket.send_to(&Hint::Ack.encode(), from).await;
                    let _ = tx.send((socket.clone(), from)).await;
                    return;
                }
            }
        }));
    }
    drop(tx);
    let hit = tokio::time::timeout(HARD_WAIT, rx.recv())
        .await
        .ok()
        .flatten();
    for t in tasks {
        t.abort();
    }
    hit
}

/// The easy side: sprays random ports of `hard` from the DHT socket through `send`, until
/// `acked` reports an acknowledgement (the hard side's address) or the budget is spent.
#[cfg(feature = "tokio")]
pub(crate) async fn spray(
    hard: Ipv4Addr,
    send: impl Fn(SocketAddrV4, Bytes),
    mut acked: mpsc::Receiver<SocketAddrV4>,
) -> Option<SocketAddrV4> {
    let burst = 16;
    let pause = Duration::from_secs_f64(f64::from(burst as u32) / f64::from(SPRAY_RATE));
    let payload = Hint::Spray.encode();
    for sent in (0..SPRAYS).step_by(burst) {
        for _ in sent..(sent + burst).min(SPRAYS) {
            let port = rand::rng().random_range(1024..=u16::MAX);
            send(SocketAddrV4::new(hard, port), payload.clone());
        }
        if let Ok(Some(at)) = tokio::time::timeout(pause, acked.recv()).await {
            return Some(at);
        }
    }
    tokio::time::timeout(Duration::from_secs(1), acked.recv())
        .await
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_round_trip_and_never_decode_as_the_protocol() {
        for h in [
            Hint::SprayMe,
            Hint::ProbeMe,
            Hint::Open,
            Hint::Spray,
            Hint::Ack,
        ] {
            let b = h.encode();
            assert_eq!(Hint::decode(&b), Some(h));
            assert!(dht_wire::Datagram::decode(&b).is_err());
        }
        assert_eq!(Hint::decode(b"\0\0\x07hyperdht-rs/bday/1/\x09"), None);
        assert_eq!(Hint::decode(b"hello"), None);
    }
}
