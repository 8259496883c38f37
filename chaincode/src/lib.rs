//! govchain chaincode: the deterministic state machine every node and every auditor runs.
//!
//! It decodes transaction kinds ([`kinds`]), checks who may sign each ([`auth`]), validates data
//! records against the catalog ([`catalog`], [`person`]), executes a block into a sorted write set
//! ([`exec`]) and chains the app hash ([`app_hash`]). The business catalog — matter types,
//! materials, service categories, display templates, export formats, saved queries — is
//! [`business`] (definitions) and [`business_exec`] (execution).
//!
//! It never does IO, reads no clock and draws no randomness: time comes from the block header.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::panic))]

pub mod access;
pub mod access_exec;
#[cfg(test)]
mod access_tests;
pub mod app_hash;
pub mod auth;
pub mod business;
pub mod business_exec;
#[cfg(test)]
mod business_tests;
pub mod catalog;
pub mod error;
pub mod evidence;
pub mod exec;
#[cfg(test)]
mod exec_tests;
pub mod genesis;
pub mod keys;
pub mod kinds;
pub mod person;
pub mod proof;
pub mod records;
pub mod saved_query;

pub use error::TxError;
pub use exec::{execute_block, execute_until, BlockContext, BlockOutcome};
pub use kinds::TxKind;
