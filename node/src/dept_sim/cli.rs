//! `govchain dept-sim`: the simulator from command-line arguments, served until a signal.

use super::*;

/// The `govchain dept-sim` command line.
#[derive(Debug, Clone)]
pub struct SimArgs {
    /// Address to listen on; port 0 picks a free port (printed on start).
    pub listen: std::net::SocketAddr,
    /// Catalog source ids; empty means the first [`DEFAULT_SOURCE_COUNT`] sources about persons
    /// of department [`DEFAULT_DEPARTMENT`].
    pub sources: Vec<String>,
    /// Source id -> codec description (`plain`, `des:KEYHEX:IVHEX`, `3des:KEYHEX:IVHEX`);
    /// sources not named are plain.
    pub codecs: Vec<(String, String)>,
    /// Records per source.
    pub records: u64,
    /// Population seed; also seeds the fault RNG.
    pub seed: u64,
    /// Required bearer token; empty means no authentication.
    pub token: String,
    /// Probability in 0..=1 that a data request gets a fault.
    pub fault_rate: f64,
    /// Fault kinds: `all` or a comma list of `500,timeout,slow,truncated,duplicate`.
    pub faults: String,
    /// How long a timeout fault hangs.
    pub timeout_ms: u64,
    /// How long a slow answer waits.
    pub slow_ms: u64,
}

/// The simulator configuration a command line asks for, checked against the default catalog.
pub(super) fn config_from_args(args: &SimArgs) -> anyhow::Result<SimConfig> {
    let catalog = govchain_genesis::catalog::default_catalog()?.sources;
    let chosen: Vec<DataSource> = if args.sources.is_empty() {
        catalog
            .into_iter()
            .filter(|s| s.department == DEFAULT_DEPARTMENT && s.person_field.is_some())
            .take(DEFAULT_SOURCE_COUNT)
            .collect()
    } else {
        let find = |id: &String| {
            catalog
                .iter()
                .find(|s| &s.id == id)
                .cloned()
                .ok_or_else(|| SimError::UnknownSource(id.clone()))
        };
        args.sources.iter().map(find).collect::<Result<_, _>>()?
    };
    let mut codecs: BTreeMap<&str, Codec> = BTreeMap::new();
    for (id, spec) in &args.codecs {
        if !chosen.iter().any(|s| &s.id == id) {
            return Err(SimError::CodecForUnsimulatedSource(id.clone()).into());
        }
        let codec = Codec::parse(spec).map_err(|err| SimError::Codec {
            id: id.clone(),
            err,
        })?;
        if codecs.insert(id, codec).is_some() {
            return Err(SimError::DuplicateCodec(id.clone()).into());
        }
    }
    let sources = chosen
        .into_iter()
        .map(|source| SimSource {
            codec: codecs.remove(source.id.as_str()).unwrap_or(Codec::Plain),
            source,
        })
        .collect();
    let cfg = SimConfig {
        sources,
        records: args.records,
        seed: args.seed,
        token: args.token.clone(),
        faults: Faults {
            rate: args.fault_rate,
            kinds: FaultKind::parse_list(&args.faults)?,
            timeout_ms: args.timeout_ms,
            slow_ms: args.slow_ms,
            seed: args.seed,
        },
    };
    cfg.check()?;
    Ok(cfg)
}

/// `govchain dept-sim`: generates the records, binds, prints exactly one line
/// `dept-sim listening on http://ADDR` (the bound address) to stdout and serves until Ctrl-C or
/// SIGTERM; requests still running then get [`SHUTDOWN_GRACE`] to finish.
pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    let cfg = config_from_args(&args)?;
    let (sources, records) = (cfg.sources.len(), cfg.records);
    let started = std::time::Instant::now();
    let sim = tokio::task::spawn_blocking(move || DeptSim::try_new(cfg)).await??;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "dept-sim listening on http://{addr}")?;
        out.flush()?;
    }
    tracing::info!(target: "node.dept_sim", %addr, sources, records,
        generate_ms = started.elapsed().as_millis() as u64, "department simulator started");
    let stop = Arc::new(tokio::sync::Notify::new());
    let stopped = Arc::clone(&stop);
    let router = sim.router();
    let mut server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move { stopped.notified().await })
            .await
    });
    tokio::select! {
        ended = &mut server => return Ok(ended??),
        () = crate::server::wait_for_signal() => {}
    }
    // `notify_one` keeps the wake-up if the server task has not started waiting yet.
    stop.notify_one();
    match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
        Ok(ended) => ended??,
        Err(_) => {
            tracing::warn!(target: "node.dept_sim", "requests still running after the grace period are dropped");
            server.abort();
        }
    }
    tracing::info!(target: "node.dept_sim", "department simulator stopped");
    Ok(())
}
