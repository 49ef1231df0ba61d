//! The driver task: the one loop that owns the sockets and the clock of a [`Machine`]. It
//! sends what the machine emits (from the socket each transmit names), opens and closes the
//! extra sockets the machine asks for, feeds it every datagram with the socket it came in
//! on, and sleeps until the machine's next deadline, a datagram, or a call of the handle.

use std::collections::HashMap;
use std::net::{SocketAddr, SocketAddrV4};
use std::sync::{Arc, PoisonError};
use std::time::Instant;

use bytes::Bytes;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::io::{BatchIo, DatagramIo};
use super::{Holder, Inner, icmp, reader};
use crate::machine::Machine;
use crate::transmit::Transmit;
use crate::transmit::{SocketId, SocketOp};

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

/// The node's main socket as the task sees it.
enum Main {
    /// Registered with the runtime and read by the task, batched or one datagram per call.
    Polled {
        socket: UdpSocket,
        io: Option<BatchIo>,
        buf: Vec<u8>,
    },
    /// Read by the reader thread ([`DatagramIo::Single`]); the task only sends on it.
    Threaded(Arc<std::net::UdpSocket>),
}

impl Main {
    fn new<M: Machine>(inner: &Arc<Inner<M>>, socket: UdpSocket, mode: DatagramIo) -> Option<Main> {
        if mode == DatagramIo::Single {
            let std = match socket.into_std() {
                Ok(s) => Arc::new(s),
                Err(e) => {
                    tracing::error!(error = %e, "cannot take the socket from the runtime");
                    return None;
                }
            };
            if let Err(e) = reader::spawn(inner.clone(), std.clone()) {
                tracing::error!(error = %e, "cannot start the reader thread");
                return None;
            }
            return Some(Main::Threaded(std));
        }
        // Only batched I/O may turn GRO on: a socket with GRO on must be read stride-aware.
        let io = match BatchIo::new(&socket) {
            Ok(io) => Some(io),
            Err(e) => {
                tracing::warn!(error = %e, "batched I/O unavailable, one datagram per call");
                None
            }
        };
        icmp::enable(&socket);
        Some(Main::Polled {
            socket,
            io,
            buf: vec![0u8; 65536],
        })
    }
}

/// The driver task.
pub(super) async fn run<M: Machine>(
    inner: Arc<Inner<M>>,
    socket: UdpSocket,
    mode: DatagramIo,
    holder: Holder,
) {
    run_with(inner, socket, mode).await;
    // The socket is gone with `run_with`'s locals: now the holder.
    drop(holder);
}

async fn run_with<M: Machine>(inner: Arc<Inner<M>>, socket: UdpSocket, mode: DatagramIo) {
    let Some(mut main) = Main::new(&inner, socket, mode) else {
        super::close(&inner);
        return;
    };
    let (tx, mut extra_rx) = mpsc::channel(EXTRA_QUEUE);
    let mut extra = Extra {
        sockets: HashMap::new(),
        tx,
    };
    let (mut transmits, mut ops) = (Vec::<Transmit>::new(), Vec::<SocketOp>::new());
    loop {
        let (deadline, closed) = {
            let mut guard = inner.shared.lock().unwrap_or_else(PoisonError::into_inner);
            let s = &mut *guard;
            inner.dispatch(s);
            // What the reader thread left is older than what the machine holds now.
            ops.append(&mut s.stashed_ops);
            ops.extend(std::iter::from_fn(|| s.core.poll_socket_op()));
            transmits.append(&mut s.stashed);
            transmits.extend(std::iter::from_fn(|| s.core.poll_transmit()));
            let deadline = s.core.poll_timeout();
            s.task_deadline = deadline;
            (deadline, s.closed)
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
        match &mut main {
            Main::Polled { socket, io, .. } => {
                send_all(socket, io.as_mut(), &extra, &mut transmits).await;
            }
            Main::Threaded(socket) => {
                let mut errors = false;
                for t in transmits.drain(..) {
                    if t.from == SocketId::MAIN {
                        errors |= reader::send(socket, &t);
                    } else {
                        send_extra(&extra, &t).await;
                    }
                }
                if errors {
                    let mut s = inner.shared.lock().unwrap_or_else(PoisonError::into_inner);
                    reader::drain_into(socket, &mut s.core, Instant::now());
                    drop(s);
                    continue;
                }
            }
        }
        if closed {
            if let Main::Threaded(socket) = &main {
                reader::wake(socket, inner.local_addr);
            }
            return;
        }
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                None => std::future::pending().await,
            }
        };
        let readable = async {
            match &main {
                // An ICMP error in the socket's error queue wakes it too (see `icmp`).
                Main::Polled { socket, .. } => {
                    socket.ready(Interest::READABLE | Interest::ERROR).await
                }
                Main::Threaded(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            r = readable => {
                let ready = match r {
                    Ok(ready) => ready,
                    Err(e) => {
                        tracing::trace!(error = %e, "socket not readable");
                        continue;
                    }
                };
                let Main::Polled { socket, io, buf } = &mut main else { continue };
                let mut s = inner.shared.lock().unwrap_or_else(PoisonError::into_inner);
                let now = Instant::now();
                if ready.is_error() {
                    drain_errors(socket, &mut s.core, now);
                }
                let mut handled = 0;
                let mut full = false;
                while handled < RECV_TURN {
                    let n = match io.as_mut() {
                        Some(io) => io.recv(socket, |from, d| {
                            s.core.handle_datagram(now, from, d);
                        }),
                        None => recv_one(socket, buf, |from, d| {
                            s.core.handle_datagram(now, from, d);
                        }),
                    };
                    match n {
                        Ok(0) => break,
                        Ok(n) => handled += n,
                        // An ICMP error pending on the socket (connection refused): its
                        // details wait in the error queue.
                        Err(e) => {
                            tracing::trace!(error = %e, "recv error");
                            drain_errors(socket, &mut s.core, now);
                        }
                    }
                    // The answers go out before the next receive (which, when nothing more
                    // waits, is a wasted call): a request's answer does not wait for it.
                    if !full {
                        transmits.extend(std::iter::from_fn(|| s.core.poll_transmit()));
                        full = try_send(socket, io.as_mut(), &mut transmits) != Sent::All;
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

/// Sends a transmit from the extra socket it names. It waits for the socket to be writable,
/// as the runtime knows it: a socket opened a moment ago is not known to be writable until
/// the runtime's next turn, and a `try_send_to` on it fails (which lost the first round of
/// every birthday punch, sent from 256 sockets just opened).
async fn send_extra(extra: &Extra, t: &Transmit) {
    if let Some((s, _)) = extra.sockets.get(&t.from)
        && let Err(e) = s.send_to(&t.payload, SocketAddr::V4(t.to)).await
    {
        tracing::debug!(to = %t.to, error = %e, "send failed");
    }
}

/// Reads the main socket's error queue into the machine, through the runtime so that its
/// error readiness is cleared once the queue is empty (if the read stopped at its bound,
/// the readiness stays and the loop comes back for the rest).
fn drain_errors<M: Machine>(socket: &UdpSocket, core: &mut M, now: Instant) {
    let _ = socket.try_io(Interest::ERROR, || {
        icmp::drain(socket, |to, quoted| {
            core.handle_unreachable(now, to, quoted)
        })
    });
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
    loop {
        match try_send(main, io.as_deref_mut(), transmits) {
            Sent::All => return,
            Sent::UntilFull => {
                // The socket's buffer is full: wait until it drains, then send the rest.
                if main.writable().await.is_err() {
                    transmits.clear();
                    return;
                }
            }
            Sent::UntilExtra => {
                let run = transmits
                    .iter()
                    .take_while(|t| t.from != SocketId::MAIN)
                    .count();
                for t in &transmits[..run] {
                    send_extra(extra, t).await;
                }
                transmits.drain(..run);
            }
        }
    }
}

/// How far [`try_send`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    /// Every transmit went out (or failed for good).
    All,
    /// Up to one that found the main socket's buffer full.
    UntilFull,
    /// Up to the first from an extra socket (sent by [`send_all`], which may wait).
    UntilExtra,
}

/// Sends transmits of the main socket from the front of `transmits` without waiting, and
/// removes those sent; stops at the first that finds the socket's buffer full or that is
/// for an extra socket (the rest wait in `transmits`).
fn try_send(main: &UdpSocket, mut io: Option<&mut BatchIo>, transmits: &mut Vec<Transmit>) -> Sent {
    let mut i = 0;
    let mut sent = Sent::All;
    while i < transmits.len() {
        let t = &transmits[i];
        if t.from != SocketId::MAIN {
            sent = Sent::UntilExtra;
            break;
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
        // (An earlier ICMP error, pending on the socket, makes a call do nothing: it goes
        // once more, and the error queue is read when the socket reports it.)
        let (r, _) = icmp::send_retrying(|| match io.as_deref_mut() {
            Some(io) => io.send(main, t.to, &transmits[i..i + run]),
            None => main.try_send_to(&t.payload, SocketAddr::V4(t.to)).map(drop),
        });
        match r {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                sent = Sent::UntilFull;
                break;
            }
            Err(e) => tracing::debug!(to = %t.to, error = %e, "send failed"),
            Ok(()) => {}
        }
        i += run;
    }
    transmits.drain(..i);
    sent
}
