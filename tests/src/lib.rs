//! Harness for multi-process tests: generates a cluster with the real `govchain` binary, starts
//! and kills node processes, waits on conditions with bounded deadlines (never fixed sleeps that
//! hope), and runs the auditor's `govchain verify`.
//!
//! The harness owns the scheme: generated nodes serve HTTPS only (R-SEC-6), [`NodeProc::url`]
//! is their `https://` URL, and [`NodeProc::client`] / [`NodeProc::http`] trust the cluster's
//! development CA ([`Net::ca`]). Tests build clients through these, never by hand.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use govchain_genesis::{GenesisDoc, NodeConfig};
use govchain_ledger::Keypair;

/// Unix milliseconds on this machine's clock (what a node's `now` reads too).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_millis() as u64
}

/// A user of `dept` at `level` with `roles`, named 测试ID, enabled, without a key.
pub fn user(
    id: &str,
    dept: &str,
    level: u8,
    roles: Vec<govchain_chaincode::access::Role>,
) -> govchain_chaincode::access::User {
    govchain_chaincode::access::User {
        id: id.into(),
        name: format!("测试{id}"),
        department: dept.into(),
        level,
        roles,
        disabled: false,
        key: None,
    }
}

/// The `govchain` binary: `$GOVCHAIN_BIN`, or the one cargo built beside the test executable.
pub fn govchain_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("GOVCHAIN_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("govchain");
    assert!(
        bin.exists(),
        "{} not found: build it with `cargo build --bin govchain` (scripts/test does)",
        bin.display()
    );
    bin
}

/// A port base below the kernel's ephemeral range whose API (base+1..8) and p2p
/// (base+101..108) ports are all free.
fn free_base_port() -> u16 {
    use rand::Rng;
    let mut rng = rand::rng();
    for _ in 0..200 {
        let p: u16 = rng.random_range(10_000..30_000);
        let free = (1..=8)
            .chain(101..=108)
            .all(|i| TcpListener::bind(("127.0.0.1", p + i)).is_ok());
        if free {
            return p;
        }
    }
    panic!("no free ports");
}

/// A generated cluster in a temporary directory.
pub struct Net {
    /// The directory (removed on drop).
    pub dir: tempfile::TempDir,
    /// The genesis document.
    pub genesis: GenesisDoc,
}

impl Net {
    /// `govchain genesis --departments n` into a fresh temporary directory.
    pub fn generate(departments: usize) -> Net {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = run(Command::new(govchain_bin())
            .args([
                "genesis",
                "--departments",
                &departments.to_string(),
                "--chain-id",
                "test-chain",
                "--base-port",
                &free_base_port().to_string(),
                "--out",
            ])
            .arg(dir.path()));
        assert!(
            out.status.success(),
            "genesis failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let genesis = GenesisDoc::read(&dir.path().join("genesis.json")).expect("genesis");
        Net { dir, genesis }
    }

    /// Rewrites every node's config (e.g. shorter consensus timeouts for tests).
    pub fn tune(&self, nodes: usize, f: impl Fn(&mut NodeConfig)) {
        for i in 1..=nodes {
            let path = self.config_path(i);
            let text = std::fs::read_to_string(&path).expect("node.toml");
            let mut cfg: NodeConfig = toml_from_str(&text);
            f(&mut cfg);
            cfg.write(&path).expect("write node.toml");
        }
    }

    /// The cluster's development CA certificate (`ca.pem`), which every node's certificate
    /// chains to.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Path of the genesis file.
    pub fn genesis_path(&self) -> PathBuf {
        self.dir.path().join("genesis.json")
    }

    /// Path of node i's config (1-based).
    pub fn config_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("node-{i}/node.toml"))
    }

    /// Node i's config.
    pub fn config(&self, i: usize) -> NodeConfig {
        NodeConfig::read(&self.config_path(i)).expect("node.toml")
    }

    /// Node i's validator key.
    pub fn node_key(&self, i: usize) -> Keypair {
        Keypair::read_file(&self.config(i).key_file).expect("node key")
    }

    /// A key from `keys/` (`sysadmin`, `gaj-admin`, …).
    pub fn key(&self, name: &str) -> Keypair {
        Keypair::read_file(&self.dir.path().join(format!("keys/{name}.key"))).expect("key")
    }

    /// The genesis data source `id` (e.g. `gaj.hjxx`).
    pub fn source(&self, id: &str) -> govchain_chaincode::catalog::DataSource {
        self.genesis
            .sources
            .iter()
            .find(|s| s.id == id)
            .unwrap_or_else(|| panic!("no source {id} in genesis"))
            .clone()
    }

    /// Node i's data directory.
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.config(i).data_dir
    }
}

fn toml_from_str(text: &str) -> NodeConfig {
    // Paths stay relative: parse without resolving them against the file's directory.
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("node.toml");
    std::fs::write(&p, text).expect("write");
    let mut cfg = NodeConfig::read(&p).expect("parse node.toml");
    let api = &mut cfg.api;
    let tls = [&mut api.tls_cert, &mut api.tls_key, &mut api.tls_ca];
    for path in [&mut cfg.genesis, &mut cfg.key_file, &mut cfg.data_dir]
        .into_iter()
        .chain(tls.into_iter().flatten())
    {
        if let Ok(rel) = path.strip_prefix(dir.path()) {
            *path = rel.to_path_buf();
        }
    }
    cfg
}

/// Fast consensus timeouts for tests on loopback.
pub fn fast_timeouts(cfg: &mut NodeConfig) {
    cfg.consensus.propose_ms = 400;
    cfg.consensus.propose_delta_ms = 200;
    cfg.consensus.prevote_ms = 200;
    cfg.consensus.prevote_delta_ms = 100;
    cfg.consensus.precommit_ms = 200;
    cfg.consensus.precommit_delta_ms = 100;
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("running govchain")
}

/// A running node process.
pub struct NodeProc {
    child: Option<Child>,
    /// API base URL (`https://…` when the node serves TLS, as generated nodes do).
    pub url: String,
    /// The CA its certificate chains to (its `api.tls_ca`).
    pub ca: Option<PathBuf>,
    config: PathBuf,
    log: PathBuf,
}

impl NodeProc {
    /// Starts node i of `net` and waits until its API answers.
    pub fn start(net: &Net, i: usize) -> NodeProc {
        Self::start_config(
            &net.config_path(i),
            &net.dir.path().join(format!("node-{i}.log")),
        )
    }

    /// Starts a node from any config file, logging to `log`; its URL and CA come from the
    /// config (`https` when it has `api.tls_cert`, trusting its `api.tls_ca`).
    pub fn start_config(config: &Path, log: &Path) -> NodeProc {
        let cfg = NodeConfig::read(config).expect("node.toml");
        let mut n = NodeProc {
            child: None,
            url: cfg.api_url(),
            ca: cfg.api.tls_ca.clone(),
            config: config.to_path_buf(),
            log: log.to_path_buf(),
        };
        n.spawn();
        n
    }

    /// The command-line arguments that reach this node: `--url URL` and, with TLS, `--ca CA`.
    pub fn endpoint_args(&self) -> Vec<std::ffi::OsString> {
        let mut a: Vec<std::ffi::OsString> = vec!["--url".into(), self.url.clone().into()];
        if let Some(ca) = &self.ca {
            a.extend(["--ca".into(), ca.clone().into_os_string()]);
        }
        a
    }

    /// A client of this node's API that trusts its CA.
    pub fn client(&self) -> govchain_node::client::Client {
        govchain_node::client::Client::new(&self.url, self.ca.as_deref()).expect("client")
    }

    /// A plain reqwest client that trusts this node's CA (for requests the [`Self::client`]
    /// does not shape: raw bodies, odd headers). URLs start with [`Self::url`].
    pub fn http(&self) -> reqwest::Client {
        govchain_api::tls::client_builder(self.ca.as_deref())
            .expect("CA")
            .build()
            .expect("reqwest client")
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(govchain_bin())
            .args(["node", "--config"])
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn node");
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(60));
    }

    /// Waits until `GET /api/v1/status` answers 200.
    pub fn wait_ready(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        let url = format!("{}/api/v1/status", self.url);
        let tls = probe::tls_config(self.ca.as_deref());
        loop {
            if let Ok(r) = probe::blocking_get(&url, &tls) {
                if r {
                    return;
                }
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!(
                        "node exited with {status} during start; log:\n{}",
                        self.log_text()
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "node not ready in {within:?}; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The node's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("kill -9");
            c.wait().expect("reap");
        }
    }

    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts the process again after a kill or stop.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "node is running");
        self.spawn();
    }

    /// SIGTERM, then waits for a clean exit; returns whether it exited successfully.
    pub fn terminate(&mut self, within: Duration) -> bool {
        let Some(mut c) = self.child.take() else {
            return true;
        };
        let ok = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "could not send SIGTERM");
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(s)) = c.try_wait() {
                return s.success();
            }
            if Instant::now() > deadline {
                c.kill().ok();
                c.wait().ok();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs `govchain verify` on a data directory.
pub fn verify(data: &Path, genesis: &Path) -> Output {
    run(Command::new(govchain_bin())
        .args(["verify", "--data"])
        .arg(data)
        .arg("--genesis")
        .arg(genesis))
}

/// Copies a directory tree (a stopped node's data directory).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
}

mod probe {
    //! A minimal blocking probe (plain or TLS), so readiness checks need no runtime.
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::path::Path;
    use std::sync::Arc;
    use std::time::Duration;

    /// A TLS client configuration trusting the certificates in `ca` (none: trusts nothing,
    /// for plain-HTTP nodes).
    pub fn tls_config(ca: Option<&Path>) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in ca
            .map(|p| govchain_api::tls::read_certs(p).expect("CA certificate"))
            .unwrap_or_default()
        {
            roots.add(cert).expect("CA certificate");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("TLS versions")
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }

    /// True if `url` (`http(s)://host:port/path`) answers 200.
    pub fn blocking_get(url: &str, tls: &Arc<rustls::ClientConfig>) -> std::io::Result<bool> {
        let (secure, rest) = match url.strip_prefix("https://") {
            Some(rest) => (true, rest),
            None => (false, url.trim_start_matches("http://")),
        };
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let s = TcpStream::connect(host)?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        let request = format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let mut buf = [0u8; 12];
        if secure {
            let name = host.rsplit_once(':').map_or(host, |(h, _)| h).to_string();
            let name = rustls::pki_types::ServerName::try_from(name)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            let conn =
                rustls::ClientConnection::new(tls.clone(), name).map_err(std::io::Error::other)?;
            let mut s = rustls::StreamOwned::new(conn, s);
            s.write_all(request.as_bytes())?;
            s.read_exact(&mut buf)?;
        } else {
            let mut s = s;
            s.write_all(request.as_bytes())?;
            s.read_exact(&mut buf)?;
        }
        Ok(&buf[9..12] == b"200")
    }
}

/// A running multi-node cluster and a client runtime.
pub struct Cluster {
    /// The generated cluster.
    pub net: Net,
    /// Node processes, index 0 = node-1.
    pub nodes: Vec<NodeProc>,
    /// Runtime for HTTP clients.
    pub rt: tokio::runtime::Runtime,
}

impl Cluster {
    /// Generates `n` departments with fast timeouts (plus `tune`) and starts every node.
    pub fn start(n: usize, tune: impl Fn(&mut NodeConfig)) -> Cluster {
        let net = Net::generate(n);
        net.tune(n, |c| {
            fast_timeouts(c);
            tune(c);
        });
        let nodes = (1..=n).map(|i| NodeProc::start(&net, i)).collect();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        Cluster { net, nodes, rt }
    }

    /// `GET /api/v1/status` of node i (0-based); None if it does not answer.
    pub fn status(&self, i: usize) -> Option<serde_json::Value> {
        let c = self.nodes[i].client();
        self.rt.block_on(c.get_json("status")).ok()
    }

    /// Height of node i (0 if down).
    pub fn height(&self, i: usize) -> u64 {
        self.status(i)
            .and_then(|s| s["height"].as_u64())
            .unwrap_or(0)
    }

    /// Waits until `cond` holds, polling; panics with `what` after `within`.
    pub fn wait_until(&self, within: Duration, what: &str, mut cond: impl FnMut(&Cluster) -> bool) {
        let deadline = Instant::now() + within;
        while !cond(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; logs:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The tail of every node's log.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let t = n.log_text();
                let tail: Vec<&str> = t.lines().rev().take(15).collect();
                format!(
                    "--- node-{} ---\n{}\n",
                    i + 1,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect()
    }

    /// Submits `count` one-record transactions signed by node-1's department key, spread over
    /// the nodes in `targets`, `concurrency` at a time, each waiting for its commit. Returns the
    /// acknowledged ids (failed submissions, e.g. to a node that is down, are retried elsewhere).
    pub fn submit(
        &self,
        count: u64,
        concurrency: u64,
        targets: &[usize],
        seed: u64,
    ) -> Vec<govchain_ledger::TxId> {
        use govchain_node::client::{records_tx, Client};
        let key = self.net.node_key(1);
        let chain = self.net.genesis.chain_id.clone();
        let source = self.net.source("gaj.hjxx");
        let clients: Vec<Client> = targets.iter().map(|i| self.nodes[*i].client()).collect();
        let per = count.div_ceil(concurrency);
        let tasks: Vec<_> = (0..concurrency)
            .map(|w| {
                let (key, chain, source, clients) =
                    (key.clone(), chain.clone(), source.clone(), clients.clone());
                self.rt.spawn(async move {
                    let mut gen = govchain_node::synth::Generator::new(seed.wrapping_mul(1000) + w);
                    let mut acked = Vec::new();
                    for i in 0..per {
                        if w * per + i >= count {
                            break;
                        }
                        let rec = gen.record_for(&source, seed * 10_000_000 + w * 100_000 + i);
                        let tx = records_tx(&key, &chain, &source, vec![rec]);
                        for attempt in 0..20u64 {
                            let c = &clients[((w + i + attempt) % clients.len() as u64) as usize];
                            match c.submit(&tx, true).await {
                                Ok(r) if r.status == "committed" => {
                                    acked.push(r.tx_id);
                                    break;
                                }
                                // Admitted earlier (by a node that then died, and gossiped) or
                                // already committed: wait for its block on this node.
                                Err(e)
                                    if e.to_string().contains("409")
                                        && c.wait_committed(&tx.id(), Duration::from_secs(30))
                                            .await
                                            .is_ok() =>
                                {
                                    acked.push(tx.id());
                                    break;
                                }
                                _ => tokio::time::sleep(Duration::from_millis(100)).await,
                            }
                        }
                    }
                    acked
                })
            })
            .collect();
        tasks
            .into_iter()
            .flat_map(|t| self.rt.block_on(t).expect("submitter"))
            .collect()
    }
}

/// The machine-readable code of an API error body (`{"error": {"code": …}}`), or "".
pub fn error_code(v: &serde_json::Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}
