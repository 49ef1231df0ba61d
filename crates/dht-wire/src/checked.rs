//! [`Checked`]: a fixed-format field exactly as it arrived, valid or not.

use bytes::Bytes;

/// A field whose bytes must have a fixed format (a 32-byte id, a 6-byte peer, a compact
/// list). The reference does not reject a message whose such field is malformed: it ignores
/// the field (an id), or declines to answer (a target), or skips the list. Keeping the raw
/// bytes of an invalid field makes that choice explicit at every use, and lets a message be
/// re-encoded unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Checked<T> {
    /// The field parsed.
    Valid(T),
    /// The field's bytes, which did not parse.
    Invalid(Bytes),
}

impl<T> Checked<T> {
    /// The parsed value, `None` when the field was malformed.
    pub fn valid(&self) -> Option<&T> {
        match self {
            Checked::Valid(v) => Some(v),
            Checked::Invalid(_) => None,
        }
    }

    /// The parsed value, `None` when the field was malformed.
    pub fn into_valid(self) -> Option<T> {
        match self {
            Checked::Valid(v) => Some(v),
            Checked::Invalid(_) => None,
        }
    }

    /// Parses `bytes` with `parse`, keeping them when it fails.
    pub(crate) fn parse(bytes: Bytes, parse: impl FnOnce(&[u8]) -> Option<T>) -> Self {
        match parse(&bytes) {
            Some(v) => Checked::Valid(v),
            None => Checked::Invalid(bytes),
        }
    }

    /// Encodes the field: `encode` for a valid value, the original bytes otherwise.
    pub(crate) fn encode(&self, encode: impl FnOnce(&T) -> Bytes) -> Bytes {
        match self {
            Checked::Valid(v) => encode(v),
            Checked::Invalid(b) => b.clone(),
        }
    }
}

impl<T> From<T> for Checked<T> {
    fn from(v: T) -> Self {
        Checked::Valid(v)
    }
}
