//! Store tests on a real SQLite file: dedupe, leases, retries, dead letters,
//! replay, and one failing command in a batch failing alone.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, oneshot};

use super::writer::Writer;
use super::*;

fn event(source: &str, external: Option<&str>) -> Event {
    Event {
        id: Event::new_id(),
        source: source.into(),
        event_type: "payment_made".into(),
        external_id: external.map(String::from),
        received_at: SystemTime::now(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: r#"{"amount":5}"#.into(),
        hops: 0,
    }
}

fn plugins(p: &[&str]) -> Vec<String> {
    p.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn ingest_dedupes_by_source_and_external_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.db"), 100).unwrap();
    let first = store
        .ingest(event("optum", Some("c-1")), plugins(&["a", "b"]))
        .await
        .unwrap();
    let Ingested::Stored { id, deliveries: 2 } = first else {
        panic!("{first:?}")
    };
    let again = store
        .ingest(event("optum", Some("c-1")), plugins(&["a"]))
        .await
        .unwrap();
    assert_eq!(again, Ingested::Duplicate { id: id.clone() });
    // Another source may reuse the id; events without one are never duplicates.
    assert!(matches!(
        store
            .ingest(event("github", Some("c-1")), vec![])
            .await
            .unwrap(),
        Ingested::Stored { .. }
    ));
    assert!(matches!(
        store.ingest(event("optum", None), vec![]).await.unwrap(),
        Ingested::Stored { .. }
    ));
    assert!(matches!(
        store.ingest(event("optum", None), vec![]).await.unwrap(),
        Ingested::Stored { .. }
    ));
    let counts = store.reader().unwrap().counts().unwrap();
    assert_eq!((counts.events, counts.deliveries_pending), (4, 2));
}

#[tokio::test]
async fn leases_retries_dead_letters_and_replay() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.db"), 100).unwrap();
    store
        .ingest(event("s", None), plugins(&["a", "absent"]))
        .await
        .unwrap();
    let lease = Duration::from_secs(60);

    // Only loaded plugins are claimed, and a leased delivery is not claimed twice.
    let claimed = store
        .claim_deliveries(plugins(&["a"]), 10, lease)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!((claimed[0].plugin.as_str(), claimed[0].attempts), ("a", 0));
    assert!(
        store
            .claim_deliveries(plugins(&["a"]), 10, lease)
            .await
            .unwrap()
            .is_empty()
    );

    // A failure with a retry time is due again only then.
    let id = claimed[0].id;
    let later = crate::event::unix_ms(SystemTime::now()) + 60_000;
    store
        .finish_delivery(
            id,
            DeliveryOutcome::Failed {
                error: "boom".into(),
                retry_at: Some(later),
            },
        )
        .await
        .unwrap();
    assert!(
        store
            .claim_deliveries(plugins(&["a"]), 10, lease)
            .await
            .unwrap()
            .is_empty()
    );
    store
        .finish_delivery(id, DeliveryOutcome::Release { due_at: 0 })
        .await
        .unwrap();
    let again = store
        .claim_deliveries(plugins(&["a"]), 10, lease)
        .await
        .unwrap();
    assert_eq!(again[0].attempts, 1, "the failed attempt was counted");

    // The last failure dead-letters it; replay brings it back with fresh attempts.
    store
        .finish_delivery(
            id,
            DeliveryOutcome::Failed {
                error: "boom again".into(),
                retry_at: None,
            },
        )
        .await
        .unwrap();
    let reader = store.reader().unwrap();
    let dead = reader.dead(10).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].id.clone(), dead[0].attempts),
        (format!("d-{id}"), 2)
    );
    assert_eq!(dead[0].last_error.as_deref(), Some("boom again"));
    assert_eq!(
        store
            .replay(ReplayTarget::One(format!("d-{id}")))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .replay(ReplayTarget::One(format!("d-{id}")))
            .await
            .unwrap(),
        0,
        "no longer dead"
    );
    let back = store
        .claim_deliveries(plugins(&["a"]), 10, lease)
        .await
        .unwrap();
    assert_eq!(back[0].attempts, 0);

    // Success stores the forwards in the outbox, atomically with the outcome.
    let fwd = NewForward {
        url: "http://127.0.0.1:9/x".into(),
        headers: vec![],
        body: "{}".into(),
        refused: None,
    };
    let refused = NewForward {
        refused: Some("not allowed".into()),
        ..fwd.clone()
    };
    store
        .finish_delivery(
            id,
            DeliveryOutcome::Done {
                version: "v1".into(),
                forwards: vec![fwd, refused],
                emitted: vec![],
            },
        )
        .await
        .unwrap();
    let forwards = store.claim_forwards(10, lease).await.unwrap();
    assert_eq!(
        forwards.len(),
        1,
        "a refused forward is stored dead, never claimed"
    );
    let counts = reader.counts().unwrap();
    assert_eq!(
        (
            counts.deliveries_done,
            counts.forwards_pending,
            counts.forwards_dead
        ),
        (1, 1, 1)
    );
}

#[tokio::test]
async fn a_failing_command_fails_alone_in_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    drop(Store::open(&path, 100).unwrap()); // create and migrate
    let mut conn = super::schema::open(&path).unwrap();
    super::schema::migrate(&mut conn).unwrap();
    let stored = event("s", None);
    let mut writer = Writer {
        conn,
        queued: Arc::new(AtomicUsize::new(3)),
        deliveries_due: Arc::new(Notify::new()),
        forwards_due: Arc::new(Notify::new()),
    };

    // A delivery to finish, then a sabotaged outbox so that storing its forward fails.
    let (tx0, rx0) = oneshot::channel();
    writer.process(vec![Command::Ingest {
        event: stored.clone(),
        plugins: plugins(&["a"]),
        reply: tx0,
    }]);
    assert!(matches!(rx0.await.unwrap(), Ok(Ingested::Stored { .. })));
    writer.conn.execute_batch("DROP TABLE outbox").unwrap();

    let (tx1, rx1) = oneshot::channel();
    let (tx2, rx2) = oneshot::channel();
    let (tx3, rx3) = oneshot::channel();
    let fwd = NewForward {
        url: "http://x/".into(),
        headers: vec![],
        body: "{}".into(),
        refused: None,
    };
    writer.process(vec![
        Command::Ingest {
            event: event("s", Some("e-1")),
            plugins: plugins(&["a"]),
            reply: tx1,
        },
        Command::FinishDelivery {
            id: 1,
            outcome: DeliveryOutcome::Done {
                version: "v".into(),
                forwards: vec![fwd],
                emitted: vec![],
            },
            reply: tx2,
        },
        Command::Ingest {
            event: event("s", Some("e-2")),
            plugins: vec![],
            reply: tx3,
        },
    ]);
    assert!(matches!(rx1.await.unwrap(), Ok(Ingested::Stored { .. })));
    assert!(matches!(rx2.await.unwrap(), Err(StoreError::Unavailable(m)) if m.contains("outbox")));
    assert!(matches!(rx3.await.unwrap(), Ok(Ingested::Stored { .. })));
    // The failed finish left nothing behind: the delivery is still pending.
    let state: String = writer
        .conn
        .query_row("SELECT state FROM deliveries WHERE id = 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(state, "pending");
}

#[test]
fn dead_ids_parse() {
    assert_eq!(parse_dead_id("d-12"), Some(('d', 12)));
    assert_eq!(parse_dead_id("o-3"), Some(('o', 3)));
    for bad in ["x-1", "d-", "d-0", "d--1", "12", "d-1.5", ""] {
        assert_eq!(parse_dead_id(bad), None, "{bad}");
    }
}

#[tokio::test]
async fn one_claim_hands_every_plugin_the_whole_event() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.db"), 100).unwrap();
    let (a, b) = (event("s", Some("x-1")), event("s", Some("x-2")));
    store
        .ingest(a.clone(), plugins(&["p", "q", "r"]))
        .await
        .unwrap();
    store.ingest(b.clone(), plugins(&["q"])).await.unwrap();
    let claimed = store
        .claim_deliveries(plugins(&["p", "q", "r"]), 10, Duration::from_secs(60))
        .await
        .unwrap();
    let mut got: Vec<(String, String)> = claimed
        .iter()
        .map(|c| (c.event.id.clone(), c.plugin.clone()))
        .collect();
    got.sort();
    let mut want = vec![
        (a.id.clone(), "p".to_string()),
        (a.id.clone(), "q".to_string()),
        (a.id.clone(), "r".to_string()),
        (b.id.clone(), "q".to_string()),
    ];
    want.sort();
    assert_eq!(got, want);
    for c in &claimed {
        let original = if c.event.id == a.id { &a } else { &b };
        assert_eq!(
            (&c.event.body, &c.event.headers, &c.event.external_id),
            (&original.body, &original.headers, &original.external_id)
        );
    }
}
