//! `govchain demo`: a local cluster of department nodes (separate processes) with sample
//! residents' records submitted by each department through signed transactions; runs until
//! Ctrl-C, then stops every node cleanly and runs the auditor's replay on node-1.

use std::path::Path;

use crate::cluster::LocalCluster;
use crate::submit::SubmitOptions;

/// Runs the demo.
pub async fn run(
    dir: &Path,
    departments: usize,
    records: u64,
    base_port: u16,
) -> anyhow::Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    let mut cluster = LocalCluster::create(dir, departments, base_port, |_| {}).await?;
    println!(
        "{departments} department nodes running; logs in {}/node-*.log",
        dir.display()
    );
    for i in 1..=departments {
        let opts = SubmitOptions {
            records,
            batch: 100,
            seed: i as u64,
            start: 0,
            source: None,
            url: None,
        };
        crate::submit::run(&dir.join(format!("node-{i}/node.toml")), &opts).await?;
    }
    println!();
    for url in &cluster.urls {
        let s = crate::client::Client::new(url)?.get_json("status").await?;
        println!("{url}: height {} app hash {}", s["height"], s["app_hash"]);
    }
    println!(
        "\nTry: curl -s {0}/api/v1/status ; curl -s {0}/api/v1/blocks/1\nPress Ctrl-C to stop the cluster.",
        cluster.urls[0]
    );
    crate::server::wait_for_signal().await;
    cluster.stop();
    println!("stopped; auditing node-1:");
    let code = crate::verify::run(&dir.join("node-1/data"), &dir.join("genesis.json"));
    if code != 0 {
        anyhow::bail!("verify failed");
    }
    Ok(())
}
