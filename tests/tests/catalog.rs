//! The business catalog on chain, end to end (R-ARC-3, R-ARC-4, R-ARC-5, R-QRY-2, R-QRY-3,
//! R-QRY-4, R-QRY-5, R-QRY-6, R-AUD-4), on SQLite and on MySQL/MariaDB: a real one-node chain
//! takes every catalog change as a signed transaction; the projection and the HTTP API then
//! serve matter files, extraction by business type, category summaries shaped by display
//! templates, saved queries and exports in a category's format. Bad input gets a clear 4xx and
//! changes nothing; SQL metacharacters are stored and returned verbatim. At the end the node's
//! projection equals a rebuild from genesis.

use std::time::{Duration, Instant};

use govchain_api::projection::Projection;
use govchain_chaincode::business::{
    CatalogEntry, Column, Condition, ConditionOp, DisplayTemplate, EntryRef, ExportFormat,
    FileType, Material, MatterType, PutMode, SavedQuery, ServiceCategory, Shape, SourceFields,
};
use govchain_chaincode::records::Record;
use govchain_chaincode::TxKind;
use govchain_ledger::{Keypair, Store};
use govchain_node::client::{records_tx, sign_tx, urlencode, Client};
use govchain_node::synth::Generator;
use govchain_tests::error_code as code;
use govchain_tests::{Net, NodeProc};
use serde_json::{json, Value};

/// Text full of SQL metacharacters: stored and returned verbatim.
const EVIL: &str = "'; DROP TABLE records; --";
const HJXX: &str = "gaj.hjxx";
const JZZ: &str = "gaj.jzz";
const JHDJ: &str = "mzj.jhdj";

#[test]
fn sqlite_catalog_matter_files_categories_saved_queries_and_exports_r_arc_4_r_qry_2_to_5() {
    let fresh = tempfile::tempdir().unwrap();
    let fresh_url = format!("sqlite://{}", fresh.path().join("rebuild.sqlite").display());
    run(None, &fresh_url);
}

#[test]
fn mysql_catalog_matter_files_categories_saved_queries_and_exports_r_arc_4_r_qry_2_to_5() {
    let base = std::env::var("GOVCHAIN_MYSQL_URL").expect(
        "GOVCHAIN_MYSQL_URL is not set: this test needs MySQL/MariaDB \
         (scripts/test and .ci/run set it to mysql://root@127.0.0.1:3306/test)",
    );
    let (prefix, _) = base.rsplit_once('/').expect("URL ends in /DATABASE");
    let live = format!("govchain_cat{}", std::process::id());
    let fresh = format!("govchain_catr{}", std::process::id());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let admin = rt
        .block_on(Projection::server(&base))
        .expect("MySQL reachable");
    let sql = |s: String| {
        rt.block_on(sqlx::query(sqlx::AssertSqlSafe(s)).execute(&admin))
            .unwrap();
    };
    for name in [&live, &fresh] {
        sql(format!("DROP DATABASE IF EXISTS {name}"));
        sql(format!("CREATE DATABASE {name} CHARACTER SET utf8mb4"));
    }
    run(
        Some(format!("{prefix}/{live}")),
        &format!("{prefix}/{fresh}"),
    );
    for name in [&live, &fresh] {
        sql(format!("DROP DATABASE {name}"));
    }
}

fn sf(source: &str, fields: &[&str]) -> SourceFields {
    SourceFields {
        source: source.into(),
        fields: fields.iter().map(|f| f.to_string()).collect(),
    }
}

fn col(source: &str, field: &str, label: &str) -> Column {
    Column {
        source: source.into(),
        field: field.into(),
        label: label.into(),
    }
}

fn material(id: &str, name: &str, required: bool, note: &str) -> Material {
    Material {
        id: id.into(),
        name: name.into(),
        required,
        note: note.into(),
    }
}

fn put(mode: PutMode, entry: CatalogEntry) -> TxKind {
    TxKind::PutCatalogEntry { mode, entry }
}

/// Field names of a JSON object, sorted.
fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

/// The test's view of the node: signed reads, committed writes, waiting for the projection.
struct Api<'a> {
    net: &'a Net,
    client: Client,
    client_args: Vec<std::ffi::OsString>,
    rt: tokio::runtime::Runtime,
    admin: Keypair,
    /// A person with records in several sources (used to see the projection's height).
    person: String,
}

impl Api<'_> {
    fn get(&self, path: &str) -> (u16, Value) {
        self.rt
            .block_on(self.client.get_signed(path, &self.admin))
            .unwrap()
    }

    fn ok(&self, path: &str) -> Value {
        let (status, body) = self.get(path);
        assert_eq!(status, 200, "{path}: {body}");
        body
    }

    fn file(&self, path: &str) -> (u16, Option<String>, Vec<u8>) {
        self.rt
            .block_on(self.client.get_signed_file(path, &self.admin))
            .unwrap()
    }

    /// Submits `kind` signed by `key` and waits for its commit; returns (status, answer).
    fn submit(&self, key: &Keypair, kind: &TxKind) -> (u16, Value) {
        let tx = sign_tx(key, &self.net.genesis.chain_id, kind);
        self.rt.block_on(self.client.submit_status(&tx)).unwrap()
    }

    /// Commits `kind` by the system administrator and waits until the projection has it.
    fn commit(&self, kind: TxKind) {
        let (status, body) = self.submit(&self.admin, &kind);
        assert_eq!(status, 200, "{kind:?}: {body}");
        self.settle(body["height"].as_u64().unwrap());
    }

    /// Waits until the projection reaches `height`.
    fn settle(&self, height: u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, body) = self.get(&format!("persons/{}", self.person));
            if status == 200 && body["projected_height"].as_u64() >= Some(height) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "projection never reached {height}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Asserts a GET answers `status` with error `code`.
    fn refused(&self, path: &str, status: u16, code_: &str) {
        let (s, body) = self.get(path);
        assert_eq!((s, code(&body)), (status, code_), "{path}: {body}");
    }
}

/// Records: 20 household records, and for person #3 also a residence permit (gaj.jzz) and a
/// marriage record (mzj.jhdj, by mzj's administrator key). Returns (person id, name, address).
fn seed_records(api: &Api<'_>) -> (String, String, String) {
    let net = api.net;
    let mut gen = Generator::new(11);
    let hjxx = net.source(HJXX);
    let records: Vec<Record> = (0..20).map(|i| gen.record_for(&hjxx, i)).collect();
    let mut target = records[3].clone();
    let id = target.fields["sfzh"].clone();
    let name = format!("欧阳{EVIL}");
    target.fields.insert("xm".into(), name.clone());
    target.fields.insert("csrq".into(), "1980-02-29".into());
    let mut records = records;
    records[3] = target;
    let tx = records_tx(&net.node_key(1), &net.genesis.chain_id, &hjxx, records);
    let r = api.rt.block_on(api.client.submit(&tx, true)).unwrap();
    assert_eq!(r.status, "committed");

    let address = "福建省福州市鼓楼区五四路18号'\"; --".to_string();
    let jzz = net.source(JZZ);
    let mut permit = gen.record_for(&jzz, 3);
    permit.fields.insert("sfzh".into(), id.clone());
    permit.fields.insert("jzdz".into(), address.clone());
    let tx = records_tx(&net.node_key(1), &net.genesis.chain_id, &jzz, vec![permit]);
    assert_eq!(
        api.rt
            .block_on(api.client.submit(&tx, true))
            .unwrap()
            .status,
        "committed"
    );

    let jhdj = net.source(JHDJ);
    let mut marriage = gen.record_for(&jhdj, 3);
    marriage.fields.insert("sfzh".into(), id.clone());
    marriage.fields.insert("djrq".into(), "2010-05-20".into());
    let tx = records_tx(
        &net.key("mzj-admin"),
        &net.genesis.chain_id,
        &jhdj,
        vec![marriage],
    );
    let r = api.rt.block_on(api.client.submit(&tx, true)).unwrap();
    assert_eq!(r.status, "committed");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = api.get(&format!("persons/{id}"));
        if status == 200 && body["records"].as_array().unwrap().len() == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "records never projected: {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
    (id, name, address)
}

fn marriage_matter(sources: Vec<SourceFields>) -> MatterType {
    MatterType {
        id: "jhdj".into(),
        name: format!("结婚登记{EVIL}"),
        department: "mzj".into(),
        sources,
        materials: vec![
            material("sfz", "居民身份证", true, ""),
            material("hkb", "户口簿", true, "原件"),
        ],
    }
}

/// The whole scenario against a node projecting into `db` (default SQLite); the rebuild goes to
/// `fresh_url`.
fn run(db: Option<String>, fresh_url: &str) {
    let net = Net::generate(1);
    net.tune(1, |c| c.api.db = db.clone());
    let mut node = NodeProc::start(&net, 1);
    let mut api = Api {
        net: &net,
        client: node.client(),
        client_args: node.endpoint_args(),
        rt: tokio::runtime::Runtime::new().unwrap(),
        admin: net.key("sysadmin"),
        person: String::new(),
    };
    let (id, name, address) = seed_records(&api);
    api.person = id.clone();

    matter_types_and_materials(&api, &id, &name, &address);
    categories_templates_formats_and_exports(&api, &id, &name, &address);
    saved_queries(&api, &id, &name);
    bad_input_changes_nothing(&api, &id);

    // Every change is listed with its block and transaction (R-ARC-5).
    let changes = api.ok("catalog/changes?page_size=100");
    let changes = changes["changes"].as_array().unwrap();
    assert!(changes.len() >= 20, "{changes:?}");
    assert!(changes
        .windows(2)
        .all(|w| w[0]["seq"].as_i64() < w[1]["seq"].as_i64()));
    assert!(changes
        .iter()
        .any(|c| c["kind"] == "delete_material" && c["entry_key"] == "jhdj/sfz"));
    let (status, _) = api.get(&format!("persons/{id}"));
    assert_eq!(status, 200, "records survived the metacharacters");

    // The OpenAPI document lists the new endpoints (R-QRY-6).
    let doc = api
        .rt
        .block_on(api.client.get_json("openapi.json"))
        .unwrap();
    for p in [
        "/api/v1/matters",
        "/api/v1/matters/{id}",
        "/api/v1/matters/{id}/materials",
        "/api/v1/matters/{id}/extract",
        "/api/v1/persons/{id}/matters/{matter}",
        "/api/v1/categories",
        "/api/v1/categories/{id}",
        "/api/v1/categories/{cat}/export",
        "/api/v1/persons/{id}/categories/{cat}",
        "/api/v1/queries",
        "/api/v1/queries/run",
        "/api/v1/catalog/changes",
    ] {
        assert!(
            doc["paths"].get(p).is_some(),
            "{p} missing from the OpenAPI document"
        );
    }

    // R-AUD-4: the node's projection equals a rebuild from genesis after all these changes.
    assert!(node.terminate(Duration::from_secs(30)));
    let store = Store::open_read_only(&net.data_dir(1)).unwrap();
    let tip = store.tip().unwrap().unwrap().height;
    let live_url = db.unwrap_or_else(|| {
        format!(
            "sqlite://{}",
            net.data_dir(1).join("projection.sqlite").display()
        )
    });
    api.rt.block_on(async {
        let live = Projection::open(&live_url).await.unwrap();
        assert_eq!(live.catch_up(&store).await.unwrap(), tip);
        let fresh = Projection::open(fresh_url).await.unwrap();
        fresh
            .init(store.genesis_hash().unwrap().unwrap(), &net.genesis.sources)
            .await
            .unwrap();
        assert_eq!(fresh.catch_up(&store).await.unwrap(), tip);
        assert_eq!(
            live.digest().await.unwrap(),
            fresh.digest().await.unwrap(),
            "the node's projection differs from a rebuild from genesis"
        );
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM catalog_changes")
            .fetch_one(live.pool())
            .await
            .unwrap();
        assert!(n >= 20);
    });
}

/// R-ARC-3, R-ARC-4, R-ARC-5.
fn matter_types_and_materials(api: &Api<'_>, id: &str, name: &str, address: &str) {
    let m = marriage_matter(vec![sf(HJXX, &["sfzh", "xm", "csrq"]), sf(JZZ, &["jzdz"])]);
    api.commit(put(PutMode::Add, CatalogEntry::MatterType(m.clone())));
    let got = api.ok("matters/jhdj");
    assert_eq!(got["matter_type"], serde_json::to_value(&m).unwrap());
    assert_eq!(api.ok("matters")["matter_types"][0]["id"], "jhdj");

    // The matter file: only the matter's sources and fields, plus the materials checklist.
    let file = api.ok(&format!("persons/{id}/matters/jhdj"));
    let sources = file["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 2, "{file}");
    assert_eq!(sources[0]["source"], HJXX);
    let rec = &sources[0]["records"][0];
    assert_eq!(
        keys(&rec["fields"]),
        ["csrq", "sfzh", "xm"].map(String::from)
    );
    assert_eq!(rec["fields"]["xm"], name);
    assert_eq!(sources[0]["fields"][1]["label"], "姓名");
    assert_eq!(sources[1]["records"][0]["fields"], json!({"jzdz": address}));
    assert_eq!(file["materials"][0]["id"], "sfz");
    assert_eq!(file["matter"]["name"], m.name.as_str());

    // Modify: drop a field, drop a source, add another — the file follows the current definition.
    let m2 = marriage_matter(vec![sf(HJXX, &["sfzh", "xm"]), sf(JHDJ, &["jhzh", "djrq"])]);
    api.commit(put(PutMode::Replace, CatalogEntry::MatterType(m2)));
    let file = api.ok(&format!("persons/{id}/matters/jhdj"));
    let sources = file["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 2, "{file}");
    assert_eq!(
        keys(&sources[0]["records"][0]["fields"]),
        ["sfzh", "xm"].map(String::from)
    );
    assert_eq!(sources[1]["source"], JHDJ);
    assert_eq!(sources[1]["records"][0]["fields"]["djrq"], "2010-05-20");
    assert!(
        !file.to_string().contains("jzdz"),
        "the dropped source is gone"
    );

    // Materials one at a time (R-ARC-5): add, modify, delete, list.
    // This one through the command line: `govchain catalog --file --key --url`.
    let photo = material("zp", "近期照片", false, EVIL);
    let kind = TxKind::PutMaterial {
        mode: PutMode::Add,
        matter: "jhdj".into(),
        material: photo.clone(),
    };
    let file = api.net.dir.path().join("material.json");
    std::fs::write(&file, serde_json::to_string(&kind).unwrap()).unwrap();
    let out = std::process::Command::new(govchain_tests::govchain_bin())
        .arg("catalog")
        .arg("--file")
        .arg(&file)
        .arg("--key")
        .arg(api.net.dir.path().join("keys/sysadmin.key"))
        .args(&api.client_args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let height: u64 = stdout.trim().rsplit(' ').next().unwrap().parse().unwrap();
    api.settle(height);
    let copy = material("hkb", "户口簿复印件", false, "复印件即可");
    api.commit(TxKind::PutMaterial {
        mode: PutMode::Replace,
        matter: "jhdj".into(),
        material: copy.clone(),
    });
    api.commit(TxKind::DeleteMaterial {
        matter: "jhdj".into(),
        id: "sfz".into(),
    });
    let list = api.ok("matters/jhdj/materials");
    assert_eq!(
        list["materials"],
        serde_json::to_value(vec![copy, photo]).unwrap()
    );
    let file = api.ok(&format!("persons/{id}/matters/jhdj"));
    assert_eq!(file["materials"], list["materials"]);
    assert_eq!(file["materials"][1]["note"], EVIL);

    // Extraction by business type (R-ARC-3): records of one of its sources, only its fields.
    let page = |n: usize| {
        let body = api.ok(&format!(
            "matters/jhdj/extract?source={HJXX}&page_size=5&page={n}"
        ));
        body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                assert_eq!(keys(&r["fields"]), ["sfzh", "xm"].map(String::from));
                r["record_key"].as_str().unwrap().to_string()
            })
            .collect::<Vec<_>>()
    };
    let (p1, p2) = (page(1), page(2));
    assert_eq!((p1.len(), p2.len()), (5, 5));
    assert!(p1.iter().all(|k| !p2.contains(k)), "pages overlap");
    let all = api.ok("matters/jhdj/extract?page_size=100");
    assert_eq!(all["results"].as_array().unwrap().len(), 21, "{all}");
    api.refused(
        &format!("matters/jhdj/extract?source={JZZ}"),
        400,
        "source_not_in_matter",
    );
    api.refused("matters/jhdj/extract?page_size=101", 400, "bad_page");
}

/// R-QRY-3, R-QRY-4, R-QRY-5.
fn categories_templates_formats_and_exports(api: &Api<'_>, id: &str, name: &str, address: &str) {
    let cat = ServiceCategory {
        id: "hj".into(),
        name: "户籍服务".into(),
        sources: vec![sf(HJXX, &["sfzh", "xm", "xb", "csrq"]), sf(JZZ, &["jzdz"])],
    };
    api.commit(put(PutMode::Add, CatalogEntry::Category(cat.clone())));
    let brief = DisplayTemplate {
        category: "hj".into(),
        id: "brief".into(),
        name: "简表".into(),
        columns: vec![
            col(HJXX, "xm", &format!("姓名{EVIL}")),
            col(HJXX, "csrq", "出生日期"),
            col(JZZ, "jzdz", "居住地址"),
        ],
    };
    api.commit(put(PutMode::Add, CatalogEntry::Template(brief.clone())));
    let summary = api.ok(&format!("persons/{id}/categories/hj?template=brief"));
    let rows = summary["rows"].as_array().unwrap();
    let shown: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r["label"].as_str().unwrap(), r["value"].as_str().unwrap()))
        .collect();
    let evil_label = format!("姓名{EVIL}");
    assert_eq!(
        shown,
        [
            (evil_label.as_str(), name),
            ("出生日期", "1980-02-29"),
            ("居住地址", address)
        ]
    );
    assert_eq!(rows[2]["source"], JZZ);
    assert_eq!(rows[2]["field"], "jzdz");

    // Modify the template: new order and labels; the summary follows.
    let mut reordered = brief.clone();
    reordered.columns = vec![col(JZZ, "jzdz", "住址"), col(HJXX, "xm", "名字")];
    api.commit(put(PutMode::Replace, CatalogEntry::Template(reordered)));
    let summary = api.ok(&format!("persons/{id}/categories/hj?template=brief"));
    let labels: Vec<&str> = summary["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["住址", "名字"]);
    // Without a template: the category's fields under the sources' labels.
    let plain = api.ok(&format!("persons/{id}/categories/hj"));
    assert_eq!(plain["rows"].as_array().unwrap().len(), 5);
    assert_eq!(plain["rows"][0]["label"], "公民身份号码");

    // Export formats: CSV and XLSX with the format's columns and labels, Chinese intact.
    let columns = vec![
        col(HJXX, "sfzh", "身份证号"),
        col(HJXX, "xm", "姓名"),
        col(JZZ, "jzdz", &format!("居住地址{EVIL}")),
    ];
    for (fid, file_type) in [("csv", FileType::Csv), ("xlsx", FileType::Xlsx)] {
        let f = ExportFormat {
            category: "hj".into(),
            id: fid.into(),
            name: format!("{fid} 导出"),
            file_type,
            columns: columns.clone(),
        };
        api.commit(put(PutMode::Add, CatalogEntry::Format(f)));
    }
    let (status, digest, bytes) =
        api.file(&format!("categories/hj/export?format=csv&eq=sfzh:{id}"));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    assert_eq!(digest.unwrap(), blake3::hash(&bytes).to_hex().to_string());
    let text = std::str::from_utf8(&bytes).unwrap();
    let text = text.strip_prefix('\u{feff}').expect("UTF-8 BOM");
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header, ["身份证号", "姓名", &format!("居住地址{EVIL}")]);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 1);
    assert_eq!((&rows[0][0], &rows[0][1], &rows[0][2]), (id, name, address));

    let (status, digest, book) = api.file(&format!(
        "categories/hj/export?format=xlsx&eq=xm:{}",
        urlencode(name)
    ));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&book));
    assert_eq!(digest.unwrap(), blake3::hash(&book).to_hex().to_string());
    use calamine::Reader;
    let mut wb: calamine::Xlsx<_> =
        calamine::open_workbook_from_rs(std::io::Cursor::new(book)).expect("a valid XLSX");
    let range = wb
        .worksheet_range("hj")
        .expect("a sheet named after the category");
    let cell = |r: u32, c: u32| range.get_value((r, c)).map(|v| v.to_string());
    assert_eq!(cell(0, 1).as_deref(), Some("姓名"));
    assert_eq!(cell(1, 0).as_deref(), Some(id));
    assert_eq!(cell(1, 1).as_deref(), Some(name), "Chinese intact");
    assert_eq!(cell(1, 2).as_deref(), Some(address));
    assert_eq!(range.height(), 2);
    let (status, _, all) = api.file("categories/hj/export?format=csv");
    assert_eq!(status, 200);
    let n = csv::Reader::from_reader(&all[3..]).records().count();
    assert_eq!(n, 20, "every household record");

    // Modify and delete a format; a category with templates or formats cannot be deleted.
    let mut narrow = columns.clone();
    narrow.truncate(1);
    let f = ExportFormat {
        category: "hj".into(),
        id: "xlsx".into(),
        name: "仅身份证号".into(),
        file_type: FileType::Json,
        columns: narrow,
    };
    api.commit(put(PutMode::Replace, CatalogEntry::Format(f)));
    let (status, _, doc) = api.file(&format!("categories/hj/export?format=xlsx&eq=sfzh:{id}"));
    assert_eq!(status, 200);
    let doc: Value = serde_json::from_slice(&doc).expect("now a JSON export");
    assert_eq!(doc["rows"][0]["values"], json!([id]));
    let del_cat = TxKind::DeleteCatalogEntry(EntryRef::Category { id: "hj".into() });
    let (status, body) = api.submit(&api.admin, &del_cat);
    assert_eq!((status, code(&body)), (409, "in_use"), "{body}");

    // A second category: add, modify, its template and format, then delete all of them.
    let tmp = ServiceCategory {
        id: "tmp".into(),
        name: "临时".into(),
        sources: vec![sf(HJXX, &["xm"])],
    };
    api.commit(put(PutMode::Add, CatalogEntry::Category(tmp.clone())));
    let wider = ServiceCategory {
        sources: vec![sf(HJXX, &["xm", "csrq"])],
        ..tmp
    };
    api.commit(put(PutMode::Replace, CatalogEntry::Category(wider.clone())));
    let t = DisplayTemplate {
        category: "tmp".into(),
        id: "t".into(),
        name: "t".into(),
        columns: vec![col(HJXX, "csrq", "生日")],
    };
    api.commit(put(PutMode::Add, CatalogEntry::Template(t)));
    let f = ExportFormat {
        category: "tmp".into(),
        id: "f".into(),
        name: "f".into(),
        file_type: FileType::Csv,
        columns: vec![col(HJXX, "xm", "名")],
    };
    api.commit(put(PutMode::Add, CatalogEntry::Format(f)));
    let got = api.ok("categories/tmp");
    assert_eq!(got["category"], serde_json::to_value(&wider).unwrap());
    assert_eq!(got["templates"][0]["id"], "t");
    assert_eq!(got["formats"][0]["id"], "f");
    assert_eq!(
        api.ok("categories")["categories"].as_array().unwrap().len(),
        2
    );
    for r in [
        EntryRef::Template {
            category: "tmp".into(),
            id: "t".into(),
        },
        EntryRef::Format {
            category: "tmp".into(),
            id: "f".into(),
        },
        EntryRef::Category { id: "tmp".into() },
    ] {
        api.commit(TxKind::DeleteCatalogEntry(r));
    }
    api.refused("categories/tmp", 404, "unknown_category");
}

/// R-QRY-2: a user's named queries, saved on chain, run and deleted.
fn saved_queries(api: &Api<'_>, id: &str, name: &str) {
    let owner = api.net.key("gaj-admin");
    let hex = owner.public().to_hex();
    let qname = format!("我的查询{EVIL}");
    let q = SavedQuery {
        name: qname.clone(),
        source: HJXX.into(),
        conditions: vec![
            Condition {
                op: ConditionOp::Eq,
                field: "sfzh".into(),
                value: id.into(),
            },
            Condition {
                op: ConditionOp::From,
                field: "csrq".into(),
                value: "1980-01-01".into(),
            },
        ],
        shape: Some(Shape {
            category: "hj".into(),
            template: "brief".into(),
        }),
    };
    let (status, body) = api.submit(
        &owner,
        &put(PutMode::Add, CatalogEntry::SavedQuery(q.clone())),
    );
    assert_eq!(status, 200, "{body}");
    api.settle(body["height"].as_u64().unwrap());
    let list = api.ok(&format!("queries?owner={hex}"));
    assert_eq!(list["queries"], json!([q]));
    let run = api.ok(&format!(
        "queries/run?owner={hex}&name={}",
        urlencode(&qname)
    ));
    let results = run["results"].as_array().unwrap();
    assert_eq!(results.len(), 1, "{run}");
    assert_eq!(results[0]["fields"]["xm"], name);
    // Shaped by the template: only its columns of the queried source, in its order.
    assert_eq!(run["shaped"]["rows"], json!([[name]]), "{run}");
    assert_eq!(run["shaped"]["columns"][0]["label"], "名字");

    // The template is in use: deleting it is refused.
    let del_t = TxKind::DeleteCatalogEntry(EntryRef::Template {
        category: "hj".into(),
        id: "brief".into(),
    });
    let (status, body) = api.submit(&api.admin, &del_t);
    assert_eq!((status, code(&body)), (409, "in_use"), "{body}");

    let del = TxKind::DeleteCatalogEntry(EntryRef::SavedQuery {
        name: qname.clone(),
    });
    // Another key has no query of that name: refused, the owner's query is untouched.
    let (status, body) = api.submit(&api.admin, &del);
    assert_eq!((status, code(&body)), (422, "not_found"), "{body}");
    let (status, body) = api.submit(&owner, &del);
    assert_eq!(status, 200, "{body}");
    api.settle(body["height"].as_u64().unwrap());
    assert_eq!(
        api.ok(&format!("queries?owner={hex}"))["queries"],
        json!([])
    );
    api.refused(
        &format!("queries/run?owner={hex}&name={}", urlencode(&qname)),
        404,
        "unknown_query",
    );
}

/// Bad input: clear codes, nothing changed.
fn bad_input_changes_nothing(api: &Api<'_>, id: &str) {
    let before = api.ok("catalog/changes?page_size=100")["changes"].clone();
    let matter_before = api.ok("matters/jhdj");
    let bad_source = marriage_matter(vec![sf("no.such", &["a"])]);
    let bad_field = marriage_matter(vec![sf(HJXX, &["nosuch"])]);
    for m in [bad_source, bad_field] {
        let (status, body) = api.submit(
            &api.admin,
            &put(PutMode::Replace, CatalogEntry::MatterType(m)),
        );
        assert_eq!((status, code(&body)), (422, "not_found"), "{body}");
    }
    // Unauthorized signers: a department administrator, a department node.
    for key in [api.net.key("gaj-admin"), api.net.node_key(1)] {
        for kind in [
            put(
                PutMode::Replace,
                CatalogEntry::MatterType(marriage_matter(vec![sf(HJXX, &["xm"])])),
            ),
            TxKind::DeleteMaterial {
                matter: "jhdj".into(),
                id: "zp".into(),
            },
            TxKind::DeleteCatalogEntry(EntryRef::Category { id: "hj".into() }),
        ] {
            let (status, body) = api.submit(&key, &kind);
            assert_eq!(
                (status, code(&body)),
                (403, "unauthorized_signer"),
                "{body}"
            );
        }
    }
    let (status, body) = api.submit(
        &api.admin,
        &TxKind::PutMaterial {
            mode: PutMode::Add,
            matter: "nosuch".into(),
            material: material("x", "x", true, ""),
        },
    );
    assert_eq!((status, code(&body)), (422, "not_found"), "{body}");
    assert_eq!(api.ok("matters/jhdj"), matter_before, "nothing changed");
    assert_eq!(api.ok("catalog/changes?page_size=100")["changes"], before);

    for (path, status, c) in [
        ("matters/nosuch".to_string(), 404, "unknown_matter"),
        (
            format!("persons/{id}/matters/nosuch"),
            404,
            "unknown_matter",
        ),
        ("persons/123/matters/jhdj".to_string(), 400, "bad_person_id"),
        ("matters/nosuch/extract".to_string(), 404, "unknown_matter"),
        ("categories/nosuch".to_string(), 404, "unknown_category"),
        (
            format!("persons/{id}/categories/nosuch"),
            404,
            "unknown_category",
        ),
        (
            format!("persons/{id}/categories/hj?template=nosuch"),
            404,
            "unknown_template",
        ),
        (
            "categories/hj/export?format=nosuch".to_string(),
            404,
            "unknown_format",
        ),
        (
            "categories/nosuch/export?format=csv".to_string(),
            404,
            "unknown_category",
        ),
        ("categories/hj/export".to_string(), 400, "bad_query"),
        (
            "categories/hj/export?format=csv&eq=nosuch:1".to_string(),
            400,
            "unknown_field",
        ),
        (
            "categories/hj/export?format=csv&from=csrq:2020-13-01".to_string(),
            400,
            "bad_value",
        ),
        (
            format!("categories/hj/export?format=csv&source={JHDJ}"),
            400,
            "source_not_in_category",
        ),
        (
            "categories/hj/export?format=csv&sort=x".to_string(),
            400,
            "bad_query",
        ),
        ("queries?owner=zz".to_string(), 400, "bad_owner"),
        ("queries/run?owner=zz&name=a".to_string(), 400, "bad_owner"),
        (
            format!(
                "queries/run?owner={}&name=nosuch",
                api.admin.public().to_hex()
            ),
            404,
            "unknown_query",
        ),
        ("matters?x=1".to_string(), 400, "bad_query"),
    ] {
        api.refused(&path, status, c);
    }
    // Metacharacters in a lookup are just a value.
    api.refused(
        &format!("matters/{}", urlencode(EVIL)),
        404,
        "unknown_matter",
    );
    api.refused(
        &format!("persons/{id}/categories/hj?template={}", urlencode(EVIL)),
        404,
        "unknown_template",
    );
    // Unsigned and non-admin reads are refused before anything else.
    let (status, body) = api
        .rt
        .block_on(api.client.get_with("matters", &[]))
        .unwrap();
    assert_eq!((status, code(&body)), (401, "unauthenticated"), "{body}");
    let (status, body) = api
        .rt
        .block_on(
            api.client
                .get_signed("categories", &api.net.key("gaj-admin")),
        )
        .unwrap();
    assert_eq!((status, code(&body)), (403, "forbidden"), "{body}");
}
