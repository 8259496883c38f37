//! Department-system simulator (issue 7; R-SYN-3, R-SEC-6): an HTTP server that plays the legacy
//! systems of city departments for tests, the demo and benchmarks. The node's connector pulls
//! from it exactly as it would from a real department system.
//!
//! Owns, per simulated source: the current records (key, payload text, person, change sequence
//! number `seq`), a change feed ordered by `seq`, and a person index; plus a seeded fault
//! injector and request counters. Records are synthetic (`crate::synth`): resident `i` of the
//! population `seed` gives record `i`, `Generator::new(seed).record_for(source, i)`.
//!
//! Invariants: within a source, `seq` is unique and strictly increases with each change (initial
//! records get `1..=records` in resident order); the feed, the key map and the person index
//! always describe the same records; a touched record keeps its key and person, gets new content
//! and still validates against its source.
//!
//! Never: faults on the control endpoints (digest, touch, stats); record keys, person ids or
//! payloads in logs or error messages (they are personal data on a real system); a lock held
//! across an `.await`.
//!
//! Wire format of the two data endpoints (`/sources/{id}/records`, `/sources/{id}/persons/{pid}`):
//! a JSON [`Page`]; for DES and 3DES sources the whole page JSON encrypted with the source's
//! [`Codec`] and sent as `application/octet-stream`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::ops::Bound;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::Context;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use govchain_chaincode::catalog::{DataSource, FieldType};
use govchain_ledger::hash::{hash, Domain};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::legacy_codec::{Codec, CodecError};
use crate::synth::{self, Generator};

/// Records per page when the client gives no `limit`.
pub const DEFAULT_LIMIT: usize = 500;
/// Most records per page; a larger `limit` is refused with 400.
pub const MAX_LIMIT: usize = 5000;
/// Most records per source (all are kept in memory).
pub const MAX_RECORDS_PER_SOURCE: u64 = 1_000_000;
/// Most simulated sources.
pub const MAX_SOURCES: usize = 128;
/// Longest bearer token.
pub const MAX_TOKEN_BYTES: usize = 512;
/// Longest injected delay (`timeout_ms`, `slow_ms`).
pub const MAX_FAULT_DELAY_MS: u64 = 600_000;
/// How long a [`FaultKind::Timeout`] hangs by default.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// How long a [`FaultKind::Slow`] answer waits by default.
pub const DEFAULT_SLOW_MS: u64 = 300;
/// Sources simulated when none are named: the first ones about persons of this department.
pub const DEFAULT_DEPARTMENT: &str = "gaj";
/// How many sources are simulated when none are named.
pub const DEFAULT_SOURCE_COUNT: usize = 3;
/// Tries at finding new content for a touched record (one is almost always enough).
const MAX_TOUCH_ATTEMPTS: u64 = 16;
/// How long in-flight requests may finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Spreads touch attempts over unrelated RNG seeds.
const SEED_SPREAD: u64 = 0x9E37_79B9_7F4A_7C15;

/// Why a simulator configuration or its command line is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimError {
    /// A fault rate outside 0..=1 (or NaN).
    #[error("fault rate {0} is not a probability in 0..=1")]
    BadRate(f64),
    /// Faults are enabled but no kind is.
    #[error("the fault rate is above 0 but no fault kind is enabled")]
    NoFaultKinds,
    /// A fault kind name that is none of the known ones.
    #[error("fault kind {0:?} is none of 500, timeout, slow, truncated, duplicate, all")]
    UnknownFaultKind(String),
    /// An injected delay above [`MAX_FAULT_DELAY_MS`].
    #[error("{what} of {ms} ms exceeds {MAX_FAULT_DELAY_MS} ms")]
    DelayTooLong {
        /// `timeout_ms` or `slow_ms`.
        what: &'static str,
        /// The delay given.
        ms: u64,
    },
    /// More records per source than [`MAX_RECORDS_PER_SOURCE`].
    #[error("{0} records per source exceed {MAX_RECORDS_PER_SOURCE}")]
    TooManyRecords(u64),
    /// No sources, or more than [`MAX_SOURCES`].
    #[error("{0} sources; a simulator serves 1-{MAX_SOURCES}")]
    SourceCount(usize),
    /// The same source twice.
    #[error("source {0} is simulated twice")]
    DuplicateSource(String),
    /// A source definition the simulator cannot serve.
    #[error("source {id}: {reason}")]
    BadSource {
        /// Source id.
        id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A source id that is not in the catalog.
    #[error("source {0} is not in the catalog")]
    UnknownSource(String),
    /// A codec for a source that is not simulated.
    #[error("a codec is given for source {0}, which is not simulated")]
    CodecForUnsimulatedSource(String),
    /// Two codecs for one source.
    #[error("two codecs are given for source {0}")]
    DuplicateCodec(String),
    /// A codec description that does not parse.
    #[error("codec of source {id}: {err}")]
    Codec {
        /// Source id.
        id: String,
        /// Why it does not parse.
        #[source]
        err: CodecError,
    },
    /// A token that no `Authorization` header could carry.
    #[error("the bearer token must be 1-{MAX_TOKEN_BYTES} visible ASCII characters, or empty for no auth")]
    BadToken,
}

/// A fault the simulator injects into a data request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// Answers 500 with a JSON error (`"500"`).
    Error500,
    /// Hangs [`Faults::timeout_ms`], then answers normally (`"timeout"`).
    Timeout,
    /// Waits [`Faults::slow_ms`], then answers normally (`"slow"`).
    Slow,
    /// Answers 200 with only the first half of the body bytes (`"truncated"`).
    Truncated,
    /// Serves the feed page as if `since` were `since - limit / 2`: records the client already
    /// has (`"duplicate"`). A person page is served normally.
    DuplicatePage,
}

impl FaultKind {
    /// Every kind, in declaration order.
    pub const ALL: [FaultKind; 5] = [
        FaultKind::Error500,
        FaultKind::Timeout,
        FaultKind::Slow,
        FaultKind::Truncated,
        FaultKind::DuplicatePage,
    ];

    /// The kind's name on the command line and in [`SimStats`].
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Error500 => "500",
            FaultKind::Timeout => "timeout",
            FaultKind::Slow => "slow",
            FaultKind::Truncated => "truncated",
            FaultKind::DuplicatePage => "duplicate",
        }
    }

    /// Kinds from a comma list of names; `all` stands for every kind. Blank items are skipped,
    /// repeats are kept once, so `""` is no kind.
    pub fn parse_list(spec: &str) -> Result<Vec<FaultKind>, SimError> {
        let mut kinds = Vec::new();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let named = if item == "all" {
                FaultKind::ALL.to_vec()
            } else {
                vec![item.parse()?]
            };
            for kind in named {
                if !kinds.contains(&kind) {
                    kinds.push(kind);
                }
            }
        }
        Ok(kinds)
    }
}

impl FromStr for FaultKind {
    type Err = SimError;

    /// One kind by name (`500`, `timeout`, `slow`, `truncated`, `duplicate`); see
    /// [`FaultKind::parse_list`] for `all` and lists.
    fn from_str(s: &str) -> Result<Self, SimError> {
        FaultKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| SimError::UnknownFaultKind(s.to_string()))
    }
}

impl std::fmt::Display for FaultKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Fault injection on the data endpoints.
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    /// Probability in 0..=1 that a data request gets a fault.
    pub rate: f64,
    /// The kinds a faulted request draws from, uniformly.
    pub kinds: Vec<FaultKind>,
    /// How long a [`FaultKind::Timeout`] hangs.
    pub timeout_ms: u64,
    /// How long a [`FaultKind::Slow`] answer waits.
    pub slow_ms: u64,
    /// Seed of the fault RNG: a seed replays the same fault sequence for the same requests.
    pub seed: u64,
}

impl Default for Faults {
    /// No faults (rate 0), every kind enabled, default delays, seed 0.
    fn default() -> Self {
        Faults {
            rate: 0.0,
            kinds: FaultKind::ALL.to_vec(),
            timeout_ms: DEFAULT_TIMEOUT_MS,
            slow_ms: DEFAULT_SLOW_MS,
            seed: 0,
        }
    }
}

impl Faults {
    /// Checks the rate, the kinds and the delays.
    pub fn check(&self) -> Result<(), SimError> {
        if !(0.0..=1.0).contains(&self.rate) {
            return Err(SimError::BadRate(self.rate));
        }
        if self.rate > 0.0 && self.kinds.is_empty() {
            return Err(SimError::NoFaultKinds);
        }
        for (what, ms) in [("timeout_ms", self.timeout_ms), ("slow_ms", self.slow_ms)] {
            if ms > MAX_FAULT_DELAY_MS {
                return Err(SimError::DelayTooLong { what, ms });
            }
        }
        Ok(())
    }
}

/// A simulated source and how its system encrypts pages.
#[derive(Debug, Clone)]
pub struct SimSource {
    /// The catalog definition.
    pub source: DataSource,
    /// Page encryption.
    pub codec: Codec,
}

/// What the simulator serves.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Simulated sources.
    pub sources: Vec<SimSource>,
    /// Records per source: one per resident `0..records`.
    pub records: u64,
    /// Population seed.
    pub seed: u64,
    /// Required bearer token; empty means no authentication.
    pub token: String,
    /// Fault injection.
    pub faults: Faults,
}

impl SimConfig {
    /// Checks every limit and every source once, before anything is generated.
    pub fn check(&self) -> Result<(), SimError> {
        if self.sources.is_empty() || self.sources.len() > MAX_SOURCES {
            return Err(SimError::SourceCount(self.sources.len()));
        }
        let mut ids = BTreeSet::new();
        for s in &self.sources {
            if !ids.insert(s.source.id.as_str()) {
                return Err(SimError::DuplicateSource(s.source.id.clone()));
            }
            check_source(&s.source)?;
        }
        if self.records > MAX_RECORDS_PER_SOURCE {
            return Err(SimError::TooManyRecords(self.records));
        }
        let token_ok =
            self.token.len() <= MAX_TOKEN_BYTES && self.token.bytes().all(|b| b.is_ascii_graphic());
        if !token_ok {
            return Err(SimError::BadToken);
        }
        self.faults.check()
    }
}

/// A source is servable when its definition is valid and its record key is text (a generated
/// number, distinct per resident) or the person's national ID (unique per resident).
fn check_source(source: &DataSource) -> Result<(), SimError> {
    let bad = |reason: String| SimError::BadSource {
        id: source.id.clone(),
        reason,
    };
    source.validate().map_err(|e| bad(e.to_string()))?;
    let key_ty = source.field(&source.record_key_field).map(|f| &f.ty);
    let is_person_key = source.person_field.as_deref() == Some(source.record_key_field.as_str());
    match key_ty {
        Some(FieldType::Text) => Ok(()),
        Some(FieldType::PersonId) if is_person_key => Ok(()),
        _ => Err(bad(
            "the record key must be a text field or the person field".to_string(),
        )),
    }
}

/// A page of records, as the data endpoints send it (JSON; encrypted for DES/3DES sources).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// Records in ascending `seq`.
    pub records: Vec<PageRecord>,
    /// The feed cursor for the next request: the last record's `seq`, or the request's `since`
    /// when the page is empty (0 for a person page without records).
    pub next: u64,
    /// Whether the feed has records after this page (always false for a person page).
    pub more: bool,
}

/// One record in a [`Page`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRecord {
    /// Record key.
    pub key: String,
    /// Change sequence number.
    pub seq: u64,
    /// The person's national ID, for records about a person.
    pub person: Option<String>,
    /// The record as the department system delivers it: `{"data":{..},"source":ID}` JSON text.
    pub payload: String,
}

/// The answer of `GET /sources/{id}/digest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestReply {
    /// Number of current records.
    pub count: u64,
    /// [`content_digest`] of the current records, hex.
    pub digest: String,
}

/// The answer of `POST /sources/{id}/records/{key}/touch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TouchReply {
    /// Record key (unchanged).
    pub key: String,
    /// The record's new change sequence number, the highest of its source.
    pub seq: u64,
    /// The new payload text.
    pub payload: String,
}

/// Faults injected, per kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultCounts {
    /// [`FaultKind::Error500`].
    #[serde(rename = "500")]
    pub error_500: u64,
    /// [`FaultKind::Timeout`].
    pub timeout: u64,
    /// [`FaultKind::Slow`].
    pub slow: u64,
    /// [`FaultKind::Truncated`].
    pub truncated: u64,
    /// [`FaultKind::DuplicatePage`].
    pub duplicate: u64,
}

impl FaultCounts {
    /// Faults of `kind` injected so far.
    pub fn get(&self, kind: FaultKind) -> u64 {
        match kind {
            FaultKind::Error500 => self.error_500,
            FaultKind::Timeout => self.timeout,
            FaultKind::Slow => self.slow,
            FaultKind::Truncated => self.truncated,
            FaultKind::DuplicatePage => self.duplicate,
        }
    }

    fn slot(&mut self, kind: FaultKind) -> &mut u64 {
        match kind {
            FaultKind::Error500 => &mut self.error_500,
            FaultKind::Timeout => &mut self.timeout,
            FaultKind::Slow => &mut self.slow,
            FaultKind::Truncated => &mut self.truncated,
            FaultKind::DuplicatePage => &mut self.duplicate,
        }
    }
}

/// Request counters (`GET /stats`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimStats {
    /// Data requests (records and persons) that passed authentication and parameter checks:
    /// the requests faults are drawn for, faulted or not.
    pub requests: u64,
    /// Faults injected, per kind.
    pub faults: FaultCounts,
}

/// The content digest both the simulator and the connector compute over a source's records:
/// the [`Domain::SyncDigest`] hash over, for each record in ascending key order, the key bytes,
/// a 0x00 byte and the 32-byte [`Domain::RecordContent`] hash of the payload bytes; hex. Count = number of records. The input may come
/// in any order (ties on a repeated key are broken by the payload hash).
pub fn content_digest<'a>(records: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> (u64, String) {
    let mut hashed: Vec<(&str, [u8; 32])> = records
        .into_iter()
        .map(|(key, payload)| (key, payload_hash(payload)))
        .collect();
    hashed.sort_unstable();
    digest_sorted(hashed.iter().map(|(key, hash)| (*key, hash)))
}

/// The [`Domain::RecordContent`] hash of a payload.
pub fn payload_hash(payload: &[u8]) -> [u8; 32] {
    hash(Domain::RecordContent, payload).0
}

/// [`content_digest`] over records already in ascending key order, with their payload hashes.
fn digest_sorted<'a>(records: impl Iterator<Item = (&'a str, &'a [u8; 32])>) -> (u64, String) {
    let mut hasher = Domain::SyncDigest.hasher();
    let mut count = 0u64;
    for (key, payload_hash) in records {
        hasher.update(key.as_bytes());
        hasher.update(&[0]);
        hasher.update(payload_hash);
        count += 1;
    }
    (count, hasher.finalize().to_hex().to_string())
}

/// A record's raw payload as the department system delivers it (the shape `crate::synth` uses).
fn raw_payload(source_id: &str, fields: &BTreeMap<String, String>) -> String {
    serde_json::json!({ "source": source_id, "data": fields }).to_string()
}

/// One current record.
struct Entry {
    /// The resident it was generated for.
    index: u64,
    seq: u64,
    person: Option<String>,
    payload: String,
    payload_hash: [u8; 32],
}

/// The records of one source: key map, change feed and person index, always in agreement.
#[derive(Default)]
struct Records {
    by_key: BTreeMap<String, Entry>,
    /// seq -> key, for every current record.
    feed: BTreeMap<u64, String>,
    by_person: HashMap<String, BTreeSet<String>>,
    last_seq: u64,
}

/// Borrowed [`PageRecord`], serialized under the source's lock without copying payloads.
#[derive(Serialize)]
struct PageRecordRef<'a> {
    key: &'a str,
    seq: u64,
    person: Option<&'a str>,
    payload: &'a str,
}

#[derive(Serialize)]
struct PageRef<'a> {
    records: &'a [PageRecordRef<'a>],
    next: u64,
    more: bool,
}

impl Records {
    /// Records of residents `0..count` (`synth` gives each a distinct record key).
    fn generate(source: &DataSource, count: u64, seed: u64) -> Records {
        let mut generator = Generator::new(seed);
        let mut records = Records::default();
        let key_field = &source.record_key_field;
        for index in 0..count {
            let record = generator.record_for(source, index);
            let key = record.fields.get(key_field).cloned().unwrap_or_default();
            let payload = String::from_utf8(record.raw)
                .expect("invariant: synthetic payloads are serde_json text");
            assert!(
                !records.by_key.contains_key(&key),
                "invariant: synthetic record keys are distinct per resident"
            );
            let person = source
                .person_field
                .as_ref()
                .and_then(|p| record.fields.get(p))
                .filter(|p| !p.is_empty())
                .cloned();
            records.insert(key, index, person, payload);
        }
        records
    }

    /// Adds a new record with the next `seq`.
    fn insert(&mut self, key: String, index: u64, person: Option<String>, payload: String) {
        self.last_seq += 1;
        let seq = self.last_seq;
        if let Some(p) = &person {
            self.by_person
                .entry(p.clone())
                .or_default()
                .insert(key.clone());
        }
        self.feed.insert(seq, key.clone());
        let payload_hash = payload_hash(payload.as_bytes());
        let entry = Entry {
            index,
            seq,
            person,
            payload,
            payload_hash,
        };
        let previous = self.by_key.insert(key, entry);
        assert!(previous.is_none(), "invariant: record keys are unique");
        debug_assert_eq!(self.feed.len(), self.by_key.len());
    }

    /// Gives record `key` new content (same key, same person) and the next `seq`.
    fn touch(&mut self, source: &DataSource, key: &str, seed: u64) -> Option<(u64, String)> {
        let seq = self.last_seq + 1;
        let entry = self.by_key.get_mut(key)?;
        let resident = synth::person(seed, entry.index);
        let unique = format!("{:012}", entry.index);
        let (fields, payload) = (0..MAX_TOUCH_ATTEMPTS).find_map(|attempt| {
            let rng_seed = seed ^ seq ^ attempt.wrapping_mul(SEED_SPREAD);
            let mut rng = ChaCha8Rng::seed_from_u64(rng_seed);
            let mut fields = synth::record(&mut rng, source, &resident, &unique).fields;
            fields.insert(source.record_key_field.clone(), key.to_string());
            if let Some(person_field) = &source.person_field {
                match &entry.person {
                    Some(p) => fields.insert(person_field.clone(), p.clone()),
                    None => fields.remove(person_field),
                };
            }
            let payload = raw_payload(&source.id, &fields);
            (payload != entry.payload).then_some((fields, payload))
        })?;
        debug_assert!(
            govchain_chaincode::records::Record {
                fields,
                raw: payload.clone().into_bytes(),
            }
            .validate(source)
            .is_ok(),
            "a touched record validates against its source"
        );
        let old_seq = std::mem::replace(&mut entry.seq, seq);
        entry.payload_hash = payload_hash(payload.as_bytes());
        entry.payload.clone_from(&payload);
        let moved = self.feed.remove(&old_seq);
        assert_eq!(
            moved.as_deref(),
            Some(key),
            "invariant: feed and keys agree"
        );
        self.feed.insert(seq, key.to_string());
        self.last_seq = seq;
        Some((seq, payload))
    }

    fn page_record<'a>(&'a self, key: &'a str) -> PageRecordRef<'a> {
        let entry = self
            .by_key
            .get(key)
            .expect("invariant: the feed and the person index name current records only");
        PageRecordRef {
            key,
            seq: entry.seq,
            person: entry.person.as_deref(),
            payload: &entry.payload,
        }
    }

    /// The feed page of records with `seq > since`, at most `limit`, as JSON.
    fn feed_page(&self, since: u64, limit: usize) -> Vec<u8> {
        let mut after = self.feed.range((Bound::Excluded(since), Bound::Unbounded));
        let records: Vec<PageRecordRef<'_>> = after
            .by_ref()
            .take(limit)
            .map(|(_, key)| self.page_record(key))
            .collect();
        let more = after.next().is_some();
        let next = records.last().map_or(since, |r| r.seq);
        page_json(&records, next, more)
    }

    /// Every current record of person `pid`, in `seq` order, as JSON.
    fn person_page(&self, pid: &str) -> Vec<u8> {
        let mut records: Vec<PageRecordRef<'_>> = self
            .by_person
            .get(pid)
            .into_iter()
            .flatten()
            .map(|key| self.page_record(key))
            .collect();
        records.sort_unstable_by_key(|r| r.seq);
        let next = records.last().map_or(0, |r| r.seq);
        page_json(&records, next, false)
    }

    fn digest(&self) -> (u64, String) {
        digest_sorted(
            self.by_key
                .iter()
                .map(|(key, e)| (key.as_str(), &e.payload_hash)),
        )
    }
}

fn page_json(records: &[PageRecordRef<'_>], next: u64, more: bool) -> Vec<u8> {
    serde_json::to_vec(&PageRef {
        records,
        next,
        more,
    })
    .expect("invariant: a page of strings and numbers serializes")
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic under a lock is a bug that already failed loudly; the state stays consistent
    // because no update panics halfway.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One simulated source: its definition and codec (fixed) and its records (changing).
struct SourceState {
    source: DataSource,
    codec: Codec,
    records: Mutex<Records>,
}

/// The simulator: every source's records, the fault RNG and the counters, each behind its own
/// `Mutex`, so one `Arc<DeptSim>` serves all requests and the test driving it.
pub struct DeptSim {
    sources: BTreeMap<String, SourceState>,
    seed: u64,
    token: String,
    faults: Faults,
    fault_rng: Mutex<ChaCha8Rng>,
    stats: Mutex<SimStats>,
}

impl std::fmt::Debug for DeptSim {
    // The token never reaches logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeptSim")
            .field("sources", &self.sources.keys().collect::<Vec<_>>())
            .field("faults", &self.faults)
            .finish_non_exhaustive()
    }
}

impl DeptSim {
    /// A simulator with every source's records generated (sources in parallel).
    ///
    /// # Panics
    /// If `cfg` fails [`SimConfig::check`]; use [`DeptSim::try_new`] for configurations that
    /// come from outside.
    pub fn new(cfg: SimConfig) -> Arc<Self> {
        Self::try_new(cfg).unwrap_or_else(|e| panic!("invalid simulator configuration: {e}"))
    }

    /// A simulator, or why its configuration is refused.
    pub fn try_new(cfg: SimConfig) -> Result<Arc<Self>, SimError> {
        cfg.check()?;
        let SimConfig {
            sources,
            records,
            seed,
            token,
            faults,
        } = cfg;
        let loaded: Vec<SourceState> = std::thread::scope(|scope| {
            let workers: Vec<_> = sources
                .into_iter()
                .map(|s| {
                    scope.spawn(move || SourceState {
                        records: Mutex::new(Records::generate(&s.source, records, seed)),
                        source: s.source,
                        codec: s.codec,
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        Ok(Arc::new(DeptSim {
            sources: loaded
                .into_iter()
                .map(|s| (s.source.id.clone(), s))
                .collect(),
            seed,
            token,
            fault_rng: Mutex::new(ChaCha8Rng::seed_from_u64(faults.seed)),
            faults,
            stats: Mutex::new(SimStats::default()),
        }))
    }

    /// The HTTP interface.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/sources/{id}/records", get(feed))
            .route("/sources/{id}/persons/{pid}", get(person_records))
            .route("/sources/{id}/digest", get(digest))
            .route("/sources/{id}/records/{key}/touch", post(touch))
            .route("/stats", get(stats))
            .with_state(Arc::clone(self))
    }

    /// Serves the HTTP interface on `listener` until the listener fails.
    pub async fn serve(self: Arc<Self>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        axum::serve(listener, self.router()).await
    }

    /// Changes record `key` of `source` (new content, same key and same person) and gives it the
    /// next change sequence number; returns the new payload text. `None` if the source or the
    /// key is unknown, or (never seen with the default catalog) if 16 regenerations all gave
    /// the old content back.
    pub fn touch(&self, source: &str, key: &str) -> Option<String> {
        self.touch_record(source, key).map(|(_, payload)| payload)
    }

    fn touch_record(&self, source: &str, key: &str) -> Option<(u64, String)> {
        let s = self.sources.get(source)?;
        lock(&s.records).touch(&s.source, key, self.seed)
    }

    /// `(count, digest)` of a source's current records ([`content_digest`]); `None` if unknown.
    pub fn digest(&self, source: &str) -> Option<(u64, String)> {
        self.sources.get(source).map(|s| lock(&s.records).digest())
    }

    /// Data requests served and faults injected so far.
    pub fn stats(&self) -> SimStats {
        lock(&self.stats).clone()
    }

    /// Draws whether this data request gets a fault, and counts it.
    fn draw_fault(&self) -> Option<FaultKind> {
        let kind = {
            let mut rng = lock(&self.fault_rng);
            if self.faults.rate > 0.0 && rng.random_bool(self.faults.rate) {
                self.faults.kinds.choose(&mut *rng).copied()
            } else {
                None
            }
        };
        let mut stats = lock(&self.stats);
        stats.requests += 1;
        if let Some(kind) = kind {
            *stats.faults.slot(kind) += 1;
        }
        kind
    }

    /// Plays the faults that delay or replace the answer.
    async fn play_fault(&self, source: &str, fault: Option<FaultKind>) -> Result<(), Refusal> {
        let Some(kind) = fault else {
            return Ok(());
        };
        tracing::debug!(target: "node.dept_sim", source, fault = kind.name(), "fault injected");
        let delay_ms = match kind {
            FaultKind::Error500 => return Err(Refusal::InjectedError),
            FaultKind::Timeout => self.faults.timeout_ms,
            FaultKind::Slow => self.faults.slow_ms,
            FaultKind::Truncated | FaultKind::DuplicatePage => return Ok(()),
        };
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        Ok(())
    }

    fn authorize(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        if self.token.is_empty() {
            return Ok(());
        }
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        // Hashes of equal length compared whole, so timing tells little about the token.
        if payload_hash(given.as_bytes()) == payload_hash(self.token.as_bytes()) {
            Ok(())
        } else {
            Err(Refusal::Unauthorized)
        }
    }

    /// The source of a request that passed authentication.
    fn admit(&self, headers: &HeaderMap, id: &str) -> Result<&SourceState, Refusal> {
        self.authorize(headers)?;
        self.sources.get(id).ok_or(Refusal::UnknownSource)
    }
}

/// Why a request gets no data; answered with a JSON `{"error": ..}`. Messages never repeat
/// what the client sent (keys and person ids are personal data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// 401: no or wrong bearer token.
    Unauthorized,
    /// 404: the source is not simulated.
    UnknownSource,
    /// 404: the source has no record with that key.
    UnknownRecord,
    /// 400: a query parameter out of range.
    BadQuery(&'static str),
    /// 500: a [`FaultKind::Error500`].
    InjectedError,
}

#[derive(Serialize)]
struct ErrorBody {
    error: &'static str,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, error) = match self {
            Refusal::Unauthorized => (StatusCode::UNAUTHORIZED, "missing or wrong bearer token"),
            Refusal::UnknownSource => (StatusCode::NOT_FOUND, "unknown source"),
            Refusal::UnknownRecord => (StatusCode::NOT_FOUND, "unknown record key"),
            Refusal::BadQuery(why) => (StatusCode::BAD_REQUEST, why),
            Refusal::InjectedError => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "injected fault: internal error",
            ),
        };
        let mut response = (status, Json(ErrorBody { error })).into_response();
        if self == Refusal::Unauthorized {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// `since` (default 0) and `limit` (default [`DEFAULT_LIMIT`], 1..=[`MAX_LIMIT`]).
fn feed_params(query: &BTreeMap<String, String>) -> Result<(u64, usize), Refusal> {
    let since = match query.get("since") {
        None => 0,
        Some(s) => s
            .parse::<u64>()
            .map_err(|_| Refusal::BadQuery("since must be a whole number"))?,
    };
    let limit = match query.get("limit") {
        None => DEFAULT_LIMIT,
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or(Refusal::BadQuery(
                "limit must be a whole number in 1..=5000",
            ))?,
    };
    Ok((since, limit))
}

/// A page body as the source's system sends it, cut in half for [`FaultKind::Truncated`].
fn page_response(codec: &Codec, json: Vec<u8>, fault: Option<FaultKind>) -> Response {
    let (mut body, content_type) = match codec {
        Codec::Plain => (json, "application/json"),
        encrypted => (encrypted.encode(&json), "application/octet-stream"),
    };
    if fault == Some(FaultKind::Truncated) {
        body.truncate(body.len() / 2);
    }
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

type Sim = State<Arc<DeptSim>>;

async fn feed(
    State(sim): Sim,
    Path(id): Path<String>,
    headers: HeaderMap,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Result<Response, Refusal> {
    let source = sim.admit(&headers, &id)?;
    let Query(query) = query.map_err(|_| Refusal::BadQuery("malformed query string"))?;
    let (since, limit) = feed_params(&query)?;
    let fault = sim.draw_fault();
    sim.play_fault(&id, fault).await?;
    let since = match fault {
        Some(FaultKind::DuplicatePage) => since.saturating_sub(limit as u64 / 2),
        _ => since,
    };
    let json = lock(&source.records).feed_page(since, limit);
    Ok(page_response(&source.codec, json, fault))
}

async fn person_records(
    State(sim): Sim,
    Path((id, pid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let source = sim.admit(&headers, &id)?;
    let fault = sim.draw_fault();
    sim.play_fault(&id, fault).await?;
    let json = lock(&source.records).person_page(&pid);
    Ok(page_response(&source.codec, json, fault))
}

async fn digest(
    State(sim): Sim,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<DigestReply>, Refusal> {
    let source = sim.admit(&headers, &id)?;
    let (count, digest) = lock(&source.records).digest();
    Ok(Json(DigestReply { count, digest }))
}

async fn touch(
    State(sim): Sim,
    Path((id, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<TouchReply>, Refusal> {
    sim.admit(&headers, &id)?;
    let (seq, payload) = sim.touch_record(&id, &key).ok_or(Refusal::UnknownRecord)?;
    Ok(Json(TouchReply { key, seq, payload }))
}

async fn stats(State(sim): Sim, headers: HeaderMap) -> Result<Json<SimStats>, Refusal> {
    sim.authorize(&headers)?;
    Ok(Json(sim.stats()))
}

/// The `govchain dept-sim` command line.
#[derive(Debug, Clone)]
pub struct SimArgs {
    /// Address to listen on; port 0 picks a free port (printed on start).
    pub listen: std::net::SocketAddr,
    /// Catalog source ids; empty means the first [`DEFAULT_SOURCE_COUNT`] sources about persons
    /// of department [`DEFAULT_DEPARTMENT`].
    pub sources: Vec<String>,
    /// Source id -> codec description (`plain`, `des:KEYHEX:IVHEX`, `3des:KEYHEX:IVHEX`);
    /// sources not named are plain.
    pub codecs: Vec<(String, String)>,
    /// Records per source.
    pub records: u64,
    /// Population seed; also seeds the fault RNG.
    pub seed: u64,
    /// Required bearer token; empty means no authentication.
    pub token: String,
    /// Probability in 0..=1 that a data request gets a fault.
    pub fault_rate: f64,
    /// Fault kinds: `all` or a comma list of `500,timeout,slow,truncated,duplicate`.
    pub faults: String,
    /// How long a timeout fault hangs.
    pub timeout_ms: u64,
    /// How long a slow answer waits.
    pub slow_ms: u64,
}

/// The simulator configuration a command line asks for, checked against the default catalog.
fn config_from_args(args: &SimArgs) -> anyhow::Result<SimConfig> {
    let catalog = govchain_genesis::catalog::default_catalog()?.sources;
    let chosen: Vec<DataSource> = if args.sources.is_empty() {
        catalog
            .into_iter()
            .filter(|s| s.department == DEFAULT_DEPARTMENT && s.person_field.is_some())
            .take(DEFAULT_SOURCE_COUNT)
            .collect()
    } else {
        let find = |id: &String| {
            catalog
                .iter()
                .find(|s| &s.id == id)
                .cloned()
                .ok_or_else(|| SimError::UnknownSource(id.clone()))
        };
        args.sources.iter().map(find).collect::<Result<_, _>>()?
    };
    let mut codecs: BTreeMap<&str, Codec> = BTreeMap::new();
    for (id, spec) in &args.codecs {
        if !chosen.iter().any(|s| &s.id == id) {
            return Err(SimError::CodecForUnsimulatedSource(id.clone()).into());
        }
        let codec = Codec::parse(spec).map_err(|err| SimError::Codec {
            id: id.clone(),
            err,
        })?;
        if codecs.insert(id, codec).is_some() {
            return Err(SimError::DuplicateCodec(id.clone()).into());
        }
    }
    let sources = chosen
        .into_iter()
        .map(|source| SimSource {
            codec: codecs.remove(source.id.as_str()).unwrap_or(Codec::Plain),
            source,
        })
        .collect();
    let cfg = SimConfig {
        sources,
        records: args.records,
        seed: args.seed,
        token: args.token.clone(),
        faults: Faults {
            rate: args.fault_rate,
            kinds: FaultKind::parse_list(&args.faults)?,
            timeout_ms: args.timeout_ms,
            slow_ms: args.slow_ms,
            seed: args.seed,
        },
    };
    cfg.check()?;
    Ok(cfg)
}

/// `govchain dept-sim`: generates the records, binds, prints exactly one line
/// `dept-sim listening on http://ADDR` (the bound address) to stdout and serves until Ctrl-C or
/// SIGTERM; requests still running then get [`SHUTDOWN_GRACE`] to finish.
pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    let cfg = config_from_args(&args)?;
    let (sources, records) = (cfg.sources.len(), cfg.records);
    let started = std::time::Instant::now();
    let sim = tokio::task::spawn_blocking(move || DeptSim::try_new(cfg)).await??;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "dept-sim listening on http://{addr}")?;
        out.flush()?;
    }
    tracing::info!(target: "node.dept_sim", %addr, sources, records,
        generate_ms = started.elapsed().as_millis() as u64, "department simulator started");
    let stop = Arc::new(tokio::sync::Notify::new());
    let stopped = Arc::clone(&stop);
    let router = sim.router();
    let mut server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move { stopped.notified().await })
            .await
    });
    tokio::select! {
        ended = &mut server => return Ok(ended??),
        () = crate::server::wait_for_signal() => {}
    }
    // `notify_one` keeps the wake-up if the server task has not started waiting yet.
    stop.notify_one();
    match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
        Ok(ended) => ended??,
        Err(_) => {
            tracing::warn!(target: "node.dept_sim", "requests still running after the grace period are dropped");
            server.abort();
        }
    }
    tracing::info!(target: "node.dept_sim", "department simulator stopped");
    Ok(())
}

#[cfg(test)]
mod tests;
