//! Synchronization with department systems as the API sees it (R-SYN-1…3): the status and
//! history of this node's connectors, the records they refused (listed and retried), a manual
//! run, and the pull-through that refreshes a
//! person's records before a person file is answered. The connectors themselves live in the
//! node (`govchain-node`); the API reaches them through [`SyncService`].

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::Json;
use govchain_chaincode::access::{AuditAction, Role};
use govchain_ledger::Height;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::access::{audit, authenticate, Caller};
use crate::catalog::{param, params};
use crate::openapi::{
    DeadlineParam, HistoryLimitParam, PersonIdParam, SourceParam, BUSY, UNAUTHENTICATED,
};
use crate::{ApiContext, ApiError};

/// Longest deadline a pull-through may ask for.
pub const MAX_FRESH_DEADLINE_MS: u64 = 30_000;
/// Most runs one history request lists.
pub const MAX_HISTORY_RUNS: usize = 1_000;
/// Runs a history request lists when it names no `limit`.
pub const DEFAULT_HISTORY_RUNS: usize = 50;
/// Deadline of a pull-through that names none.
pub const DEFAULT_FRESH_DEADLINE_MS: u64 = 3_000;

/// The outcome of a pull-through.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Freshness {
    /// Sources refreshed from their systems in time (their changes are committed).
    pub refreshed: Vec<String>,
    /// Sources that could not be refreshed in time, with the reason; their data on chain may
    /// be older than the department system's.
    pub stale: Vec<StaleSource>,
    /// Height that holds the refreshed records (None: nothing changed).
    pub height: Option<u64>,
}

/// A source the pull-through could not refresh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaleSource {
    /// Data source id.
    pub source: String,
    /// Why.
    pub reason: String,
}

/// A boxed future, for the object-safe [`SyncService`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the node's connectors offer the API.
pub trait SyncService: Send + Sync + 'static {
    /// Every connector's status (health, cursor, queue, last run) as JSON.
    fn status(&self) -> Value;
    /// The latest runs of `source`, newest first (None: no connector for it).
    fn history(&self, source: &str, limit: usize) -> Option<Value>;
    /// Starts a run of `source` now; Err names why not (unknown source, already running).
    fn trigger(&self, source: &str) -> Result<(), String>;
    /// The refused records kept for `source`, newest first, with how many are kept and how
    /// many were dropped (None: no connector for it; Err: the outbox could not be read).
    fn rejected(&self, source: &str, limit: usize) -> Option<Result<Value, String>>;
    /// Validates the refused records of `source` again with the current catalog: those that
    /// pass are queued for the chain, the others keep the new reason; then starts a run (if
    /// none is in progress) so that fixes the department system made since come in too.
    fn retry_rejected(&self, source: &str) -> Option<Result<Value, String>>;
    /// Sources whose systems keep failing.
    fn unhealthy(&self) -> Vec<String>;
    /// The department owning `source` if this node runs its connector.
    fn department_of(&self, source: &str) -> Option<String>;
    /// Refreshes `person`'s records from every source this node connects, commits what
    /// changed, and reports within `deadline`.
    fn refresh_person<'a>(
        &'a self,
        person: &'a str,
        deadline: Duration,
    ) -> BoxFuture<'a, Freshness>;
}

fn service(ctx: &ApiContext) -> Result<&dyn SyncService, ApiError> {
    ctx.sync.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_connectors",
            "this node runs no connectors (no [[connectors]] in node.toml)",
        )
    })
}

/// Operators of synchronization: the system administrator, auditors (read only) and the
/// administrators of this node's department.
fn operator(caller: &Caller, ctx: &ApiContext, write: bool) -> bool {
    let dept_admin = caller
        .user
        .as_ref()
        .is_some_and(|u| u.has(Role::DepartmentAdmin) && u.department == ctx.department);
    caller.is_system_admin() || dept_admin || (!write && caller.is_auditor())
}

fn refused(ctx: &ApiContext, caller: &Caller, what: &str) -> ApiError {
    audit(
        ctx,
        caller.entry(AuditAction::Admin(what.to_string()), None, "forbidden"),
    );
    ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!("{what}: needs the system administrator or this department's administrator"),
    )
}

/// Authenticates an operator's call to `what` (a refusal is audited).
fn operator_caller(
    ctx: &ApiContext,
    headers: &HeaderMap,
    uri: &Uri,
    method: &str,
    what: &str,
    write: bool,
) -> Result<Caller, ApiError> {
    let caller = authenticate(ctx, headers, method, uri, b"")?;
    if !operator(&caller, ctx, write) {
        return Err(refused(ctx, &caller, what));
    }
    Ok(caller)
}

/// Audits an operator's call to `what` with its outcome.
fn audit_call(ctx: &ApiContext, caller: &Caller, what: String, outcome: &str) {
    audit(ctx, caller.entry(AuditAction::Admin(what), None, outcome));
}

/// `GET /api/v1/sync/status`: every connector of this node.
#[utoipa::path(get, path = "/api/v1/sync/status", operation_id = "sync_status", responses((status = 200, body = Object, description = "per source: health, consecutive failures, last error, cursor, records queued and in flight, last run"), (status = 400, description = "bad_consent"), (status = 401, description = UNAUTHENTICATED), (status = 403, description = "forbidden: not an operator (the system administrator, an auditor, this department's administrator); user_disabled"), (status = 404, description = "no_connectors: the node runs no connectors"), (status = 503, description = BUSY)))]
pub async fn status(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<Value>, ApiError> {
    let caller = operator_caller(&ctx, &headers, &uri, "GET", "sync status", false)?;
    let s = service(&ctx)?.status();
    audit_call(&ctx, &caller, "sync status".into(), "ok");
    Ok(Json(s))
}

/// `source` (required) and `limit` (history: 1..=[`MAX_HISTORY_RUNS`], default
/// [`DEFAULT_HISTORY_RUNS`]) of the query.
fn source_query(uri: &Uri, allowed: &[&str]) -> Result<(String, usize), ApiError> {
    let ps = params(uri, allowed)?;
    let source = param(&ps, "source")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad_request("bad_query", "source=ID is required"))?;
    let limit = match param(&ps, "limit") {
        None => DEFAULT_HISTORY_RUNS,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_HISTORY_RUNS).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request("bad_query", format!("limit={v:?}: 1-{MAX_HISTORY_RUNS}"))
            })?,
    };
    Ok((source.to_string(), limit))
}

/// `GET /api/v1/sync/history?source=ID`: the latest runs of one source.
#[utoipa::path(get, path = "/api/v1/sync/history", params(("source" = inline(SourceParam), Query, description = "data source id"), ("limit" = inline(Option<HistoryLimitParam>), Query, description = "most runs, default 50")), responses((status = 200, body = Object, description = "runs, newest first: trigger, start, end, pages, fetched, queued, unchanged, rejected, committed, errors, outcome"), (status = 400, description = "bad_query, bad_consent"), (status = 401, description = UNAUTHENTICATED), (status = 403, description = "forbidden: not an operator (the system administrator, an auditor, this department's administrator); user_disabled"), (status = 404, description = "no_connectors, or no connector for this source"), (status = 503, description = BUSY)))]
pub async fn history(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<Value>, ApiError> {
    let caller = operator_caller(&ctx, &headers, &uri, "GET", "sync history", false)?;
    let (source, limit) = source_query(&uri, &["source", "limit"])?;
    let h = service(&ctx)?.history(&source, limit).ok_or_else(|| {
        ApiError::not_found(format!("this node has no connector for source {source}"))
    })?;
    audit_call(&ctx, &caller, format!("sync history {source}"), "ok");
    Ok(Json(h))
}

/// `GET /api/v1/sync/rejected?source=ID`: the records of one source that failed validation
/// (R-SYN-3), newest first, with the reason, the time and the run; and how many are kept and
/// how many were dropped because the list was full.
#[utoipa::path(get, path = "/api/v1/sync/rejected", params(("source" = inline(SourceParam), Query, description = "data source id"), ("limit" = inline(Option<HistoryLimitParam>), Query, description = "most records listed, default 50")), responses((status = 200, body = Object, description = "kept (records in the list), dropped (oldest dropped because the list was full), keep (the cap) and records, newest first: key, seq, reason, refused_at, checked_at, run, checks, key_bytes, payload_bytes"), (status = 400, description = "bad_query: source missing, limit out of range or an unknown parameter; bad_consent"), (status = 401, description = UNAUTHENTICATED), (status = 403, description = "forbidden: not an operator (system administrator, auditor or this department's administrator); user_disabled"), (status = 404, description = "the node runs no connectors, or none for this source"), (status = 500, description = "the node's outbox could not be read"), (status = 503, description = BUSY)))]
pub async fn rejected(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<Value>, ApiError> {
    let caller = operator_caller(&ctx, &headers, &uri, "GET", "sync rejected", false)?;
    let (source, limit) = source_query(&uri, &["source", "limit"])?;
    let r = service(&ctx)?.rejected(&source, limit).ok_or_else(|| {
        ApiError::not_found(format!("this node has no connector for source {source}"))
    })?;
    let outcome = if r.is_ok() { "ok" } else { "error" };
    audit_call(&ctx, &caller, format!("sync rejected {source}"), outcome);
    Ok(Json(r.map_err(ApiError::internal)?))
}

/// `POST /api/v1/sync/rejected/retry?source=ID`: validates the refused records of one source
/// again with the current catalog; those that pass go to the chain, the others stay with the
/// new reason; then a run starts (unless one is in progress) to fetch what the department
/// system fixed since.
#[utoipa::path(post, path = "/api/v1/sync/rejected/retry", params(("source" = inline(SourceParam), Query, description = "data source id")), responses((status = 200, body = Object, description = "retry: the check as a run record (fetched = checked, resolved = passed, queued, unchanged, rejected = still refused); run_started: whether a run started"), (status = 400, description = "bad_query: source missing or an unknown parameter; bad_consent"), (status = 401, description = UNAUTHENTICATED), (status = 403, description = "forbidden: not the system administrator or this department's administrator; user_disabled"), (status = 404, description = "the node runs no connectors, or none for this source"), (status = 500, description = "the node's outbox could not be read or written"), (status = 503, description = BUSY)))]
pub async fn retry_rejected(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<Value>, ApiError> {
    let caller = operator_caller(&ctx, &headers, &uri, "POST", "sync retry-rejected", true)?;
    let (source, _) = source_query(&uri, &["source"])?;
    let r = service(&ctx)?.retry_rejected(&source).ok_or_else(|| {
        ApiError::not_found(format!("this node has no connector for source {source}"))
    })?;
    let outcome = if r.is_ok() { "ok" } else { "error" };
    audit_call(
        &ctx,
        &caller,
        format!("sync retry-rejected {source}"),
        outcome,
    );
    Ok(Json(r.map_err(ApiError::internal)?))
}

/// `POST /api/v1/sync/run?source=ID`: starts a run of one source now (outside its schedule).
#[utoipa::path(post, path = "/api/v1/sync/run", params(("source" = inline(SourceParam), Query, description = "data source id")), responses((status = 202, body = Object, description = "the run started"), (status = 400, description = "bad_query, bad_consent"), (status = 401, description = UNAUTHENTICATED), (status = 403, description = "forbidden: not the system administrator or this department's administrator; user_disabled"), (status = 404, description = "no_connectors, or no connector for this source"), (status = 409, description = "sync_running: a run of this source is in progress"), (status = 503, description = BUSY)))]
pub async fn run(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let caller = operator_caller(&ctx, &headers, &uri, "POST", "sync run", true)?;
    let (source, _) = source_query(&uri, &["source"])?;
    let svc = service(&ctx)?;
    if svc.department_of(&source).is_none() {
        return Err(ApiError::not_found(format!(
            "this node has no connector for source {source}"
        )));
    }
    let r = svc.trigger(&source);
    let outcome = if r.is_ok() { "ok" } else { "conflict" };
    audit_call(&ctx, &caller, format!("sync run {source}"), outcome);
    match r {
        Ok(()) => Ok((
            StatusCode::ACCEPTED,
            Json(serde_json::json!({"source": source, "started": true})),
        )),
        Err(e) => Err(ApiError::new(StatusCode::CONFLICT, "sync_running", e)),
    }
}

/// `POST /api/v1/sync/pull?person=ID&deadline_ms=N`: another department's node asks this one
/// to refresh a person's records from this department's systems (its part of a pull-through,
/// R-SYN-2). Signed with that node's key; answers what was refreshed and at which height.
#[utoipa::path(post, path = "/api/v1/sync/pull", security(("signed_key" = [], "signed_time" = [], "signed_signature" = [])), params(("person" = inline(PersonIdParam), Query, description = "18-digit national ID"), ("deadline_ms" = inline(Option<DeadlineParam>), Query, description = "default 3000")), responses((status = 200, body = Object, description = "refreshed and stale sources, and the height holding the refreshed records"), (status = 400, description = "bad_person_id, bad_query: bad person id or deadline"), (status = 401, description = "unauthenticated, bad_signature, stale_request, replayed_request"), (status = 403, description = "forbidden: not a department node's key"), (status = 503, description = BUSY)))]
pub async fn pull(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<Freshness>, ApiError> {
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let now = crate::routes::now_ms().0;
    // Verify, check the role, then remember (an unregistered key never takes replay room).
    let signed = crate::auth::verify_signed(&ctx.audience(), &headers, "POST", path, b"", now)?;
    let asker = match govchain_chaincode::auth::role_of(&ctx.store, &signed.key)
        .map_err(ApiError::internal)?
    {
        Some(govchain_chaincode::auth::KeyRole::DepartmentNode(d)) => d,
        _ => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "only departments' nodes ask for a pull-through",
            ))
        }
    };
    ctx.replay.record(signed, now)?;
    let ps = params(&uri, &["person", "deadline_ms"])?;
    let person = crate::matters::person(param(&ps, "person").unwrap_or_default())?;
    let deadline_ms = deadline(param(&ps, "deadline_ms"))?;
    tracing::debug!(target: "api.sync", asker = %asker, "pull-through for another department");
    let f = match ctx.sync.as_deref() {
        Some(svc) => {
            svc.refresh_person(person.as_str(), Duration::from_millis(deadline_ms))
                .await
        }
        None => Freshness::default(),
    };
    Ok(Json(f))
}

/// A `deadline_ms` parameter: 1..=[`MAX_FRESH_DEADLINE_MS`], default
/// [`DEFAULT_FRESH_DEADLINE_MS`].
pub fn deadline(v: Option<&str>) -> Result<u64, ApiError> {
    match v {
        None => Ok(DEFAULT_FRESH_DEADLINE_MS),
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|n| (1..=MAX_FRESH_DEADLINE_MS).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "bad_query",
                    format!("deadline_ms={v:?}: 1-{MAX_FRESH_DEADLINE_MS} ms"),
                )
            }),
    }
}

/// The audience of requests to the node at `base` (its chain id and node key, from its
/// status; remembered per peer). A peer on another chain is refused.
async fn peer_audience(
    ctx: &ApiContext,
    http: &reqwest::Client,
    base: &str,
    timeout: Duration,
) -> Result<crate::auth::Audience, String> {
    let signer = ctx
        .security
        .signer
        .as_ref()
        .ok_or("this node has no signing key")?;
    if let Some(a) = signer.peer(base) {
        return Ok(a);
    }
    let status: serde_json::Value = http
        .get(format!("{base}/api/v1/status"))
        .timeout(timeout)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| format!("reading its status: {e}"))?
        .json()
        .await
        .map_err(|e| format!("reading its status: {e}"))?;
    let a = crate::auth::Audience::from_status(&status)?;
    if a.chain_id != ctx.chain_id {
        return Err(format!(
            "it is on chain {}, this node on {}",
            a.chain_id, ctx.chain_id
        ));
    }
    signer.learn_peer(base, a.clone());
    Ok(a)
}

/// Asks another department's node to refresh `person` (its part of the pull-through).
async fn ask_peer(
    ctx: &ApiContext,
    peer: &str,
    person: &str,
    deadline_ms: u64,
) -> Result<Freshness, String> {
    let signer = ctx
        .security
        .signer
        .as_ref()
        .ok_or("this node has no signing key")?;
    let path = format!("/api/v1/sync/pull?person={person}&deadline_ms={deadline_ms}");
    let base = peer.trim_end_matches('/');
    let http = &ctx.peer_http;
    let timeout = Duration::from_millis(deadline_ms + 500);
    let to = peer_audience(ctx, http, base, timeout).await?;
    let now = crate::routes::now_ms().0;
    let mut req = http.post(format!("{base}{path}")).timeout(timeout);
    for (k, v) in signer.sign_request(&to, "POST", &path, now, b"") {
        req = req.header(k, v);
    }
    let resp = req.send().await.map_err(|e| e.to_string())?;
    let status = resp.status();
    if status == StatusCode::UNAUTHORIZED {
        // Its node key may have changed: learn it again next time.
        signer.forget_peer(base);
    }
    if !status.is_success() {
        return Err(format!("answered {status}"));
    }
    resp.json::<Freshness>().await.map_err(|e| e.to_string())
}

/// A pull-through ahead of a person file: refreshes the person's records from this node's
/// connectors and, through the other departments' nodes, from theirs; then waits (within the
/// same deadline) until this node's chain and projection hold every refreshed height.
pub async fn pull_through(ctx: &ApiContext, person: &str, deadline_ms: u64) -> Freshness {
    let until = tokio::time::Instant::now() + Duration::from_millis(deadline_ms);
    let local = async {
        match ctx.sync.as_deref() {
            Some(svc) => {
                svc.refresh_person(person, Duration::from_millis(deadline_ms))
                    .await
            }
            None => Freshness::default(),
        }
    };
    let remote = futures::future::join_all(
        ctx.sync_peers
            .iter()
            .map(|peer| async move { (peer, ask_peer(ctx, peer, person, deadline_ms).await) }),
    );
    let (mut f, answers) = tokio::join!(local, remote);
    for (peer, answer) in answers {
        match answer {
            Ok(r) => {
                f.refreshed.extend(r.refreshed);
                f.stale.extend(r.stale);
                f.height = f.height.max(r.height);
            }
            Err(reason) => f.stale.push(StaleSource {
                source: format!("sources of the node at {peer}"),
                reason,
            }),
        }
    }
    if let (Some(h), Some(p)) = (f.height, &ctx.projection) {
        // The file is read from this node's projection: wait until it has the refreshed block.
        loop {
            match p.cursor().await {
                Ok(Some((at, _))) if at >= Height(h) => break,
                Err(e) => {
                    tracing::warn!(target: "api.sync", error = %e, "reading the projection cursor");
                }
                _ => {}
            }
            if tokio::time::Instant::now() >= until {
                let refreshed = std::mem::take(&mut f.refreshed);
                f.stale
                    .extend(refreshed.into_iter().map(|source| StaleSource {
                        source,
                        reason: format!(
                            "committed at height {h}, not yet in this node's SQL projection"
                        ),
                    }));
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    f.refreshed.sort();
    f
}
