//! The admin listener: health, readiness, metrics and the admin API.
//!
//! Owns: `GET /healthz`, `/readyz`, `/metrics`, `/admin/*`; who may call them
//! is [`guard`]'s, checked once before any route.
//! Never: serves webhooks; it listens on its own (loopback by default) address.

pub(crate) mod guard;

use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

use crate::http::{self, Body, Conns, Limits};
use crate::live::Shared;
use crate::metrics::METRICS;
use crate::plugins::PluginRegistry;
use crate::store::{DeadEntry, Reader, ReplayTarget, Store};

#[derive(Clone)]
pub(crate) struct Admin {
    pub live: Shared,
    pub store: Store,
    pub reader: Arc<Reader>,
    pub registry: Arc<PluginRegistry>,
    pub guard: guard::Guard,
}

impl Admin {
    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        if let Err(refused) = self.guard.check(
            req.method(),
            req.uri(),
            req.headers(),
            &self.live.load().config,
        ) {
            return refused.response();
        }
        let path = req.uri().path().to_string();
        let method = req.method().clone();
        match (&method, path.as_str()) {
            (&Method::GET, "/healthz") => return http::text(StatusCode::OK, "ok\n", "text/plain"),
            (&Method::GET, "/readyz") => {
                let live = self.live.load();
                return if self.store.backlog() < live.config.store.max_backlog {
                    http::text(StatusCode::OK, "ready\n", "text/plain")
                } else {
                    http::text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "store backlog full\n",
                        "text/plain",
                    )
                };
            }
            _ => {}
        }
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (&method, segments.as_slice()) {
            (&Method::GET, ["metrics"]) => {
                METRICS.backlog.set(self.store.backlog() as i64);
                http::text(
                    StatusCode::OK,
                    METRICS.encode(),
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )
            }
            (&Method::GET, ["admin", "plugins"]) => http::json(StatusCode::OK, &self.plugins()),
            (&Method::GET, ["admin", "routes"]) => {
                let live = self.live.load();
                let routes: Vec<_> = live
                    .config
                    .routes
                    .iter()
                    .map(|r| {
                        json!({
                            "events": r.events.iter().map(|e| e.as_str()).collect::<Vec<_>>(),
                            "source": r.source.as_ref().map(|s| s.as_str()),
                            "plugins": r.plugins.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                let sources: Vec<_> = live
                    .config
                    .sources
                    .iter()
                    .map(|s| json!({ "name": s.name.as_str(), "preset": s.preset, "scheme": s.scheme_name }))
                    .collect();
                http::json(
                    StatusCode::OK,
                    &json!({ "routes": routes, "sources": sources }),
                )
            }
            (&Method::GET, ["admin", "events", id]) => {
                let id = id.to_string();
                let live = self.live.load_full();
                self.query(move |r| {
                    Ok(match r.event(&id)? {
                        None => http::error(StatusCode::NOT_FOUND, format!("no event {id:?}")),
                        Some(rec) => http::json(StatusCode::OK, &json!({
                            "id": rec.event.id,
                            "source": rec.event.source,
                            "type": rec.event.event_type,
                            "external_id": rec.event.external_id,
                            "received_at": rec.event.received_at_rfc3339(),
                            "hops": rec.event.hops,
                            "headers": shown_headers(&rec.event, &live.config),
                            "data": serde_json::from_str::<serde_json::Value>(&rec.event.body).unwrap_or(serde_json::Value::Null),
                            "deliveries": rec.deliveries,
                        })),
                    })
                })
                .await
            }
            (&Method::GET, ["admin", "dead"]) => {
                self.query(|r| {
                    Ok(http::json(
                        StatusCode::OK,
                        &json!({ "dead": r.dead(1000)?.into_iter().map(shown_dead).collect::<Vec<_>>() }),
                    ))
                })
                .await
            }
            (&Method::GET, ["admin", "dead", id]) => {
                let id = id.to_string();
                let live = self.live.load_full();
                self.query(move |r| {
                    Ok(match r.dead_entry(&id)? {
                        None => http::error(StatusCode::NOT_FOUND, format!("no dead entry {id:?}")),
                        Some((entry, event)) => {
                            let mut v = serde_json::to_value(shown_dead(entry)).unwrap_or_default();
                            v["headers"] = shown_headers(&event, &live.config);
                            v["data"] = serde_json::from_str(&event.body)
                                .unwrap_or(serde_json::Value::Null);
                            http::json(StatusCode::OK, &v)
                        }
                    })
                })
                .await
            }
            (&Method::POST, ["admin", "dead", "replay"]) => self.replay(ReplayTarget::All).await,
            (&Method::POST, ["admin", "dead", id, "replay"]) => {
                if crate::store::parse_dead_id(id).is_none() {
                    return http::error(
                        StatusCode::BAD_REQUEST,
                        format!("invalid dead entry id {id:?} (expected d-N or o-N)"),
                    );
                }
                self.replay(ReplayTarget::One(id.to_string())).await
            }
            (_, ["metrics"] | ["admin", ..]) if method != Method::GET && method != Method::POST => {
                http::error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
            }
            _ => http::error(StatusCode::NOT_FOUND, format!("not found: {path}")),
        }
    }

    /// Every loaded plugin and every name whose last load failed.
    fn plugins(&self) -> serde_json::Value {
        let set = self.registry.snapshot();
        let live = self.live.load();
        let routed = live.config.routed_plugins();
        let mut out: Vec<serde_json::Value> = set
            .plugins()
            .map(|p| {
                json!({
                    "name": p.name(),
                    "abi": match p.kind() {
                        crate::plugins::PluginKind::Component => "component",
                        crate::plugins::PluginKind::Command => "command",
                    },
                    "version": p.version(),
                    "loaded": true,
                    "routed": routed.iter().any(|r| r.as_str() == p.name()),
                    "last_error": set.errors().find(|(n, _)| *n == p.name()).map(|(_, e)| e.to_string()),
                    "stats": crate::metrics::plugin_stats(p.name()),
                })
            })
            .collect();
        for (name, e) in set.errors() {
            if set.get(name).is_none() {
                out.push(json!({ "name": name, "loaded": false, "last_error": e.to_string() }));
            }
        }
        for r in routed {
            if set.get(r.as_str()).is_none() && !set.errors().any(|(n, _)| n == r.as_str()) {
                out.push(json!({ "name": r.as_str(), "loaded": false, "routed": true, "last_error": "file not found; deliveries wait" }));
            }
        }
        json!({ "plugins": out })
    }

    async fn replay(&self, target: ReplayTarget) -> Response<Body> {
        let one = matches!(target, ReplayTarget::One(_));
        match self.store.replay(target).await {
            Ok(0) if one => http::error(StatusCode::NOT_FOUND, "no such dead entry"),
            Ok(n) => http::json(StatusCode::OK, &json!({ "replayed": n })),
            Err(e) => http::error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        }
    }

    async fn query(
        &self,
        f: impl FnOnce(&Reader) -> anyhow::Result<Response<Body>> + Send + 'static,
    ) -> Response<Body> {
        let reader = self.reader.clone();
        match tokio::task::spawn_blocking(move || f(&reader)).await {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => http::error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("store query failed: {e}"),
            ),
            Err(e) => http::error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("store query failed: {e}"),
            ),
        }
    }
}

/// A dead entry as admin views show it: its forward's URL redacted.
pub(crate) fn shown_dead(mut entry: DeadEntry) -> DeadEntry {
    entry.target = entry.target.map(|t| crate::forward_policy::redact(&t));
    entry
}

/// An event's headers as admin views show them, `[name, value]` pairs with
/// signature and secret-like values masked.
fn shown_headers(event: &crate::event::Event, config: &crate::config::Config) -> serde_json::Value {
    let source = config.source(&event.source);
    crate::intake::masked_headers(&event.headers, source)
        .into_iter()
        .map(|(k, v)| json!([k, v]))
        .collect()
}

pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    admin: Admin,
    conns: Arc<Conns>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let limits = Limits::from_config(&admin.live.load().config.server, Duration::from_secs(2));
    let admin = Arc::new(admin);
    http::serve(
        listener,
        limits,
        conns,
        move |req| {
            // One shared service per listener: a request clones an `Arc`, nothing more.
            let service = admin.clone();
            async move { service.handle(req).await }
        },
        shutdown,
    )
    .await;
}
