//! Fuzzy search (R-QRY-1): records with a national ID, phone, name or address field holding a
//! fragment, Chinese included, over the n-gram index of the projection
//! ([`crate::projection::ngrams`]). The rarest grams' postings are joined on the record's row
//! id in a forced order and every candidate's value is confirmed, so a hit always holds the
//! fragment.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Uri};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::Row;

use crate::access::reader;
use crate::projection::{ngrams, normalize, Backend, Projection};
use crate::query::{db_error, record_json, RECORD_COLUMNS, RECORD_COLUMN_COUNT};
use crate::{ApiContext, ApiError};
use govchain_chaincode::access::Right;

/// Shortest and longest fuzzy query, in characters.
pub const QUERY_CHARS: std::ops::RangeInclusive<usize> = 2..=32;
/// Most results of one search.
pub const MAX_LIMIT: usize = 100;
/// Most index candidates examined for one search.
const MAX_CANDIDATES: i64 = 20_000;

/// Query of `GET /api/v1/search`.
#[derive(Debug, Deserialize)]
pub struct SearchQuery {
    /// The fragment to find (2–32 characters).
    pub q: String,
    /// Most results (1–100, default 20).
    pub limit: Option<usize>,
}

/// `GET /api/v1/search?q=…`: records with a name, ID, address or phone field containing `q`.
#[utoipa::path(get, path = "/api/v1/search", params(("q" = inline(crate::openapi::SearchTextParam), Query, description = "a whole national ID names that person and needs their consent"), ("limit" = inline(Option<crate::openapi::SearchLimitParam>), Query, description = "default 20"), ("x-govchain-consent" = inline(Option<crate::openapi::HexIdParam>), Header, nullable = false, description = "the person's consent id, when q is a whole national ID")), responses((status = 200, body = Object, description = "records of the sources the caller may read with a name, ID, address or phone field containing q"), (status = 400, description = "bad_query, bad_limit, query_too_short, bad_consent"), (status = 401, description = crate::openapi::UNAUTHENTICATED), (status = 403, description = crate::openapi::DENIED), (status = 503, description = crate::openapi::DECIDE_UNAVAILABLE), (status = 429, description = "row_quota_exceeded: the user's rows of the day on this node are used up (Retry-After)"), (status = 500, description = "db_error: the node's database failed (details only in its log)")))]
pub async fn search(
    State(ctx): State<ApiContext>,
    query: Result<Query<SearchQuery>, QueryRejection>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<Value>, ApiError> {
    let (caller, projection) = reader(&ctx, &headers, &uri)?;
    // A missing q or a limit that is no number is an error like any other (JSON, not the
    // extractor's plain text).
    let Query(query) = query.map_err(|e| ApiError::bad_request("bad_query", e.body_text()))?;
    let limit = query.limit.unwrap_or(20);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(
            "bad_limit",
            format!("limit must be 1-{MAX_LIMIT}"),
        ));
    }
    let needle = normalize(&query.q);
    if !QUERY_CHARS.contains(&needle.chars().count()) {
        return Err(ApiError::bad_request(
            "bad_query",
            format!(
                "q must have {}-{} characters (spaces ignored)",
                QUERY_CHARS.start(),
                QUERY_CHARS.end()
            ),
        ));
    }
    let grams = ngrams(&needle);
    if grams.is_empty() {
        return Err(ApiError::bad_request(
            "query_too_short",
            "q needs two adjacent Chinese characters or four letters or digits in a row",
        ));
    }
    // A whole national ID names one person: the search then needs that person's consent, as
    // the person file does (R-SEC-5), and shows only the consent's sources.
    let named = crate::named::in_search(&needle)?;
    let person = named.as_ref().map(|p| p.as_str());
    // Only sources the caller may read are searched (R-SEC-3), so neither the hits, their
    // number, `truncated` nor a refusal depend on records the caller may not read.
    let readable = caller.readable(&ctx, Right::Query, all_sources(&projection).await?, person);
    let (hits, truncated) = if readable.is_empty() {
        (Vec::new(), false)
    } else {
        fuzzy(&projection, &needle, grams, limit, &readable).await?
    };
    let records: Vec<Value> = hits.iter().map(|h| h["record"].clone()).collect();
    let access = caller.decide(
        &ctx,
        Right::Query,
        crate::matters::sources_of(&records),
        true,
        person,
        None,
    )?;
    let hits: Vec<Value> = hits
        .into_iter()
        .filter(|h| access.may_read(h["record"]["source"].as_str().unwrap_or_default()))
        .collect();
    let records: Vec<Value> = hits.iter().map(|h| h["record"].clone()).collect();
    access.done(hits.len(), crate::matters::persons_of(&records))?;
    Ok(Json(
        json!({"q": query.q, "results": hits, "truncated": truncated}),
    ))
}

/// The ids of every projected data source.
async fn all_sources(projection: &Projection) -> Result<Vec<String>, ApiError> {
    let rows = sqlx::query("SELECT id FROM sources ORDER BY id")
        .fetch_all(projection.pool())
        .await
        .map_err(db_error)?;
    rows.iter()
        .map(|r| r.try_get::<String, _>(0).map_err(db_error))
        .collect()
}

/// Most postings counted per gram when choosing which grams drive a search.
const GRAM_COUNT_CAP: i64 = 1_000;
/// Grams joined in SQL (the rarest ones); the candidates' values are then checked whole.
const JOINED_GRAMS: usize = 3;

/// The records of the `readable` sources holding `needle` in a searchable field: candidates
/// from the rarest grams' postings joined on their keys, each confirmed by its value and
/// source. Returns the hits and whether the candidate cap stopped the search early.
async fn fuzzy(
    projection: &Projection,
    needle: &str,
    grams: std::collections::BTreeSet<String>,
    limit: usize,
    readable: &std::collections::BTreeSet<String>,
) -> Result<(Vec<Value>, bool), ApiError> {
    // Postings per gram (capped), all in one statement.
    let grams: Vec<String> = grams.into_iter().collect();
    let sql = (0..grams.len())
        .map(|i| {
            format!("SELECT {i}, COUNT(*) FROM (SELECT 1 FROM ngrams WHERE gram = ? LIMIT ?) p{i}")
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for g in &grams {
        q = q.bind(g.clone()).bind(GRAM_COUNT_CAP);
    }
    let mut counted = Vec::with_capacity(grams.len());
    for row in q.fetch_all(projection.pool()).await.map_err(db_error)? {
        let i: i64 = row.try_get(0).map_err(db_error)?;
        let n: i64 = row.try_get(1).map_err(db_error)?;
        if n == 0 {
            return Ok((Vec::new(), false));
        }
        let g = grams.get(i as usize).cloned().unwrap_or_default();
        counted.push((n, g));
    }
    counted.sort();
    counted.truncate(JOINED_GRAMS);
    // The join order is forced, rarest gram first (SQLite: CROSS JOIN; MySQL: STRAIGHT_JOIN).
    let (select, join) = match projection.backend() {
        Backend::Sqlite => ("SELECT", "CROSS JOIN"),
        Backend::MySql => ("SELECT STRAIGHT_JOIN", "JOIN"),
    };
    let mut sql = format!("{select} g0.rid, g0.field, f.value, f.source FROM ngrams g0");
    let mut cond = String::from(" WHERE g0.gram = ?");
    for i in 1..counted.len() {
        sql.push_str(&format!(" {join} ngrams g{i}"));
        cond.push_str(&format!(
            " AND g{i}.gram = ? AND g{i}.rid = g0.rid AND g{i}.field = g0.field"
        ));
    }
    sql.push_str(&format!(" {join} record_fields f"));
    sql.push_str(&cond);
    sql.push_str(" AND f.rid = g0.rid AND f.field = g0.field LIMIT ? OFFSET ?");
    let mut hits: Vec<(i64, String, String)> = Vec::new();
    let (mut offset, mut batch) = (0i64, (limit as i64 * 2).max(64));
    let truncated = loop {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
        for (_, g) in &counted {
            q = q.bind(g.clone());
        }
        let rows = q
            .bind(batch)
            .bind(offset)
            .fetch_all(projection.pool())
            .await
            .map_err(db_error)?;
        for r in &rows {
            let value: String = r.try_get(2).map_err(db_error)?;
            let source: String = r.try_get(3).map_err(db_error)?;
            if hits.len() < limit
                && readable.contains(&source)
                && normalize(&value).contains(needle)
            {
                let rid: i64 = r.try_get(0).map_err(db_error)?;
                hits.push((rid, r.try_get(1).map_err(db_error)?, value));
            }
        }
        offset += rows.len() as i64;
        if hits.len() >= limit || (rows.len() as i64) < batch {
            break false;
        }
        if offset >= MAX_CANDIDATES {
            break true;
        }
        batch = (batch * 4).min(MAX_CANDIDATES - offset);
    };
    if hits.is_empty() {
        return Ok((Vec::new(), truncated));
    }
    let sql = format!(
        "SELECT {RECORD_COLUMNS}, rid FROM records WHERE rid IN ({})",
        vec!["?"; hits.len()].join(", ")
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (rid, ..) in &hits {
        q = q.bind(*rid);
    }
    let mut records = std::collections::HashMap::new();
    for row in q.fetch_all(projection.pool()).await.map_err(db_error)? {
        let rid: i64 = row.try_get(RECORD_COLUMN_COUNT).map_err(db_error)?;
        records.insert(rid, record_json(&row)?);
    }
    let out = hits
        .into_iter()
        .filter_map(|(rid, field, value)| {
            let record = records.get(&rid)?.clone();
            Some(json!({"field": field, "value": value, "record": record}))
        })
        .collect();
    Ok((out, truncated))
}
