//! `router.toml`: loading, validation, and the resolved [`Config`] the router runs on.
//!
//! Owns: turning a file (and the secrets named in it, read from the environment)
//! into a `Config` where every cross-field rule holds, and errors that quote the
//! file, line, column and key at fault.
//! Never: opens sockets or the store; nothing here has side effects beyond reading
//! the file and the environment.

mod limits;
mod raw;
mod source;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use raw::{EventPattern, PluginName, SourceName};

pub use crate::forward_policy::ForwardTarget;
use crate::forward_policy::Policy;
use crate::net::HostPort;

use crate::source::presets::Extractor;
use crate::source::verify::Verifier;

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was read from.
    pub path: PathBuf,
    pub server: Server,
    pub store: Store,
    pub plugins: Plugins,
    pub outbox: Outbox,
    /// Environment variable holding the admin API's bearer token, if any.
    pub admin_token_env: Option<String>,
    pub admin_token: Option<String>,
    /// `[admin] allowed_hosts`; `None`: the listener's address, `localhost` and
    /// `127.0.0.1`, each with the listener's port.
    pub admin_allowed_hosts: Option<Vec<HostPort>>,
    pub sources: Vec<Source>,
    pub routes: Vec<Route>,
    pub plugin_settings: BTreeMap<PluginName, PluginSettings>,
    /// Things worth a user's attention that do not stop the router.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub max_body_bytes: u64,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    /// An HTTP connection with no request in flight is closed after this.
    pub idle_timeout: Duration,
    pub http2_max_streams: u32,
    /// Open connections over both listeners (further capped by the open-file limit).
    pub max_connections: usize,
    /// Request bodies held in memory at once, over every request.
    pub max_inflight_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    pub backend: Backend,
    /// The SQLite file (also the home of the compile cache by default). With
    /// PostgreSQL, unused.
    pub path: PathBuf,
    /// Requests queued for the store before ingress answers 503.
    pub max_backlog: usize,
    /// How long finished events are kept.
    pub retention: Duration,
    /// How long an event's (source, external id) is remembered for dedupe.
    pub dedupe_horizon: Duration,
}

/// `[store] backend`.
#[derive(Clone, PartialEq, Eq)]
pub enum Backend {
    /// The embedded default: one SQLite file, one process.
    Sqlite,
    /// Several replicas on one PostgreSQL database.
    Postgres {
        /// The environment variable holding the connection URL.
        url_env: String,
        /// Its value (secret: never logged).
        url: String,
    },
}

/// Never prints the database URL: it holds the password.
impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backend::Sqlite => f.write_str("Sqlite"),
            Backend::Postgres { url_env, .. } => f
                .debug_struct("Postgres")
                .field("url_env", url_env)
                .finish_non_exhaustive(),
        }
    }
}

impl Store {
    /// Pruning runs every `retention / 4`, at least once a minute and at most once a second.
    pub fn prune_interval(&self) -> Duration {
        (self.retention / 4).clamp(Duration::from_secs(1), Duration::from_secs(60))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plugins {
    pub dir: PathBuf,
    /// Wall-clock deadline of one invocation.
    pub timeout: Duration,
    pub memory_bytes: u64,
    /// Deliveries run at once.
    pub workers: usize,
    pub retry: Retry,
    /// Emits one run may return (`plugins.max_emits_per_run`).
    pub max_emits_per_run: u32,
    /// Events that may descend from one ingested event, over every hop
    /// (`plugins.max_emits_per_event`).
    pub max_emits_per_event: u32,
    /// Plugin files larger than this are refused unread.
    pub max_plugin_bytes: u64,
    /// Where compiled plugins are cached.
    pub cache_dir: PathBuf,
}

/// `[outbox]`: how forwards are sent and retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbox {
    /// Per-request timeout.
    pub timeout: Duration,
    /// Forwards sent at once.
    pub workers: usize,
    pub retry: Retry,
}

/// Retry policy of plugin deliveries or of the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    pub max_attempts: u32,
    pub base: Duration,
}

impl Retry {
    /// The delay before attempt `attempt + 1`, after `attempt` failures (1-based):
    /// `base × 2^(attempt−1)`, capped at 5 minutes, with ±20% jitter.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(20);
        let raw = self.base.saturating_mul(1u32 << exp);
        let capped = raw.min(Duration::from_secs(300));
        capped.mul_f64(0.8 + 0.4 * fastrand::f64())
    }

    /// When to try again after failed attempt `attempt` (1-based) at `now`
    /// (unix ms), or `None` when the attempts are spent: dead-letter it.
    pub fn retry_at(&self, attempt: u32, now: i64) -> Option<i64> {
        (attempt < self.max_attempts).then(|| now + self.backoff(attempt).as_millis() as i64)
    }
}

#[derive(Debug, Clone)]
pub struct Source {
    pub name: SourceName,
    pub type_from: Extractor,
    pub id_from: Option<Extractor>,
    pub verifier: Verifier,
    /// Names of the environment variables the secrets came from (for `check`).
    pub secret_envs: Vec<String>,
    pub preset: Option<String>,
    pub scheme_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub events: Vec<EventPattern>,
    pub source: Option<SourceName>,
    pub plugins: Vec<PluginName>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginSettings {
    pub config: BTreeMap<String, String>,
    /// The hosts its forwards may reach.
    pub allow_forward: Vec<ForwardTarget>,
    /// Its own deadline, instead of `plugins.timeout_ms`.
    pub timeout: Option<Duration>,
    /// Its own memory cap, instead of `plugins.memory_mb`.
    pub memory_bytes: Option<u64>,
    /// Workers it may hold while another plugin has due work.
    pub concurrency: Option<usize>,
    /// Names in `allow_forward` may resolve to private and loopback addresses.
    pub allow_private_network: bool,
}

impl PluginSettings {
    /// The plugin's forward policy (see [`crate::forward_policy`]).
    pub fn forward_policy(&self) -> Policy<'_> {
        Policy {
            allow: &self.allow_forward,
            allow_private_network: self.allow_private_network,
        }
    }
}

impl Config {
    /// Reads and validates `path`, taking secrets from the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::load_with_env(path, &|k| std::env::var(k).ok())
    }

    /// Like [`Config::load`], with the environment given as a function (for tests).
    pub fn load_with_env(
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            position: None,
            key: String::new(),
            message: format!("cannot read config: {e}"),
        })?;
        Self::parse(path, &text, env)
    }

    /// Validates `text` as if read from `path` (relative paths resolve against its folder).
    pub fn parse(
        path: &Path,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        validate::parse(path, text, env)
    }

    pub fn source(&self, name: &str) -> Option<&Source> {
        self.sources.iter().find(|s| s.name.as_str() == name)
    }

    pub fn settings(&self, plugin: &str) -> Option<&PluginSettings> {
        self.plugin_settings.get(plugin)
    }

    /// The deadline of one run of `plugin`: its own `timeout_ms`, else `plugins.timeout_ms`.
    pub fn plugin_timeout(&self, plugin: &str) -> Duration {
        self.settings(plugin)
            .and_then(|s| s.timeout)
            .unwrap_or(self.plugins.timeout)
    }

    /// The memory cap of one instance of `plugin`: its own `memory_mb`, else `plugins.memory_mb`.
    pub fn plugin_memory_bytes(&self, plugin: &str) -> u64 {
        self.settings(plugin)
            .and_then(|s| s.memory_bytes)
            .unwrap_or(self.plugins.memory_bytes)
    }

    /// Workers `plugin` may hold while another plugin has due work: its own
    /// `concurrency`, else half of `plugins.workers` (at least 1).
    pub fn plugin_concurrency(&self, plugin: &str) -> usize {
        self.settings(plugin)
            .and_then(|s| s.concurrency)
            .unwrap_or(self.plugins.workers / 2)
            .clamp(1, self.plugins.workers.max(1))
    }

    /// The longest deadline and the largest memory cap of any plugin: what the
    /// engine and the leases are sized for.
    pub fn plugin_maxima(&self) -> (Duration, u64) {
        self.plugin_settings.values().fold(
            (self.plugins.timeout, self.plugins.memory_bytes),
            |(t, m), s| {
                (
                    s.timeout.map_or(t, |x| x.max(t)),
                    s.memory_bytes.map_or(m, |x| x.max(m)),
                )
            },
        )
    }

    /// A plugin's forward policy; a plugin without settings may forward nowhere.
    pub fn forward_policy(&self, plugin: &str) -> Policy<'_> {
        self.settings(plugin)
            .map(PluginSettings::forward_policy)
            .unwrap_or_default()
    }

    /// Every plugin name that some route names, sorted and without repeats.
    pub fn routed_plugins(&self) -> Vec<PluginName> {
        let mut names: Vec<PluginName> = self
            .routes
            .iter()
            .flat_map(|r| r.plugins.iter().cloned())
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

/// Whether an admin listener on `addr` may serve: one that is not on a loopback
/// address needs `[admin] token_env`. `Err` says how to fix it.
pub fn admin_exposure(addr: SocketAddr, token_set: bool) -> Result<(), String> {
    if addr.ip().is_loopback() || token_set {
        return Ok(());
    }
    Err(format!(
        "{addr} is not a loopback address and [admin] token_env is not set: anyone who \
         can reach it could read events and replay dead letters. Set [admin] token_env = \
         \"HOOKROUTER_ADMIN_TOKEN\" (and export that variable with a long random value), \
         or listen on 127.0.0.1"
    ))
}

/// One precise line: `router.toml:14:9: routes[1].source: unknown source "optm"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line and column.
    pub position: Option<(usize, usize)>,
    /// The key at fault, as a path (`routes[1].source`); empty when unknown.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, col)) = self.position {
            write!(f, ":{line}:{col}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

#[cfg(test)]
mod tests;
