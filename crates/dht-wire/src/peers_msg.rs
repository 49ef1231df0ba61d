//! The hyperdht messages carried in the `value` of the `peers` command: [`PeersRequest`] and
//! [`PeersResponse`].

use std::net::SocketAddrV4;

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message as _;

use crate::answer::{put_varint, varint_len};
use crate::checked::Checked;
use crate::compact::{self, LocalPeer};
use crate::error::DecodeError;
use crate::pb;

/// The dht-rpc command that carries hyperdht's messages.
pub const PEERS: &str = "peers";

/// What a [`PeersRequest`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeersRequestType {
    /// `0`: list the peers of the key.
    Lookup,
    /// `1`: store the sender as a peer of the key (in an update), and list the peers.
    Announce,
    /// `2`: remove the sender's entry for the key (in an update).
    Unannounce,
    /// Any other number. The reference answers it like a lookup, without the `lookup` event.
    Other(u32),
}

impl From<u32> for PeersRequestType {
    fn from(v: u32) -> Self {
        match v {
            0 => Self::Lookup,
            1 => Self::Announce,
            2 => Self::Unannounce,
            n => Self::Other(n),
        }
    }
}

impl From<PeersRequestType> for u32 {
    fn from(t: PeersRequestType) -> u32 {
        match t {
            PeersRequestType::Lookup => 0,
            PeersRequestType::Announce => 1,
            PeersRequestType::Unannounce => 2,
            PeersRequestType::Other(n) => n,
        }
    }
}

/// hyperdht's request (`Request` in its schema).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeersRequest {
    /// Lookup, announce or unannounce.
    pub kind: PeersRequestType,
    /// The port the announcer listens on; `None` or `Some(0)` mean its UDP port. The
    /// reference always sends the field (0 when the caller gave no port).
    pub port: Option<u32>,
    /// The announcer's (or looker's) LAN address: valid when it is 6 bytes. A looker's has
    /// port 0; an announce stores it only with a non-zero port, as the reference does.
    pub local_address: Option<Checked<SocketAddrV4>>,
}

impl PeersRequest {
    /// A request as the reference builds it: `port` is always present (0 for none).
    pub fn new(
        kind: PeersRequestType,
        port: Option<u16>,
        local_address: Option<SocketAddrV4>,
    ) -> Self {
        PeersRequest {
            kind,
            port: Some(port.map_or(0, u32::from)),
            local_address: local_address.map(Checked::Valid),
        }
    }

    /// The LAN address, if present and well-formed.
    pub fn local_address(&self) -> Option<SocketAddrV4> {
        self.local_address.as_ref().and_then(|c| c.valid().copied())
    }

    /// Decodes the request from a `peers` command's value, in place (no allocation but a
    /// malformed LAN address's copy), accepting exactly what prost accepts (tested against
    /// it): unknown fields of every wire type, the last of a repeated field, a varint's
    /// value truncated to 32 bits.
    pub fn decode(value: &[u8]) -> Result<Self, DecodeError> {
        use crate::request_ref::{LEN, RECURSION_LIMIT, Reader, VARINT, malformed};
        let mut r = Reader { buf: value };
        let (mut kind, mut port, mut local) = (None, None, None);
        while !r.buf.is_empty() {
            let (tag, wire) = r.key()?;
            match (tag, wire) {
                (1 | 2, VARINT) => {
                    // prost reads a uint32 as a varint cut to its low 32 bits.
                    let v = r.varint()? as u32;
                    if tag == 1 {
                        kind = Some(v);
                    } else {
                        port = Some(v);
                    }
                }
                (3, LEN) => {
                    let len = r.varint()?;
                    local = Some(r.take(len)?);
                }
                (1..=3, _) => return Err(malformed("invalid wire type for a field of peers")),
                _ => r.skip(tag, wire, RECURSION_LIMIT)?,
            }
        }
        Ok(PeersRequest {
            kind: kind.ok_or(DecodeError::MissingField("type"))?.into(),
            port,
            local_address: local.map(|b| match compact::decode_addr(b) {
                Some(a) => Checked::Valid(a),
                None => Checked::Invalid(Bytes::copy_from_slice(b)),
            }),
        })
    }

    /// Encodes the request into a `peers` command's value.
    pub fn encode(&self) -> Bytes {
        pb::hyperdht::Request::from(self).encode_to_vec().into()
    }
}

/// hyperdht's answer (`Response` in its schema).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeersResponse {
    /// The peers announced on the key. A list with a zero port is unusable, and the
    /// reference then drops the whole reply.
    pub peers: Option<Checked<Vec<SocketAddrV4>>>,
    /// Peers on the requester's LAN: the first two octets are the requester's own.
    pub local_peers: Option<Vec<LocalPeer>>,
}

impl PeersResponse {
    /// Decodes the response from a `peers` reply's value.
    pub fn decode(value: &[u8]) -> Result<Self, DecodeError> {
        Ok(pb::hyperdht::Response::decode(value)?.into())
    }

    /// Encodes the response into a `peers` reply's value.
    pub fn encode(&self) -> Bytes {
        pb::hyperdht::Response::from(self).encode_to_vec().into()
    }

    /// Appends the encoding of a response with `peers` (always present) and `local_peers`
    /// to `out`, from borrowed parts: the bytes [`PeersResponse::encode`] writes for the
    /// equivalent owned response (tested), with no allocation but `out`'s growth.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use dht_wire::{Checked, PeersResponse};
    ///
    /// let peers = ["10.0.0.1:4000".parse().unwrap()];
    /// let mut out = BytesMut::new();
    /// PeersResponse::encode_parts(&peers, None, &mut out);
    /// let owned = PeersResponse { peers: Some(Checked::Valid(peers.to_vec())), local_peers: None };
    /// assert_eq!(&out[..], &owned.encode()[..]);
    /// ```
    pub fn encode_parts(
        peers: &[SocketAddrV4],
        local_peers: Option<&[LocalPeer]>,
        out: &mut BytesMut,
    ) {
        // Field 1 (peers) and 2 (localPeers), both length-delimited, in field order.
        let peers_len = peers.len() * compact::PEER_LEN;
        let locals_len = local_peers.map_or(0, |l| l.len() * compact::LOCAL_PEER_LEN);
        out.reserve(2 + varint_len(peers_len) + peers_len + varint_len(locals_len) + locals_len);
        out.put_u8(1 << 3 | 2);
        put_varint(out, peers_len);
        for p in peers {
            compact::put_peer(out, p);
        }
        if let Some(locals) = local_peers {
            out.put_u8(2 << 3 | 2);
            put_varint(out, locals_len);
            for l in locals {
                out.put_slice(&l.suffix);
                out.put_u16(l.port);
            }
        }
    }
}

impl TryFrom<pb::hyperdht::Request> for PeersRequest {
    type Error = DecodeError;

    fn try_from(m: pb::hyperdht::Request) -> Result<Self, Self::Error> {
        Ok(PeersRequest {
            kind: m.r#type.ok_or(DecodeError::MissingField("type"))?.into(),
            port: m.port,
            local_address: m
                .local_address
                .map(|b| Checked::parse(b, compact::decode_addr)),
        })
    }
}

impl From<&PeersRequest> for pb::hyperdht::Request {
    fn from(r: &PeersRequest) -> Self {
        pb::hyperdht::Request {
            r#type: Some(r.kind.into()),
            port: r.port,
            local_address: r
                .local_address
                .as_ref()
                .map(|c| c.encode(compact::encode_peer)),
        }
    }
}

impl From<pb::hyperdht::Response> for PeersResponse {
    fn from(m: pb::hyperdht::Response) -> Self {
        PeersResponse {
            peers: m
                .peers
                .map(|b| Checked::parse(b, |b| compact::decode_peers(b).ok())),
            local_peers: m.local_peers.map(|b| compact::decode_local_peers(&b)),
        }
    }
}

impl From<&PeersResponse> for pb::hyperdht::Response {
    fn from(r: &PeersResponse) -> Self {
        pb::hyperdht::Response {
            peers: r
                .peers
                .as_ref()
                .map(|c| c.encode(|p| compact::encode_peers(p))),
            local_peers: r
                .local_peers
                .as_ref()
                .map(|l| compact::encode_local_peers(l)),
        }
    }
}

#[cfg(test)]
mod decode_tests {
    use super::*;
    use crate::request_ref::tests::{unknown_field, wrong_wire_type};
    use proptest::prelude::*;

    /// What prost decodes, converted as the owned path did before the in-place decoder.
    fn by_prost(body: &[u8]) -> Option<PeersRequest> {
        pb::hyperdht::Request::decode(body).ok()?.try_into().ok()
    }

    /// Pieces of a `peers` request: its fields with every wire type, varints past 32 bits,
    /// LAN addresses of every length, unknown fields, groups and garbage.
    fn piece() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            (1u8..=2, any::<u64>()).prop_map(|(t, v)| {
                let mut out = vec![t << 3];
                prost::encoding::encode_varint(v, &mut out);
                out
            }),
            (1u8..=2, 0u64..4).prop_map(|(t, v)| vec![t << 3, v as u8]),
            proptest::collection::vec(any::<u8>(), 0..9).prop_map(|b| {
                let mut out = vec![3 << 3 | 2, b.len() as u8];
                out.extend(b);
                out
            }),
            Just(vec![3 << 3 | 2, 6, 10, 0, 0, 1, 0x1f, 0x40]),
            wrong_wire_type(3),
            unknown_field(4),
            Just(vec![0x23, 0x08, 0x01, 0x24]),
            Just(vec![0xff; 11]),
            proptest::collection::vec(any::<u8>(), 0..8),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]
        #[test]
        fn accepts_and_decodes_exactly_what_prost_does(pieces in proptest::collection::vec(piece(), 0..6)) {
            let body: Vec<u8> = pieces.concat();
            prop_assert_eq!(PeersRequest::decode(&body).ok(), by_prost(&body), "body {:02x?}", body);
        }

        #[test]
        fn arbitrary_bytes_too(body in proptest::collection::vec(any::<u8>(), 0..32)) {
            prop_assert_eq!(PeersRequest::decode(&body).ok(), by_prost(&body));
        }
    }

    #[test]
    fn what_the_reference_sends_decodes() {
        let local: SocketAddrV4 = "192.168.1.20:7000".parse().expect("addr");
        let req = PeersRequest::new(PeersRequestType::Announce, Some(9000), Some(local));
        let back = PeersRequest::decode(&req.encode()).expect("decodes");
        assert_eq!(back, req);
        assert_eq!(back.local_address(), Some(local));
    }
}
