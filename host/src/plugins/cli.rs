//! `hookrouter run-plugin PLUGIN.wasm --event FILE [--set KEY=VALUE]...`: the plugin
//! author's loop. Runs one plugin on one event and prints its actions as JSON lines.
//!
//! Owns: turning an event file into an `Event` and printing actions.
//! Never: performs the actions (no forward is sent, no event stored).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

use anyhow::{Context as _, bail};

use super::{EngineOptions, PluginEngine, action_to_json, plugin_name};
use crate::event::Event;

/// Runs `wasm` on the event in `event_file` (a raw JSON body or an envelope whose
/// `/type` names the event type; `-` reads stdin) with `sets` as its config, and
/// prints each action as a JSON line on stdout.
pub fn run_plugin_command(
    wasm: &Path,
    event_file: &Path,
    sets: &[(String, String)],
) -> anyhow::Result<()> {
    let actions = run_plugin(wasm, event_file, sets)?;
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
) -> anyhow::Result<Vec<crate::event::Action>> {
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
    let engine = PluginEngine::new(EngineOptions {
        max_concurrency: 1,
        ..EngineOptions::default()
    })?;
    let plugin = engine
        .load(&name, &bytes)
        .with_context(|| format!("cannot load {}", wasm.display()))?;
    let config: BTreeMap<String, String> = sets.iter().cloned().collect();
    Ok(plugin.run(&event, 1, &config)?)
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
