//! Ingress: `POST /webhooks/{source}` → checks → durable store → `202`.
//!
//! Owns: the webhook listener's HTTP semantics (the status table in DESIGN.md),
//! as named steps: find the source, check the method, read the body ([`body`]:
//! size, time, the in-flight [`budget`]), check and build the event
//! ([`intake`](crate::intake), pure), store it. Every refusal is one
//! [`Rejection`], answered in one place ([`rejection`]).
//! Never: runs a plugin or waits for one. The answer depends only on the checks
//! and on the store's commit; a failing plugin can never turn it into a 5xx.

mod body;
mod budget;
mod rejection;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

pub(crate) use budget::Budget;

use crate::config::Source;
use crate::event::Event;
use crate::http::{self, Body, Conns, Limits};
use crate::intake::{self, Rejection};
use crate::live::{Live, Shared};
use crate::log_safe::Escaped;
use crate::metrics::{METRICS, ReceivedLabels, SourceLabel, TypeLabel};
use crate::store::{Ingested, NewEvent, SharedStore, StoreError};

/// What the ingress service needs; one per listener, shared behind an `Arc`.
pub(crate) struct Ingress {
    pub live: Shared,
    pub store: SharedStore,
    /// `server.max_inflight_bytes`, over every request.
    pub budget: Arc<Budget>,
    /// Where the deliveries of a stored event go, when there is room (see `handoff`).
    pub handoff: Arc<crate::handoff::Handoff>,
    /// Which plugins are loaded: only their deliveries are handed over.
    pub registry: Arc<crate::plugins::PluginRegistry>,
}

impl Ingress {
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let version = req.version();
        let Some(name) = source_name(req.uri().path()) else {
            return http::error(
                StatusCode::NOT_FOUND,
                "not found: webhooks are POSTed to /webhooks/{source}",
            );
        };
        let live = self.live.load_full();
        let Some(source) = live.config.source(name) else {
            let r = Rejection::new(
                StatusCode::NOT_FOUND,
                "source",
                format!("unknown source {name:?}"),
            );
            return rejection::answer(r, "", version);
        };
        match self.accept(&live, source, req).await {
            Ok(resp) => resp,
            Err(r) => rejection::answer(r, source.name.as_str(), version),
        }
    }

    /// The steps of one request for a known source.
    async fn accept(
        &self,
        live: &Live,
        source: &Source,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, Rejection> {
        if req.method() != Method::POST {
            return Err(Rejection::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method",
                "method not allowed: use POST",
            ));
        }
        let (parts, body) = req.into_parts();
        // The reservation holds the body's bytes against the budget until the
        // store has them on disk.
        let (bytes, _reservation) =
            body::read(body, &parts.headers, &live.config.server, &self.budget).await?;
        let event = intake::event(source, &parts.headers, bytes, SystemTime::now())?;
        self.store(live, event).await
    }

    /// Routes and stores the event; answers once it is on disk.
    async fn store(&self, live: &Live, event: Event) -> Result<Response<Body>, Rejection> {
        let plugins: Vec<String> = live
            .router
            .plugins_for(&event.source, &event.event_type)
            .into_iter()
            .map(|p| p.to_string())
            .collect();
        let (source, event_type) = (event.source.clone(), event.event_type.clone());
        let new = NewEvent { event, plugins };
        // With room in the hand-off, the deliveries are stored leased to this
        // router and go straight to the dispatcher: no claim, no re-read.
        // A plugin that is not loaded (removed, or not yet compiled) would give
        // its delivery straight back: such an event is stored to be claimed.
        let loaded = {
            let set = self.registry.snapshot();
            new.plugins.iter().all(|p| set.get(p).is_some())
        };
        let slots = loaded
            .then(|| self.handoff.deliveries.reserve(new.plugins.len()))
            .flatten();
        let terms = slots.as_ref().map(|_| crate::dispatch::terms(&live.config));
        let answer = self
            .store
            .ingest_leased(new, terms.map(|t| t.lease))
            .await
            .map(|(ingested, handed)| {
                let keyed = handed.into_iter().map(|d| (d.plugin.clone(), d)).collect();
                if let Some(terms) = terms {
                    self.handoff.deliveries.send(keyed, slots, terms.start_by());
                }
                ingested
            });
        let (status, body) = match answer {
            Ok(Ingested::Stored { id, deliveries }) => {
                tracing::info!(event_id = %id, source = %source, event_type = %Escaped(&event_type), deliveries, "event stored");
                (
                    StatusCode::ACCEPTED,
                    json!({ "id": id, "deliveries": deliveries }),
                )
            }
            Ok(Ingested::Duplicate { id }) => {
                METRICS
                    .duplicates
                    .get_or_create(&SourceLabel {
                        source: source.clone(),
                    })
                    .inc();
                tracing::info!(event_id = %id, source = %source, "duplicate event dropped");
                (StatusCode::OK, json!({ "id": id, "duplicate": true }))
            }
            Err(e @ StoreError::Full(_)) => {
                // The store logs a full disk once a minute; requests say nothing more.
                return Err(Rejection::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "disk",
                    e.to_string(),
                ));
            }
            Err(e @ StoreError::Busy(_)) => {
                return Err(Rejection::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "backlog",
                    e.to_string(),
                ));
            }
            Err(e) => {
                return Err(Rejection::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store",
                    e.to_string(),
                ));
            }
        };
        count(&source, &event_type, status);
        Ok(http::json(status, &body))
    }
}

/// `{source}` of `/webhooks/{source}`.
fn source_name(path: &str) -> Option<&str> {
    path.strip_prefix("/webhooks/")
        .filter(|n| !n.is_empty() && !n.contains('/'))
}

fn count(source: &str, event_type: &str, status: StatusCode) {
    METRICS
        .received
        .get_or_create(&ReceivedLabels {
            source: source.to_string(),
            kind: TypeLabel {
                r#type: METRICS.type_label(event_type),
            },
            status: status.as_u16(),
        })
        .inc();
}

/// Starts the ingress server on `listener`; returns when `shutdown` resolves and
/// open requests have drained.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    ingress: Ingress,
    conns: Arc<Conns>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let limits = Limits::from_config(&ingress.live.load().config.server, Duration::from_secs(10));
    let ingress = Arc::new(ingress);
    http::serve(
        listener,
        limits,
        conns,
        move |req| {
            // One shared service per listener: a request clones an `Arc`, nothing more.
            let service = ingress.clone();
            async move { service.handle(req).await }
        },
        shutdown,
    )
    .await;
}
