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
use super::io::{BatchIo, DatagramIo};
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

/// Datagrams of the main socket handled per turn at most, before timers, extra sockets and
/// calls of the handle get theirs.
const RECV_TURN: usize = 256;

/// The driver task.
pub(super) async fn run<M: Machine>(inner: Arc<Inner<M>>, mode: DatagramIo) {
    // Only batched I/O may turn GRO on: a socket with GRO on must be read stride-aware.
    let batch = (mode == DatagramIo::Batched).then(|| BatchIo::new(&inner.socket));
    let mut io = match batch {
        None => None,
        Some(Ok(io)) => Some(io),
        Some(Err(e)) => {
            tracing::warn!(error = %e, "batched I/O unavailable, one datagram per call");
            None
        }
    };
    let mut buf = vec![0u8; 65536];
    let (tx, mut extra_rx) = mpsc::channel(EXTRA_QUEUE);
    let mut extra = Extra {
        sockets: HashMap::new(),
        tx,
    };
    let (mut transmits, mut ops) = (Vec::<Transmit>::new(), Vec::<SocketOp>::new());
    loop {
        let (deadline, closed) = {
            let mut s = inner.shared.lock().unwrap_or_else(PoisonError::into_inner);
            inner.dispatch(&mut s);
            ops.extend(std::iter::from_fn(|| s.core.poll_socket_op()));
            transmits.extend(std::iter::from_fn(|| s.core.poll_transmit()));
            (s.core.poll_timeout(), s.closed)
        };
        for op in ops.drain(..) {
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
        send_all(&inner.socket, io.as_mut(), &extra, &mut transmits).await;
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
            r = inner.socket.readable() => {
                if let Err(e) = r {
                    tracing::trace!(error = %e, "socket not readable");
                    continue;
                }
                let mut s = inner.shared.lock().unwrap_or_else(PoisonError::into_inner);
                let now = Instant::now();
                let mut handled = 0;
                while handled < RECV_TURN {
                    let n = match io.as_mut() {
                        Some(io) => io.recv(&inner.socket, |from, d| {
                            s.core.handle_datagram(now, from, d);
                        }),
                        None => recv_one(&inner.socket, &mut buf, |from, d| {
                            s.core.handle_datagram(now, from, d);
                        }),
                    };
                    match n {
                        Ok(0) => break,
                        Ok(n) => handled += n,
                        // ICMP errors surface here on some systems (connection refused):
                        // not fatal.
                        Err(e) => tracing::trace!(error = %e, "recv error"),
                    }
                }
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

/// One datagram without waiting (when batched I/O is unavailable).
fn recv_one(
    socket: &UdpSocket,
    buf: &mut [u8],
    mut each: impl FnMut(SocketAddrV4, &[u8]),
) -> std::io::Result<usize> {
    match socket.try_recv_from(buf) {
        Ok((n, SocketAddr::V4(from))) => {
            each(from, &buf[..n]);
            Ok(1)
        }
        Ok((_, SocketAddr::V6(from))) => {
            tracing::trace!(%from, "ignoring IPv6 datagram");
            Ok(1)
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(0),
        Err(e) => Err(e),
    }
}

/// Sends every transmit from the socket it names: on the main socket, runs to one address
/// of one size go out together (GSO); a full socket buffer is waited out.
async fn send_all(
    main: &UdpSocket,
    mut io: Option<&mut BatchIo>,
    extra: &Extra,
    transmits: &mut Vec<Transmit>,
) {
    let mut i = 0;
    while i < transmits.len() {
        let t = &transmits[i];
        if t.from != SocketId::MAIN {
            if let Some((s, _)) = extra.sockets.get(&t.from)
                && let Err(e) = s.send_to(&t.payload, SocketAddr::V4(t.to)).await
            {
                tracing::debug!(to = %t.to, error = %e, "send failed");
            }
            i += 1;
            continue;
        }
        // A run of transmits to one address, of one size, from the main socket.
        let max = io.as_deref().map_or(1, BatchIo::max_segments);
        let run = transmits[i..]
            .iter()
            .take(max)
            .take_while(|u| {
                u.from == SocketId::MAIN && u.to == t.to && u.payload.len() == t.payload.len()
            })
            .count();
        let group = &transmits[i..i + run];
        loop {
            let r = match io.as_deref_mut() {
                Some(io) => io.send(main, t.to, group),
                None => main.try_send_to(&t.payload, SocketAddr::V4(t.to)).map(drop),
            };
            match r {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    // The socket's buffer is full: wait until it drains, then send again.
                    if main.writable().await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    tracing::debug!(to = %t.to, error = %e, "send failed");
                    break;
                }
                Ok(()) => break,
            }
        }
        i += run;
    }
    transmits.clear();
}
