//! Typed answers of the admin API: the response body type, JSON answers built
//! from `Serialize` structs, and [`ApiError`], the one error every handler
//! returns.
//!
//! Owns: status codes of admin errors and the JSON shape `{"error": "..."}`.
//! Never: reads requests or the store; handlers do, and answer through here.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::{Response, StatusCode, header};
use serde::Serialize;

use super::stream::SseBody;
use crate::store::StoreError;

/// Every admin response body: a whole one, or the event stream.
pub(crate) type Body = Either<Full<Bytes>, SseBody>;

/// What a handler answers.
pub(super) type Answer = Result<Response<Body>, ApiError>;

/// A whole body with `status` and `content_type`.
pub(super) fn bytes(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(Either::Left(Full::new(body.into())))
        .expect("static response parts are valid")
}

/// `value` as JSON with `status`.
pub(super) fn json_with<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(body) => bytes(status, "application/json", body),
        Err(e) => ApiError::Internal(format!("cannot encode the answer: {e}")).response(),
    }
}

/// `value` as JSON, `200 OK`.
pub(super) fn json<T: Serialize + ?Sized>(value: &T) -> Answer {
    Ok(json_with(StatusCode::OK, value))
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

/// Why an admin request failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum ApiError {
    /// The request is malformed: a bad id, parameter or body.
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    /// The path exists with other methods (listed in `Allow`).
    #[error("method not allowed")]
    MethodNotAllowed(String),
    /// The store refused or failed (`503` with `Retry-After`).
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub(super) fn bad(msg: impl Into<String>) -> ApiError {
        ApiError::BadRequest(msg.into())
    }

    pub(super) fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// `{"error": message}` with the error's status and headers.
    pub(super) fn response(&self) -> Response<Body> {
        let message = self.to_string();
        let mut resp = json_with(self.status(), &ErrorBody { error: &message });
        let headers = resp.headers_mut();
        match self {
            ApiError::MethodNotAllowed(allow) => {
                if let Ok(v) = header::HeaderValue::from_str(allow) {
                    headers.insert(header::ALLOW, v);
                }
            }
            ApiError::Store(e) => {
                headers.insert(
                    header::RETRY_AFTER,
                    header::HeaderValue::from(e.retry_after_secs()),
                );
            }
            _ => {}
        }
        resp
    }
}

/// Never produced: lets `Infallible` errors convert.
impl From<Infallible> for ApiError {
    fn from(e: Infallible) -> Self {
        match e {}
    }
}
