//! The audit log's API (R-AUD-1…3) and its way onto the chain.
//!
//! - `GET /api/v1/audit?user=&department=&person=&action=&outcome=&from=&to=&page=&page_size=`:
//!   search, newest first.
//! - `GET /api/v1/audit/export?…&format=csv|xlsx`: the same rows as a file.
//! - `GET /api/v1/persons/{id}/accesses`: who read this person's data — every access with its
//!   consent and matter, each with a Merkle inclusion proof and the block's commit certificate
//!   (`govchain verify-proof` checks one offline).
//! - `GET /api/v1/audit/proof?height=&tx_index=&entry_index=`: one entry's proof.
//!
//! Only auditors and system administrators read the log; each read is itself audited.
//! [`flush`] puts the node's queued entries on chain, one `AppendAudit` per block.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::Json;
use govchain_chaincode::access::{AuditAction, AuditEntry, MAX_AUDIT_ENTRIES};
use govchain_chaincode::proof::AuditProof;
use govchain_chaincode::{TxError, TxKind};
use govchain_ledger::{merkle, Height, SignedTx};
use serde_json::{json, Value};
use sqlx::Row;

use crate::access::{audit, reader, Caller};
use crate::audit_queue::MAX_AUDIT_BATCH_BYTES;
use crate::catalog::{param, params};
use crate::openapi::{
    AuditExportRowsParam, CursorParam, FileKindParam, HeightParam, IndexParam, KeysetPageParam,
    PageSizeParam, PersonIdParam, UnixMsParam, NO_PROJECTION, UNAUTHENTICATED,
};
use crate::paging::Window;
use crate::projection::Projection;
use crate::query::{db_error, MAX_PAGE_SIZE};
use crate::{ApiContext, ApiError};

/// Most rows of one audit export.
pub const MAX_AUDIT_EXPORT_ROWS: usize = 10_000;

/// Puts up to one batch of queued entries on chain (signed by this node) and waits for its
/// block; returns how many were committed. A batch is cut by count and by bytes so it always
/// fits a transaction ([`crate::audit_queue`]). If the chain refuses the batch, each entry is
/// tried alone: those refused alone are quarantined with the chain's reason, the rest wait for
/// the next block. Committed entries leave the outbox; on any other failure they go back to the
/// queue. (A crash between the commit and the outbox clean-up puts those entries on chain a
/// second time: at least once, never lost.)
pub async fn flush(ctx: &ApiContext) -> usize {
    let Some(signer) = &ctx.security.signer else {
        return 0;
    };
    let queue = &ctx.security.audit;
    let now = crate::routes::now_ms();
    let batch = queue.take_batch(now, MAX_AUDIT_ENTRIES, MAX_AUDIT_BATCH_BYTES);
    if batch.is_empty() {
        return 0;
    }
    let n = batch.len();
    let sign =
        |entries: Vec<AuditEntry>| signer.sign(TxKind::AppendAudit { entries }.encode(), now);
    let tx = sign(batch.iter().map(|(_, e)| e.clone()).collect());
    let tx = match crate::routes::dry_run(ctx, tx).await {
        Ok(Ok(tx)) => tx,
        Ok(Err(refused)) => {
            tracing::warn!(target: "api.audit", error = %refused, entries = n, "the chain refuses the audit batch; trying each entry alone");
            let mut keep = Vec::with_capacity(n);
            for (seq, e) in batch {
                match crate::routes::dry_run(ctx, sign(vec![e.clone()])).await {
                    // The signer itself is refused: not the entry's fault (a node that is
                    // not a department's); keep it queued and alert through the log.
                    Ok(Err(why)) if !matches!(why, TxError::Unauthorized { .. }) => {
                        queue.quarantine(seq, &e, &why.to_string())
                    }
                    _ => keep.push((seq, e)),
                }
            }
            queue.give_back(keep);
            return 0;
        }
        Err(e) => {
            tracing::warn!(target: "api.audit", error = %e.message, entries = n, "audit batch not checked; retrying");
            queue.give_back(batch);
            return 0;
        }
    };
    let id = tx.id();
    let bytes = tx.encode().len();
    let committed = match crate::routes::admit(ctx, tx, bytes, true).await {
        Ok(Some(_)) => true,
        // Admitted but not committed within the wait: it counts once its block is stored.
        Ok(None) => ctx.store.tx_location(&id).ok().flatten().is_some(),
        Err(e) => {
            tracing::warn!(target: "api.audit", error = %e.message, entries = n, "audit batch not admitted; retrying");
            false
        }
    };
    if committed {
        let seqs: Vec<u64> = batch.iter().map(|(s, _)| *s).collect();
        queue.committed(&seqs);
        n
    } else {
        queue.give_back(batch);
        0
    }
}

/// 403 of the audit log's endpoints.
const NOT_AUDITOR: &str =
    "forbidden: not an auditor or a system administrator, or a key that is no user's; user_disabled";

fn auditor(
    ctx: &ApiContext,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<(Caller, Projection), ApiError> {
    let (caller, p) = reader(ctx, headers, uri)?;
    if !caller.is_auditor() {
        audit(ctx, caller.entry(AuditAction::AuditRead, None, "forbidden"));
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only auditors and system administrators read the audit log",
        ));
    }
    Ok((caller, p))
}

const AUDIT_COLUMNS: &str = "height, tx_index, entry_index, time_ms, user_id, department, action, \
     endpoint, person_id, matter, consent, outcome, results, node, tx_id, persons";

fn row_json(r: &sqlx::any::AnyRow) -> Result<Value, ApiError> {
    let s = |i: usize| r.try_get::<String, _>(i).map_err(db_error);
    let o = |i: usize| r.try_get::<Option<String>, _>(i).map_err(db_error);
    let n = |i: usize| r.try_get::<i64, _>(i).map_err(db_error);
    Ok(json!({
        "height": n(0)?, "tx_index": n(1)?, "entry_index": n(2)?, "time": n(3)?,
        "user": s(4)?, "department": s(5)?, "action": s(6)?, "endpoint": s(7)?,
        "person_id": o(8)?, "matter": o(9)?, "consent": o(10)?, "outcome": s(11)?,
        "results": n(12)?, "node": s(13)?, "tx_id": s(14)?, "persons": n(15)?,
    }))
}

/// Parts of an audit row's key in a cursor: time, height, transaction and entry index.
const AUDIT_KEY_PARTS: usize = 4;

/// The cursor of the page after `rows` (newest first), if they filled their page.
fn next_page(window: &Window, rows: &[Value]) -> Option<String> {
    let last = rows.last().map(|r| {
        ["time", "height", "tx_index", "entry_index"]
            .iter()
            .map(|k| r[*k].as_i64().unwrap_or_default().to_string())
            .collect()
    });
    window.next(rows.len(), last)
}

/// Runs a filtered audit search, one page (`window`: after a row's key — keyset paging — or
/// at an offset); `reads_only`: accesses only (`query`, `export`). A `person` filter finds
/// every entry about the person: its own person, or a read that returned the person's records
/// (`audit_persons`, R-AUD-3).
async fn search_rows(
    p: &Projection,
    ps: &[(String, String)],
    window: &Window,
    reads_only: bool,
) -> Result<Vec<Value>, ApiError> {
    let columns: Vec<String> = AUDIT_COLUMNS
        .split(", ")
        .map(|c| format!("a.{c}"))
        .collect();
    let mut binds: Vec<Value> = Vec::new();
    // `k`: the table whose (time, position) key orders the rows.
    let (from, k) = match param(ps, "person") {
        Some(person) => {
            binds.push(json!(person));
            (
                "audit_persons k JOIN audit a ON a.height = k.height \
                 AND a.tx_index = k.tx_index AND a.entry_index = k.entry_index \
                 WHERE k.person_id = ?",
                "k",
            )
        }
        None => ("audit a WHERE 1 = 1", "a"),
    };
    let mut sql = format!("SELECT {} FROM {from}", columns.join(", "));
    for (name, column) in [
        ("user", "user_id"),
        ("department", "department"),
        ("action", "action"),
        ("outcome", "outcome"),
    ] {
        if let Some(v) = param(ps, name) {
            sql.push_str(&format!(" AND a.{column} = ?"));
            binds.push(json!(v));
        }
    }
    for (name, op) in [("from", ">="), ("to", "<")] {
        if let Some(v) = param(ps, name) {
            let t: i64 = v.parse().map_err(|_| {
                ApiError::bad_request("bad_query", format!("{name}: Unix milliseconds"))
            })?;
            sql.push_str(&format!(" AND {k}.time_ms {op} ?"));
            binds.push(json!(t));
        }
    }
    if reads_only {
        sql.push_str(" AND a.action IN ('query', 'export')");
    }
    if let Some(after) = &window.after {
        // The rows strictly older than the key, in the order below.
        let key: Vec<i64> = after
            .iter()
            .map(|v| v.parse::<i64>())
            .collect::<Result<_, _>>()
            .map_err(|_| ApiError::bad_request("bad_cursor", "after: not an audit cursor"))?;
        sql.push_str(&format!(
            " AND ({k}.time_ms < ? OR ({k}.time_ms = ? AND ({k}.height < ? OR ({k}.height = ? \
             AND ({k}.tx_index < ? OR ({k}.tx_index = ? AND {k}.entry_index < ?))))))"
        ));
        for (i, v) in key.iter().enumerate() {
            binds.push(json!(v));
            if i + 1 < AUDIT_KEY_PARTS {
                binds.push(json!(v));
            }
        }
    }
    sql.push_str(&format!(
        " ORDER BY {k}.time_ms DESC, {k}.height DESC, {k}.tx_index DESC, {k}.entry_index DESC \
         LIMIT ? OFFSET ?"
    ));
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for b in binds {
        q = match b {
            Value::Number(n) => q.bind(n.as_i64().unwrap_or_default()),
            other => q.bind(other.as_str().unwrap_or_default().to_string()),
        };
    }
    let rows = q
        .bind(window.page_size as i64)
        .bind(window.offset as i64)
        .fetch_all(p.pool())
        .await
        .map_err(db_error)?;
    rows.iter().map(row_json).collect()
}

const SEARCH_PARAMS: [&str; 10] = [
    "after",
    "user",
    "department",
    "person",
    "action",
    "outcome",
    "from",
    "to",
    "page",
    "page_size",
];

/// `GET /api/v1/audit`: searches the audit log.
#[utoipa::path(get, path = "/api/v1/audit", operation_id = "audit_search", params(("user" = Option<String>, Query, description = "user id"), ("department" = Option<String>, Query, description = "department id"), ("person" = Option<String>, Query, description = "national ID"), ("action" = Option<String>, Query, description = "login, logout, query, export, consent_request, consent_verify, admin, audit_read"), ("outcome" = Option<String>, Query, description = "ok or a denial code"), ("from" = inline(Option<UnixMsParam>), Query, description = "Unix ms, inclusive"), ("to" = inline(Option<UnixMsParam>), Query, description = "Unix ms, exclusive"), ("page" = inline(Option<KeysetPageParam>), Query, description = "default 1; (page - 1) x page_size at most 10000 rows skipped (deeper: after)"), ("page_size" = inline(Option<PageSizeParam>), Query, description = "default 20"), ("after" = inline(Option<CursorParam>), Query, description = "the next cursor of the previous page of this query (keyset paging; bound to the user and query, lapses when the node restarts); not with page")), responses((status = 200, body = Object, description = "entries, newest first"), (status = 400, description = "bad_page, page_too_deep, bad_cursor, bad_query, bad_consent"), (status = 401, description = UNAUTHENTICATED), (status = 403, description = NOT_AUDITOR), (status = 503, description = NO_PROJECTION), (status = 500, description = "db_error: the node's database failed (details only in its log)")))]
pub async fn search(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<Value>, ApiError> {
    let (caller, p) = auditor(&ctx, &headers, &uri)?;
    let ps = params(&uri, &SEARCH_PARAMS)?;
    let window = Window::parse(
        &ps,
        &caller.user_id(),
        uri.path(),
        20,
        MAX_PAGE_SIZE,
        AUDIT_KEY_PARTS,
    )?;
    let rows = search_rows(&p, &ps, &window, false).await?;
    let mut e = caller.entry(
        AuditAction::AuditRead,
        param(&ps, "person").map(str::to_string),
        "ok",
    );
    e.results = rows.len() as u64;
    audit(&ctx, e);
    let next = next_page(&window, &rows);
    Ok(Json(
        json!({"page": window.page, "page_size": window.page_size, "next": next, "entries": rows}),
    ))
}

/// `GET /api/v1/audit/export?…&format=csv|xlsx`: the search as a file.
#[utoipa::path(get, path = "/api/v1/audit/export", operation_id = "audit_export", params(("format" = inline(Option<FileKindParam>), Query, description = "default csv"), ("user" = Option<String>, Query, description = "user id"), ("department" = Option<String>, Query, description = "department id"), ("person" = Option<String>, Query, description = "national ID"), ("action" = Option<String>, Query, description = "the action"), ("outcome" = Option<String>, Query, description = "ok or a denial code"), ("from" = inline(Option<UnixMsParam>), Query, description = "Unix ms, inclusive"), ("to" = inline(Option<UnixMsParam>), Query, description = "Unix ms, exclusive"), ("page" = inline(Option<KeysetPageParam>), Query, description = "default 1; (page - 1) x page_size at most 10000 rows skipped (deeper: after)"), ("page_size" = inline(Option<AuditExportRowsParam>), Query, description = "default the most"), ("after" = inline(Option<CursorParam>), Query, description = "the next cursor of the previous page of this query (keyset paging; bound to the user and query, lapses when the node restarts); not with page")), responses((status = 200, content((String = "text/csv"), (Object = "application/json"), (String = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")), headers(("x-govchain-digest" = String, description = "blake3 hash of the file, hex"), ("x-govchain-next" = String, description = "the next page's cursor (after=), when the file was a full page")), description = "the entries as a file (CSV cells that would start a formula get a leading apostrophe)"), (status = 400, description = "bad_format, bad_page, page_too_deep, bad_cursor, bad_query, bad_consent"), (status = 401, description = UNAUTHENTICATED), (status = 403, description = NOT_AUDITOR), (status = 503, description = NO_PROJECTION)))]
pub async fn export(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    let (caller, p) = auditor(&ctx, &headers, &uri)?;
    let mut allowed = SEARCH_PARAMS.to_vec();
    allowed.push("format");
    let ps = params(&uri, &allowed)?;
    let kind = crate::export::FileKind::parse(param(&ps, "format").unwrap_or("csv"))?;
    let window = Window::parse(
        &ps,
        &caller.user_id(),
        uri.path(),
        MAX_AUDIT_EXPORT_ROWS,
        MAX_AUDIT_EXPORT_ROWS,
        AUDIT_KEY_PARTS,
    )?;
    let rows = search_rows(&p, &ps, &window, false).await?;
    let next = next_page(&window, &rows);
    let columns = [
        "time",
        "user",
        "department",
        "action",
        "endpoint",
        "person_id",
        "matter",
        "consent",
        "outcome",
        "results",
        "height",
        "tx_index",
        "entry_index",
        "tx_id",
        "node",
    ];
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let sheet = crate::export::Sheet {
        name: "audit".into(),
        headers: columns.iter().map(|c| c.to_string()).collect(),
        rows: rows
            .iter()
            .map(|r| columns.iter().map(|c| text(&r[*c])).collect())
            .collect(),
    };
    let mut e = caller.entry(AuditAction::AuditRead, None, "ok");
    e.results = rows.len() as u64;
    audit(&ctx, e);
    crate::export::render(kind, sheet, move || json!({"entries": rows}))
        .await
        .map(|r| crate::export::with_next(r, next))
}

/// The proof of the entry at (height, tx index, entry index).
pub fn proof_of(
    ctx: &ApiContext,
    height: u64,
    tx_index: usize,
    entry_index: usize,
) -> Result<AuditProof, ApiError> {
    let missing = || {
        ApiError::not_found(format!(
            "no audit entry at {height}/{tx_index}/{entry_index}"
        ))
    };
    let block = ctx
        .store
        .block(Height(height))
        .map_err(ApiError::internal)?
        .ok_or_else(missing)?;
    let commit = ctx
        .store
        .commit(Height(height))
        .map_err(ApiError::internal)?
        .ok_or_else(missing)?;
    let tx = block.txs.get(tx_index).ok_or_else(missing)?;
    let Ok(TxKind::AppendAudit { entries }) = TxKind::decode(&tx.body.payload) else {
        return Err(missing());
    };
    let entry: AuditEntry = entries.get(entry_index).cloned().ok_or_else(missing)?;
    let ids: Vec<_> = block.txs.iter().map(SignedTx::id).collect();
    let proof = merkle::prove(&ids, tx_index).ok_or_else(missing)?;
    Ok(AuditProof {
        chain_id: ctx.chain_id.clone(),
        height: Height(height),
        tx_index: tx_index as u32,
        entry_index: entry_index as u32,
        entry,
        tx: hex::encode(tx.encode()),
        proof,
        header: block.header,
        commit,
    })
}

/// `GET /api/v1/audit/proof?height=&tx_index=&entry_index=`: one entry's offline proof.
#[utoipa::path(get, path = "/api/v1/audit/proof", params(("height" = inline(HeightParam), Query, description = "block height"), ("tx_index" = inline(IndexParam), Query, description = "transaction index"), ("entry_index" = inline(IndexParam), Query, description = "entry index")), responses((status = 200, body = Object, description = "the proof file govchain verify-proof checks"), (status = 400, description = "bad_query, bad_consent"), (status = 401, description = UNAUTHENTICATED), (status = 403, description = NOT_AUDITOR), (status = 404, description = "no such entry"), (status = 503, description = NO_PROJECTION)))]
pub async fn proof(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<AuditProof>, ApiError> {
    let (caller, _) = auditor(&ctx, &headers, &uri)?;
    let ps = params(&uri, &["height", "tx_index", "entry_index"])?;
    let num = |n: &str| -> Result<u64, ApiError> {
        param(&ps, n).and_then(|v| v.parse().ok()).ok_or_else(|| {
            ApiError::bad_request("bad_query", format!("{n}: a non-negative integer"))
        })
    };
    let p = proof_of(
        &ctx,
        num("height")?,
        num("tx_index")? as usize,
        num("entry_index")? as usize,
    )?;
    audit(
        &ctx,
        caller.entry(AuditAction::AuditRead, p.entry.person.clone(), "ok"),
    );
    Ok(Json(p))
}

/// `GET /api/v1/persons/{id}/accesses`: every read of this person's data, newest first, each
/// with its proof.
#[utoipa::path(get, path = "/api/v1/persons/{id}/accesses", params(("id" = inline(PersonIdParam), Path, description = "national ID"), ("page" = inline(Option<KeysetPageParam>), Query, description = "default 1; (page - 1) x page_size at most 10000 rows skipped (deeper: after)"), ("page_size" = inline(Option<PageSizeParam>), Query, description = "default 20"), ("after" = inline(Option<CursorParam>), Query, description = "the next cursor of the previous page of this query (keyset paging; bound to the user and query, lapses when the node restarts); not with page")), responses((status = 200, body = Object, description = "accesses with consent, matter, outcome and proof"), (status = 400, description = "bad_person_id, bad_page, page_too_deep, bad_cursor, bad_query, bad_consent"), (status = 401, description = UNAUTHENTICATED), (status = 403, description = NOT_AUDITOR), (status = 503, description = NO_PROJECTION), (status = 500, description = "db_error: the node's database failed (details only in its log)")))]
pub async fn person_accesses(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<Value>, ApiError> {
    let (caller, p) = auditor(&ctx, &headers, &uri)?;
    let person = crate::matters::person(&id)?;
    let ps = params(&uri, &["page", "page_size", "after"])?;
    let window = Window::parse(
        &ps,
        &caller.user_id(),
        uri.path(),
        20,
        MAX_PAGE_SIZE,
        AUDIT_KEY_PARTS,
    )?;
    let filter = vec![("person".into(), person.as_str().to_string())];
    let rows = search_rows(&p, &filter, &window, true).await?;
    let next = next_page(&window, &rows);
    let mut accesses = Vec::with_capacity(rows.len());
    for r in rows {
        let at = |k: &str| r[k].as_i64().unwrap_or_default();
        let proof = proof_of(
            &ctx,
            at("height") as u64,
            at("tx_index") as usize,
            at("entry_index") as usize,
        )?;
        accesses.push(json!({"access": r, "proof": proof}));
    }
    let mut e = caller.entry(
        AuditAction::AuditRead,
        Some(person.as_str().to_string()),
        "ok",
    );
    e.results = accesses.len() as u64;
    audit(&ctx, e);
    Ok(Json(json!({
        "person_id": person.as_str(), "page": window.page, "page_size": window.page_size,
        "next": next, "accesses": accesses,
    })))
}

/// Status of the local audit queue (for `/status`).
pub fn backlog(ctx: &ApiContext) -> usize {
    ctx.security.audit.backlog()
}
