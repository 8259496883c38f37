//! Projecting `SubmitRecords` batches: the current version of every record (`records`), the
//! superseded versions (`record_versions`), the indexed field values of current records
//! (`record_fields`, for combined queries) and their n-grams (`ngrams`, for fuzzy search).
//!
//! The batch is applied the way chaincode executes it, record by record: a key that repeats in
//! the batch sees its earlier version, identical content changes nothing, anything else becomes
//! the next version. The SQL is set-based — a handful of multi-row statements per batch — and
//! a record's old index rows are found by recomputing its old grams, so the index needs no
//! second B-tree keyed by record.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use govchain_chaincode::catalog::{DataSource, FieldDef, FieldType};
use govchain_chaincode::records::Record;
use govchain_ledger::Height;
use sqlx::Row;

use super::grams::ngrams;
use super::{ProjectionError, SqlTx, MAX_INDEXED_VALUE_CHARS, MAX_NGRAM_VALUE_CHARS};

/// Most bound values in one statement (SQLite allows 32,766; MySQL 65,535).
const BINDS_PER_STATEMENT: usize = 900;

/// The columns of a record version, in `records` and `record_versions` (`records` adds
/// `department`).
const VERSION_COLUMNS: [&str; 8] = [
    "source",
    "record_key",
    "version",
    "person_id",
    "tx_id",
    "height",
    "fields",
    "raw",
];

/// The current version of a record key, as projected.
struct Current {
    version: i64,
    fields: String,
    raw: String,
}

/// One new record version, ready to write.
struct Version<'r> {
    key: String,
    version: i64,
    person: Option<String>,
    fields: String,
    raw: String,
    record: &'r Record,
}

/// A bound value.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Cell {
    Text(String),
    OptText(Option<String>),
    Int(i64),
}

/// `(?, ?, …)` groups for a multi-row statement: built from fixed fragments only.
fn placeholders(rows: usize, cols: usize) -> String {
    let group = format!("({})", vec!["?"; cols].join(", "));
    vec![group; rows].join(", ")
}

/// Multi-row INSERTs of `rows` into `table` (names are this module's constants; every value is
/// bound), as few statements as the bound-value limit allows.
pub(super) async fn insert_rows(
    tx: &mut SqlTx<'_>,
    table: &str,
    cols: &[&str],
    rows: Vec<Vec<Cell>>,
) -> Result<(), ProjectionError> {
    for chunk in rows.chunks(BINDS_PER_STATEMENT / cols.len()) {
        let sql = format!(
            "INSERT INTO {table} ({}) VALUES {}",
            cols.join(", "),
            placeholders(chunk.len(), cols.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for cell in chunk.iter().flatten() {
            q = match cell {
                Cell::Text(s) => q.bind(s.clone()),
                Cell::OptText(s) => q.bind(s.clone()),
                Cell::Int(i) => q.bind(*i),
            };
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Runs `{prefix} IN (?, …)` over `keys` in chunks, binding `source` first, and returns the
/// rows (`fetch`) or nothing. `prefix` is a constant of this module.
async fn for_keys(
    tx: &mut SqlTx<'_>,
    prefix: &str,
    source: &str,
    keys: &[&str],
    fetch: bool,
) -> Result<Vec<sqlx::any::AnyRow>, ProjectionError> {
    let mut out = Vec::new();
    for chunk in keys.chunks(BINDS_PER_STATEMENT) {
        let sql = format!("{prefix} IN ({})", vec!["?"; chunk.len()].join(", "));
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(source.to_string());
        for k in chunk {
            q = q.bind(k.to_string());
        }
        if fetch {
            out.extend(q.fetch_all(&mut **tx).await?);
        } else {
            q.execute(&mut **tx).await?;
        }
    }
    Ok(out)
}

/// The (field, gram) pairs of a record's searchable fields ([`is_searchable`]) of at most
/// [`MAX_NGRAM_VALUE_CHARS`] characters.
pub(super) fn record_ngrams(
    source: &DataSource,
    fields: &BTreeMap<String, String>,
) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for f in source.fields.iter().filter(|f| is_searchable(f)) {
        let Some(v) = fields.get(&f.name) else {
            continue;
        };
        if v.chars().count() > MAX_NGRAM_VALUE_CHARS {
            continue;
        }
        for g in ngrams(v) {
            out.insert((f.name.clone(), g));
        }
    }
    out
}

/// Words in the label of a free-text field that make it searchable by fragment (R-QRY-1:
/// names and addresses); other free text (ethnicity, remarks, codes) is found by combined
/// queries, and indexing it would multiply the index for no search anyone runs.
pub const SEARCHABLE_LABEL_WORDS: &[&str] = &[
    "姓名",
    "名称",
    "名字",
    "地址",
    "住址",
    "住所",
    "坐落",
    "场所",
    "出生地",
    "单位",
];

/// Whether a field gets n-grams: national IDs, phone numbers, and free text labelled as a
/// name or an address.
pub(super) fn is_searchable(f: &FieldDef) -> bool {
    match f.ty {
        FieldType::PersonId | FieldType::Phone => true,
        FieldType::Text => SEARCHABLE_LABEL_WORDS.iter().any(|w| f.label.contains(w)),
        _ => false,
    }
}

/// The `ngrams` rows of one record.
pub(super) fn gram_rows(
    source: &DataSource,
    key: &str,
    fields: &BTreeMap<String, String>,
) -> impl Iterator<Item = Vec<Cell>> {
    let (source_id, key) = (source.id.clone(), key.to_string());
    record_ngrams(source, fields)
        .into_iter()
        .map(move |(f, g)| {
            vec![
                Cell::Text(g),
                Cell::Text(source_id.clone()),
                Cell::Text(key.clone()),
                Cell::Text(f),
            ]
        })
}

/// The columns of `ngrams`, in [`gram_rows`] order.
pub(super) const GRAM_COLUMNS: [&str; 4] = ["gram", "source", "record_key", "field"];

/// Projects one `SubmitRecords` batch of `source`, written by `tx_id` at `height`.
pub(super) async fn put_records(
    tx: &mut SqlTx<'_>,
    height: Height,
    source: &DataSource,
    tx_id: &str,
    records: &[Record],
) -> Result<(), ProjectionError> {
    let diverged = |reason: String| ProjectionError::Diverged {
        height: height.0,
        reason,
    };
    let mut valid = Vec::with_capacity(records.len());
    for r in records {
        let v = r.validate(source).map_err(|e| {
            diverged(format!(
                "a committed record of {} is invalid: {e}",
                source.id
            ))
        })?;
        let fields = serde_json::to_string(&r.fields).map_err(|e| diverged(e.to_string()))?;
        valid.push((v, fields, hex::encode(&r.raw), r));
    }
    // The current version of every key of the batch, as projected before it.
    let keys: BTreeSet<&str> = valid.iter().map(|(v, ..)| v.key.as_str()).collect();
    let keys: Vec<&str> = keys.into_iter().collect();
    let prefix = "SELECT record_key, version, fields, raw FROM records WHERE source = ? AND \
                  record_key";
    let mut before: HashMap<String, Current> = HashMap::new();
    for row in for_keys(tx, prefix, &source.id, &keys, true).await? {
        let c = Current {
            version: row.try_get(1)?,
            fields: row.try_get(2)?,
            raw: row.try_get(3)?,
        };
        before.insert(row.try_get(0)?, c);
    }
    // Chaincode's rule, in order: identical content changes nothing; else the next version.
    let mut latest: HashMap<&str, (i64, &str, &str)> = before
        .iter()
        .map(|(k, c)| (k.as_str(), (c.version, c.fields.as_str(), c.raw.as_str())))
        .collect();
    let mut versions: Vec<Version> = Vec::new();
    for (v, fields, raw, record) in &valid {
        if let Some((_, f, w)) = latest.get(v.key.as_str()) {
            if f == fields && w == raw {
                continue;
            }
        }
        let version = latest.get(v.key.as_str()).map_or(1, |(n, ..)| n + 1);
        latest.insert(&v.key, (version, fields, raw));
        versions.push(Version {
            key: v.key.clone(),
            version,
            person: v.person.as_ref().map(|p| p.as_str().to_string()),
            fields: fields.clone(),
            raw: raw.clone(),
            record,
        });
    }
    if versions.is_empty() {
        return Ok(());
    }
    // The last version of each key is current; the others, and the versions they replace,
    // are history.
    let mut current: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, v) in versions.iter().enumerate() {
        current.insert(v.key.as_str(), i);
    }
    let replaced: Vec<&str> = current
        .keys()
        .copied()
        .filter(|k| before.contains_key(*k))
        .collect();
    retire(tx, source, &replaced, &before).await?;
    let text = |s: &str| Cell::Text(s.to_string());
    let row = |v: &Version| {
        vec![
            text(&source.id),
            text(&v.key),
            Cell::Int(v.version),
            Cell::OptText(v.person.clone()),
            text(tx_id),
            Cell::Int(height.0 as i64),
            text(&v.fields),
            text(&v.raw),
        ]
    };
    let history = versions
        .iter()
        .enumerate()
        .filter(|(i, v)| current.get(v.key.as_str()) != Some(i))
        .map(|(_, v)| row(v));
    insert_rows(tx, "record_versions", &VERSION_COLUMNS, history.collect()).await?;
    let current: Vec<&Version> = current.values().map(|i| &versions[*i]).collect();
    let mut cols = VERSION_COLUMNS.to_vec();
    cols.push("department");
    let rows = current.iter().map(|v| {
        let mut r = row(v);
        r.push(text(&source.department));
        r
    });
    insert_rows(tx, "records", &cols, rows.collect()).await?;
    let rows = current.iter().flat_map(|v| {
        v.record
            .fields
            .iter()
            .filter(|(_, x)| !x.is_empty() && x.chars().count() <= MAX_INDEXED_VALUE_CHARS)
            .map(|(f, x)| vec![text(&source.id), text(&v.key), text(f), text(x)])
    });
    let cols = ["source", "record_key", "field", "value"];
    insert_rows(tx, "record_fields", &cols, rows.collect()).await?;
    // In key order: each insert lands next to the previous one in the index B-tree.
    let mut rows: Vec<Vec<Cell>> = current
        .iter()
        .flat_map(|v| gram_rows(source, &v.key, &v.record.fields))
        .collect();
    rows.sort_by(|a, b| a.iter().cmp(b.iter()));
    insert_rows(tx, "ngrams", &GRAM_COLUMNS, rows).await
}

/// Moves the current versions of `keys` to history and removes their index rows.
async fn retire(
    tx: &mut SqlTx<'_>,
    source: &DataSource,
    keys: &[&str],
    before: &HashMap<String, Current>,
) -> Result<(), ProjectionError> {
    if keys.is_empty() {
        return Ok(());
    }
    let cols = VERSION_COLUMNS.join(", ");
    let statements = [
        format!(
            "INSERT INTO record_versions ({cols}) SELECT {cols} FROM records WHERE source = ? \
             AND record_key"
        ),
        "DELETE FROM records WHERE source = ? AND record_key".to_string(),
        "DELETE FROM record_fields WHERE source = ? AND record_key".to_string(),
    ];
    for prefix in &statements {
        for_keys(tx, prefix, &source.id, keys, false).await?;
    }
    // The old grams of each record, recomputed from its old fields (the index holds exactly
    // the grams of current records under the current source definition).
    for key in keys {
        let Some(old) = before.get(*key) else {
            continue;
        };
        let fields: BTreeMap<String, String> =
            serde_json::from_str(&old.fields).map_err(|e| ProjectionError::Diverged {
                height: 0,
                reason: format!("stored fields of {}/{key} do not parse: {e}", source.id),
            })?;
        let grams: BTreeSet<String> = record_ngrams(source, &fields)
            .into_iter()
            .map(|(_, g)| g)
            .collect();
        for chunk in grams
            .into_iter()
            .collect::<Vec<_>>()
            .chunks(BINDS_PER_STATEMENT)
        {
            let sql = format!(
                "DELETE FROM ngrams WHERE source = ? AND record_key = ? AND gram IN ({})",
                vec!["?"; chunk.len()].join(", ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(source.id.clone())
                .bind(key.to_string());
            for g in chunk {
                q = q.bind(g.clone());
            }
            q.execute(&mut **tx).await?;
        }
    }
    Ok(())
}
