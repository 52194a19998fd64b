//! The one `Event` type that travels from the wire to the plugins, and the
//! `Action`s plugins return.
//!
//! Owns: the shape of an event after ingress and of a plugin's decisions.
//! Never: refers to hyper or wasmtime types (ingress and the runtime convert at
//! their edges).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// An event as stored and as handed to plugins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The router's own id for this event (a UUID v7, so ids sort by arrival).
    pub id: String,
    /// The source's name from `router.toml` (`optum`, `github`, ...).
    pub source: String,
    /// The event type read at the source's `type_from`.
    pub event_type: String,
    /// The provider's id for the event, read at `id_from`; used for dedupe.
    pub external_id: Option<String>,
    /// When the router accepted the event.
    pub received_at: SystemTime,
    /// Request headers, names lower-case, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The raw JSON body, exactly as received (or as emitted by a plugin).
    pub body: String,
    /// How many `emit` hops led to this event (0 for an event from the wire).
    pub hops: u32,
}

impl Event {
    /// A fresh, time-ordered event id.
    pub fn new_id() -> String {
        uuid::Uuid::now_v7().to_string()
    }

    /// `received_at` in RFC 3339, with millisecond precision.
    pub fn received_at_rfc3339(&self) -> String {
        humantime::format_rfc3339_millis(self.received_at).to_string()
    }
}

/// What a plugin asks the host to do after handling an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// POST `body` to `url` with `headers`; the host's outbox does the I/O.
    Forward {
        url: String,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// A new event of `event_type` with JSON `data`, routed like any other.
    Emit { event_type: String, data: String },
}

/// Milliseconds since the Unix epoch, the store's time unit.
pub fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The inverse of [`unix_ms`].
pub fn from_unix_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}
