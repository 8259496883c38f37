//! The deterministic consensus simulator behind `govchain sim` (DESIGN §4).
//!
//! N [`crate::Consensus`] instances (keys from `Keypair::from_seed`) run under a seeded
//! scheduler (ChaCha8 from a u64 seed) in virtual time: random message delay, loss,
//! duplication and reordering; partitions that heal; crashes and restarts from the last
//! persisted signing state plus the committed chain; byzantine validators that double-vote and
//! double-propose (see [`Scenario`]). Blocks are abstract hashes; the "node" half of each
//! instance builds, validates, commits and syncs them.
//!
//! Checked after every step that decides anything: agreement (no two honest nodes commit
//! different blocks at one height), validity (every committed block was proposed, is valid, and
//! its certificate verifies with `Commit::verify`); and at the end, progress (every honest node
//! that is up reaches the target height within [`PROGRESS_BOUND_MS`] of virtual time after the
//! last fault). Same (scenario, validators, seed, heights) ⇒ the identical run; a failure says
//! how to replay it. The simulator reads no clock and uses no randomness but the seed's.

mod byzantine;
mod cache;
mod certs;
mod scenario;
#[cfg(test)]
mod tests;
mod trace;
mod world;

use std::fmt;
use std::num::NonZeroUsize;
use std::ops::Range;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use cache::RunCache;

pub use scenario::{Scenario, UnknownScenario};
pub use world::{MAX_EVENTS, PROGRESS_BOUND_MS, SIM_CHAIN_ID};

/// Heights per run when the caller does not say.
pub const DEFAULT_HEIGHTS: u64 = 4;
/// Fewest validators a run accepts (f ≥ 1, so every scenario has a fault to inject).
pub const MIN_VALIDATORS: usize = 4;
/// Most validators a run accepts.
pub const MAX_VALIDATORS: usize = 64;
/// Most heights a run accepts.
pub const MAX_HEIGHTS: u64 = 10_000;

/// The property a run violated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The run's parameters are out of range.
    Parameters,
    /// Two honest nodes committed different blocks at one height.
    Agreement,
    /// A committed block was not proposed or not valid, or its certificate does not verify.
    Validity,
    /// Honest nodes did not all reach the target height in time.
    Progress,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Check::Parameters => "parameters",
            Check::Agreement => "agreement",
            Check::Validity => "validity",
            Check::Progress => "progress",
        })
    }
}

/// A failed run: which scenario, seed and check, what happened, and how to replay it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("simulation {scenario} with {validators} validators, seed {seed}: {check} check failed: {detail}\nreplay with: {}", self.replay_command())]
pub struct SimFailure {
    /// The scenario.
    pub scenario: Scenario,
    /// Number of validators.
    pub validators: usize,
    /// The seed.
    pub seed: u64,
    /// Target height.
    pub heights: u64,
    /// The violated property.
    pub check: Check,
    /// What happened.
    pub detail: String,
}

impl SimFailure {
    /// The command that replays exactly this run.
    pub fn replay_command(&self) -> String {
        let mut cmd = format!(
            "govchain sim --scenario {} --validators {} --seed {}",
            self.scenario, self.validators, self.seed
        );
        if self.heights != DEFAULT_HEIGHTS {
            cmd.push_str(&format!(" --heights {}", self.heights));
        }
        cmd
    }
}

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunReport {
    /// The scenario (`All` for a combined report).
    pub scenario: Scenario,
    /// Number of validators.
    pub validators: usize,
    /// The seed.
    pub seed: u64,
    /// Target height.
    pub heights: u64,
    /// Heights every honest node committed (the minimum over honest nodes that must progress).
    pub decided_heights: u64,
    /// Blocks committed by consensus decisions (all nodes).
    pub consensus_commits: u64,
    /// Blocks applied through sync (all nodes).
    pub synced_heights: u64,
    /// Messages delivered.
    pub messages: u64,
    /// Events processed.
    pub events: u64,
    /// Highest round any block was committed in.
    pub max_round: u32,
    /// Virtual time at the end, in ms.
    pub virtual_time_ms: u64,
    /// Evidence actions (equivocations reported).
    pub evidence: u64,
    /// Sync requests.
    pub sync_requests: u64,
    /// Crashes injected.
    pub crashes: u64,
    /// Restarts.
    pub restarts: u64,
}

impl RunReport {
    fn absorb(&mut self, r: &RunReport) {
        self.decided_heights += r.decided_heights;
        self.consensus_commits += r.consensus_commits;
        self.synced_heights += r.synced_heights;
        self.messages += r.messages;
        self.events += r.events;
        self.max_round = self.max_round.max(r.max_round);
        self.virtual_time_ms += r.virtual_time_ms;
        self.evidence += r.evidence;
        self.sync_requests += r.sync_requests;
        self.crashes += r.crashes;
        self.restarts += r.restarts;
    }
}

/// Totals over many runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Runs completed.
    pub runs: u64,
    /// Heights decided (sum over runs of each run's `decided_heights`).
    pub heights_decided: u64,
    /// Blocks applied through sync.
    pub synced_heights: u64,
    /// Messages delivered.
    pub messages: u64,
    /// Highest round any block needed.
    pub max_round: u32,
    /// Virtual time, summed over runs, in ms.
    pub virtual_time_ms: u64,
    /// Equivocations reported.
    pub evidence: u64,
}

impl Summary {
    fn add(&mut self, r: &RunReport) {
        self.runs += 1;
        self.heights_decided += r.decided_heights;
        self.synced_heights += r.synced_heights;
        self.messages += r.messages;
        self.max_round = self.max_round.max(r.max_round);
        self.virtual_time_ms += r.virtual_time_ms;
        self.evidence += r.evidence;
    }

    fn merge(&mut self, o: &Summary) {
        self.runs += o.runs;
        self.heights_decided += o.heights_decided;
        self.synced_heights += o.synced_heights;
        self.messages += o.messages;
        self.max_round = self.max_round.max(o.max_round);
        self.virtual_time_ms += o.virtual_time_ms;
        self.evidence += o.evidence;
    }
}

fn check_parameters(
    scenario: Scenario,
    validators: usize,
    seed: u64,
    heights: u64,
) -> Result<(), SimFailure> {
    let bad = |detail: String| SimFailure {
        scenario,
        validators,
        seed,
        heights,
        check: Check::Parameters,
        detail,
    };
    if !(MIN_VALIDATORS..=MAX_VALIDATORS).contains(&validators) {
        return Err(bad(format!(
            "validators must be {MIN_VALIDATORS}..={MAX_VALIDATORS}"
        )));
    }
    if !(1..=MAX_HEIGHTS).contains(&heights) {
        return Err(bad(format!("heights must be 1..={MAX_HEIGHTS}")));
    }
    Ok(())
}

/// Runs one seeded simulation (`All`: each scenario in turn, reports summed).
pub fn run(
    scenario: Scenario,
    validators: usize,
    seed: u64,
    heights: u64,
) -> Result<RunReport, SimFailure> {
    run_cached(scenario, validators, seed, heights, &mut RunCache::new())
}

fn run_cached(
    scenario: Scenario,
    validators: usize,
    seed: u64,
    heights: u64,
    cache: &mut RunCache,
) -> Result<RunReport, SimFailure> {
    check_parameters(scenario, validators, seed, heights)?;
    let mut total = RunReport {
        scenario,
        validators,
        seed,
        heights,
        ..RunReport::default()
    };
    let concrete = scenario.expand();
    for s in &concrete {
        let rng = ChaCha8Rng::seed_from_u64(seed);
        let r = world::World::new(*s, validators, seed, heights, rng, cache).run()?;
        if concrete.len() == 1 {
            return Ok(r);
        }
        total.absorb(&r);
    }
    Ok(total)
}

/// Runs one concrete scenario printing every event and action to stderr (for debugging).
pub fn trace(
    scenario: Scenario,
    validators: usize,
    seed: u64,
    heights: u64,
) -> Result<RunReport, SimFailure> {
    check_parameters(scenario, validators, seed, heights)?;
    let rng = ChaCha8Rng::seed_from_u64(seed);
    let mut cache = RunCache::new();
    let mut w = world::World::new(scenario, validators, seed, heights, rng, &mut cache);
    w.trace = true;
    w.run()
}

/// Runs every seed of `seeds` (each scenario of `All`), stopping at the first failure.
pub fn run_seeds(
    scenario: Scenario,
    validators: usize,
    seeds: Range<u64>,
    heights: u64,
) -> Result<Summary, SimFailure> {
    let mut summary = Summary::default();
    let mut cache = RunCache::new();
    for s in scenario.expand() {
        for seed in seeds.clone() {
            summary.add(&run_cached(s, validators, seed, heights, &mut cache)?);
        }
    }
    Ok(summary)
}

/// [`run_seeds`] split over `threads` OS threads (seeds interleaved). Runs are independent and
/// deterministic, so the result is the same as sequentially; on failure, the failing run with
/// the lowest seed found is returned.
pub fn run_seeds_parallel(
    scenario: Scenario,
    validators: usize,
    seeds: Range<u64>,
    heights: u64,
    threads: NonZeroUsize,
) -> Result<Summary, SimFailure> {
    let t = threads.get() as u64;
    let results: Vec<Result<Summary, SimFailure>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..t)
            .map(|k| {
                let seeds = seeds.clone();
                scope.spawn(move || {
                    let mut summary = Summary::default();
                    let mut cache = RunCache::new();
                    for s in scenario.expand() {
                        for seed in seeds.clone().filter(|x| x % t == k) {
                            summary.add(&run_cached(s, validators, seed, heights, &mut cache)?);
                        }
                    }
                    Ok(summary)
                })
            })
            .collect();
        handles
            .into_iter()
            // A panic in a run is a bug: pass it on unchanged.
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    let mut summary = Summary::default();
    let mut failure: Option<SimFailure> = None;
    for r in results {
        match r {
            Ok(s) => summary.merge(&s),
            Err(e) => {
                if failure.as_ref().is_none_or(|f| e.seed < f.seed) {
                    failure = Some(e);
                }
            }
        }
    }
    match failure {
        Some(f) => Err(f),
        None => Ok(summary),
    }
}
