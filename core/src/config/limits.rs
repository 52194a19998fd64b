//! The containment keys of `[plugins]` and `[plugin.NAME]`: emit caps, the
//! plugin-file size cap, the compile cache folder, and each plugin's own deadline,
//! memory cap and share of the workers.
//!
//! Owns: the ranges of these keys and their defaults.
//! Never: reads the environment or the filesystem.

use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::ConfigError;
use super::raw::{RawPluginSettings, RawPlugins};
use super::validate::Ctx;

/// Longest deadline a plugin may be given (10 minutes).
pub(super) const MAX_TIMEOUT_MS: u64 = 10 * 60 * 1000;

/// Largest memory cap of one instance (4 GiB, a 32-bit memory's limit).
pub(super) const MAX_MEMORY_MB: u64 = 4096;

/// The `[plugins]` containment keys, validated.
pub(super) struct PluginsLimits {
    pub max_emits_per_run: u32,
    pub max_emits_per_event: u32,
    pub max_plugin_bytes: u64,
    pub cache_dir: PathBuf,
}

/// A value of `key` within `lo..=hi`, or an error at its position.
fn in_range(
    cx: &Ctx<'_>,
    value: &Spanned<u64>,
    lo: u64,
    hi: u64,
    key: &str,
) -> Result<u64, ConfigError> {
    let v = *value.get_ref();
    if (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        Err(cx.err(
            Some(value.span()),
            key,
            format!("{v} is out of range {lo}..={hi}"),
        ))
    }
}

/// `plugins.max_emits_per_run`, `max_emits_per_event`, `max_plugin_bytes` and
/// `cache_dir` (relative to the config's folder; by default `plugin-cache/`
/// beside `beside`: the SQLite store, or `router.toml` with PostgreSQL).
pub(super) fn plugins(
    cx: &Ctx<'_>,
    p: &RawPlugins,
    resolve: &dyn Fn(&str) -> PathBuf,
    beside: &Path,
) -> Result<PluginsLimits, ConfigError> {
    let cache_dir = match &p.cache_dir {
        Some(dir) if dir.trim().is_empty() => {
            return Err(cx.err(None, "plugins.cache_dir", "must not be empty"));
        }
        Some(dir) => resolve(dir),
        None => beside
            .parent()
            .map_or_else(|| PathBuf::from("plugin-cache"), |d| d.join("plugin-cache")),
    };
    Ok(PluginsLimits {
        max_emits_per_run: in_range(
            cx,
            &p.max_emits_per_run,
            0,
            10_000,
            "plugins.max_emits_per_run",
        )? as u32,
        max_emits_per_event: in_range(
            cx,
            &p.max_emits_per_event,
            0,
            10_000_000,
            "plugins.max_emits_per_event",
        )? as u32,
        max_plugin_bytes: in_range(
            cx,
            &p.max_plugin_bytes,
            1024,
            1 << 30,
            "plugins.max_plugin_bytes",
        )?,
        cache_dir,
    })
}

/// One plugin's own limits, validated.
pub(super) struct PluginLimits {
    pub timeout: Option<Duration>,
    pub memory_bytes: Option<u64>,
    pub concurrency: Option<usize>,
}

/// `[plugin.NAME]` `timeout_ms`, `memory_mb` and `concurrency` (at most
/// `plugins.workers`).
pub(super) fn plugin(
    cx: &Ctx<'_>,
    key: &str,
    s: &RawPluginSettings,
    workers: usize,
) -> Result<PluginLimits, ConfigError> {
    let timeout = s
        .timeout_ms
        .as_ref()
        .map(|t| in_range(cx, t, 1, MAX_TIMEOUT_MS, &format!("{key}.timeout_ms")))
        .transpose()?
        .map(Duration::from_millis);
    let memory_bytes = s
        .memory_mb
        .as_ref()
        .map(|m| in_range(cx, m, 1, MAX_MEMORY_MB, &format!("{key}.memory_mb")))
        .transpose()?
        .map(|mb| mb << 20);
    let concurrency = match &s.concurrency {
        None => None,
        Some(c) if *c.get_ref() as usize > workers => {
            return Err(cx.err(
                Some(c.span()),
                format!("{key}.concurrency"),
                format!(
                    "{} is more than plugins.workers ({workers}): a plugin cannot hold more workers than there are",
                    c.get_ref()
                ),
            ));
        }
        Some(c) => {
            Some(in_range(cx, c, 1, workers as u64, &format!("{key}.concurrency"))? as usize)
        }
    };
    Ok(PluginLimits {
        timeout,
        memory_bytes,
        concurrency,
    })
}
