//! [`RequestRef`]: a request decoded without copying, its fields borrowed from the datagram.
//!
//! A node decodes every request it serves. prost makes a `String` of the command and a
//! `Bytes` of every byte field, several allocations per datagram; this decoder borrows
//! them instead, and [`RequestRef::to_owned`] makes a [`Request`] where one is needed (a
//! relayed hole punch). It accepts exactly what prost accepts for the `Request` message
//! (unknown fields of every wire type skipped, groups nested up to prost's limit of 100,
//! the last of a repeated field kept, the command checked as UTF-8; a differential property
//! test compares the two on generated and arbitrary bodies), and [`Request::decode`] goes
//! through it (so the `datagram` fuzz target runs it).

use std::net::SocketAddrV4;

use bytes::Bytes;

use crate::error::DecodeError;
use crate::{Checked, NodeId, Request, compact};

/// A request's fields, borrowed from the datagram.
///
/// ```
/// use dht_wire::{Request, RequestRef, PING};
///
/// let body = Request::new(PING).encode_to_vec();
/// let r = RequestRef::decode(&body).unwrap();
/// assert_eq!(r.command, PING);
/// assert_eq!(r.to_owned(), Request::decode(&body).unwrap());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestRef<'a> {
    /// The command.
    pub command: &'a str,
    /// The sender's id, as it arrived.
    pub id: Option<&'a [u8]>,
    /// The target, as it arrived.
    pub target: Option<&'a [u8]>,
    /// "Forward this request to that peer", as it arrived.
    pub forward_request: Option<&'a [u8]>,
    /// "Send your answer to that peer", as it arrived.
    pub forward_response: Option<&'a [u8]>,
    /// The roundtrip token.
    pub roundtrip_token: Option<&'a [u8]>,
    /// The payload.
    pub value: Option<&'a [u8]>,
}

/// prost's recursion limit, which bounds nested groups.
pub(crate) const RECURSION_LIMIT: u32 = 100;

/// The wire types prost knows (6 and 7 are errors).
pub(crate) const VARINT: u64 = 0;
const FIXED64: u64 = 1;
pub(crate) const LEN: u64 = 2;
const START_GROUP: u64 = 3;
const END_GROUP: u64 = 4;
const FIXED32: u64 = 5;

pub(crate) fn malformed(why: &'static str) -> DecodeError {
    DecodeError::Request(why)
}

pub(crate) struct Reader<'a> {
    pub(crate) buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A varint as prost reads one: at most 10 bytes, the 10th at most 1.
    pub(crate) fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let (&b, rest) = self
                .buf
                .split_first()
                .ok_or(malformed("buffer underflow"))?;
            self.buf = rest;
            if i == 9 && b > 1 {
                return Err(malformed("invalid varint"));
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(malformed("invalid varint"))
    }

    /// A key: (tag, wire type).
    pub(crate) fn key(&mut self) -> Result<(u32, u64), DecodeError> {
        let key = self.varint()?;
        if key > u64::from(u32::MAX) {
            return Err(malformed("invalid key value"));
        }
        let wire = key & 7;
        if wire > FIXED32 {
            return Err(malformed("invalid wire type value"));
        }
        let tag = (key as u32) >> 3;
        if tag == 0 {
            return Err(malformed("invalid tag value: 0"));
        }
        Ok((tag, wire))
    }

    pub(crate) fn take(&mut self, len: u64) -> Result<&'a [u8], DecodeError> {
        if len > self.buf.len() as u64 {
            return Err(malformed("buffer underflow"));
        }
        let (head, rest) = self.buf.split_at(len as usize);
        self.buf = rest;
        Ok(head)
    }

    /// Skips an unknown field as prost does.
    pub(crate) fn skip(&mut self, tag: u32, wire: u64, depth: u32) -> Result<(), DecodeError> {
        let len = match wire {
            VARINT => self.varint().map(|_| 0)?,
            FIXED32 => 4,
            FIXED64 => 8,
            LEN => self.varint()?,
            START_GROUP => {
                if depth == 0 {
                    return Err(malformed("recursion limit reached"));
                }
                loop {
                    let (inner, inner_wire) = self.key()?;
                    if inner_wire == END_GROUP {
                        if inner != tag {
                            return Err(malformed("unexpected end group tag"));
                        }
                        break;
                    }
                    self.skip(inner, inner_wire, depth - 1)?;
                }
                0
            }
            _ => return Err(malformed("unexpected end group tag")),
        };
        self.take(len).map(drop)
    }
}

impl<'a> RequestRef<'a> {
    /// Decodes the protobuf body of a request (after the datagram header).
    pub fn decode(body: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader { buf: body };
        let mut req = RequestRef {
            command: "",
            id: None,
            target: None,
            forward_request: None,
            forward_response: None,
            roundtrip_token: None,
            value: None,
        };
        let mut command = None;
        while !r.buf.is_empty() {
            let (tag, wire) = r.key()?;
            if !(1..=7).contains(&tag) {
                r.skip(tag, wire, RECURSION_LIMIT)?;
                continue;
            }
            if wire != LEN {
                return Err(malformed("invalid wire type for a field of the request"));
            }
            let len = r.varint()?;
            let field = r.take(len)?;
            let bytes = Some(field);
            match tag {
                1 => {
                    command = Some(std::str::from_utf8(field).map_err(|_| {
                        malformed("invalid string value: data is not UTF-8 encoded")
                    })?)
                }
                2 => req.id = bytes,
                3 => req.target = bytes,
                4 => req.forward_request = bytes,
                5 => req.forward_response = bytes,
                6 => req.roundtrip_token = bytes,
                _ => req.value = bytes,
            }
        }
        req.command = command.ok_or(DecodeError::MissingField("command"))?;
        Ok(req)
    }

    /// The sender's id, if it sent a well-formed one.
    pub fn sender_id(&self) -> Option<NodeId> {
        self.id.and_then(NodeId::from_slice)
    }

    /// The target, if the request carries a well-formed one.
    pub fn target_id(&self) -> Option<NodeId> {
        self.target.and_then(NodeId::from_slice)
    }

    /// `forwardRequest`: absent, or the peer it names (`Invalid` when malformed).
    pub fn forward_request(&self) -> Option<Checked<SocketAddrV4>> {
        self.forward_request.map(peer_field)
    }

    /// `forwardResponse`: absent, or the peer it names (`Invalid` when malformed).
    pub fn forward_response(&self) -> Option<Checked<SocketAddrV4>> {
        self.forward_response.map(peer_field)
    }

    /// The owned request.
    pub fn to_owned(&self) -> Request {
        Request {
            command: self.command.to_owned(),
            id: self.id.map(id_field),
            target: self.target.map(id_field),
            forward_request: self.forward_request(),
            forward_response: self.forward_response(),
            roundtrip_token: self.roundtrip_token.map(Bytes::copy_from_slice),
            value: self.value.map(Bytes::copy_from_slice),
        }
    }
}

fn id_field(b: &[u8]) -> Checked<NodeId> {
    match NodeId::from_slice(b) {
        Some(id) => Checked::Valid(id),
        None => Checked::Invalid(Bytes::copy_from_slice(b)),
    }
}

fn peer_field(b: &[u8]) -> Checked<SocketAddrV4> {
    match compact::decode_peer(b) {
        Some(p) => Checked::Valid(p),
        None => Checked::Invalid(Bytes::copy_from_slice(b)),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::pb;
    use proptest::prelude::*;
    use prost::Message as _;

    /// What prost decodes, converted as the owned path did before this decoder.
    fn by_prost(body: &[u8]) -> Option<Request> {
        pb::dht_rpc::Request::decode(body).ok()?.try_into().ok()
    }

    /// A field of tag `first..=15` of any wire type, with arbitrary bytes after its key
    /// (also used by the `peers` request's differential test).
    pub(crate) fn unknown_field(first: u8) -> impl Strategy<Value = Vec<u8>> {
        (
            first..=15,
            0u8..6,
            proptest::collection::vec(any::<u8>(), 0..12),
        )
            .prop_map(|(t, w, b)| {
                let mut v = vec![t << 3 | w];
                v.extend(b);
                v
            })
    }

    /// A field of tag `1..=last` with any wire type and eight bytes after its key.
    pub(crate) fn wrong_wire_type(last: u8) -> impl Strategy<Value = Vec<u8>> {
        (1u8..=last, 0u8..8).prop_map(|(t, w)| vec![t << 3 | w, 1, 1, 1, 1, 1, 1, 1, 1])
    }

    fn field(tag: u8, bytes: &[u8]) -> Vec<u8> {
        let mut v = vec![tag << 3 | 2];
        prost::encoding::encode_varint(bytes.len() as u64, &mut v);
        v.extend_from_slice(bytes);
        v
    }

    /// Pieces of protobuf: fields of the request, unknown fields of every wire type,
    /// groups, and garbage.
    fn piece() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            (1u8..=7, proptest::collection::vec(any::<u8>(), 0..40))
                .prop_map(|(t, b)| field(t, &b)),
            (1u8..=7).prop_map(|t| field(t, &[7; 32])),
            Just(field(1, b"_ping")),
            Just(field(1, &[0xff, 0xfe])),
            unknown_field(8),
            wrong_wire_type(7),
            Just(vec![0x43, 0x44]),
            Just(vec![0x43, 0x08, 0x01, 0x44]),
            Just(vec![0x43, 0x4c]),
            Just(vec![0xff; 11]),
            Just(vec![0x80, 0x80, 0x80, 0x80, 0x10]),
            proptest::collection::vec(any::<u8>(), 0..8),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]
        #[test]
        fn accepts_and_decodes_exactly_what_prost_does(pieces in proptest::collection::vec(piece(), 0..8)) {
            let body: Vec<u8> = pieces.concat();
            let ours = RequestRef::decode(&body).ok().map(|r| r.to_owned());
            prop_assert_eq!(ours, by_prost(&body), "body {:02x?}", body);
        }

        #[test]
        fn arbitrary_bytes_too(body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let ours = RequestRef::decode(&body).ok().map(|r| r.to_owned());
            prop_assert_eq!(ours, by_prost(&body));
        }
    }

    #[test]
    fn nested_groups_stop_at_prosts_limit() {
        let nest = |depth: usize| {
            let mut b = field(1, b"_ping");
            b.extend(std::iter::repeat_n(0x43u8, depth));
            b.extend(std::iter::repeat_n(0x44u8, depth));
            b
        };
        for depth in [1, 99, 100, 101, 150] {
            let body = nest(depth);
            assert_eq!(
                RequestRef::decode(&body).is_ok(),
                by_prost(&body).is_some(),
                "depth {depth}"
            );
        }
    }
}
