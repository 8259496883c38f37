//! A local cluster of department nodes as separate processes of this binary: used by
//! `govchain demo` and `govchain bench chain`. Stopping it sends SIGTERM to every node and waits.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use govchain_genesis::{GenerateOptions, NodeConfig};
use govchain_ledger::ChainId;

use crate::client::Client;

/// Running node processes.
pub struct LocalCluster {
    /// The cluster directory.
    pub dir: PathBuf,
    /// API URLs, node-1 first (`https` for generated clusters).
    pub urls: Vec<String>,
    /// The CA the nodes' certificates chain to (`ca.pem` of a generated cluster).
    pub ca: Option<PathBuf>,
    children: Vec<Child>,
}

impl LocalCluster {
    /// Generates a cluster of `n` departments in `dir` (which must be empty or absent), applies
    /// `tune(i, config)` to node i's config (1-based), starts every node and waits until each
    /// API answers.
    pub async fn create(
        dir: &Path,
        n: usize,
        base_port: u16,
        tune: impl Fn(usize, &mut NodeConfig),
    ) -> anyhow::Result<Self> {
        let opts = GenerateOptions {
            departments: n,
            chain_id: ChainId::new("govchain-local")?,
            genesis_time: crate::now_ms(),
            base_port,
        };
        govchain_genesis::generate(&opts, dir)?;
        Self::start(dir, tune).await
    }

    /// Starts the nodes of a cluster generated earlier in `dir` (their data is kept), applying
    /// `tune(i, config)` to node i's config first.
    pub async fn start(dir: &Path, tune: impl Fn(usize, &mut NodeConfig)) -> anyhow::Result<Self> {
        let mut n = 0;
        while dir.join(format!("node-{}/node.toml", n + 1)).exists() {
            n += 1;
        }
        if n == 0 {
            bail!("{} holds no cluster (node-1/node.toml)", dir.display());
        }
        for i in 1..=n {
            let path = dir.join(format!("node-{i}/node.toml"));
            let mut cfg: NodeConfig = toml::from_str(&std::fs::read_to_string(&path)?)?;
            tune(i, &mut cfg);
            cfg.write(&path)?;
        }
        let exe = std::env::current_exe().context("locating the govchain binary")?;
        let ca = dir.join("ca.pem");
        let mut c = LocalCluster {
            dir: dir.to_path_buf(),
            urls: Vec::new(),
            ca: ca.exists().then_some(ca),
            children: Vec::new(),
        };
        for i in 1..=n {
            let cfg = NodeConfig::read(&dir.join(format!("node-{i}/node.toml")))?;
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(format!("node-{i}.log")))?;
            let child = Command::new(&exe)
                .args(["node", "--config"])
                .arg(dir.join(format!("node-{i}/node.toml")))
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .context("starting a node")?;
            c.children.push(child);
            c.urls.push(cfg.api_url());
        }
        // A node opening a large store first replays its write-ahead log (about 25 s for a
        // chain of 1.5 million residents on 2 cores, longer with four nodes at once).
        let deadline = Instant::now() + Duration::from_secs(600);
        for url in &c.urls {
            let client = c.client_for(url)?;
            while client.get_json("status").await.is_err() {
                if Instant::now() > deadline {
                    bail!("node at {url} did not start; see {}", dir.display());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(c)
    }

    /// A client of the node at `url` trusting the cluster's CA.
    pub fn client_for(&self, url: &str) -> anyhow::Result<Client> {
        Client::new(url, self.ca.as_deref())
    }

    /// A client of node i (0-based) trusting the cluster's CA.
    pub fn client(&self, i: usize) -> anyhow::Result<Client> {
        self.client_for(&self.urls[i])
    }

    /// SIGTERM every node and wait for it.
    pub fn stop(&mut self) {
        for c in &mut self.children {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
        }
        for c in &mut self.children {
            let _ = c.wait();
        }
        self.children.clear();
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.stop();
    }
}
