//! Data records as departments deliver them (R-ARC-1, R-ARC-2).
//!
//! A record carries its normalized field values (text, validated against the source's field
//! types) and the raw payload exactly as the department system delivered it; the raw bytes are
//! kept, never rewritten. The record key identifies the record within its source; a newer
//! submission of the same key supersedes the older one as a new version.

use std::collections::BTreeMap;

use govchain_ledger::{Height, TxId};
use serde::{Deserialize, Serialize};

use crate::catalog::{DataSource, FieldType};
use crate::person::{is_valid_date, PersonId};

/// Most records in one `SubmitRecords` batch.
pub const MAX_RECORDS_PER_BATCH: usize = 10_000;
/// Longest field value in bytes.
pub const MAX_VALUE_BYTES: usize = 4096;
/// Longest record key in bytes (it is a SQL key column in the projection: VARCHAR(191) in
/// MySQL's utf8mb4, so at most 191 characters; 128 bytes fits any encoding).
pub const MAX_RECORD_KEY_BYTES: usize = 128;
/// Longest raw payload of one record.
pub const MAX_RAW_BYTES: usize = 64 * 1024;

/// One record of a data source, as submitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Normalized field values by field name.
    pub fields: BTreeMap<String, String>,
    /// The payload exactly as delivered by the department system.
    #[serde(with = "serde_bytes")]
    pub raw: Vec<u8>,
}

/// A record as kept in state: the latest version with its provenance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRecord {
    /// 1 for the first submission, +1 for each change.
    pub version: u32,
    /// The height of the block that wrote this version.
    pub height: Height,
    /// The transaction that wrote it.
    pub tx_id: TxId,
    /// The person it is about, if the source is about persons.
    pub person: Option<String>,
    /// The record.
    pub record: Record,
}

/// A record that passed validation, with its keys extracted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidRecord {
    /// Value of the source's record key field.
    pub key: String,
    /// The person key, normalized.
    pub person: Option<PersonId>,
}

/// Checks one non-empty value against its field type; the error says what is wrong with it.
pub fn check_value(ty: &FieldType, v: &str) -> Result<(), String> {
    let num = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match ty {
        FieldType::Text => Ok(()),
        FieldType::Integer => {
            let d = v.strip_prefix('-').unwrap_or(v);
            if num(d) && d.len() <= 18 {
                Ok(())
            } else {
                Err("is not an integer".into())
            }
        }
        FieldType::Decimal => {
            let d = v.strip_prefix('-').unwrap_or(v);
            let mut parts = d.splitn(2, '.');
            let int = parts.next().unwrap_or_default();
            let frac = parts.next();
            if num(int) && int.len() <= 18 && frac.is_none_or(|f| num(f) && f.len() <= 8) {
                Ok(())
            } else {
                Err("is not a decimal number".into())
            }
        }
        FieldType::Date => parse_date(v).map(|_| ()),
        FieldType::DateTime => {
            let (d, t) = v
                .split_once([' ', 'T'])
                .ok_or_else(|| "is not YYYY-MM-DD HH:MM:SS".to_string())?;
            parse_date(d)?;
            let b = t.as_bytes();
            let ok = b.len() == 8
                && b[2] == b':'
                && b[5] == b':'
                && num(&t[..2])
                && num(&t[3..5])
                && num(&t[6..])
                && t[..2] < *"24"
                && t[3..5] < *"60"
                && t[6..] < *"60";
            if ok {
                Ok(())
            } else {
                Err("is not YYYY-MM-DD HH:MM:SS".into())
            }
        }
        FieldType::PersonId => PersonId::parse(v).map(|_| ()).map_err(|e| e.to_string()),
        FieldType::Phone => {
            let d: String = v.chars().filter(|c| *c != '-').collect();
            if num(&d) && (7..=12).contains(&d.len()) {
                Ok(())
            } else {
                Err("is not a phone number".into())
            }
        }
        FieldType::Boolean => match v {
            "true" | "false" | "是" | "否" => Ok(()),
            _ => Err("is not a boolean (true/false/是/否)".into()),
        },
        FieldType::Enum(opts) => {
            if opts.iter().any(|o| o == v) {
                Ok(())
            } else {
                Err(format!("is not one of {}", opts.join("/")))
            }
        }
    }
}

/// Parses `YYYY-MM-DD` into (y, m, d).
pub fn parse_date(v: &str) -> Result<(u32, u32, u32), String> {
    let b = v.as_bytes();
    let shape = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shape {
        return Err("is not a date YYYY-MM-DD".into());
    }
    let n = |s: &str| s.parse::<u32>().unwrap_or_default();
    let (y, m, d) = (n(&v[..4]), n(&v[5..7]), n(&v[8..]));
    if !is_valid_date(y, m, d) {
        return Err("is not a valid calendar date".into());
    }
    Ok((y, m, d))
}

impl Record {
    /// Validates the record against its source: known fields only, required fields present,
    /// every value of its declared type, sizes within limits.
    pub fn validate(&self, source: &DataSource) -> Result<ValidRecord, String> {
        if self.raw.len() > MAX_RAW_BYTES {
            return Err(format!(
                "raw payload of {} bytes exceeds {MAX_RAW_BYTES}",
                self.raw.len()
            ));
        }
        for (name, value) in &self.fields {
            let def = source
                .field(name)
                .ok_or_else(|| format!("unknown field {name:?} for source {}", source.id))?;
            if value.len() > MAX_VALUE_BYTES {
                return Err(format!("field {name:?} exceeds {MAX_VALUE_BYTES} bytes"));
            }
            if value.is_empty() {
                if def.required {
                    return Err(format!("required field {name:?} is empty"));
                }
                continue;
            }
            check_value(&def.ty, value).map_err(|e| format!("field {name:?} value {e}"))?;
        }
        if let Some(missing) = source
            .fields
            .iter()
            .find(|f| f.required && !self.fields.contains_key(&f.name))
        {
            return Err(format!("required field {:?} is missing", missing.name));
        }
        let key = self
            .fields
            .get(&source.record_key_field)
            .cloned()
            .unwrap_or_default();
        if key.len() > MAX_RECORD_KEY_BYTES {
            return Err(format!(
                "record key field {:?} exceeds {MAX_RECORD_KEY_BYTES} bytes",
                source.record_key_field
            ));
        }
        // A national ID as record key is normalised (upper-case X), so one person's record
        // has one key however the department spelled it.
        let key = match source.field(&source.record_key_field).map(|f| &f.ty) {
            Some(FieldType::PersonId) => PersonId::parse(&key)
                .map_err(|e| format!("record key {e}"))?
                .as_str()
                .to_string(),
            _ => key,
        };
        let person = match &source.person_field {
            Some(p) => match self.fields.get(p).filter(|v| !v.is_empty()) {
                Some(v) => Some(PersonId::parse(v).map_err(|e| format!("person id {e}"))?),
                None => None,
            },
            None => None,
        };
        Ok(ValidRecord { key, person })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{FieldDef, ShareType};

    fn source() -> DataSource {
        let f = |name: &str, ty: FieldType, required| FieldDef {
            name: name.into(),
            label: name.into(),
            ty,
            required,
        };
        DataSource {
            id: "gaj.hjxx".into(),
            name: "户籍".into(),
            department: "gaj".into(),
            share_type: ShareType::Conditional,
            person_field: Some("sfzh".into()),
            record_key_field: "sfzh".into(),
            fields: vec![
                f("sfzh", FieldType::PersonId, true),
                f("xm", FieldType::Text, true),
                f("csrq", FieldType::Date, false),
                f("xb", FieldType::Enum(vec!["男".into(), "女".into()]), false),
                f("je", FieldType::Decimal, false),
            ],
        }
    }

    fn rec(pairs: &[(&str, &str)]) -> Record {
        Record {
            fields: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            raw: b"{}".to_vec(),
        }
    }

    #[test]
    fn accepts_a_valid_record_and_extracts_keys() {
        let r = rec(&[
            ("sfzh", "11010519491231002x"),
            ("xm", "张三"),
            ("xb", "男"),
            ("je", "-3.25"),
        ]);
        let v = r.validate(&source()).unwrap();
        assert_eq!(v.key, "11010519491231002X", "person-id keys are normalised");
        assert_eq!(v.person.unwrap().as_str(), "11010519491231002X");
    }

    #[test]
    fn refuses_unknown_fields_missing_fields_and_bad_types() {
        let s = source();
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("sfzh", "11010519491231002X"), ("xm", "a"), ("zz", "1")],
                "unknown field",
            ),
            (
                &[("sfzh", "11010519491231002X")],
                "required field \"xm\" is missing",
            ),
            (
                &[("sfzh", "110105194912310021"), ("xm", "a")],
                "check character",
            ),
            (
                &[
                    ("sfzh", "11010519491231002X"),
                    ("xm", "a"),
                    ("csrq", "2023-02-30"),
                ],
                "calendar",
            ),
            (
                &[("sfzh", "11010519491231002X"), ("xm", "a"), ("xb", "未知")],
                "is not one of",
            ),
            (
                &[("sfzh", "11010519491231002X"), ("xm", "a"), ("je", "1,5")],
                "decimal",
            ),
            (&[("sfzh", "11010519491231002X"), ("xm", "")], "empty"),
        ];
        for (pairs, want) in cases {
            let err = rec(pairs).validate(&s).unwrap_err();
            assert!(err.contains(want), "{err} does not contain {want}");
        }
    }
}
