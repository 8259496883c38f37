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
//! and still validates against its source; a record whose field is set (`set`, bad data for
//! tests of refusals) keeps its key and person, and validates only if the value does.
//!
//! Never: faults on the control endpoints (digest, touch, set, stats); record keys, person ids or
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

mod cli;
mod records;
mod server;

pub use cli::{run, SimArgs};
use records::*;
pub use server::DeptSim;

#[cfg(test)]
mod tests;
