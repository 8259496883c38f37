//! `govchain demo`: a local cluster of department nodes (separate processes) with sample
//! residents' records submitted by each department through signed transactions; runs until
//! Ctrl-C, then stops every node cleanly and runs the auditor's replay on node-1.

use std::path::Path;

use crate::cluster::LocalCluster;
use crate::submit::SubmitOptions;

/// Seed of the demo's synthetic population: every department's records are about the same
/// residents, so their files aggregate across departments.
const POPULATION_SEED: u64 = 1;

/// A staff member of 公安 (node 1's department) to log in with.
const DEMO_USER: &str = "demo.gaj";
/// Their password (set on node 1 only: passwords never leave the node).
const DEMO_PASSWORD: &str = "Demo-2026";

/// Registers the demo's staff member on chain and sets the password on node 1.
async fn add_staff(dir: &Path, url: &str) -> anyhow::Result<()> {
    use govchain_chaincode::access::{Role, User};
    use govchain_chaincode::business::PutMode;
    use govchain_chaincode::TxKind;
    let doc = govchain_genesis::GenesisDoc::read(&dir.join("genesis.json"))?;
    let admin = govchain_ledger::Keypair::read_file(&dir.join("keys/sysadmin.key"))?;
    let client = crate::client::Client::new(url)?;
    let user = User {
        id: DEMO_USER.into(),
        name: "演示用户".into(),
        department: "gaj".into(),
        level: 3,
        roles: vec![Role::Staff],
        disabled: false,
        key: None,
    };
    let tx = crate::client::sign_tx(
        &admin,
        &doc.chain_id,
        &TxKind::PutUsers {
            mode: PutMode::Add,
            users: vec![user],
        },
    );
    client.submit(&tx, true).await?;
    let body = serde_json::json!({"password": DEMO_PASSWORD});
    let (s, r) = client
        .call_signed(
            "PUT",
            &format!("users/{DEMO_USER}/password"),
            &admin,
            Some(&body),
        )
        .await?;
    anyhow::ensure!(s == 200, "setting the demo password: {s} {r}");
    Ok(())
}

/// Runs the demo: `persons` residents registered by the public security bureau (node 1,
/// `gaj.hjxx`), and `records` records of each other department's person sources about the
/// first of them.
pub async fn run(
    dir: &Path,
    departments: usize,
    persons: u64,
    records: u64,
    base_port: u16,
) -> anyhow::Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    let mut cluster = LocalCluster::create(dir, departments, base_port, |_, _| {}).await?;
    println!(
        "{departments} department nodes running; logs in {}/node-*.log",
        dir.display()
    );
    for i in 1..=departments {
        let (records, source) = if i == 1 {
            (persons, Some("gaj.hjxx".to_string()))
        } else {
            (records.min(persons), None)
        };
        let opts = SubmitOptions {
            records,
            batch: 500,
            seed: POPULATION_SEED,
            start: 0,
            source,
            url: None,
        };
        crate::submit::run(&dir.join(format!("node-{i}/node.toml")), &opts).await?;
    }
    add_staff(dir, &cluster.urls[0]).await?;
    println!();
    for url in &cluster.urls {
        let s = crate::client::Client::new(url)?.get_json("status").await?;
        println!("{url}: height {} app hash {}", s["height"], s["app_hash"]);
    }
    println!(
        "\nTry:\n  curl -s {0}/api/v1/status\n  curl -s {0}/api/v1/blocks/1\n  \
         govchain query --url {0} --key {1}/keys/sysadmin.key persons/{2}\n  \
         govchain query --url {0} --key {1}/keys/sysadmin.key 'search?q=五一中路'\n  \
         curl -s -X POST -H 'content-type: application/json' -d '{{\"user\":\"{3}\",\"password\":\"{4}\"}}' {0}/api/v1/login\n  \
         curl -s -H 'Authorization: Bearer TOKEN' '{0}/api/v1/records?source=gaj.hjxx&page_size=5'\n\
         Press Ctrl-C to stop the cluster.",
        cluster.urls[0],
        dir.display(),
        crate::synth::person(POPULATION_SEED, 0).id,
        DEMO_USER,
        DEMO_PASSWORD
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
