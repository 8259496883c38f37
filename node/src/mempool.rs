//! The bounded mempool: admitted transactions waiting to be committed.
//!
//! Bounded by count and bytes; deduplicated by tx id and by (signer, nonce). A full mempool
//! refuses with [`AdmitError::Full`] (the API answers 503 with Retry-After): nothing is dropped
//! silently. Transactions stay until a committed block includes them or the block builder finds
//! them refused by chaincode; a proposer reads candidates without removing them, because its
//! proposal may not be decided. Signatures were verified before admission.

use std::collections::{BTreeMap, HashMap, HashSet};

use govchain_api::AdmitError;
use govchain_ledger::{PublicKey, SignedTx, TxId};

/// A waiting transaction.
#[derive(Debug, Clone)]
struct Entry {
    tx: SignedTx,
    id: TxId,
    bytes: usize,
}

/// The mempool.
#[derive(Debug)]
pub struct Mempool {
    by_seq: BTreeMap<u64, Entry>,
    by_id: HashMap<TxId, u64>,
    nonces: HashSet<(PublicKey, u64)>,
    next_seq: u64,
    bytes: usize,
    max_txs: usize,
    max_bytes: usize,
}

impl Mempool {
    /// An empty mempool with these caps.
    pub fn new(max_txs: usize, max_bytes: usize) -> Self {
        assert!(max_txs > 0 && max_bytes > 0, "mempool caps are positive");
        Self {
            by_seq: BTreeMap::new(),
            by_id: HashMap::new(),
            nonces: HashSet::new(),
            next_seq: 0,
            bytes: 0,
            max_txs,
            max_bytes,
        }
    }

    /// Transactions waiting.
    pub fn len(&self) -> usize {
        self.by_seq.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.by_seq.is_empty()
    }

    /// Whether this transaction waits here.
    pub fn contains(&self, id: &TxId) -> bool {
        self.by_id.contains_key(id)
    }

    /// Admits a transaction whose signature was verified.
    pub fn admit(&mut self, tx: SignedTx, id: TxId, bytes: usize) -> Result<(), AdmitError> {
        if self.by_id.contains_key(&id) {
            return Err(AdmitError::Duplicate(id));
        }
        let nonce = (tx.body.signer, tx.body.nonce);
        if self.nonces.contains(&nonce) {
            return Err(AdmitError::NonceInUse);
        }
        if self.by_seq.len() >= self.max_txs || self.bytes + bytes > self.max_bytes {
            return Err(AdmitError::Full {
                txs: self.by_seq.len(),
                retry_after_ms: 1000,
            });
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.nonces.insert(nonce);
        self.by_id.insert(id, seq);
        self.bytes += bytes;
        self.by_seq.insert(seq, Entry { tx, id, bytes });
        Ok(())
    }

    /// Up to `max_txs` transactions and `max_bytes` bytes, oldest first, without removing them.
    pub fn peek(&self, max_txs: usize, max_bytes: usize) -> Vec<SignedTx> {
        let mut out = Vec::new();
        let mut bytes = 0;
        for e in self.by_seq.values() {
            if out.len() >= max_txs || (bytes + e.bytes > max_bytes && !out.is_empty()) {
                break;
            }
            bytes += e.bytes;
            out.push(e.tx.clone());
        }
        out
    }

    /// Removes a transaction (committed, or refused by chaincode). Returns whether it was here.
    pub fn remove(&mut self, id: &TxId) -> bool {
        let Some(seq) = self.by_id.remove(id) else {
            return false;
        };
        if let Some(e) = self.by_seq.remove(&seq) {
            self.bytes -= e.bytes;
            self.nonces.remove(&(e.tx.body.signer, e.tx.body.nonce));
            debug_assert_eq!(&e.id, id);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use govchain_ledger::{ChainId, Keypair, TimestampMs, TxBody};

    fn tx(nonce: u64, payload: usize) -> (SignedTx, TxId, usize) {
        let k = Keypair::from_seed([1; 32]);
        let tx = TxBody {
            chain_id: ChainId::new("t").unwrap(),
            signer: k.public(),
            nonce,
            created_at: TimestampMs(0),
            payload: vec![0; payload],
        }
        .sign(&k);
        let (id, bytes) = (tx.id(), tx.encode().len());
        (tx, id, bytes)
    }

    fn admit(m: &mut Mempool, t: (SignedTx, TxId, usize)) -> Result<(), AdmitError> {
        m.admit(t.0, t.1, t.2)
    }

    #[test]
    fn refuses_duplicates_nonce_reuse_and_overflow_without_dropping() {
        let mut m = Mempool::new(2, 1 << 20);
        assert_eq!(admit(&mut m, tx(1, 1)), Ok(()));
        assert!(matches!(
            admit(&mut m, tx(1, 1)),
            Err(AdmitError::Duplicate(_))
        ));
        assert_eq!(admit(&mut m, tx(1, 2)), Err(AdmitError::NonceInUse));
        assert_eq!(admit(&mut m, tx(2, 1)), Ok(()));
        assert!(matches!(
            admit(&mut m, tx(3, 1)),
            Err(AdmitError::Full { txs: 2, .. })
        ));
        assert_eq!(m.len(), 2);
        let seen: Vec<u64> = m.peek(10, 1 << 20).iter().map(|t| t.body.nonce).collect();
        assert_eq!(seen, vec![1, 2]);
        assert_eq!(m.len(), 2, "peek removes nothing");
        assert!(m.remove(&tx(1, 1).1));
        assert!(!m.remove(&tx(1, 1).1));
        assert_eq!(
            admit(&mut m, tx(1, 2)),
            Ok(()),
            "nonce free again after removal"
        );
    }

    #[test]
    fn byte_cap_applies_at_the_edge() {
        let size = tx(1, 100).2;
        let mut m = Mempool::new(10, size * 2);
        assert_eq!(admit(&mut m, tx(1, 100)), Ok(()));
        assert_eq!(admit(&mut m, tx(2, 100)), Ok(()));
        assert!(matches!(
            admit(&mut m, tx(3, 100)),
            Err(AdmitError::Full { .. })
        ));
        assert_eq!(m.peek(10, size).len(), 1, "block byte cap");
        assert_eq!(m.peek(10, size * 2).len(), 2);
    }
}
