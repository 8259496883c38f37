//! Projection tests (R-ARC-1…3, R-QRY-6 index part, R-AUD-4) on BOTH backends: SQLite in a
//! temporary file and MySQL/MariaDB at `GOVCHAIN_MYSQL_URL` (each test in a database of its own).
//! A MySQL test fails, loudly, when the variable is unset: CI and `scripts/test` set it.

use std::collections::BTreeMap;

use govchain_chaincode::catalog::{DataSource, FieldDef, FieldType, ShareType};
use govchain_chaincode::person::check_char;
use govchain_chaincode::records::Record;
use govchain_chaincode::TxKind;
use govchain_ledger::{
    merkle, Block, BlockHeader, ChainId, Hash, Height, Keypair, Round, SignedTx, TimestampMs,
    TxBody,
};
use sqlx::Row;

use super::records::row_id;
use super::{Backend, Projection, ProjectionError};

const CHAIN: &str = "govchain-test";

fn field(name: &str, ty: FieldType, required: bool) -> FieldDef {
    FieldDef {
        name: name.to_string(),
        label: match name {
            "xm" => "姓名".to_string(),
            "zz" => "住址".to_string(),
            _ => name.to_uppercase(),
        },
        ty,
        required,
    }
}

/// 户籍: keyed by the person id, with a name and an address.
fn hjxx() -> DataSource {
    DataSource {
        id: "gaj.hjxx".to_string(),
        name: "户籍人口基本信息".to_string(),
        department: "gaj".to_string(),
        share_type: ShareType::Conditional,
        person_field: Some("sfzh".to_string()),
        record_key_field: "sfzh".to_string(),
        fields: vec![
            field("sfzh", FieldType::PersonId, true),
            field("xm", FieldType::Text, true),
            field("zz", FieldType::Text, false),
            field("csrq", FieldType::Date, false),
        ],
    }
}

fn person_id(seq: u32) -> String {
    let mut s = format!("11010519491231{seq:03}");
    s.push(check_char(s.as_bytes()));
    s
}

fn record(id: &str, name: &str, addr: &str) -> Record {
    let fields: BTreeMap<String, String> = [("sfzh", id), ("xm", name), ("zz", addr)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    // Raw bytes exactly as a department system delivered them: not even UTF-8.
    let raw = [
        format!("{id}|{name}|{addr}").as_bytes(),
        &[0xD5, 0xC5, 0xFF][..],
    ]
    .concat();
    Record { fields, raw }
}

fn tx(nonce: u64, kind: TxKind) -> SignedTx {
    let key = Keypair::from_seed([7; 32]);
    TxBody {
        chain_id: ChainId::new(CHAIN).unwrap(),
        signer: key.public(),
        nonce,
        created_at: TimestampMs(1),
        payload: kind.encode(),
    }
    .sign(&key)
}

fn submit(nonce: u64, records: Vec<Record>) -> SignedTx {
    tx(
        nonce,
        TxKind::SubmitRecords {
            source: "gaj.hjxx".into(),
            records,
        },
    )
}

fn block(height: u64, txs: Vec<SignedTx>) -> Block {
    let ids: Vec<Hash> = txs.iter().map(SignedTx::id).collect();
    Block {
        header: BlockHeader {
            chain_id: ChainId::new(CHAIN).unwrap(),
            height: Height(height),
            round: Round(0),
            prev_hash: Hash([height as u8; 32]),
            tx_root: merkle::root(&ids),
            tx_count: txs.len() as u32,
            app_hash: Hash([0; 32]),
            proposer: Keypair::from_seed([1; 32]).public(),
            time: TimestampMs(height),
            validator_set_hash: Hash([3; 32]),
        },
        txs,
    }
}

/// Three blocks: two persons; person 1 re-delivered unchanged, then changed (version 2).
fn blocks() -> Vec<Block> {
    let (p1, p2) = (person_id(1), person_id(2));
    vec![
        block(
            1,
            vec![submit(
                1,
                vec![
                    record(&p1, "张伟明", "北京市朝阳区建国路88号"),
                    record(&p2, "李娜", "北京市海淀区中关村大街1号"),
                ],
            )],
        ),
        block(
            2,
            vec![submit(
                2,
                vec![record(&p1, "张伟明", "北京市朝阳区建国路88号")],
            )],
        ),
        block(
            3,
            vec![submit(
                3,
                vec![record(&p1, "张伟明", "北京市东城区王府井大街9号")],
            )],
        ),
    ]
}

/// A fresh, empty projection database on `backend`.
struct TestDb {
    p: Projection,
    url: String,
    _dir: Option<tempfile::TempDir>,
    drop_db: Option<(String, String)>,
}

impl TestDb {
    async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}", dir.path().join("p.db").display());
                TestDb {
                    p: Projection::open(&url).await.unwrap(),
                    url,
                    _dir: Some(dir),
                    drop_db: None,
                }
            }
            Backend::MySql => {
                let base = std::env::var("GOVCHAIN_MYSQL_URL").expect(
                    "GOVCHAIN_MYSQL_URL is not set: the MySQL projection tests need a server \
                     (scripts/test and .ci/run set it to mysql://root@127.0.0.1:3306/test)",
                );
                let (prefix, _) = base.rsplit_once('/').expect("URL ends in /DATABASE");
                let name = format!("govchain_t{}", rand_suffix());
                let admin = Projection::server(&base).await.expect("MySQL reachable");
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "CREATE DATABASE {name} CHARACTER SET utf8mb4"
                )))
                .execute(&admin)
                .await
                .unwrap();
                let url = format!("{prefix}/{name}");
                let p = Projection::open(&url).await.unwrap();
                TestDb {
                    p,
                    url,
                    _dir: None,
                    drop_db: Some((base, name)),
                }
            }
        }
    }

    async fn drop_database(self) {
        if let Some((base, name)) = self.drop_db {
            self.p.pool().close().await;
            let admin = Projection::server(&base).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {name}")))
                .execute(&admin)
                .await
                .unwrap();
        }
    }
}

fn rand_suffix() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{}_{}", std::process::id(), t % 1_000_000_000)
}

async fn projected(backend: Backend) -> TestDb {
    let db = TestDb::new(backend).await;
    db.p.init(Hash([9; 32]), &[hjxx()]).await.unwrap();
    for b in blocks() {
        db.p.apply_block(&b).await.unwrap();
    }
    db
}

async fn versions_and_history(backend: Backend) {
    let db = projected(backend).await;
    let p = &db.p;
    let (h, hash) = p.cursor().await.unwrap().unwrap();
    assert_eq!(h, Height(3));
    assert_eq!(hash, blocks()[2].hash());
    let row = sqlx::query(
        "SELECT version, height, fields, raw, person_id, tx_id FROM records \
         WHERE source = ? AND record_key = ?",
    )
    .bind("gaj.hjxx")
    .bind(person_id(1))
    .fetch_one(p.pool())
    .await
    .unwrap();
    let version: i64 = row.try_get(0).unwrap();
    let height: i64 = row.try_get(1).unwrap();
    let fields: String = row.try_get(2).unwrap();
    let raw: String = row.try_get(3).unwrap();
    let person: Option<String> = row.try_get(4).unwrap();
    let tx_id: String = row.try_get(5).unwrap();
    assert_eq!(
        (version, height),
        (2, 3),
        "unchanged re-delivery made no version"
    );
    assert!(fields.contains("王府井"), "{fields}");
    assert_eq!(
        hex::decode(raw).unwrap(),
        record(&person_id(1), "张伟明", "北京市东城区王府井大街9号").raw,
        "raw payload kept byte for byte"
    );
    assert_eq!(person.as_deref(), Some(person_id(1).as_str()));
    assert_eq!(tx_id, blocks()[2].txs[0].id().to_string());
    // History: every superseded version, and the current one.
    let history = sqlx::query(
        "SELECT version, height FROM record_versions WHERE source = ? AND record_key = ? \
         UNION ALL SELECT version, height FROM records WHERE source = ? AND record_key = ? \
         ORDER BY version",
    )
    .bind("gaj.hjxx")
    .bind(person_id(1))
    .bind("gaj.hjxx")
    .bind(person_id(1))
    .fetch_all(p.pool())
    .await
    .unwrap();
    let history: Vec<(i64, i64)> = history
        .iter()
        .map(|r| (r.try_get(0).unwrap(), r.try_get(1).unwrap()))
        .collect();
    assert_eq!(history, vec![(1, 1), (2, 3)]);
    // Row ids: fixed where a key first appears (block 1, transaction 0, records 0 and 1), kept
    // by later versions; the field index holds the current values only.
    let rids = sqlx::query("SELECT record_key, rid FROM records ORDER BY rid")
        .fetch_all(p.pool())
        .await
        .unwrap();
    let rids: Vec<(String, i64)> = rids
        .iter()
        .map(|r| (r.try_get(0).unwrap(), r.try_get(1).unwrap()))
        .collect();
    let (r1, r2) = (row_id(Height(1), 0, 0), row_id(Height(1), 0, 1));
    assert_eq!(rids, vec![(person_id(1), r1), (person_id(2), r2)]);
    assert!(row_id(Height(1), 0, 1) < row_id(Height(1), 1, 0));
    assert!(row_id(Height(1), 19_999, 9_999) < row_id(Height(2), 0, 0));
    let addr = sqlx::query("SELECT value FROM record_fields WHERE rid = ? AND field = 'zz'")
        .bind(r1)
        .fetch_all(p.pool())
        .await
        .unwrap();
    let addr: Vec<String> = addr.iter().map(|r| r.try_get(0).unwrap()).collect();
    assert_eq!(addr, vec!["北京市东城区王府井大街9号".to_string()]);
    // Fuzzy index: two characters of a three-character name; a street fragment (old street gone).
    for (gram, expect) in [("伟明", 1usize), ("王府", 1), ("建国", 0), ("中关", 1)] {
        let n = sqlx::query("SELECT COUNT(*) FROM ngrams WHERE gram = ?")
            .bind(gram)
            .fetch_one(p.pool())
            .await
            .unwrap();
        let n: i64 = n.try_get(0).unwrap();
        assert_eq!(n as usize, expect, "gram {gram}");
    }
    db.drop_database().await;
}

async fn refused_blocks_change_nothing(backend: Backend) {
    let db = projected(backend).await;
    let before = db.p.digest().await.unwrap();
    // Not the next height.
    let r = db.p.apply_block(&block(5, vec![])).await;
    assert!(
        matches!(r, Err(ProjectionError::NotNext { at: 3, got: 5 })),
        "{r:?}"
    );
    // A block whose second record is invalid (a wrong check digit): the first record's rows are
    // rolled back with it.
    let mut bad_id = person_id(3);
    bad_id.pop();
    bad_id.push(if bad_id.ends_with('1') { '2' } else { '1' });
    let bad = block(
        4,
        vec![submit(
            4,
            vec![
                record(&person_id(4), "王芳", "上海市"),
                record(&bad_id, "赵磊", "上海市"),
            ],
        )],
    );
    let r = db.p.apply_block(&bad).await;
    assert!(
        matches!(r, Err(ProjectionError::Diverged { height: 4, .. })),
        "{r:?}"
    );
    assert_eq!(
        db.p.digest().await.unwrap(),
        before,
        "nothing partially written"
    );
    assert_eq!(db.p.cursor().await.unwrap().unwrap().0, Height(3));
    db.drop_database().await;
}

#[tokio::test]
async fn sqlite_records_are_versioned_with_history_raw_bytes_and_ngrams() {
    versions_and_history(Backend::Sqlite).await;
}

#[tokio::test]
async fn mysql_records_are_versioned_with_history_raw_bytes_and_ngrams() {
    versions_and_history(Backend::MySql).await;
}

/// A database projected under another layout (an older version, or one from before layouts
/// were versioned) is emptied on open, so the node rebuilds it from genesis.
async fn older_layout_is_emptied(backend: Backend) {
    let db = projected(backend).await;
    let version = |p: Projection| async move {
        let r = sqlx::query("SELECT version FROM projection_schema")
            .fetch_one(p.pool())
            .await
            .unwrap();
        r.try_get::<i64, _>(0).unwrap()
    };
    assert_eq!(version(db.p.clone()).await, super::SCHEMA_VERSION);
    let reopened = Projection::open(&db.url).await.unwrap();
    assert_eq!(
        reopened.cursor().await.unwrap().unwrap().0,
        Height(3),
        "the same layout is kept"
    );
    for change in [
        "UPDATE projection_schema SET version = 1",
        "DROP TABLE projection_schema",
    ] {
        let p = Projection::open(&db.url).await.unwrap();
        if p.cursor().await.unwrap().is_none() {
            p.init(Hash([9; 32]), &[hjxx()]).await.unwrap();
            p.apply_block(&blocks()[0]).await.unwrap();
        }
        sqlx::query(change).execute(p.pool()).await.unwrap();
        p.pool().close().await;
        let p = Projection::open(&db.url).await.unwrap();
        assert_eq!(p.cursor().await.unwrap(), None, "after {change}");
        let n = sqlx::query("SELECT COUNT(*) FROM records")
            .fetch_one(p.pool())
            .await
            .unwrap();
        assert_eq!(n.try_get::<i64, _>(0).unwrap(), 0, "after {change}");
        assert_eq!(version(p.clone()).await, super::SCHEMA_VERSION);
        p.pool().close().await;
    }
    db.drop_database().await;
}

#[tokio::test]
async fn sqlite_a_database_of_an_older_layout_is_emptied_for_a_rebuild() {
    older_layout_is_emptied(Backend::Sqlite).await;
}

#[tokio::test]
async fn mysql_a_database_of_an_older_layout_is_emptied_for_a_rebuild() {
    older_layout_is_emptied(Backend::MySql).await;
}

#[tokio::test]
async fn sqlite_refused_blocks_change_nothing() {
    refused_blocks_change_nothing(Backend::Sqlite).await;
}

#[tokio::test]
async fn mysql_refused_blocks_change_nothing() {
    refused_blocks_change_nothing(Backend::MySql).await;
}

#[tokio::test]
async fn the_same_chain_gives_the_same_digest_on_both_backends_and_a_different_one_otherwise() {
    let a = projected(Backend::Sqlite).await;
    let b = projected(Backend::MySql).await;
    let da = a.p.digest().await.unwrap();
    assert_eq!(da, b.p.digest().await.unwrap(), "SQLite and MySQL agree");
    // One more block changes the digest.
    a.p.apply_block(&block(
        4,
        vec![submit(4, vec![record(&person_id(5), "刘洋", "天津市")])],
    ))
    .await
    .unwrap();
    assert_ne!(a.p.digest().await.unwrap(), da);
    a.drop_database().await;
    b.drop_database().await;
}

#[tokio::test]
async fn an_unsupported_url_is_refused_clearly() {
    let r = Projection::open("postgres://x@y/z").await;
    assert!(
        matches!(r, Err(ProjectionError::UnsupportedUrl(_))),
        "{r:?}"
    );
}
