//! Chain types: transactions, blocks, votes, commit certificates, validator sets.
//!
//! Every type here is encoded by [`crate::codec`]; its hash and the message signed for it are
//! defined here, once. Size caps are named constants and checked on decode.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::bytes::{Hash, PublicKey, Signature};
use crate::codec::{self, CodecError};
use crate::crypto::{self, Keypair, SignatureError};
use crate::hash::{hash, Domain};
use crate::merkle;

/// Largest encoded signed transaction accepted anywhere (HTTP, gossip, blocks).
pub const MAX_TX_BYTES: usize = 4 * 1024 * 1024;
/// Largest encoded block.
pub const MAX_BLOCK_BYTES: usize = 48 * 1024 * 1024;
/// Most transactions in one block.
pub const MAX_BLOCK_TXS: usize = 20_000;
/// Largest encoded commit certificate.
pub const MAX_COMMIT_BYTES: usize = 1024 * 1024;
/// Most validators in a set.
pub const MAX_VALIDATORS: usize = 256;
/// Longest chain id.
pub const MAX_CHAIN_ID_LEN: usize = 64;

/// A block height; genesis is height 0, the first block height 1.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Height(pub u64);

impl Height {
    /// The next height.
    pub fn next(self) -> Height {
        Height(self.0 + 1)
    }
    /// Big-endian bytes: store keys sort by height.
    pub fn key(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }
}

impl fmt::Display for Height {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A consensus round within a height.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Round(pub u32);

/// Milliseconds since the Unix epoch, as given to the code by its caller.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct TimestampMs(pub u64);

/// A chain identifier: 1–64 characters of `[a-z0-9-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct ChainId(String);

/// A chain id that is empty, too long or has characters outside `[a-z0-9-]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid chain id {0:?}: 1-64 characters of a-z, 0-9, '-'")]
pub struct InvalidChainId(pub String);

impl ChainId {
    /// Parses and validates.
    pub fn new(s: impl Into<String>) -> Result<Self, InvalidChainId> {
        let s = s.into();
        let ok = !s.is_empty()
            && s.len() <= MAX_CHAIN_ID_LEN
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(s))
        } else {
            Err(InvalidChainId(s))
        }
    }
    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for ChainId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ChainId::new(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A transaction id: the hash of the signed transaction's canonical bytes.
pub type TxId = Hash;

/// What a transaction's signer signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxBody {
    /// The chain this transaction is for; other chains reject it.
    pub chain_id: ChainId,
    /// The signer's public key.
    pub signer: PublicKey,
    /// Unique per signer; a (signer, nonce) pair is accepted once.
    pub nonce: u64,
    /// When the client created it (informational; not used for ordering).
    pub created_at: TimestampMs,
    /// The canonical encoding of the chaincode transaction kind. The ledger does not interpret it.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

impl TxBody {
    /// The digest the signer signs.
    pub fn sign_digest(&self) -> Hash {
        hash(Domain::TxBody, &codec::encode_infallible(self))
    }

    /// Signs this body.
    pub fn sign(self, key: &Keypair) -> SignedTx {
        debug_assert_eq!(self.signer, key.public());
        let signature = key.sign(&self.sign_digest());
        SignedTx {
            body: self,
            signature,
        }
    }
}

/// A signed transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedTx {
    /// The signed content.
    pub body: TxBody,
    /// The signer's signature over [`TxBody::sign_digest`].
    pub signature: Signature,
}

impl SignedTx {
    /// Canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        codec::encode_infallible(self)
    }
    /// Decodes at most [`MAX_TX_BYTES`] with nothing trailing.
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        codec::decode(bytes, MAX_TX_BYTES)
    }
    /// The transaction id.
    pub fn id(&self) -> TxId {
        hash(Domain::TxId, &self.encode())
    }
    /// Checks the signature.
    pub fn verify_signature(&self) -> Result<(), SignatureError> {
        crypto::verify(&self.body.signer, &self.body.sign_digest(), &self.signature)
    }
    /// (key, digest, signature) for batch verification.
    pub fn sig_item(&self) -> (PublicKey, Hash, Signature) {
        (self.body.signer, self.body.sign_digest(), self.signature)
    }
}

/// A block header: everything the block hash covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockHeader {
    /// The chain.
    pub chain_id: ChainId,
    /// This block's height (≥ 1).
    pub height: Height,
    /// The consensus round it was decided in.
    pub round: Round,
    /// Hash of the previous block, or of the genesis document for height 1.
    pub prev_hash: Hash,
    /// Merkle root of the transaction ids, in order.
    pub tx_root: Hash,
    /// Number of transactions.
    pub tx_count: u32,
    /// The app hash after executing every block before this one.
    pub app_hash: Hash,
    /// The proposer's validator key.
    pub proposer: PublicKey,
    /// The proposer's clock when it proposed (the time chaincode sees).
    pub time: TimestampMs,
    /// Hash of the validator set that decides this height.
    pub validator_set_hash: Hash,
}

impl BlockHeader {
    /// The block hash.
    pub fn hash(&self) -> Hash {
        hash(Domain::Block, &codec::encode_infallible(self))
    }
}

/// A block: header and transactions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// The header.
    pub header: BlockHeader,
    /// The transactions, in execution order.
    pub txs: Vec<SignedTx>,
}

impl Block {
    /// Canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        codec::encode_infallible(self)
    }
    /// Decodes at most [`MAX_BLOCK_BYTES`] with nothing trailing.
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        codec::decode(bytes, MAX_BLOCK_BYTES)
    }
    /// The block hash (of the header).
    pub fn hash(&self) -> Hash {
        self.header.hash()
    }
    /// Merkle root of these transactions' ids.
    pub fn compute_tx_root(&self) -> Hash {
        let ids: Vec<Hash> = self.txs.iter().map(SignedTx::id).collect();
        merkle::root(&ids)
    }
}

/// The two vote kinds of Tendermint-style consensus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum VoteKind {
    /// First-phase vote.
    Prevote,
    /// Second-phase vote; > 2/3 of them commit a block.
    Precommit,
}

/// A vote: what a validator signs in consensus.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Vote {
    /// The chain.
    pub chain_id: ChainId,
    /// Height voted on.
    pub height: Height,
    /// Round voted in.
    pub round: Round,
    /// Prevote or precommit.
    pub kind: VoteKind,
    /// The block voted for; `None` is a vote for nil.
    pub block_hash: Option<Hash>,
}

impl Vote {
    /// The digest a validator signs.
    pub fn sign_digest(&self) -> Hash {
        hash(Domain::Vote, &codec::encode_infallible(self))
    }
}

/// One validator's precommit signature in a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitSig {
    /// The validator.
    pub validator: PublicKey,
    /// Its signature over the precommit [`Vote`] for the block.
    pub signature: Signature,
}

/// A commit certificate: precommits for one block from more than 2/3 of the voting power.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    /// Height of the committed block.
    pub height: Height,
    /// Round in which it was committed.
    pub round: Round,
    /// The committed block's hash.
    pub block_hash: Hash,
    /// The precommit signatures.
    pub signatures: Vec<CommitSig>,
}

/// Why a commit certificate is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    /// Certificate for another height or block.
    #[error("certificate is for height {cert_height} block {cert_block}, expected height {height} block {block}")]
    WrongBlock {
        /// The certificate's height.
        cert_height: Height,
        /// The certificate's block.
        cert_block: Hash,
        /// Expected height.
        height: Height,
        /// Expected block.
        block: Hash,
    },
    /// A signer is not in the validator set.
    #[error("signer {0} is not a validator")]
    NotAValidator(PublicKey),
    /// A validator signed twice.
    #[error("validator {0} appears twice")]
    Duplicate(PublicKey),
    /// A signature does not verify.
    #[error("bad precommit signature: {0}")]
    BadSignature(SignatureError),
    /// Not enough voting power.
    #[error("only {have} of {total} voting power signed; more than 2/3 is needed")]
    NoQuorum {
        /// Power that signed.
        have: u64,
        /// Total power.
        total: u64,
    },
}

impl Commit {
    /// Canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        codec::encode_infallible(self)
    }
    /// Decodes at most [`MAX_COMMIT_BYTES`] with nothing trailing.
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        codec::decode(bytes, MAX_COMMIT_BYTES)
    }

    /// The precommit vote each signature covers.
    pub fn vote(&self, chain_id: &ChainId) -> Vote {
        Vote {
            chain_id: chain_id.clone(),
            height: self.height,
            round: self.round,
            kind: VoteKind::Precommit,
            block_hash: Some(self.block_hash),
        }
    }

    /// Checks that this certificate commits `block` (at `height`) under `validators`.
    pub fn verify(
        &self,
        chain_id: &ChainId,
        height: Height,
        block: &Hash,
        validators: &ValidatorSet,
    ) -> Result<(), CommitError> {
        if self.height != height || &self.block_hash != block {
            return Err(CommitError::WrongBlock {
                cert_height: self.height,
                cert_block: self.block_hash,
                height,
                block: *block,
            });
        }
        let digest = self.vote(chain_id).sign_digest();
        let mut seen = std::collections::HashSet::new();
        let mut power = 0u64;
        let mut items = Vec::with_capacity(self.signatures.len());
        for s in &self.signatures {
            let v = validators
                .get(&s.validator)
                .ok_or(CommitError::NotAValidator(s.validator))?;
            if !seen.insert(s.validator) {
                return Err(CommitError::Duplicate(s.validator));
            }
            power += v.power;
            items.push((s.validator, digest, s.signature));
        }
        crypto::verify_batch(&items).map_err(CommitError::BadSignature)?;
        let total = validators.total_power();
        if !validators.is_quorum(power) {
            return Err(CommitError::NoQuorum { have: power, total });
        }
        Ok(())
    }
}

/// A validator: a department's node key with its voting power.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validator {
    /// The node's signing key.
    pub key: PublicKey,
    /// Voting power (1 per department unless genesis says otherwise).
    pub power: u64,
    /// The department running it.
    pub department: String,
}

/// The validators deciding a height, in proposer order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidatorSet {
    /// Validators in proposer-rotation order.
    pub validators: Vec<Validator>,
}

impl ValidatorSet {
    /// Hash of the canonical encoding.
    pub fn hash(&self) -> Hash {
        hash(Domain::ValidatorSet, &codec::encode_infallible(self))
    }
    /// The validator with this key.
    pub fn get(&self, key: &PublicKey) -> Option<&Validator> {
        self.validators.iter().find(|v| &v.key == key)
    }
    /// Sum of voting power.
    pub fn total_power(&self) -> u64 {
        self.validators
            .iter()
            .fold(0u64, |acc, v| acc.saturating_add(v.power))
    }
    /// Whether `power` is more than 2/3 of the total.
    pub fn is_quorum(&self, power: u64) -> bool {
        let total = self.total_power();
        total > 0 && power.saturating_mul(3) > total.saturating_mul(2)
    }
    /// The proposer for (height, round): `validators[(height + round) % n]`.
    pub fn proposer(&self, height: Height, round: Round) -> Option<&Validator> {
        let n = self.validators.len() as u64;
        if n == 0 {
            return None;
        }
        let i = (height.0.wrapping_add(u64::from(round.0))) % n;
        self.validators.get(i as usize)
    }
}

/// A height's block and certificate signed by one key set: used by tests and single-validator nodes.
pub fn sign_commit(
    chain_id: &ChainId,
    height: Height,
    round: Round,
    block_hash: Hash,
    signers: &[&Keypair],
) -> Commit {
    let mut c = Commit {
        height,
        round,
        block_hash,
        signatures: Vec::new(),
    };
    let digest = c.vote(chain_id).sign_digest();
    c.signatures = signers
        .iter()
        .map(|k| CommitSig {
            validator: k.public(),
            signature: k.sign(&digest),
        })
        .collect();
    c
}
