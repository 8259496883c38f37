//! govchain consensus: the round-robin, Tendermint-style BFT state machine (DESIGN §4).
//!
//! This crate will hold the pure state machine — `handle(input) -> Vec<Action>` with proposer
//! `validators[(height + round) % n]`, propose/prevote/precommit, locking, growing timeouts and
//! commit certificates — and its deterministic simulator. It does no IO, reads no clock and draws
//! no randomness it was not given.
//!
//! Until it lands (issue 4), a node runs a single-validator chain: the node's chain task signs
//! each block's one-signature certificate itself (`govchain-node::producer`), using the same
//! ledger types ([`govchain_ledger::Commit`], [`govchain_ledger::ValidatorSet`]) this crate will
//! drive.
#![forbid(unsafe_code)]

pub use govchain_ledger::{Commit, ValidatorSet};
