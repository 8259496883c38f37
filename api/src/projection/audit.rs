//! The audit log in SQL (R-AUD-2, R-AUD-3): one row per audit entry of every `AppendAudit`
//! transaction, keyed by where it is on chain (height, transaction index, entry index) so each
//! row leads to its Merkle inclusion proof and commit certificate; and `audit_persons`, one row
//! per person an entry is about — its `person` and every person its read returned
//! ([`govchain_chaincode::access::ReturnedPersons`]) — keyed by person and time, so a person's
//! access history finds the searches and combined queries that returned them.

use govchain_chaincode::access::{AuditAction, AuditEntry};
use govchain_ledger::{Height, SignedTx};
use sqlx::AnyPool;

use super::{ProjectionError, SqlTx, Table};

/// The audit table, in digest order (see [`super::TABLES`] for the column kinds).
pub(super) const TABLES: &[Table] = &[
    (
        "audit",
        &[
            ("height", 'i'),
            ("tx_index", 'i'),
            ("entry_index", 'i'),
            ("time_ms", 'i'),
            ("user_id", 't'),
            ("department", 't'),
            ("action", 't'),
            ("endpoint", 't'),
            ("person_id", 'n'),
            ("matter", 'n'),
            ("consent", 'n'),
            ("outcome", 't'),
            ("results", 'i'),
            ("persons", 'i'),
            ("node", 't'),
            ("tx_id", 't'),
            ("entry", 't'),
        ],
        "height, tx_index, entry_index",
    ),
    (
        "audit_persons",
        &[
            ("person_id", 't'),
            ("time_ms", 'i'),
            ("height", 'i'),
            ("tx_index", 'i'),
            ("entry_index", 'i'),
        ],
        "person_id, time_ms, height, tx_index, entry_index",
    ),
];

/// Creates the audit tables and their search indexes.
pub(super) async fn migrate(pool: &AnyPool, long: &str, suffix: &str) -> Result<(), sqlx::Error> {
    let ddl = [
        format!(
            "CREATE TABLE IF NOT EXISTS audit (height BIGINT NOT NULL, tx_index BIGINT NOT NULL, \
             entry_index BIGINT NOT NULL, time_ms BIGINT NOT NULL, user_id VARCHAR(64) NOT NULL, \
             department VARCHAR(64) NOT NULL, action VARCHAR(32) NOT NULL, \
             endpoint VARCHAR(512) NOT NULL, person_id VARCHAR(18), matter VARCHAR(64), \
             consent VARCHAR(64), outcome VARCHAR(64) NOT NULL, results BIGINT NOT NULL, \
             persons BIGINT NOT NULL, node VARCHAR(64) NOT NULL, tx_id VARCHAR(64) NOT NULL, \
             entry {long} NOT NULL, PRIMARY KEY (height, tx_index, entry_index)){suffix}"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS audit_persons (person_id VARCHAR(18) NOT NULL, \
             time_ms BIGINT NOT NULL, height BIGINT NOT NULL, tx_index BIGINT NOT NULL, \
             entry_index BIGINT NOT NULL, \
             PRIMARY KEY (person_id, time_ms, height, tx_index, entry_index)){suffix}"
        ),
        "CREATE INDEX IF NOT EXISTS audit_user ON audit (user_id, time_ms)".into(),
        "CREATE INDEX IF NOT EXISTS audit_department ON audit (department, time_ms)".into(),
        "CREATE INDEX IF NOT EXISTS audit_action ON audit (action, time_ms)".into(),
        "CREATE INDEX IF NOT EXISTS audit_time ON audit (time_ms)".into(),
    ];
    for stmt in ddl {
        sqlx::query(sqlx::AssertSqlSafe(stmt)).execute(pool).await?;
    }
    Ok(())
}

/// Inserts the entries of one `AppendAudit` transaction.
pub(super) async fn apply(
    tx: &mut SqlTx<'_>,
    height: Height,
    index: usize,
    t: &SignedTx,
    entries: &[AuditEntry],
) -> Result<(), ProjectionError> {
    let tx_id = t.id().to_string();
    let node = t.body.signer.to_hex();
    for (i, e) in entries.iter().enumerate() {
        let (matter, consent) = match &e.action {
            AuditAction::Access(r) => (r.matter.clone(), r.consent.clone()),
            _ => (None, None),
        };
        let json = serde_json::to_string(e).map_err(|err| ProjectionError::Diverged {
            height: height.0,
            reason: format!("audit entry: {err}"),
        })?;
        let cut = |s: &str, n: usize| s.chars().take(n).collect::<String>();
        sqlx::query(
            "INSERT INTO audit (height, tx_index, entry_index, time_ms, user_id, department, \
             action, endpoint, person_id, matter, consent, outcome, results, persons, node, \
             tx_id, entry) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(height.0 as i64)
        .bind(index as i64)
        .bind(i as i64)
        .bind(e.time.0 as i64)
        .bind(cut(&e.user, 64))
        .bind(cut(&e.department, 64))
        .bind(e.action.name())
        .bind(cut(&e.endpoint, 512))
        .bind(e.person.as_ref().map(|p| cut(p, 18)))
        .bind(matter.map(|m| cut(&m, 64)))
        .bind(consent.map(|c| cut(&c, 64)))
        .bind(cut(&e.outcome, 64))
        .bind(e.results.min(i64::MAX as u64) as i64)
        .bind(e.persons.total.min(i64::MAX as u64) as i64)
        .bind(node.clone())
        .bind(tx_id.clone())
        .bind(json)
        .execute(&mut **tx)
        .await?;
        // The persons the entry is about: its own person and those its read returned.
        let persons: std::collections::BTreeSet<String> = e
            .person
            .iter()
            .chain(&e.persons.ids)
            .map(|p| cut(p, 18))
            .collect();
        for p in persons {
            sqlx::query(
                "INSERT INTO audit_persons (person_id, time_ms, height, tx_index, entry_index) \
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(p)
            .bind(e.time.0 as i64)
            .bind(height.0 as i64)
            .bind(index as i64)
            .bind(i as i64)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}
