//! Connectors to department systems (R-SYN-1…3, DESIGN §5 Connectors).
//!
//! One [`Connector`] per configured data source pulls the department system's change feed
//! (`GET {endpoint}/sources/{id}/records?since=SEQ&limit=N`) page by page, decodes each page
//! with the source's codec (plain JSON, DES or 3DES), turns each entry into a [`Record`] checked
//! against the source's definition, and writes the records that are new or changed into the
//! node's durable outbox (RocksDB, column family `outbox`) in the same synced batch that moves
//! the source's cursor. Only then are they signed into `SubmitRecords` transactions.
//!
//! Exactly once: the idempotency key of a record is (source, record key, content hash). A
//! record whose content is already on chain, or already waiting in the outbox, is not queued
//! again. A signed transaction is itself written to the outbox before it is submitted, and after
//! a crash the *same* transaction (same nonce) is submitted again, so the chain's replay
//! protection commits it at most once; its records leave the outbox only once it is committed.
//!
//! Requests are retried with exponential backoff and jitter; a source whose requests keep
//! failing is reported unhealthy in `/api/v1/sync/status` and `/api/v1/status`. Scheduled runs
//! start on the source's cron ticks inside its off-hours window and stop fetching when the
//! window closes; an operator's manual run ignores the window. A person file asked for with
//! `fresh=true` pulls that person's records from every connected source first (R-SYN-2).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use govchain_api::sync::{BoxFuture, Freshness, StaleSource, SyncService};
use govchain_api::ApiContext;
use govchain_chaincode::catalog::DataSource;
use govchain_chaincode::keys;
use govchain_chaincode::records::{Record, StoredRecord};
use govchain_chaincode::TxKind;
use govchain_genesis::ConnectorConfig;
use govchain_ledger::hash::Domain;
use govchain_ledger::store::CF_OUTBOX;
use govchain_ledger::{codec, Height, SignedTx, Store, StoreError, TxId, MAX_TX_BYTES};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::{watch, Notify};

use crate::legacy_codec::{Codec, CodecError};
use crate::schedule::{Clock, Schedule};

/// Runs kept in a source's history.
pub const HISTORY_KEEP: u64 = 200;
/// Largest stored record or source definition we decode from state.
const RECORD_LIMIT: usize = 1 << 20;

/// Runs blocking store work (synced RocksDB writes, many reads) without stalling the other
/// tasks of a multi-threaded runtime's worker (consensus, networking, the API share them).
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// The data source `id` as registered on chain.
pub fn source_on_chain(store: &Store, id: &str) -> anyhow::Result<Option<DataSource>> {
    Ok(govchain_chaincode::exec::get(store, &keys::source(id))?)
}

/// One page of a department system's feed.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Page {
    /// Records, in change order.
    pub records: Vec<PageEntry>,
    /// Cursor after this page.
    #[serde(default)]
    pub next: u64,
    /// Whether more records follow.
    #[serde(default)]
    pub more: bool,
}

/// One record as a department system delivers it.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct PageEntry {
    /// The record key.
    pub key: String,
    /// Change sequence number.
    #[serde(default)]
    pub seq: u64,
    /// The record's payload text (JSON), kept on chain as delivered.
    pub payload: String,
}

/// Why one request to a department system failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// Connection refused, reset, or the body broke off.
    #[error("request failed: {0}")]
    Http(String),
    /// No answer within the timeout.
    #[error("no answer within {0} ms")]
    Timeout(u64),
    /// A non-200 answer.
    #[error("department system answered {status}: {body}")]
    Status {
        /// HTTP status.
        status: u16,
        /// Start of the body.
        body: String,
    },
    /// The payload does not decrypt.
    #[error("payload does not decode: {0}")]
    Codec(#[from] CodecError),
    /// The page is not the expected JSON.
    #[error("page is not valid JSON: {0}")]
    Format(String),
}

/// Decodes a page as a department system delivered it: the source's codec, then JSON.
pub fn decode_page(codec: &Codec, body: &[u8]) -> Result<Page, FetchError> {
    let plain = codec.decode(body)?;
    serde_json::from_slice(&plain).map_err(|e| FetchError::Format(e.to_string()))
}

/// Turns a delivered entry into a record checked against `source`.
pub fn to_record(source: &DataSource, e: &PageEntry) -> Result<Record, String> {
    let v: Value =
        serde_json::from_str(&e.payload).map_err(|err| format!("payload is not JSON: {err}"))?;
    let obj = v
        .get("data")
        .unwrap_or(&v)
        .as_object()
        .ok_or("payload is not a JSON object")?;
    let mut fields = BTreeMap::new();
    for (k, v) in obj {
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => continue,
            _ => return Err(format!("field {k} is not a single value")),
        };
        fields.insert(k.clone(), text);
    }
    let record = Record {
        fields,
        raw: e.payload.as_bytes().to_vec(),
    };
    let valid = record.validate(source)?;
    if valid.key != e.key {
        return Err(format!(
            "entry key {:?} differs from the record's key {:?}",
            e.key, valid.key
        ));
    }
    Ok(record)
}

/// One run of a connector, as kept in its history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Sequence number within the source.
    pub id: u64,
    /// `schedule`, `manual` or `startup`.
    pub trigger: String,
    /// Start, Unix ms.
    pub started_at: u64,
    /// End, Unix ms.
    pub ended_at: u64,
    /// Pages fetched.
    pub pages: u64,
    /// Records delivered (duplicates included).
    pub fetched: u64,
    /// New or changed records queued for the chain.
    pub queued: u64,
    /// Records already on chain or already queued.
    pub unchanged: u64,
    /// Records refused (not valid for the source); never submitted, kept in the refused list.
    pub rejected: u64,
    /// Refused records replaced by a valid version (a fix at the department system, or a
    /// retry that now passes).
    #[serde(default)]
    pub resolved: u64,
    /// Refused records dropped from the list, oldest first, because it was full.
    #[serde(default)]
    pub dropped: u64,
    /// Records committed while the run lasted.
    pub committed: u64,
    /// Failed requests (each retried).
    pub errors: u64,
    /// Last failure or refusal.
    pub last_error: Option<String>,
    /// Cursor at the end.
    pub cursor: u64,
    /// `ok`, `failed`, `window closed` or `stopped`.
    pub outcome: String,
}

#[derive(Debug, Default)]
struct Outbox {
    /// Records waiting (in flight included).
    pending: u64,
    /// Transactions waiting for commit and their records' (key, hash).
    inflight: HashMap<TxId, Vec<(String, [u8; 32])>>,
    inflight_keys: HashSet<String>,
    /// The refused records' counts.
    refused: RefusedCounts,
}

#[derive(Debug, Default)]
struct Health {
    consecutive_failures: u32,
    failures_total: u64,
    last_error: Option<String>,
    last_error_at: Option<u64>,
    last_success_at: Option<u64>,
    last_run: Option<RunRecord>,
    next_run_at: Option<u64>,
    rejected_total: u64,
}

/// The connector of one data source.
pub struct Connector {
    cfg: ConnectorConfig,
    source: Mutex<DataSource>,
    codec: Codec,
    schedule: Schedule,
    store: Store,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    outbox: Mutex<Outbox>,
    health: Mutex<Health>,
    running: AtomicBool,
    committed: AtomicU64,
    next_run_id: AtomicU64,
    wake: Notify,
}

/// Why a connector cannot be built from its configuration.
pub fn check_config(cfg: &ConnectorConfig) -> anyhow::Result<(Codec, Schedule)> {
    let codec = Codec::parse(&cfg.codec)
        .map_err(|e| anyhow::anyhow!("connector {}: codec: {e}", cfg.source))?;
    let schedule = Schedule::new(&cfg.schedule, &cfg.window, cfg.utc_offset_minutes)
        .map_err(|e| anyhow::anyhow!("connector {}: schedule: {e}", cfg.source))?;
    Ok((codec, schedule))
}

impl Connector {
    /// A connector for `source`, keeping its outbox in `store`. Loads its queue from the outbox.
    pub fn new(
        cfg: ConnectorConfig,
        source: DataSource,
        store: Store,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Arc<Self>> {
        let (codec, schedule) = check_config(&cfg)?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(cfg.timeout_ms))
            .build()?;
        let pending = store
            .raw_prefix_where(CF_OUTBOX, &p_pending(&cfg.source), usize::MAX, |_, _| true)?
            .len() as u64;
        let last = store.raw_prefix(CF_OUTBOX, &p_hist(&cfg.source))?;
        let last_run = last
            .last()
            .and_then(|(_, v)| serde_json::from_slice::<RunRecord>(v).ok());
        let next_run_id = last_run.as_ref().map_or(1, |r| r.id + 1);
        let refused = refused::load_counts(&store, &cfg.source)?;
        Ok(Arc::new(Self {
            cfg,
            source: Mutex::new(source),
            codec,
            schedule,
            store,
            http,
            clock,
            outbox: Mutex::new(Outbox {
                pending,
                refused,
                ..Outbox::default()
            }),
            health: Mutex::new(Health {
                last_run,
                ..Health::default()
            }),
            running: AtomicBool::new(false),
            committed: AtomicU64::new(0),
            next_run_id: AtomicU64::new(next_run_id),
            wake: Notify::new(),
        }))
    }

    /// The source id.
    pub fn id(&self) -> &str {
        &self.cfg.source
    }

    /// The cursor of the change feed.
    pub fn cursor(&self) -> u64 {
        self.store
            .get_raw(CF_OUTBOX, &k_cursor(&self.cfg.source))
            .ok()
            .flatten()
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map_or(0, u64::from_be_bytes)
    }

    /// Records waiting in the outbox (in flight included).
    pub fn pending(&self) -> u64 {
        self.outbox
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pending
    }

    /// Whether the source answers (fewer consecutive failures than `unhealthy_after`).
    pub fn healthy(&self) -> bool {
        self.health().consecutive_failures < self.cfg.unhealthy_after
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_outbox(&self) -> std::sync::MutexGuard<'_, Outbox> {
        self.outbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn failed(&self, e: &str) {
        let mut h = self.health();
        h.consecutive_failures += 1;
        h.failures_total += 1;
        h.last_error = Some(e.to_string());
        h.last_error_at = Some(self.clock.now_ms());
        if h.consecutive_failures == self.cfg.unhealthy_after {
            tracing::warn!(target: "node.sync", source = %self.cfg.source, error = %e, "source unhealthy");
        }
    }

    fn succeeded(&self) {
        let mut h = self.health();
        if h.consecutive_failures >= self.cfg.unhealthy_after {
            tracing::info!(target: "node.sync", source = %self.cfg.source, "source healthy again");
        }
        h.consecutive_failures = 0;
        h.last_success_at = Some(self.clock.now_ms());
    }

    /// Delay before retry `attempt` (0-based): base × 2^attempt, capped, times a jitter in
    /// [0.5, 1).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .cfg
            .retry_base_ms
            .saturating_mul(1u64 << attempt.min(20))
            .min(self.cfg.retry_max_ms);
        let jitter: f64 = rand::rng().random_range(0.5..1.0);
        Duration::from_millis((exp as f64 * jitter) as u64)
    }

    /// One GET of `path` (under the endpoint), decoded into a page.
    pub async fn get_page(&self, path: &str) -> Result<Page, FetchError> {
        let url = format!("{}{path}", self.cfg.endpoint.trim_end_matches('/'));
        let mut req = self.http.get(&url);
        if let Some(t) = &self.cfg.token {
            req = req.bearer_auth(t);
        }
        let timeout = self.cfg.timeout_ms;
        let map = |e: reqwest::Error| {
            if e.is_timeout() {
                FetchError::Timeout(timeout)
            } else {
                FetchError::Http(e.to_string())
            }
        };
        let resp = req.send().await.map_err(map)?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(map)?;
        if status != reqwest::StatusCode::OK {
            return Err(FetchError::Status {
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
            });
        }
        decode_page(&self.codec, &body)
    }

    /// `get_page` with retries (backoff and jitter) until it succeeds, the attempts run out or
    /// `until` passes.
    async fn fetch(
        &self,
        path: &str,
        run: &mut RunRecord,
        until: Option<tokio::time::Instant>,
    ) -> Result<Page, FetchError> {
        let mut attempt = 0;
        loop {
            let r = match until {
                Some(u) => match tokio::time::timeout_at(u, self.get_page(path)).await {
                    Ok(r) => r,
                    Err(_) => Err(FetchError::Timeout(self.cfg.timeout_ms)),
                },
                None => self.get_page(path).await,
            };
            match r {
                Ok(p) => {
                    self.succeeded();
                    return Ok(p);
                }
                Err(e) => {
                    run.errors += 1;
                    run.last_error = Some(e.to_string());
                    self.failed(&e.to_string());
                    tracing::debug!(target: "node.sync", source = %self.cfg.source, attempt, error = %e, "request failed");
                    attempt += 1;
                    let delay = self.backoff(attempt - 1);
                    let late = until.is_some_and(|u| tokio::time::Instant::now() + delay >= u);
                    if attempt >= self.cfg.attempts || late {
                        return Err(e);
                    }
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// One run: fetches the change feed from the cursor to its end (or until `window_end`,
    /// Unix ms), queueing new and changed records; then waits (until `drain_until`) for them
    /// to be committed. None if a run is already in progress.
    pub async fn run(
        &self,
        trigger: &str,
        window_end: Option<u64>,
        drain_until: Option<tokio::time::Instant>,
    ) -> Option<RunRecord> {
        if self.running.swap(true, Ordering::AcqRel) {
            return None;
        }
        let committed0 = self.committed.load(Ordering::Relaxed);
        let mut run = RunRecord {
            id: self.next_run_id.fetch_add(1, Ordering::Relaxed),
            trigger: trigger.to_string(),
            started_at: self.clock.now_ms(),
            ..RunRecord::default()
        };
        let mut cursor = self.cursor();
        tracing::info!(target: "node.sync", source = %self.cfg.source, trigger, cursor, "sync run started");
        loop {
            if window_end.is_some_and(|end| self.clock.now_ms() >= end) {
                run.outcome = "window closed".into();
                break;
            }
            let path = format!(
                "/sources/{}/records?since={cursor}&limit={}",
                self.cfg.source, self.cfg.page
            );
            let page = match self.fetch(&path, &mut run, None).await {
                Ok(p) => p,
                Err(e) => {
                    run.outcome = "failed".into();
                    run.last_error = Some(e.to_string());
                    break;
                }
            };
            run.pages += 1;
            // The cursor never moves back (a repeated page may end before it).
            let next = page.next.max(cursor);
            if let Err(e) = blocking(|| self.ingest(&page.records, Some(next), &mut run)) {
                run.outcome = "failed".into();
                run.last_error = Some(format!("outbox: {e}"));
                break;
            }
            cursor = next;
            if !page.more {
                run.outcome = "ok".into();
                break;
            }
        }
        // What this run queued is committed by the submitter; wait for it, within bounds.
        if let Some(until) = drain_until {
            while self.pending() > 0 && tokio::time::Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        run.committed = self.committed.load(Ordering::Relaxed) - committed0;
        run.cursor = cursor;
        run.ended_at = self.clock.now_ms();
        tracing::info!(target: "node.sync", source = %self.cfg.source, outcome = %run.outcome, fetched = run.fetched, queued = run.queued, rejected = run.rejected, committed = run.committed, errors = run.errors, "sync run ended");
        blocking(|| self.save_run(&run));
        self.running.store(false, Ordering::Release);
        Some(run)
    }

    /// Status as JSON.
    pub fn status(&self) -> Value {
        let h = self.health();
        let (pending, inflight, refused) = {
            let ob = self.lock_outbox();
            (ob.pending, ob.inflight.len(), ob.refused)
        };
        json!({
            "source": self.cfg.source,
            "endpoint": self.cfg.endpoint,
            "codec": self.codec.name(),
            "schedule": self.cfg.schedule,
            "window": self.cfg.window,
            "healthy": h.consecutive_failures < self.cfg.unhealthy_after,
            "consecutive_failures": h.consecutive_failures,
            "failures_total": h.failures_total,
            "rejected_total": h.rejected_total,
            "rejected": refused.kept,
            "rejected_dropped": refused.dropped,
            "last_error": h.last_error,
            "last_error_at": h.last_error_at,
            "last_success_at": h.last_success_at,
            "running": self.running.load(Ordering::Relaxed),
            "cursor": self.cursor(),
            "pending": pending,
            "inflight_txs": inflight,
            "committed_since_start": self.committed.load(Ordering::Relaxed),
            "next_run_at": h.next_run_at,
            "last_run": h.last_run,
        })
    }
}

mod outbox;
mod refused;
mod service;
use outbox::*;
use refused::RefusedBook;
pub use refused::{RefusedCounts, RefusedRecord, MAX_REASON_BYTES};
pub use service::Connectors;

#[cfg(test)]
mod tests;
