//! The claim-and-run loop of the outbox (the dispatcher shares its workers between
//! plugins with `scheduler`, which follows the same pattern per plugin).
//!
//! Owns: bounding concurrent work to `workers`, claiming work only when a worker
//! is free, sleeping until the store says work is due (or a poll interval
//! passes, for retries coming due), and draining in-flight work on stop.
//! Never: knows what the work is; `claim` and `handle` do.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, watch};

use crate::store::{Wake, Work};

/// Runs until `stop` turns true, then waits for in-flight items to finish.
///
/// `claim(free)` leases up to about `free` items (it may claim ahead); each item
/// is then run by `handle` on its own task while holding one of `workers` slots.
pub(crate) async fn run<T, C, CF, H, HF>(
    workers: usize,
    wake: &Wake,
    work: Work,
    mut stop: watch::Receiver<bool>,
    poll: Duration,
    claim: C,
    handle: H,
) where
    T: Send + 'static,
    C: Fn(usize) -> CF,
    CF: Future<Output = Vec<T>>,
    H: Fn(T) -> HF,
    HF: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(workers));
    loop {
        if *stop.borrow() {
            break;
        }
        // Register for the wake-up before looking, so a commit in between is not missed.
        let woken = wake.notified(work);
        tokio::pin!(woken);
        woken.as_mut().enable();

        let free = slots.available_permits();
        let claimed = if free == 0 {
            Vec::new()
        } else {
            claim(free).await
        };
        if claimed.is_empty() {
            if free == 0 {
                // Every worker is busy: wait for one to finish (or for stop).
                tokio::select! {
                    _ = slots.clone().acquire_owned() => {}
                    _ = stop.changed() => {}
                }
            } else {
                // Nothing due: wait for new work, a retry to come due, or stop.
                tokio::select! {
                    _ = &mut woken => {}
                    _ = tokio::time::sleep(poll) => {}
                    _ = stop.changed() => {}
                }
            }
            continue;
        }
        for item in claimed {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                break;
            };
            let work = handle(item);
            tokio::spawn(async move {
                work.await;
                drop(permit);
            });
        }
    }
    // Each in-flight item holds a slot until its outcome is stored.
    let _ = slots.acquire_many(workers as u32).await;
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tokio::sync::watch;

    use crate::store::{Wake, Work};

    #[tokio::test(start_paused = true)]
    async fn idle_pool_waits_instead_of_spinning_and_wakes_on_notify() {
        let due = Arc::new(Wake::default());
        let (stop_tx, stop_rx) = watch::channel(false);
        let claims = Arc::new(AtomicUsize::new(0));
        let queue: Arc<Mutex<Vec<u32>>> = Arc::default();
        let done: Arc<Mutex<Vec<u32>>> = Arc::default();
        let (c, q, d) = (claims.clone(), queue.clone(), done.clone());
        let wake = due.clone();
        let pool = tokio::spawn(async move {
            super::run(
                2,
                &wake,
                Work::Deliveries,
                stop_rx,
                Duration::from_secs(1),
                move |free| {
                    c.fetch_add(1, Ordering::SeqCst);
                    let mut q = q.lock().unwrap();
                    let n = free.min(q.len());
                    let items: Vec<u32> = q.drain(..n).collect();
                    async move { items }
                },
                move |item| {
                    let d = d.clone();
                    async move {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        d.lock().unwrap().push(item);
                    }
                },
            )
            .await
        });
        // Idle for 10 s of (paused) time: one claim per poll interval, not a spin.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let idle_claims = claims.load(Ordering::SeqCst);
        assert!(
            (9..=12).contains(&idle_claims),
            "{idle_claims} claims while idle"
        );

        // New work and a wake-up: handled without waiting for the poll interval.
        queue.lock().unwrap().extend([1, 2, 3, 4, 5]);
        due.notify(Work::Deliveries);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut got = done.lock().unwrap().clone();
        got.sort();
        assert_eq!(got, [1, 2, 3, 4, 5]);

        stop_tx.send(true).unwrap();
        pool.await.unwrap();
    }
}
