//! Issue 15, finding 1 (R-SEC-3, R-SEC-7, R-AUD-1): chain data (`GET /api/v1/txs/{id}`,
//! `GET /api/v1/blocks/{h}`) shows signed transactions — residents' records — only to a
//! department node, an auditor or a system administrator, and each such read is audited; anyone
//! else gets hashes, kinds and proofs; credentials that are present but wrong are refused.

use std::time::{Duration, Instant};

use govchain_chaincode::access::Role;
use govchain_chaincode::business::PutMode;
use govchain_chaincode::TxKind;
use govchain_ledger::SignedTx;
use govchain_node::client::{records_tx, sign_tx, Client};
use govchain_node::synth::Generator;
use govchain_tests::{error_code as code, now_ms, user, Net, NodeProc};
use serde_json::{json, Value};

const PASSWORD: &str = "Secret-2026";

#[test]
fn finding_1_chain_data_carries_payloads_only_to_nodes_auditors_and_admins_and_is_audited() {
    let net = Net::generate(1);
    let node = NodeProc::start(&net, 1);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = node.client();
    let admin = net.key("sysadmin");
    let chain = net.genesis.chain_id.clone();
    let call = |method: &str, path: &str, headers: &[(&str, String)], body: Option<Value>| {
        rt.block_on(client.call(method, path, headers, body.as_ref()))
            .unwrap()
    };
    let signed = |path: &str, key: &govchain_ledger::Keypair| {
        rt.block_on(client.call_signed("GET", path, key, None))
            .unwrap()
    };

    // Records of residents: the payload holds their ids and names.
    let hjxx = net.source("gaj.hjxx");
    let mut gen = Generator::new(5);
    let records: Vec<_> = (0..3).map(|i| gen.record_for(&hjxx, i)).collect();
    let person = records[0].fields["sfzh"].clone();
    let name = records[0].fields["xm"].clone();
    let tx = records_tx(&net.node_key(1), &chain, &hjxx, records);
    let committed = rt.block_on(client.submit(&tx, true)).unwrap();
    assert_eq!(committed.status, "committed");
    let height = committed.height.unwrap();

    // A staff member and an auditor with passwords.
    let users = vec![
        user("zhao", "gaj", 3, vec![Role::Staff]),
        user("qian", "gaj", 3, vec![Role::Auditor]),
    ];
    let put = sign_tx(
        &admin,
        &chain,
        &TxKind::PutUsers {
            mode: PutMode::Add,
            users,
        },
    );
    assert_eq!(rt.block_on(client.submit_status(&put)).unwrap().0, 200);
    let token = |id: &str| {
        let (s, b) = signed_put_password(&rt, &client, &admin, id);
        assert_eq!(s, 200, "{b}");
        let (s, b) = call(
            "POST",
            "login",
            &[],
            Some(json!({"user": id, "password": PASSWORD})),
        );
        assert_eq!(s, 200, "{b}");
        vec![(
            "authorization",
            format!("Bearer {}", b["token"].as_str().unwrap()),
        )]
    };
    let staff = token("zhao");
    let auditor = token("qian");

    let tx_path = format!("txs/{}", tx.id());
    let block_path = format!("blocks/{height}");
    let shows_payload = |v: &Value| {
        let text = v.to_string();
        text.contains(&hex::encode(person.as_bytes()))
            || text.contains(&person)
            || text.contains(&name)
    };
    let full_tx = |v: &Value| {
        let bytes = hex::decode(v["tx"].as_str().expect("the signed transaction")).unwrap();
        assert_eq!(
            SignedTx::decode(&bytes).unwrap(),
            tx,
            "it is the committed transaction"
        );
    };

    // Anonymous and non-auditor staff: hashes, kinds, proofs; no payload.
    for (who, headers) in [("anonymous", vec![]), ("staff", staff.clone())] {
        let (s, b) = call("GET", &tx_path, &headers, None);
        assert_eq!(s, 200, "{who}: {b}");
        assert!(b.get("tx").is_none(), "{who} sees no payload: {b}");
        assert_eq!(b["kind"], "submit_records");
        assert!(b["proof"].is_object() || b["proof"].is_array(), "{b}");
        assert!(b["commit"].is_object(), "{b}");
        assert!(!shows_payload(&b), "{who}: no resident data in {b}");
        let (s, b) = call("GET", &block_path, &headers, None);
        assert_eq!(s, 200, "{who}: {b}");
        assert!(b["txs"][0].get("tx").is_none(), "{who}: {b}");
        assert!(!shows_payload(&b), "{who}: no resident data in the block");
    }
    // Auditor, system administrator and the department's node: the signed transaction.
    let (s, b) = call("GET", &tx_path, &auditor, None);
    assert_eq!(s, 200, "{b}");
    full_tx(&b);
    let (s, b) = signed(&tx_path, &admin);
    assert_eq!(s, 200, "{b}");
    full_tx(&b);
    let (s, b) = signed(&block_path, &net.node_key(1));
    assert_eq!(s, 200, "{b}");
    let ids: Vec<&str> = b["txs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    let at = ids.iter().position(|i| *i == tx.id().to_string()).unwrap();
    full_tx(&b["txs"][at]);

    // Credentials present but wrong are refused, never downgraded to the anonymous view.
    let (s, b) = call(
        "GET",
        &tx_path,
        &[("authorization", "Bearer nope".into())],
        None,
    );
    assert_eq!((s, code(&b)), (401, "no_session"), "{b}");
    let stranger = govchain_ledger::Keypair::from_seed([9; 32]);
    let (s, b) = signed(&tx_path, &stranger);
    assert_eq!((s, code(&b)), (403, "forbidden"), "{b}");
    let mut bad = govchain_api::auth::sign_request(
        &admin,
        &rt.block_on(client.audience()).unwrap(),
        "GET",
        "/api/v1/txs/0",
        1,
        b"",
    )
    .to_vec();
    bad.retain(|(k, _)| *k != "x-govchain-time");
    bad.push(("x-govchain-time", now_ms().to_string()));
    let (s, b) = call("GET", &tx_path, &bad, None);
    assert_eq!((s, code(&b)), (401, "bad_signature"), "{b}");

    // Every authenticated read is on chain: payload reads `ok`, the staff's `redacted`.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (s, b) = signed("audit?action=chain_read&page_size=100", &admin);
        assert_eq!(s, 200, "{b}");
        let got: Vec<(String, String)> = b["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["user"].as_str().unwrap().to_string(),
                    e["outcome"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let want = [
            ("zhao", "redacted"),
            ("qian", "ok"),
            ("", "ok"),
            ("node:gaj", "ok"),
        ];
        if want
            .iter()
            .all(|(u, o)| got.iter().any(|(gu, go)| gu == u && go == o))
        {
            assert_eq!(
                got.iter().filter(|(u, _)| u == "zhao").count(),
                2,
                "{got:?}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "chain reads not all audited: {got:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn signed_put_password(
    rt: &tokio::runtime::Runtime,
    client: &Client,
    admin: &govchain_ledger::Keypair,
    id: &str,
) -> (u16, Value) {
    rt.block_on(client.call_signed(
        "PUT",
        &format!("users/{id}/password"),
        admin,
        Some(&json!({"password": PASSWORD})),
    ))
    .unwrap()
}
