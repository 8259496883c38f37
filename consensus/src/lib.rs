//! govchain consensus: the round-robin, Tendermint-style BFT state machine (DESIGN §4) and its
//! deterministic simulator.
//!
//! The state machine is pure: [`Consensus::handle`] takes an [`Input`] and returns
//! [`Action`]s; the node performs the IO (gossip, timers, storage, block building and
//! validation). Proposer of (height, round) is `validators[(height + round) % n]`. Safety holds
//! with f faulty validators of 3f+1; liveness once the network heals. It does no IO, reads no
//! clock and draws no randomness it was not given.
//!
//! Modules, malachite-style: [`round`] (one height's round state machine, Algorithm 1),
//! [`votes`] (the vote keeper: tallies, quorums, equivocation), [`driver`] ([`Consensus`]:
//! heights, timeouts, proposer selection, buffering, persistence), [`sim`] (the deterministic
//! simulator behind `govchain sim`).
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::panic))]

pub mod buffer;
pub mod driver;
pub mod error;
pub mod limits;
pub mod messages;
pub mod round;
pub mod sim;
pub mod verify;
pub mod votes;

pub use driver::Consensus;
pub use error::{ConfigError, MessageError};
pub use messages::*;
pub use verify::{Ed25519Verifier, MemoVerifier, SignatureVerifier};
