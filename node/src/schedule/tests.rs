//! Tests of `schedule`.

use super::*;
use proptest::prelude::*;
use std::str::FromStr;

/// 2024-01-01T00:00:00Z, a Monday, in ms since the Unix epoch.
const JAN1_2024_UTC_MS: u64 = 1_704_067_200_000;
/// China Standard Time, UTC+8.
const CST: i32 = 480;

/// The instant of local (UTC+8) wall time 2024-01-`day` `hour`:`minute`: UTC is 8 hours
/// earlier, so local 2024-01-15 22:00 is 2024-01-15 14:00 UTC.
fn cst(day: u64, hour: u64, minute: u64) -> u64 {
    let local_min = (day - 1) * 1440 + hour * 60 + minute;
    (JAN1_2024_UTC_MS / 60_000 + local_min - 8 * 60) * 60_000
}

/// Every whole minute in (`from_ms`, `to_ms`] at which the cron (parsed by croner's default
/// parser) matches local wall time and the window holds the local minute of day: found by
/// stepping one minute at a time, independently of `Schedule::next_run`.
fn brute_ticks(cron: &str, window: &str, offset: i32, from_ms: u64, to_ms: u64) -> Vec<u64> {
    let cron = Cron::from_str(cron).expect("test cron parses");
    let window = Window::from_str(window).expect("test window parses");
    let mut ticks = Vec::new();
    let mut minute_ms = (from_ms / 60_000 + 1) * 60_000;
    while minute_ms <= to_ms {
        let local_s = (minute_ms / 1000) as i64 + i64::from(offset) * 60;
        let local = chrono::DateTime::from_timestamp(local_s, 0)
            .expect("in range")
            .naive_utc();
        let minute_of_day = (local_s.rem_euclid(86_400) / 60) as u32;
        if window.contains(minute_of_day) && cron.is_time_matching(&local).expect("matches") {
            ticks.push(minute_ms);
        }
        minute_ms += 60_000;
    }
    ticks
}

/// Chains `next_run` from `from_ms` for `count` runs.
fn runs(schedule: &Schedule, from_ms: u64, count: usize) -> Vec<u64> {
    let mut at = from_ms;
    (0..count)
        .map(|_| {
            at = schedule.next_run(at).expect("a run within the horizon");
            at
        })
        .collect()
}

#[test]
fn cst_helper_matches_known_instant() {
    // 2024-01-15 08:00 local (UTC+8) is 2024-01-15T00:00:00Z = 1705276800 s.
    assert_eq!(cst(15, 8, 0), 1_705_276_800_000);
}

#[test]
fn window_parses_night_always_and_day_windows() {
    let night: Window = "22:00-06:00".parse().expect("night window");
    assert_eq!(night.to_string(), "22:00-06:00");
    assert!(night.contains(22 * 60) && night.contains(0) && night.contains(6 * 60 - 1));
    assert!(!night.contains(6 * 60) && !night.contains(12 * 60) && !night.contains(22 * 60 - 1));
    assert!(!night.is_always());

    let always: Window = "00:00-24:00".parse().expect("always window");
    assert!(always.is_always());
    assert!((0..MINUTES_PER_DAY).all(|m| always.contains(m)));
    assert!(
        !always.contains(MINUTES_PER_DAY),
        "minute 1440 is not a minute of day"
    );

    let day: Window = " 09:00 - 17:30 "
        .parse()
        .expect("spaces around the parts are fine");
    assert!(day.contains(9 * 60) && day.contains(17 * 60 + 29));
    assert!(!day.contains(17 * 60 + 30) && !day.contains(9 * 60 - 1));
    let to_midnight: Window = "22:00-24:00".parse().expect("end 24:00");
    assert!(to_midnight.contains(1439) && !to_midnight.contains(0));
}

#[test]
fn window_rejects_malformed_text() {
    for text in [
        "25:00-01:00",
        "22:00",
        "ab",
        "",
        "9:00-17:30",
        "09:00-17:3",
        "22:60-23:00",
        "24:00-06:00",
        "22:00-00:00",
        "22:00-22:00",
        "+1:00-02:00",
        "22:00-06:00-07:00",
        "00:00-24:01",
    ] {
        match Window::from_str(text) {
            Err(ScheduleError::BadWindow(why)) => assert!(!why.is_empty(), "{text}"),
            other => panic!("{text:?} should be a BadWindow, got {other:?}"),
        }
    }
    let long = format!("22:00-06:00{}", " ".repeat(MAX_WINDOW_BYTES));
    assert!(
        matches!(long.parse::<Window>(), Err(ScheduleError::BadWindow(w))
            if w.contains("longer"))
    );
    let at_limit = format!("{:>width$}", "22:00-06:00", width = MAX_WINDOW_BYTES);
    assert!(
        at_limit.parse::<Window>().is_ok(),
        "exactly the limit is accepted"
    );
}

#[test]
fn in_window_wraps_midnight_at_boundaries_in_utc_plus_8() {
    let s = Schedule::new("* * * * *", "22:00-06:00", CST).expect("valid");
    // 2024-01-15T13:59:00Z = 21:59 local: out.
    assert!(!s.in_window(1_705_276_800_000 + (13 * 60 + 59) * 60_000));
    // 2024-01-15T14:00:00Z = 22:00 local: in (start inclusive).
    assert!(s.in_window(1_705_276_800_000 + 14 * 3_600_000));
    // 2024-01-15T21:59:59.999Z = 05:59:59.999 local on the 16th: in.
    assert!(s.in_window(1_705_276_800_000 + 22 * 3_600_000 - 1));
    // 2024-01-15T22:00:00Z = 06:00 local on the 16th: out (end exclusive).
    assert!(!s.in_window(1_705_276_800_000 + 22 * 3_600_000));
    // The same instants through the helper.
    assert!(!s.in_window(cst(15, 21, 59)) && s.in_window(cst(15, 22, 0)));
    assert!(s.in_window(cst(16, 5, 59)) && !s.in_window(cst(16, 6, 0)));
    // In UTC the same instant 2024-01-15T14:00Z is 14:00: out.
    let utc = Schedule::new("* * * * *", "22:00-06:00", 0).expect("valid");
    assert!(!utc.in_window(cst(15, 22, 0)));
}

#[test]
fn next_run_every_30_minutes_walks_the_night_window() {
    let s = Schedule::new("*/30 * * * *", "22:00-06:00", CST).expect("valid");
    // From 12:00 local: 22:00, 22:30, ..., 05:30 (16 runs), then 22:00 the next night.
    let got = runs(&s, cst(15, 12, 0), 17);
    let mut want: Vec<u64> = (0..16).map(|i| cst(15, 22, 0) + i * 30 * 60_000).collect();
    want.push(cst(16, 22, 0));
    assert_eq!(got, want);
    assert_eq!(got[15], cst(16, 5, 30));
}

#[test]
fn next_run_is_strictly_after_its_argument() {
    let s = Schedule::new("*/30 * * * *", "22:00-06:00", CST).expect("valid");
    assert_eq!(s.next_run(cst(15, 22, 0)), Some(cst(15, 22, 30)));
    assert_eq!(s.next_run(cst(15, 22, 0) - 1), Some(cst(15, 22, 0)));
    assert_eq!(s.next_run(cst(15, 22, 0) + 1), Some(cst(15, 22, 30)));
    // 05:30 is the last tick of the night; 06:00 matches the cron but is outside.
    assert_eq!(s.next_run(cst(16, 5, 30)), Some(cst(16, 22, 0)));
}

#[test]
fn next_run_skips_weekend_for_weekday_cron() {
    // 23:00 local, Monday to Friday; 2024-01-19 is a Friday.
    let s = Schedule::new("0 23 * * 1-5", "22:00-06:00", CST).expect("valid");
    let got = runs(&s, cst(19, 12, 0), 3);
    assert_eq!(got, vec![cst(19, 23, 0), cst(22, 23, 0), cst(23, 23, 0)]);
    // From Saturday 22:00 local, Saturday and Sunday nights are skipped.
    assert_eq!(s.next_run(cst(20, 22, 0)), Some(cst(22, 23, 0)));
    // The day of week is read on local time: Monday 2024-01-22 01:00 local is Sunday
    // 2024-01-21 17:00 UTC, and a Monday-only cron runs then.
    let monday = Schedule::new("0 1 * * 1", "22:00-06:00", CST).expect("valid");
    assert_eq!(monday.next_run(cst(19, 12, 0)), Some(cst(22, 1, 0)));
}

#[test]
fn rejects_bad_cron() {
    for cron in [
        "61 * * * *",
        "* * * *",
        "0 0 * * * *",
        "@daily",
        "",
        "* 25 * * *",
        "a b c d e",
    ] {
        assert!(
            matches!(
                Schedule::new(cron, "22:00-06:00", CST),
                Err(ScheduleError::BadCron(_))
            ),
            "{cron:?} should be refused"
        );
    }
    let long = format!("0 23 * * {}", "1,".repeat(MAX_CRON_BYTES));
    assert!(
        matches!(Schedule::new(&long, "00:00-24:00", 0), Err(ScheduleError::BadCron(m))
            if m.contains("longer"))
    );
}

#[test]
fn refuses_cron_that_never_fires_in_window() {
    let never = Schedule::new("0 12 * * *", "22:00-06:00", CST);
    assert!(matches!(never, Err(ScheduleError::NeverRuns)), "{never:?}");
    // 30 February does not exist.
    let no_day = Schedule::new("0 23 30 2 *", "22:00-06:00", CST);
    assert!(
        matches!(no_day, Err(ScheduleError::NeverRuns)),
        "{no_day:?}"
    );
    // 29 February runs, but leaves 4-year gaps: more than the 399-day span allows.
    let rare = Schedule::new("0 23 29 2 *", "22:00-06:00", CST);
    assert!(matches!(rare, Err(ScheduleError::NeverRuns)), "{rare:?}");
}

#[test]
fn accepts_yearly_cron_and_finds_next_year() {
    // Once a year is within the span: 366 days between runs at most.
    let s = Schedule::new("0 23 1 1 *", "22:00-06:00", CST).expect("yearly is accepted");
    let next = s.next_run(cst(2, 0, 0)).expect("next new year");
    // 2025-01-01 23:00 local: 2024 is a leap year, 366 days after 2024-01-01.
    assert_eq!(next, cst(1, 23, 0) + 366 * 86_400_000);
}

#[test]
fn rejects_utc_offset_beyond_limit() {
    assert!(Schedule::new("* * * * *", "22:00-06:00", MAX_UTC_OFFSET_MINUTES).is_ok());
    assert!(Schedule::new("* * * * *", "22:00-06:00", -MAX_UTC_OFFSET_MINUTES).is_ok());
    for bad in [
        MAX_UTC_OFFSET_MINUTES + 1,
        -MAX_UTC_OFFSET_MINUTES - 1,
        i32::MIN,
    ] {
        assert!(matches!(
            Schedule::new("* * * * *", "22:00-06:00", bad),
            Err(ScheduleError::BadUtcOffset(o)) if o == bad
        ));
    }
}

#[test]
fn window_end_reports_closing_instant() {
    let night = Schedule::new("* * * * *", "22:00-06:00", CST).expect("valid");
    assert_eq!(night.window_end(cst(15, 22, 0)), Some(cst(16, 6, 0)));
    assert_eq!(night.window_end(cst(15, 23, 59)), Some(cst(16, 6, 0)));
    assert_eq!(night.window_end(cst(16, 1, 0)), Some(cst(16, 6, 0)));
    assert_eq!(night.window_end(cst(16, 6, 0) - 1), Some(cst(16, 6, 0)));
    assert_eq!(night.window_end(cst(16, 6, 0)), None, "outside the window");
    assert_eq!(night.window_end(cst(16, 12, 0)), None, "outside the window");
    let day = Schedule::new("* * * * *", "09:00-17:30", CST).expect("valid");
    assert_eq!(day.window_end(cst(15, 10, 0)), Some(cst(15, 17, 30)));
    let evening = Schedule::new("* * * * *", "22:00-24:00", CST).expect("valid");
    assert_eq!(evening.window_end(cst(15, 23, 0)), Some(cst(16, 0, 0)));
    let always = Schedule::new("* * * * *", "00:00-24:00", CST).expect("valid");
    assert_eq!(
        always.window_end(cst(15, 10, 0)),
        None,
        "an always-open window never closes"
    );
}

#[test]
fn extreme_times_do_not_panic() {
    let s = Schedule::new("* * * * *", "22:00-06:00", -MAX_UTC_OFFSET_MINUTES).expect("valid");
    assert_eq!(s.next_run(u64::MAX), None);
    let _ = s.in_window(u64::MAX);
    let _ = s.window_end(u64::MAX);
    // At the epoch, local time is the evening before (UTC-14): 1969-12-31 10:00, outside.
    assert!(!s.in_window(0));
    // The first run: 1969-12-31 22:00 local = 1970-01-01T12:00Z.
    assert_eq!(s.next_run(0), Some(12 * 3_600_000));
    // Year 5000 is croner's last: a run after it cannot be found. 5001-01-01T00:00Z is still
    // 5000-12-31 10:00 local, whose 22:00 runs; a day later is 5001-01-01 10:00 local.
    let year_5001_ms = 95_649_120_000_000;
    assert_eq!(
        s.next_run(year_5001_ms),
        Some(year_5001_ms + 12 * 3_600_000)
    );
    assert_eq!(s.next_run(year_5001_ms + 86_400_000), None);
}

/// Stop once the virtual clock reaches `end_ms`. Never registers a waker: fine for a
/// ManualClock, whose sleeps are always ready.
fn stop_at(clock: &ManualClock, end_ms: u64) -> impl Future<Output = ()> + '_ {
    poll_fn(move |_| {
        if clock.now() >= end_ms {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
}

#[test]
fn run_scheduled_over_three_virtual_days_matches_brute_force() {
    let (cron, window) = ("*/20 * * * 1-5", "22:00-06:00");
    let s = Schedule::new(cron, window, CST).expect("valid");
    // Friday 2024-01-19 12:00 local to Monday 2024-01-22 12:00 local.
    let (start, end) = (cst(19, 12, 0), cst(22, 12, 0));
    let clock = ManualClock::new(start);
    let mut calls: Vec<(u64, Option<u64>, u64)> = Vec::new();
    futures::executor::block_on(run_scheduled(
        &s,
        &clock,
        stop_at(&clock, end),
        |at, until| {
            calls.push((at, until, clock.now()));
            std::future::ready(())
        },
    ));

    let expected = brute_ticks(cron, window, CST, start, end - 1);
    // By hand: Friday 22:00..23:40 every 20 min (6); Saturday and Sunday (6 and 0) none;
    // Monday 00:00..05:40 (18).
    assert_eq!(expected.len(), 6 + 18);
    assert_eq!(expected[0], cst(19, 22, 0));
    assert_eq!(expected[6], cst(22, 0, 0));
    let ticks: Vec<u64> = calls.iter().map(|c| c.0).collect();
    assert_eq!(ticks, expected);
    for &(at, until, now) in &calls {
        assert!(s.in_window(at), "{at} is in the window");
        assert_eq!(now, at, "the job runs at its tick in virtual time");
        let window_close = if at < cst(20, 6, 0) {
            cst(20, 6, 0)
        } else {
            cst(22, 6, 0)
        };
        assert_eq!(until, Some(window_close));
    }
    // It slept to every tick, then to Monday 22:00, where the due stop won over the job.
    let mut wakeups = expected.clone();
    wakeups.push(cst(22, 22, 0));
    assert_eq!(clock.wakeups(), wakeups);
}

#[test]
fn run_scheduled_returns_at_once_when_stop_is_due() {
    let s = Schedule::new("* * * * *", "00:00-24:00", CST).expect("valid");
    let clock = ManualClock::new(cst(15, 12, 0));
    let mut calls = 0;
    futures::executor::block_on(run_scheduled(&s, &clock, std::future::ready(()), |_, _| {
        calls += 1;
        std::future::ready(())
    }));
    assert_eq!(calls, 0);
    assert!(clock.wakeups().is_empty());
    assert_eq!(clock.now(), cst(15, 12, 0));
}

/// A clock that oversleeps every `sleep_until` by a fixed time, like a suspended machine.
struct Oversleeping {
    inner: ManualClock,
    overshoot_ms: u64,
}

impl Clock for Oversleeping {
    fn now_ms(&self) -> u64 {
        self.inner.now()
    }
    fn sleep_until(&self, at_ms: u64) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        self.inner
            .sleep_until(at_ms.saturating_add(self.overshoot_ms))
    }
}

fn oversleeping_calls(overshoot_ms: u64) -> Vec<(u64, u64)> {
    let s = Schedule::new("*/30 * * * *", "22:00-06:00", CST).expect("valid");
    let clock = Oversleeping {
        inner: ManualClock::new(cst(15, 12, 0)),
        overshoot_ms,
    };
    let mut calls = Vec::new();
    let stop = stop_at(&clock.inner, cst(18, 12, 0));
    futures::executor::block_on(run_scheduled(&s, &clock, stop, |at, _| {
        calls.push((at, clock.now_ms()));
        std::future::ready(())
    }));
    calls
}

#[test]
fn run_scheduled_skips_ticks_when_the_clock_overshoots_the_window() {
    // 7 h late: the 22:00 tick wakes at 05:00, still in its window, and runs; the 05:30 tick
    // then wakes at 12:30, outside, and is skipped. One run a night.
    let late = oversleeping_calls(7 * 3_600_000);
    let want: Vec<(u64, u64)> = (15..18)
        .map(|d| (cst(d, 22, 0), cst(d + 1, 5, 0)))
        .collect();
    assert_eq!(late, want);
    // A day late: each tick wakes at 22:00 the next night, inside a window but not the one
    // that held the tick, which has closed: never run.
    assert!(oversleeping_calls(86_400_000).is_empty());
}

#[test]
fn manual_clock_jumps_forward_records_wakeups_never_goes_back() {
    let clock = ManualClock::new(1_000);
    futures::executor::block_on(clock.sleep_until(5_000));
    assert_eq!(clock.now_ms(), 5_000);
    futures::executor::block_on(clock.sleep_until(2_000));
    assert_eq!(
        clock.now(),
        5_000,
        "a past deadline wakes at once, time stays"
    );
    clock.advance_to(4_000);
    assert_eq!(clock.now(), 5_000);
    clock.advance_to(9_000);
    assert_eq!(clock.now(), 9_000);
    assert_eq!(clock.wakeups(), vec![5_000, 5_000]);
}

#[tokio::test]
async fn system_clock_sleep_until_past_returns_at_once() {
    let clock = SystemClock;
    let now = clock.now_ms();
    assert!(now > JAN1_2024_UTC_MS, "the real clock reads after 2024");
    let done = tokio::time::timeout(Duration::from_secs(5), clock.sleep_until(now - 1)).await;
    assert!(done.is_ok());
    let soon = clock.now_ms() + 20;
    tokio::time::timeout(Duration::from_secs(5), clock.sleep_until(soon))
        .await
        .expect("wakes within the deadline");
    assert!(clock.now_ms() >= soon, "never wakes early");
}

const PROP_CRONS: [&str; 6] = [
    "* * * * *",
    "*/7 * * * *",
    "0 * * * *",
    "15 3 * * *",
    "*/30 8-18 * * 1-5",
    "0 0 1 * *",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn next_run_is_the_first_in_window_tick_after_start(
        // 2000-01-01 to 2100-01-01.
        start_ms in 946_684_800_000_u64..4_102_444_800_000,
        open in 0..MINUTES_PER_DAY,
        close in 1..=MINUTES_PER_DAY,
        offset in -MAX_UTC_OFFSET_MINUTES..=MAX_UTC_OFFSET_MINUTES,
        cron_index in 0..PROP_CRONS.len(),
    ) {
        prop_assume!(open != close);
        let cron = PROP_CRONS[cron_index];
        let (oh, om, ch, cm) = (open / 60, open % 60, close / 60, close % 60);
        let window = format!("{oh:02}:{om:02}-{ch:02}:{cm:02}");
        match Schedule::new(cron, &window, offset) {
            Err(ScheduleError::NeverRuns) => {
                // Refused: then it indeed never runs (checked over 40 days).
                let until_ms = start_ms + 40 * 86_400_000;
                let seen = brute_ticks(cron, &window, offset, start_ms, until_ms);
                prop_assert!(seen.is_empty(), "refused but runs at {seen:?}");
            }
            Err(other) => return Err(TestCaseError::fail(format!("unexpected {other}"))),
            Ok(s) => {
                let next = s.next_run(start_ms).expect("a run within the horizon");
                prop_assert!(next > start_ms);
                prop_assert!(s.in_window(next));
                prop_assert_eq!(next % 60_000, 0);
                // No in-window tick strictly between, and `next` itself is one.
                let seen = brute_ticks(cron, &window, offset, start_ms, next);
                prop_assert_eq!(seen, vec![next]);
            }
        }
    }
}
