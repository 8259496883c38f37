//! Who is calling and what they may read (R-SEC-3…5, R-SEC-7), with an audit entry for every
//! decision (R-AUD-1).
//!
//! A caller is either a staff member with a session (`Authorization: Bearer TOKEN`, from
//! `POST /api/v1/login`) or a key-holder signing the request ([`crate::auth`]): the genesis system
//! administrator or a registered system account. A personal-data handler first
//! [`authenticate`]s (401/403 on failure, audited), then asks [`Caller::decide`] with the sources,
//! person and matter it is about to return ([`govchain_chaincode::access::decide`] against the
//! committed state, audited with the state height it read), and finally reports how many rows it
//! returned ([`Access::done`]). A consent id travels in the `x-govchain-consent` header.

use std::collections::BTreeSet;

use axum::http::{HeaderMap, StatusCode, Uri};
use govchain_chaincode::access::{
    self, AccessRequest, AuditAction, AuditEntry, ReturnedPersons, Right, User,
};
use govchain_chaincode::auth::{role_of, KeyRole};
use govchain_ledger::hash::{hash_parts, Domain};
use govchain_ledger::{Hash, PublicKey, TimestampMs};

use crate::projection::Projection;
use crate::{ApiContext, ApiError};

/// Header carrying the consent id for person and matter files.
pub const CONSENT_HEADER: &str = "x-govchain-consent";
/// Length of a consent id (hex digits).
pub const CONSENT_ID_CHARS: usize = 64;

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The user (None: the genesis system administrator's key).
    pub user: Option<User>,
    /// The signing key, for signed requests.
    pub key: Option<PublicKey>,
    /// The department the caller acts for.
    pub department: String,
    endpoint: String,
    fingerprint: Hash,
    consent: Option<String>,
    /// A department node's key (chain-data reads only: never a user, never the system
    /// administrator).
    node: Option<String>,
}

impl Caller {
    /// The user id ("" for the system administrator's key, `node:DEPT` for a department
    /// node's key).
    pub fn user_id(&self) -> String {
        match (&self.user, &self.node) {
            (Some(u), _) => u.id.clone(),
            (None, Some(d)) => format!("node:{d}"),
            (None, None) => String::new(),
        }
    }

    /// Whether the caller is the system administrator (key, or a user with that role).
    pub fn is_system_admin(&self) -> bool {
        self.node.is_none()
            && self
                .user
                .as_ref()
                .is_none_or(|u| u.has(access::Role::SystemAdmin))
    }

    /// Whether the caller may read the audit log.
    pub fn is_auditor(&self) -> bool {
        self.node.is_none()
            && self
                .user
                .as_ref()
                .is_none_or(|u| u.has(access::Role::Auditor) || u.has(access::Role::SystemAdmin))
    }

    /// An audit entry of this caller's request.
    pub fn entry(&self, action: AuditAction, person: Option<String>, outcome: &str) -> AuditEntry {
        AuditEntry {
            time: crate::routes::now_ms(),
            user: self.user_id(),
            department: self.department.clone(),
            action,
            endpoint: self.endpoint.clone(),
            person,
            outcome: outcome.to_string(),
            results: 0,
            persons: Default::default(),
            fingerprint: self.fingerprint,
            state_height: 0,
        }
    }

    /// Decides an access to personal data (audited either way). `filter`: return what may be
    /// read of `sources` instead of refusing the whole request (a search; person and matter
    /// files always filter).
    pub fn decide(
        &self,
        ctx: &ApiContext,
        right: Right,
        sources: Vec<String>,
        filter: bool,
        person: Option<&str>,
        matter: Option<&str>,
    ) -> Result<Access, ApiError> {
        let req = AccessRequest {
            user: self.user.as_ref().map(|u| u.id.clone()),
            right,
            sources,
            filter,
            person: person.map(str::to_string),
            matter: matter.map(str::to_string),
            consent: self.consent.clone(),
            time: crate::routes::now_ms(),
        };
        if self.node.is_some() {
            // A node's key reads chain data only; as a user it would read as the system
            // administrator (user None).
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "a department node's key reads no personal data through the API",
            ));
        }
        if ctx.security.audit.over_limit() {
            // Fail closed: no personal data while its audit cannot keep up (counted, not
            // queued, so the refusals do not grow the backlog).
            let mut e = self.entry(
                AuditAction::Access(req),
                person.map(str::to_string),
                "audit_backlog",
            );
            e.outcome = "audit_backlog".into();
            ctx.security.audit.count(e);
            return Err(audit_backlog_refusal(ctx));
        }
        let (height, decision) = decide_at_a_height(ctx, &req)?;
        let mut entry = self.entry(AuditAction::Access(req), person.map(str::to_string), "ok");
        entry.state_height = height;
        match decision {
            Ok(allowed) => Ok(Access {
                ctx: ctx.clone(),
                entry: Some(entry),
                allowed: allowed.into_iter().collect(),
            }),
            Err(d) => {
                entry.outcome = d.code.clone();
                audit(ctx, entry);
                let status = if d.code == "unknown_user" {
                    StatusCode::UNAUTHORIZED
                } else {
                    StatusCode::FORBIDDEN
                };
                Err(ApiError::new(status, denial_code(&d.code), d.message))
            }
        }
    }
}

impl Caller {
    /// What of `sources` the caller may read for a request about `person` (if it names one),
    /// decided against the committed state and NOT audited: it only narrows what a search
    /// looks at, so that neither its results nor its refusal depend on data the caller may not
    /// read. The audited [`Caller::decide`] over what is then returned follows. Empty when the
    /// request would be refused.
    pub fn readable(
        &self,
        ctx: &ApiContext,
        right: Right,
        sources: Vec<String>,
        person: Option<&str>,
    ) -> BTreeSet<String> {
        if self.node.is_some() {
            // A node's key reads no personal data ([`Caller::decide`] refuses it).
            return BTreeSet::new();
        }
        let req = AccessRequest {
            user: self.user.as_ref().map(|u| u.id.clone()),
            right,
            sources,
            filter: true,
            person: person.map(str::to_string),
            matter: None,
            consent: self.consent.clone(),
            time: crate::routes::now_ms(),
        };
        access::decide(&ctx.store, &req)
            .map(|allowed| allowed.into_iter().collect())
            .unwrap_or_default()
    }
}

/// The refusal of a personal-data read while the audit backlog is over its limit (503, retry).
pub(crate) fn audit_backlog_refusal(ctx: &ApiContext) -> ApiError {
    ApiError {
        retry_after_s: Some(1),
        ..ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "audit_backlog",
            format!(
                "more than {} audit entries wait for the chain; personal data is not served until they are on chain",
                ctx.security.audit.backlog_limit()
            ),
        )
    }
}

/// Decides against the committed state, retrying while blocks commit underneath, so the
/// recorded height is exactly the state the decision read (the auditor re-decides there).
fn decide_at_a_height(
    ctx: &ApiContext,
    req: &AccessRequest,
) -> Result<(u64, access::Decision), ApiError> {
    let height = || -> Result<u64, ApiError> {
        Ok(ctx
            .store
            .tip()
            .map_err(ApiError::internal)?
            .map_or(0, |t| t.height.0))
    };
    for _ in 0..8 {
        let before = height()?;
        let d = access::decide(&ctx.store, req);
        if height()? == before {
            return Ok((before, d));
        }
    }
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "busy",
        "the chain moved during every attempt to decide; retry",
    ))
}

/// The API code of a denial.
fn denial_code(code: &str) -> &'static str {
    const CODES: [&str; 11] = [
        "no_grant",
        "grant_expired",
        "grant_revoked",
        "no_export_right",
        "no_consent",
        "consent_expired",
        "consent_mismatch",
        "user_disabled",
        "unknown_user",
        "unknown_source",
        "state_error",
    ];
    CODES
        .iter()
        .find(|c| **c == code)
        .copied()
        .unwrap_or("forbidden")
}

/// Queues an audit entry (nothing is queued on a node that cannot sign).
pub fn audit(ctx: &ApiContext, e: AuditEntry) {
    if ctx.security.signer.is_some() {
        ctx.security.audit(e);
    }
}

/// A granted access; reports its result count when done (if dropped first, it is audited as
/// `failed`: the handler refused the request after the decision).
pub struct Access {
    ctx: ApiContext,
    entry: Option<AuditEntry>,
    /// The sources the caller may read.
    pub allowed: BTreeSet<String>,
}

impl Access {
    /// Whether `source` may be read.
    pub fn may_read(&self, source: &str) -> bool {
        self.allowed.contains(source)
    }

    /// Drops a decision that only checked the caller ahead of the real one (a pull-through
    /// asks department systems only for callers who may read the person); the later decision
    /// is the one audited.
    pub fn discard(mut self) {
        self.entry = None;
    }

    /// Counts the rows against the user's daily quota ([`crate::limits`]) and audits the
    /// access with the number of rows returned and the persons whose records they are
    /// (R-AUD-3: the read is then in each of those persons' access history). Past the quota
    /// the read returns nothing: 429 `row_quota_exceeded`, audited with that outcome.
    pub fn done<'a>(
        mut self,
        results: usize,
        persons: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), ApiError> {
        if let Some(mut e) = self.entry.take() {
            let quota = self
                .ctx
                .read_limits
                .take(&e.user, results as u64, crate::routes::now_ms());
            if let Err(refused) = quota {
                e.outcome = refused.code.to_string();
                audit(&self.ctx, e);
                return Err(refused);
            }
            e.results = results as u64;
            e.persons = ReturnedPersons::of(persons);
            audit(&self.ctx, e);
        }
        Ok(())
    }
}

impl Drop for Access {
    fn drop(&mut self) {
        if let Some(mut e) = self.entry.take() {
            e.outcome = "failed".into();
            audit(&self.ctx, e);
        }
    }
}

/// The consent id of a request: absent, or exactly 64 hex digits (what chaincode issues), so an
/// oversize or garbage header is refused before it reaches an audit entry.
fn consent_id(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get(CONSENT_HEADER) else {
        return Ok(None);
    };
    let id = v.to_str().map(str::trim).unwrap_or_default();
    if id.len() != CONSENT_ID_CHARS || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::bad_request(
            "bad_consent",
            format!("{CONSENT_HEADER} must be a consent id of {CONSENT_ID_CHARS} hex digits"),
        ));
    }
    Ok(Some(id.to_ascii_lowercase()))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// Hash of the request: method, path with query, body (its own domain: a fingerprint is never
/// a signable request digest).
pub fn fingerprint(method: &str, path_and_query: &str, body: &[u8]) -> Hash {
    hash_parts(
        Domain::AuditFingerprint,
        &[
            method.as_bytes(),
            b"\n",
            path_and_query.as_bytes(),
            b"\n",
            body,
        ],
    )
}

/// Identifies the caller of a request (audited when refused).
pub fn authenticate(
    ctx: &ApiContext,
    headers: &HeaderMap,
    method: &str,
    uri: &Uri,
    body: &[u8],
) -> Result<Caller, ApiError> {
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let endpoint = format!("{method} {}", uri.path());
    let fp = fingerprint(method, path, body);
    let refuse = |user: &str, dept: &str, e: ApiError| {
        let entry = AuditEntry {
            time: crate::routes::now_ms(),
            user: user.to_string(),
            department: dept.to_string(),
            action: AuditAction::Admin("authenticate".into()),
            endpoint: endpoint.clone(),
            person: None,
            outcome: e.code.to_string(),
            results: 0,
            persons: Default::default(),
            fingerprint: fp,
            state_height: 0,
        };
        // A caller who did not identify itself is counted, not recorded one entry each
        // (finding 2 and 5 of issue 15: anonymous junk must not flood the audit chain).
        if user.is_empty() {
            if ctx.security.signer.is_some() {
                ctx.security.audit.count(entry);
            }
        } else {
            audit(ctx, entry);
        }
        e
    };
    let consent = consent_id(headers).map_err(|e| refuse("", &ctx.department, e))?;
    let now = crate::routes::now_ms();
    let (user, key) = if let Some(token) = bearer(headers) {
        let s = ctx.security.session(token).ok_or_else(|| {
            refuse(
                "",
                &ctx.department,
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "no_session",
                    "unknown or ended session; log in again",
                ),
            )
        })?;
        if now.0 >= s.expires_at {
            ctx.security.logout(token);
            return Err(refuse(
                &s.user,
                &ctx.department,
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "session_expired",
                    "the session has expired; log in again",
                ),
            ));
        }
        (Some(s.user), None)
    } else {
        // Verify, check the role, and only then remember the request (finding 5 of issue 15:
        // an unregistered key never takes room in the replay guard).
        let signed =
            crate::auth::verify_signed(&ctx.audience(), headers, method, path, body, now.0)
                .map_err(|e| refuse("", &ctx.department, e))?;
        let who = match role_of(&ctx.store, &signed.key).map_err(ApiError::internal)? {
            Some(KeyRole::SystemAdmin) => None,
            Some(KeyRole::User(id)) => Some(id),
            _ => {
                return Err(refuse(
                    "",
                    &ctx.department,
                    ApiError::new(
                        StatusCode::FORBIDDEN,
                        "forbidden",
                        "this key is not a user's; register it as a system account",
                    ),
                ))
            }
        };
        let key = ctx
            .replay
            .record(signed, now.0)
            .map_err(|e| refuse("", &ctx.department, e))?;
        (who, Some(key))
    };
    let user = match user {
        None => None,
        Some(id) => {
            let u = access::user(&ctx.store, &id)
                .map_err(ApiError::internal)?
                .ok_or_else(|| {
                    refuse(
                        &id,
                        &ctx.department,
                        ApiError::new(
                            StatusCode::UNAUTHORIZED,
                            "unknown_user",
                            format!("user {id} no longer exists"),
                        ),
                    )
                })?;
            if u.disabled {
                return Err(refuse(
                    &u.id,
                    &u.department,
                    ApiError::new(
                        StatusCode::FORBIDDEN,
                        "user_disabled",
                        format!("user {id} is disabled"),
                    ),
                ));
            }
            Some(u)
        }
    };
    let department = user
        .as_ref()
        .map_or_else(|| ctx.department.clone(), |u| u.department.clone());
    Ok(Caller {
        user,
        key,
        department,
        endpoint,
        fingerprint: fp,
        consent,
        node: None,
    })
}

/// Who reads chain data (`/txs`, `/blocks`).
#[derive(Debug)]
pub enum ChainReader {
    /// No credentials: hashes, kinds and proofs only, not audited (nothing personal is shown).
    Anonymous,
    /// An authenticated caller whose role may not see payloads: hashes, kinds and proofs.
    Redacted(Caller),
    /// A department node, an auditor or a system administrator: payloads too (audited).
    Full(Caller),
}

/// Identifies a reader of chain data: a department node's key, or any caller
/// [`authenticate`] accepts; no credentials at all is an anonymous reader. Credentials that
/// are present but wrong are refused (401/403), never downgraded.
pub fn chain_reader(
    ctx: &ApiContext,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<ChainReader, ApiError> {
    let signed = headers.get(crate::auth::KEY_HEADER);
    if signed.is_none() && bearer(headers).is_none() {
        return Ok(ChainReader::Anonymous);
    }
    // A department node's key is no user's: checked here, before `authenticate` (which
    // accepts only users' and the system administrator's keys).
    let node = signed
        .and_then(|v| v.to_str().ok())
        .and_then(|k| PublicKey::from_hex(k).ok())
        .map(|k| role_of(&ctx.store, &k))
        .transpose()
        .map_err(ApiError::internal)?;
    if let Some(Some(KeyRole::DepartmentNode(dept))) = node {
        let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
        let now = now().0;
        let signed = crate::auth::verify_signed(&ctx.audience(), headers, "GET", path, b"", now)?;
        let key = ctx.replay.record(signed, now)?;
        return Ok(ChainReader::Full(Caller {
            user: None,
            key: Some(key),
            department: dept.clone(),
            endpoint: format!("GET {}", uri.path()),
            fingerprint: fingerprint("GET", path, b""),
            consent: None,
            node: Some(dept),
        }));
    }
    let caller = authenticate(ctx, headers, "GET", uri, b"")?;
    Ok(if caller.is_auditor() {
        ChainReader::Full(caller)
    } else {
        ChainReader::Redacted(caller)
    })
}

/// Authenticates a reader of personal data and returns the projection to read.
pub fn reader(
    ctx: &ApiContext,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<(Caller, Projection), ApiError> {
    let caller = authenticate(ctx, headers, "GET", uri, b"")?;
    let p = ctx.projection.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_projection",
            "this node keeps no SQL projection (api.db = \"off\")",
        )
    })?;
    Ok((caller, p))
}

/// The time of a request, for entries made outside a [`Caller`].
pub fn now() -> TimestampMs {
    crate::routes::now_ms()
}
