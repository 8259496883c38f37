//! Refused records of department systems (issue 15, finding 10; R-SYN-3) with a real node
//! process and the department-system simulator: the records that fail validation are listed
//! with their reasons (endpoint, CLI, metric) to operators only, and once the department
//! system or the catalog is fixed a retry moves them to the chain.

use std::sync::Arc;
use std::time::{Duration, Instant};

use govchain_chaincode::access::{Role, User};
use govchain_chaincode::business::PutMode;
use govchain_chaincode::catalog::FieldType;
use govchain_chaincode::records::StoredRecord;
use govchain_chaincode::TxKind;
use govchain_genesis::ConnectorConfig;
use govchain_ledger::{Keypair, Store};
use govchain_node::client::sign_tx;
use govchain_node::dept_sim::{DeptSim, FaultKind, Faults, SimConfig, SimSource};
use govchain_node::legacy_codec::Codec;
use govchain_tests::{error_code, fast_timeouts, govchain_bin, Net, NodeProc};
use serde_json::Value;

const TOKEN: &str = "dept-secret";
const SOURCE: &str = "gaj.jzz";
const RECORDS: u64 = 30;
const SEED: u64 = 7;

struct Sim {
    sim: Arc<DeptSim>,
    url: String,
    rt: tokio::runtime::Runtime,
}

fn start_sim(net: &Net) -> Sim {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sim = DeptSim::new(SimConfig {
        sources: vec![SimSource {
            source: net.source(SOURCE),
            codec: Codec::Plain,
        }],
        records: RECORDS,
        seed: SEED,
        token: TOKEN.into(),
        faults: Faults {
            rate: 0.0,
            kinds: FaultKind::ALL.to_vec(),
            timeout_ms: 1_000,
            slow_ms: 10,
            seed: 1,
        },
    });
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    rt.spawn(sim.clone().serve(listener));
    Sim { sim, url, rt }
}

/// The simulator's record key of resident `i`.
fn key_of(net: &Net, i: u64) -> String {
    let s = net.source(SOURCE);
    let mut g = govchain_node::synth::Generator::new(SEED);
    let mut key = String::new();
    for n in 0..=i {
        key = g.record_for(&s, n).fields[&s.record_key_field].clone();
    }
    key
}

fn call(sim: &Sim, node: &NodeProc, key: &Keypair, method: &str, path: &str) -> (u16, Value) {
    let c = node.client();
    sim.rt
        .block_on(c.call_signed(method, path, key, None))
        .unwrap()
}

/// `govchain sync ARGS… --url URL --key KEY`: its stdout as JSON; asserts it succeeded.
fn cli(node: &NodeProc, key: &std::path::Path, args: &[&str]) -> Value {
    let out = std::process::Command::new(govchain_bin())
        .arg("sync")
        .args(args)
        .args(node.endpoint_args())
        .arg("--key")
        .arg(key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "govchain sync {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn wait_for(what: &str, within: Duration, node: &NodeProc, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; log:\n{}",
            node.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The committed version of `key` of the source, read from the node's store.
fn on_chain(net: &Net, key: &str) -> Option<StoredRecord> {
    let store = Store::open_read_only(&net.data_dir(1)).ok()?;
    let b = store
        .state_get(&govchain_chaincode::keys::record(SOURCE, key))
        .ok()??;
    govchain_ledger::codec::decode(&b, 1 << 20).ok()
}

/// Finding 10: three records the department system sends are invalid (a status value the
/// catalog does not know, an impossible date, a bad phone number). They are not on chain and
/// each is listed with its reason — by the endpoint, the CLI and the metric — to the system
/// administrator and an auditor, not to another department's administrator or anyone
/// anonymous; an auditor may not retry. Then the department system fixes the date and the
/// catalog learns the status value: a retry (CLI) puts both records on chain and leaves only
/// the still-invalid one listed, checked twice, with its reason.
#[test]
fn finding_10_refused_records_are_listed_and_a_retry_moves_the_fixed_ones_to_the_chain() {
    let net = Net::generate(1);
    let sim = start_sim(&net);
    let (status_key, date_key, phone_key) = (key_of(&net, 3), key_of(&net, 8), key_of(&net, 21));
    sim.sim
        .set_field(SOURCE, &status_key, "zjzt", "待审")
        .unwrap();
    sim.sim
        .set_field(SOURCE, &date_key, "qfrq", "2026-02-30")
        .unwrap();
    sim.sim
        .set_field(SOURCE, &phone_key, "lxdh", "call me")
        .unwrap();
    let url = sim.url.clone();
    net.tune(1, |c| {
        fast_timeouts(c);
        c.api.db = Some("off".into());
        let mut k = ConnectorConfig::new(SOURCE, &url);
        k.token = Some(TOKEN.into());
        // Only runs started here: once a year, at 00:00 on 1 January.
        k.schedule = "0 0 1 1 *".into();
        k.window = "00:00-24:00".into();
        k.timeout_ms = 1_000;
        k.retry_base_ms = 20;
        k.retry_max_ms = 200;
        c.connectors = vec![k];
    });
    let node = NodeProc::start(&net, 1);
    let admin = net.key("sysadmin");
    let admin_file = net.dir.path().join("keys/sysadmin.key");
    let source_status = || {
        let (code, st) = call(&sim, &node, &admin, "GET", "sync/status");
        assert_eq!(code, 200, "{st}");
        st["sources"][0].clone()
    };

    let (code, r) = call(
        &sim,
        &node,
        &admin,
        "POST",
        &format!("sync/run?source={SOURCE}"),
    );
    assert_eq!(code, 202, "{r}");
    wait_for(
        "the first run to be committed",
        Duration::from_secs(60),
        &node,
        || {
            let s = source_status();
            // Three changes (the bad data) after the 30 initial records.
            s["cursor"] == RECORDS + 3
                && s["pending"] == 0
                && s["inflight_txs"] == 0
                && s["running"] == false
        },
    );
    for k in [&status_key, &date_key, &phone_key] {
        assert!(
            on_chain(&net, k).is_none(),
            "refused record {k} is on chain"
        );
    }
    assert!(on_chain(&net, &key_of(&net, 4)).is_some());

    // The listing: each refused record with its reason.
    let (code, list) = call(
        &sim,
        &node,
        &admin,
        "GET",
        &format!("sync/rejected?source={SOURCE}"),
    );
    assert_eq!(code, 200, "{list}");
    assert_eq!(
        (list["kept"].as_u64(), list["dropped"].as_u64()),
        (Some(3), Some(0)),
        "{list}"
    );
    let reason_of = |list: &Value, key: &str| -> Option<String> {
        list["records"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"] == key)
            .map(|r| r["reason"].as_str().unwrap().to_string())
    };
    for (key, field) in [
        (&status_key, "zjzt"),
        (&date_key, "qfrq"),
        (&phone_key, "lxdh"),
    ] {
        let reason = reason_of(&list, key).unwrap_or_else(|| panic!("{key} not listed: {list}"));
        assert!(reason.contains(field), "{reason}");
    }
    // The CLI shows the same.
    let listed = cli(
        &node,
        &admin_file,
        &["rejected", "--source", SOURCE, "--limit", "10"],
    );
    assert_eq!(listed["records"], list["records"]);
    // The metric.
    let metrics = sim
        .rt
        .block_on(async {
            node.http()
                .get(format!("{}/api/v1/metrics", node.url))
                .send()
                .await
                .unwrap()
                .text()
                .await
        })
        .unwrap();
    assert!(
        metrics.contains(&format!(
            "govchain_sync_rejected{{source=\"{SOURCE}\"}} 3\n"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "govchain_sync_rejected_dropped_total{{source=\"{SOURCE}\"}} 0\n"
        )),
        "{metrics}"
    );

    // Rights: an auditor lists but may not retry; another department's administrator and
    // an anonymous caller get nothing.
    let auditor = Keypair::generate().unwrap();
    let users = TxKind::PutUsers {
        mode: PutMode::Add,
        users: vec![User {
            id: "shen".into(),
            name: "沈审计".into(),
            department: "gaj".into(),
            level: 1,
            roles: vec![Role::System, Role::Auditor],
            disabled: false,
            key: Some(auditor.public()),
        }],
    };
    let client = node.client();
    let tx = sign_tx(&admin, &net.genesis.chain_id, &users);
    let (code, body) = sim.rt.block_on(client.submit_status(&tx)).unwrap();
    assert_eq!(code, 200, "{body}");
    let rejected = format!("sync/rejected?source={SOURCE}");
    let retry = format!("sync/rejected/retry?source={SOURCE}");
    let (code, body) = call(&sim, &node, &auditor, "GET", &rejected);
    assert_eq!(code, 200, "{body}");
    let (code, body) = call(&sim, &node, &auditor, "POST", &retry);
    assert_eq!((code, error_code(&body)), (403, "forbidden"), "{body}");
    let other_dept = net.key("mzj-admin");
    let (code, body) = call(&sim, &node, &other_dept, "GET", &rejected);
    assert_eq!((code, error_code(&body)), (403, "forbidden"), "{body}");
    let (code, _) = sim
        .rt
        .block_on(client.call("GET", &rejected, &[], None))
        .unwrap();
    assert_eq!(code, 401);
    // Bad queries are clear errors.
    for (path, want) in [
        ("sync/rejected".to_string(), 400),
        (format!("{rejected}&limit=0"), 400),
        (format!("{rejected}&limit=1001"), 400),
        ("sync/rejected?source=gaj.nope".to_string(), 404),
    ] {
        let (code, body) = call(&sim, &node, &admin, "GET", &path);
        assert_eq!(code, want, "{path}: {body}");
    }

    // The department system fixes the date; the catalog learns the status value.
    sim.sim.touch(SOURCE, &date_key).unwrap();
    let mut def = net.source(SOURCE);
    let f = def.fields.iter_mut().find(|f| f.name == "zjzt").unwrap();
    let FieldType::Enum(opts) = &mut f.ty else {
        panic!("zjzt is an enum")
    };
    opts.push("待审".into());
    let tx = sign_tx(&admin, &net.genesis.chain_id, &TxKind::RegisterSource(def));
    let (code, body) = sim.rt.block_on(client.submit_status(&tx)).unwrap();
    assert_eq!(code, 200, "{body}");

    let retried = cli(&node, &admin_file, &["retry-rejected", "--source", SOURCE]);
    assert_eq!(retried["retry"]["fetched"], 3, "{retried}");
    assert_eq!(
        retried["retry"]["resolved"], 1,
        "the status value passes now: {retried}"
    );
    assert_eq!(retried["run_started"], true, "{retried}");
    wait_for(
        "both fixed records on chain",
        Duration::from_secs(60),
        &node,
        || on_chain(&net, &status_key).is_some() && on_chain(&net, &date_key).is_some(),
    );
    let status_rec = on_chain(&net, &status_key).unwrap();
    assert_eq!(status_rec.record.fields["zjzt"], "待审");
    let date_rec = on_chain(&net, &date_key).unwrap();
    assert_ne!(date_rec.record.fields["qfrq"], "2026-02-30");
    wait_for(
        "the fixed records to leave the list",
        Duration::from_secs(30),
        &node,
        || call(&sim, &node, &admin, "GET", &rejected).1["kept"] == 1,
    );
    let (_, list) = call(&sim, &node, &admin, "GET", &rejected);
    assert_eq!(list["records"][0]["key"], phone_key.as_str(), "{list}");
    assert_eq!(list["records"][0]["checks"], 2, "{list}");
    assert!(on_chain(&net, &phone_key).is_none());
    let history = call(
        &sim,
        &node,
        &admin,
        "GET",
        &format!("sync/history?source={SOURCE}"),
    )
    .1;
    assert!(
        history["runs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["trigger"] == "retry"),
        "{history}"
    );
}
