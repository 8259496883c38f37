//! Payload codecs of legacy department systems (R-SEC-6, DES part; DESIGN §5 Connectors): plain
//! JSON, DES-CBC and 3DES (EDE3-CBC), PKCS#7 padding, as some department systems still deliver
//! their records. Decoding never panics and never yields garbage silently: a ciphertext that is
//! not whole blocks, or whose padding does not check (almost always a wrong key or IV), is an
//! error naming the cause.

use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};

/// DES block size in bytes.
pub const BLOCK: usize = 8;

/// How a source's payloads are encrypted.
#[derive(Clone, PartialEq, Eq)]
pub enum Codec {
    /// Not encrypted.
    Plain,
    /// DES-CBC with an 8-byte key and IV.
    Des {
        /// Key.
        key: [u8; 8],
        /// Initialisation vector.
        iv: [u8; 8],
    },
    /// Triple DES (EDE3-CBC) with a 24-byte key (K1‖K2‖K3) and an 8-byte IV.
    TripleDes {
        /// Key.
        key: [u8; 24],
        /// Initialisation vector.
        iv: [u8; 8],
    },
}

impl std::fmt::Debug for Codec {
    // Keys never reach logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Codec::Plain => "Codec::Plain",
            Codec::Des { .. } => "Codec::Des",
            Codec::TripleDes { .. } => "Codec::TripleDes",
        })
    }
}

/// Why a payload does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The ciphertext is empty or not a whole number of 8-byte blocks.
    #[error("ciphertext of {0} bytes is not a whole number of 8-byte DES blocks")]
    NotBlocks(usize),
    /// The PKCS#7 padding does not check: a wrong key or IV, or a damaged payload.
    #[error("bad PKCS#7 padding after decryption (wrong key or IV, or a damaged payload)")]
    BadPadding,
    /// A codec description that is none of `plain`, `des:KEY:IV`, `3des:KEY:IV`.
    #[error("codec {0:?} is not plain, des:KEYHEX:IVHEX or 3des:KEYHEX:IVHEX")]
    BadSpec(String),
    /// A key or IV of the wrong length in a codec description.
    #[error("{what} must be {want} bytes (hex), got {got}")]
    BadKey {
        /// Key or IV.
        what: &'static str,
        /// Expected bytes.
        want: usize,
        /// Bytes given.
        got: usize,
    },
}

fn fixed<const N: usize>(what: &'static str, hex_text: &str) -> Result<[u8; N], CodecError> {
    let b = hex::decode(hex_text.trim()).map_err(|_| CodecError::BadKey {
        what,
        want: N,
        got: 0,
    })?;
    let got = b.len();
    <[u8; N]>::try_from(b).map_err(|_| CodecError::BadKey { what, want: N, got })
}

impl Codec {
    /// A codec from its description in a configuration: `plain`, `des:KEYHEX:IVHEX` (8-byte key
    /// and IV) or `3des:KEYHEX:IVHEX` (24-byte key, 8-byte IV).
    pub fn parse(spec: &str) -> Result<Self, CodecError> {
        let mut parts = spec.trim().splitn(3, ':');
        let (kind, key, iv) = (parts.next(), parts.next(), parts.next());
        match (kind, key, iv) {
            (Some("plain"), None, None) => Ok(Codec::Plain),
            (Some("des"), Some(k), Some(iv)) => Codec::des(k, iv),
            (Some("3des"), Some(k), Some(iv)) => Codec::triple_des(k, iv),
            _ => Err(CodecError::BadSpec(spec.to_string())),
        }
    }

    /// The codec's name: `plain`, `des` or `3des` (never the key).
    pub fn name(&self) -> &'static str {
        match self {
            Codec::Plain => "plain",
            Codec::Des { .. } => "des",
            Codec::TripleDes { .. } => "3des",
        }
    }

    /// A DES codec from hex key and IV.
    pub fn des(key_hex: &str, iv_hex: &str) -> Result<Self, CodecError> {
        Ok(Codec::Des {
            key: fixed("DES key", key_hex)?,
            iv: fixed("IV", iv_hex)?,
        })
    }

    /// A 3DES codec from hex key (24 bytes) and IV.
    pub fn triple_des(key_hex: &str, iv_hex: &str) -> Result<Self, CodecError> {
        Ok(Codec::TripleDes {
            key: fixed("3DES key", key_hex)?,
            iv: fixed("IV", iv_hex)?,
        })
    }

    /// Encrypts (pads) `plain`.
    pub fn encode(&self, plain: &[u8]) -> Vec<u8> {
        let len = plain.len();
        let mut buf = vec![0u8; (len / BLOCK + 1) * BLOCK];
        buf[..len].copy_from_slice(plain);
        let n = match self {
            Codec::Plain => return plain.to_vec(),
            Codec::Des { key, iv } => cbc::Encryptor::<des::Des>::new(key.into(), iv.into())
                .encrypt_padded::<Pkcs7>(&mut buf, len)
                .map(|c| c.len()),
            Codec::TripleDes { key, iv } => {
                cbc::Encryptor::<des::TdesEde3>::new(key.into(), iv.into())
                    .encrypt_padded::<Pkcs7>(&mut buf, len)
                    .map(|c| c.len())
            }
        }
        .unwrap_or(0);
        buf.truncate(n);
        buf
    }

    /// Decrypts and unpads `data`.
    pub fn decode(&self, data: &[u8]) -> Result<Vec<u8>, CodecError> {
        if *self == Codec::Plain {
            return Ok(data.to_vec());
        }
        if data.is_empty() || !data.len().is_multiple_of(BLOCK) {
            return Err(CodecError::NotBlocks(data.len()));
        }
        let mut buf = data.to_vec();
        let n = match self {
            Codec::Plain => data.len(),
            Codec::Des { key, iv } => cbc::Decryptor::<des::Des>::new(key.into(), iv.into())
                .decrypt_padded::<Pkcs7>(&mut buf)
                .map_err(|_| CodecError::BadPadding)?
                .len(),
            Codec::TripleDes { key, iv } => {
                cbc::Decryptor::<des::TdesEde3>::new(key.into(), iv.into())
                    .decrypt_padded::<Pkcs7>(&mut buf)
                    .map_err(|_| CodecError::BadPadding)?
                    .len()
            }
        };
        buf.truncate(n);
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    #[test]
    fn codec_descriptions_parse_and_bad_ones_are_refused() {
        assert_eq!(Codec::parse("plain").unwrap(), Codec::Plain);
        let d = Codec::parse("des:133457799BBCDFF1:0000000000000000").unwrap();
        assert_eq!(d.name(), "des");
        let t = Codec::parse(&format!("3des:{}:{}", "01".repeat(24), "00".repeat(8))).unwrap();
        assert_eq!(t.name(), "3des");
        for bad in ["", "aes:00:00", "des:0011", "plain:00", "rot13"] {
            assert!(
                matches!(Codec::parse(bad), Err(CodecError::BadSpec(_))),
                "{bad:?}"
            );
        }
        assert_eq!(
            Codec::parse("des:0011:0000000000000000"),
            Err(CodecError::BadKey {
                what: "DES key",
                want: 8,
                got: 2
            })
        );
    }

    /// With a zero IV the first CBC block is the block cipher itself, so ECB test vectors
    /// check it.
    fn first_block(c: &Codec, plain: &str) -> String {
        hex::encode(&c.encode(&h(plain))[..BLOCK]).to_uppercase()
    }

    #[test]
    fn des_matches_published_vectors() {
        let zero = "0000000000000000";
        // FIPS 46 worked example (Grabbe) and the "Now is t" vector of FIPS 81.
        let c = Codec::des("133457799BBCDFF1", zero).unwrap();
        assert_eq!(first_block(&c, "0123456789ABCDEF"), "85E813540F0AB405");
        let c = Codec::des("0123456789ABCDEF", zero).unwrap();
        assert_eq!(first_block(&c, "4E6F772069732074"), "3FA40E8A984D4815");
    }

    #[test]
    fn triple_des_matches_published_vectors() {
        let zero = "0000000000000000";
        // NIST SP 800-67 example: K1, K2, K3 and "The qufc".
        let c =
            Codec::triple_des("0123456789ABCDEF23456789ABCDEF01456789ABCDEF0123", zero).unwrap();
        assert_eq!(first_block(&c, "5468652071756663"), "A826FD8CE53B855F");
        // K1 = K2 = K3 is single DES.
        let c = Codec::triple_des(&"133457799BBCDFF1".repeat(3), zero).unwrap();
        assert_eq!(first_block(&c, "0123456789ABCDEF"), "85E813540F0AB405");
    }

    #[test]
    fn wrong_keys_truncation_and_bad_descriptions_are_errors_not_garbage() {
        let plain = "{\"sfzh\":\"110105194912310002\",\"xm\":\"张三\"}".as_bytes();
        let c = Codec::des("0123456789ABCDEF", "1122334455667788").unwrap();
        let wire = c.encode(plain);
        assert_eq!(c.decode(&wire).unwrap(), plain);
        assert_eq!(
            c.decode(&wire[..wire.len() - 3]),
            Err(CodecError::NotBlocks(wire.len() - 3))
        );
        assert_eq!(c.decode(&[]), Err(CodecError::NotBlocks(0)));
        // Wrong keys: the padding almost never checks; when it does by chance, the text differs.
        let mut refused = 0;
        for k in 0..64u8 {
            let other = Codec::Des {
                key: [k; 8],
                iv: [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88],
            };
            match other.decode(&wire) {
                Err(CodecError::BadPadding) => refused += 1,
                Ok(text) => assert_ne!(text, plain),
                Err(e) => panic!("{e}"),
            }
        }
        assert!(refused >= 50, "{refused} of 64 wrong keys refused");
        assert!(matches!(
            Codec::des("0123", "00"),
            Err(CodecError::BadKey { .. })
        ));
        assert!(matches!(
            Codec::triple_des("zz", "00"),
            Err(CodecError::BadKey { .. })
        ));
        assert!(!format!("{c:?}").contains("01"), "keys never reach logs");
    }

    proptest! {
        #[test]
        fn every_payload_round_trips(plain in proptest::collection::vec(any::<u8>(), 0..300),
                                     key in any::<[u8; 24]>(), iv in any::<[u8; 8]>()) {
            let mut k8 = [0u8; 8];
            k8.copy_from_slice(&key[..8]);
            for c in [Codec::Plain, Codec::Des { key: k8, iv }, Codec::TripleDes { key, iv }] {
                let wire = c.encode(&plain);
                if c != Codec::Plain {
                    prop_assert!(wire.len().is_multiple_of(BLOCK));
                    prop_assert!(wire.len() > plain.len());
                }
                prop_assert_eq!(c.decode(&wire).unwrap(), plain.clone());
            }
        }
    }
}
