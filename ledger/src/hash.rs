//! blake3 hashing with one domain per type (DESIGN §3).
//!
//! Each domain is a blake3 `derive_key` context, so a digest in one domain is unrelated to the
//! digest of the same bytes in another; a signature over a vote can never be replayed as a
//! signature over a transaction.

use std::sync::OnceLock;

use crate::bytes::Hash;

/// The hashing domains of govchain. The context strings are part of the protocol: never change one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    /// Transaction body: the message a transaction's signer signs.
    TxBody,
    /// Transaction id: hash of the signed transaction's bytes.
    TxId,
    /// Block header: the block hash.
    Block,
    /// A consensus vote: the message a validator signs.
    Vote,
    /// A validator set.
    ValidatorSet,
    /// The genesis document.
    Genesis,
    /// A Merkle leaf.
    MerkleLeaf,
    /// A Merkle inner node.
    MerkleNode,
    /// The sorted write set of one block.
    WriteSet,
    /// The app hash chain.
    AppHash,
    /// A node's SQL projection digest.
    Projection,
    /// A consensus block proposal: the message a proposer signs.
    Proposal,
    /// The id of an equivocation offence (offender, height, round, vote kind).
    Evidence,
    /// A signed API request of a system account (method, path, time, body hash).
    Request,
    /// The fingerprint of an audited API request (never signed).
    AuditFingerprint,
    /// A delivered record's content: the connectors' idempotency key part (never signed).
    RecordContent,
    /// The digest of a data source's records (key and content hash, in key order), compared
    /// between a department system and the chain.
    SyncDigest,
    /// The full list of the persons one audited read returned, when the entry lists only
    /// part of it (never signed).
    AuditPersons,
}

impl Domain {
    /// The blake3 derive-key context string.
    pub const fn context(self) -> &'static str {
        match self {
            Domain::TxBody => "govchain/tx/v1",
            Domain::TxId => "govchain/txid/v1",
            Domain::Block => "govchain/block/v1",
            Domain::Vote => "govchain/vote/v1",
            Domain::ValidatorSet => "govchain/validator-set/v1",
            Domain::Genesis => "govchain/genesis/v1",
            Domain::MerkleLeaf => "govchain/merkle-leaf/v1",
            Domain::MerkleNode => "govchain/merkle-node/v1",
            Domain::WriteSet => "govchain/write-set/v1",
            Domain::AppHash => "govchain/app-hash/v1",
            Domain::Projection => "govchain/projection/v1",
            Domain::Proposal => "govchain/proposal/v1",
            Domain::Evidence => "govchain/evidence/v1",
            Domain::Request => "govchain/request/v1",
            Domain::AuditFingerprint => "govchain/audit-fingerprint/v1",
            Domain::RecordContent => "govchain/record-content/v1",
            Domain::SyncDigest => "govchain/sync-digest/v1",
            Domain::AuditPersons => "govchain/audit-persons/v1",
        }
    }

    const ALL: [Domain; 18] = [
        Domain::TxBody,
        Domain::TxId,
        Domain::Block,
        Domain::Vote,
        Domain::ValidatorSet,
        Domain::Genesis,
        Domain::MerkleLeaf,
        Domain::MerkleNode,
        Domain::WriteSet,
        Domain::AppHash,
        Domain::Projection,
        Domain::Proposal,
        Domain::Evidence,
        Domain::Request,
        Domain::AuditFingerprint,
        Domain::RecordContent,
        Domain::SyncDigest,
        Domain::AuditPersons,
    ];

    fn key(self) -> &'static [u8; 32] {
        static KEYS: OnceLock<[[u8; 32]; 18]> = OnceLock::new();
        let keys = KEYS.get_or_init(|| Domain::ALL.map(|d| blake3::derive_key(d.context(), b"")));
        let i = Domain::ALL
            .iter()
            .position(|d| *d == self)
            .unwrap_or_default();
        &keys[i]
    }

    /// A streaming hasher in this domain.
    pub fn hasher(self) -> blake3::Hasher {
        blake3::Hasher::new_keyed(self.key())
    }
}

/// Hashes `bytes` in `domain`.
pub fn hash(domain: Domain, bytes: &[u8]) -> Hash {
    let mut h = domain.hasher();
    h.update(bytes);
    Hash(*h.finalize().as_bytes())
}

/// Hashes the concatenation of `parts` in `domain`.
pub fn hash_parts(domain: Domain, parts: &[&[u8]]) -> Hash {
    let mut h = domain.hasher();
    for p in parts {
        h.update(p);
    }
    Hash(*h.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_separate_equal_bytes() {
        let mut seen = std::collections::HashSet::new();
        for d in Domain::ALL {
            assert!(seen.insert(hash(d, b"same bytes")), "{d:?} collides");
        }
    }

    #[test]
    fn parts_equal_concatenation() {
        assert_eq!(
            hash_parts(Domain::Block, &[b"ab", b"cd"]),
            hash(Domain::Block, b"abcd")
        );
    }
}
