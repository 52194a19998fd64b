//! The one `Event` type that travels from the wire to the plugins, and the
//! `Action`s plugins return.
//!
//! Owns: the shape of an event after ingress and of a plugin's decisions.
//! Never: refers to hyper or wasmtime types (ingress and the runtime convert at
//! their edges).

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The router's own id of an event: a UUID v7, so ids sort by arrival time.
/// Printed and parsed in the hyphenated form (`0192f0c4-…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId(uuid::Uuid);

impl EventId {
    /// A fresh, time-ordered id.
    pub fn new() -> EventId {
        EventId(uuid::Uuid::now_v7())
    }

    /// The id as a UUID (for stores with a native UUID type).
    pub fn as_uuid(&self) -> uuid::Uuid {
        self.0
    }

    /// The smallest v7 id of events received at `t` or later: ids compare like
    /// their arrival times, so a time bound becomes an id bound.
    pub fn floor_at(t: SystemTime) -> EventId {
        let ms = unix_ms(t).max(0) as u64;
        let mut bytes = [0u8; 16];
        bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
        EventId(uuid::Uuid::from_bytes(bytes))
    }
}

impl Default for EventId {
    fn default() -> Self {
        EventId::new()
    }
}

impl From<uuid::Uuid> for EventId {
    fn from(u: uuid::Uuid) -> Self {
        EventId(u)
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

/// Text that is not an event id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid event id {0:?} (expected a UUID such as 0192f0c4-7b1a-7c3e-9a5d-3f2b1c0d4e5f)")]
pub struct BadEventId(pub String);

impl FromStr for EventId {
    type Err = BadEventId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::try_parse(s)
            .map(EventId)
            .map_err(|_| BadEventId(s.chars().take(64).collect()))
    }
}

impl serde::Serialize for EventId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for EventId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An event as stored and as handed to plugins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The router's own id for this event.
    pub id: EventId,
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
