//! The byzantine validators of the simulator: each runs an honest [`crate::Consensus`] inside,
//! and a [`Coalition`] rewrites what they send so that different honest peers see conflicting
//! signed messages.
//!
//! The coalition colludes: every honest peer is in one class, the same for all byzantine
//! members: it receives the original, the conflicting alternative, or both (so some honest
//! nodes see the equivocation and report it). Alternatives: a proposal for a second block
//! (valid or, half of the time, invalid); a vote for the other side's value (the coalition's
//! second block of that round if one exists, else nil ↔ the block seen proposed). So with more
//! than f members the coalition can fork the chain, and the agreement check must see it; with
//! at most f it must not. The same original always maps to the same alternative, so
//! rebroadcasts stay consistent. A member never signs for anyone but itself.

use std::collections::{BTreeMap, HashMap};

use govchain_ledger::{Hash, Height, Keypair, Round};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::world::block_hash;
use crate::messages::{sign_vote, Message, Proposal};

/// What one honest peer receives of the coalition's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Original,
    Alternative,
    Both,
}

/// The byzantine members' shared plan and memory.
#[derive(Debug)]
pub(crate) struct Coalition {
    classes: Vec<Class>,
    rng: ChaCha8Rng,
    /// The coalition's second block per (height, round) a member proposed in.
    alt_blocks: BTreeMap<(Height, Round), Hash>,
    /// The first block a member saw proposed per (height, round).
    seen: BTreeMap<(Height, Round), Hash>,
    alternatives: HashMap<Message, Message>,
    new_blocks: Vec<(Hash, Height, bool)>,
}

impl Coalition {
    /// A coalition of `members` among `n` validators.
    pub(crate) fn new(n: usize, members: &[usize], rng: &mut ChaCha8Rng) -> Self {
        let classes = (0..n)
            .map(|i| match rng.random_range(0..20) {
                _ if members.contains(&i) => Class::Original,
                0..=8 => Class::Original,
                9..=17 => Class::Alternative,
                _ => Class::Both,
            })
            .collect();
        Self {
            classes,
            rng: ChaCha8Rng::seed_from_u64(rng.random()),
            alt_blocks: BTreeMap::new(),
            seen: BTreeMap::new(),
            alternatives: HashMap::new(),
            new_blocks: Vec::new(),
        }
    }

    /// Remembers a proposal a member received (its block becomes a target for conflicting
    /// votes).
    pub(crate) fn saw(&mut self, msg: &Message) {
        if let Message::Proposal(p) = msg {
            self.seen
                .entry((p.proposal.height, p.proposal.round))
                .or_insert(p.proposal.block_hash);
        }
    }

    /// The second blocks created since the last call: (hash, height, valid).
    pub(crate) fn take_new_blocks(&mut self) -> Vec<(Hash, Height, bool)> {
        std::mem::take(&mut self.new_blocks)
    }

    /// What honest peer `to` receives instead of `msg`, sent by member `me` (with `key`).
    pub(crate) fn messages_for(
        &mut self,
        me: usize,
        to: usize,
        msg: &Message,
        key: &Keypair,
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
                let a = self.alternative(me, msg, key);
                self.alternatives.insert(msg.clone(), a.clone());
                a
            }
        };
        match class {
            Class::Alternative => vec![alt],
            _ => vec![alt, msg.clone()],
        }
    }

    fn alternative(&mut self, me: usize, msg: &Message, key: &Keypair) -> Message {
        match msg {
            Message::Proposal(p) => {
                let (h, r) = (p.proposal.height, p.proposal.round);
                let mut proposal: Proposal = p.proposal.clone();
                proposal.block_hash = self.alt_block(me, h, r);
                proposal.pol_round = None;
                Message::Proposal(proposal.sign(key))
            }
            Message::Vote(v) => {
                let (h, r) = (v.vote.height, v.vote.round);
                let mut vote = v.vote.clone();
                vote.block_hash = match self.alt_blocks.get(&(h, r)) {
                    // A member proposed two blocks: vote the one this side was shown.
                    Some(alt) if v.vote.block_hash != Some(*alt) => Some(*alt),
                    Some(_) => self.seen.get(&(h, r)).copied(),
                    None => match v.vote.block_hash {
                        Some(_) => None,
                        None => self.seen.get(&(h, r)).copied(),
                    },
                };
                if vote.block_hash == v.vote.block_hash {
                    // Nothing else to vote for: a block no one has.
                    let mut garbage = block_hash(h, r, me, 2).0;
                    garbage[0] = b'G';
                    vote.block_hash = Some(Hash(garbage));
                }
                Message::Vote(sign_vote(vote, key))
            }
        }
    }

    fn alt_block(&mut self, me: usize, h: Height, r: Round) -> Hash {
        if let Some(b) = self.alt_blocks.get(&(h, r)) {
            return *b;
        }
        let b = block_hash(h, r, me, 1);
        let valid = self.rng.random_bool(0.5);
        self.alt_blocks.insert((h, r), b);
        self.new_blocks.push((b, h, valid));
        b
    }
}
