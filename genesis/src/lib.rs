//! govchain genesis: the genesis document, the default data-source catalog, key generation and
//! the per-node configuration files of a cluster (R-CHN-5, R-ARC-6).
//!
//! The genesis document fixes the chain id, the start time, the departments with their keys,
//! the system administrator and the catalog. Its hash is the `prev_hash` of block 1, so every
//! block commits to it.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::panic))]

pub mod catalog;
pub mod config;
pub mod doc;
pub mod generate;
pub mod tls;

pub use config::{ConnectorConfig, NodeConfig};
pub use doc::{GenesisDoc, GenesisError};
pub use generate::{generate, GenerateOptions};
