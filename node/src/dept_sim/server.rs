//! The simulator's state behind its HTTP endpoints: sources, fault injector, counters, and the
//! axum handlers of the data and control endpoints.

use super::*;

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic under a lock is a bug that already failed loudly; the state stays consistent
    // because no update panics halfway.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One simulated source: its definition and codec (fixed) and its records (changing).
pub(super) struct SourceState {
    pub(super) source: DataSource,
    pub(super) codec: Codec,
    pub(super) records: Mutex<Records>,
}

/// The simulator: every source's records, the fault RNG and the counters, each behind its own
/// `Mutex`, so one `Arc<DeptSim>` serves all requests and the test driving it.
pub struct DeptSim {
    sources: BTreeMap<String, SourceState>,
    seed: u64,
    token: String,
    faults: Faults,
    fault_rng: Mutex<ChaCha8Rng>,
    stats: Mutex<SimStats>,
}

impl std::fmt::Debug for DeptSim {
    // The token never reaches logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeptSim")
            .field("sources", &self.sources.keys().collect::<Vec<_>>())
            .field("faults", &self.faults)
            .finish_non_exhaustive()
    }
}

impl DeptSim {
    /// A simulator with every source's records generated (sources in parallel).
    ///
    /// # Panics
    /// If `cfg` fails [`SimConfig::check`]; use [`DeptSim::try_new`] for configurations that
    /// come from outside.
    pub fn new(cfg: SimConfig) -> Arc<Self> {
        Self::try_new(cfg).unwrap_or_else(|e| panic!("invalid simulator configuration: {e}"))
    }

    /// A simulator, or why its configuration is refused.
    pub fn try_new(cfg: SimConfig) -> Result<Arc<Self>, SimError> {
        cfg.check()?;
        let SimConfig {
            sources,
            records,
            seed,
            token,
            faults,
        } = cfg;
        let loaded: Vec<SourceState> = std::thread::scope(|scope| {
            let workers: Vec<_> = sources
                .into_iter()
                .map(|s| {
                    scope.spawn(move || SourceState {
                        records: Mutex::new(Records::generate(&s.source, records, seed)),
                        source: s.source,
                        codec: s.codec,
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        Ok(Arc::new(DeptSim {
            sources: loaded
                .into_iter()
                .map(|s| (s.source.id.clone(), s))
                .collect(),
            seed,
            token,
            fault_rng: Mutex::new(ChaCha8Rng::seed_from_u64(faults.seed)),
            faults,
            stats: Mutex::new(SimStats::default()),
        }))
    }

    /// The HTTP interface.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/sources/{id}/records", get(feed))
            .route("/sources/{id}/persons/{pid}", get(person_records))
            .route("/sources/{id}/digest", get(digest))
            .route("/sources/{id}/records/{key}/touch", post(touch))
            .route("/sources/{id}/records/{key}/set", post(set_field))
            .route("/stats", get(stats))
            .with_state(Arc::clone(self))
    }

    /// Serves the HTTP interface on `listener` until the listener fails.
    pub async fn serve(self: Arc<Self>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        axum::serve(listener, self.router()).await
    }

    /// Changes record `key` of `source` (new content, same key and same person) and gives it the
    /// next change sequence number; returns the new payload text. `None` if the source or the
    /// key is unknown, or (never seen with the default catalog) if 16 regenerations all gave
    /// the old content back.
    pub fn touch(&self, source: &str, key: &str) -> Option<String> {
        self.touch_record(source, key).map(|(_, payload)| payload)
    }

    /// Sets field `field` of record `key` of `source` to `value` as delivered, valid or not
    /// (bad data at the department system), with the next change sequence number; returns
    /// (seq, payload). Refused for an unknown source or key, and for the record key and person
    /// fields.
    pub fn set_field(
        &self,
        source: &str,
        key: &str,
        field: &str,
        value: &str,
    ) -> Result<(u64, String), String> {
        self.set_record_field(source, key, field, value)
            .map_err(|r| r.message().to_string())
    }

    fn set_record_field(
        &self,
        source: &str,
        key: &str,
        field: &str,
        value: &str,
    ) -> Result<(u64, String), Refusal> {
        let s = self.sources.get(source).ok_or(Refusal::UnknownSource)?;
        lock(&s.records).set_field(&s.source, key, field, value)
    }

    pub(super) fn touch_record(&self, source: &str, key: &str) -> Option<(u64, String)> {
        let s = self.sources.get(source)?;
        lock(&s.records).touch(&s.source, key, self.seed)
    }

    /// `(count, digest)` of a source's current records ([`content_digest`]); `None` if unknown.
    pub fn digest(&self, source: &str) -> Option<(u64, String)> {
        self.sources.get(source).map(|s| lock(&s.records).digest())
    }

    /// Data requests served and faults injected so far.
    pub fn stats(&self) -> SimStats {
        lock(&self.stats).clone()
    }

    /// Draws whether this data request gets a fault, and counts it.
    pub(super) fn draw_fault(&self) -> Option<FaultKind> {
        let kind = {
            let mut rng = lock(&self.fault_rng);
            if self.faults.rate > 0.0 && rng.random_bool(self.faults.rate) {
                self.faults.kinds.choose(&mut *rng).copied()
            } else {
                None
            }
        };
        let mut stats = lock(&self.stats);
        stats.requests += 1;
        if let Some(kind) = kind {
            *stats.faults.slot(kind) += 1;
        }
        kind
    }

    /// Plays the faults that delay or replace the answer.
    pub(super) async fn play_fault(
        &self,
        source: &str,
        fault: Option<FaultKind>,
    ) -> Result<(), Refusal> {
        let Some(kind) = fault else {
            return Ok(());
        };
        tracing::debug!(target: "node.dept_sim", source, fault = kind.name(), "fault injected");
        let delay_ms = match kind {
            FaultKind::Error500 => return Err(Refusal::InjectedError),
            FaultKind::Timeout => self.faults.timeout_ms,
            FaultKind::Slow => self.faults.slow_ms,
            FaultKind::Truncated | FaultKind::DuplicatePage => return Ok(()),
        };
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        Ok(())
    }

    pub(super) fn authorize(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        if self.token.is_empty() {
            return Ok(());
        }
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        // Hashes of equal length compared whole, so timing tells little about the token.
        if payload_hash(given.as_bytes()) == payload_hash(self.token.as_bytes()) {
            Ok(())
        } else {
            Err(Refusal::Unauthorized)
        }
    }

    /// The source of a request that passed authentication.
    pub(super) fn admit(&self, headers: &HeaderMap, id: &str) -> Result<&SourceState, Refusal> {
        self.authorize(headers)?;
        self.sources.get(id).ok_or(Refusal::UnknownSource)
    }
}

/// Why a request gets no data; answered with a JSON `{"error": ..}`. Messages never repeat
/// what the client sent (keys and person ids are personal data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// 401: no or wrong bearer token.
    Unauthorized,
    /// 404: the source is not simulated.
    UnknownSource,
    /// 404: the source has no record with that key.
    UnknownRecord,
    /// 400: a query parameter out of range.
    BadQuery(&'static str),
    /// 500: a [`FaultKind::Error500`].
    InjectedError,
}

#[derive(Serialize)]
pub(super) struct ErrorBody {
    pub(super) error: &'static str,
}

impl Refusal {
    fn status_and_message(self) -> (StatusCode, &'static str) {
        match self {
            Refusal::Unauthorized => (StatusCode::UNAUTHORIZED, "missing or wrong bearer token"),
            Refusal::UnknownSource => (StatusCode::NOT_FOUND, "unknown source"),
            Refusal::UnknownRecord => (StatusCode::NOT_FOUND, "unknown record key"),
            Refusal::BadQuery(why) => (StatusCode::BAD_REQUEST, why),
            Refusal::InjectedError => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "injected fault: internal error",
            ),
        }
    }

    /// What the answer's `error` says.
    pub(super) fn message(self) -> &'static str {
        self.status_and_message().1
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, error) = self.status_and_message();
        let mut response = (status, Json(ErrorBody { error })).into_response();
        if self == Refusal::Unauthorized {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// `since` (default 0) and `limit` (default [`DEFAULT_LIMIT`], 1..=[`MAX_LIMIT`]).
pub(super) fn feed_params(query: &BTreeMap<String, String>) -> Result<(u64, usize), Refusal> {
    let since = match query.get("since") {
        None => 0,
        Some(s) => s
            .parse::<u64>()
            .map_err(|_| Refusal::BadQuery("since must be a whole number"))?,
    };
    let limit = match query.get("limit") {
        None => DEFAULT_LIMIT,
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or(Refusal::BadQuery(
                "limit must be a whole number in 1..=5000",
            ))?,
    };
    Ok((since, limit))
}

/// A page body as the source's system sends it, cut in half for [`FaultKind::Truncated`].
pub(super) fn page_response(codec: &Codec, json: Vec<u8>, fault: Option<FaultKind>) -> Response {
    let (mut body, content_type) = match codec {
        Codec::Plain => (json, "application/json"),
        encrypted => (encrypted.encode(&json), "application/octet-stream"),
    };
    if fault == Some(FaultKind::Truncated) {
        body.truncate(body.len() / 2);
    }
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

pub(super) type Sim = State<Arc<DeptSim>>;

pub(super) async fn feed(
    State(sim): Sim,
    Path(id): Path<String>,
    headers: HeaderMap,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Result<Response, Refusal> {
    let source = sim.admit(&headers, &id)?;
    let Query(query) = query.map_err(|_| Refusal::BadQuery("malformed query string"))?;
    let (since, limit) = feed_params(&query)?;
    let fault = sim.draw_fault();
    sim.play_fault(&id, fault).await?;
    let since = match fault {
        Some(FaultKind::DuplicatePage) => since.saturating_sub(limit as u64 / 2),
        _ => since,
    };
    let json = lock(&source.records).feed_page(since, limit);
    Ok(page_response(&source.codec, json, fault))
}

pub(super) async fn person_records(
    State(sim): Sim,
    Path((id, pid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let source = sim.admit(&headers, &id)?;
    let fault = sim.draw_fault();
    sim.play_fault(&id, fault).await?;
    let json = lock(&source.records).person_page(&pid);
    Ok(page_response(&source.codec, json, fault))
}

pub(super) async fn digest(
    State(sim): Sim,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<DigestReply>, Refusal> {
    let source = sim.admit(&headers, &id)?;
    let (count, digest) = lock(&source.records).digest();
    Ok(Json(DigestReply { count, digest }))
}

pub(super) async fn touch(
    State(sim): Sim,
    Path((id, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<TouchReply>, Refusal> {
    sim.admit(&headers, &id)?;
    let (seq, payload) = sim.touch_record(&id, &key).ok_or(Refusal::UnknownRecord)?;
    Ok(Json(TouchReply { key, seq, payload }))
}

/// `POST /sources/{id}/records/{key}/set?field=F&value=V` (control): bad data at the
/// department system.
pub(super) async fn set_field(
    State(sim): Sim,
    Path((id, key)): Path<(String, String)>,
    headers: HeaderMap,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Result<Json<TouchReply>, Refusal> {
    sim.admit(&headers, &id)?;
    let Query(query) = query.map_err(|_| Refusal::BadQuery("malformed query string"))?;
    let (Some(field), Some(value)) = (query.get("field"), query.get("value")) else {
        return Err(Refusal::BadQuery("field and value are required"));
    };
    let (seq, payload) = sim.set_record_field(&id, &key, field, value)?;
    Ok(Json(TouchReply { key, seq, payload }))
}

pub(super) async fn stats(State(sim): Sim, headers: HeaderMap) -> Result<Json<SimStats>, Refusal> {
    sim.authorize(&headers)?;
    Ok(Json(sim.stats()))
}
