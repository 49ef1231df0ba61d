//! Text datagrams between the commands (`holepunch --send`, printed by `announce`) on the
//! DHT socket. A prefix that can never decode as the protocol (a response header whose body
//! starts with a protobuf end-group tag) keeps them apart from DHT traffic, as the demo's.

use bytes::Bytes;

/// The prefix of a text datagram.
const PREFIX: &[u8] = b"\0\0\x07";

/// `text` as a datagram.
pub fn encode(text: &str) -> Bytes {
    let mut v = PREFIX.to_vec();
    v.extend_from_slice(text.as_bytes());
    Bytes::from(v)
}

/// The text of a datagram `encode` made, or `None` for anything else.
pub fn decode(d: &[u8]) -> Option<String> {
    d.strip_prefix(PREFIX)
        .map(|t| String::from_utf8_lossy(t).into_owned())
}
