//! The plugin runtime: loads WebAssembly plugins and runs one on one event in a
//! fresh sandbox.
//!
//! Owns: the wasmtime engine (`engine`), the compile threads (`compile`) and the
//! compile cache (`cache`), both ABIs (`component`: WASI 0.2 components of
//! `plugin-sdk/wit/plugin.wit`; `command`: WASI preview 1 commands speaking JSON
//! over stdin/stdout), deadlines that hold inside WASI calls (`deadline`,
//! `poll_oneoff`), the sandbox limits (`sandbox`), action validation and the emit
//! budget of a run (`plugin`), the atomically swapped plugin set (`registry`) and
//! the `run-plugin` command (`cli`).
//! Never: touches the network or the store. Plugins decide; the dispatcher records
//! their actions and the outbox performs the forwards. Nothing outside this module
//! sees a wasmtime type.
//!
//! The dispatcher's whole interface:
//! ```no_run
//! # use hookrouter::plugins::*;
//! # fn f(event: hookrouter::event::Event) -> anyhow::Result<()> {
//! let engine = PluginEngine::new(EngineOptions {
//!     limits: Limits::from_config(1000, 64),
//!     cache_dir: Some("data/plugin-cache".into()),
//!     ..EngineOptions::default()
//! })?;
//! let registry = PluginRegistry::new(engine);
//! registry.load_dir("plugins".as_ref())?;
//! let plugin = registry.require("payment_audit")?;
//! let actions = plugin.run(&event, 1, &Default::default()); // in spawn_blocking
//! // or under a plugin's own limits (`[plugin.NAME] timeout_ms`, `memory_mb`):
//! let limits = Limits { timeout: std::time::Duration::from_millis(200), ..Limits::default() };
//! let actions = plugin.run_with(&event, 1, &Default::default(), &limits);
//! # Ok(()) }
//! ```

mod cache;
pub mod cli;
mod command;
mod compile;
mod component;
mod deadline;
mod engine;
mod error;
mod plugin;
mod poll_oneoff;
mod registry;
mod sandbox;

pub use engine::{EngineOptions, Limits, MAX_HOPS, PluginEngine};
pub use error::PluginError;
pub use plugin::{Plugin, PluginKind};
pub use registry::{PluginRegistry, PluginSet, plugin_name};

/// Cache file of a plugin's compiled form, for tests that check cache hits.
#[doc(hidden)]
pub fn cache_entry_path(
    engine: &PluginEngine,
    dir: &std::path::Path,
    plugin: &Plugin,
) -> std::path::PathBuf {
    let kind = match plugin.kind() {
        PluginKind::Component => "component",
        PluginKind::Command => "module",
    };
    cache::entry_path(&engine.inner.engine, dir, plugin.version(), kind)
}

/// An action as the JSON object of the command ABI's stdout lines (what
/// `run-plugin` prints).
pub fn action_to_json(action: &crate::event::Action) -> serde_json::Value {
    command::action_json(action)
}
