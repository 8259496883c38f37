//! The SQL projection of the chain (DESIGN §7; R-ARC-1…3, R-AUD-4).
//!
//! Every committed block is applied to SQL in ONE SQL transaction that also moves the cursor to
//! that block, so after a crash the projection is exactly at some block and resumes at the next.
//! The projection is derived from blocks alone (the genesis data sources plus every transaction),
//! mirroring chaincode's record semantics: a record key's newer content becomes the next
//! version, an identical re-delivery changes nothing, and history is kept (`records` holds the
//! current version of each key, `record_versions` every superseded one). Dropping the
//! database and replaying from genesis rebuilds it exactly; [`Projection::digest`] compares two.
//!
//! One code path serves SQLite (a file, the default) and MySQL/MariaDB through sqlx's `Any`
//! driver; only column types and the table suffix differ. Every value is bound, never spliced.

use futures::TryStreamExt;
use govchain_chaincode::catalog::DataSource;
use govchain_chaincode::TxKind;
use govchain_ledger::hash::Domain;
use govchain_ledger::{Block, Hash, Height, SignedTx, Store};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Connection, Row};

/// Longest field value (in characters) kept in `record_fields` for combined queries (an index
/// column: MySQL's utf8mb4 index limit); longer free text is found by fuzzy search.
pub const MAX_INDEXED_VALUE_CHARS: usize = 191;

/// Longest field value (in characters) that gets n-grams for fuzzy search.
pub const MAX_NGRAM_VALUE_CHARS: usize = 64;

/// SQLite page cache per connection, in KiB: the n-gram index of a million persons is
/// gigabytes, and inserts into its B-tree touch pages all over it.
const SQLITE_CACHE_KIB: u64 = 256 * 1024;

/// SQLite page cache of the connection that applies several blocks at once (catching up), in
/// KiB. Each index B-tree of a million residents spans gigabytes and one batch of inserts
/// touches most of its pages: with the dirty pages in memory until the commit, each page is
/// written once per transaction (with 256 MiB it spilled and was written several times).
const SQLITE_CATCH_UP_CACHE_KIB: u64 = 6 * 1024 * 1024;

/// Version of the tables' layout; a database holding another is rebuilt from genesis.
/// 4: audit entries list the persons a read returned (`audit.persons`, `audit_persons`).
const SCHEMA_VERSION: i64 = 4;

/// Most blocks applied in one SQL transaction while catching up.
pub const MAX_BLOCKS_PER_SQL_TX: usize = 256;
/// Most chain transactions applied in one SQL transaction while catching up. At 1.5 million
/// residents a transaction of 64 (about 17,000 records) rewrote about 1.3 GB of index pages
/// (the whole n-gram B-tree): the write per record falls with the records per transaction.
pub const MAX_TXS_PER_SQL_TX: usize = 256;

mod audit;
mod catalog;
mod grams;
mod records;

pub use grams::{ngrams, normalize, ASCII_GRAM_CHARS};

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
    /// A server variable name that is not a lower-case identifier.
    #[error("{0:?} is not a server variable name")]
    BadName(String),
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
            ("rid", 'i'),
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
            ("rid", 'i'),
            ("source", 't'),
            ("record_key", 't'),
            ("field", 't'),
            ("value", 't'),
        ],
        "rid, field",
    ),
    (
        "ngrams",
        &[("gram", 't'), ("rid", 'i'), ("field", 't')],
        "gram, rid, field",
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
            (Backend::MySql, mysql_url(url))
        } else {
            return Err(ProjectionError::UnsupportedUrl(url.to_string()));
        };
        let sqlite = backend == Backend::Sqlite;
        let pool = AnyPoolOptions::new()
            .max_connections(if sqlite { 8 } else { 16 })
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        // WAL: readers do not block the projector. NORMAL sync: a power cut
                        // may lose the last blocks projected, never consistency; the cursor
                        // says where to resume. The log file is cut back after a checkpoint
                        // (a catch-up transaction grows it to gigabytes).
                        let cache = format!("PRAGMA cache_size = -{SQLITE_CACHE_KIB}");
                        // Memory-mapped reads: every commit of the projector (a block) makes
                        // each reader drop its page cache (WAL mode); mapped pages are then
                        // found again in the OS cache without copying them (the bundled
                        // SQLite maps up to 2 GiB of the file).
                        let pragmas = [
                            "PRAGMA journal_mode = WAL",
                            "PRAGMA synchronous = NORMAL",
                            "PRAGMA journal_size_limit = 67108864",
                            "PRAGMA mmap_size = 17179869184",
                        ];
                        for pragma in pragmas.into_iter().map(String::from).chain([cache]) {
                            sqlx::query(sqlx::AssertSqlSafe(pragma))
                                .execute(&mut *conn)
                                .await?;
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

    /// A connection to the database server of `url` without the projection's tables (tests and
    /// benchmarks create and drop databases through it).
    pub async fn server(url: &str) -> Result<AnyPool, ProjectionError> {
        sqlx::any::install_default_drivers();
        Ok(AnyPoolOptions::new()
            .max_connections(2)
            .connect(&mysql_url(url))
            .await?)
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A server variable (`@@name`) as text; `name` must be a lower-case identifier.
    pub async fn server_variable(&self, name: &str) -> Result<String, ProjectionError> {
        if !name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            return Err(ProjectionError::BadName(name.to_string()));
        }
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT CAST(@@{name} AS CHAR)"
        )))
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get::<String, _>(0)?)
    }

    /// The connection pool (for queries).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Creates the tables. A database holding another schema version of the projection (or one
    /// from before versions were recorded) has its projection tables dropped first: the
    /// projection is derived from the chain, and the node rebuilds it from genesis.
    async fn drop_tables(&self) -> Result<(), ProjectionError> {
        let tables = TABLES
            .iter()
            .chain(catalog::TABLES)
            .chain(audit::TABLES)
            .map(|t| t.0);
        for table in tables.chain(["projection_schema"]) {
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE IF EXISTS {table}")))
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Empties the database of every projection table, for a rebuild from genesis (the
    /// auditor's `verify --rebuild-projection`).
    pub async fn reset(&self) -> Result<(), ProjectionError> {
        self.drop_tables().await?;
        self.migrate().await
    }

    async fn migrate(&self) -> Result<(), ProjectionError> {
        let version = sqlx::query("SELECT version FROM projection_schema WHERE id = 1")
            .fetch_optional(&self.pool)
            .await
            .ok()
            .flatten()
            .map(|r| r.try_get::<i64, _>(0))
            .transpose()?;
        let projected = sqlx::query("SELECT 1 FROM records LIMIT 1")
            .fetch_optional(&self.pool)
            .await
            .is_ok();
        if projected && version != Some(SCHEMA_VERSION) {
            self.drop_tables().await?;
        }
        // Index tables are clustered by their key: SQLite `WITHOUT ROWID` (InnoDB always is).
        // `records` is clustered by its row id (SQLite: the rowid itself).
        let (long, suffix, clustered, rid_key) = match self.backend {
            Backend::Sqlite => ("TEXT", "", " WITHOUT ROWID", "INTEGER NOT NULL PRIMARY KEY"),
            Backend::MySql => (
                "LONGTEXT",
                " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
                " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
                "BIGINT NOT NULL PRIMARY KEY",
            ),
        };
        let ddl = [
            format!(
                "CREATE TABLE IF NOT EXISTS projection_schema (id INTEGER NOT NULL PRIMARY KEY, \
                 version BIGINT NOT NULL){suffix}"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS projection_cursor (id INTEGER NOT NULL PRIMARY KEY, \
                 height BIGINT NOT NULL, block_hash VARCHAR(64) NOT NULL){suffix}"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS sources (id VARCHAR(64) NOT NULL PRIMARY KEY, \
                 department VARCHAR(16) NOT NULL, definition {long} NOT NULL){suffix}"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS records (rid {rid_key}, source VARCHAR(64) NOT NULL, \
                 record_key VARCHAR(191) NOT NULL, version BIGINT NOT NULL, \
                 person_id VARCHAR(18), department VARCHAR(16) NOT NULL, \
                 tx_id VARCHAR(64) NOT NULL, height BIGINT NOT NULL, fields {long} NOT NULL, \
                 raw {long} NOT NULL){suffix}"
            ),
            "CREATE UNIQUE INDEX IF NOT EXISTS records_key ON records (source, record_key)"
                .to_string(),
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
                 rid BIGINT NOT NULL, field VARCHAR(64) NOT NULL, \
                 PRIMARY KEY (gram, rid, field)){clustered}"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS record_fields (rid BIGINT NOT NULL, \
                 source VARCHAR(64) NOT NULL, record_key VARCHAR(191) NOT NULL, \
                 field VARCHAR(64) NOT NULL, value VARCHAR({MAX_INDEXED_VALUE_CHARS}) NOT NULL, \
                 PRIMARY KEY (rid, field)){clustered}"
            ),
            "CREATE INDEX IF NOT EXISTS record_fields_value ON record_fields \
             (source, field, value, record_key)"
                .to_string(),
        ];
        for stmt in ddl {
            sqlx::query(sqlx::AssertSqlSafe(stmt))
                .execute(&self.pool)
                .await?;
        }
        catalog::migrate(&self.pool, long, suffix).await?;
        audit::migrate(&self.pool, long, suffix).await?;
        let insert = match self.backend {
            Backend::Sqlite => "INSERT OR IGNORE",
            Backend::MySql => "INSERT IGNORE",
        };
        let sql = format!("{insert} INTO projection_schema (id, version) VALUES (1, ?)");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(SCHEMA_VERSION)
            .execute(&self.pool)
            .await?;
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
        self.apply_blocks(std::slice::from_ref(block)).await
    }

    /// Applies consecutive blocks, the first one after the cursor, with the cursor move to
    /// the last, in one SQL transaction (catching up, fewer and larger transactions write
    /// each index page once instead of once per block).
    pub async fn apply_blocks(&self, blocks: &[Block]) -> Result<(), ProjectionError> {
        let Some(last) = blocks.last() else {
            return Ok(());
        };
        let mut at = self.cursor().await?.map_or(0, |(h, _)| h.0);
        let mut conn = self.pool.acquire().await?;
        let big_cache = self.backend == Backend::Sqlite && blocks.len() > 1;
        if big_cache {
            set_sqlite_cache(&mut conn, SQLITE_CATCH_UP_CACHE_KIB).await?;
        }
        let mut tx = conn.begin().await?;
        for block in blocks {
            let height = block.header.height;
            if height.0 != at + 1 {
                return Err(ProjectionError::NotNext { at, got: height.0 });
            }
            for (i, t) in block.txs.iter().enumerate() {
                apply_tx(&mut tx, height, i, t).await?;
            }
            at = height.0;
        }
        sqlx::query("UPDATE projection_cursor SET height = ?, block_hash = ? WHERE id = 1")
            .bind(at as i64)
            .bind(last.hash().to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        if big_cache {
            set_sqlite_cache(&mut conn, SQLITE_CACHE_KIB).await?;
        }
        Ok(())
    }

    /// Applies the stored blocks after the cursor (at most [`MAX_BLOCKS_PER_SQL_TX`], or
    /// [`MAX_TXS_PER_SQL_TX`] transactions) in one SQL transaction, if the store has any;
    /// returns the new cursor height.
    pub async fn apply_next(&self, store: &Store) -> Result<Option<Height>, ProjectionError> {
        let mut next = self.cursor().await?.map_or(Height(0), |(h, _)| h).next();
        let (mut blocks, mut txs) = (Vec::new(), 0);
        while blocks.len() < MAX_BLOCKS_PER_SQL_TX && txs < MAX_TXS_PER_SQL_TX {
            let Some(block) = store.block(next)? else {
                break;
            };
            txs += block.txs.len();
            blocks.push(block);
            next = next.next();
        }
        let Some(last) = blocks.last().map(|b| b.header.height) else {
            return Ok(None);
        };
        self.apply_blocks(&blocks).await?;
        Ok(Some(last))
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
        for (table, cols, order) in TABLES.iter().chain(catalog::TABLES).chain(audit::TABLES) {
            let names: Vec<&str> = cols.iter().map(|(n, _)| *n).collect();
            let sql = format!("SELECT {} FROM {table} ORDER BY {order}", names.join(", "));
            // Streamed: at 1.5 million residents `ngrams` holds over 70 million rows.
            let mut rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch(&self.pool);
            h.update(table.as_bytes());
            let mut count = 0u64;
            while let Some(r) = rows.try_next().await? {
                for (i, (_, ty)) in cols.iter().enumerate() {
                    digest_value(&mut h, &r, i, *ty)?;
                }
                count += 1;
            }
            h.update(&count.to_le_bytes());
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
    let old = sqlx::query("SELECT definition FROM sources WHERE id = ?")
        .bind(s.id.clone())
        .fetch_optional(&mut **tx)
        .await?;
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
    if let Some(old) = old {
        let old: DataSource = serde_json::from_str(&old.try_get::<String, _>(0)?).map_err(|e| {
            ProjectionError::Diverged {
                height: 0,
                reason: format!("stored definition of source {}: {e}", s.id),
            }
        })?;
        let searchable = |d: &DataSource| -> Vec<String> {
            d.fields
                .iter()
                .filter(|f| records::is_searchable(f))
                .map(|f| f.name.clone())
                .collect()
        };
        if searchable(&old) != searchable(s) {
            reindex_source(tx, s).await?;
        }
    }
    Ok(())
}

/// Rebuilds the n-grams of every current record of `s` after its searchable fields changed
/// (rare: a source redefinition; it scans the index once).
async fn reindex_source(tx: &mut SqlTx<'_>, s: &DataSource) -> Result<(), ProjectionError> {
    sqlx::query("DELETE FROM ngrams WHERE rid IN (SELECT rid FROM records WHERE source = ?)")
        .bind(s.id.clone())
        .execute(&mut **tx)
        .await?;
    let rows = sqlx::query("SELECT record_key, fields, rid FROM records WHERE source = ?")
        .bind(s.id.clone())
        .fetch_all(&mut **tx)
        .await?;
    let mut grams = Vec::new();
    for r in &rows {
        let key: String = r.try_get(0)?;
        let fields: String = r.try_get(1)?;
        let fields = serde_json::from_str(&fields).map_err(|e| ProjectionError::Diverged {
            height: 0,
            reason: format!("stored fields of {}/{key}: {e}", s.id),
        })?;
        grams.extend(records::gram_rows(s, r.try_get(2)?, &fields));
    }
    records::insert_rows(tx, "ngrams", &records::GRAM_COLUMNS, grams).await
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

async fn apply_tx(
    tx: &mut SqlTx<'_>,
    height: Height,
    index: usize,
    t: &SignedTx,
) -> Result<(), ProjectionError> {
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
            let id = t.id().to_string();
            records::put_records(tx, height, index, &source, &id, &records).await
        }
        k @ (TxKind::PutCatalogEntry { .. }
        | TxKind::DeleteCatalogEntry(_)
        | TxKind::PutMaterial { .. }
        | TxKind::DeleteMaterial { .. }) => catalog::apply(tx, height, t, k).await,
        TxKind::AppendAudit { entries } => audit::apply(tx, height, index, t, &entries).await,
        // Governance, users, grants, consents and evidence live in chain state only.
        TxKind::RegisterDepartment(_)
        | TxKind::ProposeValidatorChange(_)
        | TxKind::ApproveValidatorChange { .. }
        | TxKind::ReportEquivocation(_)
        | TxKind::PutUsers { .. }
        | TxKind::DeleteUser { .. }
        | TxKind::PutGrant(_)
        | TxKind::RevokeGrant { .. }
        | TxKind::RecordConsent(_) => Ok(()),
    }
}

/// Sets the page cache of one SQLite connection (shrinking it frees the pages).
async fn set_sqlite_cache(
    conn: &mut sqlx::pool::PoolConnection<sqlx::Any>,
    kib: u64,
) -> Result<(), ProjectionError> {
    let pragma = format!("PRAGMA cache_size = -{kib}");
    sqlx::query(sqlx::AssertSqlSafe(pragma))
        .execute(&mut **conn)
        .await?;
    Ok(())
}

/// `url` with a `mariadb://` scheme spelled as sqlx's `mysql://`.
fn mysql_url(url: &str) -> String {
    url.replacen("mariadb://", "mysql://", 1)
}

#[cfg(test)]
mod tests;
