//! The connector's durable outbox in RocksDB (column family `outbox`, node-local): the cursor
//! (`sync/c/`), queued records (`sync/p/`), signed transactions in flight (`sync/f/`), the run
//! history (`sync/h/`) and the refused records (`sync/r/`, [`super::refused`]). Records, the
//! refusals among them and the cursor that fetched them are written in one synced batch; a
//! record leaves only when the transaction carrying it is committed.

use super::*;

/// A record waiting in the outbox, with its content hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Pending {
    pub(super) hash: [u8; 32],
    pub(super) record: Record,
}

pub(super) fn content_hash(r: &Record) -> [u8; 32] {
    govchain_ledger::hash::hash(Domain::RecordContent, &codec::encode_infallible(r)).0
}

pub(super) fn pending_hash(v: &[u8]) -> Option<[u8; 32]> {
    codec::decode::<Pending>(v, MAX_TX_BYTES)
        .ok()
        .map(|p| p.hash)
}

pub(super) fn k_cursor(src: &str) -> Vec<u8> {
    format!("sync/c/{src}").into_bytes()
}
pub(super) fn p_pending(src: &str) -> Vec<u8> {
    format!("sync/p/{src}/").into_bytes()
}
pub(super) fn k_pending(src: &str, key: &str) -> Vec<u8> {
    [p_pending(src), key.as_bytes().to_vec()].concat()
}
pub(super) fn p_flight(src: &str) -> Vec<u8> {
    format!("sync/f/{src}/").into_bytes()
}
pub(super) fn k_flight(src: &str, id: &TxId) -> Vec<u8> {
    [p_flight(src), id.as_bytes().to_vec()].concat()
}
pub(super) fn p_hist(src: &str) -> Vec<u8> {
    format!("sync/h/{src}/").into_bytes()
}

/// The writes of one batch into the outbox: queued records, the cursor, refused records.
pub(super) struct Batch<'a> {
    pub(super) puts: BTreeMap<Vec<u8>, Vec<u8>>,
    pub(super) refused: RefusedBook<'a>,
    queued: Vec<String>,
    new_keys: u64,
}

impl Connector {
    /// The source's definition as the chain holds it now (kept for when the chain cannot be
    /// read).
    pub(super) fn current_source(&self) -> DataSource {
        let mut s = self.source.lock().unwrap_or_else(|e| e.into_inner());
        if let Ok(Some(on_chain)) = source_on_chain(&self.store, &self.cfg.source) {
            *s = on_chain;
        }
        s.clone()
    }

    pub(super) fn batch(&self, ob: &Outbox) -> Batch<'_> {
        Batch {
            puts: BTreeMap::new(),
            refused: RefusedBook::new(&self.store, &self.cfg.source, ob.refused),
            queued: Vec::new(),
            new_keys: 0,
        }
    }

    /// Writes the entries that are new or changed into the outbox, with `cursor` in the same
    /// durable batch; keeps those that are not valid for the source as refused records (a
    /// valid version of a refused key resolves its refusal). Returns the keys of the queued
    /// records.
    pub(super) fn ingest(
        &self,
        entries: &[PageEntry],
        cursor: Option<u64>,
        run: &mut RunRecord,
    ) -> Result<Vec<String>, StoreError> {
        let source = self.current_source();
        let mut ob = self.lock_outbox();
        let mut b = self.batch(&ob);
        let now = self.clock.now_ms();
        run.fetched += entries.len() as u64;
        for e in entries {
            match to_record(&source, e) {
                Ok(record) => {
                    if b.refused.resolve(&e.key)? {
                        run.resolved += 1;
                    }
                    self.queue(&mut b, &e.key, record, run)?;
                }
                Err(reason) => {
                    run.rejected += 1;
                    run.last_error = Some(format!("record {:?} refused: {reason}", e.key));
                    self.health().rejected_total += 1;
                    b.refused
                        .refuse(&RefusedRecord::new(e, &reason, now, run.id))?;
                }
            }
        }
        if let Some(c) = cursor {
            b.puts
                .insert(k_cursor(&self.cfg.source), c.to_be_bytes().to_vec());
        }
        self.write_batch(&mut ob, b, run)
    }

    /// Queues a valid `record` of `key` unless its content is already on chain or waiting
    /// (idempotency key: source, record key, content hash).
    pub(super) fn queue(
        &self,
        b: &mut Batch<'_>,
        key: &str,
        record: Record,
        run: &mut RunRecord,
    ) -> Result<(), StoreError> {
        let src = &self.cfg.source;
        let hash = content_hash(&record);
        if let Some(bytes) = self.store.state_get(&keys::record(src, key))? {
            if codec::decode::<StoredRecord>(&bytes, RECORD_LIMIT).is_ok_and(|s| s.record == record)
            {
                run.unchanged += 1;
                return Ok(());
            }
        }
        let pk = k_pending(src, key);
        let waiting = match b.puts.get(&pk) {
            Some(v) => Some(v.clone()),
            None => self.store.get_raw(CF_OUTBOX, &pk)?,
        };
        match waiting.as_deref().map(pending_hash) {
            Some(Some(h)) if h == hash => {
                run.unchanged += 1;
                return Ok(());
            }
            Some(_) => {}
            None => b.new_keys += 1,
        }
        b.puts
            .insert(pk, codec::encode_infallible(&Pending { hash, record }));
        b.queued.push(key.to_string());
        Ok(())
    }

    /// Writes `b` in one durable batch and updates the counts; returns the queued keys.
    pub(super) fn write_batch(
        &self,
        ob: &mut Outbox,
        b: Batch<'_>,
        run: &mut RunRecord,
    ) -> Result<Vec<String>, StoreError> {
        let Batch {
            mut puts,
            refused,
            queued,
            new_keys,
        } = b;
        let refused = refused.finish(self.cfg.rejected_keep)?;
        puts.extend(refused.puts);
        if !puts.is_empty() || !refused.deletes.is_empty() {
            let puts: Vec<(Vec<u8>, Vec<u8>)> = puts.into_iter().collect();
            self.store.write_raw(CF_OUTBOX, &puts, &refused.deletes)?;
        }
        ob.pending += new_keys;
        ob.refused = refused.counts;
        run.queued += queued.len() as u64;
        run.dropped += refused.dropped;
        if refused.dropped > 0 {
            tracing::warn!(target: "node.sync", source = %self.cfg.source, dropped = refused.dropped, keep = self.cfg.rejected_keep, "refused records over the cap: the oldest were dropped (counted)");
        }
        if !queued.is_empty() {
            self.wake.notify_one();
        }
        Ok(queued)
    }

    /// Takes up to `batch` waiting records not yet in flight (only `only` keys if given), signs
    /// them into a transaction and records it in the outbox before anything is sent. `force`
    /// ignores the in-flight limit (a pull-through must not wait behind a backlog).
    pub(super) fn next_tx(
        &self,
        sign: &dyn Fn(Vec<u8>) -> SignedTx,
        only: Option<&HashSet<String>>,
        force: bool,
    ) -> Result<Option<SignedTx>, StoreError> {
        let src = &self.cfg.source;
        let mut ob = self.lock_outbox();
        if !force && ob.inflight.len() >= self.cfg.inflight {
            return Ok(None);
        }
        let prefix = p_pending(src);
        let plen = prefix.len();
        let mut bytes = 0usize;
        let budget = MAX_TX_BYTES / 2;
        let entries = {
            let keys_in_flight = &ob.inflight_keys;
            self.store
                .raw_prefix_where(CF_OUTBOX, &prefix, self.cfg.batch, |k, v| {
                    let key = String::from_utf8_lossy(&k[plen..]);
                    let wanted = only.is_none_or(|o| o.contains(key.as_ref()));
                    if !wanted || keys_in_flight.contains(key.as_ref()) || bytes > budget {
                        return false;
                    }
                    bytes += v.len();
                    true
                })?
        };
        let mut items = Vec::new();
        let mut records = Vec::new();
        for (k, v) in entries {
            let key = String::from_utf8_lossy(&k[plen..]).into_owned();
            match codec::decode::<Pending>(&v, MAX_TX_BYTES) {
                Ok(p) => {
                    items.push((key, p.hash));
                    records.push(p.record);
                }
                Err(e) => {
                    tracing::error!(target: "node.sync", source = %src, key, error = %e, "unreadable outbox entry dropped");
                    self.store.write_raw(CF_OUTBOX, &[], &[k.to_vec()])?;
                    ob.pending = ob.pending.saturating_sub(1);
                }
            }
        }
        if records.is_empty() {
            return Ok(None);
        }
        let tx = sign(
            TxKind::SubmitRecords {
                source: src.clone(),
                records,
            }
            .encode(),
        );
        let id = tx.id();
        self.store
            .write_raw(CF_OUTBOX, &[(k_flight(src, &id), tx.encode())], &[])?;
        for (k, _) in &items {
            ob.inflight_keys.insert(k.clone());
        }
        ob.inflight.insert(id, items);
        Ok(Some(tx))
    }

    /// Transactions recorded in the outbox before a restart, registered as in flight again.
    pub(super) fn reload_inflight(&self) -> Result<Vec<SignedTx>, StoreError> {
        let src = &self.cfg.source;
        let mut ob = self.lock_outbox();
        let mut out = Vec::new();
        for (k, v) in self.store.raw_prefix(CF_OUTBOX, &p_flight(src))? {
            let tx = match SignedTx::decode(&v) {
                Ok(tx) => tx,
                Err(e) => {
                    tracing::error!(target: "node.sync", source = %src, error = %e, "unreadable in-flight transaction dropped; its records stay queued");
                    self.store.write_raw(CF_OUTBOX, &[], &[k.to_vec()])?;
                    continue;
                }
            };
            let items: Vec<(String, [u8; 32])> = match TxKind::decode(&tx.body.payload) {
                Ok(TxKind::SubmitRecords { records, .. }) => {
                    let source = self
                        .source
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clone();
                    records
                        .iter()
                        .map(|r| {
                            let key = r
                                .fields
                                .get(&source.record_key_field)
                                .cloned()
                                .unwrap_or_default();
                            (key, content_hash(r))
                        })
                        .collect()
                }
                _ => Vec::new(),
            };
            for (key, _) in &items {
                ob.inflight_keys.insert(key.clone());
            }
            ob.inflight.insert(tx.id(), items);
            out.push(tx);
        }
        Ok(out)
    }

    /// A transaction is settled: committed (its records leave the outbox, unless a newer
    /// version arrived meanwhile) or refused (its records stay queued, those no longer valid
    /// for the source are dropped as rejected).
    pub(super) fn settled(&self, id: &TxId, committed: bool) -> Result<(), StoreError> {
        let src = &self.cfg.source;
        let mut ob = self.lock_outbox();
        let items = ob.inflight.remove(id).unwrap_or_default();
        for (k, _) in &items {
            ob.inflight_keys.remove(k);
        }
        let mut deletes = vec![k_flight(src, id)];
        let source = if committed {
            self.source
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        } else {
            self.current_source()
        };
        let mut refused = RefusedBook::new(&self.store, src, ob.refused);
        let now = self.clock.now_ms();
        for (key, hash) in &items {
            let pk = k_pending(src, key);
            let Some(v) = self.store.get_raw(CF_OUTBOX, &pk)? else {
                continue;
            };
            let drop_it = if committed {
                pending_hash(&v) == Some(*hash)
            } else {
                // The chain refused the batch: a record no longer valid for the source is
                // kept as refused, with the reason; the others stay queued.
                match codec::decode::<Pending>(&v, MAX_TX_BYTES) {
                    Ok(p) => match p.record.validate(&source) {
                        Ok(_) => false,
                        Err(reason) => {
                            let e = PageEntry {
                                key: key.clone(),
                                seq: 0,
                                payload: String::from_utf8_lossy(&p.record.raw).into_owned(),
                            };
                            let reason = format!("refused by the chain: {reason}");
                            refused.refuse(&RefusedRecord::new(&e, &reason, now, 0))?;
                            self.health().rejected_total += 1;
                            true
                        }
                    },
                    Err(e) => {
                        tracing::error!(target: "node.sync", source = %src, error = %e, "unreadable outbox entry dropped");
                        true
                    }
                }
            };
            if drop_it {
                deletes.push(pk);
                ob.pending = ob.pending.saturating_sub(1);
            }
        }
        let refused = refused.finish(self.cfg.rejected_keep)?;
        deletes.extend(refused.deletes);
        self.store.write_raw(CF_OUTBOX, &refused.puts, &deletes)?;
        ob.refused = refused.counts;
        if committed {
            self.committed
                .fetch_add(items.len() as u64, Ordering::Relaxed);
        }
        drop(ob);
        self.wake.notify_one();
        Ok(())
    }

    pub(super) fn save_run(&self, run: &RunRecord) {
        let src = &self.cfg.source;
        let key = [p_hist(src), run.id.to_be_bytes().to_vec()].concat();
        let mut deletes = Vec::new();
        if run.id > HISTORY_KEEP {
            deletes.push([p_hist(src), (run.id - HISTORY_KEEP).to_be_bytes().to_vec()].concat());
        }
        let v = serde_json::to_vec(run).unwrap_or_default();
        if let Err(e) = self.store.write_raw(CF_OUTBOX, &[(key, v)], &deletes) {
            tracing::error!(target: "node.sync", source = %src, error = %e, "saving the run history");
        }
        self.health().last_run = Some(run.clone());
    }

    /// The latest runs, newest first.
    pub fn history(&self, limit: usize) -> Vec<RunRecord> {
        let mut v: Vec<RunRecord> = self
            .store
            .raw_prefix(CF_OUTBOX, &p_hist(&self.cfg.source))
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
            .collect();
        v.reverse();
        v.truncate(limit);
        v
    }
}
