//! The activity feed on a real SQLite store: what is recorded is reported,
//! once, with the right event, plugin and attempt; what is not recorded (a
//! stale lease) is not; and the series and percentiles add up.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::broadcast::error::TryRecvError;

use super::series::Attempt;
use super::*;
use crate::store::conformance::event;
use crate::store::sqlite::SqliteStore;
use crate::store::{
    AttemptTiming, DeliveryClaim, DeliveryOutcome, Emitted, Finished, ForwardOutcome, Ingest,
    Ingested, NewEvent, NewForward, Store, WorkQueue,
};

fn timing(ms: u64) -> AttemptTiming {
    AttemptTiming {
        started_at: SystemTime::now(),
        duration: Duration::from_millis(ms),
    }
}

fn claim(plugin: &str) -> DeliveryClaim {
    DeliveryClaim {
        plugins: vec![(plugin.into(), 10)],
        lease: Duration::from_secs(60),
    }
}

fn next(rx: &mut broadcast::Receiver<Arc<Message>>) -> serde_json::Value {
    match rx.try_recv() {
        Ok(m) => serde_json::to_value(&*m).unwrap(),
        Err(e) => panic!("no message: {e:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_outcomes_are_reported_once_and_stale_ones_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let inner = Arc::new(SqliteStore::open(&dir.path().join("s.db"), 100).unwrap());
    let activity = Arc::new(Activity::new());
    let store = Observed::new(inner, activity.clone());
    let mut rx = activity.subscribe();

    let e = event("optum", Some("ext-1"));
    let id = e.id;
    let stored = store
        .ingest(NewEvent {
            event: e.clone(),
            plugins: vec!["p".into()],
        })
        .await
        .unwrap();
    assert_eq!(stored, Ingested::Stored { id, deliveries: 1 });
    let m = next(&mut rx);
    assert_eq!(m["kind"], "event");
    assert_eq!(m["id"], id.to_string());
    assert_eq!(m["status"], "pending");
    assert_eq!(m["source"], "optum");
    // A duplicate is counted, not announced.
    store
        .ingest(NewEvent {
            event: event("optum", Some("ext-1")),
            plugins: vec!["p".into()],
        })
        .await
        .unwrap();
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));

    // A failed attempt that will retry, then a success with a forward and an emit.
    let c = store.claim_deliveries(claim("p")).await.unwrap().remove(0);
    let failed = DeliveryOutcome::Failed {
        error: "boom".into(),
        kind: "trap",
        version: Some("v1".into()),
        retry_at: Some(0),
        timing: timing(7),
    };
    assert_eq!(
        store.finish_delivery(c.id, c.token, failed).await.unwrap(),
        Finished::Recorded
    );
    let m = next(&mut rx);
    assert_eq!(
        (
            m["kind"].as_str(),
            m["outcome"].as_str(),
            m["state"].as_str()
        ),
        (Some("delivery"), Some("trap"), Some("pending"))
    );
    assert_eq!(
        (m["attempt"].as_u64(), m["duration_ms"].as_u64()),
        (Some(1), Some(7))
    );
    assert_eq!(m["error"], "boom");
    assert_eq!(m["event_id"], id.to_string());

    let c = store.claim_deliveries(claim("p")).await.unwrap().remove(0);
    let mut child = event("optum", None);
    child.event_type = "child".into();
    let child_id = child.id;
    let done = DeliveryOutcome::Done {
        version: "v1".into(),
        forwards: vec![NewForward {
            url: "https://hooks.example/services/T0/B0/secret".into(),
            headers: vec![],
            body: "{}".into(),
            refused: None,
        }],
        emitted: vec![Emitted {
            event: child,
            plugins: vec![],
        }],
        max_emits: 100,
        timing: timing(3),
    };
    // A stale token first: nothing is recorded, nothing reported.
    let stale = store
        .finish_delivery(c.id, crate::store::LeaseToken::new(), done.clone())
        .await
        .unwrap();
    assert_eq!(stale, Finished::Stale);
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
    store.finish_delivery(c.id, c.token, done).await.unwrap();
    let emitted = next(&mut rx);
    assert_eq!(emitted["kind"], "event");
    assert_eq!(emitted["id"], child_id.to_string());
    assert_eq!(emitted["parent_id"], id.to_string());
    assert_eq!(emitted["status"], "unrouted");
    let m = next(&mut rx);
    assert_eq!(
        (
            m["kind"].as_str(),
            m["outcome"].as_str(),
            m["state"].as_str(),
            m["attempt"].as_u64()
        ),
        (Some("delivery"), Some("ok"), Some("done"), Some(2))
    );

    // The forward: reported with its target cut to what may be shown.
    let f = store
        .claim_forwards(10, Duration::from_secs(60))
        .await
        .unwrap()
        .remove(0);
    let sent = ForwardOutcome::Sent {
        status: 204,
        timing: timing(12),
    };
    store.finish_forward(f.id, f.token, sent).await.unwrap();
    let m = next(&mut rx);
    assert_eq!(m["kind"], "forward");
    assert_eq!(m["target"], "https://hooks.example:443/services/…");
    assert_eq!(
        (m["status"].as_u64(), m["state"].as_str()),
        (Some(204), Some("done"))
    );
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));

    // The plugin's durations and the interval's counts.
    let p = activity.percentiles("p").unwrap();
    assert_eq!(p.runs, 2);
    assert_eq!((p.p50_ms, p.p99_ms), (7.0, 7.0));
    activity.series().close(SystemTime::now(), Some(0));
    let point = activity.series().points().pop().unwrap();
    assert!(point.events_per_sec > 0.0);
    assert_eq!(point.duplicates, 1);
    assert_eq!(
        (
            point.deliveries_ok,
            point.deliveries_failed,
            point.forwards_sent
        ),
        (1, 1, 1)
    );
    assert_eq!(point.failure_rate, Some(1.0 / 3.0));
    assert_eq!(point.forward_p50_ms, Some(12.0));
    assert!(store.describe().starts_with("sqlite "));
}

#[test]
fn intervals_close_into_rates_and_the_last_hour_is_kept() {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let s = Series::new(t0);
    s.event(50);
    for _ in 0..3 {
        s.attempt(Attempt::DeliveryOk);
    }
    s.attempt(Attempt::DeliveryFailed { dead: true });
    for ms in [10, 20, 30, 40] {
        s.attempt(Attempt::ForwardSent(Duration::from_millis(ms)));
    }
    s.close(t0 + Duration::from_secs(5), Some(42));
    let p = &s.points()[0];
    assert_eq!(p.at, crate::event::unix_ms(t0));
    assert_eq!(p.events_per_sec, 10.0);
    assert_eq!(p.dead, 1);
    assert_eq!(p.failure_rate, Some(1.0 / 8.0));
    assert_eq!(p.forward_p50_ms, Some(30.0));
    assert_eq!(p.forward_p95_ms, Some(40.0));
    assert_eq!(p.backlog, Some(42));
    // An idle interval: zero rate, no failure rate, no latency.
    s.close(t0 + Duration::from_secs(10), None);
    let idle = &s.points()[1];
    assert_eq!(
        (idle.events_per_sec, idle.failure_rate, idle.forward_p50_ms),
        (0.0, None, None)
    );
    for i in 0..800u64 {
        s.close(t0 + Duration::from_secs(15 + i * 5), None);
    }
    assert_eq!(s.points().len(), 720, "one hour of 5 s points");
}

#[test]
fn plugin_percentiles_cover_the_most_recent_runs() {
    let a = Activity::new();
    assert_eq!(a.percentiles("p"), None);
    for ms in 1..=100u64 {
        a.record_duration("p", Duration::from_millis(ms));
    }
    let p = a.percentiles("p").unwrap();
    assert_eq!((p.runs, p.p50_ms, p.p99_ms), (100, 51.0, 99.0));
    for _ in 0..2000 {
        a.record_duration("p", Duration::from_millis(500));
    }
    let p = a.percentiles("p").unwrap();
    assert_eq!((p.runs, p.p50_ms), (1024, 500.0));
}
