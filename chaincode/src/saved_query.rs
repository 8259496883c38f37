//! Saved queries (R-QRY-2): a user's named combination of conditions on one data source,
//! optionally shaped by a category's display template. The owner is always the key that signed
//! the transaction, so it is not part of the definition.
//!
//! Conditions are checked against the source as `GET /api/v1/records` checks them; the API's
//! category export uses the same [`Condition::check`]. Nothing here does IO.

use serde::{Deserialize, Serialize};

use crate::business::{check_count, check_entry_id, check_text, source_of, SourceLookup};
use crate::catalog::{DataSource, FieldType};
use crate::error::{invalid, TxError};
use crate::records::{check_value, parse_date};

/// Most saved queries of one owner.
pub const MAX_SAVED_QUERIES_PER_OWNER: usize = 100;
/// Longest saved-query name, in characters.
pub const MAX_QUERY_NAME_CHARS: usize = 64;
/// Most conditions of a saved query.
pub const MAX_CONDITIONS: usize = 16;
/// Longest condition value, in characters (the projection indexes values up to this length).
pub const MAX_CONDITION_VALUE_CHARS: usize = 191;

/// A condition operator, as in `GET /api/v1/records`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConditionOp {
    /// Equal.
    Eq,
    /// At least (dates and text).
    From,
    /// At most (dates and text).
    To,
}

/// One condition of a saved query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// The operator.
    pub op: ConditionOp,
    /// The field name.
    pub field: String,
    /// The value compared with.
    pub value: String,
}

/// Results of a saved query shaped by a category's display template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shape {
    /// The category.
    pub category: String,
    /// The display template within it.
    pub template: String,
}

/// A named combination of conditions on one source, saved by a user (its owner is the key that
/// signed it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedQuery {
    /// Name, unique per owner (free text).
    pub name: String,
    /// The data source queried.
    pub source: String,
    /// All must hold.
    pub conditions: Vec<Condition>,
    /// Optional shaping of the results.
    pub shape: Option<Shape>,
}

impl Condition {
    /// Checks the condition against its source, as `GET /api/v1/records` does: the field
    /// exists; ranges only on fields ordered as text (dates, date-times, text, national IDs,
    /// phones); a date bound is a date; an equality value fits the field's type.
    pub fn check(&self, source: &DataSource) -> Result<(), TxError> {
        let f = source.field(&self.field).ok_or_else(|| TxError::NotFound {
            what: "field",
            id: format!("{}.{}", source.id, self.field),
        })?;
        let what = format!("condition on {}", self.field);
        check_text(&what, &self.value, MAX_CONDITION_VALUE_CHARS, false)?;
        let ordered = matches!(
            f.ty,
            FieldType::Date
                | FieldType::DateTime
                | FieldType::Text
                | FieldType::PersonId
                | FieldType::Phone
        );
        let result = match self.op {
            ConditionOp::Eq => check_value(&f.ty, &self.value),
            ConditionOp::From | ConditionOp::To if !ordered => {
                Err("ranges work on dates and text only".to_string())
            }
            ConditionOp::From | ConditionOp::To if f.ty == FieldType::Date => {
                parse_date(&self.value).map(|_| ())
            }
            ConditionOp::From | ConditionOp::To => Ok(()),
        };
        result.map_err(|e| invalid(what, format!("{:?} {e}", self.value)))
    }
}

impl SavedQuery {
    /// Checks the name, that the source exists, and every condition against it. The shape's
    /// category and template are checked against state by execution.
    pub fn validate(&self, lookup: &SourceLookup<'_>) -> Result<DataSource, TxError> {
        check_text("query name", &self.name, MAX_QUERY_NAME_CHARS, false)?;
        let source = source_of(lookup, &self.source)?;
        check_count("conditions", self.conditions.len(), MAX_CONDITIONS)?;
        for c in &self.conditions {
            c.check(&source)?;
        }
        if let Some(s) = &self.shape {
            check_entry_id("category", &s.category)?;
            check_entry_id("template", &s.template)?;
        }
        Ok(source)
    }
}
