//! One simulated run: N [`Consensus`] instances, the "node" half of each (block building and
//! validation, commit log, persisted signing state, sync), a lossy network with partitions, and
//! an event queue in virtual time ordered by (time, sequence number).
//!
//! Invariants: the only randomness is the run's ChaCha8 RNG; events with equal times run in
//! the order they were scheduled; no wall clock is read. Agreement and validity are checked
//! whenever any honest node appends to its log (the only step that changes what is decided);
//! progress is checked against a virtual-time deadline after the last fault ends.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashSet};

use govchain_ledger::{ChainId, Commit, Hash, Height, Keypair, Round, Validator, ValidatorSet};
use rand_chacha::ChaCha8Rng;

use super::byzantine::Coalition;
use super::cache::RunCache;
use super::scenario::{Plan, Scenario};
use super::{Check, RunReport, SimFailure};
use crate::messages::{Config, Input, Message, PersistedState};
use crate::Consensus;

mod chain;
mod node;

/// Virtual time allowed, after the last fault ends, for every honest node to reach the target.
pub const PROGRESS_BOUND_MS: u64 = 120_000;
/// Most events one run may process (a livelock guard).
pub const MAX_EVENTS: u64 = 3_000_000;
/// Times a node retries a sync that found no peer ahead of it.
const MAX_SYNC_RETRIES: u32 = 100;
/// Wait between sync retries.
const SYNC_RETRY_MS: u64 = 500;
/// The simulated chain.
pub const SIM_CHAIN_ID: &str = "sim";

/// What happens at a point of virtual time.
#[derive(Debug, Clone)]
pub(crate) enum Event {
    Deliver {
        from: usize,
        to: usize,
        msg: Message,
    },
    Callback {
        node: usize,
        incarnation: u32,
        input: Input,
    },
    NewHeight {
        node: usize,
        incarnation: u32,
    },
    Sync {
        node: usize,
        incarnation: u32,
        from: Height,
        tries: u32,
    },
    Crash {
        node: usize,
    },
    Restart {
        node: usize,
    },
}

/// What a block is (blocks are abstract: only their hash travels).
#[derive(Debug, Clone, Copy)]
struct BlockInfo {
    height: Height,
    valid: bool,
}

struct SimNode {
    consensus: Consensus,
    /// Committed chain: `log[i]` is height i + 1.
    log: Vec<(Hash, Commit)>,
    persisted: Option<PersistedState>,
    up: bool,
    incarnation: u32,
    byzantine: bool,
    /// Must reach the target height (honest and not crashed for good).
    must_progress: bool,
    /// Byzantine-signed messages this node already relayed (gossip forwarding).
    relayed: HashSet<Message>,
}

/// The state of one run.
pub(crate) struct World<'c> {
    scenario: Scenario,
    seed: u64,
    target: u64,
    rng: ChaCha8Rng,
    plan: Plan,
    now_ms: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: BTreeMap<u64, Event>,
    chain_id: ChainId,
    keys: Vec<Keypair>,
    validators: ValidatorSet,
    nodes: Vec<SimNode>,
    /// What the byzantine members (if any) send to whom.
    coalition: Coalition,
    blocks: BTreeMap<Hash, BlockInfo>,
    proposed: BTreeSet<Hash>,
    decided: BTreeMap<Height, Hash>,
    cache: &'c mut RunCache,
    report: RunReport,
    /// Print every event and action to stderr (debugging a failing seed).
    pub(crate) trace: bool,
    /// Set when the last fault ends: the highest honest log then, plus one.
    goal_after_calm: Option<u64>,
}

/// A block hash unique to (height, round, proposer, variant) within a run; not a real block.
/// Not derived from the seed, so runs share signed votes (see [`super::cache`]).
pub(crate) fn block_hash(height: Height, round: Round, node: usize, variant: u8) -> Hash {
    let mut b = [0u8; 32];
    b[0] = b'B';
    b[1] = variant;
    b[10..18].copy_from_slice(&height.0.to_le_bytes());
    b[18..22].copy_from_slice(&round.0.to_le_bytes());
    b[22..30].copy_from_slice(&(node as u64).to_le_bytes());
    Hash(b)
}

impl<'c> World<'c> {
    pub(crate) fn new(
        scenario: Scenario,
        n: usize,
        seed: u64,
        target: u64,
        mut rng: ChaCha8Rng,
        cache: &'c mut RunCache,
    ) -> Self {
        let plan = Plan::draw(scenario, n, &mut rng);
        #[allow(clippy::expect_used, reason = "a constant, valid chain id")]
        let chain_id =
            ChainId::new(SIM_CHAIN_ID).expect("invariant: SIM_CHAIN_ID is a valid chain id");
        let keys = cache.keys(n);
        let validators = ValidatorSet {
            validators: keys
                .iter()
                .enumerate()
                .map(|(i, k)| Validator {
                    key: k.public(),
                    power: 1,
                    department: format!("dept-{i}"),
                })
                .collect(),
        };
        let verifier = cache.verifier.clone();
        let coalition = Coalition::new(n, &plan.byzantine, &mut rng);
        let nodes = (0..n)
            .map(|i| {
                let byz = plan.byzantine.contains(&i);
                let crashed_for_good = plan
                    .crashes
                    .iter()
                    .any(|c| c.node == i && c.restart_at_ms.is_none());
                SimNode {
                    consensus: Consensus::with_verifier(
                        chain_id.clone(),
                        Some(keys[i].clone()),
                        Config::default(),
                        None,
                        verifier.clone(),
                    ),
                    log: Vec::new(),
                    persisted: None,
                    up: true,
                    incarnation: 0,
                    byzantine: byz,
                    must_progress: !byz && !crashed_for_good,
                    relayed: HashSet::new(),
                }
            })
            .collect();
        let report = RunReport {
            scenario,
            validators: n,
            seed,
            heights: target,
            ..RunReport::default()
        };
        let mut w = World {
            scenario,
            seed,
            target,
            rng,
            plan,
            now_ms: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            chain_id,
            keys,
            validators,
            nodes,
            coalition,
            blocks: BTreeMap::new(),
            proposed: BTreeSet::new(),
            decided: BTreeMap::new(),
            cache,
            report,
            trace: false,
            goal_after_calm: None,
        };
        for c in w.plan.crashes.clone() {
            w.schedule(c.at_ms, Event::Crash { node: c.node });
            if let Some(t) = c.restart_at_ms {
                w.schedule(t, Event::Restart { node: c.node });
            }
        }
        w
    }

    /// Makes `nodes` byzantine regardless of the plan (tests of the checker itself, which may
    /// exceed the f bound).
    #[cfg(test)]
    pub(crate) fn force_byzantine(&mut self, nodes: &[usize]) {
        for &i in nodes {
            self.nodes[i].byzantine = true;
            self.nodes[i].must_progress = false;
        }
        self.coalition = Coalition::new(self.nodes.len(), nodes, &mut self.rng);
        self.plan.byzantine = nodes.to_vec();
    }

    fn fail(&self, check: Check, detail: String) -> SimFailure {
        SimFailure {
            scenario: self.scenario,
            validators: self.nodes.len(),
            seed: self.seed,
            heights: self.target,
            check,
            detail: format!("at virtual time {} ms: {detail}", self.now_ms),
        }
    }

    fn schedule(&mut self, at_ms: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse((at_ms, self.seq)));
        self.events.insert(self.seq, event);
    }

    fn after(&mut self, delay_ms: u64, event: Event) {
        self.schedule(self.now_ms.saturating_add(delay_ms), event);
    }

    /// Every honest node reached the target, and (after the last fault) one height more than
    /// any honest node had when the faults ended: progress is always checked after healing.
    fn done(&self) -> bool {
        let Some(after_calm) = self.goal_after_calm else {
            return false;
        };
        let goal = self.target.max(after_calm);
        self.nodes
            .iter()
            .all(|n| !n.must_progress || n.log.len() as u64 >= goal)
    }

    /// Runs to completion: Ok when every honest node reached the target in time.
    pub(crate) fn run(mut self) -> Result<RunReport, SimFailure> {
        let genesis = self.validators.clone();
        for i in 0..self.nodes.len() {
            let out = self.nodes[i].consensus.handle(Input::NewHeight {
                height: Height(1),
                validators: genesis.clone(),
            });
            self.perform(i, out)?;
        }
        let deadline = self.plan.calm_from_ms() + PROGRESS_BOUND_MS;
        while !self.done() {
            let Some(Reverse((at_ms, seq))) = self.queue.pop() else {
                return Err(self.fail(Check::Progress, "no events left".into()));
            };
            self.now_ms = at_ms;
            if self.goal_after_calm.is_none() && self.now_ms >= self.plan.calm_from_ms() {
                let highest = self
                    .nodes
                    .iter()
                    .filter(|n| n.must_progress)
                    .map(|n| n.log.len() as u64)
                    .max()
                    .unwrap_or(0);
                self.goal_after_calm = Some(highest + 1);
            }
            if self.now_ms > deadline || self.report.events >= MAX_EVENTS {
                return Err(self.fail(Check::Progress, self.progress_detail(deadline)));
            }
            self.report.events += 1;
            if let Some(event) = self.events.remove(&seq) {
                self.dispatch(event)?;
            }
        }
        self.report.virtual_time_ms = self.now_ms;
        self.report.decided_heights = self
            .nodes
            .iter()
            .filter(|n| n.must_progress)
            .map(|n| n.log.len() as u64)
            .min()
            .unwrap_or(0);
        Ok(self.report)
    }

    fn progress_detail(&self, deadline: u64) -> String {
        let state: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                format!(
                    "node {i}{}{}: log {} at h{} r{} {:?}",
                    if n.byzantine { " (byzantine)" } else { "" },
                    if n.up { "" } else { " (down)" },
                    n.log.len(),
                    n.consensus.height(),
                    n.consensus.round().0,
                    n.consensus.step()
                )
            })
            .collect();
        let goal = self.target.max(self.goal_after_calm.unwrap_or(0));
        format!(
            "honest nodes did not all reach height {} by {} ms (faults ended at {} ms); {}",
            goal,
            deadline,
            self.plan.calm_from_ms(),
            state.join("; ")
        )
    }
}
