//! The driver: [`Consensus`], one validator's (or observer's) consensus across heights.
//!
//! Owns: the current height's vote keeper, round state, proposals and block-validity cache; the
//! buffer of messages for later heights; the signing high-water mark; the previous height's
//! decision (to help peers still at it); sync detection. Submodules: `check` (is a message
//! acceptable, against which height), `rules` (Algorithm 1's `upon` rules, signing, timers,
//! rebroadcast).
//!
//! Invariants:
//! - pure: no IO, no clock, no randomness; equal inputs give equal outputs (ordered maps only);
//! - a message is acted on only after `check` accepted it (chain, height/round bounds,
//!   membership, proposer, signature); invalid input is ignored, never panics;
//! - nothing is signed at or below the highest (height, round, step) already signed (restored
//!   from [`PersistedState`] after a restart), and every signature is preceded by an
//!   [`Action::Persist`] in the same batch;
//! - after [`Action::Commit`] nothing happens at that height until [`Input::NewHeight`].
//!
//! Beyond Algorithm 1 (which assumes gossip that eventually delivers every message), a node that
//! stays in one round re-broadcasts its own signed messages of that round on a timer (the round's
//! propose timeout, re-armed), plus its older-round votes when a peer is seen in an older round,
//! plus the precommits that decided the previous height when a peer is seen still at it. This
//! only re-sends what it already signed, so safety is untouched; it gives liveness over a
//! network that drops messages (partitions, crashes).

mod check;
mod height;
#[cfg(test)]
mod proptests;
mod rules;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use govchain_ledger::{ChainId, Hash, Height, Keypair, PublicKey, Round, ValidatorSet};

use crate::buffer::MessageBuffer;
use crate::error::MessageError;
use crate::messages::{Action, Config, Evidence, Input, Message, PersistedState, Step};
use crate::round::RoundState;
use crate::verify::{MemoVerifier, SignatureVerifier};
use crate::votes::{AddVote, MAX_EVIDENCE_PER_HEIGHT};

use check::Placement;
use height::{HeightState, LastCommit, Validity};

/// One node's consensus state machine (see the module doc).
pub struct Consensus {
    chain_id: ChainId,
    key: Option<Keypair>,
    config: Config,
    verifier: Arc<dyn SignatureVerifier>,
    /// The highest (height, round, step) signed; nothing at or below it is ever signed again.
    last_signed: Option<(Height, Round, u8)>,
    /// The signing state from before a restart, applied when its height starts.
    restored: Option<PersistedState>,
    /// The height being decided; `None` until the first [`Input::NewHeight`].
    current: Option<HeightState>,
    last_commit: Option<LastCommit>,
    /// A validator sent a message for the previous height since the last rebroadcast.
    peer_height_behind: bool,
    buffer: MessageBuffer,
}

impl std::fmt::Debug for Consensus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consensus")
            .field("chain_id", &self.chain_id)
            .field("key", &self.key.as_ref().map(Keypair::public))
            .field("height", &self.height())
            .field("round", &self.round())
            .field("step", &self.step())
            .field("last_signed", &self.last_signed)
            .finish_non_exhaustive()
    }
}

/// Step numbers of [`PersistedState::step`].
pub(crate) const SIGNED_PROPOSAL: u8 = 1;
pub(crate) const SIGNED_PREVOTE: u8 = 2;
pub(crate) const SIGNED_PRECOMMIT: u8 = 3;

impl Consensus {
    /// A state machine that waits for its first [`Input::NewHeight`]. `key` `None` makes an
    /// observer (never signs; still follows votes and commits). `restored` is the last
    /// [`Action::Persist`]ed state after a restart. Signatures are checked with a bounded
    /// [`MemoVerifier`] (the node checks each message twice: `check_message`, then `handle`).
    pub fn new(
        chain_id: ChainId,
        key: Option<Keypair>,
        config: Config,
        restored: Option<PersistedState>,
    ) -> Self {
        Self::with_verifier(
            chain_id,
            key,
            config,
            restored,
            Arc::new(MemoVerifier::default()),
        )
    }

    /// [`Consensus::new`] with a given signature verifier (e.g. one memo shared by the
    /// simulated nodes of a run).
    pub fn with_verifier(
        chain_id: ChainId,
        key: Option<Keypair>,
        config: Config,
        restored: Option<PersistedState>,
        verifier: Arc<dyn SignatureVerifier>,
    ) -> Self {
        let last_signed = restored.as_ref().map(|p| (p.height, p.round, p.step));
        let buffer = MessageBuffer::new(config.max_buffered);
        Self {
            chain_id,
            key,
            config,
            verifier,
            last_signed,
            restored,
            current: None,
            last_commit: None,
            peer_height_behind: false,
            buffer,
        }
    }

    /// The height being decided (0 before the first [`Input::NewHeight`]).
    pub fn height(&self) -> Height {
        self.current.as_ref().map_or(Height(0), |h| h.height)
    }

    /// The current round.
    pub fn round(&self) -> Round {
        self.current.as_ref().map_or(Round(0), |h| h.state.round)
    }

    /// The current step.
    pub fn step(&self) -> Step {
        self.current
            .as_ref()
            .map_or(Step::Propose, |h| h.state.step)
    }

    /// The decision at the current height, once made: (round, block).
    pub fn decision(&self) -> Option<(Round, Hash)> {
        self.current.as_ref().and_then(|h| h.state.decided)
    }

    /// (lockedRound, lockedValue) at the current height.
    pub fn locked(&self) -> Option<(Round, Hash)> {
        self.current.as_ref().and_then(|h| h.state.locked)
    }

    /// (validRound, validValue) at the current height.
    pub fn valid(&self) -> Option<(Round, Hash)> {
        self.current.as_ref().and_then(|h| h.state.valid)
    }

    /// This node's signing key, if it is not an observer.
    pub fn public_key(&self) -> Option<PublicKey> {
        self.key.as_ref().map(Keypair::public)
    }

    /// Number of messages buffered for later heights.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Whether `m` is acceptable now: right chain, height and round within bounds, signed by a
    /// validator (by the round's proposer for a proposal), signature valid. See
    /// [`MessageError::is_misbehaviour`] for which refusals should cost the sender.
    pub fn check_message(&self, m: &Message) -> Result<(), MessageError> {
        let current = self.height();
        match self.classify(m)? {
            Placement::Previous => Err(MessageError::HeightTooOld {
                height: check::height_of(m),
                current,
            }),
            Placement::Future { bufferable: false } => Err(MessageError::HeightTooFarAhead {
                height: check::height_of(m),
                current,
            }),
            Placement::Current | Placement::Future { bufferable: true } => Ok(()),
        }
    }

    /// Feeds one input; returns what the node must do, in order.
    pub fn handle(&mut self, input: Input) -> Vec<Action> {
        let mut out = Vec::new();
        match input {
            Input::NewHeight { height, validators } => {
                self.on_new_height(height, validators, &mut out)
            }
            Input::Proposal(p) => self.on_message(Message::Proposal(p), &mut out),
            Input::Vote(v) => self.on_message(Message::Vote(v), &mut out),
            Input::Timeout {
                height,
                round,
                step,
            } => self.on_timeout(height, round, step, &mut out),
            Input::BlockValidated {
                height,
                block_hash,
                valid,
                ..
            } => self.on_block_validated(height, block_hash, valid),
            Input::BlockBuilt {
                height,
                round,
                block_hash,
            } => self.on_block_built(height, round, block_hash, &mut out),
        }
        self.progress(&mut out);
        out
    }

    fn on_new_height(&mut self, height: Height, validators: ValidatorSet, out: &mut Vec<Action>) {
        if self.current.as_ref().is_some_and(|h| height <= h.height) {
            return;
        }
        self.last_commit = match self.current.take() {
            Some(prev) if prev.height.0.checked_add(1) == Some(height.0) => {
                prev.decision.map(|precommits| LastCommit {
                    height: prev.height,
                    validators: prev.keeper.validators().clone(),
                    precommits,
                })
            }
            _ => None,
        };
        self.peer_height_behind = false;
        let (round, locked, valid) = match &self.restored {
            Some(p) if p.height == height => (p.round, p.locked, p.valid),
            _ => (Round(0), None, None),
        };
        let mut hs = HeightState::new(height, validators, RoundState::new(round, locked, valid));
        // The validity cache did not survive the restart: have the restored blocks re-checked.
        for (_, block_hash) in [locked, valid].into_iter().flatten() {
            hs.request_validation(round, block_hash, out);
        }
        self.current = Some(hs);
        self.start_round(round, out);
        for m in self.buffer.drain() {
            self.on_message(m, out);
        }
    }

    fn on_message(&mut self, m: Message, out: &mut Vec<Action>) {
        let Some(hs) = self.current.as_ref() else {
            self.buffer.push(m);
            return;
        };
        if hs.knows(&m) || self.buffer.contains(&m) {
            return;
        }
        let Ok(placement) = self.classify(&m) else {
            return;
        };
        match placement {
            Placement::Previous => self.peer_height_behind = true,
            Placement::Future { bufferable } => {
                self.note_ahead(&m, out);
                if bufferable {
                    self.buffer.push(m);
                }
            }
            Placement::Current => self.add_current(m, out),
        }
    }

    /// A valid message for a higher height: this node may be behind.
    fn note_ahead(&mut self, m: &Message, out: &mut Vec<Action>) {
        let Some(hs) = self.current.as_mut() else {
            return;
        };
        let behind = match m {
            Message::Proposal(_) => true,
            Message::Vote(v) => {
                if hs.ahead.insert(v.validator) {
                    let power = hs
                        .keeper
                        .validators()
                        .get(&v.validator)
                        .map_or(0, |x| x.power);
                    hs.ahead_power = hs.ahead_power.saturating_add(power);
                }
                hs.keeper.is_one_third(hs.ahead_power)
            }
        };
        if behind {
            Self::request_sync(hs, out);
        }
    }

    fn request_sync(hs: &mut HeightState, out: &mut Vec<Action>) {
        if !hs.sync_requested && hs.state.decided.is_none() {
            hs.sync_requested = true;
            out.push(Action::RequestSync { from: hs.height });
        }
    }

    fn add_current(&mut self, m: Message, out: &mut Vec<Action>) {
        let Some(hs) = self.current.as_mut() else {
            return;
        };
        if hs.state.decided.is_some() {
            return;
        }
        let round = check::round_of(&m);
        if round < hs.state.round {
            hs.peer_round_behind = Some(hs.peer_round_behind.map_or(round, |r| r.min(round)));
        }
        match m {
            Message::Vote(v) => {
                let relevant = v
                    .vote
                    .block_hash
                    .is_none_or(|b| hs.validity.contains_key(&b));
                if let AddVote::Equivocation(e) = hs.keeper.add(v, relevant) {
                    out.push(Action::Evidence(*e));
                }
            }
            Message::Proposal(p) => {
                if let Some(first) = hs.proposals.get(&round) {
                    let key = (round, p.proposal.sign_digest());
                    if first.proposal != p.proposal
                        && hs.reported_proposals.len() < MAX_EVIDENCE_PER_HEIGHT
                        && hs.reported_proposals.insert(key)
                    {
                        out.push(Action::Evidence(Evidence::DoubleProposal(first.clone(), p)));
                    }
                    return;
                }
                hs.keeper.note_proposal_sender(round, p.proposer);
                hs.request_validation(round, p.proposal.block_hash, out);
                hs.proposals.insert(round, p);
            }
        }
    }

    fn on_block_validated(&mut self, height: Height, block_hash: Hash, valid: bool) {
        let Some(hs) = self.current.as_mut() else {
            return;
        };
        if hs.height == height && hs.validity.get(&block_hash) == Some(&Validity::Pending) {
            let v = if valid {
                Validity::Valid
            } else {
                Validity::Invalid
            };
            hs.validity.insert(block_hash, v);
        }
    }

    fn on_block_built(
        &mut self,
        height: Height,
        round: Round,
        block_hash: Hash,
        out: &mut Vec<Action>,
    ) {
        let Some(hs) = self.current.as_mut() else {
            return;
        };
        let expected = hs.height == height
            && hs.building == Some(round)
            && hs.state.round == round
            && hs.state.step == Step::Propose
            && hs.state.decided.is_none();
        if expected {
            hs.building = None;
            hs.validity.insert(block_hash, Validity::Valid);
            self.propose(block_hash, None, out);
        }
    }

    fn on_timeout(&mut self, height: Height, round: Round, step: Step, out: &mut Vec<Action>) {
        let Some(hs) = self.current.as_mut() else {
            return;
        };
        if hs.height != height || hs.state.round != round || hs.state.decided.is_some() {
            return;
        }
        match step {
            Step::Propose => {
                if hs.state.step == Step::Propose {
                    hs.building = None;
                    self.apply(crate::round::RoundEvent::TimeoutPropose, out);
                } else {
                    self.rebroadcast(out);
                }
                // Re-armed for as long as the round lasts: the rebroadcast timer.
                out.push(Action::ScheduleTimeout {
                    height,
                    round,
                    step: Step::Propose,
                    duration_ms: self.config.timeout_ms(Step::Propose, round),
                });
            }
            Step::Prevote => self.apply(crate::round::RoundEvent::TimeoutPrevote, out),
            Step::Precommit => self.apply(crate::round::RoundEvent::TimeoutPrecommit, out),
        }
    }
}
