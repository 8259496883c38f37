//! `govchain demo`: a local cluster of department nodes (separate processes) with sample
//! residents' records submitted by each department through signed transactions; runs until
//! Ctrl-C, then stops every node cleanly and runs the auditor's replay on node-1. Node 1 also
//! connects three of its department's systems, simulated in-process (plain JSON, DES and 3DES
//! payloads): they sync on a schedule inside the 22:00-06:00 window and once at start.

use std::path::Path;

use govchain_genesis::ConnectorConfig;

use crate::cluster::LocalCluster;
use crate::dept_sim::{DeptSim, Faults, SimConfig, SimSource};
use crate::legacy_codec::Codec;
use crate::submit::SubmitOptions;

/// The department systems node 1 connects: source and codec.
const DEMO_SYSTEMS: [(&str, &str); 3] = [
    ("gaj.jzz", "plain"),
    ("gaj.sfzqf", "des:133457799BBCDFF1:0102030405060708"),
    (
        "gaj.hkqy",
        "3des:0123456789ABCDEFFEDCBA987654321089ABCDEF01234567:1122334455667788",
    ),
];
/// Bearer token of the simulated systems.
const DEMO_TOKEN: &str = "demo-dept-token";

/// Serves the simulated department systems; returns their base URL.
async fn start_systems(persons: u64) -> anyhow::Result<(std::sync::Arc<DeptSim>, String)> {
    let catalog = govchain_genesis::catalog::default_catalog()?;
    let sources = DEMO_SYSTEMS
        .iter()
        .map(|(id, codec)| {
            let source = catalog
                .sources
                .iter()
                .find(|s| s.id == *id)
                .ok_or_else(|| anyhow::anyhow!("{id} missing from the catalog"))?
                .clone();
            Ok(SimSource {
                source,
                codec: Codec::parse(codec)?,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let sim = DeptSim::try_new(SimConfig {
        sources,
        records: persons.min(1000),
        seed: POPULATION_SEED,
        token: DEMO_TOKEN.into(),
        faults: Faults::default(),
    })?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(sim.clone().serve(listener));
    Ok((sim, url))
}

/// Seed of the demo's synthetic population: every department's records are about the same
/// residents, so their files aggregate across departments.
const POPULATION_SEED: u64 = 1;

/// A staff member of 公安 (node 1's department) to log in with.
const DEMO_USER: &str = "demo.gaj";
/// An auditor of 公安, who reads the audit log and chain data.
const DEMO_AUDITOR: &str = "demo.audit";
/// Their password (set on node 1 only: passwords never leave the node).
const DEMO_PASSWORD: &str = "Demo-2026";

/// The demo's matter type (户口迁移, over the household registry).
const DEMO_MATTER: &str = "demo.hkqy";

/// Registers the demo's staff member and auditor on chain and sets their passwords on node 1,
/// and the demo's matter type.
async fn add_staff(dir: &Path, client: &crate::client::Client) -> anyhow::Result<()> {
    use govchain_chaincode::access::{Role, User};
    use govchain_chaincode::business::{CatalogEntry, MatterType, PutMode, SourceFields};
    use govchain_chaincode::TxKind;
    let doc = govchain_genesis::GenesisDoc::read(&dir.join("genesis.json"))?;
    let admin = govchain_ledger::Keypair::read_file(&dir.join("keys/sysadmin.key"))?;
    let user = |id: &str, name: &str, role: Role| User {
        id: id.into(),
        name: name.into(),
        department: "gaj".into(),
        level: 3,
        roles: vec![role],
        disabled: false,
        key: None,
    };
    let tx = crate::client::sign_tx(
        &admin,
        &doc.chain_id,
        &TxKind::PutUsers {
            mode: PutMode::Add,
            users: vec![
                user(DEMO_USER, "演示用户", Role::Staff),
                user(DEMO_AUDITOR, "演示审计员", Role::Auditor),
            ],
        },
    );
    client.submit(&tx, true).await?;
    // A matter type over the household registry, so matter files, extracts and consent
    // requests have something to answer (scripts/schemathesis draws its id).
    let matter = MatterType {
        id: DEMO_MATTER.into(),
        name: "户口迁移".into(),
        department: "gaj".into(),
        sources: vec![SourceFields {
            source: "gaj.hjxx".into(),
            fields: vec!["xm".into(), "sfzh".into(), "hjdz".into()],
        }],
        materials: vec![],
    };
    let tx = crate::client::sign_tx(
        &admin,
        &doc.chain_id,
        &TxKind::PutCatalogEntry {
            mode: PutMode::Add,
            entry: CatalogEntry::MatterType(matter),
        },
    );
    client.submit(&tx, true).await?;
    let body = serde_json::json!({"password": DEMO_PASSWORD});
    for id in [DEMO_USER, DEMO_AUDITOR] {
        let (s, r) = client
            .call_signed("PUT", &format!("users/{id}/password"), &admin, Some(&body))
            .await?;
        anyhow::ensure!(s == 200, "setting the demo password of {id}: {s} {r}");
    }
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
    let (_systems, systems_url) = start_systems(persons).await?;
    let mut cluster = LocalCluster::create(dir, departments, base_port, |i, c| {
        if i == 1 {
            c.connectors = DEMO_SYSTEMS
                .iter()
                .map(|(id, codec)| ConnectorConfig {
                    codec: codec.to_string(),
                    token: Some(DEMO_TOKEN.into()),
                    schedule: "*/10 * * * *".into(),
                    window: "22:00-06:00".into(),
                    ..ConnectorConfig::new(id, &systems_url)
                })
                .collect();
        }
    })
    .await?;
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
            ca: None,
        };
        crate::submit::run(&dir.join(format!("node-{i}/node.toml")), &opts).await?;
    }
    let node1 = cluster.client(0)?;
    add_staff(dir, &node1).await?;
    // One sync now, whatever the hour; later ones follow the schedule inside the window.
    let admin = govchain_ledger::Keypair::read_file(&dir.join("keys/sysadmin.key"))?;
    for (id, _) in DEMO_SYSTEMS {
        let path = format!("sync/run?source={id}");
        let (code, body) = node1.call_signed("POST", &path, &admin, None).await?;
        anyhow::ensure!(code == 202, "starting the sync of {id}: {code} {body}");
    }
    let systems: Vec<String> = DEMO_SYSTEMS
        .iter()
        .map(|(id, codec)| format!("{id} ({})", codec.split(':').next().unwrap_or_default()))
        .collect();
    println!(
        "department systems at {systems_url}: node 1 syncs {}",
        systems.join(", ")
    );
    println!();
    for url in &cluster.urls {
        let s = cluster.client_for(url)?.get_json("status").await?;
        println!("{url}: height {} app hash {}", s["height"], s["app_hash"]);
    }
    println!(
        "\nThe API serves HTTPS with certificates of the cluster's development CA, {1}/ca.pem: \
         trust it with curl --cacert {1}/ca.pem, and with govchain's --ca {1}/ca.pem (or \
         export GOVCHAIN_CA={1}/ca.pem).\n\
         \nTry:\n  curl -s --cacert {1}/ca.pem {0}/api/v1/status\n  curl -s --cacert {1}/ca.pem {0}/api/v1/blocks/1\n  \
         export GOVCHAIN_CA={1}/ca.pem\n  \
         govchain query --url {0} --key {1}/keys/sysadmin.key persons/{2}\n  \
         govchain query --url {0} --key {1}/keys/sysadmin.key 'search?q=五一中路'\n  \
         govchain sync status --url {0} --key {1}/keys/sysadmin.key\n  \
         govchain sync history --source gaj.sfzqf --url {0} --key {1}/keys/sysadmin.key\n  \
         govchain query --url {0} --key {1}/keys/sysadmin.key 'persons/{2}?fresh=true'\n  \
         curl -s --cacert {1}/ca.pem -X POST -H 'content-type: application/json' -d '{{\"user\":\"{3}\",\"password\":\"{4}\"}}' {0}/api/v1/login\n  \
         curl -s --cacert {1}/ca.pem -H 'Authorization: Bearer TOKEN' '{0}/api/v1/records?source=gaj.hjxx&page_size=5'\n  \
         (the auditor {5}, same password: GET /api/v1/audit, /api/v1/txs/ID with the transaction)\n\
         Press Ctrl-C to stop the cluster.",
        cluster.urls[0],
        dir.display(),
        crate::synth::person(POPULATION_SEED, 0).id,
        DEMO_USER,
        DEMO_PASSWORD,
        DEMO_AUDITOR
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
