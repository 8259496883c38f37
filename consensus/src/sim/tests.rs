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

#[test]
fn the_same_seed_replays_the_identical_run() {
    for s in Scenario::CONCRETE {
        let a = run(s, 7, 42, DEFAULT_HEIGHTS).unwrap();
        let b = run(s, 7, 42, DEFAULT_HEIGHTS).unwrap();
        assert_eq!(a, b);
        let c = run(s, 7, 43, DEFAULT_HEIGHTS).unwrap();
        assert_ne!(a.events, c.events, "{s}: different seeds should differ");
    }
}

#[test]
fn all_runs_every_scenario_and_sums_the_reports() {
    let all = run(Scenario::All, 4, 5, 2).unwrap();
    assert_eq!(all.scenario, Scenario::All);
    let sum: u64 = Scenario::CONCRETE
        .iter()
        .map(|s| run(*s, 4, 5, 2).unwrap().messages)
        .sum();
    assert_eq!(all.messages, sum);
    let summary = run_seeds(Scenario::All, 4, 0..2, 2).unwrap();
    assert_eq!(summary.runs, 10);
}

#[test]
fn refuses_parameters_out_of_range_and_says_how_to_replay() {
    let e = run(Scenario::Honest, 3, 1, 4).unwrap_err();
    assert_eq!(e.check, Check::Parameters);
    let e = run(Scenario::Honest, 4, 1, 0).unwrap_err();
    assert_eq!(e.check, Check::Parameters);
    let text = SimFailure {
        scenario: Scenario::PartitionHeal,
        validators: 7,
        seed: 12,
        heights: DEFAULT_HEIGHTS,
        check: Check::Agreement,
        detail: "x".into(),
    }
    .to_string();
    assert!(text.contains("partition"), "{text}");
    assert!(text.contains("agreement"), "{text}");
    assert!(
        text.contains("govchain sim --scenario partition --validators 7 --seed 12"),
        "{text}"
    );
}

#[test]
fn agreement_check_catches_a_fork_when_more_than_f_are_byzantine() {
    // With 2 of 4 equivocating (beyond f = 1) forks are possible; the checker must see one.
    let mut cache = RunCache::new();
    let forks = (0..200u64)
        .filter(|seed| {
            let rng = ChaCha8Rng::seed_from_u64(*seed);
            let mut w = world::World::new(Scenario::Byzantine, 4, *seed, 4, rng, &mut cache);
            w.force_byzantine(&[0, 1]);
            matches!(
                w.run(),
                Err(SimFailure {
                    check: Check::Agreement,
                    ..
                })
            )
        })
        .count();
    assert!(forks > 0, "no fork found with 2 of 4 byzantine");
    eprintln!("{forks} of 200 runs forked");
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
