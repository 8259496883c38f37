//! Batch import of users (R-SEC-1): 10,000 rows from an XLSX workbook with some bad rows, through
//! the real `govchain users import` command and a real node. Good rows are imported, every bad
//! row is reported with its reason (including chaincode's refusals), and a CSV file with a
//! repeated id and an unknown department is reported the same way.

use std::collections::BTreeSet;
use std::process::Command;

use govchain_tests::{govchain_bin, Net, NodeProc};
use rust_xlsxwriter::Workbook;

const USERS: usize = 10_000;

/// Rows that must be refused, by row number (the header is row 1), with a word of the reason.
fn bad(i: usize) -> Option<(&'static str, [String; 5])> {
    let id = format!("u{i:05}");
    Some(match i {
        17 => (
            "level",
            [id, "某甲".into(), "mzj".into(), "12".into(), "staff".into()],
        ),
        450 => (
            "role",
            [id, "某乙".into(), "mzj".into(), "1".into(), "chief".into()],
        ),
        3_001 => (
            "user.id",
            [
                format!("bad id {i}"),
                "某丙".into(),
                "mzj".into(),
                "1".into(),
                "staff".into(),
            ],
        ),
        // Only chaincode knows the department does not exist.
        6_500 => (
            "department",
            [
                id,
                "某丁".into(),
                "nosuch".into(),
                "1".into(),
                "staff".into(),
            ],
        ),
        9_998 => (
            "user.name",
            [id, " ".into(), "mzj".into(), "1".into(), "staff".into()],
        ),
        _ => return None,
    })
}

fn row(i: usize) -> [String; 5] {
    let depts = ["gaj", "mzj", "rsj", "bdc", "scjg"];
    bad(i).map(|(_, r)| r).unwrap_or_else(|| {
        [
            format!("u{i:05}"),
            format!("职员{i}"),
            depts[i % depts.len()].to_string(),
            (1 + i % 9).to_string(),
            if i.is_multiple_of(10) {
                "staff;department_admin".into()
            } else {
                "staff".into()
            },
        ]
    })
}

fn import(
    net: &Net,
    node: &NodeProc,
    file: &std::path::Path,
    report: &std::path::Path,
) -> std::process::Output {
    Command::new(govchain_bin())
        .args(["users", "import"])
        .arg(file)
        .arg("--key")
        .arg(net.dir.path().join("keys/sysadmin.key"))
        .args(node.endpoint_args())
        .arg("--report")
        .arg(report)
        .output()
        .unwrap()
}

#[test]
fn ten_thousand_users_from_xlsx_good_rows_imported_bad_rows_reported() {
    let net = Net::generate(1);
    let node = NodeProc::start(&net, 1);
    let xlsx = net.dir.path().join("users.xlsx");
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    for (c, h) in ["账号", "姓名", "部门", "级别", "角色"].iter().enumerate() {
        sheet.write_string(0, c as u16, *h).unwrap();
    }
    for i in 0..USERS {
        for (c, v) in row(i).iter().enumerate() {
            if c == 3 {
                // Levels as numbers, as a spreadsheet keeps them.
                match v.parse::<f64>() {
                    Ok(n) => sheet.write_number(i as u32 + 1, c as u16, n).unwrap(),
                    Err(_) => sheet.write_string(i as u32 + 1, c as u16, v).unwrap(),
                };
            } else {
                sheet.write_string(i as u32 + 1, c as u16, v).unwrap();
            }
        }
    }
    book.save(&xlsx).unwrap();

    let report = net.dir.path().join("report.csv");
    let out = import(&net, &node, &xlsx, &report);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad_rows: Vec<usize> = (0..USERS).filter(|i| bad(*i).is_some()).collect();
    assert!(
        text.contains(&format!("{} imported", USERS - bad_rows.len())),
        "{text}"
    );
    // The report names each bad row (file row = index + 2) with its reason, and nothing else.
    let mut rd = csv::Reader::from_path(&report).unwrap();
    let reported: Vec<(usize, String)> = rd
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r[0].parse().unwrap(), r[2].to_string())
        })
        .collect();
    assert_eq!(
        reported.iter().map(|r| r.0).collect::<Vec<_>>(),
        bad_rows.iter().map(|i| i + 2).collect::<Vec<_>>(),
        "{reported:?}"
    );
    for ((_, reason), i) in reported.iter().zip(&bad_rows) {
        let (word, _) = bad(*i).unwrap();
        assert!(
            reason.contains(word),
            "row {}: {reason:?} does not say {word}",
            i + 2
        );
    }

    // Good rows are on chain, bad ones are not.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = node.client();
    let admin = net.key("sysadmin");
    for i in [0usize, 16, 18, 4_999, 6_499, 6_501, 9_999] {
        let (s, b) = rt
            .block_on(client.get_signed(&format!("users/u{i:05}"), &admin))
            .unwrap();
        assert_eq!(s, 200, "u{i:05}: {b}");
        assert_eq!(b["user"]["name"], format!("职员{i}"));
    }
    for i in [17usize, 450, 6_500, 9_998] {
        let (s, _) = rt
            .block_on(client.get_signed(&format!("users/u{i:05}"), &admin))
            .unwrap();
        assert_eq!(s, 404, "u{i:05} must not exist");
    }

    // A CSV with an id already on chain, a repeated id and a weak initial password.
    let csv_file = net.dir.path().join("more.csv");
    std::fs::write(
        &csv_file,
        "\u{feff}id,name,department,level,roles,password\n\
         u00000,重复,gaj,1,staff,\n\
         n1,新人,gaj,2,staff,Start-2026x\n\
         n1,新人,gaj,2,staff,\n\
         n2,新人二,gaj,2,staff,weak\n",
    )
    .unwrap();
    let out = import(&net, &node, &csv_file, &report);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 imported"), "{text}");
    let reported: BTreeSet<usize> = csv::Reader::from_path(&report)
        .unwrap()
        .records()
        .map(|r| r.unwrap()[0].parse().unwrap())
        .collect();
    assert_eq!(reported, BTreeSet::from([2, 4, 5]), "{text}");
    // n1's initial password works.
    let (s, b) = rt
        .block_on(client.call(
            "POST",
            "login",
            &[],
            Some(&serde_json::json!({"user": "n1", "password": "Start-2026x"})),
        ))
        .unwrap();
    assert_eq!(s, 200, "{b}");
}
