//! Finding 6 of issue 15 (R-SEC-5), through a real node: a resident's consent code goes to the
//! phone number in the source configured as authoritative for it (`api.consent_phone_source`,
//! the household registry `gaj.hjxx` by default) and never to a number another department
//! keeps; a person the registry has no number for gets no code and a clear refusal; the SMS
//! names the department, the matter and the validity; and the hourly limits are counted before
//! anything is looked up, so a limited request reads nothing from the projection.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use govchain_api::security::CODES_PER_PERSON_PER_HOUR;
use govchain_chaincode::access::{Role, User};
use govchain_chaincode::business::{CatalogEntry, MatterType, PutMode, SourceFields};
use govchain_chaincode::records::Record;
use govchain_chaincode::TxKind;
use govchain_ledger::Keypair;
use govchain_node::client::{records_tx, sign_tx, Client};
use govchain_node::synth::Generator;
use govchain_tests::{error_code, Net, NodeProc};
use serde_json::{json, Value};

const PASSWORD: &str = "Secret-2026";
/// The household registry's number and another department's number of the same person.
const REGISTRY_PHONE: &str = "13800000001";
const OTHER_PHONE: &str = "13900000002";

/// One node of a one-department cluster, a staff user `li` of 市民政局 with a session, and a
/// matter type `dbsq` (低保申请); codes go to the file sink `sms`.
struct World {
    net: Net,
    _node: NodeProc,
    rt: tokio::runtime::Runtime,
    client: Client,
    sms: PathBuf,
    token: String,
    gen: Generator,
    next: u64,
}

impl World {
    fn start() -> World {
        let net = Net::generate(1);
        let sms = net.dir.path().join("sms.jsonl");
        net.tune(1, |c| c.api.sms = Some(format!("file:{}", sms.display())));
        let node = NodeProc::start(&net, 1);
        let rt = tokio::runtime::Runtime::new().unwrap();
        let client = node.client();
        let mut w = World {
            net,
            _node: node,
            rt,
            client,
            sms,
            token: String::new(),
            gen: Generator::new(61),
            next: 0,
        };
        let admin = w.net.key("sysadmin");
        let li = User {
            id: "li".into(),
            name: "测试li".into(),
            department: "mzj".into(),
            level: 3,
            roles: vec![Role::Staff],
            disabled: false,
            key: None,
        };
        w.commit(
            &admin,
            TxKind::PutUsers {
                mode: PutMode::Add,
                users: vec![li],
            },
        );
        let (s, b) =
            w.rt.block_on(w.client.call_signed(
                "PUT",
                "users/li/password",
                &admin,
                Some(&json!({"password": PASSWORD})),
            ))
            .unwrap();
        assert_eq!(s, 200, "{b}");
        let matter = MatterType {
            id: "dbsq".into(),
            name: "低保申请".into(),
            department: "mzj".into(),
            sources: vec![SourceFields {
                source: "gaj.hjxx".into(),
                fields: vec!["sfzh".into(), "xm".into()],
            }],
            materials: vec![],
        };
        w.commit(
            &admin,
            TxKind::PutCatalogEntry {
                mode: PutMode::Add,
                entry: CatalogEntry::MatterType(matter),
            },
        );
        let (s, b) = w.call(
            "POST",
            "login",
            None,
            json!({"user": "li", "password": PASSWORD}),
        );
        assert_eq!(s, 200, "{b}");
        w.token = b["token"].as_str().unwrap().to_string();
        w
    }

    fn commit(&self, key: &Keypair, kind: TxKind) {
        let tx = sign_tx(key, &self.net.genesis.chain_id, &kind);
        let (s, b) = self.rt.block_on(self.client.submit_status(&tx)).unwrap();
        assert_eq!(s, 200, "{} refused: {b}", kind.name());
    }

    fn call(&self, method: &str, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let h: Vec<(&str, String)> = token
            .map(|t| ("authorization", format!("Bearer {t}")))
            .into_iter()
            .collect();
        self.rt
            .block_on(self.client.call(method, path, &h, Some(&body)))
            .unwrap()
    }

    /// A new resident with a record in each of `phones`' sources, carrying that phone number
    /// (None: the record has no number); each source's department signs its records. Waits
    /// until the records are committed, and projected (the next block commits after them).
    fn resident(&mut self, phones: &[(&str, Option<&str>)]) -> String {
        let i = self.next;
        self.next += 1;
        let mut person = None;
        for (source, phone) in phones {
            let def = self.net.source(source);
            let mut r: Record = self.gen.record_for(&def, 1000 + i);
            match phone {
                Some(p) => r.fields.insert("lxdh".into(), p.to_string()),
                None => r.fields.remove("lxdh"),
            };
            person = Some(r.fields["sfzh"].clone());
            let key = self.net.key(&format!("{}-admin", def.department));
            let tx = records_tx(&key, &self.net.genesis.chain_id, &def, vec![r]);
            let reply = self.rt.block_on(self.client.submit(&tx, true)).unwrap();
            assert_eq!(reply.status, "committed");
        }
        self.wait_projected();
        person.expect("at least one source")
    }

    fn wait_projected(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = self.rt.block_on(self.client.get_json("status")).unwrap();
            if s["projected_height"] == s["height"] {
                return;
            }
            assert!(Instant::now() < deadline, "projection never caught up: {s}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn ask(&self, person: &str) -> (u16, Value) {
        self.call(
            "POST",
            "consents/request",
            Some(&self.token),
            json!({"person": person, "matter": "dbsq", "purpose": "办理低保申请"}),
        )
    }

    /// The SMS sink's lines about `person`.
    fn sent_to(&self, person: &str) -> Vec<Value> {
        sms_lines(&self.sms)
            .into_iter()
            .filter(|l| l["person"] == person)
            .collect()
    }
}

fn sms_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Finding 6 of issue 15 (R-SEC-5): a person with numbers in two sources gets the code on the
/// household registry's number, even though the other source (`cl.czxx`) sorts first; the SMS
/// says who asks (市民政局), for what (低保申请) and for how long (5 minutes), and its code
/// verifies; a person the registry has no number for gets a clear 409 and no SMS, although
/// another department has a number for them.
#[test]
fn finding_6_consent_code_goes_to_the_household_registry_phone_and_names_who_asks() {
    let mut w = World::start();
    let both = w.resident(&[
        ("gaj.hjxx", Some(REGISTRY_PHONE)),
        ("cl.czxx", Some(OTHER_PHONE)),
    ]);
    let (s, b) = w.ask(&both);
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["phone"], "*******0001", "the registry's number: {b}");
    let sent = w.sent_to(&both);
    assert_eq!(sent.len(), 1, "one SMS: {sent:?}");
    assert_eq!(sent[0]["phone"], REGISTRY_PHONE, "{sent:?}");
    assert!(sms_lines(&w.sms).iter().all(|l| l["phone"] != OTHER_PHONE));
    let code = sent[0]["code"].as_str().unwrap().to_string();
    let text = sent[0]["text"].as_str().unwrap();
    for part in [
        "市民政局",
        "低保申请",
        &format!("code {code}"),
        "valid 5 minutes",
    ] {
        assert!(
            text.contains(part),
            "{part:?} missing from the SMS {text:?}"
        );
    }
    // The code in the text is the one the node accepts.
    let (s, b) = w.call(
        "POST",
        "consents/verify",
        Some(&w.token),
        json!({"request_id": b["request_id"], "code": code}),
    );
    assert_eq!(s, 200, "{b}");

    // A registry record without a number: no code, and no fallback to the other department's.
    let none = w.resident(&[("gaj.hjxx", None), ("cl.czxx", Some(OTHER_PHONE))]);
    let (s, b) = w.ask(&none);
    assert_eq!((s, error_code(&b)), (409, "no_phone"), "{b}");
    let message = b["error"]["message"].as_str().unwrap();
    assert!(message.contains("gaj.hjxx"), "names the source: {message}");
    // No registry record at all: the same.
    let absent = w.resident(&[("cl.czxx", Some(OTHER_PHONE))]);
    let (s, b) = w.ask(&absent);
    assert_eq!((s, error_code(&b)), (409, "no_phone"), "{b}");
    assert!(w.sent_to(&none).is_empty() && w.sent_to(&absent).is_empty());
    assert!(sms_lines(&w.sms).iter().all(|l| l["phone"] != OTHER_PHONE));
}

/// Finding 6 of issue 15 (R-SEC-5): the per-person limit is checked before the phone number is
/// looked up. At the limit every request sends a code; then the projection is made unavailable
/// (its `records` table renamed): the request over the limit still answers 429 — it read
/// nothing — while a request for another person, which must look up a number, fails.
#[test]
fn finding_6_rate_limited_consent_request_reads_nothing_from_the_projection() {
    let mut w = World::start();
    let limited = w.resident(&[("gaj.hjxx", Some(REGISTRY_PHONE))]);
    let other = w.resident(&[("gaj.hjxx", Some("13700000003"))]);
    for n in 1..=CODES_PER_PERSON_PER_HOUR {
        let (s, b) = w.ask(&limited);
        assert_eq!(s, 200, "request {n} of {CODES_PER_PERSON_PER_HOUR}: {b}");
    }
    assert_eq!(w.sent_to(&limited).len(), CODES_PER_PERSON_PER_HOUR);

    let db = w.net.data_dir(1).join("projection.sqlite");
    w.rt.block_on(async {
        use sqlx::ConnectOptions;
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&db)
            .busy_timeout(Duration::from_secs(10))
            .connect()
            .await
            .unwrap();
        sqlx::query("ALTER TABLE records RENAME TO records_unavailable")
            .execute(&mut conn)
            .await
            .unwrap();
    });
    let (s, b) = w.ask(&limited);
    assert_eq!((s, error_code(&b)), (429, "rate_limited"), "{b}");
    assert_eq!(w.sent_to(&limited).len(), CODES_PER_PERSON_PER_HOUR);
    // The projection really is unavailable to a look-up.
    let (s, b) = w.ask(&other);
    assert_eq!(s, 500, "{b}");
    assert!(w.sent_to(&other).is_empty());
}
