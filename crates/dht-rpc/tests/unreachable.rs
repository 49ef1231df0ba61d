//! ICMP port-unreachables, read by the driver from the socket's error queue (`IP_RECVERR`,
//! Linux), in both I/O modes:
//! - a request to a node that answered us before and has since gone fails at once (the
//!   reference waits its full timeout there);
//! - a request to an address that never answered us waits as before (a NAT in front of a
//!   node refuses strangers so until the node writes to us);
//! - many ICMP errors that match nothing (answers of ours to closed ports) are read and
//!   ignored, and the node keeps hearing: the error queue is charged to the receive buffer
//!   until read.
//!
//! (The kernel that answers limits how many ICMP errors it sends, 1,000/s with a burst of 50
//! on Linux: this is an accelerator, and a request whose ICMP never came times out as before.)
#![cfg(target_os = "linux")]

use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use dht_rpc::{DatagramIo, Node, RequestError};
use dht_wire::{Datagram, Request, Tid};

/// A loopback port where nothing listens (bound, then closed).
fn closed_port() -> SocketAddrV4 {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    match s.local_addr().expect("addr") {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => unreachable!("bound on IPv4"),
    }
}

async fn node(io: DatagramIo) -> Node {
    Node::builder()
        .ephemeral(true)
        .datagram_io(io)
        .bind("127.0.0.1:0")
        .await
        .expect("bind")
}

/// Both parts in one test, one after the other: they share the kernel's ICMP budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn icmp_port_unreachables_in_both_io_modes() {
    // The few refusals first, while the budget is full; then the flood of them.
    for io in [DatagramIo::Batched, DatagramIo::Single] {
        a_gone_node_fails_at_once_and_a_stranger_waits(io).await;
    }
    for io in [DatagramIo::Batched, DatagramIo::Single] {
        icmp_errors_that_match_nothing_are_read_and_the_node_keeps_hearing(io).await;
    }
}

async fn a_gone_node_fails_at_once_and_a_stranger_waits(io: DatagramIo) {
    {
        let a = node(io).await;
        let mut gone = Vec::new();
        for _ in 0..5 {
            let c = node(io).await;
            assert!(a.ping(c.local_addr()).await.is_ok(), "{io:?}: it answers");
            gone.push(c.local_addr());
            c.shutdown().await;
        }
        for to in gone {
            let t = Instant::now();
            let r = a.ping(to).await;
            println!("{io:?}: ping to a node gone: {r:?} after {:?}", t.elapsed());
            assert_eq!(r.err(), Some(RequestError::Unreachable), "{io:?}");
        }
        let r = a.ping(closed_port()).await;
        assert_eq!(
            r.err(),
            Some(RequestError::Timeout),
            "{io:?}: an address that never answered waits its timeout"
        );
        let s = a.stats();
        println!(
            "{io:?}: {} unreachable, {} ICMP errors ignored, {} timeouts",
            s.unreachable, s.icmp_ignored, s.timeouts
        );
        assert_eq!((s.unreachable, s.timeouts), (5, 1), "{io:?}");
        assert_eq!(s.icmp_ignored, 1, "{io:?}: the stranger's refusal");
        a.shutdown().await;
    }
}

async fn icmp_errors_that_match_nothing_are_read_and_the_node_keeps_hearing(io: DatagramIo) {
    {
        let a = node(io).await;
        let b = node(io).await;
        let to = SocketAddr::V4(a.local_addr());
        let ping = Datagram::request(Tid::from_masked(1), Request::new("_ping")).encode();
        // 600 pings from sockets connected elsewhere, so that each answer finds no socket
        // and the kernel refuses it (a connected UDP socket takes datagrams from its peer
        // only), in rounds paced under the kernel's ICMP budget. More errors than the
        // receive buffer holds (about 270 of them in 208 KiB) if they were never read.
        let dummy = SocketAddr::V4(closed_port());
        for round in 0..60 {
            for _ in 0..10 {
                let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
                s.connect(dummy).expect("connect");
                s.send_to(&ping, to).expect("send");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
            assert!(
                a.ping(b.local_addr()).await.is_ok(),
                "{io:?}: the live node still answered, round {round}"
            );
        }
        let s = a.stats();
        println!(
            "{io:?}: {} answered, {} ICMP errors read and ignored",
            s.requests_answered, s.icmp_ignored
        );
        assert!(s.requests_answered >= 600, "{io:?}");
        assert!(
            s.icmp_ignored >= 500,
            "{io:?}: the refusals were read ({})",
            s.icmp_ignored
        );
        a.shutdown().await;
        b.shutdown().await;
    }
}
