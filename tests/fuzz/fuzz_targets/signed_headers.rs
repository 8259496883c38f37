//! Signed-request headers (R-SEC-7): any values of `x-govchain-key`, `-time`, `-signature` and
//! `-nonce` are refused with 401, never accepted and never a panic — a random signature does
//! not verify (and nothing is remembered before a signature verifies and its key's role is
//! checked).
#![no_main]

use axum::http::{HeaderMap, HeaderValue};
use govchain_api::auth::{
    verify_signed, Audience, KEY_HEADER, NONCE_HEADER, SIGNATURE_HEADER, TIME_HEADER,
};
use govchain_ledger::{ChainId, Keypair};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let to = Audience {
        chain_id: ChainId::new("fuzz-chain").expect("a valid chain id"),
        node: Keypair::from_seed([1; 32]).public(),
    };
    let mut parts = data.split(|b| *b == 0xff);
    let mut headers = HeaderMap::new();
    for name in [KEY_HEADER, TIME_HEADER, SIGNATURE_HEADER, NONCE_HEADER] {
        if let Some(v) = parts.next().and_then(|p| HeaderValue::from_bytes(p).ok()) {
            headers.insert(name, v);
        }
    }
    let body = parts.next().unwrap_or_default();
    let now = 1_800_000_000_000;
    let r = verify_signed(&to, &headers, "GET", "/api/v1/persons/1", body, now);
    assert!(r.is_err(), "fuzzed headers never verify: {headers:?}");
});
