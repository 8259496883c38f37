//! Driver unit tests: each drives one or a few `Consensus` instances by hand.

use std::collections::VecDeque;

use govchain_ledger::{ChainId, Commit, Height, Keypair, Round, Validator, ValidatorSet, Vote};

use super::*;
use crate::messages::{sign_vote, Proposal};
use crate::votes::MAX_EVIDENCE_PER_HEIGHT;
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

#[test]
fn proposer_builds_a_block_and_proposes_then_prevotes_it() {
    let ks = keys();
    let p = proposer_index(1, 0);
    let mut c = node(&ks, p);
    let out = start(&mut c, &ks, 1);
    assert!(out.contains(&Action::BuildBlock {
        height: Height(1),
        round: Round(0)
    }));
    assert!(out.iter().any(|a| matches!(
        a,
        Action::ScheduleTimeout {
            step: Step::Propose,
            duration_ms: 1000,
            ..
        }
    )));
    let out = c.handle(Input::BlockBuilt {
        height: Height(1),
        round: Round(0),
        block_hash: block(9),
    });
    assert_persist_before_broadcast(&out);
    let msgs = broadcasts(&out);
    assert_eq!(
        msgs[0],
        Message::Proposal(proposal(&ks[p], 1, 0, block(9), None))
    );
    assert_eq!(
        signed_votes(&out, VoteKind::Prevote),
        vec![vote(&ks[p], 1, 0, VoteKind::Prevote, Some(block(9))).vote]
    );
    assert_eq!(c.step(), Step::Prevote);
    // A late or repeated BlockBuilt does nothing.
    assert!(c
        .handle(Input::BlockBuilt {
            height: Height(1),
            round: Round(0),
            block_hash: block(8),
        })
        .is_empty());
}

#[test]
fn non_proposer_validates_the_proposal_once_and_prevotes_it() {
    let ks = keys();
    let mut c = node(&ks, 0);
    start(&mut c, &ks, 1);
    let p = proposal(&ks[proposer_index(1, 0)], 1, 0, block(3), None);
    let out = c.handle(Input::Proposal(p.clone()));
    assert_eq!(
        out,
        vec![Action::ValidateBlock {
            height: Height(1),
            round: Round(0),
            block_hash: block(3)
        }]
    );
    assert!(c.handle(Input::Proposal(p)).is_empty());
    let out = c.handle(Input::BlockValidated {
        height: Height(1),
        round: Round(0),
        block_hash: block(3),
        valid: true,
    });
    assert_persist_before_broadcast(&out);
    assert_eq!(
        signed_votes(&out, VoteKind::Prevote)[0].block_hash,
        Some(block(3))
    );
}

#[test]
fn prevotes_nil_for_a_proposal_whose_block_is_invalid() {
    let ks = keys();
    let mut c = node(&ks, 0);
    start(&mut c, &ks, 1);
    let out = give_proposal(
        &mut c,
        proposal(&ks[proposer_index(1, 0)], 1, 0, block(3), None),
        false,
    );
    assert_eq!(signed_votes(&out, VoteKind::Prevote)[0].block_hash, None);
}

fn refused(c: &mut Consensus, m: Message) -> MessageError {
    let err = c.check_message(&m).unwrap_err();
    let out = match m {
        Message::Proposal(p) => c.handle(Input::Proposal(p)),
        Message::Vote(v) => c.handle(Input::Vote(v)),
    };
    assert!(out.is_empty(), "acted on a refused message: {out:?}");
    err
}

#[test]
fn refuses_a_vote_with_a_bad_signature() {
    let ks = keys();
    let mut c = node(&ks, 0);
    start(&mut c, &ks, 1);
    let mut v = vote(&ks[1], 1, 0, VoteKind::Prevote, Some(block(1)));
    v.signature.0[3] ^= 1;
    let err = refused(&mut c, Message::Vote(v));
    assert!(matches!(err, MessageError::BadSignature(_)), "{err}");
    assert!(err.is_misbehaviour());
    // A vote signed by one validator but claiming to be from another.
    let mut v = vote(&ks[1], 1, 0, VoteKind::Prevote, Some(block(1)));
    v.validator = ks[2].public();
    assert!(matches!(
        refused(&mut c, Message::Vote(v)),
        MessageError::BadSignature(_)
    ));
}

#[test]
fn refuses_a_message_for_another_chain() {
    let ks = keys();
    let mut c = node(&ks, 0);
    start(&mut c, &ks, 1);
    let v = sign_vote(
        Vote {
            chain_id: ChainId::new("other").unwrap(),
            height: Height(1),
            round: Round(0),
            kind: VoteKind::Prevote,
            block_hash: None,
        },
        &ks[1],
    );
    let err = refused(&mut c, Message::Vote(v));
    assert!(matches!(err, MessageError::WrongChain { .. }), "{err}");
}

#[test]
fn refuses_vote_from_non_validator() {
    let ks = keys();
    let mut c = node(&ks, 0);
    start(&mut c, &ks, 1);
    let outsider = Keypair::from_seed([99; 32]);
    let err = refused(
        &mut c,
        Message::Vote(vote(&outsider, 1, 0, VoteKind::Prevote, None)),
    );
    assert_eq!(
        err,
        MessageError::NotAValidator {
            signer: outsider.public(),
            height: Height(1)
        }
    );
}

#[test]
fn refuses_a_proposal_not_from_the_rounds_proposer() {
    let ks = keys();
    let mut c = node(&ks, 0);
    start(&mut c, &ks, 1);
    let wrong = (proposer_index(1, 0) + 1) % N;
    let err = refused(
        &mut c,
        Message::Proposal(proposal(&ks[wrong], 1, 0, block(1), None)),
    );
    assert!(matches!(err, MessageError::WrongProposer { .. }), "{err}");
    let err = refused(
        &mut c,
        Message::Proposal(proposal(&ks[proposer_index(1, 0)], 1, 0, block(1), Some(0))),
    );
    assert!(matches!(err, MessageError::InvalidPolRound { .. }), "{err}");
}

#[test]
fn refuses_heights_and_rounds_out_of_bounds_without_calling_it_misbehaviour() {
    let ks = keys();
    let mut c = node(&ks, 0);
    assert_eq!(
        c.check_message(&Message::Vote(vote(&ks[1], 1, 0, VoteKind::Prevote, None))),
        Err(MessageError::NotStarted)
    );
    start(&mut c, &ks, 5);
    let old = refused(
        &mut c,
        Message::Vote(vote(&ks[1], 4, 0, VoteKind::Prevote, None)),
    );
    assert!(matches!(old, MessageError::HeightTooOld { .. }));
    let far = vote(
        &ks[1],
        5 + crate::limits::MAX_HEIGHT_AHEAD + 1,
        0,
        VoteKind::Prevote,
        None,
    );
    assert!(matches!(
        c.check_message(&Message::Vote(far)),
        Err(MessageError::HeightTooFarAhead { .. })
    ));
    let edge = vote(
        &ks[1],
        5 + crate::limits::MAX_HEIGHT_AHEAD,
        0,
        VoteKind::Prevote,
        None,
    );
    assert_eq!(c.check_message(&Message::Vote(edge)), Ok(()));
    let max = crate::limits::MAX_ROUND_AHEAD;
    assert_eq!(
        c.check_message(&Message::Vote(vote(
            &ks[1],
            5,
            max,
            VoteKind::Prevote,
            None
        ))),
        Ok(())
    );
    let err = refused(
        &mut c,
        Message::Vote(vote(&ks[1], 5, max + 1, VoteKind::Prevote, None)),
    );
    assert!(matches!(err, MessageError::RoundTooFarAhead { .. }));
    assert!(!err.is_misbehaviour() && !old.is_misbehaviour());
}

/// Drives `c` (index `me`) through round 0 at height 1 until it is locked on `v`.
fn locked_on(ks: &[Keypair], me: usize, v: Hash) -> Consensus {
    let mut c = node(ks, me);
    start(&mut c, ks, 1);
    give_proposal(
        &mut c,
        proposal(&ks[proposer_index(1, 0)], 1, 0, v, None),
        true,
    );
    let mut out = Vec::new();
    for (i, k) in ks.iter().enumerate().filter(|(i, _)| *i != me).take(2) {
        let _ = i;
        out.extend(c.handle(Input::Vote(vote(k, 1, 0, VoteKind::Prevote, Some(v)))));
    }
    assert_eq!(
        signed_votes(&out, VoteKind::Precommit)[0].block_hash,
        Some(v)
    );
    assert_eq!(c.locked(), Some((Round(0), v)));
    c
}

/// Moves `c` from round `r` to `r + 1` with nil precommits from others and the timeout.
fn next_round(c: &mut Consensus, ks: &[Keypair], me: usize, r: u32) -> Vec<Action> {
    let mut out = Vec::new();
    for k in ks
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != me)
        .map(|(_, k)| k)
    {
        out.extend(c.handle(Input::Vote(vote(k, 1, r, VoteKind::Precommit, None))));
    }
    assert!(out.iter().any(|a| matches!(
        a,
        Action::ScheduleTimeout {
            step: Step::Precommit,
            ..
        }
    )));
    out.extend(c.handle(Input::Timeout {
        height: Height(1),
        round: Round(r),
        step: Step::Precommit,
    }));
    assert_eq!(c.round(), Round(r + 1));
    out
}

#[test]
fn locked_node_does_not_prevote_another_value_without_a_newer_polka() {
    let ks = keys();
    let me = 0;
    let (v, w) = (block(1), block(2));
    let mut c = locked_on(&ks, me, v);
    next_round(&mut c, &ks, me, 0);
    // Round 1: another value, no proof of lock.
    let out = give_proposal(
        &mut c,
        proposal(&ks[proposer_index(1, 1)], 1, 1, w, None),
        true,
    );
    assert_eq!(signed_votes(&out, VoteKind::Prevote)[0].block_hash, None);
    next_round(&mut c, &ks, me, 1);
    // Round 2: another value claiming a polka in round 0 that this node never saw: it waits
    // for the polka, and the propose timeout makes it prevote nil.
    let out = give_proposal(
        &mut c,
        proposal(&ks[proposer_index(1, 2)], 1, 2, w, Some(0)),
        true,
    );
    assert!(signed_votes(&out, VoteKind::Prevote).is_empty());
    let out = c.handle(Input::Timeout {
        height: Height(1),
        round: Round(2),
        step: Step::Propose,
    });
    assert_eq!(signed_votes(&out, VoteKind::Prevote)[0].block_hash, None);
    assert_eq!(c.locked(), Some((Round(0), v)));
}

#[test]
fn locked_node_prevotes_another_value_with_a_newer_polka() {
    let ks = keys();
    let me = 0;
    let (v, w) = (block(1), block(2));
    let mut c = locked_on(&ks, me, v);
    next_round(&mut c, &ks, me, 0);
    // Round 1: the others prevote w (this node prevotes nil, locked on v).
    for k in &ks[1..] {
        c.handle(Input::Vote(vote(k, 1, 1, VoteKind::Prevote, Some(w))));
    }
    next_round(&mut c, &ks, me, 1);
    let out = give_proposal(
        &mut c,
        proposal(&ks[proposer_index(1, 2)], 1, 2, w, Some(1)),
        true,
    );
    assert_eq!(signed_votes(&out, VoteKind::Prevote)[0].block_hash, Some(w));
}

#[test]
fn proposer_with_a_valid_value_reproposes_it_with_its_polka() {
    let ks = keys();
    // The proposer of round 1 at height 1.
    let me = proposer_index(1, 1);
    let v = block(1);
    let mut c = locked_on(&ks, me, v);
    let out = next_round(&mut c, &ks, me, 0);
    assert!(!out.iter().any(|a| matches!(a, Action::BuildBlock { .. })));
    assert_persist_before_broadcast(&out);
    let msgs = broadcasts(&out);
    assert!(msgs.contains(&Message::Proposal(proposal(&ks[me], 1, 1, v, Some(0)))));
    // The polka of round 0 travels with it.
    let polka = msgs
        .iter()
        .filter(|m| matches!(m, Message::Vote(sv) if sv.vote.round == Round(0) && sv.vote.kind == VoteKind::Prevote))
        .count();
    assert!(polka >= 3, "{msgs:?}");
}

#[test]
fn restart_from_persisted_state_does_not_sign_a_conflicting_vote() {
    let ks = keys();
    let me = 0;
    let mut c = node(&ks, me);
    start(&mut c, &ks, 1);
    let out = give_proposal(
        &mut c,
        proposal(&ks[proposer_index(1, 0)], 1, 0, block(1), None),
        true,
    );
    let persisted = out
        .iter()
        .rev()
        .find_map(|a| match a {
            Action::Persist(p) => Some(p.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        (persisted.height, persisted.round, persisted.step),
        (Height(1), Round(0), 2)
    );
    // Crash; restart from the persisted state.
    let mut c = Consensus::new(
        chain(),
        Some(ks[me].clone()),
        Config::default(),
        Some(persisted),
    );
    start(&mut c, &ks, 1);
    assert_eq!(c.round(), Round(0));
    // An equivocating proposer's other block, the propose timeout: never a second prevote.
    let out = give_proposal(
        &mut c,
        proposal(&ks[proposer_index(1, 0)], 1, 0, block(2), None),
        true,
    );
    assert!(signed_votes(&out, VoteKind::Prevote).is_empty(), "{out:?}");
    let out = c.handle(Input::Timeout {
        height: Height(1),
        round: Round(0),
        step: Step::Propose,
    });
    assert!(signed_votes(&out, VoteKind::Prevote).is_empty(), "{out:?}");
    // It may still precommit in round 0 (it has not precommitted yet).
    let mut out = Vec::new();
    for k in &ks[1..] {
        out.extend(c.handle(Input::Vote(vote(k, 1, 0, VoteKind::Prevote, None))));
    }
    assert_eq!(signed_votes(&out, VoteKind::Precommit)[0].block_hash, None);
}

#[test]
fn restart_keeps_the_lock() {
    let ks = keys();
    let me = 0;
    let v = block(1);
    let c = locked_on(&ks, me, v);
    let persisted = PersistedState {
        height: Height(1),
        round: Round(0),
        step: 3,
        locked: c.locked(),
        valid: c.valid(),
    };
    let mut c = Consensus::new(
        chain(),
        Some(ks[me].clone()),
        Config::default(),
        Some(persisted),
    );
    let out = start(&mut c, &ks, 1);
    // The restored block is re-validated.
    assert!(out.contains(&Action::ValidateBlock {
        height: Height(1),
        round: Round(0),
        block_hash: v
    }));
    c.handle(Input::BlockValidated {
        height: Height(1),
        round: Round(0),
        block_hash: v,
        valid: true,
    });
    next_round(&mut c, &ks, me, 0);
    let out = give_proposal(
        &mut c,
        proposal(&ks[proposer_index(1, 1)], 1, 1, block(2), None),
        true,
    );
    assert_eq!(signed_votes(&out, VoteKind::Prevote)[0].block_hash, None);
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

#[test]
fn observer_never_signs() {
    let ks = keys();
    let mut obs = Consensus::new(chain(), None, Config::default(), None);
    let out = start(&mut obs, &ks, 1);
    assert!(!out.iter().any(|a| matches!(a, Action::BuildBlock { .. })));
    let out = give_proposal(
        &mut obs,
        proposal(&ks[proposer_index(1, 0)], 1, 0, block(1), None),
        true,
    );
    assert!(broadcasts(&out).is_empty());
    let out = obs.handle(Input::Timeout {
        height: Height(1),
        round: Round(0),
        step: Step::Propose,
    });
    assert!(broadcasts(&out).is_empty());
    assert!(!out.iter().any(|a| matches!(a, Action::Persist(_))));
}

#[test]
fn commits_once_and_ignores_late_precommits_until_new_height() {
    let ks = keys();
    let mut c = node(&ks, 0);
    start(&mut c, &ks, 1);
    give_proposal(
        &mut c,
        proposal(&ks[proposer_index(1, 0)], 1, 0, block(1), None),
        true,
    );
    let mut out = Vec::new();
    for k in &ks[1..3] {
        out.extend(c.handle(Input::Vote(vote(
            k,
            1,
            0,
            VoteKind::Precommit,
            Some(block(1)),
        ))));
    }
    assert!(out.iter().all(|a| !matches!(a, Action::Commit(_))));
    // Its own prevote and... it has not precommitted yet: the third precommit from a peer decides.
    let out = c.handle(Input::Vote(vote(
        &ks[3],
        1,
        0,
        VoteKind::Precommit,
        Some(block(1)),
    )));
    let commit = out
        .iter()
        .find_map(|a| match a {
            Action::Commit(c) => Some(c.clone()),
            _ => None,
        })
        .unwrap();
    commit
        .verify(&chain(), Height(1), &block(1), &set(&ks))
        .unwrap();
    assert_eq!(c.decision(), Some((Round(0), block(1))));
    // Late precommit: nothing.
    assert!(c
        .handle(Input::Vote(vote(
            &ks[0],
            1,
            0,
            VoteKind::Precommit,
            Some(block(1))
        )))
        .is_empty());
    assert!(c
        .handle(Input::Timeout {
            height: Height(1),
            round: Round(0),
            step: Step::Propose
        })
        .is_empty());
    start(&mut c, &ks, 2);
    assert_eq!((c.height(), c.round()), (Height(2), Round(0)));
}

#[test]
fn buffers_next_height_messages_and_replays_them() {
    let ks = keys();
    let mut c = node(&ks, 0);
    start(&mut c, &ks, 1);
    let p = proposal(&ks[proposer_index(2, 0)], 2, 0, block(5), None);
    c.handle(Input::Proposal(p));
    assert_eq!(c.buffered(), 1);
    let out = start(&mut c, &ks, 2);
    assert!(out.contains(&Action::ValidateBlock {
        height: Height(2),
        round: Round(0),
        block_hash: block(5)
    }));
    assert_eq!(c.buffered(), 0);
}

#[test]
fn buffer_keeps_at_most_max_buffered_messages() {
    let ks = keys();
    let config = Config {
        max_buffered: 2,
        ..Config::default()
    };
    let mut c = Consensus::new(chain(), Some(ks[0].clone()), config, None);
    start(&mut c, &ks, 1);
    for r in 0..5 {
        c.handle(Input::Vote(vote(&ks[1], 2, r, VoteKind::Prevote, None)));
    }
    assert_eq!(c.buffered(), 2);
}

#[test]
fn requests_sync_once_when_more_than_a_third_is_at_a_higher_height() {
    let ks = keys();
    let mut c = node(&ks, 0);
    start(&mut c, &ks, 1);
    let out = c.handle(Input::Vote(vote(&ks[1], 3, 0, VoteKind::Prevote, None)));
    assert!(out.is_empty());
    let out = c.handle(Input::Vote(vote(&ks[2], 7, 0, VoteKind::Precommit, None)));
    assert_eq!(out, vec![Action::RequestSync { from: Height(1) }]);
    let out = c.handle(Input::Vote(vote(&ks[3], 3, 0, VoteKind::Prevote, None)));
    assert!(out.is_empty());
    // At the next height the replayed buffer (two validators at height 3) asks again, once.
    let out = start(&mut c, &ks, 2);
    assert_eq!(
        out.iter()
            .filter(|a| **a == Action::RequestSync { from: Height(2) })
            .count(),
        1
    );
}

#[test]
fn requests_sync_on_a_proposal_for_a_higher_height() {
    let ks = keys();
    let mut c = node(&ks, 0);
    start(&mut c, &ks, 2);
    let out = c.handle(Input::Proposal(proposal(
        &ks[proposer_index(4, 0)],
        4,
        0,
        block(1),
        None,
    )));
    assert_eq!(out, vec![Action::RequestSync { from: Height(2) }]);
}

#[test]
fn requests_sync_for_a_decided_block_it_never_saw() {
    let ks = keys();
    let mut c = node(&ks, 0);
    start(&mut c, &ks, 1);
    let mut out = Vec::new();
    for k in &ks[1..] {
        out.extend(c.handle(Input::Vote(vote(
            k,
            1,
            0,
            VoteKind::Precommit,
            Some(block(4)),
        ))));
    }
    assert!(out.contains(&Action::RequestSync { from: Height(1) }));
    assert!(!out.iter().any(|a| matches!(a, Action::Commit(_))));
}

#[test]
fn reports_a_double_vote_once_and_counts_the_first() {
    let ks = keys();
    let mut c = node(&ks, 0);
    start(&mut c, &ks, 1);
    let a = vote(&ks[1], 1, 0, VoteKind::Prevote, Some(block(1)));
    let b = vote(&ks[1], 1, 0, VoteKind::Prevote, Some(block(2)));
    assert!(c.handle(Input::Vote(a.clone())).is_empty());
    assert_eq!(
        c.handle(Input::Vote(b.clone())),
        vec![Action::Evidence(Evidence::DoubleVote(a, b.clone()))]
    );
    assert!(c.handle(Input::Vote(b)).is_empty());
}

#[test]
fn reports_a_double_proposal_once() {
    let ks = keys();
    let mut c = node(&ks, 0);
    start(&mut c, &ks, 1);
    let pk = &ks[proposer_index(1, 0)];
    let a = proposal(pk, 1, 0, block(1), None);
    let b = proposal(pk, 1, 0, block(2), None);
    c.handle(Input::Proposal(a.clone()));
    assert_eq!(
        c.handle(Input::Proposal(b.clone())),
        vec![Action::Evidence(Evidence::DoubleProposal(a, b.clone()))]
    );
    assert!(c.handle(Input::Proposal(b)).is_empty());
    assert!(MAX_EVIDENCE_PER_HEIGHT > 0);
}

#[test]
fn skips_to_a_higher_round_seen_from_more_than_a_third() {
    let ks = keys();
    let mut c = node(&ks, 0);
    start(&mut c, &ks, 1);
    c.handle(Input::Vote(vote(&ks[1], 1, 5, VoteKind::Prevote, None)));
    assert_eq!(c.round(), Round(0));
    let out = c.handle(Input::Vote(vote(&ks[2], 1, 5, VoteKind::Precommit, None)));
    assert_eq!(c.round(), Round(5));
    assert!(out.iter().any(|a| matches!(
        a,
        Action::ScheduleTimeout {
            round: Round(5),
            step: Step::Propose,
            duration_ms: 3500,
            ..
        }
    )));
}

#[test]
fn a_stuck_round_rebroadcasts_its_own_votes_on_the_rearmed_propose_timer() {
    let ks = keys();
    let mut c = node(&ks, 0);
    start(&mut c, &ks, 1);
    let timeout = Input::Timeout {
        height: Height(1),
        round: Round(0),
        step: Step::Propose,
    };
    let out = c.handle(timeout.clone());
    let prevote = signed_votes(&out, VoteKind::Prevote);
    assert_eq!(prevote.len(), 1);
    assert!(out.iter().any(|a| matches!(
        a,
        Action::ScheduleTimeout {
            step: Step::Propose,
            ..
        }
    )));
    let out = c.handle(timeout);
    assert_eq!(signed_votes(&out, VoteKind::Prevote), prevote);
    assert!(!out.iter().any(|a| matches!(a, Action::Persist(_))));
}

#[test]
fn catches_up_a_peer_still_at_the_previous_height() {
    let ks = keys();
    let mut net = Net::new(&ks, 0);
    net.run(&ks, 1);
    let c = &mut net.nodes[0];
    assert_eq!(c.height(), Height(2));
    // A peer still at height 1 says something; on the next tick the decision is re-sent.
    c.handle(Input::Vote(vote(&ks[1], 1, 3, VoteKind::Prevote, None)));
    let r = c.round();
    c.handle(Input::Timeout {
        height: Height(2),
        round: r,
        step: Step::Propose,
    });
    let out = c.handle(Input::Timeout {
        height: Height(2),
        round: r,
        step: Step::Propose,
    });
    let old: Vec<Vote> = signed_votes(&out, VoteKind::Precommit)
        .into_iter()
        .filter(|v| v.height == Height(1))
        .collect();
    assert!(old.len() >= 3, "{out:?}");
    assert!(net.messages > 0);
}

#[test]
fn handles_garbage_inputs_without_acting() {
    let ks = keys();
    let mut c = node(&ks, 0);
    // Before any height: messages are buffered, inputs for nothing are ignored.
    assert!(c
        .handle(Input::BlockValidated {
            height: Height(1),
            round: Round(0),
            block_hash: block(1),
            valid: true
        })
        .is_empty());
    assert!(c
        .handle(Input::Timeout {
            height: Height(9),
            round: Round(9),
            step: Step::Prevote
        })
        .is_empty());
    start(&mut c, &ks, 1);
    // NewHeight going backwards, timeouts for other rounds, unrequested builds: nothing.
    assert!(start(&mut c, &ks, 1).is_empty());
    assert!(c
        .handle(Input::Timeout {
            height: Height(1),
            round: Round(3),
            step: Step::Precommit
        })
        .is_empty());
    assert!(c
        .handle(Input::BlockBuilt {
            height: Height(1),
            round: Round(0),
            block_hash: block(1)
        })
        .is_empty());
}
