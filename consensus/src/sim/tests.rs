//! Simulator tests: seed sweeps per scenario for 4 and 7 validators.

use super::*;

/// Seeds per (scenario, validator count); `SIM_SEEDS` overrides (e.g. for a longer soak).
fn seeds() -> u64 {
    std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000)
}

fn sweep(scenario: Scenario, n: usize) -> Summary {
    let threads = NonZeroUsize::new(2).unwrap();
    let t = std::time::Instant::now();
    match run_seeds_parallel(scenario, n, 0..seeds(), DEFAULT_HEIGHTS, threads) {
        Ok(s) => {
            eprintln!("{scenario} n={n}: {s:?} in {:?}", t.elapsed());
            assert_eq!(s.runs, seeds());
            assert!(s.heights_decided >= seeds() * DEFAULT_HEIGHTS);
            s
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn honest_4_validators_never_disagree_and_always_progress() {
    let s = sweep(Scenario::Honest, 4);
    assert_eq!(s.evidence, 0);
}

#[test]
fn honest_7_validators_never_disagree_and_always_progress() {
    let s = sweep(Scenario::Honest, 7);
    assert_eq!(s.evidence, 0);
}

#[test]
fn crash_f_of_4_validators_is_survived() {
    sweep(Scenario::CrashF, 4);
}

#[test]
fn crash_f_of_7_validators_is_survived() {
    sweep(Scenario::CrashF, 7);
}

#[test]
fn partition_of_4_validators_heals() {
    sweep(Scenario::PartitionHeal, 4);
}

#[test]
fn partition_of_7_validators_heals() {
    sweep(Scenario::PartitionHeal, 7);
}

#[test]
fn byzantine_1_of_4_validators_cannot_break_agreement_or_progress() {
    let s = sweep(Scenario::Byzantine, 4);
    assert!(s.evidence > 0);
}

#[test]
fn byzantine_up_to_2_of_7_validators_cannot_break_agreement_or_progress() {
    let s = sweep(Scenario::Byzantine, 7);
    assert!(s.evidence > 0);
}

#[test]
fn dup_reorder_4_validators() {
    sweep(Scenario::DupReorder, 4);
}

#[test]
fn dup_reorder_7_validators() {
    sweep(Scenario::DupReorder, 7);
}

/// `SIM=byzantine,7,9 cargo test -p govchain-consensus trace_one -- --ignored --nocapture`
#[test]
#[ignore = "debugging aid: traces the run named by $SIM"]
fn trace_one() {
    let spec = std::env::var("SIM").unwrap();
    let parts: Vec<&str> = spec.split(',').collect();
    let r = trace(
        parts[0].parse().unwrap(),
        parts[1].parse().unwrap(),
        parts[2].parse().unwrap(),
        DEFAULT_HEIGHTS,
    );
    eprintln!("{r:?}");
}
