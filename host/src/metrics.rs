//! Prometheus metrics, served as text at `GET /metrics` on the admin listener.
//!
//! Owns: every metric's name, help text and labels, in one registry.
//! Never: decides anything; callers record facts after they happen.

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReceivedLabels {
    pub source: String,
    #[prometheus(flatten)]
    pub kind: TypeLabel,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TypeLabel {
    pub r#type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RejectLabels {
    pub source: String,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct SourceLabel {
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct InvocationLabels {
    pub plugin: String,
    pub version: String,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PluginLabel {
    pub plugin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct KindLabel {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabel {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct FileLabel {
    pub file: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TableLabel {
    pub table: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReloadLabels {
    pub kind: &'static str,
    pub outcome: &'static str,
}

pub(crate) struct Metrics {
    pub received: Family<ReceivedLabels, Counter>,
    pub rejected: Family<RejectLabels, Counter>,
    pub duplicates: Family<SourceLabel, Counter>,
    pub backlog: Gauge,
    pub batch_size: Histogram,
    pub invocations: Family<InvocationLabels, Counter>,
    pub plugin_duration: Family<PluginLabel, Histogram>,
    pub retries: Family<KindLabel, Counter>,
    pub dead_letters: Family<KindLabel, Counter>,
    pub forwards: Family<OutcomeLabel, Counter>,
    pub reloads: Family<ReloadLabels, Counter>,
    pub pruned: Counter,
    pub store_bytes: Family<FileLabel, Gauge>,
    pub store_rows: Family<TableLabel, Gauge>,
    pub store_free: Gauge,
    pub dead_now: Family<PluginLabel, Gauge>,
    /// Event types that have a `type` label of their own (see [`Metrics::type_label`]).
    type_labels: Mutex<HashSet<String>>,
    registry: Registry,
}

/// At most this many event types get a `type` label of their own.
const MAX_TYPE_LABELS: usize = 256;

/// Where an event type is not given its own label.
pub(crate) const OTHER_TYPE: &str = "other";

fn duration_histogram() -> Histogram {
    // 50 µs .. ~13 s
    Histogram::new(exponential_buckets(0.000_05, 2.0, 19))
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("hookrouter");
        let m = Metrics {
            received: Family::default(),
            rejected: Family::default(),
            duplicates: Family::default(),
            backlog: Gauge::default(),
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 11)),
            invocations: Family::default(),
            plugin_duration: Family::new_with_constructor(duration_histogram),
            retries: Family::default(),
            dead_letters: Family::default(),
            forwards: Family::default(),
            reloads: Family::default(),
            pruned: Counter::default(),
            store_bytes: Family::default(),
            store_rows: Family::default(),
            store_free: Gauge::default(),
            dead_now: Family::default(),
            type_labels: Mutex::default(),
            registry: Registry::default(),
        };
        registry.register(
            "events_received",
            "Ingress requests for a known source, by source, event type and HTTP status",
            m.received.clone(),
        );
        registry.register("events_rejected", "Ingress requests refused, by source and reason (signature, size, json, type, method, source)", m.rejected.clone());
        registry.register(
            "events_duplicate",
            "Events dropped as duplicates of a stored event id",
            m.duplicates.clone(),
        );
        registry.register(
            "store_backlog",
            "Requests queued for the store writer",
            m.backlog.clone(),
        );
        registry.register(
            "store_batch_size",
            "Requests committed per group-commit transaction",
            m.batch_size.clone(),
        );
        registry.register(
            "plugin_invocations",
            "Plugin runs, by plugin, version and outcome",
            m.invocations.clone(),
        );
        registry.register(
            "plugin_duration_seconds",
            "Wall time of one plugin run, instantiation included",
            m.plugin_duration.clone(),
        );
        registry.register(
            "retries",
            "Failed attempts scheduled for retry, by kind (delivery, forward)",
            m.retries.clone(),
        );
        registry.register(
            "dead_letters",
            "Deliveries and forwards dead-lettered, by kind",
            m.dead_letters.clone(),
        );
        registry.register(
            "forwards",
            "Outbox forward attempts, by outcome",
            m.forwards.clone(),
        );
        registry.register(
            "reloads",
            "Plugin and config reloads, by kind and outcome",
            m.reloads.clone(),
        );
        registry.register(
            "pruned",
            "Events and dedupe records deleted by retention",
            m.pruned.clone(),
        );
        registry.register(
            "store_bytes",
            "Size of the store, by file (SQLite) or relation (PostgreSQL)",
            m.store_bytes.clone(),
        );
        registry.register(
            "store_rows",
            "Rows in the store, by table",
            m.store_rows.clone(),
        );
        registry.register(
            "store_free_bytes",
            "Free space on the store's file system",
            m.store_free.clone(),
        );
        registry.register(
            "dead_letters_current",
            "Dead deliveries waiting for replay or purge, by plugin",
            m.dead_now.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The `type` label for `event_type`. The type comes from the request, so
    /// on an unsigned source anyone can invent new ones: a type longer than 64
    /// bytes or with characters other than letters, digits and `._-:/`, and any
    /// type past the first [`MAX_TYPE_LABELS`], is counted as `other`, which
    /// keeps the number of series bounded.
    pub(crate) fn type_label(&self, event_type: &str) -> String {
        let plain = (1..=64).contains(&event_type.len())
            && event_type
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-:/".contains(&b));
        if plain {
            let mut seen = self.type_labels.lock().unwrap_or_else(|e| e.into_inner());
            if seen.contains(event_type)
                || (seen.len() < MAX_TYPE_LABELS && seen.insert(event_type.to_string()))
            {
                return event_type.to_string();
            }
        }
        OTHER_TYPE.to_string()
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The process's metrics.
pub(crate) static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// Counts a failed attempt of `kind` (`delivery`, `forward`): a retry, or a
/// dead letter when `retry_at` is `None`.
pub(crate) fn record_failure(kind: &'static str, retry_at: Option<i64>) {
    let family = if retry_at.is_some() {
        &METRICS.retries
    } else {
        &METRICS.dead_letters
    };
    family.get_or_create(&KindLabel { kind }).inc();
}

/// Sets the store gauges from a health check and (when the query worked) its counts.
pub(crate) fn record_store(
    health: &crate::store::Health,
    counts: Option<&crate::store::StoreCounts>,
) {
    METRICS.backlog.set(health.backlog as i64);
    if let Some(free) = health.free_disk_bytes {
        METRICS.store_free.set(free.min(i64::MAX as u64) as i64);
    }
    let Some(c) = counts else { return };
    for (file, bytes) in &c.bytes {
        METRICS
            .store_bytes
            .get_or_create(&FileLabel { file: file.clone() })
            .set(*bytes as i64);
    }
    for (table, rows) in &c.rows {
        METRICS
            .store_rows
            .get_or_create(&TableLabel {
                table: table.clone(),
            })
            .set(*rows as i64);
    }
    // Plugins whose dead letters are all gone read 0, not their last value.
    METRICS.dead_now.clear();
    for (plugin, n) in &c.dead_by_plugin {
        METRICS
            .dead_now
            .get_or_create(&PluginLabel {
                plugin: plugin.clone(),
            })
            .set(*n as i64);
    }
}

/// Records one group-commit batch of `n` requests.
pub(crate) fn observe_batch(n: usize) {
    METRICS.batch_size.observe(n as f64);
}

/// Per-plugin figures for `GET /admin/plugins` (the metrics carry the same
/// counts, but Prometheus families cannot be read back by label).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PluginStats {
    pub invocations_ok: u64,
    pub invocations_failed: u64,
    /// The version currently loaded and when it was loaded (RFC 3339).
    pub loaded_version: Option<String>,
    pub loaded_at: Option<String>,
}

static PLUGIN_STATS: LazyLock<std::sync::Mutex<std::collections::HashMap<String, PluginStats>>> =
    LazyLock::new(Default::default);

fn with_stats<T>(plugin: &str, f: impl FnOnce(&mut PluginStats) -> T) -> T {
    let mut map = PLUGIN_STATS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(stats) = map.get_mut(plugin) {
        return f(stats);
    }
    f(map.entry(plugin.to_string()).or_default())
}

/// Counts one run of `plugin`.
pub(crate) fn record_invocation(plugin: &str, ok: bool) {
    with_stats(plugin, |s| {
        if ok {
            s.invocations_ok += 1
        } else {
            s.invocations_failed += 1
        }
    });
}

/// Notes that `version` of `plugin` is loaded (keeps the first time it was seen).
pub(crate) fn record_loaded(plugin: &str, version: &str) {
    with_stats(plugin, |s| {
        if s.loaded_version.as_deref() != Some(version) {
            s.loaded_version = Some(version.to_string());
            s.loaded_at =
                Some(humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string());
        }
    });
}

/// The figures recorded for `plugin`.
pub fn plugin_stats(plugin: &str) -> PluginStats {
    with_stats(plugin, |s| s.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_type_labels_stay_bounded() {
        let m = Metrics::new();
        assert_eq!(m.type_label("payment_made"), "payment_made");
        for odd in ["", "a b", "x\ny", "é", &"t".repeat(65)] {
            assert_eq!(m.type_label(odd), OTHER_TYPE, "{odd:?}");
        }
        for i in 0..MAX_TYPE_LABELS * 2 {
            m.type_label(&format!("invented.{i}"));
        }
        assert_eq!(m.type_labels.lock().unwrap().len(), MAX_TYPE_LABELS);
        // Types seen before the cap keep their label; new ones do not get one.
        assert_eq!(m.type_label("payment_made"), "payment_made");
        assert_eq!(m.type_label("invented.1"), "invented.1");
        assert_eq!(m.type_label("brand.new"), OTHER_TYPE);
    }
}
