//! Proposing and prevoting: the proposer builds and proposes; others validate, then prevote.

use super::*;

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
