//! Signed requests of key-holders (R-SEC-7; DESIGN §7): the genesis system administrator and
//! registered system accounts (department and approval systems). Staff use sessions instead
//! ([`crate::access`]).
//!
//! A request carries three headers: `x-govchain-key` (hex public key), `x-govchain-time` (Unix
//! ms), `x-govchain-signature` (hex ed25519 signature over [`request_digest`]) and optionally
//! `x-govchain-nonce` (so identical requests in one millisecond differ). The node
//! refuses a missing or malformed header, a time more than [`MAX_SKEW_MS`] from its clock, a
//! signature that does not verify, a signature it has already seen (replay), and a key that is
//! not registered (the last in [`crate::access::authenticate`]).

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use govchain_ledger::hash::{hash_parts, Domain};
use govchain_ledger::{crypto, Hash, Keypair, PublicKey, Signature};

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

/// What a system account signs: method, path with query, time, nonce (empty when absent) and
/// the body's hash.
pub fn request_digest(
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

/// The three headers of a request signed by `key` at `time_ms` (no nonce).
pub fn sign_request(
    key: &Keypair,
    method: &str,
    path_and_query: &str,
    time_ms: u64,
    body: &[u8],
) -> [(&'static str, String); 3] {
    let sig = key.sign(&request_digest(method, path_and_query, time_ms, "", body));
    [
        (KEY_HEADER, key.public().to_hex()),
        (TIME_HEADER, time_ms.to_string()),
        (SIGNATURE_HEADER, hex::encode(sig.0)),
    ]
}

/// The four headers of a request signed by `key` at `time_ms` with `nonce`.
pub fn sign_request_with_nonce(
    key: &Keypair,
    method: &str,
    path_and_query: &str,
    time_ms: u64,
    nonce: &str,
    body: &[u8],
) -> [(&'static str, String); 4] {
    let sig = key.sign(&request_digest(
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

/// Most signatures remembered (the signed requests of twice the skew window): 2,000,000 is
/// ~3,300 signed requests per second sustained. Beyond it, signed requests are refused with
/// 503 until old ones age out, never accepted unchecked.
pub const MAX_REMEMBERED_SIGNATURES: usize = 2_000_000;

/// Signatures seen within twice the skew window (a replayed request is refused). Entries are
/// kept in arrival order and expire from the front, so each request costs O(1).
#[derive(Debug, Clone, Default)]
pub struct ReplayGuard {
    seen: Arc<Mutex<Seen>>,
}

#[derive(Debug, Default)]
struct Seen {
    set: HashSet<[u8; 64]>,
    order: VecDeque<(u64, [u8; 64])>,
}

/// What the guard says about a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    First,
    Replayed,
    Full,
}

impl ReplayGuard {
    /// Records `sig` at `now_ms` (the node's clock).
    fn first_use(&self, sig: &Signature, now_ms: u64) -> Use {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((t, old)) = seen.order.front().copied() {
            if now_ms.saturating_sub(t) <= 2 * MAX_SKEW_MS {
                break;
            }
            seen.order.pop_front();
            seen.set.remove(&old);
        }
        if seen.set.contains(&sig.0) {
            return Use::Replayed;
        }
        if seen.set.len() >= MAX_REMEMBERED_SIGNATURES {
            return Use::Full;
        }
        seen.set.insert(sig.0);
        seen.order.push_back((now_ms, sig.0));
        Use::First
    }
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

/// Checks a signed request; returns its signer.
pub fn verify_signed(
    replay: &ReplayGuard,
    headers: &HeaderMap,
    method: &str,
    path_and_query: &str,
    body: &[u8],
    now_ms: u64,
) -> Result<PublicKey, ApiError> {
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
        return Err(unauthorized(
            "stale_request",
            format!(
                "request time is more than {} s from the node's clock",
                MAX_SKEW_MS / 1000
            ),
        ));
    }
    crypto::verify(
        &key,
        &request_digest(method, path_and_query, time, nonce, body),
        &sig,
    )
    .map_err(|_| unauthorized("bad_signature", "the request signature does not verify"))?;
    match replay.first_use(&sig, now_ms) {
        Use::First => {}
        Use::Replayed => {
            return Err(unauthorized(
                "replayed_request",
                "this signed request was already used",
            ))
        }
        Use::Full => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "too many signed requests in the replay window; retry later",
            ))
        }
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_binds_method_path_time_and_body() {
        let d = request_digest("GET", "/api/v1/persons/1", 5, "", b"");
        for other in [
            request_digest("POST", "/api/v1/persons/1", 5, "", b""),
            request_digest("GET", "/api/v1/persons/2", 5, "", b""),
            request_digest("GET", "/api/v1/persons/1", 6, "", b""),
            request_digest("GET", "/api/v1/persons/1", 5, "n1", b""),
            request_digest("GET", "/api/v1/persons/1", 5, "", b"x"),
        ] {
            assert_ne!(d, other);
        }
    }

    #[test]
    fn a_signature_is_accepted_once_within_the_window_and_forgotten_after() {
        let g = ReplayGuard::default();
        let s = Signature([7; 64]);
        assert_eq!(g.first_use(&s, 1), Use::First);
        assert_eq!(g.first_use(&s, 2), Use::Replayed);
        assert_eq!(g.first_use(&Signature([8; 64]), 2), Use::First);
        // Still remembered at the edge of the window (its time check refuses it after).
        assert_eq!(g.first_use(&s, 1 + 2 * MAX_SKEW_MS), Use::Replayed);
        assert_eq!(g.first_use(&s, 2 + 2 * MAX_SKEW_MS), Use::First);
        assert_eq!(
            g.seen.lock().unwrap().set.len(),
            2,
            "expired entries are dropped"
        );
    }
}
