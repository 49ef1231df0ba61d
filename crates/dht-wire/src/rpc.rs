//! The dht-rpc messages, [`Request`] and [`Response`], as domain types.
//!
//! They convert to and from the generated protobuf types; the 32-byte and compact fields are
//! parsed into [`Checked`] values so that every caller decides, visibly, what to do with a
//! malformed one.

use std::net::SocketAddrV4;

use bytes::Bytes;
use prost::Message as _;

use crate::checked::Checked;
use crate::compact::{self, NodeAddr};
use crate::error::DecodeError;
use crate::id::NodeId;
use crate::pb;

/// The built-in command that asks a node for the requester's address.
pub const PING: &str = "_ping";
/// The built-in command that asks a node for the nodes closest to a target.
pub const FIND_NODE: &str = "_find_node";

/// A dht-rpc request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Request {
    /// The command: [`PING`], [`FIND_NODE`] or an application command such as `peers`.
    pub command: String,
    /// The sender's node id; absent when the sender is ephemeral. A malformed id is ignored
    /// by the reference (the sender is not added to the routing table).
    pub id: Option<Checked<NodeId>>,
    /// The key being queried. A command that needs a target gets no answer when it is absent
    /// or malformed.
    pub target: Option<Checked<NodeId>>,
    /// Hole punch, to the relay: "forward this request to that peer".
    pub forward_request: Option<Checked<SocketAddrV4>>,
    /// Hole punch, to the punched peer: "send your answer to that peer instead of me".
    pub forward_response: Option<Checked<SocketAddrV4>>,
    /// The token the receiver handed the sender earlier; present on updates.
    pub roundtrip_token: Option<Bytes>,
    /// The application payload.
    pub value: Option<Bytes>,
}

impl Request {
    /// A request for `command` with no other field set.
    pub fn new(command: impl Into<String>) -> Self {
        Request {
            command: command.into(),
            ..Request::default()
        }
    }

    /// The sender's id, if it sent a well-formed one.
    pub fn sender_id(&self) -> Option<NodeId> {
        self.id.as_ref().and_then(|c| c.valid().copied())
    }

    /// The target, if the request carries a well-formed one.
    pub fn target_id(&self) -> Option<NodeId> {
        self.target.as_ref().and_then(|c| c.valid().copied())
    }

    /// Decodes the protobuf body of a request (after the datagram header), through
    /// [`crate::RequestRef`].
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        crate::RequestRef::decode(body).map(|r| r.to_owned())
    }

    /// The protobuf encoding of the request (without the datagram header).
    pub fn encode_to_vec(&self) -> Vec<u8> {
        pb::dht_rpc::Request::from(self).encode_to_vec()
    }
}

/// A dht-rpc response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    /// The responder's id; absent when the responder is ephemeral.
    pub id: Option<Checked<NodeId>>,
    /// Nodes close to the request's target. A list with a zero port is unusable.
    pub nodes: Option<Checked<Vec<NodeAddr>>>,
    /// The application payload; for `_ping`, the requester's address as 6 bytes.
    pub value: Option<Bytes>,
    /// A token for the requester to present in a later update to this node.
    pub roundtrip_token: Option<Bytes>,
}

impl Response {
    /// The responder's id, if it sent a well-formed one.
    pub fn sender_id(&self) -> Option<NodeId> {
        self.id.as_ref().and_then(|c| c.valid().copied())
    }

    /// The closer nodes, empty when absent or malformed (as the reference treats them).
    pub fn closer_nodes(&self) -> &[NodeAddr] {
        self.nodes
            .as_ref()
            .and_then(|c| c.valid())
            .map_or(&[], |v| v.as_slice())
    }

    /// Decodes the protobuf body of a response (after the datagram header).
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        Ok(pb::dht_rpc::Response::decode(body)?.into())
    }

    /// The protobuf encoding of the response (without the datagram header).
    pub fn encode_to_vec(&self) -> Vec<u8> {
        pb::dht_rpc::Response::from(self).encode_to_vec()
    }
}

fn id_field(b: Bytes) -> Checked<NodeId> {
    Checked::parse(b, NodeId::from_slice)
}

fn encode_id(c: &Checked<NodeId>) -> Bytes {
    c.encode(|id| Bytes::copy_from_slice(id.as_bytes()))
}

fn encode_peer(c: &Checked<SocketAddrV4>) -> Bytes {
    c.encode(compact::encode_peer)
}

/// prost's decoding, converted: the oracle of [`crate::RequestRef`]'s differential test
/// (requests themselves are decoded by `RequestRef`).
#[cfg(test)]
impl TryFrom<pb::dht_rpc::Request> for Request {
    type Error = DecodeError;

    fn try_from(m: pb::dht_rpc::Request) -> Result<Self, Self::Error> {
        Ok(Request {
            command: m.command.ok_or(DecodeError::MissingField("command"))?,
            id: m.id.map(id_field),
            target: m.target.map(id_field),
            forward_request: m
                .forward_request
                .map(|b| Checked::parse(b, compact::decode_peer)),
            forward_response: m
                .forward_response
                .map(|b| Checked::parse(b, compact::decode_peer)),
            roundtrip_token: m.roundtrip_token,
            value: m.value,
        })
    }
}

impl From<&Request> for pb::dht_rpc::Request {
    fn from(r: &Request) -> Self {
        pb::dht_rpc::Request {
            command: Some(r.command.clone()),
            id: r.id.as_ref().map(encode_id),
            target: r.target.as_ref().map(encode_id),
            forward_request: r.forward_request.as_ref().map(encode_peer),
            forward_response: r.forward_response.as_ref().map(encode_peer),
            roundtrip_token: r.roundtrip_token.clone(),
            value: r.value.clone(),
        }
    }
}

impl From<pb::dht_rpc::Response> for Response {
    fn from(m: pb::dht_rpc::Response) -> Self {
        Response {
            id: m.id.map(id_field),
            nodes: m
                .nodes
                .map(|b| Checked::parse(b, |b| compact::decode_nodes(b).ok())),
            value: m.value,
            roundtrip_token: m.roundtrip_token,
        }
    }
}

impl From<&Response> for pb::dht_rpc::Response {
    fn from(r: &Response) -> Self {
        pb::dht_rpc::Response {
            id: r.id.as_ref().map(encode_id),
            nodes: r
                .nodes
                .as_ref()
                .map(|c| c.encode(|n| compact::encode_nodes(n))),
            value: r.value.clone(),
            roundtrip_token: r.roundtrip_token.clone(),
        }
    }
}
