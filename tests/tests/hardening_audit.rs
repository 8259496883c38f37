//! Issue 15, finding 2 (R-AUD-1, R-AUD-3): no request can stop auditing. Through a real node:
//! a hostile request (a 60 KB path, a 100 KB consent header) no longer makes an entry the chain
//! refuses, so the entries behind it still reach the chain, also after a kill -9; an entry the
//! chain refuses anyway is quarantined and alerted in status and metrics; personal-data reads
//! fail closed while the audit backlog is over its limit; and 1,000 concurrent anonymous and
//! bad-credential requests leave the node's memory bounded and are counted on chain in a few
//! aggregate entries, while a real read's entry still arrives.

use std::time::{Duration, Instant};

use govchain_api::audit_queue::AuditQueue;
use govchain_chaincode::access::{AuditAction, AuditEntry};
use govchain_ledger::{Hash, Store, TimestampMs};
use govchain_node::client::Client;
use govchain_tests::{error_code as code, now_ms, Net, NodeProc};
use serde_json::Value;

struct Node {
    net: Net,
    node: NodeProc,
    rt: tokio::runtime::Runtime,
    client: Client,
}

impl Node {
    fn start(tune: impl Fn(&mut govchain_genesis::NodeConfig)) -> Node {
        let net = Net::generate(1);
        net.tune(1, tune);
        let node = NodeProc::start(&net, 1);
        let client = node.client();
        Node {
            net,
            node,
            rt: tokio::runtime::Runtime::new().unwrap(),
            client,
        }
    }

    fn status(&self) -> Value {
        self.rt.block_on(self.client.get_json("status")).unwrap()
    }

    fn call(&self, method: &str, path: &str, headers: &[(&str, String)]) -> (u16, Value) {
        self.rt
            .block_on(self.client.call(method, path, headers, None))
            .unwrap()
    }

    /// A GET signed by the genesis system administrator (reads without consent, audited).
    fn admin_get(&self, path: &str) -> (u16, Value) {
        let key = self.net.key("sysadmin");
        self.rt
            .block_on(self.client.call_signed("GET", path, &key, None))
            .unwrap()
    }

    fn metrics(&self) -> String {
        match self.call("GET", "metrics", &[]) {
            (200, Value::String(text)) => text,
            other => panic!("metrics: {other:?}"),
        }
    }

    /// Waits until nothing is queued for the chain and everything is projected.
    fn audit_settled(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let s = self.status();
            if s["audit_backlog"] == 0
                && s["mempool_txs"] == 0
                && s["projected_height"] == s["height"]
            {
                return;
            }
            assert!(Instant::now() < deadline, "audit never settled: {s}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Audit entries on chain (projected) matching `query`, read as the system administrator.
    fn audit(&self, query: &str) -> Vec<Value> {
        let (s, b) = self.admin_get(&format!("audit?page_size=100&{query}"));
        assert_eq!(s, 200, "{b}");
        b["entries"].as_array().unwrap().clone()
    }
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
}

/// Finding 2: before the fix, the anonymous request's entry (endpoint > 512 bytes) made every
/// `AppendAudit` batch invalid, was retried whole forever and was reloaded after a restart, so
/// no later entry ever reached the chain.
#[test]
fn finding_2_one_hostile_request_cannot_stop_auditing_across_restarts() {
    let mut n = Node::start(|_| {});
    let long_path = format!("persons/{}", "1".repeat(60_000));
    let (s, b) = n.call("GET", &long_path, &[]);
    assert_eq!(s, 401, "{b}");
    // A consent header far past any consent id is refused before it can reach an entry.
    let (s, b) = {
        let key = n.net.key("sysadmin");
        let mut h = govchain_api::auth::sign_request(
            &key,
            &n.rt.block_on(n.client.audience()).unwrap(),
            "GET",
            "/api/v1/me",
            now_ms(),
            b"",
        )
        .to_vec();
        h.push(("x-govchain-consent", "a".repeat(100_000)));
        n.call("GET", "me", &h)
    };
    assert_eq!((s, code(&b)), (400, "bad_consent"), "{b}");
    let (s, b) = n.admin_get("search?q=%E4%BA%94%E4%B8%80");
    assert_eq!(s, 200, "{b}");
    n.audit_settled(Duration::from_secs(90));
    assert!(
        !n.audit("action=query").is_empty(),
        "the search's audit entry is on chain"
    );
    let refusals = n.audit("outcome=unauthenticated");
    assert!(
        refusals
            .iter()
            .any(|e| e["endpoint"] == "GET /api/v1/persons/…" && e["results"] == 1),
        "the anonymous refusal is counted on chain, its path cut: {refusals:?}"
    );

    // kill -9 with entries queued: they go on chain after the restart.
    for _ in 0..3 {
        assert_eq!(n.admin_get("search?q=abcd").0, 200);
    }
    n.node.kill9();
    n.node.restart();
    n.audit_settled(Duration::from_secs(90));
    assert_eq!(n.status()["audit_quarantined"], 0);
    // At least once: the three searches queued before the kill are on chain after it.
    let searches = n.audit("action=query").len();
    assert!(
        searches >= 4,
        "{searches} search entries on chain, want 1 + 3"
    );
}

/// Finding 2: an entry the chain refuses even after clamping (here: one claiming a decision on
/// state that does not exist yet, put in the outbox while the node was stopped) is quarantined
/// with an alert; the entries queued with it reach the chain.
#[test]
fn finding_2_an_entry_the_chain_refuses_is_quarantined_and_alerted() {
    let mut n = Node::start(|_| {});
    assert_eq!(n.admin_get("search?q=abcd").0, 200);
    n.audit_settled(Duration::from_secs(90));
    assert!(n.node.terminate(Duration::from_secs(20)), "clean stop");
    {
        let store = Store::open(&n.net.data_dir(1)).unwrap();
        let q = AuditQueue::new(Some(store), 100);
        q.push(AuditEntry {
            time: TimestampMs(now_ms()),
            user: "hostile".into(),
            department: "gaj".into(),
            action: AuditAction::Login,
            endpoint: "POST /api/v1/login".into(),
            person: None,
            outcome: "ok".into(),
            results: 0,
            persons: Default::default(),
            fingerprint: Hash([1; 32]),
            state_height: u64::MAX,
        });
    }
    n.node.restart();
    assert_eq!(n.admin_get("search?q=defg").0, 200);
    n.audit_settled(Duration::from_secs(90));
    assert_eq!(n.status()["audit_quarantined"], 1, "{}", n.status());
    assert_eq!(metric(&n.metrics(), "govchain_audit_quarantined"), 1.0);
    assert!(
        n.audit("user=hostile").is_empty(),
        "the refused entry is not on chain"
    );
    assert_eq!(
        n.audit("action=query").len(),
        2,
        "both searches are on chain"
    );
}

/// Finding 2: while more entries wait than `[api] audit_backlog_limit`, personal-data reads
/// are refused (503 `audit_backlog`), and served again once the entries are on chain.
#[test]
fn finding_2_reads_fail_closed_over_the_audit_backlog_limit() {
    let n = Node::start(|c| {
        c.api.audit_backlog_limit = 3;
        c.api.audit_interval_ms = 15_000;
    });
    // The reads below fall within the node's first 15 s audit interval: nothing is flushed.
    let hjxx = n.net.source("gaj.hjxx");
    let records = vec![govchain_node::synth::Generator::new(3).record_for(&hjxx, 0)];
    let tx = govchain_node::client::records_tx(
        &n.net.node_key(1),
        &n.net.genesis.chain_id,
        &hjxx,
        records,
    );
    let committed = n.rt.block_on(n.client.submit(&tx, true)).unwrap();
    assert_eq!(committed.status, "committed");
    let mut refused = None;
    for i in 0..6 {
        let (s, b) = n.admin_get(&format!("search?q=test{i}"));
        if s == 503 {
            refused = Some((i, b));
            break;
        }
        assert_eq!(s, 200, "{b}");
    }
    let (i, b) = refused.expect("a read over the limit is refused");
    assert_eq!(code(&b), "audit_backlog", "{b}");
    assert_eq!(i, 4, "reads at the limit are served, the next is refused");
    assert_eq!(n.status()["audit_fail_closed"], true);
    // The signed transactions are personal data too: refused to an administrator, while the
    // anonymous view (hashes, kinds, proofs; not audited) is still served.
    let (s, b) = n.admin_get(&format!("txs/{}", tx.id()));
    assert_eq!((s, code(&b)), (503, "audit_backlog"), "{b}");
    let (s, b) = n.call("GET", &format!("txs/{}", tx.id()), &[]);
    assert_eq!(s, 200, "{b}");
    assert!(b.get("tx").is_none());
    assert_eq!(metric(&n.metrics(), "govchain_audit_fail_closed"), 1.0);
    n.audit_settled(Duration::from_secs(90));
    assert_eq!(n.admin_get("search?q=again1").0, 200, "served again");
    n.audit_settled(Duration::from_secs(90));
    let counted = n.audit("outcome=audit_backlog");
    assert_eq!(counted.len(), 2, "both refusals are on chain: {counted:?}");
}

/// Finding 2 (and the acceptance's load line): 1,000 concurrent anonymous and bad-credential
/// requests leave the node's memory bounded, are counted on chain in aggregate entries, and a
/// real read's entry still reaches the chain.
#[test]
fn finding_2_a_thousand_concurrent_hostile_requests_keep_memory_bounded_and_audit_flowing() {
    let n = Node::start(|_| {});
    let pid = n.node.pid().unwrap();
    let rss_kb = || -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    };
    let before = rss_kb();
    let http = n.node.http();
    let base = n.node.url.clone();
    let statuses: Vec<u16> = n.rt.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..1000 {
            let (http, base) = (http.clone(), base.clone());
            tasks.push(tokio::spawn(async move {
                let url = format!("{base}/api/v1/persons/{i:018}");
                let req = match i % 4 {
                    0 => http.get(url),
                    1 => http.get(url).bearer_auth(format!("{i:064}")),
                    // Logins of an id that does not exist: refused before any password check.
                    2 => http
                        .post(format!("{base}/api/v1/login"))
                        .json(&serde_json::json!({"user": "ghost", "password": "Wrong-2026"})),
                    _ => http
                        .get(url)
                        .header("x-govchain-key", "00".repeat(32))
                        .header("x-govchain-time", "1")
                        .header("x-govchain-signature", "00".repeat(64)),
                };
                req.send().await.map(|r| r.status().as_u16()).unwrap_or(0)
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "every hostile request is refused: {:?}",
        statuses
            .iter()
            .filter(|s| **s != 401 && **s != 429)
            .collect::<Vec<_>>()
    );
    assert!(
        statuses.contains(&429),
        "the address is throttled past its budget"
    );
    assert_eq!(n.admin_get("search?q=real1").0, 200);
    n.audit_settled(Duration::from_secs(90));
    let grown_kb = rss_kb().saturating_sub(before);
    assert!(grown_kb < 64 * 1024, "the node grew by {grown_kb} kB");
    let counted: u64 = n
        .audit("action=admin")
        .iter()
        .filter(|e| e["user"] == "" && e["endpoint"] == "GET /api/v1/persons/…")
        .map(|e| e["results"].as_u64().unwrap())
        .sum();
    assert_eq!(counted, 750, "every refused read is counted on chain");
    let logins = n.audit("action=login&user=ghost");
    let tried: u64 = logins.iter().map(|e| e["results"].as_u64().unwrap()).sum();
    assert_eq!(
        tried, 250,
        "every refused login is counted on chain: {logins:?}"
    );
    assert!(
        logins.len() <= 4,
        "one entry per outcome and interval: {logins:?}"
    );
    assert!(
        !n.audit("action=query").is_empty(),
        "the real read is on chain"
    );
    let entries = n.status()["audit_entries"].as_u64().unwrap();
    assert!(
        entries < 50,
        "{entries} entries on chain for 1,001 requests"
    );
}
