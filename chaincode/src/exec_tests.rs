//! Unit tests of chaincode execution over an in-memory state (a `BTreeMap`).
//!
//! The fixture is a small chain: a system administrator, four departments (`gaj`, `mzj`, `rsj`,
//! `bdc`) that each have an administrator key and a validator (node) key, the four validators with
//! power 1, and two data sources (`gaj.hjxx` keyed by the person id, `mzj.hydj` keyed by a text
//! certificate number with a person field). Blocks are executed with [`execute_block`] and their
//! writes applied to the map, as a node would commit them.
//!
//! Every test states what must happen and what must never happen (a refused transaction leaves
//! nothing behind). Requirement ids are cited beside each test.

use std::collections::BTreeMap;

use govchain_ledger::{
    codec, ChainId, Hash, Height, Keypair, PublicKey, Round, Signature, SignedTx, TimestampMs,
    TxBody, Validator, ValidatorSet, Vote, VoteKind, WriteSet,
};
use serde::de::DeserializeOwned;

use crate::app_hash;
use crate::auth::{self, KeyRole};
use crate::catalog::{DataSource, Department, FieldDef, FieldType, ShareType};
use crate::evidence::{StoredEvidence, VoteEquivocation};
use crate::exec::{execute_block, BlockContext, BlockOutcome, ValidatorProposal};
use crate::genesis::InitialState;
use crate::keys;
use crate::kinds::{TxKind, ValidatorChange};
use crate::person::check_char;
use crate::records::{Record, StoredRecord, MAX_RECORDS_PER_BATCH, MAX_RECORD_KEY_BYTES};
use crate::TxError;

type State = BTreeMap<Vec<u8>, Vec<u8>>;

const CHAIN: &str = "govchain-test";
const DEPTS: [&str; 4] = ["gaj", "mzj", "rsj", "bdc"];
/// A department registered after genesis (it has no validator at first).
const NEW_DEPT: &str = "scjg";
/// 户籍: keyed by the person id itself.
pub(crate) const HJXX: &str = "gaj.hjxx";
/// 婚姻登记: keyed by the certificate number, about a person.
pub(crate) const HYDJ: &str = "mzj.hydj";
/// The block time chaincode sees at height 1.
const GENESIS_TIME_MS: u64 = 1_700_000_000_000;

// ---------------------------------------------------------------------------------------------
// Fixture
// ---------------------------------------------------------------------------------------------

fn chain_id() -> ChainId {
    ChainId::new(CHAIN).unwrap()
}

pub(crate) fn sysadmin() -> Keypair {
    Keypair::from_seed([1; 32])
}

/// A key no role was ever given to.
pub(crate) fn outsider() -> Keypair {
    Keypair::from_seed([99; 32])
}

fn dept_seed(dept: &str) -> u8 {
    match dept {
        "gaj" => 10,
        "mzj" => 20,
        "rsj" => 30,
        "bdc" => 40,
        NEW_DEPT => 50,
        other => panic!("no keys for department {other}"),
    }
}

pub(crate) fn admin(dept: &str) -> Keypair {
    Keypair::from_seed([dept_seed(dept); 32])
}

pub(crate) fn node(dept: &str) -> Keypair {
    Keypair::from_seed([dept_seed(dept) + 1; 32])
}

fn department(id: &str, validator_key: Option<PublicKey>) -> Department {
    Department {
        id: id.to_string(),
        name: format!("市{id}"),
        admin_key: admin(id).public(),
        validator_key,
    }
}

fn field(name: &str, ty: FieldType, required: bool) -> FieldDef {
    FieldDef {
        name: name.to_string(),
        label: name.to_string(),
        ty,
        required,
    }
}

fn hjxx() -> DataSource {
    DataSource {
        id: HJXX.to_string(),
        name: "户籍人口基本信息".to_string(),
        department: "gaj".to_string(),
        share_type: ShareType::Conditional,
        person_field: Some("sfzh".to_string()),
        record_key_field: "sfzh".to_string(),
        fields: vec![
            field("sfzh", FieldType::PersonId, true),
            field("xm", FieldType::Text, true),
            field("csrq", FieldType::Date, false),
        ],
    }
}

fn hydj() -> DataSource {
    DataSource {
        id: HYDJ.to_string(),
        name: "婚姻登记信息".to_string(),
        department: "mzj".to_string(),
        share_type: ShareType::Conditional,
        person_field: Some("sfzh".to_string()),
        record_key_field: "jhzh".to_string(),
        fields: vec![
            field("jhzh", FieldType::Text, true),
            field("sfzh", FieldType::PersonId, true),
        ],
    }
}

fn initial_state() -> InitialState {
    InitialState {
        system_admin: sysadmin().public(),
        departments: DEPTS
            .iter()
            .map(|d| department(d, Some(node(d).public())))
            .collect(),
        validators: ValidatorSet {
            validators: DEPTS
                .iter()
                .map(|d| Validator {
                    key: node(d).public(),
                    power: 1,
                    department: d.to_string(),
                })
                .collect(),
        },
        sources: vec![hjxx(), hydj()],
    }
}

/// A valid national ID: region 110105, born 1949-12-31, sequence `seq`, correct check character.
pub(crate) fn person_id(seq: u32) -> String {
    assert!(seq < 1000);
    let mut s = format!("11010519491231{seq:03}");
    s.push(check_char(s.as_bytes()));
    s
}

/// The raw payload a department system delivers: deliberately not UTF-8 (a GBK-style tail).
fn raw_payload(text: &str) -> Vec<u8> {
    [
        &[0xEF, 0xBB, 0xBF][..],
        text.as_bytes(),
        &[0xD5, 0xC5, 0xFF, 0x00],
    ]
    .concat()
}

fn record(pairs: &[(&str, &str)]) -> Record {
    let fields: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let raw = raw_payload(&format!("{fields:?}"));
    Record { fields, raw }
}

fn hjxx_record(sfzh: &str, xm: &str) -> Record {
    record(&[("sfzh", sfzh), ("xm", xm), ("csrq", "1949-12-31")])
}

fn hydj_record(jhzh: &str, sfzh: &str) -> Record {
    record(&[("jhzh", jhzh), ("sfzh", sfzh)])
}

fn submit(source: &str, records: Vec<Record>) -> TxKind {
    TxKind::SubmitRecords {
        source: source.to_string(),
        records,
    }
}

fn sign_for(chain_id: ChainId, key: &Keypair, nonce: u64, kind: &TxKind) -> SignedTx {
    TxBody {
        chain_id,
        signer: key.public(),
        nonce,
        created_at: TimestampMs(GENESIS_TIME_MS),
        payload: kind.encode(),
    }
    .sign(key)
}

fn apply(state: &mut State, writes: &WriteSet) {
    for (k, v) in &writes.0 {
        match v {
            Some(v) => state.insert(k.clone(), v.clone()),
            None => state.remove(k),
        };
    }
}

/// A chain at some height: committed state, app hash, and a nonce counter for new transactions.
pub(crate) struct Chain {
    pub(crate) state: State,
    height: u64,
    app_hash: Hash,
    next_nonce: u64,
}

impl Chain {
    pub(crate) fn genesis() -> Self {
        let (writes, app_hash) = initial_state().writes().expect("the fixture is valid");
        let mut state = State::new();
        apply(&mut state, &writes);
        Self {
            state,
            height: 0,
            app_hash,
            next_nonce: 0,
        }
    }

    pub(crate) fn ctx(&self) -> BlockContext {
        BlockContext {
            chain_id: chain_id(),
            height: Height(self.height + 1),
            time: TimestampMs(GENESIS_TIME_MS + self.height),
        }
    }

    /// A transaction with a fresh nonce.
    pub(crate) fn tx(&mut self, key: &Keypair, kind: &TxKind) -> SignedTx {
        self.next_nonce += 1;
        sign_for(chain_id(), key, self.next_nonce, kind)
    }

    /// Executes the next block without committing it.
    pub(crate) fn execute(&self, txs: &[SignedTx]) -> BlockOutcome {
        execute_block(&self.state, &self.ctx(), txs)
    }

    /// Executes and commits the next block.
    pub(crate) fn commit(&mut self, txs: &[SignedTx]) -> BlockOutcome {
        let out = self.execute(txs);
        assert_eq!(out.results.len(), txs.len());
        apply(&mut self.state, &out.writes);
        self.app_hash = app_hash::next(&self.app_hash, &out.writes);
        self.height += 1;
        out
    }

    /// Commits a block of one transaction and returns its result.
    pub(crate) fn commit_one(&mut self, key: &Keypair, kind: TxKind) -> Result<(), TxError> {
        let tx = self.tx(key, &kind);
        let mut out = self.commit(&[tx]);
        out.results.remove(0)
    }

    pub(crate) fn read<T: DeserializeOwned>(&self, key: &[u8]) -> Option<T> {
        self.state
            .get(key)
            .map(|b| codec::decode(b, codec::MAX_DECODE_BYTES).expect("state values decode"))
    }

    pub(crate) fn validators(&self) -> ValidatorSet {
        self.read(keys::VALIDATORS).expect("a validator set")
    }

    pub(crate) fn stored(&self, source: &str, record_key: &str) -> StoredRecord {
        self.read(&keys::record(source, record_key))
            .expect("the record is stored")
    }
}

/// Asserts that the refused `tx` left nothing in `out`: not its nonce, not any of `keys`.
pub(crate) fn assert_left_nothing(out: &BlockOutcome, tx: &SignedTx, keys: &[Vec<u8>]) {
    let nonce = keys::nonce(&tx.body.signer, tx.body.nonce);
    assert!(
        out.writes.pending(&nonce).is_none(),
        "refused tx used its nonce"
    );
    for k in keys {
        assert!(
            out.writes.pending(k).is_none(),
            "refused tx wrote {}",
            String::from_utf8_lossy(k)
        );
    }
}

pub(crate) fn is_unauthorized(r: &Result<(), TxError>) -> bool {
    matches!(r, Err(TxError::Unauthorized { .. }))
}

// ---------------------------------------------------------------------------------------------
// Submitting records (R-ARC-1, R-ARC-2, R-SEC-7)
// ---------------------------------------------------------------------------------------------

#[test]
fn owner_department_node_and_admin_keys_can_submit_records() {
    // R-ARC-1, R-SEC-7: a department's own keys (node or administrator) submit its records.
    let mut chain = Chain::genesis();
    for (key, seq) in [(node("gaj"), 1), (admin("gaj"), 2)] {
        let id = person_id(seq);
        let rec = hjxx_record(&id, "张三");
        let tx = chain.tx(&key, &submit(HJXX, vec![rec.clone()]));
        let out = chain.commit(std::slice::from_ref(&tx));
        assert_eq!(out.results, vec![Ok(())]);

        let stored = chain.stored(HJXX, &id);
        assert_eq!(stored.version, 1);
        assert_eq!(stored.height, Height(chain.height));
        assert_eq!(stored.tx_id, tx.id());
        assert_eq!(stored.person.as_deref(), Some(id.as_str()));
        assert_eq!(stored.record, rec);
        // R-ARC-2: the raw payload is kept byte for byte.
        assert_eq!(stored.record.raw, rec.raw);
        assert!(chain
            .state
            .contains_key(&keys::person_record(&id, HJXX, &id)));
        assert!(chain
            .state
            .contains_key(&keys::nonce(&key.public(), tx.body.nonce)));
    }
}

#[test]
fn a_changed_record_becomes_version_two() {
    // R-ARC-2: a newer submission of the same record key supersedes the older as a new version.
    let mut chain = Chain::genesis();
    let id = person_id(3);
    let first = hjxx_record(&id, "张三");
    assert_eq!(
        chain.commit_one(&node("gaj"), submit(HJXX, vec![first])),
        Ok(())
    );
    let changed = hjxx_record(&id, "张三丰");
    let tx = chain.tx(&node("gaj"), &submit(HJXX, vec![changed.clone()]));
    assert_eq!(
        chain.commit(std::slice::from_ref(&tx)).results,
        vec![Ok(())]
    );

    let stored = chain.stored(HJXX, &id);
    assert_eq!(stored.version, 2);
    assert_eq!(stored.record, changed);
    assert_eq!(stored.tx_id, tx.id());
    assert_eq!(stored.height, Height(2));
}

#[test]
fn an_identical_resubmission_changes_no_record() {
    // R-ARC-2: re-delivering the same record is idempotent; only the nonce is used up.
    let mut chain = Chain::genesis();
    let id = person_id(4);
    let rec = hjxx_record(&id, "李四");
    assert_eq!(
        chain.commit_one(&node("gaj"), submit(HJXX, vec![rec.clone()])),
        Ok(())
    );
    let before = chain.stored(HJXX, &id);

    let tx = chain.tx(&admin("gaj"), &submit(HJXX, vec![rec]));
    let out = chain.commit(std::slice::from_ref(&tx));
    assert_eq!(out.results, vec![Ok(())]);
    let nonce = keys::nonce(&tx.body.signer, tx.body.nonce);
    assert_eq!(
        out.writes.0.keys().collect::<Vec<_>>(),
        vec![&nonce],
        "only the nonce is written"
    );
    assert_eq!(chain.stored(HJXX, &id), before);
}

#[test]
fn a_changed_person_id_moves_the_person_index_entry() {
    // R-ARC-2: the person index follows the latest version; the old person loses the entry.
    let mut chain = Chain::genesis();
    let (old, new) = (person_id(5), person_id(6));
    let cert = "J3101-2024-000123";
    let kind = submit(HYDJ, vec![hydj_record(cert, &old)]);
    assert_eq!(chain.commit_one(&node("mzj"), kind), Ok(()));
    assert!(chain
        .state
        .contains_key(&keys::person_record(&old, HYDJ, cert)));

    let kind = submit(HYDJ, vec![hydj_record(cert, &new)]);
    assert_eq!(chain.commit_one(&node("mzj"), kind), Ok(()));
    assert!(!chain
        .state
        .contains_key(&keys::person_record(&old, HYDJ, cert)));
    assert!(chain
        .state
        .contains_key(&keys::person_record(&new, HYDJ, cert)));
    let stored = chain.stored(HYDJ, cert);
    assert_eq!(stored.version, 2);
    assert_eq!(stored.person.as_deref(), Some(new.as_str()));
}

#[test]
fn other_departments_the_sysadmin_and_unknown_keys_cannot_submit_records() {
    // R-SEC-7: only the owner department's keys may write its source.
    let mut chain = Chain::genesis();
    let id = person_id(7);
    let kind = submit(HJXX, vec![hjxx_record(&id, "王五")]);
    let txs: Vec<SignedTx> = [admin("mzj"), node("mzj"), sysadmin(), outsider()]
        .iter()
        .map(|k| chain.tx(k, &kind))
        .collect();
    let out = chain.execute(&txs);
    for (i, tx) in txs.iter().enumerate() {
        assert!(is_unauthorized(&out.results[i]), "{:?}", out.results[i]);
        assert_left_nothing(
            &out,
            tx,
            &[keys::record(HJXX, &id), keys::person_record(&id, HJXX, &id)],
        );
    }
    assert!(out.writes.is_empty());
}

#[test]
fn a_nonce_is_accepted_once_within_a_block_and_across_blocks() {
    // R-SEC-7: (signer, nonce) pairs cannot be replayed.
    let mut chain = Chain::genesis();
    let key = node("gaj");
    let first = sign_for(
        chain_id(),
        &key,
        42,
        &submit(HJXX, vec![hjxx_record(&person_id(8), "赵六")]),
    );
    // Same nonce, other content.
    let second = sign_for(
        chain_id(),
        &key,
        42,
        &submit(HJXX, vec![hjxx_record(&person_id(9), "孙七")]),
    );
    let out = chain.execute(&[first.clone(), second.clone()]);
    assert_eq!(out.results[0], Ok(()));
    assert_eq!(
        out.results[1],
        Err(TxError::Replay {
            signer: key.public(),
            nonce: 42
        })
    );
    // The nonce key is the first tx's; the second's content must be absent.
    let refused_id = person_id(9);
    assert!(out
        .writes
        .pending(&keys::record(HJXX, &refused_id))
        .is_none());
    assert!(out
        .writes
        .pending(&keys::person_record(&refused_id, HJXX, &refused_id))
        .is_none());

    assert_eq!(
        chain.commit(std::slice::from_ref(&first)).results,
        vec![Ok(())]
    );
    for tx in [first, second] {
        let out = chain.execute(&[tx]);
        assert!(matches!(
            out.results[0],
            Err(TxError::Replay { nonce: 42, .. })
        ));
        assert!(out.writes.is_empty());
    }
}

#[test]
fn a_transaction_for_another_chain_is_refused() {
    let chain = Chain::genesis();
    let other = ChainId::new("another-chain").unwrap();
    let kind = submit(HJXX, vec![hjxx_record(&person_id(10), "周八")]);
    let tx = sign_for(other, &node("gaj"), 1, &kind);
    let out = chain.execute(&[tx]);
    assert_eq!(
        out.results[0],
        Err(TxError::WrongChain {
            got: "another-chain".into(),
            expected: CHAIN.into()
        })
    );
    assert!(out.writes.is_empty());
}

#[test]
fn records_for_an_unknown_source_are_refused() {
    let mut chain = Chain::genesis();
    let kind = submit("gaj.nosuch", vec![hjxx_record(&person_id(11), "吴九")]);
    assert!(matches!(
        chain.commit_one(&node("gaj"), kind),
        Err(TxError::NotFound {
            what: "data source",
            ..
        })
    ));
}

#[test]
fn an_empty_batch_is_refused() {
    let mut chain = Chain::genesis();
    assert!(matches!(
        chain.commit_one(&node("gaj"), submit(HJXX, vec![])),
        Err(TxError::Invalid { ref field, .. }) if field == "records"
    ));
}

#[test]
fn a_batch_is_capped_at_max_records_per_batch() {
    // Limits are tested at the edge: the limit passes, limit + 1 is refused.
    let mut chain = Chain::genesis();
    let id = person_id(12);
    let rec = hjxx_record(&id, "郑十");
    let over = submit(HJXX, vec![rec.clone(); MAX_RECORDS_PER_BATCH + 1]);
    assert_eq!(
        chain.commit_one(&node("gaj"), over),
        Err(TxError::TooLarge {
            what: "records in a batch",
            got: MAX_RECORDS_PER_BATCH + 1,
            max: MAX_RECORDS_PER_BATCH,
        })
    );
    assert!(!chain.state.contains_key(&keys::record(HJXX, &id)));
    let at_limit = submit(HJXX, vec![rec; MAX_RECORDS_PER_BATCH]);
    assert_eq!(chain.commit_one(&node("gaj"), at_limit), Ok(()));
    assert_eq!(chain.stored(HJXX, &id).version, 1);
}

#[test]
fn an_invalid_record_refuses_the_whole_batch_and_names_its_index() {
    // R-ARC-1: records are validated against the catalog; one bad record refuses the batch.
    let mut chain = Chain::genesis();
    let good = person_id(13);
    let mut bad = person_id(14);
    let wrong_check = if bad.ends_with('0') { '1' } else { '0' };
    bad.pop();
    bad.push(wrong_check);
    let kind = submit(
        HJXX,
        vec![hjxx_record(&good, "甲"), hjxx_record(&bad, "乙")],
    );
    match chain.commit_one(&node("gaj"), kind) {
        Err(TxError::InvalidRecord { index, key, reason }) => {
            assert_eq!(index, 1);
            assert_eq!(key, bad);
            assert!(reason.contains("check character"), "{reason}");
        }
        other => panic!("expected InvalidRecord, got {other:?}"),
    }
    assert!(!chain.state.contains_key(&keys::record(HJXX, &good)));
}

#[test]
fn a_record_key_longer_than_the_cap_is_refused() {
    // The record key is a SQL key column in the projection; a longer one could never project.
    let mut chain = Chain::genesis();
    let long = "婚".repeat(MAX_RECORD_KEY_BYTES / 3 + 1);
    let ok = "婚".repeat(MAX_RECORD_KEY_BYTES / 3);
    match chain.commit_one(
        &node("mzj"),
        submit(HYDJ, vec![hydj_record(&long, &person_id(21))]),
    ) {
        Err(TxError::InvalidRecord {
            index: 0, reason, ..
        }) => {
            assert!(reason.contains("exceeds"), "{reason}")
        }
        other => panic!("expected InvalidRecord, got {other:?}"),
    }
    chain
        .commit_one(
            &node("mzj"),
            submit(HYDJ, vec![hydj_record(&ok, &person_id(21))]),
        )
        .unwrap();
}

#[test]
fn a_refused_transaction_does_not_affect_its_neighbours() {
    // R-CHN-5: each transaction runs in its own overlay; a refusal leaves nothing behind.
    let mut chain = Chain::genesis();
    let (a, b, c) = (person_id(15), person_id(16), person_id(17));
    let before = chain.tx(&node("gaj"), &submit(HJXX, vec![hjxx_record(&a, "前")]));
    let refused = chain.tx(&admin("mzj"), &submit(HJXX, vec![hjxx_record(&b, "中")]));
    let after = chain.tx(&admin("gaj"), &submit(HJXX, vec![hjxx_record(&c, "后")]));
    let out = chain.commit(&[before, refused.clone(), after]);
    assert_eq!(out.results[0], Ok(()));
    assert!(is_unauthorized(&out.results[1]));
    assert_eq!(out.results[2], Ok(()));
    assert_eq!(out.first_error().map(|(i, _)| i), Some(1));
    assert_left_nothing(&out, &refused, &[keys::record(HJXX, &b)]);
    assert_eq!(chain.stored(HJXX, &a).version, 1);
    assert_eq!(chain.stored(HJXX, &c).version, 1);
    assert!(!chain.state.contains_key(&keys::record(HJXX, &b)));
}

#[test]
fn executing_the_same_block_twice_gives_the_same_writes_and_app_hash() {
    // R-CHN-5: every node (and the auditor) computes the same state from the same blocks.
    let mut chain = Chain::genesis();
    let (_, again_hash) = initial_state().writes().unwrap();
    assert_eq!(again_hash, chain.app_hash, "genesis is deterministic");
    let txs = vec![
        chain.tx(
            &node("gaj"),
            &submit(HJXX, vec![hjxx_record(&person_id(18), "一")]),
        ),
        chain.tx(
            &outsider(),
            &submit(HJXX, vec![hjxx_record(&person_id(19), "二")]),
        ),
        chain.tx(
            &node("mzj"),
            &submit(HYDJ, vec![hydj_record("J-1", &person_id(18))]),
        ),
        chain.tx(
            &admin("gaj"),
            &TxKind::ProposeValidatorChange(ValidatorChange::Remove {
                key: node("bdc").public(),
            }),
        ),
    ];
    let first = chain.execute(&txs);
    let second = execute_block(&chain.state.clone(), &chain.ctx(), &txs);
    assert_eq!(first.writes, second.writes);
    assert_eq!(first.results, second.results);
    assert!(!first.writes.is_empty());
    assert_eq!(
        app_hash::next(&chain.app_hash, &first.writes),
        app_hash::next(&chain.app_hash, &second.writes)
    );
}

#[test]
fn a_block_cut_short_executes_exactly_its_prefix() {
    // R-CHN-1: a proposer bounds its block's work with `execute_until`; the transactions it
    // leaves out write nothing, and the prefix it keeps executes exactly as a block of only
    // those transactions (which is what every validator re-executes).
    let mut chain = Chain::genesis();
    let txs: Vec<SignedTx> = (0..5u32)
        .map(|i| {
            chain.tx(
                &admin("gaj"),
                &submit(HJXX, vec![hjxx_record(&person_id(40 + i), "甲")]),
            )
        })
        .collect();
    let mut asked = Vec::new();
    let cut = crate::exec::execute_until(&chain.state, &chain.ctx(), &txs, |i| {
        asked.push(i);
        i == 3
    });
    assert_eq!(
        asked,
        vec![1, 2, 3],
        "asked before each transaction after the first"
    );
    assert_eq!(cut.results, vec![Ok(()); 3]);
    assert_eq!(cut.writes, chain.execute(&txs[..3]).writes);
    assert!(cut
        .writes
        .pending(&keys::record(HJXX, &person_id(43)))
        .is_none());
    // Asked to stop at once, the first transaction still runs: a block always makes progress.
    let one = crate::exec::execute_until(&chain.state, &chain.ctx(), &txs, |_| true);
    assert_eq!(one.results, vec![Ok(())]);
    assert_eq!(one.writes, chain.execute(&txs[..1]).writes);
}

// ---------------------------------------------------------------------------------------------
// Departments and validator changes (R-CHN-5)
// ---------------------------------------------------------------------------------------------

fn register_new_department(chain: &mut Chain) {
    let kind = TxKind::RegisterDepartment(department(NEW_DEPT, None));
    assert_eq!(chain.commit_one(&sysadmin(), kind), Ok(()));
    assert_eq!(chain.read::<u64>(keys::DEPT_COUNT), Some(5));
}

fn add_new_validator() -> TxKind {
    TxKind::ProposeValidatorChange(ValidatorChange::Add {
        department: NEW_DEPT.to_string(),
        key: node(NEW_DEPT).public(),
        power: 1,
    })
}

fn approve(proposal: u64) -> TxKind {
    TxKind::ApproveValidatorChange { proposal }
}

#[test]
fn a_validator_joins_only_after_more_than_two_thirds_of_departments_approve() {
    // R-CHN-5: with 5 departments a change needs 4 approvals (4 * 3 > 5 * 2; 3 * 3 <= 10).
    let mut chain = Chain::genesis();
    register_new_department(&mut chain);
    let genesis_set = chain.validators();
    let new_key = node(NEW_DEPT).public();

    assert_eq!(chain.commit_one(&admin("gaj"), add_new_validator()), Ok(()));
    let pending: ValidatorProposal = chain.read(&keys::validator_proposal(1)).unwrap();
    assert_eq!(
        pending.approvals.iter().collect::<Vec<_>>(),
        vec!["gaj"],
        "the proposer's approval counts"
    );
    assert_eq!(chain.validators(), genesis_set);

    assert_eq!(chain.commit_one(&admin("mzj"), approve(1)), Ok(()));
    assert_eq!(chain.validators(), genesis_set, "2 of 5 is not enough");
    assert_eq!(chain.commit_one(&admin("rsj"), approve(1)), Ok(()));
    assert_eq!(chain.validators(), genesis_set, "3 of 5 is not enough");
    assert_eq!(
        auth::role_of(&chain.state, &new_key).unwrap(),
        None,
        "the key has no role before the change applies"
    );

    assert_eq!(chain.commit_one(&admin("bdc"), approve(1)), Ok(()));
    let vs = chain.validators();
    assert_eq!(vs.validators.len(), genesis_set.validators.len() + 1);
    let added = vs.get(&new_key).expect("the new validator is in the set");
    assert_eq!((added.power, added.department.as_str()), (1, NEW_DEPT));
    assert_eq!(
        auth::role_of(&chain.state, &new_key).unwrap(),
        Some(KeyRole::DepartmentNode(NEW_DEPT.to_string()))
    );
    let dept: Department = chain.read(&keys::department(NEW_DEPT)).unwrap();
    assert_eq!(dept.validator_key, Some(new_key));
    assert!(!chain.state.contains_key(&keys::validator_proposal(1)));
    // An applied proposal is gone: a late approval finds nothing.
    assert!(matches!(
        chain.commit_one(&admin(NEW_DEPT), approve(1)),
        Err(TxError::NotFound { .. })
    ));
}

#[test]
fn a_department_approves_a_proposal_once_and_only_by_its_admin_key() {
    // R-CHN-5, R-SEC-7.
    let mut chain = Chain::genesis();
    register_new_department(&mut chain);
    assert_eq!(chain.commit_one(&admin("gaj"), add_new_validator()), Ok(()));
    let before: ValidatorProposal = chain.read(&keys::validator_proposal(1)).unwrap();

    assert_eq!(
        chain.commit_one(&admin("gaj"), approve(1)),
        Err(TxError::AlreadyExists {
            what: "approval of department",
            id: "gaj".into()
        })
    );
    for key in [node("mzj"), node("gaj"), sysadmin(), outsider()] {
        let r = chain.commit_one(&key, approve(1));
        assert!(is_unauthorized(&r), "{r:?}");
    }
    // A node key cannot propose either.
    assert!(is_unauthorized(
        &chain.commit_one(&node("mzj"), add_new_validator())
    ));
    let after: ValidatorProposal = chain.read(&keys::validator_proposal(1)).unwrap();
    assert_eq!(after, before, "refused approvals change nothing");
    assert!(matches!(
        chain.commit_one(&admin("mzj"), approve(77)),
        Err(TxError::NotFound {
            what: "validator proposal",
            ..
        })
    ));
}

#[test]
fn removing_an_unknown_validator_is_refused() {
    let mut chain = Chain::genesis();
    let kind = TxKind::ProposeValidatorChange(ValidatorChange::Remove {
        key: outsider().public(),
    });
    assert!(matches!(
        chain.commit_one(&admin("gaj"), kind),
        Err(TxError::NotFound {
            what: "validator",
            ..
        })
    ));
    assert!(!chain.state.contains_key(&keys::validator_proposal(1)));
}

#[test]
fn a_validator_leaves_after_a_quorum_of_departments_approves_its_removal() {
    // R-CHN-5: with 4 departments a change needs 3 approvals (3 * 3 > 8; 2 * 3 <= 8).
    let mut chain = Chain::genesis();
    let gone = node("bdc").public();
    let kind = TxKind::ProposeValidatorChange(ValidatorChange::Remove { key: gone });
    assert_eq!(chain.commit_one(&admin("gaj"), kind), Ok(()));
    assert_eq!(chain.commit_one(&admin("mzj"), approve(1)), Ok(()));
    assert!(
        chain.validators().get(&gone).is_some(),
        "2 of 4 is not enough"
    );
    assert_eq!(chain.commit_one(&admin("rsj"), approve(1)), Ok(()));
    let vs = chain.validators();
    assert!(vs.get(&gone).is_none());
    assert_eq!(vs.validators.len(), 3);
}

#[test]
fn a_department_registered_with_a_validator_key_is_refused() {
    // R-CHN-5: validators join only through a quorum-approved change.
    let mut chain = Chain::genesis();
    let kind = TxKind::RegisterDepartment(department(NEW_DEPT, Some(node(NEW_DEPT).public())));
    assert!(matches!(
        chain.commit_one(&sysadmin(), kind),
        Err(TxError::Invalid { ref field, .. }) if field == "validator_key"
    ));
    assert!(!chain.state.contains_key(&keys::department(NEW_DEPT)));
    assert_eq!(chain.read::<u64>(keys::DEPT_COUNT), Some(4));
}

#[test]
fn only_the_sysadmin_registers_departments() {
    // R-SEC-7.
    let mut chain = Chain::genesis();
    for key in [admin("gaj"), node("gaj"), outsider()] {
        let kind = TxKind::RegisterDepartment(department(NEW_DEPT, None));
        let r = chain.commit_one(&key, kind);
        assert!(is_unauthorized(&r), "{r:?}");
    }
    assert!(!chain.state.contains_key(&keys::department(NEW_DEPT)));
}

#[test]
fn a_department_id_is_registered_once() {
    let mut chain = Chain::genesis();
    let mut dup = department(NEW_DEPT, None);
    dup.id = "gaj".to_string();
    assert_eq!(
        chain.commit_one(&sysadmin(), TxKind::RegisterDepartment(dup)),
        Err(TxError::AlreadyExists {
            what: "department",
            id: "gaj".into()
        })
    );
    assert_eq!(chain.read::<u64>(keys::DEPT_COUNT), Some(4));
}

// ---------------------------------------------------------------------------------------------
// The catalog (R-ARC-1, R-CHN-5)
// ---------------------------------------------------------------------------------------------

fn shbx() -> DataSource {
    DataSource {
        id: "rsj.shbx".to_string(),
        name: "社会保险参保信息".to_string(),
        department: "rsj".to_string(),
        share_type: ShareType::Open,
        person_field: Some("sfzh".to_string()),
        record_key_field: "sfzh".to_string(),
        fields: vec![
            field("sfzh", FieldType::PersonId, true),
            field("jfjs", FieldType::Decimal, false),
        ],
    }
}

#[test]
fn a_source_registered_by_the_sysadmin_accepts_records() {
    let mut chain = Chain::genesis();
    assert_eq!(
        chain.commit_one(&sysadmin(), TxKind::RegisterSource(shbx())),
        Ok(())
    );
    assert_eq!(
        chain.read::<DataSource>(&keys::source("rsj.shbx")),
        Some(shbx())
    );
    let id = person_id(20);
    let rec = record(&[("sfzh", &id), ("jfjs", "5432.10")]);
    assert_eq!(
        chain.commit_one(&node("rsj"), submit("rsj.shbx", vec![rec.clone()])),
        Ok(())
    );
    assert_eq!(chain.stored("rsj.shbx", &id).record, rec);
}

#[test]
fn a_source_whose_record_key_is_not_a_field_is_refused() {
    let mut chain = Chain::genesis();
    let mut bad = shbx();
    bad.record_key_field = "nosuch".to_string();
    assert!(matches!(
        chain.commit_one(&sysadmin(), TxKind::RegisterSource(bad)),
        Err(TxError::Invalid { ref field, .. }) if field == "record_key_field"
    ));
    assert!(!chain.state.contains_key(&keys::source("rsj.shbx")));
}

#[test]
fn sources_are_registered_only_by_the_sysadmin_for_known_departments() {
    // R-SEC-7.
    let mut chain = Chain::genesis();
    let r = chain.commit_one(&admin("rsj"), TxKind::RegisterSource(shbx()));
    assert!(is_unauthorized(&r), "{r:?}");
    let mut orphan = shbx();
    orphan.department = "nosuch".to_string();
    assert!(matches!(
        chain.commit_one(&sysadmin(), TxKind::RegisterSource(orphan)),
        Err(TxError::NotFound {
            what: "department",
            ..
        })
    ));
    assert!(!chain.state.contains_key(&keys::source("rsj.shbx")));
}

// ---------------------------------------------------------------------------------------------
// Genesis validation (R-CHN-5)
// ---------------------------------------------------------------------------------------------

fn refusal_field(s: &InitialState) -> String {
    match s.validate() {
        Err(TxError::Invalid { field, .. }) => field,
        other => panic!("expected an invalid initial state, got {other:?}"),
    }
}

#[test]
fn the_fixture_initial_state_is_valid() {
    assert_eq!(initial_state().validate(), Ok(()));
}

#[test]
fn genesis_refuses_a_duplicate_department_id() {
    let mut s = initial_state();
    let mut dup = department(NEW_DEPT, None);
    dup.id = "gaj".to_string();
    s.departments.push(dup);
    assert_eq!(refusal_field(&s), "departments");
    assert!(s.writes().is_err());
}

#[test]
fn genesis_refuses_a_validator_that_is_not_its_departments_validator_key() {
    let mut s = initial_state();
    s.validators.validators[0].key = node("mzj").public();
    assert_eq!(refusal_field(&s), "validators");
    let mut s = initial_state();
    s.validators.validators[0].department = "nosuch".to_string();
    assert_eq!(refusal_field(&s), "validators");
    let mut s = initial_state();
    s.validators.validators[0].power = 0;
    assert_eq!(refusal_field(&s), "validators");
}

#[test]
fn genesis_refuses_a_source_of_an_unknown_department() {
    let mut s = initial_state();
    s.sources[0].department = "nosuch".to_string();
    assert_eq!(refusal_field(&s), "sources");
    assert!(s.writes().is_err());
}

// Regressions of defects found by probing (each failed before its fix).

#[test]
fn removing_every_validator_by_parallel_proposals_stops_at_the_last_one() {
    // R-CHN-5: checks run again when a change reaches its quorum.
    let mut chain = Chain::genesis();
    for (i, d) in DEPTS.iter().enumerate() {
        let kind = TxKind::ProposeValidatorChange(ValidatorChange::Remove {
            key: node(d).public(),
        });
        assert_eq!(
            chain.commit_one(&admin("gaj"), kind),
            Ok(()),
            "proposal {i}"
        );
    }
    let mut applied = 0;
    for id in 1..=4u64 {
        let a = chain.commit_one(&admin("mzj"), approve(id));
        let b = chain.commit_one(&admin("rsj"), approve(id));
        assert_eq!(a, Ok(()));
        if b.is_ok() {
            applied += 1;
        }
    }
    assert_eq!(applied, 3, "the last validator stays");
    assert_eq!(chain.validators().validators.len(), 1);
}

#[test]
fn a_removed_validator_key_loses_its_role_and_its_department_may_add_a_new_one() {
    let mut chain = Chain::genesis();
    let gone = node("bdc");
    let kind = TxKind::ProposeValidatorChange(ValidatorChange::Remove { key: gone.public() });
    assert_eq!(chain.commit_one(&admin("gaj"), kind), Ok(()));
    assert_eq!(chain.commit_one(&admin("mzj"), approve(1)), Ok(()));
    assert_eq!(chain.commit_one(&admin("rsj"), approve(1)), Ok(()));
    assert!(chain
        .read::<KeyRole>(&keys::key_role(&gone.public()))
        .is_none());
    let d: Department = chain.read(&keys::department("bdc")).unwrap();
    assert_eq!(d.validator_key, None);
    // An Add for a department that still runs a validator is refused; for bdc now it is fine.
    let busy = TxKind::ProposeValidatorChange(ValidatorChange::Add {
        department: "gaj".into(),
        key: outsider().public(),
        power: 1,
    });
    assert!(matches!(
        chain.commit_one(&admin("gaj"), busy),
        Err(TxError::Invalid { .. })
    ));
    let fresh = TxKind::ProposeValidatorChange(ValidatorChange::Add {
        department: "bdc".into(),
        key: outsider().public(),
        power: 1,
    });
    assert_eq!(chain.commit_one(&admin("bdc"), fresh), Ok(()));
}

#[test]
fn voting_power_is_capped() {
    let mut chain = Chain::genesis();
    assert_eq!(
        chain.commit_one(
            &sysadmin(),
            TxKind::RegisterDepartment(department(NEW_DEPT, None))
        ),
        Ok(())
    );
    let huge = TxKind::ProposeValidatorChange(ValidatorChange::Add {
        department: NEW_DEPT.into(),
        key: node(NEW_DEPT).public(),
        power: u64::MAX,
    });
    assert!(matches!(
        chain.commit_one(&admin("gaj"), huge),
        Err(TxError::Invalid { .. })
    ));
}

#[test]
fn genesis_refuses_a_validator_listed_twice() {
    let mut s = initial_state();
    let first = s.validators.validators[0].clone();
    s.validators.validators.push(first);
    assert!(matches!(s.validate(), Err(TxError::Invalid { .. })));
}

#[test]
fn a_person_id_record_key_is_one_record_whatever_the_case_of_its_x() {
    // R-ARC-1, R-ARC-2: "…X" and "…x" are the same resident, so the same record.
    let mut chain = Chain::genesis();
    let lower = "11010519491231002x";
    let upper = "11010519491231002X";
    assert_eq!(
        chain.commit_one(&node("gaj"), submit(HJXX, vec![hjxx_record(upper, "张三")])),
        Ok(())
    );
    assert_eq!(
        chain.commit_one(
            &node("gaj"),
            submit(HJXX, vec![hjxx_record(lower, "张三丰")])
        ),
        Ok(())
    );
    assert_eq!(chain.stored(HJXX, upper).version, 2);
    assert!(!chain.state.contains_key(&keys::record(HJXX, lower)));
}

// ---------------------------------------------------------------------------------------------
// Equivocation evidence (R-CHN-1, R-AUD-1)
// ---------------------------------------------------------------------------------------------

fn signed_vote(key: &Keypair, height: u64, block: u8) -> (Vote, Signature) {
    let vote = Vote {
        chain_id: chain_id(),
        height: Height(height),
        round: Round(1),
        kind: VoteKind::Precommit,
        block_hash: Some(Hash([block; 32])),
    };
    let sig = key.sign(&vote.sign_digest());
    (vote, sig)
}

fn double_vote(offender: &Keypair) -> VoteEquivocation {
    VoteEquivocation {
        validator: offender.public(),
        a: signed_vote(offender, 7, 1),
        b: signed_vote(offender, 7, 2),
    }
}

#[test]
fn a_validator_records_another_validators_double_vote_once() {
    let mut chain = Chain::genesis();
    let e = double_vote(&node("mzj"));
    let key = keys::evidence(&e.id());
    chain
        .commit_one(&node("gaj"), TxKind::ReportEquivocation(e.clone()))
        .unwrap();
    let stored: StoredEvidence = chain.read(&key).expect("evidence stored");
    assert_eq!(stored.evidence, e);
    assert_eq!(stored.reporter, node("gaj").public());
    assert_eq!(stored.recorded_at, Height(1));
    // The same offence again (another reporter, or the votes swapped) is refused.
    let swapped = VoteEquivocation {
        a: e.b.clone(),
        b: e.a.clone(),
        ..e.clone()
    };
    assert!(matches!(
        chain.commit_one(&node("rsj"), TxKind::ReportEquivocation(swapped)),
        Err(TxError::AlreadyExists { .. })
    ));
}

#[test]
fn evidence_that_proves_nothing_is_refused_and_writes_nothing() {
    let mut chain = Chain::genesis();
    let offender = node("mzj");
    let good = double_vote(&offender);
    let mut same_block = good.clone();
    same_block.b = good.a.clone();
    let mut other_height = good.clone();
    other_height.b = signed_vote(&offender, 8, 2);
    let mut bad_sig = good.clone();
    bad_sig.b.1 .0[5] ^= 1;
    let mut forged = good.clone();
    forged.b = signed_vote(&node("rsj"), 7, 2); // signed by someone else
    let not_validator = double_vote(&outsider());
    let mut other_chain = good.clone();
    other_chain.a.0.chain_id = ChainId::new("another-chain").unwrap();
    other_chain.a.1 = offender.sign(&other_chain.a.0.sign_digest());
    for (what, e) in [
        ("same block", same_block),
        ("different heights", other_height),
        ("bad signature", bad_sig),
        ("signed by another key", forged),
        ("offender not a validator", not_validator),
        ("vote for another chain", other_chain),
    ] {
        let tx = chain.tx(&node("gaj"), &TxKind::ReportEquivocation(e.clone()));
        let out = chain.execute(std::slice::from_ref(&tx));
        assert!(
            matches!(out.results[0], Err(TxError::Invalid { .. })),
            "{what}: {:?}",
            out.results[0]
        );
        assert_left_nothing(&out, &tx, &[keys::evidence(&e.id())]);
    }
}

#[test]
fn only_validators_may_report_equivocation() {
    let mut chain = Chain::genesis();
    for key in [admin("gaj"), sysadmin(), outsider()] {
        let r = chain.commit_one(&key, TxKind::ReportEquivocation(double_vote(&node("mzj"))));
        assert!(is_unauthorized(&r), "{r:?}");
    }
}
