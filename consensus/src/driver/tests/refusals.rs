//! Invalid, stale and early messages: `check_message` names the reason and `handle` does nothing.

use super::*;

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
