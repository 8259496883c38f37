//! The whole HTTP API in-process (R-QRY-6, R-SEC-3…7): any method, path, query, headers and
//! body — JSON bodies of login, consents, passwords, sync pulls; transaction bytes; signed
//! requests, correctly signed by the system administrator when the input says so, to reach
//! the handlers' deeper parsing — is answered with a status below 500 (or a documented 503)
//! and the `{error: {code, message}}` shape on refusals; never a panic, never a 500.
//!
//! The node behind the router is real: a genesis written by `govchain genesis`'s own code, the
//! RocksDB store, the SQLite projection, the node-local security state; only consensus is
//! absent (admitted transactions are answered "pending").
#![no_main]

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arbitrary::Arbitrary;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use govchain_api::projection::Projection;
use govchain_api::security::{NodeSigner, Notifier, Security};
use govchain_api::{ApiContext, Submission};
use govchain_genesis::GenerateOptions;
use govchain_ledger::{ChainId, Keypair, Store, TimestampMs};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

struct Harness {
    rt: tokio::runtime::Runtime,
    router: axum::Router,
    security: govchain_api::security::SecurityRef,
    admin: Keypair,
    /// What requests signed for the harness's node name.
    to: govchain_api::auth::Audience,
    person: String,
}

const ROUTES: &[&str] = &[
    "status",
    "txs",
    "txs/{}",
    "blocks/{}",
    "persons/{}",
    "persons/{}/accesses",
    "persons/{}/matters/{}",
    "persons/{}/categories/{}",
    "search",
    "records",
    "records/export",
    "matters",
    "matters/{}",
    "matters/{}/materials",
    "matters/{}/extract",
    "categories",
    "categories/{}",
    "categories/{}/export",
    "queries",
    "queries/run",
    "catalog/changes",
    "login",
    "logout",
    "me",
    "users/{}",
    "users/{}/password",
    "consents/request",
    "consents/verify",
    "audit",
    "audit/export",
    "audit/proof",
    "metrics",
    "sync/status",
    "sync/history",
    "sync/run",
    "sync/pull",
    "sync/rejected",
    "sync/rejected/retry",
    "openapi.json",
];
const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE"];
const HEADERS: &[&str] = &[
    "authorization",
    "content-type",
    "x-govchain-key",
    "x-govchain-time",
    "x-govchain-signature",
    "x-govchain-nonce",
    "x-govchain-consent",
];

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let dir = Box::leak(Box::new(tempfile::tempdir().expect("tempdir")));
        let doc = govchain_genesis::generate(
            &GenerateOptions {
                departments: 1,
                chain_id: ChainId::new("fuzz-chain").expect("chain id"),
                genesis_time: TimestampMs(1),
                base_port: 20_000,
            },
            dir.path(),
        )
        .expect("genesis");
        let store = Store::open(&dir.path().join("data")).expect("store");
        let state = govchain_node::chain::ChainState::load(&store, &doc).expect("genesis state");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let ctx = rt.block_on(async {
            let projection = Projection::open(&format!(
                "sqlite://{}",
                dir.path().join("projection.sqlite").display()
            ))
            .await
            .expect("projection");
            let genesis = store.genesis_hash().expect("read").expect("genesis hash");
            projection.init(genesis, &doc.sources).await.expect("init");
            let (submit, mut rx) = tokio::sync::mpsc::channel::<Submission>(64);
            tokio::spawn(async move {
                // Admitted, never committed: there is no consensus here.
                while let Some(s) = rx.recv().await {
                    let _ = s.reply.send(Ok(()));
                }
            });
            let node_key = Keypair::read_file(&dir.path().join("node-1/node.key")).expect("key");
            let (_tip_tx, tip) = tokio::sync::watch::channel(state.tip);
            std::mem::forget(_tip_tx);
            ApiContext {
                chain_id: state.chain_id.clone(),
                node_key: node_key.public(),
                department: "gaj".into(),
                store: store.clone(),
                submit,
                tip,
                mempool_len: Arc::new(AtomicUsize::new(0)),
                commit_wait: Duration::from_millis(10),
                max_body_bytes: 64 * 1024,
                projection: Some(projection),
                replay: Default::default(),
                security: Arc::new(Security::new(
                    Duration::from_secs(60),
                    Notifier::File(dir.path().join("sms.jsonl")),
                    Some(NodeSigner::new(node_key, state.chain_id.clone(), 1)),
                    Some(store.clone()),
                )),
                read_limits: Default::default(),
                sync: None,
                sync_peers: Arc::new(Vec::new()),
                peer_http: govchain_api::tls::client_builder(None)
                    .expect("client")
                    .build()
                    .expect("client"),
                consent_phone_source: "gaj.hjxx".into(),
            }
        });
        Harness {
            rt,
            security: ctx.security.clone(),
            to: ctx.audience(),
            router: govchain_api::router(ctx),
            admin: Keypair::read_file(&dir.path().join("keys/sysadmin.key")).expect("admin"),
            person: govchain_node::synth::person(1, 0).id,
        }
    })
}

#[derive(Arbitrary, Debug)]
struct Input {
    method: u8,
    route: u8,
    /// The client's IPv4 address (the login throttle keys on it).
    client: u32,
    /// Path segments for the route's `{}`; empty means a real person id.
    segments: Vec<String>,
    query: String,
    headers: Vec<(u8, Vec<u8>)>,
    /// Sign the request as the system administrator (reaches the handlers' own parsing).
    sign: bool,
    body: Vec<u8>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fuzz_target!(|input: Input| {
    let h = harness();
    let method = METHODS[input.method as usize % METHODS.len()];
    let mut segments = input.segments.iter();
    let mut path = String::from("/api/v1/");
    for (i, part) in ROUTES[input.route as usize % ROUTES.len()]
        .split("{}")
        .enumerate()
    {
        if i > 0 {
            let seg = segments.next().cloned().unwrap_or_else(|| h.person.clone());
            path.extend(
                seg.chars()
                    .filter(|c| !c.is_control() && !"/?#% ".contains(*c)),
            );
        }
        path.push_str(part);
    }
    if !input.query.is_empty() {
        path.push('?');
        path.extend(
            input
                .query
                .chars()
                .filter(|c| c.is_ascii_graphic() && *c != '#'),
        );
    }
    let mut req = Request::builder().method(method).uri(&path);
    for (name, value) in &input.headers {
        if let Ok(v) = axum::http::HeaderValue::from_bytes(value) {
            req = req.header(HEADERS[*name as usize % HEADERS.len()], v);
        }
    }
    if input.sign {
        for (k, v) in
            govchain_api::auth::sign_request(&h.admin, &h.to, method, &path, now_ms(), &input.body)
        {
            req = req.header(k, v);
        }
    }
    let Ok(mut req) = req.body(Body::from(input.body.clone())) else {
        return; // not a valid HTTP request at all (the server would never see it)
    };
    let client = std::net::SocketAddr::from((input.client.to_be_bytes(), 40_000));
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(client));
    let resp =
        h.rt.block_on(h.router.clone().oneshot(req))
            .expect("infallible");
    // No chain takes the audit batches here: drop them, so reads never fail closed.
    h.security
        .audit
        .take_batch(TimestampMs(now_ms()), usize::MAX, usize::MAX);
    let status = resp.status();
    assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "{method} {path}");
    if status.is_client_error() || status.is_server_error() {
        let body =
            h.rt.block_on(axum::body::to_bytes(resp.into_body(), 1 << 20))
                .expect("body");
        let v: serde_json::Value = serde_json::from_slice(&body)
            .unwrap_or_else(|_| panic!("{method} {path}: {status} is not JSON: {body:?}"));
        assert!(v["error"]["code"].is_string(), "{method} {path}: {v}");
    }
});
