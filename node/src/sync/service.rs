//! The node's connectors as a service: submitters that move queued records into transactions
//! and settle them, schedulers, pull-through, and the API's view ([`SyncService`]).

use super::*;

/// How a submitted transaction ended.
enum Settled {
    Committed(Height),
    Refused(String),
}

/// Submits `tx` until it is committed or refused; a copy committed before a restart counts
/// (same id). Admission refusals that are temporary (mempool full, already waiting) are
/// retried with backoff.
async fn settle(conn: &Connector, ctx: &ApiContext, tx: SignedTx) -> Settled {
    let id = tx.id();
    let mut attempt = 0u32;
    loop {
        if let Ok(Some(loc)) = ctx.store.tx_location(&id) {
            return Settled::Committed(loc.height);
        }
        match govchain_api::routes::submit_own(ctx, tx.clone(), true).await {
            Ok(Some((h, _))) => return Settled::Committed(h),
            Ok(None) => attempt = 0,
            Err(e) => {
                if let Ok(Some(loc)) = ctx.store.tx_location(&id) {
                    return Settled::Committed(loc.height);
                }
                let temporary = e.status.as_u16() == 503 || e.status.as_u16() == 409;
                if !temporary {
                    return Settled::Refused(format!("{}: {}", e.code, e.message));
                }
                tokio::time::sleep(conn.backoff(attempt)).await;
                attempt = attempt.saturating_add(1);
            }
        }
    }
}

/// This node's connectors, their submitters and schedulers.
pub struct Connectors {
    ctx: ApiContext,
    conns: BTreeMap<String, Arc<Connector>>,
}

impl Connectors {
    /// Builds a connector per configuration entry (each source must exist and belong to this
    /// node's department), resumes transactions left in flight, and starts the submitters and
    /// schedulers until `stop`.
    pub fn start(
        ctx: ApiContext,
        cfgs: &[ConnectorConfig],
        clock: Arc<dyn Clock>,
        stop: watch::Receiver<bool>,
    ) -> anyhow::Result<Arc<Self>> {
        if ctx.security.signer.is_none() {
            anyhow::bail!("connectors need the node's signing key");
        }
        let mut conns = BTreeMap::new();
        for cfg in cfgs {
            let source = source_on_chain(&ctx.store, &cfg.source)?.ok_or_else(|| {
                anyhow::anyhow!("connector {}: no such data source on chain", cfg.source)
            })?;
            if source.department != ctx.department {
                anyhow::bail!(
                    "connector {}: the source belongs to department {}, this node to {}; \
                     only the owning department's node submits its records",
                    cfg.source,
                    source.department,
                    ctx.department
                );
            }
            let conn = Connector::new(cfg.clone(), source, ctx.store.clone(), clock.clone())?;
            conns.insert(cfg.source.clone(), conn);
        }
        let this = Arc::new(Self { ctx, conns });
        for conn in this.conns.values() {
            let resumed = conn.reload_inflight()?;
            if !resumed.is_empty() {
                tracing::info!(target: "node.sync", source = %conn.id(), txs = resumed.len(), "resuming transactions in flight before the restart");
            }
            for tx in resumed {
                this.launch(conn, tx);
            }
            tokio::spawn(Self::submitter(this.clone(), conn.clone(), stop.clone()));
            tokio::spawn(Self::scheduler(conn.clone(), clock.clone(), stop.clone()));
        }
        Ok(this)
    }

    fn sign(&self) -> impl Fn(Vec<u8>) -> SignedTx + '_ {
        move |payload| {
            self.ctx
                .security
                .signer
                .as_ref()
                .expect("checked at start")
                .sign(payload, crate::now_ms())
        }
    }

    /// Submits `tx` in the background and settles it.
    fn launch(&self, conn: &Arc<Connector>, tx: SignedTx) {
        let (conn, ctx) = (conn.clone(), self.ctx.clone());
        tokio::spawn(async move {
            let id = tx.id();
            let outcome = settle(&conn, &ctx, tx).await;
            let committed = match &outcome {
                Settled::Committed(h) => {
                    tracing::debug!(target: "node.sync", source = %conn.id(), tx = %id, height = %h, "records committed");
                    true
                }
                Settled::Refused(e) => {
                    tracing::warn!(target: "node.sync", source = %conn.id(), tx = %id, error = %e, "records refused by the chain");
                    conn.failed(&format!("transaction refused: {e}"));
                    false
                }
            };
            if let Err(e) = blocking(|| conn.settled(&id, committed)) {
                tracing::error!(target: "node.sync", source = %conn.id(), error = %e, "outbox");
            }
            if !committed {
                // Do not hammer the chain with a batch it refuses.
                let failures = conn.health().consecutive_failures;
                tokio::time::sleep(conn.backoff(failures)).await;
                conn.wake.notify_one();
            }
        });
    }

    /// Moves queued records into transactions as long as the in-flight limit allows.
    async fn submitter(this: Arc<Self>, conn: Arc<Connector>, mut stop: watch::Receiver<bool>) {
        loop {
            loop {
                match blocking(|| conn.next_tx(&this.sign(), None, false)) {
                    Ok(Some(tx)) => this.launch(&conn, tx),
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!(target: "node.sync", source = %conn.id(), error = %e, "outbox");
                        break;
                    }
                }
            }
            tokio::select! {
                _ = conn.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// Runs the source on its schedule, inside its window.
    async fn scheduler(
        conn: Arc<Connector>,
        clock: Arc<dyn Clock>,
        mut stop: watch::Receiver<bool>,
    ) {
        let stopped = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        conn.health().next_run_at = conn.schedule.next_run(clock.now_ms());
        let c = conn.clone();
        crate::schedule::run_scheduled(&conn.schedule, &*clock, stopped, move |_at, end| {
            let c = c.clone();
            async move {
                c.health().next_run_at = None;
                c.run("schedule", end, None).await;
                c.health().next_run_at = c.schedule.next_run(c.clock.now_ms());
            }
        })
        .await;
    }

    /// The connector of `source`.
    pub fn get(&self, source: &str) -> Option<&Arc<Connector>> {
        self.conns.get(source)
    }

    /// Refreshes one person from one connector: fetch, queue, submit at once, wait for the
    /// commit.
    async fn refresh_one(
        &self,
        conn: &Arc<Connector>,
        person: &str,
        until: tokio::time::Instant,
    ) -> Result<Option<Height>, String> {
        let mut run = RunRecord::default();
        let path = format!("/sources/{}/persons/{person}", conn.id());
        let page = conn
            .fetch(&path, &mut run, Some(until))
            .await
            .map_err(|e| e.to_string())?;
        blocking(|| conn.ingest(&page.records, None, &mut run))
            .map_err(|e| format!("outbox: {e}"))?;
        let keys: HashSet<String> = page.records.iter().map(|e| e.key.clone()).collect();
        let mut waited = run.queued > 0;
        loop {
            // Launch what waits and is not in flight yet, ahead of the batch queue.
            match blocking(|| conn.next_tx(&self.sign(), Some(&keys), true)) {
                Ok(Some(tx)) => {
                    self.launch(conn, tx);
                    continue;
                }
                Ok(None) => {}
                Err(e) => return Err(format!("outbox: {e}")),
            }
            let waiting = keys.iter().any(|k| {
                conn.store
                    .get_raw(CF_OUTBOX, &k_pending(conn.id(), k))
                    .ok()
                    .flatten()
                    .is_some()
            });
            if !waiting {
                break;
            }
            waited = true;
            if tokio::time::Instant::now() >= until {
                return Err("fetched, not yet committed within the deadline".into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The records are committed at or below the tip.
        Ok(waited.then(|| self.ctx.tip.borrow().height))
    }
}

impl SyncService for Connectors {
    fn status(&self) -> Value {
        let sources: Vec<Value> = self.conns.values().map(|c| c.status()).collect();
        let unhealthy: Vec<&str> = self
            .conns
            .values()
            .filter(|c| !c.healthy())
            .map(|c| c.id())
            .collect();
        json!({"department": self.ctx.department, "unhealthy": unhealthy, "sources": sources})
    }

    fn history(&self, source: &str, limit: usize) -> Option<Value> {
        let c = self.conns.get(source)?;
        Some(json!({"source": source, "runs": c.history(limit)}))
    }

    fn trigger(&self, source: &str) -> Result<(), String> {
        let c = self
            .conns
            .get(source)
            .ok_or_else(|| format!("no connector for source {source}"))?
            .clone();
        if c.running.load(Ordering::Acquire) {
            return Err(format!("a run of {source} is in progress"));
        }
        tokio::spawn(async move {
            let until = tokio::time::Instant::now() + Duration::from_secs(3600);
            c.run("manual", None, Some(until)).await;
        });
        Ok(())
    }

    fn rejected(&self, source: &str, limit: usize) -> Option<Result<Value, String>> {
        let c = self.conns.get(source)?;
        Some(blocking(|| c.rejected(limit)).map_err(|e| format!("outbox: {e}")))
    }

    fn retry_rejected(&self, source: &str) -> Option<Result<Value, String>> {
        let c = self.conns.get(source)?;
        let retry = match blocking(|| c.retry_rejected()) {
            Ok(r) => r,
            Err(e) => return Some(Err(format!("outbox: {e}"))),
        };
        let run_started = self.trigger(source).is_ok();
        Some(Ok(
            json!({"source": source, "retry": retry, "run_started": run_started}),
        ))
    }

    fn department_of(&self, source: &str) -> Option<String> {
        self.conns.get(source).map(|_| self.ctx.department.clone())
    }

    fn refresh_person<'a>(
        &'a self,
        person: &'a str,
        deadline: Duration,
    ) -> BoxFuture<'a, Freshness> {
        Box::pin(async move {
            let until = tokio::time::Instant::now() + deadline;
            let results = futures::future::join_all(self.conns.values().map(|c| async move {
                (c.id().to_string(), self.refresh_one(c, person, until).await)
            }))
            .await;
            let mut f = Freshness::default();
            for (source, r) in results {
                match r {
                    Ok(h) => {
                        f.height = f.height.max(h.map(|h| h.0));
                        f.refreshed.push(source);
                    }
                    Err(reason) => f.stale.push(StaleSource { source, reason }),
                }
            }
            f
        })
    }

    fn unhealthy(&self) -> Vec<String> {
        self.conns
            .values()
            .filter(|c| !c.healthy())
            .map(|c| c.id().to_string())
            .collect()
    }
}
