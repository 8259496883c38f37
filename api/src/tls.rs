//! TLS of the API (R-SEC-6): passwords, session tokens, SMS codes and personal data never cross
//! the network in clear. This module owns the server side (a rustls configuration from the
//! `[api] tls_cert`/`tls_key` PEM files and a listener that completes handshakes off the accept
//! loop) and the client side (HTTPS clients that trust a given CA, e.g. the cluster's
//! development CA, for node-to-node calls and the command line).
//!
//! Invariants: only the ring provider is used (no OpenSSL, no aws-lc); TLS 1.2 and 1.3 only
//! (rustls' safe defaults); a handshake that does not finish within [`HANDSHAKE_TIMEOUT`] is
//! dropped, and at most [`MAX_PENDING_HANDSHAKES`] run at once, so slow or silent clients
//! cannot hold the accept loop or unbounded memory. A plain-HTTP request to a TLS port gets no
//! HTTP answer.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// Longest a client may take to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; further connections wait in the kernel's backlog.
pub const MAX_PENDING_HANDSHAKES: usize = 512;
/// Completed connections waiting for the HTTP server to take them.
const ACCEPTED_QUEUE: usize = 64;
/// Pause after a failed `accept` (e.g. out of file descriptors), as axum's own listener does.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// A PEM file holds no certificate.
    #[error("{0}: no PEM certificate in the file")]
    NoCertificate(String),
    /// A PEM file could not be parsed, or holds no private key.
    #[error("{path}: {reason}")]
    BadPem {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the certificate and key (e.g. they do not match).
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    /// The HTTP client could not be built.
    #[error("HTTPS client: {0}")]
    Client(#[from] reqwest::Error),
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn bad_pem(path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::BadPem {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// The certificates of a PEM file (at least one).
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_pem(path, e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.display().to_string()));
    }
    Ok(certs)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server configuration of the certificate chain in `cert` and its key in `key` (PEM).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = read_certs(cert)?;
    let key_der = PrivateKeyDer::from_pem_slice(&read(key)?)
        .map_err(|e| bad_pem(key, format!("no private key: {e}")))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// An HTTPS-capable client builder: with `ca`, it trusts only the certificates in that PEM
/// file (the cluster's CA); without, the built-in public roots.
pub fn client_builder(ca: Option<&Path>) -> Result<reqwest::ClientBuilder, TlsError> {
    let mut b = reqwest::Client::builder().use_rustls_tls();
    if let Some(path) = ca {
        b = b.tls_built_in_root_certs(false);
        for der in read_certs(path)? {
            b = b.add_root_certificate(reqwest::Certificate::from_der(&der)?);
        }
    }
    Ok(b)
}

/// A listener that serves TLS: a task accepts TCP connections and runs each handshake in its
/// own task (bounded in time and number); [`axum::serve`] takes the finished connections. For
/// `ConnectInfo<SocketAddr>`, serve it wrapped by `axum::serve::ListenerExt::tap_io` (axum
/// provides the client address of any listener so wrapped).
pub struct TlsListener {
    accepted: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Serves TLS with `config` on `tcp`. The accept task ends when the listener is dropped.
    pub fn new(tcp: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, accepted) = mpsc::channel(ACCEPTED_QUEUE);
        tokio::spawn(accept_loop(tcp, TlsAcceptor::from(config), tx));
        Ok(Self { accepted, local })
    }
}

async fn accept_loop(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let pending = Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES));
    loop {
        let permit = tokio::select! {
            p = pending.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = tx.closed() => return,
        };
        let (stream, addr) = tokio::select! {
            r = tcp.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(target: "api.tls", error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            _ = tx.closed() => return,
        };
        let (acceptor, tx) = (acceptor.clone(), tx.clone());
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    // Fails only when the server is gone: the connection is dropped then.
                    if tx.send((tls, addr)).await.is_err() {
                        tracing::debug!(target: "api.tls", "server stopped; connection dropped");
                    }
                }
                Ok(Err(e)) => {
                    tracing::debug!(target: "api.tls", error = %e, "TLS handshake failed")
                }
                Err(_) => tracing::debug!(target: "api.tls", "TLS handshake timed out"),
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(c) => c,
            // The accept task only ends once this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
