//! The chain as one node sees it: the tip, the validator set, and the rules a block must meet
//! before it is executed and committed. Shared by the block producer, block sync and the
//! auditor's replay (`govchain verify`), so all three apply exactly the same checks.

use std::time::{Duration, Instant};

use govchain_chaincode::exec::BlockOutcome;
use govchain_chaincode::{app_hash, execute_block, execute_until, keys, BlockContext, TxError};
use govchain_genesis::GenesisDoc;
use govchain_ledger::{
    codec, crypto, merkle, Block, BlockHeader, ChainId, Hash, Height, Keypair, Round, SignedTx,
    StateView, Store, StoreError, TimestampMs, Tip, ValidatorSet, WriteSet, MAX_BLOCK_TXS,
};

/// Why a block is not a valid successor of the tip.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// A header field does not match the chain.
    #[error("header: {0}")]
    Header(String),
    /// The tx root or count does not match the transactions.
    #[error("transactions do not match the header: {0}")]
    TxRoot(String),
    /// A transaction's signature does not verify.
    #[error("transaction #{index} has a bad signature: {reason}")]
    Signature {
        /// Position in the block.
        index: usize,
        /// Why.
        reason: String,
    },
    /// A transaction was refused by chaincode.
    #[error("transaction #{index} is refused by chaincode: {error}")]
    Execution {
        /// Position in the block.
        index: usize,
        /// Chaincode's refusal.
        error: TxError,
    },
    /// State could not be read.
    #[error("state: {0}")]
    State(String),
}

/// Why the chain could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// Store failure.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store belongs to another genesis, or state is damaged.
    #[error("{0}")]
    Mismatch(String),
}

/// The result of executing a valid block.
#[derive(Debug)]
pub struct Executed {
    /// State writes.
    pub writes: WriteSet,
    /// App hash after the block.
    pub app_hash: Hash,
    /// The validator set for the next height, if the block changed it.
    pub next_validators: Option<ValidatorSet>,
}

/// A block built from candidate transactions.
#[derive(Debug)]
pub struct Built {
    /// The block.
    pub block: Block,
    /// Its execution result.
    pub executed: Executed,
    /// Candidates chaincode refused (position among the candidates, error); left out.
    pub refused: Vec<(usize, TxError)>,
}

/// The node's view of the chain head.
#[derive(Debug, Clone)]
pub struct ChainState {
    /// This chain.
    pub chain_id: ChainId,
    /// Hash of the genesis document.
    pub genesis_hash: Hash,
    /// The last committed block.
    pub tip: Tip,
    /// Validators of the next height.
    pub validators: ValidatorSet,
    /// Time of the last block (genesis time at height 0).
    pub last_time: TimestampMs,
}

fn read_validators(view: &dyn StateView) -> Result<ValidatorSet, ChainError> {
    let bytes = view
        .get(keys::VALIDATORS)
        .map_err(|e| ChainError::Mismatch(e.to_string()))?
        .ok_or_else(|| ChainError::Mismatch("state has no validator set".into()))?;
    codec::decode(&bytes, codec::MAX_DECODE_BYTES)
        .map_err(|e| ChainError::Mismatch(format!("validator set: {e}")))
}

impl ChainState {
    /// The state right after genesis (nothing stored).
    pub fn from_genesis(doc: &GenesisDoc) -> Result<(Self, WriteSet), ChainError> {
        let (writes, app_hash) = doc
            .initial_state()
            .writes()
            .map_err(|e| ChainError::Mismatch(format!("genesis: {e}")))?;
        let st = ChainState {
            chain_id: doc.chain_id.clone(),
            genesis_hash: doc.hash(),
            tip: Tip {
                height: Height(0),
                block_hash: doc.hash(),
                app_hash,
            },
            validators: doc.validators.clone(),
            last_time: doc.genesis_time,
        };
        Ok((st, writes))
    }

    /// Opens the chain in `store`, writing genesis first if the store is new. Refuses a store
    /// made from another genesis.
    pub fn load(store: &Store, doc: &GenesisDoc) -> Result<Self, ChainError> {
        let (mut st, writes) = Self::from_genesis(doc)?;
        match store.genesis_hash()? {
            None => {
                store.init_genesis(st.genesis_hash, &writes, st.tip.app_hash)?;
            }
            Some(h) if h != st.genesis_hash => {
                return Err(ChainError::Mismatch(format!(
                    "store was created from genesis {h}, but the genesis file hashes to {}",
                    st.genesis_hash
                )))
            }
            Some(_) => {}
        }
        let tip = store
            .tip()?
            .ok_or_else(|| ChainError::Mismatch("store has a genesis but no tip".into()))?;
        if tip.height.0 > 0 {
            let block = store
                .block(tip.height)?
                .ok_or_else(|| ChainError::Mismatch(format!("tip block {} missing", tip.height)))?;
            st.last_time = block.header.time;
        }
        st.tip = tip;
        st.validators = read_validators(store)?;
        Ok(st)
    }

    /// Execution context of the next block.
    pub fn next_context(&self, time: TimestampMs) -> BlockContext {
        BlockContext {
            chain_id: self.chain_id.clone(),
            height: self.tip.height.next(),
            time,
        }
    }

    /// Advances past a committed block.
    pub fn advance(&mut self, block: &Block, executed: &Executed) {
        self.tip = Tip {
            height: block.header.height,
            block_hash: block.hash(),
            app_hash: executed.app_hash,
        };
        self.last_time = block.header.time;
        if let Some(v) = &executed.next_validators {
            self.validators = v.clone();
        }
    }

    fn finish(&self, outcome_writes: WriteSet) -> Result<Executed, BlockError> {
        let next_validators = match outcome_writes.pending(keys::VALIDATORS) {
            Some(Some(b)) => Some(
                codec::decode(b, codec::MAX_DECODE_BYTES)
                    .map_err(|e| BlockError::State(format!("new validator set: {e}")))?,
            ),
            _ => None,
        };
        Ok(Executed {
            app_hash: app_hash::next(&self.tip.app_hash, &outcome_writes),
            writes: outcome_writes,
            next_validators,
        })
    }

    /// Builds the next block from candidate transactions: executes them, leaves out the ones
    /// chaincode refuses (returned with their errors), and fills in the header. Once executing
    /// has taken `budget`, the remaining candidates are left for a later block (at least one
    /// transaction is executed): every validator re-executes the block before it votes, so a
    /// block that takes longer to execute than the others wait for a proposal never commits.
    pub fn build_block(
        &self,
        view: &dyn StateView,
        candidates: Vec<SignedTx>,
        proposer: &Keypair,
        round: Round,
        now: TimestampMs,
        budget: Duration,
    ) -> Result<Built, BlockError> {
        let time = TimestampMs(now.0.max(self.last_time.0 + 1));
        let ctx = self.next_context(time);
        let started = Instant::now();
        let BlockOutcome { writes, results } =
            execute_until(view, &ctx, &candidates, |_| started.elapsed() >= budget);
        let mut refused = Vec::new();
        let mut txs = Vec::with_capacity(candidates.len());
        for (i, (tx, r)) in candidates.into_iter().zip(results).enumerate() {
            match r {
                Ok(()) => txs.push(tx),
                Err(TxError::State(e)) => return Err(BlockError::State(e.to_string())),
                Err(e) => refused.push((i, e)),
            }
        }
        let ids: Vec<Hash> = txs.iter().map(SignedTx::id).collect();
        let header = BlockHeader {
            chain_id: self.chain_id.clone(),
            height: ctx.height,
            round,
            prev_hash: self.tip.block_hash,
            tx_root: merkle::root(&ids),
            tx_count: txs.len() as u32,
            app_hash: self.tip.app_hash,
            proposer: proposer.public(),
            time,
            validator_set_hash: self.validators.hash(),
        };
        let executed = self.finish(writes)?;
        Ok(Built {
            block: Block { header, txs },
            executed,
            refused,
        })
    }

    /// Checks every rule a block must meet to follow the tip, and executes it.
    /// `verify_signatures = false` only where the caller already verified each transaction.
    pub fn check_and_execute(
        &self,
        view: &dyn StateView,
        block: &Block,
        verify_signatures: bool,
    ) -> Result<Executed, BlockError> {
        let h = &block.header;
        let expect = |ok: bool, what: String| {
            if ok {
                Ok(())
            } else {
                Err(BlockError::Header(what))
            }
        };
        expect(
            h.chain_id == self.chain_id,
            format!("chain id {} is not {}", h.chain_id, self.chain_id),
        )?;
        expect(
            h.height == self.tip.height.next(),
            format!("height {} does not follow {}", h.height, self.tip.height),
        )?;
        expect(
            h.prev_hash == self.tip.block_hash,
            format!(
                "prev_hash {} is not the previous block {}",
                h.prev_hash, self.tip.block_hash
            ),
        )?;
        expect(
            h.app_hash == self.tip.app_hash,
            format!(
                "app_hash {} differs from the replayed {}",
                h.app_hash, self.tip.app_hash
            ),
        )?;
        expect(
            h.validator_set_hash == self.validators.hash(),
            "validator_set_hash does not match the validator set".into(),
        )?;
        let proposer = self.validators.proposer(h.height, h.round).map(|v| v.key);
        expect(
            proposer == Some(h.proposer),
            format!(
                "proposer {} is not the round-robin proposer of round {}",
                h.proposer, h.round.0
            ),
        )?;
        expect(
            h.time > self.last_time,
            format!(
                "time {} is not after the previous block's {}",
                h.time.0, self.last_time.0
            ),
        )?;
        if block.txs.len() > MAX_BLOCK_TXS || h.tx_count as usize != block.txs.len() {
            return Err(BlockError::TxRoot(format!(
                "tx_count {} for {} transactions (limit {MAX_BLOCK_TXS})",
                h.tx_count,
                block.txs.len()
            )));
        }
        if block.compute_tx_root() != h.tx_root {
            return Err(BlockError::TxRoot("tx_root does not match".into()));
        }
        if verify_signatures {
            let items: Vec<_> = block.txs.iter().map(SignedTx::sig_item).collect();
            crypto::verify_batch(&items).map_err(|e| match e {
                crypto::SignatureError::BadInBatch { index, key } => BlockError::Signature {
                    index,
                    reason: format!("signer {key}"),
                },
                other => BlockError::Signature {
                    index: 0,
                    reason: other.to_string(),
                },
            })?;
        }
        let outcome = execute_block(view, &self.next_context(h.time), &block.txs);
        if let Some((index, error)) = outcome.first_error() {
            return Err(BlockError::Execution {
                index,
                error: error.clone(),
            });
        }
        self.finish(outcome.writes)
    }
}
