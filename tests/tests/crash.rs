//! R-CHN-4: a node killed with -9 at random moments under continuous load loses nothing it
//! acknowledged, commits nothing twice, and its store passes the auditor's replay. Its SQL
//! projection (DESIGN §7, R-AUD-4), killed mid-block as often, resumes and ends equal to a
//! rebuild from genesis.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use govchain_api::projection::Projection;
use govchain_ledger::{Store, TxId};
use govchain_node::client::records_tx;
use govchain_node::synth::Generator;
use govchain_tests::{verify, Net, NodeProc};
use rand::{Rng, SeedableRng};

#[test]
fn kill9_under_load_loses_no_acknowledged_tx_and_commits_none_twice() {
    let net = Net::generate(1);
    let mut node = NodeProc::start(&net, 1);
    let key = net.node_key(1);
    let chain = net.genesis.chain_id.clone();
    let source = net
        .genesis
        .sources
        .iter()
        .find(|s| s.department == "gaj" && s.person_field.is_some())
        .expect("a gaj person source")
        .clone();
    let acked: Arc<Mutex<Vec<TxId>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut clients = Vec::new();
    for c in 0..4u64 {
        let (acked, stop, key, chain, source) = (
            acked.clone(),
            stop.clone(),
            key.clone(),
            chain.clone(),
            source.clone(),
        );
        let client = node.client();
        clients.push(rt.spawn(async move {
            let mut gen = Generator::new(c);
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let records = (0..10)
                    .map(|j| gen.record_for(&source, c * 1_000_000 + i * 10 + j))
                    .collect();
                i += 1;
                let tx = records_tx(&key, &chain, &source, records);
                match client.submit(&tx, true).await {
                    Ok(r) if r.status == "committed" => {
                        assert_eq!(r.tx_id, tx.id());
                        acked.lock().unwrap().push(r.tx_id);
                    }
                    // Node down or restarting: unacknowledged, try the next one.
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }));
    }

    let seed: u64 = rand::random();
    println!("kill schedule seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for round in 0..6 {
        let before = acked.lock().unwrap().len();
        // Run until more transactions have been acknowledged, then a random extra moment.
        let deadline = Instant::now() + Duration::from_secs(60);
        while acked.lock().unwrap().len() < before + 20 {
            assert!(
                Instant::now() < deadline,
                "no progress in round {round}; log:\n{}",
                node.log_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(0..400)));
        node.kill9();
        node.restart();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in clients {
        rt.block_on(c).unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 120, "only {} acknowledged", acked.len());

    // Every acknowledged transaction is in the chain exactly once.
    let client = node.client();
    let status = rt.block_on(client.get_json("status")).unwrap();
    let height = status["height"].as_u64().unwrap();
    let mut seen: HashMap<String, u64> = HashMap::new();
    for h in 1..=height {
        let b = rt
            .block_on(client.get_json(&format!("blocks/{h}")))
            .unwrap();
        for t in b["txs"].as_array().unwrap() {
            *seen
                .entry(t["id"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    assert!(
        seen.values().all(|&n| n == 1),
        "a transaction was committed twice"
    );
    for id in &acked {
        assert_eq!(
            seen.get(&id.to_hex()),
            Some(&1),
            "acknowledged tx {id} missing"
        );
        rt.block_on(client.get_json(&format!("txs/{id}"))).unwrap();
    }
    println!(
        "{} acknowledged, {} committed in {height} blocks over 6 kill -9 restarts",
        acked.len(),
        seen.len()
    );

    assert!(node.terminate(Duration::from_secs(30)), "clean shutdown");
    let out = verify(&net.data_dir(1), &net.genesis_path());
    assert!(
        out.status.success(),
        "verify failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The live projection resumes from its cursor and equals a rebuild from genesis.
    let store = Store::open_read_only(&net.data_dir(1)).unwrap();
    let tip = store.tip().unwrap().unwrap().height;
    let live_url = format!(
        "sqlite://{}",
        net.data_dir(1).join("projection.sqlite").display()
    );
    let fresh_dir = tempfile::tempdir().unwrap();
    let fresh_url = format!("sqlite://{}", fresh_dir.path().join("p.sqlite").display());
    rt.block_on(async {
        let live = Projection::open(&live_url).await.unwrap();
        let resumed_from = live.cursor().await.unwrap().unwrap().0;
        assert_eq!(live.catch_up(&store).await.unwrap(), tip);
        let t = Instant::now();
        let fresh = Projection::open(&fresh_url).await.unwrap();
        fresh
            .init(store.genesis_hash().unwrap().unwrap(), &net.genesis.sources)
            .await
            .unwrap();
        assert_eq!(fresh.catch_up(&store).await.unwrap(), tip);
        let rebuild = t.elapsed();
        assert_eq!(
            live.digest().await.unwrap(),
            fresh.digest().await.unwrap(),
            "the resumed projection differs from a rebuild"
        );
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM records")
            .fetch_one(live.pool())
            .await
            .unwrap();
        assert_eq!(n as usize, seen.len() * 10, "one row per committed record");
        println!(
            "projection resumed at {resumed_from} of {tip}; digest equals a rebuild \
             ({tip} blocks rebuilt in {rebuild:?})"
        );
    });
}
