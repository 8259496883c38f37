//! Personal-data queries on the SQL projection (R-ARC-1, R-QRY-1, R-QRY-6): the person file
//! (every source's latest record of one national ID, with provenance), combined queries and
//! their exports; fuzzy search is in [`crate::search`]. Every request is authenticated, decided
//! and audited ([`crate::access`]).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use axum::Json;
use serde_json::{json, Value};
use sqlx::Row;

use crate::access::{reader, Access};
use crate::catalog::{param, params};
use crate::paging::Window;
use crate::projection::{Backend, Projection};
use crate::{ApiContext, ApiError};
use govchain_chaincode::access::Right;

/// The answer to a failed projection query (issue 15 finding 7): the database's text (SQL,
/// table and column names, values) goes to the node's log only, under a reference the client
/// gets with a generic 500 `db_error`.
pub(crate) fn db_error(e: impl std::fmt::Display) -> ApiError {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let reference = format!("{:x}-{n}", crate::routes::now_ms().0);
    tracing::error!(target: "api.query", reference, error = %e, "projection query failed");
    ApiError::new(
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        "db_error",
        format!("the node's database could not answer; reference {reference} in the node's log"),
    )
}

pub(crate) fn record_json(r: &sqlx::any::AnyRow) -> Result<Value, ApiError> {
    let get_s = |i: usize| r.try_get::<String, _>(i).map_err(db_error);
    let get_i = |i: usize| r.try_get::<i64, _>(i).map_err(db_error);
    let fields: Value = serde_json::from_str(&get_s(5)?).map_err(ApiError::internal)?;
    Ok(json!({
        "source": get_s(0)?,
        "record_key": get_s(1)?,
        "version": get_i(2)?,
        "department": get_s(3)?,
        "tx_id": get_s(4)?,
        "fields": fields,
        "height": get_i(6)?,
        "person_id": r.try_get::<Option<String>, _>(7).map_err(db_error)?,
    }))
}

pub(crate) const RECORD_COLUMNS: &str =
    "source, record_key, version, department, tx_id, fields, height, person_id";
/// How many columns [`RECORD_COLUMNS`] names.
pub(crate) const RECORD_COLUMN_COUNT: usize = 8;

/// `GET /api/v1/persons/{id}`: the person file.
#[utoipa::path(get, path = "/api/v1/persons/{id}", params(("id" = inline(crate::openapi::PersonIdParam), Path, description = "18-digit national ID"), ("fresh" = Option<bool>, Query, description = "refresh the person's records from the department systems first, this node's and (through their nodes) the other departments' (R-SYN-2)"), ("deadline_ms" = inline(Option<crate::openapi::DeadlineParam>), Query, description = "how long the refresh may take, default 3000"), ("x-govchain-consent" = inline(Option<crate::openapi::HexIdParam>), Header, nullable = false, description = "the person's consent (a consent id)")), responses((status = 200, body = Object, description = "every source's latest record of the person, with provenance"), (status = 400, description = "bad_person_id, bad_query, bad_consent"), (status = 401, description = crate::openapi::UNAUTHENTICATED), (status = 403, description = crate::openapi::DENIED), (status = 404, description = "no records"), (status = 503, description = crate::openapi::DECIDE_UNAVAILABLE), (status = 429, description = "row_quota_exceeded: the user's rows of the day on this node are used up (Retry-After)"), (status = 500, description = "db_error: the node's database failed (details only in its log)")))]
pub async fn person_file(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<Value>, ApiError> {
    let (caller, projection) = reader(&ctx, &headers, &uri)?;
    let id = crate::matters::person(&id)?;
    let ps = params(&uri, &["fresh", "deadline_ms"])?;
    let fresh = match param(&ps, "fresh") {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(v) => {
            return Err(bad_query(
                "bad_query",
                format!("fresh={v:?}: true or false"),
            ))
        }
    };
    let deadline_ms = crate::sync::deadline(param(&ps, "deadline_ms"))?;
    let mut records = crate::matters::person_records(projection.pool(), &id).await?;
    // Decided over the sources holding the person's records that the caller may read (found
    // silently first): a refusal naming a source the caller may not read would tell that it
    // holds the person (issue 15 finding 4). A person held only there is "no records", as a
    // person held nowhere.
    let decide = |records: &[Value]| {
        let person = Some(id.as_str());
        let sources = crate::matters::sources_of(records);
        let readable = caller.readable(&ctx, Right::Query, sources, person);
        caller.decide(
            &ctx,
            Right::Query,
            readable.into_iter().collect(),
            false,
            person,
            None,
        )
    };
    // R-SYN-2: refresh from the department systems first, then answer from what is committed;
    // only for a caller who may read this person now (R-SEC-5: a refused caller makes no
    // system work, and the refusal is audited).
    let freshness = if fresh {
        decide(&records)?.discard();
        let f = crate::sync::pull_through(&ctx, id.as_str(), deadline_ms).await;
        records = crate::matters::person_records(projection.pool(), &id).await?;
        Some(f)
    } else {
        None
    };
    let access = decide(&records)?;
    let records: Vec<Value> = records
        .into_iter()
        .filter(|r| access.may_read(r["source"].as_str().unwrap_or_default()))
        .collect();
    access.done(records.len(), crate::matters::persons_of(&records))?;
    if records.is_empty() {
        return Err(ApiError::not_found(format!(
            "no records of person {}",
            id.as_str()
        )));
    }
    let at = projection.cursor().await.map_err(db_error)?;
    Ok(Json(json!({
        "person_id": id.as_str(),
        "records": records,
        "projected_height": at.map(|(h, _)| h.0),
        "freshness": freshness,
    })))
}

/// Most conditions of one combined query.
pub const MAX_CONDITIONS: usize = 16;
/// Most results per page, and the highest page.
pub const MAX_PAGE_SIZE: usize = 100;
/// Highest page number.
pub const MAX_PAGE: usize = 10_000;
/// Most rows of one export.
pub const MAX_EXPORT_ROWS: usize = 10_000;

fn bad_query(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::bad_request(code, message)
}

/// A parsed combined query (its access is reported by the caller).
struct Combined {
    access: Option<Access>,
    source: govchain_chaincode::catalog::DataSource,
    window: Window,
    format: Option<String>,
    columns: Option<Vec<String>>,
    results: Vec<Value>,
}

impl Combined {
    /// The cursor of the next page, if this one was full.
    fn next(&self) -> Option<String> {
        next_page(&self.window, &self.results)
    }
}

/// The cursor of the page after `results` (records of one source in record-key order, read
/// through `window`), if they filled their page.
pub(crate) fn next_page(window: &Window, results: &[Value]) -> Option<String> {
    let last = results
        .last()
        .map(|r| vec![r["record_key"].as_str().unwrap_or_default().to_string()]);
    window.next(results.len(), last)
}

/// Parses, checks and runs a combined query; `export` allows `format`, `columns` and pages of
/// up to [`MAX_EXPORT_ROWS`].
async fn combined(
    ctx: &ApiContext,
    headers: &HeaderMap,
    uri: &Uri,
    export: bool,
) -> Result<Combined, ApiError> {
    let (caller, projection) = reader(ctx, headers, uri)?;
    let max_page_size = if export {
        MAX_EXPORT_ROWS
    } else {
        MAX_PAGE_SIZE
    };
    let allowed: &[&str] = if export {
        &[
            "source",
            "page",
            "page_size",
            "after",
            "eq",
            "from",
            "to",
            "format",
            "columns",
        ]
    } else {
        &["source", "page", "page_size", "after", "eq", "from", "to"]
    };
    let ps = params(uri, allowed)?;
    let window = Window::parse(&ps, &caller.user_id(), uri.path(), 20, max_page_size, 1)?;
    let format = param(&ps, "format").map(str::to_string);
    let columns =
        param(&ps, "columns").map(|v| v.split(',').map(str::to_string).collect::<Vec<_>>());
    let mut conds = Vec::new();
    for (k, v) in &ps {
        let op = match k.as_str() {
            "eq" => "=",
            "from" => ">=",
            "to" => "<=",
            _ => continue,
        };
        let (field, value) = v
            .split_once(':')
            .ok_or_else(|| bad_query("bad_query", format!("{k}={v:?}: expected FIELD:VALUE")))?;
        conds.push((op, field.to_string(), value.to_string()));
    }
    if conds.len() > MAX_CONDITIONS {
        return Err(bad_query(
            "bad_query",
            format!("at most {MAX_CONDITIONS} conditions"),
        ));
    }
    let source: String = param(&ps, "source")
        .map(str::to_string)
        .ok_or_else(|| bad_query("bad_query", "source is required"))?;
    let def = sqlx::query("SELECT definition FROM sources WHERE id = ?")
        .bind(source.clone())
        .fetch_optional(projection.pool())
        .await
        .map_err(db_error)?
        .ok_or_else(|| bad_query("unknown_source", format!("no data source {source:?}")))?;
    let def: govchain_chaincode::catalog::DataSource =
        serde_json::from_str(&def.try_get::<String, _>(0).map_err(db_error)?)
            .map_err(ApiError::internal)?;
    for (op, field, value) in &conds {
        let f = def.field(field).ok_or_else(|| {
            bad_query(
                "unknown_field",
                format!("source {source} has no field {field:?}"),
            )
        })?;
        use govchain_chaincode::catalog::FieldType as T;
        let ordered = matches!(
            f.ty,
            T::Date | T::DateTime | T::Text | T::PersonId | T::Phone
        );
        if *op != "=" && !ordered {
            return Err(bad_query(
                "unsupported_range",
                format!("field {field} is not ordered as text; ranges work on dates and text"),
            ));
        }
        if matches!(f.ty, T::Date) {
            govchain_chaincode::records::parse_date(value)
                .map_err(|e| bad_query("bad_value", format!("{field}: {value:?} {e}")))?;
        }
    }
    if let Some(cols) = &columns {
        if let Some(bad) = cols.iter().find(|c| def.field(c).is_none()) {
            return Err(bad_query(
                "unknown_field",
                format!("source {source} has no column {bad:?}"),
            ));
        }
    }
    // A query naming one person reads that person's data: it needs their consent, as the
    // person file does, and shows nothing of a source outside the consent (R-SEC-5).
    let named = crate::named::in_conditions(&def, &conds)?;
    // Past the first rows of a query, paging on is bulk reading: the export right (finding 7).
    let right = if export {
        Right::Export
    } else {
        window.right(Right::Query, ctx.read_limits.query_rows_without_export)
    };
    let access = caller.decide(
        ctx,
        right,
        vec![source.clone()],
        false,
        named.as_ref().map(|p| p.as_str()),
        None,
    )?;
    let results = if access.may_read(&source) {
        matching_records(&projection, &source, &conds, &window).await?
    } else {
        Vec::new()
    };
    Ok(Combined {
        access: Some(access),
        source: def,
        window,
        format,
        columns,
        results,
    })
}

/// Index entries counted per condition when choosing which condition drives a combined query.
const CONDITION_COUNT_CAP: i64 = 5_000;

/// The conditions on one field: an equality, or the bounds of one range.
type FieldConds = (String, Vec<(&'static str, String)>);

/// One page (`window`: after a record key, or at an offset) of the current records of
/// `source` matching every condition `(op, field, value)` (`op` is `=`, `>=` or `<=`; fields
/// and values are bound), by record key, as JSON.
///
/// The most selective condition drives the query: each condition's index entries are counted
/// (up to [`CONDITION_COUNT_CAP`]) and the rarest is scanned first, the others checked per
/// candidate. At 1.5 million residents "sex = male AND married AND born in one month" driven
/// by the sex index visited about 28,000 candidates for one page (5 s on a cold cache); driven by
/// the birth-date range it visits about 1,600.
pub(crate) async fn matching_records(
    projection: &Projection,
    source: &str,
    conds: &[(&'static str, String, String)],
    window: &Window,
) -> Result<Vec<Value>, ApiError> {
    let mut fields = group_by_field(conds);
    if fields.len() > 1 {
        let Some(order) = by_selectivity(projection, source, fields).await? else {
            return Ok(Vec::new());
        };
        fields = order;
    }
    let after = window.after.as_ref().and_then(|k| k.first()).cloned();
    let (sql, binds) = combined_sql(projection.backend(), source, &fields, after);
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for b in binds {
        q = q.bind(b);
    }
    let rows = q
        .bind(window.page_size as i64)
        .bind(window.offset as i64)
        .fetch_all(projection.pool())
        .await
        .map_err(db_error)?;
    rows.iter().map(record_json).collect()
}

/// The conditions grouped into one index scan per field: an equality alone, a `from` and a
/// `to` on the same field together (one range).
fn group_by_field(conds: &[(&'static str, String, String)]) -> Vec<FieldConds> {
    let mut fields: Vec<FieldConds> = Vec::new();
    for (op, field, value) in conds {
        match fields
            .iter_mut()
            .find(|(f, ops)| f == field && *op != "=" && ops[0].0 != "=")
        {
            Some((_, ops)) => ops.push((*op, value.clone())),
            None => fields.push((field.clone(), vec![(*op, value.clone())])),
        }
    }
    fields
}

/// ` AND {alias}.value {op} ?` for each bound of one field (`op` is one of three constants).
fn value_tests(alias: &str, ops: &[(&'static str, String)]) -> String {
    ops.iter()
        .map(|(op, _)| format!(" AND {alias}.value {op} ?"))
        .collect()
}

/// `fields` ordered rarest first (by index entries, counted up to [`CONDITION_COUNT_CAP`], all
/// in one statement; among equally common ones an equality first, whose entries come in
/// record-key order); `None` when one condition matches nothing.
async fn by_selectivity(
    projection: &Projection,
    source: &str,
    fields: Vec<FieldConds>,
) -> Result<Option<Vec<FieldConds>>, ApiError> {
    let sql = fields
        .iter()
        .enumerate()
        .map(|(i, (_, ops))| {
            format!(
                "SELECT {i}, COUNT(*) FROM (SELECT 1 FROM record_fields c WHERE c.source = ? \
                 AND c.field = ?{} LIMIT ?) p{i}",
                value_tests("c", ops)
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (field, ops) in &fields {
        q = q.bind(source.to_string()).bind(field.clone());
        for (_, v) in ops {
            q = q.bind(v.clone());
        }
        q = q.bind(CONDITION_COUNT_CAP);
    }
    let mut counts = vec![0i64; fields.len()];
    for row in q.fetch_all(projection.pool()).await.map_err(db_error)? {
        let i: i64 = row.try_get(0).map_err(db_error)?;
        let n: i64 = row.try_get(1).map_err(db_error)?;
        if let Some(c) = counts.get_mut(i as usize) {
            *c = n;
        }
    }
    if counts.contains(&0) {
        return Ok(None);
    }
    let mut ranked: Vec<(i64, bool, FieldConds)> = fields
        .into_iter()
        .zip(counts)
        .map(|(f, n)| (n, f.1[0].0 != "=", f))
        .collect();
    ranked.sort_by_key(|a| (a.0, a.1));
    Ok(Some(ranked.into_iter().map(|(.., f)| f).collect()))
}

/// The SQL of a combined query over `source` and its bound values (before LIMIT and OFFSET),
/// from the record key after `after` if given (keyset paging: the index is entered there).
/// The index entries of the first field's conditions drive it, in this order (SQLite `CROSS
/// JOIN`, MySQL `STRAIGHT_JOIN`); the other fields' index rows are joined on the record's row
/// id; the page is cut from the index rows, and only its records are read (a record row is
/// about a kilobyte: reading every candidate's before sorting was most of a cold query's
/// disk reads). Fields and values are bound; operators are constants.
fn combined_sql(
    backend: Backend,
    source: &str,
    fields: &[FieldConds],
    after: Option<String>,
) -> (String, Vec<String>) {
    let columns: Vec<String> = RECORD_COLUMNS
        .split(", ")
        .map(|c| format!("r.{c}"))
        .collect();
    let columns = columns.join(", ");
    let after_test = |alias: &str| match after {
        Some(_) => format!(" AND {alias}.record_key > ?"),
        None => String::new(),
    };
    let Some((field, ops)) = fields.first() else {
        let sql = format!(
            "SELECT {columns} FROM records r WHERE r.source = ?{} ORDER BY r.record_key \
             LIMIT ? OFFSET ?",
            after_test("r")
        );
        let mut binds = vec![source.to_string()];
        binds.extend(after);
        return (sql, binds);
    };
    let (select, join) = match backend {
        Backend::Sqlite => ("SELECT", "CROSS JOIN"),
        Backend::MySql => ("SELECT STRAIGHT_JOIN", "JOIN"),
    };
    let mut sql =
        format!("{select} {columns} FROM (SELECT c0.rid, c0.record_key FROM record_fields c0");
    let mut binds = Vec::new();
    for (i, (field, ops)) in fields.iter().enumerate().skip(1) {
        sql.push_str(&format!(
            " {join} record_fields c{i} ON c{i}.rid = c0.rid AND c{i}.field = ?{}",
            value_tests(&format!("c{i}"), ops)
        ));
        binds.push(field.clone());
        binds.extend(ops.iter().map(|(_, v)| v.clone()));
    }
    sql.push_str(&format!(
        " WHERE c0.source = ? AND c0.field = ?{}{} ORDER BY c0.record_key LIMIT ? OFFSET ?) k \
         {join} records r ON r.rid = k.rid ORDER BY k.record_key",
        value_tests("c0", ops),
        after_test("c0")
    ));
    binds.extend([source.to_string(), field.clone()]);
    binds.extend(ops.iter().map(|(_, v)| v.clone()));
    binds.extend(after);
    (sql, binds)
}

/// `GET /api/v1/records?source=S&eq=FIELD:VALUE&from=FIELD:VALUE&to=FIELD:VALUE&page=&page_size=`:
/// the records of one source matching every condition (equality; inclusive ranges on dates and
/// text), by record key, one page at a time.
#[utoipa::path(get, path = "/api/v1/records", params(("source" = String, Query, description = "data source id"), ("eq" = inline(Option<crate::openapi::ConditionParam>), Query, description = "FIELD:VALUE, repeatable"), ("from" = inline(Option<crate::openapi::ConditionParam>), Query, description = "FIELD:VALUE lower bound (dates, text), repeatable"), ("to" = inline(Option<crate::openapi::ConditionParam>), Query, description = "FIELD:VALUE upper bound, repeatable"), ("page" = inline(Option<crate::openapi::KeysetPageParam>), Query, description = "default 1; (page - 1) x page_size at most 10000 rows skipped (deeper: after)"), ("page_size" = inline(Option<crate::openapi::PageSizeParam>), Query, description = "default 20"), ("x-govchain-consent" = inline(Option<crate::openapi::HexIdParam>), Header, nullable = false, description = "the consent of the person an eq on a national-ID field names (a consent id)"), ("after" = inline(Option<crate::openapi::CursorParam>), Query, description = "the next cursor of the previous page of this query (keyset paging; bound to the user and query, lapses when the node restarts); not with page")), responses((status = 200, body = Object, description = "one page of matching records"), (status = 400, description = "unknown source or field, bad value, bad_page, page_too_deep, bad_cursor, malformed condition, too_many_persons, id_range (a range on a national-ID field), not_person_field (an eq on an ID field other than the person field), bad_person_id; bad_consent"), (status = 401, description = crate::openapi::UNAUTHENTICATED), (status = 403, description = crate::openapi::DENIED), (status = 503, description = crate::openapi::DECIDE_UNAVAILABLE), (status = 429, description = "row_quota_exceeded: the user's rows of the day on this node are used up (Retry-After)"), (status = 500, description = "db_error: the node's database failed (details only in its log)")))]
pub async fn records(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<Value>, ApiError> {
    let mut c = combined(&ctx, &headers, &uri, false).await?;
    if let Some(a) = c.access.take() {
        a.done(c.results.len(), crate::matters::persons_of(&c.results))?;
    }
    Ok(Json(json!({
        "source": c.source.id,
        "page": c.window.page,
        "page_size": c.window.page_size,
        "next": c.next(),
        "results": c.results,
    })))
}

/// `GET /api/v1/records/export?…&format=csv|json|xlsx&columns=a,b`: a combined query's rows (up
/// to [`MAX_EXPORT_ROWS`]) as a CSV file (a header row of field labels, UTF-8 with BOM so
/// spreadsheet programs keep Chinese text), JSON, or an XLSX workbook, with the content's blake3
/// digest in the `x-govchain-digest` header.
#[utoipa::path(get, path = "/api/v1/records/export", operation_id = "records_export", params(("source" = String, Query, description = "data source id"), ("format" = inline(Option<crate::openapi::FileKindParam>), Query, description = "default csv"), ("columns" = Option<String>, Query, description = "comma-separated field names"), ("eq" = inline(Option<crate::openapi::ConditionParam>), Query, description = "FIELD:VALUE, repeatable"), ("from" = inline(Option<crate::openapi::ConditionParam>), Query, description = "FIELD:VALUE lower bound (dates, text), repeatable"), ("to" = inline(Option<crate::openapi::ConditionParam>), Query, description = "FIELD:VALUE upper bound, repeatable"), ("page" = inline(Option<crate::openapi::KeysetPageParam>), Query, description = "default 1; (page - 1) x page_size at most 10000 rows skipped (deeper: after)"), ("page_size" = inline(Option<crate::openapi::ExportRowsParam>), Query, description = "default 20"), ("x-govchain-consent" = inline(Option<crate::openapi::HexIdParam>), Header, nullable = false, description = "the consent of the person an eq on a national-ID field names (a consent id)"), ("after" = inline(Option<crate::openapi::CursorParam>), Query, description = "the next cursor of the previous page of this query (keyset paging; bound to the user and query, lapses when the node restarts); not with page")), responses((status = 200, content((String = "text/csv"), (Object = "application/json"), (String = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")), headers(("x-govchain-digest" = String, description = "blake3 hash of the file, hex"), ("x-govchain-next" = String, description = "the next page's cursor (after=), when the file was a full page")), description = "the file (CSV cells that would start a formula get a leading apostrophe)"), (status = 400, description = "bad_format, unknown_source, unknown_field, bad_value, bad_page, page_too_deep, bad_cursor, bad_query, too_many_persons, id_range, not_person_field, bad_person_id, bad_consent"), (status = 401, description = crate::openapi::UNAUTHENTICATED), (status = 403, description = crate::openapi::DENIED), (status = 503, description = crate::openapi::DECIDE_UNAVAILABLE), (status = 429, description = "row_quota_exceeded: the user's rows of the day on this node are used up (Retry-After)"), (status = 500, description = "db_error: the node's database failed (details only in its log)")))]
pub async fn export(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<axum::response::Response, ApiError> {
    let mut c = combined(&ctx, &headers, &uri, true).await?;
    let kind = crate::export::FileKind::parse(c.format.as_deref().unwrap_or("csv"))?;
    let columns: Vec<String> = c
        .columns
        .clone()
        .unwrap_or_else(|| c.source.fields.iter().map(|f| f.name.clone()).collect());
    let headers = columns
        .iter()
        .map(|n| {
            c.source
                .field(n)
                .map_or(n.clone(), |f| format!("{}({n})", f.label))
        })
        .collect();
    let rows = c
        .results
        .iter()
        .map(|r| {
            columns
                .iter()
                .map(|n| r["fields"][n].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .collect();
    if let Some(a) = c.access.take() {
        a.done(c.results.len(), crate::matters::persons_of(&c.results))?;
    }
    let next = c.next();
    let sheet = crate::export::Sheet {
        name: c.source.id.clone(),
        headers,
        rows,
    };
    let (results, source_id) = (std::mem::take(&mut c.results), c.source.id.clone());
    crate::export::render(kind, sheet, move || {
        let rows: Vec<Value> = results
            .iter()
            .map(|r| {
                let fields: serde_json::Map<String, Value> = columns
                    .iter()
                    .map(|n| (n.clone(), r["fields"][n].clone()))
                    .collect();
                json!({"record_key": r["record_key"], "version": r["version"], "fields": fields})
            })
            .collect();
        json!({"source": source_id, "columns": columns, "rows": rows})
    })
    .await
    .map(|r| crate::export::with_next(r, next))
}
