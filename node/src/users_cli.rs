//! `govchain users import FILE`: batch import of users from CSV or XLSX (R-SEC-1), with a report
//! of every row that was not imported and why.
//!
//! The first row names the columns (English or Chinese): `id`/`账号`, `name`/`姓名`,
//! `department`/`部门`, `level`/`级别`, `roles`/`角色` (separated by `;`, `,` or `|`: staff,
//! department_admin, auditor, system_admin, system), optionally `disabled`/`停用` (true/false,
//! 是/否), `key`/`公钥` (a system account's hex public key) and `password`/`密码` (an initial
//! password, set on the importing node). Rows are checked here first (types, duplicates in the
//! file), then by chaincode: the valid rows go on chain in transactions of up to 1,000 users; a
//! transaction chaincode refuses is split in halves until each refused row is found, so a bad row
//! never keeps the good ones out and the report gives chaincode's own reason.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{bail, Context};
use govchain_chaincode::access::{Role, User, MAX_USERS_PER_TX};
use govchain_chaincode::business::PutMode;
use govchain_chaincode::TxKind;
use govchain_ledger::{ChainId, Keypair, PublicKey};
use serde::Serialize;

use crate::client::{sign_tx, Client};

/// Largest import file.
pub const MAX_FILE_BYTES: usize = 64 * 1024 * 1024;

/// A row that reads as a user.
#[derive(Debug, Clone)]
pub struct Row {
    /// 1-based row number in the file (the header is row 1).
    pub row: usize,
    /// The user.
    pub user: User,
    /// Initial password, if given.
    pub password: Option<String>,
}

/// A row that was not imported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    /// 1-based row number.
    pub row: usize,
    /// The user id as written.
    pub id: String,
    /// Why.
    pub error: String,
}

/// What an import did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Users committed.
    pub imported: usize,
    /// Rows refused, in row order.
    pub errors: Vec<RowError>,
    /// Transactions committed.
    pub transactions: usize,
}

fn column(name: &str) -> Option<&'static str> {
    Some(match name.trim().to_lowercase().as_str() {
        "id" | "账号" | "用户名" => "id",
        "name" | "姓名" => "name",
        "department" | "部门" => "department",
        "level" | "级别" => "level",
        "roles" | "角色" => "roles",
        "disabled" | "停用" => "disabled",
        "key" | "公钥" => "key",
        "password" | "密码" => "password",
        _ => return None,
    })
}

/// Reads the cells of a CSV or XLSX file (by its first bytes: XLSX is a ZIP archive).
pub fn cells(bytes: &[u8]) -> anyhow::Result<Vec<Vec<String>>> {
    if bytes.len() > MAX_FILE_BYTES {
        bail!(
            "the file has {} bytes; the limit is {MAX_FILE_BYTES}",
            bytes.len()
        );
    }
    if bytes.starts_with(b"PK\x03\x04") {
        use calamine::{Reader, Xlsx};
        let mut book: Xlsx<_> =
            Xlsx::new(std::io::Cursor::new(bytes)).context("not an XLSX workbook")?;
        let range = book
            .worksheet_range_at(0)
            .context("the workbook has no sheet")?
            .context("reading the first sheet")?;
        return Ok(range
            .rows()
            .map(|r| r.iter().map(|c| c.to_string()).collect())
            .collect());
    }
    let text = std::str::from_utf8(bytes).context("a CSV file must be UTF-8")?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut rd = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    rd.records()
        .map(|r| {
            Ok(r.context("malformed CSV")?
                .iter()
                .map(str::to_string)
                .collect())
        })
        .collect()
}

/// Turns cells into users; rows that cannot be users (or repeat an id) go to the errors.
pub fn parse(cells: &[Vec<String>]) -> anyhow::Result<(Vec<Row>, Vec<RowError>)> {
    let Some(header) = cells.first() else {
        bail!("the file is empty");
    };
    let mut at: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, h) in header.iter().enumerate() {
        match column(h) {
            Some(c) => {
                if at.insert(c, i).is_some() {
                    bail!("column {c} appears twice in the header");
                }
            }
            None if h.trim().is_empty() => {}
            None => bail!("unknown column {h:?} in the header"),
        }
    }
    for c in ["id", "name", "department", "level", "roles"] {
        if !at.contains_key(c) {
            bail!("the header has no {c} column");
        }
    }
    let (mut rows, mut errors) = (Vec::new(), Vec::new());
    let mut seen = BTreeSet::new();
    for (i, r) in cells.iter().enumerate().skip(1) {
        let get = |c: &str| {
            at.get(c)
                .and_then(|&j| r.get(j))
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        if r.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        let id = get("id");
        let row = i + 1;
        match row_user(&get) {
            Err(e) => errors.push(RowError { row, id, error: e }),
            Ok(_) if !seen.insert(id.clone()) => errors.push(RowError {
                row,
                id: id.clone(),
                error: format!("user {id} appears on an earlier row"),
            }),
            Ok((user, password)) => rows.push(Row {
                row,
                user,
                password,
            }),
        }
    }
    Ok((rows, errors))
}

fn row_user(get: &dyn Fn(&str) -> String) -> Result<(User, Option<String>), String> {
    // XLSX numbers read as "3" or "3.0".
    let level_text = get("level");
    let level: u8 = level_text
        .strip_suffix(".0")
        .unwrap_or(&level_text)
        .parse()
        .map_err(|_| format!("level {level_text:?} is not a number"))?;
    let mut roles = Vec::new();
    for r in get("roles")
        .split([';', ',', '|'])
        .filter(|r| !r.trim().is_empty())
    {
        roles.push(Role::parse(r).ok_or_else(|| format!("unknown role {:?}", r.trim()))?);
    }
    let disabled = match get("disabled").to_lowercase().as_str() {
        "" | "false" | "no" | "否" | "0" => false,
        "true" | "yes" | "是" | "1" => true,
        other => return Err(format!("disabled {other:?}: true or false")),
    };
    let key = match get("key").as_str() {
        "" => None,
        k => {
            Some(PublicKey::from_hex(k).map_err(|_| format!("key {k:?} is not a hex public key"))?)
        }
    };
    let user = User {
        id: get("id"),
        name: get("name"),
        department: get("department"),
        level,
        roles,
        disabled,
        key,
    };
    user.validate().map_err(|e| e.to_string())?;
    let password = Some(get("password")).filter(|p| !p.is_empty());
    if let Some(p) = &password {
        govchain_api::security::check_password(p).map_err(str::to_string)?;
    }
    Ok((user, password))
}

/// Puts `rows` on chain through the node at `client`, signed by `key`; chaincode's refusals
/// become row errors (a refused batch is split until each refused row is alone).
pub async fn import(
    client: &Client,
    key: &Keypair,
    chain: &ChainId,
    mode: PutMode,
    rows: Vec<Row>,
    mut report: Report,
) -> anyhow::Result<Report> {
    let mut work: Vec<Vec<Row>> = rows
        .chunks(MAX_USERS_PER_TX)
        .map(<[Row]>::to_vec)
        .rev()
        .collect();
    let mut committed: Vec<Row> = Vec::new();
    while let Some(batch) = work.pop() {
        let kind = TxKind::PutUsers {
            mode,
            users: batch.iter().map(|r| r.user.clone()).collect(),
        };
        let tx = sign_tx(key, chain, &kind);
        let (status, body) = client.submit_status(&tx).await?;
        match status {
            200 | 202 => {
                if status == 202 {
                    client
                        .wait_committed(&tx.id(), std::time::Duration::from_secs(120))
                        .await?;
                }
                report.imported += batch.len();
                report.transactions += 1;
                committed.extend(batch);
            }
            s if (400..500).contains(&s) && s != 429 => {
                if batch.len() == 1 {
                    let r = &batch[0];
                    let msg = body["error"]["message"].as_str().unwrap_or("refused");
                    report.errors.push(RowError {
                        row: r.row,
                        id: r.user.id.clone(),
                        error: msg.to_string(),
                    });
                } else {
                    let (a, b) = batch.split_at(batch.len() / 2);
                    work.push(b.to_vec());
                    work.push(a.to_vec());
                }
            }
            503 => {
                // A full mempool: try the same batch again shortly.
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                work.push(batch);
            }
            other => bail!("the node answered {other}: {body}"),
        }
    }
    for r in committed.iter().filter(|r| r.password.is_some()) {
        let body = serde_json::json!({"password": r.password});
        let (s, b) = client
            .call_signed(
                "PUT",
                &format!("users/{}/password", r.user.id),
                key,
                Some(&body),
            )
            .await?;
        if s != 200 {
            report.errors.push(RowError {
                row: r.row,
                id: r.user.id.clone(),
                error: format!("imported, but the password was not set: {b}"),
            });
        }
    }
    report.errors.sort_by_key(|e| e.row);
    Ok(report)
}

/// Deletes user `id`; returns the commit height.
pub async fn delete(
    id: &str,
    key_file: &Path,
    url: &str,
    ca: Option<&Path>,
) -> anyhow::Result<u64> {
    let (client, key, chain) = Client::connect_signer(key_file, url, ca).await?;
    let tx = sign_tx(&key, &chain, &TxKind::DeleteUser { id: id.to_string() });
    let (status, body) = client.submit_status(&tx).await?;
    if status != 200 {
        bail!("the node answered {status}: {body}");
    }
    body["height"].as_u64().context("no height in the answer")
}

/// The CLI: reads `file`, imports it through the node at `url` (trusting the CA in `ca`) with
/// the key in `key_file`, writes the per-row report as CSV to `report_file` if given; returns
/// the report.
pub async fn run(
    file: &Path,
    key_file: &Path,
    url: &str,
    ca: Option<&Path>,
    replace: bool,
    report_file: Option<&Path>,
) -> anyhow::Result<Report> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let (rows, errors) = parse(&cells(&bytes)?)?;
    let (client, key, chain) = Client::connect_signer(key_file, url, ca).await?;
    let mode = if replace {
        PutMode::Replace
    } else {
        PutMode::Add
    };
    let report = import(
        &client,
        &key,
        &chain,
        mode,
        rows,
        Report {
            errors,
            ..Report::default()
        },
    )
    .await?;
    if let Some(out) = report_file {
        let mut w =
            csv::Writer::from_path(out).with_context(|| format!("writing {}", out.display()))?;
        w.write_record(["row", "id", "error"])?;
        for e in &report.errors {
            w.write_record([e.row.to_string(), e.id.clone(), e.error.clone()])?;
        }
        w.flush()?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(rows: &[&[&str]]) -> Vec<Vec<String>> {
        rows.iter()
            .map(|r| r.iter().map(|c| c.to_string()).collect())
            .collect()
    }

    #[test]
    fn rows_become_users_and_bad_rows_are_reported_with_their_reason() {
        let cells = grid(&[
            &["账号", "姓名", "部门", "级别", "角色", "停用", "密码"],
            &["li", "李四", "mzj", "2", "staff", "否", ""],
            &[
                "wang",
                "王五",
                "mzj",
                "3.0",
                "staff;department_admin",
                "是",
                "Start-2026",
            ],
            &["", "", "", "", "", "", ""],
            &["bad id", "坏", "mzj", "1", "staff", "", ""],
            &["x1", "某", "mzj", "eleven", "staff", "", ""],
            &["x2", "某", "mzj", "1", "boss", "", ""],
            &["x3", "某", "mzj", "1", "staff", "maybe", ""],
            &["x4", "某", "mzj", "1", "staff", "", "short"],
            &["li", "李四", "mzj", "2", "staff", "", ""],
        ]);
        let (rows, errors) = parse(&cells).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].user.roles, vec![Role::Staff, Role::DepartmentAdmin]);
        assert!(rows[1].user.disabled);
        assert_eq!(rows[1].password.as_deref(), Some("Start-2026"));
        let bad: Vec<usize> = errors.iter().map(|e| e.row).collect();
        assert_eq!(bad, vec![5, 6, 7, 8, 9, 10]);
        assert!(errors[0].error.contains("user.id"), "{:?}", errors[0]);
        assert!(errors[1].error.contains("level"));
        assert!(errors[2].error.contains("role"));
        assert!(errors[5].error.contains("earlier row"));
    }

    #[test]
    fn a_header_without_required_or_with_unknown_columns_is_refused() {
        assert!(parse(&grid(&[&["id", "name", "department", "level"]])).is_err());
        assert!(parse(&grid(&[&[
            "id",
            "name",
            "department",
            "level",
            "roles",
            "salary"
        ]]))
        .is_err());
        assert!(parse(&grid(&[])).is_err());
        assert!(cells(b"id,name\n\xff\xfe,x\n").is_err());
    }
}
