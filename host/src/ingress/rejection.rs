//! The one place a refused webhook request becomes an answer: the JSON error,
//! the headers its status calls for, the metric and the log line.
//!
//! Owns: turning an [`intake::Rejection`](crate::intake::Rejection) into a response
//! (`Allow` on 405, `Retry-After` on 503, `Connection: close` on HTTP/1 when the
//! body was left unread) and counting it in `hookrouter_events_rejected_total`.
//! Never: decides whether a request is refused; the ingress's steps do.

use hyper::{Response, StatusCode, Version, header};

use crate::http::{self, Body};
use crate::intake::Rejection;
use crate::log_safe::Escaped;
use crate::metrics::{METRICS, RejectLabels};

/// The answer to a refused request for `source` ("" when the source is unknown).
pub(super) fn answer(r: Rejection, source: &str, version: Version) -> Response<Body> {
    METRICS
        .rejected
        .get_or_create(&RejectLabels {
            source: source.to_string(),
            reason: r.reason,
        })
        .inc();
    match r.reason {
        "backlog" | "store" | "memory" => {
            tracing::warn!(source, reason = r.reason, error = %Escaped(&r.message), "request refused; the sender retries")
        }
        "signature" => {
            tracing::info!(source, error = %Escaped(&r.message), "signature rejected")
        }
        _ => {
            tracing::debug!(source, reason = r.reason, error = %Escaped(&r.message), "request refused")
        }
    }
    let mut resp = http::error(r.status, r.message);
    let headers = resp.headers_mut();
    match r.status {
        StatusCode::METHOD_NOT_ALLOWED => {
            headers.insert(header::ALLOW, header::HeaderValue::from_static("POST"));
        }
        StatusCode::SERVICE_UNAVAILABLE => {
            // A full backlog or budget clears in a moment; a failing or full disk may not.
            let secs = match r.reason {
                "disk" => "30",
                "store" => "5",
                _ => "1",
            };
            headers.insert(header::RETRY_AFTER, header::HeaderValue::from_static(secs));
        }
        _ => {}
    }
    // HTTP/1: a body left unread means the connection cannot be reused.
    // (HTTP/2 resets just the stream, and forbids connection headers.)
    let unread = matches!(r.reason, "size" | "timeout" | "memory");
    if unread && version < Version::HTTP_2 {
        headers.insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    resp
}
