//! `shutdown().await` returns once the node's socket is closed, in both I/O modes: its port
//! can be bound again at once (an embedder restarting on the same port must not meet
//! `EADDRINUSE`). Before, it returned while the driver task, or the reader thread, still held
//! the socket.

use std::net::UdpSocket;

use dht_rpc::{DatagramIo, Node};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_port_is_free_when_shutdown_returns() {
    for io in [DatagramIo::Batched, DatagramIo::Single] {
        for round in 0..20 {
            let node = Node::builder()
                .ephemeral(true)
                .datagram_io(io)
                .bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = node.local_addr();
            // Some traffic first, so that the task and the reader are at work.
            let _ = node.ping(addr).await;
            node.shutdown().await;
            let again = UdpSocket::bind(addr);
            assert!(
                again.is_ok(),
                "{io:?}, round {round}: {addr} still bound after shutdown: {again:?}"
            );
        }
    }
}
