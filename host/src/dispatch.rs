//! Dispatch: due delivery → plugin → outcome recorded with its effects.
//!
//! Owns: leasing due deliveries, running each in a fresh instance on a blocking
//! thread (bounded by `plugins.workers`), and turning the result into one store
//! transaction: forwards into the outbox, emits into new routed events, or a
//! retry with backoff, or a dead letter.
//! Never: answers HTTP or performs a forward itself (the outbox does the I/O).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tracing::Instrument;

use crate::event::{Action, Event, unix_ms};
use crate::forward_policy::{self, Policy};
use crate::live::Shared;
use crate::log_safe::Escaped;
use crate::metrics::{self, InvocationLabels, KindLabel, METRICS, PluginLabel};
use crate::plugins::{PluginError, PluginRegistry};
use crate::store::{ClaimedDelivery, DeliveryOutcome, Emitted, NewForward, Store};

/// `emit` chains longer than this are cut.
pub const MAX_HOPS: u32 = 8;

/// How long a claimed delivery stays leased beyond its plugin's timeout.
const LEASE_MARGIN: Duration = Duration::from_secs(30);

/// Deliveries claimed per worker beyond the free ones.
const PREFETCH: u32 = 8;

/// How often to look for due retries when nothing wakes the loop.
const POLL: Duration = Duration::from_millis(200);

#[derive(Clone)]
pub(crate) struct Dispatcher {
    pub store: Store,
    pub live: Shared,
    pub registry: Arc<PluginRegistry>,
}

impl Dispatcher {
    /// Runs until `stop` turns true, then waits for in-flight deliveries to finish.
    pub async fn run(self, stop: watch::Receiver<bool>) {
        let workers = self.live.load().config.plugins.workers;
        let due = self.store.deliveries_due.clone();
        let claimer = self.clone();
        let claim = move |free: usize| {
            let this = claimer.clone();
            async move {
                let loaded = loaded_names(&this.registry);
                if loaded.is_empty() {
                    return Vec::new();
                }
                // Claim ahead of the free workers, so one store round trip feeds
                // several deliveries; the lease covers the wait in this queue.
                let lease = this.live.load().config.plugins.timeout * (PREFETCH + 1) + LEASE_MARGIN;
                let limit = free + workers * PREFETCH as usize;
                this.store
                    .claim_deliveries(loaded, limit, lease)
                    .await
                    .unwrap_or_else(|e| {
                        tracing::warn!(error = %e, "cannot claim deliveries");
                        Vec::new()
                    })
            }
        };
        let handle = move |delivery: ClaimedDelivery| {
            let this = self.clone();
            let span = tracing::info_span!(
                "delivery",
                event_id = %delivery.event.id,
                event_type = %Escaped(&delivery.event.event_type),
                source = %delivery.event.source,
                plugin = %delivery.plugin,
            );
            async move { this.deliver(delivery).await }.instrument(span)
        };
        crate::pool::run(workers, due, stop, POLL, claim, handle).await;
    }

    async fn deliver(&self, d: ClaimedDelivery) {
        let now = || unix_ms(SystemTime::now());
        let Some(plugin) = self.registry.get(&d.plugin) else {
            // Removed since the claim: give it back without spending an attempt.
            let _ = self
                .store
                .finish_delivery(d.id, DeliveryOutcome::Release { due_at: now() })
                .await;
            return;
        };
        let live = self.live.load_full();
        let attempt = d.attempts + 1;
        let version = plugin.short_version().to_string();
        let ClaimedDelivery {
            id,
            plugin: name,
            event,
            ..
        } = d;
        let event_id = event.id.clone();
        let started = std::time::Instant::now();
        // The event moves to the blocking thread and back: no copy of its body.
        let (snapshot, plugin_name) = (live.clone(), name.clone());
        let run = tokio::task::spawn_blocking(move || {
            let no_config = std::collections::BTreeMap::new();
            let config = snapshot
                .config
                .settings(&plugin_name)
                .map_or(&no_config, |s| &s.config);
            let result = plugin.run(&event, attempt, config);
            (event, result)
        });
        // Epochs cannot interrupt a blocking host call; this bounds the wait anyway.
        let result =
            match tokio::time::timeout(live.config.plugins.timeout + Duration::from_secs(5), run)
                .await
            {
                Ok(Ok((event, r))) => r.map(|actions| (event, actions)),
                Ok(Err(join)) => Err(PluginError::Internal {
                    plugin: name.clone(),
                    event_id: event_id.clone(),
                    message: format!("plugin thread failed: {join}"),
                }),
                Err(_) => Err(PluginError::Timeout {
                    plugin: name.clone(),
                    event_id,
                    timeout: live.config.plugins.timeout,
                }),
            };
        METRICS
            .plugin_duration
            .get_or_create(&PluginLabel {
                plugin: name.clone(),
            })
            .observe(started.elapsed().as_secs_f64());
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
                    version,
                    forwards,
                    emitted,
                }
            }
            Err(e) if e.is_unavailable() => {
                tracing::warn!(error = %e, "plugin unavailable; delivery waits");
                DeliveryOutcome::Release {
                    due_at: now() + 1000,
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
                    retry_at,
                }
            }
        };
        if let Err(e) = self.store.finish_delivery(id, outcome).await {
            // The lease expires and the delivery runs again: at-least-once.
            tracing::error!(error = %e, "cannot record delivery outcome");
        }
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

/// Splits a plugin's actions into outbox entries and routed emitted events.
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
                let hops = parent.hops + 1;
                if hops > MAX_HOPS {
                    tracing::warn!(event_type = %Escaped(&event_type), hops, "emit chain cut at {MAX_HOPS} hops");
                    METRICS
                        .dead_letters
                        .get_or_create(&KindLabel { kind: "emit_hops" })
                        .inc();
                    continue;
                }
                let event = Event {
                    id: Event::new_id(),
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
                emitted.push(Emitted {
                    event,
                    parent_id: parent.id.clone(),
                    plugins,
                });
            }
        }
    }
    (forwards, emitted)
}
