//! The state of the height being decided ([`HeightState`]), the validity cache of proposed
//! blocks, and the previous height's decision ([`LastCommit`]).
//!
//! Invariants: one [`HeightState`] per height, replaced (never reused) at `NewHeight`; at most
//! one `ValidateBlock` is asked per block hash per height; a block counts as valid only after
//! the node said so (or built it itself).

use std::collections::{BTreeMap, BTreeSet};

use govchain_ledger::{Hash, Height, PublicKey, Round, ValidatorSet};

use crate::messages::{Action, Message, SignedProposal, SignedVote};
use crate::round::RoundState;
use crate::votes::VoteKeeper;

/// What the node said about a proposed block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Validity {
    /// [`Action::ValidateBlock`] sent, no answer yet.
    Pending,
    Valid,
    Invalid,
}

/// The precommits that decided the previous height.
#[derive(Debug, Clone)]
pub(super) struct LastCommit {
    pub(super) height: Height,
    pub(super) validators: ValidatorSet,
    pub(super) precommits: Vec<SignedVote>,
}

/// Everything about the height being decided.
#[derive(Debug, Clone)]
pub(super) struct HeightState {
    pub(super) height: Height,
    pub(super) keeper: VoteKeeper,
    pub(super) state: RoundState,
    /// The first proposal from each round's proposer.
    pub(super) proposals: BTreeMap<Round, SignedProposal>,
    /// (round, digest) of conflicting proposals already reported.
    pub(super) reported_proposals: BTreeSet<(Round, Hash)>,
    /// Validity of every block proposed at this height.
    pub(super) validity: BTreeMap<Hash, Validity>,
    /// The round whose block this node asked the node to build.
    pub(super) building: Option<Round>,
    /// Validators seen signing votes for higher heights, and their power.
    pub(super) ahead: BTreeSet<PublicKey>,
    pub(super) ahead_power: u64,
    pub(super) sync_requested: bool,
    /// The lowest older round of this height a peer was seen in since the last rebroadcast.
    pub(super) peer_round_behind: Option<Round>,
    /// The precommits of the decision.
    pub(super) decision: Option<Vec<SignedVote>>,
}

impl HeightState {
    pub(super) fn new(height: Height, validators: ValidatorSet, state: RoundState) -> Self {
        Self {
            height,
            keeper: VoteKeeper::new(height, validators),
            state,
            proposals: BTreeMap::new(),
            reported_proposals: BTreeSet::new(),
            validity: BTreeMap::new(),
            building: None,
            ahead: BTreeSet::new(),
            ahead_power: 0,
            sync_requested: false,
            peer_round_behind: None,
            decision: None,
        }
    }

    /// Asks the node to validate `block_hash`, once per block per height.
    pub(super) fn request_validation(
        &mut self,
        round: Round,
        block_hash: Hash,
        out: &mut Vec<Action>,
    ) {
        if let std::collections::btree_map::Entry::Vacant(e) = self.validity.entry(block_hash) {
            e.insert(Validity::Pending);
            out.push(Action::ValidateBlock {
                height: self.height,
                round,
                block_hash,
            });
        }
    }

    /// Whether this exact message is already counted (checked before any signature check).
    pub(super) fn knows(&self, m: &Message) -> bool {
        match m {
            Message::Vote(v) => self.keeper.contains(v),
            Message::Proposal(p) => self
                .proposals
                .get(&p.proposal.round)
                .is_some_and(|first| first.proposal == p.proposal),
        }
    }
}
