//! The quota rule and the turn order, alone and in the claim-and-run loop under
//! paused time: a plugin whose every run lasts until its deadline delays another
//! plugin's work by at most one deadline.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::store::{Wake, Work};
use tokio::time::Instant;

use super::*;

/// The loop's knobs as the dispatcher's, with `workers` and `prefetch`.
fn settings(workers: usize, prefetch: usize) -> Settings {
    Settings {
        workers,
        prefetch,
        poll: Duration::from_millis(200),
        work: Work::Deliveries,
    }
}

fn half(workers: usize) -> impl Fn(&str) -> usize {
    move |_| (workers / 2).max(1)
}

#[test]
fn a_plugin_alone_uses_every_worker() {
    let mut q = Queues::new(4, 8);
    for i in 0..10 {
        q.push("busy", i);
    }
    let started: Vec<_> = std::iter::from_fn(|| q.next(&half(4))).collect();
    assert_eq!(started.len(), 4, "all four workers");
    assert!(q.next(&half(4)).is_none(), "no fifth worker");
}

#[test]
fn quota_holds_while_another_plugin_waits_and_turns_alternate() {
    let mut q = Queues::new(4, 8);
    for i in 0..10 {
        q.push("busy", i);
    }
    for _ in 0..4 {
        q.next(&half(4)).unwrap();
    }
    // Another plugin's work arrives while busy holds all four.
    for i in 100..103 {
        q.push("quick", i);
    }
    assert!(q.next(&half(4)).is_none(), "every worker is taken");
    // The first worker to free goes to quick: busy is over its quota of 2.
    q.done("busy");
    assert_eq!(q.next(&half(4)).map(|(k, _)| k).as_deref(), Some("quick"));
    q.done("busy");
    assert_eq!(q.next(&half(4)).map(|(k, _)| k).as_deref(), Some("quick"));
    // Both at quota (2 + 2): busy may not take a fifth, nor quick a third.
    assert!(q.next(&half(4)).is_none());
    // Quick finishes one: both are under... busy has 2 = quota, quick 1 < 2: quick.
    q.done("quick");
    assert_eq!(q.next(&half(4)).map(|(k, _)| k).as_deref(), Some("quick"));
    // Quick's queue is empty now: busy is alone with waiting work and may refill.
    q.done("quick");
    q.done("quick");
    assert_eq!(q.next(&half(4)).map(|(k, _)| k).as_deref(), Some("busy"));
    assert_eq!(q.next(&half(4)).map(|(k, _)| k).as_deref(), Some("busy"));
    assert_eq!(q.running(), 4);
}

#[test]
fn keys_under_quota_take_turns() {
    let mut q = Queues::new(6, 8);
    for k in ["a", "b", "c"] {
        for i in 0..4 {
            q.push(k, i);
        }
    }
    let order: Vec<String> = std::iter::from_fn(|| q.next(&|_| 3).map(|(k, _)| k)).collect();
    assert_eq!(order, ["a", "b", "c", "a", "b", "c"]);
}

#[test]
fn a_quick_plugin_gets_its_share_of_workers_beside_slow_ones() {
    // Two slow plugins hold the four workers; a quick one's work arrives.
    let mut q = Queues::new(4, 8);
    for i in 0..8 {
        q.push("slow_a", i);
        q.push("slow_b", i);
    }
    for _ in 0..4 {
        q.next(&half(4)).unwrap();
    }
    for i in 0..4 {
        q.push("quick", i);
    }
    // The first worker to free goes to quick, which runs fewer than the others
    // (slow_a is first in turn, but still runs one).
    q.done("slow_a");
    assert_eq!(q.next(&half(4)).map(|(k, _)| k).as_deref(), Some("quick"));
    // Each quick run that ends hands its worker to quick's next item, not to the
    // slow plugins waiting in turn: quick gets a share of the workers in time,
    // not one start per round of 200 ms runs.
    for _ in 0..3 {
        q.done("quick");
        assert_eq!(q.next(&half(4)).map(|(k, _)| k).as_deref(), Some("quick"));
    }
    // Quick's queue is empty: the next worker goes to the slow plugin running fewer.
    q.done("quick");
    assert_eq!(q.next(&half(4)).map(|(k, _)| k).as_deref(), Some("slow_a"));
}

#[test]
fn room_splits_the_prefetch_window_among_plugins() {
    let mut q: Queues<u32> = Queues::new(4, 8);
    assert_eq!(
        q.room().for_key("any"),
        32,
        "one plugin may claim the whole window"
    );
    for i in 0..10 {
        q.push("a", i);
    }
    let room = q.room();
    assert_eq!(room.for_key("a"), 22, "32 less the 10 queued");
    assert_eq!(room.for_key("b"), 16, "a newcomer gets half");
    for i in 0..16 {
        q.push("b", i);
    }
    assert_eq!(q.room().for_key("a"), 6);
    assert_eq!(q.room().for_key("b"), 0);
    assert_eq!(q.drain().len(), 26);
    assert_eq!(q.queued(), 0);
}

/// A fake store: per key, items with the time they come due.
#[derive(Default)]
struct Due {
    items: BTreeMap<String, VecDeque<(Duration, u32)>>,
}

/// What the handler saw: (key, item, started, finished), times since `t0`.
/// The loop on a task of its own, with no hand-off inbox; what it gives back
/// at stop is kept for [`stop`].
fn spawn_loop<T, C, CF, H, HF>(
    settings: Settings,
    quota: impl Fn(&str) -> usize + Send + 'static,
    claim: C,
    handle: H,
) -> (watch::Sender<bool>, tokio::task::JoinHandle<Vec<T>>)
where
    T: Send + 'static,
    C: Fn(Room) -> CF + Send + 'static,
    CF: std::future::Future<Output = Vec<(String, T)>> + Send + 'static,
    H: Fn(T) -> HF + Send + 'static,
    HF: std::future::Future<Output = ()> + Send + 'static,
{
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        let given_back = Arc::new(Mutex::new(Vec::new()));
        let g = given_back.clone();
        let wake = Wake::default();
        run(
            settings,
            quota,
            &wake,
            tokio::sync::mpsc::unbounded_channel().1,
            stop_rx,
            claim,
            handle,
            move |left: Vec<T>| async move { g.lock().unwrap().extend(left) },
        )
        .await;
        std::mem::take(&mut *given_back.lock().unwrap())
    });
    (stop_tx, task)
}

/// Stops the loop; returns what it gave back once it has returned.
async fn stop<T>(stop: watch::Sender<bool>, task: tokio::task::JoinHandle<Vec<T>>) -> Vec<T> {
    stop.send(true).unwrap();
    task.await.unwrap()
}

type Log = Arc<Mutex<Vec<(String, u32, Duration, Duration)>>>;

/// Runs the loop with 4 workers and quotas of 2 over `due`, where an item of
/// `busy` runs for `deadline` and any other for 5 ms, until every item is done.
async fn drive(
    due: Due,
    deadline: Duration,
    total: usize,
) -> Vec<(String, u32, Duration, Duration)> {
    let t0 = Instant::now();
    let due = Arc::new(Mutex::new(due));
    let log: Log = Arc::default();
    let d = due.clone();
    let claim = move |room: Room| {
        let now = t0.elapsed();
        let mut due = d.lock().unwrap();
        let mut out = Vec::new();
        for (key, items) in due.items.iter_mut() {
            let mut n = room.for_key(key);
            while n > 0 && items.front().is_some_and(|(at, _)| *at <= now) {
                let (_, item) = items.pop_front().unwrap();
                out.push((key.clone(), (key.clone(), item)));
                n -= 1;
            }
        }
        async move { out }
    };
    let l = log.clone();
    let handle = move |(key, item): (String, u32)| {
        let log = l.clone();
        async move {
            let started = t0.elapsed();
            let took = if key == "busy" {
                deadline
            } else {
                Duration::from_millis(5)
            };
            tokio::time::sleep(took).await;
            log.lock().unwrap().push((key, item, started, t0.elapsed()));
        }
    };
    let (stop_tx, pool) = spawn_loop(settings(4, 8), half(4), claim, handle);
    while log.lock().unwrap().len() < total {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let left = stop(stop_tx, pool).await;
    assert!(left.is_empty(), "{left:?}");
    log.lock().unwrap().clone()
}

#[tokio::test(start_paused = true)]
async fn a_plugin_at_its_deadline_every_time_delays_another_by_at_most_one_deadline() {
    let deadline = Duration::from_secs(1);
    let mut due = Due::default();
    due.items.insert(
        "busy".into(),
        (0..40).map(|i| (Duration::ZERO, i)).collect(),
    );
    // Quick work comes due while busy holds every worker.
    let arrives = Duration::from_millis(2500);
    due.items
        .insert("quick".into(), (0..20).map(|i| (arrives, i)).collect());
    let log = drive(due, deadline, 60).await;

    // Alone, busy ran on all four workers.
    let busy_at_start = log
        .iter()
        .filter(|(k, _, started, _)| k == "busy" && *started < Duration::from_millis(100))
        .count();
    assert_eq!(busy_at_start, 4);
    // Every quick item started within one deadline (plus the poll interval that
    // claims it) of coming due, and all 20 finished within two deadlines.
    let quick: Vec<_> = log.iter().filter(|(k, ..)| k == "quick").collect();
    assert_eq!(quick.len(), 20);
    let first = quick.iter().map(|q| q.2).min().unwrap();
    assert!(
        first <= arrives + deadline + Duration::from_millis(200),
        "the first quick item waited until {first:?}"
    );
    let last = quick.iter().map(|q| q.3).max().unwrap();
    assert!(
        last <= arrives + 2 * deadline + Duration::from_millis(200),
        "the last quick item ended at {last:?}"
    );
    // No busy run started while quick had work waiting and busy held its quota.
    for (_, _, started, _) in log.iter().filter(|(k, ..)| k == "busy") {
        let quick_waiting = quick.iter().any(|q| q.2 > *started) && *started >= arrives;
        let busy_running = log
            .iter()
            .filter(|(k, _, s, e)| k == "busy" && s <= started && e > started)
            .count();
        assert!(
            !quick_waiting || busy_running <= 2,
            "busy ran {busy_running} at {started:?} while quick waited"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn stop_gives_back_what_never_started_and_waits_for_the_rest() {
    let due = Arc::new(Mutex::new((0..20u32).collect::<VecDeque<_>>()));
    let finished = Arc::new(Mutex::new(0usize));
    let (d, f) = (due.clone(), finished.clone());
    let (stop_tx, pool) = spawn_loop(
        settings(2, 8),
        |_| 1,
        move |room: Room| {
            let mut due = d.lock().unwrap();
            let n = room.for_key("p").min(due.len());
            let out: Vec<_> = due.drain(..n).map(|i| ("p".to_string(), i)).collect();
            async move { out }
        },
        move |_item: u32| {
            let f = f.clone();
            async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                *f.lock().unwrap() += 1;
            }
        },
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let back = stop(stop_tx, pool).await.len();
    let (finished, left) = (*finished.lock().unwrap(), due.lock().unwrap().len());
    assert_eq!(
        finished, 2,
        "the two running items finished before run returned"
    );
    assert_eq!(finished + back + left, 20, "nothing is lost");
    assert!(back > 0);
}

#[tokio::test(start_paused = true)]
async fn queued_items_start_while_a_slow_claim_waits_for_its_commit() {
    // The first claim brings 8 items at once; every later one takes 1 s (a
    // store slow to commit) and brings nothing.
    let claims = Arc::new(Mutex::new(0u32));
    let ended: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let t0 = Instant::now();
    let (c, e) = (claims.clone(), ended.clone());
    let (stop_tx, pool) = spawn_loop(
        settings(2, 4),
        |_| 2,
        move |room: Room| {
            let first = {
                let mut n = c.lock().unwrap();
                *n += 1;
                *n == 1
            };
            let out: Vec<(String, u32)> = if first {
                (0..room.for_key("p").min(8) as u32)
                    .map(|i| ("p".to_string(), i))
                    .collect()
            } else {
                Vec::new()
            };
            async move {
                if !first {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                out
            }
        },
        move |_item: u32| {
            let e = e.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                e.lock().unwrap().push(t0.elapsed());
            }
        },
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let given_back = stop(stop_tx, pool).await;
    let ended = ended.lock().unwrap().clone();
    // Two workers, 10 ms each: the 8 items end by about 40 ms. A claim
    // awaited in the loop would have held the last 6 back until it returned.
    assert_eq!(ended.len(), 8, "{ended:?}");
    assert!(
        ended.iter().all(|t| *t < Duration::from_millis(100)),
        "{ended:?}"
    );
    assert!(*claims.lock().unwrap() >= 2, "a second claim was made");
    assert!(given_back.is_empty());
}
