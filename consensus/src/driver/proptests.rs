//! Property tests: random interleavings of valid, invalid, stale, future and equivocating
//! inputs (and crash-restarts from the last persisted state) fed to one node.
//!
//! Whatever the order, the node never panics, never signs two different votes for one (height,
//! round, kind) nor two proposals for one (height, round) — across restarts too — and persists
//! its signing state before broadcasting anything it newly signed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use govchain_ledger::{
    ChainId, Hash, Height, Keypair, Round, Validator, ValidatorSet, Vote, VoteKind,
};
use proptest::prelude::*;

use super::Consensus;
use crate::messages::{sign_vote, Action, Config, Input, Message, PersistedState, Proposal, Step};
use crate::messages::{SignedProposal, SignedVote};
use crate::verify::MemoVerifier;

const N: usize = 4;
const ME: usize = 0;
const HEIGHTS: u64 = 2;
const ROUNDS: u32 = 3;

struct Fixture {
    keys: Vec<Keypair>,
    validators: ValidatorSet,
    /// Messages from the network, including bad ones.
    pool: Vec<Message>,
    verifier: Arc<MemoVerifier>,
}

fn chain() -> ChainId {
    ChainId::new("prop").unwrap()
}

fn blocks() -> [Option<Hash>; 3] {
    [None, Some(Hash([0xA; 32])), Some(Hash([0xB; 32]))]
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let keys: Vec<Keypair> = (0..N as u8)
            .map(|i| Keypair::from_seed([i + 40; 32]))
            .collect();
        let validators = ValidatorSet {
            validators: keys
                .iter()
                .map(|k| Validator {
                    key: k.public(),
                    power: 1,
                    department: "d".into(),
                })
                .collect(),
        };
        let outsider = Keypair::from_seed([99; 32]);
        let mut pool = Vec::new();
        for h in 1..=HEIGHTS + 1 {
            for r in 0..ROUNDS {
                let proposer = validators.proposer(Height(h), Round(r)).unwrap().key;
                let pk = keys.iter().find(|k| k.public() == proposer).unwrap();
                // Its own proposals come back only as echoes (`Op::Echo`).
                let mine = proposer == keys[ME].public();
                for b in blocks().into_iter().flatten().filter(|_| !mine) {
                    for pol in [None, Some(Round(0)), Some(Round(1))] {
                        let p = Proposal {
                            chain_id: chain(),
                            height: Height(h),
                            round: Round(r),
                            block_hash: b,
                            pol_round: pol,
                        };
                        pool.push(Message::Proposal(p.clone().sign(pk)));
                        if pol.is_none() && b == Hash([0xA; 32]) {
                            // Signed by a validator that is not the proposer.
                            let other = keys.iter().find(|k| k.public() != proposer).unwrap();
                            pool.push(Message::Proposal(p.sign(other)));
                        }
                    }
                }
                // Votes from the others and an outsider (this node's own votes come back only as
                // echoes of what it signed: see `Op::Echo`).
                for k in keys.iter().skip(1).chain([&outsider]) {
                    for kind in [VoteKind::Prevote, VoteKind::Precommit] {
                        for value in blocks() {
                            let v = Vote {
                                chain_id: chain(),
                                height: Height(h),
                                round: Round(r),
                                kind,
                                block_hash: value,
                            };
                            pool.push(Message::Vote(sign_vote(v, k)));
                        }
                    }
                }
            }
        }
        let mut forged = match pool[0].clone() {
            Message::Proposal(p) => p,
            Message::Vote(_) => unreachable!(),
        };
        forged.signature.0[0] ^= 1;
        pool.push(Message::Proposal(forged));
        let wrong_chain = Vote {
            chain_id: ChainId::new("other").unwrap(),
            height: Height(1),
            round: Round(0),
            kind: VoteKind::Prevote,
            block_hash: None,
        };
        pool.push(Message::Vote(sign_vote(wrong_chain, &keys[1])));
        Fixture {
            keys,
            validators,
            pool,
            verifier: Arc::new(MemoVerifier::default()),
        }
    })
}

#[derive(Debug, Clone)]
enum Op {
    /// A vote from validator `who` (1..N) for (height, round offsets, precommit?, value index).
    Vote(u64, u32, usize, bool, usize),
    /// The proposal at (height, round offsets), if another validator proposes, of block index
    /// with pol index.
    Propose(u64, u32, usize, usize),
    /// Any message of the pool (mostly invalid, stale or future ones).
    Deliver(usize),
    /// One of this node's own earlier messages comes back (a peer's rebroadcast).
    Echo(usize),
    /// (height, round offsets, step index).
    Timeout(u64, u32, u8),
    /// (height offset, block index, valid).
    Validated(u64, u8, bool),
    /// (height, round offsets, block index).
    Built(u64, u32, u8),
    NextHeight,
    Restart,
}

/// Heights and rounds of ops are offsets from the node's current ones (mostly 0), so quorums
/// form often; `Deliver` covers everything else.
fn offset() -> impl Strategy<Value = u32> {
    prop_oneof![6 => Just(0u32), 2 => Just(1u32), 1 => 2u32..4]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (prop_oneof![5 => Just(0u64), 1 => Just(1u64)], offset(), 1..N, any::<bool>(), prop_oneof![1 => Just(0usize), 3 => Just(1usize), 1 => Just(2usize)])
            .prop_map(|(h, r, w, k, v)| Op::Vote(h, r, w, k, v)),
        3 => (Just(0u64), offset(), 0usize..2, 0usize..3).prop_map(|(h, r, b, p)| Op::Propose(h, r, b, p)),
        2 => any::<usize>().prop_map(Op::Deliver),
        1 => any::<usize>().prop_map(Op::Echo),
        3 => (Just(0u64), prop_oneof![4 => Just(0u32), 1 => Just(1u32)], 0u8..3).prop_map(|(h, r, s)| Op::Timeout(h, r, s)),
        3 => (Just(0u64), 0u8..3, prop_oneof![4 => Just(true), 1 => Just(false)]).prop_map(|(h, b, v)| Op::Validated(h, b, v)),
        1 => (Just(0u64), Just(0u32), 0u8..3).prop_map(|(h, r, b)| Op::Built(h, r, b)),
        1 => Just(Op::NextHeight),
        1 => Just(Op::Restart),
    ]
}

fn block(i: u8) -> Hash {
    blocks()[usize::from(i % 3)].unwrap_or(Hash([0xC; 32]))
}

/// Checks one batch: persist-before-broadcast for newly signed messages, and no conflicting
/// signature ever (recorded in `signed`).
fn check_batch(
    actions: &[Action],
    me: &Keypair,
    signed: &mut BTreeMap<(Height, Round, u8), Message>,
) -> Result<(), TestCaseError> {
    let mut persisted = false;
    for a in actions {
        let m = match a {
            Action::Persist(_) => {
                persisted = true;
                continue;
            }
            Action::Broadcast(m) => m,
            _ => continue,
        };
        let key = match m {
            Message::Proposal(p) if p.proposer == me.public() => {
                (p.proposal.height, p.proposal.round, 1)
            }
            Message::Vote(v) if v.validator == me.public() => {
                let step = if v.is_precommit() { 3 } else { 2 };
                (v.vote.height, v.vote.round, step)
            }
            _ => continue,
        };
        match signed.get(&key) {
            Some(earlier) => prop_assert_eq!(earlier, m, "conflicting signatures at {:?}", key),
            None => {
                prop_assert!(persisted, "broadcast of a new signature before Persist");
                signed.insert(key, m.clone());
            }
        }
    }
    Ok(())
}

/// (signer, height, round, precommit?, value).
type VoteKey = (usize, Height, Round, bool, Option<Hash>);

/// Signs (once, then from a cache) `vote` by validator `who`.
fn signed_vote(f: &Fixture, vote: Vote, who: usize) -> SignedVote {
    static CACHE: OnceLock<Mutex<BTreeMap<VoteKey, SignedVote>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = (
        who,
        vote.height,
        vote.round,
        vote.kind == VoteKind::Precommit,
        vote.block_hash,
    );
    let mut map = cache.lock().unwrap();
    map.entry(key)
        .or_insert_with(|| sign_vote(vote, &f.keys[who]))
        .clone()
}

/// The (h, r) proposal of block index `b` with pol index `pol`, if another validator proposes.
fn proposal(f: &Fixture, h: u64, r: u32, b: usize, pol: usize) -> Option<SignedProposal> {
    let proposer = f.validators.proposer(Height(h), Round(r))?.key;
    let key = f.keys.iter().find(|k| k.public() == proposer)?;
    if proposer == f.keys[ME].public() {
        return None;
    }
    let p = Proposal {
        chain_id: chain(),
        height: Height(h),
        round: Round(r),
        block_hash: blocks()[b + 1]?,
        pol_round: [None, Some(Round(0)), Some(Round(1))][pol],
    };
    Some(p.sign(key))
}

fn input_for(m: &Message) -> Input {
    match m.clone() {
        Message::Proposal(p) => Input::Proposal(p),
        Message::Vote(v) => Input::Vote(v),
    }
}

fn fresh(f: &Fixture, restored: Option<PersistedState>) -> Consensus {
    Consensus::with_verifier(
        chain(),
        Some(f.keys[ME].clone()),
        Config::default(),
        restored,
        f.verifier.clone(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn never_signs_conflicting_messages_in_any_interleaving(ops in prop::collection::vec(op(), 1..120)) {
        let f = fixture();
        let me = &f.keys[ME];
        let mut signed = BTreeMap::new();
        let mut persisted: Option<PersistedState> = None;
        let mut committed = 0u64;
        let mut c = fresh(f, None);
        let mut out = c.handle(Input::NewHeight { height: Height(1), validators: f.validators.clone() });
        for op in ops {
            check_batch(&out, me, &mut signed)?;
            for a in &out {
                match a {
                    Action::Persist(p) => persisted = Some(p.clone()),
                    Action::Commit(cert) => {
                        cert.verify(&chain(), cert.height, &cert.block_hash, &f.validators)
                            .map_err(|e| TestCaseError::fail(e.to_string()))?;
                        committed = committed.max(cert.height.0);
                    }
                    _ => {}
                }
            }
            out = match op {
                Op::Vote(dh, dr, who, precommit, v) => {
                    let (h, r) = (c.height().0 + dh, c.round().0 + dr);
                    let kind = if precommit { VoteKind::Precommit } else { VoteKind::Prevote };
                    let vote = Vote {
                        chain_id: chain(),
                        height: Height(h),
                        round: Round(r),
                        kind,
                        block_hash: blocks()[v],
                    };
                    c.handle(Input::Vote(signed_vote(f, vote, who)))
                }
                Op::Propose(dh, dr, b, pol) => match proposal(f, c.height().0 + dh, c.round().0 + dr, b, pol) {
                    Some(p) => c.handle(Input::Proposal(p)),
                    None => Vec::new(),
                },
                Op::Deliver(i) => c.handle(input_for(&f.pool[i % f.pool.len()])),
                Op::Echo(i) => match signed.values().nth(i % signed.len().max(1)) {
                    Some(m) => c.handle(input_for(m)),
                    None => Vec::new(),
                },
                Op::Timeout(dh, dr, s) => {
                    let step = [Step::Propose, Step::Prevote, Step::Precommit][usize::from(s)];
                    let (height, round) = (Height(c.height().0 + dh), Round(c.round().0 + dr));
                    c.handle(Input::Timeout { height, round, step })
                }
                Op::Validated(dh, b, valid) => c.handle(Input::BlockValidated {
                    height: Height(c.height().0 + dh), round: c.round(), block_hash: block(b), valid,
                }),
                Op::Built(dh, dr, b) => c.handle(Input::BlockBuilt {
                    height: Height(c.height().0 + dh), round: Round(c.round().0 + dr), block_hash: block(b),
                }),
                Op::NextHeight => c.handle(Input::NewHeight {
                    height: Height(committed + 1).max(c.height().next()),
                    validators: f.validators.clone(),
                }),
                Op::Restart => {
                    let h = c.height();
                    c = fresh(f, persisted.clone());
                    c.handle(Input::NewHeight { height: h, validators: f.validators.clone() })
                }
            };
        }
        check_batch(&out, me, &mut signed)?;
    }
}
