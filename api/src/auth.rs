//! Signed requests of key-holders (R-SEC-7; DESIGN §7): the genesis system administrator,
//! registered system accounts (department and approval systems) and departments' nodes. Staff
//! use sessions instead ([`crate::access`]).
//!
//! A request carries three headers: `x-govchain-key` (hex public key), `x-govchain-time` (Unix
//! ms), `x-govchain-signature` (hex ed25519 signature over [`request_digest`]) and optionally
//! `x-govchain-nonce` (so identical requests in one millisecond differ). The digest binds the
//! request to its [`Audience`]: the chain id and the key of the node it is sent to (both in
//! the public `GET /api/v1/status`, as `chain_id` and `node_key`), so a request captured at one
//! node is refused by every other node and on every other chain.
//!
//! The node refuses, in this order: a missing or malformed header, a time more than
//! [`MAX_SKEW_MS`] from its clock, a signature that does not verify ([`verify_signed`]), a key
//! that is not registered for the endpoint (the caller's role check), and a request it has
//! already seen ([`ReplayGuard::record`]). Only a request whose key is registered is ever
//! remembered, and each key has its own bounded set, so no key — registered or not — can fill
//! or evict another's.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use govchain_ledger::hash::{hash_parts, Domain};
use govchain_ledger::{crypto, ChainId, Hash, Keypair, PublicKey, Signature};

use crate::ApiError;

/// Header with the signer's public key (hex).
pub const KEY_HEADER: &str = "x-govchain-key";
/// Header with the request time (Unix ms).
pub const TIME_HEADER: &str = "x-govchain-time";
/// Header with the signature (hex).
pub const SIGNATURE_HEADER: &str = "x-govchain-signature";
/// Largest accepted difference between a request's time and the node's clock.
pub const MAX_SKEW_MS: u64 = 5 * 60 * 1000;

/// Optional header with a client-chosen nonce (1–64 of `[A-Za-z0-9_-]`), so that a client
/// sending the same request twice within one millisecond still signs two different requests.
pub const NONCE_HEADER: &str = "x-govchain-nonce";
/// Longest nonce.
pub const MAX_NONCE_CHARS: usize = 64;

/// The node a signed request is for: its chain and its node key, as its public
/// `GET /api/v1/status` names them (`chain_id`, `node_key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audience {
    /// The chain.
    pub chain_id: ChainId,
    /// The key of the node that is to serve the request.
    pub node: PublicKey,
}

impl Audience {
    /// Reads the audience from a node's status document.
    pub fn from_status(status: &serde_json::Value) -> Result<Self, String> {
        let chain = status["chain_id"]
            .as_str()
            .ok_or("the node's status names no chain_id")?;
        let chain_id = ChainId::new(chain).map_err(|e| e.to_string())?;
        let node = status["node_key"]
            .as_str()
            .ok_or("the node's status names no node_key")?;
        let node = PublicKey::from_hex(node).map_err(|e| format!("node_key {node:?}: {e}"))?;
        Ok(Self { chain_id, node })
    }
}

/// What a key-holder signs: the audience (chain id, target node key), method, path with query,
/// time, nonce (empty when absent) and the body's hash.
pub fn request_digest(
    to: &Audience,
    method: &str,
    path_and_query: &str,
    time_ms: u64,
    nonce: &str,
    body: &[u8],
) -> Hash {
    let body_hash = blake3::hash(body);
    hash_parts(
        Domain::Request,
        &[
            // A chain id is [a-z0-9-] and a key 32 bytes: neither can run into the next part.
            to.chain_id.as_str().as_bytes(),
            b"\n",
            to.node.as_bytes(),
            method.as_bytes(),
            b"\n",
            path_and_query.as_bytes(),
            b"\n",
            &time_ms.to_be_bytes(),
            nonce.as_bytes(),
            b"\n",
            body_hash.as_bytes(),
        ],
    )
}

/// The three headers of a request to `to` signed by `key` at `time_ms` (no nonce).
pub fn sign_request(
    key: &Keypair,
    to: &Audience,
    method: &str,
    path_and_query: &str,
    time_ms: u64,
    body: &[u8],
) -> [(&'static str, String); 3] {
    let sig = key.sign(&request_digest(
        to,
        method,
        path_and_query,
        time_ms,
        "",
        body,
    ));
    [
        (KEY_HEADER, key.public().to_hex()),
        (TIME_HEADER, time_ms.to_string()),
        (SIGNATURE_HEADER, hex::encode(sig.0)),
    ]
}

/// The four headers of a request to `to` signed by `key` at `time_ms` with `nonce`.
pub fn sign_request_with_nonce(
    key: &Keypair,
    to: &Audience,
    method: &str,
    path_and_query: &str,
    time_ms: u64,
    nonce: &str,
    body: &[u8],
) -> [(&'static str, String); 4] {
    let sig = key.sign(&request_digest(
        to,
        method,
        path_and_query,
        time_ms,
        nonce,
        body,
    ));
    [
        (KEY_HEADER, key.public().to_hex()),
        (TIME_HEADER, time_ms.to_string()),
        (NONCE_HEADER, nonce.to_string()),
        (SIGNATURE_HEADER, hex::encode(sig.0)),
    ]
}

/// Most requests remembered per key: those whose time is still within [`MAX_SKEW_MS`] of the
/// node's clock. 600,000 is 1,000 signed requests per second per key sustained over the ten
/// minutes a request time stays acceptable. Beyond it, that key's requests are refused with
/// 503 until old ones age out, never accepted unchecked; other keys are not affected.
pub const MAX_REMEMBERED_PER_KEY: usize = 600_000;

/// Most keys with remembered requests. Only keys registered for the endpoint they called get a
/// set (see [`ReplayGuard::record`]), and a key's set is dropped once all its requests aged
/// out. Memory is bounded by the caps and, in practice, by what the node can serve: each
/// entry is a request that verified and was accepted.
pub const MAX_REPLAY_KEYS: usize = 1_024;

/// A request whose signature verified: its key (not yet known to be registered), time and
/// digest. Record it with [`ReplayGuard::record`] once the key's role is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a verified request is recorded in the replay guard once its key is known"]
pub struct Verified {
    /// The signer.
    pub key: PublicKey,
    /// The request's time (Unix ms).
    pub time_ms: u64,
    digest: Hash,
}

/// Requests seen per key, while their time is acceptable (a replayed request is refused).
/// Keyed by the signed digest, so a second encoding of one signature is the same request.
#[derive(Debug, Clone)]
pub struct ReplayGuard {
    seen: Arc<Mutex<Seen>>,
}

impl Default for ReplayGuard {
    fn default() -> Self {
        Self::with_caps(MAX_REMEMBERED_PER_KEY, MAX_REPLAY_KEYS)
    }
}

#[derive(Debug)]
struct Seen {
    per_key: usize,
    max_keys: usize,
    keys: HashMap<PublicKey, BTreeSet<(u64, [u8; 32])>>,
    /// The latest clock reading seen: requests older than it by more than the skew were
    /// forgotten, so they are refused as stale even if the clock steps back.
    clock_ms: u64,
}

impl Seen {
    /// Drops `set`'s requests whose time is no longer acceptable.
    fn prune(set: &mut BTreeSet<(u64, [u8; 32])>, now_ms: u64) {
        while let Some(first) = set.first().copied() {
            if first.0.saturating_add(MAX_SKEW_MS) >= now_ms {
                break;
            }
            set.pop_first();
        }
    }
}

/// What the guard says about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    First,
    Replayed,
    /// Its time is older than what the guard still remembers.
    Stale,
    /// This key's set is full.
    KeyFull,
    /// The table of keys is full.
    KeysFull,
}

impl ReplayGuard {
    /// A guard with caps other than the defaults (tests).
    pub fn with_caps(per_key: usize, max_keys: usize) -> Self {
        assert!(per_key > 0 && max_keys > 0, "invariant: positive caps");
        Self {
            seen: Arc::new(Mutex::new(Seen {
                per_key,
                max_keys,
                keys: HashMap::new(),
                clock_ms: 0,
            })),
        }
    }

    fn first_use(&self, v: &Verified, now_ms: u64) -> Use {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.clock_ms = seen.clock_ms.max(now_ms);
        let now = seen.clock_ms;
        if v.time_ms.saturating_add(MAX_SKEW_MS) < now {
            return Use::Stale;
        }
        if !seen.keys.contains_key(&v.key) && seen.keys.len() >= seen.max_keys {
            seen.keys.retain(|_, set| {
                Seen::prune(set, now);
                !set.is_empty()
            });
            if seen.keys.len() >= seen.max_keys {
                return Use::KeysFull;
            }
        }
        let per_key = seen.per_key;
        let set = seen.keys.entry(v.key).or_default();
        Seen::prune(set, now);
        let entry = (v.time_ms, v.digest.0);
        if set.contains(&entry) {
            return Use::Replayed;
        }
        if set.len() >= per_key {
            return Use::KeyFull;
        }
        set.insert(entry);
        Use::First
    }

    /// Remembers a verified request of a key known to be registered; refuses one already seen.
    /// Call it only after the role check, so an unregistered key never takes room.
    pub fn record(&self, v: Verified, now_ms: u64) -> Result<PublicKey, ApiError> {
        match self.first_use(&v, now_ms) {
            Use::First => Ok(v.key),
            Use::Replayed => Err(unauthorized(
                "replayed_request",
                "this signed request was already used",
            )),
            Use::Stale => Err(stale()),
            Use::KeyFull => Err(ApiError {
                retry_after_s: Some(1),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    "this key has too many signed requests in the replay window; retry later",
                )
            }),
            Use::KeysFull => Err(ApiError {
                retry_after_s: Some(1),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    "too many keys with signed requests in the replay window; retry later",
                )
            }),
        }
    }
}

fn stale() -> ApiError {
    unauthorized(
        "stale_request",
        format!(
            "request time is more than {} s from the node's clock",
            MAX_SKEW_MS / 1000
        ),
    )
}

fn unauthorized(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, code, message)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, ApiError> {
    headers
        .get(name)
        .ok_or_else(|| {
            unauthorized(
                "unauthenticated",
                format!("this endpoint needs a signed request (header {name} missing)"),
            )
        })?
        .to_str()
        .map_err(|_| unauthorized("bad_signature", format!("header {name} is not text")))
}

/// Checks a signed request for `to` (this node): headers, time and signature. Nothing is
/// remembered yet: the caller checks the key's role, then [`ReplayGuard::record`]s it.
pub fn verify_signed(
    to: &Audience,
    headers: &HeaderMap,
    method: &str,
    path_and_query: &str,
    body: &[u8],
    now_ms: u64,
) -> Result<Verified, ApiError> {
    let key = PublicKey::from_hex(header(headers, KEY_HEADER)?)
        .map_err(|_| unauthorized("bad_signature", "x-govchain-key is not a hex public key"))?;
    let time: u64 = header(headers, TIME_HEADER)?
        .parse()
        .map_err(|_| unauthorized("bad_signature", "x-govchain-time is not Unix milliseconds"))?;
    let sig_bytes = hex::decode(header(headers, SIGNATURE_HEADER)?)
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .ok_or_else(|| unauthorized("bad_signature", "x-govchain-signature is not 64 hex bytes"))?;
    let sig = Signature(sig_bytes);
    let nonce = match headers.get(NONCE_HEADER) {
        None => "",
        Some(v) => v
            .to_str()
            .ok()
            .filter(|n| {
                (1..=MAX_NONCE_CHARS).contains(&n.len())
                    && n.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
            .ok_or_else(|| {
                unauthorized(
                    "bad_signature",
                    format!("x-govchain-nonce must be 1-{MAX_NONCE_CHARS} of [A-Za-z0-9_-]"),
                )
            })?,
    };
    if time.abs_diff(now_ms) > MAX_SKEW_MS {
        return Err(stale());
    }
    let digest = request_digest(to, method, path_and_query, time, nonce, body);
    crypto::verify(&key, &digest, &sig).map_err(|_| {
        unauthorized(
            "bad_signature",
            "the request signature does not verify (signed for this node's chain_id and node_key?)",
        )
    })?;
    Ok(Verified {
        key,
        time_ms: time,
        digest,
    })
}

#[cfg(test)]
mod tests;
