//! [`Observed`]: the store as the router holds it, feeding [`Activity`] with
//! what the store recorded.
//!
//! Owns: remembering which event, plugin and attempt each lease this process
//! holds belongs to (outcomes name only the delivery or forward), and turning
//! recorded outcomes into messages and counts.
//! Never: alters a call or its answer; every method hands straight to the
//! backend and only looks at what comes back. Outcomes that were not recorded
//! (a stale lease, an error) are not reported.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::series::Attempt;
use super::{Activity, Message};
use crate::event::Event;
use crate::store::{
    Backlog, ClaimedDelivery, ClaimedForward, DeadEntry, DeadFilter, DeadId, DeadLetters,
    DeliveryClaim, DeliveryId, DeliveryOutcome, EventDetail, EventFilter, EventId, EventSummary,
    Finished, ForwardId, ForwardOutcome, Health, Ingest, Ingested, LeaseToken, Maintenance,
    NewEvent, Page, Pruned, Purged, Queries, Retention, Selection, SharedStore, Store, StoreCounts,
    StoreError, Wake, WorkQueue,
};

/// What a lease this process holds was taken for.
#[derive(Debug, Clone)]
struct Held {
    token: LeaseToken,
    event_id: EventId,
    plugin: String,
    attempt: u32,
    /// Forwards: the target as admin views show it.
    target: String,
}

#[derive(Debug, Default)]
struct Leases {
    deliveries: HashMap<DeliveryId, Held>,
    forwards: HashMap<ForwardId, Held>,
}

/// A store that reports to an [`Activity`]; every trait method delegates.
pub struct Observed {
    inner: SharedStore,
    activity: Arc<Activity>,
    leases: Mutex<Leases>,
}

impl std::fmt::Debug for Observed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observed")
            .field("inner", &self.inner)
            .finish()
    }
}

impl Observed {
    pub fn new(inner: SharedStore, activity: Arc<Activity>) -> Observed {
        Observed {
            inner,
            activity,
            leases: Mutex::default(),
        }
    }

    fn leases(&self) -> std::sync::MutexGuard<'_, Leases> {
        self.leases.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}

fn stored(e: &Event, deliveries: usize, parent_id: Option<EventId>) -> Message {
    Message::Event {
        id: e.id,
        source: e.source.clone(),
        event_type: e.event_type.clone(),
        status: if deliveries > 0 {
            "pending"
        } else {
            "unrouted"
        },
        deliveries,
        parent_id,
        received_at: e.received_at_rfc3339(),
    }
}

#[async_trait]
impl Ingest for Observed {
    async fn ingest_leased(
        &self,
        new: NewEvent,
        lease: Option<Duration>,
    ) -> Result<(Ingested, Vec<ClaimedDelivery>), StoreError> {
        // Only what a message needs is kept, and only when someone listens.
        let listening = self.activity.tx.receiver_count() > 0;
        let seen = listening.then(|| head(&new.event));
        let answer = self.inner.ingest_leased(new, lease).await;
        if let Ok((_, handed)) = &answer {
            self.hold_deliveries(handed);
        }
        match answer.as_ref().map(|(i, _)| i) {
            Ok(Ingested::Stored { id, deliveries }) => {
                self.activity.series.event(1);
                if let Some(e) = seen.filter(|e| e.id == *id) {
                    self.activity.publish(|| stored(&e, *deliveries, None));
                }
            }
            Ok(Ingested::Duplicate { .. }) => self.activity.series.duplicate(),
            Err(_) => {}
        }
        answer
    }
}

impl Observed {
    /// Notes claimed (or handed-off) deliveries, to report their outcomes.
    fn hold_deliveries(&self, claimed: &[ClaimedDelivery]) {
        let mut leases = self.leases();
        for c in claimed {
            leases.deliveries.insert(
                c.id,
                Held {
                    token: c.token,
                    event_id: c.event.id,
                    plugin: c.plugin.clone(),
                    attempt: c.attempts + 1,
                    target: String::new(),
                },
            );
        }
    }

    /// Notes claimed (or handed-off) forwards, to report their outcomes.
    fn hold_forwards(&self, claimed: &[ClaimedForward]) {
        let mut leases = self.leases();
        for c in claimed {
            leases.forwards.insert(
                c.id,
                Held {
                    token: c.token,
                    event_id: c.event_id,
                    plugin: c.plugin.clone(),
                    attempt: c.attempts + 1,
                    target: crate::admin::mask::forward_target(&c.url),
                },
            );
        }
    }
}

/// The parts of an outcome a report needs (the outcome itself moves into the store).
enum Report {
    Done {
        took: Duration,
        emitted: Vec<(Event, usize)>,
    },
    Failed {
        took: Duration,
        kind: &'static str,
        error: String,
        dead: bool,
    },
    Release,
}

impl Report {
    fn of(outcome: &DeliveryOutcome) -> Report {
        match outcome {
            DeliveryOutcome::Done {
                emitted, timing, ..
            } => Report::Done {
                took: timing.duration,
                emitted: emitted
                    .iter()
                    .map(|e| (head(&e.event), e.plugins.len()))
                    .collect(),
            },
            DeliveryOutcome::Failed {
                error,
                kind,
                retry_at,
                timing,
                ..
            } => Report::Failed {
                took: timing.duration,
                kind,
                error: error.clone(),
                dead: retry_at.is_none(),
            },
            DeliveryOutcome::Release { .. } => Report::Release,
        }
    }
}

/// An event without its headers and body, for a report.
fn head(e: &Event) -> Event {
    Event {
        id: e.id,
        source: e.source.clone(),
        event_type: e.event_type.clone(),
        external_id: None,
        received_at: e.received_at,
        headers: Vec::new(),
        body: String::new(),
        hops: e.hops,
    }
}

#[async_trait]
impl WorkQueue for Observed {
    async fn claim_deliveries(
        &self,
        claim: DeliveryClaim,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let claimed = self.inner.claim_deliveries(claim).await?;
        self.hold_deliveries(&claimed);
        Ok(claimed)
    }

    async fn finish_delivery_leased(
        &self,
        id: DeliveryId,
        token: LeaseToken,
        outcome: DeliveryOutcome,
        lease: Option<Duration>,
    ) -> Result<(Finished, Vec<ClaimedForward>), StoreError> {
        let report = Report::of(&outcome);
        let held = {
            let mut leases = self.leases();
            match leases.deliveries.get(&id) {
                Some(h) if h.token == token => leases.deliveries.remove(&id),
                _ => None,
            }
        };
        let answer = self
            .inner
            .finish_delivery_leased(id, token, outcome, lease)
            .await;
        if let Ok((_, handed)) = &answer {
            self.hold_forwards(handed);
        }
        let (Some(held), Ok((finished, _))) = (held, &answer) else {
            return answer;
        };
        let a = &self.activity;
        let (outcome, state, error, took) = match (report, finished) {
            (_, Finished::Stale) | (Report::Release, _) => return answer,
            (Report::Done { took, .. }, Finished::EmitBudget { .. }) => {
                a.series.attempt(Attempt::DeliveryFailed { dead: true });
                ("emit_budget".to_string(), "dead", None, took)
            }
            (Report::Done { took, emitted }, Finished::Recorded) => {
                a.series.attempt(Attempt::DeliveryOk);
                a.series.event(emitted.len() as u64);
                for (e, deliveries) in &emitted {
                    a.publish(|| stored(e, *deliveries, Some(held.event_id)));
                }
                ("ok".to_string(), "done", None, took)
            }
            (
                Report::Failed {
                    took,
                    kind,
                    error,
                    dead,
                },
                _,
            ) => {
                a.series.attempt(Attempt::DeliveryFailed { dead });
                let state = if dead { "dead" } else { "pending" };
                (kind.to_string(), state, Some(error), took)
            }
        };
        a.record_duration(&held.plugin, took);
        a.publish(|| Message::Delivery {
            event_id: held.event_id,
            id,
            plugin: held.plugin.clone(),
            attempt: held.attempt,
            outcome,
            state,
            error,
            duration_ms: ms(took),
        });
        answer
    }

    async fn claim_forwards(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<ClaimedForward>, StoreError> {
        let claimed = self.inner.claim_forwards(limit, lease).await?;
        self.hold_forwards(&claimed);
        Ok(claimed)
    }

    async fn finish_forward(
        &self,
        id: ForwardId,
        token: LeaseToken,
        outcome: ForwardOutcome,
    ) -> Result<Finished, StoreError> {
        let report = match &outcome {
            ForwardOutcome::Sent { status, timing } => {
                Some(("done", Some(*status), None, timing.duration))
            }
            ForwardOutcome::Failed {
                error,
                status,
                retry_at,
                timing,
            } => Some((
                if retry_at.is_some() {
                    "pending"
                } else {
                    "dead"
                },
                *status,
                Some(error.clone()),
                timing.duration,
            )),
            ForwardOutcome::Release => None,
        };
        let held = {
            let mut leases = self.leases();
            match leases.forwards.get(&id) {
                Some(h) if h.token == token => leases.forwards.remove(&id),
                _ => None,
            }
        };
        let answer = self.inner.finish_forward(id, token, outcome).await;
        if let (Some(held), Some((state, status, error, took)), Ok(Finished::Recorded)) =
            (held, report, &answer)
        {
            let a = &self.activity;
            a.series.attempt(match state {
                "done" => Attempt::ForwardSent(took),
                _ => Attempt::ForwardFailed {
                    dead: state == "dead",
                    took,
                },
            });
            a.publish(|| Message::Forward {
                event_id: held.event_id,
                id,
                plugin: held.plugin,
                target: held.target,
                attempt: held.attempt,
                state,
                status,
                error,
                duration_ms: ms(took),
            });
        }
        answer
    }

    async fn release_leases(&self) -> Result<usize, StoreError> {
        let n = self.inner.release_leases().await;
        let mut leases = self.leases();
        leases.deliveries.clear();
        leases.forwards.clear();
        n
    }
}

#[async_trait]
impl DeadLetters for Observed {
    async fn dead(&self, filter: &DeadFilter, limit: usize) -> Result<Vec<DeadEntry>, StoreError> {
        self.inner.dead(filter, limit).await
    }

    async fn dead_entry(&self, id: DeadId) -> Result<Option<(DeadEntry, Event)>, StoreError> {
        self.inner.dead_entry(id).await
    }

    async fn replay(&self, selection: Selection) -> Result<usize, StoreError> {
        self.inner.replay(selection).await
    }

    async fn purge(&self, selection: Selection) -> Result<Purged, StoreError> {
        self.inner.purge(selection).await
    }
}

#[async_trait]
impl Queries for Observed {
    async fn events(
        &self,
        filter: &EventFilter,
        page: Page,
    ) -> Result<Vec<EventSummary>, StoreError> {
        self.inner.events(filter, page).await
    }

    async fn event(&self, id: EventId) -> Result<Option<EventDetail>, StoreError> {
        self.inner.event(id).await
    }

    async fn counts(&self) -> Result<StoreCounts, StoreError> {
        self.inner.counts().await
    }

    async fn backlog(&self) -> Result<Backlog, StoreError> {
        self.inner.backlog().await
    }
}

#[async_trait]
impl Maintenance for Observed {
    async fn prune(&self, policy: Retention) -> Result<Pruned, StoreError> {
        self.inner.prune(policy).await
    }

    async fn health(&self) -> Health {
        self.inner.health().await
    }
}

impl Store for Observed {
    fn wake(&self) -> &Wake {
        self.inner.wake()
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn announce(&self, admin: std::net::SocketAddr) {
        self.inner.announce(admin)
    }
}
