//! Reading a request body: under `server.max_body_bytes` (never read past it),
//! within `server.body_timeout_ms`, and against the in-flight budget.
//!
//! Owns: the `413`, `408`, `400` (unreadable body) and `503` (budget) refusals.
//! Never: looks at what the body says; that is `intake`.

use std::sync::Arc;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{HeaderMap, StatusCode, header};

use super::budget::{Budget, Reservation};
use crate::config::Server;
use crate::intake::Rejection;

fn too_large(limit: u64) -> Rejection {
    Rejection::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "size",
        format!("body exceeds {limit} bytes"),
    )
}

fn over_budget(budget: &Budget) -> Rejection {
    Rejection::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "memory",
        format!(
            "too many request bodies in memory ({} bytes held); retry shortly",
            budget.used()
        ),
    )
}

/// The whole body, and the reservation that holds its bytes against the budget
/// until the caller is done with them.
pub(super) async fn read(
    body: Incoming,
    headers: &HeaderMap,
    server: &Server,
    budget: &Arc<Budget>,
) -> Result<(Vec<u8>, Reservation), Rejection> {
    let limit = server.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // Refuse by Content-Length before reading, and reserve what it declares.
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    let mut reservation = budget
        .reserve(declared.unwrap_or(0))
        .ok_or_else(|| over_budget(budget))?;
    let mut reserved = declared.unwrap_or(0);
    let mut buf = Vec::with_capacity(reserved as usize);
    let collect = async {
        let mut body = body;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                Rejection::new(
                    StatusCode::BAD_REQUEST,
                    "body",
                    format!("cannot read request body: {e}"),
                )
            })?;
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            let len = buf.len() as u64 + data.len() as u64;
            if len > limit {
                return Err(too_large(limit));
            }
            // A chunked body counts what it has read; a declared one was reserved.
            if len > reserved {
                if !reservation.grow(len - reserved) {
                    return Err(over_budget(budget));
                }
                reserved = len;
            }
            buf.extend_from_slice(&data);
        }
        Ok(())
    };
    match tokio::time::timeout(server.body_timeout, collect).await {
        Err(_) => Err(Rejection::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            "request body not received in time",
        )),
        Ok(Err(r)) => Err(r),
        Ok(Ok(())) => Ok((buf, reservation)),
    }
}
