//! The conformance suite on a real SQLite file, and what only this backend
//! promises: one process per file, and one failing command failing alone in its
//! group-committed batch.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize};

use tokio::sync::oneshot;

use super::writer::{Command, Writer, WriterState};
use super::*;
use crate::store::conformance::{Subject, event};
use crate::store::{AttemptTiming, NewForward};

async fn subject() -> Subject {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("s.db"), 10_000).unwrap();
    Subject {
        store: Arc::new(store),
        _guard: Box::new(dir),
    }
}

crate::store_conformance!(subject());

#[tokio::test]
async fn a_second_process_is_refused_by_the_lock_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let first = SqliteStore::open(&path, 10).unwrap();
    let err = SqliteStore::open(&path, 10).unwrap_err().to_string();
    assert!(
        err.contains("in use") && err.contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    assert!(err.contains("s.db.lock"), "{err}");
    drop(first);
    SqliteStore::open(&path, 10).expect("the lock goes with the store");
}

#[tokio::test]
async fn a_failing_command_fails_alone_in_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    drop(SqliteStore::open(&path, 100).unwrap()); // create and migrate
    let mut conn = schema::open(&path).unwrap();
    schema::migrate(&mut conn).unwrap();
    let mut writer = Writer {
        conn,
        state: Arc::new(WriterState {
            queued: AtomicUsize::new(4),
            full: AtomicBool::new(false),
            alive: AtomicBool::new(true),
        }),
        wake: Arc::new(Wake::default()),
        owner: "test".into(),
        full_logged: None,
    };
    let new = |e, p: &[&str]| NewEvent {
        event: e,
        plugins: p.iter().map(|s| s.to_string()).collect(),
    };

    // A delivery to finish, then a sabotaged outbox so that storing its forward fails.
    let (tx0, rx0) = oneshot::channel();
    writer.process(vec![Command::Ingest(new(event("s", None), &["a"]), tx0)]);
    assert!(matches!(rx0.await.unwrap(), Ok(Ingested::Stored { .. })));
    let (tx, rx) = oneshot::channel();
    writer.process(vec![Command::ClaimDeliveries(
        DeliveryClaim {
            plugins: vec![("a".into(), 1)],
            lease: Duration::from_secs(60),
        },
        tx,
    )]);
    let claimed = rx.await.unwrap().unwrap();
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
    let outcome = DeliveryOutcome::Done {
        version: "v".into(),
        forwards: vec![fwd],
        emitted: vec![],
        max_emits: 100,
        timing: AttemptTiming {
            started_at: std::time::SystemTime::now(),
            duration: Duration::ZERO,
        },
    };
    writer.process(vec![
        Command::Ingest(new(event("s", Some("e-1")), &["a"]), tx1),
        Command::FinishDelivery(claimed[0].id, claimed[0].token, outcome, tx2),
        Command::Ingest(new(event("s", Some("e-2")), &[]), tx3),
    ]);
    assert!(matches!(rx1.await.unwrap(), Ok(Ingested::Stored { .. })));
    assert!(matches!(rx2.await.unwrap(), Err(StoreError::Unavailable(m)) if m.contains("outbox")));
    assert!(matches!(rx3.await.unwrap(), Ok(Ingested::Stored { .. })));
    // The failed finish left nothing behind: the delivery is still pending.
    let state: String = writer
        .conn
        .query_row(
            "SELECT state FROM deliveries WHERE id = ?1",
            [claimed[0].id.key()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(state, "pending");
}
