//! Why a transaction is refused. Each variant has a stable machine-readable code for the API.

use govchain_ledger::{PublicKey, StateError};

/// A transaction that cannot be applied. A refused transaction changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    /// The payload is not a known transaction kind.
    #[error("unknown transaction kind #{0}")]
    UnknownKind(u32),
    /// The payload does not decode.
    #[error("malformed transaction payload: {0}")]
    Malformed(String),
    /// Transaction for another chain.
    #[error("transaction is for chain {got:?}, this chain is {expected:?}")]
    WrongChain {
        /// The tx's chain id.
        got: String,
        /// This chain.
        expected: String,
    },
    /// The (signer, nonce) pair was already used.
    #[error("nonce {nonce} of signer {signer} was already used")]
    Replay {
        /// The signer.
        signer: PublicKey,
        /// The nonce.
        nonce: u64,
    },
    /// The signer may not sign this kind.
    #[error("signer {signer} may not {action}")]
    Unauthorized {
        /// The signer.
        signer: PublicKey,
        /// What it tried.
        action: String,
    },
    /// A referenced entity does not exist.
    #[error("unknown {what} {id:?}")]
    NotFound {
        /// Entity kind.
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// The entity already exists.
    #[error("{what} {id:?} already exists")]
    AlreadyExists {
        /// Entity kind.
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// A field of the transaction is invalid.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// Which field.
        field: String,
        /// Why.
        reason: String,
    },
    /// A record of a batch is invalid.
    #[error("record #{index} ({key:?}): {reason}")]
    InvalidRecord {
        /// Position in the batch.
        index: usize,
        /// Its record key, if readable.
        key: String,
        /// Why.
        reason: String,
    },
    /// The entry is still referenced by others and cannot be removed or narrowed.
    #[error("{what} {id:?} is in use by {by}")]
    InUse {
        /// Entity kind.
        what: &'static str,
        /// Its id.
        id: String,
        /// What refers to it.
        by: String,
    },
    /// A size limit was exceeded.
    #[error("{what}: {got} exceeds the limit of {max}")]
    TooLarge {
        /// What.
        what: &'static str,
        /// Size given.
        got: usize,
        /// The limit.
        max: usize,
    },
    /// State could not be read (not the transaction's fault).
    #[error(transparent)]
    State(#[from] StateError),
}

impl TxError {
    /// Stable error code for API clients.
    pub fn code(&self) -> &'static str {
        match self {
            TxError::UnknownKind(_) => "unknown_kind",
            TxError::Malformed(_) => "malformed_payload",
            TxError::WrongChain { .. } => "wrong_chain",
            TxError::Replay { .. } => "replayed_nonce",
            TxError::Unauthorized { .. } => "unauthorized_signer",
            TxError::NotFound { .. } => "not_found",
            TxError::AlreadyExists { .. } => "already_exists",
            TxError::Invalid { .. } => "invalid_field",
            TxError::InvalidRecord { .. } => "invalid_record",
            TxError::TooLarge { .. } => "too_large",
            TxError::InUse { .. } => "in_use",
            TxError::State(_) => "state_unavailable",
        }
    }
}

pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> TxError {
    TxError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}
