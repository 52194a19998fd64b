//! `GET /admin/plugins` and `GET /admin/routes`: what is loaded and where
//! events go.
//!
//! Owns: the views of plugins (ABI, version, load time, last load error, runs,
//! duration percentiles), routes and sources.
//! Never: loads or changes a plugin; the registry and reload do.

use serde::Serialize;

use super::api::{self, Answer};
use super::routes::Call;
use crate::activity::Percentiles;
use crate::metrics::PluginStats;
use crate::plugins::PluginKind;

#[derive(Serialize)]
struct PluginView {
    name: String,
    /// `component` or `command`; absent while not loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    abi: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    loaded: bool,
    /// Some route names it.
    routed: bool,
    last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stats: Option<PluginStats>,
    /// Over its most recent runs on this replica.
    #[serde(skip_serializing_if = "Option::is_none")]
    durations: Option<Percentiles>,
}

#[derive(Serialize)]
struct PluginsAnswer {
    plugins: Vec<PluginView>,
}

/// Every loaded plugin, every name whose last load failed, and every routed
/// name with no file yet.
pub(super) async fn plugins(c: Call<'_>) -> Answer {
    let set = c.admin.registry.snapshot();
    let live = c.admin.live.load();
    let routed = live.config.routed_plugins();
    let is_routed = |name: &str| routed.iter().any(|r| r.as_str() == name);
    let error_of = |name: &str| {
        set.errors()
            .find(|(n, _)| *n == name)
            .map(|(_, e)| e.to_string())
    };
    let mut out: Vec<PluginView> = set
        .plugins()
        .map(|p| PluginView {
            name: p.name().to_string(),
            abi: Some(match p.kind() {
                PluginKind::Component => "component",
                PluginKind::Command => "command",
            }),
            version: Some(p.version().to_string()),
            loaded: true,
            routed: is_routed(p.name()),
            last_error: error_of(p.name()),
            stats: Some(crate::metrics::plugin_stats(p.name())),
            durations: c.admin.activity.percentiles(p.name()),
        })
        .collect();
    let absent = |name: &str, routed: bool, last_error: String| PluginView {
        name: name.to_string(),
        abi: None,
        version: None,
        loaded: false,
        routed,
        last_error: Some(last_error),
        stats: None,
        durations: None,
    };
    for (name, e) in set.errors() {
        if set.get(name).is_none() {
            out.push(absent(name, is_routed(name), e.to_string()));
        }
    }
    for r in &routed {
        if set.get(r.as_str()).is_none() && error_of(r.as_str()).is_none() {
            out.push(absent(
                r.as_str(),
                true,
                "file not found; deliveries wait".into(),
            ));
        }
    }
    api::json(&PluginsAnswer { plugins: out })
}

#[derive(Serialize)]
struct RouteView<'a> {
    events: Vec<&'a str>,
    source: Option<&'a str>,
    plugins: Vec<&'a str>,
}

#[derive(Serialize)]
struct SourceView<'a> {
    name: &'a str,
    preset: Option<&'a str>,
    scheme: &'a str,
    /// Where the source's webhooks are POSTed.
    path: String,
}

#[derive(Serialize)]
struct RoutesAnswer<'a> {
    routes: Vec<RouteView<'a>>,
    sources: Vec<SourceView<'a>>,
}

pub(super) async fn routes(c: Call<'_>) -> Answer {
    let live = c.admin.live.load();
    let config = &live.config;
    api::json(&RoutesAnswer {
        routes: config
            .routes
            .iter()
            .map(|r| RouteView {
                events: r.events.iter().map(|e| e.as_str()).collect(),
                source: r.source.as_ref().map(|s| s.as_str()),
                plugins: r.plugins.iter().map(|p| p.as_str()).collect(),
            })
            .collect(),
        sources: config
            .sources
            .iter()
            .map(|s| SourceView {
                name: s.name.as_str(),
                preset: s.preset.as_deref(),
                scheme: &s.scheme_name,
                path: format!("/webhooks/{}", s.name.as_str()),
            })
            .collect(),
    })
}
