//! govchain ledger: the chain's data types, their one canonical encoding, domain-separated
//! hashing, ed25519 signatures, RFC 6962-style Merkle trees and the RocksDB store.
//!
//! Invariants owned here:
//! - every byte string that is hashed or signed is produced by [`codec`] and nothing else;
//! - every hash names its domain ([`hash::Domain`]), so bytes of one type never verify as another;
//! - a committed block, its certificate, its state writes and the new tip reach disk together
//!   ([`store::Store::commit_block`]) or not at all.
//!
//! This crate does no networking and reads no clock.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::panic))]

pub mod bytes;
pub mod codec;
pub mod crypto;
pub mod hash;
pub mod merkle;
#[cfg(test)]
mod proptests;
pub mod state;
pub mod store;
pub mod types;

pub use bytes::{Hash, PublicKey, Signature};
pub use codec::CodecError;
pub use crypto::{Keypair, SignatureError};
pub use state::{StateError, StateView, WriteSet};
pub use store::{Store, StoreError, Tip};
pub use types::*;
