//! Actions a handler returns, with builders.

use serde::Serialize;

/// What the plugin asks hookrouter to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// POST `body` to `url` (done by the host's outbox, with retries).
    Forward {
        /// An absolute `http` or `https` URL.
        url: String,
        /// Request headers.
        headers: Vec<(String, String)>,
        /// Request body.
        body: String,
    },
    /// A new event, routed like any other.
    Emit {
        /// Its event type (non-empty).
        event_type: String,
        /// Its body, JSON text.
        data: String,
    },
}

impl Action {
    /// A forward to `url` with no headers and an empty body; add them with
    /// [`Action::header`], [`Action::json`] or [`Action::body`].
    pub fn forward(url: impl Into<String>) -> Self {
        Action::Forward {
            url: url.into(),
            headers: Vec::new(),
            body: String::new(),
        }
    }

    /// A new event of `event_type` whose body is `data` as JSON.
    ///
    /// # Panics
    /// If `data` cannot be serialized (a map with non-string keys, a failing
    /// `Serialize` impl); the delivery then fails and is retried.
    pub fn emit(event_type: impl Into<String>, data: &impl Serialize) -> Self {
        Action::Emit {
            event_type: event_type.into(),
            data: to_json(data),
        }
    }

    /// Adds a header to a forward (an emit has no headers: unchanged).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        if let Action::Forward { headers, .. } = &mut self {
            headers.push((name.into(), value.into()));
        }
        self
    }

    /// Sets a forward's body to `value` as JSON, and its `content-type` to
    /// `application/json` unless one is set (an emit: unchanged).
    ///
    /// # Panics
    /// If `value` cannot be serialized, as [`Action::emit`].
    pub fn json(self, value: &impl Serialize) -> Self {
        let has_type = matches!(&self, Action::Forward { headers, .. }
            if headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-type")));
        let action = self.body(to_json(value));
        if has_type {
            action
        } else {
            action.header("content-type", "application/json")
        }
    }

    /// Sets a forward's body to this text (an emit: unchanged).
    pub fn body(mut self, text: impl Into<String>) -> Self {
        if let Action::Forward { body, .. } = &mut self {
            *body = text.into();
        }
        self
    }
}

fn to_json(value: &impl Serialize) -> String {
    serde_json::to_string(value).expect("hookrouter plugin: value does not serialize to JSON")
}
