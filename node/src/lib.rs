//! The govchain node: chain state and block rules, mempool, block production, the auditor's
//! replay, the client, synthetic data and benchmarks. The `govchain` binary wires them to a CLI.
#![forbid(unsafe_code)]

pub mod bench;
pub mod bench_query;
pub mod bench_sync;
pub mod catalog_cli;
pub mod chain;
pub mod client;
pub mod cluster;
pub mod demo;
pub mod dept_sim;
pub mod driver;
pub mod legacy_codec;
pub mod mempool;
pub mod net;
pub mod schedule;
pub mod server;
pub mod submit;
pub mod sync;
pub mod synth;
pub mod users_cli;
pub mod verify;

/// Wall-clock milliseconds: the node's IO edge. Chaincode and consensus get time only from block
/// headers and from their inputs.
pub fn now_ms() -> govchain_ledger::TimestampMs {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    govchain_ledger::TimestampMs(ms)
}
