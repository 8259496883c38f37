//! Unit tests of the business-catalog kinds (R-ARC-3, R-ARC-4, R-ARC-5, R-QRY-2…5) over the
//! in-memory chain of [`crate::exec_tests`]: its sources `gaj.hjxx` (sfzh, xm, csrq) and
//! `mzj.hydj` (jhzh, sfzh). Every refusal also checks that the refused transaction left nothing.

use crate::business::{
    CatalogEntry, Column, Condition, ConditionOp, DisplayTemplate, EntryRef, ExportFormat,
    FileType, Material, MatterType, PutMode, SavedQuery, ServiceCategory, Shape, SourceFields,
    MAX_COLUMNS, MAX_ENTRY_ID_LEN, MAX_MATERIALS, MAX_NOTE_CHARS, MAX_SAVED_QUERIES_PER_OWNER,
    MAX_TEMPLATES_PER_CATEGORY,
};
use crate::business_exec::{StoredCategory, StoredTemplate};
use crate::catalog::MAX_LABEL_LEN;
use crate::exec_tests::{
    admin, assert_left_nothing, is_unauthorized, node, outsider, sysadmin, Chain, HJXX, HYDJ,
};
use crate::keys;
use crate::kinds::TxKind;
use crate::TxError;
use govchain_ledger::Keypair;

fn sf(source: &str, fields: &[&str]) -> SourceFields {
    SourceFields {
        source: source.into(),
        fields: fields.iter().map(|f| f.to_string()).collect(),
    }
}

fn material(id: &str, name: &str) -> Material {
    Material {
        id: id.into(),
        name: name.into(),
        required: true,
        note: String::new(),
    }
}

/// 结婚登记: the couple's household and marriage records, two materials.
pub(crate) fn marriage() -> MatterType {
    MatterType {
        id: "jhdj".into(),
        name: "结婚登记".into(),
        department: "mzj".into(),
        sources: vec![sf(HJXX, &["sfzh", "xm"]), sf(HYDJ, &["jhzh"])],
        materials: vec![material("sfz", "居民身份证"), material("hkb", "户口簿")],
    }
}

fn category() -> ServiceCategory {
    ServiceCategory {
        id: "hj".into(),
        name: "户籍服务".into(),
        sources: vec![sf(HJXX, &["sfzh", "xm", "csrq"])],
    }
}

fn col(field: &str, label: &str) -> Column {
    Column {
        source: HJXX.into(),
        field: field.into(),
        label: label.into(),
    }
}

fn template(id: &str, columns: Vec<Column>) -> DisplayTemplate {
    DisplayTemplate {
        category: "hj".into(),
        id: id.into(),
        name: "简表".into(),
        columns,
    }
}

fn format(id: &str) -> ExportFormat {
    ExportFormat {
        category: "hj".into(),
        id: id.into(),
        name: "导出".into(),
        file_type: FileType::Csv,
        columns: vec![col("xm", "姓名"), col("csrq", "出生日期")],
    }
}

fn query(name: &str, shape: Option<(&str, &str)>) -> SavedQuery {
    SavedQuery {
        name: name.into(),
        source: HJXX.into(),
        conditions: vec![Condition {
            op: ConditionOp::From,
            field: "csrq".into(),
            value: "1949-01-01".into(),
        }],
        shape: shape.map(|(c, t)| Shape {
            category: c.into(),
            template: t.into(),
        }),
    }
}

fn put(mode: PutMode, entry: CatalogEntry) -> TxKind {
    TxKind::PutCatalogEntry { mode, entry }
}

fn add(entry: CatalogEntry) -> TxKind {
    put(PutMode::Add, entry)
}

fn del(r: EntryRef) -> TxKind {
    TxKind::DeleteCatalogEntry(r)
}

/// Commits `kind` signed by `key`, expecting a refusal that leaves nothing behind.
fn refused(chain: &mut Chain, key: &Keypair, kind: TxKind, watch: &[Vec<u8>]) -> TxError {
    let tx = chain.tx(key, &kind);
    let out = chain.commit(std::slice::from_ref(&tx));
    assert_left_nothing(&out, &tx, watch);
    out.results[0]
        .clone()
        .expect_err("the transaction must be refused")
}

fn matter_in(chain: &Chain, id: &str) -> Option<MatterType> {
    chain.read(&keys::matter_type(id))
}

fn ok(chain: &mut Chain, key: &Keypair, kind: TxKind) {
    assert_eq!(chain.commit_one(key, kind), Ok(()));
}

/// The chain with category `hj` and its template `brief` (xm, csrq).
fn chain_with_category() -> Chain {
    let mut chain = Chain::genesis();
    ok(
        &mut chain,
        &sysadmin(),
        add(CatalogEntry::Category(category())),
    );
    let t = template("brief", vec![col("xm", "姓名"), col("csrq", "出生日期")]);
    ok(&mut chain, &sysadmin(), add(CatalogEntry::Template(t)));
    chain
}

#[test]
fn the_sysadmin_adds_modifies_and_deletes_a_matter_type() {
    // R-ARC-4: a matter type names the sources and fields it needs; every change is a tx.
    let mut chain = Chain::genesis();
    ok(
        &mut chain,
        &sysadmin(),
        add(CatalogEntry::MatterType(marriage())),
    );
    assert_eq!(matter_in(&chain, "jhdj"), Some(marriage()));

    let mut changed = marriage();
    changed.sources = vec![sf(HJXX, &["sfzh"]), sf(HYDJ, &["jhzh", "sfzh"])];
    let kind = put(PutMode::Replace, CatalogEntry::MatterType(changed.clone()));
    ok(&mut chain, &sysadmin(), kind);
    assert_eq!(matter_in(&chain, "jhdj"), Some(changed));

    let kind = del(EntryRef::MatterType { id: "jhdj".into() });
    ok(&mut chain, &sysadmin(), kind);
    assert_eq!(matter_in(&chain, "jhdj"), None);
}

#[test]
fn a_matter_type_naming_an_unknown_source_field_or_department_is_refused() {
    // R-ARC-4: every source and field must exist in the catalog.
    let mut chain = Chain::genesis();
    let watch = [keys::matter_type("jhdj")];
    for (m, expect) in [
        (
            MatterType {
                sources: vec![sf("no.such", &["a"])],
                ..marriage()
            },
            "data source",
        ),
        (
            MatterType {
                sources: vec![sf(HJXX, &["sfzh", "nosuch"])],
                ..marriage()
            },
            "field",
        ),
        (
            MatterType {
                department: "zz".into(),
                ..marriage()
            },
            "department",
        ),
    ] {
        let e = refused(
            &mut chain,
            &sysadmin(),
            add(CatalogEntry::MatterType(m)),
            &watch,
        );
        assert!(
            matches!(e, TxError::NotFound { what, .. } if what == expect),
            "{e}"
        );
    }
}

#[test]
fn only_the_sysadmin_changes_matter_types_materials_categories_templates_and_formats() {
    // R-QRY-5: the bureau (system administrator) manages the catalog; nobody else.
    let mut chain = chain_with_category();
    ok(
        &mut chain,
        &sysadmin(),
        add(CatalogEntry::MatterType(marriage())),
    );
    let before = chain.state.clone();
    for key in [admin("gaj"), node("gaj"), outsider()] {
        for kind in [
            add(CatalogEntry::MatterType(MatterType {
                id: "other".into(),
                ..marriage()
            })),
            del(EntryRef::MatterType { id: "jhdj".into() }),
            TxKind::PutMaterial {
                mode: PutMode::Add,
                matter: "jhdj".into(),
                material: material("zp", "照片"),
            },
            TxKind::DeleteMaterial {
                matter: "jhdj".into(),
                id: "sfz".into(),
            },
            put(PutMode::Replace, CatalogEntry::Category(category())),
            del(EntryRef::Category { id: "hj".into() }),
            add(CatalogEntry::Template(template("x", vec![col("xm", "x")]))),
            del(EntryRef::Template {
                category: "hj".into(),
                id: "brief".into(),
            }),
            add(CatalogEntry::Format(format("csv"))),
        ] {
            let tx = chain.tx(&key, &kind);
            let out = chain.commit(std::slice::from_ref(&tx));
            assert!(is_unauthorized(&out.results[0]), "{:?}", out.results);
            assert_left_nothing(&out, &tx, &[]);
        }
    }
    assert_eq!(chain.state, before, "nothing changed");
}

#[test]
fn adding_an_existing_entry_and_changing_or_deleting_a_missing_one_are_refused() {
    let mut chain = chain_with_category();
    ok(
        &mut chain,
        &sysadmin(),
        add(CatalogEntry::MatterType(marriage())),
    );
    let e = refused(
        &mut chain,
        &sysadmin(),
        add(CatalogEntry::MatterType(marriage())),
        &[],
    );
    assert!(matches!(e, TxError::AlreadyExists { .. }), "{e}");
    let e = refused(
        &mut chain,
        &sysadmin(),
        add(CatalogEntry::Category(category())),
        &[],
    );
    assert!(matches!(e, TxError::AlreadyExists { .. }), "{e}");
    let missing = MatterType {
        id: "nosuch".into(),
        ..marriage()
    };
    let watch = [keys::matter_type("nosuch")];
    for kind in [
        put(PutMode::Replace, CatalogEntry::MatterType(missing)),
        del(EntryRef::MatterType {
            id: "nosuch".into(),
        }),
        del(EntryRef::Category {
            id: "nosuch".into(),
        }),
        del(EntryRef::Template {
            category: "hj".into(),
            id: "nosuch".into(),
        }),
        del(EntryRef::Format {
            category: "hj".into(),
            id: "nosuch".into(),
        }),
        del(EntryRef::SavedQuery {
            name: "nosuch".into(),
        }),
        add(CatalogEntry::Template(DisplayTemplate {
            category: "nosuch".into(),
            ..template("t", vec![col("xm", "x")])
        })),
        TxKind::PutMaterial {
            mode: PutMode::Replace,
            matter: "jhdj".into(),
            material: material("nosuch", "x"),
        },
        TxKind::DeleteMaterial {
            matter: "jhdj".into(),
            id: "nosuch".into(),
        },
        TxKind::DeleteMaterial {
            matter: "nosuch".into(),
            id: "sfz".into(),
        },
    ] {
        let e = refused(&mut chain, &sysadmin(), kind.clone(), &watch);
        assert!(matches!(e, TxError::NotFound { .. }), "{kind:?}: {e}");
    }
}

#[test]
fn materials_are_added_modified_and_deleted_one_at_a_time_in_order() {
    // R-ARC-5: each material change is its own transaction; the checklist keeps its order.
    let mut chain = Chain::genesis();
    ok(
        &mut chain,
        &sysadmin(),
        add(CatalogEntry::MatterType(marriage())),
    );
    let photo = Material {
        note: "'; DROP TABLE materials; --".into(),
        ..material("zp", "近期半身免冠照片")
    };
    let kind = TxKind::PutMaterial {
        mode: PutMode::Add,
        matter: "jhdj".into(),
        material: photo.clone(),
    };
    ok(&mut chain, &sysadmin(), kind.clone());
    let e = refused(&mut chain, &sysadmin(), kind, &[]);
    assert!(matches!(e, TxError::AlreadyExists { .. }), "{e}");

    let optional = Material {
        required: false,
        ..material("hkb", "户口簿(复印件)")
    };
    let kind = TxKind::PutMaterial {
        mode: PutMode::Replace,
        matter: "jhdj".into(),
        material: optional.clone(),
    };
    ok(&mut chain, &sysadmin(), kind);
    let kind = TxKind::DeleteMaterial {
        matter: "jhdj".into(),
        id: "sfz".into(),
    };
    ok(&mut chain, &sysadmin(), kind);
    let m = matter_in(&chain, "jhdj").unwrap();
    assert_eq!(m.materials, vec![optional, photo]);
    assert_eq!(m.sources, marriage().sources, "sources untouched");
}

#[test]
fn materials_ids_names_and_notes_are_capped_at_their_limits() {
    // R-ARC-5 with TIGER_STYLE limits: limit accepted, limit + 1 refused.
    let mut chain = Chain::genesis();
    let mut m = marriage();
    m.materials = (0..MAX_MATERIALS)
        .map(|i| material(&format!("m{i}"), "材料"))
        .collect();
    ok(
        &mut chain,
        &sysadmin(),
        add(CatalogEntry::MatterType(m.clone())),
    );
    let kind = TxKind::PutMaterial {
        mode: PutMode::Add,
        matter: "jhdj".into(),
        material: material("one-more", "材料"),
    };
    let e = refused(&mut chain, &sysadmin(), kind, &[]);
    assert!(matches!(e, TxError::TooLarge { .. }), "{e}");
    m.materials.push(material("one-more", "材料"));
    let kind = put(PutMode::Replace, CatalogEntry::MatterType(m));
    let e = refused(&mut chain, &sysadmin(), kind, &[]);
    assert!(matches!(e, TxError::TooLarge { .. }), "{e}");

    let replace = |mat: Material| TxKind::PutMaterial {
        mode: PutMode::Replace,
        matter: "jhdj".into(),
        material: mat,
    };
    let edge = Material {
        name: "名".repeat(MAX_LABEL_LEN),
        note: "注".repeat(MAX_NOTE_CHARS),
        ..material("m0", "x")
    };
    ok(&mut chain, &sysadmin(), replace(edge.clone()));
    for bad in [
        Material {
            note: "注".repeat(MAX_NOTE_CHARS + 1),
            ..edge.clone()
        },
        Material {
            name: "名".repeat(MAX_LABEL_LEN + 1),
            ..edge.clone()
        },
        Material {
            name: "  ".into(),
            ..edge.clone()
        },
        Material {
            name: "a\u{0}b".into(),
            ..edge.clone()
        },
    ] {
        let e = refused(&mut chain, &sysadmin(), replace(bad), &[]);
        assert!(matches!(e, TxError::Invalid { .. }), "{e}");
    }
    for id in ["", "A", "-x", "a/b", &"a".repeat(MAX_ENTRY_ID_LEN + 1)] {
        let kind = TxKind::PutMaterial {
            mode: PutMode::Add,
            matter: "jhdj".into(),
            material: material(id, "x"),
        };
        let e = refused(&mut chain, &sysadmin(), kind, &[]);
        assert!(matches!(e, TxError::Invalid { .. }), "{id:?}: {e}");
    }
    let long_ok = material(&"a".repeat(MAX_ENTRY_ID_LEN), "x");
    let kind = TxKind::DeleteMaterial {
        matter: "jhdj".into(),
        id: "m1".into(),
    };
    ok(&mut chain, &sysadmin(), kind);
    let kind = TxKind::PutMaterial {
        mode: PutMode::Add,
        matter: "jhdj".into(),
        material: long_ok,
    };
    ok(&mut chain, &sysadmin(), kind);
}

#[test]
fn duplicates_within_a_definition_are_refused() {
    let mut chain = chain_with_category();
    let mut dup_material = marriage();
    dup_material.materials.push(material("sfz", "again"));
    let mut dup_source = marriage();
    dup_source.sources.push(sf(HJXX, &["xm"]));
    let mut dup_field = marriage();
    dup_field.sources[0] = sf(HJXX, &["xm", "xm"]);
    let dup_column = template("t2", vec![col("xm", "a"), col("xm", "b")]);
    for kind in [
        add(CatalogEntry::MatterType(dup_material)),
        add(CatalogEntry::MatterType(dup_source)),
        add(CatalogEntry::MatterType(dup_field)),
        add(CatalogEntry::Template(dup_column)),
    ] {
        let e = refused(&mut chain, &sysadmin(), kind, &[keys::matter_type("jhdj")]);
        assert!(matches!(e, TxError::Invalid { .. }), "{e}");
    }
}

#[test]
fn categories_templates_and_formats_follow_their_references() {
    // R-QRY-3, R-QRY-4, R-QRY-5: templates and formats lie within their category; a category
    // with templates or formats cannot be deleted, nor narrowed under them.
    let mut chain = chain_with_category();
    ok(
        &mut chain,
        &sysadmin(),
        add(CatalogEntry::Format(format("csv"))),
    );
    let stored: StoredCategory = chain.read(&keys::category("hj")).unwrap();
    assert_eq!(
        (stored.templates.len(), stored.formats.len()),
        (1, 1),
        "{stored:?}"
    );

    let outside = Column {
        source: HYDJ.into(),
        field: "jhzh".into(),
        label: "结婚证号".into(),
    };
    let t = template("wide", vec![col("xm", "姓名"), outside]);
    let e = refused(&mut chain, &sysadmin(), add(CatalogEntry::Template(t)), &[]);
    assert!(matches!(e, TxError::Invalid { .. }), "{e}");
    let e = refused(
        &mut chain,
        &sysadmin(),
        del(EntryRef::Category { id: "hj".into() }),
        &[keys::category("hj")],
    );
    assert!(matches!(e, TxError::InUse { .. }), "{e}");
    let mut narrow = category();
    narrow.sources = vec![sf(HJXX, &["sfzh", "xm"])];
    let kind = put(PutMode::Replace, CatalogEntry::Category(narrow));
    let e = refused(&mut chain, &sysadmin(), kind, &[keys::category("hj")]);
    assert!(matches!(e, TxError::InUse { .. }), "{e}");

    // Modify the template's labels and order, then delete the children and the category.
    let t = template("brief", vec![col("csrq", "生日"), col("xm", "名字")]);
    ok(
        &mut chain,
        &sysadmin(),
        put(PutMode::Replace, CatalogEntry::Template(t.clone())),
    );
    let stored: StoredTemplate = chain.read(&keys::template("hj", "brief")).unwrap();
    assert_eq!(stored.template, t);
    for r in [
        EntryRef::Template {
            category: "hj".into(),
            id: "brief".into(),
        },
        EntryRef::Format {
            category: "hj".into(),
            id: "csv".into(),
        },
        EntryRef::Category { id: "hj".into() },
    ] {
        ok(&mut chain, &sysadmin(), del(r));
    }
    assert!(!chain.state.contains_key(&keys::category("hj")));
    assert!(!chain.state.contains_key(&keys::template("hj", "brief")));
    assert!(!chain.state.contains_key(&keys::export_format("hj", "csv")));
}

#[test]
fn templates_per_category_and_columns_are_capped() {
    let mut chain = chain_with_category();
    for i in 1..MAX_TEMPLATES_PER_CATEGORY {
        let t = template(&format!("t{i}"), vec![col("xm", "x")]);
        ok(&mut chain, &sysadmin(), add(CatalogEntry::Template(t)));
    }
    let t = template("last", vec![col("xm", "x")]);
    let e = refused(
        &mut chain,
        &sysadmin(),
        add(CatalogEntry::Template(t)),
        &[keys::template("hj", "last")],
    );
    assert!(matches!(e, TxError::TooLarge { .. }), "{e}");
    let many: Vec<Column> = (0..=MAX_COLUMNS)
        .map(|i| col("xm", &format!("{i}")))
        .collect();
    let kind = put(
        PutMode::Replace,
        CatalogEntry::Template(template("t1", many)),
    );
    let e = refused(&mut chain, &sysadmin(), kind, &[]);
    assert!(matches!(e, TxError::TooLarge { .. }), "{e}");
}

#[test]
fn every_registered_key_saves_runs_and_deletes_its_own_queries() {
    // R-QRY-2: a user's named field combinations; the owner is the signer.
    let mut chain = chain_with_category();
    for key in [sysadmin(), admin("gaj"), node("gaj")] {
        let q = query("'; DROP TABLE saved_queries; --", Some(("hj", "brief")));
        ok(&mut chain, &key, add(CatalogEntry::SavedQuery(q.clone())));
        let stored: SavedQuery = chain
            .read(&keys::saved_query(&key.public(), &q.name))
            .unwrap();
        assert_eq!(stored, q);
    }
    let t: StoredTemplate = chain.read(&keys::template("hj", "brief")).unwrap();
    assert_eq!(t.used_by, 3);
    // The template is pinned while saved queries use it.
    let r = EntryRef::Template {
        category: "hj".into(),
        id: "brief".into(),
    };
    let e = refused(&mut chain, &sysadmin(), del(r.clone()), &[]);
    assert!(matches!(e, TxError::InUse { .. }), "{e}");

    let name = "'; DROP TABLE saved_queries; --".to_string();
    // Replacing without a shape releases the template; deleting releases it too.
    let kind = put(
        PutMode::Replace,
        CatalogEntry::SavedQuery(query(&name, None)),
    );
    ok(&mut chain, &admin("gaj"), kind);
    let kind = del(EntryRef::SavedQuery { name: name.clone() });
    ok(&mut chain, &node("gaj"), kind.clone());
    // mzj's admin has no query of that name: not found (nobody deletes another's query).
    let e = refused(&mut chain, &admin("mzj"), kind.clone(), &[]);
    assert!(matches!(e, TxError::NotFound { .. }), "{e}");
    ok(&mut chain, &sysadmin(), kind);
    ok(&mut chain, &sysadmin(), del(r));
    assert!(chain
        .state
        .contains_key(&keys::saved_query(&admin("gaj").public(), &name)));

    let q = query("mine", None);
    let e = refused(
        &mut chain,
        &outsider(),
        add(CatalogEntry::SavedQuery(q)),
        &[],
    );
    assert!(matches!(e, TxError::Unauthorized { .. }), "{e}");
}

#[test]
fn saved_query_conditions_are_checked_against_the_source() {
    // R-QRY-2: as GET /api/v1/records checks them.
    let mut chain = chain_with_category();
    let with = |op, field: &str, value: &str| SavedQuery {
        conditions: vec![Condition {
            op,
            field: field.into(),
            value: value.into(),
        }],
        ..query("q", None)
    };
    for (q, not_found) in [
        (with(ConditionOp::Eq, "nosuch", "1"), true),
        (
            SavedQuery {
                source: "no.such".into(),
                ..query("q", None)
            },
            true,
        ),
        (with(ConditionOp::From, "csrq", "2020-13-01"), false),
        (with(ConditionOp::Eq, "sfzh", "123"), false),
        (with(ConditionOp::Eq, "xm", ""), false),
        (with(ConditionOp::Eq, "xm", &"x".repeat(192)), false),
        (query("q", Some(("hj", "nosuch"))), true),
        (query("", None), false),
    ] {
        let kind = add(CatalogEntry::SavedQuery(q.clone()));
        let e = refused(&mut chain, &admin("gaj"), kind, &[]);
        let is_nf = matches!(e, TxError::NotFound { .. });
        assert_eq!(is_nf, not_found, "{q:?}: {e}");
        assert!(is_nf || matches!(e, TxError::Invalid { .. }), "{q:?}: {e}");
    }
    let q = with(ConditionOp::Eq, "xm", "'; DROP TABLE records; --");
    ok(&mut chain, &admin("gaj"), add(CatalogEntry::SavedQuery(q)));
}

#[test]
fn an_owner_keeps_at_most_the_limit_of_saved_queries() {
    let mut chain = Chain::genesis();
    let txs: Vec<_> = (0..MAX_SAVED_QUERIES_PER_OWNER)
        .map(|i| {
            let kind = add(CatalogEntry::SavedQuery(query(&format!("q{i}"), None)));
            chain.tx(&admin("gaj"), &kind)
        })
        .collect();
    let out = chain.commit(&txs);
    assert!(out.results.iter().all(Result::is_ok));
    let kind = add(CatalogEntry::SavedQuery(query("one more", None)));
    let e = refused(&mut chain, &admin("gaj"), kind.clone(), &[]);
    assert!(matches!(e, TxError::TooLarge { .. }), "{e}");
    ok(
        &mut chain,
        &admin("gaj"),
        del(EntryRef::SavedQuery { name: "q0".into() }),
    );
    ok(&mut chain, &admin("gaj"), kind);
}

#[test]
fn every_new_kind_round_trips_through_the_codec() {
    for k in [
        add(CatalogEntry::MatterType(marriage())),
        add(CatalogEntry::Category(category())),
        add(CatalogEntry::Format(format("csv"))),
        add(CatalogEntry::SavedQuery(query("q", Some(("hj", "brief"))))),
        del(EntryRef::Template {
            category: "hj".into(),
            id: "brief".into(),
        }),
        TxKind::PutMaterial {
            mode: PutMode::Replace,
            matter: "jhdj".into(),
            material: material("sfz", "居民身份证"),
        },
    ] {
        assert_eq!(TxKind::decode(&k.encode()), Ok(k));
    }
}
