//! Personal-data queries over HTTP (R-ARC-1, R-QRY-1, R-QRY-6, R-SEC-7), on SQLite and on
//! MySQL/MariaDB: the person file, fuzzy (Chinese) search and combined queries answer only
//! requests signed by the system administrator; every other caller gets a clear 401/403 and no
//! data. Bad input gets a 4xx and changes nothing.

use std::time::{Duration, Instant};

use govchain_api::auth::{sign_request, sign_request_with_nonce, SIGNATURE_HEADER, TIME_HEADER};
use govchain_api::projection::Projection;
use govchain_node::client::{records_tx, urlencode};
use govchain_node::synth::Generator;
use govchain_tests::error_code as code;
use govchain_tests::{now_ms, Net, NodeProc};
use serde_json::Value;

#[test]
fn sqlite_person_file_search_and_combined_queries_need_the_system_administrators_signature() {
    run(None);
}

#[test]
fn mysql_person_file_search_and_combined_queries_need_the_system_administrators_signature() {
    let base = std::env::var("GOVCHAIN_MYSQL_URL").expect(
        "GOVCHAIN_MYSQL_URL is not set: this test needs MySQL/MariaDB \
         (scripts/test and .ci/run set it to mysql://root@127.0.0.1:3306/test)",
    );
    let (prefix, _) = base.rsplit_once('/').expect("URL ends in /DATABASE");
    let name = format!("govchain_q{}", std::process::id());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let admin = rt
        .block_on(Projection::server(&base))
        .expect("MySQL reachable");
    for sql in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name} CHARACTER SET utf8mb4"),
    ] {
        rt.block_on(sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&admin))
            .unwrap();
    }
    run(Some(format!("{prefix}/{name}")));
    rt.block_on(sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {name}"))).execute(&admin))
        .unwrap();
}

/// The whole scenario against a node projecting into `db` (default: SQLite).
fn run(db: Option<String>) {
    let net = Net::generate(1);
    net.tune(1, |c| c.api.db = db.clone());
    let mut node = NodeProc::start(&net, 1);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = node.client();
    let source = net.source("gaj.hjxx");
    let mut gen = Generator::new(5);
    let records: Vec<_> = (0..20).map(|i| gen.record_for(&source, i)).collect();
    let target = records[7].clone();
    let id = target.fields["sfzh"].clone();
    let name = target.fields["xm"].clone();
    let tx = records_tx(&net.node_key(1), &net.genesis.chain_id, &source, records);
    let r = rt.block_on(client.submit(&tx, true)).unwrap();
    assert_eq!(r.status, "committed");
    let admin = net.key("sysadmin");
    let get = |path: &str| rt.block_on(client.get_signed(path, &admin)).unwrap();

    // The projection follows the commit; the person file then has the record with provenance.
    let deadline = Instant::now() + Duration::from_secs(30);
    let file = loop {
        let (status, body) = get(&format!("persons/{id}"));
        if status == 200 {
            break body;
        }
        assert_eq!(status, 404, "{body}");
        assert!(Instant::now() < deadline, "person never projected");
        std::thread::sleep(Duration::from_millis(100));
    };
    let recs = file["records"].as_array().unwrap();
    assert_eq!(recs.len(), 1, "{file}");
    assert_eq!(recs[0]["source"], "gaj.hjxx");
    assert_eq!(recs[0]["department"], "gaj");
    assert_eq!(recs[0]["tx_id"], tx.id().to_hex());
    assert_eq!(recs[0]["height"], r.height.unwrap());
    assert_eq!(recs[0]["fields"]["xm"], name.as_str());

    // Fuzzy: the last two characters of the name find the person.
    let tail: String = name
        .chars()
        .rev()
        .take(2)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let (status, found) = get(&format!("search?q={}", urlencode(&tail)));
    assert_eq!(status, 200, "{found}");
    let hits = found["results"].as_array().unwrap();
    assert!(
        hits.iter().any(|h| h["record"]["person_id"] == id.as_str()),
        "{tail} did not find {name}: {found}"
    );
    assert!(hits
        .iter()
        .all(|h| h["value"].as_str().unwrap().contains(&tail)));
    // An ID fragment finds it too.
    let (status, found) = get(&format!("search?q={}", &id[6..14]));
    assert_eq!(status, 200);
    assert!(found["results"]
        .as_array()
        .unwrap()
        .iter()
        .any(|h| h["record"]["person_id"] == id.as_str()));

    // A street fragment of the address finds it (and only addresses holding it).
    let address = target.fields["hjdz"].clone();
    let street: String = address
        .split_once('区')
        .map_or(address.as_str(), |(_, rest)| rest)
        .chars()
        .take(4)
        .collect();
    let (status, found) = get(&format!("search?q={}&limit=100", urlencode(&street)));
    assert_eq!(status, 200, "{found}");
    let hits = found["results"].as_array().unwrap();
    assert!(
        hits.iter().any(|h| h["record"]["person_id"] == id.as_str()),
        "{street} did not find {address}: {found}"
    );
    assert!(hits
        .iter()
        .all(|h| h["value"].as_str().unwrap().contains(&street)));

    // Denials: no signature, a department's key, a bad signature, a replay, a stale time.
    let path = format!("persons/{id}");
    let full = format!("/api/v1/{path}");
    let (status, body) = rt.block_on(client.get_with(&path, &[])).unwrap();
    assert_eq!((status, code(&body)), (401, "unauthenticated"), "{body}");
    let (status, body) = rt
        .block_on(client.get_signed(&path, &net.node_key(1)))
        .unwrap();
    assert_eq!((status, code(&body)), (403, "forbidden"), "{body}");
    assert!(body.get("records").is_none());
    let to = rt.block_on(client.audience()).unwrap();
    let mut headers = sign_request(&admin, &to, "GET", &full, now_ms(), b"");
    let good = headers.clone();
    let sig = &mut headers
        .iter_mut()
        .find(|h| h.0 == SIGNATURE_HEADER)
        .unwrap()
        .1;
    let flipped = if sig.starts_with('0') { "1" } else { "0" };
    sig.replace_range(0..1, flipped);
    let (status, body) = rt.block_on(client.get_with(&path, &headers)).unwrap();
    assert_eq!((status, code(&body)), (401, "bad_signature"), "{body}");
    let (status, _) = rt.block_on(client.get_with(&path, &good)).unwrap();
    assert_eq!(status, 200);
    let (status, body) = rt.block_on(client.get_with(&path, &good)).unwrap();
    assert_eq!((status, code(&body)), (401, "replayed_request"), "{body}");
    // Nonces: the same path at the same millisecond, signed twice with two nonces, is two
    // requests; a malformed nonce is refused.
    let t = now_ms();
    for nonce in ["a-1", "a-2"] {
        let h = sign_request_with_nonce(&admin, &to, "GET", &full, t, nonce, b"");
        let (status, body) = rt.block_on(client.get_with(&path, &h)).unwrap();
        assert_eq!(status, 200, "{nonce}: {body}");
    }
    let mut h = sign_request_with_nonce(&admin, &to, "GET", &full, t, "a-3", b"");
    h[2].1 = "a 3;".into();
    let (status, body) = rt.block_on(client.get_with(&path, &h)).unwrap();
    assert_eq!((status, code(&body)), (401, "bad_signature"), "{body}");
    let stale = sign_request(&admin, &to, "GET", &full, now_ms() - 10 * 60 * 1000, b"");
    let (status, body) = rt.block_on(client.get_with(&path, &stale)).unwrap();
    assert_eq!((status, code(&body)), (401, "stale_request"), "{body}");
    // A signature for another path does not open this one.
    let other = sign_request(&admin, &to, "GET", "/api/v1/persons/x", now_ms(), b"");
    let (status, body) = rt.block_on(client.get_with(&path, &other)).unwrap();
    assert_eq!((status, code(&body)), (401, "bad_signature"), "{body}");
    let mut bad_time = sign_request(&admin, &to, "GET", &full, now_ms(), b"");
    bad_time.iter_mut().find(|h| h.0 == TIME_HEADER).unwrap().1 = "soon".into();
    let (status, body) = rt.block_on(client.get_with(&path, &bad_time)).unwrap();
    assert_eq!((status, code(&body)), (401, "bad_signature"), "{body}");

    // Bad input: a wrong check digit, a too short or too long query, a limit out of range, SQL
    // metacharacters (bound, never spliced: the tables are intact afterwards).
    let mut bad_id = id.clone();
    bad_id.pop();
    bad_id.push(if id.ends_with('0') { '1' } else { '0' });
    let (status, body) = get(&format!("persons/{bad_id}"));
    assert_eq!((status, code(&body)), (400, "bad_person_id"), "{body}");
    for (q, expect) in [
        ("search?q=%E5%BC%A0", "bad_query"),
        (&format!("search?q={}", "a".repeat(33)), "bad_query"),
        ("search?q=abc", "query_too_short"),
        ("search?q=12-3", "query_too_short"),
        ("search?q=ab&limit=0", "bad_limit"),
        ("search?q=ab&limit=101", "bad_limit"),
    ] {
        let (status, body) = get(q);
        assert_eq!((status, code(&body)), (400, expect), "{q}: {body}");
    }
    let (status, body) = get("search?q=%27%3B%20DROP%20TABLE%20records%3B%20--");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"].as_array().unwrap().len(), 0);
    let (status, _) = get(&format!("persons/{id}"));
    assert_eq!(status, 200, "records survived");

    // Combined queries: equality on several fields, a date range, paging.
    let xb = target.fields["xb"].clone();
    let csrq = target.fields["csrq"].clone();
    let (status, body) = get(&format!(
        "records?source=gaj.hjxx&eq=xb:{}&eq=sfzh:{id}",
        urlencode(&xb)
    ));
    assert_eq!(status, 200, "{body}");
    let res = body["results"].as_array().unwrap();
    assert_eq!(res.len(), 1, "{body}");
    assert_eq!(res[0]["person_id"], id.as_str());
    let (status, body) = get(&format!(
        "records?source=gaj.hjxx&from=csrq:{csrq}&to=csrq:{csrq}&page_size=100"
    ));
    assert_eq!(status, 200, "{body}");
    let res = body["results"].as_array().unwrap();
    assert!(res.iter().any(|r| r["person_id"] == id.as_str()), "{body}");
    assert!(res.iter().all(|r| r["fields"]["csrq"] == csrq.as_str()));
    // A common equality with a rare range: the range drives (fewer index entries), and the
    // answer is exactly the range's records of that sex, in record-key order.
    let keys = |rs: &[serde_json::Value]| -> Vec<String> {
        rs.iter()
            .map(|r| r["record_key"].as_str().unwrap().to_string())
            .collect()
    };
    let mut expect: Vec<String> = keys(
        &res.iter()
            .filter(|r| r["fields"]["xb"] == xb.as_str())
            .cloned()
            .collect::<Vec<_>>(),
    );
    expect.sort();
    let (status, body) = get(&format!(
        "records?source=gaj.hjxx&eq=xb:{}&from=csrq:{csrq}&to=csrq:{csrq}&page_size=100",
        urlencode(&xb)
    ));
    assert_eq!(status, 200, "{body}");
    assert_eq!(keys(body["results"].as_array().unwrap()), expect, "{body}");
    assert!(expect.contains(&id), "the target is among them");
    // A condition nothing matches empties the answer, whatever the others match.
    let (status, body) = get(&format!(
        "records?source=gaj.hjxx&eq=xb:{}&eq=xm:{}",
        urlencode(&xb),
        urlencode("无此人")
    ));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"].as_array().unwrap().len(), 0, "{body}");
    let page = |n: usize| {
        let (status, body) = get(&format!(
            "records?source=gaj.hjxx&eq=xb:{}&page_size=3&page={n}",
            urlencode(&xb)
        ));
        assert_eq!(status, 200, "{body}");
        body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                assert_eq!(r["fields"]["xb"], xb.as_str());
                r["record_key"].as_str().unwrap().to_string()
            })
            .collect::<Vec<_>>()
    };
    let (p1, p2) = (page(1), page(2));
    assert_eq!(p1.len(), 3);
    assert!(p1.iter().all(|k| !p2.contains(k)), "pages overlap");
    for (q, expect) in [
        ("records?source=gaj.hjxx&eq=nosuch:1", "unknown_field"),
        ("records?source=no.such&eq=xb:1", "unknown_source"),
        ("records?source=gaj.hjxx&page_size=0", "bad_page"),
        ("records?source=gaj.hjxx&page_size=101", "bad_page"),
        ("records?source=gaj.hjxx&page=0", "bad_page"),
        ("records?source=gaj.hjxx&from=csrq:2020-13-01", "bad_value"),
        ("records?source=gaj.hjxx&from=xb:a", "unsupported_range"),
        ("records?source=gaj.hjxx&eq=xb", "bad_query"),
        ("records?source=gaj.hjxx&sort=xb", "bad_query"),
        ("records?eq=xb:a", "bad_query"),
    ] {
        let (status, body) = get(q);
        assert_eq!((status, code(&body)), (400, expect), "{q}: {body}");
    }
    // Exports: CSV (labels, Chinese intact, parsed back) and JSON, each with its digest.
    let export = |q: &str| {
        let path = format!("/api/v1/records/export?{q}");
        let headers = sign_request(&admin, &to, "GET", &path, now_ms(), b"");
        let mut req = node.http().get(format!("{}{path}", node.url));
        for (k, v) in &headers {
            req = req.header(*k, v);
        }
        rt.block_on(async {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let digest = r
                .headers()
                .get("x-govchain-digest")
                .map(|v| v.to_str().unwrap().to_string());
            (status, digest, r.bytes().await.unwrap().to_vec())
        })
    };
    let (status, digest, csv_bytes) = export(&format!(
        "source=gaj.hjxx&eq=sfzh:{id}&columns=sfzh,xm,csrq&format=csv"
    ));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&csv_bytes));
    assert_eq!(
        digest.unwrap(),
        blake3::hash(&csv_bytes).to_hex().to_string()
    );
    let text = std::str::from_utf8(&csv_bytes).unwrap();
    let text = text
        .strip_prefix('\u{feff}')
        .expect("UTF-8 BOM for spreadsheets");
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_string)
        .collect();
    assert!(
        header[1].ends_with("(xm)") && header[1].chars().any(|c| c > '\u{4e00}'),
        "{header:?}"
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(&rows[0][0], id.as_str());
    assert_eq!(&rows[0][1], name.as_str(), "Chinese name intact");
    assert_eq!(&rows[0][2], csrq.as_str());
    let (status, digest, json_bytes) = export(&format!("source=gaj.hjxx&eq=sfzh:{id}&format=json"));
    assert_eq!(status, 200);
    assert_eq!(
        digest.unwrap(),
        blake3::hash(&json_bytes).to_hex().to_string()
    );
    let doc: Value = serde_json::from_slice(&json_bytes).unwrap();
    assert_eq!(doc["rows"][0]["fields"]["xm"], name.as_str());
    let (status, digest, book) = export(&format!(
        "source=gaj.hjxx&eq=sfzh:{id}&columns=sfzh,xm&format=xlsx"
    ));
    assert_eq!(status, 200);
    assert_eq!(digest.unwrap(), blake3::hash(&book).to_hex().to_string());
    use calamine::Reader;
    let mut wb: calamine::Xlsx<_> =
        calamine::open_workbook_from_rs(std::io::Cursor::new(book)).expect("a valid XLSX");
    let range = wb
        .worksheet_range("gaj_hjxx")
        .expect("sheet named after the source");
    let cell = |r: u32, c: u32| range.get_value((r, c)).map(|v| v.to_string());
    assert!(cell(0, 1).unwrap().ends_with("(xm)"));
    assert_eq!(cell(1, 0).as_deref(), Some(id.as_str()));
    assert_eq!(
        cell(1, 1).as_deref(),
        Some(name.as_str()),
        "Chinese name intact"
    );
    assert_eq!(range.height(), 2);
    for (q, expect) in [
        ("source=gaj.hjxx&format=xls", "bad_format"),
        ("source=gaj.hjxx&columns=xm,nosuch", "unknown_field"),
        ("source=gaj.hjxx&page_size=10001", "bad_page"),
    ] {
        let (status, _, body) = export(q);
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!((status, code(&body)), (400, expect), "{q}: {body}");
    }
    let (status, _, _) = rt.block_on(async {
        let r = node
            .http()
            .get(format!(
                "{}/api/v1/records/export?source=gaj.hjxx",
                node.url
            ))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), (), ())
    });
    assert_eq!(status, 401, "an unsigned export is refused");

    // The OpenAPI document lists every endpoint (it holds no personal data: unsigned).
    let doc = rt.block_on(client.get_json("openapi.json")).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with('3'), "{doc}");
    for p in [
        "/api/v1/status",
        "/api/v1/txs",
        "/api/v1/txs/{id}",
        "/api/v1/blocks/{height}",
        "/api/v1/persons/{id}",
        "/api/v1/search",
        "/api/v1/records",
        "/api/v1/records/export",
    ] {
        assert!(
            doc["paths"].get(p).is_some(),
            "{p} missing from the OpenAPI document"
        );
    }

    let (status, body) = get("records?source=gaj.hjxx&eq=xm:%27%20OR%201%3D1%20--");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"].as_array().unwrap().len(), 0, "{body}");
    assert!(node.terminate(Duration::from_secs(30)));
}

#[test]
fn a_node_without_projection_answers_queries_with_a_clear_503() {
    let net = Net::generate(1);
    net.tune(1, |c| c.api.db = Some("off".into()));
    let mut node = NodeProc::start(&net, 1);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = node.client();
    let admin = net.key("sysadmin");
    for path in [
        "persons/11010519491231001X",
        "search?q=ab",
        "records?source=gaj.hjxx",
    ] {
        let (status, body) = rt.block_on(client.get_signed(path, &admin)).unwrap();
        assert_eq!(
            (status, code(&body)),
            (503, "no_projection"),
            "{path}: {body}"
        );
    }
    // Still authorization first: an unsigned request learns nothing.
    let (status, body) = rt.block_on(client.get_with("search?q=ab", &[])).unwrap();
    assert_eq!((status, code(&body)), (401, "unauthenticated"), "{body}");
    assert!(node.terminate(Duration::from_secs(30)));
}
