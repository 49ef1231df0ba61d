//! What leaves a machine besides events: the datagrams it sends ([`Transmit`]) and the
//! sockets it asks its driver for ([`SocketOp`], named by [`SocketId`]). The cores produce
//! them, and the drivers (tokio, the simulator, the fuzzers) carry them out; they are their
//! own module so that the core and the [`crate::Machine`] trait both use them without
//! importing each other.

use std::net::SocketAddrV4;

use bytes::Bytes;

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to.
    pub to: SocketAddrV4,
    /// The encoded datagram.
    pub payload: Bytes,
    /// The socket it leaves from: the node's own ([`SocketId::MAIN`], always so for the
    /// dht-rpc core) or one a layer asked its driver for (see [`crate::Machine`]).
    pub from: SocketId,
}

/// Names a socket of the driver: [`SocketId::MAIN`] is the node's own (the DHT socket); a
/// machine may ask for more ([`SocketOp`]), as the birthday punch does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SocketId(pub u32);

impl SocketId {
    /// The node's own socket.
    pub const MAIN: SocketId = SocketId(0);
}

/// What a machine asks of its driver's sockets (the pattern of quinn-proto's and str0m's
/// transmits with a source).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketOp {
    /// Bind a new socket under this id, on the main socket's IP and a random port. If that
    /// fails, the driver says so with [`crate::Machine::handle_socket_gone`].
    Open(SocketId),
    /// Close this socket.
    Close(SocketId),
}
