//! What happens on this replica, as it happens: new events and the outcomes of
//! their deliveries and forwards, broadcast to `GET /admin/events/stream`, and
//! sampled into the time series of `GET /admin/stats` and the duration
//! percentiles of `GET /admin/plugins`.
//!
//! Owns: the in-process bus ([`Activity`]), the samples, and [`Observed`], the
//! store wrapper that feeds them with what ingress, dispatch and the outbox
//! record, once the store has recorded it.
//! Never: changes what is stored, or when; a subscriber that falls behind loses
//! messages (and is told how many), it never holds up the pipeline. It sees
//! only this process: other replicas on a shared database have their own.

mod observed;
mod series;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::broadcast;

pub use observed::Observed;
pub use series::{INTERVAL, Point, Series};

use crate::store::{DeliveryId, EventId, ForwardId, SharedStore};

/// Messages a slow subscriber may fall behind by before it loses some.
const BUS_CAPACITY: usize = 4096;

/// Run durations kept per plugin for its percentiles.
const DURATIONS_KEPT: usize = 1024;

/// One thing that happened, as the stream sends it.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Message {
    /// An event was stored: from the wire, or emitted by a plugin (`parent_id`).
    Event {
        id: EventId,
        source: String,
        event_type: String,
        /// `pending` (it has deliveries) or `unrouted`.
        status: &'static str,
        deliveries: usize,
        parent_id: Option<EventId>,
        /// RFC 3339.
        received_at: String,
    },
    /// A delivery's attempt was recorded.
    Delivery {
        event_id: EventId,
        id: DeliveryId,
        plugin: String,
        attempt: u32,
        /// `ok`, or the failure's kind (`timeout`, `trap`, `emit_budget`, ...).
        outcome: String,
        /// `done`, `pending` (it retries) or `dead`.
        state: &'static str,
        error: Option<String>,
        duration_ms: u64,
    },
    /// A forward's attempt was recorded.
    Forward {
        event_id: EventId,
        id: ForwardId,
        plugin: String,
        /// Scheme, host, port and first path segment only.
        target: String,
        attempt: u32,
        state: &'static str,
        status: Option<u16>,
        error: Option<String>,
        duration_ms: u64,
    },
}

impl Message {
    /// The message's `kind`, as the SSE event name.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Event { .. } => "event",
            Message::Delivery { .. } => "delivery",
            Message::Forward { .. } => "forward",
        }
    }
}

/// Duration percentiles of one plugin's recent runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Runs the figures are taken over (the most recent, at most 1024).
    pub runs: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// The bus and the samples; one per router process, shared behind an `Arc`.
#[derive(Debug)]
pub struct Activity {
    tx: broadcast::Sender<Arc<Message>>,
    series: Series,
    durations: Mutex<HashMap<String, VecDeque<Duration>>>,
}

impl Default for Activity {
    fn default() -> Self {
        Activity::new()
    }
}

impl Activity {
    pub fn new() -> Activity {
        Activity {
            tx: broadcast::channel(BUS_CAPACITY).0,
            series: Series::new(SystemTime::now()),
            durations: Mutex::default(),
        }
    }

    /// Every message from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Message>> {
        self.tx.subscribe()
    }

    /// The time series (per-second rates over the last hour).
    pub fn series(&self) -> &Series {
        &self.series
    }

    /// Percentiles of `plugin`'s recent run durations (`None` before its first run).
    pub fn percentiles(&self, plugin: &str) -> Option<Percentiles> {
        let map = self.durations.lock().unwrap_or_else(|p| p.into_inner());
        let mut d: Vec<Duration> = map.get(plugin)?.iter().copied().collect();
        d.sort();
        let at = |p: f64| {
            let i = ((d.len() - 1) as f64 * p).round() as usize;
            d[i].as_secs_f64() * 1000.0
        };
        Some(Percentiles {
            runs: d.len(),
            p50_ms: at(0.50),
            p99_ms: at(0.99),
        })
    }

    /// Sends `m` to every subscriber (building it only when someone listens).
    fn publish(&self, m: impl FnOnce() -> Message) {
        if self.tx.receiver_count() > 0 {
            let _ = self.tx.send(Arc::new(m()));
        }
    }

    fn record_duration(&self, plugin: &str, d: Duration) {
        let mut map = self.durations.lock().unwrap_or_else(|p| p.into_inner());
        let ring = match map.get_mut(plugin) {
            Some(r) => r,
            None => map.entry(plugin.to_string()).or_default(),
        };
        if ring.len() == DURATIONS_KEPT {
            ring.pop_front();
        }
        ring.push_back(d);
    }
}

/// Closes an interval of the series every [`INTERVAL`], with the store's
/// backlog read then, until `stop` turns true.
pub async fn sample(
    activity: Arc<Activity>,
    store: SharedStore,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + INTERVAL, INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        let backlog = store
            .backlog()
            .await
            .ok()
            .map(|b| b.deliveries + b.forwards);
        activity.series.close(SystemTime::now(), backlog);
    }
}

#[cfg(test)]
mod tests;
