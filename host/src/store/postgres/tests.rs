//! The conformance suite on a real PostgreSQL server (a throwaway cluster, or
//! the one `HOOKROUTER_TEST_DATABASE_URL` names), each case on a fresh
//! database; and what only this backend promises: several replicas on one
//! database, each with leases of its own.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::store::conformance::{Subject, event};
use crate::store::{DeliveryClaim, SharedStore, Work};

#[path = "../../../tests/common/pg_cluster.rs"]
mod pg_cluster;

/// A database that is dropped when the case ends.
struct Database {
    name: String,
}

impl Drop for Database {
    fn drop(&mut self) {
        pg_cluster::shared().drop_database(&self.name);
    }
}

fn database() -> (Database, String) {
    let (name, url) = pg_cluster::shared().fresh_database("conformance");
    (Database { name }, url)
}

async fn subject() -> Subject {
    let (db, url) = tokio::task::spawn_blocking(database).await.unwrap();
    let store = PgStore::open(&url, 10_000).await.unwrap();
    Subject {
        store: Arc::new(store),
        _guard: Box::new(db),
    }
}

crate::store_conformance!(subject());

fn new(e: Event, plugins: &[&str]) -> NewEvent {
    NewEvent {
        event: e,
        plugins: plugins.iter().map(|s| s.to_string()).collect(),
    }
}

fn claim(plugins: &[&str], lease: Duration) -> DeliveryClaim {
    DeliveryClaim {
        plugins: plugins.iter().map(|p| (p.to_string(), 100)).collect(),
        lease,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_keep_their_own_leases_and_take_over_expired_ones() {
    let (_db, url) = tokio::task::spawn_blocking(database).await.unwrap();
    let a: SharedStore = Arc::new(PgStore::open(&url, 100).await.unwrap());
    for i in 0..4 {
        a.ingest(new(event("s", Some(&format!("r-{i}"))), &["p"]))
            .await
            .unwrap();
    }
    // A leases two for a long time and two for a short time.
    let mut held = a
        .claim_deliveries(DeliveryClaim {
            plugins: vec![("p".into(), 2)],
            lease: Duration::from_secs(600),
        })
        .await
        .unwrap();
    let short = a
        .claim_deliveries(DeliveryClaim {
            plugins: vec![("p".into(), 2)],
            lease: Duration::from_millis(300),
        })
        .await
        .unwrap();
    assert_eq!((held.len(), short.len()), (2, 2));

    // B starts on the same database: it clears nothing of A's.
    let b: SharedStore = Arc::new(PgStore::open(&url, 100).await.unwrap());
    assert_ne!(
        a.describe(),
        b.describe(),
        "each replica has its own owner id"
    );
    assert!(
        b.claim_deliveries(claim(&["p"], Duration::from_secs(60)))
            .await
            .unwrap()
            .is_empty(),
        "current leases of another replica are never taken"
    );
    // Once A's short leases expire (by the database's clock), B takes them over.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let taken = b
        .claim_deliveries(claim(&["p"], Duration::from_secs(60)))
        .await
        .unwrap();
    let mut taken_ids: Vec<_> = taken.iter().map(|d| d.id).collect();
    let mut short_ids: Vec<_> = short.iter().map(|d| d.id).collect();
    taken_ids.sort();
    short_ids.sort();
    assert_eq!(taken_ids, short_ids);
    // A's late outcome of a taken-over delivery is stale; B's is recorded.
    let outcome = || DeliveryOutcome::Release { due_at: 0 };
    assert_eq!(
        a.finish_delivery(short[0].id, short[0].token, outcome())
            .await
            .unwrap(),
        Finished::Stale
    );
    // B gives back only its own leases: A's long ones stay with A.
    assert_eq!(b.release_leases().await.unwrap(), 2);
    let again = b
        .claim_deliveries(claim(&["p"], Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(again.len(), 2, "B's released leases are due at once");
    assert!(again.iter().all(|d| held.iter().all(|h| h.id != d.id)));
    // A's release frees its long leases for B, without waiting for expiry.
    assert_eq!(a.release_leases().await.unwrap(), 2);
    held.sort_by_key(|d| d.id);
    let mut freed: Vec<_> = b
        .claim_deliveries(claim(&["p"], Duration::from_secs(60)))
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    freed.sort();
    assert_eq!(freed, held.iter().map(|d| d.id).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replicas_commit_wakes_the_other() {
    let (_db, url) = tokio::task::spawn_blocking(database).await.unwrap();
    let a = PgStore::open(&url, 100).await.unwrap();
    let b = PgStore::open(&url, 100).await.unwrap();
    // Let B's listener connect (it wakes its own workers once when it does).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let woken = b.wake().notified(Work::Deliveries);
    tokio::pin!(woken);
    woken.as_mut().enable();
    a.ingest(new(event("s", None), &["p"])).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), woken)
        .await
        .expect("B is woken by A's NOTIFY");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_migrate_once() {
    let (_db, url) = tokio::task::spawn_blocking(database).await.unwrap();
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PgStore::open(&url, 10).await })
        })
        .collect();
    let mut stores = Vec::new();
    for o in opens {
        stores.push(o.await.unwrap().expect("every replica opens"));
    }
    let counts = stores[0].counts().await.unwrap();
    assert_eq!(counts.events, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_is_unavailable_and_reported() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/x?sslmode=disable");
    let err = PgStore::open(&url, 10).await.unwrap_err().to_string();
    assert!(
        err.contains(&format!("127.0.0.1:{port}/x")) && err.contains("unreachable"),
        "{err}"
    );
}

/// Whether the store's own sessions are encrypted.
async fn encrypted(store: &PgStore) -> bool {
    let c = store.pool.get().await.unwrap();
    c.query_one(
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_follows_sslmode() {
    // A cluster of its own: it serves TLS with a certificate for `localhost` only.
    let cluster = tokio::task::spawn_blocking(|| {
        pg_cluster::Cluster::start().unwrap_or_else(|e| panic!("PostgreSQL tests cannot run: {e}"))
    })
    .await
    .unwrap();
    let port = cluster.port().unwrap();
    let cert = cluster.certificate_authority().unwrap();
    let cert = cert.display();
    let url =
        |host: &str, params: &str| format!("postgres://postgres@{host}:{port}/postgres?{params}");

    let plain = PgStore::open(&url("127.0.0.1", "sslmode=disable"), 10)
        .await
        .unwrap();
    assert!(!encrypted(&plain).await);
    // require: encrypted, the certificate is not checked (as libpq).
    let required = PgStore::open(&url("127.0.0.1", "sslmode=require"), 10)
        .await
        .unwrap();
    assert!(encrypted(&required).await);
    let preferred = PgStore::open(&url("127.0.0.1", ""), 10).await.unwrap();
    assert!(
        encrypted(&preferred).await,
        "prefer encrypts when the server can"
    );
    // verify-ca: the chain is checked, the name is not (127.0.0.1 is not in the certificate).
    let ca = PgStore::open(
        &url(
            "127.0.0.1",
            &format!("sslmode=verify-ca&sslrootcert={cert}"),
        ),
        10,
    )
    .await
    .unwrap();
    assert!(encrypted(&ca).await);
    // verify-full: the chain and the name.
    let full = PgStore::open(
        &url(
            "localhost",
            &format!("sslmode=verify-full&sslrootcert={cert}"),
        ),
        10,
    )
    .await
    .unwrap();
    assert!(encrypted(&full).await);
    for (u, says) in [
        (
            url(
                "127.0.0.1",
                &format!("sslmode=verify-full&sslrootcert={cert}"),
            ),
            "not valid for name",
        ),
        (url("localhost", "sslmode=verify-full"), "UnknownIssuer"),
    ] {
        let err = format!("{:#}", PgStore::open(&u, 10).await.unwrap_err());
        assert!(
            err.to_lowercase().contains(&says.to_lowercase()),
            "{u}: {err}"
        );
    }
    drop((plain, required, preferred, ca, full));
    tokio::task::spawn_blocking(move || drop(cluster))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_backlog_limit_ingest_is_busy_and_not_ready() {
    let (_db, url) = tokio::task::spawn_blocking(database).await.unwrap();
    let full = PgStore::open(&url, 0).await.unwrap();
    let err = full.ingest(new(event("s", None), &[])).await.unwrap_err();
    assert!(matches!(err, StoreError::Busy(0)), "{err:?}");
    assert_eq!(err.retry_after_secs(), 1);
    let health = full.health().await;
    assert!(!health.ready);
    assert!(health.reason.unwrap().contains("backlog"));
    let open = PgStore::open(&url, 10).await.unwrap();
    assert!(open.health().await.ready, "the database answers");
}

/// `q` as the dashboard's search promises it (main's SQLite FTS5 search passes
/// the same cases in the conformance suite): whole words, any case and order,
/// all of them, never inside a word; with filters and time bounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn q_matches_whole_words_in_any_case_and_order() {
    let (_db, url) = tokio::task::spawn_blocking(database).await.unwrap();
    let store = PgStore::open(&url, 100).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..7 {
        let mut e = event(if i % 2 == 0 { "even" } else { "odd" }, None);
        e.body = format!(
            r#"{{"n":{i},"needle":"{}"}}"#,
            if i == 4 { "haystack-xyz" } else { "no" }
        );
        let plugins: &[&str] = if i == 6 { &[] } else { &["p"] };
        ids.push(e.id);
        store.ingest(new(e, plugins)).await.unwrap();
    }
    let newest_first: Vec<EventId> = ids.iter().rev().copied().collect();
    let find = |f: EventFilter| {
        let store = &store;
        async move {
            store
                .events(
                    &f,
                    crate::store::Page {
                        before: None,
                        limit: 100,
                    },
                )
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.id)
                .collect::<Vec<_>>()
        }
    };
    let q = |q: &str| EventFilter {
        q: Some(q.into()),
        ..Default::default()
    };
    assert_eq!(find(q("HAYSTACK")).await, vec![ids[4]]);
    assert_eq!(find(q("xyz, haystack")).await, vec![ids[4]]);
    assert!(find(q("hay")).await.is_empty(), "not inside a word");
    assert!(find(q("haystack missing")).await.is_empty());
    assert_eq!(find(q("needle")).await, newest_first);
    let even = EventFilter {
        source: Some("even".into()),
        ..q("needle")
    };
    assert_eq!(find(even).await, vec![ids[6], ids[4], ids[2], ids[0]]);
    let unrouted = EventFilter {
        status: Some(crate::store::EventStatus::Unrouted),
        ..q("needle")
    };
    assert_eq!(find(unrouted).await, vec![ids[6]]);
    let later = EventFilter {
        since: Some(std::time::SystemTime::now() + Duration::from_secs(60)),
        ..q("needle")
    };
    assert!(find(later).await.is_empty());
}
