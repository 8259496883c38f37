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
use std::num::NonZeroUsize;
use std::sync::Arc;

use govchain_ledger::{ChainId, Commit, Hash, Height, Keypair, Round, Validator, ValidatorSet};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::byzantine::Byzantine;
use super::certs::Certificates;
use super::scenario::{Plan, Scenario};
use super::{Check, RunReport, SimFailure};
use crate::messages::{Action, Config, Input, Message, PersistedState};
use crate::verify::MemoVerifier;
use crate::Consensus;

/// Virtual time allowed, after the last fault ends, for every honest node to reach the target.
pub const PROGRESS_BOUND_MS: u64 = 120_000;
/// Most events one run may process (a livelock guard).
pub const MAX_EVENTS: u64 = 3_000_000;
/// Times a node retries a sync that found no peer ahead of it.
const MAX_SYNC_RETRIES: u32 = 100;
/// Wait between sync retries.
const SYNC_RETRY_MS: u64 = 500;
/// Entries remembered by the run's shared signature memo.
const MEMO_ENTRIES: NonZeroUsize = match NonZeroUsize::new(1 << 20) {
    Some(n) => n,
    None => NonZeroUsize::MIN,
};
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
    byzantine: Option<Byzantine>,
    /// Must reach the target height (honest and not crashed for good).
    must_progress: bool,
    /// Byzantine-signed messages this node already relayed (gossip forwarding).
    relayed: HashSet<Message>,
}

/// The state of one run.
pub(crate) struct World {
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
    verifier: Arc<MemoVerifier>,
    nodes: Vec<SimNode>,
    blocks: BTreeMap<Hash, BlockInfo>,
    proposed: BTreeSet<Hash>,
    decided: BTreeMap<Height, Hash>,
    certs: Certificates,
    report: RunReport,
    /// Print every event and action to stderr (debugging a failing seed).
    pub(crate) trace: bool,
    /// Set when the last fault ends: the highest honest log then, plus one.
    goal_after_calm: Option<u64>,
}

fn sim_key(i: usize) -> Keypair {
    let mut seed = *b"govchain-sim-validator-key-seed.";
    seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
    Keypair::from_seed(seed)
}

/// A block hash unique to (seed, height, round, proposer, variant); not a real block.
pub(crate) fn block_hash(
    seed: u64,
    height: Height,
    round: Round,
    node: usize,
    variant: u8,
) -> Hash {
    let mut b = [0u8; 32];
    b[0] = b'B';
    b[1] = variant;
    b[2..10].copy_from_slice(&seed.to_le_bytes());
    b[10..18].copy_from_slice(&height.0.to_le_bytes());
    b[18..22].copy_from_slice(&round.0.to_le_bytes());
    b[22..30].copy_from_slice(&(node as u64).to_le_bytes());
    Hash(b)
}

impl World {
    pub(crate) fn new(
        scenario: Scenario,
        n: usize,
        seed: u64,
        target: u64,
        mut rng: ChaCha8Rng,
    ) -> Self {
        let plan = Plan::draw(scenario, n, &mut rng);
        #[allow(clippy::expect_used, reason = "a constant, valid chain id")]
        let chain_id =
            ChainId::new(SIM_CHAIN_ID).expect("invariant: SIM_CHAIN_ID is a valid chain id");
        let keys: Vec<Keypair> = (0..n).map(sim_key).collect();
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
        let verifier = Arc::new(MemoVerifier::new(MEMO_ENTRIES));
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
                    byzantine: byz.then(|| Byzantine::new(i, n, &mut rng)),
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
            verifier,
            nodes,
            blocks: BTreeMap::new(),
            proposed: BTreeSet::new(),
            decided: BTreeMap::new(),
            certs: Certificates::default(),
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
                    if n.byzantine.is_some() {
                        " (byzantine)"
                    } else {
                        ""
                    },
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

    fn dispatch(&mut self, event: Event) -> Result<(), SimFailure> {
        if self.trace {
            eprintln!("{:>8} {}", self.now_ms, super::trace::event(&event));
        }
        match event {
            Event::Deliver { from, to, msg } => {
                if !self.nodes[to].up || self.plan.cut(from, to, self.now_ms) {
                    return Ok(());
                }
                self.report.messages += 1;
                if let Some(b) = self.nodes[to].byzantine.as_mut() {
                    b.saw(&msg);
                } else if self.signed_by_byzantine(&msg)
                    && self.nodes[to].relayed.insert(msg.clone())
                {
                    // Gossip forwarding (gossipsub relays what it receives): an equivocator cannot
                    // show a message to some honest nodes and hide it from the others. Honest
                    // validators already send to everyone, so only byzantine-signed messages are
                    // relayed here, to keep runs cheap.
                    for k in (0..self.nodes.len()).filter(|k| *k != to && *k != from) {
                        self.send(to, k, msg.clone());
                    }
                }
                let input = match msg {
                    Message::Proposal(p) => Input::Proposal(p),
                    Message::Vote(v) => Input::Vote(v),
                };
                let out = self.nodes[to].consensus.handle(input);
                self.perform(to, out)
            }
            Event::Callback {
                node,
                incarnation,
                input,
            } => {
                if !self.live(node, incarnation) {
                    return Ok(());
                }
                let out = self.nodes[node].consensus.handle(input);
                self.perform(node, out)
            }
            Event::NewHeight { node, incarnation } => {
                if !self.live(node, incarnation) {
                    return Ok(());
                }
                self.new_height(node)
            }
            Event::Sync {
                node,
                incarnation,
                from,
                tries,
            } => {
                if self.live(node, incarnation) {
                    self.sync(node, from, tries)?;
                }
                Ok(())
            }
            Event::Crash { node } => {
                let n = &mut self.nodes[node];
                n.up = false;
                n.incarnation += 1;
                self.report.crashes += 1;
                Ok(())
            }
            Event::Restart { node } => self.restart(node),
        }
    }

    fn signed_by_byzantine(&self, msg: &Message) -> bool {
        let signer = match msg {
            Message::Proposal(p) => p.proposer,
            Message::Vote(v) => v.validator,
        };
        self.plan
            .byzantine
            .iter()
            .any(|b| self.keys[*b].public() == signer)
    }

    fn live(&self, node: usize, incarnation: u32) -> bool {
        self.nodes[node].up && self.nodes[node].incarnation == incarnation
    }

    fn new_height(&mut self, node: usize) -> Result<(), SimFailure> {
        let height = Height(self.nodes[node].log.len() as u64 + 1);
        let out = self.nodes[node].consensus.handle(Input::NewHeight {
            height,
            validators: self.validators.clone(),
        });
        self.perform(node, out)
    }

    /// A new `Consensus` from the persisted signing state, then NewHeight at log + 1.
    fn restart(&mut self, node: usize) -> Result<(), SimFailure> {
        let n = &mut self.nodes[node];
        n.up = true;
        n.incarnation += 1;
        n.consensus = Consensus::with_verifier(
            self.chain_id.clone(),
            Some(self.keys[node].clone()),
            Config::default(),
            n.persisted.clone(),
            self.verifier.clone(),
        );
        self.report.restarts += 1;
        self.new_height(node)
    }

    /// Performs a node's actions in order, like the real node would.
    fn perform(&mut self, node: usize, actions: Vec<Action>) -> Result<(), SimFailure> {
        let inc = self.nodes[node].incarnation;
        for action in actions {
            if self.trace {
                eprintln!(
                    "{:>8}   node {node} -> {}",
                    self.now_ms,
                    super::trace::action(&action)
                );
            }
            match action {
                Action::Persist(p) => self.nodes[node].persisted = Some(p),
                Action::Broadcast(msg) => self.broadcast(node, msg),
                Action::ScheduleTimeout {
                    height,
                    round,
                    step,
                    duration_ms,
                } => self.after(
                    duration_ms,
                    Event::Callback {
                        node,
                        incarnation: inc,
                        input: Input::Timeout {
                            height,
                            round,
                            step,
                        },
                    },
                ),
                Action::BuildBlock { height, round } => {
                    let block_hash = block_hash(self.seed, height, round, node, 0);
                    self.blocks.insert(
                        block_hash,
                        BlockInfo {
                            height,
                            valid: true,
                        },
                    );
                    let delay = self.rng.random_range(1..20);
                    self.after(
                        delay,
                        Event::Callback {
                            node,
                            incarnation: inc,
                            input: Input::BlockBuilt {
                                height,
                                round,
                                block_hash,
                            },
                        },
                    );
                }
                Action::ValidateBlock {
                    height,
                    round,
                    block_hash,
                } => {
                    let valid = self
                        .blocks
                        .get(&block_hash)
                        .is_some_and(|b| b.valid && b.height == height);
                    let delay = self.rng.random_range(1..20);
                    self.after(
                        delay,
                        Event::Callback {
                            node,
                            incarnation: inc,
                            input: Input::BlockValidated {
                                height,
                                round,
                                block_hash,
                                valid,
                            },
                        },
                    );
                }
                Action::Commit(commit) => self.commit(node, commit, false)?,
                Action::RequestSync { from } => {
                    self.report.sync_requests += 1;
                    let delay = self.rng.random_range(20..100);
                    self.after(
                        delay,
                        Event::Sync {
                            node,
                            incarnation: inc,
                            from,
                            tries: 0,
                        },
                    );
                }
                Action::Evidence(_) => self.report.evidence += 1,
            }
        }
        Ok(())
    }

    fn broadcast(&mut self, from: usize, msg: Message) {
        for to in (0..self.nodes.len()).filter(|t| *t != from) {
            let msgs = match self.nodes[from].byzantine.as_mut() {
                Some(b) => b.messages_for(to, &msg, &self.keys[from], self.seed),
                None => vec![msg.clone()],
            };
            for m in msgs {
                self.send(from, to, m);
            }
        }
        // A byzantine node's second blocks join the registry (valid or not).
        if let Some(b) = self.nodes[from].byzantine.as_mut() {
            for (h, height, valid) in b.take_new_blocks() {
                self.blocks.insert(h, BlockInfo { height, valid });
            }
        }
    }

    fn send(&mut self, from: usize, to: usize, msg: Message) {
        if let Message::Proposal(p) = &msg {
            self.proposed.insert(p.proposal.block_hash);
        }
        let net = self.plan.net;
        if self.plan.cut(from, to, self.now_ms)
            || (net.drop > 0.0 && self.rng.random_bool(net.drop))
        {
            return;
        }
        let copies = if net.dup > 0.0 && self.rng.random_bool(net.dup) {
            self.rng.random_range(2..=3)
        } else {
            1
        };
        for _ in 0..copies {
            let delay = self.rng.random_range(net.delay_min_ms..=net.delay_max_ms);
            self.after(
                delay,
                Event::Deliver {
                    from,
                    to,
                    msg: msg.clone(),
                },
            );
        }
    }

    /// Appends a decided block to `node`'s log (from its own Commit, or from sync), checking
    /// agreement and validity first.
    fn commit(&mut self, node: usize, commit: Commit, synced: bool) -> Result<(), SimFailure> {
        let height = commit.height;
        let expected = Height(self.nodes[node].log.len() as u64 + 1);
        if height < expected {
            // Already have it (synced first): it must be the same block.
            let have = self.nodes[node].log[(height.0 - 1) as usize].0;
            if have != commit.block_hash && self.nodes[node].byzantine.is_none() {
                return Err(self.fail(
                    Check::Agreement,
                    format!(
                        "node {node} decided {} at height {height} but has {have}",
                        commit.block_hash
                    ),
                ));
            }
            return Ok(());
        }
        if height > expected {
            return Err(self.fail(
                Check::Validity,
                format!(
                    "node {node} committed height {height} with only {} blocks",
                    expected.0 - 1
                ),
            ));
        }
        if self.nodes[node].byzantine.is_none() {
            self.check_decision(node, &commit)?;
        }
        self.report.max_round = self.report.max_round.max(commit.round.0);
        if synced {
            self.report.synced_heights += 1;
        } else {
            self.report.consensus_commits += 1;
        }
        self.nodes[node].log.push((commit.block_hash, commit));
        let inc = self.nodes[node].incarnation;
        let delay = self.rng.random_range(1..5);
        self.after(
            delay,
            Event::NewHeight {
                node,
                incarnation: inc,
            },
        );
        Ok(())
    }

    fn check_decision(&mut self, node: usize, commit: &Commit) -> Result<(), SimFailure> {
        let (height, block) = (commit.height, commit.block_hash);
        if let Some(other) = self.decided.get(&height) {
            if *other != block {
                return Err(self.fail(
                    Check::Agreement,
                    format!("node {node} decided {block} at height {height}, another honest node decided {other}"),
                ));
            }
        }
        match self.blocks.get(&block) {
            Some(b) if b.valid && b.height == height && self.proposed.contains(&block) => {}
            _ => {
                return Err(self.fail(
                    Check::Validity,
                    format!("node {node} decided {block} at height {height}, which no one proposed as a valid block"),
                ))
            }
        }
        if let Err(e) = self
            .certs
            .verify(commit, &self.chain_id, height, &block, &self.validators)
        {
            return Err(self.fail(
                Check::Validity,
                format!("node {node}'s certificate for height {height} does not verify: {e}"),
            ));
        }
        self.decided.insert(height, block);
        Ok(())
    }

    /// Copies decided blocks with certificates from an honest, reachable node that has them.
    fn sync(&mut self, node: usize, from: Height, tries: u32) -> Result<(), SimFailure> {
        let have = self.nodes[node].log.len();
        if have as u64 >= from.0 {
            return Ok(());
        }
        let donor = (0..self.nodes.len())
            .filter(|d| {
                *d != node
                    && self.nodes[*d].up
                    && self.nodes[*d].byzantine.is_none()
                    && !self.plan.cut(node, *d, self.now_ms)
            })
            .max_by_key(|d| (self.nodes[*d].log.len(), Reverse(*d)))
            .filter(|d| self.nodes[*d].log.len() > have);
        let Some(donor) = donor else {
            if tries < MAX_SYNC_RETRIES {
                let inc = self.nodes[node].incarnation;
                self.after(
                    SYNC_RETRY_MS,
                    Event::Sync {
                        node,
                        incarnation: inc,
                        from,
                        tries: tries + 1,
                    },
                );
            }
            return Ok(());
        };
        let entries: Vec<Commit> = self.nodes[donor].log[have..]
            .iter()
            .map(|(_, c)| c.clone())
            .collect();
        for c in entries {
            // Sync verifies every certificate before applying it.
            let checked =
                self.certs
                    .verify(&c, &self.chain_id, c.height, &c.block_hash, &self.validators);
            if let Err(e) = checked {
                return Err(self.fail(
                    Check::Validity,
                    format!(
                        "synced certificate for height {} from node {donor} does not verify: {e}",
                        c.height
                    ),
                ));
            }
            self.commit(node, c, true)?;
        }
        Ok(())
    }
}

