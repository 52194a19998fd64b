//! Ingress: `POST /webhooks/{source}` → checks → durable store → `202`.
//!
//! Owns: the webhook listener's HTTP semantics (the status table in DESIGN.md),
//! body limits and read timeouts, and turning a request into an [`Event`].
//! Never: runs a plugin or waits for one. The answer depends only on the checks
//! and on the store's commit; a failing plugin can never turn it into a 5xx.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, header};
use serde_json::json;

use crate::event::Event;
use crate::event::EventId;
use crate::http::{self, Body};
use crate::live::Shared;
use crate::metrics::{METRICS, ReceivedLabels, RejectLabels, SourceLabel, TypeLabel};
use crate::store::{Ingested, NewEvent, SharedStore};

/// What the ingress service needs; one per listener, shared behind an `Arc`.
pub(crate) struct Ingress {
    pub live: Shared,
    pub store: SharedStore,
}

impl Ingress {
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path();
        let Some(name) = path
            .strip_prefix("/webhooks/")
            .filter(|n| !n.is_empty() && !n.contains('/'))
        else {
            return http::error(
                StatusCode::NOT_FOUND,
                "not found: webhooks are POSTed to /webhooks/{source}",
            );
        };
        let name = name.to_string();
        let live = self.live.load_full();
        let Some(source) = live.config.source(&name) else {
            reject("", "source");
            return http::error(StatusCode::NOT_FOUND, format!("unknown source {name:?}"));
        };
        if req.method() != Method::POST {
            reject(&name, "method");
            let mut resp = http::error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed: use POST",
            );
            resp.headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
            return resp;
        }

        // Body: refuse by Content-Length before reading, and never read past the limit.
        let limit = live.config.server.max_body_bytes;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            reject(&name, "size");
            return too_large(limit, req.version());
        }
        let (parts, body) = req.into_parts();
        let body = match tokio::time::timeout(
            live.config.server.body_timeout,
            Limited::new(body, limit as usize).collect(),
        )
        .await
        {
            Err(_) => {
                reject(&name, "timeout");
                return http::error(
                    StatusCode::REQUEST_TIMEOUT,
                    "request body not received in time",
                );
            }
            Ok(Err(e))
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                reject(&name, "size");
                return too_large(limit, parts.version);
            }
            Ok(Err(e)) => {
                reject(&name, "body");
                return http::error(
                    StatusCode::BAD_REQUEST,
                    format!("cannot read request body: {e}"),
                );
            }
            Ok(Ok(collected)) => collected.to_bytes(),
        };

        let received_at = SystemTime::now();
        if let Err(e) = source.verifier.verify(&parts.headers, &body, received_at) {
            reject(&name, "signature");
            tracing::info!(source = %name, error = %e, "signature rejected");
            return http::error(StatusCode::UNAUTHORIZED, format!("signature rejected: {e}"));
        }
        let value: serde_json::Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                reject(&name, "json");
                return http::error(
                    StatusCode::BAD_REQUEST,
                    format!("body is not valid JSON: {e}"),
                );
            }
        };
        // `extract` never returns an empty value.
        let Some(event_type) = source.type_from.extract(&parts.headers, &value) else {
            reject(&name, "type");
            return http::error(
                StatusCode::BAD_REQUEST,
                format!("no event type at {}", source.type_from),
            );
        };
        let external_id = source
            .id_from
            .as_ref()
            .and_then(|x| x.extract(&parts.headers, &value));
        let event = Event {
            id: EventId::new(),
            source: name.clone(),
            event_type,
            external_id,
            received_at,
            headers: headers_of(&parts.headers),
            body: body_text(body),
            hops: 0,
        };
        let plugins: Vec<String> = live
            .router
            .plugins_for(&event.source, &event.event_type)
            .into_iter()
            .map(|p| p.to_string())
            .collect();
        let event_type = event.event_type.clone();
        let answer = self.store.ingest(NewEvent { event, plugins }).await;
        let (status, resp) = match answer {
            Ok(Ingested::Stored { id, deliveries }) => {
                tracing::info!(event_id = %id, source = %name, event_type = %event_type, deliveries, "event stored");
                (
                    StatusCode::ACCEPTED,
                    json!({ "id": id, "deliveries": deliveries }),
                )
            }
            Ok(Ingested::Duplicate { id }) => {
                METRICS
                    .duplicates
                    .get_or_create(&SourceLabel {
                        source: name.clone(),
                    })
                    .inc();
                tracing::info!(event_id = %id, source = %name, "duplicate event dropped");
                (StatusCode::OK, json!({ "id": id, "duplicate": true }))
            }
            Err(e) => {
                tracing::warn!(source = %name, error = %e, "store refused event");
                let mut resp = http::error(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
                resp.headers_mut().insert(
                    header::RETRY_AFTER,
                    header::HeaderValue::from(e.retry_after_secs()),
                );
                count(&name, &event_type, StatusCode::SERVICE_UNAVAILABLE);
                return resp;
            }
        };
        count(&name, &event_type, status);
        http::json(status, &resp)
    }
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

fn reject(source: &str, reason: &'static str) {
    METRICS
        .rejected
        .get_or_create(&RejectLabels {
            source: source.to_string(),
            reason,
        })
        .inc();
}

fn too_large(limit: u64, version: hyper::Version) -> Response<Body> {
    let mut resp = http::error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("body exceeds {limit} bytes"),
    );
    // HTTP/1: the rest of the body is unread, so the connection cannot be reused.
    // (HTTP/2 resets just the stream, and forbids connection headers.)
    if version < hyper::Version::HTTP_2 {
        resp.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    resp
}

/// Header names are lower-case already in hyper; values that are not UTF-8 are
/// passed on lossily (they were verified on the raw bytes before this).
fn headers_of(map: &hyper::HeaderMap) -> Vec<(String, String)> {
    map.iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// The body is valid JSON at this point, hence valid UTF-8.
fn body_text(body: Bytes) -> String {
    // `Vec::from` takes over the buffer when nothing else holds it (no copy).
    String::from_utf8(Vec::from(body))
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Starts the ingress server on `listener`; returns when `shutdown` resolves and
/// open requests have drained.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    ingress: Ingress,
    header_timeout: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let ingress = Arc::new(ingress);
    http::serve(
        listener,
        header_timeout,
        move |req| {
            // One shared service per listener: a request clones an `Arc`, nothing more.
            let service = ingress.clone();
            async move { service.handle(req).await }
        },
        shutdown,
        Duration::from_secs(10),
    )
    .await;
}
