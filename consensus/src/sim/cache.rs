//! What the runs of one thread share: validator keys (fixed per index) and the memos of
//! signature checks (pure functions of their inputs).
//!
//! Blocks are named by (height, round, proposer, variant), not by seed, so different seeds
//! sign many identical votes and the memos pay off across runs. Sharing never changes a run's
//! result, only its cost: a run is still a function of (scenario, validators, seed, heights).
//! Both memos are bounded (see [`MEMO_ENTRIES`]).

use std::num::NonZeroUsize;
use std::sync::Arc;

use govchain_ledger::Keypair;

use super::certs::Certificates;
use crate::verify::MemoVerifier;

/// Entries remembered by the signature memo (and by the certificate memo).
pub(crate) const MEMO_ENTRIES: NonZeroUsize = match NonZeroUsize::new(1 << 20) {
    Some(n) => n,
    None => NonZeroUsize::MIN,
};

/// The simulated validator `i`'s key.
fn sim_key(i: usize) -> Keypair {
    let mut seed = *b"govchain-sim-validator-key-seed.";
    seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
    Keypair::from_seed(seed)
}

/// Shared by consecutive runs on one thread.
pub(crate) struct RunCache {
    pub(crate) verifier: Arc<MemoVerifier>,
    pub(crate) certs: Certificates,
    keys: Vec<Keypair>,
}

impl RunCache {
    pub(crate) fn new() -> Self {
        Self {
            verifier: Arc::new(MemoVerifier::new(MEMO_ENTRIES)),
            certs: Certificates::new(MEMO_ENTRIES),
            keys: Vec::new(),
        }
    }

    /// The keys of validators 0..n.
    pub(crate) fn keys(&mut self, n: usize) -> Vec<Keypair> {
        while self.keys.len() < n {
            self.keys.push(sim_key(self.keys.len()));
        }
        self.keys[..n].to_vec()
    }
}
