//! [`Machine`]: what the tokio driver runs. dht-rpc's [`Core`] is one; a layer built on it
//! (hyperdht's core, with its peer store and hole punching) is another, wrapping a `Core`
//! and adding timers and events of its own. The driver owns the socket and the clock, feeds
//! the machine datagrams and timeouts, sends its transmits, and hands its events out:
//! the rpc core's to the futures and streams of requests and queries, the layer's own to
//! their waiters (by key) or to a broadcast channel.

use std::convert::Infallible;
use std::net::SocketAddrV4;
use std::time::Instant;

use crate::core::Core;
use crate::events::Event;
use crate::handler::Handler;
use crate::transmit::{SocketId, SocketOp, Transmit};

/// A sans-I/O node that the driver can run (see the module docs).
///
/// The drive shape, the same for the tokio driver, the simulator (`dht-sim`) and the fuzzers:
///
/// 1. an input: [`Machine::handle_datagram`] / [`Machine::handle_socket_datagram`],
///    [`Machine::handle_timeout`] at or after [`Machine::poll_timeout`],
///    [`Machine::handle_unreachable`], [`Machine::handle_socket_gone`], or an operation of the
///    machine's own (a walk, a punch). The machine does all the protocol work the input calls
///    for inside that call;
/// 2. then, before the next input, take every [`Machine::poll_socket_op`] (open a socket
///    before anything is sent from it), every [`Machine::poll_transmit`] (each leaves from
///    the socket it names) and every [`Machine::poll_event`];
/// 3. then wait for the next datagram or until [`Machine::poll_timeout`].
///
/// The three queues of step 2 are plain queues: taking them in another order, or
/// interleaved, changes nothing the machine does (the tokio driver hands out events first;
/// the simulator takes socket operations first).
pub trait Machine: Send + 'static {
    /// The handler of the rpc core's application commands.
    type Handler: Handler + Send + 'static;
    /// The layer's own events.
    type Own: Clone + Send + std::fmt::Debug + 'static;

    /// The dht-rpc core inside.
    fn rpc(&self) -> &Core<Self::Handler>;
    /// The dht-rpc core inside, to start requests and queries on it.
    fn rpc_mut(&mut self) -> &mut Core<Self::Handler>;
    /// A datagram arrived.
    fn handle_datagram(&mut self, now: Instant, from: SocketAddrV4, bytes: &[u8]);
    /// Time passed [`Machine::poll_timeout`].
    fn handle_timeout(&mut self, now: Instant);
    /// When to call [`Machine::handle_timeout`] next.
    fn poll_timeout(&self) -> Option<Instant>;
    /// The next datagram to send.
    fn poll_transmit(&mut self) -> Option<Transmit>;
    /// The next event.
    fn poll_event(&mut self) -> Option<MachineEvent<Self::Own>>;
    /// The next socket to open or close. (The dht-rpc core uses its main socket only.)
    fn poll_socket_op(&mut self) -> Option<SocketOp> {
        None
    }

    /// A datagram arrived on `socket`: the main socket's go to
    /// [`Machine::handle_datagram`], the others' to [`Machine::handle_extra_datagram`].
    /// Drivers call this one.
    fn handle_socket_datagram(
        &mut self,
        now: Instant,
        socket: SocketId,
        from: SocketAddrV4,
        bytes: &[u8],
    ) {
        if socket == SocketId::MAIN {
            self.handle_datagram(now, from, bytes);
        } else {
            self.handle_extra_datagram(now, socket, from, bytes);
        }
    }

    /// A datagram arrived on an extra socket the machine asked for ([`SocketOp::Open`]).
    /// (The dht-rpc core opens none.)
    fn handle_extra_datagram(
        &mut self,
        _now: Instant,
        _socket: SocketId,
        _from: SocketAddrV4,
        _bytes: &[u8],
    ) {
    }

    /// A socket asked for could not be opened, or failed: it is gone.
    fn handle_socket_gone(&mut self, _now: Instant, _socket: SocketId) {}

    /// An ICMP port-unreachable came back on the main socket for a datagram we sent to `to`,
    /// whose start is `quoted` (see [`Core::handle_unreachable`]).
    fn handle_unreachable(&mut self, now: Instant, to: SocketAddrV4, quoted: &[u8]) {
        self.rpc_mut().handle_unreachable(now, to, quoted);
    }

    /// The waiter an own event completes, if it is the answer to something a caller
    /// started (see the driver's `own_request`); `None` broadcasts it.
    fn waiter(own: &Self::Own) -> Option<u64>;

    /// Step 2 of the drive shape (see the trait's docs): every socket operation, then every
    /// transmit, then every event, each handed to its closure. The simulator and the fuzzers
    /// drain with it; the tokio driver takes the same queues under its lock.
    fn drain(
        &mut self,
        mut op: impl FnMut(SocketOp),
        mut transmit: impl FnMut(Transmit),
        mut event: impl FnMut(MachineEvent<Self::Own>),
    ) where
        Self: Sized,
    {
        while let Some(o) = self.poll_socket_op() {
            op(o);
        }
        while let Some(t) = self.poll_transmit() {
            transmit(t);
        }
        while let Some(e) = self.poll_event() {
            event(e);
        }
    }
}

/// An event of a [`Machine`]: the rpc core's, or the layer's own.
#[derive(Debug, Clone)]
pub enum MachineEvent<O> {
    /// From the dht-rpc core.
    Rpc(Event),
    /// From the layer.
    Own(O),
}

impl<H: Handler + Send + 'static> Machine for Core<H> {
    type Handler = H;
    type Own = Infallible;

    fn rpc(&self) -> &Core<H> {
        self
    }

    fn rpc_mut(&mut self) -> &mut Core<H> {
        self
    }

    fn handle_datagram(&mut self, now: Instant, from: SocketAddrV4, bytes: &[u8]) {
        Core::handle_datagram(self, now, from, bytes);
    }

    fn handle_timeout(&mut self, now: Instant) {
        Core::handle_timeout(self, now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Core::poll_timeout(self)
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        Core::poll_transmit(self)
    }

    fn poll_event(&mut self) -> Option<MachineEvent<Infallible>> {
        Core::poll_event(self).map(MachineEvent::Rpc)
    }

    fn waiter(own: &Infallible) -> Option<u64> {
        match *own {}
    }
}
