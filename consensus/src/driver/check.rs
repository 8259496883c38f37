//! Message acceptance: which height a message is for relative to this node, and whether it may
//! be acted on. Cheap checks (chain, bounds, membership, proposer) run before the signature.
//!
//! Messages for a later height are checked against the CURRENT validator set (the set is
//! assumed unchanged until that height starts; they are checked again when replayed).
//! Messages for the previous height are checked against that height's set and only used to
//! notice a peer that is behind.

use govchain_ledger::{ChainId, Height, PublicKey, Round, ValidatorSet};

use crate::error::MessageError;
use crate::limits::{MAX_HEIGHT_AHEAD, MAX_ROUND_AHEAD};
use crate::messages::Message;

use super::Consensus;

/// Where an acceptable message belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Placement {
    /// The height just decided (a peer is behind).
    Previous,
    /// The current height.
    Current,
    /// A later height; `bufferable` if within [`MAX_HEIGHT_AHEAD`].
    Future { bufferable: bool },
}

pub(super) fn height_of(m: &Message) -> Height {
    match m {
        Message::Proposal(p) => p.proposal.height,
        Message::Vote(v) => v.vote.height,
    }
}

pub(super) fn round_of(m: &Message) -> Round {
    match m {
        Message::Proposal(p) => p.proposal.round,
        Message::Vote(v) => v.vote.round,
    }
}

fn chain_of(m: &Message) -> &ChainId {
    match m {
        Message::Proposal(p) => &p.proposal.chain_id,
        Message::Vote(v) => &v.vote.chain_id,
    }
}

fn signer_of(m: &Message) -> PublicKey {
    match m {
        Message::Proposal(p) => p.proposer,
        Message::Vote(v) => v.validator,
    }
}

impl Consensus {
    /// Accepts or refuses `m` (see the module doc); `Ok` says where it belongs.
    pub(super) fn classify(&self, m: &Message) -> Result<Placement, MessageError> {
        let hs = self.current.as_ref().ok_or(MessageError::NotStarted)?;
        let chain = chain_of(m);
        if chain != &self.chain_id {
            return Err(MessageError::WrongChain {
                expected: self.chain_id.clone(),
                got: chain.clone(),
            });
        }
        let (height, round, signer) = (height_of(m), round_of(m), signer_of(m));
        let (placement, validators, round_base): (Placement, &ValidatorSet, Option<Round>) =
            if height == hs.height {
                (
                    Placement::Current,
                    hs.keeper.validators(),
                    Some(hs.state.round),
                )
            } else if height > hs.height {
                let bufferable = height.0 - hs.height.0 <= MAX_HEIGHT_AHEAD;
                (
                    Placement::Future { bufferable },
                    hs.keeper.validators(),
                    Some(Round(0)),
                )
            } else {
                match &self.last_commit {
                    Some(lc) if lc.height == height => (Placement::Previous, &lc.validators, None),
                    _ => {
                        return Err(MessageError::HeightTooOld {
                            height,
                            current: hs.height,
                        })
                    }
                }
            };
        if let Some(base) = round_base {
            if round.0 > base.0.saturating_add(MAX_ROUND_AHEAD) {
                return Err(MessageError::RoundTooFarAhead {
                    round,
                    current: base,
                });
            }
        }
        if let Message::Proposal(p) = m {
            if let Some(pol_round) = p.proposal.pol_round {
                if pol_round >= round {
                    return Err(MessageError::InvalidPolRound { round, pol_round });
                }
            }
        }
        if validators.get(&signer).is_none() {
            return Err(MessageError::NotAValidator { signer, height });
        }
        if let Message::Proposal(_) = m {
            if validators.proposer(height, round).map(|v| v.key) != Some(signer) {
                return Err(MessageError::WrongProposer {
                    height,
                    round,
                    signer,
                });
            }
        }
        let checked = match m {
            Message::Proposal(p) => {
                self.verifier
                    .verify(&p.proposer, &p.proposal.sign_digest(), &p.signature)
            }
            Message::Vote(v) => {
                self.verifier
                    .verify(&v.validator, &v.vote.sign_digest(), &v.signature)
            }
        };
        checked.map_err(MessageError::BadSignature)?;
        Ok(placement)
    }
}
