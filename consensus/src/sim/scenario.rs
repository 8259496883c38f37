//! Simulator scenarios: their names, and the fault plan each one draws from the run's RNG.
//!
//! A [`Plan`] is drawn once at the start of a run, so the whole run (faults included) is a
//! function of (scenario, validators, seed). Every plan keeps at most f = ⌊(n−1)/3⌋ validators
//! faulty at a time (crashed or byzantine) and every partition side below a quorum, so the
//! protocol must stay safe throughout and live once the last fault ends.

use std::fmt;
use std::str::FromStr;

use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// A simulator scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Scenario {
    /// Random delays only.
    #[default]
    Honest,
    /// f validators crash at random times; some restart from their persisted state.
    CrashF,
    /// The network splits into two sides without a quorum, then heals (once or twice).
    PartitionHeal,
    /// Up to f validators double-vote and double-propose (sometimes invalid blocks).
    Byzantine,
    /// Heavy duplication, reordering and some loss.
    DupReorder,
    /// Every scenario above, one after the other.
    All,
}

impl Scenario {
    /// The scenarios `All` runs, in order.
    pub const CONCRETE: [Scenario; 5] = [
        Scenario::Honest,
        Scenario::CrashF,
        Scenario::PartitionHeal,
        Scenario::Byzantine,
        Scenario::DupReorder,
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Honest => "honest",
            Scenario::CrashF => "crash",
            Scenario::PartitionHeal => "partition",
            Scenario::Byzantine => "byzantine",
            Scenario::DupReorder => "dup-reorder",
            Scenario::All => "all",
        }
    }

    /// The concrete scenarios this one stands for.
    pub fn expand(self) -> Vec<Scenario> {
        match self {
            Scenario::All => Scenario::CONCRETE.to_vec(),
            s => vec![s],
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A scenario name that is not one of `honest`, `crash`, `partition`, `byzantine`,
/// `dup-reorder`, `all`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scenario {0:?}: expected honest, crash, partition, byzantine, dup-reorder or all")]
pub struct UnknownScenario(pub String);

impl FromStr for Scenario {
    type Err = UnknownScenario;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Scenario::All]
            .into_iter()
            .chain(Scenario::CONCRETE)
            .find(|sc| sc.name() == s)
            .ok_or_else(|| UnknownScenario(s.to_string()))
    }
}

/// How links behave (outside partitions).
#[derive(Debug, Clone, Copy)]
pub(crate) struct NetProfile {
    pub delay_min_ms: u64,
    pub delay_max_ms: u64,
    /// Probability that a message is lost.
    pub drop: f64,
    /// Probability that a message is delivered more than once.
    pub dup: f64,
}

/// Two sides that cannot talk during [start, end).
#[derive(Debug, Clone)]
pub(crate) struct Partition {
    pub start_ms: u64,
    pub end_ms: u64,
    /// `side[i]`: which side node i is on.
    pub side: Vec<bool>,
}

/// A node that crashes, and maybe restarts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Crash {
    pub node: usize,
    pub at_ms: u64,
    pub restart_at_ms: Option<u64>,
}

/// The faults of one run.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub net: NetProfile,
    pub partitions: Vec<Partition>,
    pub crashes: Vec<Crash>,
    pub byzantine: Vec<usize>,
}

const CALM: NetProfile = NetProfile {
    delay_min_ms: 5,
    delay_max_ms: 120,
    drop: 0.0,
    dup: 0.0,
};

const STORMY: NetProfile = NetProfile {
    delay_min_ms: 1,
    delay_max_ms: 800,
    drop: 0.05,
    dup: 0.3,
};

/// Faults start within this window from the start of a run: an undisturbed height takes a few
/// hundred ms, so faults hit runs mid-flight.
const FAULT_WINDOW_MS: u64 = 1_500;

/// Most validators that may be faulty at once among `n`.
pub(crate) fn max_faulty(n: usize) -> usize {
    n.saturating_sub(1) / 3
}

fn pick(n: usize, k: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let mut all: Vec<usize> = (0..n).collect();
    all.shuffle(rng);
    all.truncate(k);
    all.sort_unstable();
    all
}

impl Plan {
    /// Draws the faults of `scenario` (a concrete one) for `n` validators.
    pub(crate) fn draw(scenario: Scenario, n: usize, rng: &mut ChaCha8Rng) -> Plan {
        let f = max_faulty(n);
        let mut plan = Plan {
            net: CALM,
            partitions: Vec::new(),
            crashes: Vec::new(),
            byzantine: Vec::new(),
        };
        match scenario {
            Scenario::Honest | Scenario::All => {}
            Scenario::DupReorder => plan.net = STORMY,
            Scenario::CrashF => {
                for node in pick(n, f, rng) {
                    let at_ms = rng.random_range(0..FAULT_WINDOW_MS);
                    let restart_at_ms = rng
                        .random_bool(2.0 / 3.0)
                        .then(|| at_ms + rng.random_range(300..3_000));
                    plan.crashes.push(Crash {
                        node,
                        at_ms,
                        restart_at_ms,
                    });
                }
            }
            Scenario::PartitionHeal => {
                let episodes = rng.random_range(1..=2);
                let mut start_ms = rng.random_range(0..FAULT_WINDOW_MS);
                for _ in 0..episodes {
                    let end_ms = start_ms + rng.random_range(500..5_000);
                    let one_side = pick(n, n / 2, rng);
                    let side = (0..n).map(|i| one_side.contains(&i)).collect();
                    plan.partitions.push(Partition {
                        start_ms,
                        end_ms,
                        side,
                    });
                    start_ms = end_ms + rng.random_range(200..1_500);
                }
            }
            Scenario::Byzantine => {
                let b = if f > 1 { rng.random_range(1..=f) } else { f };
                plan.byzantine = pick(n, b, rng);
            }
        }
        plan
    }

    /// When the last fault ends (a partition heals, a node restarts or crashes for good).
    pub(crate) fn calm_from_ms(&self) -> u64 {
        let heals = self.partitions.iter().map(|p| p.end_ms);
        let crashes = self
            .crashes
            .iter()
            .map(|c| c.restart_at_ms.unwrap_or(c.at_ms));
        heals.chain(crashes).max().unwrap_or(0)
    }

    /// Whether `a` and `b` are cut off from each other at `now_ms`.
    pub(crate) fn cut(&self, a: usize, b: usize, now_ms: u64) -> bool {
        self.partitions.iter().any(|p| {
            (p.start_ms..p.end_ms).contains(&now_ms)
                && p.side.get(a).copied().unwrap_or(false)
                    != p.side.get(b).copied().unwrap_or(false)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn names_round_trip() {
        for s in Scenario::CONCRETE.into_iter().chain([Scenario::All]) {
            assert_eq!(s.to_string().parse::<Scenario>(), Ok(s));
        }
        assert!("nope".parse::<Scenario>().is_err());
        assert_eq!("crash".parse(), Ok(Scenario::CrashF));
        assert_eq!("dup-reorder".parse(), Ok(Scenario::DupReorder));
    }

    #[test]
    fn plans_never_exceed_f_faults_or_give_a_side_a_quorum() {
        for n in [4, 7, 10] {
            for seed in 0..200 {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                for s in Scenario::CONCRETE {
                    let p = Plan::draw(s, n, &mut rng);
                    assert!(p.crashes.len() + p.byzantine.len() <= max_faulty(n));
                    for part in &p.partitions {
                        let a = part.side.iter().filter(|x| **x).count();
                        // Neither side has more than 2/3 of n.
                        assert!(3 * a <= 2 * n && 3 * (n - a) <= 2 * n, "{n} {a}");
                    }
                }
            }
        }
    }
}
