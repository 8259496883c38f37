//! The `govchain` command line: genesis output and the verify command's errors. (Its presence
//! also makes `cargo test` build the binary the multi-process tests in `tests/` run.)

use std::process::Command;

fn govchain() -> Command {
    Command::new(env!("CARGO_BIN_EXE_govchain"))
}

#[test]
fn genesis_writes_a_cluster_and_refuses_to_overwrite_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = govchain()
        .args(["genesis", "--departments", "4", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("4 validators") && text.contains("100 data sources"),
        "{text}"
    );
    for i in 1..=4 {
        assert!(dir.path().join(format!("node-{i}/node.toml")).exists());
        assert!(dir.path().join(format!("node-{i}/node.key")).exists());
    }
    assert!(dir.path().join("keys/sysadmin.key").exists());
    let again = govchain()
        .args(["genesis", "--departments", "4", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
}

#[test]
fn verify_reports_a_missing_store_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let out = govchain()
        .args(["genesis", "--departments", "1", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = govchain()
        .args(["verify", "--data"])
        .arg(dir.path().join("no-such-dir"))
        .arg("--genesis")
        .arg(dir.path().join("genesis.json"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("verify: FAULT"));
}

#[test]
fn node_refuses_a_config_with_out_of_range_limits() {
    let dir = tempfile::tempdir().unwrap();
    assert!(govchain()
        .args(["genesis", "--departments", "1", "--out"])
        .arg(dir.path())
        .status()
        .unwrap()
        .success());
    let cfg = dir.path().join("node-1/node.toml");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("max_block_txs = 5000", "max_block_txs = 0");
    std::fs::write(&cfg, text).unwrap();
    let out = govchain()
        .args(["node", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("max_block_txs"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
