//! [`NodeId`]: the 32-byte identifiers of nodes and keys, and their XOR distance.

use std::fmt;
use std::str::FromStr;

/// The length in bytes of node ids, targets and keys.
pub const ID_LEN: usize = 32;

/// A 32-byte node id, query target or announce key.
///
/// Ids are compared by XOR distance: [`NodeId::distance`] gives a [`Distance`] that orders
/// exactly, as a 256-bit big-endian number (the reference loses precision here; we don't).
///
/// ```
/// use dht_wire::NodeId;
///
/// let a: NodeId = format!("{}01", "00".repeat(31)).parse().unwrap();
/// let b = NodeId::from_bytes([0xff; 32]);
/// assert_eq!(a.to_string().len(), 64);
/// assert!(a.distance(&a) < a.distance(&b));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct NodeId([u8; ID_LEN]);

/// A key announced or looked up on the DHT: 32 bytes, the same type as a node id, with
/// [`NodeId`]'s methods: [`NodeId::from_bytes`], [`NodeId::as_bytes`], parsing from 64 hex
/// characters (`"ab12...".parse::<Key>()`), `Display` as hex, [`NodeId::distance`].
///
/// ```
/// use dht_wire::Key;
///
/// let key = Key::from_bytes(*b"01234567012345670123456701234567");
/// let hex = key.to_string();
/// assert_eq!(hex.len(), 64);
/// assert_eq!(hex.parse::<Key>(), Ok(key));
/// ```
pub type Key = NodeId;

impl NodeId {
    /// Wraps 32 bytes.
    pub const fn from_bytes(bytes: [u8; ID_LEN]) -> Self {
        Self(bytes)
    }

    /// Reads an id from a slice, `None` unless it is exactly 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; ID_LEN]>::try_from(bytes).ok().map(Self)
    }

    /// The 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; ID_LEN] {
        &self.0
    }

    /// The XOR distance between two ids.
    pub fn distance(&self, other: &NodeId) -> Distance {
        let mut out = [0u8; ID_LEN];
        for (o, (a, b)) in out.iter_mut().zip(self.0.iter().zip(other.0.iter())) {
            *o = a ^ b;
        }
        Distance(out)
    }

    /// Parses 64 hexadecimal characters (either case).
    pub fn from_hex(s: &str) -> Result<Self, ParseIdError> {
        s.parse()
    }
}

impl AsRef<[u8]> for NodeId {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl From<[u8; ID_LEN]> for NodeId {
    fn from(bytes: [u8; ID_LEN]) -> Self {
        Self(bytes)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

/// Why a string is not a [`NodeId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseIdError {
    /// The string is not 64 characters long.
    #[error("an id is 64 hexadecimal characters, got {0} characters")]
    Length(usize),
    /// A character is not a hexadecimal digit.
    #[error("an id is 64 hexadecimal characters, found a non-hexadecimal character")]
    NotHex,
}

impl FromStr for NodeId {
    type Err = ParseIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != ID_LEN * 2 {
            return Err(ParseIdError::Length(s.chars().count()));
        }
        let mut out = [0u8; ID_LEN];
        hex::decode_to_slice(s, &mut out).map_err(|_| ParseIdError::NotHex)?;
        Ok(Self(out))
    }
}

/// The XOR distance between two ids, ordered as a 256-bit big-endian number.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Distance([u8; ID_LEN]);

impl Distance {
    /// The distance's 32 bytes, most significant first.
    pub const fn as_bytes(&self) -> &[u8; ID_LEN] {
        &self.0
    }

    /// The number of leading zero bits: 256 for a zero distance. Ids whose distance from
    /// ours has `n` leading zeros share our first `n` bits (k-bucket index).
    pub fn leading_zeros(&self) -> u32 {
        let mut n = 0;
        for b in &self.0 {
            if *b == 0 {
                n += 8;
            } else {
                return n + b.leading_zeros();
            }
        }
        n
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for NodeId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for NodeId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let hex = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        hex.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id() -> impl Strategy<Value = NodeId> {
        any::<[u8; 32]>().prop_map(NodeId::from_bytes)
    }

    proptest! {
        #[test]
        fn hex_round_trip(a in id()) {
            prop_assert_eq!(a.to_string().parse::<NodeId>().unwrap(), a);
            prop_assert_eq!(NodeId::from_hex(&a.to_string().to_uppercase()).unwrap(), a);
        }

        #[test]
        fn distance_is_a_metric_on_xor(a in id(), b in id(), c in id()) {
            prop_assert_eq!(a.distance(&b), b.distance(&a));
            prop_assert_eq!(a.distance(&a).leading_zeros(), 256);
            // XOR distance is unidirectional: for a given a and distance, b is unique.
            if a.distance(&b) == a.distance(&c) { prop_assert_eq!(b, c); }
        }

        #[test]
        fn ordering_matches_big_endian_integers(a in id(), b in id(), t in id()) {
            let (da, db) = (a.distance(&t), b.distance(&t));
            let (ia, ib) = (
                (u128::from_be_bytes(da.0[..16].try_into().unwrap()), u128::from_be_bytes(da.0[16..].try_into().unwrap())),
                (u128::from_be_bytes(db.0[..16].try_into().unwrap()), u128::from_be_bytes(db.0[16..].try_into().unwrap())),
            );
            prop_assert_eq!(da.cmp(&db), ia.cmp(&ib));
        }
    }

    #[test]
    fn rejects_bad_strings() {
        assert_eq!("ab".parse::<NodeId>(), Err(ParseIdError::Length(2)));
        assert_eq!("zz".repeat(32).parse::<NodeId>(), Err(ParseIdError::NotHex));
        // Multi-byte characters never panic on slicing.
        assert!("é".repeat(32).parse::<NodeId>().is_err());
    }

    #[test]
    fn distances_differing_only_in_the_last_bit_order_correctly() {
        let t = NodeId::from_bytes([0; 32]);
        let mut a = [0xff; 32];
        a[31] = 0xfe;
        let a = NodeId::from_bytes(a);
        let b = NodeId::from_bytes([0xff; 32]);
        assert!(a.distance(&t) < b.distance(&t));
        assert_eq!(NodeId::from_bytes([0; 32]).distance(&b).leading_zeros(), 0);
    }
}
