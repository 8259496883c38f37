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
    /// Query with the system administrator's key instead of as staff (sessions, grants,
    /// consents).
    pub as_admin: bool,
}

/// The query kinds of the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Person,
    Combined,
    Fuzzy,
    Login,
}

const KINDS: [Kind; 4] = [Kind::Person, Kind::Combined, Kind::Fuzzy, Kind::Login];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Person => "person file",
            Kind::Combined => "combined",
            Kind::Fuzzy => "fuzzy",
            Kind::Login => "login",
        }
    }
}

/// Residents each staff client holds a consent for (its cases).
const CASES_PER_CLIENT: u64 = 8;
/// Password of the benchmark's staff.
const STAFF_PASSWORD: &str = "Bench-2026";
/// The matter type of the benchmark's consents.
const BENCH_MATTER: &str = "bench.file";

/// The staff client `c` acts as.
fn staff_id(c: usize) -> String {
    format!("bench-{c}")
}

/// The resident of client `c`'s case `k`.
fn case_person(c: usize, k: u64, persons: u64) -> u64 {
    let h = blake3::hash(format!("case {c} {k}").as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.as_bytes()[..8]);
    u64::from_le_bytes(b) % persons
}

/// Client `c`'s consent id for case `k`.
fn case_consent(c: usize, k: u64) -> String {
    blake3::hash(format!("bench consent {c} {k}").as_bytes())
        .to_hex()
        .to_string()
}

/// Commits `txs` from `workers` concurrent submitters; a transaction refused because it exists
/// already (a re-run on a kept cluster) counts as done.
async fn commit_all(
    client: &Client,
    txs: Vec<govchain_ledger::SignedTx>,
    workers: usize,
) -> anyhow::Result<()> {
    let queue = Arc::new(std::sync::Mutex::new(txs));
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (client, queue) = (client.clone(), queue.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let Some(tx) = queue.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.pop() else {
                    return Ok::<_, anyhow::Error>(());
                };
                loop {
                    let (status, body) = client.submit_status(&tx).await?;
                    match status {
                        200 | 409 => break,
                        202 => {
                            client.wait_committed(&tx.id(), COMMIT_WAIT).await?;
                            break;
                        }
                        503 => tokio::time::sleep(Duration::from_millis(100)).await,
                        _ => bail!("setup transaction refused: {status} {body}"),
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Staff for the query phase (R-SEC-1…5): one user of department gaj per client, with a
/// password on node 1; grants to gaj on the other departments' conditional sources; a matter
/// type over the loaded person sources; and each client's consents for its cases, recorded by
/// node 1 as after an SMS code.
async fn prepare_staff(b: &QueryBench, dir: &Path, node: &Client) -> anyhow::Result<()> {
    use govchain_chaincode::access::{Consent, Grant, GrantScope, Grantee, Role, User};
    use govchain_chaincode::business::{CatalogEntry, MatterType, PutMode, SourceFields};
    use govchain_chaincode::catalog::ShareType;
    use govchain_chaincode::TxKind;
    let started = Instant::now();
    let doc = GenesisDoc::read(&dir.join("genesis.json"))?;
    let admin = Keypair::read_file(&dir.join("keys/sysadmin.key"))?;
    let node_key = Keypair::read_file(&dir.join("node-1/node.key"))?;
    let chain = &doc.chain_id;
    let sign = |k: &Keypair, kind: TxKind| crate::client::sign_tx(k, chain, &kind);
    let users: Vec<User> = (0..b.concurrency)
        .map(|c| User {
            id: staff_id(c),
            name: format!("压测{c}"),
            department: "gaj".into(),
            level: 1,
            roles: vec![Role::Staff],
            disabled: false,
            key: None,
        })
        .collect();
    let mut txs: Vec<_> = users
        .chunks(govchain_chaincode::access::MAX_USERS_PER_TX)
        .map(|u| {
            sign(
                &admin,
                TxKind::PutUsers {
                    mode: PutMode::Add,
                    users: u.to_vec(),
                },
            )
        })
        .collect();
    let now = crate::now_ms().0;
    let extras = extra_sources(&doc, &department_keys(dir, &doc)?);
    let mut sources: Vec<&DataSource> = doc.sources.iter().filter(|s| s.id == "gaj.hjxx").collect();
    sources.extend(extras.iter().map(|(s, _)| s));
    let owners: std::collections::BTreeSet<&str> = sources
        .iter()
        .map(|s| s.department.as_str())
        .filter(|d| *d != "gaj")
        .collect();
    for d in &owners {
        txs.push(sign(
            &admin,
            TxKind::PutGrant(Grant {
                id: format!("bench.{d}"),
                grantee: Grantee::Department("gaj".into()),
                scope: GrantScope::ShareType {
                    owner: d.to_string(),
                    share_type: ShareType::Conditional,
                },
                query: true,
                export: false,
                valid_from: govchain_ledger::TimestampMs(now - 60_000),
                valid_until: govchain_ledger::TimestampMs(now + 365 * 86_400_000),
            }),
        ));
    }
    let matter = MatterType {
        id: BENCH_MATTER.into(),
        name: "压测事项".into(),
        department: "gaj".into(),
        sources: sources
            .iter()
            .map(|s| SourceFields {
                source: s.id.clone(),
                fields: s.person_field.iter().cloned().collect(),
            })
            .collect(),
        materials: vec![],
    };
    txs.push(sign(
        &admin,
        TxKind::PutCatalogEntry {
            mode: PutMode::Add,
            entry: CatalogEntry::MatterType(matter.clone()),
        },
    ));
    commit_all(node, txs, 8).await?;
    println!(
        "  staff: {} users, {} grants, matter {BENCH_MATTER} ({} sources) in {:.1} s",
        users.len(),
        owners.len(),
        matter.sources.len(),
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let mut consents = Vec::new();
    for c in 0..b.concurrency {
        for k in 0..CASES_PER_CLIENT {
            let p = person(SEED, case_person(c, k, b.persons));
            consents.push(sign(
                &node_key,
                TxKind::RecordConsent(Consent {
                    id: case_consent(c, k),
                    person: p.id.clone(),
                    matter: BENCH_MATTER.into(),
                    sources: matter.sources.iter().map(|s| s.source.clone()).collect(),
                    grantee: staff_id(c),
                    purpose: "压测办件".into(),
                    issued_at: govchain_ledger::TimestampMs(now),
                    expires_at: govchain_ledger::TimestampMs(now + 29 * 86_400_000),
                    verified_by: "sms:bench".into(),
                }),
            ));
        }
    }
    let n = consents.len();
    commit_all(node, consents, 32).await?;
    println!(
        "  consents: {n} recorded in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // Passwords are node-local argon2 hashes: set through the API, a few at a time.
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (node, admin, next) = (node.clone(), admin.clone(), next.clone());
        let total = b.concurrency as u64;
        tasks.push(tokio::spawn(async move {
            loop {
                let c = next.fetch_add(1, Ordering::Relaxed);
                if c >= total {
                    return Ok::<_, anyhow::Error>(());
                }
                let body = serde_json::json!({"password": STAFF_PASSWORD});
                let path = format!("users/{}/password", staff_id(c as usize));
                // Kept from an earlier run on this cluster.
                let (_, u) = node
                    .get_signed(&format!("users/{}", staff_id(c as usize)), &admin)
                    .await?;
                if u["password_set"] == true {
                    continue;
                }
                let (s, r) = node.call_signed("PUT", &path, &admin, Some(&body)).await?;
                if s != 200 {
                    bail!("setting a password: {s} {r}");
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    println!(
        "  passwords: {} set (argon2id) in {:.1} s",
        b.concurrency,
        started.elapsed().as_secs_f64()
    );
    Ok(())
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
        load(&b, &dir, &cluster).await?;
        std::fs::write(dir.join(LOADED_FILE), b.persons.to_string())?;
        println!(
            "  chain load: {} residents committed in {:.1} s ({:.0} residents/s)",
            b.persons,
            started.elapsed().as_secs_f64(),
            b.persons as f64 / started.elapsed().as_secs_f64()
        );
    }
    let node1 = cluster.client(0)?;
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
    if !b.as_admin {
        prepare_staff(&b, &dir, &node1).await?;
        wait_projected(&node1).await?;
    }
    let before = node1.get_json("status").await?;
    let figures = drive(&b, &node1, admin).await?;
    let after = node1.get_json("status").await?;
    cluster.stop();
    report(&b, &figures);
    let entries = |s: &serde_json::Value| s["audit_entries"].as_u64().unwrap_or(0);
    let blocks = |s: &serde_json::Value| s["height"].as_u64().unwrap_or(0);
    println!(
        "  audit: {} entries committed on chain during the phase ({:.0} entries/s, in {} blocks), {} still queued at the end",
        entries(&after) - entries(&before),
        (entries(&after) - entries(&before)) as f64 / b.duration.as_secs_f64(),
        blocks(&after) - blocks(&before),
        after["audit_backlog"]
    );
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

/// The person sources besides `gaj.hjxx` the load fills: three of the other departments that
/// run nodes, with their node's key.
fn extra_sources(doc: &GenesisDoc, keys: &[(String, Keypair)]) -> Vec<(DataSource, Keypair)> {
    let key_of = |dept: &str| keys.iter().find(|(d, _)| d == dept).map(|(_, k)| k.clone());
    doc.sources
        .iter()
        .filter(|s| s.id != "gaj.hjxx" && s.person_field.is_some())
        .filter_map(|s| key_of(&s.department).map(|k| (s.clone(), k)))
        .filter(|(s, _)| s.department != "gaj")
        .take(3)
        .collect()
}

/// Loads `b.persons` residents through the chain, `LOADERS` batches at a time.
async fn load(b: &QueryBench, dir: &Path, cluster: &LocalCluster) -> anyhow::Result<()> {
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
    let extras = extra_sources(&doc, &keys);
    let batches = b.persons.div_ceil(b.batch as u64);
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let shared = Arc::new((hjxx, hjxx_key, extras, doc.chain_id.clone()));
    let mut tasks = Vec::new();
    for w in 0..LOADERS {
        let client = cluster.client(w % cluster.urls.len())?;
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

/// One query of `kind` about a random resident (for the person file: one of client `c`'s
/// cases, unless it is the administrator): the path under `/api/v1` and the consent it needs.
fn query_path(
    kind: Kind,
    rng: &mut ChaCha8Rng,
    persons: u64,
    staff: Option<usize>,
) -> (String, Option<String>) {
    let p = person(SEED, rng.random_range(0..persons));
    let path = match kind {
        Kind::Person => match staff {
            None => format!("persons/{}", p.id),
            Some(c) => {
                let k = rng.random_range(0..CASES_PER_CLIENT);
                let p = person(SEED, case_person(c, k, persons));
                return (format!("persons/{}", p.id), Some(case_consent(c, k)));
            }
        },
        Kind::Login => "login".to_string(),
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
    };
    (path, None)
}

/// Latencies (ms) and failures of one kind.
#[derive(Debug, Default, Clone)]
struct Figures {
    ok_ms: Vec<f64>,
    failed: u64,
    first_failure: Option<String>,
}

/// The login phase: every staff client logs in once (as staff start their day), all at
/// once; returns each client's session token. Its latencies are the login figures.
async fn login_all(b: &QueryBench, node: &Client, figures: &mut Figures) -> Vec<Option<String>> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    // Staff arrive faster than passwords can be checked: 64 logins in flight at a time, the
    // rest waiting their turn (a login's latency counts from its turn).
    let gate = Arc::new(tokio::sync::Semaphore::new(64));
    for c in 0..b.concurrency {
        let (node, gate) = (node.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            let _turn = gate.acquire_owned().await;
            let body = serde_json::json!({"user": staff_id(c), "password": STAFF_PASSWORD});
            let t = Instant::now();
            let r = node.call("POST", "login", &[], Some(&body)).await;
            (t.elapsed().as_secs_f64() * 1000.0, r)
        }));
    }
    let mut tokens = Vec::with_capacity(tasks.len());
    for t in tasks {
        match t.await {
            Ok((ms, Ok((200, v)))) => {
                figures.ok_ms.push(ms);
                tokens.push(v["token"].as_str().map(str::to_string));
            }
            Ok((_, Ok((status, v)))) => {
                figures.failed += 1;
                figures
                    .first_failure
                    .get_or_insert_with(|| format!("{status} login: {v}"));
                tokens.push(None);
            }
            Ok((_, Err(e))) => {
                figures.failed += 1;
                figures
                    .first_failure
                    .get_or_insert_with(|| format!("login: {e}"));
                tokens.push(None);
            }
            Err(e) => {
                figures.failed += 1;
                figures
                    .first_failure
                    .get_or_insert_with(|| format!("login task: {e}"));
                tokens.push(None);
            }
        }
    }
    println!(
        "  login phase: {} staff logged in within {:.1} s (argon2id, one check per core at a time)",
        figures.ok_ms.len(),
        started.elapsed().as_secs_f64()
    );
    tokens
}

/// The query phase: `b.concurrency` clients until `b.duration` has passed.
async fn drive(b: &QueryBench, node: &Client, admin: Keypair) -> anyhow::Result<Vec<Figures>> {
    let admin = Arc::new(admin);
    let mut figures_login = Figures::default();
    let tokens: Arc<Vec<Option<String>>> = Arc::new(if b.as_admin {
        Vec::new()
    } else {
        login_all(b, node, &mut figures_login).await
    });
    println!(
        "  query phase: {} clients for {} s, think time {} ms",
        b.concurrency,
        b.duration.as_secs(),
        b.think_ms
    );
    let deadline = Instant::now() + b.duration;
    let to = node.audience().await?;
    let mut tasks = Vec::new();
    for c in 0..b.concurrency {
        let (node, admin, tokens, to) = (node.clone(), admin.clone(), tokens.clone(), to.clone());
        let (persons, think_ms, as_admin) = (b.persons, b.think_ms, b.as_admin);
        tasks.push(tokio::spawn(async move {
            let mut rng = ChaCha8Rng::seed_from_u64(c as u64);
            let mut figures = vec![Figures::default(); KINDS.len()];
            // Start spread over one think time, like users arriving.
            if think_ms > 0 {
                let pause = rng.random_range(0..think_ms);
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            let mut sent = 0u64;
            let token = tokens.get(c).cloned().flatten();
            if !as_admin && token.is_none() {
                // Its login failed (counted in the login figures).
                return figures;
            }
            while Instant::now() < deadline {
                // Half person files, a quarter each combined and fuzzy.
                let kind = [Kind::Person, Kind::Person, Kind::Combined, Kind::Fuzzy]
                    [rng.random_range(0..4usize)];
                let (path, consent) = query_path(kind, &mut rng, persons, (!as_admin).then_some(c));
                let headers: Vec<(&str, String)> = match &token {
                    Some(t) => {
                        let mut h = vec![("authorization", format!("Bearer {t}"))];
                        if let Some(id) = consent {
                            h.push((govchain_api::access::CONSENT_HEADER, id));
                        }
                        h
                    }
                    None => {
                        // A nonce per (client, request): identical queries never share a
                        // signature.
                        sent += 1;
                        govchain_api::auth::sign_request_with_nonce(
                            &admin,
                            &to,
                            "GET",
                            &format!("/api/v1/{path}"),
                            crate::now_ms().0,
                            &format!("{c}-{sent}"),
                            b"",
                        )
                        .to_vec()
                    }
                };
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
    all[KINDS.len() - 1] = figures_login;
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
        "bench query: {} residents, {} backend, {} clients ({}), think {} ms, {} s, {} cores",
        b.persons,
        b.db.split("://").next().unwrap_or(&b.db),
        b.concurrency,
        if b.as_admin {
            "system administrator's key"
        } else {
            "staff sessions, grants, consents"
        },
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
