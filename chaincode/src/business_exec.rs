//! Execution of the business-catalog kinds (R-ARC-4, R-ARC-5, R-QRY-2…5): `PutCatalogEntry`,
//! `DeleteCatalogEntry`, `PutMaterial`, `DeleteMaterial`.
//!
//! Who may sign: the system administrator (the bureau) for matter types, materials, categories,
//! templates and formats; any registered key (system administrator, department administrator,
//! department node) for its OWN saved queries — the owner is always the signer.
//!
//! References, enforced here so every node and auditor agrees:
//! - a category records the ids of its templates and formats; deleting a category that still
//!   has any is refused (`in_use`), as is replacing it with a definition that drops a field one
//!   of them shows. Nothing cascades except a matter type's materials, which are part of it.
//! - a template counts the saved queries that shape their results with it; deleting a template
//!   still in use is refused (`in_use`).
//! - a saved query's owner has at most [`MAX_SAVED_QUERIES_PER_OWNER`] queries (a counter key).
//!
//! Data sources may later be re-registered without a field an entry names; readers then show
//! that field as absent. Everything is deterministic and does no IO.

use std::collections::BTreeSet;

use govchain_ledger::state::Overlay;
use govchain_ledger::{codec, PublicKey, SignedTx, StateView};
use serde::{Deserialize, Serialize};

use crate::auth;
use crate::business::{
    check_columns, CatalogEntry, DisplayTemplate, EntryRef, ExportFormat, Material, MatterType,
    PutMode, SavedQuery, ServiceCategory, MAX_FORMATS_PER_CATEGORY, MAX_MATERIALS,
    MAX_SAVED_QUERIES_PER_OWNER, MAX_TEMPLATES_PER_CATEGORY,
};
use crate::catalog::{DataSource, Department};
use crate::error::{invalid, TxError};
use crate::exec::get;
use crate::keys;

/// A category as kept in state: its definition and the ids of its templates and formats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCategory {
    /// The definition.
    pub category: ServiceCategory,
    /// Ids of its display templates.
    pub templates: BTreeSet<String>,
    /// Ids of its export formats.
    pub formats: BTreeSet<String>,
}

/// A display template as kept in state, with the number of saved queries using it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredTemplate {
    /// The definition.
    pub template: DisplayTemplate,
    /// Saved queries that shape their results with it.
    pub used_by: u32,
}

fn put<T: Serialize>(o: &mut Overlay<'_>, key: Vec<u8>, v: &T) {
    o.writes.put(key, codec::encode_infallible(v));
}

fn not_found(what: &'static str, id: impl Into<String>) -> TxError {
    TxError::NotFound {
        what,
        id: id.into(),
    }
}

/// Refuses an Add of an existing entry and a Replace of a missing one.
fn check_mode(mode: PutMode, exists: bool, what: &'static str, id: &str) -> Result<(), TxError> {
    match (mode, exists) {
        (PutMode::Add, true) => Err(TxError::AlreadyExists {
            what,
            id: id.to_string(),
        }),
        (PutMode::Replace, false) => Err(not_found(what, id)),
        _ => Ok(()),
    }
}

fn lookup_in<'a>(o: &'a Overlay<'_>) -> impl Fn(&str) -> Result<Option<DataSource>, TxError> + 'a {
    move |id: &str| get::<DataSource>(o, &keys::source(id))
}

fn category(o: &Overlay<'_>, id: &str) -> Result<StoredCategory, TxError> {
    get(o, &keys::category(id))?.ok_or_else(|| not_found("category", id))
}

fn template(o: &Overlay<'_>, category: &str, id: &str) -> Result<StoredTemplate, TxError> {
    get(o, &keys::template(category, id))?
        .ok_or_else(|| not_found("display template", format!("{category}/{id}")))
}

fn matter(o: &Overlay<'_>, id: &str) -> Result<MatterType, TxError> {
    get(o, &keys::matter_type(id))?.ok_or_else(|| not_found("matter type", id))
}

/// Executes `PutCatalogEntry`.
pub(crate) fn put_entry(
    o: &mut Overlay<'_>,
    tx: &SignedTx,
    mode: PutMode,
    entry: CatalogEntry,
) -> Result<(), TxError> {
    let signer = tx.body.signer;
    match entry {
        CatalogEntry::SavedQuery(q) => put_saved_query(o, &signer, mode, q),
        CatalogEntry::MatterType(m) => {
            auth::require_system_admin(o, &signer, "define matter types")?;
            m.validate(&lookup_in(o))?;
            if get::<Department>(o, &keys::department(&m.department))?.is_none() {
                return Err(not_found("department", m.department));
            }
            let key = keys::matter_type(&m.id);
            check_mode(mode, o.get(&key)?.is_some(), "matter type", &m.id)?;
            put(o, key, &m);
            Ok(())
        }
        CatalogEntry::Category(c) => {
            auth::require_system_admin(o, &signer, "define service categories")?;
            c.validate(&lookup_in(o))?;
            put_category(o, mode, c)
        }
        CatalogEntry::Template(t) => {
            auth::require_system_admin(o, &signer, "define display templates")?;
            t.validate()?;
            put_template(o, mode, t)
        }
        CatalogEntry::Format(f) => {
            auth::require_system_admin(o, &signer, "define export formats")?;
            f.validate()?;
            put_format(o, mode, f)
        }
    }
}

fn put_category(o: &mut Overlay<'_>, mode: PutMode, c: ServiceCategory) -> Result<(), TxError> {
    let key = keys::category(&c.id);
    let old: Option<StoredCategory> = get(o, &key)?;
    check_mode(mode, old.is_some(), "category", &c.id)?;
    let (templates, formats) = old.map(|s| (s.templates, s.formats)).unwrap_or_default();
    // A narrower definition must still cover every column of its templates and formats.
    for id in &templates {
        let t = template(o, &c.id, id)?;
        if let Some(col) = c.first_uncovered(&t.template.columns) {
            return Err(TxError::InUse {
                what: "category field",
                id: format!("{}.{}", col.source, col.field),
                by: format!("display template {id}"),
            });
        }
    }
    for id in &formats {
        let f: ExportFormat = get(o, &keys::export_format(&c.id, id))?
            .ok_or_else(|| not_found("export format", format!("{}/{id}", c.id)))?;
        if let Some(col) = c.first_uncovered(&f.columns) {
            return Err(TxError::InUse {
                what: "category field",
                id: format!("{}.{}", col.source, col.field),
                by: format!("export format {id}"),
            });
        }
    }
    let stored = StoredCategory {
        category: c,
        templates,
        formats,
    };
    put(o, key, &stored);
    Ok(())
}

fn put_template(o: &mut Overlay<'_>, mode: PutMode, t: DisplayTemplate) -> Result<(), TxError> {
    let mut cat = category(o, &t.category)?;
    check_columns(&cat.category, &t.columns)?;
    let key = keys::template(&t.category, &t.id);
    let old: Option<StoredTemplate> = get(o, &key)?;
    check_mode(
        mode,
        old.is_some(),
        "display template",
        &format!("{}/{}", t.category, t.id),
    )?;
    if old.is_none() {
        if cat.templates.len() >= MAX_TEMPLATES_PER_CATEGORY {
            return Err(TxError::TooLarge {
                what: "display templates of a category",
                got: cat.templates.len() + 1,
                max: MAX_TEMPLATES_PER_CATEGORY,
            });
        }
        cat.templates.insert(t.id.clone());
        put(o, keys::category(&t.category), &cat);
    }
    let stored = StoredTemplate {
        template: t,
        used_by: old.map_or(0, |s| s.used_by),
    };
    put(o, key, &stored);
    Ok(())
}

fn put_format(o: &mut Overlay<'_>, mode: PutMode, f: ExportFormat) -> Result<(), TxError> {
    let mut cat = category(o, &f.category)?;
    check_columns(&cat.category, &f.columns)?;
    let key = keys::export_format(&f.category, &f.id);
    let exists = o.get(&key)?.is_some();
    check_mode(
        mode,
        exists,
        "export format",
        &format!("{}/{}", f.category, f.id),
    )?;
    if !exists {
        if cat.formats.len() >= MAX_FORMATS_PER_CATEGORY {
            return Err(TxError::TooLarge {
                what: "export formats of a category",
                got: cat.formats.len() + 1,
                max: MAX_FORMATS_PER_CATEGORY,
            });
        }
        cat.formats.insert(f.id.clone());
        put(o, keys::category(&f.category), &cat);
    }
    put(o, key, &f);
    Ok(())
}

/// Adds `delta` (±1) to a template's use count.
fn count_use(o: &mut Overlay<'_>, category: &str, id: &str, delta: i64) -> Result<(), TxError> {
    let mut t = template(o, category, id)?;
    let n = i64::from(t.used_by) + delta;
    assert!(
        n >= 0,
        "invariant: a template's use count never goes below zero"
    );
    t.used_by = u32::try_from(n).map_err(|_| invalid("template", "use count overflow"))?;
    put(o, keys::template(category, id), &t);
    Ok(())
}

fn saved_query_count(o: &Overlay<'_>, owner: &PublicKey) -> Result<u64, TxError> {
    Ok(get::<u64>(o, &keys::saved_query_count(owner))?.unwrap_or(0))
}

fn put_saved_query(
    o: &mut Overlay<'_>,
    signer: &PublicKey,
    mode: PutMode,
    q: SavedQuery,
) -> Result<(), TxError> {
    if auth::role_of(o, signer)?.is_none() {
        return Err(TxError::Unauthorized {
            signer: *signer,
            action: "save queries (registered keys only)".into(),
        });
    }
    let source = q.validate(&lookup_in(o))?;
    if let Some(s) = &q.shape {
        category(o, &s.category)?;
        let t = template(o, &s.category, &s.template)?;
        if !t.template.columns.iter().any(|c| c.source == source.id) {
            return Err(invalid(
                "shape",
                format!(
                    "template {}/{} shows no field of {}",
                    s.category, s.template, source.id
                ),
            ));
        }
    }
    let key = keys::saved_query(signer, &q.name);
    let old: Option<SavedQuery> = get(o, &key)?;
    check_mode(mode, old.is_some(), "saved query", &q.name)?;
    match &old {
        Some(old) => {
            if let Some(s) = &old.shape {
                count_use(o, &s.category, &s.template, -1)?;
            }
        }
        None => {
            let n = saved_query_count(o, signer)?;
            if n as usize >= MAX_SAVED_QUERIES_PER_OWNER {
                return Err(TxError::TooLarge {
                    what: "saved queries of one owner",
                    got: n as usize + 1,
                    max: MAX_SAVED_QUERIES_PER_OWNER,
                });
            }
            put(o, keys::saved_query_count(signer), &(n + 1));
        }
    }
    if let Some(s) = &q.shape {
        count_use(o, &s.category, &s.template, 1)?;
    }
    put(o, key, &q);
    Ok(())
}

/// Executes `DeleteCatalogEntry`.
pub(crate) fn delete_entry(o: &mut Overlay<'_>, tx: &SignedTx, r: EntryRef) -> Result<(), TxError> {
    let signer = tx.body.signer;
    if !matches!(r, EntryRef::SavedQuery { .. }) {
        auth::require_system_admin(o, &signer, "delete catalog entries")?;
    }
    match r {
        EntryRef::MatterType { id } => {
            matter(o, &id)?;
            o.writes.delete(keys::matter_type(&id));
        }
        EntryRef::Category { id } => {
            let c = category(o, &id)?;
            if let Some(t) = c.templates.first() {
                return Err(TxError::InUse {
                    what: "category",
                    id,
                    by: format!("display template {t} (delete it first)"),
                });
            }
            if let Some(f) = c.formats.first() {
                return Err(TxError::InUse {
                    what: "category",
                    id,
                    by: format!("export format {f} (delete it first)"),
                });
            }
            o.writes.delete(keys::category(&id));
        }
        EntryRef::Template { category: cat, id } => {
            let t = template(o, &cat, &id)?;
            if t.used_by > 0 {
                return Err(TxError::InUse {
                    what: "display template",
                    id: format!("{cat}/{id}"),
                    by: format!("{} saved queries", t.used_by),
                });
            }
            let mut c = category(o, &cat)?;
            c.templates.remove(&id);
            put(o, keys::category(&cat), &c);
            o.writes.delete(keys::template(&cat, &id));
        }
        EntryRef::Format { category: cat, id } => {
            let key = keys::export_format(&cat, &id);
            if o.get(&key)?.is_none() {
                return Err(not_found("export format", format!("{cat}/{id}")));
            }
            let mut c = category(o, &cat)?;
            c.formats.remove(&id);
            put(o, keys::category(&cat), &c);
            o.writes.delete(key);
        }
        EntryRef::SavedQuery { name } => {
            let key = keys::saved_query(&signer, &name);
            let q: SavedQuery = get(o, &key)?.ok_or_else(|| not_found("saved query", name))?;
            if let Some(s) = &q.shape {
                count_use(o, &s.category, &s.template, -1)?;
            }
            let n = saved_query_count(o, &signer)?;
            assert!(n > 0, "invariant: an owner with a saved query counts it");
            put(o, keys::saved_query_count(&signer), &(n - 1));
            o.writes.delete(key);
        }
    }
    Ok(())
}

/// Executes `PutMaterial`: adds a material at the end of the checklist, or replaces the one
/// with the same id in place.
pub(crate) fn put_material(
    o: &mut Overlay<'_>,
    tx: &SignedTx,
    mode: PutMode,
    matter_id: &str,
    material: Material,
) -> Result<(), TxError> {
    auth::require_system_admin(o, &tx.body.signer, "change materials")?;
    material.validate()?;
    let mut m = matter(o, matter_id)?;
    let at = m.materials.iter().position(|x| x.id == material.id);
    let id = format!("{matter_id}/{}", material.id);
    check_mode(mode, at.is_some(), "material", &id)?;
    match at {
        Some(i) => m.materials[i] = material,
        None => {
            if m.materials.len() >= MAX_MATERIALS {
                return Err(TxError::TooLarge {
                    what: "materials of a matter type",
                    got: m.materials.len() + 1,
                    max: MAX_MATERIALS,
                });
            }
            m.materials.push(material);
        }
    }
    put(o, keys::matter_type(matter_id), &m);
    Ok(())
}

/// Executes `DeleteMaterial`.
pub(crate) fn delete_material(
    o: &mut Overlay<'_>,
    tx: &SignedTx,
    matter_id: &str,
    id: &str,
) -> Result<(), TxError> {
    auth::require_system_admin(o, &tx.body.signer, "change materials")?;
    let mut m = matter(o, matter_id)?;
    let at = m
        .materials
        .iter()
        .position(|x| x.id == id)
        .ok_or_else(|| not_found("material", format!("{matter_id}/{id}")))?;
    m.materials.remove(at);
    put(o, keys::matter_type(matter_id), &m);
    Ok(())
}
