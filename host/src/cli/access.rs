//! How the CLI's store commands reach the store: through a running router's
//! admin API, or, when none is running, by opening the store directly.
//!
//! Owns: the "is a router running?" test (its admin listener answers), the
//! admin API client of the CLI, and opening the store for a command.
//! Never: opens the store beside a running router (SQLite allows one process;
//! the lock file would refuse it anyway).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::config::{Backend, Config};
use crate::store::SharedStore;

/// Where a command's reads and writes go.
pub(crate) enum Access {
    Api(Box<AdminClient>),
    Direct(SharedStore),
}

/// Picks the admin API when a router answers on `admin_listen`, else opens the
/// store (refusing to create an SQLite store that does not exist yet).
pub(crate) async fn open(config: &Config) -> anyhow::Result<Access> {
    // An SQLite store names the router that holds it; otherwise (or when that
    // router has not announced itself yet) try the configured address.
    let announced = match config.store.backend {
        Backend::Sqlite => crate::store::sqlite::SqliteStore::running_router(&config.store.path),
        Backend::Postgres { .. } => None,
    };
    let addr = dial_addr(announced.unwrap_or(config.server.admin_listen));
    let running = addr.port() != 0
        && tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
            .await
            .is_ok_and(|c| c.is_ok());
    if running {
        return Ok(Access::Api(Box::new(AdminClient::new(
            addr,
            config.admin_token.clone(),
        ))));
    }
    if config.store.backend == Backend::Sqlite && !config.store.path.exists() {
        bail!(
            "store {} does not exist (no router has run on this config yet)",
            config.store.path.display()
        );
    }
    Ok(Access::Direct(crate::store::open(config).await?))
}

/// A listener on the unspecified address is reached on loopback.
fn dial_addr(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, listen.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, listen.port()).into(),
        _ => listen,
    }
}

/// A small client of the admin API.
pub(crate) struct AdminClient {
    base: String,
    token: Option<String>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl AdminClient {
    fn new(addr: SocketAddr, token: Option<String>) -> AdminClient {
        AdminClient {
            base: format!("http://{addr}"),
            token,
            client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
        }
    }

    /// Sends a request; `Ok((status, JSON body))` for any answer.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<(StatusCode, serde_json::Value)> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let body = match body {
            Some(v) => {
                req = req.header(hyper::header::CONTENT_TYPE, "application/json");
                Full::new(Bytes::from(v.to_string()))
            }
            None => Full::new(Bytes::new()),
        };
        let resp = tokio::time::timeout(
            Duration::from_secs(120),
            self.client.request(req.body(body)?),
        )
        .await
        .context("the router's admin API did not answer in time")?
        .context("cannot reach the router's admin API")?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
        });
        if status == StatusCode::UNAUTHORIZED {
            bail!(
                "the router's admin API refused the token (set the variable named by [admin] token_env)"
            );
        }
        Ok((status, json))
    }
}

impl AdminClient {
    /// Starts a `GET` whose answer is read as it arrives (the event stream).
    pub(crate) async fn stream(
        &self,
        path: &str,
    ) -> anyhow::Result<hyper::Response<hyper::body::Incoming>> {
        let mut req = Request::builder()
            .method(Method::GET)
            .uri(format!("{}{path}", self.base))
            .header(hyper::header::ACCEPT, "text/event-stream");
        if let Some(t) = &self.token {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let resp = tokio::time::timeout(
            Duration::from_secs(30),
            self.client.request(req.body(Full::new(Bytes::new()))?),
        )
        .await
        .context("the router's admin API did not answer in time")?
        .context("cannot reach the router's admin API")?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            bail!(
                "the router's admin API refused the token (set the variable named by [admin] token_env)"
            );
        }
        Ok(resp)
    }
}

/// The `error` of an admin API answer, or the whole body.
pub(crate) fn api_error(body: &serde_json::Value) -> String {
    body.get("error")
        .and_then(|e| e.as_str())
        .map_or_else(|| body.to_string(), str::to_string)
}
