//! Issue 15, acceptance (schemathesis against the served OpenAPI document): what the property
//! run found, each fixed and kept fixed here with a real node (R-SEC-3, R-AUD-1: the API's
//! answers are what its document says).
//!
//! - The served document is valid: each operation has its own id (three pairs shared one), and
//!   every error answer is the one `{error: {code, message}}` body it documents.
//! - `GET /api/v1/search` answered a missing `q` or a `limit` that is no number with the
//!   extractor's plain text instead of the JSON error body.
//! - `POST /api/v1/consents/verify` refused `valid_hours: 24.0`, a whole number the document's
//!   `integer` admits.

use govchain_api::consent::MAX_CONSENT_HOURS;
use govchain_chaincode::access::{Role, User};
use govchain_chaincode::business::PutMode;
use govchain_chaincode::TxKind;
use govchain_node::client::sign_tx;
use govchain_tests::{error_code, Net, NodeProc};
use serde_json::{json, Value};

const PASSWORD: &str = "Secret-2026";

/// Whether `v` is the documented error body with `code`.
fn is_error_body(v: &Value, code: &str) -> bool {
    v["error"]["code"] == code && v["error"]["message"].is_string()
}

#[test]
fn schemathesis_the_served_document_has_unique_operations_and_one_error_body() {
    let net = Net::generate(1);
    let node = NodeProc::start(&net, 1);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = node.client();
    let doc = rt.block_on(client.get_json("openapi.json")).unwrap();
    let mut ids = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap();
            assert!(ids.insert(id.to_string()), "{method} {path}: {id} twice");
            for (status, r) in op["responses"].as_object().unwrap() {
                if status.as_str() >= "400" {
                    assert_eq!(
                        r["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
    // An error answered is that body.
    let (s, b) = rt
        .block_on(client.call("GET", "txs/not-a-tx", &[], None))
        .unwrap();
    assert_eq!(s, 400, "{b}");
    assert!(is_error_body(&b, "bad_tx_id"), "{b}");
}

#[test]
fn schemathesis_search_answers_a_missing_or_malformed_parameter_with_the_json_error() {
    let net = Net::generate(1);
    let node = NodeProc::start(&net, 1);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = node.client();
    let admin = net.key("sysadmin");
    for path in ["search", "search?limit=5", "search?q=abcd&limit=five"] {
        let (s, b) = rt
            .block_on(client.call_signed("GET", path, &admin, None))
            .unwrap();
        assert_eq!(s, 400, "{path}: {b}");
        assert!(is_error_body(&b, "bad_query"), "{path}: {b}");
    }
    // The same search well formed is answered.
    let (s, b) = rt
        .block_on(client.call_signed("GET", "search?q=abcd&limit=5", &admin, None))
        .unwrap();
    assert_eq!(s, 200, "{b}");
}

#[test]
fn schemathesis_consent_hours_written_as_a_whole_float_are_a_number_of_hours() {
    let net = Net::generate(1);
    let node = NodeProc::start(&net, 1);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = node.client();
    let admin = net.key("sysadmin");
    let chain = net.genesis.chain_id.clone();
    let zhao = User {
        id: "zhao".into(),
        name: "测试赵".into(),
        department: "gaj".into(),
        level: 3,
        roles: vec![Role::Staff],
        disabled: false,
        key: None,
    };
    let put = sign_tx(
        &admin,
        &chain,
        &TxKind::PutUsers {
            mode: PutMode::Add,
            users: vec![zhao],
        },
    );
    assert_eq!(rt.block_on(client.submit_status(&put)).unwrap().0, 200);
    let body = json!({"password": PASSWORD});
    let (s, b) = rt
        .block_on(client.call_signed("PUT", "users/zhao/password", &admin, Some(&body)))
        .unwrap();
    assert_eq!(s, 200, "{b}");
    let login = json!({"user": "zhao", "password": PASSWORD});
    let (s, b) = rt
        .block_on(client.call("POST", "login", &[], Some(&login)))
        .unwrap();
    assert_eq!(s, 200, "{b}");
    let auth = [(
        "authorization",
        format!("Bearer {}", b["token"].as_str().unwrap()),
    )];
    let verify = |hours: Value| {
        let body = json!({"request_id": "no-such-request", "code": "123456", "valid_hours": hours});
        rt.block_on(client.call("POST", "consents/verify", &auth, Some(&body)))
            .unwrap()
    };
    // A whole number of hours, however written, up to the limit: the request is looked up (and
    // is unknown here).
    let max = MAX_CONSENT_HOURS as f64;
    for hours in [json!(24), json!(24.0), json!(max), json!(null)] {
        let (s, b) = verify(hours.clone());
        assert_eq!(s, 404, "{hours}: {b}");
        assert_eq!(error_code(&b), "unknown_request", "{hours}: {b}");
    }
    // Past the limit, a fraction, or below one hour: refused before any look-up.
    for hours in [json!(max + 1.0), json!(24.5), json!(0.0), json!(-1.0)] {
        let (s, b) = verify(hours.clone());
        assert_eq!(s, 400, "{hours}: {b}");
        assert!(is_error_body(&b, "bad_body"), "{hours}: {b}");
    }
}
