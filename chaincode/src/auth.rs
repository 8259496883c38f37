//! Who may sign what. Keys get roles at genesis or by registration; every kind names the roles
//! that may sign it. The same check runs in every node and in the auditor's replay.

use govchain_ledger::{codec, PublicKey, StateView};
use serde::{Deserialize, Serialize};

use crate::error::TxError;
use crate::keys;

/// What a registered key is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyRole {
    /// The genesis system administrator.
    SystemAdmin,
    /// A department's administrator.
    DepartmentAdmin(String),
    /// A department's node (its validator key).
    DepartmentNode(String),
    /// A system account (a user with the `system` role and this key).
    User(String),
}

/// The role of `key`, if registered.
pub fn role_of(view: &dyn StateView, key: &PublicKey) -> Result<Option<KeyRole>, TxError> {
    match view.get(&keys::key_role(key))? {
        None => Ok(None),
        Some(b) => Ok(Some(
            codec::decode(&b, 256).map_err(|e| TxError::Malformed(e.to_string()))?,
        )),
    }
}

fn denied(signer: &PublicKey, action: &str) -> TxError {
    TxError::Unauthorized {
        signer: *signer,
        action: action.to_string(),
    }
}

/// Requires the system administrator.
pub fn require_system_admin(
    view: &dyn StateView,
    signer: &PublicKey,
    action: &str,
) -> Result<(), TxError> {
    match role_of(view, signer)? {
        Some(KeyRole::SystemAdmin) => Ok(()),
        _ => Err(denied(signer, action)),
    }
}

/// Requires a department administrator; returns the department.
pub fn require_department_admin(
    view: &dyn StateView,
    signer: &PublicKey,
    action: &str,
) -> Result<String, TxError> {
    match role_of(view, signer)? {
        Some(KeyRole::DepartmentAdmin(d)) => Ok(d),
        _ => Err(denied(signer, action)),
    }
}

/// Requires a key of department `dept` (its administrator or its node).
pub fn require_department_key(
    view: &dyn StateView,
    signer: &PublicKey,
    dept: &str,
    action: &str,
) -> Result<(), TxError> {
    match role_of(view, signer)? {
        Some(KeyRole::DepartmentAdmin(d) | KeyRole::DepartmentNode(d)) if d == dept => Ok(()),
        _ => Err(denied(signer, action)),
    }
}
