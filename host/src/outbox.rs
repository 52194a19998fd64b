//! The outbox: performs plugins' `forward` actions over HTTP(S).
//!
//! Owns: leasing due forwards, enforcing `allow_forward`, POSTing with a request
//! timeout, and recording the outcome (done, retry with backoff, or dead; a 410
//! answer stops the retries).
//! Never: runs plugins. A forward to a host outside `allow_forward` is never sent.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::watch;
use tracing::Instrument;

use crate::config::ForwardTarget;
use crate::event::unix_ms;
use crate::live::Shared;
use crate::metrics::{self, METRICS, OutcomeLabel};
use crate::store::{AttemptTiming, ClaimedForward, Finished, ForwardOutcome, SharedStore, Work};

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

const POLL: Duration = Duration::from_millis(200);

/// Whether `url` may be sent given a plugin's `allow_forward` list: its host must
/// be listed, alone (any port) or as `host:port`.
pub fn check_allowed(url: &str, allow: &[ForwardTarget]) -> Result<(), String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("invalid url {url:?}: {e}"))?;
    let scheme = uri.scheme_str().unwrap_or("");
    if scheme != "http" && scheme != "https" {
        return Err(format!("url {url:?} is not http or https"));
    }
    let host = uri
        .host()
        .unwrap_or("")
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let port = uri
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    if allow.iter().any(|t| t.allows(&host, port)) {
        Ok(())
    } else {
        Err(format!("host {host}:{port} is not in allow_forward"))
    }
}

#[derive(Clone)]
pub(crate) struct Outbox {
    pub store: SharedStore,
    pub live: Shared,
    client: HttpsClient,
}

impl Outbox {
    pub fn new(store: SharedStore, live: Shared) -> anyhow::Result<Outbox> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .or_else(|_| -> anyhow::Result<_> {
                // No system roots (a minimal container): plain http still works.
                Ok(hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(
                    rustls::ClientConfig::builder_with_provider(Arc::new(
                        rustls::crypto::ring::default_provider(),
                    ))
                    .with_safe_default_protocol_versions()?
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
                ))
            })?
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .build();
        let client = Client::builder(TokioExecutor::new()).build(https);
        Ok(Outbox {
            store,
            live,
            client,
        })
    }

    /// Runs until `stop` turns true, then waits for in-flight forwards to finish.
    pub async fn run(self, stop: watch::Receiver<bool>) {
        let workers = self.live.load().config.outbox.workers;
        let store = self.store.clone();
        let claimer = self.clone();
        let claim = move |free: usize| {
            let this = claimer.clone();
            async move {
                // Claim ahead of the free workers (see dispatch); the lease covers
                // the wait in this queue.
                let lease = this.live.load().config.outbox.timeout * 9 + Duration::from_secs(30);
                this.store
                    .claim_forwards(free + workers * 8, lease)
                    .await
                    .unwrap_or_else(|e| {
                        tracing::warn!(error = %e, "cannot claim forwards");
                        Vec::new()
                    })
            }
        };
        let handle = move |f: ClaimedForward| {
            let this = self.clone();
            let span = tracing::info_span!("forward", event_id = %f.event_id, plugin = %f.plugin, url = %f.url);
            async move { this.send(f).await }.instrument(span)
        };
        crate::pool::run(
            workers,
            store.wake(),
            Work::Forwards,
            stop,
            POLL,
            claim,
            handle,
        )
        .await;
    }

    async fn send(&self, f: ClaimedForward) {
        let live = self.live.load_full();
        let outbox = &live.config.outbox;
        let retry = &outbox.retry;
        let (id, token, attempt) = (f.id, f.token, f.attempts + 1);
        let started_at = SystemTime::now();
        let started = std::time::Instant::now();
        let allow = live
            .config
            .settings(&f.plugin)
            .map(|s| s.allow_forward.as_slice())
            .unwrap_or(&[]);
        let result = match check_allowed(&f.url, allow) {
            Err(why) => Err((why, None, false)),
            Ok(()) => self.post(f, outbox.timeout).await,
        };
        let now = unix_ms(SystemTime::now());
        let timing = AttemptTiming {
            started_at,
            duration: started.elapsed(),
        };
        let outcome = match result {
            Ok(status) => {
                METRICS
                    .forwards
                    .get_or_create(&OutcomeLabel { outcome: "sent" })
                    .inc();
                tracing::info!(status, attempt, "forward delivered");
                ForwardOutcome::Sent { status, timing }
            }
            Err((error, status, retryable)) => {
                let retry_at = retry.retry_at(attempt, now).filter(|_| retryable);
                metrics::record_failure("forward", retry_at);
                let outcome = if retry_at.is_some() { "retry" } else { "dead" };
                METRICS
                    .forwards
                    .get_or_create(&OutcomeLabel { outcome })
                    .inc();
                if retry_at.is_some() {
                    tracing::warn!(error = %error, attempt, "forward failed; will retry");
                } else {
                    tracing::error!(error = %error, attempt, "forward dead-lettered");
                }
                ForwardOutcome::Failed {
                    error,
                    status,
                    retry_at,
                    timing,
                }
            }
        };
        match self.store.finish_forward(id, token, outcome).await {
            Ok(Finished::Stale) => {
                tracing::warn!(
                    "forward outcome not recorded: its lease had passed to another attempt"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "cannot record forward outcome"),
        }
    }

    /// POSTs the forward (its body moves into the request); `Err((why,
    /// status, retryable))` on failure.
    async fn post(
        &self,
        f: ClaimedForward,
        timeout: Duration,
    ) -> Result<u16, (String, Option<u16>, bool)> {
        let mut req = Request::post(f.url.as_str());
        let mut has_type = false;
        for (k, v) in &f.headers {
            has_type |= k.eq_ignore_ascii_case("content-type");
            req = req.header(k.as_str(), v.as_str());
        }
        if !has_type {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .header("x-hookrouter-event-id", f.event_id.to_string())
            .header("x-hookrouter-plugin", f.plugin.as_str())
            .header("x-hookrouter-forward-id", f.id.to_string())
            .body(Full::new(Bytes::from(f.body)))
            .map_err(|e| (format!("cannot build request: {e}"), None, false))?;
        let resp = match tokio::time::timeout(timeout, self.client.request(req)).await {
            Err(_) => {
                return Err((
                    format!("no answer within {} ms", timeout.as_millis()),
                    None,
                    true,
                ));
            }
            Ok(Err(e)) => return Err((format!("request failed: {e}"), None, true)),
            Ok(Ok(resp)) => resp,
        };
        let status = resp.status();
        // Drain (a little of) the body so the connection can be reused.
        let _ = tokio::time::timeout(Duration::from_secs(1), resp.into_body().collect()).await;
        match status {
            s if s.is_success() => Ok(s.as_u16()),
            StatusCode::GONE => Err((
                "target answered 410 Gone; not retrying".into(),
                Some(410),
                false,
            )),
            s => Err((format!("target answered {s}"), Some(s.as_u16()), true)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check_allowed;
    use crate::config::ForwardTarget;

    fn allow(v: &[&str]) -> Vec<ForwardTarget> {
        v.iter().map(|s| ForwardTarget::parse(s).unwrap()).collect()
    }

    #[test]
    fn host_alone_allows_any_port() {
        let a = allow(&["hooks.slack.com"]);
        assert!(check_allowed("https://hooks.slack.com/services/x", &a).is_ok());
        assert!(check_allowed("http://hooks.slack.com:8080/x", &a).is_ok());
        assert!(check_allowed("https://evil.example/x", &a).is_err());
        assert!(check_allowed("https://hooks.slack.com.evil.example/x", &a).is_err());
    }

    #[test]
    fn host_and_port_must_both_match() {
        let a = allow(&["127.0.0.1:9000"]);
        assert!(check_allowed("http://127.0.0.1:9000/audit", &a).is_ok());
        assert!(check_allowed("http://127.0.0.1:9001/audit", &a).is_err());
        assert!(check_allowed("http://127.0.0.1/audit", &a).is_err());
        let a = allow(&["example.com:443"]);
        assert!(check_allowed("https://example.com/x", &a).is_ok());
    }

    #[test]
    fn empty_list_and_bad_urls_refuse() {
        assert!(check_allowed("http://127.0.0.1:9000/", &[]).is_err());
        assert!(check_allowed("ftp://127.0.0.1/", &allow(&["127.0.0.1"])).is_err());
        assert!(check_allowed("not a url", &allow(&["127.0.0.1"])).is_err());
    }

    #[test]
    fn ipv6_hosts() {
        let a = allow(&["[::1]:9000"]);
        assert!(check_allowed("http://[::1]:9000/x", &a).is_ok());
        assert!(check_allowed("http://[::1]:9001/x", &a).is_err());
    }
}
