//! Finding 8 of issue 15 (R-SEC-6): the API of a generated node serves HTTPS only, with a
//! certificate of the cluster's development CA. A plain-HTTP request gets no HTTP answer; a
//! client that does not trust the CA (public roots only, or another cluster's CA) fails
//! verification and sends nothing; the command line trusts the CA through `--ca` (or
//! `GOVCHAIN_CA`). A node configured without a certificate serves plain HTTP (behind a
//! TLS-terminating proxy).

use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

use govchain_node::client::Client;
use govchain_tests::{govchain_bin, Net, NodeProc};

/// Finding 8 of issue 15 (R-SEC-6): HTTPS only, and only for clients that trust the CA.
#[test]
fn finding_8_the_api_serves_https_only_to_clients_that_trust_the_cluster_ca() {
    let net = Net::generate(1);
    let node = NodeProc::start(&net, 1);
    assert!(node.url.starts_with("https://127.0.0.1:"), "{}", node.url);
    let rt = tokio::runtime::Runtime::new().unwrap();

    // Trusting the cluster's CA: the API answers.
    let status = rt.block_on(node.client().get_json("status")).unwrap();
    assert_eq!(status["chain_id"], "test-chain");

    // Plain HTTP to the same port: no HTTP answer at all.
    let plain = node.url.replace("https://", "http://");
    let r = rt.block_on(Client::new(&plain, None).unwrap().get_json("status"));
    assert!(r.is_err(), "plain HTTP was answered: {r:?}");
    let mut tcp = std::net::TcpStream::connect(node.url.trim_start_matches("https://")).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    tcp.write_all(b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    // The server closes (or resets) the connection after the failed handshake.
    let _ = tcp.read_to_end(&mut answer);
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plain HTTP got an HTTP answer: {:?}",
        String::from_utf8_lossy(&answer)
    );

    // Public roots only: the development CA is not among them.
    let e = rt
        .block_on(Client::new(&node.url, None).unwrap().get_json("status"))
        .unwrap_err();
    assert!(
        format!("{e:#}").to_lowercase().contains("certificate"),
        "not a verification failure: {e:#}"
    );
    // Another cluster's CA: refused too.
    let other = Net::generate(1);
    let e = rt
        .block_on(
            Client::new(&node.url, Some(&other.ca()))
                .unwrap()
                .get_json("status"),
        )
        .unwrap_err();
    assert!(
        format!("{e:#}").to_lowercase().contains("certificate"),
        "not a verification failure: {e:#}"
    );

    // The command line: without the CA it fails verification, with --ca (or GOVCHAIN_CA) it
    // reads the node.
    let key = net.dir.path().join("keys/sysadmin.key");
    let query = |ca: Option<&std::path::Path>| {
        let mut cmd = Command::new(govchain_bin());
        cmd.args(["query", "--url", &node.url, "--key"])
            .arg(&key)
            .arg("status")
            .env_remove("GOVCHAIN_CA");
        if let Some(ca) = ca {
            cmd.env("GOVCHAIN_CA", ca);
        }
        cmd.output().unwrap()
    };
    let out = query(None);
    assert!(!out.status.success(), "the CLI trusted an unknown CA");
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(err.contains("certificate"), "{err}");
    let out = query(Some(&net.ca()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("test-chain"));
    let out = Command::new(govchain_bin())
        .args(["query", "--url", &node.url, "--ca"])
        .arg(net.ca())
        .arg("--key")
        .arg(&key)
        .arg("status")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Finding 8 of issue 15: TLS is configuration: without `api.tls_cert`/`tls_key` the node
/// serves plain HTTP (and a config with only one of them is refused at start).
#[test]
fn finding_8_a_node_without_a_certificate_serves_plain_http() {
    let net = Net::generate(1);
    net.tune(1, |c| {
        c.api.tls_cert = None;
        c.api.tls_key = None;
    });
    let node = NodeProc::start(&net, 1);
    assert!(node.url.starts_with("http://"), "{}", node.url);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = rt.block_on(node.client().get_json("status")).unwrap();
    assert_eq!(status["chain_id"], "test-chain");
    drop(node);

    let key = net.config(1).api.tls_ca.unwrap();
    net.tune(1, |c| c.api.tls_key = Some(key.clone()));
    let out = Command::new(govchain_bin())
        .args(["node", "--config"])
        .arg(net.config_path(1))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tls_cert and api.tls_key go together"),
        "{err}"
    );
}
