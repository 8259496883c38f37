//! The SQL projection of the chain (DESIGN §7; R-ARC-1…3, R-AUD-4).
//!
//! Every committed block is applied to SQL in ONE SQL transaction that also moves the cursor to
//! that block, so after a crash the projection is exactly at some block and resumes at the next.
//! The projection is derived from blocks alone (the genesis data sources plus every transaction),
//! mirroring chaincode's record semantics: a record key's newer content becomes the next
//! version, an identical re-delivery changes nothing, and history is kept. Dropping the
//! database and replaying from genesis rebuilds it exactly; [`Projection::digest`] compares two.
//!
//! One code path serves SQLite (a file, the default) and MySQL/MariaDB through sqlx's `Any`
//! driver; only column types and the table suffix differ. Every value is bound, never spliced.

use std::collections::BTreeSet;

use govchain_chaincode::catalog::{DataSource, FieldType};
use govchain_chaincode::records::Record;
use govchain_chaincode::TxKind;
use govchain_ledger::hash::Domain;
use govchain_ledger::{Block, Hash, Height, SignedTx, Store};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

/// Longest field value (in characters) kept in `record_fields` for combined queries (an index
/// column: MySQL's utf8mb4 index limit); longer free text is found by fuzzy search.
pub const MAX_INDEXED_VALUE_CHARS: usize = 191;

/// Longest field value (in characters) that gets n-grams for fuzzy search.
pub const MAX_NGRAM_VALUE_CHARS: usize = 64;

/// Most bound values in one statement (SQLite allows 32,766; MySQL 65,535).
const ROWS_PER_STATEMENT: usize = 900;

/// Why the projection failed.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// The database refused or failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] govchain_ledger::StoreError),
    /// The URL names no supported backend.
    #[error("unsupported database URL {0:?}: use sqlite://FILE or mysql://USER@HOST:PORT/DB")]
    UnsupportedUrl(String),
    /// A block is not the one after the cursor.
    #[error("projection is at height {at}; block {got} does not follow")]
    NotNext {
        /// The cursor.
        at: u64,
        /// The block offered.
        got: u64,
    },
    /// The projection disagrees with the chain (a block chaincode accepted does not project).
    #[error("height {height}: {reason}")]
    Diverged {
        /// The block.
        height: u64,
        /// What is wrong.
        reason: String,
    },
}

/// Which SQL dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite.
    Sqlite,
    /// MySQL or MariaDB.
    MySql,
}

/// A connected, migrated projection database.
#[derive(Debug, Clone)]
pub struct Projection {
    pool: AnyPool,
    backend: Backend,
}

/// A table: name, columns with their kinds, key order.
type Table = (&'static str, &'static [(&'static str, char)], &'static str);

/// The tables, in digest order, with their columns (`i` = integer, `t` = text, `n` = nullable
/// text) and their key order.
const TABLES: &[Table] = &[
    (
        "projection_cursor",
        &[("id", 'i'), ("height", 'i'), ("block_hash", 't')],
        "id",
    ),
    (
        "sources",
        &[("id", 't'), ("department", 't'), ("definition", 't')],
        "id",
    ),
    (
        "records",
        &[
            ("source", 't'),
            ("record_key", 't'),
            ("version", 'i'),
            ("person_id", 'n'),
            ("department", 't'),
            ("tx_id", 't'),
            ("height", 'i'),
            ("fields", 't'),
            ("raw", 't'),
        ],
        "source, record_key",
    ),
    (
        "record_versions",
        &[
            ("source", 't'),
            ("record_key", 't'),
            ("version", 'i'),
            ("person_id", 'n'),
            ("tx_id", 't'),
            ("height", 'i'),
            ("fields", 't'),
            ("raw", 't'),
        ],
        "source, record_key, version",
    ),
    (
        "record_fields",
        &[
            ("source", 't'),
            ("record_key", 't'),
            ("field", 't'),
            ("value", 't'),
        ],
        "source, record_key, field",
    ),
    (
        "ngrams",
        &[
            ("gram", 't'),
            ("source", 't'),
            ("record_key", 't'),
            ("field", 't'),
        ],
        "gram, source, record_key, field",
    ),
];

impl Projection {
    /// Connects to `url` (`sqlite://FILE` creates the file; `mysql://…`) and creates the tables
    /// that are missing.
    pub async fn open(url: &str) -> Result<Self, ProjectionError> {
        sqlx::any::install_default_drivers();
        let (backend, url) = if let Some(path) = url.strip_prefix("sqlite://") {
            let mode = if path.contains('?') { "" } else { "?mode=rwc" };
            (Backend::Sqlite, format!("sqlite://{path}{mode}"))
        } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            (
                Backend::MySql,
                url.replacen("mariadb://", "mysql://", 1).to_string(),
            )
        } else {
            return Err(ProjectionError::UnsupportedUrl(url.to_string()));
        };
        let sqlite = backend == Backend::Sqlite;
        let pool = AnyPoolOptions::new()
            .max_connections(if sqlite { 4 } else { 16 })
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        // WAL: readers do not block the projector. NORMAL sync: a power cut
                        // may lose the last blocks projected, never consistency; the cursor
                        // says where to resume.
                        for pragma in ["PRAGMA journal_mode = WAL", "PRAGMA synchronous = NORMAL"] {
                            sqlx::query(pragma).execute(&mut *conn).await?;
                        }
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        let p = Self { pool, backend };
        p.migrate().await?;
        Ok(p)
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The connection pool (for queries).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    async fn migrate(&self) -> Result<(), ProjectionError> {
        let (long, suffix) = match self.backend {
            Backend::Sqlite => ("TEXT", ""),
            Backend::MySql => (
                "LONGTEXT",
                " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
            ),
        };
        let ddl = [
            format!(
                "CREATE TABLE IF NOT EXISTS projection_cursor (id INTEGER NOT NULL PRIMARY KEY, \
                 height BIGINT NOT NULL, block_hash VARCHAR(64) NOT NULL){suffix}"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS sources (id VARCHAR(64) NOT NULL PRIMARY KEY, \
                 department VARCHAR(16) NOT NULL, definition {long} NOT NULL){suffix}"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS records (source VARCHAR(64) NOT NULL, \
                 record_key VARCHAR(191) NOT NULL, version BIGINT NOT NULL, \
                 person_id VARCHAR(18), department VARCHAR(16) NOT NULL, \
                 tx_id VARCHAR(64) NOT NULL, height BIGINT NOT NULL, fields {long} NOT NULL, \
                 raw {long} NOT NULL, PRIMARY KEY (source, record_key)){suffix}"
            ),
            "CREATE INDEX IF NOT EXISTS records_person ON records (person_id)".to_string(),
            format!(
                "CREATE TABLE IF NOT EXISTS record_versions (source VARCHAR(64) NOT NULL, \
                 record_key VARCHAR(191) NOT NULL, version BIGINT NOT NULL, \
                 person_id VARCHAR(18), tx_id VARCHAR(64) NOT NULL, height BIGINT NOT NULL, \
                 fields {long} NOT NULL, raw {long} NOT NULL, \
                 PRIMARY KEY (source, record_key, version)){suffix}"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS ngrams (gram VARCHAR(32) NOT NULL, \
                 source VARCHAR(64) NOT NULL, record_key VARCHAR(191) NOT NULL, \
                 field VARCHAR(64) NOT NULL, PRIMARY KEY (gram, source, record_key, field)){suffix}"
            ),
            "CREATE INDEX IF NOT EXISTS ngrams_record ON ngrams (source, record_key)".to_string(),
            format!(
                "CREATE TABLE IF NOT EXISTS record_fields (source VARCHAR(64) NOT NULL, \
                 record_key VARCHAR(191) NOT NULL, field VARCHAR(64) NOT NULL, \
                 value VARCHAR({MAX_INDEXED_VALUE_CHARS}) NOT NULL, \
                 PRIMARY KEY (source, record_key, field)){suffix}"
            ),
            "CREATE INDEX IF NOT EXISTS record_fields_value ON record_fields \
             (source, field, value)"
                .to_string(),
        ];
        for stmt in ddl {
            sqlx::query(sqlx::AssertSqlSafe(stmt))
                .execute(&self.pool)
                .await?;
        }
        catalog::migrate(&self.pool, long, suffix).await?;
        Ok(())
    }

    /// The last projected block: (height, block hash); `None` before [`Projection::init`].
    pub async fn cursor(&self) -> Result<Option<(Height, Hash)>, ProjectionError> {
        let row = sqlx::query("SELECT height, block_hash FROM projection_cursor WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            None => None,
            Some(r) => {
                let h: i64 = r.try_get(0)?;
                let hash: String = r.try_get(1)?;
                let hash = Hash::from_hex(&hash).map_err(|_| ProjectionError::Diverged {
                    height: h as u64,
                    reason: format!("cursor block hash {hash:?} is not hex"),
                })?;
                Some((Height(h as u64), hash))
            }
        })
    }

    /// Projects the genesis state (its data sources) at height 0, once.
    pub async fn init(
        &self,
        genesis_hash: Hash,
        sources: &[DataSource],
    ) -> Result<(), ProjectionError> {
        if self.cursor().await?.is_some() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for s in sources {
            put_source(&mut tx, s).await?;
        }
        sqlx::query("INSERT INTO projection_cursor (id, height, block_hash) VALUES (1, 0, ?)")
            .bind(genesis_hash.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Applies the block after the cursor, with the cursor move, in one SQL transaction.
    pub async fn apply_block(&self, block: &Block) -> Result<(), ProjectionError> {
        let height = block.header.height;
        let at = self.cursor().await?.map_or(0, |(h, _)| h.0);
        if height.0 != at + 1 {
            return Err(ProjectionError::NotNext { at, got: height.0 });
        }
        let mut tx = self.pool.begin().await?;
        for t in &block.txs {
            apply_tx(&mut tx, height, t).await?;
        }
        sqlx::query("UPDATE projection_cursor SET height = ?, block_hash = ? WHERE id = 1")
            .bind(height.0 as i64)
            .bind(block.hash().to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Applies the stored block after the cursor, if the store has it; returns its height.
    pub async fn apply_next(&self, store: &Store) -> Result<Option<Height>, ProjectionError> {
        let next = self.cursor().await?.map_or(Height(0), |(h, _)| h).next();
        match store.block(next)? {
            None => Ok(None),
            Some(block) => {
                self.apply_block(&block).await?;
                Ok(Some(next))
            }
        }
    }

    /// Applies every stored block after the cursor up to the store's tip; returns the new
    /// cursor height.
    pub async fn catch_up(&self, store: &Store) -> Result<Height, ProjectionError> {
        let tip = store.tip()?.map_or(Height(0), |t| t.height);
        let mut at = self.cursor().await?.map_or(Height(0), |(h, _)| h);
        while at < tip {
            at = self
                .apply_next(store)
                .await?
                .ok_or_else(|| ProjectionError::Diverged {
                    height: at.next().0,
                    reason: "block missing from the store".into(),
                })?;
        }
        Ok(at)
    }

    /// A digest of every projected row, in key order: equal for two databases exactly when
    /// their content is equal.
    pub async fn digest(&self) -> Result<Hash, ProjectionError> {
        let mut h = Domain::Projection.hasher();
        for (table, cols, order) in TABLES.iter().chain(catalog::TABLES) {
            let names: Vec<&str> = cols.iter().map(|(n, _)| *n).collect();
            let sql = format!("SELECT {} FROM {table} ORDER BY {order}", names.join(", "));
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_all(&self.pool)
                .await?;
            h.update(table.as_bytes());
            h.update(&(rows.len() as u64).to_le_bytes());
            for r in &rows {
                for (i, (_, ty)) in cols.iter().enumerate() {
                    digest_value(&mut h, r, i, *ty)?;
                }
            }
        }
        Ok(Hash(*h.finalize().as_bytes()))
    }
}

fn digest_value(
    h: &mut blake3::Hasher,
    r: &AnyRow,
    i: usize,
    ty: char,
) -> Result<(), ProjectionError> {
    match ty {
        'i' => {
            let v: i64 = r.try_get(i)?;
            h.update(b"i");
            h.update(&v.to_le_bytes());
        }
        'n' => match r.try_get::<Option<String>, _>(i)? {
            None => {
                h.update(b"n");
            }
            Some(s) => {
                h.update(b"t");
                h.update(&(s.len() as u64).to_le_bytes());
                h.update(s.as_bytes());
            }
        },
        _ => {
            let s: String = r.try_get(i)?;
            h.update(b"t");
            h.update(&(s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        }
    }
    Ok(())
}

type SqlTx<'c> = sqlx::Transaction<'c, sqlx::Any>;

async fn put_source(tx: &mut SqlTx<'_>, s: &DataSource) -> Result<(), ProjectionError> {
    let def = serde_json::to_string(s).map_err(|e| ProjectionError::Diverged {
        height: 0,
        reason: format!("source {} does not serialize: {e}", s.id),
    })?;
    sqlx::query("DELETE FROM sources WHERE id = ?")
        .bind(s.id.clone())
        .execute(&mut **tx)
        .await?;
    sqlx::query("INSERT INTO sources (id, department, definition) VALUES (?, ?, ?)")
        .bind(s.id.clone())
        .bind(s.department.clone())
        .bind(def)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn get_source(
    tx: &mut SqlTx<'_>,
    height: Height,
    id: &str,
) -> Result<DataSource, ProjectionError> {
    let diverged = |reason: String| ProjectionError::Diverged {
        height: height.0,
        reason,
    };
    let row = sqlx::query("SELECT definition FROM sources WHERE id = ?")
        .bind(id.to_string())
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| diverged(format!("records of unknown source {id}")))?;
    let def: String = row.try_get(0)?;
    serde_json::from_str(&def).map_err(|e| diverged(format!("source {id} definition: {e}")))
}

async fn apply_tx(tx: &mut SqlTx<'_>, height: Height, t: &SignedTx) -> Result<(), ProjectionError> {
    let Ok(kind) = TxKind::decode(&t.body.payload) else {
        return Err(ProjectionError::Diverged {
            height: height.0,
            reason: format!("transaction {} does not decode", t.id()),
        });
    };
    match kind {
        TxKind::RegisterSource(s) => put_source(tx, &s).await,
        TxKind::SubmitRecords { source, records } => {
            let source = get_source(tx, height, &source).await?;
            put_records(tx, height, &source, &t.id().to_string(), &records).await
        }
        k @ (TxKind::PutCatalogEntry { .. }
        | TxKind::DeleteCatalogEntry(_)
        | TxKind::PutMaterial { .. }
        | TxKind::DeleteMaterial { .. }) => catalog::apply(tx, height, t, k).await,
        // Governance and evidence live in chain state only.
        TxKind::RegisterDepartment(_)
        | TxKind::ProposeValidatorChange(_)
        | TxKind::ApproveValidatorChange { .. }
        | TxKind::ReportEquivocation(_) => Ok(()),
    }
}

/// One new record version, ready to write.
struct Version {
    key: String,
    version: i64,
    person: Option<String>,
    fields: String,
    raw: String,
    grams: BTreeSet<(String, String)>,
    /// (field, value) of every non-empty value short enough to index.
    values: Vec<(String, String)>,
}

/// `(?, ?, …)` groups for a multi-row statement: built from fixed fragments only.
fn placeholders(rows: usize, cols: usize) -> String {
    let group = format!("({})", vec!["?"; cols].join(", "));
    vec![group; rows].join(", ")
}

/// Projects a batch of records the way chaincode executes it, record by record (a key that
/// repeats within the batch sees its earlier version), with a handful of set-based statements.
async fn put_records(
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
    // The latest version of every key in the batch, from SQL.
    let keys: BTreeSet<&str> = valid.iter().map(|(v, ..)| v.key.as_str()).collect();
    let keys: Vec<&str> = keys.into_iter().collect();
    let mut latest: std::collections::HashMap<String, (i64, String, String)> =
        std::collections::HashMap::new();
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "SELECT record_key, version, fields, raw FROM records WHERE source = ? AND \
             record_key IN ({})",
            vec!["?"; chunk.len()].join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(source.id.clone());
        for k in chunk {
            q = q.bind(k.to_string());
        }
        for row in q.fetch_all(&mut **tx).await? {
            latest.insert(
                row.try_get(0)?,
                (row.try_get(1)?, row.try_get(2)?, row.try_get(3)?),
            );
        }
    }
    // Chaincode's rule, in order: identical content changes nothing; else the next version.
    let mut versions: Vec<Version> = Vec::new();
    for (v, fields, raw, r) in valid {
        if let Some((_, f, w)) = latest.get(&v.key) {
            if *f == fields && *w == raw {
                continue;
            }
        }
        let version = latest.get(&v.key).map_or(1, |(n, ..)| n + 1);
        latest.insert(v.key.clone(), (version, fields.clone(), raw.clone()));
        versions.push(Version {
            key: v.key,
            version,
            person: v.person.map(|p| p.as_str().to_string()),
            fields,
            raw,
            grams: record_ngrams(source, r),
            values: r
                .fields
                .iter()
                .filter(|(_, x)| !x.is_empty() && x.chars().count() <= MAX_INDEXED_VALUE_CHARS)
                .map(|(f, x)| (f.clone(), x.clone()))
                .collect(),
        });
    }
    if versions.is_empty() {
        return Ok(());
    }
    // Every version goes to history; the last one of each key is current.
    let mut current: std::collections::BTreeMap<&str, &Version> = Default::default();
    for v in &versions {
        current.insert(v.key.as_str(), v);
    }
    let changed: Vec<&str> = current.keys().copied().collect();
    for chunk in changed.chunks(ROWS_PER_STATEMENT) {
        for table in ["records", "ngrams", "record_fields"] {
            let sql = format!(
                "DELETE FROM {table} WHERE source = ? AND record_key IN ({})",
                vec!["?"; chunk.len()].join(", ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(source.id.clone());
            for k in chunk {
                q = q.bind(k.to_string());
            }
            q.execute(&mut **tx).await?;
        }
    }
    let current: Vec<&Version> = current.into_values().collect();
    let text = |s: &str| Cell::Text(s.to_string());
    // A version's row; the current-record table also names the owner department.
    let row = |v: &Version, department: bool| {
        let mut r = vec![
            text(&source.id),
            text(&v.key),
            Cell::Int(v.version),
            Cell::OptText(v.person.clone()),
            text(tx_id),
            Cell::Int(height.0 as i64),
            text(&v.fields),
            text(&v.raw),
        ];
        if department {
            r.push(text(&source.department));
        }
        r
    };
    let cols = [
        "source",
        "record_key",
        "version",
        "person_id",
        "tx_id",
        "height",
        "fields",
        "raw",
        "department",
    ];
    let rows = current.iter().map(|v| row(v, true)).collect();
    insert_rows(tx, "records", &cols, rows).await?;
    let rows = versions.iter().map(|v| row(v, false)).collect();
    insert_rows(tx, "record_versions", &cols[..8], rows).await?;
    let rows = current.iter().flat_map(|v| {
        v.values
            .iter()
            .map(|(f, x)| vec![text(&source.id), text(&v.key), text(f), text(x)])
    });
    let cols = ["source", "record_key", "field", "value"];
    insert_rows(tx, "record_fields", &cols, rows.collect()).await?;
    let rows = current.iter().flat_map(|v| {
        v.grams
            .iter()
            .map(|(f, g)| vec![text(g), text(&source.id), text(&v.key), text(f)])
    });
    let cols = ["gram", "source", "record_key", "field"];
    insert_rows(tx, "ngrams", &cols, rows.collect()).await
}

/// A bound value.
enum Cell {
    Text(String),
    OptText(Option<String>),
    Int(i64),
}

/// Multi-row INSERTs of `rows` into `table` (names are this module's constants; every value is
/// bound), as few statements as the bound-value limit allows.
async fn insert_rows(
    tx: &mut SqlTx<'_>,
    table: &str,
    cols: &[&str],
    rows: Vec<Vec<Cell>>,
) -> Result<(), ProjectionError> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT / cols.len()) {
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

/// The n-grams of a value for fuzzy search: its character bigrams, lower-cased (a one-character
/// value is its own gram). Chinese names and addresses, IDs and phone numbers all work the same
/// way: a query of two or more characters matches a record holding all its bigrams.
pub fn ngrams(value: &str) -> BTreeSet<String> {
    let chars: Vec<char> = value
        .chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect();
    match chars.len() {
        0 => BTreeSet::new(),
        1 => BTreeSet::from([chars[0].to_string()]),
        _ => chars.windows(2).map(|w| w.iter().collect()).collect(),
    }
}

/// (field, gram) pairs of a record's searchable fields: free text, national IDs and phones of
/// at most [`MAX_NGRAM_VALUE_CHARS`] characters.
fn record_ngrams(source: &DataSource, r: &Record) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for f in &source.fields {
        if !matches!(
            f.ty,
            FieldType::Text | FieldType::PersonId | FieldType::Phone
        ) {
            continue;
        }
        let Some(v) = r.fields.get(&f.name) else {
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

mod catalog;
#[cfg(test)]
mod tests;
