//! A small client: builds signed transactions and posts them to a node's API. Used by
//! `govchain submit`, tests and benchmarks.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use govchain_api::auth::Audience;
use govchain_chaincode::catalog::DataSource;
use govchain_chaincode::records::Record;
use govchain_chaincode::TxKind;
use govchain_ledger::{ChainId, Keypair, SignedTx, TxBody, TxId};
use serde::Deserialize;

use crate::now_ms;

/// Signs a transaction of `kind` with a fresh random nonce.
pub fn sign_tx(key: &Keypair, chain_id: &ChainId, kind: &TxKind) -> SignedTx {
    TxBody {
        chain_id: chain_id.clone(),
        signer: key.public(),
        nonce: rand::random(),
        created_at: now_ms(),
        payload: kind.encode(),
    }
    .sign(key)
}

/// A `SubmitRecords` transaction.
pub fn records_tx(
    key: &Keypair,
    chain_id: &ChainId,
    source: &DataSource,
    records: Vec<Record>,
) -> SignedTx {
    sign_tx(
        key,
        chain_id,
        &TxKind::SubmitRecords {
            source: source.id.clone(),
            records,
        },
    )
}

/// Percent-encodes every byte of `s` (a query value or path segment), so that the path a
/// request signs is exactly the path the node receives.
pub fn urlencode(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

/// Percent-encodes the bytes of a path-and-query that a URL may not carry as they are
/// (non-ASCII, spaces, quotes), keeping `/ ? & = : %` and the rest of printable ASCII.
pub fn encode_path(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_graphic() && !matches!(b, b'"' | b'#' | b'<' | b'>' | b'`' | b'{' | b'}')
            {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The node's answer to a submission.
#[derive(Debug, Clone, Deserialize)]
pub struct SubmitReply {
    /// Transaction id.
    pub tx_id: TxId,
    /// `committed` or `pending`.
    pub status: String,
    /// Block height, when committed.
    pub height: Option<u64>,
}

/// An HTTP client for one node.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
    /// The node's chain id and key, which signed requests name (read once from its status).
    audience: Arc<tokio::sync::OnceCell<Audience>>,
}

impl Client {
    /// A client for the node at `base` (`https://127.0.0.1:8701`); with `ca`, HTTPS trusts only
    /// the CA certificate(s) in that PEM file (a generated cluster's `ca.pem`), else the
    /// built-in public roots (R-SEC-6).
    pub fn new(base: &str, ca: Option<&std::path::Path>) -> anyhow::Result<Self> {
        let http = govchain_api::tls::client_builder(ca)?
            .timeout(Duration::from_secs(60))
            .build()?;
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            http,
            audience: Arc::default(),
        })
    }

    /// What requests signed for this node name: its chain id and node key (from its public
    /// status, read once).
    pub async fn audience(&self) -> anyhow::Result<Audience> {
        self.audience
            .get_or_try_init(|| async {
                let status = self.get_json("status").await?;
                Audience::from_status(&status).map_err(anyhow::Error::msg)
            })
            .await
            .cloned()
    }

    /// The headers of a request to this node (`path_and_query` from `/api/v1/…`) signed by
    /// `key` now.
    pub async fn sign(
        &self,
        key: &Keypair,
        method: &str,
        path_and_query: &str,
        body: &[u8],
    ) -> anyhow::Result<[(&'static str, String); 3]> {
        let to = self.audience().await?;
        Ok(govchain_api::auth::sign_request(
            key,
            &to,
            method,
            path_and_query,
            now_ms().0,
            body,
        ))
    }

    /// A client for the node at `url`, the key in `key_file` and the node's chain id (CLI
    /// commands that sign what they send).
    pub async fn connect_signer(
        key_file: &std::path::Path,
        url: &str,
        ca: Option<&std::path::Path>,
    ) -> anyhow::Result<(Self, Keypair, ChainId)> {
        let key = Keypair::read_file(key_file)
            .with_context(|| format!("reading key {}", key_file.display()))?;
        let client = Client::new(url, ca)?;
        let status = client.get_json("status").await?;
        let chain = status["chain_id"]
            .as_str()
            .context("the node's status names no chain id")?;
        let chain = ChainId::new(chain).map_err(|e| anyhow::anyhow!("chain id {chain:?}: {e}"))?;
        Ok((client, key, chain))
    }

    /// Posts a transaction; with `wait`, returns once it is committed.
    pub async fn submit(&self, tx: &SignedTx, wait: bool) -> anyhow::Result<SubmitReply> {
        let url = format!(
            "{}/api/v1/txs{}",
            self.base,
            if wait { "?wait=commit" } else { "" }
        );
        let r = self
            .http
            .post(url)
            .header("content-type", "application/octet-stream")
            .body(tx.encode())
            .send()
            .await
            .context("posting transaction")?;
        let status = r.status();
        let body = r.text().await?;
        if !status.is_success() {
            bail!("node answered {status}: {body}");
        }
        Ok(serde_json::from_str(&body)?)
    }

    /// Posts a transaction and waits for its commit; returns the HTTP status and JSON answer
    /// whatever they are (a refusal's `{error: {code, message}}` included).
    pub async fn submit_status(&self, tx: &SignedTx) -> anyhow::Result<(u16, serde_json::Value)> {
        let r = self
            .http
            .post(format!("{}/api/v1/txs?wait=commit", self.base))
            .header("content-type", "application/octet-stream")
            .body(tx.encode())
            .send()
            .await
            .context("posting transaction")?;
        let status = r.status().as_u16();
        Ok((status, serde_json::from_str(&r.text().await?)?))
    }

    /// GET a file under `/api/v1` signed by `key` now: the status, the `x-govchain-digest`
    /// header and the body bytes (exports).
    pub async fn get_signed_file(
        &self,
        path: &str,
        key: &Keypair,
    ) -> anyhow::Result<(u16, Option<String>, Vec<u8>)> {
        let full = format!("/api/v1/{path}");
        let headers = self.sign(key, "GET", &full, b"").await?;
        let mut req = self.http.get(format!("{}{full}", self.base));
        for (k, v) in &headers {
            req = req.header(*k, v);
        }
        let r = req.send().await?;
        let status = r.status().as_u16();
        let digest = r
            .headers()
            .get(govchain_api::export::DIGEST_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Ok((status, digest, r.bytes().await?.to_vec()))
    }

    /// Polls `GET /api/v1/txs/{id}` until the transaction is committed (for a submission
    /// answered "pending", or refused as a duplicate of one already waiting), within `within`.
    pub async fn wait_committed(&self, id: &TxId, within: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match self.get_json(&format!("txs/{id}")).await {
                Ok(_) => return Ok(()),
                Err(e) if e.to_string().contains("404") => {}
                Err(e) => return Err(e),
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("transaction {id} not committed within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Submits `tx` and returns once it is committed: waits out a full mempool (503), and an
    /// earlier attempt's admission (duplicate), for at most `within` per wait.
    pub async fn submit_until_committed(
        &self,
        tx: &SignedTx,
        within: Duration,
    ) -> anyhow::Result<()> {
        loop {
            match self.submit(tx, true).await {
                Ok(r) if r.status == "committed" => return Ok(()),
                // Admitted, its block not yet stored (or admitted by an earlier attempt).
                Ok(_) => return self.wait_committed(&tx.id(), within).await,
                Err(e) if e.to_string().contains("duplicate_tx") => {
                    return self.wait_committed(&tx.id(), within).await
                }
                // Backpressure: the mempool is full.
                Err(e) if e.to_string().contains("503") => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// GET under `/api/v1` with extra headers; returns the status and the JSON body.
    pub async fn get_with(
        &self,
        path: &str,
        headers: &[(&str, String)],
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        let mut req = self.http.get(format!("{}/api/v1/{path}", self.base));
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let r = req.send().await?;
        let status = r.status().as_u16();
        Ok((status, serde_json::from_str(&r.text().await?)?))
    }

    /// GET under `/api/v1`, signed by `key` (a system account) now.
    pub async fn get_signed(
        &self,
        path: &str,
        key: &Keypair,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        let headers = self
            .sign(key, "GET", &format!("/api/v1/{path}"), b"")
            .await?;
        self.get_with(path, &headers).await
    }

    /// Any request under `/api/v1` with extra headers and a JSON body (or none); returns the
    /// status and the JSON answer, whatever they are.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: Option<&serde_json::Value>,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut req = self
            .http
            .request(method, format!("{}/api/v1/{path}", self.base));
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(serde_json::to_vec(b)?);
        }
        let r = req.send().await?;
        let status = r.status().as_u16();
        let text = r.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        ))
    }

    /// A request under `/api/v1` signed by `key` now, with a JSON body (or none).
    pub async fn call_signed(
        &self,
        method: &str,
        path: &str,
        key: &Keypair,
        body: Option<&serde_json::Value>,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        let bytes = body
            .map(serde_json::to_vec)
            .transpose()?
            .unwrap_or_default();
        let headers = self
            .sign(key, method, &format!("/api/v1/{path}"), &bytes)
            .await?;
        self.call(method, path, &headers, body).await
    }

    /// GET a JSON document under `/api/v1`.
    pub async fn get_json(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let r = self
            .http
            .get(format!("{}/api/v1/{path}", self.base))
            .send()
            .await?;
        let status = r.status();
        let body = r.text().await?;
        if !status.is_success() {
            bail!("node answered {status}: {body}");
        }
        Ok(serde_json::from_str(&body)?)
    }
}
