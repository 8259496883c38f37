//! The initial state a genesis document fixes (R-CHN-5): the system administrator, the
//! departments with their keys, the validator set and the data-source catalog.

use std::collections::BTreeSet;

use govchain_ledger::{codec, Hash, PublicKey, ValidatorSet, WriteSet, MAX_VALIDATORS};
use serde::{Deserialize, Serialize};

use crate::app_hash;
use crate::auth::KeyRole;
use crate::catalog::{DataSource, Department};
use crate::error::{invalid, TxError};
use crate::keys;

/// Everything chaincode needs to start a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitialState {
    /// The preset system administrator's key.
    pub system_admin: PublicKey,
    /// The departments.
    pub departments: Vec<Department>,
    /// The validator set of height 1.
    pub validators: ValidatorSet,
    /// The data-source catalog.
    pub sources: Vec<DataSource>,
}

impl InitialState {
    /// Checks the initial state: unique ids and keys, validators belong to departments, sources
    /// belong to known departments and are well-formed.
    pub fn validate(&self) -> Result<(), TxError> {
        let mut keys_seen = BTreeSet::from([self.system_admin]);
        let mut depts = BTreeSet::new();
        for d in &self.departments {
            d.validate()?;
            if !depts.insert(d.id.as_str()) {
                return Err(invalid("departments", format!("{:?} appears twice", d.id)));
            }
            for k in std::iter::once(d.admin_key).chain(d.validator_key) {
                if !keys_seen.insert(k) {
                    return Err(invalid("departments", format!("key {k} is used twice")));
                }
            }
        }
        let vs = &self.validators.validators;
        if vs.is_empty() || vs.len() > MAX_VALIDATORS {
            return Err(invalid(
                "validators",
                format!("need 1-{MAX_VALIDATORS} validators"),
            ));
        }
        let mut validator_keys = BTreeSet::new();
        for v in vs {
            if !validator_keys.insert(v.key) {
                return Err(invalid(
                    "validators",
                    format!("validator {} appears twice", v.key),
                ));
            }
            let owner = self
                .departments
                .iter()
                .find(|d| d.id == v.department)
                .ok_or_else(|| {
                    invalid(
                        "validators",
                        format!("unknown department {:?}", v.department),
                    )
                })?;
            if owner.validator_key != Some(v.key)
                || v.power == 0
                || v.power > crate::exec::MAX_VOTING_POWER
            {
                return Err(invalid(
                    "validators",
                    format!(
                        "validator of {:?} must be its validator key with power ≥ 1",
                        v.department
                    ),
                ));
            }
        }
        let mut sources = BTreeSet::new();
        for s in &self.sources {
            s.validate()?;
            if !depts.contains(s.department.as_str()) {
                return Err(invalid(
                    "sources",
                    format!(
                        "source {:?} belongs to unknown department {:?}",
                        s.id, s.department
                    ),
                ));
            }
            if !sources.insert(s.id.as_str()) {
                return Err(invalid("sources", format!("{:?} appears twice", s.id)));
            }
        }
        Ok(())
    }

    /// The state writes of genesis and the resulting app hash (the chain's height-0 app hash).
    pub fn writes(&self) -> Result<(WriteSet, Hash), TxError> {
        self.validate()?;
        let mut w = WriteSet::default();
        use codec::encode_infallible as enc;
        w.put(keys::SYSTEM_ADMIN.to_vec(), enc(&self.system_admin));
        w.put(
            keys::key_role(&self.system_admin),
            enc(&KeyRole::SystemAdmin),
        );
        for d in &self.departments {
            w.put(keys::department(&d.id), enc(d));
            w.put(
                keys::key_role(&d.admin_key),
                enc(&KeyRole::DepartmentAdmin(d.id.clone())),
            );
            if let Some(v) = d.validator_key {
                w.put(
                    keys::key_role(&v),
                    enc(&KeyRole::DepartmentNode(d.id.clone())),
                );
            }
        }
        w.put(
            keys::DEPT_COUNT.to_vec(),
            enc(&(self.departments.len() as u64)),
        );
        w.put(keys::VALIDATORS.to_vec(), enc(&self.validators));
        for s in &self.sources {
            w.put(keys::source(&s.id), enc(s));
        }
        let h = app_hash::next(&Hash::ZERO, &w);
        Ok((w, h))
    }
}
