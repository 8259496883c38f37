//! Reading the business catalog from the SQL projection (R-ARC-4, R-ARC-5, R-QRY-2…6): list
//! and get matter types with their materials, categories with their display templates and
//! export formats, an owner's saved queries, and the history of catalog changes. Also the
//! loaders the matter-file and shaping endpoints share ([`crate::matters`], [`crate::shaping`]).
//!
//! Every endpoint requires a request signed by the system administrator, like
//! [`crate::query`]. Writes are transactions (`POST /api/v1/txs`), never this module's.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::Json;
use govchain_chaincode::business::{
    DisplayTemplate, ExportFormat, Material, MatterType, SavedQuery, ServiceCategory,
};
use govchain_chaincode::catalog::DataSource;
use govchain_ledger::PublicKey;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use sqlx::{AnyPool, Row};

use crate::access::reader;
use crate::openapi::{
    HexIdParam, PageParam, PageSizeParam, BAD_REQUEST, FORBIDDEN, NO_PROJECTION, UNAUTHENTICATED,
};
use crate::query::{db_error, MAX_PAGE, MAX_PAGE_SIZE};
use crate::{ApiContext, ApiError};

/// A 404 with a specific code (`unknown_matter`, `unknown_category`, …).
pub(crate) fn unknown(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, code, message)
}

fn parse<T: DeserializeOwned>(s: &str) -> Result<T, ApiError> {
    serde_json::from_str(s).map_err(|e| ApiError::internal(format!("stored definition: {e}")))
}

/// The query parameters of `uri`, refusing any not in `allowed` (400 `bad_query`).
pub(crate) fn params(uri: &Uri, allowed: &[&str]) -> Result<Vec<(String, String)>, ApiError> {
    let mut out = Vec::new();
    for (k, v) in form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()) {
        if !allowed.contains(&&*k) {
            return Err(ApiError::bad_request(
                "bad_query",
                format!("unknown parameter {k:?}"),
            ));
        }
        out.push((k.into_owned(), v.into_owned()));
    }
    Ok(out)
}

/// The single value of parameter `name`, if given.
pub(crate) fn param<'a>(ps: &'a [(String, String)], name: &str) -> Option<&'a str> {
    ps.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// `page` (1..=[`MAX_PAGE`], default 1) and `page_size` (1..=`max_size`, default `default`).
pub(crate) fn paging(
    ps: &[(String, String)],
    default: usize,
    max_size: usize,
) -> Result<(usize, usize), ApiError> {
    let number = |k: &str, max: usize, dflt: usize| match param(ps, k) {
        None => Ok(dflt),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| ApiError::bad_request("bad_page", format!("{k} must be 1-{max}"))),
    };
    Ok((
        number("page", MAX_PAGE, 1)?,
        number("page_size", max_size, default)?,
    ))
}

/// Parses an owner's hex key (400 `bad_owner`).
pub(crate) fn owner_key(hex: Option<&str>) -> Result<PublicKey, ApiError> {
    hex.and_then(|h| PublicKey::from_hex(h).ok())
        .ok_or_else(|| {
            ApiError::bad_request(
                "bad_owner",
                "owner must be a hex public key (64 hex digits)",
            )
        })
}

async fn fetch_defs(
    pool: &AnyPool,
    sql: &'static str,
    args: &[&str],
) -> Result<Vec<String>, ApiError> {
    let mut q = sqlx::query(sql);
    for a in args {
        q = q.bind(a.to_string());
    }
    let rows = q.fetch_all(pool).await.map_err(db_error)?;
    rows.iter()
        .map(|r| r.try_get::<String, _>(0).map_err(db_error))
        .collect()
}

async fn fetch_one<T: DeserializeOwned>(
    pool: &AnyPool,
    sql: &'static str,
    args: &[&str],
) -> Result<Option<T>, ApiError> {
    match fetch_defs(pool, sql, args).await?.first() {
        None => Ok(None),
        Some(d) => Ok(Some(parse(d)?)),
    }
}

/// The data source `id` as projected.
pub(crate) async fn load_source(pool: &AnyPool, id: &str) -> Result<Option<DataSource>, ApiError> {
    fetch_one(pool, "SELECT definition FROM sources WHERE id = ?", &[id]).await
}

async fn materials(pool: &AnyPool, matter: &str) -> Result<Vec<Material>, ApiError> {
    let sql = "SELECT definition FROM materials WHERE matter = ? ORDER BY ordinal";
    let defs = fetch_defs(pool, sql, &[matter]).await?;
    defs.iter().map(|d| parse(d)).collect()
}

/// The matter type `id` with its materials, in checklist order.
pub(crate) async fn load_matter(pool: &AnyPool, id: &str) -> Result<Option<MatterType>, ApiError> {
    let sql = "SELECT definition FROM matter_types WHERE id = ?";
    let Some(mut m) = fetch_one::<MatterType>(pool, sql, &[id]).await? else {
        return Ok(None);
    };
    m.materials = materials(pool, id).await?;
    Ok(Some(m))
}

/// The matter type `id`, or 404 `unknown_matter`.
pub(crate) async fn require_matter(pool: &AnyPool, id: &str) -> Result<MatterType, ApiError> {
    load_matter(pool, id)
        .await?
        .ok_or_else(|| unknown("unknown_matter", format!("no matter type {id:?}")))
}

/// The definition `sql` selects with `args`, or 404 with `code` and `message`.
async fn require<T: DeserializeOwned>(
    pool: &AnyPool,
    sql: &'static str,
    args: &[&str],
    code: &'static str,
    message: String,
) -> Result<T, ApiError> {
    fetch_one(pool, sql, args)
        .await?
        .ok_or_else(|| unknown(code, message))
}

/// The category `id`, or 404 `unknown_category`.
pub(crate) async fn require_category(
    pool: &AnyPool,
    id: &str,
) -> Result<ServiceCategory, ApiError> {
    let sql = "SELECT definition FROM categories WHERE id = ?";
    let message = format!("no category {id:?}");
    require(pool, sql, &[id], "unknown_category", message).await
}

/// The display template `id` of `category`, or 404 `unknown_template`.
pub(crate) async fn require_template(
    pool: &AnyPool,
    category: &str,
    id: &str,
) -> Result<DisplayTemplate, ApiError> {
    let sql = "SELECT definition FROM display_templates WHERE category = ? AND id = ?";
    let message = format!("category {category:?} has no display template {id:?}");
    require(pool, sql, &[category, id], "unknown_template", message).await
}

/// The export format `id` of `category`, or 404 `unknown_format`.
pub(crate) async fn require_format(
    pool: &AnyPool,
    category: &str,
    id: &str,
) -> Result<ExportFormat, ApiError> {
    let sql = "SELECT definition FROM export_formats WHERE category = ? AND id = ?";
    let message = format!("category {category:?} has no export format {id:?}");
    require(pool, sql, &[category, id], "unknown_format", message).await
}

/// The saved query `name` of `owner`, or 404 `unknown_query`.
pub(crate) async fn require_query(
    pool: &AnyPool,
    owner: &PublicKey,
    name: &str,
) -> Result<SavedQuery, ApiError> {
    let sql = "SELECT definition FROM saved_queries WHERE owner = ? AND name = ?";
    let message = format!("owner has no saved query {name:?}");
    require(
        pool,
        sql,
        &[&owner.to_hex(), name],
        "unknown_query",
        message,
    )
    .await
}

async fn category_json(pool: &AnyPool, c: &ServiceCategory) -> Result<Value, ApiError> {
    let sql = "SELECT definition FROM display_templates WHERE category = ? ORDER BY id";
    let templates: Vec<Value> = fetch_defs(pool, sql, &[&c.id])
        .await?
        .iter()
        .map(|d| parse(d))
        .collect::<Result<_, _>>()?;
    let sql = "SELECT definition FROM export_formats WHERE category = ? ORDER BY id";
    let formats: Vec<Value> = fetch_defs(pool, sql, &[&c.id])
        .await?
        .iter()
        .map(|d| parse(d))
        .collect::<Result<_, _>>()?;
    Ok(json!({"category": c, "templates": templates, "formats": formats}))
}

/// `GET /api/v1/matters`: every matter type with its materials, by id.
#[utoipa::path(get, path = "/api/v1/matters", responses((status = 200, body = Object, description = "every matter type (R-ARC-4) with its sources, fields and materials"), (status = 400, description = BAD_REQUEST), (status = 401, description = UNAUTHENTICATED), (status = 403, description = FORBIDDEN), (status = 503, description = NO_PROJECTION)))]
pub async fn list_matters(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<Value>, ApiError> {
    let (_, p) = reader(&ctx, &headers, &uri)?;
    params(&uri, &[])?;
    let ids = fetch_defs(p.pool(), "SELECT id FROM matter_types ORDER BY id", &[]).await?;
    let mut out = Vec::with_capacity(ids.len());
    for id in &ids {
        out.push(require_matter(p.pool(), id).await?);
    }
    Ok(Json(json!({"matter_types": out})))
}

/// `GET /api/v1/matters/{id}`: one matter type with its materials.
#[utoipa::path(get, path = "/api/v1/matters/{id}", params(("id" = String, Path, description = "matter type id")), responses((status = 200, body = Object, description = "the matter type with its materials"), (status = 400, description = BAD_REQUEST), (status = 401, description = UNAUTHENTICATED), (status = 403, description = FORBIDDEN), (status = 503, description = NO_PROJECTION), (status = 404, description = "unknown_matter")))]
pub async fn get_matter(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<Value>, ApiError> {
    let (_, p) = reader(&ctx, &headers, &uri)?;
    params(&uri, &[])?;
    Ok(Json(
        json!({"matter_type": require_matter(p.pool(), &id).await?}),
    ))
}

/// `GET /api/v1/matters/{id}/materials`: a matter type's materials checklist (R-ARC-5).
#[utoipa::path(get, path = "/api/v1/matters/{id}/materials", params(("id" = String, Path, description = "matter type id")), responses((status = 200, body = Object, description = "the materials in checklist order"), (status = 400, description = BAD_REQUEST), (status = 401, description = UNAUTHENTICATED), (status = 403, description = FORBIDDEN), (status = 503, description = NO_PROJECTION), (status = 404, description = "unknown_matter")))]
pub async fn list_materials(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<Value>, ApiError> {
    let (_, p) = reader(&ctx, &headers, &uri)?;
    params(&uri, &[])?;
    let m = require_matter(p.pool(), &id).await?;
    Ok(Json(json!({"matter": m.id, "materials": m.materials})))
}

/// `GET /api/v1/categories`: every service category with its templates and formats.
#[utoipa::path(get, path = "/api/v1/categories", responses((status = 200, body = Object, description = "every service category (R-QRY-5) with its display templates and export formats"), (status = 400, description = BAD_REQUEST), (status = 401, description = UNAUTHENTICATED), (status = 403, description = FORBIDDEN), (status = 503, description = NO_PROJECTION)))]
pub async fn list_categories(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<Value>, ApiError> {
    let (_, p) = reader(&ctx, &headers, &uri)?;
    params(&uri, &[])?;
    let defs = fetch_defs(
        p.pool(),
        "SELECT definition FROM categories ORDER BY id",
        &[],
    )
    .await?;
    let mut out = Vec::with_capacity(defs.len());
    for d in &defs {
        out.push(category_json(p.pool(), &parse(d)?).await?);
    }
    Ok(Json(json!({"categories": out})))
}

/// `GET /api/v1/categories/{id}`: one category with its templates and formats.
#[utoipa::path(get, path = "/api/v1/categories/{id}", params(("id" = String, Path, description = "category id")), responses((status = 200, body = Object, description = "the category, its display templates and export formats"), (status = 400, description = BAD_REQUEST), (status = 401, description = UNAUTHENTICATED), (status = 403, description = FORBIDDEN), (status = 503, description = NO_PROJECTION), (status = 404, description = "unknown_category")))]
pub async fn get_category(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<Value>, ApiError> {
    let (_, p) = reader(&ctx, &headers, &uri)?;
    params(&uri, &[])?;
    let c = require_category(p.pool(), &id).await?;
    Ok(Json(category_json(p.pool(), &c).await?))
}

/// `GET /api/v1/queries?owner=HEX`: an owner's saved queries, by name (R-QRY-2).
#[utoipa::path(get, path = "/api/v1/queries", params(("owner" = inline(HexIdParam), Query, description = "the owner's public key, hex")), responses((status = 200, body = Object, description = "the owner's saved queries"), (status = 400, description = "bad_owner, bad_query, bad_consent"), (status = 401, description = UNAUTHENTICATED), (status = 403, description = FORBIDDEN), (status = 503, description = NO_PROJECTION)))]
pub async fn list_queries(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<Value>, ApiError> {
    let (_, p) = reader(&ctx, &headers, &uri)?;
    let ps = params(&uri, &["owner"])?;
    let owner = owner_key(param(&ps, "owner"))?;
    let sql = "SELECT definition FROM saved_queries WHERE owner = ? ORDER BY name";
    let queries: Vec<SavedQuery> = fetch_defs(p.pool(), sql, &[&owner.to_hex()])
        .await?
        .iter()
        .map(|d| parse(d))
        .collect::<Result<_, _>>()?;
    Ok(Json(json!({"owner": owner.to_hex(), "queries": queries})))
}

/// `GET /api/v1/catalog/changes?page=&page_size=`: every catalog change in chain order, with
/// its block height, transaction and signer (R-ARC-5: every change is on chain).
#[utoipa::path(get, path = "/api/v1/catalog/changes", params(("page" = inline(Option<PageParam>), Query, description = "default 1"), ("page_size" = inline(Option<PageSizeParam>), Query, description = "default the most")), responses((status = 200, body = Object, description = "catalog changes, oldest first"), (status = 400, description = "bad_page, bad_query, bad_consent"), (status = 401, description = UNAUTHENTICATED), (status = 403, description = FORBIDDEN), (status = 503, description = NO_PROJECTION)))]
pub async fn list_changes(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<Value>, ApiError> {
    let (_, p) = reader(&ctx, &headers, &uri)?;
    let ps = params(&uri, &["page", "page_size"])?;
    let (page, page_size) = paging(&ps, MAX_PAGE_SIZE, MAX_PAGE_SIZE)?;
    let rows = sqlx::query(
        "SELECT seq, height, tx_id, signer, kind, entry_type, entry_key, definition \
         FROM catalog_changes ORDER BY seq LIMIT ? OFFSET ?",
    )
    .bind(page_size as i64)
    .bind(((page - 1) * page_size) as i64)
    .fetch_all(p.pool())
    .await
    .map_err(db_error)?;
    let mut changes = Vec::with_capacity(rows.len());
    for r in &rows {
        let s = |i: usize| r.try_get::<String, _>(i).map_err(db_error);
        let i = |i: usize| r.try_get::<i64, _>(i).map_err(db_error);
        let def = match r.try_get::<Option<String>, _>(7).map_err(db_error)? {
            Some(d) => parse::<Value>(&d)?,
            None => Value::Null,
        };
        changes.push(json!({
            "seq": i(0)?, "height": i(1)?, "tx_id": s(2)?, "signer": s(3)?, "kind": s(4)?,
            "entry_type": s(5)?, "entry_key": s(6)?, "definition": def,
        }));
    }
    Ok(Json(
        json!({"page": page, "page_size": page_size, "changes": changes}),
    ))
}
