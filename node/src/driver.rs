//! The consensus driver: one task that owns the consensus state machine, the mempool and the
//! store's write path, and performs the machine's actions (DESIGN §4, §5).
//!
//! - Transactions from the API (already verified) and from gossip (verified here, in batches)
//!   enter the mempool; locally admitted ones are gossiped in batches.
//! - A height starts only when there is work (a waiting transaction, a peer's message for it, or
//!   the heartbeat), so an idle chain does not spin through rounds.
//! - Proposals travel with their block; a block is executed once when validated and the result
//!   is reused at commit. Transactions already verified on admission are not verified again.
//! - Commit writes block, certificate, state and tip in one synced batch, then tells waiting
//!   clients; a node that is behind fetches blocks with certificates from peers and checks each
//!   exactly like the auditor's replay.
//! - The machine's signing state is persisted (synced) before any message it signed leaves.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use govchain_api::{CommitNotice, Submission};
use govchain_chaincode::evidence::VoteEquivocation;
use govchain_chaincode::TxKind;
use govchain_consensus::{
    Action, Config as ConsensusConfig, Consensus, Evidence, Input, Message, PersistedState,
    SignedProposal, SignedVote,
};
use govchain_genesis::config::ChainConfig;
use govchain_ledger::store::CF_META;
use govchain_ledger::{
    codec, crypto, Block, Commit, Hash, Height, Keypair, Round, SignedTx, Store, Tip, TxBody, TxId,
    MAX_BLOCK_BYTES, MAX_TX_BYTES,
};
use libp2p::gossipsub::MessageId;
use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::chain::{ChainState, Executed};
use crate::mempool::Mempool;
use crate::net::{
    NetCommand, NetEvent, SyncRequest, SyncResponse, Topic, Verdict, MAX_GOSSIP_BYTES,
    MAX_SYNC_BLOCKS,
};
use crate::now_ms;

/// Store key of the persisted signing state.
const CONSENSUS_STATE: &[u8] = b"consensus_state";
/// Most transaction bytes per gossip batch.
const TX_BATCH_BYTES: usize = 2 * 1024 * 1024;
/// How often locally admitted transactions are gossiped.
const TX_FLUSH_MS: u64 = 10;
/// Without progress for this long, re-send this height's own messages.
const REBROADCAST_MS: u64 = 1000;
/// Most proposed block bodies kept.
const MAX_PENDING_BLOCKS: usize = 64;

/// A consensus message on the wire: proposals carry their block.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum WireMsg {
    /// A proposal with its block's canonical bytes.
    Proposal {
        /// The signed proposal.
        proposal: SignedProposal,
        /// The block.
        #[serde(with = "serde_bytes")]
        block: Vec<u8>,
    },
    /// A vote.
    Vote(SignedVote),
}

/// `resend` makes a re-sent message a new gossip message (gossip deduplicates by content).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    /// Publication counter of the sender.
    pub resend: u64,
    /// The message.
    pub msg: WireMsg,
}

/// Results that come back to the driver from helper tasks.
enum Internal {
    Timeout(Input),
    Sync(anyhow::Result<(PeerId, SyncResponse)>),
}

/// Everything the driver needs at start.
pub struct DriverParts {
    /// The store.
    pub store: Store,
    /// The chain head.
    pub state: ChainState,
    /// This node's key.
    pub key: Keypair,
    /// Block and mempool limits.
    pub chain: ChainConfig,
    /// Consensus timeouts.
    pub consensus: ConsensusConfig,
    /// Admitted transactions from the API.
    pub submissions: mpsc::Receiver<Submission>,
    /// Network commands.
    pub net: mpsc::Sender<NetCommand>,
    /// Network events.
    pub net_events: mpsc::Receiver<NetEvent>,
    /// Tip publication.
    pub tip: watch::Sender<Tip>,
    /// Mempool size publication.
    pub mempool_len: Arc<AtomicUsize>,
    /// Becomes true at shutdown.
    pub shutdown: watch::Receiver<bool>,
}

/// The driver.
pub struct Driver {
    store: Store,
    st: ChainState,
    key: Keypair,
    cfg: ChainConfig,
    ccfg: ConsensusConfig,
    machine: Consensus,
    is_validator: bool,
    started: bool,
    replay: Option<OwnSigned>,
    mempool: Mempool,
    waiters: HashMap<TxId, oneshot::Sender<CommitNotice>>,
    blocks: HashMap<Hash, Block>,
    executed: HashMap<Hash, Executed>,
    pending_build: Option<(Height, Round)>,
    own: Vec<Message>,
    resend: u64,
    last_progress: Instant,
    last_block: Instant,
    tx_out: Vec<serde_bytes::ByteBuf>,
    tx_out_bytes: usize,
    syncing: bool,
    net: mpsc::Sender<NetCommand>,
    internal_tx: mpsc::Sender<Internal>,
    tip: watch::Sender<Tip>,
    mempool_len: Arc<AtomicUsize>,
}

/// Decodes a gossiped consensus message; a proposal's block must be the proposed one.
fn parse_consensus_msg(data: &[u8]) -> Option<(Message, Option<Block>)> {
    let env = codec::decode::<Envelope>(data, MAX_GOSSIP_BYTES).ok()?;
    match env.msg {
        WireMsg::Proposal { proposal, block } => {
            let block = Block::decode(&block).ok()?;
            let p = &proposal.proposal;
            if block.hash() != p.block_hash || block.header.height != p.height {
                return None;
            }
            Some((Message::Proposal(proposal), Some(block)))
        }
        WireMsg::Vote(v) => Some((Message::Vote(v), None)),
    }
}

/// This node's signed messages of the height being decided, kept with the signing state so a
/// restarted node can count and re-send them (it must not sign again in those steps).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct OwnSigned {
    height: Height,
    msgs: Vec<WireMsg>,
}

/// Store key of [`OwnSigned`].
const CONSENSUS_MSGS: &[u8] = b"consensus_msgs";

fn load_own_signed(store: &Store) -> anyhow::Result<Option<OwnSigned>> {
    match store.get_raw(CF_META, CONSENSUS_MSGS)? {
        None => Ok(None),
        Some(b) => Ok(Some(
            codec::decode(&b, codec::MAX_DECODE_BYTES).context("persisted own messages")?,
        )),
    }
}

fn load_persisted(store: &Store) -> anyhow::Result<Option<PersistedState>> {
    match store.get_raw(CF_META, CONSENSUS_STATE)? {
        None => Ok(None),
        Some(b) => Ok(Some(
            codec::decode(&b, 4096).context("persisted consensus state")?,
        )),
    }
}

fn notify(waiter: Option<oneshot::Sender<CommitNotice>>, notice: CommitNotice) {
    if let Some(w) = waiter {
        if w.send(notice).is_err() {
            tracing::debug!(target: "node.driver", "client stopped waiting before the commit");
        }
    }
}

impl Driver {
    /// Runs until shutdown.
    pub async fn run(parts: DriverParts) -> anyhow::Result<()> {
        let DriverParts {
            store,
            state,
            key,
            chain,
            consensus,
            mut submissions,
            net,
            mut net_events,
            tip,
            mempool_len,
            mut shutdown,
        } = parts;
        let is_validator = state.validators.get(&key.public()).is_some();
        let restored = load_persisted(&store)?;
        let replay = load_own_signed(&store)?;
        let machine = Consensus::new(
            state.chain_id.clone(),
            is_validator.then(|| key.clone()),
            consensus.clone(),
            restored,
        );
        let (internal_tx, mut internal) = mpsc::channel(1024);
        let mut d = Driver {
            mempool: Mempool::new(chain.mempool_max_txs, chain.mempool_max_bytes),
            store,
            st: state,
            key,
            cfg: chain,
            ccfg: consensus,
            machine,
            is_validator,
            started: false,
            replay,
            waiters: HashMap::new(),
            blocks: HashMap::new(),
            executed: HashMap::new(),
            pending_build: None,
            own: Vec::new(),
            resend: 0,
            last_progress: Instant::now(),
            last_block: Instant::now(),
            tx_out: Vec::new(),
            tx_out_bytes: 0,
            syncing: false,
            net,
            internal_tx,
            tip,
            mempool_len,
        };
        let mut tick = tokio::time::interval(Duration::from_millis(TX_FLUSH_MS));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                sub = submissions.recv() => match sub {
                    Some(sub) => d.on_submission(sub).await,
                    None => break,
                },
                ev = net_events.recv() => match ev {
                    Some(ev) => d.on_net(ev).await?,
                    None => break,
                },
                Some(i) = internal.recv() => match i {
                    Internal::Timeout(input) => d.feed(input).await?,
                    Internal::Sync(r) => d.on_sync(r).await?,
                },
                _ = tick.tick() => d.on_tick().await?,
                _ = shutdown.changed() => if *shutdown.borrow() { break },
            }
            d.kick().await?;
            d.mempool_len.store(d.mempool.len(), Ordering::Relaxed);
        }
        tracing::info!(target: "node.driver", height = %d.st.tip.height, "driver stopped");
        Ok(())
    }

    async fn send(&self, c: NetCommand) {
        if self.net.send(c).await.is_err() {
            tracing::warn!(target: "node.driver", "network task is gone");
        }
    }

    async fn on_submission(&mut self, sub: Submission) {
        let Submission {
            tx,
            id,
            bytes,
            reply,
            on_commit,
        } = sub;
        let encoded = tx.encode();
        let r = self.mempool.admit(tx, id, bytes);
        if r.is_ok() {
            if let Some(w) = on_commit {
                self.waiters.insert(id, w);
            }
            self.tx_out_bytes += encoded.len();
            self.tx_out.push(serde_bytes::ByteBuf::from(encoded));
        }
        if reply.send(r).is_err() {
            tracing::debug!(target: "node.driver", tx = %id, "client left before admission reply");
        }
    }

    /// Starts the next height, or builds the pending proposal, as soon as transactions wait.
    async fn kick(&mut self) -> anyhow::Result<()> {
        if self.mempool.is_empty() {
            return Ok(());
        }
        if !self.started && !self.syncing {
            self.start_height().await?;
        }
        if self.pending_build.is_some() {
            self.try_build(false).await?;
        }
        Ok(())
    }

    async fn on_tick(&mut self) -> anyhow::Result<()> {
        self.flush_txs().await;
        let hb = self.cfg.heartbeat_ms;
        let heartbeat_due = hb > 0 && self.last_block.elapsed() >= Duration::from_millis(hb);
        if !self.started && !self.syncing && (!self.mempool.is_empty() || heartbeat_due) {
            self.start_height().await?;
        }
        if self.pending_build.is_some() {
            self.try_build(heartbeat_due).await?;
        }
        if self.started && self.last_progress.elapsed() >= Duration::from_millis(REBROADCAST_MS) {
            self.last_progress = Instant::now();
            for m in self.own.clone() {
                self.publish(&m).await;
            }
        }
        Ok(())
    }

    async fn flush_txs(&mut self) {
        while !self.tx_out.is_empty() {
            let mut batch = Vec::new();
            let mut bytes = 0;
            while let Some(t) = self.tx_out.pop() {
                bytes += t.len();
                batch.push(t);
                if bytes >= TX_BATCH_BYTES {
                    break;
                }
            }
            self.tx_out_bytes = self.tx_out_bytes.saturating_sub(bytes);
            match codec::encode(&batch) {
                Ok(b) => self.send(NetCommand::Publish(Topic::Tx, b)).await,
                Err(e) => tracing::error!(target: "node.driver", error = %e, "tx batch encoding"),
            }
        }
    }

    async fn on_net(&mut self, ev: NetEvent) -> anyhow::Result<()> {
        match ev {
            NetEvent::Connected(_) => {
                if !self.syncing {
                    self.request_sync(self.st.tip.height.next()).await;
                }
            }
            NetEvent::Subscribed(_) => {
                for m in self.own.clone() {
                    self.publish(&m).await;
                }
            }
            NetEvent::Gossip {
                topic: Topic::Tx,
                from,
                id,
                data,
            } => {
                let verdict = tokio::task::block_in_place(|| self.on_tx_batch(from, &data));
                self.send(NetCommand::Validate { id, from, verdict }).await;
            }
            NetEvent::Gossip {
                topic: Topic::Consensus,
                from,
                id,
                data,
            } => {
                self.on_consensus_msg(from, id, &data).await?;
            }
        }
        Ok(())
    }

    /// Verifies and admits a gossiped batch of transactions; an invalid batch is rejected
    /// (its sender penalised) with the reason logged.
    fn on_tx_batch(&mut self, from: PeerId, data: &[u8]) -> Verdict {
        match self.admit_tx_batch(data) {
            Ok(()) => Verdict::Accept,
            Err(reason) => {
                tracing::warn!(target: "node.driver", peer = %from, reason, "invalid transaction gossip");
                Verdict::Reject
            }
        }
    }

    fn admit_tx_batch(&mut self, data: &[u8]) -> Result<(), &'static str> {
        let batch = codec::decode::<Vec<serde_bytes::ByteBuf>>(data, MAX_GOSSIP_BYTES)
            .map_err(|_| "not a transaction batch")?;
        let mut fresh = Vec::new();
        for b in &batch {
            let tx =
                SignedTx::decode(b).map_err(|_| "a transaction does not decode or is oversize")?;
            if tx.body.chain_id != self.st.chain_id {
                return Err("a transaction is for another chain");
            }
            let id = tx.id();
            if self.mempool.contains(&id) || matches!(self.store.tx_location(&id), Ok(Some(_))) {
                continue;
            }
            fresh.push((tx, id, b.len()));
        }
        let items: Vec<_> = fresh.iter().map(|(t, _, _)| t.sig_item()).collect();
        crypto::verify_batch(&items).map_err(|_| "a transaction signature is invalid")?;
        let mut refused = 0;
        for (tx, id, bytes) in fresh {
            if self.mempool.admit(tx, id, bytes).is_err() {
                refused += 1;
            }
        }
        if refused > 0 {
            tracing::debug!(target: "node.driver", refused, "gossiped transactions not admitted (full or duplicate nonce)");
        }
        Ok(())
    }

    async fn on_consensus_msg(
        &mut self,
        from: PeerId,
        id: MessageId,
        data: &[u8],
    ) -> anyhow::Result<()> {
        let verdict = |verdict| NetCommand::Validate {
            id: id.clone(),
            from,
            verdict,
        };
        let Some((msg, block)) = parse_consensus_msg(data) else {
            tracing::warn!(target: "node.driver", peer = %from, "malformed consensus message");
            self.send(verdict(Verdict::Reject)).await;
            return Ok(());
        };
        let height = match &msg {
            Message::Proposal(p) => p.proposal.height,
            Message::Vote(v) => v.vote.height,
        };
        if height <= self.st.tip.height {
            self.send(verdict(Verdict::Ignore)).await;
            return Ok(());
        }
        if height == self.st.tip.height.next() && !self.started && !self.syncing {
            self.start_height().await?;
        }
        if let Err(e) = self.machine.check_message(&msg) {
            if e.is_misbehaviour() {
                tracing::warn!(target: "node.driver", peer = %from, error = %e, "invalid consensus message");
                self.send(verdict(Verdict::Reject)).await;
                return Ok(());
            }
        }
        self.send(verdict(Verdict::Accept)).await;
        if let Some(b) = block {
            if self.blocks.len() < MAX_PENDING_BLOCKS {
                self.blocks.insert(b.hash(), b);
            }
        }
        let input = match msg {
            Message::Proposal(p) => Input::Proposal(p),
            Message::Vote(v) => Input::Vote(v),
        };
        self.feed(input).await
    }

    /// Publishes a consensus message. Each publication is a new gossip message (`resend`
    /// differs), so a message the machine re-sends reaches peers that missed it.
    async fn publish(&mut self, m: &Message) {
        self.resend += 1;
        let msg = match m {
            Message::Proposal(p) => {
                let Some(b) = self.blocks.get(&p.proposal.block_hash) else {
                    tracing::warn!(target: "node.driver", "own proposal's block is missing");
                    return;
                };
                WireMsg::Proposal {
                    proposal: p.clone(),
                    block: b.encode(),
                }
            }
            Message::Vote(v) => WireMsg::Vote(v.clone()),
        };
        match codec::encode(&Envelope {
            resend: self.resend,
            msg,
        }) {
            Ok(bytes) => {
                self.send(NetCommand::Publish(Topic::Consensus, bytes))
                    .await
            }
            Err(e) => {
                tracing::error!(target: "node.driver", error = %e, "encoding consensus message")
            }
        }
    }

    async fn start_height(&mut self) -> anyhow::Result<()> {
        let inputs = self.begin_height()?;
        self.feed_all(inputs.into()).await
    }

    /// Marks the next height started and returns its `NewHeight` input, followed by this
    /// node's own messages of that height signed before a restart (empty if started).
    fn begin_height(&mut self) -> anyhow::Result<Vec<Input>> {
        if self.started {
            return Ok(Vec::new());
        }
        let member = self.st.validators.get(&self.key.public()).is_some();
        if member != self.is_validator {
            tracing::info!(target: "node.driver", validator = member, "validator membership changed");
            self.is_validator = member;
            self.machine = Consensus::new(
                self.st.chain_id.clone(),
                member.then(|| self.key.clone()),
                self.ccfg.clone(),
                load_persisted(&self.store)?,
            );
        }
        self.started = true;
        self.last_progress = Instant::now();
        let height = self.st.tip.height.next();
        let mut inputs = vec![Input::NewHeight {
            height,
            validators: self.st.validators.clone(),
        }];
        if let Some(own) = self.replay.take().filter(|o| o.height == height) {
            tracing::info!(target: "node.driver", %height, msgs = own.msgs.len(), "re-counting messages signed before the restart");
            for m in own.msgs {
                match m {
                    WireMsg::Proposal { proposal, block } => {
                        if let Ok(b) = Block::decode(&block) {
                            self.blocks.insert(b.hash(), b);
                        }
                        self.own.push(Message::Proposal(proposal.clone()));
                        inputs.push(Input::Proposal(proposal));
                    }
                    WireMsg::Vote(v) => {
                        self.own.push(Message::Vote(v.clone()));
                        inputs.push(Input::Vote(v));
                    }
                }
            }
        }
        Ok(inputs)
    }

    /// Feeds one input and performs every resulting action, including follow-up inputs.
    async fn feed(&mut self, input: Input) -> anyhow::Result<()> {
        self.feed_all(VecDeque::from([input])).await
    }

    /// Feeds inputs in order, with follow-up inputs queued behind them.
    async fn feed_all(&mut self, mut inputs: VecDeque<Input>) -> anyhow::Result<()> {
        while let Some(i) = inputs.pop_front() {
            let actions = self.machine.handle(i);
            let persist = actions.iter().find_map(|a| match a {
                Action::Persist(ps) => Some(ps.clone()),
                _ => None,
            });
            if let Some(ps) = persist {
                let fresh = actions.iter().filter_map(|a| match a {
                    Action::Broadcast(m) => Some(m.clone()),
                    _ => None,
                });
                let msgs: Vec<Message> = self.own.iter().cloned().chain(fresh).collect();
                self.persist_signing(&ps, &msgs)?;
            }
            for a in actions {
                self.perform(a, &mut inputs).await?;
            }
        }
        Ok(())
    }

    fn wire(&self, m: &Message) -> Option<WireMsg> {
        match m {
            Message::Proposal(p) => {
                let b = self.blocks.get(&p.proposal.block_hash)?;
                Some(WireMsg::Proposal {
                    proposal: p.clone(),
                    block: b.encode(),
                })
            }
            Message::Vote(v) => Some(WireMsg::Vote(v.clone())),
        }
    }

    /// Writes the signing state and the messages signed at this height in one synced batch,
    /// before any of them leaves the node.
    fn persist_signing(&self, ps: &PersistedState, msgs: &[Message]) -> anyhow::Result<()> {
        let own = OwnSigned {
            height: self.st.tip.height.next(),
            msgs: msgs.iter().filter_map(|m| self.wire(m)).collect(),
        };
        let state = codec::encode_infallible(ps);
        let own = codec::encode_infallible(&own);
        tokio::task::block_in_place(|| {
            self.store.put_raw_batch(
                CF_META,
                &[(CONSENSUS_STATE, &state[..]), (CONSENSUS_MSGS, &own[..])],
            )
        })?;
        Ok(())
    }

    async fn perform(&mut self, a: Action, inputs: &mut VecDeque<Input>) -> anyhow::Result<()> {
        match a {
            // Written by `feed` together with this batch's messages, before they are sent.
            Action::Persist(_) => {}
            Action::Broadcast(m) => {
                self.publish(&m).await;
                self.own.push(m);
                self.last_progress = Instant::now();
            }
            Action::ScheduleTimeout {
                height,
                round,
                step,
                duration_ms,
            } => {
                let tx = self.internal_tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(duration_ms)).await;
                    let _ = tx
                        .send(Internal::Timeout(Input::Timeout {
                            height,
                            round,
                            step,
                        }))
                        .await;
                });
            }
            Action::BuildBlock { height, round } => {
                self.pending_build = Some((height, round));
                if let Some(i) = self.build_now(false)? {
                    inputs.push_back(i);
                }
            }
            Action::ValidateBlock {
                height,
                round,
                block_hash,
            } => {
                let valid = tokio::task::block_in_place(|| self.validate(&block_hash));
                inputs.push_back(Input::BlockValidated {
                    height,
                    round,
                    block_hash,
                    valid,
                });
            }
            Action::Commit(cert) => {
                self.commit_decided(cert).await?;
                if !self.mempool.is_empty() {
                    inputs.extend(self.begin_height()?);
                }
            }
            Action::RequestSync { from } => {
                if !self.syncing {
                    self.request_sync(from).await;
                }
            }
            Action::Evidence(e) => {
                tracing::warn!(target: "node.driver", evidence = ?e, "equivocation detected");
                self.report_equivocation(e);
            }
        }
        Ok(())
    }

    /// Puts a double vote on chain: a transaction signed by this validator, admitted to its own
    /// mempool and gossiped like any other. Its nonce comes from the offence, so this node
    /// reports one offence once; the first report on chain wins, later ones are refused.
    fn report_equivocation(&mut self, e: Evidence) {
        let Evidence::DoubleVote(a, b) = e else {
            return; // double proposals are logged only (see chaincode::evidence)
        };
        if !self.is_validator {
            return;
        }
        let evidence = VoteEquivocation {
            validator: a.validator,
            a: (a.vote, a.signature),
            b: (b.vote, b.signature),
        };
        let tx = TxBody {
            chain_id: self.st.chain_id.clone(),
            signer: self.key.public(),
            nonce: evidence.nonce(),
            created_at: now_ms(),
            payload: TxKind::ReportEquivocation(evidence).encode(),
        }
        .sign(&self.key);
        let encoded = tx.encode();
        let id = tx.id();
        match self.mempool.admit(tx, id, encoded.len()) {
            Ok(()) => {
                tracing::info!(target: "node.driver", tx = %id, "equivocation evidence submitted");
                self.tx_out_bytes += encoded.len();
                self.tx_out.push(serde_bytes::ByteBuf::from(encoded));
            }
            Err(e) => {
                tracing::debug!(target: "node.driver", error = %e, "equivocation evidence not admitted")
            }
        }
    }

    async fn try_build(&mut self, heartbeat_due: bool) -> anyhow::Result<()> {
        if let Some(i) = self.build_now(heartbeat_due)? {
            self.feed(i).await?;
        }
        Ok(())
    }

    /// Builds the pending proposal's block if there are transactions (or the heartbeat is due).
    fn build_now(&mut self, heartbeat_due: bool) -> anyhow::Result<Option<Input>> {
        let Some((height, round)) = self.pending_build else {
            return Ok(None);
        };
        if (height, round) != (self.machine.height(), self.machine.round())
            || height != self.st.tip.height.next()
        {
            self.pending_build = None;
            return Ok(None);
        }
        if self.mempool.is_empty() && !heartbeat_due {
            return Ok(None);
        }
        self.pending_build = None;
        let candidates = self
            .mempool
            .peek(self.cfg.max_block_txs, self.cfg.max_block_bytes);
        let ids: Vec<TxId> = candidates.iter().map(SignedTx::id).collect();
        let offered = ids.len();
        let t = Instant::now();
        let budget = build_budget(&self.ccfg, round);
        let built = tokio::task::block_in_place(|| {
            self.st
                .build_block(&self.store, candidates, &self.key, round, now_ms(), budget)
        })?;
        let left = offered - built.block.txs.len() - built.refused.len();
        for (i, err) in built.refused {
            self.mempool.remove(&ids[i]);
            notify(self.waiters.remove(&ids[i]), CommitNotice::Rejected(err));
        }
        let hash = built.block.hash();
        tracing::debug!(target: "node.driver", %height, round = round.0, txs = built.block.txs.len(), left, ms = t.elapsed().as_millis() as u64, "built block");
        self.blocks.insert(hash, built.block);
        self.executed.insert(hash, built.executed);
        Ok(Some(Input::BlockBuilt {
            height,
            round,
            block_hash: hash,
        }))
    }

    fn validate(&mut self, hash: &Hash) -> bool {
        if self.executed.contains_key(hash) {
            return true;
        }
        let Some(block) = self.blocks.get(hash) else {
            return false;
        };
        // Transactions in our mempool were verified on admission; verify only the others.
        let items: Vec<_> = block
            .txs
            .iter()
            .filter(|t| !self.mempool.contains(&t.id()))
            .map(SignedTx::sig_item)
            .collect();
        if let Err(e) = crypto::verify_batch(&items) {
            tracing::warn!(target: "node.driver", error = %e, "proposed block has a bad signature");
            return false;
        }
        let t = Instant::now();
        match self.st.check_and_execute(&self.store, block, false) {
            Ok(ex) => {
                tracing::debug!(target: "node.driver", height = %block.header.height, txs = block.txs.len(), ms = t.elapsed().as_millis() as u64, "validated block");
                self.executed.insert(*hash, ex);
                true
            }
            Err(e) => {
                tracing::warn!(target: "node.driver", error = %e, "proposed block is invalid");
                false
            }
        }
    }

    async fn commit_decided(&mut self, cert: Commit) -> anyhow::Result<()> {
        if cert.height <= self.st.tip.height {
            return Ok(());
        }
        let Some(block) = self.blocks.get(&cert.block_hash).cloned() else {
            tracing::info!(target: "node.driver", height = %cert.height, "decided block body missing; syncing");
            self.started = false;
            self.request_sync(self.st.tip.height.next()).await;
            return Ok(());
        };
        let executed = match self.executed.remove(&cert.block_hash) {
            Some(e) => e,
            None => {
                tokio::task::block_in_place(|| self.st.check_and_execute(&self.store, &block, true))
                    .context("the network decided a block this node finds invalid")?
            }
        };
        self.apply(&block, &cert, executed).await
    }

    /// Stores a decided or synced block and moves on.
    async fn apply(
        &mut self,
        block: &Block,
        cert: &Commit,
        executed: Executed,
    ) -> anyhow::Result<()> {
        let height = block.header.height;
        let span = tracing::info_span!("ledger.block.commit", height = height.0);
        let t = Instant::now();
        let tip = {
            let _g = span.enter();
            tokio::task::block_in_place(|| {
                self.store
                    .commit_block(block, cert, &executed.writes, executed.app_hash)
            })?
        };
        let old_validators = self.st.validators.clone();
        self.st.advance(block, &executed);
        self.tip.send_replace(tip);
        for (index, tx) in block.txs.iter().enumerate() {
            let id = tx.id();
            self.mempool.remove(&id);
            notify(
                self.waiters.remove(&id),
                CommitNotice::Committed {
                    height,
                    index: index as u32,
                },
            );
        }
        if self.st.validators != old_validators {
            for v in &self.st.validators.validators {
                self.send(NetCommand::Allow(v.key)).await;
            }
        }
        self.blocks.retain(|_, b| b.header.height > height);
        self.executed.clear();
        self.own.clear();
        self.pending_build = None;
        self.started = false;
        self.last_block = Instant::now();
        tracing::info!(target: "node.driver", %height, txs = block.txs.len(), round = cert.round.0, store_ms = t.elapsed().as_millis() as u64, "committed block");
        Ok(())
    }

    async fn request_sync(&mut self, from: Height) {
        self.syncing = true;
        let (reply, rx) = oneshot::channel();
        let to = Height(from.0 + MAX_SYNC_BLOCKS - 1);
        self.send(NetCommand::Sync(SyncRequest { from, to }, reply))
            .await;
        let tx = self.internal_tx.clone();
        tokio::spawn(async move {
            let r = rx
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("network task dropped the sync request")));
            let _ = tx.send(Internal::Sync(r)).await;
        });
    }

    async fn on_sync(&mut self, r: anyhow::Result<(PeerId, SyncResponse)>) -> anyhow::Result<()> {
        let (peer, resp) = match r {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(target: "node.driver", error = %e, "sync failed");
                self.syncing = false;
                return Ok(());
            }
        };
        let n = resp.blocks.len();
        let mut applied = 0;
        for (b, c) in resp.blocks {
            let (Ok(block), Ok(cert)) = (Block::decode(&b), Commit::decode(&c)) else {
                tracing::warn!(target: "node.driver", %peer, "synced block or certificate does not decode");
                self.send(NetCommand::Penalize(peer, 50)).await;
                break;
            };
            let height = block.header.height;
            if height <= self.st.tip.height {
                continue;
            }
            if height != self.st.tip.height.next() {
                tracing::warn!(target: "node.driver", %peer, %height, expected = %self.st.tip.height.next(), "synced block at a wrong height");
                self.send(NetCommand::Penalize(peer, 50)).await;
                break;
            }
            if let Err(e) = cert.verify(
                &self.st.chain_id,
                height,
                &block.hash(),
                &self.st.validators,
            ) {
                tracing::warn!(target: "node.driver", %peer, error = %e, "synced block has a bad certificate");
                self.send(NetCommand::Penalize(peer, 50)).await;
                break;
            }
            match tokio::task::block_in_place(|| {
                self.st.check_and_execute(&self.store, &block, true)
            }) {
                Ok(ex) => {
                    self.apply(&block, &cert, ex).await?;
                    applied += 1;
                }
                Err(e) => {
                    tracing::warn!(target: "node.driver", %peer, error = %e, "synced block is invalid");
                    self.send(NetCommand::Penalize(peer, 50)).await;
                    break;
                }
            }
        }
        if applied > 0 {
            tracing::info!(target: "node.driver", applied, tip = %self.st.tip.height, "synced blocks");
        }
        if applied > 0 && n as u64 >= MAX_SYNC_BLOCKS {
            self.request_sync(self.st.tip.height.next()).await;
        } else {
            self.syncing = false;
            if !self.started && (applied > 0 || !self.mempool.is_empty()) {
                self.start_height().await?;
            }
        }
        Ok(())
    }
}

/// How long the proposer of `round` may spend executing its block: a third of the time the
/// other validators wait for the proposal, so the block reaches them before they give up on it
/// (they then execute it themselves before voting). Transactions left out wait for the next
/// block; without this bound a backlog of large record batches made every proposal late and
/// the chain stalled (observed at 1.35 million residents: 8,000-record blocks took 3–11 s).
fn build_budget(c: &ConsensusConfig, round: Round) -> Duration {
    Duration::from_millis(c.timeout_ms(govchain_consensus::Step::Propose, round) / 3)
}

/// Caps checked at compile time: one transaction and one block fit a gossip message.
const _: () = assert!(MAX_TX_BYTES < TX_BATCH_BYTES * 4 && MAX_BLOCK_BYTES < MAX_GOSSIP_BYTES);
