//! The bounded mempool: admitted transactions waiting for a block.
//!
//! Bounded by count and bytes; deduplicated by tx id and by (signer, nonce). A full mempool
//! refuses with [`AdmitError::Full`] (the API answers 503 with Retry-After): nothing is dropped
//! silently. Signatures were verified before admission (in the API handler).

use std::collections::{HashSet, VecDeque};

use govchain_api::{AdmitError, CommitNotice, Submission};
use govchain_ledger::{PublicKey, SignedTx, TxId};
use tokio::sync::oneshot;

/// A waiting transaction.
#[derive(Debug)]
pub struct Entry {
    /// The transaction.
    pub tx: SignedTx,
    /// Its id.
    pub id: TxId,
    /// Encoded size.
    pub bytes: usize,
    /// Who to tell when it is committed or refused.
    pub waiter: Option<oneshot::Sender<CommitNotice>>,
}

/// The mempool.
#[derive(Debug)]
pub struct Mempool {
    queue: VecDeque<Entry>,
    ids: HashSet<TxId>,
    nonces: HashSet<(PublicKey, u64)>,
    bytes: usize,
    max_txs: usize,
    max_bytes: usize,
}

impl Mempool {
    /// An empty mempool with these caps.
    pub fn new(max_txs: usize, max_bytes: usize) -> Self {
        assert!(max_txs > 0 && max_bytes > 0, "mempool caps are positive");
        Self {
            queue: VecDeque::new(),
            ids: HashSet::new(),
            nonces: HashSet::new(),
            bytes: 0,
            max_txs,
            max_bytes,
        }
    }

    /// Transactions waiting.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Admits a submission, answering its `reply`.
    pub fn admit(&mut self, sub: Submission) {
        let r = self.try_admit(&sub);
        let Submission {
            tx,
            id,
            bytes,
            reply,
            on_commit,
        } = sub;
        if r.is_ok() {
            self.ids.insert(id);
            self.nonces.insert((tx.body.signer, tx.body.nonce));
            self.bytes += bytes;
            self.queue.push_back(Entry {
                tx,
                id,
                bytes,
                waiter: on_commit,
            });
        }
        // The client may have gone away; the transaction stays admitted regardless.
        if reply.send(r).is_err() {
            tracing::debug!(target: "node.mempool", tx = %id, "client left before admission reply");
        }
    }

    fn try_admit(&self, sub: &Submission) -> Result<(), AdmitError> {
        if self.ids.contains(&sub.id) {
            return Err(AdmitError::Duplicate(sub.id));
        }
        if self
            .nonces
            .contains(&(sub.tx.body.signer, sub.tx.body.nonce))
        {
            return Err(AdmitError::NonceInUse);
        }
        if self.queue.len() >= self.max_txs || self.bytes + sub.bytes > self.max_bytes {
            return Err(AdmitError::Full {
                txs: self.queue.len(),
                retry_after_ms: 1000,
            });
        }
        Ok(())
    }

    /// Takes up to `max_txs` transactions and `max_bytes` bytes, oldest first.
    pub fn take(&mut self, max_txs: usize, max_bytes: usize) -> Vec<Entry> {
        let mut out = Vec::new();
        let mut bytes = 0;
        while let Some(e) = self.queue.front() {
            if out.len() >= max_txs || (bytes + e.bytes > max_bytes && !out.is_empty()) {
                break;
            }
            let Some(e) = self.queue.pop_front() else {
                break;
            };
            bytes += e.bytes;
            self.bytes -= e.bytes;
            self.ids.remove(&e.id);
            self.nonces.remove(&(e.tx.body.signer, e.tx.body.nonce));
            out.push(e);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use govchain_ledger::{ChainId, Keypair, TimestampMs, TxBody};

    fn sub(nonce: u64, payload: usize) -> (Submission, oneshot::Receiver<Result<(), AdmitError>>) {
        let k = Keypair::from_seed([1; 32]);
        let tx = TxBody {
            chain_id: ChainId::new("t").unwrap(),
            signer: k.public(),
            nonce,
            created_at: TimestampMs(0),
            payload: vec![0; payload],
        }
        .sign(&k);
        let (reply, rx) = oneshot::channel();
        let bytes = tx.encode().len();
        (
            Submission {
                id: tx.id(),
                tx,
                bytes,
                reply,
                on_commit: None,
            },
            rx,
        )
    }

    #[test]
    fn refuses_duplicates_nonce_reuse_and_overflow_without_dropping() {
        let mut m = Mempool::new(2, 1 << 20);
        let (a, ra) = sub(1, 1);
        let (a2, ra2) = sub(1, 1);
        m.admit(a);
        m.admit(a2);
        assert_eq!(ra.blocking_recv().unwrap(), Ok(()));
        assert!(matches!(
            ra2.blocking_recv().unwrap(),
            Err(AdmitError::Duplicate(_))
        ));
        let (b, rb) = sub(1, 2);
        m.admit(b);
        assert_eq!(rb.blocking_recv().unwrap(), Err(AdmitError::NonceInUse));
        let (c, rc) = sub(2, 1);
        let (d, rd) = sub(3, 1);
        m.admit(c);
        m.admit(d);
        assert_eq!(rc.blocking_recv().unwrap(), Ok(()));
        assert!(matches!(
            rd.blocking_recv().unwrap(),
            Err(AdmitError::Full { txs: 2, .. })
        ));
        assert_eq!(m.len(), 2);
        let taken = m.take(10, 1 << 20);
        assert_eq!(
            taken.iter().map(|e| e.tx.body.nonce).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert!(m.is_empty());
    }

    #[test]
    fn byte_cap_applies_at_the_edge() {
        let (a, _ra) = sub(1, 100);
        let size = a.bytes;
        let mut m = Mempool::new(10, size * 2);
        m.admit(a);
        let (b, rb) = sub(2, 100);
        m.admit(b);
        assert_eq!(rb.blocking_recv().unwrap(), Ok(()));
        let (c, rc) = sub(3, 100);
        m.admit(c);
        assert!(matches!(
            rc.blocking_recv().unwrap(),
            Err(AdmitError::Full { .. })
        ));
        assert_eq!(m.take(10, size).len(), 1, "block byte cap");
    }
}
