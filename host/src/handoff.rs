//! The hand-off: work that was just committed goes to its workers in memory.
//!
//! Owns: two bounded queues, from ingress to dispatch (an event's deliveries)
//! and from dispatch to the outbox (a run's forwards), and the slots that bound
//! them. A producer reserves slots before it asks the store to insert the work
//! already leased to this process; with no slot free it inserts the work
//! unleased, and the workers claim it as before. A slot is held until its item
//! has run, so the queues never hold more than their capacity.
//! Never: replaces the store: every handed item is committed first, leased, and
//! recovered from the store like claimed work (its lease expires if this
//! process dies, and a stop gives it back). Never starts an item so late that
//! its lease could end before its run does (see [`Handed::run`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::store::{ClaimedDelivery, ClaimedForward};

/// An item handed over with the slot it holds.
#[derive(Debug)]
pub(crate) struct Handed<T> {
    pub item: T,
    pub slot: Option<OwnedSemaphorePermit>,
    /// The last moment its run may start: its lease then still covers the
    /// longest run. A worker that reaches it later drops it unrun, and the
    /// store serves it again once the lease has passed, so a queue longer than
    /// the lease allows never runs an item twice at once.
    pub start_by: Instant,
}

impl<T> Handed<T> {
    /// Claimed work: it holds no hand-off slot.
    pub(crate) fn claimed(item: T, start_by: Instant) -> Handed<T> {
        Handed {
            item,
            slot: None,
            start_by,
        }
    }

    /// Whether it may still start: false once `start_by` has passed.
    pub(crate) fn startable(&self) -> bool {
        Instant::now() <= self.start_by
    }

    /// Runs `work` on the item if it may still start; past its start-by, drops
    /// it unrun with a warning naming `what` (the store serves it again once
    /// its lease has passed). The slot goes back when the run is over.
    pub(crate) async fn run<F: std::future::Future<Output = ()>>(
        self,
        what: &'static str,
        work: impl FnOnce(T) -> F,
    ) {
        if self.startable() {
            work(self.item).await;
        } else {
            tracing::warn!(
                what,
                "waited in the local queue until its lease could no longer cover a run; left to the store, which serves it again once the lease has passed"
            );
        }
        drop(self.slot);
    }
}

/// How long work is leased to this process, and how long its run may last:
/// together they give the last moment a queued item may start.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Terms {
    pub lease: Duration,
    pub run: Duration,
}

impl Terms {
    /// The start-by of work leased now, with a few seconds to spare for clocks
    /// and commits.
    pub(crate) fn start_by(&self) -> Instant {
        Instant::now() + self.lease.saturating_sub(self.run + Duration::from_secs(5))
    }
}

/// One bounded queue of handed items, keyed (by plugin) for the scheduler.
pub(crate) struct Lane<T> {
    slots: Arc<Semaphore>,
    tx: mpsc::UnboundedSender<(String, Handed<T>)>,
}

impl<T> Lane<T> {
    /// A lane of `capacity` slots, and the receiving end for its worker pool.
    pub(crate) fn new(capacity: usize) -> (Lane<T>, mpsc::UnboundedReceiver<(String, Handed<T>)>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Lane {
                slots: Arc::new(Semaphore::new(capacity)),
                tx,
            },
            rx,
        )
    }

    /// `n` slots, if free now (never waits: without them the work is stored
    /// unleased and claimed later).
    pub(crate) fn reserve(&self, n: usize) -> Option<OwnedSemaphorePermit> {
        if n == 0 {
            return None;
        }
        self.slots.clone().try_acquire_many_owned(n as u32).ok()
    }

    /// Sends committed, leased items, one reserved slot each, to be started by
    /// `start_by`. Items beyond the slots (none, when `reserve` asked for as
    /// many) keep no slot.
    pub(crate) fn send(
        &self,
        items: Vec<(String, T)>,
        mut slots: Option<OwnedSemaphorePermit>,
        start_by: Instant,
    ) {
        for (key, item) in items {
            let slot = slots.as_mut().and_then(|s| {
                if s.num_permits() > 1 {
                    s.split(1)
                } else {
                    None
                }
            });
            let slot = slot.or_else(|| slots.take());
            // A closed receiver (the pool has stopped): the item stays leased in
            // the store and is given back at shutdown or taken over after expiry.
            let _ = self.tx.send((
                key,
                Handed {
                    item,
                    slot,
                    start_by,
                },
            ));
        }
    }
}

/// The two lanes of the pipeline.
pub(crate) struct Handoff {
    pub deliveries: Lane<ClaimedDelivery>,
    pub forwards: Lane<ClaimedForward>,
}

/// The receiving ends, for the dispatcher and the outbox.
pub(crate) struct Inboxes {
    pub deliveries: mpsc::UnboundedReceiver<(String, Handed<ClaimedDelivery>)>,
    pub forwards: mpsc::UnboundedReceiver<(String, Handed<ClaimedForward>)>,
}

impl Handoff {
    /// Lanes sized for the worker pools: enough to keep every worker busy for
    /// several runs, little enough that the leases of queued items hold.
    pub(crate) fn new(delivery_slots: usize, forward_slots: usize) -> (Arc<Handoff>, Inboxes) {
        let (deliveries, d) = Lane::new(delivery_slots);
        let (forwards, f) = Lane::new(forward_slots);
        (
            Arc::new(Handoff {
                deliveries,
                forwards,
            }),
            Inboxes {
                deliveries: d,
                forwards: f,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slots_bound_the_lane_and_come_back_when_items_are_dropped() {
        let (lane, mut rx) = Lane::<u32>::new(3);
        assert!(lane.reserve(4).is_none(), "more than the capacity");
        let slots = lane.reserve(2).unwrap();
        assert!(lane.reserve(2).is_none(), "one slot left");
        lane.send(
            vec![("a".into(), 1), ("b".into(), 2)],
            Some(slots),
            Instant::now() + Duration::from_secs(60),
        );
        let (k1, h1) = rx.recv().await.unwrap();
        let (k2, h2) = rx.recv().await.unwrap();
        assert_eq!(
            (k1.as_str(), h1.item, k2.as_str(), h2.item),
            ("a", 1, "b", 2)
        );
        assert!(h1.slot.is_some() && h2.slot.is_some(), "one slot each");
        assert!(h1.startable() && h2.startable());
        drop(h1);
        assert!(lane.reserve(2).is_some(), "a slot returned with its item");
        assert!(lane.reserve(0).is_none());
    }

    #[tokio::test]
    async fn an_item_may_start_until_its_lease_no_longer_covers_a_run() {
        let secs = Duration::from_secs;
        // Leased for 72 s, runs of at most 6 s: start within 72 - 6 - 5 = 61 s.
        let by = Terms {
            lease: secs(72),
            run: secs(6),
        }
        .start_by();
        let left = by - Instant::now();
        assert!(left > secs(60) && left <= secs(61), "{left:?}");
        let fresh = Handed::claimed(1, by);
        assert!(fresh.startable());
        let late = Handed::claimed(2, Instant::now() - secs(1));
        assert!(!late.startable(), "past its start-by: dropped unrun");
        // A run longer than the lease: never startable after now.
        let too_long = Terms {
            lease: secs(3),
            run: secs(6),
        };
        assert!(too_long.start_by() <= Instant::now());

        // `run` runs the fresh item and drops the late one unrun; both give
        // their slot back.
        let (lane, mut rx) = Lane::<u32>::new(2);
        lane.send(vec![("a".into(), 1)], lane.reserve(1), by);
        lane.send(
            vec![("a".into(), 2)],
            lane.reserve(1),
            Instant::now() - secs(1),
        );
        let ran = std::sync::Mutex::new(Vec::new());
        for _ in 0..2 {
            let (_, handed) = rx.recv().await.unwrap();
            handed
                .run("test item", |i| {
                    let ran = &ran;
                    async move { ran.lock().unwrap().push(i) }
                })
                .await;
        }
        assert_eq!(*ran.lock().unwrap(), vec![1]);
        assert!(lane.reserve(2).is_some(), "both slots came back");
    }
}
