//! The crate's error types: why a message is refused ([`MessageError`]) and why a
//! [`crate::Config`] is refused ([`ConfigError`]).
//!
//! Each variant says what is wrong in domain words. [`MessageError::is_misbehaviour`] separates
//! proofs of a faulty or misconfigured peer (penalise it) from messages that are only stale or
//! early for this node (never penalise: an honest peer at another height sends them).

use govchain_ledger::{ChainId, Height, PublicKey, Round, SignatureError};

use crate::limits::{MAX_HEIGHT_AHEAD, MAX_ROUND_AHEAD};

/// Why a consensus message is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// No [`crate::Input::NewHeight`] yet: there is no validator set to check against.
    #[error("consensus has not started a height yet")]
    NotStarted,
    /// Signed for another chain.
    #[error("message is for chain {got}, this node runs chain {expected}")]
    WrongChain {
        /// This node's chain.
        expected: ChainId,
        /// The message's chain.
        got: ChainId,
    },
    /// The signature does not verify.
    #[error("bad signature: {0}")]
    BadSignature(SignatureError),
    /// The signer is not in the validator set of the height checked against.
    #[error("signer {signer} is not a validator at height {height}")]
    NotAValidator {
        /// The signer.
        signer: PublicKey,
        /// The height whose set was used.
        height: Height,
    },
    /// A proposal signed by someone other than the round's proposer.
    #[error("proposal for height {height} round {} signed by {signer}, not by the round's proposer", .round.0)]
    WrongProposer {
        /// Height.
        height: Height,
        /// Round.
        round: Round,
        /// Who signed it.
        signer: PublicKey,
    },
    /// A proposal whose proof-of-lock round is not below its round.
    #[error("proposal for round {} claims a proof-of-lock round {} that is not below it", .round.0, .pol_round.0)]
    InvalidPolRound {
        /// The proposal's round.
        round: Round,
        /// Its pol_round.
        pol_round: Round,
    },
    /// For a height this node has already decided.
    #[error("height {height} is below the current height {current}")]
    HeightTooOld {
        /// The message's height.
        height: Height,
        /// This node's height.
        current: Height,
    },
    /// For a height too far above this node's to be kept.
    #[error("height {height} is more than {MAX_HEIGHT_AHEAD} above the current height {current}")]
    HeightTooFarAhead {
        /// The message's height.
        height: Height,
        /// This node's height.
        current: Height,
    },
    /// For a round too far above the current one to be kept.
    #[error("round {} is more than {MAX_ROUND_AHEAD} above the current round {}", .round.0, .current.0)]
    RoundTooFarAhead {
        /// The message's round.
        round: Round,
        /// The round it was compared with (0 for a future height).
        current: Round,
    },
}

impl MessageError {
    /// Whether the message proves the sender faulty or misconfigured (as opposed to merely being
    /// for another height or round than this node's, which honest peers send all the time).
    pub fn is_misbehaviour(&self) -> bool {
        match self {
            MessageError::WrongChain { .. }
            | MessageError::BadSignature(_)
            | MessageError::NotAValidator { .. }
            | MessageError::WrongProposer { .. }
            | MessageError::InvalidPolRound { .. } => true,
            MessageError::NotStarted
            | MessageError::HeightTooOld { .. }
            | MessageError::HeightTooFarAhead { .. }
            | MessageError::RoundTooFarAhead { .. } => false,
        }
    }
}

/// Why a [`crate::Config`] is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A base timeout of zero would make rounds race ahead of any network.
    #[error("{name} must be at least 1 ms")]
    ZeroTimeout {
        /// The field.
        name: &'static str,
    },
    /// A timeout (base or growth) above [`crate::limits::MAX_TIMEOUT_MS`].
    #[error("{name} = {value_ms} ms is above the limit of {limit_ms} ms")]
    TimeoutTooLong {
        /// The field.
        name: &'static str,
        /// Its value.
        value_ms: u64,
        /// The limit.
        limit_ms: u64,
    },
    /// A buffer cap above [`crate::limits::MAX_BUFFERED_LIMIT`].
    #[error("max_buffered = {value} is above the limit of {limit}")]
    BufferTooLarge {
        /// Its value.
        value: usize,
        /// The limit.
        limit: usize,
    },
}
