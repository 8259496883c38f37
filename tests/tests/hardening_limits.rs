//! Issue 15 (acceptance: every endpoint's limit at limit and limit + 1): through a real node,
//! each named limit of the API is accepted at its value and refused one past it with a clear
//! code — the same constants the handlers use, so a changed limit changes this test with it.

use govchain_api::access::{CONSENT_HEADER, CONSENT_ID_CHARS};
use govchain_api::auth::{sign_request_with_nonce, MAX_NONCE_CHARS};
use govchain_api::paging::MAX_OFFSET_ROWS;
use govchain_api::query::{MAX_CONDITIONS, MAX_PAGE_SIZE};
use govchain_api::search::{MAX_LIMIT, QUERY_CHARS};
use govchain_api::session::LOGIN_MAX_BODY_BYTES;
use govchain_tests::{error_code as code, now_ms, Net, NodeProc};
use serde_json::Value;

#[test]
fn every_named_limit_is_accepted_at_its_value_and_refused_one_past_it() {
    let net = Net::generate(1);
    // Below the largest transaction, so the body limit (not the decoder's) is what refuses.
    net.tune(1, |c| c.api.max_body_bytes = 64 * 1024);
    let node = NodeProc::start(&net, 1);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = node.client();
    let admin = net.key("sysadmin");
    let get = |path: &str| -> (u16, Value) {
        rt.block_on(client.call_signed("GET", path, &admin, None))
            .unwrap()
    };
    let letters = |n: usize| "abcd".repeat(n).chars().take(n).collect::<String>();
    // (what, the request at the limit, the request one past it, the refusal's code)
    let conds = |n: usize| -> String {
        (0..n)
            .map(|i| format!("&eq=xm:n{i}"))
            .collect::<Vec<_>>()
            .concat()
    };
    let cases: Vec<(&str, String, String, &str)> = vec![
        (
            "search q characters",
            format!("search?q={}", letters(*QUERY_CHARS.end())),
            format!("search?q={}", letters(QUERY_CHARS.end() + 1)),
            "bad_query",
        ),
        (
            "search limit",
            format!("search?q=abcd&limit={MAX_LIMIT}"),
            format!("search?q=abcd&limit={}", MAX_LIMIT + 1),
            "bad_limit",
        ),
        (
            "records page_size",
            format!("records?source=gaj.hjxx&page_size={MAX_PAGE_SIZE}"),
            format!("records?source=gaj.hjxx&page_size={}", MAX_PAGE_SIZE + 1),
            "bad_page",
        ),
        (
            // The deepest page skips MAX_OFFSET_ROWS rows; deeper ones page by cursor (finding 7).
            "records page depth",
            format!(
                "records?source=gaj.hjxx&page_size={MAX_PAGE_SIZE}&page={}",
                MAX_OFFSET_ROWS / MAX_PAGE_SIZE + 1
            ),
            format!(
                "records?source=gaj.hjxx&page_size={MAX_PAGE_SIZE}&page={}",
                MAX_OFFSET_ROWS / MAX_PAGE_SIZE + 2
            ),
            "page_too_deep",
        ),
        (
            "records conditions",
            format!("records?source=gaj.hjxx{}", conds(MAX_CONDITIONS)),
            format!("records?source=gaj.hjxx{}", conds(MAX_CONDITIONS + 1)),
            "bad_query",
        ),
    ];
    for (what, at, over, want) in &cases {
        let (s, b) = get(at);
        assert_eq!(s, 200, "{what} at the limit: {b}");
        let (s, b) = get(over);
        assert_eq!(
            (s, code(&b)),
            (400, *want),
            "{what} one past the limit: {b}"
        );
    }

    // The signed request's nonce: 64 characters, not 65.
    let call = |headers: Vec<(&str, String)>| -> (u16, Value) {
        rt.block_on(client.call("GET", "me", &headers, None))
            .unwrap()
    };
    let to = rt.block_on(client.audience()).unwrap();
    let nonce = |n: usize| -> Vec<(&str, String)> {
        sign_request_with_nonce(
            &admin,
            &to,
            "GET",
            "/api/v1/me",
            now_ms(),
            &"n".repeat(n),
            b"",
        )
        .to_vec()
    };
    assert_eq!(call(nonce(MAX_NONCE_CHARS)).0, 200, "nonce at the limit");
    let (s, b) = call(nonce(MAX_NONCE_CHARS + 1));
    assert_eq!((s, code(&b)), (401, "bad_signature"), "nonce one past: {b}");

    // The consent header: exactly a consent id's 64 hex digits.
    for (n, want) in [
        (CONSENT_ID_CHARS - 1, 400),
        (CONSENT_ID_CHARS, 200),
        (CONSENT_ID_CHARS + 1, 400),
    ] {
        let mut h = nonce(8);
        h.push((CONSENT_HEADER, "a".repeat(n)));
        let (s, b) = call(h);
        assert_eq!(s, want, "consent id of {n} hex digits: {b}");
        if want == 400 {
            assert_eq!(code(&b), "bad_consent");
        }
    }

    // The login body: 4 KiB, not one byte more (padding is JSON whitespace).
    let login = |bytes: usize| -> (u16, Value) {
        let json = r#"{"user":"nobody","password":"Wrong-password-1"}"#;
        let body = format!("{json}{}", " ".repeat(bytes - json.len()));
        rt.block_on(async {
            let r = node
                .http()
                .post(format!("{}/api/v1/login", node.url))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let s = r.status().as_u16();
            (s, r.json::<Value>().await.unwrap_or(Value::Null))
        })
    };
    let (s, b) = login(LOGIN_MAX_BODY_BYTES);
    assert_eq!(s, 401, "a login body at the limit is read: {b}");
    let (s, b) = login(LOGIN_MAX_BODY_BYTES + 1);
    assert_eq!((s, code(&b)), (413, "too_large"), "one byte past: {b}");

    // A transaction body: `[api] max_body_bytes`, not one byte more.
    assert_eq!(net.config(1).api.max_body_bytes, 64 * 1024);
    let max = net.config(1).api.max_body_bytes;
    let post = |n: usize| -> (u16, Value) {
        rt.block_on(async {
            let r = node
                .http()
                .post(format!("{}/api/v1/txs", node.url))
                .header("content-type", "application/octet-stream")
                .body(vec![0u8; n])
                .send()
                .await
                .unwrap();
            let s = r.status().as_u16();
            (s, r.json::<Value>().await.unwrap_or(Value::Null))
        })
    };
    let (s, b) = post(max);
    assert_eq!(
        s, 400,
        "a body at the limit is decoded (and is no transaction): {b}"
    );
    let (s, b) = post(max + 1);
    assert_eq!((s, code(&b)), (413, "too_large"), "one byte past: {b}");
}
