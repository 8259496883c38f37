//! Synchronization with department systems (issue 7; R-SYN-1…3, R-SEC-6): a real node process
//! pulls simulated department systems over HTTP — plain JSON, DES and 3DES payloads, with every
//! kind of fault injected — and every record ends on chain exactly once, through kill -9
//! restarts too. A pull-through refreshes a changed record before the person file answers.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use govchain_chaincode::access::{Role, User};
use govchain_chaincode::business::PutMode;
use govchain_chaincode::records::StoredRecord;
use govchain_chaincode::TxKind;
use govchain_genesis::ConnectorConfig;
use govchain_ledger::{Height, Keypair, Store};
use govchain_node::client::sign_tx;
use govchain_node::dept_sim::{content_digest, DeptSim, FaultKind, Faults, SimConfig, SimSource};
use govchain_node::legacy_codec::Codec;
use govchain_tests::{fast_timeouts, Net, NodeProc};

const DES: &str = "des:133457799BBCDFF1:0102030405060708";
const TDES: &str = "3des:0123456789ABCDEFFEDCBA987654321089ABCDEF01234567:1122334455667788";
const TOKEN: &str = "dept-secret";

/// A simulator served from its own runtime for the test's lifetime.
struct Sim {
    sim: Arc<DeptSim>,
    url: String,
    rt: tokio::runtime::Runtime,
}

fn start_sim(net: &Net, sources: &[(&str, &str)], records: u64, faults: Faults) -> Sim {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sim = DeptSim::new(SimConfig {
        sources: sources
            .iter()
            .map(|(id, codec)| SimSource {
                source: net.source(id),
                codec: Codec::parse(codec).unwrap(),
            })
            .collect(),
        records,
        seed: 7,
        token: TOKEN.into(),
        faults,
    });
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    rt.spawn(sim.clone().serve(listener));
    Sim { sim, url, rt }
}

fn connector(source: &str, codec: &str, url: &str) -> ConnectorConfig {
    let mut c = ConnectorConfig::new(source, url);
    c.codec = codec.into();
    c.token = Some(TOKEN.into());
    // Scheduled runs every minute, all day; the tests also start runs by hand.
    c.schedule = "* * * * *".into();
    c.window = "00:00-24:00".into();
    c.timeout_ms = 1_000;
    c.retry_base_ms = 20;
    c.retry_max_ms = 500;
    c.attempts = 6;
    c
}

fn no_faults() -> Faults {
    Faults {
        rate: 0.0,
        kinds: FaultKind::ALL.to_vec(),
        timeout_ms: 3_000,
        slow_ms: 200,
        seed: 1,
    }
}

fn call(
    rt: &tokio::runtime::Runtime,
    node: &NodeProc,
    key: &Keypair,
    method: &str,
    path: &str,
) -> (u16, serde_json::Value) {
    let c = node.client();
    rt.block_on(c.call_signed(method, path, key, None)).unwrap()
}

/// Starts runs (again after a failed one) until every source's feed is read to `records` and
/// nothing waits in the outbox.
fn sync_until_done(
    sim: &Sim,
    node: &NodeProc,
    admin: &Keypair,
    sources: &[&str],
    records: u64,
    within: Duration,
) {
    let t = Instant::now();
    loop {
        let (code, st) = call(&sim.rt, node, admin, "GET", "sync/status");
        assert_eq!(code, 200, "{st}");
        let mut done = 0;
        for s in st["sources"].as_array().unwrap() {
            let id = s["source"].as_str().unwrap();
            if !sources.contains(&id) {
                continue;
            }
            if s["cursor"] == records && s["pending"] == 0 && s["inflight_txs"] == 0 {
                done += 1;
            } else if s["running"] == false {
                call(
                    &sim.rt,
                    node,
                    admin,
                    "POST",
                    &format!("sync/run?source={id}"),
                );
            }
        }
        if done == sources.len() {
            return;
        }
        assert!(
            t.elapsed() < within,
            "sync not done in {within:?}: {st:#}\n{}",
            node.log_text()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Every record of `sources` in the node's committed blocks: asserts each record key occurs
/// exactly once, at version 1 in state, and returns (count, digest) per source.
fn on_chain(data: &std::path::Path, sources: &[&str]) -> BTreeMap<String, (u64, String)> {
    let store = Store::open_read_only(data).unwrap();
    let tip = store.tip().unwrap().unwrap();
    let mut seen: HashMap<(String, String), u32> = HashMap::new();
    let mut raws: BTreeMap<String, Vec<(String, Vec<u8>)>> = BTreeMap::new();
    for h in 1..=tip.height.0 {
        let block = store.block(Height(h)).unwrap().unwrap();
        for tx in &block.txs {
            if let Ok(TxKind::SubmitRecords { source, records }) = TxKind::decode(&tx.body.payload)
            {
                if !sources.contains(&source.as_str()) {
                    continue;
                }
                let key_field = store_source_key(&store, &source);
                for r in records {
                    let key = r.fields[&key_field].clone();
                    *seen.entry((source.clone(), key.clone())).or_default() += 1;
                    raws.entry(source.clone()).or_default().push((key, r.raw));
                }
            }
        }
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        twice.is_empty(),
        "records on chain more than once: {:?}",
        &twice[..twice.len().min(5)]
    );
    for (source, key) in seen.keys() {
        let b = store
            .state_get(&govchain_chaincode::keys::record(source, key))
            .unwrap()
            .unwrap();
        let s: StoredRecord = govchain_ledger::codec::decode(&b, 1 << 20).unwrap();
        assert_eq!(
            s.version, 1,
            "{source}/{key} changed after its first version"
        );
    }
    raws.into_iter()
        .map(|(s, v)| {
            let d = content_digest(v.iter().map(|(k, r)| (k.as_str(), r.as_slice())));
            (s, d)
        })
        .collect()
}

fn store_source_key(store: &Store, source: &str) -> String {
    let b = store
        .state_get(&govchain_chaincode::keys::source(source))
        .unwrap()
        .unwrap();
    let s: govchain_chaincode::catalog::DataSource =
        govchain_ledger::codec::decode(&b, 1 << 20).unwrap();
    s.record_key_field
}

const SOURCES: [(&str, &str); 4] = [
    ("gaj.jzz", "plain"),
    ("gaj.sfzqf", DES),
    ("gaj.hkqy", TDES),
    ("gaj.csdj", "plain"),
];

fn setup(records: u64, faults: Faults) -> (Net, Sim) {
    let net = Net::generate(1);
    let sim = start_sim(&net, &SOURCES, records, faults);
    let url = sim.url.clone();
    net.tune(1, |c| {
        fast_timeouts(c);
        c.api.db = Some("off".into());
        c.connectors = SOURCES
            .iter()
            .map(|(s, codec)| connector(s, codec, &url))
            .collect();
    });
    (net, sim)
}

fn all_faults(rate: f64) -> Faults {
    Faults {
        rate,
        kinds: FaultKind::ALL.to_vec(),
        timeout_ms: 3_000,
        slow_ms: 200,
        seed: 11,
    }
}

fn assert_exactly_once(net: &Net, sim: &Sim) {
    let chain = on_chain(&net.data_dir(1), &SOURCES.map(|(s, _)| s));
    for (s, _) in SOURCES {
        let expected = sim.sim.digest(s).unwrap();
        assert_eq!(
            chain.get(s),
            Some(&expected),
            "source {s}: chain (count, digest) differs from the department system's"
        );
    }
}

/// Issue 7 acceptance: 100,000 records over four sources (plain, DES, 3DES, plain) with 500s,
/// timeouts, slow answers, truncated bodies and repeated pages injected: every record is on
/// chain exactly once, count and digest equal to the simulator's.
#[test]
fn full_sync_under_every_fault_lands_each_record_exactly_once() {
    let (net, sim) = setup(25_000, all_faults(0.15));
    let mut node = NodeProc::start(&net, 1);
    let admin = net.key("sysadmin");
    let t = Instant::now();
    sync_until_done(
        &sim,
        &node,
        &admin,
        &SOURCES.map(|(s, _)| s),
        25_000,
        Duration::from_secs(900),
    );
    eprintln!(
        "100,000 records synced under faults in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let stats = sim.sim.stats();
    let faults = serde_json::to_value(&stats).unwrap();
    for kind in ["500", "timeout", "slow", "truncated", "duplicate"] {
        assert!(
            faults["faults"][kind].as_u64().unwrap() > 0,
            "fault {kind} never injected: {faults}"
        );
    }
    // Failures were seen, retried and recorded in the history.
    let (code, h) = call(
        &sim.rt,
        &node,
        &admin,
        "GET",
        "sync/history?source=gaj.sfzqf",
    );
    assert_eq!(code, 200, "{h}");
    let runs = h["runs"].as_array().unwrap();
    assert!(
        runs.iter()
            .map(|r| r["errors"].as_u64().unwrap())
            .sum::<u64>()
            > 0,
        "{h}"
    );
    assert!(
        runs.iter()
            .map(|r| r["fetched"].as_u64().unwrap())
            .sum::<u64>()
            >= 25_000,
        "{h}"
    );
    assert!(node.terminate(Duration::from_secs(30)));
    assert_exactly_once(&net, &sim);
}

/// Issue 7 acceptance: the node is killed with -9 several times while it syncs; after the last
/// restart the same exactly-once result holds (outbox and in-flight transactions survive).
#[test]
fn kill9_during_sync_still_lands_each_record_exactly_once() {
    let records = 10_000;
    let (net, sim) = setup(records, all_faults(0.05));
    let mut node = NodeProc::start(&net, 1);
    let admin = net.key("sysadmin");
    let ids = SOURCES.map(|(s, _)| s);
    let mut kills = 0;
    let mut interrupted = 0;
    for round in 0..4 {
        for s in ids {
            call(
                &sim.rt,
                &node,
                &admin,
                "POST",
                &format!("sync/run?source={s}"),
            );
        }
        std::thread::sleep(Duration::from_millis(1_500 + 500 * round));
        node.kill9();
        kills += 1;
        node.restart();
        // Did the kill land mid-sync (feed partly read, or records still queued)?
        let (_, st) = call(&sim.rt, &node, &admin, "GET", "sync/status");
        let mid = st["sources"].as_array().unwrap().iter().any(|s| {
            let c = s["cursor"].as_u64().unwrap();
            (c > 0 && c < records) || s["pending"].as_u64().unwrap() > 0
        });
        interrupted += usize::from(mid);
    }
    sync_until_done(&sim, &node, &admin, &ids, records, Duration::from_secs(600));
    assert_eq!(kills, 4);
    assert!(interrupted >= 1, "no kill landed in the middle of a sync");
    // Some of the work happened before the kills (not all after the last restart).
    let (_, st) = call(&sim.rt, &node, &admin, "GET", "sync/status");
    let after_restart: u64 = st["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["committed_since_start"].as_u64().unwrap())
        .sum();
    assert!(
        after_restart < 4 * records,
        "everything was committed after the last restart: {st}"
    );
    assert!(node.terminate(Duration::from_secs(30)));
    assert_exactly_once(&net, &sim);
    let v = govchain_tests::verify(&net.data_dir(1), &net.genesis_path());
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
}

/// R-SYN-2: a record changed in the department system appears in the person file answered
/// right after (`fresh=true`); a source that does not answer is reported stale. Bad sync
/// requests get clear errors.
#[test]
fn pull_through_answers_with_the_changed_record_and_names_stale_sources() {
    let net = Net::generate(1);
    let sim = start_sim(&net, &[("gaj.jzz", "plain")], 200, no_faults());
    let url = sim.url.clone();
    net.tune(1, |c| {
        fast_timeouts(c);
        c.connectors = vec![
            connector("gaj.jzz", "plain", &url),
            // A system that is down: nothing listens there.
            ConnectorConfig {
                unhealthy_after: 1,
                ..connector("gaj.csdj", "plain", "http://127.0.0.1:9")
            },
        ];
    });
    let mut node = NodeProc::start(&net, 1);
    let admin = net.key("sysadmin");
    sync_until_done(
        &sim,
        &node,
        &admin,
        &["gaj.jzz"],
        200,
        Duration::from_secs(120),
    );

    // Change one resident's record in the department system.
    let src = net.source("gaj.jzz");
    let person_field = src.person_field.clone().unwrap();
    let (key, old) = a_synced_record(&net.data_dir(1), "gaj.jzz");
    let person = old.record.fields[&person_field].clone();
    let new_payload = sim.sim.touch("gaj.jzz", &key).expect("touch");
    assert_ne!(new_payload.as_bytes(), old.record.raw.as_slice());

    let (code, file) = call(
        &sim.rt,
        &node,
        &admin,
        "GET",
        &format!("persons/{person}?fresh=true&deadline_ms=5000"),
    );
    assert_eq!(code, 200, "{file}");
    let records = file["records"].as_array().unwrap();
    let mine = records
        .iter()
        .find(|r| r["source"] == "gaj.jzz" && r["record_key"] == key.as_str())
        .unwrap_or_else(|| panic!("record {key} missing: {file:#}"));
    let new: serde_json::Value = serde_json::from_str(&new_payload).unwrap();
    assert_eq!(mine["fields"], new["data"], "{mine:#}");
    assert_eq!(mine["version"], 2, "{mine:#}");
    let fresh = &file["freshness"];
    assert_eq!(
        fresh["refreshed"],
        serde_json::json!(["gaj.jzz"]),
        "{fresh}"
    );
    let stale = fresh["stale"].as_array().unwrap();
    assert_eq!(stale.len(), 1, "{fresh}");
    assert_eq!(stale[0]["source"], "gaj.csdj");
    assert!(!stale[0]["reason"].as_str().unwrap().is_empty());

    // The dead system is reported unhealthy in status and metrics; the live one is healthy.
    let (_, st) = call(&sim.rt, &node, &admin, "GET", "status");
    assert_eq!(
        st["sync_unhealthy"],
        serde_json::json!(["gaj.csdj"]),
        "{st}"
    );
    let metrics = sim
        .rt
        .block_on(async {
            node.http()
                .get(format!("{}/api/v1/metrics", node.url))
                .send()
                .await?
                .text()
                .await
        })
        .unwrap();
    assert!(
        metrics.contains("govchain_sync_healthy{source=\"gaj.csdj\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("govchain_sync_healthy{source=\"gaj.jzz\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("govchain_sync_committed_total{source=\"gaj.jzz\"} 201"),
        "{metrics}"
    );

    // An approval system's account without the resident's consent gets no pull-through:
    // refused (and audited) before any department system is asked.
    let staff = Keypair::generate().unwrap();
    let users = TxKind::PutUsers {
        mode: PutMode::Add,
        users: vec![User {
            id: "zhao".into(),
            name: "赵测试".into(),
            department: "gaj".into(),
            level: 1,
            roles: vec![Role::System],
            disabled: false,
            key: Some(staff.public()),
        }],
    };
    let tx = sign_tx(&admin, &net.genesis.chain_id, &users);
    let client = node.client();
    assert_eq!(sim.rt.block_on(client.submit_status(&tx)).unwrap().0, 200);
    let asked = sim.sim.stats().requests;
    let (code, e) = call(
        &sim.rt,
        &node,
        &staff,
        "GET",
        &format!("persons/{person}?fresh=true"),
    );
    assert_eq!(
        (code, govchain_tests::error_code(&e)),
        (403, "no_consent"),
        "{e}"
    );
    assert_eq!(
        sim.sim.stats().requests,
        asked,
        "a department system was asked for a refused caller"
    );

    // Bad requests: clear errors, nothing started.
    let fresh_maybe = format!("persons/{person}?fresh=maybe");
    let no_deadline = format!("persons/{person}?fresh=true&deadline_ms=0");
    let long_deadline = format!("persons/{person}?fresh=true&deadline_ms=30001");
    for (method, path, status, code) in [
        ("POST", "sync/run", 400, "bad_query"),
        ("POST", "sync/run?source=mzj.jhdj", 404, "not_found"),
        (
            "GET",
            "sync/history?source=gaj.jzz&limit=0",
            400,
            "bad_query",
        ),
        ("GET", fresh_maybe.as_str(), 400, "bad_query"),
        ("GET", no_deadline.as_str(), 400, "bad_query"),
        ("GET", long_deadline.as_str(), 400, "bad_query"),
    ] {
        let (got, e) = call(&sim.rt, &node, &admin, method, path);
        assert_eq!(
            (got, govchain_tests::error_code(&e)),
            (status, code),
            "{method} {path}: {e}"
        );
    }
    // A key that is no operator's (the department's node key is not a user) is refused.
    let (code, _) = call(&sim.rt, &node, &net.node_key(1), "GET", "sync/status");
    assert_eq!(code, 403);
    node.terminate(Duration::from_secs(30));
}

/// A connector for a source of another department, or with a bad codec, stops the node at
/// start with a clear message (it could never sign those records).
#[test]
fn misconfigured_connectors_are_refused_at_start() {
    let net = Net::generate(1);
    for (conn, expected) in [
        (
            ConnectorConfig::new("mzj.jhdj", "http://127.0.0.1:9"),
            "belongs to department",
        ),
        (
            ConnectorConfig::new("gaj.nope", "http://127.0.0.1:9"),
            "no such data source",
        ),
        (
            ConnectorConfig {
                codec: "des:00:00".into(),
                ..ConnectorConfig::new("gaj.jzz", "http://127.0.0.1:9")
            },
            "codec",
        ),
        (
            ConnectorConfig {
                window: "25:00-01:00".into(),
                ..ConnectorConfig::new("gaj.jzz", "http://127.0.0.1:9")
            },
            "schedule",
        ),
    ] {
        net.tune(1, |c| c.connectors = vec![conn.clone()]);
        let out = std::process::Command::new(govchain_tests::govchain_bin())
            .args(["node", "--config"])
            .arg(net.config_path(1))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{conn:?} accepted");
        assert!(err.contains(expected), "{conn:?}: {err}");
    }
}

/// The first synced record of `source` in a node's state: (record key, record).
fn a_synced_record(data: &std::path::Path, source: &str) -> (String, StoredRecord) {
    let chain = Store::open_read_only(data).unwrap();
    let prefix = format!("rec/{source}/");
    let found = chain
        .state_iter()
        .filter_map(|e| e.ok())
        .find_map(|(k, v)| {
            let k = String::from_utf8_lossy(&k).into_owned();
            let key = k.strip_prefix(&prefix)?.to_string();
            Some((key, govchain_ledger::codec::decode(&v, 1 << 20).ok()?))
        })
        .expect("a synced record");
    found
}

/// R-SYN-2 across departments: a staff member at 公安's node asks for a resident's file fresh;
/// the record that 民政's system changed is refreshed by 民政's node (the only one that may sign
/// it), committed, and is in the answer of 公安's node right after.
#[test]
fn pull_through_reaches_other_departments_systems_through_their_nodes() {
    let net = Net::generate(2);
    let sim = start_sim(&net, &[("mzj.jhdj", "plain")], 100, no_faults());
    let url = sim.url.clone();
    net.tune(2, |c| {
        fast_timeouts(c);
        if c.department == "mzj" {
            c.connectors = vec![connector("mzj.jhdj", "plain", &url)];
        }
    });
    assert_eq!(
        net.config(1).api.sync_peers.len(),
        1,
        "genesis lists the other node's API"
    );
    let node1 = NodeProc::start(&net, 1);
    let mut node2 = NodeProc::start(&net, 2);
    let admin = net.key("sysadmin");
    sync_until_done(
        &sim,
        &node2,
        &admin,
        &["mzj.jhdj"],
        100,
        Duration::from_secs(120),
    );
    let (key, old) = a_synced_record(&net.data_dir(2), "mzj.jhdj");
    let person_field = net.source("mzj.jhdj").person_field.unwrap();
    let person = old.record.fields[&person_field].clone();
    let new_payload = sim.sim.touch("mzj.jhdj", &key).expect("touch");

    let (code, file) = call(
        &sim.rt,
        &node1,
        &admin,
        "GET",
        &format!("persons/{person}?fresh=true&deadline_ms=10000"),
    );
    assert_eq!(code, 200, "{file}");
    let mine = file["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["source"] == "mzj.jhdj" && r["record_key"] == key.as_str())
        .unwrap_or_else(|| panic!("record {key} missing: {file:#}"))
        .clone();
    let new: serde_json::Value = serde_json::from_str(&new_payload).unwrap();
    assert_eq!(mine["fields"], new["data"], "{mine:#}");
    assert_eq!(mine["version"], 2);
    assert_eq!(
        file["freshness"]["refreshed"],
        serde_json::json!(["mzj.jhdj"]),
        "{file:#}"
    );
    assert_eq!(
        file["freshness"]["stale"],
        serde_json::json!([]),
        "{file:#}"
    );

    // Only departments' nodes may ask a node to pull: the administrator's key is refused, an
    // unsigned request too, and a bad person id is a clear error.
    let pull = format!("sync/pull?person={person}");
    let (code, _) = call(&sim.rt, &node2, &admin, "POST", &pull);
    assert_eq!(code, 403);
    let unsigned = sim
        .rt
        .block_on(async {
            node2
                .http()
                .post(format!("{}/api/v1/{pull}", node2.url))
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
        .unwrap();
    assert_eq!(unsigned, 401);
    let (code, e) = call(
        &sim.rt,
        &node2,
        &net.node_key(1),
        "POST",
        "sync/pull?person=123",
    );
    assert_eq!(code, 400, "{e}");

    // With 民政's node down, the file still answers and names what could not be refreshed.
    node2.kill9();
    let (code, file) = call(
        &sim.rt,
        &node1,
        &admin,
        "GET",
        &format!("persons/{person}?fresh=true&deadline_ms=1000"),
    );
    assert_eq!(code, 200, "{file}");
    let stale = file["freshness"]["stale"].as_array().unwrap();
    assert_eq!(stale.len(), 1, "{file:#}");
    assert!(
        stale[0]["source"].as_str().unwrap().contains(&node2.url),
        "{file:#}"
    );
}
