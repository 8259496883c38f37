//! Whole heights: deciding with certificates, observers, buffering, sync requests, evidence, round skips, rebroadcast and catch-up.

use super::*;

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

#[test]
fn consensus_can_move_to_another_thread() {
    fn assert_send<T: Send + 'static>() {}
    assert_send::<Consensus>();
}
