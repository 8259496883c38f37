//! One height's round state machine: Tendermint Algorithm 1 ("The latest gossip on BFT
//! consensus", Buchman, Kwon, Milošević 2018) as a pure function `(state, event) -> (state,
//! outputs)`.
//!
//! Owns: round, step, lockedValue/lockedRound, validValue/validRound, the decision, and the
//! "for the first time" flags of the current round. The driver ([`crate::driver`]) turns votes,
//! proposals and timeouts into [`RoundEvent`]s (it checks the quorum preconditions with the vote
//! keeper) and performs the [`RoundOutput`]s (signing, timers, commits).
//!
//! Invariants: every event's guard is checked here, so applying an event whose guard fails
//! returns the state unchanged and no output; the lock only changes together with a precommit
//! for the locked value; nothing changes after the decision. No IO, no clock, no signing.

use govchain_ledger::{Hash, Round};

use crate::messages::Step;

/// The state of consensus at one height.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoundState {
    /// Current round.
    pub round: Round,
    /// Current step.
    pub step: Step,
    /// (lockedRound, lockedValue).
    pub locked: Option<(Round, Hash)>,
    /// (validRound, validValue).
    pub valid: Option<(Round, Hash)>,
    /// The decision (round of the precommit quorum, block).
    pub decided: Option<(Round, Hash)>,
    /// L34 fired in the current round.
    prevote_timeout_scheduled: bool,
    /// L47 fired in the current round.
    precommit_timeout_scheduled: bool,
    /// L36 fired in the current round.
    polka_handled: bool,
}

/// What happened, as Algorithm 1's `upon` conditions (the driver checked the preconditions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoundEvent {
    /// StartRound(round).
    StartRound {
        /// The round to start.
        round: Round,
        /// Whether this node is the round's proposer.
        is_proposer: bool,
    },
    /// L22 (`pol_round` None) / L28 (`pol_round` Some(vr), vr < round, and a polka for the
    /// block at vr was seen): the current round's proposal, its block's validity known.
    Proposal {
        /// The proposed block.
        block_hash: Hash,
        /// Its proof-of-lock round.
        pol_round: Option<Round>,
        /// Whether the block is valid.
        valid: bool,
    },
    /// L34: > 2/3 prevotes for anything in the current round.
    PolkaAny,
    /// L44: > 2/3 prevotes for nil in the current round.
    PolkaNil,
    /// L36: the current round's proposal of a valid block and > 2/3 prevotes for it.
    PolkaValue {
        /// The block.
        block_hash: Hash,
    },
    /// L47: > 2/3 precommits for anything in the current round.
    PrecommitAny,
    /// L49: > 2/3 precommits for a valid block this node has, in any round.
    PrecommitValue {
        /// The round of the precommits.
        round: Round,
        /// The block.
        block_hash: Hash,
    },
    /// L57: the current round's propose timeout fired.
    TimeoutPropose,
    /// L61: the current round's prevote timeout fired.
    TimeoutPrevote,
    /// L65: the current round's precommit timeout fired.
    TimeoutPrecommit,
}

/// What the driver must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoundOutput {
    /// This node proposes: re-propose the valid value (its round becomes `pol_round`), or build a
    /// new block when there is none.
    Propose {
        /// (validRound, validValue).
        valid: Option<(Round, Hash)>,
    },
    /// Sign and broadcast a prevote.
    Prevote(Option<Hash>),
    /// Sign and broadcast a precommit.
    Precommit(Option<Hash>),
    /// Schedule the current round's timeout for this step.
    ScheduleTimeout(Step),
    /// The height is decided.
    Decide {
        /// Round of the precommit quorum.
        round: Round,
        /// The block.
        block_hash: Hash,
    },
    /// Start this (next) round.
    NextRound(Round),
}

impl RoundState {
    /// The state before round 0 starts (or before the restored round starts after a restart).
    pub fn new(round: Round, locked: Option<(Round, Hash)>, valid: Option<(Round, Hash)>) -> Self {
        Self {
            round,
            step: Step::Propose,
            locked,
            valid,
            decided: None,
            prevote_timeout_scheduled: false,
            precommit_timeout_scheduled: false,
            polka_handled: false,
        }
    }

    /// Applies one event: the next state and what to do.
    pub fn apply(self, event: RoundEvent) -> (RoundState, Vec<RoundOutput>) {
        if self.decided.is_some() {
            return (self, Vec::new());
        }
        let mut s = self;
        let mut out = Vec::new();
        match event {
            RoundEvent::StartRound { round, is_proposer } => {
                s = RoundState::new(round, s.locked, s.valid);
                if is_proposer {
                    out.push(RoundOutput::Propose { valid: s.valid });
                }
                out.push(RoundOutput::ScheduleTimeout(Step::Propose));
            }
            RoundEvent::Proposal {
                block_hash,
                pol_round,
                valid,
            } if s.step == Step::Propose => {
                let acceptable = match (pol_round, s.locked) {
                    (_, None) => true,
                    (_, Some((_, locked))) if locked == block_hash => true,
                    (None, Some(_)) => false,
                    (Some(vr), Some((locked_round, _))) => locked_round <= vr,
                };
                let pol_ok = pol_round.is_none_or(|vr| vr < s.round);
                let vote = (valid && acceptable && pol_ok).then_some(block_hash);
                s.step = Step::Prevote;
                out.push(RoundOutput::Prevote(vote));
            }
            RoundEvent::PolkaAny if s.step == Step::Prevote && !s.prevote_timeout_scheduled => {
                s.prevote_timeout_scheduled = true;
                out.push(RoundOutput::ScheduleTimeout(Step::Prevote));
            }
            RoundEvent::PolkaValue { block_hash }
                if s.step >= Step::Prevote && !s.polka_handled =>
            {
                s.polka_handled = true;
                if s.step == Step::Prevote {
                    s.locked = Some((s.round, block_hash));
                    s.step = Step::Precommit;
                    out.push(RoundOutput::Precommit(Some(block_hash)));
                }
                s.valid = Some((s.round, block_hash));
            }
            RoundEvent::PolkaNil if s.step == Step::Prevote => {
                s.step = Step::Precommit;
                out.push(RoundOutput::Precommit(None));
            }
            RoundEvent::PrecommitAny if !s.precommit_timeout_scheduled => {
                s.precommit_timeout_scheduled = true;
                out.push(RoundOutput::ScheduleTimeout(Step::Precommit));
            }
            RoundEvent::PrecommitValue { round, block_hash } => {
                s.decided = Some((round, block_hash));
                out.push(RoundOutput::Decide { round, block_hash });
            }
            RoundEvent::TimeoutPropose if s.step == Step::Propose => {
                s.step = Step::Prevote;
                out.push(RoundOutput::Prevote(None));
            }
            RoundEvent::TimeoutPrevote if s.step == Step::Prevote => {
                s.step = Step::Precommit;
                out.push(RoundOutput::Precommit(None));
            }
            RoundEvent::TimeoutPrecommit => {
                out.push(RoundOutput::NextRound(Round(s.round.0.saturating_add(1))));
            }
            _ => {}
        }
        (s, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: Hash = Hash([1; 32]);
    const W: Hash = Hash([2; 32]);

    fn started(round: u32) -> RoundState {
        RoundState::new(Round(0), None, None)
            .apply(RoundEvent::StartRound {
                round: Round(round),
                is_proposer: false,
            })
            .0
    }

    #[test]
    fn proposer_without_valid_value_builds_and_everyone_schedules_propose_timeout() {
        let (s, out) = RoundState::new(Round(0), None, None).apply(RoundEvent::StartRound {
            round: Round(0),
            is_proposer: true,
        });
        assert_eq!(s.step, Step::Propose);
        assert_eq!(
            out,
            vec![
                RoundOutput::Propose { valid: None },
                RoundOutput::ScheduleTimeout(Step::Propose)
            ]
        );
    }

    #[test]
    fn prevotes_a_valid_proposal_and_nil_for_an_invalid_one() {
        let ev = |valid| RoundEvent::Proposal {
            block_hash: V,
            pol_round: None,
            valid,
        };
        let (s, out) = started(0).apply(ev(true));
        assert_eq!(
            (s.step, out),
            (Step::Prevote, vec![RoundOutput::Prevote(Some(V))])
        );
        let (_, out) = started(0).apply(ev(false));
        assert_eq!(out, vec![RoundOutput::Prevote(None)]);
    }

    #[test]
    fn polka_locks_and_precommits_then_a_locked_node_rejects_another_value() {
        let (s, _) = started(0).apply(RoundEvent::Proposal {
            block_hash: V,
            pol_round: None,
            valid: true,
        });
        let (s, out) = s.apply(RoundEvent::PolkaValue { block_hash: V });
        assert_eq!(out, vec![RoundOutput::Precommit(Some(V))]);
        assert_eq!(s.locked, Some((Round(0), V)));
        assert_eq!(s.valid, Some((Round(0), V)));
        let (s, out) = s.apply(RoundEvent::TimeoutPrecommit);
        assert_eq!(out, vec![RoundOutput::NextRound(Round(1))]);
        let (s, _) = s.apply(RoundEvent::StartRound {
            round: Round(1),
            is_proposer: false,
        });
        // Another value without a newer polka: nil.
        let (_, out) = s.apply(RoundEvent::Proposal {
            block_hash: W,
            pol_round: None,
            valid: true,
        });
        assert_eq!(out, vec![RoundOutput::Prevote(None)]);
        // The locked value: yes.
        let (_, out) = s.apply(RoundEvent::Proposal {
            block_hash: V,
            pol_round: None,
            valid: true,
        });
        assert_eq!(out, vec![RoundOutput::Prevote(Some(V))]);
    }

    #[test]
    fn a_newer_polka_unlocks() {
        let s = RoundState::new(Round(0), Some((Round(1), V)), Some((Round(1), V)));
        let (s, _) = s.apply(RoundEvent::StartRound {
            round: Round(3),
            is_proposer: false,
        });
        let ev = |pol| RoundEvent::Proposal {
            block_hash: W,
            pol_round: Some(Round(pol)),
            valid: true,
        };
        assert_eq!(s.apply(ev(0)).1, vec![RoundOutput::Prevote(None)]);
        assert_eq!(s.apply(ev(2)).1, vec![RoundOutput::Prevote(Some(W))]);
        // A pol_round that is not below the round is never acceptable.
        assert_eq!(s.apply(ev(3)).1, vec![RoundOutput::Prevote(None)]);
    }

    #[test]
    fn proposer_with_valid_value_reproposes_it() {
        let s = RoundState::new(Round(0), None, Some((Round(2), V)));
        let (_, out) = s.apply(RoundEvent::StartRound {
            round: Round(4),
            is_proposer: true,
        });
        assert_eq!(
            out[0],
            RoundOutput::Propose {
                valid: Some((Round(2), V))
            }
        );
    }

    #[test]
    fn timeouts_only_act_in_their_step_and_quorum_timeouts_are_scheduled_once() {
        let s = started(0);
        assert!(s.apply(RoundEvent::TimeoutPrevote).1.is_empty());
        let (s, out) = s.apply(RoundEvent::TimeoutPropose);
        assert_eq!(out, vec![RoundOutput::Prevote(None)]);
        assert!(s.apply(RoundEvent::TimeoutPropose).1.is_empty());
        let (s, out) = s.apply(RoundEvent::PolkaAny);
        assert_eq!(out, vec![RoundOutput::ScheduleTimeout(Step::Prevote)]);
        assert!(s.apply(RoundEvent::PolkaAny).1.is_empty());
        let (s, out) = s.apply(RoundEvent::PolkaNil);
        assert_eq!(out, vec![RoundOutput::Precommit(None)]);
        let (s, out) = s.apply(RoundEvent::PrecommitAny);
        assert_eq!(out, vec![RoundOutput::ScheduleTimeout(Step::Precommit)]);
        assert!(s.apply(RoundEvent::PrecommitAny).1.is_empty());
    }

    #[test]
    fn polka_after_precommitting_nil_updates_valid_but_not_lock() {
        let (s, _) = started(0).apply(RoundEvent::TimeoutPropose);
        let (s, _) = s.apply(RoundEvent::TimeoutPrevote);
        let (s, out) = s.apply(RoundEvent::PolkaValue { block_hash: V });
        assert!(out.is_empty());
        assert_eq!(s.locked, None);
        assert_eq!(s.valid, Some((Round(0), V)));
    }

    #[test]
    fn decides_once_and_then_ignores_everything() {
        let (s, out) = started(0).apply(RoundEvent::PrecommitValue {
            round: Round(0),
            block_hash: V,
        });
        assert_eq!(
            out,
            vec![RoundOutput::Decide {
                round: Round(0),
                block_hash: V
            }]
        );
        let again = s.apply(RoundEvent::PrecommitValue {
            round: Round(1),
            block_hash: W,
        });
        assert_eq!(again, (s, vec![]));
        assert!(s.apply(RoundEvent::TimeoutPrecommit).1.is_empty());
    }
}
