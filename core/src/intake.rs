//! The pure part of the ingress: from a request's headers and body, for one
//! source, to the [`Event`] that is stored, or the [`Rejection`] that answers it.
//!
//! Owns: the order of the checks after the body is read (signature, JSON,
//! event type, event id), the credential headers that never travel further
//! than this (`Authorization`, `Cookie`, `Proxy-Authorization`), the mask that
//! admin views put on signature headers, and the `Rejection` type every
//! refusal of the ingress is one of.
//! Never: reads a socket, the clock or the store (the body is read, and the time
//! taken, by the caller); it is what the ingress fuzz target runs.

use std::time::SystemTime;

use http::{HeaderMap, StatusCode};

use crate::config::Source;
use crate::event::Event;

/// Why a request is refused: its status, the `reason` label of
/// `hookrouter_events_rejected_total`, and the message of the JSON error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: StatusCode,
    pub reason: &'static str,
    pub message: String,
}

impl Rejection {
    pub fn new(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Rejection {
            status,
            reason,
            message: message.into(),
        }
    }
}

/// Headers dropped before an event is stored: no plugin, no admin view and no
/// retry ever sees them.
pub const CREDENTIAL_HEADERS: [&str; 3] = ["authorization", "cookie", "proxy-authorization"];

/// What admin views show in place of a signature header's value.
pub const MASK: &str = "<masked>";

/// Checks a request for `source` and builds its event: signature over the raw
/// body, JSON, event type, event id; credential headers dropped.
pub fn event(
    source: &Source,
    headers: &HeaderMap,
    body: Vec<u8>,
    received_at: SystemTime,
) -> Result<Event, Rejection> {
    source
        .verifier
        .verify(headers, &body, received_at)
        .map_err(|e| {
            Rejection::new(
                StatusCode::UNAUTHORIZED,
                "signature",
                format!("signature rejected: {e}"),
            )
        })?;
    // Not parsed into a tree: the body stays bytes, and one pass over it checks
    // the syntax and reads the type and id where the source's pointers say.
    let pointers = source
        .type_from
        .pointers()
        .chain(source.id_from.iter().flat_map(|x| x.pointers()));
    let scanned = crate::json_scan::Scanned::scan(&body, pointers).map_err(|e| {
        Rejection::new(
            StatusCode::BAD_REQUEST,
            "json",
            format!("body is not valid JSON: {e}"),
        )
    })?;
    // `extract` never returns an empty value.
    let event_type = source
        .type_from
        .extract_scanned(headers, &scanned)
        .ok_or_else(|| {
            Rejection::new(
                StatusCode::BAD_REQUEST,
                "type",
                format!("no event type at {}", source.type_from),
            )
        })?;
    let external_id = source
        .id_from
        .as_ref()
        .and_then(|x| x.extract_scanned(headers, &scanned));
    Ok(Event {
        id: crate::event::EventId::new(),
        source: source.name.to_string(),
        event_type,
        external_id,
        received_at,
        headers: kept_headers(headers),
        body: body_text(body),
        hops: 0,
    })
}

/// The request's headers as stored: names lower-case (as `http` keeps them),
/// in arrival order, credential headers left out. Values that are not UTF-8
/// are kept lossily (the signature was checked on the raw bytes before this).
pub fn kept_headers(map: &HeaderMap) -> Vec<(String, String)> {
    map.iter()
        .filter(|(k, _)| !CREDENTIAL_HEADERS.contains(&k.as_str()))
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// Whether an admin view masks this header: the source's own signature
/// headers, and any name that looks like a signature, token or secret.
pub fn is_masked(name: &str, source: Option<&Source>) -> bool {
    let name = name.to_ascii_lowercase();
    if CREDENTIAL_HEADERS.contains(&name.as_str()) {
        return true;
    }
    if source.is_some_and(|s| s.verifier.scheme().signature_headers().contains(&name)) {
        return true;
    }
    ["signature", "hmac", "token", "secret", "api-key", "apikey"]
        .iter()
        .any(|w| name.contains(w))
}

/// Headers as an admin view shows them: signature and secret-like values masked.
pub fn masked_headers(
    headers: &[(String, String)],
    source: Option<&Source>,
) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| {
            let v = if is_masked(k, source) {
                MASK
            } else {
                v.as_str()
            };
            (k.clone(), v.to_owned())
        })
        .collect()
}

/// The body is valid JSON at this point, hence valid UTF-8.
fn body_text(body: Vec<u8>) -> String {
    String::from_utf8(body).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests;
