//! `govchain genesis`: keys, the genesis document and one directory per validator node.
//!
//! Layout written under `out`:
//! - `genesis.json`
//! - `ca.pem`: the cluster's development CA certificate, which clients trust (R-SEC-6)
//! - `keys/sysadmin.key`, `keys/<dept>-admin.key` (every department administrator),
//!   `keys/ca.key` (the development CA's key)
//! - `node-<i>/node.toml`, `node-<i>/node.key`, `node-<i>/tls.pem` and `node-<i>/tls.key` (the
//!   API's certificate and key: every generated node serves HTTPS) for the first `departments`
//!   departments.
//!
//! Secret key files are created with mode 0600 and never overwritten.

use std::net::SocketAddr;
use std::path::Path;

use govchain_chaincode::catalog::Department;
use govchain_ledger::{ChainId, Keypair, TimestampMs, Validator, ValidatorSet};

use crate::catalog::default_catalog;
use crate::config::{ApiConfig, ChainConfig, ConsensusConfig, NodeConfig, P2pConfig};
use crate::doc::{GenesisDoc, GenesisError};
use crate::tls::{write_new, DevCa};

/// Parameters of `govchain genesis`.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// How many departments run validator nodes (the first N of the catalog's departments).
    pub departments: usize,
    /// The chain id.
    pub chain_id: ChainId,
    /// Genesis time.
    pub genesis_time: TimestampMs,
    /// Node i's API listens on `127.0.0.1:(base_port + i)`, its p2p on `base_port + 100 + i`.
    pub base_port: u16,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> GenesisError + '_ {
    move |source| GenesisError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes a new cluster under `out`, which must not contain a genesis yet.
pub fn generate(opts: &GenerateOptions, out: &Path) -> Result<GenesisDoc, GenesisError> {
    let catalog = default_catalog()?;
    let n = opts.departments;
    if n == 0 || n > catalog.departments.len() {
        return Err(GenesisError::Format(format!(
            "--departments must be 1..={} (the catalog's departments)",
            catalog.departments.len()
        )));
    }
    let genesis_path = out.join("genesis.json");
    if genesis_path.exists() {
        return Err(GenesisError::Format(format!(
            "{} already exists; choose an empty directory",
            genesis_path.display()
        )));
    }
    let keys_dir = out.join("keys");
    std::fs::create_dir_all(&keys_dir).map_err(io(&keys_dir))?;

    let sysadmin = Keypair::generate()?;
    sysadmin.write_file(&keys_dir.join("sysadmin.key"))?;

    let mut departments = Vec::new();
    let mut validators = Vec::new();
    let mut node_keys = Vec::new();
    for (i, d) in catalog.departments.iter().enumerate() {
        let admin = Keypair::generate()?;
        admin.write_file(&keys_dir.join(format!("{}-admin.key", d.id)))?;
        let validator_key = if i < n {
            let k = Keypair::generate()?;
            validators.push(Validator {
                key: k.public(),
                power: 1,
                department: d.id.clone(),
            });
            let pk = k.public();
            node_keys.push((d.id.clone(), k));
            Some(pk)
        } else {
            None
        };
        departments.push(Department {
            id: d.id.clone(),
            name: d.name.clone(),
            admin_key: admin.public(),
            validator_key,
        });
    }
    let doc = GenesisDoc {
        chain_id: opts.chain_id.clone(),
        genesis_time: opts.genesis_time,
        system_admin: sysadmin.public(),
        departments,
        validators: ValidatorSet { validators },
        sources: catalog.sources,
    };
    doc.initial_state().validate()?;

    let ca = DevCa::generate(opts.chain_id.as_str(), opts.genesis_time)?;
    let ca_pem = ca.pem();
    write_new(&keys_dir.join("ca.key"), &ca_pem.key, true)?;
    write_new(&out.join("ca.pem"), &ca_pem.cert, false)?;

    let port = |i: usize, offset: u16| {
        opts.base_port
            .checked_add(offset + i as u16 + 1)
            .ok_or_else(|| GenesisError::Format("--base-port too high for this many nodes".into()))
    };
    let p2p_addr = |i: usize| port(i, 100).map(|p| format!("/ip4/127.0.0.1/tcp/{p}"));
    for (i, (dept, key)) in node_keys.iter().enumerate() {
        let dir = out.join(format!("node-{}", i + 1));
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        key.write_file(&dir.join("node.key"))?;
        let tls = ca.node_cert(dept, &[])?;
        write_new(&dir.join("tls.key"), &tls.key, true)?;
        write_new(&dir.join("tls.pem"), &tls.cert, false)?;
        let peers = (0..node_keys.len())
            .filter(|j| *j != i)
            .map(p2p_addr)
            .collect::<Result<Vec<_>, _>>()?;
        let cfg = NodeConfig {
            department: dept.clone(),
            genesis: "../genesis.json".into(),
            key_file: "node.key".into(),
            data_dir: "data".into(),
            api: ApiConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], port(i, 0)?)),
                sync_peers: (0..node_keys.len())
                    .filter(|j| *j != i)
                    .map(|j| port(j, 0).map(|p| format!("https://127.0.0.1:{p}")))
                    .collect::<Result<_, _>>()?,
                tls_cert: Some("tls.pem".into()),
                tls_key: Some("tls.key".into()),
                tls_ca: Some("../ca.pem".into()),
                ..ApiConfig::default()
            },
            chain: ChainConfig::default(),
            p2p: P2pConfig {
                listen: p2p_addr(i)?,
                peers,
                observers: Vec::new(),
            },
            consensus: ConsensusConfig::default(),
            connectors: Vec::new(),
        };
        cfg.write(&dir.join("node.toml"))?;
    }
    doc.write(&genesis_path)?;
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_readable_cluster_with_private_keys() {
        let dir = tempfile::tempdir().unwrap();
        let opts = GenerateOptions {
            departments: 4,
            chain_id: ChainId::new("test-chain").unwrap(),
            genesis_time: TimestampMs(1_700_000_000_000),
            base_port: 18700,
        };
        let doc = generate(&opts, dir.path()).unwrap();
        assert_eq!(doc.validators.validators.len(), 4);
        let read = GenesisDoc::read(&dir.path().join("genesis.json")).unwrap();
        assert_eq!(read.hash(), doc.hash());
        let cfg = NodeConfig::read(&dir.path().join("node-2/node.toml")).unwrap();
        assert_eq!(cfg.department, "mzj");
        assert_eq!(cfg.api.listen.port(), 18702);
        assert_eq!(cfg.p2p.listen, "/ip4/127.0.0.1/tcp/18802");
        assert_eq!(cfg.p2p.peers.len(), 3);
        let key = Keypair::read_file(&cfg.key_file).unwrap();
        assert_eq!(key.public(), doc.validators.validators[1].key);
        // Every node serves HTTPS with a certificate of the cluster's CA, and calls its
        // peers over HTTPS trusting that CA (R-SEC-6).
        let node2 = dir.path().join("node-2");
        assert_eq!(cfg.api.tls_cert, Some(node2.join("tls.pem")));
        assert_eq!(cfg.api.tls_key, Some(node2.join("tls.key")));
        assert_eq!(cfg.api.tls_ca, Some(node2.join("../ca.pem")));
        assert!(cfg.api.sync_peers.iter().all(|p| p.starts_with("https://")));
        for f in [node2.join("tls.pem"), dir.path().join("ca.pem")] {
            let text = std::fs::read_to_string(f).unwrap();
            assert!(text.starts_with("-----BEGIN CERTIFICATE-----"));
        }
        #[cfg(unix)]
        for secret in [
            cfg.key_file.clone(),
            node2.join("tls.key"),
            dir.path().join("keys/ca.key"),
        ] {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&secret).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", secret.display());
        }
        // A second run into the same directory refuses to overwrite.
        assert!(generate(&opts, dir.path()).is_err());
        // Too many departments is refused.
        let too_many = GenerateOptions {
            departments: 99,
            ..opts
        };
        assert!(generate(&too_many, tempfile::tempdir().unwrap().path()).is_err());
    }
}
