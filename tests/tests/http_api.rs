//! The chain API over real HTTP: bad input of every kind gets a 4xx with
//! `{error:{code,message}}` and commits nothing; a committed transaction comes back with a
//! Merkle inclusion proof and a commit certificate that verify offline (R-CHN-2); SIGTERM stops
//! the node cleanly.

use std::time::Duration;

use govchain_chaincode::records::Record;
use govchain_chaincode::TxKind;
use govchain_ledger::merkle::InclusionProof;
use govchain_ledger::{ChainId, Commit, Hash, Keypair, TimestampMs, TxBody};
use govchain_node::client::{records_tx, sign_tx};
use govchain_node::synth::Generator;
use govchain_tests::{Net, NodeProc};
use serde_json::Value;

struct Api {
    url: String,
    http: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

impl Api {
    fn post(&self, path: &str, body: Vec<u8>) -> (u16, Value) {
        self.rt.block_on(async {
            let r = self
                .http
                .post(format!("{}{path}", self.url))
                .header("content-type", "application/octet-stream")
                .body(body)
                .send()
                .await
                .unwrap();
            let s = r.status().as_u16();
            (s, r.json().await.unwrap_or(Value::Null))
        })
    }
    fn get(&self, path: &str) -> (u16, Value) {
        self.rt.block_on(async {
            let r = self
                .http
                .get(format!("{}{path}", self.url))
                .send()
                .await
                .unwrap();
            let s = r.status().as_u16();
            (s, r.json().await.unwrap_or(Value::Null))
        })
    }
    fn height(&self) -> u64 {
        self.get("/api/v1/status").1["height"].as_u64().unwrap()
    }
}

fn assert_error(got: (u16, Value), status: u16, code: &str) {
    assert_eq!(got.0, status, "{code}: {}", got.1);
    assert_eq!(got.1["error"]["code"], code, "{}", got.1);
    assert!(
        !got.1["error"]["message"].as_str().unwrap_or("").is_empty(),
        "{}",
        got.1
    );
}

#[test]
fn bad_input_is_refused_with_clear_errors_and_commits_nothing() {
    let net = Net::generate(1);
    let mut node = NodeProc::start(&net, 1);
    let api = Api {
        url: node.url.clone(),
        http: node.http(),
        rt: tokio::runtime::Runtime::new().unwrap(),
    };
    let key = net.node_key(1);
    let chain = net.genesis.chain_id.clone();
    let source = net.source("gaj.hjxx");
    let mut gen = Generator::new(3);
    let mut good = |n: u64| records_tx(&key, &chain, &source, vec![gen.record_for(&source, n)]);

    // A first good transaction, so a replay has something to replay.
    let first = good(1);
    let (s, v) = api.post("/api/v1/txs?wait=commit", first.encode());
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "committed");
    let height = api.height();
    assert_eq!(height, 1);

    // Malformed body.
    assert_error(
        api.post("/api/v1/txs", b"definitely not a transaction".to_vec()),
        400,
        "malformed_tx",
    );
    assert_error(api.post("/api/v1/txs", Vec::new()), 400, "malformed_tx");
    // Trailing byte after a valid transaction.
    let mut trailing = good(2).encode();
    trailing.push(0);
    assert_error(api.post("/api/v1/txs", trailing), 400, "malformed_tx");
    // Wrong chain id.
    let other = records_tx(
        &key,
        &ChainId::new("other-chain").unwrap(),
        &source,
        vec![gen_record(&source)],
    );
    assert_error(api.post("/api/v1/txs", other.encode()), 400, "wrong_chain");
    // Bad signature.
    let mut forged = good(3);
    forged.signature.0[3] ^= 1;
    assert_error(
        api.post("/api/v1/txs", forged.encode()),
        400,
        "bad_signature",
    );
    // Signature of another key.
    let mut swapped = good(4);
    swapped.body.signer = Keypair::from_seed([42; 32]).public();
    assert_error(
        api.post("/api/v1/txs", swapped.encode()),
        400,
        "bad_signature",
    );
    // Replayed nonce (same signer and nonce, different content).
    let replay = TxBody {
        payload: good(5).body.payload,
        ..first.body.clone()
    }
    .sign(&key);
    assert_error(
        api.post("/api/v1/txs", replay.encode()),
        409,
        "replayed_nonce",
    );
    // The very same transaction again.
    assert_error(
        api.post("/api/v1/txs", first.encode()),
        409,
        "replayed_nonce",
    );
    // Unknown kind.
    let unknown = TxBody {
        chain_id: chain.clone(),
        signer: key.public(),
        nonce: 77,
        created_at: TimestampMs(0),
        payload: [&99u32.to_le_bytes()[..], b"whatever"].concat(),
    }
    .sign(&key);
    assert_error(
        api.post("/api/v1/txs", unknown.encode()),
        400,
        "unknown_kind",
    );
    // Oversize body.
    let max = net.config(1).api.max_body_bytes;
    assert_error(
        api.post("/api/v1/txs", vec![0u8; max + 1]),
        413,
        "too_large",
    );
    // Signer with no rights on this source.
    let stranger = records_tx(
        &Keypair::from_seed([9; 32]),
        &chain,
        &source,
        vec![gen_record(&source)],
    );
    assert_error(
        api.post("/api/v1/txs", stranger.encode()),
        403,
        "unauthorized_signer",
    );
    let other_dept = records_tx(
        &net.key("mzj-admin"),
        &chain,
        &source,
        vec![gen_record(&source)],
    );
    assert_error(
        api.post("/api/v1/txs", other_dept.encode()),
        403,
        "unauthorized_signer",
    );
    // Invalid record: a national ID with a wrong check digit.
    let mut bad = gen_record(&source);
    let id = bad.fields.get_mut("sfzh").unwrap();
    let last = if id.ends_with('1') { '2' } else { '1' };
    id.pop();
    id.push(last);
    let bad = records_tx(&key, &chain, &source, vec![bad]);
    assert_error(api.post("/api/v1/txs", bad.encode()), 422, "invalid_record");
    // Unknown source.
    let unknown_source = sign_tx(
        &key,
        &chain,
        &TxKind::SubmitRecords {
            source: "gaj.nope".into(),
            records: vec![gen_record(&source)],
        },
    );
    assert_error(
        api.post("/api/v1/txs", unknown_source.encode()),
        422,
        "not_found",
    );
    // Bad query parameter.
    assert_error(
        api.post("/api/v1/txs?wait=forever", good(6).encode()),
        400,
        "bad_query",
    );
    // Look-ups with bad ids.
    assert_error(api.get("/api/v1/txs/xyz"), 400, "bad_tx_id");
    assert_error(
        api.get(&format!("/api/v1/txs/{}", Hash([7; 32]))),
        404,
        "not_found",
    );
    assert_error(api.get("/api/v1/blocks/-1"), 400, "bad_height");
    assert_error(api.get("/api/v1/blocks/999"), 404, "not_found");
    assert_error(api.get("/api/v1/nothing"), 404, "not_found");
    // axum's own rejections answer the error shape too (found by the api_request fuzz
    // target: a wrong method had an empty body). A search authenticates before it reads its
    // parameters, like every personal-data read (its own 400s: hardening_openapi.rs).
    assert_error(
        api.post("/api/v1/status", Vec::new()),
        405,
        "method_not_allowed",
    );
    assert_error(api.get("/api/v1/search"), 401, "unauthenticated");

    // Nothing of the above was committed.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(api.height(), height, "a refused transaction was committed");
    assert_eq!(api.get("/api/v1/status").1["mempool_txs"], 0);

    // The committed transaction's proof and certificate verify offline.
    let (s, v) = api.get(&format!("/api/v1/txs/{}", first.id()));
    assert_eq!(s, 200, "{v}");
    let proof: InclusionProof = serde_json::from_value(v["proof"].clone()).unwrap();
    let root: Hash = serde_json::from_value(v["tx_root"].clone()).unwrap();
    proof.verify(&first.id(), &root).unwrap();
    let header: govchain_ledger::BlockHeader = serde_json::from_value(v["header"].clone()).unwrap();
    assert_eq!(header.tx_root, root);
    let commit: Commit = serde_json::from_value(v["commit"].clone()).unwrap();
    commit
        .verify(
            &chain,
            header.height,
            &header.hash(),
            &net.genesis.validators,
        )
        .unwrap();
    assert_eq!(
        header.prev_hash,
        net.genesis.hash(),
        "block 1 links to genesis"
    );

    assert!(
        node.terminate(Duration::from_secs(30)),
        "SIGTERM stops the node cleanly"
    );
}

fn gen_record(source: &govchain_chaincode::catalog::DataSource) -> Record {
    Generator::new(11).record_for(source, 500)
}
