//! ed25519 keys, signing and verification (single and batch).
//!
//! Signatures are always over a 32-byte domain-separated digest (see [`crate::hash`]), never over
//! raw encodings, so a message of one type cannot be presented as another. Verification uses
//! `verify_strict` (rejects small-order keys and non-canonical signatures); batches fall back to
//! single checks to name the first bad signature.

use std::path::Path;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

use crate::bytes::{Hash, PublicKey, Signature};

/// Why a signature or key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The 32 bytes are not a valid ed25519 public key.
    #[error("invalid public key {0}")]
    BadKey(PublicKey),
    /// The signature does not verify for this key and message.
    #[error("signature does not verify for key {0}")]
    BadSignature(PublicKey),
    /// In a batch: the item at this index failed.
    #[error("signature #{index} does not verify for key {key}")]
    BadInBatch {
        /// Position in the batch.
        index: usize,
        /// Its key.
        key: PublicKey,
    },
}

/// Why a key file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Filesystem error.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// Content is not 64 hex digits.
    #[error("key file {path}: expected 64 hex digits of an ed25519 secret key")]
    Format {
        /// The file.
        path: String,
    },
    /// The OS random source failed.
    #[error("no randomness from the OS: {0}")]
    Random(String),
}

/// An ed25519 signing key with its public key.
#[derive(Clone)]
pub struct Keypair {
    signing: SigningKey,
    public: PublicKey,
}

impl std::fmt::Debug for Keypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keypair({:?})", self.public)
    }
}

impl Keypair {
    /// A new key from the OS random source.
    pub fn generate() -> Result<Self, KeyFileError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyFileError::Random(e.to_string()))?;
        Ok(Self::from_seed(seed))
    }

    /// The key with this 32-byte secret seed (deterministic; tests and benchmarks).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let signing = SigningKey::from_bytes(&seed);
        let public = PublicKey(signing.verifying_key().to_bytes());
        Self { signing, public }
    }

    /// The public key.
    pub fn public(&self) -> PublicKey {
        self.public
    }

    /// Signs a digest.
    pub fn sign(&self, digest: &Hash) -> Signature {
        Signature(self.signing.sign(digest.as_bytes()).to_bytes())
    }

    /// The 32-byte secret seed (to derive the node's libp2p identity from the same key).
    pub fn secret_seed(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// The secret seed as hex (what key files hold).
    pub fn secret_hex(&self) -> String {
        hex::encode(self.signing.to_bytes())
    }

    /// Reads a key file: 64 hex digits (surrounding whitespace ignored).
    pub fn read_file(path: &Path) -> Result<Self, KeyFileError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Io {
            path: shown.clone(),
            source,
        })?;
        let mut seed = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut seed)
            .map_err(|_| KeyFileError::Format { path: shown })?;
        Ok(Self::from_seed(seed))
    }

    /// Writes the secret to a new file readable by its owner only (mode 0600).
    pub fn write_file(&self, path: &Path) -> Result<(), KeyFileError> {
        use std::io::Write;
        #[cfg(unix)]
        use std::os::unix::fs::OpenOptionsExt;
        let io = |source| KeyFileError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        opts.mode(0o600);
        let mut f = opts.open(path).map_err(io)?;
        f.write_all(format!("{}\n", self.secret_hex()).as_bytes())
            .map_err(io)?;
        f.sync_all().map_err(io)
    }
}

fn verifying_key(key: &PublicKey) -> Result<VerifyingKey, SignatureError> {
    VerifyingKey::from_bytes(key.as_bytes()).map_err(|_| SignatureError::BadKey(*key))
}

/// Verifies one signature over a digest.
pub fn verify(key: &PublicKey, digest: &Hash, sig: &Signature) -> Result<(), SignatureError> {
    let vk = verifying_key(key)?;
    let sig = ed25519_dalek::Signature::from_bytes(&sig.0);
    vk.verify_strict(digest.as_bytes(), &sig)
        .map_err(|_| SignatureError::BadSignature(*key))
}

/// Below this many items a batch is checked one by one (batching does not pay off).
pub const MIN_BATCH: usize = 8;

/// Verifies many (key, digest, signature) triples; faster than one by one for large batches.
/// On failure, names the first failing item.
pub fn verify_batch(items: &[(PublicKey, Hash, Signature)]) -> Result<(), SignatureError> {
    let one_by_one = |items: &[(PublicKey, Hash, Signature)]| {
        for (index, (k, d, s)) in items.iter().enumerate() {
            verify(k, d, s).map_err(|e| match e {
                SignatureError::BadSignature(key) | SignatureError::BadKey(key) => {
                    SignatureError::BadInBatch { index, key }
                }
                other => other,
            })?;
        }
        Ok(())
    };
    if items.len() < MIN_BATCH {
        return one_by_one(items);
    }
    // Decompress each distinct key once (batches usually come from few signers).
    let mut keys = Vec::with_capacity(items.len());
    let mut decompressed: std::collections::HashMap<PublicKey, VerifyingKey> =
        std::collections::HashMap::new();
    for (k, _, _) in items {
        let vk = match decompressed.get(k) {
            Some(vk) => *vk,
            None => match verifying_key(k) {
                Ok(vk) => *decompressed.entry(*k).or_insert(vk),
                Err(_) => return one_by_one(items),
            },
        };
        keys.push(vk);
    }
    let msgs: Vec<&[u8]> = items.iter().map(|(_, d, _)| &d.0[..]).collect();
    let sigs: Vec<ed25519_dalek::Signature> = items
        .iter()
        .map(|(_, _, s)| ed25519_dalek::Signature::from_bytes(&s.0))
        .collect();
    match ed25519_dalek::verify_batch(&msgs, &sigs, &keys) {
        Ok(()) => {
            // Batch verification is the cofactored equation; keep the strict single-check
            // semantics by rejecting weak keys, which the batch would accept.
            if decompressed.values().any(|k| k.is_weak()) {
                return one_by_one(items);
            }
            Ok(())
        }
        Err(_) => one_by_one(items),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{hash, Domain};

    fn triple(i: u8) -> (PublicKey, Hash, Signature) {
        let k = Keypair::from_seed([i; 32]);
        let d = hash(Domain::TxBody, &[i]);
        (k.public(), d, k.sign(&d))
    }

    #[test]
    fn sign_then_verify() {
        let (k, d, s) = triple(1);
        verify(&k, &d, &s).unwrap();
        let other = hash(Domain::TxBody, b"other");
        assert_eq!(verify(&k, &other, &s), Err(SignatureError::BadSignature(k)));
    }

    #[test]
    fn batch_names_the_bad_item() {
        let mut items: Vec<_> = (0..20).map(triple).collect();
        verify_batch(&items).unwrap();
        items[13].2 .0[5] ^= 1;
        let key = items[13].0;
        assert_eq!(
            verify_batch(&items),
            Err(SignatureError::BadInBatch { index: 13, key })
        );
    }

    #[test]
    fn key_file_round_trip_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.key");
        let k = Keypair::generate().unwrap();
        k.write_file(&p).unwrap();
        assert_eq!(Keypair::read_file(&p).unwrap().public(), k.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&p, "not hex").unwrap();
        assert!(matches!(
            Keypair::read_file(&p),
            Err(KeyFileError::Format { .. })
        ));
    }
}
