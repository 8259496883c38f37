//! Resident consent by SMS code (R-SEC-5): `POST /api/v1/consents/request` sends a 6-digit code
//! to the person's phone number in the one source configured as authoritative for it
//! (`api.consent_phone_source`, the household registry; never another source), in a text that
//! names the department, the matter and the validity; `POST /api/v1/consents/verify` checks it
//! and puts the consent on chain (signed by this node), answering its id once committed. Codes
//! are kept hashed, expire after 5 minutes, allow 5 attempts and are rate-limited per person
//! and per user ([`crate::security`]); the limits are counted before anything is looked up.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::Json;
use govchain_chaincode::access::{AuditAction, Consent};
use govchain_chaincode::business::MatterType;
use govchain_chaincode::catalog::{DataSource, Department, FieldType};
use govchain_chaincode::person::PersonId;
use govchain_chaincode::{keys, TxKind};
use govchain_ledger::{StateView, TimestampMs};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::access::{audit, authenticate, Caller};
use crate::query::{db_error, record_json, RECORD_COLUMNS};
use crate::security::{consent_sms, CodeError, PendingCode, RateLimited};
use crate::session::json_body;
use crate::{ApiContext, ApiError};

/// Default and longest consent, in hours.
pub const DEFAULT_CONSENT_HOURS: u64 = 24;
/// Longest consent, in hours (30 days).
pub const MAX_CONSENT_HOURS: u64 = 720;
/// Records of the phone source read for one person (its record key is normally the person).
const MAX_PHONE_RECORDS: usize = 16;

/// Body of `POST /api/v1/consents/request`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    /// The person's national ID.
    #[schema(schema_with = crate::openapi::person_id)]
    pub person: String,
    /// The matter type of the case.
    pub matter: String,
    /// Why (1–200 characters).
    #[schema(schema_with = crate::openapi::purpose)]
    pub purpose: String,
}

/// Body of `POST /api/v1/consents/verify`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeCheck {
    /// The request id from `/consents/request`.
    pub request_id: String,
    /// The 6 digits the person read out.
    pub code: String,
    /// How long the consent holds, in hours (1–720, default 24).
    #[schema(schema_with = crate::openapi::consent_hours)]
    #[serde(default, deserialize_with = "crate::session::opt_whole_u64")]
    pub valid_hours: Option<u64>,
}

fn state_get<T: serde::de::DeserializeOwned>(
    view: &dyn StateView,
    key: &[u8],
) -> Result<Option<T>, ApiError> {
    govchain_chaincode::exec::get(view, key).map_err(ApiError::internal)
}

fn matter_type(ctx: &ApiContext, id: &str) -> Result<MatterType, ApiError> {
    state_get::<MatterType>(&ctx.store, &keys::matter_type(id))?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_matter",
            format!("no matter type {id:?}"),
        )
    })
}

/// The person's phone number in the source configured for it (`api.consent_phone_source`,
/// the household registry by default): the first non-empty value of that source's first
/// `phone` field over the person's records there. Never another source: a number some other
/// department keeps is not the resident's authoritative contact (R-SEC-5).
async fn phone_of(ctx: &ApiContext, person: &PersonId) -> Result<String, ApiError> {
    let source_id: &str = &ctx.consent_phone_source;
    let unavailable = |message: String| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no_phone_source", message)
    };
    let def = state_get::<DataSource>(&ctx.store, &keys::source(source_id))?.ok_or_else(|| {
        unavailable(format!(
            "api.consent_phone_source {source_id:?} is not a data source on chain"
        ))
    })?;
    let field = def
        .fields
        .iter()
        .find(|f| f.ty == FieldType::Phone)
        .ok_or_else(|| {
            unavailable(format!(
                "api.consent_phone_source {source_id:?} has no phone field"
            ))
        })?;
    let projection = ctx.projection.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_projection",
            "this node keeps no SQL projection (api.db = \"off\") to find the phone number in",
        )
    })?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {RECORD_COLUMNS} FROM records WHERE person_id = ? AND source = ? \
         ORDER BY record_key LIMIT {MAX_PHONE_RECORDS}"
    )))
    .bind(person.as_str().to_string())
    .bind(source_id.to_string())
    .fetch_all(projection.pool())
    .await
    .map_err(db_error)?;
    for row in &rows {
        let r = record_json(row)?;
        if let Some(v) = r["fields"][&field.name]
            .as_str()
            .filter(|v| !v.trim().is_empty())
        {
            return Ok(v.to_string());
        }
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "no_phone",
        format!(
            "{} ({source_id}) has no phone number for this person: record it there first; \
             no other source is used",
            def.name
        ),
    ))
}

/// The display name of department `id` (its id if it has none on chain).
fn department_name(ctx: &ApiContext, id: &str) -> Result<String, ApiError> {
    Ok(state_get::<Department>(&ctx.store, &keys::department(id))?
        .map_or_else(|| id.to_string(), |d| d.name))
}

fn needs_user(caller: &Caller) -> Result<String, ApiError> {
    caller.user.as_ref().map(|u| u.id.clone()).ok_or_else(|| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "consents are for users; the system administrator's key needs none",
        )
    })
}

/// `POST /api/v1/consents/request`: sends a code to the person's phone.
#[utoipa::path(post, path = "/api/v1/consents/request", request_body(content = CodeRequest, description = "the person, the matter of the case and why"), responses((status = 200, body = Object, description = "{request_id, expires_at, phone (masked)}"), (status = 400, description = "bad_person_id, bad_body, bad_consent"), (status = 401, description = crate::openapi::UNAUTHENTICATED), (status = 403, description = "forbidden: the system administrator's key (consents are for users), a key that is no user's; user_disabled"), (status = 404, description = "unknown_matter"), (status = 413, description = "too_large: the body is over the node's limit"), (status = 409, description = "no_phone: the phone source (api.consent_phone_source) has no number for the person"), (status = 429, description = "rate_limited"), (status = 502, description = "sms_failed"), (status = 503, description = "no_phone_source, no_projection, busy")))]
pub async fn request_code(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let caller = authenticate(&ctx, &headers, "POST", &uri, &body)?;
    let user = needs_user(&caller)?;
    let r: CodeRequest = json_body(&body)?;
    let person = crate::matters::person(&r.person)?;
    let matter = matter_type(&ctx, &r.matter)?;
    let department = department_name(&ctx, &caller.department)?;
    let n = r.purpose.chars().count();
    if r.purpose.trim().is_empty() || n > govchain_chaincode::access::MAX_PURPOSE_CHARS {
        return Err(ApiError::bad_request(
            "bad_body",
            "purpose: 1-200 characters",
        ));
    }
    let refuse = |e: ApiError| {
        audit(
            &ctx,
            caller.entry(
                AuditAction::ConsentRequested,
                Some(person.as_str().to_string()),
                e.code,
            ),
        );
        e
    };
    let now = crate::routes::now_ms().0;
    // The limits come first: a refused request looks nothing up.
    ctx.security
        .reserve_code(person.as_str(), &user, now)
        .map_err(|l| {
            refuse(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                match l {
                    RateLimited::Person => "too many codes for this person this hour",
                    RateLimited::User => "too many codes requested by this user this hour",
                },
            ))
        })?;
    let phone = phone_of(&ctx, &person).await.map_err(refuse)?;
    let tail: String = phone
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let pending = PendingCode {
        hash: [0; 32],
        person: person.as_str().to_string(),
        matter: r.matter.clone(),
        user: user.clone(),
        purpose: r.purpose.clone(),
        phone_tail: tail.clone(),
        expires_at: 0,
        attempts: 0,
        used: false,
    };
    let (request_id, code) = ctx.security.new_code(pending, now);
    let text = consent_sms(&department, &matter.name, &code);
    ctx.security
        .notifier
        .send(&phone, person.as_str(), &code, &text)
        .await
        .map_err(|e| refuse(ApiError::new(StatusCode::BAD_GATEWAY, "sms_failed", e)))?;
    audit(
        &ctx,
        caller.entry(
            AuditAction::ConsentRequested,
            Some(person.as_str().to_string()),
            "ok",
        ),
    );
    Ok(Json(json!({
        "request_id": request_id,
        "expires_at": now + crate::security::CODE_TTL_MS,
        "phone": format!("*******{tail}"),
    })))
}

/// `POST /api/v1/consents/verify`: checks the code and records the consent on chain.
#[utoipa::path(post, path = "/api/v1/consents/verify", request_body(content = CodeCheck, description = "the code request and the code the person read out"), responses((status = 200, body = Object, description = "{consent_id, expires_at, height}: the consent is committed"), (status = 400, description = "bad_body, bad_consent"), (status = 401, description = crate::openapi::UNAUTHENTICATED), (status = 403, description = "wrong_code, code_expired, code_used, too_many_attempts; forbidden: the system administrator's key, a key that is no user's; user_disabled"), (status = 404, description = "unknown_request, unknown_matter"), (status = 409, description = "the consent transaction is a duplicate"), (status = 413, description = "too_large: the body is over the node's limit"), (status = 422, description = "the chain refuses the consent"), (status = 503, description = "pending: not committed in time; no_signer; mempool_full; busy")))]
pub async fn verify_code(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let caller = authenticate(&ctx, &headers, "POST", &uri, &body)?;
    let user = needs_user(&caller)?;
    let c: CodeCheck = json_body(&body)?;
    let hours = c.valid_hours.unwrap_or(DEFAULT_CONSENT_HOURS);
    if !(1..=MAX_CONSENT_HOURS).contains(&hours) {
        return Err(ApiError::bad_request(
            "bad_body",
            format!("valid_hours: 1-{MAX_CONSENT_HOURS}"),
        ));
    }
    let now = crate::routes::now_ms();
    let checked = ctx
        .security
        .check_code(&c.request_id, &user, c.code.trim(), now.0);
    let p = match checked {
        Ok(p) => p,
        Err(e) => {
            let (status, code, message) = match e {
                CodeError::Unknown => (
                    StatusCode::NOT_FOUND,
                    "unknown_request",
                    "no such code request of this user".to_string(),
                ),
                CodeError::Expired => (
                    StatusCode::FORBIDDEN,
                    "code_expired",
                    "the code has expired; request a new one".into(),
                ),
                CodeError::Used => (
                    StatusCode::FORBIDDEN,
                    "code_used",
                    "the code was already used".into(),
                ),
                CodeError::TooManyAttempts => (
                    StatusCode::FORBIDDEN,
                    "too_many_attempts",
                    "five wrong codes: request a new one".into(),
                ),
                CodeError::Wrong(left) => (
                    StatusCode::FORBIDDEN,
                    "wrong_code",
                    format!("wrong code; {left} attempts left"),
                ),
            };
            audit(&ctx, caller.entry(AuditAction::ConsentVerified, None, code));
            return Err(ApiError::new(status, code, message));
        }
    };
    let signer = ctx.security.signer.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_signer",
            "this node cannot sign consents",
        )
    })?;
    let m = matter_type(&ctx, &p.matter)?;
    let id = blake3::hash(format!("consent\n{}\n{}", c.request_id, ctx.chain_id).as_bytes());
    let consent = Consent {
        id: id.to_hex().to_string(),
        person: p.person.clone(),
        matter: p.matter.clone(),
        sources: m.sources.iter().map(|s| s.source.clone()).collect(),
        grantee: user,
        purpose: p.purpose.clone(),
        issued_at: now,
        expires_at: TimestampMs(now.0 + hours * 3600 * 1000),
        verified_by: format!("sms:{}", p.phone_tail),
    };
    let tx = signer.sign(TxKind::RecordConsent(consent.clone()).encode(), now);
    let at = crate::routes::submit_own(&ctx, tx, true).await?;
    audit(
        &ctx,
        caller.entry(AuditAction::ConsentVerified, Some(p.person.clone()), "ok"),
    );
    let Some((height, _)) = at else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "pending",
            format!(
                "consent {} is not committed yet; retry with it shortly",
                consent.id
            ),
        ));
    };
    Ok(Json(json!({
        "consent_id": consent.id,
        "person": consent.person,
        "matter": consent.matter,
        "sources": consent.sources,
        "expires_at": consent.expires_at,
        "height": height,
    })))
}
