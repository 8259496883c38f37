//! Unit tests of signed requests: the digest's audience binding, the per-key replay sets and
//! their caps, and the order verify → role → record in [`crate::access::authenticate`]
//! (issue 15, finding 5; R-SEC-7).

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Uri};
use govchain_chaincode::auth::KeyRole;
use govchain_ledger::state::WriteSet;
use govchain_ledger::{Height, Store, Tip};

use super::*;

fn audience(chain: &str, node: u8) -> Audience {
    Audience {
        chain_id: ChainId::new(chain).unwrap(),
        node: Keypair::from_seed([node; 32]).public(),
    }
}

fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(
            HeaderName::from_static(k),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn verified(key: u8, time_ms: u64, n: u8) -> Verified {
    Verified {
        key: Keypair::from_seed([key; 32]).public(),
        time_ms,
        digest: Hash([n; 32]),
    }
}

#[test]
fn the_digest_binds_chain_node_method_path_time_nonce_and_body() {
    let a = audience("c1", 1);
    let d = request_digest(&a, "GET", "/api/v1/persons/1", 5, "", b"");
    for other in [
        request_digest(&audience("c2", 1), "GET", "/api/v1/persons/1", 5, "", b""),
        request_digest(&audience("c1", 2), "GET", "/api/v1/persons/1", 5, "", b""),
        request_digest(&a, "POST", "/api/v1/persons/1", 5, "", b""),
        request_digest(&a, "GET", "/api/v1/persons/2", 5, "", b""),
        request_digest(&a, "GET", "/api/v1/persons/1", 6, "", b""),
        request_digest(&a, "GET", "/api/v1/persons/1", 5, "n1", b""),
        request_digest(&a, "GET", "/api/v1/persons/1", 5, "", b"x"),
    ] {
        assert_ne!(d, other);
    }
}

#[test]
fn finding_5_a_request_signed_for_one_node_is_refused_at_another_and_on_another_chain() {
    let key = Keypair::from_seed([9; 32]);
    let (node_a, node_b, other_chain) = (audience("c1", 1), audience("c1", 2), audience("c2", 1));
    let h = headers(&sign_request(
        &key,
        &node_a,
        "GET",
        "/api/v1/me",
        1_000,
        b"",
    ));
    let v = verify_signed(&node_a, &h, "GET", "/api/v1/me", b"", 1_000).unwrap();
    assert_eq!(v.key, key.public());
    for elsewhere in [&node_b, &other_chain] {
        let e = verify_signed(elsewhere, &h, "GET", "/api/v1/me", b"", 1_000).unwrap_err();
        assert_eq!((e.status.as_u16(), e.code), (401, "bad_signature"));
    }
    // And with a nonce.
    let h = headers(&sign_request_with_nonce(
        &key,
        &node_a,
        "POST",
        "/api/v1/sync/pull?person=1",
        1_000,
        "n-1",
        b"",
    ));
    assert!(verify_signed(
        &node_a,
        &h,
        "POST",
        "/api/v1/sync/pull?person=1",
        b"",
        1_000
    )
    .is_ok());
    assert!(verify_signed(
        &node_b,
        &h,
        "POST",
        "/api/v1/sync/pull?person=1",
        b"",
        1_000
    )
    .is_err());
}

#[test]
fn a_request_is_accepted_once_while_its_time_is_acceptable_and_forgotten_after() {
    let g = ReplayGuard::default();
    let v = verified(1, 10_000, 7);
    assert_eq!(g.first_use(&v, 10_000), Use::First);
    assert_eq!(g.first_use(&v, 10_001), Use::Replayed);
    assert_eq!(g.first_use(&verified(1, 10_000, 8), 10_001), Use::First);
    // Still remembered at the edge of its acceptable time; refused as stale after it.
    assert_eq!(g.first_use(&v, 10_000 + MAX_SKEW_MS), Use::Replayed);
    assert_eq!(g.first_use(&v, 10_001 + MAX_SKEW_MS), Use::Stale);
    // A clock that steps back does not bring a forgotten request back.
    assert_eq!(g.first_use(&v, 10_000), Use::Stale);
    // The key's next request drops what aged out.
    let later = 10_001 + MAX_SKEW_MS;
    assert_eq!(g.first_use(&verified(1, later, 9), 10_000), Use::First);
    let s = g.seen.lock().unwrap();
    assert_eq!(
        s.keys.values().map(BTreeSet::len).sum::<usize>(),
        1,
        "expired entries are dropped"
    );
}

#[test]
fn finding_5_each_key_has_its_own_set_capped_at_the_limit() {
    const PER_KEY: usize = 3;
    let g = ReplayGuard::with_caps(PER_KEY, 4);
    for n in 0..PER_KEY as u8 {
        assert_eq!(g.first_use(&verified(1, 1_000, n), 1_000), Use::First);
    }
    // Limit + 1: this key is refused (503), another key is not.
    assert_eq!(g.first_use(&verified(1, 1_000, 99), 1_000), Use::KeyFull);
    let e = g.record(verified(1, 1_000, 98), 1_000).unwrap_err();
    assert_eq!((e.status.as_u16(), e.code), (503, "busy"));
    assert_eq!(g.first_use(&verified(2, 1_000, 99), 1_000), Use::First);
    // A full key is still protected against replays of what it remembers.
    assert_eq!(g.first_use(&verified(1, 1_000, 0), 1_000), Use::Replayed);
    // Once its requests age out, the key is served again.
    let later = 1_001 + MAX_SKEW_MS;
    assert_eq!(g.first_use(&verified(1, later, 99), later), Use::First);
}

#[test]
fn finding_5_the_table_of_keys_is_capped_at_the_limit_and_frees_idle_keys() {
    const KEYS: usize = 2;
    let g = ReplayGuard::with_caps(10, KEYS);
    for k in 0..KEYS as u8 {
        assert_eq!(g.first_use(&verified(k, 1_000, 0), 1_000), Use::First);
    }
    assert_eq!(g.first_use(&verified(9, 1_000, 0), 1_000), Use::KeysFull);
    // Known keys go on.
    assert_eq!(g.first_use(&verified(0, 1_000, 1), 1_000), Use::First);
    // Keys whose requests all aged out make room.
    let later = 1_001 + MAX_SKEW_MS;
    assert_eq!(g.first_use(&verified(9, later, 0), later), Use::First);
    assert_eq!(g.seen.lock().unwrap().keys.len(), 1);
}

/// A context over a scratch store where `admin` is the system administrator.
fn context(dir: &std::path::Path, admin: &Keypair, replay: ReplayGuard) -> crate::ApiContext {
    let store = Store::open(dir).unwrap();
    let mut w = WriteSet::default();
    w.put(
        govchain_chaincode::keys::key_role(&admin.public()),
        govchain_ledger::codec::encode_infallible(&KeyRole::SystemAdmin),
    );
    store.put_state_unchecked(&w).unwrap();
    let (submit, _) = tokio::sync::mpsc::channel(1);
    let (_, tip) = tokio::sync::watch::channel(Tip {
        height: Height(0),
        block_hash: Hash([0; 32]),
        app_hash: Hash([0; 32]),
    });
    crate::ApiContext {
        chain_id: ChainId::new("c1").unwrap(),
        node_key: Keypair::from_seed([1; 32]).public(),
        department: "gaj".into(),
        store,
        submit,
        tip,
        mempool_len: Arc::new(AtomicUsize::new(0)),
        commit_wait: Duration::from_secs(1),
        max_body_bytes: 1 << 20,
        projection: None,
        replay,
        security: Arc::new(crate::security::Security::new(
            Duration::from_secs(60),
            crate::security::Notifier::File("/dev/null".into()),
            None,
            None,
        )),
        read_limits: Default::default(),
        sync: None,
        sync_peers: Arc::new(Vec::new()),
        peer_http: reqwest::Client::new(),
        consent_phone_source: "gaj.hjxx".into(),
    }
}

/// Finding 5: an unregistered key's valid signatures are refused (403) before the replay
/// guard remembers them, so however many it sends, a registered key is still served; the
/// registered key's replay is still refused.
#[test]
fn finding_5_an_unregistered_key_never_takes_room_from_a_registered_one() {
    let dir = tempfile::tempdir().unwrap();
    let admin = Keypair::from_seed([5; 32]);
    // One key slot, two requests per key: a single remembered stranger would be enough to
    // refuse the administrator.
    let ctx = context(dir.path(), &admin, ReplayGuard::with_caps(2, 1));
    let to = ctx.audience();
    let uri: Uri = "/api/v1/me".parse().unwrap();
    let now = crate::routes::now_ms().0;
    for i in 0..50u8 {
        let stranger = Keypair::from_seed([100 + i; 32]);
        for n in 0..3 {
            let h = headers(&sign_request_with_nonce(
                &stranger,
                &to,
                "GET",
                "/api/v1/me",
                now,
                &format!("n{n}"),
                b"",
            ));
            let e = crate::access::authenticate(&ctx, &h, "GET", &uri, b"").unwrap_err();
            assert_eq!((e.status.as_u16(), e.code), (403, "forbidden"));
        }
    }
    assert!(ctx.replay.seen.lock().unwrap().keys.is_empty());
    let h = headers(&sign_request(&admin, &to, "GET", "/api/v1/me", now, b""));
    let caller = crate::access::authenticate(&ctx, &h, "GET", &uri, b"").unwrap();
    assert!(caller.is_system_admin());
    let e = crate::access::authenticate(&ctx, &h, "GET", &uri, b"").unwrap_err();
    assert_eq!((e.status.as_u16(), e.code), (401, "replayed_request"));
}
