//! Staff login, logout and passwords (R-SEC-1, R-SEC-2): `POST /api/v1/login`,
//! `POST /api/v1/logout`, `PUT /api/v1/users/{id}/password`, `GET /api/v1/me`,
//! `GET /api/v1/users/{id}`. Passwords are argon2id hashes kept by this node only; users, their
//! departments, levels, roles and status are on chain.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::{Extension, Json};
use govchain_chaincode::access::{self, AuditAction, AuditEntry, Role, MAX_USER_ID_LEN};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::access::{audit, authenticate, fingerprint, now, Caller};
use crate::lockout::{ClientAddr, Refusal, MAX_LOGIN_FAILURES_PER_ADDRESS, SWEEP_INTERVAL_MS};
use crate::security::{check_password, hash_password, verify_password, Security};
use crate::{ApiContext, ApiError};

/// Body of `POST /api/v1/login`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// User id.
    #[schema(schema_with = crate::openapi::user_id)]
    pub user: String,
    /// Password.
    pub password: String,
}

/// An optional whole number as JSON Schema's `integer` reads it: `24` and `24.0` alike (a
/// document that says `integer` admits both), null or absent for None.
pub(crate) fn opt_whole_u64<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<u64>, D::Error> {
    use serde::de::Error;
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    let whole = n.as_u64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && (0.0..=u64::MAX as f64).contains(f))
            .map(|f| f as u64)
    });
    whole
        .map(Some)
        .ok_or_else(|| D::Error::custom(format!("{n} is not a whole non-negative number")))
}

pub(crate) fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request("bad_body", format!("body is not the expected JSON: {e}"))
    })
}

fn login_entry(user: &str, dept: &str, outcome: &str) -> AuditEntry {
    AuditEntry {
        time: now(),
        user: user.chars().take(64).collect(),
        department: dept.to_string(),
        action: AuditAction::Login,
        endpoint: "POST /api/v1/login".into(),
        person: None,
        outcome: outcome.into(),
        results: 0,
        persons: Default::default(),
        // The password is not part of the fingerprint.
        fingerprint: fingerprint("POST", "/api/v1/login", user.as_bytes()),
        state_height: 0,
    }
}

/// Largest body of `POST /api/v1/login` (a user id and a password fit many times over).
pub const LOGIN_MAX_BODY_BYTES: usize = 4 * 1024;

/// The answer to a login that may not check its password now (audited by the caller).
fn refused_login(r: Refusal) -> ApiError {
    let secs = |ms: u64| Some(ms.div_ceil(1000).max(1));
    match r {
        Refusal::Locked { retry_after_ms } => ApiError {
            retry_after_s: secs(retry_after_ms),
            ..ApiError::new(
                StatusCode::FORBIDDEN,
                "locked",
                format!(
                    "too many failed logins (or checks in progress) for this user; try again in {} s",
                    retry_after_ms.div_ceil(1000).max(1)
                ),
            )
        },
        Refusal::Throttled { retry_after_ms } => ApiError {
            retry_after_s: secs(retry_after_ms),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_logins",
                format!(
                    "more than {MAX_LOGIN_FAILURES_PER_ADDRESS} failed logins from this address; try again later"
                ),
            )
        },
        Refusal::Full => ApiError {
            retry_after_s: secs(SWEEP_INTERVAL_MS),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "too many failing logins on this node; retry later",
            )
        },
    }
}

/// `POST /api/v1/login`: a session token for a user's password. Five failures within 15 minutes
/// lock the user out for 15 minutes (checks already running count, so concurrent guesses
/// cannot get past it); more than [`MAX_LOGIN_FAILURES_PER_ADDRESS`] failures from one client
/// address within 15 minutes are answered 429 ([`crate::lockout`]).
#[utoipa::path(post, path = "/api/v1/login", security(()), request_body(content = Login, description = "a user id and password (at most 4 KiB)"), responses((status = 200, body = Object, description = "{token, expires_at, user}"), (status = 400, description = "bad_body, bad_user_id"), (status = 401, description = "bad_credentials"), (status = 403, description = "locked (Retry-After), user_disabled"), (status = 413, description = "too_large"), (status = 429, description = "too_many_logins (Retry-After)"), (status = 503, description = "busy (Retry-After)")))]
pub async fn login(
    State(ctx): State<ApiContext>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("a login body has at most {LOGIN_MAX_BODY_BYTES} bytes"),
            )
        } else {
            ApiError::bad_request("bad_body", e.body_text())
        }
    })?;
    let l: Login = json_body(&body)?;
    // Never let an id the chain cannot hold near a table.
    access::check_user_id(&l.user).map_err(|_| {
        ApiError::bad_request(
            "bad_user_id",
            format!("a user id is 1-{MAX_USER_ID_LEN} of [A-Za-z0-9_.-]"),
        )
    })?;
    let addr = peer.map_or(ClientAddr::UNKNOWN, |Extension(ConnectInfo(a))| {
        ClientAddr::of(a.ip())
    });
    let fail = |dept: &str, e: ApiError| {
        audit(&ctx, login_entry(&l.user, dept, e.code));
        e
    };
    // A login refused before any password check (throttled, locked, busy, unknown id) is
    // counted, not one chain entry each: an anonymous flood must not fill the audit queue
    // (which would then fail every personal-data read closed).
    let counted = |dept: &str, e: ApiError| {
        if ctx.security.signer.is_some() {
            ctx.security.audit.count(login_entry(&l.user, dept, e.code));
        }
        e
    };
    let bad = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_credentials",
            "unknown user or wrong password",
        )
    };
    let user = access::user(&ctx.store, &l.user).map_err(ApiError::internal)?;
    let dept = user
        .as_ref()
        .map_or(ctx.department.clone(), |u| u.department.clone());
    let known = match (user, Security::password_hash(&ctx.store, &l.user)) {
        (Some(u), Some(p)) => Some((u, p)),
        _ => None,
    };
    // Reserve the check before the hash: the user's and the address's budgets, atomically.
    let attempt = ctx
        .security
        .logins
        .begin(known.as_ref().map(|(u, _)| u.id.as_str()), addr, now().0)
        .map_err(|r| counted(&dept, refused_login(r)))?;
    let Some((user, phc)) = known else {
        let _ = attempt.failed(now().0);
        return Err(counted(&dept, bad()));
    };
    let password = l.password.clone();
    let ok = ctx
        .security
        .hash_job(move || verify_password(&phc, &password))
        .await
        .map_err(ApiError::internal)?;
    if !ok {
        let e = if attempt.failed(now().0) {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "bad_credentials",
                "wrong password; the user is now locked out for 15 minutes",
            )
        } else {
            bad()
        };
        return Err(fail(&dept, e));
    }
    attempt.succeeded(now().0);
    if user.disabled {
        return Err(fail(
            &dept,
            ApiError::new(
                StatusCode::FORBIDDEN,
                "user_disabled",
                format!("user {} is disabled", user.id),
            ),
        ));
    }
    let (token, s) = ctx.security.open_session(&user.id, now().0);
    audit(&ctx, login_entry(&user.id, &dept, "ok"));
    Ok(Json(json!({
        "token": token,
        "expires_at": s.expires_at,
        "user": user,
    })))
}

/// `POST /api/v1/logout`: ends the session.
#[utoipa::path(post, path = "/api/v1/logout", responses((status = 200, body = Object, description = "ended"), (status = 400, description = "bad_consent"), (status = 401, description = crate::openapi::UNAUTHENTICATED), (status = 403, description = crate::openapi::FORBIDDEN), (status = 503, description = crate::openapi::BUSY)))]
pub async fn logout(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<Value>, ApiError> {
    let caller = authenticate(&ctx, &headers, "POST", &uri, b"")?;
    if let Some(token) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        ctx.security.logout(token);
    }
    audit(&ctx, caller.entry(AuditAction::Logout, None, "ok"));
    Ok(Json(json!({"ended": true})))
}

/// `GET /api/v1/me`: who the caller is.
#[utoipa::path(get, path = "/api/v1/me", responses((status = 200, body = Object, description = "the caller's user record (null for the system administrator's key) and department"), (status = 400, description = "bad_consent"), (status = 401, description = crate::openapi::UNAUTHENTICATED), (status = 403, description = crate::openapi::FORBIDDEN), (status = 503, description = crate::openapi::BUSY)))]
pub async fn me(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<Value>, ApiError> {
    let caller = authenticate(&ctx, &headers, "GET", &uri, b"")?;
    Ok(Json(
        json!({"user": caller.user, "department": caller.department}),
    ))
}

/// Whether `caller` administers user `target`.
fn administers(caller: &Caller, target: &access::User) -> bool {
    match &caller.user {
        None => true,
        Some(u) if u.has(Role::SystemAdmin) => true,
        Some(u) => {
            u.has(Role::DepartmentAdmin)
                && u.department == target.department
                && !target.has(Role::SystemAdmin)
                && !target.has(Role::Auditor)
        }
    }
}

fn forbidden(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
}

/// `GET /api/v1/users/{id}`: a user as on chain (the user, or an administrator of them).
#[utoipa::path(get, path = "/api/v1/users/{id}", params(("id" = String, Path, description = "user id")), responses((status = 200, body = Object, description = "the user and whether a password is set on this node"), (status = 400, description = "bad_consent"), (status = 401, description = crate::openapi::UNAUTHENTICATED), (status = 403, description = "forbidden: neither the user nor an administrator of them, or a key that is no user's; user_disabled"), (status = 404, description = "no such user"), (status = 503, description = crate::openapi::BUSY)))]
pub async fn get_user(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<Value>, ApiError> {
    let caller = authenticate(&ctx, &headers, "GET", &uri, b"")?;
    let u = access::user(&ctx.store, &id)
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(format!("no user {id:?}")))?;
    if caller.user_id() != u.id && !administers(&caller, &u) {
        return Err(forbidden(
            "only the user and their administrators see a user",
        ));
    }
    let has_password = Security::password_hash(&ctx.store, &id).is_some();
    Ok(Json(json!({"user": u, "password_set": has_password})))
}

/// Body of `PUT /api/v1/users/{id}/password`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPassword {
    /// The new password (8–128 characters, a letter and a digit).
    #[schema(schema_with = crate::openapi::password)]
    pub password: String,
    /// The current one, when users change their own.
    pub old_password: Option<String>,
}

/// `PUT /api/v1/users/{id}/password`: sets a user's password on this node: by an administrator
/// of the user, or by the user with the current password. Ends the user's sessions.
#[utoipa::path(put, path = "/api/v1/users/{id}/password", params(("id" = String, Path, description = "user id")), request_body(content = SetPassword, description = "the new password; the current one when users change their own"), responses((status = 200, body = Object, description = "set"), (status = 400, description = "weak_password, bad_body, bad_consent"), (status = 401, description = crate::openapi::UNAUTHENTICATED), (status = 403, description = "forbidden: neither the user nor an administrator of them; bad_credentials: the current password is wrong; user_disabled"), (status = 404, description = "no such user"), (status = 413, description = "too_large: the body is over the node's limit"), (status = 503, description = crate::openapi::BUSY)))]
pub async fn set_password(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let caller = authenticate(&ctx, &headers, "PUT", &uri, &body)?;
    let b: SetPassword = json_body(&body)?;
    let target = access::user(&ctx.store, &id)
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(format!("no user {id:?}")))?;
    let refuse = |e: ApiError| {
        audit(
            &ctx,
            caller.entry(
                AuditAction::Admin(format!("set_password {id}")),
                None,
                e.code,
            ),
        );
        e
    };
    if !administers(&caller, &target) {
        if caller.user_id() != target.id {
            return Err(refuse(forbidden(
                "only the user and their administrators set a password",
            )));
        }
        let old = b.old_password.clone().unwrap_or_default();
        let phc = Security::password_hash(&ctx.store, &id).unwrap_or_default();
        let ok = ctx
            .security
            .hash_job(move || verify_password(&phc, &old))
            .await
            .map_err(ApiError::internal)?;
        if !ok {
            return Err(refuse(ApiError::new(
                StatusCode::FORBIDDEN,
                "bad_credentials",
                "the current password is wrong",
            )));
        }
    }
    check_password(&b.password).map_err(|m| ApiError::bad_request("weak_password", m))?;
    let password = b.password;
    let phc = ctx
        .security
        .hash_job(move || hash_password(&password))
        .await
        .map_err(ApiError::internal)?;
    Security::set_password_hash(&ctx.store, &id, &phc).map_err(ApiError::internal)?;
    ctx.security.end_sessions_of(&id);
    audit(
        &ctx,
        caller.entry(AuditAction::Admin(format!("set_password {id}")), None, "ok"),
    );
    Ok(Json(json!({"user": id, "password_set": true})))
}
