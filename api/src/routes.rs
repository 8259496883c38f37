//! The routes of `/api/v1` for the chain: status, transaction submission and look-up (with
//! Merkle inclusion proof), blocks with their commit certificates.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use govchain_chaincode::access::AuditAction;
use govchain_chaincode::exec::execute_tx;
use govchain_chaincode::{BlockContext, TxError, TxKind};
use govchain_ledger::state::Overlay;
use govchain_ledger::{merkle, CodecError, Hash, Height, SignedTx, TimestampMs};
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::access::{chain_reader, ChainReader};
use crate::openapi::Complete;
use crate::{ApiContext, ApiError, CommitNotice, Submission};

/// The API router.
pub fn router(ctx: ApiContext) -> Router {
    let limit = ctx.max_body_bytes;
    Router::new()
        .route("/api/v1/status", get(status))
        .route("/api/v1/txs", post(submit_tx))
        .route("/api/v1/txs/{id}", get(get_tx))
        .route("/api/v1/blocks/{height}", get(get_block))
        .route("/api/v1/persons/{id}", get(crate::query::person_file))
        .route("/api/v1/search", get(crate::search::search))
        .route("/api/v1/records", get(crate::query::records))
        .route("/api/v1/records/export", get(crate::query::export))
        .route("/api/v1/matters", get(crate::catalog::list_matters))
        .route("/api/v1/matters/{id}", get(crate::catalog::get_matter))
        .route(
            "/api/v1/matters/{id}/materials",
            get(crate::catalog::list_materials),
        )
        .route("/api/v1/matters/{id}/extract", get(crate::matters::extract))
        .route(
            "/api/v1/persons/{id}/matters/{matter}",
            get(crate::matters::matter_file),
        )
        .route("/api/v1/categories", get(crate::catalog::list_categories))
        .route("/api/v1/categories/{id}", get(crate::catalog::get_category))
        .route(
            "/api/v1/categories/{id}/export",
            get(crate::shaping::export),
        )
        .route(
            "/api/v1/persons/{id}/categories/{cat}",
            get(crate::shaping::person_summary),
        )
        .route("/api/v1/queries", get(crate::catalog::list_queries))
        .route("/api/v1/queries/run", get(crate::shaping::run_query))
        .route("/api/v1/catalog/changes", get(crate::catalog::list_changes))
        .route(
            "/api/v1/login",
            post(crate::session::login)
                .layer(DefaultBodyLimit::max(crate::session::LOGIN_MAX_BODY_BYTES)),
        )
        .route("/api/v1/logout", post(crate::session::logout))
        .route("/api/v1/me", get(crate::session::me))
        .route("/api/v1/users/{id}", get(crate::session::get_user))
        .route(
            "/api/v1/users/{id}/password",
            axum::routing::put(crate::session::set_password),
        )
        .route(
            "/api/v1/consents/request",
            post(crate::consent::request_code),
        )
        .route("/api/v1/consents/verify", post(crate::consent::verify_code))
        .route("/api/v1/audit", get(crate::audit::search))
        .route("/api/v1/audit/export", get(crate::audit::export))
        .route("/api/v1/audit/proof", get(crate::audit::proof))
        .route(
            "/api/v1/persons/{id}/accesses",
            get(crate::audit::person_accesses),
        )
        .route("/api/v1/metrics", get(crate::metrics::metrics))
        .route("/api/v1/sync/status", get(crate::sync::status))
        .route("/api/v1/sync/history", get(crate::sync::history))
        .route("/api/v1/sync/rejected", get(crate::sync::rejected))
        .route(
            "/api/v1/sync/rejected/retry",
            post(crate::sync::retry_rejected),
        )
        .route("/api/v1/sync/run", post(crate::sync::run))
        .route("/api/v1/sync/pull", post(crate::sync::pull))
        .route("/api/v1/openapi.json", get(openapi))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(axum::middleware::map_response(error_shape))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(ctx)
}

/// Gives every refusal the API's error shape: axum's own rejections (a query string or JSON
/// body that does not deserialize, a body over the limit, a wrong method) answer plain text or
/// nothing; they become `{"error": {"code", "message"}}` with the same status and headers.
/// (Found by the `api_request` fuzz target.)
async fn error_shape(resp: Response) -> Response {
    let status = resp.status();
    let json = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if json || !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, MAX_REJECTION_TEXT_BYTES)
        .await
        .unwrap_or_default();
    let message = match String::from_utf8_lossy(&text).trim() {
        "" => status.canonical_reason().unwrap_or("refused").to_string(),
        t => t.to_string(),
    };
    let code = match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "unprocessable",
        _ => "refused",
    };
    let shaped = ApiError::new(status, code, message).into_response();
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    parts.headers.remove(axum::http::header::CONTENT_TYPE);
    let (shaped_parts, body) = shaped.into_parts();
    parts.headers.extend(shaped_parts.headers);
    Response::from_parts(parts, body)
}

/// Most bytes of an axum rejection's text kept in the error message.
const MAX_REJECTION_TEXT_BYTES: usize = 4096;

/// The OpenAPI document of every endpoint.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "govchain node API",
        description = "Chain, projection queries and exports of a govchain node (DESIGN §7). Personal-data endpoints need a staff session (Authorization: Bearer, from /api/v1/login) or a request signed by a registered key (headers x-govchain-key, x-govchain-time, x-govchain-signature, optionally x-govchain-nonce; the signature covers chain_id and node_key from /api/v1/status, method, path and query, time, nonce and the body's blake3 hash); person and matter files need a consent id in x-govchain-consent. Every access is audited on chain."
    ),
    modifiers(&Complete),
    security(("bearer" = []), ("signed_key" = [], "signed_time" = [], "signed_signature" = [])),
    paths(
        status,
        submit_tx,
        get_tx,
        get_block,
        crate::query::person_file,
        crate::search::search,
        crate::query::records,
        crate::query::export,
        crate::catalog::list_matters,
        crate::catalog::get_matter,
        crate::catalog::list_materials,
        crate::matters::extract,
        crate::matters::matter_file,
        crate::catalog::list_categories,
        crate::catalog::get_category,
        crate::shaping::export,
        crate::shaping::person_summary,
        crate::catalog::list_queries,
        crate::shaping::run_query,
        crate::catalog::list_changes,
        crate::session::login,
        crate::session::logout,
        crate::session::me,
        crate::session::get_user,
        crate::session::set_password,
        crate::consent::request_code,
        crate::consent::verify_code,
        crate::audit::search,
        crate::audit::export,
        crate::audit::proof,
        crate::audit::person_accesses,
        crate::metrics::metrics,
        crate::sync::status,
        crate::sync::history,
        crate::sync::rejected,
        crate::sync::retry_rejected,
        crate::sync::run,
        crate::sync::pull
    )
)]
pub struct ApiDoc;

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(<ApiDoc as utoipa::OpenApi>::openapi())
}

pub(crate) fn now_ms() -> TimestampMs {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    TimestampMs(ms)
}

#[utoipa::path(get, path = "/api/v1/status", security(()), responses((status = 200, body = Object, description = "Chain id, this node's key (node_key: signed requests name it and the chain id), department, tip height, block hash, app hash, mempool size, projected height")))]
async fn status(State(ctx): State<ApiContext>) -> Json<Value> {
    let tip = *ctx.tip.borrow();
    // How far the SQL projection has come (null without one, or if it cannot be read).
    let projected = match &ctx.projection {
        Some(p) => p.cursor().await.ok().flatten().map(|(h, _)| h),
        None => None,
    };
    Json(json!({
        "projected_height": projected,
        "chain_id": ctx.chain_id,
        "node_key": ctx.node_key,
        "department": ctx.department,
        "height": tip.height,
        "block_hash": tip.block_hash,
        "app_hash": tip.app_hash,
        "mempool_txs": ctx.mempool_len.load(Ordering::Relaxed),
        "audit_backlog": crate::audit::backlog(&ctx),
        "audit_quarantined": ctx.security.audit.quarantined(),
        "audit_fail_closed": ctx.security.audit.over_limit(),
        "audit_entries": audit_entries(&ctx),
        "sync_unhealthy": ctx.sync.as_ref().map(|s| s.unhealthy()),
    }))
}

/// Audit entries on chain (the count chaincode keeps).
fn audit_entries(ctx: &ApiContext) -> u64 {
    ctx.store
        .state_get(govchain_chaincode::keys::AUDIT_COUNT)
        .ok()
        .flatten()
        .and_then(|b| govchain_ledger::codec::decode::<u64>(&b, 16).ok())
        .unwrap_or(0)
}

/// Decodes and checks a transaction without taking any lock: size, encoding, chain id,
/// signature, and a dry run of chaincode against committed state.
fn admit_check(ctx: &ApiContext, body: &[u8]) -> Result<SignedTx, ApiError> {
    let tx = SignedTx::decode(body).map_err(|e| match e {
        CodecError::TooLarge { .. } => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", e.to_string())
        }
        _ => ApiError::bad_request(
            "malformed_tx",
            format!("body is not a signed transaction: {e}"),
        ),
    })?;
    if tx.body.chain_id != ctx.chain_id {
        return Err(ApiError::bad_request(
            "wrong_chain",
            format!(
                "transaction is for chain {}, this is {}",
                tx.body.chain_id, ctx.chain_id
            ),
        ));
    }
    tx.verify_signature()
        .map_err(|e| ApiError::bad_request("bad_signature", e.to_string()))?;
    let tip = *ctx.tip.borrow();
    let bctx = BlockContext {
        chain_id: ctx.chain_id.clone(),
        height: tip.height.next(),
        time: now_ms(),
    };
    let mut overlay = Overlay::new(&ctx.store);
    execute_tx(&mut overlay, &bctx, &tx)?;
    Ok(tx)
}

#[utoipa::path(post, path = "/api/v1/txs", security(()), params(("wait" = inline(Option<crate::openapi::WaitParam>), Query, description = "\"commit\": answer once the block is durably stored")), request_body(content = inline(crate::openapi::BinaryBody), content_type = "application/octet-stream", description = "canonical bytes of a signed transaction"), responses((status = 200, body = Object, description = "committed"), (status = 202, body = Object, description = "admitted, pending"), (status = 400, description = "bad_query, malformed_tx, wrong_chain, bad_signature, unknown_kind, malformed"), (status = 403, description = "unauthorized: the signer may not do this"), (status = 409, description = "replayed nonce, duplicate, already exists, in use"), (status = 413, description = "body too large"), (status = 422, description = "not_found, invalid, invalid_record, too_large: chaincode refuses the transaction"), (status = 503, description = "mempool_full (Retry-After), shutting_down")))]
async fn submit_tx(
    State(ctx): State<ApiContext>,
    Query(q): Query<HashMap<String, String>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let wait = match q.get("wait").map(String::as_str) {
        None => false,
        Some("commit") => true,
        Some(other) => {
            return Err(ApiError::bad_request(
                "bad_query",
                format!("wait={other:?}: the only value is \"commit\""),
            ))
        }
    };
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("request body exceeds {} bytes", ctx.max_body_bytes),
            )
        } else {
            ApiError::bad_request("bad_body", e.body_text())
        }
    })?;
    let bytes = body.len();
    let check_ctx = ctx.clone();
    let tx = tokio::task::spawn_blocking(move || admit_check(&check_ctx, &body))
        .await
        .map_err(ApiError::internal)??;
    let id = tx.id();
    match admit(&ctx, tx, bytes, wait).await? {
        Some((height, index)) => Ok((
            StatusCode::OK,
            Json(json!({"tx_id": id, "status": "committed", "height": height, "index": index})),
        )
            .into_response()),
        None => Ok((
            StatusCode::ACCEPTED,
            Json(json!({"tx_id": id, "status": "pending"})),
        )
            .into_response()),
    }
}

/// Hands a checked transaction to the mempool; with `wait`, waits (up to the commit wait) for
/// its block and returns where it is (None: admitted, not yet committed).
pub(crate) async fn admit(
    ctx: &ApiContext,
    tx: SignedTx,
    bytes: usize,
    wait: bool,
) -> Result<Option<(Height, u32)>, ApiError> {
    let id = tx.id();
    let (reply, admitted) = oneshot::channel();
    let (on_commit, committed) = if wait {
        let (s, r) = oneshot::channel();
        (Some(s), Some(r))
    } else {
        (None, None)
    };
    let sub = Submission {
        tx,
        id,
        bytes,
        reply,
        on_commit,
    };
    let gone = || ApiError::from(crate::AdmitError::ShuttingDown);
    ctx.submit.send(sub).await.map_err(|_| gone())?;
    admitted.await.map_err(|_| gone())??;
    let Some(committed) = committed else {
        return Ok(None);
    };
    match tokio::time::timeout(ctx.commit_wait, committed).await {
        Ok(Ok(CommitNotice::Committed { height, index })) => Ok(Some((height, index))),
        Ok(Ok(CommitNotice::Rejected(e))) => Err(e.into()),
        Ok(Err(_)) => Err(gone()),
        Err(_) => Ok(None),
    }
}

/// Runs `tx` against committed state without writing (the chain's own checks, off the async
/// workers): the chain's refusal, or the transaction back.
pub async fn dry_run(
    ctx: &ApiContext,
    tx: SignedTx,
) -> Result<Result<SignedTx, TxError>, ApiError> {
    let check_ctx = ctx.clone();
    tokio::task::spawn_blocking(move || {
        let tip = *check_ctx.tip.borrow();
        let bctx = BlockContext {
            chain_id: check_ctx.chain_id.clone(),
            height: tip.height.next(),
            time: now_ms(),
        };
        let mut overlay = Overlay::new(&check_ctx.store);
        execute_tx(&mut overlay, &bctx, &tx).map(|()| tx)
    })
    .await
    .map_err(ApiError::internal)
}

/// Submits a transaction this node signed itself (consents, audit batches) after a dry run.
pub async fn submit_own(
    ctx: &ApiContext,
    tx: SignedTx,
    wait: bool,
) -> Result<Option<(Height, u32)>, ApiError> {
    let bytes = tx.encode().len();
    let tx = dry_run(ctx, tx).await??;
    admit(ctx, tx, bytes, wait).await
}

fn kind_name(tx: &SignedTx) -> &'static str {
    TxKind::decode(&tx.body.payload)
        .map(|k| k.name())
        .unwrap_or("unknown")
}

/// Audits a chain-data read of a caller who may see payloads; whether payloads are shown.
/// Payloads are personal data: refused while the audit backlog is over its limit (fail closed,
/// as [`crate::access::Caller::decide`]).
fn chain_read(ctx: &ApiContext, reader: &ChainReader, results: usize) -> Result<bool, ApiError> {
    match reader {
        ChainReader::Full(c) => {
            if ctx.security.audit.over_limit() {
                ctx.security
                    .audit
                    .count(c.entry(AuditAction::ChainRead, None, "audit_backlog"));
                return Err(crate::access::audit_backlog_refusal(ctx));
            }
            let mut e = c.entry(AuditAction::ChainRead, None, "ok");
            e.results = results as u64;
            crate::access::audit(ctx, e);
            Ok(true)
        }
        ChainReader::Redacted(c) => {
            let mut e = c.entry(AuditAction::ChainRead, None, "redacted");
            e.results = results as u64;
            crate::access::audit(ctx, e);
            Ok(false)
        }
        ChainReader::Anonymous => Ok(false),
    }
}

#[utoipa::path(get, path = "/api/v1/txs/{id}", security((), ("bearer" = []), ("signed_key" = [], "signed_time" = [], "signed_signature" = [])), params(("id" = inline(crate::openapi::HexIdParam), Path, description = "transaction id, 64 hex digits")), responses((status = 200, body = Object, description = "the transaction's block, position, kind, signer, Merkle inclusion proof and commit certificate; the signed transaction itself (`tx`, hex) only for a department node, an auditor or a system administrator (audited)"), (status = 400, description = "bad_tx_id: not a transaction id; bad_consent"), (status = 401, description = crate::openapi::UNAUTHENTICATED), (status = 403, description = crate::openapi::FORBIDDEN), (status = 404, description = "not committed"), (status = 503, description = crate::openapi::BUSY)))]
async fn get_tx(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<Value>, ApiError> {
    let reader = chain_reader(&ctx, &headers, &uri)?;
    let id = Hash::from_hex(&id)
        .map_err(|_| ApiError::bad_request("bad_tx_id", "a transaction id is 64 hex digits"))?;
    let loc = ctx
        .store
        .tx_location(&id)
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(format!("transaction {id} is not committed")))?;
    let block = ctx
        .store
        .block(loc.height)
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::internal(format!("block {} missing", loc.height)))?;
    let commit = ctx.store.commit(loc.height).map_err(ApiError::internal)?;
    let ids: Vec<Hash> = block.txs.iter().map(SignedTx::id).collect();
    let proof = merkle::prove(&ids, loc.index as usize)
        .ok_or_else(|| ApiError::internal("tx index out of range"))?;
    let tx = &block.txs[loc.index as usize];
    let mut answer = json!({
        "id": id,
        "height": loc.height,
        "index": loc.index,
        "block_hash": block.hash(),
        "tx_root": block.header.tx_root,
        "kind": kind_name(tx),
        "signer": tx.body.signer,
        "nonce": tx.body.nonce,
        "created_at": tx.body.created_at,
        "bytes": tx.encode().len(),
        "proof": proof,
        "header": block.header,
        "commit": commit,
    });
    if chain_read(&ctx, &reader, 1)? {
        answer["tx"] = json!(hex::encode(tx.encode()));
    }
    Ok(Json(answer))
}

#[utoipa::path(get, path = "/api/v1/blocks/{height}", security((), ("bearer" = []), ("signed_key" = [], "signed_time" = [], "signed_signature" = [])), params(("height" = inline(crate::openapi::HeightParam), Path, description = "block height")), responses((status = 200, body = Object, description = "header, each transaction's id, kind, signer, nonce and size, and the commit certificate; the signed transactions themselves (`tx`, hex, per transaction) only for a department node, an auditor or a system administrator (audited)"), (status = 400, description = "bad_height: not a height; bad_consent"), (status = 401, description = crate::openapi::UNAUTHENTICATED), (status = 403, description = crate::openapi::FORBIDDEN), (status = 404, description = "no such block"), (status = 503, description = crate::openapi::BUSY)))]
async fn get_block(
    State(ctx): State<ApiContext>,
    Path(height): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<Value>, ApiError> {
    let reader = chain_reader(&ctx, &headers, &uri)?;
    let h: u64 = height
        .parse()
        .map_err(|_| ApiError::bad_request("bad_height", "height is a non-negative integer"))?;
    let block = ctx
        .store
        .block(Height(h))
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(format!("no block at height {h}")))?;
    let commit = ctx.store.commit(Height(h)).map_err(ApiError::internal)?;
    let full = chain_read(&ctx, &reader, block.txs.len())?;
    let txs: Vec<Value> = block
        .txs
        .iter()
        .map(|t| {
            let bytes = t.encode();
            let mut v = json!({
                "id": t.id(),
                "kind": kind_name(t),
                "signer": t.body.signer,
                "nonce": t.body.nonce,
                "bytes": bytes.len(),
            });
            if full {
                v["tx"] = json!(hex::encode(&bytes));
            }
            v
        })
        .collect();
    Ok(Json(json!({
        "hash": block.hash(),
        "header": block.header,
        "txs": txs,
        "commit": commit,
    })))
}
