//! `govchain bench ledger`: the ledger's primitive costs on this machine — ed25519 verification
//! (single and batch), blake3 on 1 KiB messages, the Merkle root of 10k transactions, and synced
//! RocksDB block commits with 1,000-transaction blocks.

use std::time::Instant;

use govchain_chaincode::catalog::DataSource;
use govchain_genesis::catalog::default_catalog;
use govchain_ledger::hash::{hash, Domain};
use govchain_ledger::{
    crypto, merkle, sign_commit, ChainId, Hash, Height, Keypair, Round, Store, WriteSet,
};

use crate::client::records_tx;
use crate::synth::Generator;

fn rate(n: usize, secs: f64) -> f64 {
    n as f64 / secs.max(1e-9)
}

/// Runs the ledger benchmark and prints one line per figure.
pub fn ledger(blocks: usize) -> anyhow::Result<()> {
    let chain = ChainId::new("bench")?;
    let key = Keypair::from_seed([7; 32]);
    let catalog = default_catalog()?;
    let source: &DataSource = catalog
        .sources
        .iter()
        .find(|s| s.person_field.is_some())
        .ok_or_else(|| anyhow::anyhow!("catalog has no person source"))?;
    let mut gen = Generator::new(1);
    println!(
        "machine: {} logical cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    // Signed transactions with one realistic record each.
    let txs: Vec<_> = (0..10_000u64)
        .map(|i| records_tx(&key, &chain, source, vec![gen.record_for(source, i)]))
        .collect();
    let items: Vec<_> = txs.iter().map(|t| t.sig_item()).collect();
    let n = 5_000;
    let t = Instant::now();
    for (k, d, s) in &items[..n] {
        crypto::verify(k, d, s)?;
    }
    println!(
        "ed25519 verify (single): {:>10.0} /s",
        rate(n, t.elapsed().as_secs_f64())
    );
    let t = Instant::now();
    for chunk in items.chunks(1024) {
        crypto::verify_batch(chunk)?;
    }
    println!(
        "ed25519 verify (batch of 1024): {:>10.0} /s",
        rate(items.len(), t.elapsed().as_secs_f64())
    );
    let t = Instant::now();
    let signs = 5_000;
    for (_, digest, _) in items.iter().take(signs) {
        std::hint::black_box(key.sign(digest));
    }
    println!(
        "ed25519 sign: {:>10.0} /s",
        rate(signs, t.elapsed().as_secs_f64())
    );

    let msg = vec![0xA5u8; 1024];
    let m = 200_000;
    let t = Instant::now();
    for i in 0..m {
        std::hint::black_box(hash(
            Domain::TxBody,
            &[&msg[..1016], &(i as u64).to_le_bytes()].concat(),
        ));
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "blake3 on 1 KiB messages: {:>10.0} MB/s ({:.0} hashes/s)",
        rate(m * 1024, secs) / 1e6,
        rate(m, secs)
    );

    let ids: Vec<Hash> = txs.iter().map(|t| t.id()).collect();
    let reps = 20;
    let t = Instant::now();
    for _ in 0..reps {
        std::hint::black_box(merkle::root(&ids));
    }
    println!(
        "merkle root of 10k txs: {:>10.2} ms",
        t.elapsed().as_secs_f64() * 1000.0 / reps as f64
    );

    // Synced block commits of 1,000-tx blocks.
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let mut tip = store.init_genesis(Hash::ZERO, &WriteSet::default(), Hash::ZERO)?;
    let mut prepared = Vec::new();
    let mut prev = tip.block_hash;
    for b in 0..blocks {
        let block_txs = txs[(b * 1000) % 9000..(b * 1000) % 9000 + 1000].to_vec();
        let bids: Vec<Hash> = block_txs.iter().map(|t| t.id()).collect();
        let header = govchain_ledger::BlockHeader {
            chain_id: chain.clone(),
            height: Height(b as u64 + 1),
            round: Round(0),
            prev_hash: prev,
            tx_root: merkle::root(&bids),
            tx_count: 1000,
            app_hash: Hash::ZERO,
            proposer: key.public(),
            time: govchain_ledger::TimestampMs(b as u64 + 1),
            validator_set_hash: Hash::ZERO,
        };
        let block = govchain_ledger::Block {
            header,
            txs: block_txs,
        };
        prev = block.hash();
        let commit = sign_commit(&chain, Height(b as u64 + 1), Round(0), prev, &[&key]);
        let mut writes = WriteSet::default();
        for (i, id) in bids.iter().enumerate() {
            writes.put([&b"bench/"[..], id.as_bytes()].concat(), vec![i as u8; 200]);
        }
        prepared.push((block, commit, writes));
    }
    let bytes: usize = prepared.iter().map(|(b, _, _)| b.encode().len()).sum();
    let t = Instant::now();
    for (block, commit, writes) in &prepared {
        tip = store.commit_block(block, commit, writes, Hash::ZERO)?;
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "rocksdb synced block commits (1,000 txs, {:.0} KiB/block): {:>8.1} blocks/s = {:.0} tx/s (tip {})",
        bytes as f64 / blocks as f64 / 1024.0,
        rate(blocks, secs),
        rate(blocks * 1000, secs),
        tip.height
    );
    Ok(())
}

/// Options of `govchain bench chain`.
#[derive(Debug, Clone)]
pub struct ChainBench {
    /// Validator processes.
    pub nodes: usize,
    /// Transactions to commit.
    pub txs: u64,
    /// Records per transaction (1 = one signed tx per record).
    pub records_per_tx: usize,
    /// Concurrent clients.
    pub clients: usize,
    /// API port base.
    pub base_port: u16,
    /// Keep the cluster here (a new directory) instead of a temporary directory.
    pub keep: Option<std::path::PathBuf>,
    /// Run each node's SQL projection (SQLite) too; off, the chain alone is measured.
    pub projection: bool,
}

/// How long a benchmark client waits for one transaction's commit before giving up.
const WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// The `p` quantile of sorted samples (0 when empty).
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Where a benchmark builds its cluster: `keep` (which must not exist yet) or `temp`.
pub fn work_dir(
    keep: Option<&std::path::Path>,
    temp: &tempfile::TempDir,
) -> anyhow::Result<std::path::PathBuf> {
    match keep {
        Some(d) => {
            anyhow::ensure!(
                !d.exists(),
                "{} exists; --keep takes a new directory",
                d.display()
            );
            std::fs::create_dir_all(d)?;
            Ok(d.to_path_buf())
        }
        None => Ok(temp.path().to_path_buf()),
    }
}

/// Starts a local cluster, submits signed transactions from concurrent clients (each waits for
/// its commit), and prints committed tx/s, records/s and commit latency p50/p99.
pub async fn chain(b: ChainBench) -> anyhow::Result<()> {
    let temp = tempfile::tempdir()?;
    let dir = work_dir(b.keep.as_deref(), &temp)?;
    let mut cluster = crate::cluster::LocalCluster::create(&dir, b.nodes, b.base_port, |_, c| {
        if !b.projection {
            c.api.db = Some("off".into());
        }
    })
    .await?;
    let doc = govchain_genesis::GenesisDoc::read(&dir.join("genesis.json"))?;
    let key = Keypair::read_file(&dir.join("node-1/node.key"))?;
    let source = doc
        .sources
        .iter()
        .find(|s| s.id == "gaj.hjxx")
        .ok_or_else(|| anyhow::anyhow!("gaj.hjxx missing"))?
        .clone();
    // Sign everything first: the benchmark measures the chain, not the client.
    let mut gen = Generator::new(42);
    let txs: Vec<_> = (0..b.txs)
        .map(|i| {
            let records = (0..b.records_per_tx as u64)
                .map(|j| gen.record_for(&source, i * b.records_per_tx as u64 + j))
                .collect();
            records_tx(&key, &doc.chain_id, &source, records)
        })
        .collect();
    let txs = std::sync::Arc::new(txs);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..b.clients {
        let client = cluster.client(w % cluster.urls.len())?;
        let (txs, next) = (txs.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(tx) = txs.get(i) else { break };
                let t = Instant::now();
                client.submit_until_committed(tx, WAIT).await?;
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    let secs = started.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    let status = cluster.client(0)?.get_json("status").await?;
    cluster.stop();
    println!(
        "bench chain: {} nodes, {} txs x {} records, {} clients on {} cores, projection {}",
        b.nodes,
        b.txs,
        b.records_per_tx,
        b.clients,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        if b.projection { "on (SQLite)" } else { "off" }
    );
    println!(
        "  committed: {:.0} tx/s, {:.0} records/s in {:.1}s ({} blocks)",
        rate(lat.len(), secs),
        rate(lat.len() * b.records_per_tx, secs),
        secs,
        status["height"]
    );
    println!(
        "  commit latency: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(0.0)
    );
    Ok(())
}
