//! The RocksDB store of a node (DESIGN §3).
//!
//! Column families: `blocks` (height → block bytes), `commits` (height → certificate bytes),
//! `tx_index` (tx id → height and position), `state` (chaincode key → value), `meta` (genesis hash,
//! tip), `outbox` (connector records awaiting submission), `blobs` (large payloads).
//!
//! Invariant: [`Store::commit_block`] writes a block, its certificate, its index entries, its
//! state writes and the new tip in ONE synced `WriteBatch`. After any crash the store holds a
//! prefix of the chain whose state is exactly the state after its tip; never half a block.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamilyDescriptor, IteratorMode, Options, WriteBatch, WriteOptions, DB};
use serde::{Deserialize, Serialize};

use crate::bytes::Hash;
use crate::codec::{self, CodecError};
use crate::state::{StateError, StateView, WriteSet};
use crate::types::{Block, Commit, Height, TxId};

/// Column family names.
pub const CF_BLOCKS: &str = "blocks";
/// Certificates by height.
pub const CF_COMMITS: &str = "commits";
/// Tx id → location.
pub const CF_TX_INDEX: &str = "tx_index";
/// Chaincode state.
pub const CF_STATE: &str = "state";
/// Tip and genesis.
pub const CF_META: &str = "meta";
/// Connector outbox.
pub const CF_OUTBOX: &str = "outbox";
/// Large payloads.
pub const CF_BLOBS: &str = "blobs";
/// All column families.
pub const COLUMN_FAMILIES: [&str; 7] = [
    CF_BLOCKS,
    CF_COMMITS,
    CF_TX_INDEX,
    CF_STATE,
    CF_META,
    CF_OUTBOX,
    CF_BLOBS,
];

const META_TIP: &[u8] = b"tip";
const META_GENESIS: &[u8] = b"genesis_hash";

/// The head of the stored chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tip {
    /// Height of the last committed block (0 = only genesis).
    pub height: Height,
    /// Its hash (the genesis hash at height 0).
    pub block_hash: Hash,
    /// The app hash after executing it.
    pub app_hash: Hash,
}

/// One stored state entry: key and value.
pub type StateEntry = (Box<[u8]>, Box<[u8]>);

/// Where a transaction sits in the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxLocation {
    /// Block height.
    pub height: Height,
    /// Position in the block.
    pub index: u32,
}

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// RocksDB reported an error.
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// Stored bytes do not decode.
    #[error("corrupt {what}: {source}")]
    Corrupt {
        /// Which record.
        what: String,
        /// The decoding error.
        source: CodecError,
    },
    /// The block is not the successor of the tip.
    #[error("block at height {got} does not extend tip {tip} (expected height {expected})")]
    NotNext {
        /// Offered height.
        got: Height,
        /// Expected height.
        expected: Height,
        /// Current tip hash.
        tip: Hash,
    },
    /// The store has no genesis yet, or already has one.
    #[error("{0}")]
    Genesis(String),
}

/// A node's RocksDB store. Cheap to clone; one writer (the node's commit path) at a time.
#[derive(Clone)]
pub struct Store {
    db: Arc<DB>,
    sync: bool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.db.path().display())
    }
}

fn corrupt(what: impl Into<String>) -> impl FnOnce(CodecError) -> StoreError {
    let what = what.into();
    move |source| StoreError::Corrupt { what, source }
}

/// Write-ahead log kept before the column families holding the oldest log are flushed.
const MAX_TOTAL_WAL_BYTES: u64 = 256 * 1024 * 1024;

/// Block cache shared by the `state` and `tx_index` column families of one store.
const BLOCK_CACHE_BYTES: usize = 128 * 1024 * 1024;

/// Per-column-family tuning. Execution looks up mostly absent keys in `state` (a new record,
/// an unused nonce): bloom filters, in the memtable too, answer those without a search.
///
/// Index and filter blocks stay with their open table files, outside the block cache: in a
/// cache (RocksDB's default is 8 MiB) they were evicted by data blocks once the state passed a
/// few hundred MB, and every lookup then re-read and re-parsed a filter block per level — about
/// 0.4 ms per record at 1.35 million residents, which made blocks of 8,000 records take seconds
/// to execute. Their memory is about 1.3 bytes of filter per key plus one index entry per 4 KiB
/// data block (about 40 MB at 1.5 million residents).
fn cf_options(name: &str, cache: &rocksdb::Cache) -> Options {
    let mut o = Options::default();
    if name == CF_STATE || name == CF_TX_INDEX {
        let mut t = rocksdb::BlockBasedOptions::default();
        t.set_bloom_filter(10.0, false);
        t.set_cache_index_and_filter_blocks(false);
        t.set_block_cache(cache);
        o.set_block_based_table_factory(&t);
        o.set_memtable_whole_key_filtering(true);
        o.set_memtable_prefix_bloom_ratio(0.1);
    }
    o
}

fn block_cache() -> Result<rocksdb::Cache, StoreError> {
    Ok(rocksdb::Cache::new_lru_cache(BLOCK_CACHE_BYTES)?)
}

impl Store {
    /// Opens (creating if missing) a store whose commits are fsynced.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, true)
    }

    /// Opens a store; `sync = false` only for scratch stores (the auditor's replay, benchmarks).
    pub fn open_with(path: &Path, sync: bool) -> Result<Self, StoreError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        // A write-ahead log file is kept until every column family with data in it has been
        // flushed; a rarely written family (blocks are flushed, state is not) kept every log of
        // a big load alive (1.5 million residents: 2.5 GB of logs, replayed on each restart).
        // Past this total the families holding the oldest log are flushed.
        opts.set_max_total_wal_size(MAX_TOTAL_WAL_BYTES);
        let cache = block_cache()?;
        let cfs = COLUMN_FAMILIES
            .iter()
            .map(|n| ColumnFamilyDescriptor::new(*n, cf_options(n, &cache)));
        let db = DB::open_cf_descriptors(&opts, path, cfs)?;
        Ok(Self {
            db: Arc::new(db),
            sync,
        })
    }

    /// Opens an existing store read-only (the auditor's view of a live or copied node).
    pub fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        let cache = block_cache()?;
        let cfs = COLUMN_FAMILIES
            .iter()
            .map(|n| ColumnFamilyDescriptor::new(*n, cf_options(n, &cache)));
        let db = DB::open_cf_descriptors_read_only(&Options::default(), path, cfs, false)?;
        Ok(Self {
            db: Arc::new(db),
            sync: false,
        })
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        #[allow(clippy::expect_used)]
        self.db
            .cf_handle(name)
            .expect("invariant: every column family is created on open")
    }

    fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let mut wo = WriteOptions::default();
        wo.set_sync(self.sync);
        self.db.write_opt(batch, &wo)?;
        Ok(())
    }

    /// The genesis hash, once initialised.
    pub fn genesis_hash(&self) -> Result<Option<Hash>, StoreError> {
        match self.db.get_cf(self.cf(CF_META), META_GENESIS)? {
            None => Ok(None),
            Some(b) => Ok(Some(
                codec::decode(&b, 32).map_err(corrupt("genesis hash"))?,
            )),
        }
    }

    /// The tip, once initialised.
    pub fn tip(&self) -> Result<Option<Tip>, StoreError> {
        match self.db.get_cf(self.cf(CF_META), META_TIP)? {
            None => Ok(None),
            Some(b) => Ok(Some(codec::decode(&b, 128).map_err(corrupt("tip"))?)),
        }
    }

    /// Writes the genesis state and tip (height 0). Fails if the store already has a genesis.
    pub fn init_genesis(
        &self,
        genesis_hash: Hash,
        writes: &WriteSet,
        app_hash: Hash,
    ) -> Result<Tip, StoreError> {
        if let Some(existing) = self.genesis_hash()? {
            return Err(StoreError::Genesis(format!(
                "store already initialised with genesis {existing}"
            )));
        }
        let tip = Tip {
            height: Height(0),
            block_hash: genesis_hash,
            app_hash,
        };
        let mut b = WriteBatch::default();
        self.put_state(&mut b, writes);
        b.put_cf(
            self.cf(CF_META),
            META_GENESIS,
            codec::encode_infallible(&genesis_hash),
        );
        b.put_cf(self.cf(CF_META), META_TIP, codec::encode_infallible(&tip));
        self.write(b)?;
        Ok(tip)
    }

    fn put_state(&self, b: &mut WriteBatch, writes: &WriteSet) {
        let cf = self.cf(CF_STATE);
        for (k, v) in &writes.0 {
            match v {
                Some(v) => b.put_cf(cf, k, v),
                None => b.delete_cf(cf, k),
            }
        }
    }

    /// Commits a block: block, certificate, tx index, state writes and tip in one synced batch.
    pub fn commit_block(
        &self,
        block: &Block,
        commit: &Commit,
        writes: &WriteSet,
        app_hash: Hash,
    ) -> Result<Tip, StoreError> {
        let tip = self
            .tip()?
            .ok_or_else(|| StoreError::Genesis("store has no genesis".into()))?;
        let height = block.header.height;
        if height != tip.height.next() || block.header.prev_hash != tip.block_hash {
            return Err(StoreError::NotNext {
                got: height,
                expected: tip.height.next(),
                tip: tip.block_hash,
            });
        }
        let block_hash = block.hash();
        assert_eq!(
            commit.block_hash, block_hash,
            "certificate is for this block"
        );
        assert_eq!(commit.height, height, "certificate is for this height");
        let mut b = WriteBatch::default();
        b.put_cf(self.cf(CF_BLOCKS), height.key(), block.encode());
        b.put_cf(self.cf(CF_COMMITS), height.key(), commit.encode());
        let idx = self.cf(CF_TX_INDEX);
        for (i, tx) in block.txs.iter().enumerate() {
            let loc = TxLocation {
                height,
                index: i as u32,
            };
            b.put_cf(idx, tx.id().as_bytes(), codec::encode_infallible(&loc));
        }
        self.put_state(&mut b, writes);
        let new_tip = Tip {
            height,
            block_hash,
            app_hash,
        };
        b.put_cf(
            self.cf(CF_META),
            META_TIP,
            codec::encode_infallible(&new_tip),
        );
        self.write(b)?;
        Ok(new_tip)
    }

    /// The stored bytes of the block at `height`.
    pub fn block_bytes(&self, height: Height) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(self.cf(CF_BLOCKS), height.key())?)
    }

    /// The block at `height`, decoded.
    pub fn block(&self, height: Height) -> Result<Option<Block>, StoreError> {
        match self.block_bytes(height)? {
            None => Ok(None),
            Some(b) => Ok(Some(
                Block::decode(&b).map_err(corrupt(format!("block {height}")))?,
            )),
        }
    }

    /// The stored bytes of the certificate at `height`.
    pub fn commit_bytes(&self, height: Height) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(self.cf(CF_COMMITS), height.key())?)
    }

    /// The certificate at `height`, decoded.
    pub fn commit(&self, height: Height) -> Result<Option<Commit>, StoreError> {
        match self.commit_bytes(height)? {
            None => Ok(None),
            Some(b) => Ok(Some(
                Commit::decode(&b).map_err(corrupt(format!("certificate {height}")))?,
            )),
        }
    }

    /// Where a transaction was committed.
    pub fn tx_location(&self, id: &TxId) -> Result<Option<TxLocation>, StoreError> {
        match self.db.get_cf(self.cf(CF_TX_INDEX), id.as_bytes())? {
            None => Ok(None),
            Some(b) => Ok(Some(
                codec::decode(&b, 64).map_err(corrupt(format!("tx index {id}")))?,
            )),
        }
    }

    /// Reads a state value.
    pub fn state_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(self.cf(CF_STATE), key)?)
    }

    /// Every state entry in key order.
    pub fn state_iter(&self) -> impl Iterator<Item = Result<StateEntry, StoreError>> + '_ {
        self.db
            .iterator_cf(self.cf(CF_STATE), IteratorMode::Start)
            .map(|r| r.map_err(StoreError::from))
    }

    /// Writes state directly, outside any block (scratch stores only: the auditor's replay).
    pub fn put_state_unchecked(&self, writes: &WriteSet) -> Result<(), StoreError> {
        let mut b = WriteBatch::default();
        self.put_state(&mut b, writes);
        self.write(b)
    }

    /// Raw put into any column family (tests that tamper with a copy; outbox and blobs users).
    pub fn put_raw(&self, cf: &str, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let mut b = WriteBatch::default();
        b.put_cf(self.cf(cf), key, value);
        self.write(b)
    }

    /// Raw puts into any column family, in one batch.
    pub fn put_raw_batch(&self, cf: &str, entries: &[(&[u8], &[u8])]) -> Result<(), StoreError> {
        let mut b = WriteBatch::default();
        let cf = self.cf(cf);
        for (k, v) in entries {
            b.put_cf(cf, k, v);
        }
        self.write(b)
    }

    /// Raw put without fsync (node-local queues such as the audit outbox): it survives a killed
    /// process, since the write-ahead log is in the OS, though not a power cut.
    pub fn put_raw_unsynced(&self, cf: &str, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let mut b = WriteBatch::default();
        b.put_cf(self.cf(cf), key, value);
        self.db.write_opt(b, &WriteOptions::default())?;
        Ok(())
    }

    /// Raw deletes without fsync, in one batch.
    pub fn delete_raw_unsynced(&self, cf: &str, keys: &[Vec<u8>]) -> Result<(), StoreError> {
        let mut b = WriteBatch::default();
        let cf = self.cf(cf);
        for k in keys {
            b.delete_cf(cf, k);
        }
        self.db.write_opt(b, &WriteOptions::default())?;
        Ok(())
    }

    /// Every entry of a column family whose key starts with `prefix`, in key order.
    pub fn raw_prefix(&self, cf: &str, prefix: &[u8]) -> Result<Vec<StateEntry>, StoreError> {
        let mut out = Vec::new();
        let it = self.db.iterator_cf(
            self.cf(cf),
            IteratorMode::From(prefix, rocksdb::Direction::Forward),
        );
        for r in it {
            let (k, v) = r?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k, v));
        }
        Ok(out)
    }

    /// Raw puts and deletes in one column family, in one durable batch (the connectors'
    /// outbox: records and the cursor that fetched them move together).
    pub fn write_raw(
        &self,
        cf: &str,
        puts: &[(Vec<u8>, Vec<u8>)],
        deletes: &[Vec<u8>],
    ) -> Result<(), StoreError> {
        let mut b = WriteBatch::default();
        let cf = self.cf(cf);
        for (k, v) in puts {
            b.put_cf(cf, k, v);
        }
        for k in deletes {
            b.delete_cf(cf, k);
        }
        self.write(b)
    }

    /// At most `limit` entries of a column family whose key starts with `prefix` and which
    /// `keep` accepts, in key order.
    pub fn raw_prefix_where(
        &self,
        cf: &str,
        prefix: &[u8],
        limit: usize,
        mut keep: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<Vec<StateEntry>, StoreError> {
        let mut out = Vec::new();
        let it = self.db.iterator_cf(
            self.cf(cf),
            IteratorMode::From(prefix, rocksdb::Direction::Forward),
        );
        for r in it {
            if out.len() >= limit {
                break;
            }
            let (k, v) = r?;
            if !k.starts_with(prefix) {
                break;
            }
            if keep(&k, &v) {
                out.push((k, v));
            }
        }
        Ok(out)
    }

    /// Raw get from any column family.
    pub fn get_raw(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(self.cf(cf), key)?)
    }
}

impl StateView for Store {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.state_get(key).map_err(|e| StateError(e.to_string()))
    }
}
