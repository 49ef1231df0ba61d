//! Extra sockets a machine asks its driver for (as hyperdht's birthday punch does): a
//! datagram sent from a socket the moment it is opened leaves, in both I/O modes. (A send
//! that did not wait for the runtime to know the new socket writable lost every one of
//! them, and with them the first round of every birthday punch behind a symmetric NAT.)

use std::collections::{BTreeSet, VecDeque};
use std::convert::Infallible;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dht_rpc::{
    Config, Core, DatagramIo, Driver, Machine, MachineEvent, NoHandler, SocketId, SocketOp,
    Transmit,
};

/// A dht-rpc core with a queue of socket operations and transmits of its own.
struct Sprayer {
    core: Core<NoHandler>,
    ops: VecDeque<SocketOp>,
    out: VecDeque<Transmit>,
}

impl Sprayer {
    /// Opens `n` sockets and sends one datagram from each to `to`, all at once.
    fn spray(&mut self, n: u32, to: SocketAddrV4) {
        for i in 1..=n {
            self.ops.push_back(SocketOp::Open(SocketId(i)));
            self.out.push_back(Transmit {
                to,
                payload: Bytes::from(format!("\0\0\x07from {i}")),
                from: SocketId(i),
            });
        }
    }
}

impl Machine for Sprayer {
    type Handler = NoHandler;
    type Own = Infallible;

    fn rpc(&self) -> &Core<NoHandler> {
        &self.core
    }
    fn rpc_mut(&mut self) -> &mut Core<NoHandler> {
        &mut self.core
    }
    fn handle_datagram(&mut self, now: Instant, from: SocketAddrV4, bytes: &[u8]) {
        self.core.handle_datagram(now, from, bytes);
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.core.handle_timeout(now);
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.core.poll_timeout()
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front().or_else(|| self.core.poll_transmit())
    }
    fn poll_event(&mut self) -> Option<MachineEvent<Infallible>> {
        self.core.poll_event().map(MachineEvent::Rpc)
    }
    fn poll_socket_op(&mut self) -> Option<SocketOp> {
        self.ops.pop_front()
    }
    fn waiter(own: &Infallible) -> Option<u64> {
        match *own {}
    }
}

async fn sprays_arrive(io: DatagramIo) {
    const SOCKETS: u32 = 64;
    let sink = UdpSocket::bind("127.0.0.1:0").expect("bind the sink");
    sink.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let SocketAddr::V4(to) = sink.local_addr().expect("addr") else {
        unreachable!("bound on IPv4")
    };
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let SocketAddr::V4(local) = socket.local_addr().expect("addr") else {
        unreachable!("bound on IPv4")
    };
    let machine = Sprayer {
        core: Core::new(Config::default(), Instant::now()),
        ops: VecDeque::new(),
        out: VecDeque::new(),
    };
    let driver = Driver::start(socket, local, machine, false, io);
    driver.with_machine(|m| m.spray(SOCKETS, to));
    let sink = tokio::task::spawn_blocking(move || {
        let mut ports = BTreeSet::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut buf = [0u8; 64];
        while ports.len() < SOCKETS as usize && Instant::now() < deadline {
            if let Ok((_, SocketAddr::V4(from))) = sink.recv_from(&mut buf) {
                ports.insert(from.port());
            }
        }
        ports
    });
    let ports = sink.await.expect("sink");
    assert_eq!(
        ports.len(),
        SOCKETS as usize,
        "{io:?}: datagrams from {} of {SOCKETS} new sockets arrived",
        ports.len()
    );
    assert!(!ports.contains(&local.port()), "none from the main socket");
    driver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_socket_sends_at_once_batched() {
    sprays_arrive(DatagramIo::Batched).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_socket_sends_at_once_single() {
    sprays_arrive(DatagramIo::Single).await;
}
