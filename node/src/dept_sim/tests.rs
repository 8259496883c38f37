//! Tests of `dept_sim`.

use super::cli::config_from_args;
use super::*;
use std::time::Instant;

const TOKEN: &str = "s3cret-token";
const DES: &str = "des:0123456789ABCDEF:1122334455667788";
const TDES: &str = "3des:0123456789ABCDEF23456789ABCDEF01456789ABCDEF0123:8877665544332211";

fn catalog_source(id: &str) -> DataSource {
    let catalog = govchain_genesis::catalog::default_catalog().unwrap();
    catalog.sources.into_iter().find(|s| s.id == id).unwrap()
}

fn sim_source(id: &str, codec: &str) -> SimSource {
    SimSource {
        source: catalog_source(id),
        codec: Codec::parse(codec).unwrap(),
    }
}

fn config(sources: Vec<SimSource>, records: u64) -> SimConfig {
    SimConfig {
        sources,
        records,
        seed: 7,
        token: TOKEN.to_string(),
        faults: Faults::default(),
    }
}

fn faulty(source: SimSource, records: u64, kind: FaultKind) -> SimConfig {
    let mut cfg = config(vec![source], records);
    cfg.faults = Faults {
        rate: 1.0,
        kinds: vec![kind],
        timeout_ms: 300,
        slow_ms: 200,
        seed: 1,
    };
    cfg
}

struct Server {
    sim: Arc<DeptSim>,
    base: String,
    http: reqwest::Client,
}

impl Server {
    async fn start(cfg: SimConfig) -> Server {
        let sim = DeptSim::new(cfg);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(Arc::clone(&sim).serve(listener));
        Server {
            sim,
            base,
            http: reqwest::Client::new(),
        }
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
    }

    async fn bytes(&self, path: &str) -> (StatusCode, Vec<u8>) {
        let r = self.get(path).send().await.unwrap();
        let status = StatusCode::from_u16(r.status().as_u16()).unwrap();
        (status, r.bytes().await.unwrap().to_vec())
    }

    async fn page(&self, path: &str) -> Page {
        let (status, body) = self.bytes(path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        serde_json::from_slice(&body).unwrap()
    }

    async fn touch(&self, source: &str, key: &str) -> reqwest::Response {
        self.http
            .post(format!(
                "{}/sources/{source}/records/{key}/touch",
                self.base
            ))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
    }
}

/// Walks the feed from 0 and checks the cursor contract on the way.
async fn walk(server: &Server, source: &str, limit: usize) -> Vec<PageRecord> {
    let (mut since, mut all) = (0, Vec::new());
    loop {
        let page = server
            .page(&format!(
                "/sources/{source}/records?since={since}&limit={limit}"
            ))
            .await;
        assert!(page.records.len() <= limit);
        assert!(page.records.iter().all(|r| r.seq > since));
        assert_eq!(page.next, page.records.last().map_or(since, |r| r.seq));
        since = page.next;
        all.extend(page.records);
        if !page.more {
            return all;
        }
    }
}

#[tokio::test]
async fn paging_walks_every_record_exactly_once_over_http() {
    let server = Server::start(config(vec![sim_source("gaj.jzz", "plain")], 1234)).await;
    let records = walk(&server, "gaj.jzz", 100).await;
    assert_eq!(records.len(), 1234);
    let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
    assert_eq!(
        seqs,
        (1..=1234).collect::<Vec<u64>>(),
        "seq 1..=records in order"
    );
    let keys: BTreeSet<&str> = records.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys.len(), 1234, "no record twice");
    // The payload is the synthetic record's raw JSON; key and person come from its fields.
    let source = catalog_source("gaj.jzz");
    let mut generator = Generator::new(7);
    for r in &records[..50] {
        let want = generator.record_for(&source, r.seq - 1);
        assert_eq!(r.payload.as_bytes(), want.raw);
        assert_eq!(r.key, want.fields["jzzbh"]);
        assert_eq!(r.person.as_deref(), Some(want.fields["sfzh"].as_str()));
    }
    // At the end of the feed: an empty page that keeps the cursor.
    let end = server.page("/sources/gaj.jzz/records?since=1234").await;
    assert_eq!((end.records.len(), end.next, end.more), (0, 1234, false));
    // Pair assertion: what the client saw is what the simulator holds.
    let seen = content_digest(
        records
            .iter()
            .map(|r| (r.key.as_str(), r.payload.as_bytes())),
    );
    assert_eq!(Some(seen.clone()), server.sim.digest("gaj.jzz"));
    let reply: DigestReply = server
        .get("/sources/gaj.jzz/digest")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((reply.count, reply.digest), seen);
    assert_eq!(server.sim.stats().requests, 14, "13 pages and the end");
}

#[tokio::test]
async fn feed_limit_is_checked_at_the_edges_over_http() {
    let server = Server::start(config(vec![sim_source("gaj.hjxx", "plain")], 5001)).await;
    let page = server.page("/sources/gaj.hjxx/records").await;
    assert_eq!((page.records.len(), page.more), (DEFAULT_LIMIT, true));
    let page = server.page("/sources/gaj.hjxx/records?limit=5000").await;
    assert_eq!(
        (page.records.len(), page.next, page.more),
        (5000, 5000, true)
    );
    let page = server
        .page("/sources/gaj.hjxx/records?since=5000&limit=5000")
        .await;
    assert_eq!((page.records.len(), page.next, page.more), (1, 5001, false));
    for bad in [
        "limit=5001",
        "limit=0",
        "limit=x",
        "limit=-1",
        "since=-1",
        "since=1.5",
    ] {
        let (status, body) = server
            .bytes(&format!("/sources/gaj.hjxx/records?{bad}"))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        let e: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(e["error"].as_str().is_some_and(|m| !m.is_empty()), "{bad}");
    }
    assert_eq!(
        server.sim.stats().requests,
        3,
        "refused requests are not served"
    );
}

/// Decodes `wire` with 32 wrong keys of `right`'s kind. PKCS#7 refuses a wrong key with
/// `BadPadding` unless the last decrypted byte happens to be a valid pad (about 1 in 256);
/// what slips through is never a page.
fn assert_wrong_keys_refused(right: &Codec, wire: &[u8]) {
    let mut refused = 0;
    for k in 0..32u8 {
        let bytes = payload_hash(&[k]);
        let wrong = match right {
            Codec::Des { iv, .. } => Codec::Des {
                key: bytes[..8].try_into().unwrap(),
                iv: *iv,
            },
            Codec::TripleDes { iv, .. } => Codec::TripleDes {
                key: bytes[..24].try_into().unwrap(),
                iv: *iv,
            },
            Codec::Plain => panic!("wrong keys need an encrypted source"),
        };
        match wrong.decode(wire) {
            Err(CodecError::BadPadding) => refused += 1,
            Ok(text) => assert!(serde_json::from_slice::<Page>(&text).is_err()),
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(refused >= 28, "{refused} of 32 wrong keys refused");
}

#[tokio::test]
async fn des_and_3des_pages_decode_only_with_the_right_key_over_http() {
    let cfg = config(
        vec![sim_source("gaj.jzz", DES), sim_source("gaj.sfzqf", TDES)],
        40,
    );
    let server = Server::start(cfg).await;
    for (id, spec) in [("gaj.jzz", DES), ("gaj.sfzqf", TDES)] {
        let codec = Codec::parse(spec).unwrap();
        let r = server
            .get(&format!("/sources/{id}/records?limit=40"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "application/octet-stream"
        );
        let wire = r.bytes().await.unwrap();
        assert!(
            serde_json::from_slice::<Page>(&wire).is_err(),
            "{id}: not plain JSON"
        );
        let page: Page = serde_json::from_slice(&codec.decode(&wire).unwrap()).unwrap();
        assert_eq!(page.records.len(), 40);
        let got = content_digest(
            page.records
                .iter()
                .map(|r| (r.key.as_str(), r.payload.as_bytes())),
        );
        assert_eq!(Some(got), server.sim.digest(id));
        assert_wrong_keys_refused(&codec, &wire);
        // The person endpoint is encrypted the same way.
        let pid = page.records[3].person.clone().unwrap();
        let (status, wire) = server.bytes(&format!("/sources/{id}/persons/{pid}")).await;
        assert_eq!(status, StatusCode::OK);
        let person: Page = serde_json::from_slice(&codec.decode(&wire).unwrap()).unwrap();
        assert_eq!(person.records, vec![page.records[3].clone()]);
        assert_wrong_keys_refused(&codec, &wire);
    }
}

#[tokio::test]
async fn touch_moves_the_record_to_the_feed_end_with_new_content_over_http() {
    let server = Server::start(config(vec![sim_source("gaj.jzz", "plain")], 30)).await;
    let before = walk(&server, "gaj.jzz", 500).await;
    let (count, digest_before) = server.sim.digest("gaj.jzz").unwrap();
    let old = before[4].clone();
    let r = server.touch("gaj.jzz", &old.key).await;
    assert_eq!(r.status().as_u16(), 200);
    let touched: TouchReply = r.json().await.unwrap();
    assert_eq!((touched.key.as_str(), touched.seq), (old.key.as_str(), 31));
    assert_ne!(touched.payload, old.payload);
    // The change feed past the old end holds exactly the touched record.
    let tail = server.page("/sources/gaj.jzz/records?since=30").await;
    assert_eq!(tail.records.len(), 1);
    let new = &tail.records[0];
    assert_eq!(
        (&new.key, new.seq, &new.person),
        (&old.key, 31, &old.person)
    );
    assert_eq!(new.payload, touched.payload);
    // Still one record per key; the old seq is gone from the feed.
    let after = walk(&server, "gaj.jzz", 500).await;
    assert_eq!(after.len(), 30);
    assert!(after.iter().all(|r| r.seq != old.seq));
    assert_eq!(after.last(), Some(new));
    let (count_after, digest_after) = server.sim.digest("gaj.jzz").unwrap();
    assert_eq!(count_after, count);
    assert_ne!(digest_after, digest_before);
    // The library call does the same, with the next seq.
    let again = server.sim.touch("gaj.jzz", &old.key).unwrap();
    let tail = server.page("/sources/gaj.jzz/records?since=31").await;
    assert_eq!(
        (tail.records[0].seq, &tail.records[0].payload),
        (32, &again)
    );
    assert_ne!(again, touched.payload);
    assert_eq!(
        server
            .touch("gaj.jzz", "NO-SUCH-KEY")
            .await
            .status()
            .as_u16(),
        404
    );
    assert_eq!(server.sim.touch("gaj.jzz", "NO-SUCH-KEY"), None);
}

#[test]
fn touched_records_keep_key_and_person_and_validate_for_every_catalog_source() {
    const N: u64 = 150;
    let catalog = govchain_genesis::catalog::default_catalog().unwrap();
    for source in &catalog.sources {
        let mut records = Records::generate(source, N, 3);
        assert_eq!(
            records.by_key.len() as u64,
            N,
            "{}: one per resident",
            source.id
        );
        for (key, entry) in &records.by_key {
            assert_valid(source, key, &entry.payload, entry.person.as_deref());
        }
        let keys: Vec<String> = records.by_key.keys().step_by(37).cloned().collect();
        for key in keys {
            let (old_payload, old_person) = {
                let e = &records.by_key[&key];
                (e.payload.clone(), e.person.clone())
            };
            let digest_before = records.digest();
            let (seq, payload) = records.touch(source, &key, 3).unwrap();
            assert_eq!(seq, records.feed.keys().copied().max().unwrap());
            assert_eq!(records.feed.get(&seq), Some(&key));
            assert_ne!(payload, old_payload, "{}", source.id);
            assert_ne!(records.digest(), digest_before);
            assert_valid(source, &key, &payload, old_person.as_deref());
        }
        assert_eq!(records.feed.len(), records.by_key.len());
    }
}

/// The payload validates against its source, with the given record key and person.
fn assert_valid(source: &DataSource, key: &str, payload: &str, person: Option<&str>) {
    let json: serde_json::Value = serde_json::from_str(payload).unwrap();
    assert_eq!(json["source"], source.id.as_str());
    let record = govchain_chaincode::records::Record {
        fields: serde_json::from_value(json["data"].clone()).unwrap(),
        raw: payload.as_bytes().to_vec(),
    };
    let valid = record
        .validate(source)
        .unwrap_or_else(|e| panic!("{}: {e}", source.id));
    assert_eq!(valid.key, key, "{}", source.id);
    assert_eq!(valid.person.as_ref().map(|p| p.as_str()), person);
}

#[tokio::test]
async fn person_endpoint_gives_every_current_record_of_a_person_over_http() {
    let cfg = config(
        vec![
            sim_source("gaj.hjxx", "plain"),
            sim_source("gaj.jzz", "plain"),
        ],
        20,
    );
    let server = Server::start(cfg).await;
    let pid = synth::person(7, 5).id;
    for id in ["gaj.hjxx", "gaj.jzz"] {
        let page = server.page(&format!("/sources/{id}/persons/{pid}")).await;
        assert_eq!(page.records.len(), 1, "{id}");
        assert_eq!(page.records[0].person.as_deref(), Some(pid.as_str()));
        assert_eq!((page.next, page.more), (6, false), "resident 5 has seq 6");
    }
    // A touched record is served with its new seq and content.
    let key = server
        .page(&format!("/sources/gaj.jzz/persons/{pid}"))
        .await
        .records[0]
        .key
        .clone();
    let payload = server.sim.touch("gaj.jzz", &key).unwrap();
    let page = server
        .page(&format!("/sources/gaj.jzz/persons/{pid}"))
        .await;
    assert_eq!(
        (page.records[0].seq, &page.records[0].payload, page.next),
        (21, &payload, 21)
    );
    // Someone with no records: an empty page.
    let stranger = synth::person(7, 999_999).id;
    let page = server
        .page(&format!("/sources/gaj.jzz/persons/{stranger}"))
        .await;
    assert_eq!((page.records.len(), page.next, page.more), (0, 0, false));
}

#[tokio::test]
async fn missing_or_wrong_token_is_refused_with_401_over_http() {
    let server = Server::start(config(vec![sim_source("gaj.hjxx", "plain")], 5)).await;
    let paths = [
        "/sources/gaj.hjxx/records",
        "/sources/gaj.hjxx/digest",
        "/stats",
    ];
    for path in paths {
        let url = format!("{}{path}", server.base);
        let attempts = [
            server.http.get(&url),
            server.http.get(&url).bearer_auth("wrong"),
            server.http.get(&url).bearer_auth(""),
            server.http.get(&url).header("authorization", TOKEN),
            server.http.get(&url).basic_auth(TOKEN, Some(TOKEN)),
        ];
        for request in attempts {
            let r = request.send().await.unwrap();
            assert_eq!(r.status().as_u16(), 401, "{path}");
            assert_eq!(r.headers()[header::WWW_AUTHENTICATE], "Bearer");
            let e: serde_json::Value = r.json().await.unwrap();
            assert!(e["error"].is_string());
        }
        assert_eq!(
            server.get(path).send().await.unwrap().status().as_u16(),
            200
        );
    }
    let r = server
        .http
        .post(format!("{}/sources/gaj.hjxx/records/x/touch", server.base));
    assert_eq!(r.send().await.unwrap().status().as_u16(), 401);
    assert_eq!(
        server.sim.stats().requests,
        1,
        "refused requests are not served"
    );
    // An empty token means no authentication.
    let mut open = config(vec![sim_source("gaj.hjxx", "plain")], 5);
    open.token.clear();
    let open = Server::start(open).await;
    let r = open
        .http
        .get(format!("{}/sources/gaj.hjxx/records", open.base));
    assert_eq!(r.send().await.unwrap().status().as_u16(), 200);
}

#[tokio::test]
async fn unknown_source_is_404_over_http() {
    let server = Server::start(config(vec![sim_source("gaj.hjxx", "plain")], 5)).await;
    for path in [
        "/sources/gaj.nope/records",
        "/sources/gaj.nope/persons/350102194001010011",
        "/sources/gaj.nope/digest",
    ] {
        let (status, body) = server.bytes(path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        let e: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(e["error"], "unknown source");
    }
    assert_eq!(server.touch("gaj.nope", "k").await.status().as_u16(), 404);
    assert_eq!(server.sim.digest("gaj.nope"), None);
    assert_eq!(server.sim.touch("gaj.nope", "k"), None);
}

#[tokio::test]
async fn fault_500_answers_500_is_counted_and_spares_control_endpoints_over_http() {
    let server = Server::start(faulty(
        sim_source("gaj.hjxx", "plain"),
        10,
        FaultKind::Error500,
    ))
    .await;
    let (status, body) = server.bytes("/sources/gaj.hjxx/records").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let e: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(e["error"].is_string());
    let pid = synth::person(7, 0).id;
    let (status, _) = server
        .bytes(&format!("/sources/gaj.hjxx/persons/{pid}"))
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    // Control endpoints are never faulted.
    assert_eq!(
        server.bytes("/sources/gaj.hjxx/digest").await.0,
        StatusCode::OK
    );
    assert_eq!(server.touch("gaj.hjxx", &pid).await.status().as_u16(), 200);
    let stats: SimStats = server
        .get("/stats")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let want = SimStats {
        requests: 2,
        faults: FaultCounts {
            error_500: 2,
            ..FaultCounts::default()
        },
    };
    assert_eq!(stats, want);
    assert_eq!(server.sim.stats(), want);
}

#[tokio::test]
async fn fault_truncated_cuts_the_body_in_half_so_it_does_not_decode_over_http() {
    for (id, spec) in [("gaj.hjxx", "plain"), ("gaj.jzz", DES), ("gaj.sfzqf", TDES)] {
        let whole = Server::start(config(vec![sim_source(id, spec)], 25)).await;
        let cut = Server::start(faulty(sim_source(id, spec), 25, FaultKind::Truncated)).await;
        let path = format!("/sources/{id}/records");
        let (_, full) = whole.bytes(&path).await;
        let (status, half) = cut.bytes(&path).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(half.len(), full.len() / 2, "{id}");
        assert_eq!(half[..], full[..half.len()]);
        let codec = Codec::parse(spec).unwrap();
        match codec.decode(&half) {
            Ok(text) => {
                assert_eq!(codec, Codec::Plain, "{id}: encrypted halves never decode");
                assert!(serde_json::from_slice::<Page>(&text).is_err());
            }
            Err(e) => assert!(
                matches!(e, CodecError::NotBlocks(_) | CodecError::BadPadding),
                "{id}: {e}"
            ),
        }
        assert_eq!(cut.sim.stats().faults.truncated, 1);
    }
}

#[tokio::test]
async fn fault_duplicate_page_overlaps_the_previous_page_over_http() {
    let server = Server::start(faulty(
        sim_source("gaj.hjxx", "plain"),
        300,
        FaultKind::DuplicatePage,
    ))
    .await;
    let page = server
        .page("/sources/gaj.hjxx/records?since=100&limit=50")
        .await;
    let seqs: Vec<u64> = page.records.iter().map(|r| r.seq).collect();
    assert_eq!(
        seqs,
        (76..=125).collect::<Vec<u64>>(),
        "as if since were 75"
    );
    assert_eq!((page.next, page.more), (125, true));
    // At the start of the feed there is nothing before: the same page.
    let first = server.page("/sources/gaj.hjxx/records?limit=50").await;
    assert_eq!(first.records.first().map(|r| r.seq), Some(1));
    // A person page is served normally, but counted.
    let pid = synth::person(7, 9).id;
    let person = server
        .page(&format!("/sources/gaj.hjxx/persons/{pid}"))
        .await;
    assert_eq!(person.records.len(), 1);
    assert_eq!(server.sim.stats().faults.duplicate, 3);
}

#[tokio::test]
async fn fault_slow_delays_the_answer_by_slow_ms_over_http() {
    let server = Server::start(faulty(sim_source("gaj.hjxx", "plain"), 10, FaultKind::Slow)).await;
    let started = Instant::now();
    let page = server.page("/sources/gaj.hjxx/records").await;
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(page.records.len(), 10, "then a normal answer");
    assert_eq!(server.sim.stats().faults.slow, 1);
}

#[tokio::test]
async fn fault_timeout_hangs_for_timeout_ms_over_http() {
    let server = Server::start(faulty(
        sim_source("gaj.hjxx", "plain"),
        10,
        FaultKind::Timeout,
    ))
    .await;
    let impatient = server
        .get("/sources/gaj.hjxx/records")
        .timeout(Duration::from_millis(100))
        .send()
        .await;
    assert!(impatient.is_err_and(|e| e.is_timeout()));
    let started = Instant::now();
    let page = server.page("/sources/gaj.hjxx/records").await;
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(page.records.len(), 10, "then a normal answer");
    assert_eq!(server.sim.stats().faults.timeout, 2);
}

#[test]
fn faults_follow_the_rate_and_replay_by_seed() {
    let draws = |rate: f64, seed: u64| {
        let mut cfg = config(vec![sim_source("gaj.hjxx", "plain")], 0);
        cfg.faults = Faults {
            rate,
            seed,
            ..Faults::default()
        };
        let sim = DeptSim::new(cfg);
        let kinds: Vec<Option<FaultKind>> = (0..2000).map(|_| sim.draw_fault()).collect();
        (kinds, sim.stats())
    };
    let (kinds, stats) = draws(0.25, 9);
    let faulted = kinds.iter().flatten().count() as u64;
    assert!(
        (400..600).contains(&faulted),
        "{faulted} of 2000 at rate 0.25"
    );
    assert_eq!(stats.requests, 2000);
    let counted: u64 = FaultKind::ALL.iter().map(|k| stats.faults.get(*k)).sum();
    assert_eq!(counted, faulted);
    assert!(
        FaultKind::ALL.iter().all(|k| stats.faults.get(*k) > 50),
        "{stats:?}"
    );
    assert_eq!(draws(0.25, 9).0, kinds, "a seed replays");
    assert_ne!(draws(0.25, 10).0, kinds);
    assert!(draws(0.0, 9).0.iter().all(Option::is_none));
}

#[test]
fn content_digest_is_independent_of_input_order() {
    let records = [("b", "2"), ("a", "1"), ("c", "3"), ("a", "0")];
    let as_bytes = |rs: &[(&'static str, &'static str)]| -> Vec<(&'static str, &'static [u8])> {
        rs.iter().map(|(k, p)| (*k, p.as_bytes())).collect()
    };
    let (count, digest) = content_digest(as_bytes(&records));
    assert_eq!(count, 4);
    let mut reversed = records;
    reversed.reverse();
    assert_eq!(content_digest(as_bytes(&reversed)), (count, digest.clone()));
    let mut changed = records;
    changed[0].1 = "2!";
    assert_ne!(content_digest(as_bytes(&changed)).1, digest);
    // The documented construction by hand. Keys tie on "a": their order follows the payload
    // hash, not the input.
    let mut sorted = as_bytes(&records);
    sorted.sort_by_key(|(k, p)| (*k, payload_hash(p)));
    let mut by_hand = Domain::SyncDigest.hasher();
    for (k, p) in sorted {
        by_hand.update(k.as_bytes());
        by_hand.update(&[0]);
        by_hand.update(&payload_hash(p));
    }
    assert_eq!(digest, by_hand.finalize().to_hex().to_string());
    assert_eq!(
        content_digest([]),
        (
            0,
            Domain::SyncDigest.hasher().finalize().to_hex().to_string()
        )
    );
}

#[test]
fn same_seed_gives_the_same_records_and_another_seed_others() {
    let digest = |seed| {
        let mut cfg = config(vec![sim_source("gaj.jzz", "plain")], 200);
        cfg.seed = seed;
        DeptSim::new(cfg).digest("gaj.jzz").unwrap()
    };
    assert_eq!(digest(1), digest(1));
    assert_ne!(digest(1).1, digest(2).1);
    assert_eq!(digest(1).0, 200);
}

#[test]
fn fault_kinds_parse_from_names_lists_and_all() {
    assert_eq!(
        FaultKind::parse_list("all").unwrap(),
        FaultKind::ALL.to_vec()
    );
    assert_eq!(
        FaultKind::parse_list(" 500, slow,500 ").unwrap(),
        vec![FaultKind::Error500, FaultKind::Slow]
    );
    assert_eq!(FaultKind::parse_list("duplicate,all").unwrap().len(), 5);
    assert_eq!(FaultKind::parse_list("").unwrap(), vec![]);
    for kind in FaultKind::ALL {
        assert_eq!(kind.name().parse::<FaultKind>(), Ok(kind));
    }
    assert_eq!(
        FaultKind::parse_list("500,boom"),
        Err(SimError::UnknownFaultKind("boom".into()))
    );
}

#[test]
fn configuration_is_checked_at_the_edges() {
    let base = || {
        config(
            vec![sim_source("gaj.hjxx", "plain")],
            MAX_RECORDS_PER_SOURCE,
        )
    };
    assert_eq!(base().check(), Ok(()));
    let refused = |change: &dyn Fn(&mut SimConfig)| {
        let mut cfg = base();
        change(&mut cfg);
        cfg.check().unwrap_err()
    };
    let e = refused(&|c| c.records = MAX_RECORDS_PER_SOURCE + 1);
    assert_eq!(e, SimError::TooManyRecords(MAX_RECORDS_PER_SOURCE + 1));
    for rate in [1.0001, -0.1, f64::NAN] {
        assert!(matches!(
            refused(&|c| c.faults.rate = rate),
            SimError::BadRate(_)
        ));
    }
    let mut edge = base();
    edge.faults.rate = 1.0;
    edge.faults.timeout_ms = MAX_FAULT_DELAY_MS;
    assert_eq!(edge.check(), Ok(()));
    let e = refused(&|c| c.faults.slow_ms = MAX_FAULT_DELAY_MS + 1);
    assert!(matches!(
        e,
        SimError::DelayTooLong {
            what: "slow_ms",
            ..
        }
    ));
    let e = refused(&|c| {
        c.faults.rate = 0.5;
        c.faults.kinds.clear();
    });
    assert_eq!(e, SimError::NoFaultKinds);
    assert_eq!(
        refused(&|c| c.token = "has space".into()),
        SimError::BadToken
    );
    assert_eq!(
        refused(&|c| c.token = "x".repeat(MAX_TOKEN_BYTES + 1)),
        SimError::BadToken
    );
    assert_eq!(refused(&|c| c.sources.clear()), SimError::SourceCount(0));
    let e = refused(&|c| c.sources.push(sim_source("gaj.hjxx", DES)));
    assert_eq!(e, SimError::DuplicateSource("gaj.hjxx".into()));
    // A record key the simulator cannot make unique (a date) is refused.
    let e = refused(&|c| c.sources[0].source.record_key_field = "csrq".into());
    assert!(matches!(e, SimError::BadSource { .. }), "{e}");
    let mut bad = config(vec![sim_source("gaj.hjxx", "plain")], 1);
    bad.faults.rate = 2.0;
    assert_eq!(DeptSim::try_new(bad).unwrap_err(), SimError::BadRate(2.0));
}

fn args() -> SimArgs {
    SimArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        sources: vec![],
        codecs: vec![],
        records: 10,
        seed: 5,
        token: TOKEN.into(),
        fault_rate: 0.1,
        faults: "500,slow".into(),
        timeout_ms: 1000,
        slow_ms: 50,
    }
}

#[test]
fn cli_arguments_pick_default_sources_codecs_and_faults() {
    let cfg = config_from_args(&args()).unwrap();
    let ids: Vec<&str> = cfg.sources.iter().map(|s| s.source.id.as_str()).collect();
    assert_eq!(ids, ["gaj.hjxx", "gaj.jzz", "gaj.sfzqf"]);
    assert!(cfg.sources.iter().all(|s| s.codec == Codec::Plain));
    assert_eq!(cfg.faults.kinds, [FaultKind::Error500, FaultKind::Slow]);
    assert_eq!(
        (cfg.faults.rate, cfg.faults.slow_ms, cfg.records),
        (0.1, 50, 10)
    );

    let mut a = args();
    a.sources = vec!["mzj.jhdj".into(), "gaj.hjxx".into()];
    a.codecs = vec![("gaj.hjxx".into(), TDES.into())];
    let cfg = config_from_args(&a).unwrap();
    assert_eq!(cfg.sources[0].codec, Codec::Plain);
    assert_eq!(cfg.sources[1].codec.name(), "3des");

    let refused = |change: &dyn Fn(&mut SimArgs)| {
        let mut a = args();
        change(&mut a);
        config_from_args(&a)
            .unwrap_err()
            .downcast::<SimError>()
            .unwrap()
    };
    let e = refused(&|a| a.sources = vec!["gaj.nope".into()]);
    assert_eq!(e, SimError::UnknownSource("gaj.nope".into()));
    let e = refused(&|a| a.codecs = vec![("mzj.jhdj".into(), DES.into())]);
    assert_eq!(e, SimError::CodecForUnsimulatedSource("mzj.jhdj".into()));
    let e = refused(&|a| a.codecs = vec![("gaj.jzz".into(), "des:00".into())]);
    assert!(matches!(e, SimError::Codec { .. }));
    let e = refused(&|a| a.codecs = vec![("gaj.jzz".into(), DES.into()); 2]);
    assert_eq!(e, SimError::DuplicateCodec("gaj.jzz".into()));
    assert!(matches!(
        refused(&|a| a.faults = "oops".into()),
        SimError::UnknownFaultKind(_)
    ));
    assert!(matches!(
        refused(&|a| a.fault_rate = 1.5),
        SimError::BadRate(_)
    ));
}

/// Bad data at the department system (issue 15 finding 10's tests): `set` writes a field's
/// value as given, valid or not, as a new change at the feed end; the key and person fields,
/// unknown keys and a missing value are refused.
#[tokio::test]
async fn set_writes_bad_data_as_a_new_change_over_http() {
    let server = Server::start(config(vec![sim_source("gaj.jzz", "plain")], 10)).await;
    let before = walk(&server, "gaj.jzz", 500).await;
    let old = before[2].clone();
    let post = |path: String| {
        server
            .http
            .post(format!("{}{path}", server.base))
            .bearer_auth(TOKEN)
            .send()
    };
    let r = post(format!(
        "/sources/gaj.jzz/records/{}/set?field=zjzt&value=%E5%BE%85%E5%AE%A1",
        old.key
    ))
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let set: TouchReply = r.json().await.unwrap();
    assert_eq!(set.seq, 11);
    let tail = server.page("/sources/gaj.jzz/records?since=10").await;
    assert_eq!(tail.records.len(), 1);
    assert_eq!(
        (&tail.records[0].key, &tail.records[0].person),
        (&old.key, &old.person)
    );
    let v: serde_json::Value = serde_json::from_str(&tail.records[0].payload).unwrap();
    assert_eq!(v["data"]["zjzt"], "待审");
    for (path, status) in [
        (
            format!(
                "/sources/gaj.jzz/records/{}/set?field=sfzh&value=1",
                old.key
            ),
            400,
        ),
        (
            format!(
                "/sources/gaj.jzz/records/{}/set?field=jzzbh&value=1",
                old.key
            ),
            400,
        ),
        (
            format!("/sources/gaj.jzz/records/{}/set?field=zjzt", old.key),
            400,
        ),
        (
            "/sources/gaj.jzz/records/nosuch/set?field=zjzt&value=x".to_string(),
            404,
        ),
    ] {
        assert_eq!(
            post(path.clone()).await.unwrap().status().as_u16(),
            status,
            "{path}"
        );
    }
    assert_eq!(
        walk(&server, "gaj.jzz", 500).await.len(),
        10,
        "nothing else changed"
    );
}
