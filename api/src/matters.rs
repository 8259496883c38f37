//! One matter, one file (R-ARC-4) and extraction by business type (R-ARC-3): a person's data
//! restricted to exactly the sources and fields a matter type names — following the matter
//! type's CURRENT definition in the projection — with its materials checklist; and the
//! records of a matter's sources, restricted to its fields, page by page.
//!
//! A field a matter type names that its source no longer has (the source was re-registered
//! without it) is shown as `null`. Requests must be signed by the system administrator.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use axum::Json;
use govchain_chaincode::business::SourceFields;
use govchain_chaincode::person::PersonId;
use serde_json::{json, Map, Value};

use crate::access::reader;
use crate::catalog::{load_source, param, params, require_matter};
use crate::openapi::{
    CursorParam, HexIdParam, KeysetPageParam, PageSizeParam, PersonIdParam, DECIDE_UNAVAILABLE,
    DENIED, UNAUTHENTICATED,
};
use crate::paging::Window;
use crate::query::{db_error, record_json, MAX_PAGE_SIZE, RECORD_COLUMNS};
use crate::{ApiContext, ApiError};

/// `fields` (a record's field object) restricted to `names`, in that order; absent ones null.
pub(crate) fn pick(fields: &Value, names: &[String]) -> Value {
    let m: Map<String, Value> = names
        .iter()
        .map(|n| (n.clone(), fields.get(n).cloned().unwrap_or(Value::Null)))
        .collect();
    Value::Object(m)
}

/// A record as a matter shows it: provenance and only the matter's fields.
fn picked_record(r: &Value, names: &[String]) -> Value {
    json!({
        "source": r["source"],
        "record_key": r["record_key"],
        "person_id": r["person_id"],
        "version": r["version"],
        "department": r["department"],
        "tx_id": r["tx_id"],
        "height": r["height"],
        "fields": pick(&r["fields"], names),
    })
}

/// Parses a national ID from the path (400 `bad_person_id`).
pub(crate) fn person(id: &str) -> Result<PersonId, ApiError> {
    PersonId::parse(id)
        .map_err(|e| ApiError::bad_request("bad_person_id", format!("national id: {e}")))
}

/// The distinct sources of records, in order.
pub(crate) fn sources_of(records: &[Value]) -> Vec<String> {
    let set: std::collections::BTreeSet<&str> = records
        .iter()
        .filter_map(|r| r["source"].as_str())
        .collect();
    set.into_iter().map(str::to_string).collect()
}

/// The person ids of records (as JSON), for the audit entry of the read that returns them.
pub(crate) fn persons_of(records: &[Value]) -> impl Iterator<Item = &str> {
    records.iter().filter_map(|r| r["person_id"].as_str())
}

/// Every current record of `person`, as JSON, by source and record key.
pub(crate) async fn person_records(
    pool: &sqlx::AnyPool,
    person: &PersonId,
) -> Result<Vec<Value>, ApiError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {RECORD_COLUMNS} FROM records WHERE person_id = ? ORDER BY source, record_key"
    )))
    .bind(person.as_str().to_string())
    .fetch_all(pool)
    .await
    .map_err(db_error)?;
    rows.iter().map(record_json).collect()
}

async fn source_section(
    pool: &sqlx::AnyPool,
    sf: &SourceFields,
    records: &[&Value],
) -> Result<Value, ApiError> {
    let def = load_source(pool, &sf.source).await?;
    let fields: Vec<Value> = sf
        .fields
        .iter()
        .map(|f| {
            let label = def
                .as_ref()
                .and_then(|d| d.field(f))
                .map(|d| d.label.clone());
            json!({"field": f, "label": label})
        })
        .collect();
    let records: Vec<Value> = records
        .iter()
        .map(|r| picked_record(r, &sf.fields))
        .collect();
    Ok(json!({
        "source": sf.source,
        "name": def.map(|d| d.name),
        "fields": fields,
        "records": records,
    }))
}

/// `GET /api/v1/persons/{id}/matters/{matter}`: the matter's file of a person.
#[utoipa::path(get, path = "/api/v1/persons/{id}/matters/{matter}", params(("id" = inline(PersonIdParam), Path, description = "18-digit national ID"), ("matter" = String, Path, description = "matter type id"), ("x-govchain-consent" = inline(Option<HexIdParam>), Header, nullable = false, description = "the person's consent for this matter (a consent id)")), responses((status = 200, body = Object, description = "for each source the matter type names, the person's latest records with only its fields; and the materials checklist"), (status = 400, description = "bad_person_id, bad_query, bad_consent"), (status = 401, description = UNAUTHENTICATED), (status = 403, description = DENIED), (status = 404, description = "unknown_matter"), (status = 503, description = DECIDE_UNAVAILABLE)))]
pub async fn matter_file(
    State(ctx): State<ApiContext>,
    Path((id, matter)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<Value>, ApiError> {
    let (caller, projection) = reader(&ctx, &headers, &uri)?;
    params(&uri, &[])?;
    let id = person(&id)?;
    let pool = projection.pool();
    let m = require_matter(pool, &matter).await?;
    let access = caller.decide(
        &ctx,
        govchain_chaincode::access::Right::Query,
        m.sources.iter().map(|s| s.source.clone()).collect(),
        false,
        Some(id.as_str()),
        Some(&m.id),
    )?;
    let all: Vec<Value> = person_records(pool, &id)
        .await?
        .into_iter()
        .filter(|r| access.may_read(r["source"].as_str().unwrap_or_default()))
        .collect();
    let mut by_source: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for r in &all {
        by_source
            .entry(r["source"].as_str().unwrap_or_default())
            .or_default()
            .push(r);
    }
    let mut sources = Vec::with_capacity(m.sources.len());
    for sf in m.sources.iter().filter(|sf| access.may_read(&sf.source)) {
        let recs = by_source
            .get(sf.source.as_str())
            .map_or(&[][..], Vec::as_slice);
        sources.push(source_section(pool, sf, recs).await?);
    }
    access.done(all.len(), persons_of(&all))?;
    let at = projection.cursor().await.map_err(db_error)?;
    Ok(Json(json!({
        "person_id": id.as_str(),
        "matter": {"id": m.id, "name": m.name, "department": m.department},
        "sources": sources,
        "materials": m.materials,
        "projected_height": at.map(|(h, _)| h.0),
    })))
}

/// `GET /api/v1/matters/{id}/extract?source=&page=&page_size=`: records of the matter's
/// sources (or of one of them) with only the matter's fields, by source and record key.
#[utoipa::path(get, path = "/api/v1/matters/{id}/extract", params(("id" = String, Path, description = "matter type id"), ("source" = Option<String>, Query, description = "one of the matter's sources (default: all of them)"), ("page" = inline(Option<KeysetPageParam>), Query, description = "default 1; (page - 1) x page_size at most 10000 rows skipped (deeper: after)"), ("page_size" = inline(Option<PageSizeParam>), Query, description = "default 20"), ("after" = inline(Option<CursorParam>), Query, description = "the next cursor of the previous page of this query (keyset paging; bound to the user and query, lapses when the node restarts); not with page")), responses((status = 200, body = Object, description = "one page of records restricted to the matter's fields (R-ARC-3)"), (status = 400, description = "source_not_in_matter, bad_page, page_too_deep, bad_cursor, bad_query, bad_consent"), (status = 401, description = UNAUTHENTICATED), (status = 403, description = DENIED), (status = 404, description = "unknown_matter"), (status = 503, description = DECIDE_UNAVAILABLE), (status = 429, description = "row_quota_exceeded: the user's rows of the day on this node are used up (Retry-After)"), (status = 500, description = "db_error: the node's database failed (details only in its log)")))]
pub async fn extract(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<Value>, ApiError> {
    let (caller, projection) = reader(&ctx, &headers, &uri)?;
    let ps = params(&uri, &["source", "page", "page_size", "after"])?;
    let window = Window::parse(&ps, &caller.user_id(), uri.path(), 20, MAX_PAGE_SIZE, 2)?;
    let m = require_matter(projection.pool(), &id).await?;
    let wanted: Vec<&SourceFields> = match param(&ps, "source") {
        None => m.sources.iter().collect(),
        Some(s) => vec![m.sources.iter().find(|sf| sf.source == s).ok_or_else(|| {
            ApiError::bad_request(
                "source_not_in_matter",
                format!("matter type {} does not use source {s:?}", m.id),
            )
        })?],
    };
    // Past the first rows, paging on through sources is bulk reading: the export right.
    let right = window.right(
        govchain_chaincode::access::Right::Query,
        ctx.read_limits.query_rows_without_export,
    );
    let access = caller.decide(
        &ctx,
        right,
        wanted.iter().map(|s| s.source.clone()).collect(),
        false,
        None,
        None,
    )?;
    // Keyset paging: after the (source, record key) of the previous page's last record.
    let after = match &window.after {
        Some(_) => " AND (source > ? OR (source = ? AND record_key > ?))",
        None => "",
    };
    let sql = format!(
        "SELECT {RECORD_COLUMNS} FROM records WHERE source IN ({}){after} \
         ORDER BY source, record_key LIMIT ? OFFSET ?",
        vec!["?"; wanted.len()].join(", ")
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for sf in &wanted {
        q = q.bind(sf.source.clone());
    }
    if let Some([source, key]) = window.after.as_deref() {
        q = q
            .bind(source.clone())
            .bind(source.clone())
            .bind(key.clone());
    }
    let rows = q
        .bind(window.page_size as i64)
        .bind(window.offset as i64)
        .fetch_all(projection.pool())
        .await
        .map_err(db_error)?;
    let mut results = Vec::with_capacity(rows.len());
    for row in &rows {
        let r = record_json(row)?;
        let names = wanted
            .iter()
            .find(|sf| r["source"] == sf.source.as_str())
            .map(|sf| sf.fields.as_slice())
            .unwrap_or_default();
        results.push(picked_record(&r, names));
    }
    access.done(results.len(), persons_of(&results))?;
    let last = results.last().map(|r| {
        ["source", "record_key"]
            .iter()
            .map(|k| r[*k].as_str().unwrap_or_default().to_string())
            .collect()
    });
    Ok(Json(json!({
        "matter": m.id,
        "page": window.page,
        "page_size": window.page_size,
        "next": window.next(results.len(), last),
        "results": results,
    })))
}
