//! Dispatch: due delivery → plugin → outcome recorded with its effects.
//!
//! Owns: leasing due deliveries per plugin, running each in a fresh instance on a
//! blocking thread (bounded by `plugins.workers`, shared fairly between plugins by
//! the [`crate::scheduler`]), and turning the result into one store transaction:
//! forwards into the outbox, emits into new routed events, or a retry with
//! backoff, or a dead letter.
//! Never: answers HTTP, performs a forward itself (the outbox does the I/O), or
//! lets go of a worker while its plugin thread still runs.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tracing::Instrument;

use crate::event::{Action, Event, EventId, unix_ms};
use crate::forward_policy::{self, Policy};
use crate::handoff::{Handed, Handoff, Terms};
use crate::live::Shared;
use crate::log_safe::Escaped;
use crate::metrics::{self, InvocationLabels, KindLabel, METRICS, PluginLabel};
use crate::plugins::{PluginError, PluginRegistry};
use crate::scheduler::{self, Room};
use crate::store::{
    AttemptTiming, ClaimedDelivery, DeliveryClaim, DeliveryOutcome, Emitted, Finished, NewForward,
    SharedStore, Work,
};

/// `emit` chains longer than this fail the run that would extend them.
pub use crate::plugins::MAX_HOPS;

/// How long a claimed delivery stays leased beyond the wait in the local queues.
const LEASE_MARGIN: Duration = Duration::from_secs(30);

/// Deliveries claimed per worker beyond the free ones. One claim is in flight
/// at a time and commits before it answers, so a backlog drains at most a
/// window (`workers × PREFETCH`) per commit: at 8, claims made 0.15 commits
/// per event end to end, at 32 half of that, and the writer's CPU per event
/// fell by a fifth (BENCHMARKS.md). The leases grow with it (see [`lease`]).
const PREFETCH: usize = 32;

/// How often to look for due retries when nothing wakes the loop.
const POLL: Duration = Duration::from_millis(200);

/// A run still going this long after its deadline is reported (it cannot be, as
/// every wait of a guest is bounded by the deadline; the worker stays held until
/// the thread ends all the same, so threads never pile up).
const OVERDUE: Duration = Duration::from_secs(5);

/// Deliveries handed over from ingress per worker (see `handoff`), beyond
/// what the workers claim ahead. At 8, the events of a burst past the hand-off
/// were stored unleased and claimed: claims took 9% of the store writer's time
/// end to end. At 64, the writer's CPU per event fell by a sixth and the rate
/// end to end rose by an eighth (BENCHMARKS.md). The leases do not grow with
/// it: a delivery that waited too long is not started (see [`terms`]).
pub(crate) const HANDOFF_PER_WORKER: usize = 64;

/// Outcomes being recorded at once: a worker takes its next delivery while the
/// last one's outcome waits for its commit, up to this many in all.
const RECORDING: u32 = 4096;

/// How long a claimed or handed-over delivery stays leased (a wait in the
/// local queues of about `PREFETCH + 8` deadlines of the slowest plugin, the
/// run, and a margin), and how long its run may last. A delivery queued past
/// the start-by these give (a hand-off full of runs that each last until their
/// deadline) is dropped unrun; the store serves it again when its lease has
/// passed, so it never runs twice at once.
pub(crate) fn terms(config: &crate::config::Config) -> Terms {
    let (slowest, _) = config.plugin_maxima();
    Terms {
        lease: slowest * (PREFETCH + 10) as u32 + LEASE_MARGIN,
        run: slowest + OVERDUE,
    }
}

#[derive(Clone)]
pub(crate) struct Dispatcher {
    pub store: SharedStore,
    pub live: Shared,
    pub registry: Arc<PluginRegistry>,
    pub handoff: Arc<Handoff>,
    /// Outcomes being recorded (see [`RECORDING`]).
    pub recording: Arc<tokio::sync::Semaphore>,
}

impl Dispatcher {
    pub fn new(
        store: SharedStore,
        live: Shared,
        registry: Arc<PluginRegistry>,
        handoff: Arc<Handoff>,
    ) -> Dispatcher {
        Dispatcher {
            store,
            live,
            registry,
            handoff,
            recording: Arc::new(tokio::sync::Semaphore::new(RECORDING as usize)),
        }
    }

    /// Runs until `stop` turns true, then waits for in-flight deliveries to
    /// finish and their outcomes to be recorded. `inbox` brings the deliveries
    /// ingress handed over.
    pub async fn run(
        self,
        stop: watch::Receiver<bool>,
        inbox: tokio::sync::mpsc::UnboundedReceiver<(String, Handed<ClaimedDelivery>)>,
    ) {
        let workers = self.live.load().config.plugins.workers;
        let wake_on = self.store.clone();
        let live = self.live.clone();
        let quota = move |plugin: &str| live.load().config.plugin_concurrency(plugin);
        let claimer = self.clone();
        let claim = move |room: Room| {
            let this = claimer.clone();
            async move { this.claim(room).await }
        };
        let store = self.store.clone();
        let give_back = move |left: Vec<Handed<ClaimedDelivery>>| async move {
            let now = unix_ms(SystemTime::now());
            for d in left.into_iter().map(|h| h.item) {
                let _ = store
                    .finish_delivery(d.id, d.token, DeliveryOutcome::Release { due_at: now })
                    .await;
            }
        };
        let recording = self.recording.clone();
        let handle = move |handed: Handed<ClaimedDelivery>| {
            let this = self.clone();
            let delivery = &handed.item;
            let span = tracing::info_span!(
                "delivery",
                event_id = %delivery.event.id,
                event_type = %Escaped(&delivery.event.event_type),
                source = %delivery.event.source,
                plugin = %delivery.plugin,
            );
            async move { handed.run("delivery", |d| this.deliver(d)).await }.instrument(span)
        };
        let settings = scheduler::Settings {
            workers,
            prefetch: PREFETCH,
            poll: POLL,
            work: Work::Deliveries,
        };
        scheduler::run(
            settings,
            quota,
            wake_on.wake(),
            inbox,
            stop,
            claim,
            handle,
            give_back,
        )
        .await;
        // The outcomes still being recorded.
        let _ = recording.acquire_many(RECORDING).await;
    }

    /// Leases due deliveries of each loaded plugin, at most its room each. The
    /// lease covers the wait in the local queues (about `PREFETCH` deadlines of
    /// the slowest plugin) and the run.
    async fn claim(&self, room: Room) -> Vec<(String, Handed<ClaimedDelivery>)> {
        let loaded = loaded_names(&self.registry);
        let terms = terms(&self.live.load().config);
        // One claim names every plugin with room, each up to its room.
        let claim = DeliveryClaim {
            plugins: loaded
                .into_iter()
                .map(|p| {
                    let limit = room.for_key(&p);
                    (p, limit)
                })
                .filter(|(_, limit)| *limit > 0)
                .collect(),
            lease: terms.lease,
        };
        if claim.plugins.is_empty() {
            return Vec::new();
        }
        match self.store.claim_deliveries(claim).await {
            Ok(ds) => {
                let start_by = terms.start_by();
                ds.into_iter()
                    .map(|d| (d.plugin.clone(), Handed::claimed(d, start_by)))
                    .collect()
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim deliveries");
                Vec::new()
            }
        }
    }

    async fn deliver(&self, d: ClaimedDelivery) {
        let now = || unix_ms(SystemTime::now());
        let Some(plugin) = self.registry.get(&d.plugin) else {
            // Removed since the claim: give it back without spending an attempt.
            let _ = self
                .store
                .finish_delivery(d.id, d.token, DeliveryOutcome::Release { due_at: now() })
                .await;
            return;
        };
        let live = self.live.load_full();
        let attempt = d.attempts + 1;
        let version = plugin.short_version().to_string();
        let ClaimedDelivery {
            id,
            token,
            plugin: name,
            event,
            ..
        } = d;
        let event_id = event.id.to_string();
        let started_at = SystemTime::now();
        let limits = crate::plugin_limits(&live.config, &name);
        let timeout = limits.timeout;
        let started = std::time::Instant::now();
        // The event moves to the blocking thread and back: no copy of its body.
        let (snapshot, plugin_name) = (live.clone(), name.clone());
        let mut run = tokio::task::spawn_blocking(move || {
            let no_config = std::collections::BTreeMap::new();
            let config = snapshot
                .config
                .settings(&plugin_name)
                .map_or(&no_config, |s| &s.config);
            let result = plugin.run_with(&event, attempt, config, &limits);
            (event, result)
        });
        // The runtime ends every run at its deadline, host calls included. Should a
        // thread ever outlive it, the attempt is recorded as a timeout, and this
        // worker waits for the thread before taking other work.
        let joined = match tokio::time::timeout(timeout + OVERDUE, &mut run).await {
            Ok(joined) => Some(joined),
            Err(_) => {
                tracing::error!(
                    timeout_ms = timeout.as_millis() as u64,
                    "plugin thread still running {OVERDUE:?} past its deadline; recording a timeout and keeping its worker until it ends"
                );
                None
            }
        };
        let overdue = joined.is_none();
        let result = match joined {
            Some(Ok((event, r))) => r.map(|actions| (event, actions)),
            Some(Err(join)) => Err(PluginError::Internal {
                plugin: name.clone(),
                event_id: event_id.clone(),
                message: format!("plugin thread failed: {join}"),
            }),
            None => Err(PluginError::Timeout {
                plugin: name.clone(),
                event_id,
                timeout,
            }),
        };
        let timing = AttemptTiming {
            started_at,
            duration: started.elapsed(),
        };
        METRICS
            .plugin_duration
            .get_or_create(&PluginLabel {
                plugin: name.clone(),
            })
            .observe(timing.duration.as_secs_f64());
        crate::metrics::record_invocation(&name, result.is_ok());
        let outcome_label = match &result {
            Ok(_) => "ok",
            Err(e) => e.kind(),
        };
        METRICS
            .invocations
            .get_or_create(&InvocationLabels {
                plugin: name.clone(),
                version: version.clone(),
                outcome: outcome_label,
            })
            .inc();

        let outcome = match result {
            Ok((event, actions)) => {
                let policy = live.config.forward_policy(&name);
                let (forwards, emitted) = effects(&live, &event, policy, actions);
                tracing::info!(forwards = forwards.len(), emitted = emitted.len(), attempt, version = %version, "delivery done");
                DeliveryOutcome::Done {
                    version: version.clone(),
                    forwards,
                    emitted,
                    max_emits: live.config.plugins.max_emits_per_event,
                    timing,
                }
            }
            Err(e) if e.is_unavailable() => {
                tracing::warn!(error = %e, "plugin unavailable; delivery waits");
                DeliveryOutcome::Release {
                    due_at: now() + 1000,
                }
            }
            Err(e) if !e.is_retryable() => {
                // A retry would ask for the same again: dead at once, no effects.
                METRICS
                    .dead_letters
                    .get_or_create(&KindLabel { kind: e.kind() })
                    .inc();
                tracing::error!(error = %e, attempt, "delivery dead-lettered at once: a retry cannot succeed");
                DeliveryOutcome::Failed {
                    error: e.to_string(),
                    kind: e.kind(),
                    version: Some(version.clone()),
                    retry_at: None,
                    timing,
                }
            }
            Err(e) => {
                let retry_at = live.config.plugins.retry.retry_at(attempt, now());
                metrics::record_failure("delivery", retry_at);
                if retry_at.is_some() {
                    tracing::warn!(error = %e, attempt, "delivery failed; will retry");
                } else {
                    tracing::error!(error = %e, attempt, "delivery failed for the last time; dead-lettered");
                }
                DeliveryOutcome::Failed {
                    error: e.to_string(),
                    kind: e.kind(),
                    version: Some(version.clone()),
                    retry_at,
                    timing,
                }
            }
        };
        // The outcome is recorded while this worker takes its next delivery;
        // the lease keeps the delivery from being claimed again meanwhile.
        let Ok(permit) = self.recording.clone().acquire_owned().await else {
            return;
        };
        let (store, handoff) = (self.store.clone(), self.handoff.clone());
        let record = async move {
            record(&store, &handoff, id, token, outcome, &live.config).await;
            drop(permit);
        };
        tokio::spawn(record.instrument(tracing::Span::current()));
        if overdue {
            let _ = run.await;
        }
    }
}

/// Records an outcome; the forwards it stores are handed to the outbox leased
/// when the hand-off has room for them (else the outbox claims them).
async fn record(
    store: &SharedStore,
    handoff: &Handoff,
    id: crate::store::DeliveryId,
    token: crate::store::LeaseToken,
    outcome: DeliveryOutcome,
    config: &crate::config::Config,
) {
    let sendable = match &outcome {
        DeliveryOutcome::Done { forwards, .. } => {
            forwards.iter().filter(|f| f.refused.is_none()).count()
        }
        _ => 0,
    };
    let slots = handoff.forwards.reserve(sendable);
    let terms = crate::outbox::terms(config);
    let lease = slots.as_ref().map(|_| terms.lease);
    match store
        .finish_delivery_leased(id, token, outcome, lease)
        .await
    {
        Ok((Finished::Recorded, handed)) => {
            let keyed = handed
                .into_iter()
                .map(|f| (crate::outbox::target_key(&f.url), f))
                .collect();
            handoff.forwards.send(keyed, slots, terms.start_by());
        }
        Ok((Finished::Stale, _)) => {
            tracing::warn!("delivery outcome not recorded: its lease had passed to another attempt")
        }
        Ok((
            Finished::EmitBudget {
                used,
                wanted,
                budget,
            },
            _,
        )) => {
            METRICS
                .dead_letters
                .get_or_create(&KindLabel {
                    kind: "emit_budget",
                })
                .inc();
            tracing::error!(
                used,
                wanted,
                budget,
                "emits over the event's budget (plugins.max_emits_per_event); dead-lettered without effects"
            );
        }
        // The lease expires and the delivery runs again: at-least-once.
        Err(e) => tracing::error!(error = %e, "cannot record delivery outcome"),
    }
}

/// Names of the plugins loaded now: only their deliveries are claimed, so the
/// deliveries of an absent plugin wait without spending attempts.
fn loaded_names(registry: &PluginRegistry) -> Vec<String> {
    registry
        .snapshot()
        .plugins()
        .map(|p| p.name().to_string())
        .collect()
}

/// Splits a plugin's actions into outbox entries and routed emitted events (the
/// runtime has checked them against the run's emit budget).
fn effects(
    live: &crate::live::Live,
    parent: &Event,
    policy: Policy<'_>,
    actions: Vec<Action>,
) -> (Vec<NewForward>, Vec<Emitted>) {
    let mut forwards = Vec::new();
    let mut emitted = Vec::new();
    for action in actions {
        match action {
            Action::Forward { url, headers, body } => {
                let refused = forward_policy::check(&url, &headers, policy).err();
                if let Some(why) = &refused {
                    metrics::record_failure("forward", None);
                    tracing::error!(url = %forward_policy::redact(&url), reason = %why, "forward refused; dead-lettered without sending");
                }
                forwards.push(NewForward {
                    url,
                    headers,
                    body,
                    refused,
                });
            }
            Action::Emit { event_type, data } => {
                // The runtime already failed any run whose emit would pass MAX_HOPS.
                let hops = parent.hops + 1;
                let event = Event {
                    id: EventId::new(),
                    source: parent.source.clone(),
                    event_type,
                    external_id: None,
                    received_at: SystemTime::now(),
                    headers: Vec::new(),
                    body: data,
                    hops,
                };
                let plugins = live
                    .router
                    .plugins_for(&event.source, &event.event_type)
                    .into_iter()
                    .map(|p| p.to_string())
                    .collect();
                tracing::info!(emitted_id = %event.id, event_type = %Escaped(&event.event_type), hops, "event emitted");
                emitted.push(Emitted { event, plugins });
            }
        }
    }
    (forwards, emitted)
}
