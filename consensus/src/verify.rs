//! Signature verification as a small trait, so a caller can share a memo of checked signatures.
//!
//! Owns: [`SignatureVerifier`] (the one operation consensus needs), the plain ed25519
//! implementation [`Ed25519Verifier`] and the bounded memoising wrapper [`MemoVerifier`].
//!
//! Invariants: verification is a pure function of (key, digest, signature), so memoising it never
//! changes an answer, only its cost. The memo holds at most [`MemoVerifier::capacity`] entries and
//! forgets everything when full (no unbounded growth). Used by the node (which checks a message in
//! [`crate::Consensus::check_message`] and again in [`crate::Consensus::handle`]) and by the
//! simulator (where every node checks every message, one memo per run).

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Mutex;

use govchain_ledger::{crypto, Hash, PublicKey, Signature, SignatureError};

/// Checks one ed25519 signature over a 32-byte digest.
pub trait SignatureVerifier: Send + Sync {
    /// `Ok` if `signature` by `key` over `digest` verifies.
    fn verify(
        &self,
        key: &PublicKey,
        digest: &Hash,
        signature: &Signature,
    ) -> Result<(), SignatureError>;
}

/// Verifies every call with `ledger::crypto::verify` (strict ed25519).
#[derive(Debug, Clone, Copy, Default)]
pub struct Ed25519Verifier;

impl SignatureVerifier for Ed25519Verifier {
    fn verify(
        &self,
        key: &PublicKey,
        digest: &Hash,
        signature: &Signature,
    ) -> Result<(), SignatureError> {
        crypto::verify(key, digest, signature)
    }
}

/// Default number of remembered verifications of a [`MemoVerifier`].
pub const DEFAULT_MEMO_ENTRIES: NonZeroUsize = match NonZeroUsize::new(65_536) {
    Some(n) => n,
    None => NonZeroUsize::MIN,
};

type MemoKey = (PublicKey, Hash, Signature);

/// Remembers the answers of [`Ed25519Verifier`] for up to `capacity` (key, digest, signature)
/// triples; when full it forgets all of them and starts again.
#[derive(Debug)]
pub struct MemoVerifier {
    capacity: NonZeroUsize,
    memo: Mutex<HashMap<MemoKey, Result<(), SignatureError>>>,
}

impl MemoVerifier {
    /// A memo of at most `capacity` entries.
    pub fn new(capacity: NonZeroUsize) -> Self {
        Self {
            capacity,
            memo: Mutex::new(HashMap::new()),
        }
    }

    /// Most entries remembered.
    pub fn capacity(&self) -> usize {
        self.capacity.get()
    }
}

impl Default for MemoVerifier {
    fn default() -> Self {
        Self::new(DEFAULT_MEMO_ENTRIES)
    }
}

impl SignatureVerifier for MemoVerifier {
    fn verify(
        &self,
        key: &PublicKey,
        digest: &Hash,
        signature: &Signature,
    ) -> Result<(), SignatureError> {
        let memo_key = (*key, *digest, *signature);
        // A poisoned memo only means another thread panicked mid-insert; the map is still a
        // valid cache of pure answers, so keep using it.
        let mut memo = self.memo.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(answer) = memo.get(&memo_key) {
            return answer.clone();
        }
        let answer = crypto::verify(key, digest, signature);
        if memo.len() >= self.capacity.get() {
            memo.clear();
        }
        memo.insert(memo_key, answer.clone());
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use govchain_ledger::hash::{hash, Domain};
    use govchain_ledger::Keypair;

    #[test]
    fn memo_gives_the_same_answers_as_plain_verification() {
        let k = Keypair::from_seed([7; 32]);
        let d = hash(Domain::Vote, b"x");
        let s = k.sign(&d);
        let mut bad = s;
        bad.0[0] ^= 1;
        let memo = MemoVerifier::new(NonZeroUsize::new(2).unwrap());
        for _ in 0..3 {
            assert_eq!(
                memo.verify(&k.public(), &d, &s),
                Ed25519Verifier.verify(&k.public(), &d, &s)
            );
            assert_eq!(
                memo.verify(&k.public(), &d, &bad),
                Ed25519Verifier.verify(&k.public(), &d, &bad)
            );
            assert!(memo.verify(&k.public(), &d, &bad).is_err());
        }
    }

    #[test]
    fn memo_never_holds_more_than_its_capacity() {
        let k = Keypair::from_seed([8; 32]);
        let memo = MemoVerifier::new(NonZeroUsize::new(3).unwrap());
        for i in 0..10u8 {
            let d = hash(Domain::Vote, &[i]);
            memo.verify(&k.public(), &d, &k.sign(&d)).unwrap();
            assert!(memo.memo.lock().unwrap().len() <= 3);
        }
    }
}
