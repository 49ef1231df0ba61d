//! The NAT boxes of the simulator: per host, the mapping (which external port a socket's
//! datagram leaves from) and the filtering (which datagrams from outside get in), as the NAT
//! lab builds them with Linux (`tests/src/lab.rs`) and RFC 4787 names them.
//!
//! A NAT holds *flows*, as Linux's connection tracking does: one per (external port, remote
//! address), refreshed by a datagram either way, and gone after [`Nat::timeout`] without
//! traffic ([`Nat::stream_timeout`] once a datagram came back on it; an expired flow that
//! sees a datagram again starts anew, unanswered). A *binding* (external port to one of the
//! host's sockets, and with endpoint-dependent mapping one destination) lives as long as
//! its longest-lived flow; its flows go with it. An ICMP error about a datagram the host
//! sent gets in on the same rules and changes no state. A datagram from outside gets in when its port has a live
//! binding and the filtering admits its source:
//!
//! | filtering | admits |
//! |---|---|
//! | [`Filtering::Open`] (full cone) | anyone |
//! | [`Filtering::Address`] (restricted) | any port of an IP the binding sent to |
//! | [`Filtering::AddressAndPort`] (port-restricted, symmetric) | the exact addresses it sent to |
//!
//! Endpoint-independent mapping keeps the socket's own port when it is free (as Linux's
//! `SNAT` and `MASQUERADE` do); endpoint-dependent mapping (`MASQUERADE --random-fully`, the
//! lab's symmetric NAT) draws a new random port for every destination. Hairpinning is off: a
//! datagram from behind the NAT to the NAT's own address is dropped.

use std::collections::BTreeMap;
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use dht_rpc::SocketId;
use rand::Rng;
use rand::rngs::StdRng;

/// Which external port a NAT gives a socket's datagrams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mapping {
    /// One port per socket, whatever the destination (the socket's own when free).
    EndpointIndependent,
    /// A new random port per socket and destination (a symmetric NAT).
    EndpointDependent,
}

/// Which datagrams from outside a NAT lets in through a binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Filtering {
    /// Any source (full cone).
    Open,
    /// Sources on an IP the binding sent to (restricted cone).
    Address,
    /// Sources the binding sent to, IP and port (port-restricted cone, symmetric).
    AddressAndPort,
}

/// A NAT in front of one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Nat {
    /// How it maps.
    pub mapping: Mapping,
    /// How it filters.
    pub filtering: Filtering,
    /// How long a flow that only went out lives without traffic (Linux's
    /// `nf_conntrack_udp_timeout`, 30 s).
    pub timeout: Duration,
    /// How long a flow that saw a datagram come back lives without traffic
    /// (`nf_conntrack_udp_timeout_stream`, 120 s).
    pub stream_timeout: Duration,
}

impl Nat {
    /// A NAT of this mapping and filtering with Linux's timeouts.
    pub const fn new(mapping: Mapping, filtering: Filtering) -> Self {
        Nat {
            mapping,
            filtering,
            timeout: Duration::from_secs(30),
            stream_timeout: Duration::from_secs(120),
        }
    }

    /// How long a flow lives without traffic: [`Nat::stream_timeout`] once a datagram came
    /// back on it (`replied`), else [`Nat::timeout`].
    pub fn ttl(&self, replied: bool) -> Duration {
        if replied {
            self.stream_timeout
        } else {
            self.timeout
        }
    }
}

/// The five NATs of the lab (docs/NAT.md), as a population's kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NatKind {
    /// No NAT: a public address.
    Open,
    /// Endpoint-independent mapping and filtering.
    FullCone,
    /// Endpoint-independent mapping, address-dependent filtering.
    Restricted,
    /// Endpoint-independent mapping, address-and-port-dependent filtering.
    PortRestricted,
    /// Endpoint-dependent mapping, address-and-port-dependent filtering.
    Symmetric,
}

impl NatKind {
    /// All five, from the easiest to the hardest.
    pub const ALL: [NatKind; 5] = [
        NatKind::Open,
        NatKind::FullCone,
        NatKind::Restricted,
        NatKind::PortRestricted,
        NatKind::Symmetric,
    ];

    /// The NAT of this kind (`None` for [`NatKind::Open`]).
    pub const fn nat(self) -> Option<Nat> {
        use Filtering as F;
        use Mapping as M;
        match self {
            NatKind::Open => None,
            NatKind::FullCone => Some(Nat::new(M::EndpointIndependent, F::Open)),
            NatKind::Restricted => Some(Nat::new(M::EndpointIndependent, F::Address)),
            NatKind::PortRestricted => Some(Nat::new(M::EndpointIndependent, F::AddressAndPort)),
            NatKind::Symmetric => Some(Nat::new(M::EndpointDependent, F::AddressAndPort)),
        }
    }

    /// The kind's name as docs/NAT.md writes it.
    pub const fn name(self) -> &'static str {
        match self {
            NatKind::Open => "open",
            NatKind::FullCone => "full-cone",
            NatKind::Restricted => "restricted",
            NatKind::PortRestricted => "port-restricted",
            NatKind::Symmetric => "symmetric",
        }
    }
}

/// One external port's binding.
#[derive(Debug, Clone, Copy)]
struct Binding {
    socket: SocketId,
    /// With endpoint-dependent mapping, the one destination it was made for.
    dest: Option<SocketAddrV4>,
    /// When its last flow expires (it lives as long as its flows).
    expires: Instant,
}

/// A flow's state: its last datagram, and whether one came in on it.
#[derive(Debug, Clone, Copy)]
struct Flow {
    last: Instant,
    replied: bool,
}

impl Flow {
    fn alive(&self, nat: &Nat, now: Instant) -> bool {
        now < self.last + nat.ttl(self.replied)
    }
}

/// A remote address as an ordered key: (IP, port), so that one IP's flows are a range.
fn remote(a: SocketAddrV4) -> (u32, u16) {
    (u32::from(*a.ip()), a.port())
}

/// The state of one host's NAT.
#[derive(Debug)]
pub(crate) struct NatBox {
    pub(crate) nat: Nat,
    by_port: BTreeMap<u16, Binding>,
    by_socket: BTreeMap<(SocketId, Option<SocketAddrV4>), u16>,
    flows: BTreeMap<(u16, (u32, u16)), Flow>,
    /// The number of flows after the last sweep of expired ones.
    swept: usize,
}

impl NatBox {
    pub(crate) fn new(nat: Nat) -> Self {
        NatBox {
            nat,
            by_port: BTreeMap::new(),
            by_socket: BTreeMap::new(),
            flows: BTreeMap::new(),
            swept: 0,
        }
    }

    /// The key of the binding a datagram from `socket` to `to` uses.
    fn key(&self, socket: SocketId, to: SocketAddrV4) -> (SocketId, Option<SocketAddrV4>) {
        match self.nat.mapping {
            Mapping::EndpointIndependent => (socket, None),
            Mapping::EndpointDependent => (socket, Some(to)),
        }
    }

    /// Whether the binding of `port` is live at `now`.
    fn bound(&self, now: Instant, port: u16) -> bool {
        self.by_port.get(&port).is_some_and(|b| now < b.expires)
    }

    /// The flow `(port, to)` has a datagram at `now` (`replied`: one that came back on it):
    /// made, refreshed, or made anew if it had expired; its binding lives at least as long.
    fn touch(&mut self, now: Instant, port: u16, to: SocketAddrV4, replied: bool) {
        let nat = self.nat;
        let f = self.flows.entry((port, remote(to))).or_insert(Flow {
            last: now,
            replied: false,
        });
        if !f.alive(&nat, now) {
            // Expired: conntrack would have dropped it; this datagram makes a new one.
            f.replied = false;
        }
        f.last = now;
        f.replied |= replied;
        let expires = now + nat.ttl(f.replied);
        if let Some(b) = self.by_port.get_mut(&port) {
            b.expires = b.expires.max(expires);
        }
    }

    /// The external port a datagram from `socket` (whose own port is `own`) to `to` leaves
    /// from at `now`, made if needed; the flow is refreshed.
    pub(crate) fn outbound(
        &mut self,
        now: Instant,
        socket: SocketId,
        own: u16,
        to: SocketAddrV4,
        rng: &mut StdRng,
    ) -> u16 {
        let key = self.key(socket, to);
        let port = match self.port_of(now, socket, to) {
            Some(p) => p,
            None => {
                if let Some(old) = self.by_socket.remove(&key) {
                    self.by_port.remove(&old);
                }
                let port = self.free_port(now, own, rng);
                self.by_socket.insert(key, port);
                self.by_port.insert(
                    port,
                    Binding {
                        socket,
                        dest: key.1,
                        expires: now,
                    },
                );
                port
            }
        };
        self.touch(now, port, to, false);
        self.sweep(now);
        port
    }

    /// A port for a new binding: the socket's own when free (endpoint-independent), else a
    /// random one that no live binding holds.
    fn free_port(&mut self, now: Instant, own: u16, rng: &mut StdRng) -> u16 {
        if self.nat.mapping == Mapping::EndpointIndependent && !self.bound(now, own) {
            self.drop_port(own);
            return own;
        }
        // Random ports, then (a NAT with nearly every port bound) the first free one; with
        // all 64,512 bound, the oldest binding's port is taken over.
        let p = (0..64)
            .map(|_| rng.random_range(1024..=u16::MAX))
            .find(|p| !self.bound(now, *p))
            .or_else(|| (1024..=u16::MAX).find(|p| !self.bound(now, *p)))
            .or_else(|| {
                self.by_port
                    .iter()
                    .min_by_key(|(_, b)| b.expires)
                    .map(|(p, _)| *p)
            })
            .unwrap_or(own);
        self.drop_port(p);
        p
    }

    /// Forgets the binding of `port` and its flows.
    fn drop_port(&mut self, port: u16) {
        if let Some(b) = self.by_port.remove(&port) {
            self.by_socket.remove(&(b.socket, b.dest));
        }
        let flows: Vec<_> = self
            .flows
            .range((port, (0, 0))..=(port, (u32::MAX, u16::MAX)))
            .map(|(k, _)| *k)
            .collect();
        for k in flows {
            self.flows.remove(&k);
        }
    }

    /// Which socket a datagram from `from` to external port `port` reaches at `now`, if the
    /// NAT lets it in; its flow is then refreshed and marked answered (or made: conntrack
    /// tracks it). `related`: an ICMP error about a datagram we sent, let in on the same
    /// rules but changing nothing (conntrack's RELATED).
    pub(crate) fn inbound(
        &mut self,
        now: Instant,
        port: u16,
        from: SocketAddrV4,
        related: bool,
    ) -> Option<SocketId> {
        let socket = self.admit(now, port, from)?;
        if !related {
            self.touch(now, port, from, true);
        }
        Some(socket)
    }

    /// Whether a datagram from `from` to `port` would get in now (changing nothing).
    pub(crate) fn admits(&self, now: Instant, port: u16, from: SocketAddrV4) -> bool {
        self.admit(now, port, from).is_some()
    }

    /// The socket a datagram from `from` to `port` reaches, if the NAT lets it in now.
    fn admit(&self, now: Instant, port: u16, from: SocketAddrV4) -> Option<SocketId> {
        let b = *self.by_port.get(&port)?;
        if now >= b.expires {
            return None;
        }
        let admitted = match self.nat.filtering {
            Filtering::Open => true,
            Filtering::Address => {
                let ip = u32::from(*from.ip());
                self.flows
                    .range((port, (ip, 0))..=(port, (ip, u16::MAX)))
                    .any(|(_, f)| f.alive(&self.nat, now))
            }
            Filtering::AddressAndPort => self
                .flows
                .get(&(port, remote(from)))
                .is_some_and(|f| f.alive(&self.nat, now)),
        };
        let dest_ok = match (b.dest, self.nat.filtering) {
            (None, _) | (_, Filtering::Open) => true,
            (Some(d), Filtering::Address) => d.ip() == from.ip(),
            (Some(d), Filtering::AddressAndPort) => d == from,
        };
        (admitted && dest_ok).then_some(b.socket)
    }

    /// The external port `socket` is bound to toward `to` (or toward anyone), if live.
    pub(crate) fn port_of(&self, now: Instant, socket: SocketId, to: SocketAddrV4) -> Option<u16> {
        self.by_socket
            .get(&self.key(socket, to))
            .copied()
            .filter(|p| self.bound(now, *p))
    }

    /// Expired flows and bindings go once the flows have doubled since the last sweep:
    /// bounded, and cheap on average.
    fn sweep(&mut self, now: Instant) {
        if self.flows.len() < 2 * self.swept.max(32) {
            return;
        }
        let nat = self.nat;
        self.flows.retain(|_, f| f.alive(&nat, now));
        let dead: Vec<u16> = self
            .by_port
            .iter()
            .filter(|(_, b)| now >= b.expires)
            .map(|(p, _)| *p)
            .collect();
        for p in dead {
            self.drop_port(p);
        }
        self.swept = self.flows.len();
    }

    /// Flows held now (for memory reports).
    pub(crate) fn flows(&self) -> usize {
        self.flows.len()
    }
}
