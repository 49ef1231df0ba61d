//! [`ResponseRef`]: a response's fields, borrowed, encoded straight into a caller's buffer.
//!
//! A node answers every request it serves; building an owned [`Response`](crate::Response)
//! for each (a `Bytes` for the token and the value, a `Vec` of nodes, then the protobuf
//! struct and a fresh output buffer) costs several allocations per datagram. This encoder
//! writes the same bytes from borrowed parts into a buffer the caller reuses. It writes
//! the fields in field-number order as prost does, so its output equals
//! [`Datagram::encode`](crate::Datagram::encode) of the equivalent response (tested).

use bytes::{BufMut, BytesMut};

use crate::compact::{NODE_LEN, put_peer};
use crate::{NodeAddr, NodeId, Tid};

/// The fields of a response, borrowed.
///
/// ```
/// use bytes::BytesMut;
/// use dht_wire::{Checked, Datagram, NodeId, Response, ResponseRef, Tid};
///
/// let id = NodeId::from_bytes([7; 32]);
/// let mut out = BytesMut::new();
/// ResponseRef { id: Some(&id), token: Some(b"token"), ..ResponseRef::default() }
///     .encode_into(Tid::new(5).unwrap(), &mut out);
/// let owned = Response {
///     id: Some(Checked::Valid(id)),
///     roundtrip_token: Some(bytes::Bytes::from_static(b"token")),
///     ..Response::default()
/// };
/// assert_eq!(&out[..], &Datagram::response(Tid::new(5).unwrap(), owned).encode()[..]);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct ResponseRef<'a> {
    /// The responder's id; `None` when it is ephemeral.
    pub id: Option<&'a NodeId>,
    /// Nodes close to the target.
    pub nodes: Option<&'a [NodeAddr]>,
    /// The application payload.
    pub value: Option<&'a [u8]>,
    /// The roundtrip token.
    pub token: Option<&'a [u8]>,
}

/// Field keys (field number << 3 | wire type 2, length-delimited).
const ID: u8 = 1 << 3 | 2;
const NODES: u8 = 2 << 3 | 2;
const VALUE: u8 = 3 << 3 | 2;
const TOKEN: u8 = 4 << 3 | 2;

pub(crate) fn varint_len(v: usize) -> usize {
    let mut n = 1;
    let mut v = v >> 7;
    while v != 0 {
        n += 1;
        v >>= 7;
    }
    n
}

pub(crate) fn put_varint(out: &mut BytesMut, mut v: usize) {
    while v >= 0x80 {
        out.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

fn field_len(len: usize) -> usize {
    1 + varint_len(len) + len
}

impl ResponseRef<'_> {
    /// The encoded length, header included.
    pub fn encoded_len(&self) -> usize {
        2 + self.id.map_or(0, |_| field_len(32))
            + self.nodes.map_or(0, |n| field_len(n.len() * NODE_LEN))
            + self.value.map_or(0, |v| field_len(v.len()))
            + self.token.map_or(0, |t| field_len(t.len()))
    }

    /// Appends the datagram (the two-byte header with `tid`, then the response).
    pub fn encode_into(&self, tid: Tid, out: &mut BytesMut) {
        out.reserve(self.encoded_len());
        out.put_u16(tid.get());
        if let Some(id) = self.id {
            out.put_u8(ID);
            put_varint(out, 32);
            out.put_slice(id.as_bytes());
        }
        if let Some(nodes) = self.nodes {
            out.put_u8(NODES);
            put_varint(out, nodes.len() * NODE_LEN);
            for n in nodes {
                out.put_slice(n.id.as_bytes());
                put_peer(out, &n.addr);
            }
        }
        if let Some(value) = self.value {
            out.put_u8(VALUE);
            put_varint(out, value.len());
            out.put_slice(value);
        }
        if let Some(token) = self.token {
            out.put_u8(TOKEN);
            put_varint(out, token.len());
            out.put_slice(token);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Checked, Datagram, Response};
    use bytes::Bytes;
    use proptest::prelude::*;
    use std::net::SocketAddrV4;

    fn node(seed: u8, ip: u32, port: u16) -> NodeAddr {
        NodeAddr {
            id: NodeId::from_bytes([seed; 32]),
            addr: SocketAddrV4::new(ip.into(), port),
        }
    }

    proptest! {
        #[test]
        fn encodes_what_the_owned_response_encodes(
            tid in 0u16..0x8000,
            id in proptest::option::of(any::<[u8; 32]>()),
            nodes in proptest::option::of(proptest::collection::vec((any::<u8>(), any::<u32>(), 1u16..), 0..25)),
            value in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)),
            token in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
        ) {
            let tid = Tid::new(tid).expect("15 bits");
            let id = id.map(NodeId::from_bytes);
            let nodes: Option<Vec<NodeAddr>> =
                nodes.map(|v| v.into_iter().map(|(s, ip, p)| node(s, ip, p)).collect());
            let r = ResponseRef {
                id: id.as_ref(),
                nodes: nodes.as_deref(),
                value: value.as_deref(),
                token: token.as_deref(),
            };
            let mut out = BytesMut::from(&b"before"[..]);
            r.encode_into(tid, &mut out);
            let owned = Response {
                id: id.map(Checked::Valid),
                nodes: nodes.clone().map(Checked::Valid),
                value: value.clone().map(Bytes::from),
                roundtrip_token: token.clone().map(Bytes::from),
            };
            let want = Datagram::response(tid, owned).encode();
            prop_assert_eq!(&out[..6], b"before");
            prop_assert_eq!(&out[6..], &want[..]);
            prop_assert_eq!(r.encoded_len(), want.len());
        }
    }

    #[test]
    fn a_peer_on_the_stack_is_its_compact_encoding() {
        let p: SocketAddrV4 = "203.0.113.9:49737".parse().expect("addr");
        assert_eq!(
            &crate::compact::peer_bytes(&p)[..],
            &crate::compact::encode_peer(&p)[..]
        );
    }
}
