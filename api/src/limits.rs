//! Limits on bulk reads of personal data (issue 15 finding 7, R-SEC-3): a per-user row quota
//! per UTC day, counted on this node (`[api] max_rows_per_user_per_day`), and how many rows
//! of one query the query right reads before the export right is needed (`[api]
//! query_rows_without_export`, applied by [`crate::paging::Window::right`]).
//!
//! The quota counts every row a personal-data read returns ([`crate::access::Access::done`]):
//! a read that would take the user's rows of the day past the quota returns nothing, is
//! answered 429 `row_quota_exceeded` and audited with that outcome. The counters live in
//! memory: one per user who read today (users are registered on chain, so their number is
//! bounded by the chain's user list); they restart at zero with the node and at 00:00 UTC.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::http::StatusCode;
use govchain_ledger::TimestampMs;

use crate::ApiError;

/// Default of `[api] max_rows_per_user_per_day`.
pub const DEFAULT_MAX_ROWS_PER_USER_PER_DAY: u64 = 50_000;
/// Default of `[api] query_rows_without_export`.
pub const DEFAULT_QUERY_ROWS_WITHOUT_EXPORT: u64 = 1_000;
/// Milliseconds of a day.
const DAY_MS: u64 = 86_400_000;

/// The limits and this node's counters.
#[derive(Debug)]
pub struct ReadLimits {
    /// Most rows one user reads per UTC day on this node.
    pub max_rows_per_user_per_day: u64,
    /// Rows of one query (all its pages) the query right reads; further rows need the
    /// export right.
    pub query_rows_without_export: u64,
    /// The day (days since 1970) and each user's rows on it.
    used: Mutex<(u64, HashMap<String, u64>)>,
}

impl Default for ReadLimits {
    fn default() -> Self {
        Self::new(
            DEFAULT_MAX_ROWS_PER_USER_PER_DAY,
            DEFAULT_QUERY_ROWS_WITHOUT_EXPORT,
        )
    }
}

impl ReadLimits {
    /// Limits with fresh counters.
    pub fn new(max_rows_per_user_per_day: u64, query_rows_without_export: u64) -> Self {
        Self {
            max_rows_per_user_per_day,
            query_rows_without_export,
            used: Mutex::new((0, HashMap::new())),
        }
    }

    /// Counts `rows` for `user` at `now`; refuses (counting nothing) when they would take the
    /// user's rows of the day past the quota.
    pub fn take(&self, user: &str, rows: u64, now: TimestampMs) -> Result<(), ApiError> {
        let today = now.0 / DAY_MS;
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        if used.0 != today {
            *used = (today, HashMap::new());
        }
        let had = used.1.get(user).copied().unwrap_or(0);
        let total = had.saturating_add(rows);
        if total > self.max_rows_per_user_per_day {
            let until_midnight_s = ((today + 1) * DAY_MS - now.0).div_ceil(1000);
            return Err(ApiError {
                retry_after_s: Some(until_midnight_s),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "row_quota_exceeded",
                    format!(
                        "this read of {rows} rows would exceed the quota of {} rows per user \
                         and day on this node ({had} read today); it renews at 00:00 UTC",
                        self.max_rows_per_user_per_day
                    ),
                )
            });
        }
        if rows > 0 {
            used.1.insert(user.to_string(), total);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 15 finding 7: a user reads up to the quota in a day, not one row more; another
    /// user and the next day count apart; a refusal counts nothing.
    #[test]
    fn finding_7_the_row_quota_holds_at_the_limit_and_refuses_one_more() {
        let l = ReadLimits::new(10, 5);
        let t = TimestampMs(3 * DAY_MS + 1_000);
        assert!(l.take("li", 7, t).is_ok());
        let e = l.take("li", 4, t).unwrap_err();
        assert_eq!((e.status.as_u16(), e.code), (429, "row_quota_exceeded"));
        assert_eq!(e.retry_after_s, Some(DAY_MS / 1000 - 1));
        assert!(l.take("li", 3, t).is_ok(), "at the limit");
        assert!(l.take("li", 1, t).is_err(), "limit + 1");
        assert!(l.take("li", 0, t).is_ok(), "an empty answer is no row");
        assert!(l.take("wang", 10, t).is_ok(), "per user");
        assert!(
            l.take("li", 10, TimestampMs(4 * DAY_MS)).is_ok(),
            "a new day"
        );
    }
}
