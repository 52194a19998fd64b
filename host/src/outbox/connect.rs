//! The outbox's connections: resolve the target, check every address it
//! resolved to, connect to a checked one.
//!
//! Owns: name resolution for forwards, the address check on its result
//! ([`forward_policy::check_address`]) and connecting to that very address
//! (so a DNS answer that changes between the check and the connect cannot
//! redirect a forward: there is no second lookup), and one HTTP client (with
//! its keep-alive pool) per plugin and reach, so that a connection opened under
//! one plugin's permissive policy is never reused by another plugin.
//! Never: decides whether a URL is allowed (that is `forward_policy::check`,
//! before a request is built) or reads answers.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Uri;
use hyper_rustls::{ConfigBuilderExt, HttpsConnector};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use crate::forward_policy::{self, Reach};

pub(crate) type HttpsClient = Client<HttpsConnector<Pinned>, Full<Bytes>>;

/// A forward refused while connecting: it resolved to an address its policy
/// does not allow, or to one of the router's own listeners. Never retried.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Refused(pub String);

/// The `Refused` somewhere in an error's chain of causes, if any.
pub(crate) fn refused<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<Refused>() {
            return Some(r);
        }
        cur = err.source();
    }
    None
}

/// Connects only to addresses allowed under `reach`, never to `listeners`.
#[derive(Clone)]
pub(crate) struct Pinned {
    reach: Reach,
    listeners: Arc<[SocketAddr]>,
    connect_timeout: Duration,
}

/// Whether `ip` is one of this machine's addresses: binding a socket to it
/// succeeds only then (no packet is sent).
fn is_local(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

impl Pinned {
    async fn connect(
        self,
        uri: Uri,
    ) -> Result<TokioIo<TcpStream>, Box<dyn std::error::Error + Send + Sync>> {
        let host = uri.host().unwrap_or("");
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let https = uri.scheme_str() == Some("https");
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((host, port))
                .await
                .map_err(|e| io::Error::new(e.kind(), format!("cannot resolve {host}: {e}")))?
                .collect(),
        };
        if addrs.is_empty() {
            return Err(format!("{host} resolves to no address").into());
        }
        // Every address must pass: a name that also resolves to an internal
        // address is refused whole, whichever address a connect would pick.
        for addr in &addrs {
            forward_policy::check_address(*addr, self.reach, &self.listeners, &is_local)
                .map_err(|why| Refused(format!("{host}: {why}")))?;
        }
        let mut last = None;
        for addr in addrs {
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(TokioIo::new(stream));
                }
                Ok(Err(e)) => last = Some(format!("cannot connect to {addr}: {e}")),
                Err(_) => {
                    last = Some(format!(
                        "no connection to {addr} within {:?}",
                        self.connect_timeout
                    ))
                }
            }
        }
        Err(last.unwrap_or_default().into())
    }
}

impl tower_service::Service<Uri> for Pinned {
    type Response = TokioIo<TcpStream>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Box::pin(self.clone().connect(uri))
    }
}

/// One client per (plugin, reach), built on first use.
pub(crate) struct Clients {
    tls: rustls::ClientConfig,
    listeners: Arc<[SocketAddr]>,
    connect_timeout: Duration,
    by_policy: Mutex<HashMap<(String, Reach), HttpsClient>>,
}

impl Clients {
    /// `listeners` are the router's own addresses, never a target.
    pub(crate) fn new(
        listeners: Vec<SocketAddr>,
        connect_timeout: Duration,
    ) -> anyhow::Result<Clients> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = || {
            rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
        };
        let tls = match builder()?.with_native_roots() {
            Ok(b) => b.with_no_client_auth(),
            // No system roots (a minimal container): plain http still works.
            Err(_) => builder()?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        };
        Ok(Clients {
            tls,
            listeners: listeners.into(),
            connect_timeout,
            by_policy: Mutex::new(HashMap::new()),
        })
    }

    pub(crate) fn get(&self, plugin: &str, reach: Reach) -> HttpsClient {
        let mut map = self.by_policy.lock().unwrap_or_else(|p| p.into_inner());
        map.entry((plugin.to_owned(), reach))
            .or_insert_with(|| {
                let pinned = Pinned {
                    reach,
                    listeners: self.listeners.clone(),
                    connect_timeout: self.connect_timeout,
                };
                let https = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(self.tls.clone())
                    .https_or_http()
                    .enable_http1()
                    .enable_http2()
                    .wrap_connector(pinned);
                Client::builder(TokioExecutor::new())
                    .pool_idle_timeout(Duration::from_secs(30))
                    .build(https)
            })
            .clone()
    }

    /// Clients kept now (one per plugin and reach that has forwarded).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_policy.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_name_that_resolves_to_loopback_is_refused_before_any_connect() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let strict = Pinned {
            reach: Reach::Public,
            listeners: Arc::from(Vec::new()),
            connect_timeout: Duration::from_secs(2),
        };
        let uri: Uri = format!("http://localhost:{port}/").parse().unwrap();
        let err = strict.clone().connect(uri).await.unwrap_err();
        let r = refused(err.as_ref()).expect("refused, not failed");
        assert!(r.0.contains("loopback"), "{r}");
        // Nothing connected: the listener has no connection waiting.
        let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
        assert!(accepted.is_err(), "a refused forward must not connect");

        let any = Pinned {
            reach: Reach::Any,
            ..strict
        };
        let uri: Uri = format!("http://127.0.0.1:{port}/").parse().unwrap();
        assert!(any.connect(uri).await.is_ok());
    }

    #[tokio::test]
    async fn own_listeners_are_refused_under_any_reach() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let own = listener.local_addr().unwrap();
        let p = Pinned {
            reach: Reach::Any,
            listeners: Arc::from(vec![own]),
            connect_timeout: Duration::from_secs(2),
        };
        let uri: Uri = format!("http://{own}/admin/dead/replay").parse().unwrap();
        let err = p.connect(uri).await.unwrap_err();
        assert!(refused(err.as_ref()).is_some(), "{err}");
    }

    #[test]
    fn clients_are_kept_per_plugin_and_reach() {
        let c = Clients::new(Vec::new(), Duration::from_secs(1)).unwrap();
        let _ = c.get("a", Reach::Public);
        let _ = c.get("a", Reach::Public);
        let _ = c.get("a", Reach::Any);
        let _ = c.get("b", Reach::Any);
        assert_eq!(c.len(), 3);
    }
}
