//! [`DecodeError`]: every way a datagram can fail to decode.

/// Why a datagram or message could not be decoded. The reference drops such a datagram
/// (and emits a `warning`); so should a node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The datagram is shorter than its two-byte header.
    #[error("datagram of {0} bytes is shorter than the 2-byte header")]
    TooShort(usize),
    /// The body is not a valid protobuf message of the expected type.
    #[error("malformed protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// A request's body is not a valid protobuf `Request` (see [`crate::RequestRef`]).
    #[error("malformed request: {0}")]
    Request(&'static str),
    /// A field that the schema marks `required` is absent.
    #[error("required field `{0}` is missing")]
    MissingField(&'static str),
}
