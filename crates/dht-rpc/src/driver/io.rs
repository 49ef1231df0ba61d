//! Batched datagram I/O on the node's main socket, through `quinn-udp`: up to
//! [`quinn_udp::BATCH_SIZE`] datagrams per receive call (`recvmmsg`, and GRO when a sender
//! used GSO), and consecutive answers to one address of one size in one send call (GSO).
//! No unsafe code of ours: `quinn-udp` holds it.

use std::io::{self, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4};

use quinn_udp::{RecvMeta, Transmit, UdpSockRef, UdpSocketState};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use crate::transmit::Transmit as Transmit_;

/// How the driver reads and writes the node's main socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DatagramIo {
    /// Many datagrams per system call: `recvmmsg` (and GRO), GSO for runs of answers to one
    /// address (the default; falls back to one at a time where the socket refuses).
    #[default]
    Batched,
    /// One `recv_from` and one `send_to` per datagram, read on a thread of the node's own
    /// that blocks in `recv_from` and answers at once, as a plain blocking server does: no
    /// epoll registration of the socket (which costs the kernel a wake-up call on every
    /// sent datagram's release), and no runtime between a request and its answer. The tokio
    /// task keeps the timers, the handle's calls and the extra sockets.
    Single,
}

/// Room for one receive buffer: a datagram of the largest size, or a GRO train of them.
const BUF: usize = 64 * 1024;

/// The state of batched I/O on one socket.
pub(super) struct BatchIo {
    state: UdpSocketState,
    bufs: Vec<u8>,
    meta: Vec<RecvMeta>,
    /// Payloads of one GSO send, back to back.
    gso: Vec<u8>,
}

impl BatchIo {
    pub(super) fn new(socket: &UdpSocket) -> io::Result<BatchIo> {
        let state = UdpSocketState::new(UdpSockRef::from(socket))?;
        let batch = quinn_udp::BATCH_SIZE.max(1);
        Ok(BatchIo {
            state,
            bufs: vec![0; batch * BUF],
            meta: vec![RecvMeta::default(); batch],
            gso: Vec::new(),
        })
    }

    /// Reads what is waiting (without waiting) and calls `each` with every datagram; returns
    /// how many it read, 0 when none was waiting.
    pub(super) fn recv(
        &mut self,
        socket: &UdpSocket,
        mut each: impl FnMut(SocketAddrV4, &[u8]),
    ) -> io::Result<usize> {
        let n = {
            let mut slices: Vec<IoSliceMut<'_>> =
                self.bufs.chunks_mut(BUF).map(IoSliceMut::new).collect();
            match socket.try_io(Interest::READABLE, || {
                self.state
                    .recv(UdpSockRef::from(socket), &mut slices, &mut self.meta)
            }) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
                Err(e) => return Err(e),
            }
        };
        let mut count = 0;
        for (i, m) in self.meta.iter().take(n).enumerate() {
            let SocketAddr::V4(from) = to_v4(m.addr) else {
                tracing::trace!(from = %m.addr, "ignoring IPv6 datagram");
                continue;
            };
            let buf = &self.bufs[i * BUF..i * BUF + m.len.min(BUF)];
            if buf.is_empty() {
                // An empty datagram is one too (the core counts it malformed).
                each(from, buf);
                count += 1;
                continue;
            }
            let stride = if m.stride == 0 { buf.len() } else { m.stride };
            for d in buf.chunks(stride) {
                each(from, d);
                count += 1;
            }
        }
        Ok(count)
    }

    /// Datagrams one send call can carry (1 without GSO).
    pub(super) fn max_segments(&self) -> usize {
        self.state.max_gso_segments().max(1)
    }

    /// Sends the payloads of `payloads` (at most [`BatchIo::max_segments`], all of one size) to `to` in one
    /// call. `Err(WouldBlock)` when the socket's buffer is full: nothing went out.
    pub(super) fn send(
        &mut self,
        socket: &UdpSocket,
        to: SocketAddrV4,
        payloads: &[Transmit_],
    ) -> io::Result<()> {
        let contents: &[u8] = if let [one] = payloads {
            &one.payload
        } else {
            self.gso.clear();
            for p in payloads {
                self.gso.extend_from_slice(&p.payload);
            }
            &self.gso
        };
        let t = Transmit {
            destination: SocketAddr::V4(to),
            ecn: None,
            contents,
            segment_size: (payloads.len() > 1).then(|| payloads[0].payload.len()),
            src_ip: None,
        };
        socket.try_io(Interest::WRITABLE, || {
            self.state.try_send(UdpSockRef::from(socket), &t)
        })
    }
}

/// An IPv4-mapped IPv6 address as IPv4.
fn to_v4(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(ip) => SocketAddr::V4(SocketAddrV4::new(ip, v6.port())),
            None => a,
        },
        v4 => v4,
    }
}
