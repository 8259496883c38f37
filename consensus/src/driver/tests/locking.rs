//! Locking, re-proposing a valid value, and restarting from the persisted signing state.

use super::*;

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
