//! Users, grants, resident consent and the audit trail end to end, through a real node
//! (R-SEC-1…5, R-SEC-7, R-AUD-1…4): every denial path answers 401/403 with a clear code, returns
//! no data and leaves an audit entry of the denial on chain; every call that returned personal
//! data has its audit entry on chain; the auditor's replay re-decides every access the same way;
//! one access's proof verifies offline with only the genesis file and fails on any altered byte;
//! the projection rebuilt from genesis has the live one's digest.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use govchain_api::auth::{sign_request, KEY_HEADER, SIGNATURE_HEADER};
use govchain_chaincode::access::{Consent, Grant, GrantScope, Grantee, Role};
use govchain_chaincode::business::{CatalogEntry, MatterType, PutMode, SourceFields};
use govchain_chaincode::TxKind;
use govchain_ledger::{Keypair, TimestampMs};
use govchain_node::client::{records_tx, sign_tx, Client};
use govchain_node::synth::Generator;
use govchain_tests::{error_code as code, govchain_bin, now_ms, user, Net, NodeProc};
use serde_json::{json, Value};

const PASSWORD: &str = "Secret-2026";
/// Session lifetime of the node under test (short, so expiry is tested for real).
const SESSION_S: u64 = 4;

struct World {
    net: Net,
    node: NodeProc,
    rt: tokio::runtime::Runtime,
    client: Client,
}

impl World {
    /// Commits `kind` signed by `key`.
    fn commit(&self, key: &Keypair, kind: TxKind) -> u64 {
        let tx = sign_tx(key, &self.net.genesis.chain_id, &kind);
        let (status, body) = self.rt.block_on(self.client.submit_status(&tx)).unwrap();
        assert_eq!(status, 200, "{} refused: {body}", kind.name());
        body["height"].as_u64().unwrap()
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: Option<Value>,
    ) -> (u16, Value) {
        self.rt
            .block_on(self.client.call(method, path, headers, body.as_ref()))
            .unwrap()
    }

    fn signed(&self, method: &str, path: &str, key: &Keypair, body: Option<Value>) -> (u16, Value) {
        self.rt
            .block_on(self.client.call_signed(method, path, key, body.as_ref()))
            .unwrap()
    }

    fn login(&self, id: &str) -> String {
        let (s, b) = self.call(
            "POST",
            "login",
            &[],
            Some(json!({"user": id, "password": PASSWORD})),
        );
        assert_eq!(s, 200, "login {id}: {b}");
        b["token"].as_str().unwrap().to_string()
    }

    /// A request by user `id` with a fresh session, and a consent if given.
    fn as_user(
        &self,
        id: &str,
        method: &str,
        path: &str,
        consent: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut h = vec![("authorization", format!("Bearer {}", self.login(id)))];
        if let Some(c) = consent {
            h.push(("x-govchain-consent", c.to_string()));
        }
        self.call(method, path, &h, body)
    }

    fn status(&self) -> Value {
        self.rt.block_on(self.client.get_json("status")).unwrap()
    }

    /// Waits until the audit queue is on chain and projected: nothing queued, nothing in the
    /// mempool, everything projected, twice in a row across more than one flush interval.
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

    /// Audit entries matching a query string (as the auditor).
    fn audit(&self, query: &str) -> Vec<Value> {
        let (s, b) = self.as_user(
            "shen",
            "GET",
            &format!("audit?page_size=100&{query}"),
            None,
            None,
        );
        assert_eq!(s, 200, "{b}");
        b["entries"].as_array().unwrap().clone()
    }
}

/// Asserts a refusal: the status, the code, and no data in the answer.
fn refused(r: (u16, Value), status: u16, want: &str) {
    assert_eq!(r.0, status, "expected {status} {want}: {}", r.1);
    assert_eq!(code(&r.1), want, "{}", r.1);
    let keys: Vec<&String> = r.1.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["error"], "a refusal carries nothing else: {}", r.1);
}

fn sms_code(path: &Path, person: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if let Some(line) = text.lines().rev().find(|l| l.contains(person)) {
                let v: Value = serde_json::from_str(line).unwrap();
                return v["code"].as_str().unwrap().to_string();
            }
        }
        assert!(
            Instant::now() < deadline,
            "no SMS for {person} in {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn denials_consent_audit_replay_and_offline_proofs_r_sec_1_to_5_r_aud_1_to_4() {
    let net = Net::generate(1);
    let sms = net.dir.path().join("sms.jsonl");
    net.tune(1, |c| {
        c.api.session_ttl_s = SESSION_S;
        c.api.sms = Some(format!("file:{}", sms.display()));
    });
    let node = NodeProc::start(&net, 1);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = node.client();
    let admin = net.key("sysadmin");
    let mut w = World {
        net,
        node,
        rt,
        client,
    };
    let chain = w.net.genesis.chain_id.clone();

    // Records of two residents in a gaj source (the household registry, with the phone
    // number consent codes go to) and a mzj source.
    let (hjxx, dbjz) = (w.net.source("gaj.hjxx"), w.net.source("mzj.dbjz"));
    let mut gen = Generator::new(11);
    let p: Vec<String> = (0..2)
        .map(|i| gen.record_for(&hjxx, i).fields["sfzh"].clone())
        .collect();
    let gaj_records: Vec<_> = (0..2)
        .map(|i| {
            let mut r = gen.record_for(&hjxx, i);
            r.fields.insert("lxdh".into(), format!("1380000000{i}"));
            r
        })
        .collect();
    let phone = gaj_records[0].fields["lxdh"].clone();
    let mzj_records: Vec<_> = (0..2).map(|i| gen.record_for(&dbjz, i)).collect();
    let tx = records_tx(&w.net.node_key(1), &chain, &hjxx, gaj_records);
    assert_eq!(
        w.rt.block_on(w.client.submit(&tx, true)).unwrap().status,
        "committed"
    );
    let tx = records_tx(&w.net.key("mzj-admin"), &chain, &dbjz, mzj_records);
    assert_eq!(
        w.rt.block_on(w.client.submit(&tx, true)).unwrap().status,
        "committed"
    );

    // Users (R-SEC-1, R-SEC-2): staff of gaj and mzj, an auditor, a system account of mzj.
    let sp = Keypair::from_seed([42; 32]);
    let mut account = user("sp.mzj", "mzj", 1, vec![Role::System]);
    account.key = Some(sp.public());
    let users = vec![
        user("zhang", "gaj", 3, vec![Role::Staff]),
        user("li", "mzj", 1, vec![Role::Staff]),
        user("wang", "mzj", 5, vec![Role::Staff]),
        user("shen", "gaj", 2, vec![Role::Auditor]),
        account,
    ];
    w.commit(
        &admin,
        TxKind::PutUsers {
            mode: PutMode::Add,
            users,
        },
    );
    for id in ["zhang", "li", "wang", "shen"] {
        let (s, b) = w.signed(
            "PUT",
            &format!("users/{id}/password"),
            &admin,
            Some(json!({"password": PASSWORD})),
        );
        assert_eq!(s, 200, "{b}");
    }
    // A weak password is refused; another user's password is not theirs to set.
    refused(
        w.signed(
            "PUT",
            "users/li/password",
            &admin,
            Some(json!({"password": "short"})),
        ),
        400,
        "weak_password",
    );
    refused(
        w.as_user(
            "li",
            "PUT",
            "users/wang/password",
            None,
            Some(json!({"password": "Another-2026"})),
        ),
        403,
        "forbidden",
    );
    let matter = MatterType {
        id: "dbsq".into(),
        name: "低保申请".into(),
        department: "mzj".into(),
        sources: vec![
            SourceFields {
                source: "gaj.hjxx".into(),
                fields: vec!["sfzh".into(), "xm".into()],
            },
            SourceFields {
                source: "mzj.dbjz".into(),
                fields: vec!["sfzh".into(), "lxdh".into()],
            },
        ],
        materials: vec![],
    };
    w.commit(
        &admin,
        TxKind::PutCatalogEntry {
            mode: PutMode::Add,
            entry: CatalogEntry::MatterType(matter),
        },
    );

    let gaj_query = "records?source=gaj.hjxx&eq=xb:男";
    let mzj_query = "records?source=mzj.dbjz";
    let mut reads: Vec<(&str, String)> = Vec::new(); // (user, endpoint) that returned data

    // --- No session, bad session, expired session.
    refused(w.call("GET", gaj_query, &[], None), 401, "unauthenticated");
    refused(
        w.call(
            "GET",
            gaj_query,
            &[("authorization", "Bearer 00ff".into())],
            None,
        ),
        401,
        "no_session",
    );
    let old = w.login("zhang");
    std::thread::sleep(Duration::from_millis(SESSION_S * 1000 + 200));
    refused(
        w.call(
            "GET",
            gaj_query,
            &[("authorization", format!("Bearer {old}"))],
            None,
        ),
        401,
        "session_expired",
    );
    // A logged-out session is gone.
    let t = w.login("zhang");
    assert_eq!(
        w.call(
            "POST",
            "logout",
            &[("authorization", format!("Bearer {t}"))],
            None
        )
        .0,
        200
    );
    refused(
        w.call(
            "GET",
            gaj_query,
            &[("authorization", format!("Bearer {t}"))],
            None,
        ),
        401,
        "no_session",
    );

    // --- Own department: allowed (R-SEC-3).
    let (s, b) = w.as_user("zhang", "GET", gaj_query, None, None);
    assert_eq!(s, 200, "{b}");
    reads.push(("zhang", "GET /api/v1/records".into()));
    let (s, b) = w.as_user("li", "GET", mzj_query, None, None);
    assert_eq!((s, b["results"].as_array().unwrap().len()), (200, 2), "{b}");
    reads.push(("li", "GET /api/v1/records".into()));

    // --- Wrong password, then lockout after five.
    for _ in 0..5 {
        refused(
            w.call(
                "POST",
                "login",
                &[],
                Some(json!({"user": "wang", "password": "Wrong-1234"})),
            ),
            401,
            "bad_credentials",
        );
    }
    refused(
        w.call(
            "POST",
            "login",
            &[],
            Some(json!({"user": "wang", "password": PASSWORD})),
        ),
        403,
        "locked",
    );
    refused(
        w.call(
            "POST",
            "login",
            &[],
            Some(json!({"user": "nobody", "password": PASSWORD})),
        ),
        401,
        "bad_credentials",
    );

    // --- Disabled user: an open session stops working and login is refused.
    let open = w.login("zhang");
    let mut z = user("zhang", "gaj", 3, vec![Role::Staff]);
    z.disabled = true;
    w.commit(
        &admin,
        TxKind::PutUsers {
            mode: PutMode::Replace,
            users: vec![z.clone()],
        },
    );
    refused(
        w.call(
            "GET",
            gaj_query,
            &[("authorization", format!("Bearer {open}"))],
            None,
        ),
        403,
        "user_disabled",
    );
    refused(
        w.call(
            "POST",
            "login",
            &[],
            Some(json!({"user": "zhang", "password": PASSWORD})),
        ),
        403,
        "user_disabled",
    );
    z.disabled = false;
    w.commit(
        &admin,
        TxKind::PutUsers {
            mode: PutMode::Replace,
            users: vec![z],
        },
    );

    // --- Other department without grant; with a query-only grant; export without the right;
    // an expired grant; a revoked grant (R-SEC-3, R-SEC-4).
    refused(
        w.as_user("li", "GET", gaj_query, None, None),
        403,
        "no_grant",
    );
    let now = now_ms();
    let g = |id: &str, grantee: Grantee, source: &str, export: bool, from: u64, until: u64| Grant {
        id: id.into(),
        grantee,
        scope: GrantScope::Source(source.into()),
        query: true,
        export,
        valid_from: TimestampMs(from),
        valid_until: TimestampMs(until),
    };
    w.commit(
        &admin,
        TxKind::PutGrant(g(
            "g1",
            Grantee::Department("mzj".into()),
            "gaj.hjxx",
            false,
            now - 1000,
            now + 3_600_000,
        )),
    );
    let (s, b) = w.as_user("li", "GET", gaj_query, None, None);
    assert_eq!(s, 200, "{b}");
    reads.push(("li", "GET /api/v1/records".into()));
    refused(
        w.as_user(
            "li",
            "GET",
            "records/export?source=gaj.hjxx&format=csv",
            None,
            None,
        ),
        403,
        "no_export_right",
    );
    w.commit(
        &admin,
        TxKind::PutGrant(g(
            "g-old",
            Grantee::User("li".into()),
            "gaj.ldrk",
            true,
            now - 7_200_000,
            now - 3_600_000,
        )),
    );
    refused(
        w.as_user("li", "GET", "records?source=gaj.ldrk", None, None),
        403,
        "grant_expired",
    );
    w.commit(&admin, TxKind::RevokeGrant { id: "g1".into() });
    refused(
        w.as_user("li", "GET", gaj_query, None, None),
        403,
        "grant_revoked",
    );
    // Fuzzy search leaves out what the caller may not read.
    let (s, b) = w.as_user(
        "li",
        "GET",
        &format!("search?q={}", &p[0][6..14]),
        None,
        None,
    );
    assert_eq!(s, 200, "{b}");
    let hits = b["results"].as_array().unwrap();
    assert!(
        !hits.is_empty() && hits.iter().all(|h| h["record"]["source"] == "mzj.dbjz"),
        "{b}"
    );
    reads.push(("li", "GET /api/v1/search".into()));

    // --- Person file without consent; consent by SMS code (R-SEC-5).
    refused(
        w.as_user("li", "GET", &format!("persons/{}", p[0]), None, None),
        403,
        "no_consent",
    );
    refused(
        w.as_user(
            "li",
            "GET",
            &format!("persons/{}", p[0]),
            Some(&"ab".repeat(32)),
            None,
        ),
        403,
        "no_consent",
    );
    let ask = json!({"person": p[0], "matter": "dbsq", "purpose": "办理低保申请"});
    let (s, b) = w.as_user("li", "POST", "consents/request", None, Some(ask.clone()));
    assert_eq!(s, 200, "{b}");
    assert!(
        b["phone"]
            .as_str()
            .unwrap()
            .ends_with(&phone[phone.len() - 4..]),
        "{b}"
    );
    let request = b["request_id"].as_str().unwrap().to_string();
    let sent = sms_code(&sms, &p[0]);
    let wrong = if sent == "000000" { "000001" } else { "000000" };
    refused(
        w.as_user(
            "li",
            "POST",
            "consents/verify",
            None,
            Some(json!({"request_id": request, "code": wrong})),
        ),
        403,
        "wrong_code",
    );
    // Another user cannot use li's code.
    refused(
        w.as_user(
            "zhang",
            "POST",
            "consents/verify",
            None,
            Some(json!({"request_id": request, "code": sent})),
        ),
        404,
        "unknown_request",
    );
    let (s, b) = w.as_user(
        "li",
        "POST",
        "consents/verify",
        None,
        Some(json!({"request_id": request, "code": sent})),
    );
    assert_eq!(s, 200, "{b}");
    let consent = b["consent_id"].as_str().unwrap().to_string();
    assert_eq!(b["sources"], json!(["gaj.hjxx", "mzj.dbjz"]));
    refused(
        w.as_user(
            "li",
            "POST",
            "consents/verify",
            None,
            Some(json!({"request_id": request, "code": sent})),
        ),
        403,
        "code_used",
    );
    // With the consent li reads the person's file: only mzj's source (gaj's grant is revoked).
    let (s, b) = w.as_user(
        "li",
        "GET",
        &format!("persons/{}", p[0]),
        Some(&consent),
        None,
    );
    assert_eq!(s, 200, "{b}");
    let sources: BTreeSet<&str> = b["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources, BTreeSet::from(["mzj.dbjz"]), "{b}");
    reads.push(("li", format!("GET /api/v1/persons/{}", p[0])));
    let (s, b) = w.as_user(
        "li",
        "GET",
        &format!("persons/{}/matters/dbsq", p[0]),
        Some(&consent),
        None,
    );
    assert_eq!(s, 200, "{b}");
    reads.push(("li", format!("GET /api/v1/persons/{}/matters/dbsq", p[0])));
    // The consent is li's, for that person only.
    refused(
        w.as_user(
            "zhang",
            "GET",
            &format!("persons/{}", p[0]),
            Some(&consent),
            None,
        ),
        403,
        "consent_mismatch",
    );
    refused(
        w.as_user(
            "li",
            "GET",
            &format!("persons/{}", p[1]),
            Some(&consent),
            None,
        ),
        403,
        "consent_mismatch",
    );

    // --- Five wrong codes kill a request, even for the right code afterwards.
    let (s, b) = w.as_user(
        "li",
        "POST",
        "consents/request",
        None,
        Some(json!({"person": p[1], "matter": "dbsq", "purpose": "复核"})),
    );
    assert_eq!(s, 200, "{b}");
    let request2 = b["request_id"].as_str().unwrap().to_string();
    let sent2 = sms_code(&sms, &p[1]);
    let wrong2 = if sent2 == "000000" {
        "000001"
    } else {
        "000000"
    };
    for _ in 0..4 {
        refused(
            w.as_user(
                "li",
                "POST",
                "consents/verify",
                None,
                Some(json!({"request_id": request2, "code": wrong2})),
            ),
            403,
            "wrong_code",
        );
    }
    refused(
        w.as_user(
            "li",
            "POST",
            "consents/verify",
            None,
            Some(json!({"request_id": request2, "code": wrong2})),
        ),
        403,
        "too_many_attempts",
    );
    refused(
        w.as_user(
            "li",
            "POST",
            "consents/verify",
            None,
            Some(json!({"request_id": request2, "code": sent2})),
        ),
        403,
        "too_many_attempts",
    );

    // --- An expired consent (recorded by the node with a two-second life).
    let short = Consent {
        id: "cd".repeat(32),
        person: p[1].clone(),
        matter: "dbsq".into(),
        sources: vec!["mzj.dbjz".into()],
        grantee: "li".into(),
        purpose: "短期".into(),
        issued_at: TimestampMs(now_ms()),
        expires_at: TimestampMs(now_ms() + 2_000),
        verified_by: "sms:0000".into(),
    };
    let node_key = w.net.node_key(1);
    w.commit(&node_key, TxKind::RecordConsent(short));
    std::thread::sleep(Duration::from_millis(2_200));
    refused(
        w.as_user(
            "li",
            "GET",
            &format!("persons/{}", p[1]),
            Some(&"cd".repeat(32)),
            None,
        ),
        403,
        "consent_expired",
    );

    // --- System accounts sign each request (R-SEC-7): good, bad signature, replayed, stale.
    let (s, b) = w.signed("GET", mzj_query, &sp, None);
    assert_eq!(s, 200, "{b}");
    reads.push(("sp.mzj", "GET /api/v1/records".into()));
    let to = w.rt.block_on(w.client.audience()).unwrap();
    let mut h: Vec<(&str, String)> = sign_request(
        &sp,
        &to,
        "GET",
        &format!("/api/v1/{mzj_query}"),
        now_ms(),
        b"",
    )
    .to_vec();
    let (s, _) = w.call("GET", mzj_query, &h, None);
    assert_eq!(s, 200);
    reads.push(("sp.mzj", "GET /api/v1/records".into()));
    refused(w.call("GET", mzj_query, &h, None), 401, "replayed_request");
    let sig = h.iter_mut().find(|(k, _)| *k == SIGNATURE_HEADER).unwrap();
    // The last byte changed, whatever it was (setting it to 00 left it unchanged, a replay,
    // once in 256 runs).
    let last = if &sig.1[126..] == "00" { "01" } else { "00" };
    sig.1 = format!("{}{last}", &sig.1[..126]);
    refused(w.call("GET", mzj_query, &h, None), 401, "bad_signature");
    let stale = sign_request(
        &sp,
        &to,
        "GET",
        &format!("/api/v1/{mzj_query}"),
        now_ms() - 3_600_000,
        b"",
    );
    refused(w.call("GET", mzj_query, &stale, None), 401, "stale_request");
    let stranger = Keypair::from_seed([43; 32]);
    refused(
        w.signed("GET", mzj_query, &stranger, None),
        403,
        "forbidden",
    );
    let _ = KEY_HEADER;

    // --- Staff do not read the audit log.
    refused(
        w.as_user("li", "GET", "audit", None, None),
        403,
        "forbidden",
    );

    // --- Every denial and every read is on chain (R-AUD-1), searchable (R-AUD-2).
    w.audit_settled();
    for (outcome, who) in [
        ("unauthenticated", ""),
        ("no_session", ""),
        ("session_expired", "zhang"),
        ("bad_credentials", "wang"),
        ("locked", "wang"),
        ("user_disabled", "zhang"),
        ("no_grant", "li"),
        ("no_export_right", "li"),
        ("grant_expired", "li"),
        ("grant_revoked", "li"),
        ("no_consent", "li"),
        ("consent_mismatch", "zhang"),
        ("consent_expired", "li"),
        ("wrong_code", "li"),
        ("code_used", "li"),
        ("too_many_attempts", "li"),
        ("replayed_request", ""),
        ("bad_signature", ""),
        ("stale_request", ""),
    ] {
        let found = w.audit(&format!("outcome={outcome}"));
        assert!(!found.is_empty(), "no audit entry of the denial {outcome}");
        assert!(
            found.iter().any(|e| e["user"] == who),
            "{outcome}: no entry of user {who:?}: {found:?}"
        );
    }
    let ok_reads = w.audit("outcome=ok&action=query");
    for (user, endpoint) in &reads {
        let n = reads
            .iter()
            .filter(|r| r == &&(*user, endpoint.clone()))
            .count();
        let on_chain = ok_reads
            .iter()
            .filter(|e| e["user"] == *user && e["endpoint"] == endpoint.as_str())
            .count();
        assert!(
            on_chain >= n,
            "{user} {endpoint}: {n} reads, {on_chain} audited: {ok_reads:?}"
        );
    }
    // Export of the log opens as CSV.
    let (s, csv) = w.as_user("shen", "GET", "audit/export?format=csv&user=li", None, None);
    assert_eq!(s, 200);
    assert!(csv.as_str().unwrap().contains("no_grant"), "{csv}");

    // --- Who read this person's data (R-AUD-3): each access with consent, matter and proof.
    let (s, b) = w.as_user(
        "shen",
        "GET",
        &format!("persons/{}/accesses", p[0]),
        None,
        None,
    );
    assert_eq!(s, 200, "{b}");
    let accesses = b["accesses"].as_array().unwrap();
    // Reads under a consent: the person file and the matter file. (The combined queries and
    // the search that returned the person's records are there too, without consent.)
    let granted: Vec<&Value> = accesses
        .iter()
        .filter(|a| a["access"]["outcome"] == "ok" && !a["access"]["consent"].is_null())
        .collect();
    assert_eq!(granted.len(), 2, "person file and matter file: {b}");
    assert!(
        accesses
            .iter()
            .any(|a| a["access"]["outcome"] == "ok"
                && a["access"]["endpoint"] == "GET /api/v1/search")
    );
    assert!(granted
        .iter()
        .all(|a| a["access"]["consent"] == consent.as_str() && a["access"]["user"] == "li"));
    assert!(granted.iter().any(|a| a["access"]["matter"] == "dbsq"));
    let proof_file = w.net.dir.path().join("proof.json");
    std::fs::write(
        &proof_file,
        serde_json::to_vec_pretty(&granted[0]["proof"]).unwrap(),
    )
    .unwrap();
    let genesis = w.net.genesis_path();
    let check = |f: &Path| {
        Command::new(govchain_bin())
            .arg("verify-proof")
            .arg(f)
            .arg("--genesis")
            .arg(&genesis)
            .output()
            .unwrap()
    };
    let out = check(&proof_file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("verify-proof: OK"));
    // Altering any byte of the transaction, the proof path, the header or the certificate fails.
    let proof: Value = granted[0]["proof"].clone();
    let flip_hex = |s: &str, at: usize| {
        let mut b: Vec<char> = s.chars().collect();
        b[at] = if b[at] == '0' { '1' } else { '0' };
        b.into_iter().collect::<String>()
    };
    let tx_hex = proof["tx"].as_str().unwrap().to_string();
    let mut alterations: Vec<Value> = (0..tx_hex.len())
        .step_by(tx_hex.len() / 24)
        .map(|i| {
            let mut p = proof.clone();
            p["tx"] = json!(flip_hex(&tx_hex, i));
            p
        })
        .collect();
    for field in ["tx_root", "app_hash", "prev_hash"] {
        let mut p = proof.clone();
        let v = p["header"][field].as_str().unwrap().to_string();
        p["header"][field] = json!(flip_hex(&v, 5));
        alterations.push(p);
    }
    let mut p2 = proof.clone();
    p2["entry"]["results"] = json!(proof["entry"]["results"].as_u64().unwrap() + 1);
    alterations.push(p2);
    let mut p3 = proof.clone();
    p3["entry"]["user"] = json!("wang");
    alterations.push(p3);
    let mut p4 = proof.clone();
    p4["header"]["height"] = json!(proof["header"]["height"].as_u64().unwrap() + 1);
    alterations.push(p4);
    if let Some(first) = proof["proof"]["path"]
        .as_array()
        .and_then(|a| a.first())
        .and_then(Value::as_str)
    {
        let mut p5 = proof.clone();
        p5["proof"]["path"][0] = json!(flip_hex(first, 3));
        alterations.push(p5);
    }
    let sig = proof["commit"]["signatures"][0]["signature"]
        .as_str()
        .map(str::to_string);
    if let Some(sig) = sig {
        let mut p6 = proof.clone();
        p6["commit"]["signatures"][0]["signature"] = json!(flip_hex(&sig, 7));
        alterations.push(p6);
    }
    for (i, alt) in alterations.iter().enumerate() {
        let f = w.net.dir.path().join(format!("altered-{i}.json"));
        std::fs::write(&f, serde_json::to_vec(alt).unwrap()).unwrap();
        let out = check(&f);
        assert!(!out.status.success(), "altered proof #{i} verified: {alt}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("FAULT"));
    }

    // --- The auditor's replay re-decides every access the same way and rebuilds the
    // projection with the live digest (R-AUD-4).
    w.audit_settled();
    assert!(
        w.node.terminate(Duration::from_secs(20)),
        "node did not stop"
    );
    let out = Command::new(govchain_bin())
        .args(["verify", "--rebuild-projection", "--data"])
        .arg(w.net.data_dir(1))
        .arg("--genesis")
        .arg(&genesis)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let decided: u64 = text
        .split("state entries, ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no decision count in {text}"));
    assert!(
        decided >= reads.len() as u64 + 8,
        "{decided} decisions re-made: {text}"
    );
    assert!(text.contains("equals the live projection's"), "{text}");
}

/// A node that lies in its audit log (an access it claims it allowed, which the rules refuse) is
/// caught by the auditor's replay, at the height of the lying entry (R-AUD-4).
#[test]
fn the_auditors_replay_catches_an_audit_entry_whose_decision_the_rules_refuse() {
    use govchain_chaincode::access::{AccessRequest, AuditAction, AuditEntry, Right};
    let net = Net::generate(1);
    let mut node = NodeProc::start(&net, 1);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = node.client();
    let chain = net.genesis.chain_id.clone();
    let commit = |key: &Keypair, kind: TxKind| {
        let tx = sign_tx(key, &chain, &kind);
        let (s, b) = rt.block_on(client.submit_status(&tx)).unwrap();
        assert_eq!(s, 200, "{b}");
        b["height"].as_u64().unwrap()
    };
    let h = commit(
        &net.key("sysadmin"),
        TxKind::PutUsers {
            mode: PutMode::Add,
            users: vec![user("li", "mzj", 1, vec![Role::Staff])],
        },
    );
    // li (mzj) has no grant on gaj's household register: the honest decision is no_grant.
    let entry = |outcome: &str| AuditEntry {
        time: TimestampMs(now_ms()),
        user: "li".into(),
        department: "mzj".into(),
        action: AuditAction::Access(AccessRequest {
            user: Some("li".into()),
            right: Right::Query,
            sources: vec!["gaj.hjxx".into()],
            filter: false,
            person: None,
            matter: None,
            consent: None,
            time: TimestampMs(now_ms()),
        }),
        endpoint: "GET /api/v1/records".into(),
        person: None,
        outcome: outcome.into(),
        results: 20,
        persons: Default::default(),
        fingerprint: govchain_ledger::Hash([7; 32]),
        state_height: h,
    };
    let node_key = net.node_key(1);
    commit(
        &node_key,
        TxKind::AppendAudit {
            entries: vec![entry("no_grant")],
        },
    );
    assert!(node.terminate(Duration::from_secs(20)));
    let out = govchain_tests::verify(&net.data_dir(1), &net.genesis_path());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the honest entry verifies: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("1 access decisions reproduced"), "{text}");

    node.restart();
    let lie = commit(
        &node_key,
        TxKind::AppendAudit {
            entries: vec![entry("ok")],
        },
    );
    assert!(node.terminate(Duration::from_secs(20)));
    let out = govchain_tests::verify(&net.data_dir(1), &net.genesis_path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a lying audit entry must fail the replay"
    );
    assert!(
        err.contains(&format!("height {lie}:")) && err.contains("no_grant"),
        "{err}"
    );
}

/// An access answered just before the node is killed with -9 still reaches the chain: its
/// audit entry waits in the store's outbox and goes out after the restart (R-AUD-1).
#[test]
fn an_audit_entry_queued_when_the_node_is_killed_reaches_the_chain_after_restart() {
    let net = Net::generate(1);
    // No block comes while the node is idle, and the timer is long: the entry stays queued.
    net.tune(1, |c| c.api.audit_interval_ms = 600_000);
    let mut node = NodeProc::start(&net, 1);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = node.client();
    let admin = net.key("sysadmin");
    let (s, b) = rt
        .block_on(client.get_signed("records?source=gaj.hjxx&page_size=1", &admin))
        .unwrap();
    assert_eq!(s, 200, "{b}");
    let status = rt.block_on(client.get_json("status")).unwrap();
    assert_eq!(status["audit_backlog"], 1, "{status}");
    assert_eq!(status["audit_entries"], 0, "{status}");
    node.kill9();
    net.tune(1, |c| c.api.audit_interval_ms = 200);
    node.restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = rt.block_on(client.get_json("status")).unwrap();
        if status["audit_entries"] == 1 && status["audit_backlog"] == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the entry never reached the chain: {status}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Once committed it leaves the outbox: a second restart does not put it on chain again.
    std::thread::sleep(Duration::from_millis(300));
    node.kill9();
    node.restart();
    std::thread::sleep(Duration::from_millis(2_000));
    let status = rt.block_on(client.get_json("status")).unwrap();
    assert_eq!(status["audit_entries"], 1, "{status}");
    assert_eq!(status["audit_backlog"], 0, "{status}");
}

/// Malformed or out-of-range input to the new endpoints gets a clear 4xx and changes nothing:
/// no session opened, no code sent, no consent recorded, no password set.
#[test]
fn bad_input_to_login_passwords_consents_and_audit_is_refused_clearly() {
    let net = Net::generate(1);
    let sms = net.dir.path().join("sms.jsonl");
    net.tune(1, |c| c.api.sms = Some(format!("file:{}", sms.display())));
    let node = NodeProc::start(&net, 1);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = node.client();
    let admin = net.key("sysadmin");
    let chain = net.genesis.chain_id.clone();
    let tx = sign_tx(
        &admin,
        &chain,
        &TxKind::PutUsers {
            mode: PutMode::Add,
            users: vec![user("li", "mzj", 1, vec![Role::Staff])],
        },
    );
    assert_eq!(rt.block_on(client.submit_status(&tx)).unwrap().0, 200);
    let call = |method: &str, path: &str, h: &[(&str, String)], body: Option<Value>| {
        rt.block_on(client.call(method, path, h, body.as_ref()))
            .unwrap()
    };
    let signed = |method: &str, path: &str, body: Value| {
        rt.block_on(client.call_signed(method, path, &admin, Some(&body)))
            .unwrap()
    };
    // Login: not JSON, unknown fields, missing fields.
    refused(call("POST", "login", &[], None), 400, "bad_body");
    refused(
        call("POST", "login", &[], Some(json!({"user": "li"}))),
        400,
        "bad_body",
    );
    refused(
        call(
            "POST",
            "login",
            &[],
            Some(json!({"user": "li", "password": "x", "extra": 1})),
        ),
        400,
        "bad_body",
    );
    // Passwords: weak, malformed, unknown user; nothing is set.
    refused(
        signed("PUT", "users/li/password", json!({"password": "12345678"})),
        400,
        "weak_password",
    );
    refused(
        signed("PUT", "users/li/password", json!({"pass": "Good-2026"})),
        400,
        "bad_body",
    );
    refused(
        signed(
            "PUT",
            "users/ghost/password",
            json!({"password": "Good-2026"}),
        ),
        404,
        "not_found",
    );
    let (_, u) = rt.block_on(client.get_signed("users/li", &admin)).unwrap();
    assert_eq!(u["password_set"], false, "{u}");
    let (s, b) = signed("PUT", "users/li/password", json!({"password": PASSWORD}));
    assert_eq!(s, 200, "{b}");
    let token = {
        let (s, b) = call(
            "POST",
            "login",
            &[],
            Some(json!({"user": "li", "password": PASSWORD})),
        );
        assert_eq!(s, 200, "{b}");
        b["token"].as_str().unwrap().to_string()
    };
    let me = [("authorization", format!("Bearer {token}"))];
    let mut valid = "11010519491231002".to_string();
    valid.push(govchain_chaincode::person::check_char(valid.as_bytes()));
    // Consent requests: bad ID, unknown matter, empty or oversize purpose, SQL metacharacters.
    for (body, status, code) in [
        (
            json!({"person": "123", "matter": "x", "purpose": "p"}),
            400,
            "bad_person_id",
        ),
        (
            json!({"person": "110105194912310000", "matter": "x", "purpose": "p"}),
            400,
            "bad_person_id",
        ),
        (
            json!({"person": valid, "matter": "x'; DROP TABLE audit; --", "purpose": "p"}),
            404,
            "unknown_matter",
        ),
        (
            json!({"person": valid, "matter": "x", "purpose": "p", "more": 1}),
            400,
            "bad_body",
        ),
    ] {
        refused(
            call("POST", "consents/request", &me, Some(body)),
            status,
            code,
        );
    }
    // Verification: unknown request, bad validity.
    refused(
        call(
            "POST",
            "consents/verify",
            &me,
            Some(json!({"request_id": "00", "code": "123456"})),
        ),
        404,
        "unknown_request",
    );
    refused(
        call(
            "POST",
            "consents/verify",
            &me,
            Some(json!({"request_id": "00", "code": "1", "valid_hours": 0})),
        ),
        400,
        "bad_body",
    );
    refused(
        call(
            "POST",
            "consents/verify",
            &me,
            Some(json!({"request_id": "00", "code": "1", "valid_hours": 721})),
        ),
        400,
        "bad_body",
    );
    assert!(!sms.exists(), "no code was sent");
    // Audit search: bad time, unknown parameter, bad page.
    for q in [
        "audit?from=yesterday",
        "audit?who=li",
        "audit?page=0",
        "audit/proof?height=x&tx_index=0&entry_index=0",
    ] {
        let (s, b) = rt.block_on(client.get_signed(q, &admin)).unwrap();
        assert_eq!(s, 400, "{q}: {b}");
    }
    let (s, b) = rt
        .block_on(client.get_signed("audit/proof?height=999999&tx_index=0&entry_index=0", &admin))
        .unwrap();
    assert_eq!((s, code(&b)), (404, "not_found"), "{b}");
    // A bad session token on a POST is refused before the body is read.
    refused(
        call(
            "POST",
            "consents/request",
            &[("authorization", "Bearer nope".into())],
            Some(json!({})),
        ),
        401,
        "no_session",
    );
}
