//! Execution of the access kinds: `PutUsers`, `DeleteUser`, `PutGrant`, `RevokeGrant`,
//! `RecordConsent`, `AppendAudit` (R-SEC-1…5, R-AUD-1).
//!
//! Who may sign:
//! - users: the system administrator (the genesis key, or a system account with the
//!   `system_admin` role) for any department; a department administrator (its admin key, or a
//!   system account of that department with `department_admin`) for its own department's users,
//!   without the `system_admin` or `auditor` roles;
//! - grants and revocations: the system administrator;
//! - consents and audit batches: a department's node (the node that verified the SMS code or
//!   served the requests).

use std::collections::BTreeSet;

use govchain_ledger::state::Overlay;
use govchain_ledger::{codec, PublicKey, SignedTx, StateView};

use crate::access::{
    self, AuditEntry, Consent, Grant, GrantScope, Grantee, Role, StoredGrant, User,
    MAX_AUDIT_ENTRIES, MAX_PURPOSE_CHARS, MAX_USERS_PER_TX,
};
use crate::auth::{self, KeyRole};
use crate::business::PutMode;
use crate::catalog::{DataSource, ShareType};
use crate::error::{invalid, TxError};
use crate::exec::{get, BlockContext};
use crate::keys;
use crate::person::PersonId;

/// Longest a consent may last (30 days).
pub const MAX_CONSENT_MS: u64 = 30 * 24 * 3600 * 1000;

fn put<T: serde::Serialize>(o: &mut Overlay<'_>, key: Vec<u8>, v: &T) {
    o.writes.put(key, codec::encode_infallible(v));
}

fn denied(signer: &PublicKey, action: &str) -> TxError {
    TxError::Unauthorized {
        signer: *signer,
        action: action.to_string(),
    }
}

/// What a signer may administer.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Admin {
    /// Everything.
    System,
    /// One department's users.
    Department(String),
}

fn admin_of(view: &dyn StateView, signer: &PublicKey) -> Result<Option<Admin>, TxError> {
    Ok(match auth::role_of(view, signer)? {
        Some(KeyRole::SystemAdmin) => Some(Admin::System),
        Some(KeyRole::DepartmentAdmin(d)) => Some(Admin::Department(d)),
        Some(KeyRole::User(id)) => match access::user(view, &id)? {
            Some(u) if !u.disabled && u.has(Role::SystemAdmin) => Some(Admin::System),
            Some(u) if !u.disabled && u.has(Role::DepartmentAdmin) => {
                Some(Admin::Department(u.department))
            }
            _ => None,
        },
        _ => None,
    })
}

fn require_system(view: &dyn StateView, signer: &PublicKey, action: &str) -> Result<(), TxError> {
    match admin_of(view, signer)? {
        Some(Admin::System) => Ok(()),
        _ => Err(denied(signer, action)),
    }
}

/// Requires the signer to administer `user` (its department, and the roles it may give).
fn require_admin_of(view: &dyn StateView, signer: &PublicKey, user: &User) -> Result<(), TxError> {
    match admin_of(view, signer)? {
        Some(Admin::System) => Ok(()),
        Some(Admin::Department(d))
            if d == user.department && !user.has(Role::SystemAdmin) && !user.has(Role::Auditor) =>
        {
            Ok(())
        }
        _ => Err(denied(
            signer,
            &format!("manage user {} of department {}", user.id, user.department),
        )),
    }
}

/// Requires the signer to be a department's node; returns the department.
fn require_node(view: &dyn StateView, signer: &PublicKey, action: &str) -> Result<String, TxError> {
    match auth::role_of(view, signer)? {
        Some(KeyRole::DepartmentNode(d)) => Ok(d),
        _ => Err(denied(signer, action)),
    }
}

/// `PutUsers`: adds or replaces up to [`MAX_USERS_PER_TX`] users, all or none.
pub fn put_users(
    o: &mut Overlay<'_>,
    tx: &SignedTx,
    mode: PutMode,
    users: Vec<User>,
) -> Result<(), TxError> {
    if users.is_empty() || users.len() > MAX_USERS_PER_TX {
        return Err(invalid(
            "users",
            format!("1-{MAX_USERS_PER_TX} users per transaction"),
        ));
    }
    let mut seen = BTreeSet::new();
    for u in users {
        u.validate()?;
        if !seen.insert(u.id.clone()) {
            return Err(invalid("users", format!("user {} is listed twice", u.id)));
        }
        require_admin_of(o, &tx.body.signer, &u)?;
        if o.get(&keys::department(&u.department))?.is_none() {
            return Err(TxError::NotFound {
                what: "department",
                id: u.department,
            });
        }
        let old = access::user(o, &u.id)?;
        match (mode, &old) {
            (PutMode::Add, Some(_)) => {
                return Err(TxError::AlreadyExists {
                    what: "user",
                    id: u.id,
                })
            }
            (PutMode::Replace, None) => {
                return Err(TxError::NotFound {
                    what: "user",
                    id: u.id,
                })
            }
            _ => {}
        }
        if let Some(old) = &old {
            // A department administrator may not take over another department's user.
            require_admin_of(o, &tx.body.signer, old)?;
            if let Some(k) = old.key.filter(|k| Some(*k) != u.key) {
                o.writes.delete(keys::key_role(&k));
            }
        }
        if let Some(k) = &u.key {
            match auth::role_of(o, k)? {
                None => {}
                Some(KeyRole::User(id)) if id == u.id => {}
                Some(_) => return Err(invalid("user.key", "key is already registered")),
            }
            put(o, keys::key_role(k), &KeyRole::User(u.id.clone()));
        }
        put(o, keys::user(&u.id), &u);
    }
    Ok(())
}

/// `DeleteUser`.
pub fn delete_user(o: &mut Overlay<'_>, tx: &SignedTx, id: &str) -> Result<(), TxError> {
    let u = access::user(o, id)?.ok_or_else(|| TxError::NotFound {
        what: "user",
        id: id.to_string(),
    })?;
    require_admin_of(o, &tx.body.signer, &u)?;
    if let Some(k) = &u.key {
        o.writes.delete(keys::key_role(k));
    }
    o.writes.delete(keys::user(id));
    Ok(())
}

/// `PutGrant`: adds a grant (ids are never reused).
pub fn put_grant(o: &mut Overlay<'_>, tx: &SignedTx, g: Grant) -> Result<(), TxError> {
    require_system(o, &tx.body.signer, "grant access")?;
    access::check_user_id(&g.id).map_err(|_| {
        invalid(
            "grant.id",
            format!("{:?}: must be 1-64 of [A-Za-z0-9_.-]", g.id),
        )
    })?;
    if o.get(&keys::grant(&g.id))?.is_some() {
        return Err(TxError::AlreadyExists {
            what: "grant",
            id: g.id,
        });
    }
    if !g.query && !g.export {
        return Err(invalid("grant", "grants neither query nor export"));
    }
    if g.valid_from >= g.valid_until {
        return Err(invalid("grant.valid_until", "must be after valid_from"));
    }
    let dept_exists = |o: &Overlay<'_>, d: &str| -> Result<(), TxError> {
        match o.get(&keys::department(d))? {
            Some(_) => Ok(()),
            None => Err(TxError::NotFound {
                what: "department",
                id: d.to_string(),
            }),
        }
    };
    match &g.grantee {
        Grantee::Department(d) => dept_exists(o, d)?,
        Grantee::Level {
            department,
            min_level,
        } => {
            dept_exists(o, department)?;
            if !(1..=access::MAX_LEVEL).contains(min_level) {
                return Err(invalid("grant.grantee.min_level", "not a level"));
            }
        }
        Grantee::User(u) => {
            if access::user(o, u)?.is_none() {
                return Err(TxError::NotFound {
                    what: "user",
                    id: u.clone(),
                });
            }
        }
    }
    match &g.scope {
        GrantScope::Source(s) => {
            let src: DataSource = get(o, &keys::source(s))?.ok_or_else(|| TxError::NotFound {
                what: "data source",
                id: s.clone(),
            })?;
            if src.share_type == ShareType::Restricted {
                return Err(invalid(
                    "grant.scope",
                    format!("source {s} is not shared (restricted)"),
                ));
            }
        }
        GrantScope::ShareType { owner, share_type } => {
            dept_exists(o, owner)?;
            if *share_type == ShareType::Restricted {
                return Err(invalid(
                    "grant.scope",
                    "restricted sources are never shared",
                ));
            }
        }
    }
    let index = g.grantee.index_key();
    let mut ids: Vec<String> = get(o, &index)?.unwrap_or_default();
    if ids.len() >= 1_000 {
        return Err(invalid("grant.grantee", "has 1,000 grants already"));
    }
    ids.push(g.id.clone());
    put(o, index, &ids);
    let key = keys::grant(&g.id);
    put(
        o,
        key,
        &StoredGrant {
            grant: g,
            revoked_at: None,
        },
    );
    Ok(())
}

/// `RevokeGrant`: from this block's time on, the grant no longer holds.
pub fn revoke_grant(
    o: &mut Overlay<'_>,
    ctx: &BlockContext,
    tx: &SignedTx,
    id: &str,
) -> Result<(), TxError> {
    require_system(o, &tx.body.signer, "revoke grants")?;
    let mut g = access::grant(o, id)?.ok_or_else(|| TxError::NotFound {
        what: "grant",
        id: id.to_string(),
    })?;
    if g.revoked_at.is_some() {
        return Err(invalid("grant", format!("grant {id} is already revoked")));
    }
    g.revoked_at = Some(ctx.time);
    put(o, keys::grant(id), &g);
    Ok(())
}

/// `RecordConsent`: a consent verified by the signing department node.
pub fn record_consent(o: &mut Overlay<'_>, tx: &SignedTx, c: Consent) -> Result<(), TxError> {
    require_node(
        o,
        &tx.body.signer,
        "record consents (department nodes only)",
    )?;
    if c.id.len() != 64 || !c.id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid("consent.id", "must be 64 hex digits"));
    }
    if o.get(&keys::consent(&c.id))?.is_some() {
        return Err(TxError::AlreadyExists {
            what: "consent",
            id: c.id,
        });
    }
    PersonId::parse(&c.person).map_err(|e| invalid("consent.person", e.to_string()))?;
    if o.get(&keys::matter_type(&c.matter))?.is_none() {
        return Err(TxError::NotFound {
            what: "matter type",
            id: c.matter,
        });
    }
    match access::user(o, &c.grantee)? {
        Some(u) if !u.disabled => {}
        _ => {
            return Err(TxError::NotFound {
                what: "user",
                id: c.grantee,
            })
        }
    }
    if c.sources.is_empty() || c.sources.len() > 256 {
        return Err(invalid("consent.sources", "1-256 sources"));
    }
    for s in &c.sources {
        if o.get(&keys::source(s))?.is_none() {
            return Err(TxError::NotFound {
                what: "data source",
                id: s.clone(),
            });
        }
    }
    let n = c.purpose.chars().count();
    if c.purpose.trim().is_empty() || n > MAX_PURPOSE_CHARS {
        return Err(invalid(
            "consent.purpose",
            format!("1-{MAX_PURPOSE_CHARS} characters"),
        ));
    }
    if c.expires_at <= c.issued_at || c.expires_at.0 - c.issued_at.0 > MAX_CONSENT_MS {
        return Err(invalid(
            "consent.expires_at",
            "must be after issued_at, by at most 30 days",
        ));
    }
    if c.verified_by.is_empty() || c.verified_by.len() > 64 {
        return Err(invalid("consent.verified_by", "1-64 bytes"));
    }
    let key = keys::consent(&c.id);
    put(o, key, &c);
    Ok(())
}

/// `AppendAudit`: a department node's batch of audit entries. They stay in the block (the
/// projection indexes them); state keeps only the count.
pub fn append_audit(
    o: &mut Overlay<'_>,
    ctx: &BlockContext,
    tx: &SignedTx,
    entries: &[AuditEntry],
) -> Result<(), TxError> {
    require_node(
        o,
        &tx.body.signer,
        "append audit entries (department nodes only)",
    )?;
    if entries.is_empty() || entries.len() > MAX_AUDIT_ENTRIES {
        return Err(invalid(
            "entries",
            format!("1-{MAX_AUDIT_ENTRIES} entries per batch"),
        ));
    }
    for e in entries {
        e.validate()?;
        if e.state_height >= ctx.height.0 {
            return Err(invalid(
                "audit.state_height",
                format!("{} is not below this block", e.state_height),
            ));
        }
    }
    let n: u64 = get(o, keys::AUDIT_COUNT)?.unwrap_or(0);
    put(o, keys::AUDIT_COUNT.to_vec(), &(n + entries.len() as u64));
    Ok(())
}
