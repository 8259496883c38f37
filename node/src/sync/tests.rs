//! Tests of `sync`.

use super::*;
use crate::dept_sim::{DeptSim, FaultKind, Faults, SimConfig, SimSource};
use crate::schedule::ManualClock;

/// 2026-12-01 00:00 UTC = 08:00 in China.
const DAY0: u64 = 1_796_083_200_000;
const HOUR: u64 = 3_600_000;

fn source(id: &str) -> DataSource {
    govchain_genesis::catalog::default_catalog()
        .unwrap()
        .sources
        .into_iter()
        .find(|s| s.id == id)
        .unwrap()
}

async fn sim(records: u64, codec: Codec) -> (Arc<DeptSim>, String) {
    let sim = DeptSim::new(SimConfig {
        sources: vec![SimSource {
            source: source("gaj.jzz"),
            codec,
        }],
        records,
        seed: 3,
        token: "t".into(),
        faults: Faults {
            rate: 0.0,
            kinds: FaultKind::ALL.to_vec(),
            timeout_ms: 1000,
            slow_ms: 10,
            seed: 1,
        },
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(sim.clone().serve(l));
    (sim, url)
}

fn config(url: &str, codec: &str) -> ConnectorConfig {
    let mut c = ConnectorConfig::new("gaj.jzz", url);
    c.token = Some("t".into());
    c.codec = codec.into();
    c.schedule = "0 * * * *".into();
    c.window = "22:00-06:00".into();
    c.attempts = 3;
    c.retry_base_ms = 1;
    c.retry_max_ms = 5;
    c.unhealthy_after = 3;
    c
}

/// R-SYN-1 with an injected clock: over three virtual days, hourly ticks start runs only
/// inside the 22:00-06:00 window (China time) — 8 a day — and every run's start lies in the
/// window; the first run fetches everything, later ones only what changed.
#[tokio::test]
async fn scheduled_runs_happen_only_inside_the_window() {
    let (sim, url) = sim(300, Codec::Plain).await;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let clock = Arc::new(ManualClock::new(DAY0));
    let conn = Connector::new(
        config(&url, "plain"),
        source("gaj.jzz"),
        store,
        clock.clone(),
    )
    .unwrap();
    let end = DAY0 + 72 * HOUR;
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let c = conn.clone();
    let sim2 = sim.clone();
    let stop_at = clock.clone();
    let job = move |_at: u64, window_end: Option<u64>| {
        let (c, sim, clock, stop_tx) = (c.clone(), sim2.clone(), stop_at.clone(), stop_tx.clone());
        async move {
            // A change in the department system after the first night's 8 runs.
            if c.history(1000).len() == 8 {
                sim.touch("gaj.jzz", &first_key(&c)).unwrap();
            }
            c.run("schedule", window_end, None).await.unwrap();
            if clock.now() >= end {
                stop_tx.send_replace(true);
            }
        }
    };
    let stopped = async move {
        let _ = stop_rx.wait_for(|s| *s).await;
    };
    crate::schedule::run_scheduled(&conn.schedule, &*clock, stopped, job).await;
    let runs = conn.history(1000);
    // Brute force over the hours: a run at every hour whose local (UTC+8) hour is in
    // 22..24 or 0..6, up to and including the first such hour at or after `end`.
    let mut expected = Vec::new();
    for h in 1.. {
        let t = DAY0 + h * HOUR;
        if (6..22).contains(&((t / HOUR + 8) % 24)) {
            continue;
        }
        expected.push(t);
        if t >= end {
            break;
        }
    }
    assert_eq!(expected.len(), 25);
    let mut started: Vec<u64> = runs.iter().map(|r| r.started_at).collect();
    started.reverse();
    assert_eq!(
        started, expected,
        "runs start exactly on the in-window ticks"
    );
    for r in &runs {
        assert_eq!(r.outcome, "ok", "{r:?}");
    }
    let mut oldest_first = runs.clone();
    oldest_first.reverse();
    assert_eq!(oldest_first[0].fetched, 300);
    assert_eq!(oldest_first[0].queued, 300);
    assert!(oldest_first[1..8]
        .iter()
        .all(|r| r.fetched == 0 && r.queued == 0));
    assert_eq!(
        oldest_first[8].fetched, 1,
        "the changed record: {:?}",
        oldest_first[8]
    );
    assert!(oldest_first[9..].iter().all(|r| r.fetched == 0));
    // Nothing leaves the outbox without a chain; the changed record replaced its older
    // queued version.
    assert_eq!(conn.pending(), 300);
    // Ticks outside the window were slept through, never woken for.
    assert!(clock.wakeups().iter().all(|t| conn.schedule.in_window(*t)));
}

fn first_key(c: &Connector) -> String {
    let p = p_pending(c.id());
    let (k, _) = c
        .store
        .raw_prefix_where(CF_OUTBOX, &p, 1, |_, _| true)
        .unwrap()
        .remove(0);
    String::from_utf8_lossy(&k[p.len()..]).into_owned()
}

/// R-SEC-6: a DES source read with the wrong key fails clearly — no record is queued (no
/// garbage), the run fails after its attempts and the source is reported unhealthy; with
/// the right key every record arrives, and the source is healthy again.
#[tokio::test]
async fn a_wrong_des_key_queues_nothing_and_marks_the_source_unhealthy() {
    let right = "des:133457799BBCDFF1:0102030405060708";
    let (_sim, url) = sim(50, Codec::parse(right).unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(DAY0));
    let wrong = config(&url, "des:0E329232EA6D0D73:0102030405060708");
    let conn = Connector::new(wrong, source("gaj.jzz"), store.clone(), clock.clone()).unwrap();
    let r = conn.run("manual", None, None).await.unwrap();
    assert_eq!(r.outcome, "failed");
    assert_eq!(r.errors, 3);
    assert!(
        r.last_error.as_deref().unwrap().contains("padding"),
        "{r:?}"
    );
    assert_eq!((r.queued, conn.pending(), conn.cursor()), (0, 0, 0));
    assert!(!conn.healthy());
    assert_eq!(conn.status()["healthy"], false);
    drop(conn);
    let conn = Connector::new(config(&url, right), source("gaj.jzz"), store, clock).unwrap();
    let r = conn.run("manual", None, None).await.unwrap();
    assert_eq!(
        (r.outcome.as_str(), r.queued, conn.cursor()),
        ("ok", 50, 50)
    );
    assert!(conn.healthy());
    // The history survives a restart of the connector.
    assert_eq!(conn.history(10).len(), 2);
}

/// Entries that are not valid records are refused one by one, never queued.
#[test]
fn invalid_entries_are_refused_with_a_reason() {
    let s = source("gaj.jzz");
    let e = |key: &str, payload: &str| PageEntry {
        key: key.into(),
        seq: 1,
        payload: payload.into(),
    };
    assert!(to_record(&s, &e("k", "not json"))
        .unwrap_err()
        .contains("not JSON"));
    assert!(to_record(&s, &e("k", "[1,2]"))
        .unwrap_err()
        .contains("object"));
    assert!(to_record(&s, &e("k", r#"{"data":{"a":{"b":1}}}"#))
        .unwrap_err()
        .contains("single value"));
    assert!(to_record(&s, &e("k", r#"{"data":{}}"#)).is_err());
    let mut g = crate::synth::Generator::new(1);
    let r = g.record_for(&s, 1);
    let payload = String::from_utf8(r.raw.clone()).unwrap();
    let key = r.fields[&s.record_key_field].clone();
    assert_eq!(to_record(&s, &e(&key, &payload)).unwrap(), r);
    assert!(to_record(&s, &e("other", &payload))
        .unwrap_err()
        .contains("differs"));
}

#[test]
fn backoff_doubles_with_jitter_and_is_capped() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut cfg = config("http://127.0.0.1:9", "plain");
    cfg.retry_base_ms = 100;
    cfg.retry_max_ms = 1000;
    let c = Connector::new(cfg, source("gaj.jzz"), store, Arc::new(ManualClock::new(0))).unwrap();
    for (attempt, full) in [
        (0, 100),
        (1, 200),
        (2, 400),
        (3, 800),
        (4, 1000),
        (30, 1000),
    ] {
        let d = c.backoff(attempt).as_millis() as u64;
        assert!((full / 2..full).contains(&d), "attempt {attempt}: {d} ms");
    }
}

/// A clock that moves a minute every time it is read.
struct Ticking(std::sync::atomic::AtomicU64);

impl Clock for Ticking {
    fn now_ms(&self) -> u64 {
        self.0.fetch_add(60_000, Ordering::Relaxed)
    }
    fn sleep_until(
        &self,
        _at_ms: u64,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(async {})
    }
}

/// R-SYN-1: a scheduled run stops fetching when its window closes, keeping its cursor; the
/// next run goes on from there and nothing is fetched twice or lost.
#[tokio::test]
async fn a_run_stops_when_its_window_closes_and_the_next_goes_on() {
    let (_sim, url) = sim(300, Codec::Plain).await;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut cfg = config(&url, "plain");
    cfg.page = 50;
    let clock = Arc::new(Ticking(std::sync::atomic::AtomicU64::new(DAY0)));
    let conn = Connector::new(cfg, source("gaj.jzz"), store, clock).unwrap();
    // The clock is read at the start, before each page and after each answered request: a
    // window closing 5 minutes after the start lets two pages through.
    let r = conn
        .run("schedule", Some(DAY0 + 5 * 60_000), None)
        .await
        .unwrap();
    assert_eq!(r.outcome, "window closed", "{r:?}");
    assert_eq!((r.pages, r.fetched, conn.cursor()), (2, 100, 100), "{r:?}");
    let r = conn.run("manual", None, None).await.unwrap();
    assert_eq!((r.outcome.as_str(), r.fetched, r.queued), ("ok", 200, 200));
    assert_eq!((conn.cursor(), conn.pending()), (300, 300));
}

mod refused;
