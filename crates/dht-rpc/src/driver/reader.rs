//! The reader thread of [`DatagramIo::Single`](super::DatagramIo::Single): blocks in
//! `recv_from` on the main socket, feeds the machine each datagram under the shared lock, and
//! sends the answers at once from the same thread, as a plain blocking server does. What
//! only the driver task can do (send from an extra socket, open or close one, sleep until an
//! earlier deadline) it leaves in [`Shared`](super::Shared) and wakes the task for.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use super::{Holder, Inner, icmp};
use crate::machine::Machine;
use crate::transmit::SocketId;
use crate::transmit::Transmit;

/// How often the thread looks at the closed flag at least (a wake-up datagram normally
/// tells it at once).
const CHECK_CLOSED: Duration = Duration::from_millis(500);

/// Where the node's own wake-up datagram comes from and goes to: the socket's address,
/// loopback when it listens on every address.
pub(super) fn wake_addr(local: SocketAddrV4) -> SocketAddrV4 {
    if local.ip().is_unspecified() {
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, local.port())
    } else {
        local
    }
}

/// Tells the reader thread to look at the closed flag now: an empty datagram from the socket
/// to itself.
pub(super) fn wake(socket: &UdpSocket, local: SocketAddrV4) {
    if let Err(e) = socket.send_to(&[], SocketAddr::V4(wake_addr(local))) {
        tracing::debug!(error = %e, "cannot wake the reader thread (it notices within 500 ms)");
    }
}

/// Sends one transmit from the main socket, waiting while its buffer is full (once more if
/// it only met a pending ICMP error); `true` when it met one: the error queue holds
/// something to drain ([`drain_into`]).
pub(super) fn send(socket: &UdpSocket, t: &Transmit) -> bool {
    let (r, pending) = icmp::send_retrying(|| send_to(socket, &t.payload, t.to));
    if let Err(e) = r {
        tracing::debug!(to = %t.to, error = %e, "send failed");
    }
    pending
}

/// One `sendto`. On Linux a direct system call (rustix): glibc's wrapper, a cancellation
/// point, costs about one percent of a datagram's CPU on loopback, where a node making two
/// system calls per datagram spends nine tenths of its time in the kernel.
#[cfg(target_os = "linux")]
fn send_to(socket: &UdpSocket, payload: &[u8], to: SocketAddrV4) -> std::io::Result<usize> {
    Ok(rustix::net::sendto(
        socket,
        payload,
        rustix::net::SendFlags::empty(),
        &to,
    )?)
}

#[cfg(not(target_os = "linux"))]
fn send_to(socket: &UdpSocket, payload: &[u8], to: SocketAddrV4) -> std::io::Result<usize> {
    socket.send_to(payload, SocketAddr::V4(to))
}

/// One `recvfrom` (on Linux a direct system call, as [`send_to`]): the length and the
/// sender, `None` for a sender that is not IPv4.
#[cfg(target_os = "linux")]
fn recv_from(socket: &UdpSocket, buf: &mut [u8]) -> std::io::Result<(usize, Option<SocketAddrV4>)> {
    let (n, _, from) = rustix::net::recvfrom(socket, buf, rustix::net::RecvFlags::empty())?;
    let from = from.and_then(|a| SocketAddrV4::try_from(a).ok());
    Ok((n, from))
}

#[cfg(not(target_os = "linux"))]
fn recv_from(socket: &UdpSocket, buf: &mut [u8]) -> std::io::Result<(usize, Option<SocketAddrV4>)> {
    let (n, from) = socket.recv_from(buf)?;
    Ok((
        n,
        match from {
            SocketAddr::V4(a) => Some(a),
            SocketAddr::V6(_) => None,
        },
    ))
}

/// Reads the main socket's error queue into the machine (port-unreachables of our requests);
/// `true` when it stopped at its bound and more may wait.
pub(super) fn drain_into<M: Machine>(socket: &UdpSocket, core: &mut M, now: Instant) -> bool {
    icmp::drain(socket, |to, quoted| {
        core.handle_unreachable(now, to, quoted)
    })
    .is_ok()
}

/// Starts the reader thread on `socket` (blocking mode).
pub(super) fn spawn<M: Machine>(
    inner: Arc<Inner<M>>,
    socket: Arc<UdpSocket>,
) -> std::io::Result<()> {
    socket.set_nonblocking(false)?;
    // Don't fragment, as quinn-udp sets it for batched I/O: our datagrams are far below any
    // path's MTU, and the kernel then skips picking an IP id for each (a few percent of a
    // datagram's cost on loopback).
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::net::sockopt::set_ip_mtu_discover(
        &*socket,
        rustix::net::sockopt::Ipv4PathMtuDiscovery::PROBE,
    ) {
        tracing::debug!(error = %e, "cannot set IP_MTU_DISCOVER");
    }
    icmp::enable(&*socket);
    socket.set_read_timeout(Some(CHECK_CLOSED))?;
    let holder = Holder::new(&inner);
    std::thread::Builder::new()
        .name("dht-reader".into())
        .spawn(move || {
            run(&inner, &socket);
            // Our hold on the socket first, then the count that shutdown waits on.
            drop(socket);
            drop(holder);
        })?;
    Ok(())
}

fn run<M: Machine>(inner: &Inner<M>, socket: &UdpSocket) {
    let me = wake_addr(inner.local_addr);
    let mut buf = vec![0u8; 65536];
    let mut out: Vec<Transmit> = Vec::new();
    // A send met a pending ICMP error, or the last read of the error queue stopped at its
    // bound: the error queue is read before the next receive.
    let mut errors = false;
    loop {
        let got = (!errors).then(|| recv_from(socket, &mut buf));
        errors = false;
        let mut guard = inner.shared.lock().unwrap_or_else(PoisonError::into_inner);
        let s = &mut *guard;
        if s.closed {
            return;
        }
        let now = Instant::now();
        match got {
            Some(Ok((n, Some(from)))) => {
                if n == 0 && from == me {
                    continue;
                }
                s.core.handle_datagram(now, from, &buf[..n]);
            }
            Some(Ok((_, None))) => {
                tracing::trace!("ignoring a datagram that is not from IPv4");
                continue;
            }
            // An ICMP error (connection refused), a send's, or the read timeout.
            other => {
                if let Some(Err(e)) = other {
                    tracing::trace!(error = %e, "recv");
                }
                errors = drain_into(socket, &mut s.core, now);
            }
        }
        inner.dispatch(s);
        while let Some(t) = s.core.poll_transmit() {
            if t.from == SocketId::MAIN {
                out.push(t);
            } else {
                s.stashed.push(t);
            }
        }
        s.stashed_ops
            .extend(std::iter::from_fn(|| s.core.poll_socket_op()));
        let deadline = s.core.poll_timeout();
        let sooner = deadline.is_some_and(|d| s.task_deadline.is_none_or(|t| d < t));
        if sooner {
            // The task learns of it now: no more wake-ups for the same deadline.
            s.task_deadline = deadline;
        }
        let for_task = sooner || !s.stashed.is_empty() || !s.stashed_ops.is_empty();
        drop(guard);
        for t in out.drain(..) {
            errors |= send(socket, &t);
        }
        if for_task {
            inner.wake.notify_one();
        }
    }
}
