//! Native unit testing of handlers: build events with [`TestEvent`] and set the
//! values [`crate::config`] returns with [`set_config`]. No wasm involved.

use std::cell::RefCell;
use std::collections::BTreeMap;

use serde::Serialize;

use crate::Event;

thread_local! {
    static CONFIG: RefCell<BTreeMap<String, String>> = const { RefCell::new(BTreeMap::new()) };
}

/// Sets the config entries [`crate::config`] returns on this thread (natively),
/// until the returned guard is dropped.
#[must_use = "the config is cleared when the guard is dropped"]
pub fn set_config<K: Into<String>, V: Into<String>>(
    entries: impl IntoIterator<Item = (K, V)>,
) -> ConfigGuard {
    let map = entries
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    CONFIG.with(|c| *c.borrow_mut() = map);
    ConfigGuard(())
}

/// Clears the test config when dropped.
#[derive(Debug)]
pub struct ConfigGuard(());

impl Drop for ConfigGuard {
    fn drop(&mut self) {
        CONFIG.with(|c| c.borrow_mut().clear());
    }
}

#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) fn config_value(key: &str) -> Option<String> {
    CONFIG.with(|c| c.borrow().get(key).cloned())
}

/// Builds an [`Event`] for a test.
#[derive(Debug, Clone)]
pub struct TestEvent(Event);

impl TestEvent {
    /// An event of this type, id `test-event`, source `test`, attempt 1, body `{}`.
    pub fn new(event_type: impl Into<String>) -> Self {
        TestEvent(Event {
            id: "test-event".into(),
            event_type: event_type.into(),
            source: "test".into(),
            received_at: "2025-01-01T00:00:00.000Z".into(),
            attempt: 1,
            headers: Vec::new(),
            data: "{}".into(),
        })
    }

    /// Sets the body to `value` as JSON.
    pub fn data(mut self, value: &impl Serialize) -> Self {
        self.0.data = serde_json::to_string(value).expect("test data serializes");
        self
    }

    /// Sets the body to this text.
    pub fn raw_data(mut self, text: impl Into<String>) -> Self {
        self.0.data = text.into();
        self
    }

    /// Sets the id.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.0.id = id.into();
        self
    }

    /// Sets the source.
    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.0.source = source.into();
        self
    }

    /// Sets the attempt number.
    pub fn attempt(mut self, attempt: u32) -> Self {
        self.0.attempt = attempt;
        self
    }

    /// Adds a header (the name is lower-cased, as the router does).
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.0
            .headers
            .push((name.to_ascii_lowercase(), value.into()));
        self
    }

    /// The event.
    pub fn build(self) -> Event {
        self.0
    }
}
