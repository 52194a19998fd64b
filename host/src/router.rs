//! Routing: which plugins an event goes to.
//!
//! Owns: matching an event's type and source against `[[routes]]` globs.
//! Never: does I/O or looks at plugins on disk; a route may name a plugin that is
//! not loaded yet, and its deliveries simply wait for it.

use globset::{GlobBuilder, GlobMatcher};

use crate::config::{PluginName, Route, SourceName};

/// Compiled routes; cheap to query, rebuilt whenever the config changes.
#[derive(Debug, Clone)]
pub struct Router {
    routes: Vec<CompiledRoute>,
}

#[derive(Debug, Clone)]
struct CompiledRoute {
    matchers: Vec<GlobMatcher>,
    source: Option<SourceName>,
    plugins: Vec<PluginName>,
}

impl Router {
    /// Compiles each route's event patterns. Patterns are validated by the config,
    /// so compiling cannot fail; a pattern globset rejects matches nothing.
    pub fn new(routes: &[Route]) -> Router {
        let routes = routes
            .iter()
            .map(|r| CompiledRoute {
                matchers: r
                    .events
                    .iter()
                    .filter_map(|p| {
                        GlobBuilder::new(p.as_str())
                            .literal_separator(false)
                            .backslash_escape(false)
                            .build()
                            .ok()
                            .map(|g| g.compile_matcher())
                    })
                    .collect(),
                source: r.source.clone(),
                plugins: r.plugins.clone(),
            })
            .collect();
        Router { routes }
    }

    /// The plugins an event of `event_type` from `source` goes to, each once, in
    /// the order the routes name them.
    pub fn plugins_for(&self, source: &str, event_type: &str) -> Vec<PluginName> {
        let mut out: Vec<PluginName> = Vec::new();
        for route in &self.routes {
            if route.source.as_ref().is_some_and(|s| s.as_str() != source) {
                continue;
            }
            if !route.matchers.iter().any(|m| m.is_match(event_type)) {
                continue;
            }
            for p in &route.plugins {
                if !out.contains(p) {
                    out.push(p.clone());
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(events: &[&str], source: Option<&str>, plugins: &[&str]) -> Route {
        Route {
            events: events
                .iter()
                .map(|e| e.to_string().try_into().unwrap())
                .collect(),
            source: source.map(|s| s.to_string().try_into().unwrap()),
            plugins: plugins
                .iter()
                .map(|p| p.to_string().try_into().unwrap())
                .collect(),
        }
    }

    fn names(v: Vec<PluginName>) -> Vec<String> {
        v.into_iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn glob_matches_prefix_and_exact() {
        let r = Router::new(&[route(&["payment_*", "batch_created"], None, &["audit"])]);
        assert_eq!(
            names(r.plugins_for("optum", "payment_loading_requested")),
            ["audit"]
        );
        assert_eq!(names(r.plugins_for("optum", "batch_created")), ["audit"]);
        assert!(r.plugins_for("optum", "batch_created_v2").is_empty());
        assert!(r.plugins_for("optum", "xpayment_x").is_empty());
    }

    #[test]
    fn source_restricts_route() {
        let r = Router::new(&[
            route(&["*"], Some("github"), &["gh"]),
            route(&["*"], Some("optum"), &["op"]),
        ]);
        assert_eq!(names(r.plugins_for("github", "push")), ["gh"]);
        assert_eq!(names(r.plugins_for("optum", "push")), ["op"]);
        assert!(r.plugins_for("stripe", "push").is_empty());
    }

    #[test]
    fn plugins_are_deduplicated_in_route_order() {
        let r = Router::new(&[
            route(&["a.*"], None, &["x", "y"]),
            route(&["*.b"], None, &["y", "z"]),
        ]);
        assert_eq!(names(r.plugins_for("s", "a.b")), ["x", "y", "z"]);
        assert_eq!(names(r.plugins_for("s", "q.b")), ["y", "z"]);
    }

    #[test]
    fn question_mark_and_separators() {
        let r = Router::new(&[route(&["invoice.?aid", "ns/*"], None, &["p"])]);
        assert_eq!(names(r.plugins_for("s", "invoice.paid")), ["p"]);
        assert!(r.plugins_for("s", "invoice.unpaid").is_empty());
        // `*` crosses '/' and '.': event types are not paths.
        assert_eq!(names(r.plugins_for("s", "ns/a/b")), ["p"]);
    }

    #[test]
    fn no_routes_no_plugins() {
        assert!(Router::new(&[]).plugins_for("s", "t").is_empty());
    }
}
