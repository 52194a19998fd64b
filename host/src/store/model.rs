//! What crosses the store traits: new events and their routing, leased work,
//! outcomes, selections for replay and purge, and query answers.
//!
//! Owns: the shapes every backend reads and returns, and their JSON form in the
//! admin API (`Serialize`).
//! Never: names a driver type; backends convert at their edge.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::ids::{DeadId, DeliveryId, EventId, ForwardId};
use crate::event::Event;

/// Why the store could not do what was asked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// More requests are queued than the backlog limit; the sender should retry.
    #[error("store backlog is full ({0} requests queued)")]
    Busy(usize),
    /// The disk (or the database's quota) is full: nothing new is stored until
    /// space returns.
    #[error("store is out of space: {0}")]
    Full(String),
    /// The database failed, is unreachable, or the writer is gone.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    /// Seconds a sender should wait before trying again (`Retry-After`).
    pub fn retry_after_secs(&self) -> u32 {
        match self {
            StoreError::Busy(_) => 1,
            StoreError::Full(_) => 30,
            StoreError::Unavailable(_) => 5,
        }
    }
}

/// An event to store, with the plugins its routes chose.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event: Event,
    pub plugins: Vec<String>,
}

/// What ingest did with an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingested {
    /// Stored, with this many deliveries.
    Stored { id: EventId, deliveries: usize },
    /// An event with the same source and external id was already stored (or
    /// was, within the dedupe horizon).
    Duplicate { id: EventId },
}

/// Proof of a lease: outcomes carry it, and a backend records an outcome only
/// while the lease it names is still the current one, so a late outcome never
/// overwrites a newer attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeaseToken(pub(crate) i64);

impl LeaseToken {
    /// A fresh token (random: tokens of different replicas never collide in practice).
    pub fn new() -> LeaseToken {
        LeaseToken(fastrand::i64(1..i64::MAX))
    }
}

impl Default for LeaseToken {
    fn default() -> Self {
        LeaseToken::new()
    }
}

/// Which due deliveries to lease: up to `limit` of each named plugin, tried in
/// the order given (the dispatcher decides the order and the shares).
#[derive(Debug, Clone)]
pub struct DeliveryClaim {
    pub plugins: Vec<(String, usize)>,
    pub lease: Duration,
}

/// A delivery leased to a worker.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub id: DeliveryId,
    pub token: LeaseToken,
    pub plugin: String,
    /// Attempts already made before this one.
    pub attempts: u32,
    pub event: Arc<Event>,
}

/// A forward leased to an outbox worker.
#[derive(Debug, Clone)]
pub struct ClaimedForward {
    pub id: ForwardId,
    pub token: LeaseToken,
    pub event_id: EventId,
    pub plugin: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub attempts: u32,
}

/// A forward requested by a plugin. `refused` holds why it may not be sent
/// (the forward policy refused it): it is stored dead, never sent.
#[derive(Debug, Clone)]
pub struct NewForward {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub refused: Option<String>,
}

/// A new event produced by a plugin's `emit`, already routed. Its parent is
/// the event of the delivery whose outcome carries it.
#[derive(Debug, Clone)]
pub struct Emitted {
    pub event: Event,
    pub plugins: Vec<String>,
}

/// One attempt's timing, recorded in the attempt history.
#[derive(Debug, Clone, Copy)]
pub struct AttemptTiming {
    pub started_at: SystemTime,
    pub duration: Duration,
}

/// How a delivery ended this time.
#[derive(Debug, Clone)]
pub enum DeliveryOutcome {
    /// The plugin succeeded; its effects are stored with the outcome, atomically.
    /// The emitted events count against the root event's budget of
    /// `max_emits` descendants: if they would exceed it, nothing is stored
    /// and the delivery is dead-lettered as `emit_budget` instead.
    Done {
        version: String,
        forwards: Vec<NewForward>,
        emitted: Vec<Emitted>,
        max_emits: u32,
        timing: AttemptTiming,
    },
    /// It failed; retry at `retry_at` (unix ms), or dead-letter when `None`.
    /// `kind` is the failure's stable name (`timeout`, `trap`, ...).
    Failed {
        error: String,
        kind: &'static str,
        version: Option<String>,
        retry_at: Option<i64>,
        timing: AttemptTiming,
    },
    /// Give the delivery back without spending an attempt (shutdown, plugin gone).
    Release { due_at: i64 },
}

/// How a forward ended this time.
#[derive(Debug, Clone)]
pub enum ForwardOutcome {
    Sent {
        status: u16,
        timing: AttemptTiming,
    },
    Failed {
        error: String,
        status: Option<u16>,
        retry_at: Option<i64>,
        timing: AttemptTiming,
    },
    Release,
}

/// What recording an outcome did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finished {
    /// Recorded as asked.
    Recorded,
    /// The lease was no longer current (it expired and another worker or
    /// replica took the work, or a replay reset it): nothing was written.
    Stale,
    /// The emits would have taken the root event past its budget: the delivery
    /// was dead-lettered as `emit_budget`, and nothing else was stored.
    EmitBudget { used: u32, wanted: u32, budget: u32 },
}

/// Which deliveries and forwards a replay or purge acts on.
#[derive(Debug, Clone)]
pub enum Selection {
    /// These entries. A replay makes each pending again with fresh attempts,
    /// whatever its state (a done delivery runs again); a purge deletes dead ones.
    Ids(Vec<DeadId>),
    /// Every dead entry last attempted before `older_than` (all when `None`).
    Dead { older_than: Option<SystemTime> },
    /// The dead entries of the events that match a filter.
    Events(EventFilter),
}

/// What a purge deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Purged {
    /// Dead deliveries and forwards deleted.
    pub entries: usize,
    /// Events deleted with them (those with nothing else pending or dead).
    pub events: usize,
}

/// What one pruning round deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Pruned {
    pub events: usize,
    /// Dedupe records past the horizon.
    pub dedupe: usize,
}

/// How long finished events and dedupe records are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub retention: Duration,
    pub dedupe_horizon: Duration,
    /// Events per transaction.
    pub batch: usize,
}

/// An event's worst state, for listings and filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventStatus {
    /// Something of it is dead.
    Dead,
    /// Nothing dead, something pending.
    Pending,
    /// Every delivery and forward is done.
    Done,
    /// It matched no route: no delivery at all.
    Unrouted,
}

impl EventStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Dead => "dead",
            EventStatus::Pending => "pending",
            EventStatus::Done => "done",
            EventStatus::Unrouted => "unrouted",
        }
    }

    /// The status named `s` in a query.
    pub fn parse(s: &str) -> Option<EventStatus> {
        [
            EventStatus::Dead,
            EventStatus::Pending,
            EventStatus::Done,
            EventStatus::Unrouted,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// Filters of `GET /admin/events`; every field narrows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub source: Option<String>,
    pub event_type: Option<String>,
    pub status: Option<EventStatus>,
    /// Full-text search in the body.
    pub q: Option<String>,
    pub since: Option<SystemTime>,
    pub until: Option<SystemTime>,
}

impl EventFilter {
    /// The words of `q`, as every backend searches them: runs of letters and
    /// digits (anything else separates words). An event matches when its body
    /// holds every word as a whole word, in any case and order.
    pub fn words(&self) -> Vec<&str> {
        self.q.as_deref().map_or_else(Vec::new, search_words)
    }
}

/// The words of a search text (see [`EventFilter::words`]).
pub fn search_words(q: &str) -> Vec<&str> {
    q.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect()
}

/// A page of a listing, newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// Events strictly older than this one (the previous page's last).
    pub before: Option<EventId>,
    pub limit: usize,
}

/// One event in a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventSummary {
    pub id: EventId,
    pub source: String,
    pub event_type: String,
    pub external_id: Option<String>,
    /// RFC 3339.
    pub received_at: String,
    pub status: EventStatus,
    pub parent_id: Option<EventId>,
    pub hops: u32,
}

/// One attempt of a delivery or forward.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttemptRecord {
    /// 1-based.
    pub attempt: u32,
    /// RFC 3339.
    pub at: String,
    pub duration_ms: u64,
    /// `ok`, `sent`, or the failure's kind (`timeout`, `trap`, `http`, ...).
    pub outcome: String,
    pub error: Option<String>,
    /// The plugin version that ran (deliveries).
    pub version: Option<String>,
    /// The target's HTTP status (forwards).
    pub status: Option<u16>,
}

/// A delivery with its attempt history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryRecord {
    pub id: DeliveryId,
    pub plugin: String,
    /// `pending`, `done` or `dead`.
    pub state: String,
    /// A worker holds it right now (it is running, or claimed to run next).
    pub leased: bool,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub version: Option<String>,
    pub history: Vec<AttemptRecord>,
}

/// A forward with its attempt history. `url` is as the plugin gave it; admin
/// views redact it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ForwardRecord {
    pub id: ForwardId,
    pub delivery_id: DeliveryId,
    pub plugin: String,
    pub url: String,
    pub state: String,
    /// An outbox worker holds it right now.
    pub leased: bool,
    pub attempts: u32,
    pub status: Option<u16>,
    pub last_error: Option<String>,
    pub history: Vec<AttemptRecord>,
}

/// An event with everything that happened to it.
#[derive(Debug, Clone)]
pub struct EventDetail {
    pub event: Event,
    pub status: EventStatus,
    pub parent_id: Option<EventId>,
    /// Events its deliveries emitted.
    pub children: Vec<EventId>,
    pub deliveries: Vec<DeliveryRecord>,
    pub forwards: Vec<ForwardRecord>,
}

/// A dead delivery or forward.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadEntry {
    pub id: DeadId,
    /// `delivery` (a plugin gave up) or `forward` (the outbox gave up).
    pub kind: &'static str,
    pub event_id: EventId,
    pub source: String,
    pub event_type: String,
    pub plugin: String,
    /// The forward's URL, for `forward` entries (admin views redact it).
    pub target: Option<String>,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// Unix milliseconds of the last attempt.
    pub updated_at: i64,
}

/// Filters of dead-letter listings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadFilter {
    pub plugin: Option<String>,
    pub source: Option<String>,
    pub event_type: Option<String>,
    /// Last attempted before this.
    pub older_than: Option<SystemTime>,
}

/// Rows by table and state, and the store's size.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct StoreCounts {
    pub events: u64,
    pub deliveries_pending: u64,
    pub deliveries_done: u64,
    pub deliveries_dead: u64,
    pub forwards_pending: u64,
    pub forwards_done: u64,
    pub forwards_dead: u64,
    /// Dead deliveries by plugin (for the per-plugin gauge).
    pub dead_by_plugin: Vec<(String, u64)>,
    /// Rows per table, for `hookrouter_store_rows{table}`.
    pub rows: Vec<(String, u64)>,
    /// Bytes per file (SQLite) or relation (PostgreSQL), for `hookrouter_store_bytes{file}`.
    pub bytes: Vec<(String, u64)>,
}

/// Pending work: deliveries and forwards not finished yet.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Backlog {
    pub deliveries: u64,
    pub forwards: u64,
}

/// Whether the store takes new events, for `/readyz`.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Health {
    pub ready: bool,
    /// Why not, when not.
    pub reason: Option<String>,
    /// Requests queued for the store right now.
    pub backlog: usize,
    /// Free bytes on the store's file system (SQLite).
    pub free_disk_bytes: Option<u64>,
}
