//! The vote keeper of one height: every counted prevote and precommit, tallied by round, kind
//! and value with voting power; quorum (> 2/3) and f+1 (> 1/3) queries; equivocation evidence.
//!
//! Invariants:
//! - a validator's power counts at most once in any one tally: its FIRST vote of a (round, kind)
//!   makes the "any value" power and the f+1 senders; per value, each validator counts at most
//!   once;
//! - a later, different vote of the same (round, kind) is reported as [`Evidence::DoubleVote`]
//!   (once per pair). It is counted toward ITS OWN value's tally only when the caller says the
//!   value is relevant (nil, or a block proposed at this height). This is safe: two quorums for
//!   different values share more than f validators, so they cannot both exist with at most f
//!   equivocators. It is needed for liveness: otherwise an equivocator that showed a polka to
//!   some honest nodes (who lock on it) hides it forever from the others (Tendermint-go counts
//!   conflicting votes for blocks a peer claims a +2/3 majority for, for the same reason);
//! - only members of the height's [`ValidatorSet`] count, with their power;
//! - the keeper never checks signatures: callers add only votes whose signature verified (or
//!   that they signed themselves) and whose height is the keeper's;
//! - evidence remembered per height is capped by [`MAX_EVIDENCE_PER_HEIGHT`]; conflicting votes
//!   counted are bounded by the relevant values (one proposal per round);
//! - iteration is over ordered maps only, so answers (and the order of votes in certificates)
//!   are deterministic.

use std::collections::{BTreeMap, BTreeSet};

use govchain_ledger::{Hash, Height, PublicKey, Round, ValidatorSet, VoteKind};

use crate::messages::{Evidence, SignedVote};

/// Most equivocations remembered (and reported) per height; more are ignored.
pub const MAX_EVIDENCE_PER_HEIGHT: usize = 1024;

/// What adding a vote did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddVote {
    /// Counted.
    Added,
    /// This validator's vote for this (round, kind) was already counted with the same value.
    Duplicate,
    /// A second, different vote: not counted; here is the evidence (first report of this pair).
    Equivocation(Box<Evidence>),
    /// A different vote already reported (or the evidence cap is reached): not counted.
    EquivocationKnown,
    /// The signer is not a validator of this height: not counted.
    NotAValidator,
    /// The vote is for another height: not counted.
    WrongHeight,
}

/// The votes counted for one value.
#[derive(Debug, Default, Clone)]
struct ValueVotes {
    power: u64,
    votes: BTreeMap<PublicKey, SignedVote>,
}

/// One kind of vote in one round.
#[derive(Debug, Default, Clone)]
struct Tally {
    /// The first vote of each validator.
    first: BTreeMap<PublicKey, SignedVote>,
    /// Power of all first votes.
    power: u64,
    /// Votes counted per value (`None` = nil).
    values: BTreeMap<Option<Hash>, ValueVotes>,
}

impl Tally {
    fn count(&mut self, vote: SignedVote, power: u64) {
        let v = self.values.entry(vote.vote.block_hash).or_default();
        if v.votes.insert(vote.validator, vote).is_none() {
            v.power += power;
        }
    }
}

/// One round's votes and the validators heard from in it.
#[derive(Debug, Default, Clone)]
struct RoundVotes {
    prevotes: Tally,
    precommits: Tally,
    /// Validators that sent any counted message (vote or proposal) in this round.
    senders: BTreeSet<PublicKey>,
    /// Their power.
    senders_power: u64,
}

impl RoundVotes {
    fn tally(&self, kind: VoteKind) -> &Tally {
        match kind {
            VoteKind::Prevote => &self.prevotes,
            VoteKind::Precommit => &self.precommits,
        }
    }
    fn tally_mut(&mut self, kind: VoteKind) -> &mut Tally {
        match kind {
            VoteKind::Prevote => &mut self.prevotes,
            VoteKind::Precommit => &mut self.precommits,
        }
    }
}

fn kind_tag(kind: VoteKind) -> u8 {
    match kind {
        VoteKind::Prevote => 0,
        VoteKind::Precommit => 1,
    }
}

/// The votes of one height.
#[derive(Debug, Clone)]
pub struct VoteKeeper {
    height: Height,
    validators: ValidatorSet,
    rounds: BTreeMap<Round, RoundVotes>,
    /// (validator, round, kind, conflicting value) pairs already reported.
    reported: BTreeSet<(PublicKey, Round, u8, Option<Hash>)>,
}

impl VoteKeeper {
    /// An empty keeper for `height` decided by `validators`.
    pub fn new(height: Height, validators: ValidatorSet) -> Self {
        Self {
            height,
            validators,
            rounds: BTreeMap::new(),
            reported: BTreeSet::new(),
        }
    }

    /// The height.
    pub fn height(&self) -> Height {
        self.height
    }

    /// The validators.
    pub fn validators(&self) -> &ValidatorSet {
        &self.validators
    }

    /// Whether `power` is more than 2/3 of the total (a quorum, 2f+1).
    pub fn is_quorum(&self, power: u64) -> bool {
        self.validators.is_quorum(power)
    }

    /// Whether `power` is more than 1/3 of the total (f+1: at least one honest validator).
    pub fn is_one_third(&self, power: u64) -> bool {
        let total = self.validators.total_power();
        total > 0 && power.saturating_mul(3) > total
    }

    /// Whether exactly this signed vote is already counted (a cheap check before verifying).
    pub fn contains(&self, vote: &SignedVote) -> bool {
        self.rounds
            .get(&vote.vote.round)
            .and_then(|r| r.tally(vote.vote.kind).values.get(&vote.vote.block_hash))
            .and_then(|v| v.votes.get(&vote.validator))
            .is_some_and(|v| v == vote)
    }

    /// Adds a vote whose signature the caller verified. If it conflicts with the validator's
    /// first vote of its (round, kind), it is counted toward its own value only when
    /// `relevant` (see the module doc).
    pub fn add(&mut self, vote: SignedVote, relevant: bool) -> AddVote {
        if vote.vote.height != self.height {
            return AddVote::WrongHeight;
        }
        let Some(power) = self.validators.get(&vote.validator).map(|v| v.power) else {
            return AddVote::NotAValidator;
        };
        let (round, kind, value) = (vote.vote.round, vote.vote.kind, vote.vote.block_hash);
        let round_votes = self.rounds.entry(round).or_default();
        let tally = round_votes.tally_mut(kind);
        if let Some(first) = tally.first.get(&vote.validator) {
            let counted = tally
                .values
                .get(&value)
                .and_then(|v| v.votes.get(&vote.validator));
            if first.vote == vote.vote || counted.is_some_and(|c| c.vote == vote.vote) {
                return AddVote::Duplicate;
            }
            let key = (vote.validator, round, kind_tag(kind), value);
            let report =
                self.reported.len() < MAX_EVIDENCE_PER_HEIGHT && !self.reported.contains(&key);
            let evidence = Evidence::DoubleVote(first.clone(), vote.clone());
            if relevant {
                tally.count(vote, power);
            }
            if !report {
                return AddVote::EquivocationKnown;
            }
            self.reported.insert(key);
            return AddVote::Equivocation(Box::new(evidence));
        }
        let validator = vote.validator;
        tally.first.insert(validator, vote.clone());
        tally.power += power;
        tally.count(vote, power);
        Self::note(round_votes, validator, power);
        AddVote::Added
    }

    /// Records that `validator` sent a counted proposal in `round` (for the f+1 round skip).
    pub fn note_proposal_sender(&mut self, round: Round, validator: PublicKey) {
        if let Some(power) = self.validators.get(&validator).map(|v| v.power) {
            Self::note(self.rounds.entry(round).or_default(), validator, power);
        }
    }

    fn note(round_votes: &mut RoundVotes, validator: PublicKey, power: u64) {
        if round_votes.senders.insert(validator) {
            round_votes.senders_power += power;
        }
    }

    /// Power that voted `value` in (round, kind).
    pub fn power_for(&self, round: Round, kind: VoteKind, value: Option<Hash>) -> u64 {
        self.rounds
            .get(&round)
            .and_then(|r| r.tally(kind).values.get(&value))
            .map_or(0, |v| v.power)
    }

    /// Whether more than 2/3 of the power voted exactly `value` in (round, kind).
    pub fn has_quorum_for(&self, round: Round, kind: VoteKind, value: Option<Hash>) -> bool {
        self.is_quorum(self.power_for(round, kind, value))
    }

    /// Whether more than 2/3 of the power voted (anything) in (round, kind).
    pub fn has_quorum_any(&self, round: Round, kind: VoteKind) -> bool {
        let power = self.rounds.get(&round).map_or(0, |r| r.tally(kind).power);
        self.is_quorum(power)
    }

    /// The value (`None` = nil) that more than 2/3 of the power voted in (round, kind), if any.
    /// With at most f equivocators at most one value has a quorum; otherwise the lowest.
    pub fn quorum_value(&self, round: Round, kind: VoteKind) -> Option<Option<Hash>> {
        let r = self.rounds.get(&round)?;
        r.tally(kind)
            .values
            .iter()
            .find(|(_, v)| self.is_quorum(v.power))
            .map(|(value, _)| *value)
    }

    /// Every (round, block) with a precommit quorum, lowest round first.
    pub fn decided_rounds(&self) -> Vec<(Round, Hash)> {
        self.rounds
            .iter()
            .flat_map(|(r, rv)| {
                rv.precommits
                    .values
                    .iter()
                    .filter(|(_, v)| self.is_quorum(v.power))
                    .filter_map(move |(value, _)| value.map(|b| (*r, b)))
            })
            .collect()
    }

    /// The highest round above `round` in which validators with more than 1/3 of the power sent
    /// a message (Tendermint's f+1 round skip).
    pub fn skip_round_above(&self, round: Round) -> Option<Round> {
        self.rounds
            .range((std::ops::Bound::Excluded(round), std::ops::Bound::Unbounded))
            .rev()
            .find(|(_, r)| self.is_one_third(r.senders_power))
            .map(|(r, _)| *r)
    }

    /// The counted votes for `value` in (round, kind), ordered by validator key.
    pub fn votes_for(&self, round: Round, kind: VoteKind, value: Option<Hash>) -> Vec<SignedVote> {
        self.rounds
            .get(&round)
            .and_then(|r| r.tally(kind).values.get(&value))
            .map_or_else(Vec::new, |v| v.votes.values().cloned().collect())
    }

    /// The first vote of `validator` in (round, kind).
    pub fn vote_of(
        &self,
        round: Round,
        kind: VoteKind,
        validator: &PublicKey,
    ) -> Option<&SignedVote> {
        self.rounds.get(&round)?.tally(kind).first.get(validator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::sign_vote;
    use govchain_ledger::{ChainId, Keypair, Validator, Vote};

    fn keys(n: u8) -> Vec<Keypair> {
        (1..=n).map(|i| Keypair::from_seed([i; 32])).collect()
    }

    fn set(keys: &[Keypair], powers: &[u64]) -> ValidatorSet {
        ValidatorSet {
            validators: keys
                .iter()
                .zip(powers)
                .map(|(k, p)| Validator {
                    key: k.public(),
                    power: *p,
                    department: "d".into(),
                })
                .collect(),
        }
    }

    fn vote(k: &Keypair, round: u32, kind: VoteKind, value: Option<Hash>) -> SignedVote {
        sign_vote(
            Vote {
                chain_id: ChainId::new("test").unwrap(),
                height: Height(1),
                round: Round(round),
                kind,
                block_hash: value,
            },
            k,
        )
    }

    const B: Option<Hash> = Some(Hash([1; 32]));
    const C: Option<Hash> = Some(Hash([2; 32]));

    #[test]
    fn exactly_two_thirds_is_not_a_quorum_and_one_more_is() {
        let ks = keys(6);
        let mut keeper = VoteKeeper::new(Height(1), set(&ks, &[1; 6]));
        for k in &ks[..4] {
            assert_eq!(
                keeper.add(vote(k, 0, VoteKind::Prevote, B), false),
                AddVote::Added
            );
        }
        // 4 of 6 is exactly 2/3.
        assert!(!keeper.has_quorum_for(Round(0), VoteKind::Prevote, B));
        assert!(!keeper.has_quorum_any(Round(0), VoteKind::Prevote));
        assert_eq!(keeper.quorum_value(Round(0), VoteKind::Prevote), None);
        keeper.add(vote(&ks[4], 0, VoteKind::Prevote, B), false);
        assert!(keeper.has_quorum_for(Round(0), VoteKind::Prevote, B));
        assert_eq!(keeper.quorum_value(Round(0), VoteKind::Prevote), Some(B));
    }

    #[test]
    fn quorum_is_by_voting_power_not_by_count() {
        let ks = keys(4);
        // Total 9: 6 is exactly 2/3, 7 is a quorum.
        let mut keeper = VoteKeeper::new(Height(1), set(&ks, &[5, 1, 1, 2]));
        keeper.add(vote(&ks[0], 0, VoteKind::Precommit, B), false);
        keeper.add(vote(&ks[1], 0, VoteKind::Precommit, B), false);
        assert!(!keeper.has_quorum_for(Round(0), VoteKind::Precommit, B));
        keeper.add(vote(&ks[2], 0, VoteKind::Precommit, B), false);
        assert!(keeper.has_quorum_for(Round(0), VoteKind::Precommit, B));
        assert_eq!(keeper.decided_rounds(), vec![(Round(0), Hash([1; 32]))]);
    }

    #[test]
    fn quorum_of_mixed_values_is_any_but_not_for_a_value() {
        let ks = keys(4);
        let mut keeper = VoteKeeper::new(Height(1), set(&ks, &[1; 4]));
        keeper.add(vote(&ks[0], 0, VoteKind::Prevote, B), false);
        keeper.add(vote(&ks[1], 0, VoteKind::Prevote, None), false);
        keeper.add(vote(&ks[2], 0, VoteKind::Prevote, C), false);
        assert!(keeper.has_quorum_any(Round(0), VoteKind::Prevote));
        assert_eq!(keeper.quorum_value(Round(0), VoteKind::Prevote), None);
        assert!(!keeper.has_quorum_any(Round(0), VoteKind::Precommit));
    }

    #[test]
    fn f_plus_one_senders_of_a_higher_round_allow_a_skip() {
        let ks = keys(7);
        let mut keeper = VoteKeeper::new(Height(1), set(&ks, &[1; 7]));
        keeper.add(vote(&ks[0], 3, VoteKind::Prevote, B), false);
        keeper.note_proposal_sender(Round(3), ks[1].public());
        // 2 of 7 is not more than 1/3.
        assert_eq!(keeper.skip_round_above(Round(0)), None);
        keeper.add(vote(&ks[2], 3, VoteKind::Precommit, None), false);
        assert_eq!(keeper.skip_round_above(Round(0)), Some(Round(3)));
        assert_eq!(keeper.skip_round_above(Round(3)), None);
        // The same validator twice does not count twice.
        keeper.add(vote(&ks[3], 5, VoteKind::Prevote, B), false);
        keeper.add(vote(&ks[3], 5, VoteKind::Precommit, B), false);
        keeper.note_proposal_sender(Round(5), ks[3].public());
        assert_eq!(keeper.skip_round_above(Round(3)), None);
    }

    #[test]
    fn equivocation_is_reported_once_and_not_double_counted() {
        let ks = keys(4);
        let mut keeper = VoteKeeper::new(Height(1), set(&ks, &[1; 4]));
        let first = vote(&ks[0], 0, VoteKind::Prevote, B);
        let second = vote(&ks[0], 0, VoteKind::Prevote, C);
        assert_eq!(keeper.add(first.clone(), false), AddVote::Added);
        assert_eq!(
            keeper.add(second.clone(), false),
            AddVote::Equivocation(Box::new(Evidence::DoubleVote(
                first.clone(),
                second.clone()
            )))
        );
        assert_eq!(keeper.add(second, false), AddVote::EquivocationKnown);
        assert_eq!(keeper.add(first, false), AddVote::Duplicate);
        assert_eq!(keeper.power_for(Round(0), VoteKind::Prevote, B), 1);
        assert_eq!(keeper.power_for(Round(0), VoteKind::Prevote, C), 0);
        // A vote of the other kind in the same round is not an equivocation.
        assert_eq!(
            keeper.add(vote(&ks[0], 0, VoteKind::Precommit, None), false),
            AddVote::Added
        );
    }

    #[test]
    fn an_equivocators_relevant_second_vote_counts_only_toward_its_own_value() {
        let ks = keys(4);
        let mut keeper = VoteKeeper::new(Height(1), set(&ks, &[1; 4]));
        let first = vote(&ks[0], 0, VoteKind::Prevote, B);
        let second = vote(&ks[0], 0, VoteKind::Prevote, C);
        keeper.add(first, false);
        assert!(matches!(
            keeper.add(second.clone(), true),
            AddVote::Equivocation(_)
        ));
        assert!(keeper.contains(&second));
        assert_eq!(keeper.add(second, true), AddVote::Duplicate);
        assert_eq!(keeper.power_for(Round(0), VoteKind::Prevote, B), 1);
        assert_eq!(keeper.power_for(Round(0), VoteKind::Prevote, C), 1);
        // The "any" power and the f+1 senders count the validator once.
        keeper.add(vote(&ks[1], 0, VoteKind::Prevote, C), false);
        assert!(!keeper.has_quorum_any(Round(0), VoteKind::Prevote));
        keeper.add(vote(&ks[2], 0, VoteKind::Prevote, C), false);
        // ks[0] (both), ks[1], ks[2] for C: a quorum for C.
        assert!(keeper.has_quorum_for(Round(0), VoteKind::Prevote, C));
        assert_eq!(
            keeper
                .votes_for(Round(0), VoteKind::Prevote, C)
                .iter()
                .filter(|v| v.validator == ks[0].public())
                .count(),
            1
        );
    }

    #[test]
    fn ignores_vote_from_non_validator() {
        let ks = keys(5);
        let mut keeper = VoteKeeper::new(Height(1), set(&ks[..4], &[1; 4]));
        assert_eq!(
            keeper.add(vote(&ks[4], 0, VoteKind::Prevote, B), false),
            AddVote::NotAValidator
        );
        assert_eq!(keeper.power_for(Round(0), VoteKind::Prevote, B), 0);
        keeper.note_proposal_sender(Round(2), ks[4].public());
        assert_eq!(keeper.skip_round_above(Round(0)), None);
    }

    #[test]
    fn ignores_vote_for_another_height() {
        let ks = keys(4);
        let mut keeper = VoteKeeper::new(Height(2), set(&ks, &[1; 4]));
        assert_eq!(
            keeper.add(vote(&ks[0], 0, VoteKind::Prevote, B), false),
            AddVote::WrongHeight
        );
    }

    #[test]
    fn evidence_is_capped_per_height() {
        let ks = keys(4);
        let mut keeper = VoteKeeper::new(Height(1), set(&ks, &[1; 4]));
        keeper.add(vote(&ks[0], 0, VoteKind::Prevote, B), false);
        let mut reported = 0;
        for i in 0..(MAX_EVIDENCE_PER_HEIGHT + 5) {
            let mut h = [0u8; 32];
            h[..8].copy_from_slice(&(i as u64 + 10).to_le_bytes());
            if let AddVote::Equivocation(_) =
                keeper.add(vote(&ks[0], 0, VoteKind::Prevote, Some(Hash(h))), false)
            {
                reported += 1;
            }
        }
        assert_eq!(reported, MAX_EVIDENCE_PER_HEIGHT);
    }
}
