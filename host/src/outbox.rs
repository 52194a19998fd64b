//! The outbox: performs plugins' `forward` actions over HTTP(S).
//!
//! Owns: leasing due forwards, applying the forward policy again at send time
//! ([`forward_policy::check`], then the address checks of [`connect`]),
//! POSTing with a request timeout and a stable `webhook-id`, reading at most
//! [`MAX_ANSWER_BYTES`] of the answer, and recording the outcome (done, retry
//! with backoff, or dead; a 410 answer or a refused target stops the retries).
//! Never: runs plugins. A forward outside its plugin's policy is never sent,
//! and its URL appears in logs only [`redact`](forward_policy::redact)ed.

mod connect;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use tokio::sync::watch;
use tracing::Instrument;

use crate::event::unix_ms;
use crate::forward_policy::{self, MAX_ANSWER_BYTES, Permit};
use crate::handoff::{Handed, Terms};
use crate::live::Shared;
use crate::metrics::{self, METRICS, OutcomeLabel};
use crate::scheduler::Room;
use crate::store::{
    AttemptTiming, ClaimedForward, Finished, ForwardId, ForwardOutcome, SharedStore, Work,
};

const POLL: Duration = Duration::from_millis(200);

/// Why an attempt failed, and whether another may succeed.
#[derive(Debug)]
struct Failure {
    error: String,
    status: Option<u16>,
    retry: bool,
}

impl Failure {
    fn dead(error: impl Into<String>) -> Failure {
        Failure {
            error: error.into(),
            status: None,
            retry: false,
        }
    }

    fn retry(error: impl Into<String>, status: Option<u16>) -> Failure {
        Failure {
            error: error.into(),
            status,
            retry: true,
        }
    }
}

/// `webhook-id` of a forward: the same on every attempt (its store id), so a
/// target can drop the duplicates that at-least-once delivery allows.
pub fn webhook_id(forward_id: ForwardId) -> String {
    forward_id.to_string()
}

/// How long a claimed or handed-over forward stays leased (the wait in the
/// local queues, about `PREFETCH` request timeouts, the request, a margin), and
/// how long its request may last with the read of the answer (see
/// `Handed::run`).
pub(crate) fn terms(config: &crate::config::Config) -> Terms {
    Terms {
        lease: config.outbox.timeout * (PREFETCH as u32 + 1) + Duration::from_secs(30),
        run: config.outbox.timeout + ANSWER_READ,
    }
}

/// How long the answer's body is read at most after its head.
const ANSWER_READ: Duration = Duration::from_secs(1);

/// Forwards claimed per worker beyond the free ones.
const PREFETCH: usize = 8;

/// Outcomes being recorded at once (a worker sends its next forward meanwhile).
const RECORDING: u32 = 4096;

/// The key a forward is queued under: its target (scheme, host and port), so
/// each target gets its share of the workers (at most half of them while
/// another target waits) and one slow target cannot hold them all.
pub(crate) fn target_key(url: &str) -> String {
    match url.parse::<hyper::Uri>() {
        Ok(u) => format!(
            "{}://{}",
            u.scheme_str().unwrap_or(""),
            u.authority().map_or("", |a| a.as_str())
        ),
        Err(_) => String::new(),
    }
}

#[derive(Clone)]
pub(crate) struct Outbox {
    pub store: SharedStore,
    pub live: Shared,
    clients: std::sync::Arc<connect::Clients>,
    recording: std::sync::Arc<tokio::sync::Semaphore>,
}

impl Outbox {
    /// `listeners` are the router's own addresses: never a forward's target.
    pub fn new(
        store: SharedStore,
        live: Shared,
        listeners: Vec<SocketAddr>,
    ) -> anyhow::Result<Outbox> {
        let timeout = live.load().config.outbox.timeout;
        let clients = connect::Clients::new(listeners, timeout)?;
        Ok(Outbox {
            store,
            live,
            clients: std::sync::Arc::new(clients),
            recording: std::sync::Arc::new(tokio::sync::Semaphore::new(RECORDING as usize)),
        })
    }

    /// Runs until `stop` turns true, then waits for in-flight forwards to finish
    /// and their outcomes to be recorded. `inbox` brings the forwards dispatch
    /// handed over.
    pub async fn run(
        self,
        stop: watch::Receiver<bool>,
        inbox: tokio::sync::mpsc::UnboundedReceiver<(String, Handed<ClaimedForward>)>,
    ) {
        let workers = self.live.load().config.outbox.workers;
        let wake_on = self.store.clone();
        let claimer = self.clone();
        let claim = move |room: Room| {
            let this = claimer.clone();
            async move {
                // The claim is not per target: ask for what the queues may hold.
                let limit = room.for_key("");
                let terms = terms(&this.live.load().config);
                match this.store.claim_forwards(limit.max(1), terms.lease).await {
                    Ok(fs) => {
                        let start_by = terms.start_by();
                        fs.into_iter()
                            .map(|f| (target_key(&f.url), Handed::claimed(f, start_by)))
                            .collect()
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot claim forwards");
                        Vec::new()
                    }
                }
            }
        };
        let store = self.store.clone();
        let give_back = move |left: Vec<Handed<ClaimedForward>>| async move {
            for f in left.into_iter().map(|h| h.item) {
                let _ = store
                    .finish_forward(f.id, f.token, ForwardOutcome::Release)
                    .await;
            }
        };
        let recording = self.recording.clone();
        let handle = move |handed: Handed<ClaimedForward>| {
            let this = self.clone();
            let f = &handed.item;
            let span = tracing::info_span!("forward", event_id = %f.event_id, plugin = %f.plugin, forward_id = %webhook_id(f.id), url = %forward_policy::redact(&f.url));
            async move { handed.run("forward", |f| this.send(f)).await }.instrument(span)
        };
        let quota = move |_: &str| (workers / 2).max(1);
        let settings = crate::scheduler::Settings {
            workers,
            prefetch: PREFETCH,
            poll: POLL,
            work: Work::Forwards,
        };
        crate::scheduler::run(
            settings,
            quota,
            wake_on.wake(),
            inbox,
            stop,
            claim,
            handle,
            give_back,
        )
        .await;
        let _ = recording.acquire_many(RECORDING).await;
    }

    async fn send(&self, f: ClaimedForward) {
        let live = self.live.load_full();
        let outbox = &live.config.outbox;
        let retry = &outbox.retry;
        let (id, token, attempt) = (f.id, f.token, f.attempts + 1);
        let started_at = SystemTime::now();
        let started = std::time::Instant::now();
        let policy = live.config.forward_policy(&f.plugin);
        let result = match forward_policy::check(&f.url, &f.headers, policy) {
            Err(why) => Err(Failure::dead(why)),
            Ok(permit) => self.post(f, &permit, outbox.timeout).await,
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
            Err(Failure {
                error,
                status,
                retry: retryable,
            }) => {
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
        // Recorded while this worker sends the next forward; the lease keeps
        // the forward from being claimed again meanwhile.
        let Ok(permit) = self.recording.clone().acquire_owned().await else {
            return;
        };
        let store = self.store.clone();
        let record = async move {
            match store.finish_forward(id, token, outcome).await {
                Ok(Finished::Stale) => tracing::warn!(
                    "forward outcome not recorded: its lease had passed to another attempt"
                ),
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "cannot record forward outcome"),
            }
            drop(permit);
        };
        tokio::spawn(record.instrument(tracing::Span::current()));
    }

    /// POSTs the forward (its body moves into the request) through the client
    /// of its plugin and reach; the answer's status on success.
    async fn post(
        &self,
        f: ClaimedForward,
        permit: &Permit,
        timeout: Duration,
    ) -> Result<u16, Failure> {
        let client = self.clients.get(&f.plugin, permit.reach);
        let mut req = Request::post(f.url.as_str());
        let (mut has_type, mut has_id) = (false, false);
        for (k, v) in &f.headers {
            has_type |= k.eq_ignore_ascii_case("content-type");
            has_id |= k.eq_ignore_ascii_case("webhook-id");
            req = req.header(k.as_str(), v.as_str());
        }
        if !has_type {
            req = req.header("content-type", "application/json");
        }
        // A plugin that signs its forwards (Standard Webhooks) sets its own id.
        if !has_id {
            req = req.header("webhook-id", webhook_id(f.id));
        }
        let req = req
            .header("x-hookrouter-event-id", f.event_id.to_string())
            .header("x-hookrouter-plugin", f.plugin.as_str())
            .header("x-hookrouter-forward-id", f.id.to_string())
            .body(Full::new(Bytes::from(f.body)))
            .map_err(|e| Failure::dead(format!("cannot build request: {e}")))?;
        let resp = match tokio::time::timeout(timeout, client.request(req)).await {
            Err(_) => {
                return Err(Failure::retry(
                    format!("no answer within {} ms", timeout.as_millis()),
                    None,
                ));
            }
            Ok(Err(e)) => {
                if let Some(r) = connect::refused(&e) {
                    return Err(Failure::dead(format!("target refused: {r}")));
                }
                return Err(Failure::retry(
                    format!("request failed: {}", causes(&e)),
                    None,
                ));
            }
            Ok(Ok(resp)) => resp,
        };
        let status = resp.status();
        // Read a little of the answer, never more than MAX_ANSWER_BYTES: a
        // short answer lets the connection be reused, a long one is cut off.
        let _ = tokio::time::timeout(ANSWER_READ, read_some(resp.into_body())).await;
        match status {
            s if s.is_success() => Ok(s.as_u16()),
            StatusCode::GONE => Err(Failure {
                error: "target answered 410 Gone; not retrying".into(),
                status: Some(410),
                retry: false,
            }),
            s => Err(Failure::retry(
                format!("target answered {s}"),
                Some(s.as_u16()),
            )),
        }
    }
}

/// Reads and drops at most [`MAX_ANSWER_BYTES`] of a body; returns how many.
async fn read_some(mut body: hyper::body::Incoming) -> usize {
    let mut read = 0;
    while read < MAX_ANSWER_BYTES {
        match body.frame().await {
            Some(Ok(frame)) => read += frame.data_ref().map_or(0, |d| d.len()),
            _ => break,
        }
    }
    read
}

/// An error and its causes, `a: b: c`.
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}
