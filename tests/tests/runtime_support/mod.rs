//! Helpers shared by the runtime tests: where the built plugins are, an engine with
//! small limits, events.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use hookrouter::event::Event;
use hookrouter::plugins::{EngineOptions, Limits, Plugin, PluginEngine};

/// The deadline the hostile tests run under.
pub const TIMEOUT: Duration = Duration::from_millis(300);

/// A test fixture built by `tests/build.rs`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("HOOKROUTER_FIXTURES")).join(format!("{name}.wasm"))
}

/// An example plugin built by `scripts/build-plugins.sh`.
pub fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("HOOKROUTER_PLUGINS")).join(format!("{name}.wasm"))
}

/// The limits of the tests' engine: short deadline, small caps.
pub fn limits() -> Limits {
    Limits {
        timeout: TIMEOUT,
        memory_bytes: 32 << 20,
        max_output_bytes: 256 << 10,
        ..Limits::default()
    }
}

/// An engine with `limits()` and no cache.
pub fn engine() -> PluginEngine {
    PluginEngine::new(EngineOptions {
        limits: limits(),
        max_concurrency: 4,
        ..EngineOptions::default()
    })
    .expect("engine starts")
}

/// Loads a plugin file into `engine`, named after its file.
pub fn load(engine: &PluginEngine, path: &PathBuf) -> Plugin {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let name = path.file_stem().unwrap().to_str().unwrap();
    engine
        .load(name, &bytes)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// An event of this type and body.
pub fn event(event_type: &str, body: serde_json::Value) -> Event {
    Event {
        id: hookrouter::event::EventId::new(),
        source: "optum".into(),
        event_type: event_type.into(),
        external_id: None,
        received_at: SystemTime::now(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_string(),
        hops: 0,
    }
}

/// A config table.
pub fn config(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
    entries
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A JSON body parsed back.
pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}
