//! Issue 15, findings 4 and 7, through a real node: a query that names one person needs that
//! person's consent like the person file (R-SEC-5), every read's audit entry lists the persons
//! it returned so it is in their access history (R-AUD-1, R-AUD-3), and a refusal says nothing
//! about which restricted source holds the person (R-SEC-3). Bulk harvesting (finding 7): a
//! daily row quota per user, the export right past the first rows of a query, keyset cursors,
//! and no database text in any answer.

use std::time::{Duration, Instant};

use govchain_chaincode::access::{Consent, Role, User};
use govchain_chaincode::business::{CatalogEntry, MatterType, PutMode, SourceFields};
use govchain_chaincode::TxKind;
use govchain_ledger::{Keypair, TimestampMs};
use govchain_node::client::{records_tx, sign_tx, urlencode, Client};
use govchain_node::synth::Generator;
use govchain_tests::{error_code as code, now_ms, Net, NodeProc};
use serde_json::{json, Value};

const PASSWORD: &str = "Secret-2026";

/// A node of one department with users `li` (mzj staff) and `shen` (gaj auditor).
struct World {
    net: Net,
    _node: NodeProc,
    rt: tokio::runtime::Runtime,
    client: Client,
}

impl World {
    fn start(tune: impl Fn(&mut govchain_genesis::config::NodeConfig)) -> World {
        let net = Net::generate(1);
        net.tune(1, tune);
        let node = NodeProc::start(&net, 1);
        let rt = tokio::runtime::Runtime::new().unwrap();
        let client = node.client();
        let w = World {
            net,
            _node: node,
            rt,
            client,
        };
        let user = |id: &str, dept: &str, roles: Vec<Role>| User {
            id: id.into(),
            name: format!("测试{id}"),
            department: dept.into(),
            level: 1,
            roles,
            disabled: false,
            key: None,
        };
        w.commit(
            &w.net.key("sysadmin"),
            TxKind::PutUsers {
                mode: PutMode::Add,
                users: vec![
                    user("li", "mzj", vec![Role::Staff]),
                    user("shen", "gaj", vec![Role::Auditor]),
                ],
            },
        );
        for id in ["li", "shen"] {
            let (s, b) =
                w.rt.block_on(w.client.call_signed(
                    "PUT",
                    &format!("users/{id}/password"),
                    &w.net.key("sysadmin"),
                    Some(&json!({"password": PASSWORD})),
                ))
                .unwrap();
            assert_eq!(s, 200, "{b}");
        }
        w
    }

    fn commit(&self, key: &Keypair, kind: TxKind) -> u64 {
        let tx = sign_tx(key, &self.net.genesis.chain_id, &kind);
        let (status, body) = self.rt.block_on(self.client.submit_status(&tx)).unwrap();
        assert_eq!(status, 200, "{} refused: {body}", kind.name());
        body["height"].as_u64().unwrap()
    }

    /// `GET path` as user `id` (a fresh session), with a consent if given.
    fn get(&self, id: &str, path: &str, consent: Option<&str>) -> (u16, Value) {
        let (s, b) = self
            .rt
            .block_on(self.client.call(
                "POST",
                "login",
                &[],
                Some(&json!({"user": id, "password": PASSWORD})),
            ))
            .unwrap();
        assert_eq!(s, 200, "login {id}: {b}");
        let mut h = vec![(
            "authorization",
            format!("Bearer {}", b["token"].as_str().unwrap()),
        )];
        if let Some(c) = consent {
            h.push(("x-govchain-consent", c.to_string()));
        }
        self.rt
            .block_on(self.client.call("GET", path, &h, None))
            .unwrap()
    }

    fn status(&self) -> Value {
        self.rt.block_on(self.client.get_json("status")).unwrap()
    }

    /// Waits until every audit entry is on chain and projected (twice in a row).
    fn audit_settled(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut quiet = 0;
        while quiet < 2 {
            let s = self.status();
            let settled = s["audit_backlog"] == 0
                && s["mempool_txs"] == 0
                && s["projected_height"] == s["height"];
            quiet = if settled { quiet + 1 } else { 0 };
            assert!(Instant::now() < deadline, "audit never settled: {s}");
            std::thread::sleep(Duration::from_millis(700));
        }
    }

    /// Waits until the projection has every committed block (reads nothing: no quota used).
    fn projected(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = self.status();
            if s["projected_height"] == s["height"] {
                return;
            }
            assert!(Instant::now() < deadline, "never projected: {s}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `GET path` signed by the system administrator's key.
    fn admin_get(&self, path: &str) -> (u16, Value) {
        self.rt
            .block_on(self.client.get_signed(path, &self.net.key("sysadmin")))
            .unwrap()
    }

    /// A consent of `person` for `li` on matter `dbsq`, recorded by the node.
    fn consent(&self, n: u8, person: &str) -> String {
        let id = format!("{n:02x}").repeat(32);
        let c = Consent {
            id: id.clone(),
            person: person.into(),
            matter: "dbsq".into(),
            sources: vec!["gaj.wffz".into(), "mzj.dbjz".into()],
            grantee: "li".into(),
            purpose: "办理低保申请".into(),
            issued_at: TimestampMs(now_ms() - 1_000),
            expires_at: TimestampMs(now_ms() + 3_600_000),
            verified_by: "sms:0000".into(),
        };
        self.commit(&self.net.node_key(1), TxKind::RecordConsent(c));
        id
    }
}

/// Asserts a refusal: the status, the code, and nothing but the error.
fn refused(r: &(u16, Value), status: u16, want: &str) {
    assert_eq!(r.0, status, "expected {status} {want}: {}", r.1);
    assert_eq!(code(&r.1), want, "{}", r.1);
    let keys: Vec<&String> = r.1.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["error"], "a refusal carries nothing else: {}", r.1);
}

/// Persons 0..`n` of the generator in gaj's household register and mzj's subsistence register;
/// person 0 alone also in gaj's restricted record of offences (不予共享). Returns the ids and
/// person 0's name.
fn residents(w: &World, n: u64) -> (Vec<String>, String) {
    let chain = w.net.genesis.chain_id.clone();
    let (hjxx, dbjz, wffz) = (
        w.net.source("gaj.hjxx"),
        w.net.source("mzj.dbjz"),
        w.net.source("gaj.wffz"),
    );
    let mut gen = Generator::new(21);
    let ids: Vec<String> = (0..n)
        .map(|i| gen.record_for(&hjxx, i).fields["sfzh"].clone())
        .collect();
    let name = gen.record_for(&hjxx, 0).fields["xm"].clone();
    for (key, source, n) in [
        (w.net.node_key(1), &hjxx, n),
        (w.net.key("mzj-admin"), &dbjz, n),
        (w.net.node_key(1), &wffz, 1),
    ] {
        let records: Vec<_> = (0..n).map(|i| gen.record_for(source, i)).collect();
        for (r, id) in records.iter().zip(&ids) {
            assert_eq!(
                &r.fields["sfzh"], id,
                "person i is the same in every source"
            );
        }
        let tx = records_tx(&key, &chain, source, records);
        assert_eq!(
            w.rt.block_on(w.client.submit(&tx, true)).unwrap().status,
            "committed"
        );
    }
    // The matter whose consent covers mzj's register and gaj's restricted one.
    let fields = vec!["sfzh".to_string(), "xm".to_string()];
    w.commit(
        &w.net.key("sysadmin"),
        TxKind::PutCatalogEntry {
            mode: PutMode::Add,
            entry: CatalogEntry::MatterType(MatterType {
                id: "dbsq".into(),
                name: "低保申请".into(),
                department: "mzj".into(),
                sources: vec![
                    SourceFields {
                        source: "gaj.wffz".into(),
                        fields: fields.clone(),
                    },
                    SourceFields {
                        source: "mzj.dbjz".into(),
                        fields,
                    },
                ],
                materials: vec![],
            }),
        },
    );
    w.projected();
    (ids, name)
}

/// The answer with the person's id replaced, to compare refusals about two persons.
fn without(r: &(u16, Value), id: &str) -> (u16, String) {
    (r.0, r.1.to_string().replace(id, "<ID>"))
}

/// Issue 15 finding 4 (R-SEC-5, R-SEC-3): a search for a whole national ID and a combined query
/// with an equality on the person field need the person's consent like the person file —
/// refused `no_consent` without it, answered with it (only what the consent and the caller's
/// rights cover: never the restricted source) — and the refusal is the same whether or not a
/// restricted source holds the person.
#[test]
fn finding_4_a_query_naming_one_person_needs_the_persons_consent() {
    let w = World::start(|_| {});
    let (p, _) = residents(&w, 3);
    let (with_wffz, without_wffz) = (&p[0], &p[1]);

    for id in [with_wffz, without_wffz] {
        refused(
            &w.get("li", &format!("search?q={id}"), None),
            403,
            "no_consent",
        );
        refused(
            &w.get("li", &format!("records?source=mzj.dbjz&eq=sfzh:{id}"), None),
            403,
            "no_consent",
        );
        // What would read or walk persons without naming one is refused outright (review of
        // finding 4): ranges on an ID field (a one-ID range, an open one read a row at a
        // time), a value that is no ID (MySQL pads "ID " to "ID"), a 17-digit search.
        for (path, want) in [
            (
                format!("records?source=mzj.dbjz&from=sfzh:{id}&to=sfzh:{id}"),
                "id_range",
            ),
            (
                format!("records?source=mzj.dbjz&from=sfzh:{id}&page_size=1"),
                "id_range",
            ),
            (
                format!("records?source=mzj.dbjz&eq=sfzh:{id}%20"),
                "bad_person_id",
            ),
            (format!("search?q={}", &id[..17]), "partial_id"),
        ] {
            refused(&w.get("li", &path, None), 400, want);
        }
        refused(
            &w.get(
                "li",
                &format!("records/export?source=mzj.dbjz&eq=sfzh:{id}&format=csv"),
                None,
            ),
            403,
            "no_consent",
        );
    }
    // The same refusal, whether or not gaj's restricted source holds the person.
    for path in [
        "search?q={}",
        "records?source=mzj.dbjz&eq=sfzh:{}",
        "records?source=gaj.wffz&eq=sfzh:{}",
        "records?source=gaj.hjxx&eq=sfzh:{}",
    ] {
        let a = w.get("li", &path.replace("{}", with_wffz), None);
        let b = w.get("li", &path.replace("{}", without_wffz), None);
        assert_eq!(without(&a, with_wffz), without(&b, without_wffz), "{path}");
    }

    // With the consent: the person's rows of what li may read, never the restricted source.
    let consents = [w.consent(1, with_wffz), w.consent(2, without_wffz)];
    for (id, consent) in [with_wffz, without_wffz].into_iter().zip(&consents) {
        let (s, b) = w.get("li", &format!("search?q={id}"), Some(consent));
        assert_eq!(s, 200, "{b}");
        let hits = b["results"].as_array().unwrap();
        assert!(!hits.is_empty(), "{b}");
        assert!(
            hits.iter()
                .all(|h| h["record"]["source"] == "mzj.dbjz" && h["record"]["person_id"] == *id),
            "only mzj's register of the person: {b}"
        );
        let (s, b) = w.get(
            "li",
            &format!("records?source=mzj.dbjz&eq=sfzh:{id}"),
            Some(consent),
        );
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["results"].as_array().unwrap().len(), 1, "{b}");
        // A consent is for its own person only.
        let other = if id == with_wffz {
            without_wffz
        } else {
            with_wffz
        };
        refused(
            &w.get("li", &format!("search?q={other}"), Some(consent)),
            403,
            "consent_mismatch",
        );
    }
    // With consent, the restricted source is refused by name (the caller named it) the same
    // way whether or not it holds the person.
    let a = w.get(
        "li",
        &format!("records?source=gaj.wffz&eq=sfzh:{with_wffz}"),
        Some(&consents[0]),
    );
    let b = w.get(
        "li",
        &format!("records?source=gaj.wffz&eq=sfzh:{without_wffz}"),
        Some(&consents[1]),
    );
    refused(&a, 403, "no_grant");
    assert_eq!(without(&a, with_wffz), without(&b, without_wffz));
    // A query naming two persons cannot be consented at once.
    refused(
        &w.get(
            "li",
            &format!("records?source=mzj.dbjz&eq=sfzh:{with_wffz}&eq=sfzh:{without_wffz}"),
            Some(&consents[0]),
        ),
        400,
        "too_many_persons",
    );
}

/// Issue 15 finding 4 (R-AUD-1, R-AUD-3): a search and a combined query that return person P's
/// records — without naming P, so without P's consent — are in P's access history, with the
/// user and endpoint, and not in the history of a person they did not return.
#[test]
fn finding_4_a_search_or_query_that_returned_a_person_is_in_their_access_history() {
    let w = World::start(|_| {});
    let (p, name) = residents(&w, 3);
    let (s, b) = w.get("li", &format!("search?q={}", urlencode(&name)), None);
    assert_eq!(s, 200, "{b}");
    assert!(
        b["results"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["record"]["person_id"] == p[0].as_str()),
        "the name finds person 0: {b}"
    );
    let (s, b) = w.get("li", "records?source=mzj.dbjz&page_size=1", None);
    assert_eq!(s, 200, "{b}");
    let first = b["results"][0]["person_id"].as_str().unwrap().to_string();
    w.audit_settled();
    let history = |id: &str| {
        let (s, b) = w.get("shen", &format!("persons/{id}/accesses"), None);
        assert_eq!(s, 200, "{b}");
        b["accesses"].as_array().unwrap().clone()
    };
    let reads = |accesses: &[Value], endpoint: &str| {
        accesses
            .iter()
            .filter(|a| {
                a["access"]["endpoint"] == endpoint
                    && a["access"]["user"] == "li"
                    && a["access"]["outcome"] == "ok"
            })
            .count()
    };
    let h0 = history(&p[0]);
    assert_eq!(reads(&h0, "GET /api/v1/search"), 1, "{h0:?}");
    let hf = history(&first);
    assert!(reads(&hf, "GET /api/v1/records") >= 1, "{hf:?}");
    // The page of one record returned one person only.
    for other in p.iter().filter(|id| **id != first) {
        assert_eq!(reads(&history(other), "GET /api/v1/records"), 0, "{other}");
    }
    // Each access carries its proof and the number of persons the read returned.
    let a = h0
        .iter()
        .find(|a| a["access"]["endpoint"] == "GET /api/v1/search")
        .unwrap();
    assert!(a["access"]["persons"].as_u64().unwrap() >= 1, "{a}");
    assert!(a["proof"]["entry"]["persons"]["ids"]
        .as_array()
        .unwrap()
        .iter()
        .any(|id| *id == p[0].as_str()));
}

/// Issue 15 finding 7 (R-SEC-3, R-AUD-1): a user reads `[api] max_rows_per_user_per_day` rows a
/// day on a node, not one more: the read past it returns nothing, is refused 429
/// `row_quota_exceeded` and is audited; another user counts apart.
#[test]
fn finding_7_the_daily_row_quota_holds_at_the_limit_and_refuses_one_more() {
    const QUOTA: u64 = 5;
    let w = World::start(|c| c.api.max_rows_per_user_per_day = QUOTA);
    residents(&w, 6);
    let (s, b) = w.get("li", "records?source=mzj.dbjz&page_size=4", None);
    assert_eq!(
        (s, b["results"].as_array().map(Vec::len)),
        (200, Some(4)),
        "{b}"
    );
    let (s, b) = w.get("li", "records?source=mzj.dbjz&page_size=1", None);
    assert_eq!(
        (s, b["results"].as_array().map(Vec::len)),
        (200, Some(1)),
        "at the limit: {b}"
    );
    refused(
        &w.get("li", "records?source=mzj.dbjz&page_size=1", None),
        429,
        "row_quota_exceeded",
    );
    // An answer without rows is no row; the auditor's reads are not li's.
    let (s, b) = w.get("li", "search?q=%E4%B8%8D%E5%AD%98%E5%9C%A8", None);
    assert_eq!(
        (s, b["results"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{b}"
    );
    w.audit_settled();
    let (s, b) = w.get("shen", "audit?user=li&outcome=row_quota_exceeded", None);
    assert_eq!(s, 200, "{b}");
    let entries = b["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{b}");
    assert_eq!(
        entries[0]["results"], 0,
        "the refused read returned nothing"
    );
    assert_eq!(entries[0]["endpoint"], "GET /api/v1/records");
}

/// Issue 15 finding 7 (R-SEC-4): with a query-only grant, a query's first
/// `[api] query_rows_without_export` rows are readable and a page reaching past them needs the
/// export right — by page number or by cursor; cursors page through a source exactly as one
/// page does; a malformed cursor is 400 `bad_cursor`, a page too deep 400 `page_too_deep`.
#[test]
fn finding_7_paging_past_the_first_rows_needs_the_export_right_and_cursors_page_by_key() {
    const ROWS: u64 = 3;
    let w = World::start(|c| c.api.query_rows_without_export = ROWS);
    residents(&w, 6);
    let now = now_ms();
    w.commit(
        &w.net.key("sysadmin"),
        TxKind::PutGrant(govchain_chaincode::access::Grant {
            id: "g-li-hjxx".into(),
            grantee: govchain_chaincode::access::Grantee::User("li".into()),
            scope: govchain_chaincode::access::GrantScope::Source("gaj.hjxx".into()),
            query: true,
            export: false,
            valid_from: TimestampMs(now - 1_000),
            valid_until: TimestampMs(now + 3_600_000),
        }),
    );
    let q = "records?source=gaj.hjxx";
    let (s, b) = w.get("li", &format!("{q}&page_size=3"), None);
    assert_eq!(
        (s, b["results"].as_array().map(Vec::len)),
        (200, Some(3)),
        "at the limit: {b}"
    );
    let next = b["next"]
        .as_str()
        .expect("a full page has a next cursor")
        .to_string();
    refused(
        &w.get("li", &format!("{q}&page_size=1&after={next}"), None),
        403,
        "no_export_right",
    );
    refused(
        &w.get("li", &format!("{q}&page_size=4"), None),
        403,
        "no_export_right",
    );
    refused(
        &w.get("li", &format!("{q}&page=2&page_size=3"), None),
        403,
        "no_export_right",
    );
    // li's own department's source carries the export right: paging on is allowed.
    let (s, b) = w.get("li", "records?source=mzj.dbjz&page=2&page_size=3", None);
    assert_eq!(
        (s, b["results"].as_array().map(Vec::len)),
        (200, Some(3)),
        "{b}"
    );

    // Cursors: page by page, the same records in the same order as one page.
    let (s, all) = w.admin_get("records?source=mzj.dbjz&page_size=6");
    assert_eq!(s, 200, "{all}");
    let keys = |b: &Value| -> Vec<String> {
        b["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["record_key"].as_str().unwrap().to_string())
            .collect()
    };
    let mut paged = Vec::new();
    let mut path = "records?source=mzj.dbjz&page_size=4".to_string();
    loop {
        let (s, b) = w.admin_get(&path);
        assert_eq!(s, 200, "{b}");
        paged.extend(keys(&b));
        match b["next"].as_str() {
            Some(n) => path = format!("records?source=mzj.dbjz&page_size=4&after={n}"),
            None => break,
        }
    }
    assert_eq!(paged, keys(&all));
    assert_eq!(paged.len(), 6);
    // A cursor is bound to its query and user, and must be one.
    for bad in ["zz", "00", &"ab".repeat(40)] {
        refused(
            &w.admin_get(&format!("records?source=mzj.dbjz&after={bad}")),
            400,
            "bad_cursor",
        );
    }
    refused(
        &w.get("li", &format!("{q}&after={next}&eq=xb:男"), None),
        400,
        "bad_cursor",
    );
    refused(
        &w.get("li", &format!("records?source=mzj.dbjz&after={next}"), None),
        400,
        "bad_cursor",
    );
    refused(
        &w.admin_get(&format!("records?source=gaj.hjxx&after={next}")),
        400,
        "bad_cursor",
    );
    refused(
        &w.admin_get(&format!("{q}&page=2&after={next}")),
        400,
        "bad_query",
    );
    refused(
        &w.admin_get(&format!("{q}&page=102&page_size=100")),
        400,
        "page_too_deep",
    );
    let (s, b) = w.admin_get(&format!("{q}&page=101&page_size=100"));
    assert_eq!(s, 200, "10,000 rows skipped is the deepest page: {b}");
    // The audit search pages by cursor too.
    w.audit_settled();
    let (s, b) = w.get("shen", "audit?page_size=2", None);
    assert_eq!(s, 200, "{b}");
    let next = b["next"].as_str().unwrap().to_string();
    let (s, b2) = w.get("shen", &format!("audit?page_size=2&after={next}"), None);
    assert_eq!(s, 200, "{b2}");
    let pos = |e: &Value| {
        (
            e["time"].as_i64().unwrap(),
            e["height"].as_i64().unwrap(),
            e["tx_index"].as_i64().unwrap(),
            e["entry_index"].as_i64().unwrap(),
        )
    };
    let last = pos(&b["entries"][1]);
    assert!(
        b2["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| pos(e) < last),
        "{b2}"
    );
}

/// Issue 15 finding 7: a database failure answers 500 `db_error` with a reference to the
/// node's log, and no SQL, table name or database message (they are in the log).
#[test]
fn finding_7_a_database_error_returns_no_sql_text() {
    let w = World::start(|_| {});
    residents(&w, 3);
    let db = w.net.data_dir(1).join("projection.sqlite");
    assert!(db.exists(), "{}", db.display());
    let url = format!("sqlite://{}", db.display());
    w.rt.block_on(async {
        let p = govchain_api::projection::Projection::open(&url)
            .await
            .unwrap();
        sqlx::query("DROP TABLE record_fields")
            .execute(p.pool())
            .await
            .unwrap();
    });
    let r = w.get(
        "li",
        "records?source=mzj.dbjz&eq=xm:%E5%BC%A0%E4%B8%89",
        None,
    );
    refused(&r, 500, "db_error");
    let text = r.1.to_string().to_lowercase();
    for leak in [
        "record_fields",
        "select",
        "no such table",
        "sqlite",
        "sql",
        "database:",
    ] {
        assert!(!text.contains(leak), "{leak:?} in {text}");
    }
    assert!(text.contains("reference"), "{text}");
}

/// Issue 15 finding 4 (R-SEC-3, R-SEC-5): with a consent, the person file of a person held only
/// by a restricted source the caller may not read answers exactly as for a person held
/// nowhere — it does not name the restricted source, nor tell that it holds the person.
#[test]
fn finding_4_a_person_file_does_not_reveal_a_restricted_source_holding_the_person() {
    let w = World::start(|_| {});
    residents(&w, 3);
    let wffz = w.net.source("gaj.wffz");
    let mut gen = Generator::new(21);
    let only_restricted = gen.record_for(&wffz, 9);
    let held = only_restricted.fields["sfzh"].clone();
    let nowhere = gen.record_for(&wffz, 8).fields["sfzh"].clone();
    let tx = records_tx(
        &w.net.node_key(1),
        &w.net.genesis.chain_id,
        &wffz,
        vec![only_restricted],
    );
    assert_eq!(
        w.rt.block_on(w.client.submit(&tx, true)).unwrap().status,
        "committed"
    );
    w.projected();
    let (c1, c2) = (w.consent(3, &held), w.consent(4, &nowhere));
    let a = w.get("li", &format!("persons/{held}"), Some(&c1));
    let b = w.get("li", &format!("persons/{nowhere}"), Some(&c2));
    refused(&b, 404, "not_found");
    assert_eq!(without(&a, &held), without(&b, &nowhere), "{a:?}");
    assert!(!a.1.to_string().contains("wffz"), "{a:?}");
}
