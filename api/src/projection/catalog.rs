//! The business catalog in the SQL projection (R-ARC-4, R-ARC-5, R-QRY-2…5, R-AUD-4).
//!
//! Tables (created by [`migrate`], covered by [`super::Projection::digest`] through [`TABLES`]):
//! - `matter_types` (id, department, definition: the matter type's JSON WITHOUT its materials),
//! - `materials` (matter, id, ordinal, definition): a matter type's checklist in order,
//! - `categories`, `display_templates`, `export_formats` (definitions as JSON),
//! - `saved_queries` (owner: the signer's hex key, name, source, definition),
//! - `catalog_changes`: every catalog transaction in chain order (seq, height, tx id, signer,
//!   kind, entry type, entry key, the definition written or NULL for a delete).
//!
//! [`apply`] mirrors chaincode's effect of a committed catalog transaction (blocks hold only
//! transactions chaincode accepted) inside the block's SQL transaction. A matter type put
//! renumbers its materials 0..n; an added material goes after the last; a replaced one keeps
//! its ordinal — the same order chaincode keeps. Every value is bound, never spliced.

use govchain_chaincode::business::{CatalogEntry, EntryRef, Material, MatterType, PutMode};
use govchain_chaincode::TxKind;
use govchain_ledger::{Height, SignedTx};
use sqlx::{AnyPool, Row};

use super::{ProjectionError, SqlTx, Table};

/// The catalog tables, in digest order (see [`super::TABLES`] for the column kinds).
pub(super) const TABLES: &[Table] = &[
    (
        "matter_types",
        &[("id", 't'), ("department", 't'), ("definition", 't')],
        "id",
    ),
    (
        "materials",
        &[
            ("matter", 't'),
            ("id", 't'),
            ("ordinal", 'i'),
            ("definition", 't'),
        ],
        "matter, id",
    ),
    ("categories", &[("id", 't'), ("definition", 't')], "id"),
    (
        "display_templates",
        &[("category", 't'), ("id", 't'), ("definition", 't')],
        "category, id",
    ),
    (
        "export_formats",
        &[("category", 't'), ("id", 't'), ("definition", 't')],
        "category, id",
    ),
    (
        "saved_queries",
        &[
            ("owner", 't'),
            ("name", 't'),
            ("source", 't'),
            ("definition", 't'),
        ],
        "owner, name",
    ),
    (
        "catalog_changes",
        &[
            ("seq", 'i'),
            ("height", 'i'),
            ("tx_id", 't'),
            ("signer", 't'),
            ("kind", 't'),
            ("entry_type", 't'),
            ("entry_key", 't'),
            ("definition", 'n'),
        ],
        "seq",
    ),
];

/// Creates the catalog tables that are missing (`long`: the long-text type; `suffix`: the
/// table options of the backend).
pub(super) async fn migrate(pool: &AnyPool, long: &str, suffix: &str) -> Result<(), sqlx::Error> {
    let ddl = [
        format!(
            "CREATE TABLE IF NOT EXISTS matter_types (id VARCHAR(64) NOT NULL PRIMARY KEY, \
             department VARCHAR(16) NOT NULL, definition {long} NOT NULL){suffix}"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS materials (matter VARCHAR(64) NOT NULL, \
             id VARCHAR(64) NOT NULL, ordinal BIGINT NOT NULL, definition {long} NOT NULL, \
             PRIMARY KEY (matter, id)){suffix}"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS categories (id VARCHAR(64) NOT NULL PRIMARY KEY, \
             definition {long} NOT NULL){suffix}"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS display_templates (category VARCHAR(64) NOT NULL, \
             id VARCHAR(64) NOT NULL, definition {long} NOT NULL, \
             PRIMARY KEY (category, id)){suffix}"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS export_formats (category VARCHAR(64) NOT NULL, \
             id VARCHAR(64) NOT NULL, definition {long} NOT NULL, \
             PRIMARY KEY (category, id)){suffix}"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS saved_queries (owner VARCHAR(64) NOT NULL, \
             name VARCHAR(191) NOT NULL, source VARCHAR(64) NOT NULL, \
             definition {long} NOT NULL, PRIMARY KEY (owner, name)){suffix}"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS catalog_changes (seq BIGINT NOT NULL PRIMARY KEY, \
             height BIGINT NOT NULL, tx_id VARCHAR(64) NOT NULL, signer VARCHAR(64) NOT NULL, \
             kind VARCHAR(32) NOT NULL, entry_type VARCHAR(32) NOT NULL, \
             entry_key {long} NOT NULL, definition {long}){suffix}"
        ),
    ];
    for stmt in ddl {
        sqlx::query(sqlx::AssertSqlSafe(stmt)).execute(pool).await?;
    }
    Ok(())
}

fn json<T: serde::Serialize>(height: Height, v: &T) -> Result<String, ProjectionError> {
    serde_json::to_string(v).map_err(|e| ProjectionError::Diverged {
        height: height.0,
        reason: format!("catalog entry does not serialize: {e}"),
    })
}

/// Runs one statement with text parameters.
async fn exec(tx: &mut SqlTx<'_>, sql: &'static str, args: &[&str]) -> Result<(), sqlx::Error> {
    let mut q = sqlx::query(sql);
    for a in args {
        q = q.bind(a.to_string());
    }
    q.execute(&mut **tx).await?;
    Ok(())
}

async fn insert_material(
    tx: &mut SqlTx<'_>,
    height: Height,
    matter: &str,
    ordinal: i64,
    m: &Material,
) -> Result<(), ProjectionError> {
    sqlx::query("INSERT INTO materials (matter, id, ordinal, definition) VALUES (?, ?, ?, ?)")
        .bind(matter.to_string())
        .bind(m.id.clone())
        .bind(ordinal)
        .bind(json(height, m)?)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn put_matter(
    tx: &mut SqlTx<'_>,
    height: Height,
    m: &MatterType,
) -> Result<(), ProjectionError> {
    exec(tx, "DELETE FROM matter_types WHERE id = ?", &[&m.id]).await?;
    exec(tx, "DELETE FROM materials WHERE matter = ?", &[&m.id]).await?;
    let bare = MatterType {
        materials: Vec::new(),
        ..m.clone()
    };
    let def = json(height, &bare)?;
    exec(
        tx,
        "INSERT INTO matter_types (id, department, definition) VALUES (?, ?, ?)",
        &[&m.id, &m.department, &def],
    )
    .await?;
    for (i, mat) in m.materials.iter().enumerate() {
        insert_material(tx, height, &m.id, i as i64, mat).await?;
    }
    Ok(())
}

/// Writes an entry (add or replace alike: chaincode already checked the mode); returns the
/// definition recorded in `catalog_changes`.
async fn put_entry(
    tx: &mut SqlTx<'_>,
    height: Height,
    owner: &str,
    entry: &CatalogEntry,
) -> Result<String, ProjectionError> {
    match entry {
        CatalogEntry::MatterType(m) => put_matter(tx, height, m).await?,
        CatalogEntry::Category(c) => {
            exec(tx, "DELETE FROM categories WHERE id = ?", &[&c.id]).await?;
            let sql = "INSERT INTO categories (id, definition) VALUES (?, ?)";
            exec(tx, sql, &[&c.id, &json(height, c)?]).await?;
        }
        CatalogEntry::Template(t) => {
            let sql = "DELETE FROM display_templates WHERE category = ? AND id = ?";
            exec(tx, sql, &[&t.category, &t.id]).await?;
            let sql = "INSERT INTO display_templates (category, id, definition) VALUES (?, ?, ?)";
            exec(tx, sql, &[&t.category, &t.id, &json(height, t)?]).await?;
        }
        CatalogEntry::Format(f) => {
            let sql = "DELETE FROM export_formats WHERE category = ? AND id = ?";
            exec(tx, sql, &[&f.category, &f.id]).await?;
            let sql = "INSERT INTO export_formats (category, id, definition) VALUES (?, ?, ?)";
            exec(tx, sql, &[&f.category, &f.id, &json(height, f)?]).await?;
        }
        CatalogEntry::SavedQuery(q) => {
            let sql = "DELETE FROM saved_queries WHERE owner = ? AND name = ?";
            exec(tx, sql, &[owner, &q.name]).await?;
            let sql =
                "INSERT INTO saved_queries (owner, name, source, definition) VALUES (?, ?, ?, ?)";
            exec(tx, sql, &[owner, &q.name, &q.source, &json(height, q)?]).await?;
        }
    }
    json(height, entry)
}

async fn delete_entry(tx: &mut SqlTx<'_>, owner: &str, r: &EntryRef) -> Result<(), sqlx::Error> {
    match r {
        EntryRef::MatterType { id } => {
            exec(tx, "DELETE FROM matter_types WHERE id = ?", &[id]).await?;
            exec(tx, "DELETE FROM materials WHERE matter = ?", &[id]).await
        }
        EntryRef::Category { id } => exec(tx, "DELETE FROM categories WHERE id = ?", &[id]).await,
        EntryRef::Template { category, id } => {
            let sql = "DELETE FROM display_templates WHERE category = ? AND id = ?";
            exec(tx, sql, &[category, id]).await
        }
        EntryRef::Format { category, id } => {
            let sql = "DELETE FROM export_formats WHERE category = ? AND id = ?";
            exec(tx, sql, &[category, id]).await
        }
        EntryRef::SavedQuery { name } => {
            let sql = "DELETE FROM saved_queries WHERE owner = ? AND name = ?";
            exec(tx, sql, &[owner, name]).await
        }
    }
}

/// The key an entry is listed under in `catalog_changes` (`category/id`, `owner/name`, …).
fn entry_key(owner: &str, r: &EntryRef) -> String {
    match r {
        EntryRef::MatterType { id } | EntryRef::Category { id } => id.clone(),
        EntryRef::Template { category, id } | EntryRef::Format { category, id } => {
            format!("{category}/{id}")
        }
        EntryRef::SavedQuery { name } => format!("{owner}/{name}"),
    }
}

async fn put_material(
    tx: &mut SqlTx<'_>,
    height: Height,
    mode: PutMode,
    matter: &str,
    m: &Material,
) -> Result<(), ProjectionError> {
    match mode {
        PutMode::Replace => {
            let def = json(height, m)?;
            let sql = "UPDATE materials SET definition = ? WHERE matter = ? AND id = ?";
            exec(tx, sql, &[&def, matter, &m.id]).await?;
        }
        PutMode::Add => {
            let next: i64 = sqlx::query(
                "SELECT COALESCE(MAX(ordinal), -1) + 1 FROM materials WHERE matter = ?",
            )
            .bind(matter.to_string())
            .fetch_one(&mut **tx)
            .await?
            .try_get(0)?;
            insert_material(tx, height, matter, next, m).await?;
        }
    }
    Ok(())
}

/// Projects one committed catalog transaction (`kind` decoded from `t`) and records it in
/// `catalog_changes`. Other kinds are not this module's and do nothing.
pub(super) async fn apply(
    tx: &mut SqlTx<'_>,
    height: Height,
    t: &SignedTx,
    kind: TxKind,
) -> Result<(), ProjectionError> {
    let owner = t.body.signer.to_hex();
    let (entry_type, key, def) = match &kind {
        TxKind::PutCatalogEntry { entry, .. } => {
            let r = entry.entry_ref();
            let def = put_entry(tx, height, &owner, entry).await?;
            (r.entry_type(), entry_key(&owner, &r), Some(def))
        }
        TxKind::DeleteCatalogEntry(r) => {
            delete_entry(tx, &owner, r).await?;
            (r.entry_type(), entry_key(&owner, r), None)
        }
        TxKind::PutMaterial {
            mode,
            matter,
            material,
        } => {
            put_material(tx, height, *mode, matter, material).await?;
            let key = format!("{matter}/{}", material.id);
            ("material", key, Some(json(height, material)?))
        }
        TxKind::DeleteMaterial { matter, id } => {
            let sql = "DELETE FROM materials WHERE matter = ? AND id = ?";
            exec(tx, sql, &[matter, id]).await?;
            ("material", format!("{matter}/{id}"), None)
        }
        _ => return Ok(()),
    };
    let seq: i64 = sqlx::query("SELECT COALESCE(MAX(seq), 0) + 1 FROM catalog_changes")
        .fetch_one(&mut **tx)
        .await?
        .try_get(0)?;
    sqlx::query(
        "INSERT INTO catalog_changes (seq, height, tx_id, signer, kind, entry_type, entry_key, \
         definition) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(seq)
    .bind(height.0 as i64)
    .bind(t.id().to_string())
    .bind(owner)
    .bind(kind.name().to_string())
    .bind(entry_type.to_string())
    .bind(key)
    .bind(def)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
