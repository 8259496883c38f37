//! Harness for multi-process tests: generates a cluster with the real `govchain` binary, starts
//! and kills node processes, waits on conditions with bounded deadlines (never fixed sleeps that
//! hope), and runs the auditor's `govchain verify`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use govchain_genesis::{GenesisDoc, NodeConfig};
use govchain_ledger::Keypair;

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

/// Two free consecutive-ish ports' base: node i listens on base + i.
fn free_base_port() -> u16 {
    for _ in 0..100 {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let p = l.local_addr().expect("addr").port();
        drop(l);
        if p > 1024 && p < 60000 && (1..=8).all(|i| TcpListener::bind(("127.0.0.1", p + i)).is_ok())
        {
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

    /// Node i's data directory.
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.config(i).data_dir
    }
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("running govchain")
}

/// A running node process.
pub struct NodeProc {
    child: Option<Child>,
    /// API base URL.
    pub url: String,
    config: PathBuf,
    log: PathBuf,
}

impl NodeProc {
    /// Starts node i of `net` and waits until its API answers.
    pub fn start(net: &Net, i: usize) -> NodeProc {
        let cfg = net.config(i);
        let mut n = NodeProc {
            child: None,
            url: format!("http://{}", cfg.api.listen),
            config: net.config_path(i),
            log: net.dir.path().join(format!("node-{i}.log")),
        };
        n.spawn();
        n
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
        loop {
            if let Ok(r) = probe::blocking_get(&url) {
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
    //! A minimal blocking probe, so readiness checks need no runtime.
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    /// True if `url` (http://host:port/path) answers 200.
    pub fn blocking_get(url: &str) -> std::io::Result<bool> {
        let rest = url.trim_start_matches("http://");
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let mut s = TcpStream::connect(host)?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        write!(
            s,
            "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )?;
        let mut buf = [0u8; 12];
        s.read_exact(&mut buf)?;
        Ok(&buf[9..12] == b"200")
    }
}
