//! The conformance suite on a real SQLite file, and what only this backend
//! promises: one process per file, one failing command failing alone in its
//! group-committed batch, and a search index that follows the events table.

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
            restart_wal: AtomicBool::new(false),
            checkpointer: Default::default(),
        }),
        wake: Arc::new(Wake::default()),
        owner: "test".into(),
        full_logged: None,
        search: None,
    };
    let new = |e, p: &[&str]| NewEvent {
        event: e,
        plugins: p.iter().map(|s| s.to_string()).collect(),
    };

    // A delivery to finish, then a sabotaged outbox so that storing its forward fails.
    let (tx0, rx0) = oneshot::channel();
    writer.process(vec![Command::Ingest(
        new(event("s", None), &["a"]),
        None,
        tx0,
    )]);
    assert!(matches!(
        rx0.await.unwrap(),
        Ok((Ingested::Stored { .. }, _))
    ));
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
        Command::Ingest(new(event("s", Some("e-1")), &["a"]), None, tx1),
        Command::FinishDelivery(claimed[0].id, claimed[0].token, outcome, None, tx2),
        Command::Ingest(new(event("s", Some("e-2")), &[]), None, tx3),
    ]);
    assert!(matches!(
        rx1.await.unwrap(),
        Ok((Ingested::Stored { .. }, _))
    ));
    assert!(matches!(rx2.await.unwrap(), Err(StoreError::Unavailable(m)) if m.contains("outbox")));
    assert!(matches!(
        rx3.await.unwrap(),
        Ok((Ingested::Stored { .. }, _))
    ));
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

/// Entries for `word` in the search index, once the indexer has caught up.
async fn indexed(store: &SqliteStore, path: &std::path::Path, word: &str) -> i64 {
    let last = store.read(search::last_seq).await.unwrap();
    // (Generous: other tests of this binary keep both cores busy meanwhile.)
    assert!(store.search.caught_up(last, Duration::from_secs(30)).await);
    // Deletions go through `search_gone`: wait until the indexer has none left.
    for _ in 0..200 {
        let left: i64 = schema::open(path)
            .unwrap()
            .query_row("SELECT count(*) FROM search_gone", [], |r| r.get(0))
            .unwrap();
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let conn = search::open(&search::search_path(path)).unwrap();
    conn.query_row(
        "SELECT count(*) FROM events_fts WHERE events_fts MATCH ?1",
        [format!("\"{word}\"")],
        |r| r.get(0),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruned_and_purged_events_leave_the_search_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let store = SqliteStore::open(&path, 100).unwrap();
    let with_body = |body: &str| {
        let mut e = event("s", None);
        e.body = format!(r#"{{"word":"{body}"}}"#);
        e
    };
    let ingest = |e: Event, plugins: &[&str]| {
        let new = NewEvent {
            event: e,
            plugins: plugins.iter().map(|p| p.to_string()).collect(),
        };
        let store = &store;
        async move {
            match store.ingest(new).await.unwrap() {
                Ingested::Stored { id, .. } => id,
                other => panic!("{other:?}"),
            }
        }
    };
    ingest(with_body("alpha"), &[]).await; // unrouted: pruned below
    let charlie = ingest(with_body("charlie"), &["p"]).await; // pending: kept
    ingest(with_body("bravo"), &["p"]).await; // dead, then purged
    assert_eq!(
        (
            indexed(&store, &path, "alpha").await,
            indexed(&store, &path, "bravo").await
        ),
        (1, 1)
    );

    // Bravo's delivery dies (the claim takes the oldest first: charlie, then bravo).
    let claimed = store
        .claim_deliveries(DeliveryClaim {
            plugins: vec![("p".into(), 2)],
            lease: Duration::from_secs(60),
        })
        .await
        .unwrap();
    let bravo = claimed.iter().find(|c| c.event.id != charlie).unwrap();
    let failed = DeliveryOutcome::Failed {
        error: "no".into(),
        kind: "guest",
        version: None,
        retry_at: None,
        timing: AttemptTiming {
            started_at: std::time::SystemTime::now(),
            duration: Duration::ZERO,
        },
    };
    store
        .finish_delivery(bravo.id, bravo.token, failed)
        .await
        .unwrap();
    let purged = store
        .purge(Selection::Ids(vec![DeadId::Delivery(bravo.id)]))
        .await
        .unwrap();
    assert_eq!(purged.events, 1);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let pruned = store
        .prune(Retention {
            retention: Duration::ZERO,
            dedupe_horizon: Duration::from_secs(3600),
            batch: 100,
        })
        .await
        .unwrap();
    assert_eq!(pruned.events, 1, "alpha is unrouted and past the retention");
    assert_eq!(
        (
            indexed(&store, &path, "alpha").await,
            indexed(&store, &path, "bravo").await,
            indexed(&store, &path, "charlie").await
        ),
        (0, 0, 1)
    );

    // Bravo was the newest row: a new event never takes its key (seq is
    // AUTOINCREMENT), and is not found by bravo's words.
    let delta = ingest(with_body("delta"), &[]).await;
    let find = |q: &str| {
        let filter = EventFilter {
            q: Some(q.into()),
            ..Default::default()
        };
        let store = &store;
        async move {
            store
                .events(
                    &filter,
                    Page {
                        before: None,
                        limit: 10,
                    },
                )
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(find("bravo").await, vec![]);
    assert_eq!(find("delta").await, vec![delta]);
    assert_eq!(find("word").await, vec![delta, charlie]);
}

#[tokio::test]
async fn migrating_to_v3_indexes_the_events_already_stored() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    {
        let conn = schema::open(&path).unwrap();
        conn.execute_batch(schema::MIGRATIONS[0]).unwrap();
        conn.execute_batch(schema::MIGRATIONS[1]).unwrap();
        conn.pragma_update(None, "user_version", 2).unwrap();
        conn.execute(
            "INSERT INTO events (id, source, event_type, received_at, headers, body, root_id, status)
             VALUES (?1, 's', 't', 0, '[]', '{\"greeting\":\"Grüße aus Köln\"}', ?1, 'unrouted')",
            [EventId::new().to_string()],
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path, 100).unwrap();
    for q in ["köln", "KOLN", "grüße"] {
        let found = store
            .events(
                &EventFilter {
                    q: Some(q.into()),
                    ..Default::default()
                },
                Page {
                    before: None,
                    limit: 10,
                },
            )
            .await
            .unwrap();
        assert_eq!(found.len(), 1, "{q}");
    }
}

/// A new store, migrated and open (it holds the lock), and a connection of
/// its own to it.
fn migrated() -> (tempfile::TempDir, SqliteStore, rusqlite::Connection) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let store = SqliteStore::open(&path, 1000).unwrap();
    let conn = schema::open(&path).unwrap();
    (dir, store, conn)
}

/// SQLite's plan for `sql` with `params`, its steps joined by "; ".
fn plan(conn: &rusqlite::Connection, sql: &str, params: impl rusqlite::Params) -> String {
    let steps: Vec<String> = conn
        .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
        .unwrap()
        .query_map(params, |r| r.get::<_, String>(3))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    steps.join("; ")
}

#[tokio::test]
async fn pruning_reads_the_partial_index_not_every_finished_event() {
    let (_dir, _store, conn) = migrated();
    let plan = plan(
        &conn,
        super::retain::PRUNABLE_ROOTS,
        rusqlite::params![0, 100],
    );
    assert!(
        plan.contains("events_prunable") && !plan.contains("TEMP B-TREE"),
        "{plan}"
    );
}

#[tokio::test]
async fn a_tree_is_found_through_the_partial_tree_index() {
    let (_dir, _store, conn) = migrated();
    for sql in [super::retain::DESCENDANTS, super::retain::DESCENDANT_OPEN] {
        let plan = plan(&conn, sql, ["r"]);
        assert!(
            plan.contains("events_root") && !plan.contains("SCAN events"),
            "{sql}: {plan}"
        );
    }
}

#[tokio::test]
async fn a_broken_search_index_is_rebuilt_and_never_stops_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let new = |body: &str| NewEvent {
        event: Event {
            body: body.into(),
            ..event("s", None)
        },
        plugins: vec![],
    };
    {
        let store = SqliteStore::open(&path, 1000).unwrap();
        store.ingest(new(r#"{"memo":"kestrel"}"#)).await.unwrap();
    }
    // Garbage where the index was (a torn copy, another program's file).
    std::fs::write(
        search::search_path(&path),
        b"this is not an SQLite file at all",
    )
    .unwrap();
    let store = SqliteStore::open(&path, 1000).expect("the store opens all the same");
    store.ingest(new(r#"{"memo":"osprey"}"#)).await.unwrap();
    for word in ["kestrel", "osprey"] {
        assert_eq!(
            indexed(&store, &path, word).await,
            1,
            "{word} is found again"
        );
    }
}

/// The scheduling policy (`/proc/.../stat` field 41) of each of this
/// process's threads named `name`.
#[cfg(target_os = "linux")]
fn policies_of(name: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the parenthesized name start at field 3.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        if let Some(policy) = rest.split_whitespace().nth(41 - 3) {
            found.push(policy.parse().unwrap());
        }
    }
    found
}

#[tokio::test(start_paused = true)]
async fn a_search_waiting_for_the_index_lifts_it_out_of_the_idle_lane() {
    use super::search::Lane;
    let (_dir, store, _conn) = migrated();
    let search = store.search.clone();
    assert_eq!(search.indexing_lane(), Lane::Indexing, "nobody waits");
    // A wait for an event that never comes, until its limit.
    let waiting = {
        let search = search.clone();
        tokio::spawn(async move { search.caught_up(i64::MAX, Duration::from_secs(5)).await })
    };
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(search.indexing_lane(), Lane::Reading, "a search waits");
    assert!(!waiting.await.unwrap(), "it was never caught up");
    assert_eq!(search.indexing_lane(), Lane::Indexing, "the wait is over");
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_indexer_waits_idle_scheduled_below_every_other_thread() {
    const SCHED_IDLE: u32 = 5;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let store = SqliteStore::open(&path, 100).unwrap();
    let mut e = event("s", None);
    e.body = r#"{"word":"idlelane"}"#.into();
    let new = NewEvent {
        event: e,
        plugins: vec![],
    };
    store.ingest(new).await.unwrap();
    assert_eq!(indexed(&store, &path, "idlelane").await, 1);
    // Once it has indexed, it waits for more in its indexing lane. (Other
    // tests' stores have indexers too; one of them is this one.)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let policies = policies_of("store-indexer");
        if policies.contains(&SCHED_IDLE) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no store-indexer thread is SCHED_IDLE: {policies:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // The router's own threads keep the normal policy.
    assert!(
        policies_of("store-writer").iter().all(|&p| p == 0),
        "{:?}",
        policies_of("store-writer")
    );
}

#[tokio::test]
async fn claims_and_prunes_keep_their_compiled_statements() {
    // SQLite compiles a statement again at each run when a subquery's LIMIT is
    // a bare parameter (it reads its value while planning): 4% of the writer's
    // time end to end went to that.
    let (_dir, _store, conn) = migrated();
    type Params<'a> = &'a dyn Fn(i64) -> Vec<rusqlite::types::Value>;
    let cases: [(&str, Params); 3] = [
        (super::ops::CLAIM_DELIVERIES, &|i| {
            vec![
                (100 + i).into(),
                (10 + i).into(),
                "p".to_string().into(),
                (5 + i).into(),
                1.into(),
                "o".to_string().into(),
            ]
        }),
        (super::ops::CLAIM_FORWARDS, &|i| {
            vec![
                (100 + i).into(),
                (10 + i).into(),
                (5 + i).into(),
                1.into(),
                "o".to_string().into(),
            ]
        }),
        (super::retain::PRUNE_DEDUPE, &|i| {
            vec![(10 + i).into(), (5 + i).into()]
        }),
    ];
    for (sql, params) in cases {
        let mut stmt = conn.prepare(sql).unwrap();
        for i in 0..3 {
            let mut rows = stmt.query(rusqlite::params_from_iter(params(i))).unwrap();
            while rows.next().unwrap().is_some() {}
        }
        assert_eq!(
            stmt.get_status(rusqlite::StatementStatus::RePrepare),
            0,
            "{sql}"
        );
    }
}

/// Under ingests that never let the writer pause, the WAL is still started
/// over at its bound, so its file stays within the journal size limit (twice
/// the bound) while many times that is written. Run from the checkpointer
/// alone, every 250 ms, the restart waited on the writer's lock and the file
/// grew past 200 MiB under load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_writes_that_never_pause_the_wal_stays_bounded() {
    let (dir, store, conn) = migrated();
    let store = Arc::new(store);
    let wal = dir.path().join("s.db-wal");
    const BODY: usize = 8 << 10;
    const TASKS: usize = 32;
    // Bodies alone: six times the bound, three times the file's limit.
    let each = (6 * WAL_BOUND as usize) / BODY / TASKS;
    // Stops the watch however the test ends, so a failure cannot hang it.
    struct Stop(Arc<AtomicBool>);
    impl Drop for Stop {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = Stop(stop.clone());
    let watch = {
        let (stop, wal) = (stop.clone(), wal.clone());
        tokio::task::spawn_blocking(move || {
            let mut max = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                max = max.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            max
        })
    };
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..TASKS {
        let store = store.clone();
        tasks.spawn(async move {
            for i in 0..each {
                let mut e = event("s", None);
                e.body = format!(r#"{{"task":{t},"n":{i},"pad":"{}"}}"#, "x".repeat(BODY));
                let new = crate::store::NewEvent {
                    event: e,
                    plugins: vec!["p".into()],
                };
                store.ingest(new).await.unwrap();
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    drop(stopping);
    let max = watch.await.unwrap();
    let stored: i64 = conn
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored as usize, TASKS * each);
    assert!(
        max <= 2 * WAL_BOUND,
        "the WAL file reached {} MiB; its bound is {} MiB and its limit twice that",
        max >> 20,
        WAL_BOUND >> 20
    );
}
