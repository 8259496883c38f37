//! `govchain verify`: the auditor's replay from genesis (R-AUD-4, R-CHN-2).
//!
//! Reads a node's store (read-only, so a live node may keep running), and for every height:
//! decodes the stored block and certificate (rejecting any non-canonical or trailing bytes),
//! checks the header against the replayed chain (height, hash link, app hash, validator set,
//! proposer, time), the Merkle root, every transaction signature, the commit certificate, and the
//! tx index; re-executes every transaction into a scratch store. At the end the stored tip and
//! every stored state entry must equal the replay. The first fault stops the run and names its
//! height.

use std::path::Path;
use std::time::Instant;

use std::collections::BTreeMap;

use govchain_chaincode::access::{decide, AccessRequest, AuditAction};
use govchain_chaincode::TxKind;
use govchain_genesis::GenesisDoc;
use govchain_ledger::store::CF_BLOBS;
use govchain_ledger::{Block, Commit, Hash, Height, SignedTx, Store, WriteSet};
use indicatif::{ProgressBar, ProgressStyle};

use crate::chain::ChainState;

/// A verification failure.
#[derive(Debug, thiserror::Error)]
#[error("{}{what}", height.map(|h| format!("height {h}: ")).unwrap_or_default())]
pub struct Fault {
    /// Where, if it concerns one block.
    pub height: Option<Height>,
    /// What is wrong.
    pub what: String,
}

fn fault(height: Height, what: impl Into<String>) -> Fault {
    Fault {
        height: Some(height),
        what: what.into(),
    }
}

fn general(what: impl Into<String>) -> Fault {
    Fault {
        height: None,
        what: what.into(),
    }
}

/// What a successful replay found.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Blocks verified.
    pub blocks: u64,
    /// Access decisions of audit entries re-decided and found equal (R-AUD-4).
    pub decisions: u64,
    /// Transactions verified.
    pub txs: u64,
    /// State entries compared.
    pub state_entries: u64,
    /// The app hash after the last block.
    pub app_hash: Hash,
    /// The last block's hash.
    pub tip_hash: Hash,
}

/// Replays `data` against `genesis`. `progress` draws a bar on stderr.
pub fn verify(data: &Path, genesis: &Path, progress: bool) -> Result<Summary, Fault> {
    let doc = GenesisDoc::read(genesis).map_err(|e| general(format!("genesis: {e}")))?;
    let store = Store::open_read_only(data)
        .map_err(|e| general(format!("opening {}: {e}", data.display())))?;
    let scratch_dir = tempfile::tempdir().map_err(|e| general(format!("scratch dir: {e}")))?;
    let scratch =
        Store::open_with(scratch_dir.path(), false).map_err(|e| general(e.to_string()))?;

    let (mut st, genesis_writes) =
        ChainState::from_genesis(&doc).map_err(|e| general(e.to_string()))?;
    let stored_genesis = store.genesis_hash().map_err(|e| general(e.to_string()))?;
    if stored_genesis != Some(st.genesis_hash) {
        return Err(general(format!(
            "store genesis {stored_genesis:?} is not the genesis file's {}",
            st.genesis_hash
        )));
    }
    apply_scratch(&scratch, &genesis_writes, Height(0))?;
    let tip = store
        .tip()
        .map_err(|e| general(e.to_string()))?
        .ok_or_else(|| general("store has no tip"))?;

    let bar = if progress {
        let b = ProgressBar::new(tip.height.0);
        b.set_style(
            ProgressStyle::with_template("verify {bar:40} {pos}/{len} blocks {per_sec} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    let mut pending = audited_decisions(&store, tip.height)?;
    let mut decisions = redecide(&scratch, &mut pending, Height(0))?;
    let mut txs = 0u64;
    for h in 1..=tip.height.0 {
        let height = Height(h);
        txs += verify_height(&store, &scratch, &mut st, height)?;
        decisions += redecide(&scratch, &mut pending, height)?;
        bar.inc(1);
    }
    bar.finish_and_clear();

    if st.tip != tip {
        return Err(fault(
            tip.height,
            format!("stored tip {tip:?} differs from the replayed {:?}", st.tip),
        ));
    }
    if store
        .block_bytes(tip.height.next())
        .map_err(|e| general(e.to_string()))?
        .is_some()
    {
        return Err(fault(tip.height.next(), "a block is stored beyond the tip"));
    }
    let state_entries = compare_state(&store, &scratch)?;
    Ok(Summary {
        blocks: tip.height.0,
        decisions,
        txs,
        state_entries,
        app_hash: st.tip.app_hash,
        tip_hash: st.tip.block_hash,
    })
}

fn verify_height(
    store: &Store,
    scratch: &Store,
    st: &mut ChainState,
    height: Height,
) -> Result<u64, Fault> {
    let bytes = store
        .block_bytes(height)
        .map_err(|e| fault(height, e.to_string()))?
        .ok_or_else(|| fault(height, "block is missing"))?;
    let block =
        Block::decode(&bytes).map_err(|e| fault(height, format!("block does not decode: {e}")))?;
    let cbytes = store
        .commit_bytes(height)
        .map_err(|e| fault(height, e.to_string()))?
        .ok_or_else(|| fault(height, "commit certificate is missing"))?;
    let commit = Commit::decode(&cbytes)
        .map_err(|e| fault(height, format!("certificate does not decode: {e}")))?;
    let executed = st
        .check_and_execute(scratch, &block, true)
        .map_err(|e| fault(height, format!("block: {e}")))?;
    let block_hash = block.hash();
    commit
        .verify(&st.chain_id, height, &block_hash, &st.validators)
        .map_err(|e| fault(height, format!("commit certificate: {e}")))?;
    for (i, tx) in block.txs.iter().enumerate() {
        let id = SignedTx::id(tx);
        let loc = store
            .tx_location(&id)
            .map_err(|e| fault(height, e.to_string()))?;
        if loc.map(|l| (l.height, l.index)) != Some((height, i as u32)) {
            return Err(fault(
                height,
                format!("tx index entry of tx #{i} ({id}) is {loc:?}"),
            ));
        }
    }
    apply_scratch(scratch, &executed.writes, height)?;
    st.advance(&block, &executed);
    Ok(block.txs.len() as u64)
}

/// An audited access: where its entry is on chain, what was asked, what the node decided.
struct Audited {
    at: (Height, usize, usize),
    request: AccessRequest,
    outcome: String,
}

/// Every audited access decision on chain, by the height of the state it read.
fn audited_decisions(store: &Store, tip: Height) -> Result<BTreeMap<u64, Vec<Audited>>, Fault> {
    let mut out: BTreeMap<u64, Vec<Audited>> = BTreeMap::new();
    for h in 1..=tip.0 {
        let height = Height(h);
        let Some(block) = store
            .block(height)
            .map_err(|e| fault(height, e.to_string()))?
        else {
            continue;
        };
        for (i, tx) in block.txs.iter().enumerate() {
            let Ok(TxKind::AppendAudit { entries }) = TxKind::decode(&tx.body.payload) else {
                continue;
            };
            for (j, e) in entries.into_iter().enumerate() {
                if let AuditAction::Access(request) = e.action {
                    out.entry(e.state_height).or_default().push(Audited {
                        at: (height, i, j),
                        request,
                        outcome: e.outcome,
                    });
                }
            }
        }
    }
    Ok(out)
}

/// Re-decides the accesses that read the state after `height` (now in `scratch`); a decision
/// that differs from the one on chain is a fault at the height of its audit entry.
fn redecide(
    scratch: &Store,
    pending: &mut BTreeMap<u64, Vec<Audited>>,
    height: Height,
) -> Result<u64, Fault> {
    let Some(list) = pending.remove(&height.0) else {
        return Ok(0);
    };
    for a in &list {
        let replayed = match decide(scratch, &a.request) {
            Ok(_) => "ok".to_string(),
            Err(d) => d.code,
        };
        // `failed`: allowed, then the request failed for another reason (bad input).
        let recorded = if a.outcome == "failed" {
            "ok"
        } else {
            a.outcome.as_str()
        };
        if replayed != recorded {
            let (h, i, j) = a.at;
            return Err(fault(
                h,
                format!(
                    "audit entry {i}/{j}: the node decided {recorded:?} on the state of height {}, the replay decides {replayed:?}",
                    height.0
                ),
            ));
        }
    }
    Ok(list.len() as u64)
}

/// Writes replayed state, remembering which height last wrote each key (in `blobs`).
fn apply_scratch(scratch: &Store, writes: &WriteSet, height: Height) -> Result<(), Fault> {
    scratch
        .put_state_unchecked(writes)
        .map_err(|e| general(e.to_string()))?;
    let hk = height.key();
    let tags: Vec<(&[u8], &[u8])> = writes.0.keys().map(|k| (k.as_slice(), &hk[..])).collect();
    scratch
        .put_raw_batch(CF_BLOBS, &tags)
        .map_err(|e| general(e.to_string()))
}

fn shown_key(k: &[u8]) -> String {
    String::from_utf8_lossy(k)
        .chars()
        .map(|c| {
            if c.is_control() || c == '\u{fffd}' {
                '.'
            } else {
                c
            }
        })
        .take(80)
        .collect()
}

fn last_writer(scratch: &Store, k: &[u8]) -> Option<Height> {
    scratch
        .get_raw(CF_BLOBS, k)
        .ok()
        .flatten()
        .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
        .map(|b| Height(u64::from_be_bytes(b)))
}

/// Merge-compares the stored state with the replayed state, in key order.
fn compare_state(store: &Store, scratch: &Store) -> Result<u64, Fault> {
    let mut a = store.state_iter();
    let mut b = scratch.state_iter();
    let mut n = 0u64;
    let next = |it: &mut dyn Iterator<
        Item = Result<govchain_ledger::store::StateEntry, govchain_ledger::StoreError>,
    >| { it.next().transpose().map_err(|e| general(e.to_string())) };
    let (mut x, mut y) = (next(&mut a)?, next(&mut b)?);
    loop {
        match (&x, &y) {
            (None, None) => return Ok(n),
            (Some((k, _)), None) => {
                return Err(general(format!(
                    "state key {:?} is stored but no block wrote it",
                    shown_key(k)
                )))
            }
            (None, Some((k, _))) => {
                let h = last_writer(scratch, k).unwrap_or(Height(0));
                return Err(fault(
                    h,
                    format!(
                        "state key {:?} written here is missing from the store",
                        shown_key(k)
                    ),
                ));
            }
            (Some((ka, va)), Some((kb, vb))) => {
                if ka < kb {
                    return Err(general(format!(
                        "state key {:?} is stored but no block wrote it",
                        shown_key(ka)
                    )));
                }
                if kb < ka {
                    let h = last_writer(scratch, kb).unwrap_or(Height(0));
                    return Err(fault(
                        h,
                        format!(
                            "state key {:?} written here is missing from the store",
                            shown_key(kb)
                        ),
                    ));
                }
                if va != vb {
                    let h = last_writer(scratch, kb).unwrap_or(Height(0));
                    return Err(fault(
                        h,
                        format!(
                            "stored value of state key {:?} differs from the value written here",
                            shown_key(kb)
                        ),
                    ));
                }
                n += 1;
                x = next(&mut a)?;
                y = next(&mut b)?;
            }
        }
    }
}

/// CLI entry: prints the summary or the fault; returns the process exit code.
pub fn run(data: &Path, genesis: &Path) -> i32 {
    let started = Instant::now();
    match verify(data, genesis, true) {
        Ok(s) => {
            println!(
                "verify: OK — {} blocks, {} transactions, {} state entries, {} access decisions reproduced in {:.1}s\n  tip hash {}\n  app hash {}",
                s.blocks,
                s.txs,
                s.state_entries,
                s.decisions,
                started.elapsed().as_secs_f64(),
                s.tip_hash,
                s.app_hash
            );
            0
        }
        Err(f) => {
            eprintln!("verify: FAULT: {f}");
            1
        }
    }
}

/// `govchain verify-proof FILE --genesis G`: checks one audit entry's proof offline; returns the
/// process exit code.
pub fn run_proof(file: &Path, genesis: &Path) -> i32 {
    let check = || -> Result<govchain_chaincode::proof::AuditProof, String> {
        let doc = GenesisDoc::read(genesis).map_err(|e| format!("genesis: {e}"))?;
        let text = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let proof: govchain_chaincode::proof::AuditProof =
            serde_json::from_slice(&text).map_err(|e| format!("not a proof file: {e}"))?;
        if proof.chain_id != doc.chain_id {
            return Err(format!(
                "the proof is of chain {}, the genesis of {}",
                proof.chain_id, doc.chain_id
            ));
        }
        proof.verify(&doc.validators).map_err(|e| e.to_string())?;
        Ok(proof)
    };
    match check() {
        Ok(p) => {
            println!(
                "verify-proof: OK — entry {}/{} of block {} ({} by {:?} of {}, outcome {}) is committed by the genesis validators",
                p.tx_index,
                p.entry_index,
                p.height.0,
                p.entry.action.name(),
                p.entry.user,
                p.entry.department,
                p.entry.outcome
            );
            0
        }
        Err(e) => {
            eprintln!("verify-proof: FAULT: {e}");
            1
        }
    }
}

/// `govchain verify --rebuild-projection`: rebuilds the SQL projection from the verified store
/// up to the live projection's height and compares the two digests; returns the exit code.
pub async fn rebuild(
    data: &Path,
    genesis: &Path,
    db: Option<String>,
    live_db: Option<String>,
) -> i32 {
    match rebuild_inner(data, genesis, db, live_db).await {
        Ok((height, digest)) => {
            println!(
                "verify: projection rebuilt from genesis to height {height}: digest {digest} equals the live projection's"
            );
            0
        }
        Err(e) => {
            eprintln!("verify: FAULT: {e:#}");
            1
        }
    }
}

async fn rebuild_inner(
    data: &Path,
    genesis: &Path,
    db: Option<String>,
    live_db: Option<String>,
) -> anyhow::Result<(u64, Hash)> {
    use anyhow::Context;
    use govchain_api::projection::Projection;
    let doc = GenesisDoc::read(genesis)?;
    let store = Store::open_read_only(data)?;
    let genesis_hash = store.genesis_hash()?.context("store has no genesis")?;
    let live_url =
        live_db.unwrap_or_else(|| format!("sqlite://{}", data.join("projection.sqlite").display()));
    let live = Projection::open(&live_url)
        .await
        .with_context(|| format!("opening the live projection {live_url}"))?;
    // The live projection moves while the node runs: its digest counts once the cursor held
    // still across the reading.
    let (height, live_digest) = {
        let mut tries = 0;
        loop {
            let before = live.cursor().await?.map_or(0, |(h, _)| h.0);
            let d = live.digest().await?;
            let after = live.cursor().await?.map_or(0, |(h, _)| h.0);
            if before == after {
                break (after, d);
            }
            tries += 1;
            anyhow::ensure!(
                tries < 20,
                "the live projection kept moving while being read"
            );
        }
    };
    let scratch;
    let url = match db {
        Some(u) => u,
        None => {
            scratch = tempfile::tempdir()?;
            format!(
                "sqlite://{}",
                scratch.path().join("rebuilt.sqlite").display()
            )
        }
    };
    let rebuilt = Projection::open(&url)
        .await
        .with_context(|| format!("opening {url}"))?;
    rebuilt.reset().await?;
    rebuilt.init(genesis_hash, &doc.sources).await?;
    let mut at = 0u64;
    while at < height {
        let mut blocks = Vec::new();
        while at < height && blocks.len() < 64 {
            at += 1;
            blocks.push(
                store
                    .block(Height(at))?
                    .with_context(|| format!("block {at} missing"))?,
            );
        }
        rebuilt.apply_blocks(&blocks).await?;
    }
    let digest = rebuilt.digest().await?;
    anyhow::ensure!(
        digest == live_digest,
        "the projection rebuilt to height {height} has digest {digest}, the live one {live_digest}"
    );
    Ok((height, digest))
}
