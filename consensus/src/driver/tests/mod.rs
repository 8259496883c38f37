//! Driver unit tests: each drives one or a few `Consensus` instances by hand. Shared helpers
//! here; the tests by topic in the submodules.

mod heights;
mod locking;
mod proposing;
mod refusals;

use std::collections::VecDeque;

use govchain_ledger::{ChainId, Commit, Height, Keypair, Round, Validator, ValidatorSet, Vote};

use super::*;
use crate::messages::{sign_vote, Proposal, SignedProposal, SignedVote};
use govchain_ledger::VoteKind;

const N: usize = 4;

fn chain() -> ChainId {
    ChainId::new("test-chain").unwrap()
}

fn keys() -> Vec<Keypair> {
    (0..N as u8)
        .map(|i| Keypair::from_seed([i + 1; 32]))
        .collect()
}

fn set(keys: &[Keypair]) -> ValidatorSet {
    ValidatorSet {
        validators: keys
            .iter()
            .map(|k| Validator {
                key: k.public(),
                power: 1,
                department: "d".into(),
            })
            .collect(),
    }
}

fn block(i: u8) -> Hash {
    Hash([i; 32])
}

/// Index of the proposer of (height, round) among `keys()`.
fn proposer_index(height: u64, round: u32) -> usize {
    ((height + u64::from(round)) % N as u64) as usize
}

fn node(keys: &[Keypair], i: usize) -> Consensus {
    Consensus::new(chain(), Some(keys[i].clone()), Config::default(), None)
}

fn start(c: &mut Consensus, keys: &[Keypair], height: u64) -> Vec<Action> {
    c.handle(Input::NewHeight {
        height: Height(height),
        validators: set(keys),
    })
}

fn vote(k: &Keypair, h: u64, r: u32, kind: VoteKind, value: Option<Hash>) -> SignedVote {
    sign_vote(
        Vote {
            chain_id: chain(),
            height: Height(h),
            round: Round(r),
            kind,
            block_hash: value,
        },
        k,
    )
}

fn proposal(k: &Keypair, h: u64, r: u32, b: Hash, pol: Option<u32>) -> SignedProposal {
    Proposal {
        chain_id: chain(),
        height: Height(h),
        round: Round(r),
        block_hash: b,
        pol_round: pol.map(Round),
    }
    .sign(k)
}

fn broadcasts(actions: &[Action]) -> Vec<Message> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Broadcast(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

fn signed_votes(actions: &[Action], kind: VoteKind) -> Vec<Vote> {
    broadcasts(actions)
        .into_iter()
        .filter_map(|m| match m {
            Message::Vote(v) if v.vote.kind == kind => Some(v.vote),
            _ => None,
        })
        .collect()
}

/// Every Broadcast is preceded by a Persist in the same batch (the signing state is durable).
fn assert_persist_before_broadcast(actions: &[Action]) {
    let mut persisted = false;
    for a in actions {
        match a {
            Action::Persist(_) => persisted = true,
            Action::Broadcast(_) => assert!(persisted, "broadcast before persist: {actions:?}"),
            _ => {}
        }
    }
}

/// Delivers the proposal to `c`, answers its ValidateBlock with `valid`.
fn give_proposal(c: &mut Consensus, p: SignedProposal, valid: bool) -> Vec<Action> {
    let (h, r, b) = (p.proposal.height, p.proposal.round, p.proposal.block_hash);
    let mut out = c.handle(Input::Proposal(p));
    if out
        .iter()
        .any(|a| matches!(a, Action::ValidateBlock { .. }))
    {
        out.extend(c.handle(Input::BlockValidated {
            height: h,
            round: r,
            block_hash: b,
            valid,
        }));
    }
    out
}

/// A tiny lossless network of `Consensus` instances that answers BuildBlock/ValidateBlock.
struct Net {
    nodes: Vec<Consensus>,
    inbox: VecDeque<(usize, Input)>,
    commits: Vec<Vec<Commit>>,
    messages: usize,
}

impl Net {
    fn new(ks: &[Keypair], observers: usize) -> Self {
        let mut nodes: Vec<Consensus> = (0..ks.len()).map(|i| node(ks, i)).collect();
        for _ in 0..observers {
            nodes.push(Consensus::new(chain(), None, Config::default(), None));
        }
        let commits = vec![Vec::new(); nodes.len()];
        Self {
            nodes,
            inbox: VecDeque::new(),
            commits,
            messages: 0,
        }
    }

    fn act(&mut self, from: usize, actions: Vec<Action>, ks: &[Keypair]) {
        for a in actions {
            match a {
                Action::Broadcast(m) => {
                    self.messages += 1;
                    for to in (0..self.nodes.len()).filter(|t| *t != from) {
                        let input = match m.clone() {
                            Message::Proposal(p) => Input::Proposal(p),
                            Message::Vote(v) => Input::Vote(v),
                        };
                        self.inbox.push_back((to, input));
                    }
                }
                Action::BuildBlock { height, round } => self.inbox.push_back((
                    from,
                    Input::BlockBuilt {
                        height,
                        round,
                        block_hash: block(100 + height.0 as u8),
                    },
                )),
                Action::ValidateBlock {
                    height,
                    round,
                    block_hash,
                } => self.inbox.push_back((
                    from,
                    Input::BlockValidated {
                        height,
                        round,
                        block_hash,
                        valid: true,
                    },
                )),
                Action::Commit(c) => {
                    let next = c.height.next();
                    self.commits[from].push(c);
                    self.inbox.push_back((
                        from,
                        Input::NewHeight {
                            height: next,
                            validators: set(ks),
                        },
                    ));
                }
                _ => {}
            }
        }
    }

    fn run(&mut self, ks: &[Keypair], until_height: u64) {
        for i in 0..self.nodes.len() {
            let out = start(&mut self.nodes[i], ks, 1);
            self.act(i, out, ks);
        }
        let mut steps = 0;
        while let Some((to, input)) = self.inbox.pop_front() {
            steps += 1;
            assert!(steps < 100_000);
            let out = self.nodes[to].handle(input);
            self.act(to, out, ks);
            if self.nodes.iter().all(|n| n.height().0 > until_height) {
                break;
            }
        }
    }
}

#[test]
fn four_validators_and_an_observer_decide_with_verifying_certificates() {
    let ks = keys();
    let mut net = Net::new(&ks, 1);
    net.run(&ks, 3);
    for (i, commits) in net.commits.iter().enumerate() {
        assert_eq!(commits.len(), 3, "node {i}");
        for c in commits {
            c.verify(
                &chain(),
                c.height,
                &block(100 + c.height.0 as u8),
                &set(&ks),
            )
            .unwrap();
            assert_eq!(c.round, Round(0));
        }
    }
}
