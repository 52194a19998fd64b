//! The event a handler receives, with typed access to its JSON body.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{Error, Result};

/// One event, as hookrouter hands it to the plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The router's id for this event.
    pub id: String,
    /// The event type, e.g. `payment_loading_requested`.
    pub event_type: String,
    /// The source's name from `router.toml`.
    pub source: String,
    /// When the router accepted the event, RFC 3339.
    pub received_at: String,
    /// 1 on the first delivery, 2 on the first retry, ...
    pub attempt: u32,
    /// Request headers, names lower-case, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The JSON body, as text (for an Optum event, the whole envelope).
    pub data: String,
}

impl Event {
    /// The body deserialized into `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        Ok(serde_json::from_str(&self.data)?)
    }

    /// The body as a JSON value.
    pub fn data_value(&self) -> Result<Value> {
        self.json()
    }

    /// The part of the body at a JSON pointer (e.g. `/data` for an envelope's
    /// payload), deserialized into `T`.
    pub fn json_at<T: DeserializeOwned>(&self, pointer: &str) -> Result<T> {
        let mut value = self.data_value()?;
        let part = value
            .pointer_mut(pointer)
            .ok_or_else(|| Error::msg(format!("event {} has no {pointer}", self.id)))?;
        Ok(serde_json::from_value(part.take())?)
    }

    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}
