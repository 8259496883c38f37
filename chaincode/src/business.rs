//! The business catalog (DESIGN §6 "Catalog"; R-ARC-3, R-ARC-4, R-ARC-5, R-QRY-2…5): matter
//! types (事项, approval items) with the data sources and fields each needs and its required
//! materials; service categories (服务类别) with their display templates and export formats;
//! and users' saved queries (defined in [`crate::saved_query`], re-exported here).
//!
//! This module owns the definitions and their stand-alone validation: ids, labels, named
//! limits, and references into the data-source catalog (every source and field named must
//! exist, condition values must fit their field's type). Execution against state — who may
//! sign, existence, references between entries — is [`crate::business_exec`]. Nothing here
//! does IO; a definition that passed [`CatalogEntry::validate`] is well-formed whatever state
//! it meets.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::catalog::{DataSource, MAX_FIELDS, MAX_LABEL_LEN};
use crate::error::{invalid, TxError};
pub use crate::saved_query::{
    Condition, ConditionOp, SavedQuery, Shape, MAX_CONDITIONS, MAX_CONDITION_VALUE_CHARS,
    MAX_QUERY_NAME_CHARS, MAX_SAVED_QUERIES_PER_OWNER,
};

/// Longest id of a matter type, material, category, template or export format (ASCII).
pub const MAX_ENTRY_ID_LEN: usize = 32;
/// Most data sources one matter type or category names.
pub const MAX_ENTRY_SOURCES: usize = 16;
/// Most materials of one matter type.
pub const MAX_MATERIALS: usize = 64;
/// Longest material note, in characters (may be empty).
pub const MAX_NOTE_CHARS: usize = 512;
/// Most columns of a display template or export format.
pub const MAX_COLUMNS: usize = 64;
/// Most display templates of one category.
pub const MAX_TEMPLATES_PER_CATEGORY: usize = 32;
/// Most export formats of one category.
pub const MAX_FORMATS_PER_CATEGORY: usize = 32;
/// The fields a matter type or category takes from one data source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceFields {
    /// The data source id.
    pub source: String,
    /// Its field names, in display order.
    pub fields: Vec<String>,
}

/// One material an applicant brings for a matter (申请材料).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Material {
    /// Id within its matter type.
    pub id: String,
    /// Display name (居民身份证原件).
    pub name: String,
    /// Whether the matter cannot proceed without it.
    pub required: bool,
    /// Free-text note (may be empty).
    pub note: String,
}

/// A matter type (事项): an approval item, the data it needs and the materials it requires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatterType {
    /// Id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// The responsible department's id.
    pub department: String,
    /// The sources and fields a matter's file gathers, in order.
    pub sources: Vec<SourceFields>,
    /// The required-materials checklist, in order.
    pub materials: Vec<Material>,
}

/// A service category (服务类别) of the bureau: which sources and fields it summarizes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceCategory {
    /// Id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// The sources and fields it summarizes.
    pub sources: Vec<SourceFields>,
}

/// One output column: a field of a source under a label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Column {
    /// The data source id.
    pub source: String,
    /// The field name.
    pub field: String,
    /// The heading shown or exported.
    pub label: String,
}

/// How a category's results are displayed: which fields, in which order, under which labels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisplayTemplate {
    /// The category it belongs to.
    pub category: String,
    /// Id within the category.
    pub id: String,
    /// Display name.
    pub name: String,
    /// The columns, in order.
    pub columns: Vec<Column>,
}

/// The file type of an export format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileType {
    /// Comma-separated values (UTF-8 with BOM).
    Csv,
    /// A JSON document.
    Json,
    /// An Excel workbook.
    Xlsx,
}

/// How a category's results are exported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportFormat {
    /// The category it belongs to.
    pub category: String,
    /// Id within the category.
    pub id: String,
    /// Display name.
    pub name: String,
    /// The file type.
    pub file_type: FileType,
    /// The columns, in order.
    pub columns: Vec<Column>,
}

/// Any catalog entry a `PutCatalogEntry` transaction adds or replaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatalogEntry {
    /// A matter type (with its materials).
    MatterType(MatterType),
    /// A service category.
    Category(ServiceCategory),
    /// A display template of a category.
    Template(DisplayTemplate),
    /// An export format of a category.
    Format(ExportFormat),
    /// The signer's saved query.
    SavedQuery(SavedQuery),
}

/// Names the entry a `DeleteCatalogEntry` transaction removes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryRef {
    /// A matter type (its materials go with it).
    MatterType {
        /// Id.
        id: String,
    },
    /// A category (refused while it has templates or formats).
    Category {
        /// Id.
        id: String,
    },
    /// A display template (refused while saved queries use it).
    Template {
        /// The category.
        category: String,
        /// Id.
        id: String,
    },
    /// An export format.
    Format {
        /// The category.
        category: String,
        /// Id.
        id: String,
    },
    /// The signer's own saved query.
    SavedQuery {
        /// Its name.
        name: String,
    },
}

/// Whether a put adds a new entry or replaces an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PutMode {
    /// Refused when the entry exists.
    Add,
    /// Refused when the entry does not exist.
    Replace,
}

/// Looks a data source up (in state, or in a test's map).
pub type SourceLookup<'a> = dyn Fn(&str) -> Result<Option<DataSource>, TxError> + 'a;

/// Validates an entry id: `[a-z0-9][a-z0-9._-]*`, at most [`MAX_ENTRY_ID_LEN`] bytes.
pub fn check_entry_id(what: &str, id: &str) -> Result<(), TxError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ENTRY_ID_LEN
        && id
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && id.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(invalid(
            format!("{what} id"),
            format!(
                "{id:?} must match [a-z0-9][a-z0-9._-]{{0,{}}}",
                MAX_ENTRY_ID_LEN - 1
            ),
        ))
    }
}

/// Validates free text: no control characters, at most `max` characters, and not blank unless
/// `may_be_empty`.
pub(crate) fn check_text(
    what: &str,
    s: &str,
    max: usize,
    may_be_empty: bool,
) -> Result<(), TxError> {
    let n = s.chars().count();
    if n > max {
        return Err(invalid(
            what,
            format!("{n} characters exceed the limit of {max}"),
        ));
    }
    if !may_be_empty && s.trim().is_empty() {
        return Err(invalid(what, "must not be blank"));
    }
    if s.chars().any(char::is_control) {
        return Err(invalid(what, "must not contain control characters"));
    }
    Ok(())
}

pub(crate) fn check_count(what: &'static str, got: usize, max: usize) -> Result<(), TxError> {
    if got > max {
        return Err(TxError::TooLarge { what, got, max });
    }
    Ok(())
}

pub(crate) fn source_of(lookup: &SourceLookup<'_>, id: &str) -> Result<DataSource, TxError> {
    lookup(id)?.ok_or_else(|| TxError::NotFound {
        what: "data source",
        id: id.to_string(),
    })
}

/// Checks a list of sources with fields: 1..=[`MAX_ENTRY_SOURCES`] distinct sources that exist,
/// each with 1..=`MAX_FIELDS` distinct fields it has.
pub fn check_source_fields(
    lookup: &SourceLookup<'_>,
    list: &[SourceFields],
) -> Result<(), TxError> {
    if list.is_empty() {
        return Err(invalid("sources", "name at least one data source"));
    }
    check_count("data sources of an entry", list.len(), MAX_ENTRY_SOURCES)?;
    let mut seen = BTreeSet::new();
    for sf in list {
        if !seen.insert(sf.source.as_str()) {
            return Err(invalid(
                "sources",
                format!("source {:?} appears twice", sf.source),
            ));
        }
        let def = source_of(lookup, &sf.source)?;
        if sf.fields.is_empty() {
            return Err(invalid(
                "fields",
                format!("name at least one field of {}", sf.source),
            ));
        }
        check_count("fields of one source", sf.fields.len(), MAX_FIELDS)?;
        let mut names = BTreeSet::new();
        for f in &sf.fields {
            if def.field(f).is_none() {
                return Err(TxError::NotFound {
                    what: "field",
                    id: format!("{}.{f}", sf.source),
                });
            }
            if !names.insert(f.as_str()) {
                return Err(invalid(
                    "fields",
                    format!("field {}.{f} appears twice", sf.source),
                ));
            }
        }
    }
    Ok(())
}

impl Material {
    /// Checks id, name and note.
    pub fn validate(&self) -> Result<(), TxError> {
        check_entry_id("material", &self.id)?;
        check_text("material name", &self.name, MAX_LABEL_LEN, false)?;
        check_text("material note", &self.note, MAX_NOTE_CHARS, true)
    }
}

impl MatterType {
    /// Checks id, name, department id, sources and fields, and the materials (distinct ids).
    pub fn validate(&self, lookup: &SourceLookup<'_>) -> Result<(), TxError> {
        check_entry_id("matter type", &self.id)?;
        check_text("matter type name", &self.name, MAX_LABEL_LEN, false)?;
        crate::catalog::check_department_id(&self.department)?;
        check_source_fields(lookup, &self.sources)?;
        check_count(
            "materials of a matter type",
            self.materials.len(),
            MAX_MATERIALS,
        )?;
        let mut ids = BTreeSet::new();
        for m in &self.materials {
            m.validate()?;
            if !ids.insert(m.id.as_str()) {
                return Err(invalid(
                    "materials",
                    format!("material {:?} appears twice", m.id),
                ));
            }
        }
        Ok(())
    }
}

impl ServiceCategory {
    /// Checks id, name, sources and fields.
    pub fn validate(&self, lookup: &SourceLookup<'_>) -> Result<(), TxError> {
        check_entry_id("category", &self.id)?;
        check_text("category name", &self.name, MAX_LABEL_LEN, false)?;
        check_source_fields(lookup, &self.sources)
    }

    /// Whether the category includes `source`.`field`.
    pub fn covers(&self, source: &str, field: &str) -> bool {
        self.sources
            .iter()
            .any(|s| s.source == source && s.fields.iter().any(|f| f == field))
    }

    /// The first of `columns` this category does not cover, if any.
    pub fn first_uncovered<'c>(&self, columns: &'c [Column]) -> Option<&'c Column> {
        columns.iter().find(|c| !self.covers(&c.source, &c.field))
    }
}

/// Checks columns: 1..=[`MAX_COLUMNS`], distinct (source, field), labelled, and within the
/// category's sources and fields.
pub fn check_columns(category: &ServiceCategory, columns: &[Column]) -> Result<(), TxError> {
    if columns.is_empty() {
        return Err(invalid("columns", "name at least one column"));
    }
    check_count("columns", columns.len(), MAX_COLUMNS)?;
    let mut seen = BTreeSet::new();
    for c in columns {
        check_text("column label", &c.label, MAX_LABEL_LEN, false)?;
        if !seen.insert((c.source.as_str(), c.field.as_str())) {
            return Err(invalid(
                "columns",
                format!("column {}.{} appears twice", c.source, c.field),
            ));
        }
    }
    if let Some(c) = category.first_uncovered(columns) {
        return Err(invalid(
            "columns",
            format!(
                "{}.{} is not among the fields of category {}",
                c.source, c.field, category.id
            ),
        ));
    }
    Ok(())
}

impl DisplayTemplate {
    /// Checks ids and name (columns are checked against the category by execution).
    pub fn validate(&self) -> Result<(), TxError> {
        check_entry_id("category", &self.category)?;
        check_entry_id("template", &self.id)?;
        check_text("template name", &self.name, MAX_LABEL_LEN, false)
    }
}

impl ExportFormat {
    /// Checks ids and name (columns are checked against the category by execution).
    pub fn validate(&self) -> Result<(), TxError> {
        check_entry_id("category", &self.category)?;
        check_entry_id("export format", &self.id)?;
        check_text("export format name", &self.name, MAX_LABEL_LEN, false)
    }
}

impl EntryRef {
    /// A short name of the entry's type (`matter_type`, `category`, …).
    pub fn entry_type(&self) -> &'static str {
        match self {
            EntryRef::MatterType { .. } => "matter_type",
            EntryRef::Category { .. } => "category",
            EntryRef::Template { .. } => "template",
            EntryRef::Format { .. } => "format",
            EntryRef::SavedQuery { .. } => "saved_query",
        }
    }
}

impl CatalogEntry {
    /// The reference that names this entry (a saved query's owner is its signer).
    pub fn entry_ref(&self) -> EntryRef {
        match self {
            CatalogEntry::MatterType(m) => EntryRef::MatterType { id: m.id.clone() },
            CatalogEntry::Category(c) => EntryRef::Category { id: c.id.clone() },
            CatalogEntry::Template(t) => EntryRef::Template {
                category: t.category.clone(),
                id: t.id.clone(),
            },
            CatalogEntry::Format(f) => EntryRef::Format {
                category: f.category.clone(),
                id: f.id.clone(),
            },
            CatalogEntry::SavedQuery(q) => EntryRef::SavedQuery {
                name: q.name.clone(),
            },
        }
    }
}
