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

/// The data source `id` as registered on chain.
pub fn source_on_chain(store: &Store, id: &str) -> anyhow::Result<Option<DataSource>> {
    match store.state_get(&keys::source(id))? {
        None => Ok(None),
        Some(b) => Ok(Some(codec::decode(&b, RECORD_LIMIT)?)),
    }
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

/// A record waiting in the outbox, with its content hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    hash: [u8; 32],
    record: Record,
}

fn content_hash(r: &Record) -> [u8; 32] {
    *blake3::hash(&codec::encode_infallible(r)).as_bytes()
}

fn pending_hash(v: &[u8]) -> Option<[u8; 32]> {
    codec::decode::<Pending>(v, MAX_TX_BYTES)
        .ok()
        .map(|p| p.hash)
}

fn k_cursor(src: &str) -> Vec<u8> {
    format!("sync/c/{src}").into_bytes()
}
fn p_pending(src: &str) -> Vec<u8> {
    format!("sync/p/{src}/").into_bytes()
}
fn k_pending(src: &str, key: &str) -> Vec<u8> {
    [p_pending(src), key.as_bytes().to_vec()].concat()
}
fn p_flight(src: &str) -> Vec<u8> {
    format!("sync/f/{src}/").into_bytes()
}
fn k_flight(src: &str, id: &TxId) -> Vec<u8> {
    [p_flight(src), id.as_bytes().to_vec()].concat()
}
fn p_hist(src: &str) -> Vec<u8> {
    format!("sync/h/{src}/").into_bytes()
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
    /// Records refused (not valid for the source); never submitted.
    pub rejected: u64,
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
        let plain = self.codec.decode(&body)?;
        serde_json::from_slice(&plain).map_err(|e| FetchError::Format(e.to_string()))
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

    /// Writes the entries that are new or changed into the outbox, with `cursor` in the same
    /// durable batch. Returns the keys of the queued records.
    fn ingest(
        &self,
        entries: &[PageEntry],
        cursor: Option<u64>,
        run: &mut RunRecord,
    ) -> Result<Vec<String>, StoreError> {
        if let Ok(Some(s)) = source_on_chain(&self.store, &self.cfg.source) {
            *self.source.lock().unwrap_or_else(|e| e.into_inner()) = s;
        }
        let source = self
            .source
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let src = &self.cfg.source;
        let mut ob = self.lock_outbox();
        let mut puts: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let mut queued = Vec::new();
        let mut new_keys = 0;
        run.fetched += entries.len() as u64;
        for e in entries {
            let record = match to_record(&source, e) {
                Ok(r) => r,
                Err(reason) => {
                    run.rejected += 1;
                    run.last_error = Some(format!("record {:?} refused: {reason}", e.key));
                    self.health().rejected_total += 1;
                    continue;
                }
            };
            let hash = content_hash(&record);
            // Idempotency key (source, record key, content hash): on chain already?
            if let Some(b) = self.store.state_get(&keys::record(src, &e.key))? {
                if codec::decode::<StoredRecord>(&b, RECORD_LIMIT).is_ok_and(|s| s.record == record)
                {
                    run.unchanged += 1;
                    continue;
                }
            }
            // … or waiting in the outbox?
            let pk = k_pending(src, &e.key);
            let waiting = match puts.get(&pk) {
                Some(v) => Some(v.clone()),
                None => self.store.get_raw(CF_OUTBOX, &pk)?,
            };
            match waiting.as_deref().map(pending_hash) {
                Some(Some(h)) if h == hash => {
                    run.unchanged += 1;
                    continue;
                }
                Some(_) => {}
                None => new_keys += 1,
            }
            puts.insert(
                pk,
                codec::encode_infallible(&Pending {
                    hash,
                    record: record.clone(),
                }),
            );
            queued.push(e.key.clone());
        }
        if let Some(c) = cursor {
            puts.insert(k_cursor(src), c.to_be_bytes().to_vec());
        }
        if !puts.is_empty() {
            let puts: Vec<(Vec<u8>, Vec<u8>)> = puts.into_iter().collect();
            self.store.write_raw(CF_OUTBOX, &puts, &[])?;
        }
        ob.pending += new_keys;
        run.queued += queued.len() as u64;
        drop(ob);
        if !queued.is_empty() {
            self.wake.notify_one();
        }
        Ok(queued)
    }

    /// Takes up to `batch` waiting records not yet in flight (only `only` keys if given), signs
    /// them into a transaction and records it in the outbox before anything is sent. `force`
    /// ignores the in-flight limit (a pull-through must not wait behind a backlog).
    fn next_tx(
        &self,
        sign: &dyn Fn(Vec<u8>) -> SignedTx,
        only: Option<&HashSet<String>>,
        force: bool,
    ) -> Result<Option<SignedTx>, StoreError> {
        let src = &self.cfg.source;
        let mut ob = self.lock_outbox();
        if !force && ob.inflight.len() >= self.cfg.inflight {
            return Ok(None);
        }
        let prefix = p_pending(src);
        let plen = prefix.len();
        let mut bytes = 0usize;
        let budget = MAX_TX_BYTES / 2;
        let entries = {
            let keys_in_flight = &ob.inflight_keys;
            self.store
                .raw_prefix_where(CF_OUTBOX, &prefix, self.cfg.batch, |k, v| {
                    let key = String::from_utf8_lossy(&k[plen..]);
                    let wanted = only.is_none_or(|o| o.contains(key.as_ref()));
                    if !wanted || keys_in_flight.contains(key.as_ref()) || bytes > budget {
                        return false;
                    }
                    bytes += v.len();
                    true
                })?
        };
        let mut items = Vec::new();
        let mut records = Vec::new();
        for (k, v) in entries {
            let key = String::from_utf8_lossy(&k[plen..]).into_owned();
            match codec::decode::<Pending>(&v, MAX_TX_BYTES) {
                Ok(p) => {
                    items.push((key, p.hash));
                    records.push(p.record);
                }
                Err(e) => {
                    tracing::error!(target: "node.sync", source = %src, key, error = %e, "unreadable outbox entry dropped");
                    self.store.write_raw(CF_OUTBOX, &[], &[k.to_vec()])?;
                    ob.pending = ob.pending.saturating_sub(1);
                }
            }
        }
        if records.is_empty() {
            return Ok(None);
        }
        let tx = sign(
            TxKind::SubmitRecords {
                source: src.clone(),
                records,
            }
            .encode(),
        );
        let id = tx.id();
        self.store
            .write_raw(CF_OUTBOX, &[(k_flight(src, &id), tx.encode())], &[])?;
        for (k, _) in &items {
            ob.inflight_keys.insert(k.clone());
        }
        ob.inflight.insert(id, items);
        Ok(Some(tx))
    }

    /// Transactions recorded in the outbox before a restart, registered as in flight again.
    fn reload_inflight(&self) -> Result<Vec<SignedTx>, StoreError> {
        let src = &self.cfg.source;
        let mut ob = self.lock_outbox();
        let mut out = Vec::new();
        for (k, v) in self.store.raw_prefix(CF_OUTBOX, &p_flight(src))? {
            let tx = match SignedTx::decode(&v) {
                Ok(tx) => tx,
                Err(e) => {
                    tracing::error!(target: "node.sync", source = %src, error = %e, "unreadable in-flight transaction dropped; its records stay queued");
                    self.store.write_raw(CF_OUTBOX, &[], &[k.to_vec()])?;
                    continue;
                }
            };
            let items: Vec<(String, [u8; 32])> = match TxKind::decode(&tx.body.payload) {
                Ok(TxKind::SubmitRecords { records, .. }) => {
                    let source = self
                        .source
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clone();
                    records
                        .iter()
                        .map(|r| {
                            let key = r
                                .fields
                                .get(&source.record_key_field)
                                .cloned()
                                .unwrap_or_default();
                            (key, content_hash(r))
                        })
                        .collect()
                }
                _ => Vec::new(),
            };
            for (key, _) in &items {
                ob.inflight_keys.insert(key.clone());
            }
            ob.inflight.insert(tx.id(), items);
            out.push(tx);
        }
        Ok(out)
    }

    /// A transaction is settled: committed (its records leave the outbox, unless a newer
    /// version arrived meanwhile) or refused (its records stay queued, those no longer valid
    /// for the source are dropped as rejected).
    fn settled(&self, id: &TxId, committed: bool) -> Result<(), StoreError> {
        let src = &self.cfg.source;
        let mut ob = self.lock_outbox();
        let items = ob.inflight.remove(id).unwrap_or_default();
        for (k, _) in &items {
            ob.inflight_keys.remove(k);
        }
        let mut deletes = vec![k_flight(src, id)];
        let source = self
            .source
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for (key, hash) in &items {
            let pk = k_pending(src, key);
            let Some(v) = self.store.get_raw(CF_OUTBOX, &pk)? else {
                continue;
            };
            let drop_it = if committed {
                pending_hash(&v) == Some(*hash)
            } else {
                codec::decode::<Pending>(&v, MAX_TX_BYTES)
                    .map(|p| p.record.validate(&source).is_err())
                    .unwrap_or(true)
            };
            if drop_it {
                deletes.push(pk);
                ob.pending = ob.pending.saturating_sub(1);
                if !committed {
                    self.health().rejected_total += 1;
                }
            }
        }
        self.store.write_raw(CF_OUTBOX, &[], &deletes)?;
        if committed {
            self.committed
                .fetch_add(items.len() as u64, Ordering::Relaxed);
        }
        drop(ob);
        self.wake.notify_one();
        Ok(())
    }

    fn save_run(&self, run: &RunRecord) {
        let src = &self.cfg.source;
        let key = [p_hist(src), run.id.to_be_bytes().to_vec()].concat();
        let mut deletes = Vec::new();
        if run.id > HISTORY_KEEP {
            deletes.push([p_hist(src), (run.id - HISTORY_KEEP).to_be_bytes().to_vec()].concat());
        }
        let v = serde_json::to_vec(run).unwrap_or_default();
        if let Err(e) = self.store.write_raw(CF_OUTBOX, &[(key, v)], &deletes) {
            tracing::error!(target: "node.sync", source = %src, error = %e, "saving the run history");
        }
        self.health().last_run = Some(run.clone());
    }

    /// The latest runs, newest first.
    pub fn history(&self, limit: usize) -> Vec<RunRecord> {
        let mut v: Vec<RunRecord> = self
            .store
            .raw_prefix(CF_OUTBOX, &p_hist(&self.cfg.source))
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
            .collect();
        v.reverse();
        v.truncate(limit);
        v
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
            if let Err(e) = self.ingest(&page.records, Some(next), &mut run) {
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
        self.save_run(&run);
        self.running.store(false, Ordering::Release);
        Some(run)
    }

    /// Status as JSON.
    pub fn status(&self) -> Value {
        let h = self.health();
        let (pending, inflight) = {
            let ob = self.lock_outbox();
            (ob.pending, ob.inflight.len())
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

/// How a submitted transaction ended.
enum Settled {
    Committed(Height),
    Refused(String),
}

/// Submits `tx` until it is committed or refused; a copy committed before a restart counts
/// (same id). Admission refusals that are temporary (mempool full, already waiting) are
/// retried with backoff.
async fn settle(conn: &Connector, ctx: &ApiContext, tx: SignedTx) -> Settled {
    let id = tx.id();
    let mut attempt = 0u32;
    loop {
        if let Ok(Some(loc)) = ctx.store.tx_location(&id) {
            return Settled::Committed(loc.height);
        }
        match govchain_api::routes::submit_own(ctx, tx.clone(), true).await {
            Ok(Some((h, _))) => return Settled::Committed(h),
            Ok(None) => attempt = 0,
            Err(e) => {
                if let Ok(Some(loc)) = ctx.store.tx_location(&id) {
                    return Settled::Committed(loc.height);
                }
                let temporary = e.status.as_u16() == 503 || e.status.as_u16() == 409;
                if !temporary {
                    return Settled::Refused(format!("{}: {}", e.code, e.message));
                }
                tokio::time::sleep(conn.backoff(attempt)).await;
                attempt = attempt.saturating_add(1);
            }
        }
    }
}

/// This node's connectors, their submitters and schedulers.
pub struct Connectors {
    ctx: ApiContext,
    conns: BTreeMap<String, Arc<Connector>>,
}

impl Connectors {
    /// Builds a connector per configuration entry (each source must exist and belong to this
    /// node's department), resumes transactions left in flight, and starts the submitters and
    /// schedulers until `stop`.
    pub fn start(
        ctx: ApiContext,
        cfgs: &[ConnectorConfig],
        clock: Arc<dyn Clock>,
        stop: watch::Receiver<bool>,
    ) -> anyhow::Result<Arc<Self>> {
        if ctx.security.signer.is_none() {
            anyhow::bail!("connectors need the node's signing key");
        }
        let mut conns = BTreeMap::new();
        for cfg in cfgs {
            let source = source_on_chain(&ctx.store, &cfg.source)?.ok_or_else(|| {
                anyhow::anyhow!("connector {}: no such data source on chain", cfg.source)
            })?;
            if source.department != ctx.department {
                anyhow::bail!(
                    "connector {}: the source belongs to department {}, this node to {}; \
                     only the owning department's node submits its records",
                    cfg.source,
                    source.department,
                    ctx.department
                );
            }
            let conn = Connector::new(cfg.clone(), source, ctx.store.clone(), clock.clone())?;
            conns.insert(cfg.source.clone(), conn);
        }
        let this = Arc::new(Self { ctx, conns });
        for conn in this.conns.values() {
            let resumed = conn.reload_inflight()?;
            if !resumed.is_empty() {
                tracing::info!(target: "node.sync", source = %conn.id(), txs = resumed.len(), "resuming transactions in flight before the restart");
            }
            for tx in resumed {
                this.launch(conn, tx);
            }
            tokio::spawn(Self::submitter(this.clone(), conn.clone(), stop.clone()));
            tokio::spawn(Self::scheduler(conn.clone(), clock.clone(), stop.clone()));
        }
        Ok(this)
    }

    fn sign(&self) -> impl Fn(Vec<u8>) -> SignedTx + '_ {
        move |payload| {
            self.ctx
                .security
                .signer
                .as_ref()
                .expect("checked at start")
                .sign(payload, crate::now_ms())
        }
    }

    /// Submits `tx` in the background and settles it.
    fn launch(&self, conn: &Arc<Connector>, tx: SignedTx) {
        let (conn, ctx) = (conn.clone(), self.ctx.clone());
        tokio::spawn(async move {
            let id = tx.id();
            let outcome = settle(&conn, &ctx, tx).await;
            let committed = match &outcome {
                Settled::Committed(h) => {
                    tracing::debug!(target: "node.sync", source = %conn.id(), tx = %id, height = %h, "records committed");
                    true
                }
                Settled::Refused(e) => {
                    tracing::warn!(target: "node.sync", source = %conn.id(), tx = %id, error = %e, "records refused by the chain");
                    conn.failed(&format!("transaction refused: {e}"));
                    false
                }
            };
            if let Err(e) = conn.settled(&id, committed) {
                tracing::error!(target: "node.sync", source = %conn.id(), error = %e, "outbox");
            }
            if !committed {
                // Do not hammer the chain with a batch it refuses.
                let failures = conn.health().consecutive_failures;
                tokio::time::sleep(conn.backoff(failures)).await;
                conn.wake.notify_one();
            }
        });
    }

    /// Moves queued records into transactions as long as the in-flight limit allows.
    async fn submitter(this: Arc<Self>, conn: Arc<Connector>, mut stop: watch::Receiver<bool>) {
        loop {
            loop {
                match conn.next_tx(&this.sign(), None, false) {
                    Ok(Some(tx)) => this.launch(&conn, tx),
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!(target: "node.sync", source = %conn.id(), error = %e, "outbox");
                        break;
                    }
                }
            }
            tokio::select! {
                _ = conn.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// Runs the source on its schedule, inside its window.
    async fn scheduler(
        conn: Arc<Connector>,
        clock: Arc<dyn Clock>,
        mut stop: watch::Receiver<bool>,
    ) {
        let stopped = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        let c = conn.clone();
        crate::schedule::run_scheduled(&conn.schedule, &*clock, stopped, move |_at, end| {
            let c = c.clone();
            async move {
                c.health().next_run_at = None;
                c.run("schedule", end, None).await;
                c.health().next_run_at = c.schedule.next_run(c.clock.now_ms());
            }
        })
        .await;
    }

    /// The connector of `source`.
    pub fn get(&self, source: &str) -> Option<&Arc<Connector>> {
        self.conns.get(source)
    }

    /// Refreshes one person from one connector: fetch, queue, submit at once, wait for the
    /// commit.
    async fn refresh_one(
        &self,
        conn: &Arc<Connector>,
        person: &str,
        until: tokio::time::Instant,
    ) -> Result<Option<Height>, String> {
        let mut run = RunRecord::default();
        let path = format!("/sources/{}/persons/{person}", conn.id());
        let page = conn
            .fetch(&path, &mut run, Some(until))
            .await
            .map_err(|e| e.to_string())?;
        conn.ingest(&page.records, None, &mut run)
            .map_err(|e| format!("outbox: {e}"))?;
        let keys: HashSet<String> = page.records.iter().map(|e| e.key.clone()).collect();
        let mut waited = run.queued > 0;
        loop {
            // Launch what waits and is not in flight yet, ahead of the batch queue.
            match conn.next_tx(&self.sign(), Some(&keys), true) {
                Ok(Some(tx)) => {
                    self.launch(conn, tx);
                    continue;
                }
                Ok(None) => {}
                Err(e) => return Err(format!("outbox: {e}")),
            }
            let waiting = keys.iter().any(|k| {
                conn.store
                    .get_raw(CF_OUTBOX, &k_pending(conn.id(), k))
                    .ok()
                    .flatten()
                    .is_some()
            });
            if !waiting {
                break;
            }
            waited = true;
            if tokio::time::Instant::now() >= until {
                return Err("fetched, not yet committed within the deadline".into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The records are committed at or below the tip.
        Ok(waited.then(|| self.ctx.tip.borrow().height))
    }
}

impl SyncService for Connectors {
    fn status(&self) -> Value {
        let sources: Vec<Value> = self.conns.values().map(|c| c.status()).collect();
        let unhealthy: Vec<&str> = self
            .conns
            .values()
            .filter(|c| !c.healthy())
            .map(|c| c.id())
            .collect();
        json!({"department": self.ctx.department, "unhealthy": unhealthy, "sources": sources})
    }

    fn history(&self, source: &str, limit: usize) -> Option<Value> {
        let c = self.conns.get(source)?;
        Some(json!({"source": source, "runs": c.history(limit)}))
    }

    fn trigger(&self, source: &str) -> Result<(), String> {
        let c = self
            .conns
            .get(source)
            .ok_or_else(|| format!("no connector for source {source}"))?
            .clone();
        if c.running.load(Ordering::Acquire) {
            return Err(format!("a run of {source} is in progress"));
        }
        tokio::spawn(async move {
            let until = tokio::time::Instant::now() + Duration::from_secs(3600);
            c.run("manual", None, Some(until)).await;
        });
        Ok(())
    }

    fn department_of(&self, source: &str) -> Option<String> {
        self.conns.get(source).map(|_| self.ctx.department.clone())
    }

    fn refresh_person<'a>(
        &'a self,
        person: &'a str,
        deadline: Duration,
    ) -> BoxFuture<'a, Freshness> {
        Box::pin(async move {
            let until = tokio::time::Instant::now() + deadline;
            let results = futures::future::join_all(self.conns.values().map(|c| async move {
                (c.id().to_string(), self.refresh_one(c, person, until).await)
            }))
            .await;
            let mut f = Freshness::default();
            for (source, r) in results {
                match r {
                    Ok(h) => {
                        f.height = f.height.max(h.map(|h| h.0));
                        f.refreshed.push(source);
                    }
                    Err(reason) => f.stale.push(StaleSource { source, reason }),
                }
            }
            f
        })
    }

    fn unhealthy(&self) -> Vec<String> {
        self.conns
            .values()
            .filter(|c| !c.healthy())
            .map(|c| c.id().to_string())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dept_sim::{DeptSim, FaultKind, Faults, SimConfig, SimSource};
    use crate::schedule::ManualClock;

    /// 2026-12-01 00:00 UTC = 08:00 in China.
    const DAY0: u64 = 1_796_083_200_000;
    const HOUR: u64 = 3_600_000;

    fn source(id: &str) -> DataSource {
        govchain_genesis::catalog::default_catalog()
            .unwrap()
            .sources
            .into_iter()
            .find(|s| s.id == id)
            .unwrap()
    }

    async fn sim(records: u64, codec: Codec) -> (Arc<DeptSim>, String) {
        let sim = DeptSim::new(SimConfig {
            sources: vec![SimSource {
                source: source("gaj.jzz"),
                codec,
            }],
            records,
            seed: 3,
            token: "t".into(),
            faults: Faults {
                rate: 0.0,
                kinds: FaultKind::ALL.to_vec(),
                timeout_ms: 1000,
                slow_ms: 10,
                seed: 1,
            },
        });
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        tokio::spawn(sim.clone().serve(l));
        (sim, url)
    }

    fn config(url: &str, codec: &str) -> ConnectorConfig {
        let mut c = ConnectorConfig::new("gaj.jzz", url);
        c.token = Some("t".into());
        c.codec = codec.into();
        c.schedule = "0 * * * *".into();
        c.window = "22:00-06:00".into();
        c.attempts = 3;
        c.retry_base_ms = 1;
        c.retry_max_ms = 5;
        c.unhealthy_after = 3;
        c
    }

    /// R-SYN-1 with an injected clock: over three virtual days, hourly ticks start runs only
    /// inside the 22:00-06:00 window (China time) — 8 a day — and every run's start lies in the
    /// window; the first run fetches everything, later ones only what changed.
    #[tokio::test]
    async fn scheduled_runs_happen_only_inside_the_window() {
        let (sim, url) = sim(300, Codec::Plain).await;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let clock = Arc::new(ManualClock::new(DAY0));
        let conn = Connector::new(
            config(&url, "plain"),
            source("gaj.jzz"),
            store,
            clock.clone(),
        )
        .unwrap();
        let end = DAY0 + 72 * HOUR;
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let c = conn.clone();
        let sim2 = sim.clone();
        let stop_at = clock.clone();
        let job = move |_at: u64, window_end: Option<u64>| {
            let (c, sim, clock, stop_tx) =
                (c.clone(), sim2.clone(), stop_at.clone(), stop_tx.clone());
            async move {
                // A change in the department system after the first night's 8 runs.
                if c.history(1000).len() == 8 {
                    sim.touch("gaj.jzz", &first_key(&c)).unwrap();
                }
                c.run("schedule", window_end, None).await.unwrap();
                if clock.now() >= end {
                    stop_tx.send_replace(true);
                }
            }
        };
        let stopped = async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        };
        crate::schedule::run_scheduled(&conn.schedule, &*clock, stopped, job).await;
        let runs = conn.history(1000);
        // Brute force over the hours: a run at every hour whose local (UTC+8) hour is in
        // 22..24 or 0..6, up to and including the first such hour at or after `end`.
        let mut expected = Vec::new();
        for h in 1.. {
            let t = DAY0 + h * HOUR;
            if (6..22).contains(&((t / HOUR + 8) % 24)) {
                continue;
            }
            expected.push(t);
            if t >= end {
                break;
            }
        }
        assert_eq!(expected.len(), 25);
        let mut started: Vec<u64> = runs.iter().map(|r| r.started_at).collect();
        started.reverse();
        assert_eq!(
            started, expected,
            "runs start exactly on the in-window ticks"
        );
        for r in &runs {
            assert_eq!(r.outcome, "ok", "{r:?}");
        }
        let mut oldest_first = runs.clone();
        oldest_first.reverse();
        assert_eq!(oldest_first[0].fetched, 300);
        assert_eq!(oldest_first[0].queued, 300);
        assert!(oldest_first[1..8]
            .iter()
            .all(|r| r.fetched == 0 && r.queued == 0));
        assert_eq!(
            oldest_first[8].fetched, 1,
            "the changed record: {:?}",
            oldest_first[8]
        );
        assert!(oldest_first[9..].iter().all(|r| r.fetched == 0));
        // Nothing leaves the outbox without a chain; the changed record replaced its older
        // queued version.
        assert_eq!(conn.pending(), 300);
        // Ticks outside the window were slept through, never woken for.
        assert!(clock.wakeups().iter().all(|t| conn.schedule.in_window(*t)));
    }

    fn first_key(c: &Connector) -> String {
        let p = p_pending(c.id());
        let (k, _) = c
            .store
            .raw_prefix_where(CF_OUTBOX, &p, 1, |_, _| true)
            .unwrap()
            .remove(0);
        String::from_utf8_lossy(&k[p.len()..]).into_owned()
    }

    /// R-SEC-6: a DES source read with the wrong key fails clearly — no record is queued (no
    /// garbage), the run fails after its attempts and the source is reported unhealthy; with
    /// the right key every record arrives, and the source is healthy again.
    #[tokio::test]
    async fn a_wrong_des_key_queues_nothing_and_marks_the_source_unhealthy() {
        let right = "des:133457799BBCDFF1:0102030405060708";
        let (_sim, url) = sim(50, Codec::parse(right).unwrap()).await;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(DAY0));
        let wrong = config(&url, "des:0E329232EA6D0D73:0102030405060708");
        let conn = Connector::new(wrong, source("gaj.jzz"), store.clone(), clock.clone()).unwrap();
        let r = conn.run("manual", None, None).await.unwrap();
        assert_eq!(r.outcome, "failed");
        assert_eq!(r.errors, 3);
        assert!(
            r.last_error.as_deref().unwrap().contains("padding"),
            "{r:?}"
        );
        assert_eq!((r.queued, conn.pending(), conn.cursor()), (0, 0, 0));
        assert!(!conn.healthy());
        assert_eq!(conn.status()["healthy"], false);
        drop(conn);
        let conn = Connector::new(config(&url, right), source("gaj.jzz"), store, clock).unwrap();
        let r = conn.run("manual", None, None).await.unwrap();
        assert_eq!(
            (r.outcome.as_str(), r.queued, conn.cursor()),
            ("ok", 50, 50)
        );
        assert!(conn.healthy());
        // The history survives a restart of the connector.
        assert_eq!(conn.history(10).len(), 2);
    }

    /// Entries that are not valid records are refused one by one, never queued.
    #[test]
    fn invalid_entries_are_refused_with_a_reason() {
        let s = source("gaj.jzz");
        let e = |key: &str, payload: &str| PageEntry {
            key: key.into(),
            seq: 1,
            payload: payload.into(),
        };
        assert!(to_record(&s, &e("k", "not json"))
            .unwrap_err()
            .contains("not JSON"));
        assert!(to_record(&s, &e("k", "[1,2]"))
            .unwrap_err()
            .contains("object"));
        assert!(to_record(&s, &e("k", r#"{"data":{"a":{"b":1}}}"#))
            .unwrap_err()
            .contains("single value"));
        assert!(to_record(&s, &e("k", r#"{"data":{}}"#)).is_err());
        let mut g = crate::synth::Generator::new(1);
        let r = g.record_for(&s, 1);
        let payload = String::from_utf8(r.raw.clone()).unwrap();
        let key = r.fields[&s.record_key_field].clone();
        assert_eq!(to_record(&s, &e(&key, &payload)).unwrap(), r);
        assert!(to_record(&s, &e("other", &payload))
            .unwrap_err()
            .contains("differs"));
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut cfg = config("http://127.0.0.1:9", "plain");
        cfg.retry_base_ms = 100;
        cfg.retry_max_ms = 1000;
        let c =
            Connector::new(cfg, source("gaj.jzz"), store, Arc::new(ManualClock::new(0))).unwrap();
        for (attempt, full) in [
            (0, 100),
            (1, 200),
            (2, 400),
            (3, 800),
            (4, 1000),
            (30, 1000),
        ] {
            let d = c.backoff(attempt).as_millis() as u64;
            assert!((full / 2..full).contains(&d), "attempt {attempt}: {d} ms");
        }
    }
}
