//! Issue 15 finding 10 (R-SYN-3): records a department system sends that fail validation are
//! kept, each with its reason, the time and the run; listed; bounded with every drop counted;
//! and re-driven once the department system or the catalog is fixed.

use super::*;
use govchain_chaincode::catalog::FieldType;
use govchain_ledger::{ChainId, Keypair, TimestampMs, TxBody};

/// The record key of the simulator's record `i` (population seed 3, as `sim` uses).
fn key_of(i: u64) -> String {
    let s = source("gaj.jzz");
    crate::synth::Generator::new(3).record_for(&s, i).fields[&s.record_key_field].clone()
}

fn connector(url: &str, keep: usize) -> (tempfile::TempDir, Store, Arc<Connector>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut cfg = config(url, "plain");
    cfg.rejected_keep = keep;
    let conn = Connector::new(
        cfg,
        source("gaj.jzz"),
        store.clone(),
        Arc::new(ManualClock::new(DAY0)),
    )
    .unwrap();
    (dir, store, conn)
}

fn listed(conn: &Connector) -> Value {
    conn.rejected(1000).unwrap()
}

fn listed_keys(conn: &Connector) -> Vec<String> {
    listed(conn)["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap().to_string())
        .collect()
}

fn is_pending(conn: &Connector, key: &str) -> bool {
    conn.store
        .get_raw(CF_OUTBOX, &k_pending(conn.id(), key))
        .unwrap()
        .is_some()
}

/// A page with three invalid records among twenty: each is listed with its key, its reason
/// (naming the field and what is wrong), its change sequence number, the time and the run;
/// none is queued, the seventeen others are; the status and the run record count them.
#[tokio::test]
async fn finding_10_each_refused_record_is_listed_with_its_reason() {
    let (sim, url) = sim(20, Codec::Plain).await;
    let bad = [
        (2, "zjzt", "待审", "is not one of 有效/过期/注销"),
        (5, "qfrq", "2026-13-01", "is not a valid calendar date"),
        (11, "lxdh", "call me", "is not a phone number"),
    ];
    let mut seqs = BTreeMap::new();
    for (i, field, value, _) in bad {
        let (seq, _) = sim.set_field("gaj.jzz", &key_of(i), field, value).unwrap();
        seqs.insert(key_of(i), seq);
    }
    let (_dir, _store, conn) = connector(&url, 1000);
    let run = conn.run("manual", None, None).await.unwrap();
    assert_eq!(
        (run.fetched, run.queued, run.rejected, run.dropped),
        (20, 17, 3, 0),
        "{run:?}"
    );
    let list = listed(&conn);
    assert_eq!(
        (list["kept"].as_u64(), list["dropped"].as_u64()),
        (Some(3), Some(0))
    );
    assert_eq!(list["keep"], 1000);
    let records = list["records"].as_array().unwrap();
    assert_eq!(records.len(), 3, "{list}");
    // Newest first: in the order the department system changed them, reversed.
    for (r, (i, field, _, why)) in records.iter().zip(bad.iter().rev()) {
        let key = key_of(*i);
        assert_eq!(r["key"], key.as_str(), "{r}");
        let reason = r["reason"].as_str().unwrap();
        assert!(reason.contains(field) && reason.contains(why), "{reason}");
        assert_eq!(r["seq"], seqs[&key]);
        assert_eq!(
            (r["run"].as_u64(), r["checks"].as_u64()),
            (Some(run.id), Some(1))
        );
        assert_eq!(r["refused_at"], DAY0);
        assert!(r["payload_bytes"].as_u64().unwrap() > 0);
        assert!(
            r.get("payload").is_none(),
            "the listing never shows the payload"
        );
        assert!(!is_pending(&conn, &key), "a refused record is never queued");
    }
    assert_eq!(conn.pending(), 17);
    assert_eq!(conn.status()["rejected"], 3);
    assert_eq!(conn.status()["rejected_dropped"], 0);
    // The limit takes the newest.
    let two = conn.rejected(2).unwrap();
    assert_eq!(two["records"].as_array().unwrap().len(), 2);
    assert_eq!(two["records"][0]["key"], key_of(11).as_str());
    // The list survives a restart of the connector.
    let store = conn.store.clone();
    drop(conn);
    let again = Connector::new(
        config(&url, "plain"),
        source("gaj.jzz"),
        store,
        Arc::new(ManualClock::new(DAY0)),
    )
    .unwrap();
    assert_eq!(listed(&again)["records"], list["records"]);
    assert_eq!(again.status()["rejected"], 3);
}

/// The list holds at most `rejected_keep` records: at the limit nothing is dropped; one more
/// drops the oldest and counts it (in the listing, the status and the run record) — a refused
/// record is never silently gone. A newer refusal of a key already listed replaces it.
#[tokio::test]
async fn finding_10_the_refused_list_is_capped_and_every_drop_is_counted() {
    const KEEP: usize = 4;
    let (sim, url) = sim(30, Codec::Plain).await;
    for i in 0..KEEP as u64 {
        sim.set_field("gaj.jzz", &key_of(i), "zjzt", "待审")
            .unwrap();
    }
    let (_dir, store, conn) = connector(&url, KEEP);
    let run = conn.run("manual", None, None).await.unwrap();
    assert_eq!((run.rejected, run.dropped), (KEEP as u64, 0));
    let list = listed(&conn);
    assert_eq!(
        (list["kept"].as_u64(), list["dropped"].as_u64()),
        (Some(4), Some(0))
    );

    // The same key refused again (new content, still invalid): replaced, nothing dropped.
    sim.set_field("gaj.jzz", &key_of(1), "zjzt", "待定")
        .unwrap();
    let run = conn.run("manual", None, None).await.unwrap();
    assert_eq!((run.rejected, run.dropped), (1, 0));
    assert_eq!(listed(&conn)["kept"], 4);
    let newest = &listed(&conn)["records"][0];
    assert_eq!(newest["key"], key_of(1).as_str(), "{newest}");
    assert_eq!(
        newest["checks"], 1,
        "a new refusal, not a recheck: {newest}"
    );

    // limit + 1: the oldest (record 0) goes, counted.
    sim.set_field("gaj.jzz", &key_of(20), "zjzt", "待审")
        .unwrap();
    let run = conn.run("manual", None, None).await.unwrap();
    assert_eq!((run.rejected, run.dropped), (1, 1), "{run:?}");
    let list = listed(&conn);
    assert_eq!(
        (list["kept"].as_u64(), list["dropped"].as_u64()),
        (Some(4), Some(1))
    );
    let keys = listed_keys(&conn);
    assert_eq!(keys, [key_of(20), key_of(1), key_of(3), key_of(2)]);
    assert_eq!(conn.status()["rejected_dropped"], 1);

    // Many at once (one page past the cap): the oldest go first, each counted.
    for i in 21..27 {
        sim.set_field("gaj.jzz", &key_of(i), "zjzt", "待审")
            .unwrap();
    }
    let run = conn.run("manual", None, None).await.unwrap();
    assert_eq!((run.rejected, run.dropped), (6, 6), "{run:?}");
    assert_eq!(
        listed_keys(&conn),
        [key_of(26), key_of(25), key_of(24), key_of(23)]
    );
    assert_eq!(listed(&conn)["dropped"], 7);
    // Kept, dropped and the index agree after a restart.
    drop(conn);
    let mut cfg = config(&url, "plain");
    cfg.rejected_keep = KEEP;
    let again = Connector::new(
        cfg,
        source("gaj.jzz"),
        store,
        Arc::new(ManualClock::new(DAY0)),
    )
    .unwrap();
    assert_eq!(
        (
            again.status()["rejected"].as_u64(),
            again.status()["rejected_dropped"].as_u64()
        ),
        (Some(4), Some(7))
    );
    let index = again
        .store
        .raw_prefix(CF_OUTBOX, format!("sync/r/{}/k/", again.id()).as_bytes())
        .unwrap();
    assert_eq!(index.len(), KEEP, "one index entry per kept record");
}

/// A record fixed at the department system (new content, a new change) leaves the list when
/// it arrives — from the run a retry starts — and goes the normal outbox path; a retry before
/// the fix arrived checks the kept version again and keeps it, with the check counted.
#[tokio::test]
async fn finding_10_a_record_fixed_at_the_department_system_leaves_the_list() {
    let (sim, url) = sim(10, Codec::Plain).await;
    let key = key_of(4);
    sim.set_field("gaj.jzz", &key, "qfrq", "2026-02-30")
        .unwrap();
    let (_dir, _store, conn) = connector(&url, 100);
    conn.run("manual", None, None).await.unwrap();
    assert_eq!(listed_keys(&conn), vec![key.clone()]);

    sim.touch("gaj.jzz", &key).unwrap();
    let retry = conn.retry_rejected().unwrap();
    assert_eq!(
        (retry.fetched, retry.resolved, retry.rejected, retry.queued),
        (1, 0, 1, 0),
        "the kept version is still invalid: {retry:?}"
    );
    assert_eq!(listed(&conn)["records"][0]["checks"], 2);
    let run = conn.run("manual", None, None).await.unwrap();
    assert_eq!(
        (run.fetched, run.resolved, run.queued),
        (1, 1, 1),
        "{run:?}"
    );
    assert_eq!(listed(&conn)["kept"], 0);
    assert!(listed_keys(&conn).is_empty());
    assert!(is_pending(&conn, &key));
    assert_eq!(conn.pending(), 10);
    // The retry is in the history.
    assert!(conn.history(10).iter().any(|r| r.trigger == "retry"));
}

/// After the catalog changed (the source's definition now allows the value), a retry queues
/// the refused record for the chain; one still invalid stays with the new check counted.
#[tokio::test]
async fn finding_10_a_retry_after_the_catalog_changed_queues_the_record() {
    let (sim, url) = sim(10, Codec::Plain).await;
    let (pass, stay) = (key_of(3), key_of(6));
    sim.set_field("gaj.jzz", &pass, "zjzt", "待审").unwrap();
    sim.set_field("gaj.jzz", &stay, "qfrq", "not a date")
        .unwrap();
    let (_dir, _store, conn) = connector(&url, 100);
    let run = conn.run("manual", None, None).await.unwrap();
    assert_eq!((run.queued, run.rejected), (8, 2));

    // Nothing changed yet: both stay.
    let r = conn.retry_rejected().unwrap();
    assert_eq!((r.fetched, r.resolved, r.rejected), (2, 0, 2));

    {
        let mut s = conn.source.lock().unwrap();
        let f = s.fields.iter_mut().find(|f| f.name == "zjzt").unwrap();
        let FieldType::Enum(opts) = &mut f.ty else {
            panic!("zjzt is an enum")
        };
        opts.push("待审".into());
    }
    let r = conn.retry_rejected().unwrap();
    assert_eq!(
        (r.fetched, r.resolved, r.queued, r.rejected),
        (2, 1, 1, 1),
        "{r:?}"
    );
    assert!(is_pending(&conn, &pass));
    assert!(!is_pending(&conn, &stay));
    let list = listed(&conn);
    assert_eq!(list["kept"], 1);
    assert_eq!(list["records"][0]["key"], stay.as_str());
    assert_eq!(list["records"][0]["checks"], 3);
    assert_eq!(conn.pending(), 9);
    // A retry with nothing that passes changes nothing else.
    let r = conn.retry_rejected().unwrap();
    assert_eq!((r.resolved, r.queued), (0, 0));
    assert_eq!(conn.pending(), 9);
}

/// A queued record that the chain refuses because the catalog changed meanwhile is kept in
/// the list with the chain's reason, not dropped unseen.
#[tokio::test]
async fn finding_10_a_record_the_chain_refuses_is_kept_as_refused() {
    let (_sim, url) = sim(3, Codec::Plain).await;
    let (_dir, _store, conn) = connector(&url, 100);
    conn.run("manual", None, None).await.unwrap();
    assert_eq!(conn.pending(), 3);
    let key = Keypair::from_seed([5; 32]);
    let sign = |payload: Vec<u8>| {
        TxBody {
            chain_id: ChainId::new("t").unwrap(),
            signer: key.public(),
            nonce: 1,
            created_at: TimestampMs(0),
            payload,
        }
        .sign(&key)
    };
    let tx = conn.next_tx(&sign, None, false).unwrap().unwrap();
    // The catalog no longer allows any value the records have: all three are now invalid.
    {
        let mut s = conn.source.lock().unwrap();
        let f = s.fields.iter_mut().find(|f| f.name == "zjzt").unwrap();
        f.ty = FieldType::Enum(vec!["未定".into()]);
    }
    conn.settled(&tx.id(), false).unwrap();
    assert_eq!(listed(&conn)["kept"], 3);
    assert_eq!(conn.pending(), 0);
    for r in listed(&conn)["records"].as_array().unwrap() {
        assert!(
            r["reason"]
                .as_str()
                .unwrap()
                .starts_with("refused by the chain: "),
            "{r}"
        );
    }
}

/// What is kept of one refused record is bounded: a key past MAX_RECORD_KEY_BYTES, a payload
/// past MAX_RAW_BYTES and a long reason are cut (their sizes listed), and a cut record is never
/// validated again from its cut copy: a retry keeps it with its first reason.
#[tokio::test]
async fn finding_10_a_refused_record_is_kept_within_bounds() {
    use govchain_chaincode::records::{MAX_RAW_BYTES, MAX_RECORD_KEY_BYTES};
    let (_sim, url) = sim(1, Codec::Plain).await;
    let (_dir, _store, conn) = connector(&url, 10);
    let long_key = "k".repeat(MAX_RECORD_KEY_BYTES + 1);
    let at_limit = "a".repeat(MAX_RECORD_KEY_BYTES);
    let huge = format!("{{\"data\":{{\"x\":\"{}\"}}}}", "y".repeat(MAX_RAW_BYTES));
    let entries = [
        PageEntry {
            key: long_key.clone(),
            seq: 1,
            payload: "{}".into(),
        },
        PageEntry {
            key: at_limit.clone(),
            seq: 2,
            payload: huge.clone(),
        },
    ];
    let mut run = RunRecord::default();
    conn.ingest(&entries, None, &mut run).unwrap();
    assert_eq!(run.rejected, 2);
    let list = listed(&conn);
    let by_key = |k: &str| {
        list["records"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"] == k)
            .cloned()
            .unwrap_or_else(|| panic!("{k} not listed: {list}"))
    };
    let cut_key = by_key(&long_key[..MAX_RECORD_KEY_BYTES]);
    assert_eq!(cut_key["key_bytes"], MAX_RECORD_KEY_BYTES + 1);
    let big = by_key(&at_limit);
    assert_eq!(big["key_bytes"], MAX_RECORD_KEY_BYTES);
    assert_eq!(big["payload_bytes"], huge.len());
    let first_reasons = (cut_key["reason"].clone(), big["reason"].clone());
    for r in list["records"].as_array().unwrap() {
        assert!(r["reason"].as_str().unwrap().len() <= MAX_REASON_BYTES);
    }
    let retry = conn.retry_rejected().unwrap();
    assert_eq!((retry.fetched, retry.rejected, retry.resolved), (2, 2, 0));
    let list = listed(&conn);
    let again = |k: &str| {
        list["records"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"] == k)
            .unwrap()["reason"]
            .clone()
    };
    assert_eq!(
        (again(&long_key[..MAX_RECORD_KEY_BYTES]), again(&at_limit)),
        first_reasons
    );
}
