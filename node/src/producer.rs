//! The chain task of a single-validator node: it owns the mempool and the store's write path,
//! admits transactions, builds a block when transactions wait (at most `block_interval_ms` after
//! the first, or at once when a block is full), signs its one-signature certificate, commits it
//! in one synced batch, and tells waiting clients. Multi-validator consensus replaces the
//! "sign alone" step (issue 4); everything else stays.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use govchain_api::{CommitNotice, Submission};
use govchain_genesis::config::ChainConfig;
use govchain_ledger::{sign_commit, Keypair, Round, Store, TimestampMs, Tip};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::chain::ChainState;
use crate::mempool::Mempool;

/// Wall-clock milliseconds (the node's IO edge; chaincode gets time only from headers).
pub fn now_ms() -> TimestampMs {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    TimestampMs(ms)
}

/// Tells a waiting client what became of its transaction. A client that stopped waiting is no
/// error: the outcome is on chain either way.
fn notify(waiter: Option<oneshot::Sender<CommitNotice>>, notice: CommitNotice) {
    if let Some(w) = waiter {
        if w.send(notice).is_err() {
            tracing::debug!(target: "node.chain", "client stopped waiting before the commit");
        }
    }
}

/// Everything the chain task owns.
pub struct ChainTask {
    /// The store (single writer: this task).
    pub store: Store,
    /// Chain head.
    pub state: ChainState,
    /// This node's validator key.
    pub key: Keypair,
    /// Limits.
    pub cfg: ChainConfig,
    /// Admitted transactions arrive here.
    pub submissions: mpsc::Receiver<Submission>,
    /// Publishes the tip.
    pub tip: watch::Sender<Tip>,
    /// Publishes the mempool size.
    pub mempool_len: Arc<AtomicUsize>,
    /// Becomes true at shutdown.
    pub shutdown: watch::Receiver<bool>,
}

impl ChainTask {
    /// Runs until shutdown; commits what is waiting before it returns.
    pub async fn run(mut self) -> anyhow::Result<()> {
        let mut mempool = Mempool::new(self.cfg.mempool_max_txs, self.cfg.mempool_max_bytes);
        let interval = Duration::from_millis(self.cfg.block_interval_ms);
        let heartbeat =
            (self.cfg.heartbeat_ms > 0).then(|| Duration::from_millis(self.cfg.heartbeat_ms));
        let mut deadline: Option<Instant> = None;
        let mut last_block = Instant::now();
        loop {
            let wake = match (deadline, heartbeat) {
                (Some(d), _) => d,
                (None, Some(hb)) => last_block + hb,
                (None, None) => Instant::now() + Duration::from_secs(3600),
            };
            tokio::select! {
                sub = self.submissions.recv() => {
                    let Some(sub) = sub else { break };
                    mempool.admit(sub);
                    if deadline.is_none() && !mempool.is_empty() {
                        deadline = Some(Instant::now() + interval);
                    }
                    if mempool.len() < self.cfg.max_block_txs {
                        self.mempool_len.store(mempool.len(), Ordering::Relaxed);
                        continue;
                    }
                }
                _ = tokio::time::sleep_until(wake) => {}
                _ = self.shutdown.changed() => {
                    if *self.shutdown.borrow() { break; }
                    continue;
                }
            }
            self.produce(&mut mempool)?;
            last_block = Instant::now();
            deadline = (!mempool.is_empty()).then(|| Instant::now() + interval);
            self.mempool_len.store(mempool.len(), Ordering::Relaxed);
        }
        // Drain what was admitted so no acknowledged admission is left behind on a clean stop.
        while !mempool.is_empty() {
            self.produce(&mut mempool)?;
        }
        tracing::info!(target: "node.chain", height = %self.state.tip.height, "chain task stopped");
        Ok(())
    }

    fn produce(&mut self, mempool: &mut Mempool) -> anyhow::Result<()> {
        let entries = mempool.take(self.cfg.max_block_txs, self.cfg.max_block_bytes);
        let height = self.state.tip.height.next();
        let span = tracing::info_span!("ledger.block.commit", height = height.0);
        let _g = span.enter();
        let (txs, mut waiters): (Vec<_>, Vec<_>) =
            entries.into_iter().map(|e| (e.tx, e.waiter)).unzip();
        let candidates = txs.len();
        let crate::chain::Built {
            block,
            executed,
            refused,
        } = tokio::task::block_in_place(|| {
            self.state
                .build_block(&self.store, txs, &self.key, Round(0), now_ms())
        })?;
        for (i, err) in refused.iter().rev() {
            notify(waiters.remove(*i), CommitNotice::Rejected(err.clone()));
        }
        let commit = sign_commit(
            &self.state.chain_id,
            height,
            Round(0),
            block.hash(),
            &[&self.key],
        );
        let tip = tokio::task::block_in_place(|| {
            self.store
                .commit_block(&block, &commit, &executed.writes, executed.app_hash)
        })?;
        self.state.advance(&block, &executed);
        debug_assert_eq!(self.state.tip, tip);
        self.tip.send_replace(tip);
        tracing::info!(
            target: "node.chain",
            txs = block.txs.len(),
            refused = refused.len(),
            candidates,
            "committed block"
        );
        for (index, w) in waiters.into_iter().enumerate() {
            let index = index as u32;
            notify(
                w,
                CommitNotice::Committed {
                    height: tip.height,
                    index,
                },
            );
        }
        Ok(())
    }
}
