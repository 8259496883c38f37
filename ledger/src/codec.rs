//! The one canonical binary encoding of chain data (DESIGN §3).
//!
//! bincode 2 with a fixed configuration: little-endian, fixed-width integers (so every value has
//! exactly one encoding) and a hard size limit. Decoding rejects input larger than the caller's
//! cap before parsing, and rejects trailing bytes after the value. No other crate calls bincode on
//! chain data: they call [`encode`] and [`decode`].

use bincode::config::{self, Configuration, Fixint, Limit, LittleEndian};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Hard ceiling for any decoded value (also bincode's allocation limit).
pub const MAX_DECODE_BYTES: usize = 64 * 1024 * 1024;

type Cfg = Configuration<LittleEndian, Fixint, Limit<MAX_DECODE_BYTES>>;

const CONFIG: Cfg = config::standard()
    .with_little_endian()
    .with_fixed_int_encoding()
    .with_limit::<MAX_DECODE_BYTES>();

/// Why bytes could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The input is larger than the cap for this type.
    #[error("input of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Input length.
        len: usize,
        /// The cap that applied.
        max: usize,
    },
    /// The bytes are not a valid encoding of the expected type.
    #[error("malformed encoding: {0}")]
    Malformed(String),
    /// A value was decoded but bytes remain after it.
    #[error("{trailing} trailing bytes after the value")]
    TrailingBytes {
        /// How many bytes were left over.
        trailing: usize,
    },
    /// The value could not be encoded (a bug or an oversize value).
    #[error("cannot encode: {0}")]
    Encode(String),
}

/// Encodes a value canonically.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(value, CONFIG).map_err(|e| CodecError::Encode(e.to_string()))
}

/// Encodes a value that is known to be encodable (chain types built in memory).
///
/// Only fails if the value exceeds [`MAX_DECODE_BYTES`], which the limits on blocks and
/// transactions prevent.
pub fn encode_infallible<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    #[allow(clippy::expect_used)]
    encode(value).expect("invariant: chain values are within the encoding limit")
}

/// Decodes exactly one value from `bytes`, which must be at most `max_len` bytes long and must
/// contain nothing after the value.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], max_len: usize) -> Result<T, CodecError> {
    let max = max_len.min(MAX_DECODE_BYTES);
    if bytes.len() > max {
        return Err(CodecError::TooLarge {
            len: bytes.len(),
            max,
        });
    }
    let (value, read) = bincode::serde::decode_from_slice::<T, _>(bytes, CONFIG)
        .map_err(|e| CodecError::Malformed(e.to_string()))?;
    if read != bytes.len() {
        return Err(CodecError::TrailingBytes {
            trailing: bytes.len() - read,
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_trailing_bytes() {
        let mut b = encode(&7u64).unwrap();
        b.push(0);
        assert!(matches!(
            decode::<u64>(&b, 100),
            Err(CodecError::TrailingBytes { trailing: 1 })
        ));
    }

    #[test]
    fn rejects_input_over_the_cap_at_the_edge() {
        let b = encode(&vec![1u8; 10]).unwrap();
        assert_eq!(b.len(), 18);
        assert!(decode::<Vec<u8>>(&b, 18).is_ok());
        assert!(matches!(
            decode::<Vec<u8>>(&b, 17),
            Err(CodecError::TooLarge { len: 18, max: 17 })
        ));
    }

    #[test]
    fn rejects_huge_claimed_length_without_allocating() {
        // A Vec<u8> claiming 2^62 elements.
        let b = (1u64 << 62).to_le_bytes();
        assert!(matches!(
            decode::<Vec<u8>>(&b, 100),
            Err(CodecError::Malformed(_))
        ));
    }

    #[test]
    fn rejects_non_canonical_bool() {
        assert!(decode::<bool>(&[2], 1).is_err());
        assert!(decode::<bool>(&[1], 1).unwrap());
    }
}
