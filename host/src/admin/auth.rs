//! The admin bearer token (`[admin] token_env`).
//!
//! Owns: comparing the `Authorization: Bearer` header with the configured
//! token, in constant time.
//! Never: reads a token from anywhere but that header (no cookies, no query
//! string), so a page elsewhere cannot make a browser send it.

use hyper::Request;
use hyper::body::Incoming;
use hyper::header;
use subtle::ConstantTimeEq;

use super::Admin;
use super::api::ApiError;

/// `Ok` when no token is configured, or the request carries it.
pub(super) fn check(admin: &Admin, req: &Request<Incoming>) -> Result<(), ApiError> {
    let live = admin.live.load();
    let Some(token) = live.config.admin_token.as_deref() else {
        return Ok(());
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}
