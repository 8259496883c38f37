//! Equivocation evidence on chain (R-CHN-1, R-AUD-1; DESIGN §4): a validator that signed two
//! different votes of one kind for one (height, round) is reported by any validator that saw
//! both, in a transaction every node and the auditor check the same way: both signatures verify
//! under the offender's key, the votes conflict, and the offender is a validator. One record per
//! offence; a second report of it is refused.
//!
//! Double proposals are detected and logged by the consensus driver but not put on chain: a
//! proposal alone cannot make two honest nodes commit different blocks, while a conflicting vote
//! is the act that BFT safety assumes at most f validators commit (Tendermint keeps the same
//! distinction: its on-chain evidence is the duplicate vote).

use govchain_ledger::hash::{hash_parts, Domain};
use govchain_ledger::{
    crypto, ChainId, Hash, Height, PublicKey, Round, Signature, ValidatorSet, Vote, VoteKind,
};
use serde::{Deserialize, Serialize};

use crate::error::{invalid, TxError};

/// Two conflicting votes of one validator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteEquivocation {
    /// The validator that signed both.
    pub validator: PublicKey,
    /// One vote and its signature.
    pub a: (Vote, Signature),
    /// The conflicting vote and its signature.
    pub b: (Vote, Signature),
}

/// The evidence as kept in state, with who reported it and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvidence {
    /// The evidence.
    pub evidence: VoteEquivocation,
    /// The validator that reported it.
    pub reporter: PublicKey,
    /// The height of the block that recorded it.
    pub recorded_at: Height,
}

impl VoteEquivocation {
    /// What the offence is about: (height, round, kind).
    pub fn offence(&self) -> (Height, Round, VoteKind) {
        (self.a.0.height, self.a.0.round, self.a.0.kind)
    }

    /// The offence's id: the offender and (height, round, kind). One record per id.
    pub fn id(&self) -> Hash {
        let (h, r, k) = self.offence();
        let kind = match k {
            VoteKind::Prevote => 0u8,
            VoteKind::Precommit => 1,
        };
        hash_parts(
            Domain::Evidence,
            &[
                self.validator.as_bytes(),
                &h.0.to_be_bytes(),
                &r.0.to_be_bytes(),
                &[kind],
            ],
        )
    }

    /// The reporter's nonce for this offence (from its id), so a reporter reports it once.
    pub fn nonce(&self) -> u64 {
        let mut n = [0u8; 8];
        n.copy_from_slice(&self.id().as_bytes()[..8]);
        u64::from_be_bytes(n)
    }

    /// Checks that the evidence proves an offence of a validator of `validators` on `chain`.
    pub fn check(&self, chain: &ChainId, validators: &ValidatorSet) -> Result<(), TxError> {
        let (a, b) = (&self.a.0, &self.b.0);
        if &a.chain_id != chain || &b.chain_id != chain {
            return Err(invalid("evidence", "a vote is for another chain"));
        }
        if (a.height, a.round, a.kind) != (b.height, b.round, b.kind) {
            return Err(invalid(
                "evidence",
                "the votes are for different heights, rounds or kinds",
            ));
        }
        if a.block_hash == b.block_hash {
            return Err(invalid("evidence", "the votes do not conflict"));
        }
        if validators.get(&self.validator).is_none() {
            return Err(invalid("evidence", "the offender is not a validator"));
        }
        for (vote, sig) in [&self.a, &self.b] {
            crypto::verify(&self.validator, &vote.sign_digest(), sig).map_err(|_| {
                invalid(
                    "evidence",
                    "a vote's signature does not verify under the offender's key",
                )
            })?;
        }
        Ok(())
    }
}
