//! The data-source catalog and departments (R-ARC-6, R-CHN-5).
//!
//! A data source belongs to one department, declares typed fields, which field is the person key
//! (an 18-digit national ID) and which the record key, and how it is shared. Definitions are
//! validated once, when they enter the chain (genesis or a transaction).

use std::collections::BTreeSet;

use govchain_ledger::PublicKey;
use serde::{Deserialize, Serialize};

use crate::error::{invalid, TxError};

/// Most fields in a source.
pub const MAX_FIELDS: usize = 64;
/// Most options of an enum field.
pub const MAX_ENUM_OPTIONS: usize = 256;
/// Longest id (department, source, field).
pub const MAX_ID_LEN: usize = 32;
/// Longest display name or label.
pub const MAX_LABEL_LEN: usize = 128;

/// A department of the city government.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Department {
    /// Short id: 2–8 lower-case ASCII letters (`gaj`, `mzj`, …).
    pub id: String,
    /// Display name (市公安局).
    pub name: String,
    /// The department administrator's key.
    pub admin_key: PublicKey,
    /// The department node's validator key, if it runs a validator.
    pub validator_key: Option<PublicKey>,
}

/// How a source's data may be shared (the government data catalog's 共享类型).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShareType {
    /// 无条件共享.
    Open,
    /// 有条件共享: needs a grant.
    Conditional,
    /// 不予共享: owner department only.
    Restricted,
}

/// The type of a field's values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    /// Free text.
    Text,
    /// A signed integer.
    Integer,
    /// A decimal number (`-12.50`).
    Decimal,
    /// `YYYY-MM-DD`.
    Date,
    /// `YYYY-MM-DD HH:MM:SS` (or `T` as separator).
    DateTime,
    /// An 18-digit national ID (GB 11643).
    PersonId,
    /// A mainland mobile or landline number.
    Phone,
    /// `true` / `false` (also `是` / `否`).
    Boolean,
    /// One of a fixed list of values.
    Enum(Vec<String>),
}

/// One field of a data source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldDef {
    /// Field name: `[a-z][a-z0-9_]*`, at most 32 characters.
    pub name: String,
    /// Display label (公民身份号码).
    pub label: String,
    /// Value type.
    pub ty: FieldType,
    /// Whether every record must have it.
    pub required: bool,
}

/// A department data source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSource {
    /// `dept.code`: lower-case ASCII, digits, `.` and `_`.
    pub id: String,
    /// Display name (户籍人口基本信息).
    pub name: String,
    /// Owner department id.
    pub department: String,
    /// Sharing class.
    pub share_type: ShareType,
    /// The field holding the person's national ID, for sources about persons.
    pub person_field: Option<String>,
    /// The field that identifies a record within the source.
    pub record_key_field: String,
    /// Field definitions.
    pub fields: Vec<FieldDef>,
}

fn check_label(field: &str, s: &str) -> Result<(), TxError> {
    if s.trim().is_empty() || s.chars().count() > MAX_LABEL_LEN {
        return Err(invalid(
            field,
            format!("must be 1-{MAX_LABEL_LEN} characters"),
        ));
    }
    Ok(())
}

/// Validates a department id: 2–8 lower-case ASCII letters.
pub fn check_department_id(id: &str) -> Result<(), TxError> {
    if (2..=8).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_lowercase()) {
        Ok(())
    } else {
        Err(invalid(
            "department id",
            format!("{id:?} must be 2-8 lower-case letters"),
        ))
    }
}

/// Validates a source id: `[a-z][a-z0-9._]*`, at most 32 characters.
pub fn check_source_id(id: &str) -> Result<(), TxError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id.as_bytes()[0].is_ascii_lowercase()
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "source id",
            format!("{id:?} must match [a-z][a-z0-9._]{{0,31}}"),
        ))
    }
}

fn check_field_name(name: &str) -> Result<(), TxError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_ID_LEN
        && name.as_bytes()[0].is_ascii_lowercase()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "field name",
            format!("{name:?} must match [a-z][a-z0-9_]{{0,31}}"),
        ))
    }
}

impl Department {
    /// Checks id and name.
    pub fn validate(&self) -> Result<(), TxError> {
        check_department_id(&self.id)?;
        check_label("department name", &self.name)
    }
}

impl DataSource {
    /// The field definition named `name`.
    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Checks ids, labels, field names and the person and record key fields.
    pub fn validate(&self) -> Result<(), TxError> {
        check_source_id(&self.id)?;
        check_label("source name", &self.name)?;
        check_department_id(&self.department)?;
        if self.fields.is_empty() || self.fields.len() > MAX_FIELDS {
            return Err(invalid(
                "fields",
                format!("a source has 1-{MAX_FIELDS} fields"),
            ));
        }
        let mut names = BTreeSet::new();
        for f in &self.fields {
            check_field_name(&f.name)?;
            check_label("field label", &f.label)?;
            if !names.insert(f.name.as_str()) {
                return Err(invalid(
                    "fields",
                    format!("field {:?} appears twice", f.name),
                ));
            }
            if let FieldType::Enum(opts) = &f.ty {
                if opts.is_empty() || opts.len() > MAX_ENUM_OPTIONS {
                    return Err(invalid(
                        "fields",
                        format!("enum field {:?} needs 1-{MAX_ENUM_OPTIONS} options", f.name),
                    ));
                }
            }
        }
        let key = self.field(&self.record_key_field).ok_or_else(|| {
            invalid(
                "record_key_field",
                format!("{:?} is not a field", self.record_key_field),
            )
        })?;
        if !key.required {
            return Err(invalid(
                "record_key_field",
                "the record key must be required",
            ));
        }
        if let Some(p) = &self.person_field {
            let f = self
                .field(p)
                .ok_or_else(|| invalid("person_field", format!("{p:?} is not a field")))?;
            if f.ty != FieldType::PersonId {
                return Err(invalid("person_field", "must be a person_id field"));
            }
        }
        Ok(())
    }
}
