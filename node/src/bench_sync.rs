//! `govchain bench sync`: records per second from simulated department systems to committed
//! blocks on a local cluster (issue 7, DESIGN §9). Node 1's connectors pull every source's
//! change feed (plain, DES and 3DES payloads in turn), queue the records in their outbox, sign
//! them into `SubmitRecords` transactions and wait for the commits; the clock runs from the
//! manual start of the runs until the last record is committed and nothing waits.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use govchain_genesis::ConnectorConfig;
use govchain_ledger::Keypair;

use crate::dept_sim::{DeptSim, FaultKind, Faults, SimConfig, SimSource};
use crate::legacy_codec::Codec;

/// Options of `govchain bench sync`.
#[derive(Debug, Clone)]
pub struct SyncBench {
    /// Validators.
    pub nodes: usize,
    /// Data sources of node 1's department, pulled in parallel.
    pub sources: usize,
    /// Records per source.
    pub records: u64,
    /// Records per transaction.
    pub batch: usize,
    /// Records per page.
    pub page: usize,
    /// Transactions per source waiting for commit at once.
    pub inflight: usize,
    /// Fault probability per request (0: none).
    pub fault_rate: f64,
    /// Node i's API port is base + i.
    pub base_port: u16,
    /// Keep the cluster in this directory.
    pub keep: Option<PathBuf>,
    /// Keep a SQL projection on every node (off: the chain alone is measured).
    pub projection: bool,
}

const CODECS: [&str; 3] = [
    "plain",
    "des:133457799BBCDFF1:0102030405060708",
    "3des:0123456789ABCDEFFEDCBA987654321089ABCDEF01234567:1122334455667788",
];

/// Runs the benchmark and prints its figures.
pub async fn run(b: SyncBench) -> anyhow::Result<()> {
    let temp = tempfile::tempdir()?;
    let dir = crate::bench::work_dir(b.keep.as_deref(), &temp)?;
    let catalog = govchain_genesis::catalog::default_catalog()?;
    let sources: Vec<SimSource> = catalog
        .sources
        .iter()
        .filter(|s| s.department == "gaj")
        .take(b.sources)
        .enumerate()
        .map(|(i, s)| {
            Ok(SimSource {
                source: s.clone(),
                codec: Codec::parse(CODECS[i % CODECS.len()])?,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    anyhow::ensure!(
        sources.len() == b.sources,
        "the catalog has {} gaj sources",
        sources.len()
    );
    let codecs: Vec<(String, &str)> = sources
        .iter()
        .enumerate()
        .map(|(i, s)| (s.source.id.clone(), CODECS[i % CODECS.len()]))
        .collect();
    let t = Instant::now();
    let sim = DeptSim::new(SimConfig {
        sources,
        records: b.records,
        seed: 1,
        token: "bench".into(),
        faults: Faults {
            rate: b.fault_rate,
            kinds: FaultKind::ALL.to_vec(),
            timeout_ms: 3_000,
            slow_ms: 200,
            seed: 1,
        },
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sim_url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(sim.clone().serve(listener));
    eprintln!(
        "bench sync: simulator with {} sources x {} records ready in {:.1} s at {sim_url}",
        b.sources,
        b.records,
        t.elapsed().as_secs_f64()
    );
    let mut cluster = crate::cluster::LocalCluster::create(&dir, b.nodes, b.base_port, |i, c| {
        if !b.projection {
            c.api.db = Some("off".into());
        }
        if i == 1 {
            c.connectors = codecs
                .iter()
                .map(|(id, codec)| {
                    let mut k = ConnectorConfig::new(id, &sim_url);
                    k.codec = codec.to_string();
                    k.token = Some("bench".into());
                    // Runs start by hand here; the schedule never fires during the bench.
                    k.schedule = "0 0 1 1 *".into();
                    k.window = "00:00-24:00".into();
                    k.batch = b.batch;
                    k.page = b.page;
                    k.inflight = b.inflight;
                    k.timeout_ms = 2_000;
                    k
                })
                .collect();
        }
    })
    .await?;
    let admin = Keypair::read_file(&dir.join("keys/sysadmin.key"))?;
    let node1 = cluster.client(0)?;
    let total = b.records * b.sources as u64;
    let started = Instant::now();
    for (id, _) in &codecs {
        let (code, body) = node1
            .call_signed("POST", &format!("sync/run?source={id}"), &admin, None)
            .await?;
        anyhow::ensure!(code == 202, "starting {id}: {code} {body}");
    }
    let mut fetched_at = None;
    let status = loop {
        let (code, st) = node1
            .call_signed("GET", "sync/status", &admin, None)
            .await?;
        anyhow::ensure!(code == 200, "sync status: {code} {st}");
        let list = st["sources"].as_array().context("status.sources")?;
        let fetched = list.iter().all(|s| s["cursor"] == b.records);
        if fetched && fetched_at.is_none() {
            fetched_at = Some(started.elapsed());
        }
        let done = fetched
            && list
                .iter()
                .all(|s| s["pending"] == 0 && s["inflight_txs"] == 0 && s["running"] == false);
        if done {
            break st;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(3600),
            "not done within an hour: {st}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let elapsed = started.elapsed();
    let height = cluster
        .client(b.nodes - 1)?
        .get_json("status")
        .await
        .map(|s| s["height"].clone())
        .unwrap_or_default();
    let committed: u64 = status["sources"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|s| s["committed_since_start"].as_u64())
                .sum()
        })
        .unwrap_or(0);
    cluster.stop();
    anyhow::ensure!(
        committed == total,
        "committed {committed} of {total} records"
    );
    println!(
        "bench sync: {} validators, {} sources (plain/DES/3DES), {total} records, batch {}, page {}, {} txs in flight per source",
        b.nodes, b.sources, b.batch, b.page, b.inflight
    );
    println!(
        "  all fetched into the outbox after {:.1} s; all committed after {:.1} s",
        fetched_at.unwrap_or(elapsed).as_secs_f64(),
        elapsed.as_secs_f64()
    );
    println!(
        "  {:.0} records/s simulator -> committed; chain height {height} on node {}",
        total as f64 / elapsed.as_secs_f64(),
        b.nodes
    );
    drop(sim);
    Ok(())
}
