//! The compact encodings of `ipv4-peers`: peers (6 bytes), nodes (32-byte id + 6 bytes) and
//! hyperdht's local peers (4 bytes).
//!
//! The reference's rules, kept exactly: a trailing partial entry is ignored, and a port of 0
//! anywhere makes the whole list invalid (the reference's decoder throws, and the caller
//! treats the field as unusable).

use std::net::{Ipv4Addr, SocketAddrV4};

use bytes::{BufMut, Bytes, BytesMut};

use crate::id::{ID_LEN, NodeId};

/// The length of one compact peer: IPv4 address and big-endian port.
pub const PEER_LEN: usize = 6;
/// The length of one compact node: 32-byte id then a compact peer.
pub const NODE_LEN: usize = ID_LEN + PEER_LEN;
/// The length of one compact local peer: the last two octets of an IPv4 address and a port.
pub const LOCAL_PEER_LEN: usize = 4;

/// A list entry carried a port of 0, which makes the reference reject the whole list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("compact entry {index} has port 0")]
pub struct ZeroPort {
    /// The position of the first offending entry.
    pub index: usize,
}

/// A DHT node as the wire carries it: its id and its UDP address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct NodeAddr {
    /// The node's 32-byte id.
    pub id: NodeId,
    /// Where the node answers.
    pub addr: SocketAddrV4,
}

/// A peer on the announcer's LAN, as stored: the last two octets of its IPv4 address and
/// its port. The first two octets are the requester's own (see [`LocalPeer::with_prefix`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LocalPeer {
    /// The third and fourth octets of the address.
    pub suffix: [u8; 2],
    /// The port.
    pub port: u16,
}

impl LocalPeer {
    /// The full address, given the first two octets (those of the requester's LAN address).
    pub fn with_prefix(&self, prefix: [u8; 2]) -> SocketAddrV4 {
        SocketAddrV4::new(
            Ipv4Addr::new(prefix[0], prefix[1], self.suffix[0], self.suffix[1]),
            self.port,
        )
    }
}

fn read_peer(b: &[u8]) -> SocketAddrV4 {
    SocketAddrV4::new(
        Ipv4Addr::new(b[0], b[1], b[2], b[3]),
        u16::from_be_bytes([b[4], b[5]]),
    )
}

pub(crate) fn put_peer(out: &mut BytesMut, peer: &SocketAddrV4) {
    out.put_slice(&peer.ip().octets());
    out.put_u16(peer.port());
}

/// One peer's 6 bytes, on the stack.
pub fn peer_bytes(peer: &SocketAddrV4) -> [u8; PEER_LEN] {
    let [a, b, c, d] = peer.ip().octets();
    let [p, q] = peer.port().to_be_bytes();
    [a, b, c, d, p, q]
}

/// Encodes one peer in 6 bytes.
pub fn encode_peer(peer: &SocketAddrV4) -> Bytes {
    encode_peers(std::slice::from_ref(peer))
}

/// Decodes exactly one peer: `None` unless `bytes` is 6 bytes long with a non-zero port.
pub fn decode_peer(bytes: &[u8]) -> Option<SocketAddrV4> {
    if bytes.len() != PEER_LEN {
        return None;
    }
    let peer = read_peer(bytes);
    (peer.port() != 0).then_some(peer)
}

/// Decodes exactly 6 bytes as an address, port 0 included: a looker's LAN address in a
/// hyperdht lookup has port 0 (the reference sets it so), and only its first two octets
/// matter there.
pub fn decode_addr(bytes: &[u8]) -> Option<SocketAddrV4> {
    (bytes.len() == PEER_LEN).then(|| read_peer(bytes))
}

/// Encodes a list of peers, 6 bytes each.
pub fn encode_peers(peers: &[SocketAddrV4]) -> Bytes {
    let mut out = BytesMut::with_capacity(peers.len() * PEER_LEN);
    for p in peers {
        put_peer(&mut out, p);
    }
    out.freeze()
}

/// Decodes a list of peers; a trailing partial entry is ignored.
pub fn decode_peers(bytes: &[u8]) -> Result<Vec<SocketAddrV4>, ZeroPort> {
    bytes
        .chunks_exact(PEER_LEN)
        .enumerate()
        .map(|(index, c)| {
            let p = read_peer(c);
            if p.port() == 0 {
                Err(ZeroPort { index })
            } else {
                Ok(p)
            }
        })
        .collect()
}

/// Encodes a list of nodes, 38 bytes each.
pub fn encode_nodes(nodes: &[NodeAddr]) -> Bytes {
    let mut out = BytesMut::with_capacity(nodes.len() * NODE_LEN);
    for n in nodes {
        out.put_slice(n.id.as_bytes());
        put_peer(&mut out, &n.addr);
    }
    out.freeze()
}

/// Decodes a list of nodes; a trailing partial entry is ignored.
pub fn decode_nodes(bytes: &[u8]) -> Result<Vec<NodeAddr>, ZeroPort> {
    bytes
        .chunks_exact(NODE_LEN)
        .enumerate()
        .map(|(index, c)| {
            let (id, peer) = c.split_at(ID_LEN);
            let addr = read_peer(peer);
            match NodeId::from_slice(id) {
                Some(id) if addr.port() != 0 => Ok(NodeAddr { id, addr }),
                _ => Err(ZeroPort { index }),
            }
        })
        .collect()
}

/// Encodes local peers, 4 bytes each.
pub fn encode_local_peers(peers: &[LocalPeer]) -> Bytes {
    let mut out = BytesMut::with_capacity(peers.len() * LOCAL_PEER_LEN);
    for p in peers {
        out.put_slice(&p.suffix);
        out.put_u16(p.port);
    }
    out.freeze()
}

/// Decodes local peers as the reference does: entries with port 0 are skipped (not an
/// error here, unlike the other lists) and a trailing partial entry is ignored.
pub fn decode_local_peers(bytes: &[u8]) -> Vec<LocalPeer> {
    bytes
        .chunks_exact(LOCAL_PEER_LEN)
        .filter_map(|c| {
            let port = u16::from_be_bytes([c[2], c[3]]);
            (port != 0).then_some(LocalPeer {
                suffix: [c[0], c[1]],
                port,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn peer() -> impl Strategy<Value = SocketAddrV4> {
        (any::<[u8; 4]>(), 1u16..).prop_map(|(ip, port)| SocketAddrV4::new(ip.into(), port))
    }

    proptest! {
        #[test]
        fn peers_round_trip(peers in proptest::collection::vec(peer(), 0..50)) {
            prop_assert_eq!(decode_peers(&encode_peers(&peers)).unwrap(), peers);
        }

        #[test]
        fn nodes_round_trip(nodes in proptest::collection::vec((any::<[u8; 32]>(), peer()), 0..30)) {
            let nodes: Vec<_> = nodes.into_iter().map(|(id, addr)| NodeAddr { id: NodeId::from_bytes(id), addr }).collect();
            prop_assert_eq!(decode_nodes(&encode_nodes(&nodes)).unwrap(), nodes);
        }

        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_peers(&bytes);
            let _ = decode_nodes(&bytes);
            let _ = decode_local_peers(&bytes);
            let _ = decode_peer(&bytes);
        }
    }

    #[test]
    fn trailing_partial_entry_is_ignored() {
        let mut b = encode_peers(&["1.2.3.4:5".parse().unwrap()]).to_vec();
        b.extend_from_slice(&[9, 9, 9]);
        assert_eq!(decode_peers(&b).unwrap().len(), 1);
        assert_eq!(
            decode_peer(&b),
            None,
            "a single peer must be exactly 6 bytes"
        );
    }

    #[test]
    fn a_zero_port_rejects_the_whole_list() {
        let b = [1, 2, 3, 4, 0, 5, 1, 2, 3, 4, 0, 0];
        assert_eq!(decode_peers(&b), Err(ZeroPort { index: 1 }));
        assert_eq!(decode_peer(&[1, 2, 3, 4, 0, 0]), None);
        let mut n = vec![7u8; NODE_LEN];
        n[NODE_LEN - 2..].copy_from_slice(&[0, 0]);
        assert_eq!(decode_nodes(&n), Err(ZeroPort { index: 0 }));
    }

    #[test]
    fn local_peers_skip_zero_ports() {
        let b = [1, 2, 0, 0, 3, 4, 0, 80, 9];
        assert_eq!(
            decode_local_peers(&b),
            vec![LocalPeer {
                suffix: [3, 4],
                port: 80
            }]
        );
        let lp = LocalPeer {
            suffix: [3, 4],
            port: 80,
        };
        assert_eq!(
            lp.with_prefix([192, 168]),
            "192.168.3.4:80".parse().unwrap()
        );
    }
}
