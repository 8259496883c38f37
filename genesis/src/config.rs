//! A node's configuration file (`node.toml`). Every key has a documented default; relative paths
//! are relative to the file's directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::doc::GenesisError;

/// `node.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The department this node belongs to.
    pub department: String,
    /// Path of the genesis document. Default `../genesis.json`.
    #[serde(default = "defaults::genesis")]
    pub genesis: PathBuf,
    /// Path of the node's secret key (validator key). Default `node.key`.
    #[serde(default = "defaults::key_file")]
    pub key_file: PathBuf,
    /// Directory of the RocksDB store. Default `data`.
    #[serde(default = "defaults::data_dir")]
    pub data_dir: PathBuf,
    /// HTTP API settings.
    #[serde(default)]
    pub api: ApiConfig,
    /// Block production settings.
    #[serde(default)]
    pub chain: ChainConfig,
    /// Peer-to-peer settings.
    #[serde(default)]
    pub p2p: P2pConfig,
    /// Consensus timeouts.
    #[serde(default)]
    pub consensus: ConsensusConfig,
    /// Connectors to this department's systems, one per data source (R-SYN). Default none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connectors: Vec<ConnectorConfig>,
}

/// `[[connectors]]`: how the node pulls one data source from its department system
/// (DESIGN §5 Connectors). Codec, schedule and window are checked when the node starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorConfig {
    /// The data source (owned by this node's department).
    pub source: String,
    /// Base URL of the department system's API, e.g. `http://10.20.1.5:8080`.
    pub endpoint: String,
    /// Bearer token the department system expects. Default none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Payload codec: `plain`, `des:KEYHEX:IVHEX` or `3des:KEYHEX:IVHEX`. Default `plain`.
    #[serde(default = "defaults::codec")]
    pub codec: String,
    /// When scheduled runs start: a 5-field cron expression in local time. Default
    /// `*/30 * * * *`.
    #[serde(default = "defaults::schedule")]
    pub schedule: String,
    /// The off-hours window scheduled runs stay inside, local time (R-SYN-1). Default
    /// `22:00-06:00`.
    #[serde(default = "defaults::window")]
    pub window: String,
    /// Local time's offset from UTC in minutes. Default 480 (China Standard Time).
    #[serde(default = "defaults::utc_offset")]
    pub utc_offset_minutes: i32,
    /// Records per fetched page. Default 1000.
    #[serde(default = "defaults::page")]
    pub page: usize,
    /// Records per `SubmitRecords` transaction. Default 1000.
    #[serde(default = "defaults::page")]
    pub batch: usize,
    /// Transactions of this source waiting for commit at once. Default 4.
    #[serde(default = "defaults::inflight")]
    pub inflight: usize,
    /// Timeout of one request to the department system, in ms. Default 10000.
    #[serde(default = "defaults::request_timeout_ms")]
    pub timeout_ms: u64,
    /// Attempts per request before a run gives up. Default 8.
    #[serde(default = "defaults::attempts")]
    pub attempts: u32,
    /// First retry delay in ms; it doubles per attempt, with jitter. Default 200.
    #[serde(default = "defaults::retry_base_ms")]
    pub retry_base_ms: u64,
    /// Longest retry delay in ms. Default 10000.
    #[serde(default = "defaults::retry_max_ms")]
    pub retry_max_ms: u64,
    /// Consecutive failed requests after which the source is reported unhealthy. Default 5.
    #[serde(default = "defaults::unhealthy_after")]
    pub unhealthy_after: u32,
    /// Refused records kept per source for the operator to list and retry, 1..=
    /// [`MAX_REJECTED_KEEP`]; past it the oldest are dropped and counted. Default 1000.
    #[serde(default = "defaults::rejected_keep")]
    pub rejected_keep: usize,
}

/// Most refused records a connector may keep per source (`rejected_keep`).
pub const MAX_REJECTED_KEEP: usize = 10_000;

impl ConnectorConfig {
    /// A connector for `source` at `endpoint` with every default.
    pub fn new(source: &str, endpoint: &str) -> Self {
        Self {
            source: source.to_string(),
            endpoint: endpoint.to_string(),
            token: None,
            codec: defaults::codec(),
            schedule: defaults::schedule(),
            window: defaults::window(),
            utc_offset_minutes: defaults::utc_offset(),
            page: defaults::page(),
            batch: defaults::page(),
            inflight: defaults::inflight(),
            timeout_ms: defaults::request_timeout_ms(),
            attempts: defaults::attempts(),
            retry_base_ms: defaults::retry_base_ms(),
            retry_max_ms: defaults::retry_max_ms(),
            unhealthy_after: defaults::unhealthy_after(),
            rejected_keep: defaults::rejected_keep(),
        }
    }

    /// Checks the limits of one connector; the error names the source and the key.
    pub fn check(&self) -> Result<(), String> {
        let max = govchain_chaincode::records::MAX_RECORDS_PER_BATCH;
        if self.page == 0 || self.page > 5000 || self.batch == 0 || self.batch > max {
            return Err(format!(
                "connector {}: page must be 1..=5000 and batch 1..={max}",
                self.source
            ));
        }
        if self.inflight == 0
            || self.timeout_ms == 0
            || self.attempts == 0
            || self.unhealthy_after == 0
        {
            return Err(format!(
                "connector {}: inflight, timeout_ms, attempts and unhealthy_after must be positive",
                self.source
            ));
        }
        if self.rejected_keep == 0 || self.rejected_keep > MAX_REJECTED_KEEP {
            return Err(format!(
                "connector {}: rejected_keep must be 1..={MAX_REJECTED_KEEP}",
                self.source
            ));
        }
        if !(self.endpoint.starts_with("http://") || self.endpoint.starts_with("https://")) {
            return Err(format!(
                "connector {}: endpoint must be an http(s) URL",
                self.source
            ));
        }
        Ok(())
    }
}

/// `[p2p]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct P2pConfig {
    /// libp2p listen address. Default `/ip4/127.0.0.1/tcp/9701`.
    #[serde(default = "defaults::p2p_listen")]
    pub listen: String,
    /// Addresses of the other departments' nodes, dialled and redialled. Default none.
    #[serde(default)]
    pub peers: Vec<String>,
    /// Keys of read-only observer nodes (auditors) allowed to connect besides the validators.
    #[serde(default)]
    pub observers: Vec<govchain_ledger::PublicKey>,
}

impl Default for P2pConfig {
    fn default() -> Self {
        Self {
            listen: defaults::p2p_listen(),
            peers: Vec::new(),
            observers: Vec::new(),
        }
    }
}

/// `[consensus]`: timeouts in ms; each grows by its delta per round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsensusConfig {
    /// Wait for a proposal. Default 1000.
    #[serde(default = "defaults::propose_ms")]
    pub propose_ms: u64,
    /// Growth per round. Default 500.
    #[serde(default = "defaults::delta_ms")]
    pub propose_delta_ms: u64,
    /// Wait after +2/3 prevotes for anything. Default 500.
    #[serde(default = "defaults::vote_ms")]
    pub prevote_ms: u64,
    /// Growth per round. Default 250.
    #[serde(default = "defaults::vote_delta_ms")]
    pub prevote_delta_ms: u64,
    /// Wait after +2/3 precommits for anything. Default 500.
    #[serde(default = "defaults::vote_ms")]
    pub precommit_ms: u64,
    /// Growth per round. Default 250.
    #[serde(default = "defaults::vote_delta_ms")]
    pub precommit_delta_ms: u64,
}

impl Default for ConsensusConfig {
    fn default() -> Self {
        Self {
            propose_ms: defaults::propose_ms(),
            propose_delta_ms: defaults::delta_ms(),
            prevote_ms: defaults::vote_ms(),
            prevote_delta_ms: defaults::vote_delta_ms(),
            precommit_ms: defaults::vote_ms(),
            precommit_delta_ms: defaults::vote_delta_ms(),
        }
    }
}

/// `[api]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Listen address. Default `127.0.0.1:8701`.
    #[serde(default = "defaults::listen")]
    pub listen: SocketAddr,
    /// Largest request body in bytes. Default 4 MiB + 1 KiB (one maximal transaction).
    #[serde(default = "defaults::max_body_bytes")]
    pub max_body_bytes: usize,
    /// How long `?wait=commit` waits, in ms. Default 30000.
    #[serde(default = "defaults::commit_wait_ms")]
    pub commit_wait_ms: u64,
    /// Most rows of personal data one user reads per UTC day on this node (all reads: files,
    /// searches, queries, exports); a read past it is refused with 429 `row_quota_exceeded`
    /// and audited. Counted in memory: it restarts with the node. Default 50000.
    #[serde(default = "defaults::max_rows_per_user_per_day")]
    pub max_rows_per_user_per_day: u64,
    /// Rows of one combined query, saved query or matter extract (all its pages) readable
    /// with the query right; a page reaching past them needs the export right. Default 1000.
    #[serde(default = "defaults::query_rows_without_export")]
    pub query_rows_without_export: u64,
    /// The SQL projection: `sqlite://FILE` or `mysql://USER@HOST:PORT/DB`, or `off` for a node
    /// that serves no queries (a pure validator). Default: SQLite in `projection.sqlite` inside
    /// the data directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db: Option<String>,
    /// How long a staff session lasts, in seconds. Default 28800 (8 hours).
    #[serde(default = "defaults::session_ttl_s")]
    pub session_ttl_s: u64,
    /// Where resident SMS codes go: `http://…` or `https://…` (a gateway that takes
    /// `{"phone", "text"}` as JSON) or `file:PATH` (a development sink, one JSON line per code).
    /// Default: `file:` `sms-outbox.jsonl` in the data directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms: Option<String>,
    /// Interval of the node's audit batches, in ms (one `AppendAudit` transaction per
    /// interval while entries are queued). Default 1000.
    #[serde(default = "defaults::audit_interval_ms")]
    pub audit_interval_ms: u64,
    /// Audit entries waiting for the chain above which the node refuses personal-data reads
    /// with 503 `audit_backlog` (fail closed: no read it could not audit). Default 50000.
    #[serde(default = "defaults::audit_backlog_limit")]
    pub audit_backlog_limit: usize,
    /// API base URLs of the other departments' nodes: a person file asked for fresh
    /// (R-SYN-2) asks them to refresh their own sources too, since only a department's node
    /// may sign its records. Default none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sync_peers: Vec<String>,
    /// The data source whose phone number a resident's consent code is sent to: the source
    /// authoritative for residents' contact numbers (its first `phone` field). A person it
    /// holds no number for gets no code; no other source is tried (R-SEC-5). Default
    /// `gaj.hjxx` (the household registry, 户籍人口基本信息).
    #[serde(default = "defaults::consent_phone_source")]
    pub consent_phone_source: String,
    /// The API's TLS certificate chain (PEM; R-SEC-6). With `tls_key`, the API serves HTTPS
    /// only; without both, plain HTTP (for a node behind a TLS-terminating proxy). `govchain
    /// genesis` writes `tls.pem` signed by the cluster's development CA. Default none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of `tls_cert` (PEM, PKCS#8, SEC1 or PKCS#1). Default none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// The CA certificate(s) (PEM) this node trusts when it calls other nodes' APIs over
    /// HTTPS (`sync_peers`); only these are trusted then. `govchain genesis` sets the
    /// cluster's development CA, `../ca.pem`. Default none: the built-in public roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<PathBuf>,
}

/// The default of `api.consent_phone_source`: the household registry.
pub const DEFAULT_CONSENT_PHONE_SOURCE: &str = "gaj.hjxx";

/// `[chain]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    /// Most transactions per block. Default 5000.
    #[serde(default = "defaults::max_block_txs")]
    pub max_block_txs: usize,
    /// Most bytes of transactions per block. Default 32 MiB.
    #[serde(default = "defaults::max_block_bytes")]
    pub max_block_bytes: usize,
    /// Longest a transaction waits for a block, in ms. Default 100.
    #[serde(default = "defaults::block_interval_ms")]
    pub block_interval_ms: u64,
    /// Interval of empty heartbeat blocks, in ms; 0 disables them. Default 0.
    #[serde(default)]
    pub heartbeat_ms: u64,
    /// Most transactions waiting in the mempool. Default 50000.
    #[serde(default = "defaults::mempool_max_txs")]
    pub mempool_max_txs: usize,
    /// Most bytes waiting in the mempool. Default 256 MiB.
    #[serde(default = "defaults::mempool_max_bytes")]
    pub mempool_max_bytes: usize,
}

mod defaults {
    use std::net::SocketAddr;
    use std::path::PathBuf;
    pub fn genesis() -> PathBuf {
        "../genesis.json".into()
    }
    pub fn key_file() -> PathBuf {
        "node.key".into()
    }
    pub fn data_dir() -> PathBuf {
        "data".into()
    }
    pub fn listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 8701))
    }
    pub fn max_body_bytes() -> usize {
        govchain_ledger::MAX_TX_BYTES + 1024
    }
    pub fn commit_wait_ms() -> u64 {
        30_000
    }
    pub fn max_rows_per_user_per_day() -> u64 {
        50_000
    }
    pub fn query_rows_without_export() -> u64 {
        1_000
    }
    pub fn session_ttl_s() -> u64 {
        8 * 3600
    }
    pub fn audit_interval_ms() -> u64 {
        1000
    }
    pub fn audit_backlog_limit() -> usize {
        50_000
    }
    pub fn consent_phone_source() -> String {
        super::DEFAULT_CONSENT_PHONE_SOURCE.into()
    }
    pub fn max_block_txs() -> usize {
        5_000
    }
    pub fn max_block_bytes() -> usize {
        32 * 1024 * 1024
    }
    pub fn block_interval_ms() -> u64 {
        100
    }
    pub fn mempool_max_txs() -> usize {
        50_000
    }
    pub fn mempool_max_bytes() -> usize {
        256 * 1024 * 1024
    }
    pub fn codec() -> String {
        "plain".into()
    }
    pub fn schedule() -> String {
        "*/30 * * * *".into()
    }
    pub fn window() -> String {
        "22:00-06:00".into()
    }
    pub fn utc_offset() -> i32 {
        480
    }
    pub fn page() -> usize {
        1000
    }
    pub fn inflight() -> usize {
        4
    }
    pub fn request_timeout_ms() -> u64 {
        10_000
    }
    pub fn attempts() -> u32 {
        8
    }
    pub fn retry_base_ms() -> u64 {
        200
    }
    pub fn retry_max_ms() -> u64 {
        10_000
    }
    pub fn unhealthy_after() -> u32 {
        5
    }
    pub fn rejected_keep() -> usize {
        1000
    }
    pub fn p2p_listen() -> String {
        "/ip4/127.0.0.1/tcp/9701".into()
    }
    pub fn propose_ms() -> u64 {
        1000
    }
    pub fn delta_ms() -> u64 {
        500
    }
    pub fn vote_ms() -> u64 {
        500
    }
    pub fn vote_delta_ms() -> u64 {
        250
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: defaults::listen(),
            max_body_bytes: defaults::max_body_bytes(),
            commit_wait_ms: defaults::commit_wait_ms(),
            max_rows_per_user_per_day: defaults::max_rows_per_user_per_day(),
            query_rows_without_export: defaults::query_rows_without_export(),
            db: None,
            session_ttl_s: defaults::session_ttl_s(),
            sms: None,
            audit_interval_ms: defaults::audit_interval_ms(),
            audit_backlog_limit: defaults::audit_backlog_limit(),
            sync_peers: Vec::new(),
            consent_phone_source: defaults::consent_phone_source(),
            tls_cert: None,
            tls_key: None,
            tls_ca: None,
        }
    }
}

impl Default for ChainConfig {
    fn default() -> Self {
        Self {
            max_block_txs: defaults::max_block_txs(),
            max_block_bytes: defaults::max_block_bytes(),
            block_interval_ms: defaults::block_interval_ms(),
            heartbeat_ms: 0,
            mempool_max_txs: defaults::mempool_max_txs(),
            mempool_max_bytes: defaults::mempool_max_bytes(),
        }
    }
}

impl NodeConfig {
    /// Reads `path` and resolves relative paths against its directory. Checks limits once.
    pub fn read(path: &Path) -> Result<Self, GenesisError> {
        let text = std::fs::read_to_string(path).map_err(|source| GenesisError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let mut c: NodeConfig = toml::from_str(&text)
            .map_err(|e| GenesisError::Format(format!("{}: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let api = &mut c.api;
        let tls = [&mut api.tls_cert, &mut api.tls_key, &mut api.tls_ca];
        for p in [&mut c.genesis, &mut c.key_file, &mut c.data_dir]
            .into_iter()
            .chain(tls.into_iter().flatten())
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        c.check()?;
        Ok(c)
    }

    /// The base URL of this node's API: `https://LISTEN` when it serves TLS (`api.tls_cert`),
    /// else `http://LISTEN`.
    pub fn api_url(&self) -> String {
        let scheme = if self.api.tls_cert.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.api.listen)
    }

    /// Checks every limit is within range.
    pub fn check(&self) -> Result<(), GenesisError> {
        let ch = &self.chain;
        let bad = |m: &str| Err(GenesisError::Format(format!("node.toml: {m}")));
        if ch.max_block_txs == 0 || ch.max_block_txs > govchain_ledger::MAX_BLOCK_TXS {
            return bad("chain.max_block_txs must be 1..=20000");
        }
        if ch.max_block_bytes < govchain_ledger::MAX_TX_BYTES
            || ch.max_block_bytes > govchain_ledger::MAX_BLOCK_BYTES - 1024 * 1024
        {
            return bad("chain.max_block_bytes must hold one maximal transaction and stay under the block limit");
        }
        if ch.block_interval_ms == 0 || ch.mempool_max_txs == 0 || ch.mempool_max_bytes == 0 {
            return bad("chain.block_interval_ms and mempool limits must be positive");
        }
        let c = &self.consensus;
        if [c.propose_ms, c.prevote_ms, c.precommit_ms].contains(&0) {
            return bad("consensus timeouts must be positive");
        }
        if self.api.max_body_bytes == 0 {
            return bad("api.max_body_bytes must be positive");
        }
        if govchain_chaincode::catalog::check_source_id(&self.api.consent_phone_source).is_err() {
            return bad(&format!(
                "api.consent_phone_source {:?} is not a data source id",
                self.api.consent_phone_source
            ));
        }
        if self.api.tls_cert.is_some() != self.api.tls_key.is_some() {
            return bad("api.tls_cert and api.tls_key go together: set both or neither");
        }
        for p in &self.api.sync_peers {
            if !(p.starts_with("http://") || p.starts_with("https://")) {
                return bad(&format!("api.sync_peers: {p:?} is not an http(s) URL"));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for k in &self.connectors {
            if !seen.insert(k.source.as_str()) {
                return bad(&format!("two connectors for source {}", k.source));
            }
            if let Err(m) = k.check() {
                return bad(&m);
            }
        }
        Ok(())
    }

    /// Writes the config as TOML.
    pub fn write(&self, path: &Path) -> Result<(), GenesisError> {
        let text = toml::to_string_pretty(self).map_err(|e| GenesisError::Format(e.to_string()))?;
        std::fs::write(path, text).map_err(|source| GenesisError::Io {
            path: path.display().to_string(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<NodeConfig, GenesisError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, text).unwrap();
        NodeConfig::read(&path)
    }

    /// Finding 6 of issue 15: the consent phone source defaults to the household registry,
    /// may name another source, and must be a source id.
    #[test]
    fn finding_6_consent_phone_source_defaults_to_the_household_registry() {
        let c = parse("department = \"gaj\"\n").unwrap();
        assert_eq!(c.api.consent_phone_source, "gaj.hjxx");
        let c = parse("department = \"gaj\"\n[api]\nconsent_phone_source = \"gaj.jzz\"\n").unwrap();
        assert_eq!(c.api.consent_phone_source, "gaj.jzz");
        let e = parse("department = \"gaj\"\n[api]\nconsent_phone_source = \"Bad Source\"\n")
            .unwrap_err();
        assert!(e.to_string().contains("consent_phone_source"), "{e}");
    }

    /// Issue 15 finding 10: the refused records a connector keeps are bounded by
    /// `rejected_keep`, 1..=MAX_REJECTED_KEEP, checked at start.
    #[test]
    fn rejected_keep_is_checked_at_its_limits() {
        let with = |n: usize| ConnectorConfig {
            rejected_keep: n,
            ..ConnectorConfig::new("gaj.jzz", "http://127.0.0.1:9")
        };
        assert_eq!(ConnectorConfig::new("a", "http://x").rejected_keep, 1000);
        assert!(with(1).check().is_ok());
        assert!(with(MAX_REJECTED_KEEP).check().is_ok());
        for bad in [0, MAX_REJECTED_KEEP + 1] {
            let e = with(bad).check().unwrap_err();
            assert!(e.contains("rejected_keep must be 1..=10000"), "{e}");
        }
    }
}
