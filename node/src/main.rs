//! `govchain`: the command line of a govchain node (DESIGN §8).

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use govchain_genesis::GenerateOptions;
use govchain_ledger::{ChainId, TimestampMs};
use govchain_node::{bench, bench_query, catalog_cli, demo, server, submit, users_cli, verify};
use tracing_subscriber::EnvFilter;

/// The API of a local node (generated clusters serve HTTPS).
const DEFAULT_URL: &str = "https://127.0.0.1:8701";

#[derive(Parser)]
#[command(
    name = "govchain",
    version,
    about = "Permissioned blockchain for government data sharing"
)]
struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum UsersCmd {
    /// Import users from a CSV or XLSX file (header: id, name, department, level, roles,
    /// [disabled], [key], [password]); prints how many were imported and every refused row.
    Import {
        /// The file.
        file: PathBuf,
        /// The administrator's key file.
        #[arg(long)]
        key: PathBuf,
        /// The node's API base URL.
        #[arg(long, default_value = DEFAULT_URL)]
        url: String,
        /// CA certificate(s) (PEM) to trust for HTTPS, e.g. a generated cluster's `ca.pem`
        /// (default: the built-in public roots).
        #[arg(long, env = "GOVCHAIN_CA")]
        ca: Option<PathBuf>,
        /// Replace existing users (modify, disable) instead of adding new ones.
        #[arg(long)]
        replace: bool,
        /// Write the refused rows (row, id, error) to this CSV file.
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Delete one user.
    Delete {
        /// The user id.
        id: String,
        /// The administrator's key file.
        #[arg(long)]
        key: PathBuf,
        /// The node's API base URL.
        #[arg(long, default_value = DEFAULT_URL)]
        url: String,
        /// CA certificate(s) (PEM) to trust for HTTPS, e.g. a generated cluster's `ca.pem`
        /// (default: the built-in public roots).
        #[arg(long, env = "GOVCHAIN_CA")]
        ca: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum SyncCmd {
    /// Every connector of the node: health, cursor, queue, last run.
    Status {
        /// The node's API base URL.
        #[arg(long, default_value = DEFAULT_URL)]
        url: String,
        /// CA certificate(s) (PEM) to trust for HTTPS, e.g. a generated cluster's `ca.pem`
        /// (default: the built-in public roots).
        #[arg(long, env = "GOVCHAIN_CA")]
        ca: Option<PathBuf>,
        /// Key file of an operator (the system administrator or a department administrator).
        #[arg(long)]
        key: PathBuf,
    },
    /// Start a run of one source now (outside its schedule).
    Run {
        /// The data source.
        #[arg(long)]
        source: String,
        /// The node's API base URL.
        #[arg(long, default_value = DEFAULT_URL)]
        url: String,
        /// CA certificate(s) (PEM) to trust for HTTPS, e.g. a generated cluster's `ca.pem`
        /// (default: the built-in public roots).
        #[arg(long, env = "GOVCHAIN_CA")]
        ca: Option<PathBuf>,
        /// Key file of the system administrator or a department administrator.
        #[arg(long)]
        key: PathBuf,
    },
    /// The records of one source that failed validation, newest first, with the reason, and
    /// how many were dropped because the list was full.
    Rejected {
        /// The data source.
        #[arg(long)]
        source: String,
        /// Most records listed.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// The node's API base URL.
        #[arg(long, default_value = DEFAULT_URL)]
        url: String,
        /// CA certificate(s) (PEM) to trust for HTTPS, e.g. a generated cluster's `ca.pem`
        /// (default: the built-in public roots).
        #[arg(long, env = "GOVCHAIN_CA")]
        ca: Option<PathBuf>,
        /// Key file of an operator.
        #[arg(long)]
        key: PathBuf,
    },
    /// Validate the refused records of one source again with the current catalog (those that
    /// pass go to the chain), then start a run for what the department system fixed.
    RetryRejected {
        /// The data source.
        #[arg(long)]
        source: String,
        /// The node's API base URL.
        #[arg(long, default_value = DEFAULT_URL)]
        url: String,
        /// CA certificate(s) (PEM) to trust for HTTPS, e.g. a generated cluster's `ca.pem`
        /// (default: the built-in public roots).
        #[arg(long, env = "GOVCHAIN_CA")]
        ca: Option<PathBuf>,
        /// Key file of the system administrator or a department administrator.
        #[arg(long)]
        key: PathBuf,
    },
    /// The latest runs of one source.
    History {
        /// The data source.
        #[arg(long)]
        source: String,
        /// Most runs.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// The node's API base URL.
        #[arg(long, default_value = DEFAULT_URL)]
        url: String,
        /// CA certificate(s) (PEM) to trust for HTTPS, e.g. a generated cluster's `ca.pem`
        /// (default: the built-in public roots).
        #[arg(long, env = "GOVCHAIN_CA")]
        ca: Option<PathBuf>,
        /// Key file of an operator.
        #[arg(long)]
        key: PathBuf,
    },
}

#[derive(Subcommand)]
enum Cmd {
    /// Synchronization with department systems: status, a manual run, run history, refused
    /// records (listed, retried).
    Sync {
        #[command(subcommand)]
        cmd: SyncCmd,
    },
    /// Serve simulated department systems over HTTP (paged change feeds, DES/3DES payloads,
    /// injected faults) for tests, the demo and benchmarks.
    DeptSim {
        /// Listen address (port 0: any free port; the chosen address is printed).
        #[arg(long, default_value = "127.0.0.1:8800")]
        listen: std::net::SocketAddr,
        /// Data sources served (catalog ids, comma-separated; default: three of gaj's).
        #[arg(long, value_delimiter = ',')]
        sources: Vec<String>,
        /// A source's codec, SOURCE=plain|des:KEYHEX:IVHEX|3des:KEYHEX:IVHEX (repeatable).
        #[arg(long)]
        codec: Vec<String>,
        /// Records per source.
        #[arg(long, default_value_t = 1000)]
        records: u64,
        /// Population seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Bearer token the simulated systems require (empty: none).
        #[arg(long, default_value = "")]
        token: String,
        /// Probability that a data request gets a fault.
        #[arg(long, default_value_t = 0.0)]
        fault_rate: f64,
        /// Fault kinds: all, or a comma list of 500,timeout,slow,truncated,duplicate.
        #[arg(long, default_value = "all")]
        faults: String,
        /// How long a "timeout" fault hangs, in ms.
        #[arg(long, default_value_t = 30_000)]
        timeout_ms: u64,
        /// How long a "slow" fault delays, in ms.
        #[arg(long, default_value_t = 300)]
        slow_ms: u64,
    },
    /// Generate keys, genesis.json and one node directory per validator department.
    Genesis {
        /// Departments that run validator nodes (the first N of the catalog).
        #[arg(long, default_value_t = 4)]
        departments: usize,
        /// Output directory (must not hold a genesis yet).
        #[arg(long)]
        out: PathBuf,
        /// Chain id.
        #[arg(long, default_value = "govchain-local")]
        chain_id: String,
        /// Node i's API port is base-port + i.
        #[arg(long, default_value_t = 8700)]
        base_port: u16,
    },
    /// Run a node.
    Node {
        /// The node's node.toml.
        #[arg(long)]
        config: PathBuf,
    },
    /// Replay a node's store from genesis and verify everything (the auditor's check).
    Verify {
        /// The node's data directory.
        #[arg(long)]
        data: PathBuf,
        /// The genesis file.
        #[arg(long)]
        genesis: PathBuf,
        /// Also rebuild the SQL projection from the replayed chain into --db and compare its
        /// digest with the node's live projection (R-AUD-4).
        #[arg(long)]
        rebuild_projection: bool,
        /// Where to rebuild: sqlite://FILE or mysql://… (emptied first). Default: a temporary
        /// SQLite file.
        #[arg(long)]
        db: Option<String>,
        /// The node's live projection. Default: projection.sqlite in --data.
        #[arg(long)]
        live_db: Option<String>,
    },
    /// Check an audit entry's proof file (from /api/v1/audit/proof) offline against genesis.
    VerifyProof {
        /// The proof file (JSON).
        file: PathBuf,
        /// The genesis file.
        #[arg(long)]
        genesis: PathBuf,
    },
    /// Sign and send batches of synthetic records from the node's department.
    Submit {
        /// The node's node.toml (its key signs).
        #[arg(long)]
        config: PathBuf,
        /// Records in total.
        #[arg(long, default_value_t = 100)]
        records: u64,
        /// Records per transaction.
        #[arg(long, default_value_t = 100)]
        batch: u64,
        /// Population seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// First resident index.
        #[arg(long, default_value_t = 0)]
        start: u64,
        /// Only this data source.
        #[arg(long)]
        source: Option<String>,
        /// API base URL (default: the node's listen address).
        #[arg(long)]
        url: Option<String>,
        /// CA certificate (PEM) to trust for HTTPS (default: the node's `api.tls_ca`).
        #[arg(long, env = "GOVCHAIN_CA")]
        ca: Option<PathBuf>,
    },
    /// A signed GET of the node API (personal-data endpoints need a system account's key);
    /// prints the JSON answer.
    Query {
        /// The node's API.
        #[arg(long, default_value = DEFAULT_URL)]
        url: String,
        /// CA certificate(s) (PEM) to trust for HTTPS, e.g. a generated cluster's `ca.pem`
        /// (default: the built-in public roots).
        #[arg(long, env = "GOVCHAIN_CA")]
        ca: Option<PathBuf>,
        /// Key file of the signing system account (e.g. keys/sysadmin.key).
        #[arg(long)]
        key: PathBuf,
        /// Path under /api/v1 with its query, e.g. `persons/350102…` or `search?q=张伟`.
        path: String,
    },
    /// Sign and send one business-catalog transaction (matter type, material, category,
    /// display template, export format, saved query) from a JSON file; waits for its commit.
    Catalog {
        /// The transaction kind as JSON, e.g. {"PutMaterial": {"mode": "add", "matter": …}}.
        #[arg(long)]
        file: PathBuf,
        /// The signer's key file (keys/sysadmin.key for catalog entries; any registered key
        /// for its own saved queries).
        #[arg(long)]
        key: PathBuf,
        /// The node's API base URL.
        #[arg(long, default_value = DEFAULT_URL)]
        url: String,
        /// CA certificate(s) (PEM) to trust for HTTPS, e.g. a generated cluster's `ca.pem`
        /// (default: the built-in public roots).
        #[arg(long, env = "GOVCHAIN_CA")]
        ca: Option<PathBuf>,
    },
    /// Users: batch import from CSV or XLSX, or delete one (signed by an administrator's key).
    Users {
        #[command(subcommand)]
        cmd: UsersCmd,
    },
    /// Start a local cluster of department nodes with sample data; Ctrl-C stops it.
    Demo {
        /// Cluster directory (recreated).
        #[arg(long, default_value = "demo-data")]
        dir: PathBuf,
        /// Departments running validator nodes.
        #[arg(long, default_value_t = 4)]
        departments: usize,
        /// Residents registered by node 1's department (household registration).
        #[arg(long, default_value_t = 3000)]
        persons: u64,
        /// Records about them from each other department's person sources.
        #[arg(long, default_value_t = 1000)]
        records: u64,
        /// API port base (node i on base + i).
        #[arg(long, default_value_t = 8700)]
        base_port: u16,
    },
    /// Run the deterministic consensus simulator over many seeds (agreement, validity,
    /// progress); a failure prints the command that replays it.
    Sim {
        /// Scenario: honest, crash, partition, byzantine, dup-reorder or all.
        #[arg(long, default_value = "all")]
        scenario: String,
        /// Validators (4 or 7 in the test suite).
        #[arg(long, default_value_t = 4)]
        validators: usize,
        /// Number of seeds, starting at --seed.
        #[arg(long, default_value_t = 1000)]
        seeds: u64,
        /// First seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Heights each run must decide.
        #[arg(long, default_value_t = 4)]
        heights: u64,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        what: BenchCmd,
    },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// A local cluster of validator processes under concurrent signed transactions.
    Chain {
        /// Validator processes.
        #[arg(long, default_value_t = 4)]
        nodes: usize,
        /// Transactions to commit.
        #[arg(long, default_value_t = 20_000)]
        txs: u64,
        /// Records per SubmitRecords transaction.
        #[arg(long, default_value_t = 1)]
        records_per_tx: usize,
        /// Concurrent clients (each waits for its commit).
        #[arg(long, default_value_t = 512)]
        clients: usize,
        /// API port base (node i on base + i, p2p on base + 100 + i).
        #[arg(long, default_value_t = 18700)]
        base_port: u16,
        /// Keep the cluster (data, node logs) in this new directory instead of a temporary one.
        #[arg(long)]
        keep: Option<PathBuf>,
        /// Also run every node's SQL projection (SQLite) during the benchmark.
        #[arg(long)]
        projection: bool,
    },
    /// Residents loaded through the chain into a projection, then concurrent signed queries
    /// (person file, combined, fuzzy): load time and latency per query kind.
    Query {
        /// `sqlite` or `mysql://USER@HOST:PORT/DB` (an existing, empty database).
        #[arg(long, default_value = "sqlite")]
        db: String,
        /// Residents to load.
        #[arg(long, default_value_t = 100_000)]
        persons: u64,
        /// Concurrent query clients.
        #[arg(long, default_value_t = 3000)]
        concurrency: usize,
        /// Seconds of querying.
        #[arg(long, default_value_t = 60)]
        duration: u64,
        /// Mean pause of a client between queries, in ms (0: back to back).
        #[arg(long, default_value_t = 2000)]
        think_ms: u64,
        /// Records per SubmitRecords transaction during the load.
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        /// Validator processes.
        #[arg(long, default_value_t = 4)]
        nodes: usize,
        /// API port base (node i on base + i, p2p on base + 100 + i).
        #[arg(long, default_value_t = 18900)]
        base_port: u16,
        /// Cluster directory: created and loaded if absent, reused (no new load) if it holds
        /// this many residents.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Query as the system administrator's key (no grants, no consents) instead of as
        /// staff with sessions, grants and consents.
        #[arg(long)]
        as_admin: bool,
    },
    /// Signatures, hashing, Merkle roots and synced block commits.
    /// Records per second from simulated department systems to committed blocks: node 1's
    /// connectors pull plain, DES and 3DES sources in parallel.
    Sync {
        /// Validators.
        #[arg(long, default_value_t = 4)]
        nodes: usize,
        /// Data sources pulled in parallel.
        #[arg(long, default_value_t = 4)]
        sources: usize,
        /// Records per source.
        #[arg(long, default_value_t = 25_000)]
        records: u64,
        /// Records per transaction.
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        /// Records per page.
        #[arg(long, default_value_t = 1000)]
        page: usize,
        /// Transactions per source waiting for commit at once.
        #[arg(long, default_value_t = 4)]
        inflight: usize,
        /// Fault probability per request.
        #[arg(long, default_value_t = 0.0)]
        fault_rate: f64,
        /// Node i's API port is base + i.
        #[arg(long, default_value_t = 19100)]
        base_port: u16,
        /// Keep the cluster in this (new) directory.
        #[arg(long)]
        keep: Option<PathBuf>,
        /// Keep a SQL projection on every node.
        #[arg(long)]
        projection: bool,
    },
    Ledger {
        /// Blocks of 1,000 transactions to commit.
        #[arg(long, default_value_t = 100)]
        blocks: usize,
    },
}

fn init_logs(json: bool) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,libp2p_gossipsub=error"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        b.json().init();
    } else {
        b.init();
    }
}

/// The multi-threaded tokio runtime of the async commands.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logs(cli.log_json);
    match cli.cmd {
        Cmd::Genesis {
            departments,
            out,
            chain_id,
            base_port,
        } => {
            let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
            let opts = GenerateOptions {
                departments,
                chain_id: ChainId::new(chain_id)?,
                genesis_time: TimestampMs(now),
                base_port,
            };
            let doc = govchain_genesis::generate(&opts, &out)?;
            println!(
                "genesis {} for chain {}: {} departments ({} validators), {} data sources, written to {}",
                doc.hash(),
                doc.chain_id,
                doc.departments.len(),
                doc.validators.validators.len(),
                doc.sources.len(),
                out.display()
            );
        }
        Cmd::Node { config } => {
            let rt = runtime()?;
            rt.block_on(server::run(&config))?;
        }
        Cmd::Verify {
            data,
            genesis,
            rebuild_projection,
            db,
            live_db,
        } => {
            let code = verify::run(&data, &genesis);
            if code != 0 || !rebuild_projection {
                std::process::exit(code);
            }
            let rt = runtime()?;
            std::process::exit(rt.block_on(verify::rebuild(&data, &genesis, db, live_db)));
        }
        Cmd::VerifyProof { file, genesis } => {
            std::process::exit(verify::run_proof(&file, &genesis))
        }
        Cmd::Submit {
            config,
            records,
            batch,
            seed,
            start,
            source,
            url,
            ca,
        } => {
            let rt = runtime()?;
            let opts = submit::SubmitOptions {
                records,
                batch,
                seed,
                start,
                source,
                url,
                ca,
            };
            rt.block_on(submit::run(&config, &opts))?;
        }
        Cmd::Users {
            cmd:
                UsersCmd::Import {
                    file,
                    key,
                    url,
                    ca,
                    replace,
                    report,
                },
        } => {
            let rt = runtime()?;
            let r = rt.block_on(users_cli::run(
                &file,
                &key,
                &url,
                ca.as_deref(),
                replace,
                report.as_deref(),
            ))?;
            println!(
                "users import: {} imported in {} transactions, {} rows refused",
                r.imported,
                r.transactions,
                r.errors.len()
            );
            for e in &r.errors {
                println!("  row {} ({}): {}", e.row, e.id, e.error);
            }
        }
        Cmd::Users {
            cmd: UsersCmd::Delete { id, key, url, ca },
        } => {
            let rt = runtime()?;
            let r = rt.block_on(users_cli::delete(&id, &key, &url, ca.as_deref()))?;
            println!("user {id} deleted at height {r}");
        }
        Cmd::Catalog { file, key, url, ca } => {
            let rt = runtime()?;
            let r = rt.block_on(catalog_cli::run(&file, &key, &url, ca.as_deref()))?;
            println!(
                "{} {} at height {}",
                r.tx_id,
                r.status,
                r.height.map_or("-".to_string(), |h| h.to_string())
            );
        }
        Cmd::Bench {
            what: BenchCmd::Ledger { blocks },
        } => bench::ledger(blocks)?,
        Cmd::Bench {
            what:
                BenchCmd::Sync {
                    nodes,
                    sources,
                    records,
                    batch,
                    page,
                    inflight,
                    fault_rate,
                    base_port,
                    keep,
                    projection,
                },
        } => {
            let rt = runtime()?;
            rt.block_on(govchain_node::bench_sync::run(
                govchain_node::bench_sync::SyncBench {
                    nodes,
                    sources,
                    records,
                    batch,
                    page,
                    inflight,
                    fault_rate,
                    base_port,
                    keep,
                    projection,
                },
            ))?;
        }
        Cmd::Bench {
            what:
                BenchCmd::Chain {
                    nodes,
                    txs,
                    records_per_tx,
                    clients,
                    base_port,
                    keep,
                    projection,
                },
        } => {
            let rt = runtime()?;
            rt.block_on(bench::chain(bench::ChainBench {
                nodes,
                txs,
                records_per_tx,
                clients,
                base_port,
                keep,
                projection,
            }))?;
        }
        Cmd::Bench {
            what:
                BenchCmd::Query {
                    db,
                    persons,
                    concurrency,
                    duration,
                    think_ms,
                    batch,
                    nodes,
                    base_port,
                    dir,
                    as_admin,
                },
        } => {
            let rt = runtime()?;
            rt.block_on(bench_query::run(bench_query::QueryBench {
                as_admin,
                db,
                persons,
                concurrency,
                duration: std::time::Duration::from_secs(duration),
                think_ms,
                batch,
                nodes,
                base_port,
                dir,
            }))?;
        }
        Cmd::Sim {
            scenario,
            validators,
            seeds,
            seed,
            heights,
        } => {
            let scenario: govchain_consensus::sim::Scenario = scenario
                .parse()
                .map_err(|e| anyhow::anyhow!("--scenario: {e}"))?;
            let threads = std::thread::available_parallelism()?;
            let started = std::time::Instant::now();
            match govchain_consensus::sim::run_seeds_parallel(scenario, validators, seed..seed + seeds, heights, threads) {
                Ok(s) => println!(
                    "sim {scenario} x {validators} validators, seeds {seed}..{}: OK in {:.1}s — {} runs, {} heights decided, {} synced, {} messages, max round {}, {} evidence",
                    seed + seeds,
                    started.elapsed().as_secs_f64(),
                    s.runs,
                    s.heights_decided,
                    s.synced_heights,
                    s.messages,
                    s.max_round,
                    s.evidence
                ),
                Err(f) => {
                    eprintln!("sim FAILED: {f}");
                    std::process::exit(1);
                }
            }
        }
        Cmd::Sync { cmd } => {
            let rt = runtime()?;
            let (method, path, url, ca, key) = match cmd {
                SyncCmd::Status { url, ca, key } => {
                    ("GET", "sync/status".to_string(), url, ca, key)
                }
                SyncCmd::Run {
                    source,
                    url,
                    ca,
                    key,
                } => (
                    "POST",
                    format!(
                        "sync/run?source={}",
                        govchain_node::client::encode_path(&source)
                    ),
                    url,
                    ca,
                    key,
                ),
                SyncCmd::Rejected {
                    source,
                    limit,
                    url,
                    ca,
                    key,
                } => (
                    "GET",
                    format!(
                        "sync/rejected?source={}&limit={limit}",
                        govchain_node::client::encode_path(&source)
                    ),
                    url,
                    ca,
                    key,
                ),
                SyncCmd::RetryRejected {
                    source,
                    url,
                    ca,
                    key,
                } => (
                    "POST",
                    format!(
                        "sync/rejected/retry?source={}",
                        govchain_node::client::encode_path(&source)
                    ),
                    url,
                    ca,
                    key,
                ),
                SyncCmd::History {
                    source,
                    limit,
                    url,
                    ca,
                    key,
                } => (
                    "GET",
                    format!(
                        "sync/history?source={}&limit={limit}",
                        govchain_node::client::encode_path(&source)
                    ),
                    url,
                    ca,
                    key,
                ),
            };
            let key = govchain_ledger::Keypair::read_file(&key)?;
            let client = govchain_node::client::Client::new(&url, ca.as_deref())?;
            let (status, body) = rt.block_on(client.call_signed(method, &path, &key, None))?;
            println!("{}", serde_json::to_string_pretty(&body)?);
            if !(200..300).contains(&status) {
                anyhow::bail!("the node answered {status}");
            }
        }
        Cmd::DeptSim {
            listen,
            sources,
            codec,
            records,
            seed,
            token,
            fault_rate,
            faults,
            timeout_ms,
            slow_ms,
        } => {
            let codecs = codec
                .iter()
                .map(|c| {
                    c.split_once('=')
                        .map(|(s, c)| (s.to_string(), c.to_string()))
                        .ok_or_else(|| anyhow::anyhow!("--codec {c:?}: SOURCE=CODEC"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let rt = runtime()?;
            rt.block_on(govchain_node::dept_sim::run(
                govchain_node::dept_sim::SimArgs {
                    listen,
                    sources,
                    codecs,
                    records,
                    seed,
                    token,
                    fault_rate,
                    faults,
                    timeout_ms,
                    slow_ms,
                },
            ))?;
        }
        Cmd::Query { url, ca, key, path } => {
            let rt = runtime()?;
            let key = govchain_ledger::Keypair::read_file(&key)?;
            let client = govchain_node::client::Client::new(&url, ca.as_deref())?;
            let path = govchain_node::client::encode_path(&path);
            let (status, body) = rt.block_on(client.get_signed(&path, &key))?;
            println!("{}", serde_json::to_string_pretty(&body)?);
            if status != 200 {
                anyhow::bail!("the node answered {status}");
            }
        }
        Cmd::Demo {
            dir,
            departments,
            persons,
            records,
            base_port,
        } => {
            let rt = runtime()?;
            rt.block_on(demo::run(&dir, departments, persons, records, base_port))?;
        }
    }
    Ok(())
}
