//! The transaction kinds (DESIGN §6). The payload of a ledger transaction is the canonical
//! encoding of one [`TxKind`].
//!
//! Variants are only ever appended: the variant index is part of the encoding.

use govchain_ledger::{codec, PublicKey, MAX_TX_BYTES};
use serde::{Deserialize, Serialize};

use crate::access::{AuditEntry, Consent, Grant, User};
use crate::business::{CatalogEntry, EntryRef, Material, PutMode};
use crate::catalog::{DataSource, Department};
use crate::error::TxError;
use crate::evidence::VoteEquivocation;
use crate::records::Record;

/// A change to the validator set, proposed and approved by department administrators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ValidatorChange {
    /// A department's node becomes a validator.
    Add {
        /// The department.
        department: String,
        /// Its node key.
        key: PublicKey,
        /// Voting power (≥ 1).
        power: u64,
    },
    /// A validator leaves the set.
    Remove {
        /// Its key.
        key: PublicKey,
    },
}

/// Every kind of transaction chaincode executes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxKind {
    /// Registers a department (system administrator).
    RegisterDepartment(Department),
    /// Proposes a validator-set change (a department administrator; counts as its approval).
    ProposeValidatorChange(ValidatorChange),
    /// Approves a pending proposal (a department administrator).
    ApproveValidatorChange {
        /// The proposal id.
        proposal: u64,
    },
    /// Adds or replaces a data source definition (system administrator).
    RegisterSource(DataSource),
    /// A signed batch of records from one data source (the owner department's keys).
    SubmitRecords {
        /// The data source.
        source: String,
        /// The records.
        records: Vec<Record>,
    },
    /// Reports a validator that signed two conflicting votes (any validator).
    ReportEquivocation(VoteEquivocation),
    /// Adds or replaces a business-catalog entry (R-ARC-4, R-QRY-2…5): a matter type, category,
    /// display template or export format (system administrator) or the signer's own saved query
    /// (any registered key).
    PutCatalogEntry {
        /// Add (refused if it exists) or replace (refused if it does not).
        mode: PutMode,
        /// The complete definition.
        entry: CatalogEntry,
    },
    /// Deletes a business-catalog entry (as [`TxKind::PutCatalogEntry`] for who may sign).
    DeleteCatalogEntry(EntryRef),
    /// Adds or replaces one material of a matter type (R-ARC-5; system administrator).
    PutMaterial {
        /// Add (appended to the checklist) or replace (in place).
        mode: PutMode,
        /// The matter type.
        matter: String,
        /// The material.
        material: Material,
    },
    /// Deletes one material of a matter type (R-ARC-5; system administrator).
    DeleteMaterial {
        /// The matter type.
        matter: String,
        /// The material's id.
        id: String,
    },
    /// Adds or replaces users and system accounts, all or none (R-SEC-1; see
    /// [`crate::access_exec`] for who may sign).
    PutUsers {
        /// Add (refused if one exists) or replace (refused if one does not).
        mode: PutMode,
        /// The users.
        users: Vec<User>,
    },
    /// Deletes a user (as [`TxKind::PutUsers`] for who may sign).
    DeleteUser {
        /// The user id.
        id: String,
    },
    /// Grants read and/or export rights on other departments' sources (R-SEC-3; system
    /// administrator).
    PutGrant(Grant),
    /// Revokes a grant from this block on (system administrator).
    RevokeGrant {
        /// The grant id.
        id: String,
    },
    /// A resident's consent verified by SMS code (R-SEC-5; the verifying department node).
    RecordConsent(Consent),
    /// A batch of audit entries (R-AUD-1; the department node that served the requests).
    AppendAudit {
        /// The entries.
        entries: Vec<AuditEntry>,
    },
}

impl TxKind {
    /// Number of variants; an encoded variant index at or above it is an unknown kind.
    pub const COUNT: u32 = 16;

    /// Canonical bytes (a ledger transaction's payload).
    pub fn encode(&self) -> Vec<u8> {
        codec::encode_infallible(self)
    }

    /// Decodes a payload, telling an unknown kind apart from a malformed one.
    pub fn decode(payload: &[u8]) -> Result<Self, TxError> {
        if let Some(tag) = payload.get(..4) {
            let mut b = [0u8; 4];
            b.copy_from_slice(tag);
            let tag = u32::from_le_bytes(b);
            if tag >= Self::COUNT {
                return Err(TxError::UnknownKind(tag));
            }
        }
        codec::decode(payload, MAX_TX_BYTES).map_err(|e| TxError::Malformed(e.to_string()))
    }

    /// A short name for logs and the API.
    pub fn name(&self) -> &'static str {
        match self {
            TxKind::RegisterDepartment(_) => "register_department",
            TxKind::ProposeValidatorChange(_) => "propose_validator_change",
            TxKind::ApproveValidatorChange { .. } => "approve_validator_change",
            TxKind::RegisterSource(_) => "register_source",
            TxKind::SubmitRecords { .. } => "submit_records",
            TxKind::ReportEquivocation(_) => "report_equivocation",
            TxKind::PutCatalogEntry { .. } => "put_catalog_entry",
            TxKind::DeleteCatalogEntry(_) => "delete_catalog_entry",
            TxKind::PutMaterial { .. } => "put_material",
            TxKind::DeleteMaterial { .. } => "delete_material",
            TxKind::PutUsers { .. } => "put_users",
            TxKind::DeleteUser { .. } => "delete_user",
            TxKind::PutGrant(_) => "put_grant",
            TxKind::RevokeGrant { .. } => "revoke_grant",
            TxKind::RecordConsent(_) => "record_consent",
            TxKind::AppendAudit { .. } => "append_audit",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_count_matches_the_enum() {
        // The last variant encodes with tag COUNT - 1.
        let k = TxKind::AppendAudit { entries: vec![] };
        assert_eq!(k.encode()[..4], (TxKind::COUNT - 1).to_le_bytes());
        assert_eq!(TxKind::decode(&k.encode()).unwrap(), k);
    }

    #[test]
    fn unknown_and_malformed_kinds_are_told_apart() {
        let mut b = 99u32.to_le_bytes().to_vec();
        b.extend([0u8; 8]);
        assert_eq!(TxKind::decode(&b), Err(TxError::UnknownKind(99)));
        assert!(matches!(
            TxKind::decode(&[1, 0, 0, 0, 7]),
            Err(TxError::Malformed(_))
        ));
        assert!(matches!(TxKind::decode(&[]), Err(TxError::Malformed(_))));
    }
}
