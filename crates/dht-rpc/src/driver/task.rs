//! The driver task: the one loop that owns the sockets and the clock of a [`Machine`]. It
//! sends what the machine emits (from the socket each transmit names), opens and closes the
//! extra sockets the machine asks for, feeds it every datagram with the socket it came in
//! on, and sleeps until the machine's next deadline, a datagram, or a call of the handle.

use std::collections::HashMap;
use std::net::{SocketAddr, SocketAddrV4};
use std::sync::{Arc, PoisonError};
use std::time::Instant;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::Inner;
use crate::core::Transmit;
use crate::machine::{Machine, SocketId, SocketOp};

/// Datagrams from extra sockets waiting for the loop at most (more wait in the kernel).
const EXTRA_QUEUE: usize = 1024;

/// The extra sockets a machine asked for, each with the task that reads it.
struct Extra {
    sockets: HashMap<SocketId, (Arc<UdpSocket>, JoinHandle<()>)>,
    tx: mpsc::Sender<Incoming>,
}

/// What an extra socket's reader hands the loop.
enum Incoming {
    Datagram(SocketId, SocketAddrV4, Bytes),
    Gone(SocketId),
}

impl Extra {
    async fn open(&mut self, id: SocketId, ip: std::net::Ipv4Addr) -> bool {
        let Ok(socket) = UdpSocket::bind(SocketAddr::V4(SocketAddrV4::new(ip, 0))).await else {
            return false;
        };
        let socket = Arc::new(socket);
        let (reader, tx) = (socket.clone(), self.tx.clone());
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            loop {
                match reader.recv_from(&mut buf).await {
                    Ok((n, SocketAddr::V4(from))) => {
                        let d = Bytes::copy_from_slice(&buf[..n]);
                        if tx.send(Incoming::Datagram(id, from, d)).await.is_err() {
                            return;
                        }
                    }
                    Ok((_, SocketAddr::V6(_))) => {}
                    // ICMP errors (connection refused) surface here: not fatal.
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
                    Err(_) => {
                        let _ = tx.send(Incoming::Gone(id)).await;
                        return;
                    }
                }
            }
        });
        if let Some((_, old)) = self.sockets.insert(id, (socket, task)) {
            old.abort();
        }
        true
    }

    fn close(&mut self, id: SocketId) {
        if let Some((_, task)) = self.sockets.remove(&id) {
            task.abort();
        }
    }
}

impl Drop for Extra {
    fn drop(&mut self) {
        for (_, (_, task)) in self.sockets.drain() {
            task.abort();
        }
    }
}

/// The driver task.
pub(super) async fn run<M: Machine>(inner: Arc<Inner<M>>) {
    let mut buf = vec![0u8; 65536];
    let (tx, mut extra_rx) = mpsc::channel(EXTRA_QUEUE);
    let mut extra = Extra {
        sockets: HashMap::new(),
        tx,
    };
    loop {
        let (transmits, ops, deadline, closed) = {
            let mut s = inner.shared.lock().unwrap_or_else(PoisonError::into_inner);
            inner.dispatch(&mut s);
            let ops: Vec<SocketOp> = std::iter::from_fn(|| s.core.poll_socket_op()).collect();
            let t: Vec<Transmit> = std::iter::from_fn(|| s.core.poll_transmit()).collect();
            (t, ops, s.core.poll_timeout(), s.closed)
        };
        for op in ops {
            match op {
                SocketOp::Open(id) => {
                    if !extra.open(id, *inner.local_addr.ip()).await {
                        let mut s = inner.shared.lock().unwrap_or_else(PoisonError::into_inner);
                        s.core.handle_socket_gone(Instant::now(), id);
                    }
                }
                SocketOp::Close(id) => extra.close(id),
            }
        }
        for t in transmits {
            let socket = if t.from == SocketId::MAIN {
                &inner.socket
            } else if let Some((s, _)) = extra.sockets.get(&t.from) {
                s.as_ref()
            } else {
                continue;
            };
            if let Err(e) = socket.send_to(&t.payload, SocketAddr::V4(t.to)).await {
                tracing::debug!(to = %t.to, error = %e, "send failed");
            }
        }
        if closed {
            return;
        }
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = inner.socket.recv_from(&mut buf) => match r {
                Ok((n, SocketAddr::V4(from))) => {
                    let mut s = inner.shared.lock().unwrap_or_else(PoisonError::into_inner);
                    s.core.handle_datagram(Instant::now(), from, &buf[..n]);
                }
                Ok((_, SocketAddr::V6(from))) => tracing::trace!(%from, "ignoring IPv6 datagram"),
                // ICMP errors surface here on some systems (connection refused): not fatal.
                Err(e) => tracing::trace!(error = %e, "recv error"),
            },
            Some(m) = extra_rx.recv() => {
                let mut s = inner.shared.lock().unwrap_or_else(PoisonError::into_inner);
                match m {
                    Incoming::Datagram(id, from, d) => {
                        s.core.handle_socket_datagram(Instant::now(), id, from, &d);
                    }
                    Incoming::Gone(id) => {
                        extra.close(id);
                        s.core.handle_socket_gone(Instant::now(), id);
                    }
                }
            }
            () = sleep => {
                let mut s = inner.shared.lock().unwrap_or_else(PoisonError::into_inner);
                s.core.handle_timeout(Instant::now());
            }
            () = inner.wake.notified() => {}
        }
    }
}
