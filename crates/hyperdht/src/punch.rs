//! Hole punching and application datagrams on [`HyperDht`]: thin calls into the node's
//! [`Core`](crate::Core), which runs the rounds of direct probes and relayed pings, the
//! symmetric-NAT check and the birthday punch (two Rust peers, one behind a symmetric NAT:
//! 256 extra sockets on that side, up to 2048 sprayed ports on the other) as timers and
//! sockets. A path opened through an extra socket stays in the core's path table, so
//! [`HyperDht::send_datagram`] and [`HyperDht::datagrams`] work the same whichever socket
//! carries it.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Instant;

use bytes::Bytes;
use dht_rpc::RequestError;
use tokio::sync::mpsc;

use crate::core::{CoreEvent, Holepunch, HolepunchError};
use crate::node::HyperDht;

impl HyperDht {
    /// Sends an application datagram to `to`: from the socket of the path a birthday punch
    /// opened to `to`, or from the DHT socket. Start it with bytes that never decode as the
    /// protocol, such as `[0, 0, 7]`.
    pub fn send_datagram(&self, to: SocketAddrV4, payload: Bytes) {
        self.node.with_machine(|m| m.send_datagram(to, payload));
    }

    /// From now on, application datagrams (those that are not of the protocol) arriving on
    /// the DHT socket or on a punched path come here; at most 1024 wait, more are dropped.
    /// A second call replaces the first receiver.
    pub fn datagrams(&self) -> mpsc::Receiver<(SocketAddrV4, Bytes)> {
        self.node.datagrams()
    }

    /// Opens a UDP path to `peer`, with the help of `referrer` (the node that returned the
    /// peer in a lookup). Sends, in a few rounds, both a direct probe to the peer and a ping
    /// relayed through the referrer (the only thing the reference does); the first answer
    /// wins and tells which path opened. Behind the common port-restricted NAT the relayed
    /// ping alone fails: our direct probe opens our side while the peer's answer opens its.
    /// When both fail and a symmetric NAT is in the way, two Rust peers try a birthday punch.
    pub async fn holepunch(
        &self,
        peer: SocketAddrV4,
        referrer: SocketAddrV4,
    ) -> Result<Holepunch, HolepunchError> {
        let relay = !self.via_self(referrer);
        let done = self
            .node
            .own_request(|m| m.holepunch(Instant::now(), peer, referrer, relay).0)
            .await;
        match done {
            Some(CoreEvent::Punched { result, .. }) => result,
            _ => Err(HolepunchError::Node(RequestError::Cancelled)),
        }
    }

    /// Reserves a slot on the relay at `relay` and keeps it fresh, so that a peer whose
    /// punch to us fails (symmetric NATs on both sides) connects through it: its
    /// [`HyperDht::holepunch`] then ends with [`crate::HolepunchPath::Circuit`].
    pub fn reserve_relay(&self, relay: SocketAddrV4) {
        self.node.with_machine(|m| m.reserve(Instant::now(), relay));
    }

    /// The relay we reserved on, and whether it holds our reservation now.
    pub fn reservation(&self) -> Option<(SocketAddrV4, bool)> {
        self.node.with_machine(|m| m.reservation())
    }

    /// What this node's relay role did (`None` unless built with
    /// [`crate::HyperDhtBuilder::relay`]).
    pub fn relay_stats(&self) -> Option<crate::relay::RelayStats> {
        self.node.with_machine(|m| m.relay_stats())
    }

    fn via_self(&self, referrer: SocketAddrV4) -> bool {
        let me = self.local_addr();
        referrer == me || referrer == SocketAddrV4::new(Ipv4Addr::LOCALHOST, me.port())
    }
}
