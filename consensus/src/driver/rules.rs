//! Algorithm 1's `upon` rules evaluated against the vote keeper, and what their outputs do:
//! signing (guarded by the high-water mark, persisted first), proposing, timers, commits and
//! the rebroadcast of already-signed messages.
//!
//! `progress` applies the first rule whose event changes the round state, then looks again,
//! until none does; every event's guard is in [`crate::round`], so this terminates (each
//! effective event moves the step or round forward, sets a once-per-round flag, or decides).

use govchain_ledger::{Hash, Round, Vote, VoteKind};

use crate::limits::MAX_REBROADCAST_ROUNDS;
use crate::messages::{certificate, sign_vote, Action, Message, PersistedState, Proposal};
use crate::round::{RoundEvent, RoundOutput};

use super::{Consensus, HeightState, Validity, SIGNED_PRECOMMIT, SIGNED_PREVOTE, SIGNED_PROPOSAL};

/// The events whose preconditions hold now, in priority order (decision first).
fn candidates(hs: &HeightState) -> Vec<RoundEvent> {
    let mut events = Vec::new();
    let k = &hs.keeper;
    let r = hs.state.round;
    for (round, block_hash) in k.decided_rounds() {
        if hs.validity.get(&block_hash) == Some(&Validity::Valid) {
            events.push(RoundEvent::PrecommitValue { round, block_hash });
        }
    }
    if let Some(p) = hs.proposals.get(&r) {
        let block_hash = p.proposal.block_hash;
        let validity = hs.validity.get(&block_hash).copied();
        let valid = match validity {
            Some(Validity::Valid) => Some(true),
            Some(Validity::Invalid) => Some(false),
            Some(Validity::Pending) | None => None,
        };
        if let Some(valid) = valid {
            let pol_ok = match p.proposal.pol_round {
                None => true,
                Some(vr) => vr < r && k.has_quorum_for(vr, VoteKind::Prevote, Some(block_hash)),
            };
            if pol_ok {
                events.push(RoundEvent::Proposal {
                    block_hash,
                    pol_round: p.proposal.pol_round,
                    valid,
                });
            }
        }
        if valid == Some(true) && k.has_quorum_for(r, VoteKind::Prevote, Some(block_hash)) {
            events.push(RoundEvent::PolkaValue { block_hash });
        }
    }
    if k.has_quorum_for(r, VoteKind::Prevote, None) {
        events.push(RoundEvent::PolkaNil);
    }
    if k.has_quorum_any(r, VoteKind::Prevote) {
        events.push(RoundEvent::PolkaAny);
    }
    if k.has_quorum_any(r, VoteKind::Precommit) {
        events.push(RoundEvent::PrecommitAny);
    }
    events
}

impl Consensus {
    /// Applies rules until none changes anything.
    pub(super) fn progress(&mut self, out: &mut Vec<Action>) {
        loop {
            let Some(hs) = self.current.as_mut() else {
                return;
            };
            if hs.state.decided.is_some() {
                return;
            }
            // A block decided by > 2/3 precommits that this node never saw proposed: fetch it.
            let missing = hs
                .keeper
                .decided_rounds()
                .iter()
                .any(|(_, b)| !hs.validity.contains_key(b));
            if missing {
                Self::request_sync(hs, out);
            }
            let mut fired = false;
            for event in candidates(hs) {
                let (next, outputs) = hs.state.apply(event);
                if next != hs.state || !outputs.is_empty() {
                    hs.state = next;
                    self.perform(outputs, out);
                    fired = true;
                    break;
                }
            }
            if !fired {
                let Some(hs) = self.current.as_ref() else {
                    return;
                };
                match hs.keeper.skip_round_above(hs.state.round) {
                    Some(round) => self.start_round(round, out),
                    None => return,
                }
            }
        }
    }

    /// Applies one event to the round state and performs its outputs.
    pub(super) fn apply(&mut self, event: RoundEvent, out: &mut Vec<Action>) {
        let Some(hs) = self.current.as_mut() else {
            return;
        };
        let (next, outputs) = hs.state.apply(event);
        hs.state = next;
        self.perform(outputs, out);
    }

    /// StartRound(round).
    pub(super) fn start_round(&mut self, round: Round, out: &mut Vec<Action>) {
        let me = self.public_key();
        let Some(hs) = self.current.as_mut() else {
            return;
        };
        let proposer = hs
            .keeper
            .validators()
            .proposer(hs.height, round)
            .map(|v| v.key);
        let is_proposer = me.is_some() && proposer == me;
        hs.building = None;
        hs.peer_round_behind = None;
        self.apply(RoundEvent::StartRound { round, is_proposer }, out);
    }

    fn perform(&mut self, outputs: Vec<RoundOutput>, out: &mut Vec<Action>) {
        for o in outputs {
            let Some(hs) = self.current.as_mut() else {
                return;
            };
            let (height, round) = (hs.height, hs.state.round);
            match o {
                RoundOutput::Propose {
                    valid: Some((vr, block_hash)),
                } => self.propose(block_hash, Some(vr), out),
                RoundOutput::Propose { valid: None } => {
                    if self.may_sign(round, SIGNED_PROPOSAL) {
                        if let Some(hs) = self.current.as_mut() {
                            hs.building = Some(round);
                        }
                        out.push(Action::BuildBlock { height, round });
                    }
                }
                RoundOutput::Prevote(value) => self.vote(VoteKind::Prevote, value, out),
                RoundOutput::Precommit(value) => self.vote(VoteKind::Precommit, value, out),
                RoundOutput::ScheduleTimeout(step) => out.push(Action::ScheduleTimeout {
                    height,
                    round,
                    step,
                    duration_ms: self.config.timeout_ms(step, round),
                }),
                RoundOutput::Decide { round, block_hash } => {
                    let votes = hs
                        .keeper
                        .votes_for(round, VoteKind::Precommit, Some(block_hash));
                    let commit = certificate(height, round, block_hash, &votes);
                    hs.decision = Some(votes);
                    out.push(Action::Commit(commit));
                }
                RoundOutput::NextRound(next) => self.start_round(next, out),
            }
        }
    }

    /// Whether this node may sign `step` in `round` of the current height: it has a key, is a
    /// validator of the height, and has signed nothing at or after this point.
    fn may_sign(&self, round: Round, step: u8) -> bool {
        let (Some(key), Some(hs)) = (self.key.as_ref(), self.current.as_ref()) else {
            return false;
        };
        hs.keeper.validators().get(&key.public()).is_some()
            && self
                .last_signed
                .is_none_or(|last| (hs.height, round, step) > last)
    }

    /// Records the signing point and emits the Persist that must precede the signed message.
    fn persist(&mut self, round: Round, step: u8, out: &mut Vec<Action>) {
        let Some(hs) = self.current.as_ref() else {
            return;
        };
        self.last_signed = Some((hs.height, round, step));
        out.push(Action::Persist(PersistedState {
            height: hs.height,
            round,
            step,
            locked: hs.state.locked,
            valid: hs.state.valid,
        }));
    }

    /// Signs and broadcasts this round's proposal (a re-proposal carries its polka along).
    pub(super) fn propose(
        &mut self,
        block_hash: Hash,
        pol_round: Option<Round>,
        out: &mut Vec<Action>,
    ) {
        let Some(hs) = self.current.as_ref() else {
            return;
        };
        let (height, round) = (hs.height, hs.state.round);
        if pol_round.is_some_and(|vr| vr >= round) || !self.may_sign(round, SIGNED_PROPOSAL) {
            return;
        }
        let Some(key) = self.key.as_ref() else {
            return;
        };
        let signed = Proposal {
            chain_id: self.chain_id.clone(),
            height,
            round,
            block_hash,
            pol_round,
        }
        .sign(key);
        let me = key.public();
        self.persist(round, SIGNED_PROPOSAL, out);
        let Some(hs) = self.current.as_mut() else {
            return;
        };
        out.push(Action::Broadcast(Message::Proposal(signed.clone())));
        if let Some(vr) = pol_round {
            for v in hs.keeper.votes_for(vr, VoteKind::Prevote, Some(block_hash)) {
                out.push(Action::Broadcast(Message::Vote(v)));
            }
        }
        hs.request_validation(round, block_hash, out);
        hs.keeper.note_proposal_sender(round, me);
        hs.proposals.insert(round, signed);
    }

    /// Signs, persists, broadcasts and counts this node's vote of the current round.
    fn vote(&mut self, kind: VoteKind, block_hash: Option<Hash>, out: &mut Vec<Action>) {
        let step = match kind {
            VoteKind::Prevote => SIGNED_PREVOTE,
            VoteKind::Precommit => SIGNED_PRECOMMIT,
        };
        let Some(hs) = self.current.as_ref() else {
            return;
        };
        let (height, round) = (hs.height, hs.state.round);
        if !self.may_sign(round, step) {
            return;
        }
        let Some(key) = self.key.as_ref() else {
            return;
        };
        let signed = sign_vote(
            Vote {
                chain_id: self.chain_id.clone(),
                height,
                round,
                kind,
                block_hash,
            },
            key,
        );
        self.persist(round, step, out);
        out.push(Action::Broadcast(Message::Vote(signed.clone())));
        if let Some(hs) = self.current.as_mut() {
            hs.keeper.add(signed, true);
        }
    }

    /// Re-sends what this node already signed that peers may have missed (see the driver doc).
    pub(super) fn rebroadcast(&mut self, out: &mut Vec<Action>) {
        let me = self.public_key();
        let Some(hs) = self.current.as_mut() else {
            return;
        };
        let r = hs.state.round;
        if let Some(me) = me {
            let from = hs.peer_round_behind.take().unwrap_or(r);
            if let Some(p) = hs.proposals.get(&r).filter(|p| p.proposer == me) {
                out.push(Action::Broadcast(Message::Proposal(p.clone())));
                if let Some(vr) = p.proposal.pol_round {
                    for v in hs
                        .keeper
                        .votes_for(vr, VoteKind::Prevote, Some(p.proposal.block_hash))
                    {
                        out.push(Action::Broadcast(Message::Vote(v)));
                    }
                }
            }
            let from = from.max(Round(r.0.saturating_sub(MAX_REBROADCAST_ROUNDS)));
            for round in (from.0..=r.0).map(Round) {
                for kind in [VoteKind::Prevote, VoteKind::Precommit] {
                    if let Some(v) = hs.keeper.vote_of(round, kind, &me) {
                        out.push(Action::Broadcast(Message::Vote(v.clone())));
                    }
                }
            }
        }
        if std::mem::take(&mut self.peer_height_behind) {
            if let Some(lc) = &self.last_commit {
                for v in &lc.precommits {
                    out.push(Action::Broadcast(Message::Vote(v.clone())));
                }
            }
        }
    }
}
