//! Deterministic execution of transactions into a write set.
//!
//! Each transaction runs in its own overlay over the block's pending writes: a refused
//! transaction leaves nothing behind. Signatures are checked by the caller (the node, the
//! auditor) before execution; chaincode checks chain id, replay, authorization and content.

use std::collections::BTreeSet;

use govchain_ledger::state::Overlay;
use govchain_ledger::{
    codec, ChainId, Height, SignedTx, StateView, TimestampMs, TxId, ValidatorSet, WriteSet,
};
use serde::{Deserialize, Serialize};

use crate::access_exec;
use crate::auth::{self, KeyRole};
use crate::business_exec;
use crate::catalog::{DataSource, Department};
use crate::error::{invalid, TxError};
use crate::evidence::{StoredEvidence, VoteEquivocation};
use crate::keys;
use crate::kinds::{TxKind, ValidatorChange};
use crate::records::{Record, StoredRecord, MAX_RECORDS_PER_BATCH};

/// What chaincode knows about the block being executed (all from the header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockContext {
    /// The chain.
    pub chain_id: ChainId,
    /// The block's height.
    pub height: Height,
    /// The block's time (the proposer's clock).
    pub time: TimestampMs,
}

/// The result of executing a block.
#[derive(Debug, Default)]
pub struct BlockOutcome {
    /// All writes of the successful transactions.
    pub writes: WriteSet,
    /// One result per transaction, in order.
    pub results: Vec<Result<(), TxError>>,
}

impl BlockOutcome {
    /// The first refused transaction, if any.
    pub fn first_error(&self) -> Option<(usize, &TxError)> {
        self.results
            .iter()
            .enumerate()
            .find_map(|(i, r)| r.as_ref().err().map(|e| (i, e)))
    }
}

/// Executes `txs` in order over `view`. Refused transactions write nothing.
pub fn execute_block(view: &dyn StateView, ctx: &BlockContext, txs: &[SignedTx]) -> BlockOutcome {
    execute_until(view, ctx, txs, |_| false)
}

/// Executes `txs` in order over `view` until `stop(i)` says to leave transaction `i` and all
/// after it out (it is asked before each transaction after the first, so at least one runs).
/// `results` then holds one result per executed transaction. This is how a proposer bounds the
/// work of its block (the caller decides, e.g. by the time spent; chaincode reads no clock).
pub fn execute_until(
    view: &dyn StateView,
    ctx: &BlockContext,
    txs: &[SignedTx],
    mut stop: impl FnMut(usize) -> bool,
) -> BlockOutcome {
    let mut block = Overlay::new(view);
    let mut results = Vec::with_capacity(txs.len());
    for (i, tx) in txs.iter().enumerate() {
        if i > 0 && stop(i) {
            break;
        }
        let r = {
            let mut o = Overlay::new(&block);
            execute_tx(&mut o, ctx, tx).map(|()| o.writes)
        };
        results.push(r.map(|w| block.writes.extend(w)));
    }
    BlockOutcome {
        writes: block.writes,
        results,
    }
}

/// Reads and decodes the state value at `key` (None when absent).
pub fn get<T: serde::de::DeserializeOwned>(
    view: &dyn StateView,
    key: &[u8],
) -> Result<Option<T>, TxError> {
    match view.get(key)? {
        None => Ok(None),
        Some(b) => Ok(Some(
            codec::decode(&b, codec::MAX_DECODE_BYTES)
                .map_err(|e| TxError::Malformed(e.to_string()))?,
        )),
    }
}

/// Executes one transaction into `o.writes`.
pub fn execute_tx(o: &mut Overlay<'_>, ctx: &BlockContext, tx: &SignedTx) -> Result<(), TxError> {
    let body = &tx.body;
    if body.chain_id != ctx.chain_id {
        return Err(TxError::WrongChain {
            got: body.chain_id.to_string(),
            expected: ctx.chain_id.to_string(),
        });
    }
    let nonce_key = keys::nonce(&body.signer, body.nonce);
    if o.get(&nonce_key)?.is_some() {
        return Err(TxError::Replay {
            signer: body.signer,
            nonce: body.nonce,
        });
    }
    let kind = TxKind::decode(&body.payload)?;
    match kind {
        TxKind::RegisterDepartment(d) => register_department(o, tx, d)?,
        TxKind::ProposeValidatorChange(c) => propose_validator_change(o, tx, c)?,
        TxKind::ApproveValidatorChange { proposal } => approve(o, tx, proposal)?,
        TxKind::RegisterSource(s) => register_source(o, tx, s)?,
        TxKind::SubmitRecords { source, records } => {
            submit_records(o, ctx, tx.id(), tx, &source, records)?
        }
        TxKind::ReportEquivocation(e) => report_equivocation(o, ctx, tx, e)?,
        TxKind::PutCatalogEntry { mode, entry } => business_exec::put_entry(o, tx, mode, entry)?,
        TxKind::DeleteCatalogEntry(r) => business_exec::delete_entry(o, tx, r)?,
        TxKind::PutMaterial {
            mode,
            matter,
            material,
        } => business_exec::put_material(o, tx, mode, &matter, material)?,
        TxKind::DeleteMaterial { matter, id } => {
            business_exec::delete_material(o, tx, &matter, &id)?
        }
        TxKind::PutUsers { mode, users } => access_exec::put_users(o, tx, mode, users)?,
        TxKind::DeleteUser { id } => access_exec::delete_user(o, tx, &id)?,
        TxKind::PutGrant(g) => access_exec::put_grant(o, tx, g)?,
        TxKind::RevokeGrant { id } => access_exec::revoke_grant(o, ctx, tx, &id)?,
        TxKind::RecordConsent(c) => access_exec::record_consent(o, tx, c)?,
        TxKind::AppendAudit { entries } => access_exec::append_audit(o, ctx, tx, &entries)?,
    }
    o.writes.put(nonce_key, Vec::new());
    Ok(())
}

fn report_equivocation(
    o: &mut Overlay<'_>,
    ctx: &BlockContext,
    tx: &SignedTx,
    evidence: VoteEquivocation,
) -> Result<(), TxError> {
    let vs: ValidatorSet =
        get(o, keys::VALIDATORS)?.ok_or_else(|| invalid("state", "no validator set"))?;
    if vs.get(&tx.body.signer).is_none() {
        return Err(TxError::Unauthorized {
            signer: tx.body.signer,
            action: "report equivocation (validators only)".into(),
        });
    }
    evidence.check(&ctx.chain_id, &vs)?;
    let key = keys::evidence(&evidence.id());
    if o.get(&key)?.is_some() {
        return Err(TxError::AlreadyExists {
            what: "equivocation evidence",
            id: evidence.id().to_string(),
        });
    }
    let stored = StoredEvidence {
        evidence,
        reporter: tx.body.signer,
        recorded_at: ctx.height,
    };
    o.writes.put(key, codec::encode_infallible(&stored));
    Ok(())
}

fn register_department(o: &mut Overlay<'_>, tx: &SignedTx, d: Department) -> Result<(), TxError> {
    auth::require_system_admin(o, &tx.body.signer, "register departments")?;
    d.validate()?;
    if d.validator_key.is_some() {
        return Err(invalid(
            "validator_key",
            "a department's validator joins only by a quorum-approved validator change",
        ));
    }
    if o.get(&keys::department(&d.id))?.is_some() {
        return Err(TxError::AlreadyExists {
            what: "department",
            id: d.id,
        });
    }
    if auth::role_of(o, &d.admin_key)?.is_some() {
        return Err(invalid("admin_key", "key is already registered"));
    }
    o.writes.put(
        keys::key_role(&d.admin_key),
        codec::encode_infallible(&KeyRole::DepartmentAdmin(d.id.clone())),
    );
    o.writes
        .put(keys::department(&d.id), codec::encode_infallible(&d));
    let n = department_count(o)? as u64 + 1;
    o.writes
        .put(keys::DEPT_COUNT.to_vec(), codec::encode_infallible(&n));
    Ok(())
}

/// A pending validator-set change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidatorProposal {
    /// The change.
    pub change: ValidatorChange,
    /// Departments whose administrators approved.
    pub approvals: BTreeSet<String>,
}

const NEXT_PROPOSAL: &[u8] = b"valprop_next";

/// Checks that `change` applies to the current state. Runs when a change is proposed AND when
/// it reaches its quorum, since other changes may have been applied in between.
fn check_validator_change(o: &Overlay<'_>, change: &ValidatorChange) -> Result<(), TxError> {
    let vs: ValidatorSet =
        get(o, keys::VALIDATORS)?.ok_or_else(|| invalid("state", "no validator set"))?;
    match change {
        ValidatorChange::Add {
            department,
            key,
            power,
        } => {
            if *power == 0 || *power > MAX_VOTING_POWER {
                return Err(invalid("power", format!("must be 1..={MAX_VOTING_POWER}")));
            }
            let d: Department =
                get(o, &keys::department(department))?.ok_or_else(|| TxError::NotFound {
                    what: "department",
                    id: department.clone(),
                })?;
            if d.validator_key.is_some() {
                return Err(invalid(
                    "department",
                    format!("{department} already runs a validator; remove it first"),
                ));
            }
            if vs.get(key).is_some() || auth::role_of(o, key)?.is_some() {
                return Err(invalid("key", "key is already registered"));
            }
            if vs.validators.len() >= govchain_ledger::MAX_VALIDATORS {
                return Err(TxError::TooLarge {
                    what: "validators",
                    got: vs.validators.len() + 1,
                    max: govchain_ledger::MAX_VALIDATORS,
                });
            }
        }
        ValidatorChange::Remove { key } => {
            if vs.get(key).is_none() {
                return Err(TxError::NotFound {
                    what: "validator",
                    id: key.to_hex(),
                });
            }
            if vs.validators.len() == 1 {
                return Err(invalid("key", "cannot remove the last validator"));
            }
        }
    }
    Ok(())
}

/// Largest voting power of one validator (keeps every sum of powers far from overflow).
pub const MAX_VOTING_POWER: u64 = 1_000_000;

fn propose_validator_change(
    o: &mut Overlay<'_>,
    tx: &SignedTx,
    change: ValidatorChange,
) -> Result<(), TxError> {
    let dept = auth::require_department_admin(o, &tx.body.signer, "propose validator changes")?;
    check_validator_change(o, &change)?;
    let id: u64 = get(o, NEXT_PROPOSAL)?.unwrap_or(1);
    o.writes
        .put(NEXT_PROPOSAL.to_vec(), codec::encode_infallible(&(id + 1)));
    let p = ValidatorProposal {
        change,
        approvals: BTreeSet::new(),
    };
    o.writes
        .put(keys::validator_proposal(id), codec::encode_infallible(&p));
    record_approval(o, id, p, dept)
}

fn approve(o: &mut Overlay<'_>, tx: &SignedTx, id: u64) -> Result<(), TxError> {
    let dept = auth::require_department_admin(o, &tx.body.signer, "approve validator changes")?;
    let p: ValidatorProposal =
        get(o, &keys::validator_proposal(id))?.ok_or_else(|| TxError::NotFound {
            what: "validator proposal",
            id: id.to_string(),
        })?;
    if p.approvals.contains(&dept) {
        return Err(TxError::AlreadyExists {
            what: "approval of department",
            id: dept,
        });
    }
    record_approval(o, id, p, dept)
}

/// Number of departments (each has one administrator).
fn department_count(o: &Overlay<'_>) -> Result<usize, TxError> {
    // Departments are few (tens); the count is kept beside them.
    Ok(get::<u64>(o, keys::DEPT_COUNT)?.unwrap_or(0) as usize)
}

fn record_approval(
    o: &mut Overlay<'_>,
    id: u64,
    mut p: ValidatorProposal,
    dept: String,
) -> Result<(), TxError> {
    p.approvals.insert(dept);
    let n = department_count(o)?;
    if p.approvals.len() * 3 <= n * 2 {
        o.writes
            .put(keys::validator_proposal(id), codec::encode_infallible(&p));
        return Ok(());
    }
    // Quorum of department administrators: apply, if it still applies.
    check_validator_change(o, &p.change)?;
    let mut vs: ValidatorSet =
        get(o, keys::VALIDATORS)?.ok_or_else(|| invalid("state", "no validator set"))?;
    match p.change {
        ValidatorChange::Add {
            department,
            key,
            power,
        } => {
            let mut d: Department =
                get(o, &keys::department(&department))?.ok_or_else(|| TxError::NotFound {
                    what: "department",
                    id: department.clone(),
                })?;
            d.validator_key = Some(key);
            o.writes
                .put(keys::department(&department), codec::encode_infallible(&d));
            o.writes.put(
                keys::key_role(&key),
                codec::encode_infallible(&KeyRole::DepartmentNode(department.clone())),
            );
            vs.validators.push(govchain_ledger::Validator {
                key,
                power,
                department,
            });
        }
        ValidatorChange::Remove { key } => {
            let removed = vs.validators.iter().find(|v| v.key == key).cloned();
            vs.validators.retain(|v| v.key != key);
            if let Some(v) = removed {
                // The key loses its role; the department may propose a new validator later.
                o.writes.delete(keys::key_role(&key));
                if let Some(mut d) = get::<Department>(o, &keys::department(&v.department))? {
                    d.validator_key = None;
                    o.writes.put(
                        keys::department(&v.department),
                        codec::encode_infallible(&d),
                    );
                }
            }
        }
    }
    o.writes
        .put(keys::VALIDATORS.to_vec(), codec::encode_infallible(&vs));
    o.writes.delete(keys::validator_proposal(id));
    Ok(())
}

fn register_source(o: &mut Overlay<'_>, tx: &SignedTx, s: DataSource) -> Result<(), TxError> {
    auth::require_system_admin(o, &tx.body.signer, "register data sources")?;
    s.validate()?;
    if get::<Department>(o, &keys::department(&s.department))?.is_none() {
        return Err(TxError::NotFound {
            what: "department",
            id: s.department,
        });
    }
    o.writes
        .put(keys::source(&s.id), codec::encode_infallible(&s));
    Ok(())
}

fn submit_records(
    o: &mut Overlay<'_>,
    ctx: &BlockContext,
    tx_id: TxId,
    tx: &SignedTx,
    source_id: &str,
    records: Vec<Record>,
) -> Result<(), TxError> {
    let source: DataSource =
        get(o, &keys::source(source_id))?.ok_or_else(|| TxError::NotFound {
            what: "data source",
            id: source_id.to_string(),
        })?;
    auth::require_department_key(
        o,
        &tx.body.signer,
        &source.department,
        &format!(
            "submit records of {source_id} (owned by {})",
            source.department
        ),
    )?;
    if records.is_empty() {
        return Err(invalid("records", "a batch needs at least one record"));
    }
    if records.len() > MAX_RECORDS_PER_BATCH {
        return Err(TxError::TooLarge {
            what: "records in a batch",
            got: records.len(),
            max: MAX_RECORDS_PER_BATCH,
        });
    }
    for (index, record) in records.into_iter().enumerate() {
        let valid = record
            .validate(&source)
            .map_err(|reason| TxError::InvalidRecord {
                index,
                key: record
                    .fields
                    .get(&source.record_key_field)
                    .cloned()
                    .unwrap_or_default(),
                reason,
            })?;
        let key = keys::record(source_id, &valid.key);
        let prev: Option<StoredRecord> = get(o, &key)?;
        if prev.as_ref().is_some_and(|p| p.record == record) {
            continue; // identical re-delivery: nothing changes
        }
        let person = valid.person.map(|p| p.as_str().to_string());
        if let Some(old) = prev.as_ref().and_then(|p| p.person.as_ref()) {
            if Some(old) != person.as_ref() {
                o.writes
                    .delete(keys::person_record(old, source_id, &valid.key));
            }
        }
        if let Some(p) = &person {
            o.writes
                .put(keys::person_record(p, source_id, &valid.key), Vec::new());
        }
        let stored = StoredRecord {
            version: prev.map_or(1, |p| p.version + 1),
            height: ctx.height,
            tx_id,
            person,
            record,
        };
        o.writes.put(key, codec::encode_infallible(&stored));
    }
    Ok(())
}
