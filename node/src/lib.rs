//! The govchain node: chain state and block rules, mempool, block production, the auditor's
//! replay, the client, synthetic data and benchmarks. The `govchain` binary wires them to a CLI.
#![forbid(unsafe_code)]

pub mod bench;
pub mod chain;
pub mod client;
pub mod mempool;
pub mod producer;
pub mod server;
pub mod submit;
pub mod synth;
pub mod verify;
