//! The byzantine validator of the simulator: an honest [`crate::Consensus`] inside, whose
//! outgoing messages are rewritten so that different peers see conflicting signed messages.
//!
//! For each message it signed, every peer is in one class, fixed per run: it receives the
//! original, the conflicting alternative, or both (so some honest nodes see the equivocation
//! and report it). Alternatives: a proposal for a second block of its own (valid or, half of
//! the time, invalid); a vote for another value (nil ↔ the round's block, or its own second
//! block). The same original always maps to the same alternative, so rebroadcasts stay
//! consistent. It never signs for another validator (it cannot).

use std::collections::{BTreeMap, HashMap};

use govchain_ledger::{Hash, Height, Keypair, Round};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::world::block_hash;
use crate::messages::{sign_vote, Message, Proposal};

/// What one peer receives of this validator's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Original,
    Alternative,
    Both,
}

/// A double-voting, double-proposing validator.
#[derive(Debug)]
pub(crate) struct Byzantine {
    me: usize,
    classes: Vec<Class>,
    rng: ChaCha8Rng,
    /// Its second block per (height, round) it proposed in.
    alt_blocks: BTreeMap<(Height, Round), Hash>,
    /// The block it saw proposed (by others) per (height, round).
    seen: BTreeMap<(Height, Round), Hash>,
    alternatives: HashMap<Message, Message>,
    new_blocks: Vec<(Hash, Height, bool)>,
}

impl Byzantine {
    pub(crate) fn new(me: usize, n: usize, rng: &mut ChaCha8Rng) -> Self {
        let classes = (0..n)
            .map(|_| match rng.random_range(0..20) {
                0..=8 => Class::Original,
                9..=17 => Class::Alternative,
                _ => Class::Both,
            })
            .collect();
        Self {
            me,
            classes,
            rng: ChaCha8Rng::seed_from_u64(rng.random()),
            alt_blocks: BTreeMap::new(),
            seen: BTreeMap::new(),
            alternatives: HashMap::new(),
            new_blocks: Vec::new(),
        }
    }

    /// Remembers a proposal it received (its block becomes a target for conflicting votes).
    pub(crate) fn saw(&mut self, msg: &Message) {
        if let Message::Proposal(p) = msg {
            self.seen
                .entry((p.proposal.height, p.proposal.round))
                .or_insert(p.proposal.block_hash);
        }
    }

    /// The alternative blocks created since the last call: (hash, height, valid).
    pub(crate) fn take_new_blocks(&mut self) -> Vec<(Hash, Height, bool)> {
        std::mem::take(&mut self.new_blocks)
    }

    /// What peer `to` receives instead of `msg`.
    pub(crate) fn messages_for(
        &mut self,
        to: usize,
        msg: &Message,
        key: &Keypair,
        seed: u64,
    ) -> Vec<Message> {
        let mine = match msg {
            Message::Proposal(p) => p.proposer == key.public(),
            Message::Vote(v) => v.validator == key.public(),
        };
        let class = self.classes.get(to).copied().unwrap_or(Class::Original);
        if !mine || class == Class::Original {
            return vec![msg.clone()];
        }
        let alt = match self.alternatives.get(msg) {
            Some(a) => a.clone(),
            None => {
                let a = self.alternative(msg, key, seed);
                self.alternatives.insert(msg.clone(), a.clone());
                a
            }
        };
        match class {
            Class::Alternative => vec![alt],
            _ => vec![alt, msg.clone()],
        }
    }

    fn alternative(&mut self, msg: &Message, key: &Keypair, seed: u64) -> Message {
        match msg {
            Message::Proposal(p) => {
                let (h, r) = (p.proposal.height, p.proposal.round);
                let alt = self.alt_block(h, r, seed);
                let mut proposal: Proposal = p.proposal.clone();
                proposal.block_hash = alt;
                proposal.pol_round = None;
                Message::Proposal(proposal.sign(key))
            }
            Message::Vote(v) => {
                let (h, r) = (v.vote.height, v.vote.round);
                let target = self
                    .alt_blocks
                    .get(&(h, r))
                    .or_else(|| self.seen.get(&(h, r)))
                    .copied();
                let mut vote = v.vote.clone();
                vote.block_hash = match (v.vote.block_hash, target) {
                    (Some(b), Some(t)) if b != t => Some(t),
                    (None, Some(t)) => Some(t),
                    _ => None,
                };
                if vote.block_hash == v.vote.block_hash {
                    // Nothing else to vote for: a block no one has.
                    let mut garbage = block_hash(seed, h, r, self.me, 2).0;
                    garbage[0] = b'G';
                    vote.block_hash = Some(Hash(garbage));
                }
                Message::Vote(sign_vote(vote, key))
            }
        }
    }

    fn alt_block(&mut self, h: Height, r: Round, seed: u64) -> Hash {
        if let Some(b) = self.alt_blocks.get(&(h, r)) {
            return *b;
        }
        let b = block_hash(seed, h, r, self.me, 1);
        let valid = self.rng.random_bool(0.5);
        self.alt_blocks.insert((h, r), b);
        self.new_blocks.push((b, h, valid));
        b
    }
}
