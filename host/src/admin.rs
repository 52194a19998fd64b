//! The admin listener: health, readiness, metrics and the admin API.
//!
//! Owns: `GET /healthz`, `/readyz`, `/metrics`, `/admin/*`; who may call them
//! is [`guard`]'s, checked once before any route.
//! Never: serves webhooks; it listens on its own (loopback by default) address.

pub(crate) mod guard;

use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, header};
use serde_json::json;

use crate::event::EventId;
use crate::http::{self, Body, Conns, Limits};
use crate::live::Shared;
use crate::metrics::METRICS;
use crate::plugins::PluginRegistry;
use crate::store::{
    DeadEntry, DeadFilter, DeadId, EventDetail, EventFilter, EventStatus, Page, Selection,
    SharedStore, StoreError,
};

#[derive(Clone)]
pub(crate) struct Admin {
    pub live: Shared,
    pub store: SharedStore,
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
                let health = self.store.health().await;
                let status = if health.ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                return http::json(status, &json!(health));
            }
            _ => {}
        }
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (&method, segments.as_slice()) {
            (&Method::GET, ["metrics"]) => {
                crate::metrics::record_store(
                    &self.store.health().await,
                    self.store.counts().await.ok().as_ref(),
                );
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
            (&Method::GET, ["admin", "events"]) => {
                let query = req.uri().query().unwrap_or("");
                match events_query(query) {
                    Err(msg) => http::error(StatusCode::BAD_REQUEST, msg),
                    Ok((filter, page)) => match self.store.events(&filter, page).await {
                        Err(e) => unavailable(&e),
                        Ok(events) => {
                            let next = (events.len() == page.limit)
                                .then(|| events.last().map(|e| e.id))
                                .flatten();
                            http::json(
                                StatusCode::OK,
                                &json!({ "events": events, "next_cursor": next }),
                            )
                        }
                    },
                }
            }
            (&Method::GET, ["admin", "store"]) => {
                let health = self.store.health().await;
                match self.store.counts().await {
                    Err(e) => unavailable(&e),
                    Ok(counts) => http::json(
                        StatusCode::OK,
                        &json!({ "backend": self.store.describe(), "health": health, "counts": counts }),
                    ),
                }
            }
            (&Method::GET, ["admin", "events", id]) => match id.parse::<EventId>() {
                Err(e) => http::error(StatusCode::BAD_REQUEST, e.to_string()),
                Ok(id) => match self.store.event(id).await {
                    Err(e) => unavailable(&e),
                    Ok(None) => http::error(StatusCode::NOT_FOUND, format!("no event {id}")),
                    Ok(Some(detail)) => http::json(
                        StatusCode::OK,
                        &event_json(&detail, &self.live.load().config),
                    ),
                },
            },
            (&Method::GET, ["admin", "dead"]) => {
                match self.store.dead(&DeadFilter::default(), 1000).await {
                    Ok(dead) => http::json(
                        StatusCode::OK,
                        &json!({ "dead": dead.into_iter().map(shown_dead).collect::<Vec<_>>() }),
                    ),
                    Err(e) => unavailable(&e),
                }
            }
            (&Method::GET, ["admin", "dead", id]) => match id.parse::<DeadId>() {
                Err(e) => http::error(StatusCode::BAD_REQUEST, e.to_string()),
                Ok(id) => match self.store.dead_entry(id).await {
                    Err(e) => unavailable(&e),
                    Ok(None) => http::error(StatusCode::NOT_FOUND, format!("no dead entry {id}")),
                    Ok(Some((entry, event))) => {
                        let mut v = serde_json::to_value(shown_dead(entry)).unwrap_or_default();
                        v["headers"] = shown_headers(&event, &self.live.load().config);
                        v["data"] =
                            serde_json::from_str(&event.body).unwrap_or(serde_json::Value::Null);
                        http::json(StatusCode::OK, &v)
                    }
                },
            },
            (&Method::POST, ["admin", "dead", "replay"]) => {
                self.replay(Selection::Dead { older_than: None }, false)
                    .await
            }
            (&Method::POST, ["admin", "dead", id, "replay"]) => match id.parse::<DeadId>() {
                Err(e) => http::error(StatusCode::BAD_REQUEST, e.to_string()),
                Ok(id) => self.replay(Selection::Ids(vec![id]), true).await,
            },
            (&Method::DELETE, ["admin", "dead", id]) => match id.parse::<DeadId>() {
                Err(e) => http::error(StatusCode::BAD_REQUEST, e.to_string()),
                Ok(id) => match self.store.purge(Selection::Ids(vec![id])).await {
                    Err(e) => unavailable(&e),
                    Ok(p) if p.entries == 0 => {
                        http::error(StatusCode::NOT_FOUND, format!("no dead entry {id}"))
                    }
                    Ok(p) => http::json(StatusCode::OK, &json!({ "purged": p })),
                },
            },
            (&Method::POST, ["admin", "dead", "purge"]) => {
                let request: PurgeRequest = match read_json(req).await {
                    Ok(r) => r,
                    Err(resp) => return resp,
                };
                let selection = match request.selection() {
                    Ok(s) => s,
                    Err(msg) => return http::error(StatusCode::BAD_REQUEST, msg),
                };
                match self.store.purge(selection).await {
                    Ok(p) => http::json(StatusCode::OK, &json!({ "purged": p })),
                    Err(e) => unavailable(&e),
                }
            }
            (_, ["metrics"] | ["admin", ..])
                if method != Method::GET && method != Method::POST && method != Method::DELETE =>
            {
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

    async fn replay(&self, selection: Selection, one: bool) -> Response<Body> {
        match self.store.replay(selection).await {
            Ok(0) if one => http::error(StatusCode::NOT_FOUND, "no such entry to replay"),
            Ok(n) => http::json(StatusCode::OK, &json!({ "replayed": n })),
            Err(e) => unavailable(&e),
        }
    }
}

fn unavailable(e: &StoreError) -> Response<Body> {
    let mut resp = http::error(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
    resp.headers_mut().insert(
        header::RETRY_AFTER,
        header::HeaderValue::from(e.retry_after_secs()),
    );
    resp
}

/// The body of `POST /admin/dead/purge`: some ids, or every dead entry (last
/// attempted before `older_than`, a duration such as "7d", when given).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeRequest {
    ids: Option<Vec<String>>,
    older_than: Option<String>,
}

impl PurgeRequest {
    fn selection(self) -> Result<Selection, String> {
        match (self.ids, self.older_than) {
            (Some(_), Some(_)) => Err("give \"ids\" or \"older_than\", not both".into()),
            (Some(ids), None) => ids
                .iter()
                .map(|id| id.parse::<DeadId>().map_err(|e| e.to_string()))
                .collect::<Result<_, _>>()
                .map(Selection::Ids),
            (None, older) => {
                let older_than = match older {
                    None => None,
                    Some(d) => Some(
                        std::time::SystemTime::now()
                            - humantime::parse_duration(&d)
                                .map_err(|e| format!("invalid older_than {d:?}: {e}"))?,
                    ),
                };
                Ok(Selection::Dead { older_than })
            }
        }
    }
}

/// Reads a small JSON request body (an empty body reads as the type's default).
async fn read_json<T: serde::de::DeserializeOwned + Default>(
    req: Request<Incoming>,
) -> Result<T, Response<Body>> {
    use http_body_util::BodyExt;
    let body = http_body_util::Limited::new(req.into_body(), 1 << 20)
        .collect()
        .await
        .map_err(|e| http::error(StatusCode::BAD_REQUEST, format!("cannot read body: {e}")))?
        .to_bytes();
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&body)
        .map_err(|e| http::error(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
}

/// `GET /admin/events?source=&type=&status=&q=&since=&until=&cursor=&limit=`.
fn events_query(query: &str) -> Result<(EventFilter, Page), String> {
    let mut filter = EventFilter::default();
    let mut page = Page {
        before: None,
        limit: 50,
    };
    let time = |k: &str, v: &str| {
        humantime::parse_rfc3339_weak(v)
            .map_err(|e| format!("{k}={v:?} is not an RFC 3339 time: {e}"))
    };
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        let v = v.into_owned();
        match k.as_ref() {
            "source" => filter.source = Some(v),
            "type" => filter.event_type = Some(v),
            "status" => {
                filter.status = Some(EventStatus::parse(&v).ok_or_else(|| {
                    format!("status={v:?} is not one of dead, pending, done, unrouted")
                })?)
            }
            "q" => filter.q = Some(v),
            "since" => filter.since = Some(time("since", &v)?),
            "until" => filter.until = Some(time("until", &v)?),
            "cursor" => page.before = Some(v.parse().map_err(|e| format!("cursor: {e}"))?),
            "limit" => {
                page.limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| format!("limit={v:?} is not a number from 1 to 1000"))?
            }
            other => return Err(format!("unknown query parameter {other:?}")),
        }
    }
    Ok((filter, page))
}

/// `GET /admin/events/{id}`: the event, its deliveries and forwards with every attempt.
fn event_json(d: &EventDetail, config: &crate::config::Config) -> serde_json::Value {
    let e = &d.event;
    json!({
        "id": e.id,
        "source": e.source,
        "type": e.event_type,
        "external_id": e.external_id,
        "received_at": e.received_at_rfc3339(),
        "hops": e.hops,
        "status": d.status,
        "parent_id": d.parent_id,
        "children": d.children,
        "headers": shown_headers(e, config),
        "data": serde_json::from_str::<serde_json::Value>(&e.body).unwrap_or(serde_json::Value::Null),
        "deliveries": d.deliveries,
        "forwards": d.forwards.iter().map(|f| {
            let mut f = f.clone();
            f.url = crate::forward_policy::redact(&f.url);
            f
        }).collect::<Vec<_>>(),
    })
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
