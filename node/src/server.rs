//! `govchain node`: opens the store, writes genesis on first start, starts the p2p network, the
//! consensus driver and the HTTP API, and stops cleanly on SIGTERM or Ctrl-C. A node whose key
//! is not (yet) a validator follows the chain read-only and starts voting once an on-chain
//! change adds it.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use govchain_api::projection::Projection;
use govchain_api::ApiContext;
use govchain_consensus::Config as ConsensusConfig;
use govchain_genesis::{GenesisDoc, NodeConfig};
use govchain_ledger::{Height, Keypair, Store, Tip};
use tokio::sync::{mpsc, watch};

use crate::chain::ChainState;
use crate::driver::{Driver, DriverParts};
use crate::net::{self, NetConfig};

/// Capacity of the channel from the API to the chain task.
const SUBMISSION_QUEUE: usize = 4096;

/// Runs a node until a signal arrives.
pub async fn run(config_path: &Path) -> anyhow::Result<()> {
    let cfg = NodeConfig::read(config_path)?;
    let doc = GenesisDoc::read(&cfg.genesis)?;
    let key = Keypair::read_file(&cfg.key_file)?;
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating {}", cfg.data_dir.display()))?;
    let store = Store::open(&cfg.data_dir)?;
    let state = ChainState::load(&store, &doc)?;
    tracing::info!(
        target: "node",
        chain_id = %state.chain_id,
        height = %state.tip.height,
        department = %cfg.department,
        api = %cfg.api.listen,
        "node starting"
    );

    let (submit_tx, submit_rx) = mpsc::channel(SUBMISSION_QUEUE);
    let (tip_tx, tip_rx) = watch::channel(state.tip);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mempool_len = Arc::new(AtomicUsize::new(0));

    // Peers allowed to connect: the current validators, the genesis validators and observers.
    let mut allowed: Vec<_> = state.validators.validators.iter().map(|v| v.key).collect();
    allowed.extend(doc.validators.validators.iter().map(|v| v.key));
    allowed.extend(cfg.p2p.observers.iter().copied());
    let seed = key.secret_seed();
    let api_key = Keypair::from_seed(seed);
    let net = net::spawn(
        NetConfig {
            chain_id: state.chain_id.clone(),
            seed,
            listen: cfg
                .p2p
                .listen
                .parse()
                .with_context(|| format!("p2p.listen {:?}", cfg.p2p.listen))?,
            peers: cfg
                .p2p
                .peers
                .iter()
                .map(|p| p.parse().with_context(|| format!("p2p.peers entry {p:?}")))
                .collect::<anyhow::Result<_>>()?,
            allowed,
            max_message_bytes: net::MAX_GOSSIP_BYTES,
        },
        store.clone(),
    )?;
    tracing::info!(target: "node", peer_id = %net.local, validator = state.validators.get(&key.public()).is_some(), "p2p identity");
    let c = &cfg.consensus;
    let parts = DriverParts {
        store: store.clone(),
        state: state.clone(),
        key,
        chain: cfg.chain.clone(),
        consensus: ConsensusConfig {
            propose_ms: c.propose_ms,
            propose_delta_ms: c.propose_delta_ms,
            prevote_ms: c.prevote_ms,
            prevote_delta_ms: c.prevote_delta_ms,
            precommit_ms: c.precommit_ms,
            precommit_delta_ms: c.precommit_delta_ms,
            ..ConsensusConfig::default()
        },
        submissions: submit_rx,
        net: net.commands,
        net_events: net.events,
        tip: tip_tx,
        mempool_len: mempool_len.clone(),
        shutdown: stop_rx.clone(),
    };
    let chain = tokio::spawn(Driver::run(parts));

    // The SQL projection follows the committed tip (DESIGN §7).
    let db_url = cfg.api.db.clone().unwrap_or_else(|| {
        format!(
            "sqlite://{}",
            cfg.data_dir.join("projection.sqlite").display()
        )
    });
    let mut query_projection = None;
    let projector = if db_url == "off" {
        tracing::info!(target: "node", "no SQL projection (api.db = \"off\")");
        None
    } else {
        let projection = Projection::open(&db_url)
            .await
            .with_context(|| format!("opening the projection database {db_url}"))?;
        let genesis_hash = store
            .genesis_hash()?
            .context("the store has no genesis after start")?;
        projection.init(genesis_hash, &doc.sources).await?;
        query_projection = Some(projection.clone());
        let (store, tip, stop) = (store.clone(), tip_rx.clone(), stop_rx.clone());
        Some(tokio::spawn(async move {
            let r = project(projection, store, tip, stop).await;
            if let Err(e) = &r {
                // The chain goes on; queries see the last projected block until a restart.
                tracing::error!(target: "node.projection", error = format!("{e:#}"), "projection stopped");
            }
            r
        }))
    };

    let notifier = match &cfg.api.sms {
        Some(s) => govchain_api::security::Notifier::parse(s).map_err(anyhow::Error::msg)?,
        None => govchain_api::security::Notifier::File(cfg.data_dir.join("sms-outbox.jsonl")),
    };
    let security = Arc::new(govchain_api::security::Security::with_audit_limit(
        Duration::from_secs(cfg.api.session_ttl_s),
        notifier,
        Some(govchain_api::security::NodeSigner::new(
            api_key,
            state.chain_id.clone(),
            govchain_api::access::now().0,
        )),
        Some(store.clone()),
        cfg.api.audit_backlog_limit,
    ));
    let mut ctx = ApiContext {
        chain_id: state.chain_id.clone(),
        node_key: Keypair::from_seed(seed).public(),
        department: cfg.department.clone(),
        store,
        submit: submit_tx,
        tip: tip_rx,
        mempool_len,
        commit_wait: Duration::from_millis(cfg.api.commit_wait_ms),
        max_body_bytes: cfg.api.max_body_bytes,
        projection: query_projection,
        replay: Default::default(),
        security,
        read_limits: Arc::new(govchain_api::limits::ReadLimits::new(
            cfg.api.max_rows_per_user_per_day,
            cfg.api.query_rows_without_export,
        )),
        sync: None,
        sync_peers: Arc::new(cfg.api.sync_peers.clone()),
        peer_http: govchain_api::tls::client_builder(cfg.api.tls_ca.as_deref())
            .and_then(|b| Ok(b.build()?))
            .context("the HTTPS client for sync_peers (api.tls_ca)")?,
        consent_phone_source: cfg.api.consent_phone_source.as_str().into(),
    };
    // Connectors to the department's systems (R-SYN): scheduled pulls and pull-through.
    if !cfg.connectors.is_empty() {
        let connectors = crate::sync::Connectors::start(
            ctx.clone(),
            &cfg.connectors,
            Arc::new(crate::schedule::SystemClock),
            stop_rx.clone(),
        )?;
        tracing::info!(target: "node", connectors = cfg.connectors.len(), "connectors started");
        ctx.sync = Some(connectors);
    }
    // Audit entries go on chain in one batch per interval (R-AUD-1): a batch on every new
    // block would itself make the next block, and keep the validators committing
    // back-to-back blocks under load (measured: 22 blocks/s at 3,000 users).
    let audit_ms = cfg.api.audit_interval_ms.max(10);
    let auditor = {
        let (ctx, mut stop) = (ctx.clone(), stop_rx.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(audit_ms)) => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
                govchain_api::audit::flush(&ctx).await;
            }
            // What is still queued stays in the outbox and goes out after the restart.
        })
    };
    // HTTPS only when a certificate is configured (R-SEC-6; generated clusters always are).
    let tls = match (&cfg.api.tls_cert, &cfg.api.tls_key) {
        (Some(cert), Some(key)) => Some(
            govchain_api::tls::server_config(cert, key)
                .context("loading the API's TLS certificate (api.tls_cert, api.tls_key)")?,
        ),
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(cfg.api.listen)
        .await
        .with_context(|| format!("binding {}", cfg.api.listen))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(target: "node", addr = %cfg.api.listen, scheme, "api listening");
    let app = govchain_api::router(ctx);
    let stop = stop_rx.clone();
    let http = match tls {
        Some(config) => {
            // `tap_io` is how axum hands a custom listener's client address to ConnectInfo.
            use axum::serve::ListenerExt;
            let listener = govchain_api::tls::TlsListener::new(listener, config)?.tap_io(|_| {});
            tokio::spawn(serve(listener, app, stop))
        }
        None => tokio::spawn(serve(listener, app, stop)),
    };

    wait_for_signal().await;
    tracing::info!(target: "node", "shutting down");
    stop_tx.send_replace(true);
    // The HTTP server stops taking requests; the driver stops after its current step.
    http.await??;
    let _ = auditor.await;
    chain.await??;
    if let Some(p) = projector {
        p.await??;
    }
    tracing::info!(target: "node", "stopped");
    Ok(())
}

/// Serves the API on `listener` (plain TCP or TLS) until `stop` turns true. Handlers see the
/// client's address (the login throttle counts by it).
async fn serve<L>(
    listener: L,
    app: axum::Router,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
    for<'a> SocketAddr: Connected<IncomingStream<'a, L>>,
{
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = stop.wait_for(|s| *s).await;
    })
    .await
}

/// Applies committed blocks to the projection as the tip moves, until stopped. Each step (one
/// block, or a few when behind) is one SQL transaction with the cursor, so a kill at any
/// instant resumes right after the last step.
async fn project(
    projection: Projection,
    store: Store,
    mut tip: watch::Receiver<Tip>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut at = projection.cursor().await?.map_or(Height(0), |(h, _)| h);
    loop {
        // A step at a time, so a stop request is honoured between steps.
        while at < tip.borrow().height {
            if *stop.borrow() {
                return Ok(());
            }
            at = projection
                .apply_next(&store)
                .await
                .with_context(|| format!("projecting block {}", at.next()))?
                .with_context(|| format!("committed block {} missing", at.next()))?;
        }
        tracing::debug!(target: "node.projection", height = %at, "projected");
        tokio::select! {
            r = tip.changed() => if r.is_err() { return Ok(()) },
            _ = stop.wait_for(|s| *s) => return Ok(()),
        }
    }
}

/// Waits for SIGTERM or Ctrl-C.
pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(target: "node", error = %e, "no SIGTERM handler; Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
