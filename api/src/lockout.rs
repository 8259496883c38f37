//! Login lockout and the per-address login throttle (R-SEC-1; issue 15, finding 3): the
//! node-local counts that decide whether a password may be checked at all.
//!
//! A login takes an [`Attempt`] *before* its password is hashed. Taking it checks and reserves,
//! under one lock, both budgets the login spends from:
//! - the user's: failures in the last [`LOCKOUT_MS`] plus checks in flight stay below
//!   [`MAX_LOGIN_FAILURES`], so however many logins race, at most that many wrong passwords of
//!   one user are ever checked per lockout window (the next ones are refused as locked);
//! - the client address's: failed logins in the last [`ADDRESS_WINDOW_MS`] stay below
//!   [`MAX_LOGIN_FAILURES_PER_ADDRESS`] and its checks in flight below
//!   [`MAX_LOGINS_IN_FLIGHT_PER_ADDRESS`] (an office behind one NAT address logs in at once),
//!   so at most the sum of the two, less one, failures per window (an IPv6 address counts by
//!   its /64).
//!
//! Invariants: only users that exist on chain with a password on this node get a user entry
//! (an unknown id is counted against its address only, and ids are checked against the chain's
//! rules before they get here); both tables are capped ([`MAX_LOCKOUT_USERS`],
//! [`MAX_THROTTLED_ADDRESSES`]) and, when full after dropping expired entries, refuse a new key
//! instead of growing; an entry is kept only while it has failures in its window or checks in
//! flight. Never: holds the lock across an `.await`, counts an attempt twice, or leaks a
//! reservation (an [`Attempt`] dropped without an outcome — the client went away during the
//! check — gives its reservation back uncounted).
//!
//! Pure: time is an input (`now` in Unix ms); the caller does the IO.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;

/// Failed logins (within [`LOCKOUT_MS`] of each other) that lock a user out.
pub const MAX_LOGIN_FAILURES: u32 = 5;
/// How long a lockout lasts, from the failure that caused it; also how long a failure counts.
pub const LOCKOUT_MS: u64 = 15 * 60 * 1000;
/// Failed logins from one client address (any users, known or not) within
/// [`ADDRESS_WINDOW_MS`] of the last one, after which that address is answered 429.
pub const MAX_LOGIN_FAILURES_PER_ADDRESS: u32 = 30;
/// How long a failed login counts against its address.
pub const ADDRESS_WINDOW_MS: u64 = 15 * 60 * 1000;
/// Password checks in flight (running or queued) from one client address.
pub const MAX_LOGINS_IN_FLIGHT_PER_ADDRESS: u32 = 64;
/// Most users with failures or checks in flight that the node tracks.
pub const MAX_LOCKOUT_USERS: usize = 100_000;
/// Most client addresses with failures or checks in flight that the node tracks.
pub const MAX_THROTTLED_ADDRESSES: usize = 100_000;
/// A full table drops its expired entries at most this often (so a flood at the cap costs one
/// sweep per interval, not one per request); also the Retry-After of a refusal for a full table.
pub const SWEEP_INTERVAL_MS: u64 = 1_000;

/// A client address as the throttle counts it: an IPv4 address, or an IPv6 address's /64
/// (one host's share of a network); an IPv4-mapped IPv6 address is its IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddr(IpAddr);

impl ClientAddr {
    /// Where requests come from when the server was not given peer addresses: they all share
    /// one budget (fails safe: throttled together, never unthrottled).
    pub const UNKNOWN: ClientAddr = ClientAddr(IpAddr::V6(Ipv6Addr::UNSPECIFIED));

    /// The throttle's key for `ip`.
    pub fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => ClientAddr(IpAddr::V4(v4)),
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                ClientAddr(IpAddr::V6(Ipv6Addr::from(prefix)))
            }
        }
    }
}

/// Why a login may not check its password now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The user has [`MAX_LOGIN_FAILURES`] recent failures, or so many checks in flight that
    /// they could reach them; retry after this many ms.
    Locked {
        /// Until the oldest reason goes away.
        retry_after_ms: u64,
    },
    /// The client address has [`MAX_LOGIN_FAILURES_PER_ADDRESS`] recent failed logins, or
    /// [`MAX_LOGINS_IN_FLIGHT_PER_ADDRESS`] checks in flight.
    Throttled {
        /// Until the address's failures stop counting.
        retry_after_ms: u64,
    },
    /// A table is at its cap with no expired entry to drop.
    Full,
}

/// How long a login refused for checks in flight (not yet failures) should wait: about one
/// password check.
const PENDING_RETRY_MS: u64 = 1_000;

/// One key's recent failures and checks in flight.
#[derive(Debug, Clone, Copy, Default)]
struct Budget {
    failures: u32,
    in_flight: u32,
    last_failure_ms: u64,
}

/// What became of a reserved check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Failed,
    Succeeded,
    Abandoned,
}

/// How a table counts checks in flight.
#[derive(Debug, Clone, Copy)]
enum InFlight {
    /// Each counts as a failure until it is one or is not (exact: a user's budget).
    AsFailures,
    /// At most this many at a time, besides the failures (an address's budget).
    AtMost(u32),
}

/// Budgets of one kind of key (users or addresses).
#[derive(Debug)]
struct Table<K> {
    map: HashMap<K, Budget>,
    cap: usize,
    limit: u32,
    in_flight: InFlight,
    window_ms: u64,
    /// Whether a success forgets the failures (a user's do; an address's do not, or one valid
    /// account would reset its address between guesses at others).
    success_resets: bool,
    last_sweep_ms: Option<u64>,
}

impl<K: Hash + Eq + Clone> Table<K> {
    fn new(
        cap: usize,
        limit: u32,
        in_flight: InFlight,
        window_ms: u64,
        success_resets: bool,
    ) -> Self {
        assert!(
            cap > 0 && limit > 0 && window_ms > 0,
            "invariant: positive caps"
        );
        Self {
            map: HashMap::new(),
            cap,
            limit,
            in_flight,
            window_ms,
            success_resets,
            last_sweep_ms: None,
        }
    }

    fn recent(&self, b: &Budget, now: u64) -> u32 {
        if now >= b.last_failure_ms.saturating_add(self.window_ms) {
            0
        } else {
            b.failures
        }
    }

    fn live(&self, b: &Budget, now: u64) -> bool {
        b.in_flight > 0 || self.recent(b, now) > 0
    }

    /// Whether `key` may reserve one more check at `now`; on refusal, the ms to wait (None:
    /// the table is full).
    fn check(&mut self, key: &K, now: u64) -> Result<(), Option<u64>> {
        if let Some(b) = self.map.get(key) {
            let recent = self.recent(b, now);
            let room = match self.in_flight {
                InFlight::AsFailures => recent + b.in_flight < self.limit,
                InFlight::AtMost(n) => recent < self.limit && b.in_flight < n,
            };
            if room {
                return Ok(());
            }
            return Err(Some(if recent >= self.limit {
                b.last_failure_ms + self.window_ms - now
            } else {
                PENDING_RETRY_MS
            }));
        }
        if self.map.len() >= self.cap {
            let due = self
                .last_sweep_ms
                .is_none_or(|t| now >= t.saturating_add(SWEEP_INTERVAL_MS));
            if due {
                self.last_sweep_ms = Some(now);
                let mut map = std::mem::take(&mut self.map);
                map.retain(|_, b| self.live(b, now));
                self.map = map;
            }
            if self.map.len() >= self.cap {
                return Err(None);
            }
        }
        Ok(())
    }

    /// Reserves a check (after [`Table::check`] said yes under the same lock).
    fn reserve(&mut self, key: K) {
        let b = self.map.entry(key).or_default();
        b.in_flight += 1;
        debug_assert!(
            self.map.len() <= self.cap,
            "a checked table stays within its cap"
        );
    }

    /// Gives a reservation back with its outcome; returns the recent failures after it.
    fn release(&mut self, key: &K, outcome: Outcome, now: u64) -> u32 {
        let window_ms = self.window_ms;
        let Some(b) = self.map.get_mut(key) else {
            debug_assert!(false, "a reservation has its entry");
            return 0;
        };
        debug_assert!(b.in_flight > 0, "a reservation is in flight");
        b.in_flight = b.in_flight.saturating_sub(1);
        match outcome {
            Outcome::Failed => {
                if now >= b.last_failure_ms.saturating_add(window_ms) {
                    b.failures = 0;
                }
                b.failures += 1;
                b.last_failure_ms = now;
            }
            Outcome::Succeeded if self.success_resets => b.failures = 0,
            Outcome::Succeeded | Outcome::Abandoned => {}
        }
        let b = *b;
        let recent = self.recent(&b, now);
        if !self.live(&b, now) {
            self.map.remove(key);
        }
        recent
    }
}

#[derive(Debug)]
struct Tables {
    users: Table<String>,
    addresses: Table<ClientAddr>,
}

/// The node's login budgets (one per node, shared by the handlers).
#[derive(Debug)]
pub struct Lockout {
    tables: Mutex<Tables>,
}

impl Default for Lockout {
    fn default() -> Self {
        Self::with_caps(MAX_LOCKOUT_USERS, MAX_THROTTLED_ADDRESSES)
    }
}

impl Lockout {
    /// Budgets with table caps other than the defaults (tests).
    pub fn with_caps(max_users: usize, max_addresses: usize) -> Self {
        Self {
            tables: Mutex::new(Tables {
                users: Table::new(
                    max_users,
                    MAX_LOGIN_FAILURES,
                    InFlight::AsFailures,
                    LOCKOUT_MS,
                    true,
                ),
                addresses: Table::new(
                    max_addresses,
                    MAX_LOGIN_FAILURES_PER_ADDRESS,
                    InFlight::AtMost(MAX_LOGINS_IN_FLIGHT_PER_ADDRESS),
                    ADDRESS_WINDOW_MS,
                    false,
                ),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves one password check from `addr`, for `user` if it exists on chain with a
    /// password on this node (None: an unknown id, counted against the address only). Both
    /// budgets are checked and reserved under one lock, or neither is.
    pub fn begin(
        &self,
        user: Option<&str>,
        addr: ClientAddr,
        now: u64,
    ) -> Result<Attempt<'_>, Refusal> {
        let mut t = self.lock();
        if let Some(u) = user {
            let key = u.to_string();
            t.users.check(&key, now).map_err(|w| match w {
                Some(retry_after_ms) => Refusal::Locked { retry_after_ms },
                None => Refusal::Full,
            })?;
        }
        t.addresses.check(&addr, now).map_err(|w| match w {
            Some(retry_after_ms) => Refusal::Throttled { retry_after_ms },
            None => Refusal::Full,
        })?;
        if let Some(u) = user {
            t.users.reserve(u.to_string());
        }
        t.addresses.reserve(addr);
        Ok(Attempt {
            lockout: self,
            user: user.map(str::to_string),
            addr,
            began_ms: now,
            open: true,
        })
    }

    fn finish(&self, a: &Attempt<'_>, outcome: Outcome, now: u64) -> bool {
        let mut t = self.lock();
        let locked = a
            .user
            .as_ref()
            .is_some_and(|u| t.users.release(u, outcome, now) >= MAX_LOGIN_FAILURES);
        t.addresses.release(&a.addr, outcome, now);
        locked
    }

    /// Users and addresses tracked now (tests, metrics).
    pub fn tracked(&self) -> (usize, usize) {
        let t = self.lock();
        (t.users.map.len(), t.addresses.map.len())
    }
}

/// A reserved password check; say how it went with [`Attempt::failed`] or
/// [`Attempt::succeeded`] (dropped without either, it is given back uncounted).
#[derive(Debug)]
#[must_use = "an attempt reports its outcome"]
pub struct Attempt<'a> {
    lockout: &'a Lockout,
    user: Option<String>,
    addr: ClientAddr,
    began_ms: u64,
    open: bool,
}

impl Attempt<'_> {
    /// A wrong password (or an unknown user): counted against the user and the address;
    /// returns whether the user is now locked out.
    pub fn failed(mut self, now: u64) -> bool {
        self.open = false;
        self.lockout.finish(&self, Outcome::Failed, now)
    }

    /// The right password: the user's failures are forgotten (the address's are not).
    pub fn succeeded(mut self, now: u64) {
        self.open = false;
        self.lockout.finish(&self, Outcome::Succeeded, now);
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if self.open {
            self.lockout.finish(self, Outcome::Abandoned, self.began_ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> ClientAddr {
        ClientAddr::of(s.parse().unwrap())
    }

    #[test]
    fn five_failed_logins_lock_the_user_for_fifteen_minutes() {
        let l = Lockout::default();
        let a = ip("10.0.0.1");
        for i in 1..MAX_LOGIN_FAILURES {
            assert!(!l
                .begin(Some("u"), a, 1_000)
                .unwrap()
                .failed(1_000 + u64::from(i)));
        }
        assert!(l.begin(Some("u"), a, 2_000).unwrap().failed(2_000));
        assert_eq!(
            l.begin(Some("u"), a, 2_000 + LOCKOUT_MS - 1).unwrap_err(),
            Refusal::Locked { retry_after_ms: 1 }
        );
        // After the lockout, one more failure starts a new count.
        assert!(!l
            .begin(Some("u"), a, 2_000 + LOCKOUT_MS)
            .unwrap()
            .failed(2_000 + LOCKOUT_MS));
        l.begin(Some("u"), a, 2_001 + LOCKOUT_MS)
            .unwrap()
            .succeeded(2_001 + LOCKOUT_MS);
    }

    #[test]
    fn finding_3_checks_in_flight_count_against_the_lockout_before_any_hash_runs() {
        let l = Lockout::default();
        let a = ip("10.0.0.1");
        // Fifty logins race: only MAX_LOGIN_FAILURES get to check a password.
        let (ok, refused): (Vec<_>, Vec<_>) = (0..50)
            .map(|_| l.begin(Some("u"), a, 1_000))
            .partition(Result::is_ok);
        assert_eq!(ok.len(), MAX_LOGIN_FAILURES as usize);
        assert!(refused.iter().all(|r| *r.as_ref().unwrap_err()
            == Refusal::Locked {
                retry_after_ms: 1_000
            }));
        let locked: Vec<bool> = ok.into_iter().map(|a| a.unwrap().failed(1_001)).collect();
        assert_eq!(locked.last(), Some(&true), "the last failure locks");
        // Even the right password is not checked now.
        assert!(matches!(
            l.begin(Some("u"), a, 1_002),
            Err(Refusal::Locked { .. })
        ));
    }

    #[test]
    fn a_success_releases_the_reservation_and_forgets_the_users_failures() {
        let l = Lockout::default();
        let a = ip("10.0.0.1");
        for _ in 1..MAX_LOGIN_FAILURES {
            let _ = l.begin(Some("u"), a, 1).unwrap().failed(1);
        }
        l.begin(Some("u"), a, 2).unwrap().succeeded(2);
        for _ in 1..MAX_LOGIN_FAILURES {
            assert!(!l.begin(Some("u"), a, 3).unwrap().failed(3));
        }
        assert_eq!(l.tracked().0, 1);
    }

    #[test]
    fn an_abandoned_check_gives_its_reservation_back_uncounted() {
        let l = Lockout::default();
        let a = ip("10.0.0.1");
        for _ in 0..3 * MAX_LOGIN_FAILURES {
            drop(l.begin(Some("u"), a, 1).unwrap());
        }
        assert_eq!(l.tracked(), (0, 0), "nothing counted, nothing kept");
    }

    #[test]
    fn finding_3_failed_logins_are_throttled_per_address_at_the_limit() {
        let l = Lockout::default();
        let (a, b) = (ip("10.0.0.1"), ip("10.0.0.2"));
        // Unknown ids count against the address only, and leave no user entry.
        for i in 0..MAX_LOGIN_FAILURES_PER_ADDRESS {
            let _ = l
                .begin(None, a, 1_000 + u64::from(i))
                .unwrap()
                .failed(1_000);
        }
        assert_eq!(l.tracked(), (0, 1));
        assert_eq!(
            l.begin(None, a, 1_000).unwrap_err(),
            Refusal::Throttled {
                retry_after_ms: ADDRESS_WINDOW_MS
            }
        );
        // A known user from that address too, and a success does not reset the address.
        assert!(matches!(
            l.begin(Some("u"), a, 1_000),
            Err(Refusal::Throttled { .. })
        ));
        l.begin(Some("u"), b, 1_000).unwrap().succeeded(1_000);
        assert!(l.begin(None, a, 1_000 + ADDRESS_WINDOW_MS).is_ok());
    }

    #[test]
    fn an_address_has_at_most_so_many_checks_in_flight_whoever_they_are_for() {
        let l = Lockout::default();
        let a = ip("10.0.0.1");
        let held: Vec<_> = (0..MAX_LOGINS_IN_FLIGHT_PER_ADDRESS)
            .map(|i| l.begin(Some(&format!("u{i}")), a, 1).unwrap())
            .collect();
        assert_eq!(
            l.begin(Some("one-more"), a, 1).unwrap_err(),
            Refusal::Throttled {
                retry_after_ms: PENDING_RETRY_MS
            }
        );
        assert!(l.begin(None, ip("10.0.0.2"), 1).is_ok());
        for h in held {
            h.succeeded(2);
        }
        assert!(l.begin(Some("one-more"), a, 2).is_ok());
    }

    #[test]
    fn an_ipv6_client_counts_by_its_slash_64_and_a_mapped_ipv4_as_ipv4() {
        assert_eq!(ip("2001:db8:1:2:aaaa::1"), ip("2001:db8:1:2:bbbb::9"));
        assert_ne!(ip("2001:db8:1:2::1"), ip("2001:db8:1:3::1"));
        assert_eq!(ip("::ffff:10.0.0.1"), ip("10.0.0.1"));
    }

    #[test]
    fn finding_3_a_full_table_refuses_new_keys_at_the_cap_and_drops_expired_ones() {
        let l = Lockout::with_caps(2, 3);
        let a = ip("10.0.0.1");
        let _ = l.begin(Some("u1"), a, 0).unwrap().failed(0);
        let _ = l.begin(Some("u2"), a, 0).unwrap().failed(0);
        // At the cap (2 users), a third user is refused and not inserted; known ones go on.
        assert_eq!(l.begin(Some("u3"), a, 1).unwrap_err(), Refusal::Full);
        assert_eq!(l.tracked(), (2, 1));
        let _ = l.begin(Some("u1"), a, 1).unwrap().failed(1);
        // Addresses: at the cap of 3, a fourth is refused.
        let _ = l.begin(None, ip("10.0.0.2"), 1).unwrap().failed(1);
        let _ = l.begin(None, ip("10.0.0.3"), 1).unwrap().failed(1);
        assert_eq!(l.begin(None, ip("10.0.0.4"), 2).unwrap_err(), Refusal::Full);
        assert_eq!(l.tracked(), (2, 3));
        // Once the failures stop counting, the sweep makes room.
        let later = 2 + LOCKOUT_MS.max(ADDRESS_WINDOW_MS);
        l.begin(Some("u3"), ip("10.0.0.4"), later)
            .unwrap()
            .succeeded(later);
        assert_eq!(l.tracked(), (0, 0));
    }
}
