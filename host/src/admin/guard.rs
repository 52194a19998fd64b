//! The admin listener's guard: who may ask, from where, and how.
//!
//! Owns: refusing to serve a non-loopback admin listener without a token, the
//! `Host` check against `[admin] allowed_hosts` (DNS rebinding), the bearer
//! token (compared in constant time), and, for state-changing requests,
//! `Content-Type: application/json` and a same-origin `Origin` (CSRF).
//! Never: routes; it knows only which paths are open to probes, so the handler
//! calls [`Guard::check`] once, before any route.

use std::net::SocketAddr;

use hyper::{HeaderMap, Method, Response, StatusCode, Uri, header};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Config;
use crate::http::{self, Body};
use crate::net::HostPort;

/// Paths a health probe reads: no token, any `Host` (probes address the
/// listener by whatever IP it has), and nothing in them is private.
const PROBES: [&str; 2] = ["/healthz", "/readyz"];

/// Why the guard refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub status: StatusCode,
    pub message: String,
}

impl Refusal {
    /// `{"error": message}`, with `WWW-Authenticate: Bearer` on a 401.
    pub(crate) fn response(self) -> Response<Body> {
        let mut resp = http::error(self.status, self.message);
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}

/// Fails when an admin listener on `addr` would serve without a token.
pub(crate) fn check_exposure(addr: SocketAddr, config: &Config) -> anyhow::Result<()> {
    crate::config::admin_exposure(addr, config.admin_token.is_some())
        .map_err(|why| anyhow::anyhow!("server.admin_listen: {why}"))
}

/// The guard of one admin listener.
#[derive(Debug, Clone)]
pub(crate) struct Guard {
    listener: SocketAddr,
}

impl Guard {
    pub(crate) fn new(listener: SocketAddr) -> Guard {
        Guard { listener }
    }

    /// The hosts accepted when `[admin] allowed_hosts` is not set: the
    /// listener's address, `localhost` and `127.0.0.1`, each with its port.
    fn default_hosts(&self) -> Vec<HostPort> {
        let port = Some(self.listener.port());
        [
            self.listener.ip().to_string(),
            "localhost".into(),
            "127.0.0.1".into(),
        ]
        .into_iter()
        .map(|host| HostPort { host, port })
        .collect()
    }

    /// `Ok` when the request may go on to the routes; otherwise the refusal.
    /// `needs_token`: the route holds data or changes state (the dashboard's
    /// own page and assets do not: it asks for the token, then sends it).
    pub(crate) fn check(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        config: &Config,
        needs_token: bool,
    ) -> Result<(), Refusal> {
        let probe = matches!(*method, Method::GET | Method::HEAD) && PROBES.contains(&uri.path());
        if probe {
            return Ok(());
        }
        let host = self.accepted_host(uri, headers, config)?;
        if let Some(token) = config.admin_token.as_deref().filter(|_| needs_token) {
            check_token(headers, token)?;
        }
        if !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
            check_state_change(headers, &host)?;
        }
        Ok(())
    }

    /// The request's host (`Host`, or the HTTP/2 `:authority`) if it is allowed.
    fn accepted_host(
        &self,
        uri: &Uri,
        headers: &HeaderMap,
        config: &Config,
    ) -> Result<String, Refusal> {
        let given = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| uri.authority().map(|a| a.as_str()))
            .unwrap_or("");
        let parsed = HostPort::parse(given);
        let defaults;
        let allowed = match &config.admin_allowed_hosts {
            Some(list) => list.as_slice(),
            None => {
                defaults = self.default_hosts();
                defaults.as_slice()
            }
        };
        let ok = parsed.as_ref().is_some_and(|h| {
            let port = h.port.unwrap_or(80);
            allowed.iter().any(|a| a.allows(&h.host, port))
        });
        if ok {
            Ok(given.to_owned())
        } else {
            Err(Refusal {
                status: StatusCode::FORBIDDEN,
                message: format!(
                    "host {:?} is not in [admin] allowed_hosts",
                    crate::log_safe::Escaped(given).to_string()
                ),
            })
        }
    }
}

fn check_token(headers: &HeaderMap, token: &str) -> Result<(), Refusal> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Digests first, so that the comparison takes the same time whatever the
    // lengths; then constant time over the digests.
    let (a, b) = (
        Sha256::digest(given.as_bytes()),
        Sha256::digest(token.as_bytes()),
    );
    if bool::from(a.as_slice().ct_eq(b.as_slice())) {
        return Ok(());
    }
    Err(Refusal {
        status: StatusCode::UNAUTHORIZED,
        message: "missing or wrong bearer token".into(),
    })
}

/// A state-changing request: JSON only (a form or a `text/plain` fetch from
/// another site needs no preflight; JSON does), and a same-origin `Origin`.
fn check_state_change(headers: &HeaderMap, host: &str) -> Result<(), Refusal> {
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    if media.as_deref() != Some("application/json") {
        return Err(Refusal {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            message: "state-changing admin requests need Content-Type: application/json".into(),
        });
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("").to_ascii_lowercase();
        let host = host.to_ascii_lowercase();
        let same = origin == format!("http://{host}") || origin == format!("https://{host}");
        if !same {
            return Err(Refusal {
                status: StatusCode::FORBIDDEN,
                message: format!(
                    "origin {:?} is not this admin listener ({host})",
                    crate::log_safe::Escaped(&origin).to_string()
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
