//! Staff login, logout and passwords (R-SEC-1, R-SEC-2): `POST /api/v1/login`,
//! `POST /api/v1/logout`, `PUT /api/v1/users/{id}/password`, `GET /api/v1/me`,
//! `GET /api/v1/users/{id}`. Passwords are argon2id hashes kept by this node only; users, their
//! departments, levels, roles and status are on chain.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::Json;
use govchain_chaincode::access::{self, AuditAction, AuditEntry, Role};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::access::{audit, authenticate, fingerprint, now, Caller};
use crate::security::{check_password, hash_password, verify_password, Security};
use crate::{ApiContext, ApiError};

/// Body of `POST /api/v1/login`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// User id.
    pub user: String,
    /// Password.
    pub password: String,
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
        // The password is not part of the fingerprint.
        fingerprint: fingerprint("POST", "/api/v1/login", user.as_bytes()),
        state_height: 0,
    }
}

/// `POST /api/v1/login`: a session token for a user's password. Five failures in a row lock the
/// user out for 15 minutes.
#[utoipa::path(post, path = "/api/v1/login", request_body(content = String, content_type = "application/json", description = "{\"user\", \"password\"}"), responses((status = 200, description = "{token, expires_at}"), (status = 401, description = "bad_credentials"), (status = 403, description = "locked, user_disabled")))]
pub async fn login(State(ctx): State<ApiContext>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let l: Login = json_body(&body)?;
    let t = now().0;
    let fail = |dept: &str, e: ApiError| {
        audit(&ctx, login_entry(&l.user, dept, e.code));
        e
    };
    let bad = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_credentials",
            "unknown user or wrong password",
        )
    };
    if ctx.security.locked(&l.user, t) {
        return Err(fail(
            &ctx.department,
            ApiError::new(
                StatusCode::FORBIDDEN,
                "locked",
                "too many failed logins; try again in 15 minutes",
            ),
        ));
    }
    let user = access::user(&ctx.store, &l.user).map_err(ApiError::internal)?;
    let dept = user
        .as_ref()
        .map_or(ctx.department.clone(), |u| u.department.clone());
    let phc = Security::password_hash(&ctx.store, &l.user);
    let (user, phc) = match (user, phc) {
        (Some(u), Some(p)) => (u, p),
        _ => {
            ctx.security.login_failed(&l.user, t);
            return Err(fail(&dept, bad()));
        }
    };
    let password = l.password.clone();
    let ok = ctx
        .security
        .hash_job(move || verify_password(&phc, &password))
        .await
        .map_err(ApiError::internal)?;
    if !ok {
        let locked = ctx.security.login_failed(&l.user, t);
        let e = if locked {
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
    let (token, s) = ctx.security.login_ok(&user.id, t);
    audit(&ctx, login_entry(&user.id, &dept, "ok"));
    Ok(Json(json!({
        "token": token,
        "expires_at": s.expires_at,
        "user": user,
    })))
}

/// `POST /api/v1/logout`: ends the session.
#[utoipa::path(post, path = "/api/v1/logout", responses((status = 200, description = "ended"), (status = 401, description = "no_session")))]
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
#[utoipa::path(get, path = "/api/v1/me", responses((status = 200, description = "the caller's user record (null for the system administrator's key) and department")))]
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
#[utoipa::path(get, path = "/api/v1/users/{id}", params(("id" = String, Path, description = "user id")), responses((status = 200, description = "the user and whether a password is set on this node"), (status = 403, description = "forbidden"), (status = 404, description = "no such user")))]
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
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetPassword {
    /// The new password (8–128 characters, a letter and a digit).
    pub password: String,
    /// The current one, when users change their own.
    pub old_password: Option<String>,
}

/// `PUT /api/v1/users/{id}/password`: sets a user's password on this node: by an administrator
/// of the user, or by the user with the current password. Ends the user's sessions.
#[utoipa::path(put, path = "/api/v1/users/{id}/password", params(("id" = String, Path, description = "user id")), request_body(content = String, content_type = "application/json", description = "{\"password\", \"old_password\"?}"), responses((status = 200, description = "set"), (status = 400, description = "weak_password, bad_body"), (status = 403, description = "forbidden, bad_credentials"), (status = 404, description = "no such user")))]
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
