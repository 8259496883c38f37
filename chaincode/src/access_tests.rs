//! Unit tests of users, grants, consents, audit batches and the access decision (R-SEC-1…5,
//! R-AUD-1) over the in-memory chain of [`crate::exec_tests`]: departments `gaj`, `mzj`, `rsj`,
//! `bdc`; sources `gaj.hjxx` and `mzj.hydj` (both conditional).

use govchain_ledger::{Hash, Keypair, TimestampMs};

use crate::access::{
    decide, AccessRequest, AuditAction, AuditEntry, Consent, Grant, GrantScope, Grantee,
    ReturnedPersons, Right, Role, User, MAX_AUDIT_PERSONS, MAX_USERS_PER_TX,
};
use crate::business::{CatalogEntry, PutMode};
use crate::business_tests::marriage;
use crate::catalog::ShareType;
use crate::exec_tests::{
    admin, assert_left_nothing, is_unauthorized, node, outsider, person_id, sysadmin, Chain, HJXX,
    HYDJ,
};
use crate::keys;
use crate::kinds::TxKind;
use crate::TxError;

const T0: u64 = 1_800_000_000_000;

fn staff(id: &str, dept: &str, level: u8) -> User {
    User {
        id: id.into(),
        name: format!("职员{id}"),
        department: dept.into(),
        level,
        roles: vec![Role::Staff],
        disabled: false,
        key: None,
    }
}

fn put_users(mode: PutMode, users: Vec<User>) -> TxKind {
    TxKind::PutUsers { mode, users }
}

fn refused(chain: &mut Chain, key: &Keypair, kind: TxKind, watch: &[Vec<u8>]) -> TxError {
    let tx = chain.tx(key, &kind);
    let out = chain.commit(std::slice::from_ref(&tx));
    assert_left_nothing(&out, &tx, watch);
    out.results[0].clone().expect_err("must be refused")
}

fn ok(chain: &mut Chain, key: &Keypair, kind: TxKind) {
    assert_eq!(chain.commit_one(key, kind), Ok(()));
}

fn grant(id: &str, grantee: Grantee, scope: GrantScope, export: bool) -> Grant {
    Grant {
        id: id.into(),
        grantee,
        scope,
        query: true,
        export,
        valid_from: TimestampMs(T0),
        valid_until: TimestampMs(T0 + 1_000),
    }
}

fn query(user: &str, sources: &[&str], right: Right, time: u64) -> AccessRequest {
    AccessRequest {
        user: Some(user.into()),
        right,
        sources: sources.iter().map(|s| s.to_string()).collect(),
        filter: false,
        person: None,
        matter: None,
        consent: None,
        time: TimestampMs(time),
    }
}

fn code(chain: &Chain, req: &AccessRequest) -> String {
    match decide(&chain.state, req) {
        Ok(s) => format!("ok {s:?}"),
        Err(d) => d.code,
    }
}

/// A chain with users: `zhang` (gaj staff, level 3), `li` (mzj staff, level 1), `wang` (mzj
/// staff, level 5).
fn chain_with_users() -> Chain {
    let mut chain = Chain::genesis();
    ok(
        &mut chain,
        &sysadmin(),
        put_users(
            PutMode::Add,
            vec![
                staff("zhang", "gaj", 3),
                staff("li", "mzj", 1),
                staff("wang", "mzj", 5),
            ],
        ),
    );
    chain
}

#[test]
fn the_sysadmin_manages_every_department_and_a_department_admin_only_its_own_r_sec_1() {
    let mut chain = chain_with_users();
    let u: User = chain.read(&keys::user("zhang")).unwrap();
    assert_eq!(u.department, "gaj");
    // gaj's administrator adds and modifies its own staff ...
    ok(
        &mut chain,
        &admin("gaj"),
        put_users(PutMode::Add, vec![staff("zhao", "gaj", 2)]),
    );
    let mut z = staff("zhao", "gaj", 4);
    z.disabled = true;
    ok(
        &mut chain,
        &admin("gaj"),
        put_users(PutMode::Replace, vec![z]),
    );
    assert!(chain.read::<User>(&keys::user("zhao")).unwrap().disabled);
    // ... but not another department's, nor an auditor or system administrator.
    let e = refused(
        &mut chain,
        &admin("gaj"),
        put_users(PutMode::Add, vec![staff("qian", "mzj", 1)]),
        &[keys::user("qian")],
    );
    assert!(is_unauthorized(&Err(e)));
    let mut aud = staff("sun", "gaj", 1);
    aud.roles = vec![Role::Auditor];
    let e = refused(
        &mut chain,
        &admin("gaj"),
        put_users(PutMode::Add, vec![aud]),
        &[keys::user("sun")],
    );
    assert!(is_unauthorized(&Err(e)));
    let e = refused(
        &mut chain,
        &admin("gaj"),
        TxKind::DeleteUser { id: "li".into() },
        &[keys::user("li")],
    );
    assert!(is_unauthorized(&Err(e)));
    // Outsiders and nodes manage nobody.
    for key in [outsider(), node("gaj")] {
        let e = refused(
            &mut chain,
            &key,
            put_users(PutMode::Add, vec![staff("qian", "gaj", 1)]),
            &[keys::user("qian")],
        );
        assert!(is_unauthorized(&Err(e)));
    }
    // Delete.
    ok(
        &mut chain,
        &sysadmin(),
        TxKind::DeleteUser { id: "li".into() },
    );
    assert!(chain.read::<User>(&keys::user("li")).is_none());
}

#[test]
fn bad_users_are_refused_and_a_batch_is_all_or_nothing() {
    let mut chain = chain_with_users();
    let cases: Vec<(User, &str)> = vec![
        (staff("bad/id", "gaj", 1), "user.id"),
        (staff("", "gaj", 1), "user.id"),
        (staff("a", "gaj", 0), "user.level"),
        (staff("a", "gaj", 10), "user.level"),
        (
            User {
                roles: vec![],
                ..staff("a", "gaj", 1)
            },
            "user.roles",
        ),
        (
            User {
                roles: vec![Role::Staff, Role::Staff],
                ..staff("a", "gaj", 1)
            },
            "user.roles",
        ),
        (
            User {
                roles: vec![Role::System],
                ..staff("a", "gaj", 1)
            },
            "user.key",
        ),
        (
            User {
                key: Some(Keypair::from_seed([5; 32]).public()),
                ..staff("a", "gaj", 1)
            },
            "user.key",
        ),
        (
            User {
                name: " ".into(),
                ..staff("a", "gaj", 1)
            },
            "user.name",
        ),
    ];
    for (u, field) in cases {
        // A good user first in the batch: it must not be written either.
        let batch = vec![staff("good", "gaj", 1), u];
        let e = refused(
            &mut chain,
            &sysadmin(),
            put_users(PutMode::Add, batch),
            &[keys::user("good")],
        );
        assert!(
            matches!(&e, TxError::Invalid { field: f, .. } if f == field),
            "{field}: {e}"
        );
    }
    // Unknown department, duplicates, add of an existing user, replace of a missing one.
    let e = refused(
        &mut chain,
        &sysadmin(),
        put_users(PutMode::Add, vec![staff("a", "zzz", 1)]),
        &[keys::user("a")],
    );
    assert!(matches!(
        e,
        TxError::NotFound {
            what: "department",
            ..
        }
    ));
    let e = refused(
        &mut chain,
        &sysadmin(),
        put_users(
            PutMode::Add,
            vec![staff("a", "gaj", 1), staff("a", "gaj", 2)],
        ),
        &[keys::user("a")],
    );
    assert!(matches!(e, TxError::Invalid { .. }));
    let e = refused(
        &mut chain,
        &sysadmin(),
        put_users(PutMode::Add, vec![staff("zhang", "gaj", 1)]),
        &[],
    );
    assert!(matches!(e, TxError::AlreadyExists { what: "user", .. }));
    let e = refused(
        &mut chain,
        &sysadmin(),
        put_users(PutMode::Replace, vec![staff("nobody", "gaj", 1)]),
        &[keys::user("nobody")],
    );
    assert!(matches!(e, TxError::NotFound { what: "user", .. }));
    let too_many: Vec<User> = (0..=MAX_USERS_PER_TX)
        .map(|i| staff(&format!("u{i}"), "gaj", 1))
        .collect();
    let e = refused(
        &mut chain,
        &sysadmin(),
        put_users(PutMode::Add, too_many),
        &[keys::user("u0")],
    );
    assert!(matches!(e, TxError::Invalid { .. }));
}

#[test]
fn a_system_account_key_is_registered_once_and_can_administer_with_its_role_r_sec_7() {
    let mut chain = chain_with_users();
    let key = Keypair::from_seed([77; 32]);
    let mut sys = staff("sp.gaj", "gaj", 1);
    sys.roles = vec![Role::System, Role::DepartmentAdmin];
    sys.key = Some(key.public());
    ok(
        &mut chain,
        &sysadmin(),
        put_users(PutMode::Add, vec![sys.clone()]),
    );
    // The same key cannot be given to a second account.
    let mut other = sys.clone();
    other.id = "sp2".into();
    let e = refused(
        &mut chain,
        &sysadmin(),
        put_users(PutMode::Add, vec![other]),
        &[keys::user("sp2")],
    );
    assert!(matches!(e, TxError::Invalid { .. }), "{e}");
    // With department_admin it manages gaj's users, and not mzj's.
    ok(
        &mut chain,
        &key,
        put_users(PutMode::Add, vec![staff("zhou", "gaj", 1)]),
    );
    let e = refused(
        &mut chain,
        &key,
        put_users(PutMode::Add, vec![staff("wu", "mzj", 1)]),
        &[keys::user("wu")],
    );
    assert!(is_unauthorized(&Err(e)));
    // Disabled, it manages nothing; deleted, its key is free again.
    sys.disabled = true;
    ok(
        &mut chain,
        &sysadmin(),
        put_users(PutMode::Replace, vec![sys]),
    );
    let e = refused(
        &mut chain,
        &key,
        put_users(PutMode::Add, vec![staff("zheng", "gaj", 1)]),
        &[keys::user("zheng")],
    );
    assert!(is_unauthorized(&Err(e)));
    ok(
        &mut chain,
        &sysadmin(),
        TxKind::DeleteUser {
            id: "sp.gaj".into(),
        },
    );
    assert!(chain
        .read::<Vec<u8>>(&keys::key_role(&key.public()))
        .is_none());
}

#[test]
fn a_department_reads_its_own_sources_and_others_only_with_a_grant_r_sec_3_r_sec_4() {
    let mut chain = chain_with_users();
    let t = T0 + 10;
    // Own department: query and export.
    assert_eq!(
        code(&chain, &query("zhang", &[HJXX], Right::Query, t)),
        format!("ok [{HJXX:?}]")
    );
    assert_eq!(
        code(&chain, &query("zhang", &[HJXX], Right::Export, t)),
        format!("ok [{HJXX:?}]")
    );
    // Another department's source: refused without a grant.
    assert_eq!(
        code(&chain, &query("li", &[HJXX], Right::Query, t)),
        "no_grant"
    );
    // A query-only grant to mzj on gaj's conditional sources.
    let g = grant(
        "g1",
        Grantee::Department("mzj".into()),
        GrantScope::ShareType {
            owner: "gaj".into(),
            share_type: ShareType::Conditional,
        },
        false,
    );
    ok(&mut chain, &sysadmin(), TxKind::PutGrant(g));
    assert!(code(&chain, &query("li", &[HJXX], Right::Query, t)).starts_with("ok"));
    assert_eq!(
        code(&chain, &query("li", &[HJXX], Right::Export, t)),
        "no_export_right"
    );
    // Outside the validity period.
    assert_eq!(
        code(&chain, &query("li", &[HJXX], Right::Query, T0 - 1)),
        "grant_expired"
    );
    assert_eq!(
        code(&chain, &query("li", &[HJXX], Right::Query, T0 + 1_000)),
        "grant_expired"
    );
    // A query of several sources fails on the first it may not read.
    assert_eq!(
        code(&chain, &query("zhang", &[HJXX, HYDJ], Right::Query, t)),
        "no_grant"
    );
    // Revoked: refused from the revoking block's time on.
    ok(
        &mut chain,
        &sysadmin(),
        TxKind::RevokeGrant { id: "g1".into() },
    );
    let revoked_at = chain
        .read::<crate::access::StoredGrant>(&keys::grant("g1"))
        .unwrap()
        .revoked_at
        .unwrap();
    assert_eq!(
        code(
            &chain,
            &query("li", &[HJXX], Right::Query, revoked_at.0.max(t))
        ),
        "grant_revoked"
    );
    let e = refused(
        &mut chain,
        &sysadmin(),
        TxKind::RevokeGrant { id: "g1".into() },
        &[],
    );
    assert!(matches!(e, TxError::Invalid { .. }));
}

#[test]
fn grants_by_level_and_by_user_cover_exactly_their_grantees() {
    let mut chain = chain_with_users();
    let t = T0 + 10;
    let g = grant(
        "lvl",
        Grantee::Level {
            department: "mzj".into(),
            min_level: 3,
        },
        GrantScope::Source(HJXX.into()),
        true,
    );
    ok(&mut chain, &sysadmin(), TxKind::PutGrant(g));
    assert!(code(&chain, &query("wang", &[HJXX], Right::Export, t)).starts_with("ok"));
    assert_eq!(
        code(&chain, &query("li", &[HJXX], Right::Query, t)),
        "no_grant"
    );
    let g = grant(
        "li1",
        Grantee::User("li".into()),
        GrantScope::Source(HJXX.into()),
        false,
    );
    ok(&mut chain, &sysadmin(), TxKind::PutGrant(g));
    assert!(code(&chain, &query("li", &[HJXX], Right::Query, t)).starts_with("ok"));
    // Disabled users read nothing, not even their own department's data.
    let mut z = staff("zhang", "gaj", 3);
    z.disabled = true;
    ok(
        &mut chain,
        &sysadmin(),
        put_users(PutMode::Replace, vec![z]),
    );
    assert_eq!(
        code(&chain, &query("zhang", &[HJXX], Right::Query, t)),
        "user_disabled"
    );
    assert_eq!(
        code(&chain, &query("ghost", &[HJXX], Right::Query, t)),
        "unknown_user"
    );
}

#[test]
fn bad_grants_are_refused_and_only_the_sysadmin_grants() {
    let mut chain = chain_with_users();
    let good = grant(
        "g",
        Grantee::Department("mzj".into()),
        GrantScope::Source(HJXX.into()),
        false,
    );
    for key in [admin("gaj"), node("gaj"), outsider()] {
        let e = refused(
            &mut chain,
            &key,
            TxKind::PutGrant(good.clone()),
            &[keys::grant("g")],
        );
        assert!(is_unauthorized(&Err(e)));
    }
    let bad = [
        Grant {
            query: false,
            ..good.clone()
        },
        Grant {
            valid_until: good.valid_from,
            ..good.clone()
        },
        Grant {
            id: "a b".into(),
            ..good.clone()
        },
        Grant {
            grantee: Grantee::Department("zzz".into()),
            ..good.clone()
        },
        Grant {
            grantee: Grantee::User("ghost".into()),
            ..good.clone()
        },
        Grant {
            scope: GrantScope::Source("gaj.none".into()),
            ..good.clone()
        },
        Grant {
            scope: GrantScope::ShareType {
                owner: "gaj".into(),
                share_type: ShareType::Restricted,
            },
            ..good.clone()
        },
    ];
    for g in bad {
        refused(
            &mut chain,
            &sysadmin(),
            TxKind::PutGrant(g),
            &[keys::grant("g")],
        );
    }
    ok(&mut chain, &sysadmin(), TxKind::PutGrant(good.clone()));
    let e = refused(&mut chain, &sysadmin(), TxKind::PutGrant(good), &[]);
    assert!(matches!(e, TxError::AlreadyExists { what: "grant", .. }));
}

fn consent(id: u8, person: &str, grantee: &str, sources: &[&str], until: u64) -> Consent {
    Consent {
        id: hex::encode([id; 32]),
        person: person.into(),
        matter: "jhdj".into(),
        sources: sources.iter().map(|s| s.to_string()).collect(),
        grantee: grantee.into(),
        purpose: "结婚登记".into(),
        issued_at: TimestampMs(T0),
        expires_at: TimestampMs(until),
        verified_by: "sms:1234".into(),
    }
}

fn file(
    user: &str,
    person: &str,
    consent: Option<u8>,
    matter: Option<&str>,
    time: u64,
) -> AccessRequest {
    AccessRequest {
        user: Some(user.into()),
        right: Right::Query,
        sources: vec![HJXX.into(), HYDJ.into()],
        filter: false,
        person: Some(person.into()),
        matter: matter.map(str::to_string),
        consent: consent.map(|c| hex::encode([c; 32])),
        time: TimestampMs(time),
    }
}

#[test]
fn a_person_file_needs_the_persons_consent_for_that_user_and_shows_only_its_sources_r_sec_5() {
    let mut chain = chain_with_users();
    ok(
        &mut chain,
        &sysadmin(),
        TxKind::PutCatalogEntry {
            mode: PutMode::Add,
            entry: CatalogEntry::MatterType(marriage()),
        },
    );
    let p = person_id(7);
    let c = consent(1, &p, "li", &[HJXX, HYDJ], T0 + 300_000);
    // Only a department node records consents.
    for key in [sysadmin(), admin("mzj"), outsider()] {
        let e = refused(
            &mut chain,
            &key,
            TxKind::RecordConsent(c.clone()),
            &[keys::consent(&c.id)],
        );
        assert!(is_unauthorized(&Err(e)));
    }
    let t = T0 + 10;
    assert_eq!(code(&chain, &file("li", &p, None, None, t)), "no_consent");
    assert_eq!(
        code(&chain, &file("li", &p, Some(1), None, t)),
        "no_consent"
    );
    ok(&mut chain, &node("mzj"), TxKind::RecordConsent(c));
    // li (mzj) reads mzj's source; gaj's needs a grant as well.
    assert_eq!(
        code(&chain, &file("li", &p, Some(1), None, t)),
        format!("ok [{HYDJ:?}]")
    );
    assert_eq!(
        code(&chain, &file("li", &p, Some(1), Some("jhdj"), t)),
        format!("ok [{HYDJ:?}]")
    );
    assert_eq!(
        code(&chain, &file("li", &p, Some(1), Some("other"), t)),
        "consent_mismatch"
    );
    assert_eq!(
        code(&chain, &file("wang", &p, Some(1), None, t)),
        "consent_mismatch"
    );
    assert_eq!(
        code(&chain, &file("li", &person_id(8), Some(1), None, t)),
        "consent_mismatch"
    );
    assert_eq!(
        code(&chain, &file("li", &p, Some(1), None, T0 + 300_000)),
        "consent_expired"
    );
    // A consent limited to gaj's source shows nothing li may read: refused with the reason.
    ok(
        &mut chain,
        &node("mzj"),
        TxKind::RecordConsent(consent(2, &p, "li", &[HJXX], T0 + 300_000)),
    );
    assert_eq!(code(&chain, &file("li", &p, Some(2), None, t)), "no_grant");
    // Bad consents.
    let bad = [
        Consent {
            id: "xyz".into(),
            ..consent(3, &p, "li", &[HYDJ], T0 + 1)
        },
        Consent {
            person: "110105194912310000".into(),
            ..consent(3, &p, "li", &[HYDJ], T0 + 1)
        },
        Consent {
            matter: "none".into(),
            ..consent(3, &p, "li", &[HYDJ], T0 + 1)
        },
        consent(3, &p, "ghost", &[HYDJ], T0 + 1),
        consent(3, &p, "li", &[], T0 + 1),
        consent(3, &p, "li", &["x.none"], T0 + 1),
        consent(3, &p, "li", &[HYDJ], T0),
        consent(3, &p, "li", &[HYDJ], T0 + 31 * 24 * 3600 * 1000),
        Consent {
            purpose: "".into(),
            ..consent(3, &p, "li", &[HYDJ], T0 + 1)
        },
    ];
    for c in bad {
        refused(
            &mut chain,
            &node("mzj"),
            TxKind::RecordConsent(c),
            &[keys::consent(&hex::encode([3u8; 32]))],
        );
    }
}

fn entry(state_height: u64) -> AuditEntry {
    AuditEntry {
        time: TimestampMs(T0),
        user: "li".into(),
        department: "mzj".into(),
        action: AuditAction::Access(query("li", &[HYDJ], Right::Query, T0)),
        endpoint: "GET /api/v1/records".into(),
        person: None,
        outcome: "ok".into(),
        results: 3,
        persons: ReturnedPersons::default(),
        fingerprint: Hash([0; 32]),
        state_height,
    }
}

/// `n` distinct valid-looking 18-character ids, ascending.
fn ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("110101199001{i:06}")).collect()
}

/// Issue 15 finding 4: an audit entry lists the persons a read returned — all of them up to
/// [`MAX_AUDIT_PERSONS`], beyond it the first ones with the count and the digest of the whole
/// list; the chain takes the record at the limit and refuses one past it or one inconsistent
/// (R-AUD-1, R-AUD-3).
#[test]
fn finding_4_an_audit_entry_lists_the_persons_returned_within_the_chains_limit_r_aud_3() {
    let mut chain = chain_with_users();
    // Repeats and order do not matter; the list is ascending and distinct.
    let mut shuffled = ids(3);
    shuffled.reverse();
    shuffled.push(shuffled[0].clone());
    let p = ReturnedPersons::of(&shuffled);
    assert_eq!((p.ids.clone(), p.total, p.digest), (ids(3), 3, None));
    assert!(p.lists(&ids(3)[1]) && !p.lists("110101199001999999"));
    // At the limit: every id listed, no digest. One past it: the first ones, the count of
    // all and the digest of all.
    let at = ReturnedPersons::of(ids(MAX_AUDIT_PERSONS));
    assert_eq!(
        (at.ids.len(), at.total, at.digest),
        (MAX_AUDIT_PERSONS, 100, None)
    );
    let over = ReturnedPersons::of(ids(MAX_AUDIT_PERSONS + 1));
    assert_eq!(over.ids, ids(MAX_AUDIT_PERSONS));
    assert_eq!(over.total, MAX_AUDIT_PERSONS as u64 + 1);
    assert_eq!(
        over.digest,
        Some(ReturnedPersons::digest_of(
            ids(MAX_AUDIT_PERSONS + 1).iter()
        ))
    );
    assert_ne!(
        over.digest,
        Some(ReturnedPersons::digest_of(ids(MAX_AUDIT_PERSONS).iter()))
    );
    let with = |persons: ReturnedPersons| AuditEntry {
        persons,
        ..entry(1)
    };
    ok(
        &mut chain,
        &node("mzj"),
        TxKind::AppendAudit {
            entries: vec![with(at.clone()), with(over.clone())],
        },
    );
    assert_eq!(chain.read::<u64>(keys::AUDIT_COUNT), Some(2));
    // Refused: one id too many listed, a repeat, out of order, an overlong id, a count below
    // the list, a digest missing or where none belongs.
    let mut too_many = over.clone();
    too_many.ids = ids(MAX_AUDIT_PERSONS + 1);
    let mut repeat = at.clone();
    repeat.ids[1] = repeat.ids[0].clone();
    let mut unordered = at.clone();
    unordered.ids.swap(0, 1);
    let mut long = ReturnedPersons::of(ids(1));
    long.ids[0].push('0');
    let mut low = at.clone();
    low.total = MAX_AUDIT_PERSONS as u64 - 1;
    let mut no_digest = over.clone();
    no_digest.digest = None;
    let mut stray_digest = at.clone();
    stray_digest.digest = over.digest;
    for bad in [
        too_many,
        repeat,
        unordered,
        long,
        low,
        no_digest,
        stray_digest,
    ] {
        assert!(bad.validate().is_err(), "{bad:?}");
        assert!(bad.clone().clamped().validate().is_ok(), "{bad:?}");
        refused(
            &mut chain,
            &node("mzj"),
            TxKind::AppendAudit {
                entries: vec![with(bad)],
            },
            &[],
        );
    }
    assert_eq!(chain.read::<u64>(keys::AUDIT_COUNT), Some(2));
}

#[test]
fn audit_batches_come_from_department_nodes_and_refer_to_past_state_r_aud_1() {
    let mut chain = chain_with_users();
    ok(
        &mut chain,
        &node("mzj"),
        TxKind::AppendAudit {
            entries: vec![entry(1), entry(0)],
        },
    );
    assert_eq!(chain.read::<u64>(keys::AUDIT_COUNT), Some(2));
    for key in [sysadmin(), admin("mzj"), outsider()] {
        let e = refused(
            &mut chain,
            &key,
            TxKind::AppendAudit {
                entries: vec![entry(1)],
            },
            &[],
        );
        assert!(is_unauthorized(&Err(e)));
    }
    // A decision cannot have read state that is not committed yet.
    let future = chain.ctx().height.0;
    refused(
        &mut chain,
        &node("mzj"),
        TxKind::AppendAudit {
            entries: vec![entry(future)],
        },
        &[],
    );
    refused(
        &mut chain,
        &node("mzj"),
        TxKind::AppendAudit { entries: vec![] },
        &[],
    );
    let mut long = entry(1);
    long.endpoint = "x".repeat(1_000);
    refused(
        &mut chain,
        &node("mzj"),
        TxKind::AppendAudit {
            entries: vec![long],
        },
        &[],
    );
    assert_eq!(chain.read::<u64>(keys::AUDIT_COUNT), Some(2));
}

/// Issue 15 finding 2: every text field of an audit entry is refused one byte past the chain's
/// limit and accepted at it, and [`AuditEntry::clamped`] always makes an entry the chain takes —
/// so no request (a 1 MB path, a long consent header) can make a batch the chain refuses.
#[test]
fn finding_2_every_audit_field_is_limited_and_clamping_always_fits_r_aud_1() {
    use crate::access::{MAX_AUDIT_SOURCES, MAX_AUDIT_TEXT};
    type Edit = fn(&mut AuditEntry, String);
    fn req(e: &mut AuditEntry) -> &mut AccessRequest {
        match &mut e.action {
            AuditAction::Access(r) => r,
            _ => unreachable!("entry() is an access"),
        }
    }
    let edits: [(&str, Edit); 10] = [
        ("user", |e, s| e.user = s),
        ("department", |e, s| e.department = s),
        ("endpoint", |e, s| e.endpoint = s),
        ("outcome", |e, s| e.outcome = s),
        ("person", |e, s| e.person = Some(s)),
        ("request.user", |e, s| req(e).user = Some(s)),
        ("request.person", |e, s| req(e).person = Some(s)),
        ("request.matter", |e, s| req(e).matter = Some(s)),
        ("request.consent", |e, s| req(e).consent = Some(s)),
        ("request.source", |e, s| req(e).sources.push(s)),
    ];
    for (name, edit) in edits {
        let mut at = entry(1);
        edit(&mut at, "x".repeat(MAX_AUDIT_TEXT));
        assert_eq!(at.validate(), Ok(()), "{name} at the limit");
        let mut over = entry(1);
        edit(&mut over, "x".repeat(MAX_AUDIT_TEXT + 1));
        assert!(over.validate().is_err(), "{name} one byte over the limit");
        assert_eq!(over.clone().clamped().validate(), Ok(()), "{name} clamped");
        // Multi-byte text is cut on a character boundary.
        let mut wide = entry(1);
        edit(&mut wide, "人".repeat(MAX_AUDIT_TEXT));
        let c = wide.clamped();
        assert_eq!(c.validate(), Ok(()), "{name} clamped (wide)");
    }
    let mut admin = entry(1);
    admin.action = AuditAction::Admin("y".repeat(MAX_AUDIT_TEXT + 1));
    assert!(admin.validate().is_err());
    assert_eq!(admin.clamped().validate(), Ok(()));
    let mut sources = entry(1);
    req(&mut sources).sources = vec!["s".into(); MAX_AUDIT_SOURCES];
    assert_eq!(sources.validate(), Ok(()));
    req(&mut sources).sources.push("s".into());
    assert!(sources.validate().is_err());
    assert_eq!(sources.clamped().validate(), Ok(()));
    // A clamped entry within the limits is unchanged.
    assert_eq!(entry(1).clamped(), entry(1));
}

proptest::proptest! {
    /// Clamping makes any entry valid, whatever its text (any length, any characters).
    #[test]
    fn finding_2_any_clamped_entry_is_valid(
        texts in proptest::collection::vec(".{0,700}", 10),
        sources in proptest::collection::vec(".{0,600}", 0..300),
    ) {
        let mut e = entry(1);
        e.user = texts[0].clone();
        e.department = texts[1].clone();
        e.endpoint = texts[2].clone();
        e.outcome = texts[3].clone();
        e.person = Some(texts[4].clone());
        if let AuditAction::Access(r) = &mut e.action {
            r.user = Some(texts[5].clone());
            r.person = Some(texts[6].clone());
            r.matter = Some(texts[7].clone());
            r.consent = Some(texts[8].clone());
            r.sources = sources;
        }
        proptest::prop_assert_eq!(e.clamped().validate(), Ok(()));
    }
}
