//! Hole punching and application datagrams on [`HyperDht`].
//!
//! [`HyperDht::holepunch`] first does what works across most NATs: a few rounds of a direct
//! probe to the peer together with the ping relayed through the referrer (the reference
//! sends only the latter). When that fails between two Rust peers, it falls back to the
//! birthday punch (two Rust peers, one behind a symmetric NAT: 256 extra sockets on that side, up to 1024 sprayed ports on the other). A path opened that way may use an extra socket; the
//! node keeps it in its path table, so [`HyperDht::send_datagram`] and
//! [`HyperDht::datagrams`] work the same whichever socket carries the path.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dht_rpc::{Driver, NodeId, RequestError, WeakDriver};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::birthday::{self, Hint};
use crate::core::{
    BirthdayTry, Core, CoreEvent, Holepunch, HolepunchError, HolepunchPath, PUNCH_ROUNDS,
};
use crate::node::HyperDht;

/// Paths through extra sockets kept at most.
const MAX_PATHS: usize = 64;

type Inbox = mpsc::Sender<(SocketAddrV4, Bytes)>;

/// Birthday hard sides (256 extra sockets each) that peers' hints may run at once.
const MAX_HARD_SIDES: usize = 1;

/// State shared by the handle and its background tasks (never a strong node handle).
pub(crate) struct Shared {
    app: Mutex<Option<Inbox>>,
    paths: Mutex<HashMap<SocketAddrV4, Arc<UdpSocket>>>,
    acks: Mutex<HashMap<Ipv4Addr, mpsc::Sender<SocketAddrV4>>>,
    /// Hard sides (256 sockets each) running now.
    hard_running: std::sync::atomic::AtomicUsize,
    symmetric: Mutex<Option<(Instant, bool)>>,
}

impl Shared {
    fn deliver(&self, from: SocketAddrV4, payload: Bytes) {
        if let Some(tx) = self
            .app
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            let _ = tx.try_send((from, payload));
        }
    }

    fn add_path(self: &Arc<Self>, peer: SocketAddrV4, socket: Arc<UdpSocket>) {
        {
            let mut paths = self.paths.lock().unwrap_or_else(PoisonError::into_inner);
            if paths.len() >= MAX_PATHS && !paths.contains_key(&peer) {
                return;
            }
            paths.insert(peer, socket.clone());
        }
        // Datagrams on the extra socket reach the application like those on the DHT socket.
        let shared = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                let Some(shared) = shared.upgrade() else {
                    return;
                };
                if let std::net::SocketAddr::V4(from) = from
                    && Hint::decode(&buf[..n]).is_none()
                {
                    shared.deliver(from, Bytes::copy_from_slice(&buf[..n]));
                }
            }
        });
    }
}

/// Starts the background tasks of a new node: routing of datagrams that are not of the
/// protocol, and answers to peers' birthday hints (those the core's limits let through).
pub(crate) fn start(node: &Driver<Core>) -> Arc<Shared> {
    let shared = Arc::new(Shared {
        app: Mutex::new(None),
        paths: Mutex::new(HashMap::new()),
        acks: Mutex::new(HashMap::new()),
        hard_running: std::sync::atomic::AtomicUsize::new(0),
        symmetric: Mutex::new(None),
    });
    let mut datagrams = node.datagrams();
    let s = shared.clone();
    tokio::spawn(async move {
        while let Some((from, payload)) = datagrams.recv().await {
            match Hint::decode(&payload) {
                Some(Hint::Ack) => {
                    let tx = s
                        .acks
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(from.ip());
                    if let Some(tx) = tx {
                        let _ = tx.try_send(from);
                    }
                }
                Some(_) => {}
                None => s.deliver(from, payload),
            }
        }
    });
    let mut events = node.own_events();
    let weak = node.downgrade();
    let s = Arc::downgrade(&shared);
    tokio::spawn(async move {
        loop {
            let e = match events.recv().await {
                Ok(e) => e,
                // Hints are limited to a few a minute before this channel: a lag is a
                // stalled runtime, and a dropped hint only fails that peer's punch.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "birthday hints dropped");
                    continue;
                }
                Err(_) => return,
            };
            let CoreEvent::Hint {
                requester, hint, ..
            } = e
            else {
                continue;
            };
            let Some(shared) = s.upgrade() else {
                return;
            };
            tokio::spawn(answer_hint(weak.clone(), shared, hint, requester));
        }
    });
    shared
}

/// What a peer's hint asks of us.
async fn answer_hint(
    weak: WeakDriver<Core>,
    shared: Arc<Shared>,
    hint: Hint,
    requester: SocketAddrV4,
) {
    match hint {
        // The requester is behind a symmetric NAT: spray its IP.
        Hint::SprayMe => {
            let (tx, rx) = mpsc::channel(1);
            shared
                .acks
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(*requester.ip(), tx);
            let send = |to, payload| {
                if let Some(node) = weak.upgrade() {
                    node.send_datagram(to, payload);
                }
            };
            let hit = birthday::spray(*requester.ip(), send, rx).await;
            tracing::debug!(%requester, ?hit, "sprayed for a birthday punch");
        }
        // The requester has a stable address: open sockets toward it (one such set of
        // sockets at a time).
        Hint::ProbeMe => {
            use std::sync::atomic::Ordering;
            if shared.hard_running.fetch_add(1, Ordering::SeqCst) >= MAX_HARD_SIDES {
                shared.hard_running.fetch_sub(1, Ordering::SeqCst);
                tracing::debug!(%requester, "a birthday hard side is running already");
                return;
            }
            let hit = birthday::hard_side(requester).await;
            shared.hard_running.fetch_sub(1, Ordering::SeqCst);
            if let Some((socket, from)) = hit {
                tracing::debug!(peer = %from, "birthday punch met on an extra socket");
                shared.add_path(from, socket);
            }
        }
        _ => {}
    }
}

impl HyperDht {
    /// Sends an application datagram to `to`: from the socket of the path a birthday punch
    /// opened to `to`, or from the DHT socket. Start it with bytes that never decode as the
    /// protocol, such as `[0, 0, 7]`.
    pub fn send_datagram(&self, to: SocketAddrV4, payload: Bytes) {
        let path = self
            .shared
            .paths
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&to)
            .cloned();
        match path {
            Some(socket) => {
                let _ = socket.try_send_to(&payload, to.into());
            }
            None => self.node.send_datagram(to, payload),
        }
    }

    /// From now on, application datagrams (those that are not of the protocol) arriving on
    /// the DHT socket or on a punched path come here; at most 1024 wait, more are dropped.
    /// A second call replaces the first receiver.
    pub fn datagrams(&self) -> mpsc::Receiver<(SocketAddrV4, Bytes)> {
        let (tx, rx) = mpsc::channel(1024);
        *self
            .shared
            .app
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(tx);
        rx
    }

    /// Opens a UDP path to `peer`, with the help of `referrer` (the node that returned the
    /// peer in a lookup). Sends, in a few rounds, both a direct probe to the peer and a ping
    /// relayed through the referrer (the only thing the reference does); the first answer
    /// wins and tells which path opened. Behind the common port-restricted NAT the relayed
    /// ping alone fails: our direct probe opens our side while the peer's answer opens its.
    /// When both fail and a symmetric NAT is in the way, two Rust peers try a birthday punch.
    pub async fn holepunch(
        &self,
        peer: SocketAddrV4,
        referrer: SocketAddrV4,
    ) -> Result<Holepunch, HolepunchError> {
        let start = Instant::now();
        let relayed = referrer != peer && !self.via_self(referrer);
        match self.probe_and_relay(peer, referrer).await {
            Ok(h) => return Ok(h),
            Err(RequestError::Timeout) => {}
            Err(e) => return Err(HolepunchError::Node(e)),
        }
        let no_answer = |birthday| HolepunchError::NoAnswer {
            peer,
            rounds: PUNCH_ROUNDS,
            relayed,
            birthday,
        };
        if self.via_self(referrer) {
            return Err(no_answer(BirthdayTry::NotTried));
        }
        match self.birthday(peer, referrer).await {
            (_, Some(addr)) => Ok(Holepunch {
                path: HolepunchPath::Birthday,
                addr,
                id: None,
                elapsed: start.elapsed(),
            }),
            (side, None) => Err(no_answer(side)),
        }
    }

    fn via_self(&self, referrer: SocketAddrV4) -> bool {
        let me = self.local_addr();
        referrer == me || referrer == SocketAddrV4::new(Ipv4Addr::LOCALHOST, me.port())
    }

    async fn probe_and_relay(
        &self,
        peer: SocketAddrV4,
        referrer: SocketAddrV4,
    ) -> Result<Holepunch, RequestError> {
        let relay = !self.via_self(referrer);
        let done = self
            .node
            .own_request(|m| m.holepunch(Instant::now(), peer, referrer, relay).0)
            .await;
        match done {
            Some(CoreEvent::Punched { result, .. }) => result,
            _ => Err(RequestError::Cancelled),
        }
    }

    /// Whether our NAT maps each destination to a new port: two DHT nodes see us at
    /// different ports. Remembered for a minute.
    async fn is_symmetric(&self, referrer: SocketAddrV4) -> bool {
        if let Some((at, v)) = *self
            .shared
            .symmetric
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            && at.elapsed() < Duration::from_secs(60)
        {
            return v;
        }
        let target = NodeId::from_bytes(rand::random());
        let other = self
            .node
            .read_core(|c| c.table().closest(&target, 8))
            .into_iter()
            .map(|n| n.addr)
            .chain(self.node.read_core(|c| c.config().bootstrap.clone()))
            .find(|a| *a != referrer);
        let Some(other) = other else { return false };
        let (a, b) = tokio::join!(self.node.ping(referrer), self.node.ping(other));
        let symmetric = match (a, b) {
            (Ok(a), Ok(b)) => {
                matches!((a.observed, b.observed), (Some(x), Some(y)) if x.port() != y.port())
            }
            _ => false,
        };
        *self
            .shared
            .symmetric
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some((Instant::now(), symmetric));
        symmetric
    }

    /// The birthday punch; the address to use for the peer when it met.
    async fn birthday(
        &self,
        peer: SocketAddrV4,
        referrer: SocketAddrV4,
    ) -> (BirthdayTry, Option<SocketAddrV4>) {
        let side = if self.is_symmetric(referrer).await {
            BirthdayTry::HardSide
        } else {
            BirthdayTry::EasySide
        };
        (side, self.birthday_as(side, peer, referrer).await)
    }

    async fn birthday_as(
        &self,
        side: BirthdayTry,
        peer: SocketAddrV4,
        referrer: SocketAddrV4,
    ) -> Option<SocketAddrV4> {
        if side == BirthdayTry::HardSide {
            // We are the hard side: open sockets toward the peer, then ask it to spray us.
            let hard = tokio::spawn(birthday::hard_side(peer));
            tokio::time::sleep(Duration::from_millis(100)).await;
            let node = self.node.clone();
            tokio::spawn(async move {
                node.holepunch_with(peer, referrer, Hint::SprayMe.encode())
                    .await
            });
            let (socket, from) = hard.await.ok().flatten()?;
            self.shared.add_path(from, socket);
            Some(from)
        } else {
            // We have a stable address: ask the peer to open sockets toward us, then spray it.
            let node = self.node.clone();
            tokio::spawn(async move {
                node.holepunch_with(peer, referrer, Hint::ProbeMe.encode())
                    .await
            });
            let (tx, rx) = mpsc::channel(1);
            self.shared
                .acks
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(*peer.ip(), tx);
            tokio::time::sleep(Duration::from_millis(300)).await;
            let node = self.node.clone();
            birthday::spray(
                *peer.ip(),
                move |to, payload| node.send_datagram(to, payload),
                rx,
            )
            .await
        }
    }
}
