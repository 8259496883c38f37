//! The genesis document (`genesis.json`).

use std::path::Path;

use govchain_chaincode::catalog::{DataSource, Department};
use govchain_chaincode::genesis::InitialState;
use govchain_chaincode::TxError;
use govchain_ledger::hash::{hash, Domain};
use govchain_ledger::{codec, ChainId, Hash, PublicKey, TimestampMs, ValidatorSet};
use serde::{Deserialize, Serialize};

/// Largest genesis document read.
pub const MAX_GENESIS_BYTES: usize = 16 * 1024 * 1024;

/// Why a genesis document or cluster could not be read, built or written.
#[derive(Debug, thiserror::Error)]
pub enum GenesisError {
    /// Filesystem error.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// Not valid JSON/TOML of the expected shape.
    #[error("{0}")]
    Format(String),
    /// Content that chaincode refuses.
    #[error("invalid genesis: {0}")]
    Invalid(#[from] TxError),
    /// A key could not be made or written.
    #[error(transparent)]
    Key(#[from] govchain_ledger::crypto::KeyFileError),
    /// A development TLS certificate could not be made (R-SEC-6).
    #[error("TLS certificate: {0}")]
    Certificate(#[from] rcgen::Error),
}

/// The genesis document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisDoc {
    /// The chain id every transaction and vote names.
    pub chain_id: ChainId,
    /// The chain's start time.
    pub genesis_time: TimestampMs,
    /// The preset system administrator's key.
    pub system_admin: PublicKey,
    /// The departments with their administrator and validator keys.
    pub departments: Vec<Department>,
    /// The validator set of height 1.
    pub validators: ValidatorSet,
    /// The data-source catalog.
    pub sources: Vec<DataSource>,
}

impl GenesisDoc {
    /// The genesis hash (over the canonical encoding, not the JSON text).
    pub fn hash(&self) -> Hash {
        hash(Domain::Genesis, &codec::encode_infallible(self))
    }

    /// The initial chaincode state.
    pub fn initial_state(&self) -> InitialState {
        InitialState {
            system_admin: self.system_admin,
            departments: self.departments.clone(),
            validators: self.validators.clone(),
            sources: self.sources.clone(),
        }
    }

    /// Reads and validates a genesis file.
    pub fn read(path: &Path) -> Result<Self, GenesisError> {
        let bytes = std::fs::read(path).map_err(|source| GenesisError::Io {
            path: path.display().to_string(),
            source,
        })?;
        if bytes.len() > MAX_GENESIS_BYTES {
            return Err(GenesisError::Format(format!(
                "{}: larger than {MAX_GENESIS_BYTES} bytes",
                path.display()
            )));
        }
        let doc: GenesisDoc = serde_json::from_slice(&bytes)
            .map_err(|e| GenesisError::Format(format!("{}: {e}", path.display())))?;
        doc.initial_state().validate()?;
        Ok(doc)
    }

    /// Writes the document as pretty JSON.
    pub fn write(&self, path: &Path) -> Result<(), GenesisError> {
        let text =
            serde_json::to_string_pretty(self).map_err(|e| GenesisError::Format(e.to_string()))?;
        std::fs::write(path, text).map_err(|source| GenesisError::Io {
            path: path.display().to_string(),
            source,
        })
    }
}
