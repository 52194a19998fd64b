//! The `router.toml` schema exactly as written by users, and its validated newtypes.
//!
//! Owns: field names, defaults and per-value checks (what one key may hold).
//! Never: reads the environment or the filesystem, or checks one key against
//! another (that is `validate` in the parent module).

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub version: Option<u32>,
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub store: RawStore,
    #[serde(default)]
    pub plugins: RawPlugins,
    pub outbox: Option<RawOutbox>,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub sources: Vec<RawSource>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub plugin: BTreeMap<Spanned<PluginName>, RawPluginSettings>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawServer {
    pub listen: Spanned<String>,
    pub admin_listen: Spanned<String>,
    pub max_body_bytes: u64,
    pub header_timeout_ms: u64,
    pub body_timeout_ms: u64,
    pub idle_timeout_ms: u64,
    pub http2_max_streams: u32,
    pub max_connections: usize,
    pub max_inflight_bytes: u64,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: Spanned::new(0..0, "127.0.0.1:8080".into()),
            admin_listen: Spanned::new(0..0, "127.0.0.1:8081".into()),
            max_body_bytes: 1024 * 1024,
            header_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
            idle_timeout_ms: 60_000,
            http2_max_streams: 32,
            max_connections: 4096,
            max_inflight_bytes: 256 * 1024 * 1024,
        }
    }
}

/// `[store]`: one flat table for every backend (serde's `flatten` does not mix
/// with `deny_unknown_fields`); `validate` checks which keys fit the backend.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawStore {
    pub backend: Spanned<String>,
    pub path: Option<Spanned<String>>,
    pub url_env: Option<Spanned<String>>,
    pub max_backlog: usize,
    pub retention: Spanned<String>,
    pub dedupe_horizon: Spanned<String>,
}

impl Default for RawStore {
    fn default() -> Self {
        Self {
            backend: Spanned::new(0..0, "sqlite".into()),
            path: None,
            url_env: None,
            max_backlog: 10_000,
            retention: Spanned::new(0..0, "7d".into()),
            dedupe_horizon: Spanned::new(0..0, "30d".into()),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawPlugins {
    pub dir: String,
    pub timeout_ms: u64,
    pub memory_mb: u64,
    pub max_attempts: u32,
    pub retry_base_ms: u64,
    pub workers: usize,
    pub max_emits_per_run: Spanned<u64>,
    pub max_emits_per_event: Spanned<u64>,
    pub max_plugin_bytes: Spanned<u64>,
    /// Compiled-artifact cache; default `plugin-cache/` beside the store.
    pub cache_dir: Option<String>,
}

impl Default for RawPlugins {
    fn default() -> Self {
        Self {
            dir: "plugins".into(),
            timeout_ms: 1000,
            memory_mb: 64,
            max_attempts: 8,
            retry_base_ms: 1000,
            workers: 4,
            max_emits_per_run: Spanned::new(0..0, 20),
            max_emits_per_event: Spanned::new(0..0, 100),
            max_plugin_bytes: Spanned::new(0..0, 64 << 20),
            cache_dir: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOutbox {
    pub max_attempts: Option<u32>,
    pub retry_base_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub workers: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    /// Name of an environment variable holding a bearer token for the admin API.
    pub token_env: Option<String>,
    /// `Host` values the admin listener answers (DNS rebinding).
    pub allowed_hosts: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSource {
    pub name: Spanned<SourceName>,
    pub preset: Option<Spanned<String>>,
    pub type_from: Option<Spanned<String>>,
    pub id_from: Option<Spanned<String>>,
    pub verify: Option<Spanned<RawVerify>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVerify {
    pub scheme: Option<Spanned<String>>,
    pub header: Option<String>,
    pub secret_env: Option<Spanned<OneOrMany>>,
    pub tolerance_secs: Option<u64>,
}

/// `secret_env = "A"` or `secret_env = ["OLD", "NEW"]` (rotation).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    pub events: Spanned<Vec<EventPattern>>,
    pub source: Option<Spanned<String>>,
    pub plugins: Spanned<Vec<Spanned<PluginName>>>,
    #[serde(rename = "match")]
    pub content_match: Option<Spanned<toml::Value>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPluginSettings {
    #[serde(default)]
    pub config: BTreeMap<String, Spanned<toml::Value>>,
    #[serde(default)]
    pub allow_forward: Vec<Spanned<String>>,
    /// Overrides `plugins.timeout_ms` for this plugin.
    pub timeout_ms: Option<Spanned<u64>>,
    /// Overrides `plugins.memory_mb` for this plugin.
    pub memory_mb: Option<Spanned<u64>>,
    /// Workers this plugin may hold while another plugin has due work.
    pub concurrency: Option<Spanned<u64>>,
    /// Names in `allow_forward` may resolve to private and loopback addresses.
    #[serde(default)]
    pub allow_private_network: bool,
}

/// Declares a validated string newtype that deserializes through `TryFrom<String>`.
macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $what:literal, $valid:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
        #[serde(try_from = "String")]
        pub struct $name(String);

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                let valid: fn(&str) -> bool = $valid;
                if valid(&s) {
                    Ok(Self(s))
                } else {
                    Err(format!(concat!("invalid ", $what, " {:?}: {}"), s, $name::RULE))
                }
            }
        }

        impl $name {
            /// The name as written.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

name_type!(
    /// A plugin's name: the stem of `plugins/NAME.wasm`.
    PluginName,
    "plugin name",
    is_identifier
);
impl PluginName {
    const RULE: &'static str = "use 1-64 lower-case letters, digits, '_' or '-'";
}

name_type!(
    /// A source's name: the last segment of `POST /webhooks/{source}`.
    SourceName,
    "source name",
    is_identifier
);
impl SourceName {
    const RULE: &'static str = "use 1-64 lower-case letters, digits, '_' or '-'";
}

name_type!(
    /// A glob on event types: `*` matches any run of characters, `?` one character.
    EventPattern,
    "event pattern",
    |s: &str| {
        !s.is_empty()
            && s.len() <= 256
            && s.bytes().all(|b| {
                b.is_ascii_alphanumeric() || b"_-.:/*?".contains(&b)
            })
    }
);
impl EventPattern {
    const RULE: &'static str =
        "use letters, digits, '_', '-', '.', ':', '/' and the wildcards '*' and '?'";
}
