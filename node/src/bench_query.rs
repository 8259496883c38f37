//! `govchain bench query` (R-PRF-1, R-PRF-2; DESIGN §9): loads synthetic residents THROUGH the
//! chain — signed `SubmitRecords` batches committed by a local validator cluster and projected
//! by node 1 into SQLite or MySQL/MariaDB — then drives concurrent signed HTTP clients with a
//! mix of person-file, combined and fuzzy queries and prints latency percentiles and
//! throughput per query kind.
//!
//! Every resident has a household-registration record (`gaj.hjxx`); every fourth also has a
//! record in another department's person source. A cluster directory given with `--dir` is
//! kept; run again with the same directory (and another `--db`) to measure a second backend
//! projecting the same chain from its blocks without loading it again.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use govchain_chaincode::catalog::DataSource;
use govchain_genesis::GenesisDoc;
use govchain_ledger::Keypair;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::client::{records_tx, urlencode, Client};
use crate::cluster::LocalCluster;
use crate::synth::{person, Generator};

/// Population seed of the benchmark's residents.
const SEED: u64 = 2026;
/// File in the cluster directory recording how many residents are loaded.
const LOADED_FILE: &str = "bench-persons.txt";
/// Concurrent submitters during the load (each waits for its commit).
const LOADERS: usize = 8;
/// How long a loader waits for one batch to commit.
const COMMIT_WAIT: Duration = Duration::from_secs(300);

/// Options of `govchain bench query`.
#[derive(Debug, Clone)]
pub struct QueryBench {
    /// `sqlite` (a file in node 1's data dir) or `mysql://USER@HOST:PORT/DB` (existing, empty).
    pub db: String,
    /// Residents to load.
    pub persons: u64,
    /// Concurrent query clients.
    pub concurrency: usize,
    /// Length of the query phase.
    pub duration: Duration,
    /// Mean pause of a client between two queries (a user reading the answer); 0 = none.
    pub think_ms: u64,
    /// Records per `SubmitRecords` transaction.
    pub batch: usize,
    /// Validator processes.
    pub nodes: usize,
    /// API port base.
    pub base_port: u16,
    /// Cluster directory to create, or to reuse if it holds a loaded cluster.
    pub dir: Option<PathBuf>,
}

/// The query kinds of the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Person,
    Combined,
    Fuzzy,
}

const KINDS: [Kind; 3] = [Kind::Person, Kind::Combined, Kind::Fuzzy];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Person => "person file",
            Kind::Combined => "combined",
            Kind::Fuzzy => "fuzzy",
        }
    }
}

/// Runs the benchmark and prints its figures.
pub async fn run(b: QueryBench) -> anyhow::Result<()> {
    let temp = tempfile::tempdir()?;
    let dir = b.dir.clone().unwrap_or_else(|| temp.path().join("cluster"));
    let loaded: Option<u64> = std::fs::read_to_string(dir.join(LOADED_FILE))
        .ok()
        .and_then(|s| s.trim().parse().ok());
    let db = b.db.clone();
    let tune = move |i: usize, c: &mut govchain_genesis::NodeConfig| {
        // Node 1 projects (SQLite: the default file in its data dir); the others keep none.
        c.api.db = match (i, db.as_str()) {
            (1, "sqlite") => None,
            (1, url) => Some(url.to_string()),
            _ => Some("off".into()),
        };
    };
    if b.db.starts_with("mysql://") || b.db.starts_with("mariadb://") {
        println!("  MySQL server: {}", mysql_settings(&b.db).await?);
    }
    let mut cluster = match loaded {
        Some(n) if n == b.persons => {
            println!(
                "bench query: reusing {} ({n} residents on chain)",
                dir.display()
            );
            LocalCluster::start(&dir, tune).await?
        }
        Some(n) => bail!("{} holds {n} residents, not {}", dir.display(), b.persons),
        None if dir.exists() => bail!("{} exists but holds no loaded benchmark", dir.display()),
        None => LocalCluster::create(&dir, b.nodes, b.base_port, tune).await?,
    };
    let started = Instant::now();
    if loaded.is_none() {
        load(&b, &dir, &cluster.urls).await?;
        std::fs::write(dir.join(LOADED_FILE), b.persons.to_string())?;
        println!(
            "  chain load: {} residents committed in {:.1} s ({:.0} residents/s)",
            b.persons,
            started.elapsed().as_secs_f64(),
            b.persons as f64 / started.elapsed().as_secs_f64()
        );
    }
    let node1 = Client::new(&cluster.urls[0])?;
    wait_projected(&node1).await?;
    println!(
        "  projection ({}) caught up with the chain {:.1} s after the start{}",
        b.db,
        started.elapsed().as_secs_f64(),
        if loaded.is_none() { " of the load" } else { "" }
    );
    if b.db == "sqlite" {
        warm_sqlite(&dir.join("node-1/data"))?;
    }
    let admin = Keypair::read_file(&dir.join("keys/sysadmin.key"))?;
    let figures = drive(&b, &node1, admin).await?;
    cluster.stop();
    report(&b, &figures);
    Ok(())
}

/// The server settings that decide bulk-load and query speed, for the report.
async fn mysql_settings(url: &str) -> anyhow::Result<String> {
    let p = govchain_api::projection::Projection::open(url)
        .await
        .with_context(|| format!("{url} (the database must exist)"))?;
    let mut out = Vec::new();
    for v in [
        "version",
        "innodb_buffer_pool_size",
        "innodb_log_file_size",
        "innodb_flush_log_at_trx_commit",
    ] {
        let value = p.server_variable(v).await?;
        out.push(format!("{v}={value}"));
    }
    p.pool().close().await;
    Ok(out.join(" "))
}

/// The department key of every node, by department id.
fn department_keys(dir: &Path, doc: &GenesisDoc) -> anyhow::Result<Vec<(String, Keypair)>> {
    let mut out = Vec::new();
    for i in 1.. {
        let path = dir.join(format!("node-{i}/node.key"));
        if !path.exists() {
            break;
        }
        let key = Keypair::read_file(&path)?;
        let v = doc
            .validators
            .get(&key.public())
            .context("a node key that is not a genesis validator")?;
        out.push((v.department.clone(), key));
    }
    Ok(out)
}

/// Loads `b.persons` residents through the chain, `LOADERS` batches at a time.
async fn load(b: &QueryBench, dir: &Path, urls: &[String]) -> anyhow::Result<()> {
    let doc = GenesisDoc::read(&dir.join("genesis.json"))?;
    let keys = department_keys(dir, &doc)?;
    let key_of = |dept: &str| keys.iter().find(|(d, _)| d == dept).map(|(_, k)| k.clone());
    let hjxx = doc
        .sources
        .iter()
        .find(|s| s.id == "gaj.hjxx")
        .context("gaj.hjxx missing")?
        .clone();
    let hjxx_key = key_of(&hjxx.department).context("no node of department gaj")?;
    // Person sources of the other departments that run nodes.
    let extras: Vec<(DataSource, Keypair)> = doc
        .sources
        .iter()
        .filter(|s| s.id != hjxx.id && s.person_field.is_some())
        .filter_map(|s| key_of(&s.department).map(|k| (s.clone(), k)))
        .filter(|(s, _)| s.department != hjxx.department)
        .take(3)
        .collect();
    let batches = b.persons.div_ceil(b.batch as u64);
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let shared = Arc::new((hjxx, hjxx_key, extras, doc.chain_id.clone()));
    let mut tasks = Vec::new();
    for w in 0..LOADERS {
        let client = Client::new(&urls[w % urls.len()])?;
        let (next, done, shared) = (next.clone(), done.clone(), shared.clone());
        let (persons, batch) = (b.persons, b.batch as u64);
        tasks.push(tokio::spawn(async move {
            let (hjxx, hjxx_key, extras, chain_id) = &*shared;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= batches {
                    return Ok::<_, anyhow::Error>(());
                }
                let range = i * batch..((i + 1) * batch).min(persons);
                let mut gen = Generator::new(SEED);
                let mut txs = vec![records_tx(
                    hjxx_key,
                    chain_id,
                    hjxx,
                    range.clone().map(|p| gen.record_for(hjxx, p)).collect(),
                )];
                for (j, (source, key)) in extras.iter().enumerate() {
                    let records: Vec<_> = range
                        .clone()
                        .filter(|p| p % 4 == 0 && (p / 4) as usize % extras.len() == j)
                        .map(|p| gen.record_for(source, p))
                        .collect();
                    if !records.is_empty() {
                        txs.push(records_tx(key, chain_id, source, records));
                    }
                }
                for tx in &txs {
                    client.submit_until_committed(tx, COMMIT_WAIT).await?;
                }
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                if n % (batches / 20).max(1) == 0 || n == batches {
                    println!("  loaded {n}/{batches} batches");
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Reads node 1's SQLite projection once, so the query phase measures a server whose database
/// is in the OS page cache (as after any warm-up in service) rather than this machine's disk:
/// cold, a query at 1.5 million residents waits on tens of random reads at about 1 ms each.
/// A MySQL server keeps its own buffer pool, warmed by the projection it just wrote.
fn warm_sqlite(data_dir: &Path) -> anyhow::Result<()> {
    use std::io::Read;
    let started = Instant::now();
    let mut total = 0u64;
    let mut buf = vec![0u8; 8 << 20];
    for name in ["projection.sqlite", "projection.sqlite-wal"] {
        let Ok(mut f) = std::fs::File::open(data_dir.join(name)) else {
            continue;
        };
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            total += n as u64;
        }
    }
    println!(
        "  warm-up: read the SQLite projection ({:.1} GB) into the page cache in {:.1} s",
        total as f64 / 1e9,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Waits until node 1's projection reaches its chain tip.
async fn wait_projected(node: &Client) -> anyhow::Result<()> {
    let mut last_print = Instant::now();
    loop {
        let s = node.get_json("status").await?;
        let (tip, at) = (s["height"].as_u64(), s["projected_height"].as_u64());
        if let (Some(tip), Some(at)) = (tip, at) {
            if at >= tip {
                return Ok(());
            }
            if last_print.elapsed() > Duration::from_secs(30) {
                println!("  projection at height {at} of {tip}");
                last_print = Instant::now();
            }
        } else if tip.is_some() && at.is_none() {
            bail!("node 1 reports no projection: {s}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One query of `kind` about a random resident: the path under `/api/v1`.
fn query_path(kind: Kind, rng: &mut ChaCha8Rng, persons: u64) -> String {
    let p = person(SEED, rng.random_range(0..persons));
    match kind {
        Kind::Person => format!("persons/{}", p.id),
        Kind::Combined if rng.random_bool(0.5) => {
            // A name within a birth year.
            let year = &p.birth_date[..4];
            format!(
                "records?source=gaj.hjxx&eq=xm:{}&from=csrq:{year}-01-01&to=csrq:{year}-12-31",
                urlencode(&p.name)
            )
        }
        Kind::Combined => {
            // Gender and marital status within a birth month: a broad statistical query.
            let month = &p.birth_date[..7];
            format!(
                "records?source=gaj.hjxx&eq=xb:{}&eq=hyzk:{}&from=csrq:{month}-01&to=csrq:{month}-28",
                urlencode(p.gender),
                urlencode("已婚")
            )
        }
        Kind::Fuzzy => {
            let q: String = match rng.random_range(0..3) {
                // Two characters of a name (the given name of a three-character name).
                0 => {
                    let chars: Vec<char> = p.name.chars().collect();
                    chars[chars.len().saturating_sub(2)..].iter().collect()
                }
                // A street: four characters after the district.
                1 => p
                    .address
                    .split_once('区')
                    .map_or(p.address.as_str(), |(_, rest)| rest)
                    .chars()
                    .take(4)
                    .collect(),
                // Eight digits of a national ID (birth month, day and sequence).
                _ => p.id[10..18].to_string(),
            };
            format!("search?q={}", urlencode(&q))
        }
    }
}

/// Latencies (ms) and failures of one kind.
#[derive(Debug, Default, Clone)]
struct Figures {
    ok_ms: Vec<f64>,
    failed: u64,
    first_failure: Option<String>,
}

/// The query phase: `b.concurrency` clients until `b.duration` has passed.
async fn drive(b: &QueryBench, node: &Client, admin: Keypair) -> anyhow::Result<Vec<Figures>> {
    println!(
        "  query phase: {} clients for {} s, think time {} ms",
        b.concurrency,
        b.duration.as_secs(),
        b.think_ms
    );
    let admin = Arc::new(admin);
    let deadline = Instant::now() + b.duration;
    let mut tasks = Vec::new();
    for c in 0..b.concurrency {
        let (node, admin) = (node.clone(), admin.clone());
        let (persons, think_ms) = (b.persons, b.think_ms);
        tasks.push(tokio::spawn(async move {
            let mut rng = ChaCha8Rng::seed_from_u64(c as u64);
            let mut figures = vec![Figures::default(); KINDS.len()];
            // Start spread over one think time, like users arriving.
            if think_ms > 0 {
                let pause = rng.random_range(0..think_ms);
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            let mut sent = 0u64;
            while Instant::now() < deadline {
                // Half person files, a quarter each combined and fuzzy.
                let kind = [Kind::Person, Kind::Person, Kind::Combined, Kind::Fuzzy]
                    [rng.random_range(0..4usize)];
                let path = query_path(kind, &mut rng, persons);
                // A nonce per (client, request): identical queries never share a signature.
                sent += 1;
                let headers = govchain_api::auth::sign_request_with_nonce(
                    &admin,
                    "GET",
                    &format!("/api/v1/{path}"),
                    crate::now_ms().0,
                    &format!("{c}-{sent}"),
                    b"",
                );
                let started = Instant::now();
                let r = node.get_with(&path, &headers).await;
                let ms = started.elapsed().as_secs_f64() * 1000.0;
                let f = &mut figures[KINDS.iter().position(|x| *x == kind).unwrap_or(0)];
                match r {
                    Ok((200, _)) => f.ok_ms.push(ms),
                    Ok((status, body)) => {
                        f.failed += 1;
                        f.first_failure
                            .get_or_insert_with(|| format!("{status} {path}: {body}"));
                    }
                    Err(e) => {
                        f.failed += 1;
                        f.first_failure
                            .get_or_insert_with(|| format!("{path}: {e}"));
                    }
                }
                if think_ms > 0 {
                    let pause = rng.random_range(0..2 * think_ms);
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
            }
            figures
        }));
    }
    let mut all = vec![Figures::default(); KINDS.len()];
    for t in tasks {
        for (a, f) in all.iter_mut().zip(t.await?) {
            a.ok_ms.extend(f.ok_ms);
            a.failed += f.failed;
            if a.first_failure.is_none() {
                a.first_failure = f.first_failure;
            }
        }
    }
    Ok(all)
}

fn report(b: &QueryBench, figures: &[Figures]) {
    println!(
        "bench query: {} residents, {} backend, {} clients, think {} ms, {} s, {} cores",
        b.persons,
        b.db.split("://").next().unwrap_or(&b.db),
        b.concurrency,
        b.think_ms,
        b.duration.as_secs(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    for (kind, f) in KINDS.iter().zip(figures) {
        let mut ms = f.ok_ms.clone();
        ms.sort_by(f64::total_cmp);
        println!(
            "  {:<12} {:>8} ok {:>6.0}/s  p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>8.1} ms  failed {}",
            kind.name(),
            ms.len(),
            ms.len() as f64 / b.duration.as_secs_f64(),
            crate::bench::percentile(&ms, 0.5),
            crate::bench::percentile(&ms, 0.99),
            ms.last().copied().unwrap_or(0.0),
            f.failed
        );
        if let Some(e) = &f.first_failure {
            println!("    first failure: {e}");
        }
    }
}
