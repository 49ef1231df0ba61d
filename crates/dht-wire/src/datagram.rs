//! [`Datagram`]: the framing of udp-request, a two-byte header and one message.

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message as _;

use crate::error::DecodeError;
use crate::pb;
use crate::rpc::{Request, Response};

/// The bit of the header that marks a request.
const REQUEST_BIT: u16 = 0x8000;

/// A 15-bit transaction id that pairs a response with its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Tid(u16);

impl Tid {
    /// The largest transaction id.
    pub const MAX: Tid = Tid(0x7fff);

    /// A transaction id, `None` when `v` does not fit in 15 bits.
    pub const fn new(v: u16) -> Option<Tid> {
        if v <= Self::MAX.0 { Some(Tid(v)) } else { None }
    }

    /// The low 15 bits of `v`.
    pub const fn from_masked(v: u16) -> Tid {
        Tid(v & Self::MAX.0)
    }

    /// The id as a number.
    pub const fn get(self) -> u16 {
        self.0
    }

    /// The next id as the reference's counter takes them: it wraps to 0 after 32766.
    pub const fn next(self) -> Tid {
        if self.0 >= Self::MAX.0 - 1 {
            Tid(0)
        } else {
            Tid(self.0 + 1)
        }
    }
}

/// The message a datagram carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A request (the header's top bit is set).
    Request(Request),
    /// A response (the header's top bit is clear).
    Response(Response),
}

/// One UDP datagram of the protocol.
///
/// ```
/// use dht_wire::{Datagram, Message, Request, Tid, PING};
///
/// let ping = Datagram { tid: Tid::new(7).unwrap(), message: Message::Request(Request::new(PING)) };
/// let bytes = ping.encode();
/// assert_eq!(&bytes[..2], &[0x80, 7]);
/// assert_eq!(Datagram::decode(&bytes), Ok(ping));
/// assert!(Datagram::decode(&[0x80]).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// The transaction id.
    pub tid: Tid,
    /// The request or response.
    pub message: Message,
}

impl Datagram {
    /// A request datagram.
    pub fn request(tid: Tid, request: Request) -> Self {
        Datagram {
            tid,
            message: Message::Request(request),
        }
    }

    /// A response datagram.
    pub fn response(tid: Tid, response: Response) -> Self {
        Datagram {
            tid,
            message: Message::Response(response),
        }
    }

    /// Splits a datagram's two-byte header off: its transaction id, whether it is a
    /// request, and the body. `None` when shorter than the header. Reads nothing else, so
    /// it also serves for the quoted start of a datagram (as an ICMP error quotes it).
    pub fn split_header(bytes: &[u8]) -> Option<(Tid, bool, &[u8])> {
        match bytes {
            [a, b, body @ ..] => {
                let header = u16::from_be_bytes([*a, *b]);
                Some((Tid::from_masked(header), header & REQUEST_BIT != 0, body))
            }
            _ => None,
        }
    }

    /// An encoded datagram again under another transaction id (a request sent once more
    /// as its own copy): the same bytes with the header's tid replaced. `None` when
    /// `encoded` is shorter than the header.
    pub fn retag(encoded: &[u8], tid: Tid) -> Option<Bytes> {
        let (_, request, body) = Self::split_header(encoded)?;
        let mut out = BytesMut::with_capacity(encoded.len());
        out.put_u16(if request { REQUEST_BIT | tid.0 } else { tid.0 });
        out.extend_from_slice(body);
        Some(out.freeze())
    }

    /// Decodes a datagram. Never panics; allocates at most a small multiple of
    /// `bytes.len()`.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (tid, request, body) =
            Self::split_header(bytes).ok_or(DecodeError::TooShort(bytes.len()))?;
        let message = if request {
            Message::Request(Request::decode(body)?)
        } else {
            Message::Response(Response::decode(body)?)
        };
        Ok(Datagram { tid, message })
    }

    /// Encodes the datagram.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.encode_into(&mut out);
        out.freeze()
    }

    /// Appends the datagram's encoding to `out`.
    pub fn encode_into(&self, out: &mut BytesMut) {
        match &self.message {
            Message::Request(r) => {
                let m = pb::dht_rpc::Request::from(r);
                out.reserve(2 + m.encoded_len());
                out.put_u16(REQUEST_BIT | self.tid.0);
                m.encode_raw(out);
            }
            Message::Response(r) => {
                let m = pb::dht_rpc::Response::from(r);
                out.reserve(2 + m.encoded_len());
                out.put_u16(self.tid.0);
                m.encode_raw(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tid_counter_wraps_like_the_reference() {
        assert_eq!(Tid(32765).next(), Tid(32766));
        assert_eq!(Tid(32766).next(), Tid(0));
        assert_eq!(Tid::new(0x8000), None);
        assert_eq!(Tid::from_masked(0xffff), Tid::MAX);
    }

    #[test]
    fn short_and_garbage_datagrams_are_errors() {
        assert_eq!(Datagram::decode(&[]), Err(DecodeError::TooShort(0)));
        assert_eq!(Datagram::decode(&[1]), Err(DecodeError::TooShort(1)));
        // A request with no body lacks its required command.
        assert_eq!(
            Datagram::decode(&[0x80, 0]),
            Err(DecodeError::MissingField("command"))
        );
        // An empty response is valid: every field is optional.
        assert_eq!(
            Datagram::decode(&[0, 5]),
            Ok(Datagram::response(Tid(5), Response::default()))
        );
        assert!(matches!(
            Datagram::decode(&[0, 0, 0xff, 0xff]),
            Err(DecodeError::Protobuf(_))
        ));
    }
}
