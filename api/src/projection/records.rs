//! Projecting `SubmitRecords` batches: the current version of every record (`records`), the
//! superseded versions (`record_versions`), the indexed field values of current records
//! (`record_fields`, for combined queries) and their n-grams (`ngrams`, for fuzzy search).
//!
//! The batch is applied the way chaincode executes it, record by record: a key that repeats in
//! the batch sees its earlier version, identical content changes nothing, anything else becomes
//! the next version. The SQL is set-based — a handful of multi-row statements per batch — and
//! a record's old index rows are found by recomputing its old grams, so the index needs no
//! second B-tree keyed by record.
//!
//! Every record key has a row id ([`row_id`]) fixed by where the key first appears on chain:
//! it grows with the chain, so the tables clustered by it (`records`, `record_fields`) and each
//! gram's postings in `ngrams` (clustered by gram, then row id) take new rows at their ends. With
//! keys ordered by national ID, a batch's inserts landed all over every B-tree, and at 1.5
//! million residents each commit rewrote most of the index pages.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use govchain_chaincode::catalog::{DataSource, FieldDef, FieldType};
use govchain_chaincode::records::{Record, MAX_RECORDS_PER_BATCH};
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

/// The row id of the record at `record` in transaction `tx` of block `height`: the key keeps
/// the row id of its first appearance. Unique because a block holds at most
/// [`govchain_ledger::MAX_BLOCK_TXS`] (< 2^15) transactions and a batch at most
/// [`MAX_RECORDS_PER_BATCH`] (< 2^14) records.
pub(super) fn row_id(height: Height, tx: usize, record: usize) -> i64 {
    const _: () = assert!(govchain_ledger::MAX_BLOCK_TXS < 1 << 15);
    const _: () = assert!(MAX_RECORDS_PER_BATCH < 1 << 14);
    ((height.0 as i64) << 29) | ((tx as i64) << 14) | record as i64
}

/// The current version of a record key, as projected.
struct Current {
    rid: i64,
    version: i64,
    fields: String,
    raw: String,
}

/// One new record version, ready to write.
struct Version<'r> {
    rid: i64,
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

/// Runs `statement` over `keys` in chunks, its `KEYS` replaced by `(?, …)` for each chunk and
/// `source` bound first, and returns the rows (`fetch`) or nothing. `statement` is a constant of
/// this module.
async fn for_keys(
    tx: &mut SqlTx<'_>,
    statement: &str,
    source: &str,
    keys: &[&str],
    fetch: bool,
) -> Result<Vec<sqlx::any::AnyRow>, ProjectionError> {
    let mut out = Vec::new();
    for chunk in keys.chunks(BINDS_PER_STATEMENT) {
        let list = format!("({})", vec!["?"; chunk.len()].join(", "));
        let sql = statement.replacen("KEYS", &list, 1);
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

/// The `ngrams` rows of the record with row id `rid`.
pub(super) fn gram_rows(
    source: &DataSource,
    rid: i64,
    fields: &BTreeMap<String, String>,
) -> impl Iterator<Item = Vec<Cell>> {
    record_ngrams(source, fields)
        .into_iter()
        .map(move |(f, g)| vec![Cell::Text(g), Cell::Int(rid), Cell::Text(f)])
}

/// The columns of `ngrams`, in [`gram_rows`] order.
pub(super) const GRAM_COLUMNS: [&str; 3] = ["gram", "rid", "field"];

/// Projects one `SubmitRecords` batch of `source`, written by `tx_id`, transaction `tx_index`
/// of block `height`.
pub(super) async fn put_records(
    tx: &mut SqlTx<'_>,
    height: Height,
    tx_index: usize,
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
    let current = "SELECT record_key, rid, version, fields, raw FROM records WHERE source = ? \
                   AND record_key IN KEYS";
    let mut before: HashMap<String, Current> = HashMap::new();
    for row in for_keys(tx, current, &source.id, &keys, true).await? {
        let c = Current {
            rid: row.try_get(1)?,
            version: row.try_get(2)?,
            fields: row.try_get(3)?,
            raw: row.try_get(4)?,
        };
        before.insert(row.try_get(0)?, c);
    }
    // Chaincode's rule, in order: identical content changes nothing; else the next version.
    let mut latest: HashMap<&str, (i64, i64, &str, &str)> = before
        .iter()
        .map(|(k, c)| {
            let current = (c.rid, c.version, c.fields.as_str(), c.raw.as_str());
            (k.as_str(), current)
        })
        .collect();
    let mut versions: Vec<Version> = Vec::new();
    for (i, (v, fields, raw, record)) in valid.iter().enumerate() {
        let last = latest.get(v.key.as_str()).copied();
        if let Some((_, _, f, w)) = last {
            if f == fields && w == raw {
                continue;
            }
        }
        let (rid, version) = last.map_or((row_id(height, tx_index, i), 1), |(r, n, ..)| (r, n + 1));
        latest.insert(&v.key, (rid, version, fields, raw));
        versions.push(Version {
            rid,
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
    // In row-id order: appended at the end of the tables clustered by it.
    let mut current: Vec<&Version> = current.values().map(|i| &versions[*i]).collect();
    current.sort_by_key(|v| v.rid);
    let mut cols = VERSION_COLUMNS.to_vec();
    cols.extend(["department", "rid"]);
    let rows = current.iter().map(|v| {
        let mut r = row(v);
        r.extend([text(&source.department), Cell::Int(v.rid)]);
        r
    });
    insert_rows(tx, "records", &cols, rows.collect()).await?;
    let rows = current.iter().flat_map(|v| {
        v.record
            .fields
            .iter()
            .filter(|(_, x)| !x.is_empty() && x.chars().count() <= MAX_INDEXED_VALUE_CHARS)
            .map(|(f, x)| {
                let key = text(&v.key);
                vec![Cell::Int(v.rid), text(&source.id), key, text(f), text(x)]
            })
    });
    let cols = ["rid", "source", "record_key", "field", "value"];
    insert_rows(tx, "record_fields", &cols, rows.collect()).await?;
    // In key order (gram, row id): each insert lands next to the previous one.
    let mut rows: Vec<Vec<Cell>> = current
        .iter()
        .flat_map(|v| gram_rows(source, v.rid, &v.record.fields))
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
             AND record_key IN KEYS"
        ),
        "DELETE FROM record_fields WHERE rid IN (SELECT rid FROM records WHERE source = ? \
         AND record_key IN KEYS)"
            .to_string(),
        "DELETE FROM records WHERE source = ? AND record_key IN KEYS".to_string(),
    ];
    for statement in &statements {
        for_keys(tx, statement, &source.id, keys, false).await?;
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
                "DELETE FROM ngrams WHERE rid = ? AND gram IN ({})",
                vec!["?"; chunk.len()].join(", ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(old.rid);
            for g in chunk {
                q = q.bind(g.clone());
            }
            q.execute(&mut **tx).await?;
        }
    }
    Ok(())
}
