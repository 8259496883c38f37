//! govchain HTTP API (axum, `/api/v1`).
//!
//! This crate owns request parsing, admission checks that need no lock (decode, signature,
//! chain id, replay and a dry run of chaincode against committed state), and the JSON shape of
//! responses. It hands admitted transactions to the node's chain task over a bounded channel
//! ([`Submission`]) and reads blocks and transactions from the store. Errors are always
//! `{"error": {"code", "message"}}` with a fitting status.
#![forbid(unsafe_code)]

pub mod access;
pub mod audit;
pub mod audit_queue;
pub mod auth;
pub mod catalog;
pub mod consent;
pub mod error;
pub mod export;
pub mod limits;
pub mod lockout;
pub mod matters;
pub mod metrics;
pub mod named;
pub mod openapi;
pub mod paging;
pub mod projection;
pub mod query;
pub mod routes;
pub mod search;
pub mod security;
pub mod session;
pub mod shaping;
pub mod sync;
pub mod tls;

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use govchain_chaincode::TxError;
use govchain_ledger::{ChainId, Height, PublicKey, SignedTx, Store, Tip, TxId};
use tokio::sync::{mpsc, oneshot, watch};

pub use error::ApiError;
pub use routes::router;

/// What happened to a transaction after admission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitNotice {
    /// It is in the block at `height`, position `index`, and that block is durably stored.
    Committed {
        /// Block height.
        height: Height,
        /// Position in the block.
        index: u32,
    },
    /// The block builder refused it (state changed since admission).
    Rejected(TxError),
}

/// Why the mempool did not take a transaction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmitError {
    /// The mempool is full; retry later.
    #[error("mempool is full ({txs} transactions waiting); retry after {retry_after_ms} ms")]
    Full {
        /// Transactions waiting.
        txs: usize,
        /// Suggested wait.
        retry_after_ms: u64,
    },
    /// The same transaction is already waiting.
    #[error("transaction {0} is already in the mempool")]
    Duplicate(TxId),
    /// Another waiting transaction has the same (signer, nonce).
    #[error("another pending transaction uses the same signer and nonce")]
    NonceInUse,
    /// The node is shutting down.
    #[error("node is shutting down")]
    ShuttingDown,
}

/// An admitted transaction on its way to the chain task.
#[derive(Debug)]
pub struct Submission {
    /// The transaction (signature already verified).
    pub tx: SignedTx,
    /// Its id.
    pub id: TxId,
    /// Its encoded size.
    pub bytes: usize,
    /// Answer of the mempool.
    pub reply: oneshot::Sender<Result<(), AdmitError>>,
    /// Notified when the transaction is committed or refused, if the client waits.
    pub on_commit: Option<oneshot::Sender<CommitNotice>>,
}

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct ApiContext {
    /// This chain.
    pub chain_id: ChainId,
    /// This node's key: signed requests name it (with the chain id) as their audience.
    pub node_key: PublicKey,
    /// The department running this node.
    pub department: String,
    /// The node's store (reads only).
    pub store: Store,
    /// Where admitted transactions go.
    pub submit: mpsc::Sender<Submission>,
    /// The current tip.
    pub tip: watch::Receiver<Tip>,
    /// Transactions waiting in the mempool.
    pub mempool_len: Arc<AtomicUsize>,
    /// How long `?wait=commit` waits.
    pub commit_wait: Duration,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// The SQL projection (None when the node keeps none).
    pub projection: Option<projection::Projection>,
    /// Signed requests already used.
    pub replay: auth::ReplayGuard,
    /// The per-user row quota and the export threshold (issue 15 finding 7).
    pub read_limits: Arc<limits::ReadLimits>,
    /// Sessions, passwords, SMS codes and the audit queue of this node.
    pub security: security::SecurityRef,
    /// The node's connectors to department systems (None: it runs none).
    pub sync: Option<Arc<dyn sync::SyncService>>,
    /// API base URLs of the other departments' nodes, asked to refresh their sources in a
    /// pull-through.
    pub sync_peers: Arc<Vec<String>>,
    /// The HTTPS client for calls to `sync_peers`, trusting `api.tls_ca`.
    pub peer_http: reqwest::Client,
    /// The data source whose phone number resident consent codes go to
    /// (`api.consent_phone_source`).
    pub consent_phone_source: Arc<str>,
}

impl ApiContext {
    /// What a request signed for this node names: this chain and this node's key.
    pub fn audience(&self) -> auth::Audience {
        auth::Audience {
            chain_id: self.chain_id.clone(),
            node: self.node_key,
        }
    }
}
