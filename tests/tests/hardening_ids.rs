//! Input correctness of national IDs end to end (issue 15, finding 9): a record of a Hong Kong,
//! Macao or Taiwan resident, whose residence permit number (港澳台居民居住证) has region 810000,
//! 820000 or 830000, goes on chain and appears in the person file; a permit number with a wrong
//! check character, or a region code that is not issued, is still refused and commits nothing.

use std::time::{Duration, Instant};

use govchain_chaincode::person::check_char;
use govchain_chaincode::records::Record;
use govchain_node::client::records_tx;
use govchain_node::synth::Generator;
use govchain_tests::{error_code, Net, NodeProc};

/// `region` + born 1990-01-01 + `seq`, with its correct check character.
fn permit_number(region: &str, seq: u32) -> String {
    let mut s = format!("{region}19900101{seq:03}");
    s.push(check_char(s.as_bytes()));
    s
}

/// A valid household record of resident `n` whose national ID is `id`.
fn record_with_id(
    gen: &mut Generator,
    source: &govchain_chaincode::catalog::DataSource,
    n: u64,
    id: &str,
) -> Record {
    let mut r = gen.record_for(source, n);
    let old = r.fields["sfzh"].clone();
    r.fields.insert("sfzh".into(), id.to_string());
    r.fields.insert("csrq".into(), "1990-01-01".into());
    let mut raw: serde_json::Value = serde_json::from_slice(&r.raw).unwrap();
    raw["data"]["sfzh"] = id.into();
    raw["data"]["csrq"] = "1990-01-01".into();
    r.raw = raw.to_string().into_bytes();
    assert_ne!(old, id);
    r
}

/// Finding 9 (R-ARC-1, R-QRY-1): records of Hong Kong, Macao and Taiwan residents with their
/// residence permit numbers are committed and each appears in its person file, read with the
/// system administrator's signature; a wrong check character and the codes next to the
/// permit regions (810100, 840000) are refused with 422 `invalid_record` and commit nothing.
#[test]
fn finding_9_residence_permit_holders_have_a_person_file() {
    let net = Net::generate(1);
    let node = NodeProc::start(&net, 1);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = node.client();
    let key = net.node_key(1);
    let chain = net.genesis.chain_id.clone();
    let source = net.source("gaj.hjxx");
    let mut gen = Generator::new(9);

    let ids: Vec<String> = ["810000", "820000", "830000"]
        .iter()
        .enumerate()
        .map(|(i, region)| permit_number(region, 11 + i as u32))
        .collect();
    let records: Vec<Record> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| record_with_id(&mut gen, &source, i as u64, id))
        .collect();
    let tx = records_tx(&key, &chain, &source, records);
    let committed = rt.block_on(client.submit(&tx, true)).unwrap();
    assert_eq!(committed.status, "committed");
    let height = rt.block_on(client.get_json("status")).unwrap()["height"].clone();

    // Refused: a wrong check character, a city code under Hong Kong, a code never issued.
    let good = &ids[0];
    let wrong = if good.ends_with('0') { '1' } else { '0' };
    let refused = [
        format!("{}{wrong}", &good[..17]),
        permit_number("810100", 12),
        permit_number("840000", 13),
    ];
    for (i, id) in refused.iter().enumerate() {
        let bad = record_with_id(&mut gen, &source, 10 + i as u64, id);
        let tx = records_tx(&key, &chain, &source, vec![bad]);
        let (status, body) = rt.block_on(client.submit_status(&tx)).unwrap();
        assert_eq!(
            (status, error_code(&body)),
            (422, "invalid_record"),
            "{id}: {body}"
        );
    }
    assert_eq!(
        rt.block_on(client.get_json("status")).unwrap()["height"],
        height,
        "a refused record was committed"
    );

    // Each permit holder has a person file with the committed record.
    let admin = net.key("sysadmin");
    for id in &ids {
        let deadline = Instant::now() + Duration::from_secs(30);
        let file = loop {
            let (status, body) = rt
                .block_on(client.get_signed(&format!("persons/{id}"), &admin))
                .unwrap();
            if status == 200 {
                break body;
            }
            assert_eq!(status, 404, "{id}: {body}");
            assert!(Instant::now() < deadline, "{id} never projected");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(file["person_id"], id.as_str(), "{file}");
        let recs = file["records"].as_array().unwrap();
        assert_eq!(recs.len(), 1, "{file}");
        assert_eq!(recs[0]["source"], "gaj.hjxx");
        assert_eq!(recs[0]["tx_id"], tx.id().to_hex());
        assert_eq!(recs[0]["fields"]["sfzh"], id.as_str());
    }
    // The path parameter is checked by the same rule: a wrong check character is a 400.
    let (status, body) = rt
        .block_on(client.get_signed(&format!("persons/{}", refused[0]), &admin))
        .unwrap();
    assert_eq!(
        (status, error_code(&body)),
        (400, "bad_person_id"),
        "{body}"
    );
}
