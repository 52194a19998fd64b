//! Cross-field validation: from a [`RawConfig`] to a resolved [`Config`].
//!
//! Owns: rules that relate keys to each other (unknown sources, duplicate names,
//! unset secrets), resolving presets and relative paths, and error positions.
//! Never: touches anything but the text it is given and the `env` function.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::limits::MAX_TIMEOUT_MS;
use super::raw::{RawConfig, SourceName};
use super::{
    Backend, Config, ConfigError, ForwardTarget, Outbox, PluginSettings, Plugins, Retry, Route,
    Server, Source, Store,
};
use crate::net::HostPort;

/// Forwards sent at once when `[outbox] workers` is not set. A forward waits
/// on the network, not on a core (it is an async task, not a thread like a
/// plugin run), so this is not tied to `plugins.workers`: with the 4 of that
/// default, forwards queued behind each other, and at half of the end-to-end
/// capacity the time from `202` to the sink was twice as long (BENCHMARKS.md).
pub(crate) const OUTBOX_WORKERS: usize = 16;

/// Errors carry positions computed from byte offsets into the file's text.
pub(super) struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Ctx<'_> {
    pub(super) fn err(
        &self,
        span: Option<Range<usize>>,
        key: impl Into<String>,
        msg: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: self.path.to_path_buf(),
            position: span
                .filter(|s| s.end > 0)
                .map(|s| line_col(self.text, s.start)),
            key: key.into(),
            message: msg.into(),
        }
    }
}

/// 1-based line and column (in characters) of byte `offset`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

pub(super) fn parse(
    path: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let cx = Ctx { path, text };
    let raw: RawConfig = deserialize(&cx)?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let resolve = |p: &str| -> PathBuf {
        let p = PathBuf::from(p);
        if p.is_absolute() { p } else { base.join(p) }
    };
    let mut warnings = Vec::new();

    if let Some(v) = raw.version.filter(|v| *v != 1) {
        return Err(cx.err(
            None,
            "version",
            format!("unsupported version {v} (this hookrouter reads version 1)"),
        ));
    }

    // [server]
    let addr = |s: &Spanned<String>, key: &str| -> Result<SocketAddr, ConfigError> {
        s.get_ref().parse().map_err(|e| {
            cx.err(
                Some(s.span()),
                key,
                format!("invalid address {:?}: {e} (expected IP:PORT)", s.get_ref()),
            )
        })
    };
    let listen = addr(&raw.server.listen, "server.listen")?;
    let admin_listen = addr(&raw.server.admin_listen, "server.admin_listen")?;
    if listen == admin_listen && listen.port() != 0 {
        return Err(cx.err(
            Some(raw.server.admin_listen.span()),
            "server.admin_listen",
            format!("must differ from server.listen ({listen})"),
        ));
    }
    let positive = |v: u64, key: &str| -> Result<u64, ConfigError> {
        if v == 0 {
            Err(cx.err(None, key, "must be greater than 0"))
        } else {
            Ok(v)
        }
    };
    let server = Server {
        listen,
        admin_listen,
        max_body_bytes: positive(raw.server.max_body_bytes, "server.max_body_bytes")?,
        header_timeout: Duration::from_millis(positive(
            raw.server.header_timeout_ms,
            "server.header_timeout_ms",
        )?),
        body_timeout: Duration::from_millis(positive(
            raw.server.body_timeout_ms,
            "server.body_timeout_ms",
        )?),
        idle_timeout: Duration::from_millis(positive(
            raw.server.idle_timeout_ms,
            "server.idle_timeout_ms",
        )?),
        http2_max_streams: positive(
            raw.server.http2_max_streams.into(),
            "server.http2_max_streams",
        )? as u32,
        max_connections: positive(raw.server.max_connections as u64, "server.max_connections")?
            as usize,
        max_inflight_bytes: positive(raw.server.max_inflight_bytes, "server.max_inflight_bytes")?,
    };
    if server.max_inflight_bytes < server.max_body_bytes {
        return Err(cx.err(
            None,
            "server.max_inflight_bytes",
            format!(
                "{} is below server.max_body_bytes ({}): a body of the largest size could never be read",
                server.max_inflight_bytes, server.max_body_bytes
            ),
        ));
    }

    // [store], [plugins], [outbox]
    let store = store(&cx, &raw.store, &resolve, env)?;
    let p = &raw.plugins;
    let in_range = |v: u64, lo: u64, hi: u64, key: &str| -> Result<u64, ConfigError> {
        if (lo..=hi).contains(&v) {
            Ok(v)
        } else {
            Err(cx.err(None, key, format!("{v} is out of range {lo}..={hi}")))
        }
    };
    let plugin_retry = Retry {
        max_attempts: in_range(p.max_attempts.into(), 1, 1000, "plugins.max_attempts")? as u32,
        base: Duration::from_millis(in_range(
            p.retry_base_ms,
            1,
            3_600_000,
            "plugins.retry_base_ms",
        )?),
    };
    // The compile cache lives beside the SQLite store, or beside router.toml
    // with PostgreSQL (each replica has its own).
    let cache_home = match store.backend {
        Backend::Sqlite => store.path.clone(),
        Backend::Postgres { .. } => resolve("router.toml"),
    };
    let limits = super::limits::plugins(&cx, p, &resolve, &cache_home)?;
    let plugins = Plugins {
        dir: resolve(&p.dir),
        timeout: Duration::from_millis(in_range(
            p.timeout_ms,
            1,
            MAX_TIMEOUT_MS,
            "plugins.timeout_ms",
        )?),
        memory_bytes: in_range(
            p.memory_mb,
            1,
            super::limits::MAX_MEMORY_MB,
            "plugins.memory_mb",
        )? * 1024
            * 1024,
        workers: in_range(p.workers as u64, 1, 256, "plugins.workers")? as usize,
        retry: plugin_retry.clone(),
        max_emits_per_run: limits.max_emits_per_run,
        max_emits_per_event: limits.max_emits_per_event,
        max_plugin_bytes: limits.max_plugin_bytes,
        cache_dir: limits.cache_dir,
    };
    // The outbox inherits the plugin retry keys (and worker count) unless [outbox] sets its own.
    let o = raw.outbox.as_ref();
    let outbox = Outbox {
        timeout: Duration::from_millis(in_range(
            o.and_then(|o| o.timeout_ms).unwrap_or(10_000),
            1,
            MAX_TIMEOUT_MS,
            "outbox.timeout_ms",
        )?),
        workers: in_range(
            o.and_then(|o| o.workers).unwrap_or(OUTBOX_WORKERS) as u64,
            1,
            256,
            "outbox.workers",
        )? as usize,
        retry: Retry {
            max_attempts: in_range(
                o.and_then(|o| o.max_attempts)
                    .unwrap_or(plugin_retry.max_attempts)
                    .into(),
                1,
                1000,
                "outbox.max_attempts",
            )? as u32,
            base: o
                .and_then(|o| o.retry_base_ms)
                .map_or(Ok(plugin_retry.base), |ms| {
                    in_range(ms, 1, 3_600_000, "outbox.retry_base_ms").map(Duration::from_millis)
                })?,
        },
    };

    // [admin]
    let admin_token = match &raw.admin.token_env {
        None => None,
        Some(var) => Some(env(var).filter(|t| !t.is_empty()).ok_or_else(|| {
            cx.err(
                None,
                "admin.token_env",
                format!("environment variable {var} is not set"),
            )
        })?),
    };

    if let Err(why) = super::admin_exposure(server.admin_listen, raw.admin.token_env.is_some()) {
        return Err(cx.err(
            Some(raw.server.admin_listen.span()),
            "server.admin_listen",
            why,
        ));
    }
    let admin_allowed_hosts = match &raw.admin.allowed_hosts {
        None => None,
        Some(list) => Some(
            list.iter()
                .enumerate()
                .map(|(j, h)| {
                    HostPort::parse(h.get_ref()).ok_or_else(|| {
                        cx.err(
                            Some(h.span()),
                            format!("admin.allowed_hosts[{j}]"),
                            format!(
                                "invalid entry {:?}: expected host or host:port",
                                h.get_ref()
                            ),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };

    // [[sources]]
    let mut sources: Vec<Source> = Vec::new();
    let mut seen: HashMap<&SourceName, Range<usize>> = HashMap::new();
    for (i, s) in raw.sources.iter().enumerate() {
        if let Some(first) = seen.get(s.name.get_ref()) {
            let (line, _) = line_col(text, first.start);
            return Err(cx.err(
                Some(s.name.span()),
                format!("sources[{i}].name"),
                format!("duplicate source {:?} (already defined at line {line}): two sources on one path", s.name.get_ref().as_str()),
            ));
        }
        seen.insert(s.name.get_ref(), s.name.span());
        sources.push(super::source::source(&cx, i, s, env, &mut warnings)?);
    }

    // [[routes]]
    let mut routes = Vec::new();
    for (i, r) in raw.routes.iter().enumerate() {
        if let Some(m) = &r.content_match {
            return Err(cx.err(
                Some(m.span()),
                format!("routes[{i}].match"),
                "content filters are not supported yet; route on event type and source",
            ));
        }
        if r.events.get_ref().is_empty() {
            return Err(cx.err(
                Some(r.events.span()),
                format!("routes[{i}].events"),
                "must name at least one event pattern",
            ));
        }
        if r.plugins.get_ref().is_empty() {
            return Err(cx.err(
                Some(r.plugins.span()),
                format!("routes[{i}].plugins"),
                "must name at least one plugin",
            ));
        }
        let source = match &r.source {
            None => None,
            Some(name) => match sources.iter().find(|s| s.name.as_str() == name.get_ref()) {
                Some(s) => Some(s.name.clone()),
                None => {
                    return Err(cx.err(
                        Some(name.span()),
                        format!("routes[{i}].source"),
                        format!("unknown source {:?}", name.get_ref()),
                    ));
                }
            },
        };
        routes.push(Route {
            events: r.events.get_ref().clone(),
            source,
            plugins: r
                .plugins
                .get_ref()
                .iter()
                .map(|p| p.get_ref().clone())
                .collect(),
        });
    }

    // [plugin.NAME]
    let mut plugin_settings = BTreeMap::new();
    for (name, settings) in &raw.plugin {
        let key = format!("plugin.{}", name.get_ref());
        let mut config = BTreeMap::new();
        for (k, v) in &settings.config {
            let value = match v.get_ref() {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(n) => n.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => {
                    return Err(cx.err(
                        Some(v.span()),
                        format!("{key}.config.{k}"),
                        format!(
                            "must be a string, number or boolean, not {}",
                            other.type_str()
                        ),
                    ));
                }
            };
            config.insert(k.clone(), value);
        }
        let mut allow_forward = Vec::new();
        for (j, host) in settings.allow_forward.iter().enumerate() {
            let h = host.get_ref();
            let Some(target) = ForwardTarget::parse(h) else {
                return Err(cx.err(
                    Some(host.span()),
                    format!("{key}.allow_forward[{j}]"),
                    format!("invalid entry {h:?}: expected host or host:port"),
                ));
            };
            allow_forward.push(target);
        }
        let limits = super::limits::plugin(&cx, &key, settings, plugins.workers)?;
        if !routes.iter().any(|r| r.plugins.contains(name.get_ref())) {
            warnings.push(format!(
                "{key}: no route names plugin {:?}",
                name.get_ref().as_str()
            ));
        }
        plugin_settings.insert(
            name.get_ref().clone(),
            PluginSettings {
                config,
                allow_forward,
                timeout: limits.timeout,
                memory_bytes: limits.memory_bytes,
                concurrency: limits.concurrency,
                allow_private_network: settings.allow_private_network,
            },
        );
    }

    Ok(Config {
        path: path.to_path_buf(),
        server,
        store,
        plugins,
        outbox,
        admin_token_env: raw.admin.token_env.clone(),
        admin_token,
        admin_allowed_hosts,
        sources,
        routes,
        plugin_settings,
        warnings,
    })
}

/// Parses the TOML, keeping the path of the key at fault and its position.
fn deserialize(cx: &Ctx<'_>) -> Result<RawConfig, ConfigError> {
    let de = toml::Deserializer::parse(cx.text)
        .map_err(|e| cx.err(e.span(), "", e.message().to_string()))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        // `Spanned` wraps values in a private field; it is no part of the user's key.
        let key = e
            .path()
            .to_string()
            .replace(".$__serde_spanned_private_value", "");
        let inner = e.into_inner();
        let key = if key == "." { String::new() } else { key };
        cx.err(inner.span(), key, inner.message().to_string())
    })
}

/// `[store]`: the backend, its keys, and retention.
fn store(
    cx: &Ctx<'_>,
    raw: &super::raw::RawStore,
    resolve: &dyn Fn(&str) -> PathBuf,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Store, ConfigError> {
    let duration = |s: &Spanned<String>, key: &str| -> Result<Duration, ConfigError> {
        humantime::parse_duration(s.get_ref()).map_err(|e| {
            cx.err(
                Some(s.span()),
                key,
                format!(
                    "invalid duration {:?}: {e} (expected e.g. \"7d\", \"12h\", \"30s\")",
                    s.get_ref()
                ),
            )
        })
    };
    let retention = duration(&raw.retention, "store.retention")?;
    if retention.is_zero() {
        return Err(cx.err(
            Some(raw.retention.span()),
            "store.retention",
            "must be greater than 0 (finished events would be deleted at once; use a long retention such as \"3650d\" to keep them)",
        ));
    }
    let dedupe_horizon = duration(&raw.dedupe_horizon, "store.dedupe_horizon")?;
    if dedupe_horizon < retention {
        return Err(cx.err(
            Some(raw.dedupe_horizon.span()),
            "store.dedupe_horizon",
            format!(
                "must be at least store.retention ({}), so a retry of a kept event is always a duplicate",
                raw.retention.get_ref()
            ),
        ));
    }
    if raw.max_backlog == 0 {
        return Err(cx.err(None, "store.max_backlog", "must be greater than 0"));
    }
    let backend = match raw.backend.get_ref().as_str() {
        "sqlite" => {
            if let Some(u) = &raw.url_env {
                return Err(cx.err(
                    Some(u.span()),
                    "store.url_env",
                    "only applies to backend = \"postgres\"",
                ));
            }
            Backend::Sqlite
        }
        "postgres" => {
            if let Some(p) = &raw.path {
                return Err(cx.err(
                    Some(p.span()),
                    "store.path",
                    "only applies to backend = \"sqlite\" (PostgreSQL is reached through store.url_env)",
                ));
            }
            let (var, span) = match &raw.url_env {
                Some(v) => (v.get_ref().clone(), Some(v.span())),
                None => (
                    "HOOKROUTER_DATABASE_URL".to_string(),
                    Some(raw.backend.span()),
                ),
            };
            let url = env(&var).filter(|u| !u.is_empty()).ok_or_else(|| {
                cx.err(
                    span.clone(),
                    "store.url_env",
                    format!("environment variable {var} is not set (postgres://user:password@host:5432/db)"),
                )
            })?;
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(cx.err(
                    span,
                    "store.url_env",
                    format!("{var} does not hold a postgres:// URL"),
                ));
            }
            Backend::Postgres { url_env: var, url }
        }
        other => {
            return Err(cx.err(
                Some(raw.backend.span()),
                "store.backend",
                format!("unknown backend {other:?} (expected \"sqlite\" or \"postgres\")"),
            ));
        }
    };
    Ok(Store {
        backend,
        path: resolve(
            raw.path
                .as_ref()
                .map_or("data/hookrouter.db", |p| p.get_ref().as_str()),
        ),
        max_backlog: raw.max_backlog,
        retention,
        dedupe_horizon,
    })
}
