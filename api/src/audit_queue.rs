//! The node's audit entries on their way to the chain (R-AUD-1): a bounded queue backed by the
//! store's `outbox` column family, so that no request — however long, however many — can stop
//! auditing (issue 15, finding 2).
//!
//! Invariants:
//! - Every entry is cut to the chain's limits when it is queued ([`AuditEntry::clamped`]), also
//!   entries reloaded from the outbox after a restart (written by an older node).
//! - A batch ([`AuditQueue::take_batch`]) holds at most [`MAX_AUDIT_ENTRIES`] entries and at most
//!   [`MAX_AUDIT_BATCH_BYTES`] encoded bytes, so it always fits one transaction.
//! - An entry the chain refuses on its own is moved to quarantine (`audit-q/` in the outbox,
//!   with the chain's reason), counted in status and metrics, and never blocks the entries
//!   behind it.
//! - Refusals of callers who did not identify themselves (no or bad credentials; logins refused
//!   before any password was checked) are counted per (user, department, action, endpoint,
//!   code) and go on chain as one entry per interval with the count, not one entry each; so do
//!   all entries while the queue is at its hard cap. The count table itself is
//!   capped ([`MAX_AGGREGATE_KEYS`]); beyond it, entries are counted under a catch-all key.
//!   Counts live in memory until the next flush (at most one interval is lost to a kill -9).
//! - Above the backlog limit, personal-data reads are refused (fail closed: no read that could
//!   not be audited).
//!
//! It must never drop an entry silently: an entry is on chain, queued, counted or quarantined.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use govchain_chaincode::access::{AuditAction, AuditEntry, MAX_AUDIT_ENTRIES};
use govchain_ledger::codec;
use govchain_ledger::hash::{hash_parts, Domain};
use govchain_ledger::store::CF_OUTBOX;
use govchain_ledger::{Store, TimestampMs};

/// Most encoded bytes of entries in one `AppendAudit` batch (a quarter of the largest
/// transaction, so a batch always fits).
pub const MAX_AUDIT_BATCH_BYTES: usize = 1024 * 1024;
/// Default backlog above which personal-data reads are refused (`[api] audit_backlog_limit`):
/// ten full batches.
pub const DEFAULT_AUDIT_BACKLOG_LIMIT: usize = 10 * MAX_AUDIT_ENTRIES;
/// Most distinct (user, department, action, endpoint, outcome) counters between two flushes.
pub const MAX_AGGREGATE_KEYS: usize = 1024;
/// Largest encoded entry read back from the outbox.
const MAX_ENTRY_BYTES: usize = 1 << 20;

/// Prefix of queued entries in the `outbox` column family.
const QUEUED: &[u8] = b"audit/";
/// Prefix of quarantined entries: the entry's bytes and the reason (the chain refused it, or
/// — under `raw/` and the outbox key — the node could not read it back).
const QUARANTINED: &[u8] = b"audit-q/";

fn key(prefix: &[u8], seq: u64) -> Vec<u8> {
    [prefix, &seq.to_be_bytes()].concat()
}

fn seq_of(prefix: &[u8], k: &[u8]) -> Option<u64> {
    k.get(prefix.len()..)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
}

/// What counted entries share: one on-chain entry per key and interval carries the count.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct AggregateKey {
    user: String,
    department: String,
    /// The action's name (and an administration call's text): what the counted entries share.
    action: String,
    endpoint: String,
    outcome: String,
}

/// The action a counted entry carries: the counted entries' own, except that reads of personal
/// data become an administration entry naming the read (a count is no access decision, and the
/// auditor re-decides every `Access` entry).
fn counted_action(a: AuditAction) -> AuditAction {
    match a {
        AuditAction::Access(_) => AuditAction::Admin(format!("aggregate {}", a.name())),
        other => other,
    }
}

/// The endpoint of a counted entry: method and the first three path segments, so that paths
/// carrying ids (`/api/v1/persons/110…`) share one counter and no unidentified caller's path
/// reaches the chain.
fn endpoint_class(endpoint: &str) -> String {
    let (method, path) = endpoint.split_once(' ').unwrap_or(("", endpoint));
    let mut segments = path.split('/').filter(|s| !s.is_empty());
    let head: Vec<&str> = segments.by_ref().take(3).collect();
    let more = if segments.next().is_some() {
        "/…"
    } else {
        ""
    };
    format!("{method} /{}{more}", head.join("/"))
}

#[derive(Debug, Default)]
struct Queue {
    /// Entries waiting, in sequence order, with their encoded sizes.
    entries: Vec<(u64, AuditEntry, usize)>,
    counts: BTreeMap<AggregateKey, (AuditAction, u64)>,
}

/// The audit queue of one node.
#[derive(Debug)]
pub struct AuditQueue {
    queue: Mutex<Queue>,
    /// Where queued entries are kept until committed (None: memory only, in unit tests).
    outbox: Option<Store>,
    next_seq: AtomicU64,
    quarantined: AtomicU64,
    backlog_limit: usize,
}

fn lock(m: &Mutex<Queue>) -> std::sync::MutexGuard<'_, Queue> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl AuditQueue {
    /// A queue refusing reads above `backlog_limit` entries; with `outbox`, the entries queued
    /// before a restart are loaded back (clamped to the chain's limits) and the quarantine is
    /// counted.
    pub fn new(outbox: Option<Store>, backlog_limit: usize) -> Self {
        let mut entries = Vec::new();
        let mut quarantined = 0;
        if let Some(store) = &outbox {
            match store.raw_prefix(CF_OUTBOX, QUEUED) {
                Ok(rows) => {
                    for (k, v) in rows {
                        let e = codec::decode::<AuditEntry>(&v, MAX_ENTRY_BYTES);
                        match (seq_of(QUEUED, &k), e) {
                            (Some(seq), Ok(e)) => {
                                let e = e.clamped();
                                let n = codec::encode_infallible(&e).len();
                                entries.push((seq, e, n));
                            }
                            _ => {
                                // Not an entry this node can read (an older layout, a torn
                                // write): kept in quarantine as it is, never dropped.
                                tracing::error!(target: "api.audit", "unreadable audit outbox entry quarantined");
                                let q = [QUARANTINED, b"raw/", &k[..]].concat();
                                let value = codec::encode_infallible(&(
                                    v.to_vec(),
                                    "undecodable".to_string(),
                                ));
                                if let Err(e) = store
                                    .put_raw_unsynced(CF_OUTBOX, &q, &value)
                                    .and_then(|()| {
                                        store.delete_raw_unsynced(CF_OUTBOX, &[k.to_vec()])
                                    })
                                {
                                    tracing::error!(target: "api.audit", error = %e, "quarantining an unreadable audit entry");
                                }
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(target: "api.audit", error = %e, "reading the audit outbox")
                }
            }
            match store.raw_prefix(CF_OUTBOX, QUARANTINED) {
                Ok(rows) => quarantined = rows.len() as u64,
                Err(e) => {
                    tracing::error!(target: "api.audit", error = %e, "reading the audit quarantine")
                }
            }
            if !entries.is_empty() {
                tracing::info!(target: "api.audit", entries = entries.len(), "audit entries from before the restart queued again");
            }
        }
        let next = entries.last().map_or(0, |(s, _, _)| s + 1);
        Self {
            queue: Mutex::new(Queue {
                entries,
                counts: BTreeMap::new(),
            }),
            outbox,
            next_seq: AtomicU64::new(next),
            quarantined: AtomicU64::new(quarantined),
            backlog_limit: backlog_limit.max(1),
        }
    }

    /// The hard cap of queued entries: beyond it, entries are counted, not queued.
    fn hard_cap(&self) -> usize {
        self.backlog_limit.saturating_mul(2)
    }

    /// Queues an entry (clamped to the chain's limits), first writing it to the outbox. At the
    /// hard cap it is counted instead ([`Self::count`]).
    pub fn push(&self, e: AuditEntry) {
        if lock(&self.queue).entries.len() >= self.hard_cap() {
            self.count(e);
        } else {
            self.enqueue(e);
        }
    }

    fn enqueue(&self, e: AuditEntry) {
        let e = e.clamped();
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let bytes = codec::encode_infallible(&e);
        if let Some(store) = &self.outbox {
            if let Err(err) = store.put_raw_unsynced(CF_OUTBOX, &key(QUEUED, seq), &bytes) {
                tracing::error!(target: "api.audit", error = %err, "writing the audit outbox");
            }
        }
        let mut q = lock(&self.queue);
        // Sequence order, even when two requests race between numbering and queueing.
        let at = q.entries.partition_point(|(s, _, _)| *s < seq);
        q.entries.insert(at, (seq, e, bytes.len()));
    }

    /// Counts an entry instead of queueing it: one entry per (user, department, action,
    /// endpoint class, outcome) goes on chain at the next flush, with the count in `results`.
    pub fn count(&self, e: AuditEntry) {
        let action = counted_action(e.action);
        let mut k = AggregateKey {
            user: e.user,
            department: e.department,
            action: match &action {
                AuditAction::Admin(what) => format!("admin {what}"),
                other => other.name().to_string(),
            },
            endpoint: endpoint_class(&e.endpoint),
            outcome: e.outcome,
        };
        let mut q = lock(&self.queue);
        let mut action = action;
        if !q.counts.contains_key(&k) && q.counts.len() >= MAX_AGGREGATE_KEYS {
            k = AggregateKey {
                user: "*".into(),
                department: "*".into(),
                action: "*".into(),
                endpoint: "*".into(),
                outcome: "*".into(),
            };
            action = AuditAction::Admin("aggregate *".into());
        }
        q.counts.entry(k).or_insert((action, 0)).1 += 1;
    }

    /// Turns the counters into queued entries (at `now`); called before each batch.
    fn queue_counts(&self, now: TimestampMs) {
        let counts = std::mem::take(&mut lock(&self.queue).counts);
        for (k, (action, n)) in counts {
            let fingerprint = hash_parts(
                Domain::AuditFingerprint,
                &[
                    b"aggregate\n",
                    k.endpoint.as_bytes(),
                    b"\n",
                    k.outcome.as_bytes(),
                    &n.to_be_bytes(),
                    &now.0.to_be_bytes(),
                ],
            );
            let e = AuditEntry {
                time: now,
                user: k.user,
                department: k.department,
                action,
                endpoint: k.endpoint,
                person: None,
                outcome: k.outcome,
                results: n,
                persons: Default::default(),
                fingerprint,
                state_height: 0,
            };
            // Bypasses the hard cap: counts must reach the chain, and there are at most
            // MAX_AGGREGATE_KEYS + 1 of them per interval.
            self.enqueue(e);
        }
    }

    /// Takes the next batch (in order): the counters become entries first; then at most
    /// `max_entries` entries of at most `max_bytes` encoded bytes in all (at least one entry).
    pub fn take_batch(
        &self,
        now: TimestampMs,
        max_entries: usize,
        max_bytes: usize,
    ) -> Vec<(u64, AuditEntry)> {
        self.queue_counts(now);
        let mut q = lock(&self.queue);
        let (mut n, mut bytes) = (0, 0);
        for (_, _, size) in &q.entries {
            if n == max_entries || (n > 0 && bytes + size > max_bytes) {
                break;
            }
            n += 1;
            bytes += size;
        }
        q.entries.drain(..n).map(|(s, e, _)| (s, e)).collect()
    }

    /// Puts entries back at the front (their submission failed for a reason not theirs).
    pub fn give_back(&self, entries: Vec<(u64, AuditEntry)>) {
        let mut q = lock(&self.queue);
        let mut back: Vec<(u64, AuditEntry, usize)> = entries
            .into_iter()
            .map(|(s, e)| {
                let n = codec::encode_infallible(&e).len();
                (s, e, n)
            })
            .collect();
        back.append(&mut q.entries);
        q.entries = back;
    }

    /// Forgets committed entries (removes them from the outbox).
    pub fn committed(&self, seqs: &[u64]) {
        if let Some(store) = &self.outbox {
            let keys: Vec<Vec<u8>> = seqs.iter().map(|s| key(QUEUED, *s)).collect();
            if let Err(e) = store.delete_raw_unsynced(CF_OUTBOX, &keys) {
                tracing::error!(target: "api.audit", error = %e, "clearing the audit outbox");
            }
        }
    }

    /// Moves an entry the chain refused to quarantine, with the chain's reason.
    pub fn quarantine(&self, seq: u64, e: &AuditEntry, reason: &str) {
        tracing::error!(target: "api.audit", seq, reason, "the chain refused an audit entry; quarantined");
        if let Some(store) = &self.outbox {
            let value =
                codec::encode_infallible(&(codec::encode_infallible(e), reason.to_string()));
            if let Err(err) = store.put_raw_unsynced(CF_OUTBOX, &key(QUARANTINED, seq), &value) {
                tracing::error!(target: "api.audit", error = %err, "writing the audit quarantine");
            }
            if let Err(err) = store.delete_raw_unsynced(CF_OUTBOX, &[key(QUEUED, seq)]) {
                tracing::error!(target: "api.audit", error = %err, "clearing the audit outbox");
            }
        }
        self.quarantined.fetch_add(1, Ordering::Relaxed);
    }

    /// Entries waiting (counters not included).
    pub fn backlog(&self) -> usize {
        lock(&self.queue).entries.len()
    }

    /// Entries the chain refused, kept in quarantine.
    pub fn quarantined(&self) -> u64 {
        self.quarantined.load(Ordering::Relaxed)
    }

    /// Whether personal-data reads must be refused: more entries wait than the limit.
    pub fn over_limit(&self) -> bool {
        self.backlog() > self.backlog_limit
    }

    /// The backlog limit.
    pub fn backlog_limit(&self) -> usize {
        self.backlog_limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use govchain_chaincode::access::MAX_AUDIT_TEXT;
    use govchain_ledger::Hash;

    fn entry(endpoint: &str, outcome: &str) -> AuditEntry {
        AuditEntry {
            time: TimestampMs(1),
            user: String::new(),
            department: "gaj".into(),
            action: AuditAction::Admin("authenticate".into()),
            endpoint: endpoint.into(),
            person: None,
            outcome: outcome.into(),
            results: 0,
            persons: Default::default(),
            fingerprint: Hash([0; 32]),
            state_height: 0,
        }
    }

    fn size(e: &AuditEntry) -> usize {
        codec::encode_infallible(e).len()
    }

    #[test]
    fn finding_2_entries_are_clamped_when_queued() {
        let q = AuditQueue::new(None, 100);
        q.push(entry(
            &format!("GET /{}", "x".repeat(100_000)),
            "no_session",
        ));
        let b = q.take_batch(TimestampMs(2), MAX_AUDIT_ENTRIES, MAX_AUDIT_BATCH_BYTES);
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].1.endpoint.len(), MAX_AUDIT_TEXT);
        assert_eq!(b[0].1.validate(), Ok(()));
    }

    #[test]
    fn finding_2_a_batch_is_cut_by_bytes_at_the_limit_and_by_count() {
        let q = AuditQueue::new(None, 100);
        let e = entry("GET /api/v1/me", "ok");
        let one = size(&e);
        for _ in 0..10 {
            q.push(e.clone());
        }
        // Exactly three entries' bytes: three; one byte less: two.
        assert_eq!(q.take_batch(TimestampMs(2), 100, 3 * one).len(), 3);
        assert_eq!(q.take_batch(TimestampMs(2), 100, 3 * one - 1).len(), 2);
        // A single entry larger than the byte limit still goes alone (never stuck).
        assert_eq!(q.take_batch(TimestampMs(2), 100, 1).len(), 1);
        assert_eq!(q.take_batch(TimestampMs(2), 2, usize::MAX).len(), 2);
        assert_eq!(q.backlog(), 2);
    }

    #[test]
    fn finding_2_refusals_are_counted_per_endpoint_class_with_a_capped_table() {
        let q = AuditQueue::new(None, 100);
        for i in 0..1000 {
            q.count(entry(&format!("GET /api/v1/persons/{i:018}"), "no_session"));
        }
        q.count(entry("GET /api/v1/records", "bad_signature"));
        let b = q.take_batch(TimestampMs(9), MAX_AUDIT_ENTRIES, MAX_AUDIT_BATCH_BYTES);
        let mut got: Vec<(String, String, u64)> = b
            .iter()
            .map(|(_, e)| (e.endpoint.clone(), e.outcome.clone(), e.results))
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                ("GET /api/v1/persons/…".into(), "no_session".into(), 1000),
                ("GET /api/v1/records".into(), "bad_signature".into(), 1),
            ]
        );
        // Distinct keys past the cap share one catch-all counter: nothing is lost.
        for i in 0..MAX_AGGREGATE_KEYS + 10 {
            q.count(entry("GET /api/v1/me", &format!("code{i}")));
        }
        let b = q.take_batch(TimestampMs(9), MAX_AUDIT_ENTRIES, usize::MAX);
        assert_eq!(b.len(), MAX_AGGREGATE_KEYS + 1);
        assert_eq!(b.iter().map(|(_, e)| e.results).sum::<u64>(), 1034);
        assert!(b.iter().any(|(_, e)| e.outcome == "*" && e.results == 10));
    }

    #[test]
    fn finding_2_at_the_hard_cap_entries_are_counted_and_reads_refused_over_the_limit() {
        let q = AuditQueue::new(None, 3);
        for _ in 0..3 {
            q.push(entry("GET /api/v1/me", "ok"));
        }
        assert!(!q.over_limit(), "at the limit reads go on");
        q.push(entry("GET /api/v1/me", "ok"));
        assert!(q.over_limit(), "one over the limit: fail closed");
        for _ in 0..10 {
            q.push(entry("GET /api/v1/me", "ok"));
        }
        assert_eq!(q.backlog(), 6, "the hard cap (twice the limit) holds");
        let mut total = 0;
        while q.backlog() > 0 || total == 0 {
            let b = q.take_batch(TimestampMs(3), MAX_AUDIT_ENTRIES, usize::MAX);
            total += b.iter().map(|(_, e)| e.results.max(1)).sum::<u64>();
            if b.is_empty() {
                break;
            }
        }
        assert_eq!(total, 14, "every entry is queued or counted");
    }

    #[test]
    fn finding_2_quarantine_and_queue_survive_a_restart_and_old_entries_are_clamped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // An entry an older node wrote without clamping.
        let old = entry(&format!("GET /{}", "y".repeat(2000)), "no_session");
        store
            .put_raw_unsynced(CF_OUTBOX, &key(QUEUED, 7), &codec::encode_infallible(&old))
            .unwrap();
        let q = AuditQueue::new(Some(store.clone()), 100);
        q.push(entry("GET /api/v1/me", "ok"));
        let b = q.take_batch(TimestampMs(2), MAX_AUDIT_ENTRIES, MAX_AUDIT_BATCH_BYTES);
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].0, 7);
        assert_eq!(b[0].1.validate(), Ok(()), "reloaded entries are clamped");
        assert_eq!(b[1].0, 8, "numbering goes on after the reloaded ones");
        q.quarantine(b[0].0, &b[0].1, "refused");
        q.give_back(vec![b[1].clone()]);
        assert_eq!(q.quarantined(), 1);
        drop(q);
        let q = AuditQueue::new(Some(store), 100);
        assert_eq!(
            q.quarantined(),
            1,
            "the quarantine is counted after a restart"
        );
        let b = q.take_batch(TimestampMs(2), MAX_AUDIT_ENTRIES, MAX_AUDIT_BATCH_BYTES);
        assert_eq!(b.iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![8]);
    }

    #[test]
    fn finding_2_an_unreadable_outbox_entry_is_quarantined_not_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .put_raw_unsynced(CF_OUTBOX, &key(QUEUED, 3), b"not an audit entry")
            .unwrap();
        let q = AuditQueue::new(Some(store.clone()), 100);
        assert_eq!(q.backlog(), 0);
        assert_eq!(q.quarantined(), 1, "kept and counted");
        assert!(store.raw_prefix(CF_OUTBOX, QUEUED).unwrap().is_empty());
        drop(q);
        assert_eq!(AuditQueue::new(Some(store), 100).quarantined(), 1);
    }

    #[test]
    fn endpoint_classes_keep_three_segments() {
        assert_eq!(
            endpoint_class("GET /api/v1/persons/1/accesses"),
            "GET /api/v1/persons/…"
        );
        assert_eq!(endpoint_class("POST /api/v1/login"), "POST /api/v1/login");
        assert_eq!(endpoint_class("GET /"), "GET /");
    }
}
