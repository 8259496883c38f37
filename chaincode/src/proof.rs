//! Offline proof of one audit entry (R-AUD-3, R-AUD-4): the entry, the `AppendAudit`
//! transaction that carries it, that transaction's Merkle inclusion proof under the block's
//! `tx_root`, the block header and its commit certificate. With only the genesis file (its
//! validator set) anyone can check that the entry was agreed by the departments' validators.

use govchain_ledger::merkle::InclusionProof;
use govchain_ledger::{BlockHeader, ChainId, Commit, Height, SignedTx, ValidatorSet};
use serde::{Deserialize, Serialize};

use crate::access::AuditEntry;
use crate::kinds::TxKind;

/// One audit entry with everything needed to check it offline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditProof {
    /// The chain.
    pub chain_id: ChainId,
    /// The block's height.
    pub height: Height,
    /// The transaction's position in the block.
    pub tx_index: u32,
    /// The entry's position in the transaction.
    pub entry_index: u32,
    /// The entry.
    pub entry: AuditEntry,
    /// The signed `AppendAudit` transaction, canonical bytes in hex.
    pub tx: String,
    /// The transaction id's inclusion proof under `header.tx_root`.
    pub proof: InclusionProof,
    /// The block header.
    pub header: BlockHeader,
    /// The block's commit certificate.
    pub commit: Commit,
}

/// Why a proof does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The transaction bytes do not decode or do not carry the entry.
    #[error("transaction: {0}")]
    Tx(String),
    /// The inclusion proof does not lead to the header's `tx_root`.
    #[error("inclusion proof: {0}")]
    Inclusion(String),
    /// The header does not match the proof's chain, height or validator set.
    #[error("header: {0}")]
    Header(String),
    /// The certificate does not commit the header under the validator set.
    #[error("commit certificate: {0}")]
    Commit(String),
}

impl AuditProof {
    /// Checks the proof against `validators` (the set that decided the block; the genesis set
    /// while no validator change happened).
    pub fn verify(&self, validators: &ValidatorSet) -> Result<(), ProofError> {
        let bytes = hex::decode(&self.tx).map_err(|e| ProofError::Tx(format!("not hex: {e}")))?;
        let tx = SignedTx::decode(&bytes).map_err(|e| ProofError::Tx(e.to_string()))?;
        tx.verify_signature()
            .map_err(|e| ProofError::Tx(format!("signature: {e}")))?;
        if tx.body.chain_id != self.chain_id {
            return Err(ProofError::Tx("signed for another chain".into()));
        }
        if validators.get(&tx.body.signer).is_none() {
            return Err(ProofError::Tx(
                "signed by a key that is not a department node of the validator set".into(),
            ));
        }
        let TxKind::AppendAudit { entries } =
            TxKind::decode(&tx.body.payload).map_err(|e| ProofError::Tx(e.to_string()))?
        else {
            return Err(ProofError::Tx("not an audit batch".into()));
        };
        if entries.get(self.entry_index as usize) != Some(&self.entry) {
            return Err(ProofError::Tx(format!(
                "entry #{} of the batch is not the entry shown",
                self.entry_index
            )));
        }
        if self.proof.index != u64::from(self.tx_index) {
            return Err(ProofError::Inclusion("proves another position".into()));
        }
        self.proof
            .verify(&tx.id(), &self.header.tx_root)
            .map_err(|e| ProofError::Inclusion(e.to_string()))?;
        if self.header.chain_id != self.chain_id || self.header.height != self.height {
            return Err(ProofError::Header("another chain or height".into()));
        }
        if self.header.validator_set_hash != validators.hash() {
            return Err(ProofError::Header(
                "decided by another validator set than the one given".into(),
            ));
        }
        self.commit
            .verify(&self.chain_id, self.height, &self.header.hash(), validators)
            .map_err(|e| ProofError::Commit(e.to_string()))
    }
}
