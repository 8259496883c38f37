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

/// A source is servable when its definition is valid and its record key is text (made unique by
/// the simulator if the synthetic values repeat) or the person's national ID (unique per
/// resident).
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
/// blake3 over, for each record in ascending key order, the key bytes, a 0x00 byte and the
/// 32-byte blake3 hash of the payload bytes; hex. Count = number of records. The input may come
/// in any order (ties on a repeated key are broken by the payload hash).
pub fn content_digest<'a>(records: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> (u64, String) {
    let mut hashed: Vec<(&str, [u8; 32])> = records
        .into_iter()
        .map(|(key, payload)| (key, *blake3::hash(payload).as_bytes()))
        .collect();
    hashed.sort_unstable();
    digest_sorted(hashed.iter().map(|(key, hash)| (*key, hash)))
}

/// [`content_digest`] over records already in ascending key order, with their payload hashes.
fn digest_sorted<'a>(records: impl Iterator<Item = (&'a str, &'a [u8; 32])>) -> (u64, String) {
    let mut hasher = blake3::Hasher::new();
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
    /// Records of residents `0..count`. A text key that repeats an earlier resident's gets
    /// `-{index:012}` appended (some catalog sources' synthetic keys take few values).
    fn generate(source: &DataSource, count: u64, seed: u64) -> Records {
        let mut generator = Generator::new(seed);
        let mut records = Records::default();
        let key_field = &source.record_key_field;
        for index in 0..count {
            let mut record = generator.record_for(source, index);
            let mut key = record.fields.get(key_field).cloned().unwrap_or_default();
            let mut payload = String::from_utf8(record.raw)
                .expect("invariant: synthetic payloads are serde_json text");
            if records.by_key.contains_key(&key) {
                key = format!("{key}-{index:012}");
                record.fields.insert(key_field.clone(), key.clone());
                payload = raw_payload(&source.id, &record.fields);
            }
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
        let payload_hash = *blake3::hash(payload.as_bytes()).as_bytes();
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
        entry.payload_hash = *blake3::hash(payload.as_bytes()).as_bytes();
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
        // blake3::Hash compares in constant time, so timing tells nothing about the token.
        if blake3::hash(given.as_bytes()) == blake3::hash(self.token.as_bytes()) {
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
mod tests {
    use super::*;
    use std::time::Instant;

    const TOKEN: &str = "s3cret-token";
    const DES: &str = "des:0123456789ABCDEF:1122334455667788";
    const TDES: &str = "3des:0123456789ABCDEF23456789ABCDEF01456789ABCDEF0123:8877665544332211";

    fn catalog_source(id: &str) -> DataSource {
        let catalog = govchain_genesis::catalog::default_catalog().unwrap();
        catalog.sources.into_iter().find(|s| s.id == id).unwrap()
    }

    fn sim_source(id: &str, codec: &str) -> SimSource {
        SimSource {
            source: catalog_source(id),
            codec: Codec::parse(codec).unwrap(),
        }
    }

    fn config(sources: Vec<SimSource>, records: u64) -> SimConfig {
        SimConfig {
            sources,
            records,
            seed: 7,
            token: TOKEN.to_string(),
            faults: Faults::default(),
        }
    }

    fn faulty(source: SimSource, records: u64, kind: FaultKind) -> SimConfig {
        let mut cfg = config(vec![source], records);
        cfg.faults = Faults {
            rate: 1.0,
            kinds: vec![kind],
            timeout_ms: 300,
            slow_ms: 200,
            seed: 1,
        };
        cfg
    }

    struct Server {
        sim: Arc<DeptSim>,
        base: String,
        http: reqwest::Client,
    }

    impl Server {
        async fn start(cfg: SimConfig) -> Server {
            let sim = DeptSim::new(cfg);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            tokio::spawn(Arc::clone(&sim).serve(listener));
            Server {
                sim,
                base,
                http: reqwest::Client::new(),
            }
        }

        fn get(&self, path: &str) -> reqwest::RequestBuilder {
            self.http
                .get(format!("{}{path}", self.base))
                .bearer_auth(TOKEN)
        }

        async fn bytes(&self, path: &str) -> (StatusCode, Vec<u8>) {
            let r = self.get(path).send().await.unwrap();
            let status = StatusCode::from_u16(r.status().as_u16()).unwrap();
            (status, r.bytes().await.unwrap().to_vec())
        }

        async fn page(&self, path: &str) -> Page {
            let (status, body) = self.bytes(path).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            serde_json::from_slice(&body).unwrap()
        }

        async fn touch(&self, source: &str, key: &str) -> reqwest::Response {
            self.http
                .post(format!(
                    "{}/sources/{source}/records/{key}/touch",
                    self.base
                ))
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap()
        }
    }

    /// Walks the feed from 0 and checks the cursor contract on the way.
    async fn walk(server: &Server, source: &str, limit: usize) -> Vec<PageRecord> {
        let (mut since, mut all) = (0, Vec::new());
        loop {
            let page = server
                .page(&format!(
                    "/sources/{source}/records?since={since}&limit={limit}"
                ))
                .await;
            assert!(page.records.len() <= limit);
            assert!(page.records.iter().all(|r| r.seq > since));
            assert_eq!(page.next, page.records.last().map_or(since, |r| r.seq));
            since = page.next;
            all.extend(page.records);
            if !page.more {
                return all;
            }
        }
    }

    #[tokio::test]
    async fn paging_walks_every_record_exactly_once_over_http() {
        let server = Server::start(config(vec![sim_source("gaj.jzz", "plain")], 1234)).await;
        let records = walk(&server, "gaj.jzz", 100).await;
        assert_eq!(records.len(), 1234);
        let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
        assert_eq!(
            seqs,
            (1..=1234).collect::<Vec<u64>>(),
            "seq 1..=records in order"
        );
        let keys: BTreeSet<&str> = records.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys.len(), 1234, "no record twice");
        // The payload is the synthetic record's raw JSON; key and person come from its fields.
        let source = catalog_source("gaj.jzz");
        let mut generator = Generator::new(7);
        for r in &records[..50] {
            let want = generator.record_for(&source, r.seq - 1);
            assert_eq!(r.payload.as_bytes(), want.raw);
            assert_eq!(r.key, want.fields["jzzbh"]);
            assert_eq!(r.person.as_deref(), Some(want.fields["sfzh"].as_str()));
        }
        // At the end of the feed: an empty page that keeps the cursor.
        let end = server.page("/sources/gaj.jzz/records?since=1234").await;
        assert_eq!((end.records.len(), end.next, end.more), (0, 1234, false));
        // Pair assertion: what the client saw is what the simulator holds.
        let seen = content_digest(
            records
                .iter()
                .map(|r| (r.key.as_str(), r.payload.as_bytes())),
        );
        assert_eq!(Some(seen.clone()), server.sim.digest("gaj.jzz"));
        let reply: DigestReply = server
            .get("/sources/gaj.jzz/digest")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!((reply.count, reply.digest), seen);
        assert_eq!(server.sim.stats().requests, 14, "13 pages and the end");
    }

    #[tokio::test]
    async fn feed_limit_is_checked_at_the_edges_over_http() {
        let server = Server::start(config(vec![sim_source("gaj.hjxx", "plain")], 5001)).await;
        let page = server.page("/sources/gaj.hjxx/records").await;
        assert_eq!((page.records.len(), page.more), (DEFAULT_LIMIT, true));
        let page = server.page("/sources/gaj.hjxx/records?limit=5000").await;
        assert_eq!(
            (page.records.len(), page.next, page.more),
            (5000, 5000, true)
        );
        let page = server
            .page("/sources/gaj.hjxx/records?since=5000&limit=5000")
            .await;
        assert_eq!((page.records.len(), page.next, page.more), (1, 5001, false));
        for bad in [
            "limit=5001",
            "limit=0",
            "limit=x",
            "limit=-1",
            "since=-1",
            "since=1.5",
        ] {
            let (status, body) = server
                .bytes(&format!("/sources/gaj.hjxx/records?{bad}"))
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
            let e: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert!(e["error"].as_str().is_some_and(|m| !m.is_empty()), "{bad}");
        }
        assert_eq!(
            server.sim.stats().requests,
            3,
            "refused requests are not served"
        );
    }

    /// Decodes `wire` with 32 wrong keys of `right`'s kind. PKCS#7 refuses a wrong key with
    /// `BadPadding` unless the last decrypted byte happens to be a valid pad (about 1 in 256);
    /// what slips through is never a page.
    fn assert_wrong_keys_refused(right: &Codec, wire: &[u8]) {
        let mut refused = 0;
        for k in 0..32u8 {
            let bytes = *blake3::hash(&[k]).as_bytes();
            let wrong = match right {
                Codec::Des { iv, .. } => Codec::Des {
                    key: bytes[..8].try_into().unwrap(),
                    iv: *iv,
                },
                Codec::TripleDes { iv, .. } => Codec::TripleDes {
                    key: bytes[..24].try_into().unwrap(),
                    iv: *iv,
                },
                Codec::Plain => panic!("wrong keys need an encrypted source"),
            };
            match wrong.decode(wire) {
                Err(CodecError::BadPadding) => refused += 1,
                Ok(text) => assert!(serde_json::from_slice::<Page>(&text).is_err()),
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert!(refused >= 28, "{refused} of 32 wrong keys refused");
    }

    #[tokio::test]
    async fn des_and_3des_pages_decode_only_with_the_right_key_over_http() {
        let cfg = config(
            vec![sim_source("gaj.jzz", DES), sim_source("gaj.sfzqf", TDES)],
            40,
        );
        let server = Server::start(cfg).await;
        for (id, spec) in [("gaj.jzz", DES), ("gaj.sfzqf", TDES)] {
            let codec = Codec::parse(spec).unwrap();
            let r = server
                .get(&format!("/sources/{id}/records?limit=40"))
                .send()
                .await
                .unwrap();
            assert_eq!(
                r.headers()[header::CONTENT_TYPE],
                "application/octet-stream"
            );
            let wire = r.bytes().await.unwrap();
            assert!(
                serde_json::from_slice::<Page>(&wire).is_err(),
                "{id}: not plain JSON"
            );
            let page: Page = serde_json::from_slice(&codec.decode(&wire).unwrap()).unwrap();
            assert_eq!(page.records.len(), 40);
            let got = content_digest(
                page.records
                    .iter()
                    .map(|r| (r.key.as_str(), r.payload.as_bytes())),
            );
            assert_eq!(Some(got), server.sim.digest(id));
            assert_wrong_keys_refused(&codec, &wire);
            // The person endpoint is encrypted the same way.
            let pid = page.records[3].person.clone().unwrap();
            let (status, wire) = server.bytes(&format!("/sources/{id}/persons/{pid}")).await;
            assert_eq!(status, StatusCode::OK);
            let person: Page = serde_json::from_slice(&codec.decode(&wire).unwrap()).unwrap();
            assert_eq!(person.records, vec![page.records[3].clone()]);
            assert_wrong_keys_refused(&codec, &wire);
        }
    }

    #[tokio::test]
    async fn touch_moves_the_record_to_the_feed_end_with_new_content_over_http() {
        let server = Server::start(config(vec![sim_source("gaj.jzz", "plain")], 30)).await;
        let before = walk(&server, "gaj.jzz", 500).await;
        let (count, digest_before) = server.sim.digest("gaj.jzz").unwrap();
        let old = before[4].clone();
        let r = server.touch("gaj.jzz", &old.key).await;
        assert_eq!(r.status().as_u16(), 200);
        let touched: TouchReply = r.json().await.unwrap();
        assert_eq!((touched.key.as_str(), touched.seq), (old.key.as_str(), 31));
        assert_ne!(touched.payload, old.payload);
        // The change feed past the old end holds exactly the touched record.
        let tail = server.page("/sources/gaj.jzz/records?since=30").await;
        assert_eq!(tail.records.len(), 1);
        let new = &tail.records[0];
        assert_eq!(
            (&new.key, new.seq, &new.person),
            (&old.key, 31, &old.person)
        );
        assert_eq!(new.payload, touched.payload);
        // Still one record per key; the old seq is gone from the feed.
        let after = walk(&server, "gaj.jzz", 500).await;
        assert_eq!(after.len(), 30);
        assert!(after.iter().all(|r| r.seq != old.seq));
        assert_eq!(after.last(), Some(new));
        let (count_after, digest_after) = server.sim.digest("gaj.jzz").unwrap();
        assert_eq!(count_after, count);
        assert_ne!(digest_after, digest_before);
        // The library call does the same, with the next seq.
        let again = server.sim.touch("gaj.jzz", &old.key).unwrap();
        let tail = server.page("/sources/gaj.jzz/records?since=31").await;
        assert_eq!(
            (tail.records[0].seq, &tail.records[0].payload),
            (32, &again)
        );
        assert_ne!(again, touched.payload);
        assert_eq!(
            server
                .touch("gaj.jzz", "NO-SUCH-KEY")
                .await
                .status()
                .as_u16(),
            404
        );
        assert_eq!(server.sim.touch("gaj.jzz", "NO-SUCH-KEY"), None);
    }

    #[test]
    fn touched_records_keep_key_and_person_and_validate_for_every_catalog_source() {
        const N: u64 = 150; // above the 99 values some synthetic text keys take
        let catalog = govchain_genesis::catalog::default_catalog().unwrap();
        let mut suffixed_sources = 0;
        for source in &catalog.sources {
            let mut records = Records::generate(source, N, 3);
            assert_eq!(
                records.by_key.len() as u64,
                N,
                "{}: one per resident",
                source.id
            );
            for (key, entry) in &records.by_key {
                assert_valid(source, key, &entry.payload, entry.person.as_deref());
            }
            if records.by_key.keys().any(|k| k.ends_with("-000000000149")) {
                suffixed_sources += 1;
            }
            let keys: Vec<String> = records.by_key.keys().step_by(37).cloned().collect();
            for key in keys {
                let (old_payload, old_person) = {
                    let e = &records.by_key[&key];
                    (e.payload.clone(), e.person.clone())
                };
                let digest_before = records.digest();
                let (seq, payload) = records.touch(source, &key, 3).unwrap();
                assert_eq!(seq, records.feed.keys().copied().max().unwrap());
                assert_eq!(records.feed.get(&seq), Some(&key));
                assert_ne!(payload, old_payload, "{}", source.id);
                assert_ne!(records.digest(), digest_before);
                assert_valid(source, &key, &payload, old_person.as_deref());
            }
            assert_eq!(records.feed.len(), records.by_key.len());
        }
        // The repeated synthetic keys (e.g. gaj.jdcdj's 车辆识别代号) were made unique.
        assert!(suffixed_sources >= 1);
    }

    /// The payload validates against its source, with the given record key and person.
    fn assert_valid(source: &DataSource, key: &str, payload: &str, person: Option<&str>) {
        let json: serde_json::Value = serde_json::from_str(payload).unwrap();
        assert_eq!(json["source"], source.id.as_str());
        let record = govchain_chaincode::records::Record {
            fields: serde_json::from_value(json["data"].clone()).unwrap(),
            raw: payload.as_bytes().to_vec(),
        };
        let valid = record
            .validate(source)
            .unwrap_or_else(|e| panic!("{}: {e}", source.id));
        assert_eq!(valid.key, key, "{}", source.id);
        assert_eq!(valid.person.as_ref().map(|p| p.as_str()), person);
    }

    #[tokio::test]
    async fn person_endpoint_gives_every_current_record_of_a_person_over_http() {
        let cfg = config(
            vec![
                sim_source("gaj.hjxx", "plain"),
                sim_source("gaj.jzz", "plain"),
            ],
            20,
        );
        let server = Server::start(cfg).await;
        let pid = synth::person(7, 5).id;
        for id in ["gaj.hjxx", "gaj.jzz"] {
            let page = server.page(&format!("/sources/{id}/persons/{pid}")).await;
            assert_eq!(page.records.len(), 1, "{id}");
            assert_eq!(page.records[0].person.as_deref(), Some(pid.as_str()));
            assert_eq!((page.next, page.more), (6, false), "resident 5 has seq 6");
        }
        // A touched record is served with its new seq and content.
        let key = server
            .page(&format!("/sources/gaj.jzz/persons/{pid}"))
            .await
            .records[0]
            .key
            .clone();
        let payload = server.sim.touch("gaj.jzz", &key).unwrap();
        let page = server
            .page(&format!("/sources/gaj.jzz/persons/{pid}"))
            .await;
        assert_eq!(
            (page.records[0].seq, &page.records[0].payload, page.next),
            (21, &payload, 21)
        );
        // Someone with no records: an empty page.
        let stranger = synth::person(7, 999_999).id;
        let page = server
            .page(&format!("/sources/gaj.jzz/persons/{stranger}"))
            .await;
        assert_eq!((page.records.len(), page.next, page.more), (0, 0, false));
    }

    #[tokio::test]
    async fn missing_or_wrong_token_is_refused_with_401_over_http() {
        let server = Server::start(config(vec![sim_source("gaj.hjxx", "plain")], 5)).await;
        let paths = [
            "/sources/gaj.hjxx/records",
            "/sources/gaj.hjxx/digest",
            "/stats",
        ];
        for path in paths {
            let url = format!("{}{path}", server.base);
            let attempts = [
                server.http.get(&url),
                server.http.get(&url).bearer_auth("wrong"),
                server.http.get(&url).bearer_auth(""),
                server.http.get(&url).header("authorization", TOKEN),
                server.http.get(&url).basic_auth(TOKEN, Some(TOKEN)),
            ];
            for request in attempts {
                let r = request.send().await.unwrap();
                assert_eq!(r.status().as_u16(), 401, "{path}");
                assert_eq!(r.headers()[header::WWW_AUTHENTICATE], "Bearer");
                let e: serde_json::Value = r.json().await.unwrap();
                assert!(e["error"].is_string());
            }
            assert_eq!(
                server.get(path).send().await.unwrap().status().as_u16(),
                200
            );
        }
        let r = server
            .http
            .post(format!("{}/sources/gaj.hjxx/records/x/touch", server.base));
        assert_eq!(r.send().await.unwrap().status().as_u16(), 401);
        assert_eq!(
            server.sim.stats().requests,
            1,
            "refused requests are not served"
        );
        // An empty token means no authentication.
        let mut open = config(vec![sim_source("gaj.hjxx", "plain")], 5);
        open.token.clear();
        let open = Server::start(open).await;
        let r = open
            .http
            .get(format!("{}/sources/gaj.hjxx/records", open.base));
        assert_eq!(r.send().await.unwrap().status().as_u16(), 200);
    }

    #[tokio::test]
    async fn unknown_source_is_404_over_http() {
        let server = Server::start(config(vec![sim_source("gaj.hjxx", "plain")], 5)).await;
        for path in [
            "/sources/gaj.nope/records",
            "/sources/gaj.nope/persons/350102194001010011",
            "/sources/gaj.nope/digest",
        ] {
            let (status, body) = server.bytes(path).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
            let e: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(e["error"], "unknown source");
        }
        assert_eq!(server.touch("gaj.nope", "k").await.status().as_u16(), 404);
        assert_eq!(server.sim.digest("gaj.nope"), None);
        assert_eq!(server.sim.touch("gaj.nope", "k"), None);
    }

    #[tokio::test]
    async fn fault_500_answers_500_is_counted_and_spares_control_endpoints_over_http() {
        let server = Server::start(faulty(
            sim_source("gaj.hjxx", "plain"),
            10,
            FaultKind::Error500,
        ))
        .await;
        let (status, body) = server.bytes("/sources/gaj.hjxx/records").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        let e: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(e["error"].is_string());
        let pid = synth::person(7, 0).id;
        let (status, _) = server
            .bytes(&format!("/sources/gaj.hjxx/persons/{pid}"))
            .await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        // Control endpoints are never faulted.
        assert_eq!(
            server.bytes("/sources/gaj.hjxx/digest").await.0,
            StatusCode::OK
        );
        assert_eq!(server.touch("gaj.hjxx", &pid).await.status().as_u16(), 200);
        let stats: SimStats = server
            .get("/stats")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let want = SimStats {
            requests: 2,
            faults: FaultCounts {
                error_500: 2,
                ..FaultCounts::default()
            },
        };
        assert_eq!(stats, want);
        assert_eq!(server.sim.stats(), want);
    }

    #[tokio::test]
    async fn fault_truncated_cuts_the_body_in_half_so_it_does_not_decode_over_http() {
        for (id, spec) in [("gaj.hjxx", "plain"), ("gaj.jzz", DES), ("gaj.sfzqf", TDES)] {
            let whole = Server::start(config(vec![sim_source(id, spec)], 25)).await;
            let cut = Server::start(faulty(sim_source(id, spec), 25, FaultKind::Truncated)).await;
            let path = format!("/sources/{id}/records");
            let (_, full) = whole.bytes(&path).await;
            let (status, half) = cut.bytes(&path).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(half.len(), full.len() / 2, "{id}");
            assert_eq!(half[..], full[..half.len()]);
            let codec = Codec::parse(spec).unwrap();
            match codec.decode(&half) {
                Ok(text) => {
                    assert_eq!(codec, Codec::Plain, "{id}: encrypted halves never decode");
                    assert!(serde_json::from_slice::<Page>(&text).is_err());
                }
                Err(e) => assert!(
                    matches!(e, CodecError::NotBlocks(_) | CodecError::BadPadding),
                    "{id}: {e}"
                ),
            }
            assert_eq!(cut.sim.stats().faults.truncated, 1);
        }
    }

    #[tokio::test]
    async fn fault_duplicate_page_overlaps_the_previous_page_over_http() {
        let server = Server::start(faulty(
            sim_source("gaj.hjxx", "plain"),
            300,
            FaultKind::DuplicatePage,
        ))
        .await;
        let page = server
            .page("/sources/gaj.hjxx/records?since=100&limit=50")
            .await;
        let seqs: Vec<u64> = page.records.iter().map(|r| r.seq).collect();
        assert_eq!(
            seqs,
            (76..=125).collect::<Vec<u64>>(),
            "as if since were 75"
        );
        assert_eq!((page.next, page.more), (125, true));
        // At the start of the feed there is nothing before: the same page.
        let first = server.page("/sources/gaj.hjxx/records?limit=50").await;
        assert_eq!(first.records.first().map(|r| r.seq), Some(1));
        // A person page is served normally, but counted.
        let pid = synth::person(7, 9).id;
        let person = server
            .page(&format!("/sources/gaj.hjxx/persons/{pid}"))
            .await;
        assert_eq!(person.records.len(), 1);
        assert_eq!(server.sim.stats().faults.duplicate, 3);
    }

    #[tokio::test]
    async fn fault_slow_delays_the_answer_by_slow_ms_over_http() {
        let server =
            Server::start(faulty(sim_source("gaj.hjxx", "plain"), 10, FaultKind::Slow)).await;
        let started = Instant::now();
        let page = server.page("/sources/gaj.hjxx/records").await;
        assert!(
            started.elapsed() >= Duration::from_millis(200),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(page.records.len(), 10, "then a normal answer");
        assert_eq!(server.sim.stats().faults.slow, 1);
    }

    #[tokio::test]
    async fn fault_timeout_hangs_for_timeout_ms_over_http() {
        let server = Server::start(faulty(
            sim_source("gaj.hjxx", "plain"),
            10,
            FaultKind::Timeout,
        ))
        .await;
        let impatient = server
            .get("/sources/gaj.hjxx/records")
            .timeout(Duration::from_millis(100))
            .send()
            .await;
        assert!(impatient.is_err_and(|e| e.is_timeout()));
        let started = Instant::now();
        let page = server.page("/sources/gaj.hjxx/records").await;
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(page.records.len(), 10, "then a normal answer");
        assert_eq!(server.sim.stats().faults.timeout, 2);
    }

    #[test]
    fn faults_follow_the_rate_and_replay_by_seed() {
        let draws = |rate: f64, seed: u64| {
            let mut cfg = config(vec![sim_source("gaj.hjxx", "plain")], 0);
            cfg.faults = Faults {
                rate,
                seed,
                ..Faults::default()
            };
            let sim = DeptSim::new(cfg);
            let kinds: Vec<Option<FaultKind>> = (0..2000).map(|_| sim.draw_fault()).collect();
            (kinds, sim.stats())
        };
        let (kinds, stats) = draws(0.25, 9);
        let faulted = kinds.iter().flatten().count() as u64;
        assert!(
            (400..600).contains(&faulted),
            "{faulted} of 2000 at rate 0.25"
        );
        assert_eq!(stats.requests, 2000);
        let counted: u64 = FaultKind::ALL.iter().map(|k| stats.faults.get(*k)).sum();
        assert_eq!(counted, faulted);
        assert!(
            FaultKind::ALL.iter().all(|k| stats.faults.get(*k) > 50),
            "{stats:?}"
        );
        assert_eq!(draws(0.25, 9).0, kinds, "a seed replays");
        assert_ne!(draws(0.25, 10).0, kinds);
        assert!(draws(0.0, 9).0.iter().all(Option::is_none));
    }

    #[test]
    fn content_digest_is_independent_of_input_order() {
        let records = [("b", "2"), ("a", "1"), ("c", "3"), ("a", "0")];
        let as_bytes = |rs: &[(&'static str, &'static str)]| -> Vec<(&'static str, &'static [u8])> {
            rs.iter().map(|(k, p)| (*k, p.as_bytes())).collect()
        };
        let (count, digest) = content_digest(as_bytes(&records));
        assert_eq!(count, 4);
        let mut reversed = records;
        reversed.reverse();
        assert_eq!(content_digest(as_bytes(&reversed)), (count, digest.clone()));
        let mut changed = records;
        changed[0].1 = "2!";
        assert_ne!(content_digest(as_bytes(&changed)).1, digest);
        // The documented construction by hand. Keys tie on "a": their order follows the payload
        // hash, not the input.
        let mut sorted = as_bytes(&records);
        sorted.sort_by_key(|(k, p)| (*k, *blake3::hash(p).as_bytes()));
        let mut by_hand = blake3::Hasher::new();
        for (k, p) in sorted {
            by_hand.update(k.as_bytes());
            by_hand.update(&[0]);
            by_hand.update(blake3::hash(p).as_bytes());
        }
        assert_eq!(digest, by_hand.finalize().to_hex().to_string());
        assert_eq!(
            content_digest([]),
            (0, blake3::Hasher::new().finalize().to_hex().to_string())
        );
    }

    #[test]
    fn same_seed_gives_the_same_records_and_another_seed_others() {
        let digest = |seed| {
            let mut cfg = config(vec![sim_source("gaj.jzz", "plain")], 200);
            cfg.seed = seed;
            DeptSim::new(cfg).digest("gaj.jzz").unwrap()
        };
        assert_eq!(digest(1), digest(1));
        assert_ne!(digest(1).1, digest(2).1);
        assert_eq!(digest(1).0, 200);
    }

    #[test]
    fn fault_kinds_parse_from_names_lists_and_all() {
        assert_eq!(
            FaultKind::parse_list("all").unwrap(),
            FaultKind::ALL.to_vec()
        );
        assert_eq!(
            FaultKind::parse_list(" 500, slow,500 ").unwrap(),
            vec![FaultKind::Error500, FaultKind::Slow]
        );
        assert_eq!(FaultKind::parse_list("duplicate,all").unwrap().len(), 5);
        assert_eq!(FaultKind::parse_list("").unwrap(), vec![]);
        for kind in FaultKind::ALL {
            assert_eq!(kind.name().parse::<FaultKind>(), Ok(kind));
        }
        assert_eq!(
            FaultKind::parse_list("500,boom"),
            Err(SimError::UnknownFaultKind("boom".into()))
        );
    }

    #[test]
    fn configuration_is_checked_at_the_edges() {
        let base = || {
            config(
                vec![sim_source("gaj.hjxx", "plain")],
                MAX_RECORDS_PER_SOURCE,
            )
        };
        assert_eq!(base().check(), Ok(()));
        let refused = |change: &dyn Fn(&mut SimConfig)| {
            let mut cfg = base();
            change(&mut cfg);
            cfg.check().unwrap_err()
        };
        let e = refused(&|c| c.records = MAX_RECORDS_PER_SOURCE + 1);
        assert_eq!(e, SimError::TooManyRecords(MAX_RECORDS_PER_SOURCE + 1));
        for rate in [1.0001, -0.1, f64::NAN] {
            assert!(matches!(
                refused(&|c| c.faults.rate = rate),
                SimError::BadRate(_)
            ));
        }
        let mut edge = base();
        edge.faults.rate = 1.0;
        edge.faults.timeout_ms = MAX_FAULT_DELAY_MS;
        assert_eq!(edge.check(), Ok(()));
        let e = refused(&|c| c.faults.slow_ms = MAX_FAULT_DELAY_MS + 1);
        assert!(matches!(
            e,
            SimError::DelayTooLong {
                what: "slow_ms",
                ..
            }
        ));
        let e = refused(&|c| {
            c.faults.rate = 0.5;
            c.faults.kinds.clear();
        });
        assert_eq!(e, SimError::NoFaultKinds);
        assert_eq!(
            refused(&|c| c.token = "has space".into()),
            SimError::BadToken
        );
        assert_eq!(
            refused(&|c| c.token = "x".repeat(MAX_TOKEN_BYTES + 1)),
            SimError::BadToken
        );
        assert_eq!(refused(&|c| c.sources.clear()), SimError::SourceCount(0));
        let e = refused(&|c| c.sources.push(sim_source("gaj.hjxx", DES)));
        assert_eq!(e, SimError::DuplicateSource("gaj.hjxx".into()));
        // A record key the simulator cannot make unique (a date) is refused.
        let e = refused(&|c| c.sources[0].source.record_key_field = "csrq".into());
        assert!(matches!(e, SimError::BadSource { .. }), "{e}");
        let mut bad = config(vec![sim_source("gaj.hjxx", "plain")], 1);
        bad.faults.rate = 2.0;
        assert_eq!(DeptSim::try_new(bad).unwrap_err(), SimError::BadRate(2.0));
    }

    fn args() -> SimArgs {
        SimArgs {
            listen: "127.0.0.1:0".parse().unwrap(),
            sources: vec![],
            codecs: vec![],
            records: 10,
            seed: 5,
            token: TOKEN.into(),
            fault_rate: 0.1,
            faults: "500,slow".into(),
            timeout_ms: 1000,
            slow_ms: 50,
        }
    }

    #[test]
    fn cli_arguments_pick_default_sources_codecs_and_faults() {
        let cfg = config_from_args(&args()).unwrap();
        let ids: Vec<&str> = cfg.sources.iter().map(|s| s.source.id.as_str()).collect();
        assert_eq!(ids, ["gaj.hjxx", "gaj.jzz", "gaj.sfzqf"]);
        assert!(cfg.sources.iter().all(|s| s.codec == Codec::Plain));
        assert_eq!(cfg.faults.kinds, [FaultKind::Error500, FaultKind::Slow]);
        assert_eq!(
            (cfg.faults.rate, cfg.faults.slow_ms, cfg.records),
            (0.1, 50, 10)
        );

        let mut a = args();
        a.sources = vec!["mzj.jhdj".into(), "gaj.hjxx".into()];
        a.codecs = vec![("gaj.hjxx".into(), TDES.into())];
        let cfg = config_from_args(&a).unwrap();
        assert_eq!(cfg.sources[0].codec, Codec::Plain);
        assert_eq!(cfg.sources[1].codec.name(), "3des");

        let refused = |change: &dyn Fn(&mut SimArgs)| {
            let mut a = args();
            change(&mut a);
            config_from_args(&a)
                .unwrap_err()
                .downcast::<SimError>()
                .unwrap()
        };
        let e = refused(&|a| a.sources = vec!["gaj.nope".into()]);
        assert_eq!(e, SimError::UnknownSource("gaj.nope".into()));
        let e = refused(&|a| a.codecs = vec![("mzj.jhdj".into(), DES.into())]);
        assert_eq!(e, SimError::CodecForUnsimulatedSource("mzj.jhdj".into()));
        let e = refused(&|a| a.codecs = vec![("gaj.jzz".into(), "des:00".into())]);
        assert!(matches!(e, SimError::Codec { .. }));
        let e = refused(&|a| a.codecs = vec![("gaj.jzz".into(), DES.into()); 2]);
        assert_eq!(e, SimError::DuplicateCodec("gaj.jzz".into()));
        assert!(matches!(
            refused(&|a| a.faults = "oops".into()),
            SimError::UnknownFaultKind(_)
        ));
        assert!(matches!(
            refused(&|a| a.fault_rate = 1.5),
            SimError::BadRate(_)
        ));
    }

    /// Timing of the in-memory load at scale: `cargo test -p govchain-node --lib dept_sim -- --ignored`.
    #[test]
    #[ignore = "generates 300,000 records; run by hand to measure"]
    fn generates_100k_records_for_each_of_three_sources() {
        let sources = ["gaj.hjxx", "gaj.jzz", "gaj.sfzqf"].map(|id| sim_source(id, "plain"));
        let started = Instant::now();
        let sim = DeptSim::new(config(sources.to_vec(), 100_000));
        let took = started.elapsed();
        for s in &sources {
            assert_eq!(sim.digest(&s.source.id).map(|d| d.0), Some(100_000));
        }
        println!("generated 3 x 100,000 records in {took:?}");
    }
}
