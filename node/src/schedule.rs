//! When a connector's scheduled sync may run (R-SYN-1: "per data source, a configured schedule,
//! run outside working hours").
//!
//! Owns: the daily [`Window`] of local time, the [`Schedule`] (a 5-field cron expression evaluated
//! on local wall time, a window, a fixed UTC offset), the [`Clock`] the scheduler reads time from
//! ([`SystemClock`] in the node, [`ManualClock`] with virtual time in tests) and the loop
//! [`run_scheduled`].
//!
//! Invariants: a [`Schedule`] that exists runs inside its window at least once in every
//! [`RUN_DAY_SPAN_DAYS`] consecutive local days, so [`Schedule::next_run`] finds a run within
//! [`NEXT_RUN_HORIZON_DAYS`] (until croner's last year, 5000). Ticks fall on whole minutes.
//!
//! Never: read the system clock outside [`SystemClock`]; time is an input (milliseconds since the
//! Unix epoch). No daylight saving: the offset is fixed (China has none).

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};
use std::task::Poll;
use std::time::Duration;

use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

/// Minutes in a day; a [`Window`] bound is at most this (`24:00`).
pub const MINUTES_PER_DAY: u32 = 1440;
/// Longest cron expression accepted, in bytes.
pub const MAX_CRON_BYTES: usize = 128;
/// Longest window text accepted, in bytes.
pub const MAX_WINDOW_BYTES: usize = 32;
/// Largest UTC offset accepted, either side of UTC, in minutes (±14:00).
pub const MAX_UTC_OFFSET_MINUTES: i32 = 14 * 60;
/// [`Schedule::next_run`] looks this far ahead of its argument.
pub const NEXT_RUN_HORIZON_DAYS: u32 = 400;
/// Every span of this many consecutive local days holds a day on which a [`Schedule`] runs;
/// `Schedule::new` refuses a schedule that runs more rarely (e.g. only on 29 February).
pub const RUN_DAY_SPAN_DAYS: u32 = NEXT_RUN_HORIZON_DAYS - 1;
/// The longest [`SystemClock`] sleeps in one go, so a wall-clock change is noticed within it.
pub const MAX_SLEEP_SLICE_MS: u64 = 60_000;
/// [`ManualClock`] records at most this many wake-ups; later ones are not recorded.
pub const MAX_RECORDED_WAKEUPS: usize = 1 << 20;

const MS_PER_MINUTE: i128 = 60_000;
/// The Gregorian calendar (leap years and weekdays) repeats every 400 years, this many days.
const GREGORIAN_CYCLE_DAYS: i64 = 146_097;
/// 2000-01-01, in days since the Unix epoch: where the start-up scan of the cycle begins.
const CYCLE_SCAN_START_DAY: i64 = 10_957;

/// What is wrong with a schedule's configuration.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// The cron expression does not parse, or is not 5 fields.
    #[error("bad cron expression: {0}")]
    BadCron(String),
    /// The window text is not `HH:MM-HH:MM` with real times and a non-empty span.
    #[error("bad window: {0}")]
    BadWindow(String),
    /// The cron never fires inside the window, or so rarely that some span of
    /// [`RUN_DAY_SPAN_DAYS`] days has no run.
    #[error(
        "the cron expression never fires inside the window \
         (or not in every {RUN_DAY_SPAN_DAYS} days)"
    )]
    NeverRuns,
    /// The UTC offset is beyond ±[`MAX_UTC_OFFSET_MINUTES`].
    #[error(
        "bad UTC offset: {0} minutes \
         (allowed: -{MAX_UTC_OFFSET_MINUTES}..={MAX_UTC_OFFSET_MINUTES})"
    )]
    BadUtcOffset(i32),
}

/// A daily window of local time, e.g. "22:00-06:00" (may wrap midnight) or "00:00-24:00" (always).
/// Start inclusive, end exclusive, minute resolution.
///
/// Parsed from `HH:MM-HH:MM` (two digits each; `24:00` only as the end). Start and end must
/// differ: an empty window is refused, and "00:00-24:00" is the way to say "always".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Minute of day the window opens, `0..MINUTES_PER_DAY`.
    start_min: u32,
    /// Minute of day the window closes, `1..=MINUTES_PER_DAY`, never equal to `start_min`.
    end_min: u32,
}

impl FromStr for Window {
    type Err = ScheduleError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() > MAX_WINDOW_BYTES {
            return Err(ScheduleError::BadWindow(format!(
                "longer than {MAX_WINDOW_BYTES} bytes"
            )));
        }
        let bad = |why: &str| ScheduleError::BadWindow(format!("{text:?}: {why}"));
        let (start, end) = text
            .split_once('-')
            .ok_or_else(|| bad("expected HH:MM-HH:MM"))?;
        let start_min = parse_hh_mm(start.trim()).ok_or_else(|| bad("start is not HH:MM"))?;
        let end_min = parse_hh_mm(end.trim()).ok_or_else(|| bad("end is not HH:MM"))?;
        if start_min >= MINUTES_PER_DAY {
            return Err(bad("the window cannot open at 24:00"));
        }
        if end_min == 0 {
            return Err(bad("write the end 00:00 as 24:00"));
        }
        if start_min == end_min {
            return Err(bad("empty window (use 00:00-24:00 for always)"));
        }
        Ok(Window { start_min, end_min })
    }
}

/// `HH:MM` with two digits each, 00:00 to 24:00, as minutes of day.
fn parse_hh_mm(text: &str) -> Option<u32> {
    let (hh, mm) = text.split_once(':')?;
    let two_digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !two_digits(hh) || !two_digits(mm) {
        return None;
    }
    let (hours, minutes): (u32, u32) = (hh.parse().ok()?, mm.parse().ok()?);
    let minute_of_day = hours * 60 + minutes;
    (minutes < 60 && minute_of_day <= MINUTES_PER_DAY).then_some(minute_of_day)
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (s, e) = (self.start_min, self.end_min);
        write!(f, "{:02}:{:02}-{:02}:{:02}", s / 60, s % 60, e / 60, e % 60)
    }
}

impl Window {
    /// Whether the window holds this minute of the local day (`0..1440`; larger values: false).
    pub fn contains(&self, minute_of_day: u32) -> bool {
        if minute_of_day >= MINUTES_PER_DAY {
            return false;
        }
        if self.start_min < self.end_min {
            self.start_min <= minute_of_day && minute_of_day < self.end_min
        } else {
            minute_of_day >= self.start_min || minute_of_day < self.end_min
        }
    }

    /// Whether the window is open all day ("00:00-24:00").
    pub fn is_always(&self) -> bool {
        self.start_min == 0 && self.end_min == MINUTES_PER_DAY
    }
}

/// A connector's schedule: a 5-field cron expression (minute hour day-of-month month day-of-week,
/// e.g. "*/10 * * * *", "0 23 * * 1-5"), a window, and the local UTC offset in minutes (China:
/// +480). The cron is evaluated on local wall time (day-of-week 0 and 7 are Sunday).
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    window: Window,
    utc_offset_minutes: i32,
    /// Minutes of day that both the cron's minute and hour fields and the window allow; sorted,
    /// never empty.
    run_minutes: Vec<u32>,
}

impl Schedule {
    /// Parses and checks a schedule. Refuses a cron that is not 5 fields, a bad window, an offset
    /// beyond ±14:00, and a combination that never runs inside the window or runs more rarely
    /// than once in [`RUN_DAY_SPAN_DAYS`] days ([`ScheduleError::NeverRuns`]). Costs a scan of
    /// the 400-year calendar cycle (milliseconds; ~20 ms in a debug build): call it at start-up,
    /// not per tick.
    pub fn new(cron: &str, window: &str, utc_offset_minutes: i32) -> Result<Self, ScheduleError> {
        let cron = parse_cron(cron)?;
        let window: Window = window.parse()?;
        if !(-MAX_UTC_OFFSET_MINUTES..=MAX_UTC_OFFSET_MINUTES).contains(&utc_offset_minutes) {
            return Err(ScheduleError::BadUtcOffset(utc_offset_minutes));
        }
        let pattern = &cron.pattern;
        let run_minutes: Vec<u32> = (0..MINUTES_PER_DAY)
            .filter(|&m| {
                window.contains(m)
                    && matches!(pattern.minute_match(m % 60), Ok(true))
                    && matches!(pattern.hour_match(m / 60), Ok(true))
            })
            .collect();
        if run_minutes.is_empty() {
            return Err(ScheduleError::NeverRuns);
        }
        let schedule = Schedule {
            cron,
            window,
            utc_offset_minutes,
            run_minutes,
        };
        if schedule.longest_day_gap() >= i64::from(RUN_DAY_SPAN_DAYS) {
            return Err(ScheduleError::NeverRuns);
        }
        Ok(schedule)
    }

    /// The window.
    pub fn window(&self) -> Window {
        self.window
    }

    /// The local UTC offset in minutes.
    pub fn utc_offset_minutes(&self) -> i32 {
        self.utc_offset_minutes
    }

    /// Whether `at_ms` lies inside the window (local time).
    pub fn in_window(&self, at_ms: u64) -> bool {
        let local_min = self.local_minute(at_ms);
        self.window
            .contains(local_min.rem_euclid(i128::from(MINUTES_PER_DAY)) as u32)
    }

    /// The first cron tick strictly after `after_ms` that lies inside the window. A schedule that
    /// exists always has one within [`NEXT_RUN_HORIZON_DAYS`]; None only past croner's year 5000
    /// (or past `u64` milliseconds).
    pub fn next_run(&self, after_ms: u64) -> Option<u64> {
        let day_len = i128::from(MINUTES_PER_DAY);
        let first_min = self.local_minute(after_ms) + 1;
        let horizon_min = self.local_minute(after_ms) + i128::from(NEXT_RUN_HORIZON_DAYS) * day_len;
        let first_day = first_min.div_euclid(day_len);
        for day in first_day..=first_day + i128::from(NEXT_RUN_HORIZON_DAYS) {
            if !self.day_runs(day)? {
                continue;
            }
            let earliest = if day == first_day {
                first_min.rem_euclid(day_len) as u32
            } else {
                0
            };
            let Some(&minute) = self.run_minutes.iter().find(|&&m| m >= earliest) else {
                continue;
            };
            let run_min = day * day_len + i128::from(minute);
            if run_min > horizon_min {
                return None;
            }
            let run_ms = self.utc_ms(run_min)?;
            debug_assert!(run_ms > after_ms && self.in_window(run_ms));
            return Some(run_ms);
        }
        None
    }

    /// When the window that contains `at_ms` closes (ms). None if `at_ms` is outside the window,
    /// and None for an always-open window ("00:00-24:00"), which never closes.
    pub fn window_end(&self, at_ms: u64) -> Option<u64> {
        if self.window.is_always() || !self.in_window(at_ms) {
            return None;
        }
        let day_len = i128::from(MINUTES_PER_DAY);
        let local_min = self.local_minute(at_ms);
        let (day, minute_of_day) = (local_min.div_euclid(day_len), local_min.rem_euclid(day_len));
        let wraps = self.window.start_min > self.window.end_min;
        let end_day = if wraps && minute_of_day >= i128::from(self.window.start_min) {
            day + 1
        } else {
            day
        };
        self.utc_ms(end_day * day_len + i128::from(self.window.end_min))
    }

    /// Local wall-clock minutes since 1970-01-01T00:00 local, rounded down.
    fn local_minute(&self, at_ms: u64) -> i128 {
        let local_ms = i128::from(at_ms) + i128::from(self.utc_offset_minutes) * MS_PER_MINUTE;
        local_ms.div_euclid(MS_PER_MINUTE)
    }

    /// The instant of a local minute, if it fits in `u64` milliseconds.
    fn utc_ms(&self, local_min: i128) -> Option<u64> {
        let utc_min = local_min - i128::from(self.utc_offset_minutes);
        u64::try_from(utc_min * MS_PER_MINUTE).ok()
    }

    /// Whether the cron's day fields (day of month, month, day of week) match this local day
    /// (days since 1970-01-01). None where croner cannot tell (outside years 1..=5000).
    fn day_runs(&self, day: i128) -> Option<bool> {
        // Any run minute matches the minute and hour fields, so only the day fields decide.
        let minute = i128::from(self.run_minutes[0]);
        let seconds = i64::try_from((day * i128::from(MINUTES_PER_DAY) + minute) * 60).ok()?;
        let local = chrono::DateTime::from_timestamp(seconds, 0)?.naive_utc();
        self.cron.is_time_matching(&local).ok()
    }

    /// The most consecutive local days without a run, over one whole 400-year calendar cycle
    /// (the day fields repeat with it).
    fn longest_day_gap(&self) -> i64 {
        let (mut longest, mut current) = (0_i64, 0_i64);
        let span = GREGORIAN_CYCLE_DAYS + i64::from(RUN_DAY_SPAN_DAYS);
        for day in CYCLE_SCAN_START_DAY..CYCLE_SCAN_START_DAY + span {
            if self.day_runs(i128::from(day)) == Some(true) {
                current = 0;
            } else {
                current += 1;
                longest = longest.max(current);
                if longest >= i64::from(RUN_DAY_SPAN_DAYS) {
                    break;
                }
            }
        }
        longest
    }
}

/// A 5-field cron expression: minute hour day-of-month month day-of-week; no seconds, no years, no
/// `@` nicknames.
fn parse_cron(text: &str) -> Result<Cron, ScheduleError> {
    if text.len() > MAX_CRON_BYTES {
        return Err(ScheduleError::BadCron(format!(
            "longer than {MAX_CRON_BYTES} bytes"
        )));
    }
    let fields = text.split_whitespace().count();
    if fields != 5 {
        return Err(ScheduleError::BadCron(format!(
            "{text:?}: expected 5 fields (minute hour day-of-month month day-of-week), got {fields}"
        )));
    }
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(text)
        .map_err(|e| ScheduleError::BadCron(format!("{text:?}: {e}")))
}

/// Time for the scheduler: the real clock in the node, a virtual one in tests.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
    /// Resolves when the clock reaches `at_ms` (immediately if already past).
    fn sleep_until(&self, at_ms: u64) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// The real clock: wall time from [`crate::now_ms`], sleeps with tokio (needs a tokio runtime
/// with time enabled). Sleeps in slices of at most [`MAX_SLEEP_SLICE_MS`] and rechecks the wall
/// clock, so it never wakes before `at_ms` even if the wall clock is set back meanwhile.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        crate::now_ms().0
    }

    fn sleep_until(&self, at_ms: u64) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            loop {
                let now_ms = self.now_ms();
                if now_ms >= at_ms {
                    return;
                }
                let slice_ms = (at_ms - now_ms).min(MAX_SLEEP_SLICE_MS);
                tokio::time::sleep(Duration::from_millis(slice_ms)).await;
            }
        })
    }
}

/// A virtual clock for tests: time moves only by [`ManualClock::advance_to`] and by
/// [`Clock::sleep_until`], which jumps the clock forward to `at_ms` at once (a test runs days of
/// schedule in milliseconds) and records the time it woke at. Time never goes backwards.
#[derive(Debug)]
pub struct ManualClock {
    state: Mutex<ManualState>,
}

#[derive(Debug)]
struct ManualState {
    now_ms: u64,
    wakeups: Vec<u64>,
}

impl ManualClock {
    /// A clock reading `start_ms`.
    pub fn new(start_ms: u64) -> Self {
        let state = ManualState {
            now_ms: start_ms,
            wakeups: Vec::new(),
        };
        ManualClock {
            state: Mutex::new(state),
        }
    }

    /// Moves the clock to `ms`; an earlier `ms` is ignored (time never goes backwards).
    pub fn advance_to(&self, ms: u64) {
        let mut state = self.lock();
        state.now_ms = state.now_ms.max(ms);
    }

    /// The current virtual time (the same as [`Clock::now_ms`]).
    pub fn now(&self) -> u64 {
        self.lock().now_ms
    }

    /// The times at which each `sleep_until` woke, in order (at most [`MAX_RECORDED_WAKEUPS`]).
    pub fn wakeups(&self) -> Vec<u64> {
        self.lock().wakeups.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ManualState> {
        // The state is two plain fields, valid after any panic; poisoning carries no meaning.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now()
    }

    /// Ready at its first poll, when it moves the clock; a sleep never polled moves nothing.
    fn sleep_until(&self, at_ms: u64) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            let mut state = self.lock();
            state.now_ms = state.now_ms.max(at_ms);
            let woke_ms = state.now_ms;
            if state.wakeups.len() < MAX_RECORDED_WAKEUPS {
                state.wakeups.push(woke_ms);
            }
        })
    }
}

/// Runs `job` at every scheduled time until `stop` resolves: sleeps until
/// [`Schedule::next_run`] after now, re-checks the clock on waking (it may have moved past: the
/// tick is skipped unless now is inside the window and before the window that held the tick
/// closed), then awaits `job(tick_ms, schedule.window_end(tick_ms))` so a long run can stop when
/// the window closes. Ticks missed while the node was down are not made up: the next tick runs.
///
/// `stop` is polled before anything else at every step, also while a job runs: once it resolves,
/// the loop returns and an unfinished job future is dropped (jobs must tolerate being dropped
/// at an `.await`). Returns also if `next_run` is None (past croner's year 5000).
pub async fn run_scheduled<C, F, Fut>(
    schedule: &Schedule,
    clock: &C,
    stop: impl Future<Output = ()>,
    mut job: F,
) where
    C: Clock + ?Sized,
    F: FnMut(u64, Option<u64>) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut stop = pin!(stop);
    loop {
        let now_ms = clock.now_ms();
        let Some(tick_ms) = schedule.next_run(now_ms) else {
            tracing::warn!(target: "node.schedule", now_ms, "no next run; scheduler stops");
            return;
        };
        assert!(
            tick_ms > now_ms,
            "invariant: next_run is strictly after now"
        );
        if unless_stopped(stop.as_mut(), clock.sleep_until(tick_ms))
            .await
            .is_none()
        {
            return;
        }
        let woke_ms = clock.now_ms();
        let window_end_ms = schedule.window_end(tick_ms);
        let window_closed = window_end_ms.is_some_and(|end_ms| woke_ms >= end_ms);
        if !schedule.in_window(woke_ms) || window_closed {
            tracing::debug!(target: "node.schedule", tick_ms, woke_ms, "tick skipped: woke late");
            continue;
        }
        // The job is made only if stop is not due: making it may already do work.
        if stop_is_due(stop.as_mut()).await {
            return;
        }
        tracing::debug!(target: "node.schedule", tick_ms, ?window_end_ms, "scheduled run");
        if unless_stopped(stop.as_mut(), job(tick_ms, window_end_ms))
            .await
            .is_none()
        {
            return;
        }
    }
}

/// Polls `stop` once: whether it has resolved.
async fn stop_is_due<S: Future<Output = ()>>(mut stop: Pin<&mut S>) -> bool {
    poll_fn(|cx| Poll::Ready(stop.as_mut().poll(cx).is_ready())).await
}

/// Awaits `work` unless `stop` resolves first; `stop` is polled first, so a stop that is already
/// due wins. None if stopped.
async fn unless_stopped<S, W>(mut stop: Pin<&mut S>, work: W) -> Option<W::Output>
where
    S: Future<Output = ()>,
    W: Future,
{
    let mut work = pin!(work);
    poll_fn(|cx| {
        if stop.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        work.as_mut().poll(cx).map(Some)
    })
    .await
}

#[cfg(test)]
mod tests;
