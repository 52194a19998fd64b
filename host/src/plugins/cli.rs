//! `hookrouter run-plugin PLUGIN.wasm --event FILE [--set KEY=VALUE]... [--timeout-ms
//! MS] [--config router.toml]`: the plugin author's loop. Runs one plugin on one
//! event and prints its actions as JSON lines.
//!
//! Owns: turning an event file into an `Event`, the run's limits, and printing
//! actions.
//! Never: performs the actions (no forward is sent, no event stored).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, bail};

use super::engine::too_large;
use super::{EngineOptions, Limits, PluginEngine, action_to_json, plugin_name};
use crate::config::Config;
use crate::event::Event;

/// What a `run-plugin` run obeys besides the plugin and the event.
#[derive(Debug, Default, Clone)]
pub struct RunOptions<'a> {
    /// `--config`: the plugin's limits (`[plugin.NAME]`, else `[plugins]`) and
    /// its `config` table, under the `--set` entries.
    pub config: Option<&'a Config>,
    /// `--timeout-ms`, over any config.
    pub timeout: Option<Duration>,
}

/// Runs `wasm` on the event in `event_file` (a raw JSON body or an envelope whose
/// `/type` names the event type; `-` reads stdin) with `sets` as its config, and
/// prints each action as a JSON line on stdout. The deadline is `--timeout-ms`,
/// else the plugin's `timeout_ms` in `--config`, else 1000 ms, as under `serve`.
pub fn run_plugin_command(
    wasm: &Path,
    event_file: &Path,
    sets: &[(String, String)],
    options: &RunOptions<'_>,
) -> anyhow::Result<()> {
    let actions = run_plugin(wasm, event_file, sets, options)?;
    let mut out = std::io::stdout().lock();
    for action in &actions {
        writeln!(out, "{}", action_to_json(action))?;
    }
    out.flush()?;
    Ok(())
}

/// `run_plugin_command` without the printing.
pub fn run_plugin(
    wasm: &Path,
    event_file: &Path,
    sets: &[(String, String)],
    options: &RunOptions<'_>,
) -> anyhow::Result<Vec<crate::event::Action>> {
    let max_bytes = options
        .config
        .map_or(EngineOptions::default().max_plugin_bytes, |c| {
            c.plugins.max_plugin_bytes
        });
    let size = std::fs::metadata(wasm)
        .with_context(|| format!("cannot read plugin {}", wasm.display()))?
        .len();
    if size > max_bytes {
        bail!(
            "cannot load {}: {}; it was not read",
            wasm.display(),
            too_large(size, max_bytes)
        );
    }
    let bytes =
        std::fs::read(wasm).with_context(|| format!("cannot read plugin {}", wasm.display()))?;
    let name = plugin_name(wasm)
        .or_else(|| {
            wasm.file_stem()
                .and_then(|s| s.to_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "plugin".into());
    let event = event_from_file(event_file)?;
    let mut limits = options
        .config
        .map_or_else(Limits::default, |c| crate::plugin_limits(c, &name));
    if let Some(timeout) = options.timeout {
        limits.timeout = timeout;
    }
    let engine = PluginEngine::new(EngineOptions {
        limits: limits.clone(),
        max_concurrency: 1,
        max_plugin_bytes: max_bytes,
        compile_threads: Some(1),
        ..EngineOptions::default()
    })?;
    let plugin = engine
        .load(&name, &bytes)
        .with_context(|| format!("cannot load {}", wasm.display()))?;
    let mut config: BTreeMap<String, String> = options
        .config
        .and_then(|c| c.settings(&name))
        .map(|s| s.config.clone())
        .unwrap_or_default();
    config.extend(sets.iter().cloned());
    Ok(plugin.run_with(&event, 1, &config, &limits)?)
}

/// Parses `KEY=VALUE` (for clap's `value_parser`).
pub fn parse_set(arg: &str) -> Result<(String, String), String> {
    match arg.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("--set expects KEY=VALUE, got {arg:?}")),
    }
}

fn event_from_file(path: &Path) -> anyhow::Result<Event> {
    let body = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("cannot read the event from stdin")?
    } else {
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read event file {}", path.display()))?
    };
    let json: serde_json::Value = match serde_json::from_str(&body) {
        Ok(json) => json,
        Err(e) => bail!("event file {} is not JSON: {e}", path.display()),
    };
    let event_type = json
        .pointer("/type")
        .and_then(|t| t.as_str())
        .unwrap_or("test")
        .to_string();
    let external_id = ["/causationId", "/id"]
        .iter()
        .find_map(|p| json.pointer(p).and_then(|v| v.as_str()))
        .map(str::to_string);
    Ok(Event {
        id: crate::event::EventId::new(),
        source: "cli".into(),
        event_type,
        external_id,
        received_at: SystemTime::now(),
        headers: vec![("content-type".into(), "application/json".into())],
        body,
        hops: 0,
    })
}
