//! Fixed-size byte strings: hashes, public keys, signatures.
//!
//! In JSON (human-readable formats) they are lower-case hex strings; in the canonical binary
//! encoding they are their raw bytes with no length prefix. Parsing checks the length, so a value
//! of these types always has exactly its size.

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeTuple, Serializer};
use serde::{Deserialize, Serialize};

macro_rules! fixed_bytes {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// Size in bytes.
            pub const LEN: usize = $len;

            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            /// Lower-case hex.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// Parses exactly `2 * LEN` hex digits.
            pub fn from_hex(s: &str) -> Result<Self, HexError> {
                let mut out = [0u8; $len];
                hex::decode_to_slice(s.trim(), &mut out).map_err(|_| HexError {
                    what: stringify!($name),
                    expected_len: $len,
                })?;
                Ok(Self(out))
            }

            /// Copies from a slice of exactly `LEN` bytes.
            pub fn from_slice(s: &[u8]) -> Option<Self> {
                <[u8; $len]>::try_from(s).ok().map(Self)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), &self.to_hex()[..16])
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl std::str::FromStr for $name {
            type Err = HexError;
            fn from_str(s: &str) -> Result<Self, HexError> {
                Self::from_hex(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                if serializer.is_human_readable() {
                    serializer.serialize_str(&self.to_hex())
                } else {
                    let mut t = serializer.serialize_tuple($len)?;
                    for b in &self.0 {
                        t.serialize_element(b)?;
                    }
                    t.end()
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                if deserializer.is_human_readable() {
                    let s = String::deserialize(deserializer)?;
                    Self::from_hex(&s).map_err(de::Error::custom)
                } else {
                    struct V;
                    impl<'de> Visitor<'de> for V {
                        type Value = $name;
                        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                            write!(f, "{} bytes", $len)
                        }
                        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<$name, A::Error> {
                            let mut out = [0u8; $len];
                            for (i, b) in out.iter_mut().enumerate() {
                                *b = seq
                                    .next_element()?
                                    .ok_or_else(|| de::Error::invalid_length(i, &self))?;
                            }
                            Ok($name(out))
                        }
                    }
                    deserializer.deserialize_tuple($len, V)
                }
            }
        }
    };
}

fixed_bytes!(
    /// A 32-byte blake3 digest.
    Hash,
    32
);
fixed_bytes!(
    /// An ed25519 public key (32 bytes, not yet checked to be a valid curve point).
    PublicKey,
    32
);
fixed_bytes!(
    /// An ed25519 signature (64 bytes).
    Signature,
    64
);

impl Hash {
    /// The all-zero hash: the "previous app hash" before genesis.
    pub const ZERO: Hash = Hash([0u8; 32]);
}

/// A hex string of the wrong length or with non-hex characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what}: expected {expected_len} bytes as {} hex digits", expected_len * 2)]
pub struct HexError {
    what: &'static str,
    expected_len: usize,
}
