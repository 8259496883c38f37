//! Every bound of the consensus state machine, named, and the timeout schedule of [`Config`].
//!
//! A peer can make this node hold at most: [`MAX_ROUND_AHEAD`] future rounds of votes per
//! height (one counted vote per validator, round and kind), `Config::max_buffered` messages
//! for the next [`MAX_HEIGHT_AHEAD`] heights, and [`crate::votes::MAX_EVIDENCE_PER_HEIGHT`]
//! equivocations. Timeouts grow linearly per round and saturate instead of overflowing.

use govchain_ledger::Round;

use crate::error::ConfigError;
use crate::messages::{Config, Step};

/// Votes and proposals for rounds more than this above the current round are refused. Large
/// enough that a node restarted into round 0 still hears the rounds its peers reached during a
/// long partition (timeouts grow per round, so round 1024 is days of partition).
pub const MAX_ROUND_AHEAD: u32 = 1024;

/// Messages for heights up to this many above the current one are buffered and replayed; higher
/// ones only count as a sign that this node is behind (see [`crate::Action::RequestSync`]).
pub const MAX_HEIGHT_AHEAD: u64 = 4;

/// A node re-broadcasts its own votes of at most this many rounds before the current one (for
/// peers seen in an older round).
pub const MAX_REBROADCAST_ROUNDS: u32 = 4;

/// Largest accepted base timeout or per-round growth.
pub const MAX_TIMEOUT_MS: u64 = 10 * 60 * 1000;

/// Largest accepted `Config::max_buffered`.
pub const MAX_BUFFERED_LIMIT: usize = 1_000_000;

impl Config {
    /// The timeout of `step` in `round`: base + round × growth (saturating).
    pub fn timeout_ms(&self, step: Step, round: Round) -> u64 {
        let (base, delta) = match step {
            Step::Propose => (self.propose_ms, self.propose_delta_ms),
            Step::Prevote => (self.prevote_ms, self.prevote_delta_ms),
            Step::Precommit => (self.precommit_ms, self.precommit_delta_ms),
        };
        base.saturating_add(delta.saturating_mul(u64::from(round.0)))
    }

    /// Checks every field against its limit (call once at start-up).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fields = [
            ("propose_ms", self.propose_ms, true),
            ("propose_delta_ms", self.propose_delta_ms, false),
            ("prevote_ms", self.prevote_ms, true),
            ("prevote_delta_ms", self.prevote_delta_ms, false),
            ("precommit_ms", self.precommit_ms, true),
            ("precommit_delta_ms", self.precommit_delta_ms, false),
        ];
        for (name, value_ms, base) in fields {
            if base && value_ms == 0 {
                return Err(ConfigError::ZeroTimeout { name });
            }
            if value_ms > MAX_TIMEOUT_MS {
                return Err(ConfigError::TimeoutTooLong {
                    name,
                    value_ms,
                    limit_ms: MAX_TIMEOUT_MS,
                });
            }
        }
        if self.max_buffered > MAX_BUFFERED_LIMIT {
            return Err(ConfigError::BufferTooLarge {
                value: self.max_buffered,
                limit: MAX_BUFFERED_LIMIT,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_grow_per_round() {
        let c = Config::default();
        assert_eq!(c.timeout_ms(Step::Propose, Round(0)), 1000);
        assert_eq!(c.timeout_ms(Step::Propose, Round(2)), 2000);
        assert_eq!(c.timeout_ms(Step::Prevote, Round(1)), 750);
        assert_eq!(c.timeout_ms(Step::Precommit, Round(4)), 1500);
        let huge = Config {
            propose_delta_ms: u64::MAX,
            ..Config::default()
        };
        assert_eq!(huge.timeout_ms(Step::Propose, Round(u32::MAX)), u64::MAX);
    }

    #[test]
    fn default_config_is_valid_and_limits_are_checked_at_the_edge() {
        Config::default().validate().unwrap();
        let at = Config {
            prevote_ms: MAX_TIMEOUT_MS,
            max_buffered: MAX_BUFFERED_LIMIT,
            ..Config::default()
        };
        at.validate().unwrap();
        let over = Config {
            prevote_ms: MAX_TIMEOUT_MS + 1,
            ..Config::default()
        };
        assert!(matches!(
            over.validate(),
            Err(ConfigError::TimeoutTooLong {
                name: "prevote_ms",
                ..
            })
        ));
        let zero = Config {
            propose_ms: 0,
            ..Config::default()
        };
        assert_eq!(
            zero.validate(),
            Err(ConfigError::ZeroTimeout { name: "propose_ms" })
        );
        let big = Config {
            max_buffered: MAX_BUFFERED_LIMIT + 1,
            ..Config::default()
        };
        assert!(matches!(
            big.validate(),
            Err(ConfigError::BufferTooLarge { .. })
        ));
    }
}
