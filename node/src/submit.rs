//! `govchain submit`: signs batches of synthetic records from the node's department's data
//! sources and sends them, waiting for each to commit.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context};
use govchain_genesis::{GenesisDoc, NodeConfig};
use govchain_ledger::Keypair;

use crate::client::{records_tx, Client};
use crate::synth::Generator;

/// Options of `govchain submit`.
#[derive(Debug, Clone)]
pub struct SubmitOptions {
    /// Records in total.
    pub records: u64,
    /// Records per transaction.
    pub batch: u64,
    /// Population seed.
    pub seed: u64,
    /// First resident index (to add new residents on a second run).
    pub start: u64,
    /// Only this source (default: every person source of the department, in turn).
    pub source: Option<String>,
    /// API base URL (default: the node's listen address, `https` when it serves TLS).
    pub url: Option<String>,
    /// The CA certificate to trust (default: the node's `api.tls_ca`).
    pub ca: Option<std::path::PathBuf>,
}

/// Runs the submission; prints one line per committed transaction and a summary.
pub async fn run(config: &Path, opts: &SubmitOptions) -> anyhow::Result<()> {
    let cfg = NodeConfig::read(config)?;
    let doc = GenesisDoc::read(&cfg.genesis)?;
    let key = Keypair::read_file(&cfg.key_file)?;
    let sources: Vec<_> = doc
        .sources
        .iter()
        .filter(|s| s.department == cfg.department && s.person_field.is_some())
        .filter(|s| opts.source.as_ref().is_none_or(|id| &s.id == id))
        .collect();
    if sources.is_empty() {
        bail!(
            "department {} has no matching person data source",
            cfg.department
        );
    }
    if opts.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let url = opts.url.clone().unwrap_or_else(|| cfg.api_url());
    let ca = opts.ca.as_deref().or(cfg.api.tls_ca.as_deref());
    let client = Client::new(&url, ca)?;
    let mut gen = Generator::new(opts.seed);
    let started = Instant::now();
    let (mut sent, mut txs) = (0u64, 0u64);
    while sent < opts.records {
        let source = sources[(txs % sources.len() as u64) as usize];
        let n = opts.batch.min(opts.records - sent);
        let records = (0..n)
            .map(|i| gen.record_for(source, opts.start + sent + i))
            .collect();
        let tx = records_tx(&key, &doc.chain_id, source, records);
        let reply = client
            .submit(&tx, true)
            .await
            .with_context(|| format!("batch of {n} records of {}", source.id))?;
        println!(
            "{} {} records of {} in tx {} at height {}",
            reply.status,
            n,
            source.id,
            reply.tx_id,
            reply.height.map_or("-".into(), |h| h.to_string())
        );
        sent += n;
        txs += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "submitted {sent} records in {txs} transactions in {secs:.2}s ({:.0} records/s)",
        sent as f64 / secs.max(1e-9)
    );
    Ok(())
}
