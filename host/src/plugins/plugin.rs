//! `Plugin`: one loaded, validated plugin version, and running it on one event.
//!
//! Owns: the checks every action must pass whatever the ABI, and the concurrency
//! permit around an invocation.
//! Never: performs an action (forwards are the outbox's, emits the store's), or
//! touches the network.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use std::time::Instant;

use super::engine::{Limits, MAX_HOPS, PluginEngine};
use super::error::PluginError;
use super::sandbox::Context;
use super::{command, component};
use crate::event::{Action, Event};

/// Which ABI a plugin speaks, read from its binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginKind {
    /// A WASI 0.2 component exporting the `plugin` world.
    Component,
    /// A WASI preview 1 command module (`_start`, stdin/stdout JSON).
    Command,
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PluginKind::Component => "component",
            PluginKind::Command => "command",
        })
    }
}

pub(crate) enum Runner {
    Component(component::Runner),
    Command(command::Runner),
}

/// A loaded plugin version. Cheap to clone: a delivery that holds one keeps
/// running on that version even if the registry swaps in a new one.
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    version: String,
    kind: PluginKind,
    runner: Runner,
    engine: PluginEngine,
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.inner.name)
            .field("version", &self.short_version())
            .field("kind", &self.inner.kind)
            .finish()
    }
}

impl Plugin {
    pub(crate) fn new(
        name: &str,
        version: String,
        kind: PluginKind,
        runner: Runner,
        engine: PluginEngine,
    ) -> Self {
        Plugin {
            inner: Arc::new(Inner {
                name: name.to_string(),
                version,
                kind,
                runner,
                engine,
            }),
        }
    }

    /// The plugin's name (its file stem).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The SHA-256 of the wasm bytes, hex: the plugin's version.
    pub fn version(&self) -> &str {
        &self.inner.version
    }

    /// The first 12 hex digits of [`Plugin::version`], for display.
    pub fn short_version(&self) -> &str {
        &self.inner.version[..12]
    }

    /// Which ABI the plugin speaks.
    pub fn kind(&self) -> PluginKind {
        self.inner.kind
    }

    /// Runs the plugin on one event in a fresh sandboxed instance, under the
    /// engine's limits, and returns its validated actions. `attempt` is 1-based;
    /// `config` is the plugin's `[plugin.NAME] config` table.
    ///
    /// Blocking: it runs the guest on the calling thread (call it from
    /// `spawn_blocking`), and waits for a free instance slot if all are busy.
    pub fn run(
        &self,
        event: &Event,
        attempt: u32,
        config: &BTreeMap<String, String>,
    ) -> Result<Vec<Action>, PluginError> {
        self.run_with(event, attempt, config, &self.inner.engine.inner.limits)
    }

    /// Like [`Plugin::run`], under `limits` (a plugin's own `timeout_ms` and
    /// `memory_mb`; a memory cap above the engine's pool size is lowered to it).
    ///
    /// The deadline counts from the moment an instance slot is free and holds
    /// whatever the guest does, host calls included: the thread, the slot and the
    /// pool's memory are free again within milliseconds of it.
    pub fn run_with(
        &self,
        event: &Event,
        attempt: u32,
        config: &BTreeMap<String, String>,
        limits: &Limits,
    ) -> Result<Vec<Action>, PluginError> {
        let engine = &self.inner.engine;
        let mut limits = limits.clone();
        limits.memory_bytes = limits.memory_bytes.min(engine.inner.max_memory_bytes);
        let event_id = event.id.to_string();
        let actions = {
            let _permit = engine.inner.permits.acquire();
            let mut tries = 0;
            loop {
                let ctx = Context {
                    plugin: &self.inner.name,
                    event_id: &event_id,
                    limits: &limits,
                    deadline: Instant::now() + limits.timeout,
                };
                let result = match &self.inner.runner {
                    Runner::Component(r) => r.run(engine, &ctx, event, attempt, config),
                    Runner::Command(r) => r.run(engine, &ctx, event, attempt, config),
                };
                // wasmtime builds a module's copy-on-write memory image on its first
                // instantiation, sealing a memfd; the kernel can refuse the seal with
                // EBUSY while it still holds transient page references. That happens
                // before any guest code runs, so the invocation is simply redone
                // (wasmtime caches the image only once it was built).
                match result {
                    Err(e) if tries < 3 && is_transient_memfd_error(&e) => {
                        tries += 1;
                        tracing::warn!(plugin = %self.inner.name, error = %e, "memory image not ready; retrying instantiation");
                        std::thread::sleep(std::time::Duration::from_millis(10 * tries));
                    }
                    other => break other?,
                }
            }
        };
        let ctx = Context {
            plugin: &self.inner.name,
            event_id: &event_id,
            limits: &limits,
            deadline: Instant::now(),
        };
        for action in &actions {
            validate(action).map_err(|reason| ctx.bad_output(reason))?;
        }
        check_emit_budget(&actions, event.hops, &limits)
            .map_err(|reason| ctx.emit_budget(reason))?;
        Ok(actions)
    }
}

/// The caps one run's emits obey: how many, how large, how deep.
fn check_emit_budget(actions: &[Action], hops: u32, limits: &Limits) -> Result<(), String> {
    let mut emits = 0;
    for action in actions {
        if let Action::Emit { event_type, data } = action {
            emits += 1;
            if hops >= MAX_HOPS {
                return Err(format!(
                    "emit {event_type:?} would be hop {}, past the limit of {MAX_HOPS} hops",
                    hops + 1
                ));
            }
            if data.len() > limits.max_emit_bytes {
                return Err(format!(
                    "emit {event_type:?} data is {} bytes, more than server.max_body_bytes ({})",
                    data.len(),
                    limits.max_emit_bytes
                ));
            }
        }
    }
    if emits > limits.max_emits_per_run {
        return Err(format!(
            "{emits} emits in one run, more than plugins.max_emits_per_run ({})",
            limits.max_emits_per_run
        ));
    }
    Ok(())
}

/// The kernel's transient refusal to seal wasmtime's memory-image memfd.
fn is_transient_memfd_error(e: &PluginError) -> bool {
    matches!(e, PluginError::Trap { message, .. } | PluginError::Internal { message, .. }
        if message.contains("seals to the memfd"))
}

/// The rules every action obeys, whatever the ABI.
pub(crate) fn validate(action: &Action) -> Result<(), String> {
    match action {
        Action::Forward { url, headers, .. } => {
            let uri: hyper::Uri = url
                .parse()
                .map_err(|_| format!("forward url {url:?} is not a URL"))?;
            if !matches!(uri.scheme_str(), Some("http" | "https")) {
                return Err(format!("forward url {url:?} is not http or https"));
            }
            if uri.host().is_none_or(str::is_empty) {
                return Err(format!("forward url {url:?} has no host"));
            }
            for (name, value) in headers {
                if hyper::header::HeaderName::from_bytes(name.as_bytes()).is_err()
                    || hyper::header::HeaderValue::from_str(value).is_err()
                {
                    return Err(format!(
                        "forward header {name:?} is not a valid HTTP header"
                    ));
                }
            }
            Ok(())
        }
        Action::Emit { event_type, data } => {
            if event_type.trim().is_empty() {
                return Err("emit has an empty event type".into());
            }
            serde_json::from_str::<serde::de::IgnoredAny>(data)
                .map_err(|e| format!("emit {event_type:?} data is not JSON ({e})"))?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forward(url: &str) -> Action {
        Action::Forward {
            url: url.into(),
            headers: vec![],
            body: String::new(),
        }
    }

    #[test]
    fn validates_actions() {
        assert!(validate(&forward("http://127.0.0.1:9000/audit")).is_ok());
        assert!(validate(&forward("https://hooks.slack.com/x")).is_ok());
        assert!(validate(&forward("ftp://example.com/")).is_err());
        assert!(validate(&forward("not a url")).is_err());
        assert!(validate(&forward("/relative")).is_err());
        // Header names and values must be valid HTTP: no CR/LF smuggling.
        let with_header = |k: &str, v: &str| Action::Forward {
            url: "http://127.0.0.1:9000/".into(),
            headers: vec![(k.into(), v.into())],
            body: String::new(),
        };
        assert!(validate(&with_header("x-trace", "abc")).is_ok());
        for (k, v) in [
            ("x-trace", "a\r\nx-injected: 1"),
            ("x-trace", "line\nbreak"),
            ("bad name", "v"),
            ("", "v"),
        ] {
            let err = validate(&with_header(k, v)).unwrap_err();
            assert!(err.contains("not a valid HTTP header"), "{k:?}: {err}");
        }
        let emit = |t: &str, d: &str| Action::Emit {
            event_type: t.into(),
            data: d.into(),
        };
        assert!(validate(&emit("x", "{\"a\":1}")).is_ok());
        assert!(validate(&emit("", "{}")).is_err());
        assert!(validate(&emit("x", "{oops")).is_err());
    }

    #[test]
    fn emit_budget_caps_count_size_and_hops() {
        let limits = Limits {
            max_emits_per_run: 2,
            max_emit_bytes: 10,
            ..Limits::default()
        };
        let emit = |d: &str| Action::Emit {
            event_type: "t".into(),
            data: d.into(),
        };
        let two = [emit("{}"), forward("http://a/"), emit("[1]")];
        assert_eq!(check_emit_budget(&two, 0, &limits), Ok(()));
        let three = [emit("{}"), emit("{}"), emit("{}")];
        let err = check_emit_budget(&three, 0, &limits).unwrap_err();
        assert!(
            err.contains("3 emits in one run, more than plugins.max_emits_per_run (2)"),
            "{err}"
        );
        let big = [emit("[1,2,3,4,5,6]")];
        let err = check_emit_budget(&big, 0, &limits).unwrap_err();
        assert!(
            err.contains("13 bytes, more than server.max_body_bytes (10)"),
            "{err}"
        );
        assert_eq!(
            check_emit_budget(&[emit("{}")], MAX_HOPS - 1, &limits),
            Ok(())
        );
        let err = check_emit_budget(&[emit("{}")], MAX_HOPS, &limits).unwrap_err();
        assert!(
            err.contains("would be hop 9, past the limit of 8 hops"),
            "{err}"
        );
        // Forwards alone are not emits, at any depth.
        assert_eq!(
            check_emit_budget(&[forward("http://a/")], MAX_HOPS, &limits),
            Ok(())
        );
    }
}
