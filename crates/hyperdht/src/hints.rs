//! The hints two peers exchange through the referrer, on the wire, and the birthday punch's
//! sizes: the birthday punch's hints, and the relay fallback's (`RelayMe`, `UseRelay`; see
//! [`crate::relay`]).
//!
//! The birthday punch is how two Rust peers reach each other when one
//! sits behind a symmetric NAT (a new external port per destination) and the other behind a
//! port-restricted one, which the relayed ping and direct probes cannot open. The sessions
//! themselves are timers and sockets of [`crate::Core`] (`core/birthday.rs`).
//!
//! The *hard* side (symmetric) opens [`SOCKETS`] extra sockets, each sending one datagram to
//! the easy side's (endpoint-independent) address, so its NAT holds that many mappings
//! toward it. The *easy* side sprays up to [`SPRAYS`] datagrams from its DHT socket to random
//! ports of the hard side's IP, at most [`SPRAY_RATE`] a second. A spray that lands on one
//! of the mapped ports gets in (it comes from exactly the address that socket sent to); the
//! hard side acknowledges from that socket, and both now have a direct path. With 256
//! sockets and 2048 sprays over 64,512 ports, one lands with probability about 99.97 %
//! (with 1024 it was about 98.3 %: the NAT lab, six birthday trials a run, then fell back to
//! the relay in about one run in ten).
//!
//! The two sides agree through the value of the relayed hole-punch ping ([`Hint`]), which the
//! reference ignores: JavaScript peers are unaffected. A peer asked to spray (or to open
//! sockets) first proves that the asker receives at its IP: it relays a [`Hint::Challenge`]
//! carrying its roundtrip token for that IP back through the same relay, and acts only on a
//! hint that echoes the token. A forger who spoofs a victim's address never sees the
//! challenge, so it cannot point a thousand sprays at the victim with one datagram. Every datagram here starts with
//! `[0, 0, 7]`, which never decodes as the protocol. A spray carries a nonce of its session
//! and the acknowledgement echoes it, so that two punches toward peers behind one IP (a
//! carrier-grade NAT) are told apart.

use std::time::Duration;

use bytes::Bytes;

/// Extra sockets the hard side opens.
pub const SOCKETS: usize = 256;
/// Datagrams the easy side sprays at most.
pub const SPRAYS: usize = 2048;
/// Sprays per second at most.
pub const SPRAY_RATE: u32 = 2000;
/// Sprays sent together, [`SPRAY_BURST`] / [`SPRAY_RATE`] seconds apart.
pub const SPRAY_BURST: usize = 16;
/// How long the hard side keeps its sockets open for a spray to land.
pub const HARD_WAIT: Duration = Duration::from_secs(4);
/// How long the easy side waits for an acknowledgement after its last spray.
pub const ACK_WAIT: Duration = Duration::from_secs(1);

const MAGIC: &[u8] = b"\0\0\x07hyperdht-rs/bday/2/";

/// A roundtrip token of the peer that challenged (32 bytes, as dht-rpc's).
pub type Token = [u8; 32];

/// What a birthday datagram or hint says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hint {
    /// In a punch ping: "I am behind a symmetric NAT and opened sockets toward you: spray
    /// my IP"; with the token of the peer's challenge, which it needs before it sprays.
    SprayMe(Option<Token>),
    /// In a punch ping: "I am reachable at a stable address: open sockets toward me, I will
    /// spray your IP"; with the token of the peer's challenge, as [`Hint::SprayMe`].
    ProbeMe(Option<Token>),
    /// In a punch ping back through the relay: "prove that you receive at your IP: send your
    /// hint again with this token".
    Challenge(Token),
    /// From the hard side's sockets, opening their mappings.
    Open,
    /// From the easy side, at random ports, with its session's nonce.
    Spray(u64),
    /// From the hard side's socket that a spray reached, echoing the spray's nonce.
    Ack(u64),
    /// In a punch ping, after a punch failed: "if you hold a relay reservation, tell me
    /// which relay and pairing to join" (see [`crate::relay`]).
    RelayMe,
    /// In a punch ping back: "join `pairing` on `relay`: I bound it for you".
    UseRelay(std::net::SocketAddrV4, crate::relay::Pairing),
}

impl Hint {
    /// The bytes that carry it.
    pub fn encode(self) -> Bytes {
        let mut b = MAGIC.to_vec();
        match self {
            Hint::SprayMe(t) => {
                b.push(1);
                b.extend_from_slice(t.as_ref().map_or(&[][..], |t| &t[..]));
            }
            Hint::ProbeMe(t) => {
                b.push(2);
                b.extend_from_slice(t.as_ref().map_or(&[][..], |t| &t[..]));
            }
            Hint::Challenge(t) => {
                b.push(6);
                b.extend_from_slice(&t);
            }
            Hint::Open => b.push(3),
            Hint::Spray(n) => {
                b.push(4);
                b.extend_from_slice(&n.to_be_bytes());
            }
            Hint::Ack(n) => {
                b.push(5);
                b.extend_from_slice(&n.to_be_bytes());
            }
            Hint::RelayMe => b.push(7),
            Hint::UseRelay(relay, pairing) => {
                b.push(8);
                b.extend_from_slice(&relay.ip().octets());
                b.extend_from_slice(&relay.port().to_be_bytes());
                b.extend_from_slice(&pairing);
            }
        }
        b.into()
    }

    /// Reads one; `None` for anything else.
    pub fn decode(b: &[u8]) -> Option<Hint> {
        let rest = b.strip_prefix(MAGIC)?;
        let nonce = |n: &[u8]| <[u8; 8]>::try_from(n).ok().map(u64::from_be_bytes);
        let token = |t: &[u8]| Token::try_from(t).ok();
        match rest {
            [1] => Some(Hint::SprayMe(None)),
            [1, t @ ..] => token(t).map(|t| Hint::SprayMe(Some(t))),
            [2] => Some(Hint::ProbeMe(None)),
            [2, t @ ..] => token(t).map(|t| Hint::ProbeMe(Some(t))),
            [6, t @ ..] => token(t).map(Hint::Challenge),
            [3] => Some(Hint::Open),
            [4, n @ ..] => nonce(n).map(Hint::Spray),
            [5, n @ ..] => nonce(n).map(Hint::Ack),
            [7] => Some(Hint::RelayMe),
            [8, a, b, c, d, p, q, pairing @ ..] => {
                let relay = std::net::SocketAddrV4::new(
                    std::net::Ipv4Addr::new(*a, *b, *c, *d),
                    u16::from_be_bytes([*p, *q]),
                );
                <[u8; 16]>::try_from(pairing)
                    .ok()
                    .map(|pairing| Hint::UseRelay(relay, pairing))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_round_trip_and_never_decode_as_the_protocol() {
        for h in [
            Hint::SprayMe(None),
            Hint::SprayMe(Some([9; 32])),
            Hint::ProbeMe(None),
            Hint::ProbeMe(Some([1; 32])),
            Hint::Challenge([7; 32]),
            Hint::Open,
            Hint::Spray(7),
            Hint::Ack(u64::MAX),
            Hint::RelayMe,
            Hint::UseRelay("203.0.113.9:49737".parse().expect("addr"), [5; 16]),
        ] {
            let b = h.encode();
            assert_eq!(Hint::decode(&b), Some(h));
            assert!(dht_wire::Datagram::decode(&b).is_err());
        }
        assert_eq!(Hint::decode(b"\0\0\x07hyperdht-rs/bday/2/\x09"), None);
        assert_eq!(Hint::decode(b"\0\0\x07hyperdht-rs/bday/2/\x04short"), None);
        assert_eq!(Hint::decode(b"\0\0\x07hyperdht-rs/bday/2/\x01short"), None);
        assert_eq!(Hint::decode(b"\0\0\x07hyperdht-rs/bday/2/\x06"), None);
        assert_eq!(Hint::decode(b"hello"), None);
    }
}
