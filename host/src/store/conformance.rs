//! The store conformance suite: one set of tests every backend passes, run on a
//! real database of each kind (an SQLite file; a PostgreSQL server).
//!
//! Owns: what the pipeline relies on from any store — ingest and dedupe,
//! claims, leases and their expiry, outcomes with their effects, the emit
//! budget, retries, dead letters, replay, purge, prune, queries, and concurrent
//! claimers never sharing a delivery.
//! Never: looks at a backend's tables; everything goes through the traits.

use std::collections::HashSet;
use std::future::Future;
use std::time::{Duration, SystemTime};

use super::*;
use crate::event::{Event, EventId, unix_ms};

/// A backend under test and whatever keeps its database alive.
pub(crate) struct Subject {
    pub store: SharedStore,
    pub _guard: Box<dyn std::any::Any + Send>,
}

pub(crate) fn event(source: &str, external: Option<&str>) -> Event {
    Event {
        id: EventId::new(),
        source: source.into(),
        event_type: "payment_made".into(),
        external_id: external.map(String::from),
        received_at: SystemTime::now(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: r#"{"amount":5,"memo":"lunch at Zoë's"}"#.into(),
        hops: 0,
    }
}

fn new(event: Event, plugins: &[&str]) -> NewEvent {
    NewEvent {
        event,
        plugins: plugins.iter().map(|s| s.to_string()).collect(),
    }
}

fn claim(plugins: &[&str], limit: usize) -> DeliveryClaim {
    DeliveryClaim {
        plugins: plugins.iter().map(|p| (p.to_string(), limit)).collect(),
        lease: Duration::from_secs(60),
    }
}

fn timing() -> AttemptTiming {
    AttemptTiming {
        started_at: SystemTime::now(),
        duration: Duration::from_millis(3),
    }
}

fn done(forwards: Vec<NewForward>, emitted: Vec<Emitted>) -> DeliveryOutcome {
    DeliveryOutcome::Done {
        version: "v1".into(),
        forwards,
        emitted,
        max_emits: 100,
        timing: timing(),
    }
}

fn failed(error: &str, retry_at: Option<i64>) -> DeliveryOutcome {
    DeliveryOutcome::Failed {
        error: error.into(),
        kind: "guest",
        version: Some("v1".into()),
        retry_at,
        timing: timing(),
    }
}

fn forward(url: &str) -> NewForward {
    NewForward {
        url: url.into(),
        headers: vec![("x-k".into(), "v".into())],
        body: "{}".into(),
        refused: None,
    }
}

fn now_ms() -> i64 {
    unix_ms(SystemTime::now())
}

async fn status(store: &SharedStore, id: EventId) -> EventStatus {
    store.event(id).await.unwrap().expect("event exists").status
}

async fn stored_id(store: &SharedStore, n: NewEvent) -> EventId {
    match store.ingest(n).await.unwrap() {
        Ingested::Stored { id, .. } => id,
        other => panic!("not stored: {other:?}"),
    }
}

pub(crate) async fn ingest_dedupes_by_source_and_external_id(s: Subject) {
    let store = s.store;
    let first = store
        .ingest(new(event("optum", Some("c-1")), &["a", "b"]))
        .await
        .unwrap();
    let Ingested::Stored { id, deliveries: 2 } = first else {
        panic!("{first:?}")
    };
    let again = store
        .ingest(new(event("optum", Some("c-1")), &["a"]))
        .await
        .unwrap();
    assert_eq!(again, Ingested::Duplicate { id });
    // Another source may reuse the id; events without one are never duplicates.
    let other = stored_id(&store, new(event("github", Some("c-1")), &[])).await;
    assert_eq!(status(&store, other).await, EventStatus::Unrouted);
    stored_id(&store, new(event("optum", None), &[])).await;
    stored_id(&store, new(event("optum", None), &[])).await;
    let counts = store.counts().await.unwrap();
    assert_eq!((counts.events, counts.deliveries_pending), (4, 2));
    // What was stored reads back byte for byte.
    let detail = store.event(id).await.unwrap().unwrap();
    assert_eq!(detail.event.body, event("x", None).body);
    assert_eq!(detail.event.headers, event("x", None).headers);
    assert_eq!(detail.event.external_id.as_deref(), Some("c-1"));
    assert_eq!(detail.status, EventStatus::Pending);
    assert_eq!(detail.deliveries.len(), 2);
}

pub(crate) async fn claims_only_named_plugins_never_twice_and_share_the_event(s: Subject) {
    let store = s.store;
    let (a, b) = (event("s", Some("x-1")), event("s", Some("x-2")));
    store
        .ingest(new(a.clone(), &["p", "q", "r"]))
        .await
        .unwrap();
    store
        .ingest(new(b.clone(), &["q", "absent"]))
        .await
        .unwrap();
    let claimed = store
        .claim_deliveries(claim(&["p", "q", "r"], 10))
        .await
        .unwrap();
    let mut got: Vec<(EventId, String)> = claimed
        .iter()
        .map(|c| (c.event.id, c.plugin.clone()))
        .collect();
    got.sort();
    let mut want = vec![
        (a.id, "p".to_string()),
        (a.id, "q".to_string()),
        (a.id, "r".to_string()),
        (b.id, "q".to_string()),
    ];
    want.sort();
    assert_eq!(got, want);
    for c in &claimed {
        let original = if c.event.id == a.id { &a } else { &b };
        assert_eq!(
            (&c.event.body, &c.event.headers, &c.event.external_id),
            (&original.body, &original.headers, &original.external_id)
        );
        assert_eq!(c.attempts, 0);
    }
    assert!(
        store
            .claim_deliveries(claim(&["p", "q", "r", "absent"], 10))
            .await
            .unwrap()
            .iter()
            .all(|c| c.plugin == "absent"),
        "leased deliveries are not claimed again"
    );
    // A per-plugin limit holds.
    for i in 0..5 {
        store
            .ingest(new(event("s", Some(&format!("lim-{i}"))), &["lim"]))
            .await
            .unwrap();
    }
    assert_eq!(
        store
            .claim_deliveries(claim(&["lim"], 2))
            .await
            .unwrap()
            .len(),
        2
    );
}

pub(crate) async fn retries_dead_letters_history_and_replay(s: Subject) {
    let store = s.store;
    let id = stored_id(&store, new(event("s", None), &["a"])).await;
    let c = store.claim_deliveries(claim(&["a"], 10)).await.unwrap();
    let (d, token) = (c[0].id, c[0].token);

    // A failure with a retry time is due again only then.
    let later = now_ms() + 60_000;
    assert_eq!(
        store
            .finish_delivery(d, token, failed("boom", Some(later)))
            .await
            .unwrap(),
        Finished::Recorded
    );
    assert!(
        store
            .claim_deliveries(claim(&["a"], 10))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(status(&store, id).await, EventStatus::Pending);

    // Replaying a pending delivery does nothing.
    assert_eq!(
        store
            .replay(Selection::Ids(vec![DeadId::Delivery(d)]))
            .await
            .unwrap(),
        0
    );

    // A second delivery, retried at once and then dead-lettered.
    let id2 = stored_id(&store, new(event("s", None), &["b"])).await;
    let c = store.claim_deliveries(claim(&["b"], 10)).await.unwrap();
    let (d2, t2) = (c[0].id, c[0].token);
    store
        .finish_delivery(d2, t2, failed("first", Some(now_ms())))
        .await
        .unwrap();
    let again = store.claim_deliveries(claim(&["b"], 10)).await.unwrap();
    assert_eq!(again[0].attempts, 1, "the failed attempt was counted");
    // The last failure dead-letters it.
    store
        .finish_delivery(d2, again[0].token, failed("second", None))
        .await
        .unwrap();
    assert_eq!(status(&store, id2).await, EventStatus::Dead);
    let dead = store.dead(&DeadFilter::default(), 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].id, dead[0].attempts), (DeadId::Delivery(d2), 2));
    assert_eq!(dead[0].last_error.as_deref(), Some("second"));
    assert_eq!((dead[0].kind, dead[0].plugin.as_str()), ("delivery", "b"));
    let (entry, ev) = store
        .dead_entry(DeadId::Delivery(d2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((entry.event_id, ev.id), (id2, id2));
    assert!(
        store
            .dead_entry(DeadId::Delivery(d))
            .await
            .unwrap()
            .is_none(),
        "not dead"
    );
    // Filters narrow the listing.
    let by = |plugin: &str| DeadFilter {
        plugin: Some(plugin.into()),
        ..DeadFilter::default()
    };
    assert_eq!(store.dead(&by("b"), 10).await.unwrap().len(), 1);
    assert!(store.dead(&by("a"), 10).await.unwrap().is_empty());

    // Every attempt is in the history, with its outcome, error and version.
    let detail = store.event(id2).await.unwrap().unwrap();
    let history = &detail.deliveries[0].history;
    assert_eq!(history.len(), 2);
    assert_eq!(
        history
            .iter()
            .map(|a| (
                a.attempt,
                a.outcome.as_str(),
                a.error.as_deref(),
                a.version.as_deref()
            ))
            .collect::<Vec<_>>(),
        [
            (1, "guest", Some("first"), Some("v1")),
            (2, "guest", Some("second"), Some("v1"))
        ]
    );
    assert_eq!(history[0].duration_ms, 3);

    // Replay brings it back with fresh attempts, and the event is pending again.
    assert_eq!(
        store
            .replay(Selection::Ids(vec![DeadId::Delivery(d2)]))
            .await
            .unwrap(),
        1
    );
    assert_eq!(status(&store, id2).await, EventStatus::Pending);
    assert!(
        store
            .dead(&DeadFilter::default(), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let back = store.claim_deliveries(claim(&["b"], 10)).await.unwrap();
    assert_eq!(back[0].attempts, 0);
    store
        .finish_delivery(d2, back[0].token, done(vec![], vec![]))
        .await
        .unwrap();
    assert_eq!(status(&store, id2).await, EventStatus::Done);
    // A done delivery can be replayed too (the dashboard's "run again").
    assert_eq!(
        store
            .replay(Selection::Ids(vec![DeadId::Delivery(d2)]))
            .await
            .unwrap(),
        1
    );
    assert_eq!(status(&store, id2).await, EventStatus::Pending);
}

pub(crate) async fn outcomes_need_the_current_lease(s: Subject) {
    let store = s.store;
    let id = stored_id(&store, new(event("s", None), &["a"])).await;
    let c = store
        .claim_deliveries(DeliveryClaim {
            plugins: vec![("a".into(), 1)],
            lease: Duration::from_millis(200),
        })
        .await
        .unwrap();
    let (d, old) = (c[0].id, c[0].token);
    // The lease expires; another worker takes the delivery over.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let c = store.claim_deliveries(claim(&["a"], 1)).await.unwrap();
    assert_eq!(c.len(), 1, "an expired lease is taken over");
    let new_token = c[0].token;
    assert_ne!(old, new_token);
    // The late outcome of the first attempt changes nothing...
    assert_eq!(
        store
            .finish_delivery(d, old, failed("late", None))
            .await
            .unwrap(),
        Finished::Stale
    );
    assert!(
        store
            .dead(&DeadFilter::default(), 10)
            .await
            .unwrap()
            .is_empty()
    );
    // A late success changes nothing either.
    assert_eq!(
        store
            .finish_delivery(d, old, done(vec![], vec![]))
            .await
            .unwrap(),
        Finished::Stale
    );
    // ...while the current one is recorded, once.
    assert_eq!(
        store
            .finish_delivery(d, new_token, done(vec![], vec![]))
            .await
            .unwrap(),
        Finished::Recorded
    );
    // It is the first attempt recorded: the late ones counted for nothing.
    let detail = store.event(id).await.unwrap().unwrap();
    assert_eq!(
        detail.deliveries[0]
            .history
            .iter()
            .map(|a| (a.attempt, a.outcome.as_str()))
            .collect::<Vec<_>>(),
        [(1, "ok")]
    );
    assert_eq!(
        store
            .finish_delivery(d, new_token, done(vec![], vec![]))
            .await
            .unwrap(),
        Finished::Stale,
        "a delivery is recorded done once"
    );
}

/// The hand-off: work stored already leased to its taker is claimed by no one
/// else while the lease holds, runs under the token it was handed with, and
/// is taken over once the lease expires. A backend may hand off nothing; then
/// everything is claimed as usual.
pub(crate) async fn handed_off_work_is_leased_to_its_taker(s: Subject) {
    let store = s.store;
    let (ingested, handed) = store
        .ingest_leased(
            new(event("s", None), &["a", "b"]),
            Some(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    let Ingested::Stored { id, deliveries: 2 } = ingested else {
        panic!("{ingested:?}")
    };
    let claimed = store
        .claim_deliveries(claim(&["a", "b"], 10))
        .await
        .unwrap();
    assert_eq!(handed.len() + claimed.len(), 2, "each delivery once");
    let handed_ids: HashSet<_> = handed.iter().map(|d| d.id).collect();
    assert!(claimed.iter().all(|c| !handed_ids.contains(&c.id)));
    for d in handed.iter().chain(&claimed) {
        assert_eq!((d.event.id, d.attempts), (id, 0));
    }
    // The run's forwards are handed on leased the same way.
    let first = handed.first().or(claimed.first()).unwrap();
    let (finished, forwards) = store
        .finish_delivery_leased(
            first.id,
            first.token,
            done(vec![forward("http://a/1"), forward("http://a/2")], vec![]),
            Some(Duration::from_millis(200)),
        )
        .await
        .unwrap();
    assert_eq!(finished, Finished::Recorded);
    let claimed_forwards = store
        .claim_forwards(10, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        forwards.len() + claimed_forwards.len(),
        2,
        "each forward once"
    );
    for f in &forwards {
        assert_eq!((f.event_id, f.attempts), (id, 0));
        assert!(f.url.starts_with("http://a/"));
    }
    // A handed forward's lease expires like a claimed one's: taken over, and
    // the late outcome under the handed token changes nothing.
    if let Some(f) = forwards.first() {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let again = store
            .claim_forwards(10, Duration::from_secs(60))
            .await
            .unwrap();
        let taken = again.iter().find(|g| g.id == f.id).expect("taken over");
        assert_ne!(taken.token, f.token);
        assert_eq!(
            store
                .finish_forward(
                    f.id,
                    f.token,
                    ForwardOutcome::Sent {
                        status: 200,
                        timing: timing()
                    }
                )
                .await
                .unwrap(),
            Finished::Stale
        );
    }
    // The other delivery is still held by whoever has it: no second claim.
    assert!(
        store
            .claim_deliveries(claim(&["a", "b"], 10))
            .await
            .unwrap()
            .is_empty()
    );
}

pub(crate) async fn forwards_and_emits_are_stored_with_the_outcome(s: Subject) {
    let store = s.store;
    let id = stored_id(&store, new(event("s", None), &["a"])).await;
    let c = store.claim_deliveries(claim(&["a"], 10)).await.unwrap();
    let mut child = event("s", None);
    child.event_type = "child".into();
    child.hops = 1;
    let child_id = child.id;
    let refused = NewForward {
        refused: Some("host evil.example:443 is not in allow_forward".into()),
        ..forward("https://evil.example/x")
    };
    store
        .finish_delivery(
            c[0].id,
            c[0].token,
            done(
                vec![forward("http://127.0.0.1:9/a"), refused],
                vec![Emitted {
                    event: child,
                    plugins: vec!["b".into()],
                }],
            ),
        )
        .await
        .unwrap();
    // The refused forward is dead at once: the event is dead until replay or purge.
    assert_eq!(status(&store, id).await, EventStatus::Dead);
    let detail = store.event(id).await.unwrap().unwrap();
    assert_eq!(detail.children, vec![child_id]);
    assert_eq!(detail.forwards.len(), 2);
    assert_eq!(detail.deliveries[0].state, "done");
    let emitted = store.event(child_id).await.unwrap().unwrap();
    assert_eq!((emitted.parent_id, emitted.event.hops), (Some(id), 1));
    assert_eq!(emitted.status, EventStatus::Pending);

    let f = store
        .claim_forwards(10, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(f.len(), 1);
    assert_eq!(
        (f[0].event_id, f[0].url.as_str()),
        (id, "http://127.0.0.1:9/a")
    );
    assert_eq!(f[0].headers, vec![("x-k".to_string(), "v".to_string())]);
    assert!(
        store
            .claim_forwards(10, Duration::from_secs(60))
            .await
            .unwrap()
            .is_empty()
    );
    store
        .finish_forward(
            f[0].id,
            f[0].token,
            ForwardOutcome::Failed {
                error: "target answered 500".into(),
                status: Some(500),
                retry_at: Some(now_ms()),
                timing: timing(),
            },
        )
        .await
        .unwrap();
    let f2 = store
        .claim_forwards(10, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!((f2[0].id, f2[0].attempts), (f[0].id, 1));
    store
        .finish_forward(
            f2[0].id,
            f2[0].token,
            ForwardOutcome::Sent {
                status: 204,
                timing: timing(),
            },
        )
        .await
        .unwrap();
    let detail = store.event(id).await.unwrap().unwrap();
    let sent = detail.forwards.iter().find(|x| x.id == f[0].id).unwrap();
    assert_eq!((sent.state.as_str(), sent.status), ("done", Some(204)));
    assert_eq!(
        sent.history
            .iter()
            .map(|a| (a.outcome.as_str(), a.status))
            .collect::<Vec<_>>(),
        [("http", Some(500)), ("sent", Some(204))]
    );
    assert_eq!(
        sent.history.iter().map(|a| a.attempt).collect::<Vec<_>>(),
        [1, 2],
        "each attempt numbered once"
    );
    // Only the refused forward keeps the event dead; purging it finishes the event.
    let dead = store.dead(&DeadFilter::default(), 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].target.as_deref(), Some("https://evil.example/x"));
    let p = store.purge(Selection::Ids(vec![dead[0].id])).await.unwrap();
    assert_eq!(p.entries, 1);
    // The root's tree still has a pending child: the root stays.
    assert_eq!(p.events, 0);
    assert_eq!(status(&store, id).await, EventStatus::Done);
}

pub(crate) async fn emit_budget_is_kept_on_the_root(s: Subject) {
    let store = s.store;
    let root = stored_id(&store, new(event("s", None), &["loop"])).await;
    let emits = |n: usize| -> Vec<Emitted> {
        (0..n)
            .map(|_| {
                let mut e = event("s", None);
                e.hops = 1;
                Emitted {
                    event: e,
                    plugins: vec!["loop".into()],
                }
            })
            .collect()
    };
    let finish = |d: ClaimedDelivery, n: usize, budget: u32| {
        let store = store.clone();
        let emitted = emits(n);
        async move {
            store
                .finish_delivery(
                    d.id,
                    d.token,
                    DeliveryOutcome::Done {
                        version: "v1".into(),
                        forwards: vec![],
                        emitted,
                        max_emits: budget,
                        timing: timing(),
                    },
                )
                .await
                .unwrap()
        }
    };
    let c = store.claim_deliveries(claim(&["loop"], 10)).await.unwrap();
    assert_eq!(finish(c[0].clone(), 3, 5).await, Finished::Recorded);
    // Three children; each emits again, against the same root budget of 5.
    let kids = store.claim_deliveries(claim(&["loop"], 10)).await.unwrap();
    assert_eq!(kids.len(), 3);
    assert_eq!(finish(kids[0].clone(), 2, 5).await, Finished::Recorded);
    let over = finish(kids[1].clone(), 1, 5).await;
    assert_eq!(
        over,
        Finished::EmitBudget {
            used: 5,
            wanted: 1,
            budget: 5
        }
    );
    // The delivery that crossed the budget is dead, with a clear error, and
    // nothing of its run was stored.
    let dead = store.dead(&DeadFilter::default(), 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, DeadId::Delivery(kids[1].id));
    let error = dead[0].last_error.clone().unwrap();
    assert!(
        error.contains("emit_budget") && error.contains("5"),
        "{error}"
    );
    let dead_child = store.event(kids[1].event.id).await.unwrap().unwrap();
    assert!(dead_child.children.is_empty());
    assert_eq!(dead_child.deliveries[0].history[0].outcome, "emit_budget");
    // A replay runs against the same budget, so it fails again.
    store
        .replay(Selection::Ids(vec![DeadId::Delivery(kids[1].id)]))
        .await
        .unwrap();
    let again = store.claim_deliveries(claim(&["loop"], 10)).await.unwrap();
    let retried = again.iter().find(|d| d.id == kids[1].id).unwrap().clone();
    assert!(matches!(
        finish(retried, 1, 5).await,
        Finished::EmitBudget { .. }
    ));
    // A run that emits nothing is unaffected by the spent budget.
    assert_eq!(finish(kids[2].clone(), 0, 5).await, Finished::Recorded);
    assert_eq!(status(&store, root).await, EventStatus::Done);
}

pub(crate) async fn purge_deletes_dead_entries_and_finished_events(s: Subject) {
    let store = s.store;
    let a = stored_id(&store, new(event("s", Some("p-1")), &["bad", "good"])).await;
    let b = stored_id(&store, new(event("s", Some("p-2")), &["bad"])).await;
    let c = store
        .claim_deliveries(claim(&["bad", "good"], 10))
        .await
        .unwrap();
    for d in c {
        let outcome = if d.plugin == "bad" {
            failed("no", None)
        } else {
            done(vec![], vec![])
        };
        store.finish_delivery(d.id, d.token, outcome).await.unwrap();
    }
    let dead = store.dead(&DeadFilter::default(), 10).await.unwrap();
    assert_eq!(dead.len(), 2);
    // Purging a dead delivery deletes its event when nothing else of it is
    // pending or dead (its done delivery goes with it).
    let of_a = dead.iter().find(|d| d.event_id == a).unwrap().id;
    let p = store.purge(Selection::Ids(vec![of_a])).await.unwrap();
    assert_eq!((p.entries, p.events), (1, 1));
    assert!(store.event(a).await.unwrap().is_none());
    // Purging twice finds nothing; a pending entry is never purged.
    assert_eq!(
        store.purge(Selection::Ids(vec![of_a])).await.unwrap(),
        Purged::default()
    );
    let pending = stored_id(&store, new(event("s", None), &["bad"])).await;
    let pd = store.event(pending).await.unwrap().unwrap().deliveries[0].id;
    assert_eq!(
        store
            .purge(Selection::Ids(vec![DeadId::Delivery(pd)]))
            .await
            .unwrap(),
        Purged::default()
    );
    // `older_than` spares recent dead letters; without it every one goes.
    let old = SystemTime::now() - Duration::from_secs(3600);
    assert_eq!(
        store
            .purge(Selection::Dead {
                older_than: Some(old)
            })
            .await
            .unwrap()
            .entries,
        0
    );
    let p = store
        .purge(Selection::Dead { older_than: None })
        .await
        .unwrap();
    assert_eq!((p.entries, p.events), (1, 1));
    assert!(store.event(b).await.unwrap().is_none());
    // A duplicate of a purged event is still a duplicate (within the horizon).
    assert_eq!(
        store
            .ingest(new(event("s", Some("p-2")), &[]))
            .await
            .unwrap(),
        Ingested::Duplicate { id: b }
    );
    assert!(store.event(pending).await.unwrap().is_some());
}

pub(crate) async fn prune_keeps_what_is_unfinished_and_dedupes_past_the_horizon(s: Subject) {
    let store = s.store;
    let old = |ext: Option<&str>, hours: u64| {
        let mut e = event("s", ext);
        e.received_at = SystemTime::now() - Duration::from_secs(hours * 3600);
        e
    };
    let policy = Retention {
        retention: Duration::from_secs(3600),
        dedupe_horizon: Duration::from_secs(10 * 3600),
        batch: 500,
    };
    // Old and unrouted, old and done, old and dead, old with a pending child,
    // old but pending, and recent and unrouted.
    let unrouted = stored_id(&store, new(old(Some("u"), 2), &[])).await;
    let finished = stored_id(&store, new(old(Some("f"), 2), &["ok"])).await;
    let dead = stored_id(&store, new(old(Some("d"), 2), &["bad"])).await;
    let parent = stored_id(&store, new(old(Some("t"), 2), &["emit"])).await;
    let waiting = stored_id(&store, new(old(Some("w"), 2), &["absent"])).await;
    let recent = stored_id(&store, new(event("s", Some("r")), &[])).await;
    let ancient = stored_id(&store, new(old(Some("a"), 20), &[])).await;
    let c = store
        .claim_deliveries(claim(&["ok", "bad", "emit"], 10))
        .await
        .unwrap();
    let mut child = None;
    for d in c {
        let outcome = match d.plugin.as_str() {
            "bad" => failed("no", None),
            "emit" => {
                let mut e = event("s", None);
                e.hops = 1;
                child = Some(e.id);
                done(
                    vec![],
                    vec![Emitted {
                        event: e,
                        plugins: vec!["later".into()],
                    }],
                )
            }
            _ => done(vec![], vec![]),
        };
        store.finish_delivery(d.id, d.token, outcome).await.unwrap();
    }
    let child = child.unwrap();
    let pruned = store.prune(policy).await.unwrap();
    assert_eq!(pruned.events, 3, "{pruned:?}");
    for gone in [unrouted, finished, ancient] {
        assert!(store.event(gone).await.unwrap().is_none());
    }
    for kept in [dead, parent, child, waiting, recent] {
        assert!(store.event(kept).await.unwrap().is_some());
    }
    // Pruned events are still duplicates within the horizon; past it, not.
    assert_eq!(
        store.ingest(new(event("s", Some("f")), &[])).await.unwrap(),
        Ingested::Duplicate { id: finished }
    );
    assert_eq!(
        pruned.dedupe, 1,
        "only the ancient one's record is past the horizon"
    );
    assert!(matches!(
        store.ingest(new(event("s", Some("a")), &[])).await.unwrap(),
        Ingested::Stored { .. }
    ));
    // Once the child is done, the whole tree goes together.
    let c = store.claim_deliveries(claim(&["later"], 10)).await.unwrap();
    store
        .finish_delivery(c[0].id, c[0].token, done(vec![], vec![]))
        .await
        .unwrap();
    assert_eq!(store.prune(policy).await.unwrap().events, 2);
    assert!(store.event(parent).await.unwrap().is_none());
    assert!(store.event(child).await.unwrap().is_none());
    assert!(
        store.event(dead).await.unwrap().is_some(),
        "dead letters are kept"
    );
}

pub(crate) async fn concurrent_claimers_never_share_a_delivery(s: Subject) {
    let store = s.store;
    const N: usize = 300;
    for i in 0..N {
        store
            .ingest(new(event("s", Some(&format!("c-{i}"))), &["p"]))
            .await
            .unwrap();
    }
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let c = store.claim_deliveries(claim(&["p"], 7)).await.unwrap();
                if c.is_empty() {
                    return mine;
                }
                for d in c {
                    store
                        .finish_delivery(d.id, d.token, done(vec![], vec![]))
                        .await
                        .unwrap();
                    mine.push(d.id);
                }
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!((all.len(), unique.len()), (N, N));
    let counts = store.counts().await.unwrap();
    assert_eq!(counts.deliveries_done, N as u64);
}

pub(crate) async fn released_leases_are_due_at_once(s: Subject) {
    let store = s.store;
    stored_id(&store, new(event("s", None), &["a"])).await;
    let id = stored_id(&store, new(event("s", None), &["b"])).await;
    assert_eq!(
        store
            .claim_deliveries(claim(&["a", "b"], 10))
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(
        store
            .claim_deliveries(claim(&["a", "b"], 10))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.release_leases().await.unwrap(), 2);
    let again = store
        .claim_deliveries(claim(&["a", "b"], 10))
        .await
        .unwrap();
    assert_eq!(again.len(), 2);
    assert!(again.iter().all(|d| d.attempts == 0), "no attempt spent");
    // One released by its own outcome is due at once too.
    let b = again.iter().find(|d| d.event.id == id).unwrap();
    store
        .finish_delivery(b.id, b.token, DeliveryOutcome::Release { due_at: 0 })
        .await
        .unwrap();
    assert_eq!(
        store
            .claim_deliveries(claim(&["b"], 10))
            .await
            .unwrap()
            .len(),
        1
    );
}

pub(crate) async fn listings_filter_and_page_newest_first(s: Subject) {
    let store = s.store;
    let mut ids = Vec::new();
    for i in 0..7 {
        let mut e = event(if i % 2 == 0 { "even" } else { "odd" }, None);
        e.event_type = format!("t{}", i % 3);
        e.body = format!(
            r#"{{"n":{i},"needle":"{}"}}"#,
            if i == 4 { "haystack-xyz" } else { "no" }
        );
        ids.push(stored_id(&store, new(e, if i == 6 { &[] } else { &["p"] })).await);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let all = |f: EventFilter| {
        let store = store.clone();
        async move {
            store
                .events(
                    &f,
                    Page {
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
    let newest_first: Vec<EventId> = ids.iter().rev().copied().collect();
    assert_eq!(all(EventFilter::default()).await, newest_first);
    let even = all(EventFilter {
        source: Some("even".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(even, vec![ids[6], ids[4], ids[2], ids[0]]);
    let t1 = all(EventFilter {
        event_type: Some("t1".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(t1, vec![ids[4], ids[1]]);
    let unrouted = all(EventFilter {
        status: Some(EventStatus::Unrouted),
        ..Default::default()
    })
    .await;
    assert_eq!(unrouted, vec![ids[6]]);
    let found = all(EventFilter {
        q: Some("haystack-xyz".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(found, vec![ids[4]]);
    // `q` matches whole words, in any case and order, and needs all of them.
    let q = |q: &str| EventFilter {
        q: Some(q.into()),
        ..Default::default()
    };
    assert_eq!(all(q("HAYSTACK")).await, vec![ids[4]]);
    assert_eq!(all(q("xyz, haystack")).await, vec![ids[4]]);
    assert_eq!(
        all(q("hay")).await,
        Vec::<EventId>::new(),
        "not inside a word"
    );
    assert_eq!(all(q("haystack missing")).await, Vec::<EventId>::new());
    assert_eq!(all(q("needle")).await, newest_first);
    let even_needles = all(EventFilter {
        source: Some("even".into()),
        ..q("needle")
    })
    .await;
    assert_eq!(even_needles, vec![ids[6], ids[4], ids[2], ids[0]]);
    for (words, status, want) in [
        ("haystack", EventStatus::Unrouted, vec![]),
        ("needle", EventStatus::Unrouted, vec![ids[6]]),
        ("haystack", EventStatus::Pending, vec![ids[4]]),
        ("haystack", EventStatus::Dead, vec![]),
    ] {
        let got = all(EventFilter {
            status: Some(status),
            ..q(words)
        })
        .await;
        assert_eq!(got, want, "q={words} status={status:?}");
    }
    let pending_needles = all(EventFilter {
        status: Some(EventStatus::Pending),
        ..q("needle")
    })
    .await;
    assert_eq!(pending_needles, newest_first[1..]);
    // A word of the body finds it too; search syntax in `q` is only text.
    let word = all(EventFilter {
        q: Some("haystack".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(word, vec![ids[4]]);
    for hostile in [
        r#""unbalanced (quote* OR"#,
        "a & | ! :* <-> NEAR(x)",
        "'; DROP TABLE events; --",
    ] {
        let none = all(EventFilter {
            q: Some(hostile.into()),
            ..Default::default()
        })
        .await;
        assert!(none.is_empty(), "{hostile:?} matched {none:?}");
    }
    let future = all(EventFilter {
        since: Some(SystemTime::now() + Duration::from_secs(60)),
        ..Default::default()
    })
    .await;
    assert!(future.is_empty());
    let past = all(EventFilter {
        until: Some(SystemTime::now() + Duration::from_secs(60)),
        since: Some(SystemTime::now() - Duration::from_secs(60)),
        ..Default::default()
    })
    .await;
    assert_eq!(past.len(), 7);
    // Time bounds hold for searches too (however a backend reads its index).
    let searched = all(EventFilter {
        since: Some(SystemTime::now() - Duration::from_secs(60)),
        until: Some(SystemTime::now() + Duration::from_secs(60)),
        ..q("needle")
    })
    .await;
    assert_eq!(searched, newest_first);
    for (since, until) in [
        (Some(SystemTime::now() + Duration::from_secs(60)), None),
        (None, Some(SystemTime::now() - Duration::from_secs(3600))),
    ] {
        let none = all(EventFilter {
            since,
            until,
            ..q("needle")
        })
        .await;
        assert!(none.is_empty(), "since {since:?} until {until:?}: {none:?}");
    }
    // Pages of 3, each after the last of the one before.
    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .events(&EventFilter::default(), Page { before, limit: 3 })
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        before = page.last().map(|e| e.id);
        pages.push(page.into_iter().map(|e| e.id).collect::<Vec<_>>());
    }
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 1]);
    assert_eq!(pages.concat(), newest_first);
    // The same with a search: pages follow the cursor, none twice, none lost.
    for filter in [
        q("needle"),
        EventFilter {
            status: Some(EventStatus::Pending),
            ..q("needle")
        },
    ] {
        let mut pages = Vec::new();
        let mut before = None;
        loop {
            let page = store
                .events(&filter, Page { before, limit: 3 })
                .await
                .unwrap();
            if page.is_empty() {
                break;
            }
            before = page.last().map(|e| e.id);
            pages.extend(page.into_iter().map(|e| e.id));
        }
        let want = if filter.status.is_some() {
            &newest_first[1..]
        } else {
            &newest_first[..]
        };
        assert_eq!(pages, want, "{filter:?}");
    }
}

/// What a plugin hands back may hold any character, NUL included: storing it
/// never fails, and a forward's body is sent as the plugin gave it.
pub(crate) async fn hostile_text_from_plugins_is_stored(s: Subject) {
    let store = s.store;
    let id = stored_id(&store, new(event("s", None), &["a", "b"])).await;
    let c = store
        .claim_deliveries(claim(&["a", "b"], 10))
        .await
        .unwrap();
    let (a, b) = if c[0].plugin == "a" {
        (&c[0], &c[1])
    } else {
        (&c[1], &c[0])
    };
    let mut child = event("s", None);
    child.event_type = "odd\0type".into();
    child.body = "{\"k\":\"nul \\u0000 ok\"}".into();
    child.hops = 1;
    let body = "raw\0bytes \u{1F600} \u{FFFF}".to_string();
    let nasty = NewForward {
        url: "http://127.0.0.1:9/\0x".into(),
        headers: vec![("x-h".into(), "v\0w".into())],
        body: body.clone(),
        refused: None,
    };
    let outcome = done(
        vec![nasty],
        vec![Emitted {
            event: child.clone(),
            plugins: vec![],
        }],
    );
    assert_eq!(
        store.finish_delivery(a.id, a.token, outcome).await.unwrap(),
        Finished::Recorded
    );
    let f = store
        .claim_forwards(10, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].body, body, "a forward's body is kept exactly");
    assert_eq!(f[0].headers.len(), 1);
    let emitted = store
        .event(child.id)
        .await
        .unwrap()
        .expect("emitted event stored");
    assert_eq!(emitted.event.body, child.body);
    assert!(emitted.event.event_type.starts_with("odd"));
    // A plugin's error text with NUL in it is kept, readable.
    store
        .finish_delivery(b.id, b.token, failed("boom\0 and more", None))
        .await
        .unwrap();
    let dead = store.dead(&DeadFilter::default(), 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert!(dead[0].last_error.as_deref().unwrap().starts_with("boom"));
    assert_eq!(status(&store, id).await, EventStatus::Dead);
}

/// Runs one conformance case on a fresh subject.
pub(crate) async fn case<F, Fut>(make: impl Future<Output = Subject>, f: F)
where
    F: FnOnce(Subject) -> Fut,
    Fut: Future<Output = ()>,
{
    f(make.await).await
}

/// Declares one `#[tokio::test]` per conformance case for a backend, given an
/// async expression that makes a fresh [`Subject`].
#[macro_export]
#[doc(hidden)]
macro_rules! store_conformance {
    ($make:expr) => {
        $crate::store_conformance!(@cases $make;
            ingest_dedupes_by_source_and_external_id,
            claims_only_named_plugins_never_twice_and_share_the_event,
            retries_dead_letters_history_and_replay,
            outcomes_need_the_current_lease,
            handed_off_work_is_leased_to_its_taker,
            forwards_and_emits_are_stored_with_the_outcome,
            emit_budget_is_kept_on_the_root,
            purge_deletes_dead_entries_and_finished_events,
            prune_keeps_what_is_unfinished_and_dedupes_past_the_horizon,
            concurrent_claimers_never_share_a_delivery,
            released_leases_are_due_at_once,
            listings_filter_and_page_newest_first,
            hostile_text_from_plugins_is_stored,
        );
    };
    (@cases $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $crate::store::conformance::case($make, $crate::store::conformance::$name).await;
            }
        )*
    };
}
