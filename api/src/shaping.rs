//! Results shaped by the business catalog (R-QRY-2, R-QRY-3, R-QRY-4, R-QRY-5): a person's
//! category summary in a display template's order and labels, running a saved query, and
//! exporting a combined query's results in a category's export format.
//!
//! Tabular shaping (saved queries, exports): each result record is one row; a column of the
//! queried source takes the record's value; a column of another source takes the value from
//! that person's record in it (the first by record key), or is empty. A person's summary lists,
//! for each column, one row per record the person has in that source (or one empty row).
//! Requests must be signed by the system administrator.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use axum::Json;
use govchain_chaincode::business::{Column, Condition, ConditionOp, SourceFields};
use govchain_chaincode::TxError;
use serde_json::{json, Value};
use sqlx::Row;

use crate::access::reader;
use crate::catalog::{
    load_source, owner_key, param, params, require_category, require_format, require_query,
    require_template,
};
use crate::export::{render, Sheet};
use crate::matters::{person, person_records, persons_of};
use crate::paging::Window;
use crate::projection::Projection;
use crate::query::{db_error, matching_records, next_page, MAX_EXPORT_ROWS, MAX_PAGE_SIZE};
use crate::{ApiContext, ApiError};
use govchain_chaincode::access::Right;

/// Persons looked up in one statement when filling other sources' columns.
const PERSONS_PER_STATEMENT: usize = 500;

fn sql_op(op: ConditionOp) -> &'static str {
    match op {
        ConditionOp::Eq => "=",
        ConditionOp::From => ">=",
        ConditionOp::To => "<=",
    }
}

fn conds(list: &[Condition]) -> Vec<(&'static str, String, String)> {
    list.iter()
        .map(|c| (sql_op(c.op), c.field.clone(), c.value.clone()))
        .collect()
}

/// The columns of a category without a template: its fields under the sources' labels.
async fn default_columns(
    pool: &sqlx::AnyPool,
    sources: &[SourceFields],
) -> Result<Vec<Column>, ApiError> {
    let mut out = Vec::new();
    for sf in sources {
        let def = load_source(pool, &sf.source).await?;
        for f in &sf.fields {
            let label = def
                .as_ref()
                .and_then(|d| d.field(f))
                .map_or(f.clone(), |d| d.label.clone());
            out.push(Column {
                source: sf.source.clone(),
                field: f.clone(),
                label,
            });
        }
    }
    Ok(out)
}

/// The values of `columns` for each of `results` (records of `source` as JSON), in order.
async fn shape_rows(
    projection: &Projection,
    source: &str,
    results: &[Value],
    columns: &[Column],
) -> Result<Vec<Vec<Value>>, ApiError> {
    let mut others: Vec<&str> = columns
        .iter()
        .map(|c| c.source.as_str())
        .filter(|s| *s != source)
        .collect();
    others.sort_unstable();
    others.dedup();
    let mut persons: Vec<&str> = results
        .iter()
        .filter_map(|r| r["person_id"].as_str())
        .collect();
    persons.sort_unstable();
    persons.dedup();
    // (source, person) -> fields of the person's first record in that source.
    let mut found: HashMap<(String, String), Value> = HashMap::new();
    if !others.is_empty() {
        for chunk in persons.chunks(PERSONS_PER_STATEMENT) {
            let sql = format!(
                "SELECT source, person_id, fields FROM records WHERE source IN ({}) \
                 AND person_id IN ({}) ORDER BY source, person_id, record_key",
                vec!["?"; others.len()].join(", "),
                vec!["?"; chunk.len()].join(", ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for s in &others {
                q = q.bind(s.to_string());
            }
            for p in chunk {
                q = q.bind(p.to_string());
            }
            for row in q.fetch_all(projection.pool()).await.map_err(db_error)? {
                let key: (String, String) = (
                    row.try_get(0).map_err(db_error)?,
                    row.try_get(1).map_err(db_error)?,
                );
                if found.contains_key(&key) {
                    continue;
                }
                let fields: String = row.try_get(2).map_err(db_error)?;
                let fields: Value = serde_json::from_str(&fields).map_err(ApiError::internal)?;
                found.insert(key, fields);
            }
        }
    }
    Ok(results
        .iter()
        .map(|r| {
            columns
                .iter()
                .map(|c| {
                    let fields = if c.source == source {
                        Some(&r["fields"])
                    } else {
                        r["person_id"]
                            .as_str()
                            .and_then(|p| found.get(&(c.source.clone(), p.to_string())))
                    };
                    fields
                        .and_then(|f| f.get(&c.field))
                        .cloned()
                        .unwrap_or(Value::Null)
                })
                .collect()
        })
        .collect())
}

/// `GET /api/v1/persons/{id}/categories/{cat}?template=T`: the person's summary in a category.
#[utoipa::path(get, path = "/api/v1/persons/{id}/categories/{cat}", params(("id" = inline(crate::openapi::PersonIdParam), Path, description = "18-digit national ID"), ("cat" = String, Path, description = "category id"), ("template" = Option<String>, Query, description = "display template id; default: the category's fields"), ("x-govchain-consent" = inline(Option<crate::openapi::HexIdParam>), Header, nullable = false, description = "the person's consent (a consent id)")), responses((status = 200, body = Object, description = "rows of {label, value, source, field, record_key} in template order (R-QRY-3)"), (status = 400, description = "bad_person_id, bad_query, bad_consent"), (status = 401, description = crate::openapi::UNAUTHENTICATED), (status = 403, description = crate::openapi::DENIED), (status = 404, description = "unknown_category, unknown_template"), (status = 503, description = crate::openapi::DECIDE_UNAVAILABLE)))]
pub async fn person_summary(
    State(ctx): State<ApiContext>,
    Path((id, cat)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<Value>, ApiError> {
    let (caller, projection) = reader(&ctx, &headers, &uri)?;
    let ps = params(&uri, &["template"])?;
    let id = person(&id)?;
    let pool = projection.pool();
    let category = require_category(pool, &cat).await?;
    let (template, columns) = match param(&ps, "template") {
        Some(t) => {
            let t = require_template(pool, &cat, t).await?;
            (Some(t.id), t.columns)
        }
        None => (None, default_columns(pool, &category.sources).await?),
    };
    let wanted: std::collections::BTreeSet<String> =
        columns.iter().map(|c| c.source.clone()).collect();
    let access = caller.decide(
        &ctx,
        Right::Query,
        wanted.into_iter().collect(),
        false,
        Some(id.as_str()),
        None,
    )?;
    let columns: Vec<Column> = columns
        .into_iter()
        .filter(|c| access.may_read(&c.source))
        .collect();
    let records = person_records(pool, &id).await?;
    let mut rows = Vec::new();
    for c in &columns {
        let mut any = false;
        for r in records.iter().filter(|r| r["source"] == c.source.as_str()) {
            any = true;
            rows.push(json!({
                "label": c.label, "value": r["fields"].get(&c.field).cloned().unwrap_or(Value::Null),
                "source": c.source, "field": c.field, "record_key": r["record_key"],
            }));
        }
        if !any {
            rows.push(json!({
                "label": c.label, "value": Value::Null, "source": c.source, "field": c.field,
                "record_key": Value::Null,
            }));
        }
    }
    let shown = rows.iter().any(|r| !r["record_key"].is_null());
    access.done(rows.len(), shown.then_some(id.as_str()))?;
    let at = projection.cursor().await.map_err(db_error)?;
    Ok(Json(json!({
        "person_id": id.as_str(),
        "category": {"id": category.id, "name": category.name},
        "template": template,
        "rows": rows,
        "projected_height": at.map(|(h, _)| h.0),
    })))
}

/// `GET /api/v1/queries/run?owner=HEX&name=N&page=&page_size=`: runs a saved query.
#[utoipa::path(get, path = "/api/v1/queries/run", params(("owner" = inline(crate::openapi::HexIdParam), Query, description = "the owner's public key, hex"), ("name" = String, Query, description = "the saved query's name"), ("page" = inline(Option<crate::openapi::KeysetPageParam>), Query, description = "default 1; (page - 1) x page_size at most 10000 rows skipped (deeper: after)"), ("page_size" = inline(Option<crate::openapi::PageSizeParam>), Query, description = "default 20"), ("after" = inline(Option<crate::openapi::CursorParam>), Query, description = "the next cursor of the previous page of this query (keyset paging; bound to the user and query, lapses when the node restarts); not with page")), responses((status = 200, body = Object, description = "one page of results, shaped by the query's template if it names one (R-QRY-2)"), (status = 400, description = "bad_owner, bad_page, page_too_deep, bad_cursor, bad_query, bad_consent"), (status = 401, description = crate::openapi::UNAUTHENTICATED), (status = 403, description = crate::openapi::DENIED), (status = 404, description = "unknown_query"), (status = 503, description = crate::openapi::DECIDE_UNAVAILABLE), (status = 429, description = "row_quota_exceeded: the user's rows of the day on this node are used up (Retry-After)"), (status = 500, description = "db_error: the node's database failed (details only in its log)")))]
pub async fn run_query(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<Value>, ApiError> {
    let (caller, projection) = reader(&ctx, &headers, &uri)?;
    let ps = params(&uri, &["owner", "name", "page", "page_size", "after"])?;
    let owner = owner_key(param(&ps, "owner"))?;
    let name =
        param(&ps, "name").ok_or_else(|| ApiError::bad_request("bad_query", "name is required"))?;
    let window = Window::parse(&ps, &caller.user_id(), uri.path(), 20, MAX_PAGE_SIZE, 1)?;
    let q = require_query(projection.pool(), &owner, name).await?;
    let source = load_source(projection.pool(), &q.source)
        .await?
        .ok_or_else(|| ApiError::internal(format!("source {} not projected", q.source)))?;
    let conditions = conds(&q.conditions);
    // A saved query naming one person needs their consent (R-SEC-5), as the person file does.
    let named = crate::named::in_conditions(&source, &conditions)?;
    let right = window.right(Right::Query, ctx.read_limits.query_rows_without_export);
    let access = caller.decide(
        &ctx,
        right,
        vec![q.source.clone()],
        false,
        named.as_ref().map(|p| p.as_str()),
        None,
    )?;
    let results = if access.may_read(&q.source) {
        matching_records(&projection, &q.source, &conditions, &window).await?
    } else {
        Vec::new()
    };
    let shaped = match &q.shape {
        None => Value::Null,
        Some(s) => {
            let t = require_template(projection.pool(), &s.category, &s.template).await?;
            let columns: Vec<Column> = t
                .columns
                .into_iter()
                .filter(|c| c.source == q.source)
                .collect();
            let rows = shape_rows(&projection, &q.source, &results, &columns).await?;
            json!({"category": s.category, "template": s.template, "columns": columns, "rows": rows})
        }
    };
    access.done(results.len(), persons_of(&results))?;
    Ok(Json(json!({
        "owner": owner.to_hex(),
        "query": q,
        "page": window.page,
        "page_size": window.page_size,
        "next": next_page(&window, &results),
        "results": results,
        "shaped": shaped,
    })))
}

/// Parses `eq`/`from`/`to` = `FIELD:VALUE` into conditions checked against `source` as a saved
/// query's are (400 `unknown_field`, `bad_value`, `bad_query`).
fn parse_conditions(
    ps: &[(String, String)],
    source: &govchain_chaincode::catalog::DataSource,
) -> Result<Vec<Condition>, ApiError> {
    let mut out = Vec::new();
    for (k, v) in ps {
        let op = match k.as_str() {
            "eq" => ConditionOp::Eq,
            "from" => ConditionOp::From,
            "to" => ConditionOp::To,
            _ => continue,
        };
        let (field, value) = v.split_once(':').ok_or_else(|| {
            ApiError::bad_request("bad_query", format!("{k}={v:?}: expected FIELD:VALUE"))
        })?;
        let c = Condition {
            op,
            field: field.to_string(),
            value: value.to_string(),
        };
        c.check(source).map_err(|e| match e {
            TxError::NotFound { .. } => ApiError::bad_request("unknown_field", e.to_string()),
            other => ApiError::bad_request("bad_value", other.to_string()),
        })?;
        out.push(c);
    }
    if out.len() > govchain_chaincode::business::MAX_CONDITIONS {
        return Err(ApiError::bad_request(
            "bad_query",
            format!(
                "at most {} conditions",
                govchain_chaincode::business::MAX_CONDITIONS
            ),
        ));
    }
    Ok(out)
}

/// `GET /api/v1/categories/{cat}/export?format=F&source=S&eq=F:V&from=F:V&to=F:V&page=&page_size=`:
/// the matching records of one of the category's sources, in the export format's file type,
/// columns and labels, with the blake3 digest in `x-govchain-digest`.
#[utoipa::path(get, path = "/api/v1/categories/{cat}/export", operation_id = "category_export", params(("cat" = String, Path, description = "category id"), ("format" = String, Query, description = "export format id"), ("source" = Option<String>, Query, description = "one of the category's sources (default: its first)"), ("eq" = inline(Option<crate::openapi::ConditionParam>), Query, description = "FIELD:VALUE, repeatable"), ("from" = inline(Option<crate::openapi::ConditionParam>), Query, description = "FIELD:VALUE lower bound"), ("to" = inline(Option<crate::openapi::ConditionParam>), Query, description = "FIELD:VALUE upper bound"), ("page" = inline(Option<crate::openapi::KeysetPageParam>), Query, description = "default 1; (page - 1) x page_size at most 10000 rows skipped (deeper: after)"), ("page_size" = inline(Option<crate::openapi::ExportRowsParam>), Query, description = "default the most"), ("after" = inline(Option<crate::openapi::CursorParam>), Query, description = "the next cursor of the previous page of this query (keyset paging; bound to the user and query, lapses when the node restarts); not with page")), responses((status = 200, content((String = "text/csv"), (Object = "application/json"), (String = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")), headers(("x-govchain-digest" = String, description = "blake3 hash of the file, hex")), description = "the file in the format's type (R-QRY-4)"), (status = 400, description = "bad_query, source_not_in_category, unknown_field, bad_value, bad_page, page_too_deep, bad_cursor, bad_consent"), (status = 401, description = crate::openapi::UNAUTHENTICATED), (status = 403, description = crate::openapi::DENIED), (status = 404, description = "unknown_category, unknown_format"), (status = 503, description = crate::openapi::DECIDE_UNAVAILABLE), (status = 429, description = "row_quota_exceeded: the user's rows of the day on this node are used up (Retry-After)"), (status = 500, description = "db_error: the node's database failed (details only in its log)")))]
pub async fn export(
    State(ctx): State<ApiContext>,
    Path(cat): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    let (caller, projection) = reader(&ctx, &headers, &uri)?;
    let ps = params(
        &uri,
        &[
            "format",
            "source",
            "eq",
            "from",
            "to",
            "page",
            "page_size",
            "after",
        ],
    )?;
    let window = Window::parse(
        &ps,
        &caller.user_id(),
        uri.path(),
        MAX_EXPORT_ROWS,
        MAX_EXPORT_ROWS,
        1,
    )?;
    let format_id = param(&ps, "format")
        .ok_or_else(|| ApiError::bad_request("bad_query", "format is required"))?;
    let pool = projection.pool();
    let category = require_category(pool, &cat).await?;
    let format = require_format(pool, &cat, format_id).await?;
    let source_id = match param(&ps, "source") {
        Some(s) => s.to_string(),
        None => category
            .sources
            .first()
            .map(|s| s.source.clone())
            .ok_or_else(|| ApiError::internal("a category without sources"))?,
    };
    if !category.sources.iter().any(|s| s.source == source_id) {
        return Err(ApiError::bad_request(
            "source_not_in_category",
            format!("category {cat} does not summarize source {source_id:?}"),
        ));
    }
    let source = load_source(pool, &source_id)
        .await?
        .ok_or_else(|| ApiError::internal(format!("source {source_id} not projected")))?;
    let conditions = conds(&parse_conditions(&ps, &source)?);
    let mut read: std::collections::BTreeSet<String> =
        format.columns.iter().map(|c| c.source.clone()).collect();
    read.insert(source_id.clone());
    // An export naming one person needs their consent (R-SEC-5) and shows only what it
    // covers: no rows of a queried source outside it, empty columns of other such sources.
    let named = crate::named::in_conditions(&source, &conditions)?;
    let access = caller.decide(
        &ctx,
        Right::Export,
        read.into_iter().collect(),
        false,
        named.as_ref().map(|p| p.as_str()),
        None,
    )?;
    let results = if access.may_read(&source_id) {
        matching_records(&projection, &source_id, &conditions, &window).await?
    } else {
        Vec::new()
    };
    let columns: Vec<Column> = format
        .columns
        .iter()
        .filter(|c| access.may_read(&c.source))
        .cloned()
        .collect();
    let mut values = shape_rows(&projection, &source_id, &results, &columns).await?;
    // Back to the format's columns: those left out are empty.
    if columns.len() != format.columns.len() {
        values = values
            .into_iter()
            .map(|row| {
                let mut row = row.into_iter();
                format
                    .columns
                    .iter()
                    .map(|c| {
                        if access.may_read(&c.source) {
                            row.next().unwrap_or(Value::Null)
                        } else {
                            Value::Null
                        }
                    })
                    .collect()
            })
            .collect();
    }
    access.done(values.len(), persons_of(&results))?;
    let next = next_page(&window, &results);
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let sheet = Sheet {
        name: format.category.clone(),
        headers: format.columns.iter().map(|c| c.label.clone()).collect(),
        rows: values
            .iter()
            .map(|r| r.iter().map(text).collect())
            .collect(),
    };
    render(format.file_type.into(), sheet, move || {
        let rows: Vec<Value> = results
            .iter()
            .zip(&values)
            .map(|(r, v)| json!({"record_key": r["record_key"], "person_id": r["person_id"], "values": v}))
            .collect();
        json!({
            "category": format.category, "format": format.id, "source": source_id,
            "columns": format.columns, "rows": rows,
        })
    })
    .await
    .map(|r| crate::export::with_next(r, next))
}
