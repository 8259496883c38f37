//! Consensus messages and the inputs/actions of the state machine (DESIGN §4).
//!
//! The node (IO) feeds [`Input`]s to [`crate::Consensus::handle`] and performs the returned
//! [`Action`]s in order. Messages are signed over domain-separated digests
//! ([`Domain::Proposal`], [`Domain::Vote`]); a precommit's signature is exactly a commit
//! certificate signature ([`govchain_ledger::CommitSig`]).

use govchain_ledger::hash::{hash, Domain};
use govchain_ledger::{
    codec, crypto, ChainId, Commit, Hash, Height, Keypair, PublicKey, Round, Signature,
    SignatureError, ValidatorSet, Vote, VoteKind,
};
use serde::{Deserialize, Serialize};

/// A proposer's proposal of a block for (height, round).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Proposal {
    /// The chain.
    pub chain_id: ChainId,
    /// Height.
    pub height: Height,
    /// Round.
    pub round: Round,
    /// The proposed block's hash (the body travels beside the proposal).
    pub block_hash: Hash,
    /// The round of the polka that justifies re-proposing a valid value (Tendermint `validRound`).
    pub pol_round: Option<Round>,
}

impl Proposal {
    /// The digest the proposer signs.
    pub fn sign_digest(&self) -> Hash {
        hash(Domain::Proposal, &codec::encode_infallible(self))
    }

    /// Signs it.
    pub fn sign(self, key: &Keypair) -> SignedProposal {
        let signature = key.sign(&self.sign_digest());
        SignedProposal {
            proposal: self,
            proposer: key.public(),
            signature,
        }
    }
}

/// A signed proposal.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SignedProposal {
    /// The proposal.
    pub proposal: Proposal,
    /// Who signed it.
    pub proposer: PublicKey,
    /// Signature over [`Proposal::sign_digest`].
    pub signature: Signature,
}

impl SignedProposal {
    /// Checks the signature (not whether the signer is the round's proposer).
    pub fn verify(&self) -> Result<(), SignatureError> {
        crypto::verify(
            &self.proposer,
            &self.proposal.sign_digest(),
            &self.signature,
        )
    }
}

/// Signs a vote.
pub fn sign_vote(vote: Vote, key: &Keypair) -> SignedVote {
    let signature = key.sign(&vote.sign_digest());
    SignedVote {
        vote,
        validator: key.public(),
        signature,
    }
}

/// A signed prevote or precommit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SignedVote {
    /// The vote.
    pub vote: Vote,
    /// Who signed it.
    pub validator: PublicKey,
    /// Signature over [`Vote::sign_digest`].
    pub signature: Signature,
}

impl SignedVote {
    /// Checks the signature (not whether the signer is a validator).
    pub fn verify(&self) -> Result<(), SignatureError> {
        crypto::verify(&self.validator, &self.vote.sign_digest(), &self.signature)
    }

    /// Whether this is a precommit.
    pub fn is_precommit(&self) -> bool {
        self.vote.kind == VoteKind::Precommit
    }
}

/// What validators send each other.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Message {
    /// A proposal.
    Proposal(SignedProposal),
    /// A vote.
    Vote(SignedVote),
}

/// The step within a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Step {
    /// Waiting for the proposal.
    Propose,
    /// Prevoted; waiting for a polka.
    Prevote,
    /// Precommitted; waiting for a decision.
    Precommit,
}

/// Proof that a validator signed two conflicting messages for one height, round and step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Evidence {
    /// Two different votes of one kind for one (height, round).
    DoubleVote(SignedVote, SignedVote),
    /// Two different proposals for one (height, round).
    DoubleProposal(SignedProposal, SignedProposal),
}

/// What the node tells the state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Start `height` (after genesis, or after committing `height - 1`) with its validators.
    NewHeight {
        /// The height to decide.
        height: Height,
        /// Its validators.
        validators: ValidatorSet,
    },
    /// A proposal from the network (its block body is with the node).
    Proposal(SignedProposal),
    /// A vote from the network.
    Vote(SignedVote),
    /// A timeout scheduled by [`Action::ScheduleTimeout`] fired.
    Timeout {
        /// Height.
        height: Height,
        /// Round.
        round: Round,
        /// Step.
        step: Step,
    },
    /// The node checked the proposed block requested by [`Action::ValidateBlock`].
    BlockValidated {
        /// Height.
        height: Height,
        /// Round.
        round: Round,
        /// The block.
        block_hash: Hash,
        /// Whether it is a valid successor of the node's tip.
        valid: bool,
    },
    /// The node built the block requested by [`Action::BuildBlock`].
    BlockBuilt {
        /// Height.
        height: Height,
        /// Round.
        round: Round,
        /// The block.
        block_hash: Hash,
    },
}

/// What the state machine asks the node to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Durably store the signing state BEFORE performing any later action of this batch
    /// (so a restarted node never signs a conflicting vote).
    Persist(PersistedState),
    /// Send to every validator (gossip). The sender has already counted its own message.
    Broadcast(Message),
    /// Call back with [`Input::Timeout`] after `duration_ms`.
    ScheduleTimeout {
        /// Height.
        height: Height,
        /// Round.
        round: Round,
        /// Step.
        step: Step,
        /// Delay.
        duration_ms: u64,
    },
    /// This node proposes at (height, round) and has no valid value: build a block from the
    /// mempool, then send [`Input::BlockBuilt`].
    BuildBlock {
        /// Height.
        height: Height,
        /// Round.
        round: Round,
    },
    /// Check the proposed block, then send [`Input::BlockValidated`].
    ValidateBlock {
        /// Height.
        height: Height,
        /// Round.
        round: Round,
        /// The block.
        block_hash: Hash,
    },
    /// The block is decided: commit it with this certificate, then send [`Input::NewHeight`].
    Commit(Commit),
    /// Other validators are at a higher height: fetch committed blocks from `from` on.
    RequestSync {
        /// First missing height.
        from: Height,
    },
    /// A validator equivocated.
    Evidence(Evidence),
}

/// The signing state that must survive a crash.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PersistedState {
    /// Height of the last signature.
    pub height: Height,
    /// Round of the last signature.
    pub round: Round,
    /// Last step signed at (height, round): 0 none, 1 proposal, 2 prevote, 3 precommit.
    pub step: u8,
    /// Locked value (round, block) at `height`.
    pub locked: Option<(Round, Hash)>,
    /// Valid value (round, block) at `height`.
    pub valid: Option<(Round, Hash)>,
}

/// Timeouts, in ms; each grows by its `*_delta_ms` per round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Wait for a proposal.
    pub propose_ms: u64,
    /// Growth per round.
    pub propose_delta_ms: u64,
    /// Wait after +2/3 prevotes for anything.
    pub prevote_ms: u64,
    /// Growth per round.
    pub prevote_delta_ms: u64,
    /// Wait after +2/3 precommits for anything.
    pub precommit_ms: u64,
    /// Growth per round.
    pub precommit_delta_ms: u64,
    /// Most messages buffered for future heights/rounds.
    pub max_buffered: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            propose_ms: 1000,
            propose_delta_ms: 500,
            prevote_ms: 500,
            prevote_delta_ms: 250,
            precommit_ms: 500,
            precommit_delta_ms: 250,
            max_buffered: 10_000,
        }
    }
}

/// The certificate of `votes` (precommits for one block), as stored beside the block.
pub fn certificate(height: Height, round: Round, block_hash: Hash, votes: &[SignedVote]) -> Commit {
    Commit {
        height,
        round,
        block_hash,
        signatures: votes
            .iter()
            .map(|v| govchain_ledger::CommitSig {
                validator: v.validator,
                signature: v.signature,
            })
            .collect(),
    }
}
