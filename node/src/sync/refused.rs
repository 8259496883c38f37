//! Refused records (issue 15 finding 10, R-SYN-3): every record a department system sent that
//! failed validation for its source is kept, node-local, in the outbox column family under
//! `sync/r/{source}/` — its entry (`n/{N}`, N increasing per source, so key order is age), an
//! index by record key (`k/{key}` → N) and the counters (`m`: next N, records dropped) — until a
//! valid version of the same key arrives (a fix at the department system, or a retry after the
//! catalog changed), when it leaves and its record goes the normal outbox path.
//!
//! Invariants: one entry per record key (a newer refusal of a key replaces the older one); at
//! most `rejected_keep` entries per source: past it the oldest are dropped and every drop is
//! counted in `dropped`, in the same synced batch — a refused record is never silently gone.
//! Entries change only under the connector's outbox lock, in the batch that also moves the
//! records and the cursor. Never: an entry's payload in logs or in the listing (it is personal
//! data; the listing shows its size).

use super::*;
use govchain_chaincode::records::{MAX_RAW_BYTES, MAX_RECORD_KEY_BYTES};

/// Longest reason kept with a refused record.
pub const MAX_REASON_BYTES: usize = 1024;
/// Largest refused entry decoded from the outbox (payload, key, reason and a margin).
const ENTRY_LIMIT: usize = MAX_RAW_BYTES + MAX_RECORD_KEY_BYTES + MAX_REASON_BYTES + 4096;

/// A refused record as kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedRecord {
    /// The record key as delivered (cut to [`MAX_RECORD_KEY_BYTES`]; a longer key is refused
    /// anyway).
    pub key: String,
    /// The change sequence number it came with (0: unknown, e.g. a record the chain refused
    /// after it was queued).
    pub seq: u64,
    /// Why it is refused, as of the last check.
    pub reason: String,
    /// When it was refused, Unix ms.
    pub refused_at: u64,
    /// When it was last checked (refused, or re-validated by a retry), Unix ms.
    pub checked_at: u64,
    /// The run that fetched it (0: a pull-through, or a record the chain refused).
    pub run: u64,
    /// Times it was checked and refused.
    pub checks: u32,
    /// Size of the record key as delivered, in bytes.
    pub key_bytes: u64,
    /// Size of the payload as delivered, in bytes.
    pub payload_bytes: u64,
    /// The payload as delivered (cut to [`MAX_RAW_BYTES`] bytes: a longer one is refused anyway).
    pub payload: String,
}

/// Cuts `s` to at most `max` bytes at a character boundary.
fn cut(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

impl RefusedRecord {
    /// A refusal of `e` for `reason` at `now` in run `run`.
    pub(super) fn new(e: &PageEntry, reason: &str, now: u64, run: u64) -> Self {
        Self {
            key: cut(&e.key, MAX_RECORD_KEY_BYTES),
            seq: e.seq,
            reason: cut(reason, MAX_REASON_BYTES),
            refused_at: now,
            checked_at: now,
            run,
            checks: 1,
            key_bytes: e.key.len() as u64,
            payload_bytes: e.payload.len() as u64,
            payload: cut(&e.payload, MAX_RAW_BYTES),
        }
    }

    /// Whether the whole key and payload were kept (so they can be validated again).
    fn whole(&self) -> bool {
        self.payload.len() as u64 == self.payload_bytes && self.key.len() as u64 == self.key_bytes
    }

    /// The entry as delivered, for a new validation; None if it was cut.
    pub(super) fn entry(&self) -> Option<PageEntry> {
        self.whole().then(|| PageEntry {
            key: self.key.clone(),
            seq: self.seq,
            payload: self.payload.clone(),
        })
    }

    /// Checked again and still refused.
    pub(super) fn refused_again(&mut self, reason: &str, now: u64) {
        self.reason = cut(reason, MAX_REASON_BYTES);
        self.checked_at = now;
        self.checks = self.checks.saturating_add(1);
    }

    /// As the listing shows it: everything but the payload.
    pub fn listed(&self) -> Value {
        json!({
            "key": self.key,
            "seq": self.seq,
            "reason": self.reason,
            "refused_at": self.refused_at,
            "checked_at": self.checked_at,
            "run": self.run,
            "checks": self.checks,
            "key_bytes": self.key_bytes,
            "payload_bytes": self.payload_bytes,
        })
    }
}

/// The persisted counters of a source's refused records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Meta {
    next: u64,
    dropped: u64,
}

/// A source's refused records as the connector keeps them in memory: how many are kept, the
/// next entry number, and how many were dropped since the outbox was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RefusedCounts {
    /// Entries kept.
    pub kept: u64,
    /// Entries dropped because the list was full (oldest first).
    pub dropped: u64,
    next: u64,
}

pub(super) fn p_refused(src: &str) -> Vec<u8> {
    format!("sync/r/{src}/n/").into_bytes()
}
fn k_refused(src: &str, n: u64) -> Vec<u8> {
    [p_refused(src), n.to_be_bytes().to_vec()].concat()
}
fn k_refused_index(src: &str, key: &str) -> Vec<u8> {
    [
        format!("sync/r/{src}/k/").into_bytes(),
        key.as_bytes().to_vec(),
    ]
    .concat()
}
fn k_refused_meta(src: &str) -> Vec<u8> {
    format!("sync/r/{src}/m").into_bytes()
}

/// The entry number of a key under [`p_refused`].
pub(super) fn refused_number(src: &str, k: &[u8]) -> Option<u64> {
    let tail = k.get(p_refused(src).len()..)?;
    <[u8; 8]>::try_from(tail).ok().map(u64::from_be_bytes)
}

pub(super) fn decode_refused(v: &[u8]) -> Option<RefusedRecord> {
    codec::decode::<RefusedRecord>(v, ENTRY_LIMIT).ok()
}

/// Reads a source's counters from the outbox (at start).
pub(super) fn load_counts(store: &Store, src: &str) -> Result<RefusedCounts, StoreError> {
    let entries = store.raw_prefix(CF_OUTBOX, &p_refused(src))?;
    let meta = store
        .get_raw(CF_OUTBOX, &k_refused_meta(src))?
        .and_then(|b| codec::decode::<Meta>(&b, 64).ok())
        .unwrap_or_default();
    let last = entries
        .last()
        .and_then(|(k, _)| refused_number(src, k))
        .map_or(0, |n| n + 1);
    Ok(RefusedCounts {
        kept: entries.len() as u64,
        dropped: meta.dropped,
        next: meta.next.max(last),
    })
}

/// What a [`RefusedBook`] writes, and the counts after it.
pub(super) struct Finished {
    pub(super) puts: Vec<(Vec<u8>, Vec<u8>)>,
    pub(super) deletes: Vec<Vec<u8>>,
    pub(super) counts: RefusedCounts,
    /// Entries dropped by this batch because the list was full.
    pub(super) dropped: u64,
}

/// The changes one batch makes to a source's refused records, over what the store holds.
pub(super) struct RefusedBook<'a> {
    store: &'a Store,
    src: &'a str,
    counts: RefusedCounts,
    /// Key → Some(new value) or None (deleted).
    overlay: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Entry numbers added by this batch, oldest first.
    added: Vec<u64>,
}

impl<'a> RefusedBook<'a> {
    pub(super) fn new(store: &'a Store, src: &'a str, counts: RefusedCounts) -> Self {
        Self {
            store,
            src,
            counts,
            overlay: BTreeMap::new(),
            added: Vec::new(),
        }
    }

    fn get(&self, k: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.overlay.get(k) {
            Some(v) => Ok(v.clone()),
            None => self.store.get_raw(CF_OUTBOX, k),
        }
    }

    /// The entry number of `key`'s refusal, if one is kept.
    fn number_of(&mut self, key: &str) -> Result<Option<u64>, StoreError> {
        if self.counts.kept == 0 {
            return Ok(None);
        }
        let ik = k_refused_index(self.src, key);
        let Some(b) = self.get(&ik)? else {
            return Ok(None);
        };
        let n = <[u8; 8]>::try_from(b.as_slice())
            .ok()
            .map(u64::from_be_bytes);
        match n {
            Some(n) if self.get(&k_refused(self.src, n))?.is_some() => Ok(Some(n)),
            // A stale index (its entry is gone): drop it.
            _ => {
                self.overlay.insert(ik, None);
                Ok(None)
            }
        }
    }

    fn remove(&mut self, key: &str, n: u64) {
        self.overlay.insert(k_refused_index(self.src, key), None);
        self.overlay.insert(k_refused(self.src, n), None);
        self.counts.kept = self.counts.kept.saturating_sub(1);
    }

    /// A valid version of `key` arrived: its refusal, if any, leaves. Returns whether one did.
    pub(super) fn resolve(&mut self, key: &str) -> Result<bool, StoreError> {
        let key = cut(key, MAX_RECORD_KEY_BYTES);
        match self.number_of(&key)? {
            Some(n) => {
                self.remove(&key, n);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Keeps a refusal, replacing an older refusal of the same key.
    pub(super) fn refuse(&mut self, r: &RefusedRecord) -> Result<(), StoreError> {
        if let Some(old) = self.number_of(&r.key)? {
            self.remove(&r.key, old);
        }
        let n = self.counts.next;
        self.counts.next += 1;
        self.overlay
            .insert(k_refused(self.src, n), Some(codec::encode_infallible(r)));
        self.overlay.insert(
            k_refused_index(self.src, &r.key),
            Some(n.to_be_bytes().to_vec()),
        );
        self.counts.kept += 1;
        self.added.push(n);
        Ok(())
    }

    /// Entry `n` checked again (its key unchanged).
    pub(super) fn update(&mut self, n: u64, r: &RefusedRecord) {
        self.overlay
            .insert(k_refused(self.src, n), Some(codec::encode_infallible(r)));
    }

    /// Entry `n` (of `key`) passed a new check and leaves.
    pub(super) fn passed(&mut self, n: u64, key: &str) {
        self.remove(key, n);
    }

    /// Drops the oldest entries past `keep`, counting them; returns the writes and counts.
    pub(super) fn finish(mut self, keep: usize) -> Result<Finished, StoreError> {
        let excess = self.counts.kept.saturating_sub(keep as u64);
        let mut dropped = 0u64;
        if excess > 0 {
            // Oldest first: the entries kept before this batch (not removed by it), then the
            // batch's own, in the order they came.
            let overlay = &self.overlay;
            let old = self.store.raw_prefix_where(
                CF_OUTBOX,
                &p_refused(self.src),
                excess as usize,
                |k, _| !matches!(overlay.get(k), Some(None)),
            )?;
            let mut victims: Vec<(u64, Option<String>)> = old
                .iter()
                .filter_map(|(k, v)| {
                    let n = refused_number(self.src, k)?;
                    Some((n, decode_refused(v).map(|r| r.key)))
                })
                .collect();
            for n in &self.added {
                if victims.len() as u64 >= excess {
                    break;
                }
                let k = k_refused(self.src, *n);
                if let Some(Some(v)) = self.overlay.get(&k) {
                    victims.push((*n, decode_refused(v).map(|r| r.key)));
                }
            }
            for (n, key) in victims {
                match key {
                    Some(key) => self.remove(&key, n),
                    None => {
                        // Unreadable: its index cannot be found; the entry goes all the same.
                        self.overlay.insert(k_refused(self.src, n), None);
                        self.counts.kept = self.counts.kept.saturating_sub(1);
                    }
                }
                dropped += 1;
            }
            self.counts.dropped += dropped;
        }
        debug_assert!(
            self.counts.kept <= keep as u64,
            "refused records over the cap"
        );
        let mut puts = Vec::new();
        let mut deletes = Vec::new();
        let changed = !self.overlay.is_empty();
        for (k, v) in self.overlay {
            match v {
                Some(v) => puts.push((k, v)),
                None => deletes.push(k),
            }
        }
        if changed {
            let meta = Meta {
                next: self.counts.next,
                dropped: self.counts.dropped,
            };
            puts.push((k_refused_meta(self.src), codec::encode_infallible(&meta)));
        }
        Ok(Finished {
            puts,
            deletes,
            counts: self.counts,
            dropped,
        })
    }
}

impl Connector {
    /// The refused records kept, newest first (at most `limit`), with the counts.
    pub fn rejected(&self, limit: usize) -> Result<Value, StoreError> {
        let src = &self.cfg.source;
        let counts = self.lock_outbox().refused;
        let entries = self.store.raw_prefix(CF_OUTBOX, &p_refused(src))?;
        let records: Vec<Value> = entries
            .iter()
            .rev()
            .take(limit)
            .map(|(_, v)| match decode_refused(v) {
                Some(r) => r.listed(),
                None => json!({"reason": "unreadable entry in the outbox"}),
            })
            .collect();
        Ok(json!({
            "source": src,
            "kept": counts.kept,
            "dropped": counts.dropped,
            "keep": self.cfg.rejected_keep,
            "records": records,
        }))
    }

    /// Validates every kept refused record again against the source's current definition on
    /// chain: those that pass leave the list and go the normal outbox path (queued, or counted
    /// unchanged when the chain has them already); those that still fail stay, with the new
    /// reason. Kept in the run history with trigger `retry`: `fetched` = checked, `resolved` =
    /// passed, `rejected` = still refused.
    pub fn retry_rejected(&self) -> Result<RunRecord, StoreError> {
        let src = &self.cfg.source;
        let source = self.current_source();
        let mut run = RunRecord {
            id: self.next_run_id.fetch_add(1, Ordering::Relaxed),
            trigger: "retry".into(),
            started_at: self.clock.now_ms(),
            ..RunRecord::default()
        };
        let mut ob = self.lock_outbox();
        let mut b = self.batch(&ob);
        let now = self.clock.now_ms();
        for (k, v) in self.store.raw_prefix(CF_OUTBOX, &p_refused(src))? {
            let (Some(n), Some(mut r)) = (refused_number(src, &k), decode_refused(&v)) else {
                continue;
            };
            run.fetched += 1;
            let verdict = match r.entry() {
                Some(e) => to_record(&source, &e),
                None => Err(r.reason.clone()),
            };
            match verdict {
                Ok(record) => {
                    b.refused.passed(n, &r.key);
                    run.resolved += 1;
                    self.queue(&mut b, &r.key, record, &mut run)?;
                }
                Err(reason) => {
                    run.rejected += 1;
                    run.last_error = Some(format!("record {:?} still refused: {reason}", r.key));
                    r.refused_again(&reason, now);
                    b.refused.update(n, &r);
                }
            }
        }
        self.write_batch(&mut ob, b, &mut run)?;
        drop(ob);
        run.outcome = "ok".into();
        run.cursor = self.cursor();
        run.ended_at = self.clock.now_ms();
        tracing::info!(target: "node.sync", source = %src, checked = run.fetched, passed = run.resolved, queued = run.queued, still_refused = run.rejected, "refused records checked again");
        self.save_run(&run);
        Ok(run)
    }
}
