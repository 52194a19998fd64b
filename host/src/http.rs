//! The HTTP server loop shared by the ingress and admin listeners, and small
//! response helpers.
//!
//! Owns: accepting connections (backing off when the process is out of file
//! descriptors), the connection cap ([`conns`]), protocol detection under a
//! deadline ([`detect`]), HTTP/1.1 and h2c with their limits (header timeout,
//! idle timeout, concurrent streams, reset-flood limits), and graceful
//! shutdown of open connections.
//! Never: looks inside requests; services do that.

mod conns;
mod detect;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::{Request, Response, StatusCode, header};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub(crate) use conns::{Conns, raise_nofile_limit};
use detect::{Protocol, Rewind, detect};

pub(crate) type Body = Full<Bytes>;

/// A JSON response.
pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(value.to_string())))
        .expect("static response parts are valid")
}

/// `{"error": message}` with `status`.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    json(status, &serde_json::json!({ "error": message.into() }))
}

/// A plain-text response.
pub(crate) fn text(
    status: StatusCode,
    body: impl Into<Bytes>,
    content_type: &str,
) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(Full::new(body.into()))
        .expect("static response parts are valid")
}

/// How one listener treats its connections.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    /// A connection must have sent its protocol (and, for HTTP/1, each request
    /// head) within this.
    pub header_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    pub http2_max_streams: u32,
    /// How long shutdown waits for open requests.
    pub drain: Duration,
}

impl Limits {
    pub(crate) fn from_config(server: &crate::config::Server, drain: Duration) -> Limits {
        Limits {
            header_timeout: server.header_timeout,
            idle_timeout: server.idle_timeout,
            http2_max_streams: server.http2_max_streams,
            drain,
        }
    }
}

/// Time given to an idle or evicted connection to close politely (an HTTP/2
/// GOAWAY) before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

struct Protocols {
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
}

impl Protocols {
    fn new(limits: &Limits) -> Protocols {
        let mut h1 = http1::Builder::new();
        h1.timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .keep_alive(true);
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .max_concurrent_streams(limits.http2_max_streams)
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_timeout(Duration::from_secs(20))
            // Reset floods (CVE-2023-44487 and its kin): hyper's limits, stated.
            .max_pending_accept_reset_streams(Some(20))
            .max_local_error_reset_streams(Some(1024));
        Protocols { h1, h2 }
    }
}

/// Serves `service` on `listener` until `shutdown` resolves, then lets open
/// connections finish their requests (up to `limits.drain`) and returns.
pub(crate) async fn serve<S, F, B>(
    listener: TcpListener,
    limits: Limits,
    conns: Arc<Conns>,
    service: S,
    shutdown: impl Future<Output = ()>,
) where
    S: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let protocols = Arc::new(Protocols::new(&limits));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let mut backoff = BACKOFF_MIN;
    let refused = Throttle::default();
    let failed = Throttle::default();
    tokio::pin!(shutdown);
    loop {
        while tasks.try_join_next().is_some() {}
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    backoff = BACKOFF_MIN;
                    if conns.admit() == conns::Admit::Full {
                        if let Some(n) = refused.tick() {
                            tracing::warn!(%peer, cap = conns.cap(), refused = n, "connection refused: at server.max_connections and every connection is busy");
                        }
                        drop(stream);
                        continue;
                    }
                    let registered = conns.register();
                    let task = connection(stream, registered, limits.clone(), protocols.clone(), service.clone(), stop_rx.clone());
                    tasks.spawn(task);
                }
                Err(e) => {
                    // EMFILE and friends: free an idle connection, and back off
                    // instead of spinning on an accept that fails at once.
                    let out_of_files = is_out_of_files(&e);
                    if out_of_files {
                        conns.evict_oldest_idle();
                    }
                    if let Some(n) = failed.tick() {
                        tracing::warn!(error = %e, out_of_files, failures = n, backoff_ms = backoff.as_millis() as u64, "accept failed; backing off");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            },
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(limits.drain, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            "connections still open after {:?}; closing them",
            limits.drain
        );
    }
}

fn is_out_of_files(e: &std::io::Error) -> bool {
    use rustix::io::Errno;
    matches!(
        Errno::from_io_error(e),
        Some(Errno::MFILE | Errno::NFILE | Errno::NOBUFS | Errno::NOMEM)
    )
}

/// One connection from accept to close.
async fn connection<S, F, B>(
    mut stream: TcpStream,
    registered: conns::Registered,
    limits: Limits,
    protocols: Arc<Protocols>,
    service: S,
    mut stop: watch::Receiver<bool>,
) where
    S: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = registered.conn.clone();
    let _ = stream.set_nodelay(true);
    let detected = tokio::select! {
        d = detect(&mut stream, limits.header_timeout) => d,
        _ = conn.close.notified() => return,
        _ = stop.wait_for(|s| *s) => return,
    };
    let (protocol, prefix) = match detected {
        Ok(d) => d,
        Err(e) => {
            let peer = stream.peer_addr().ok();
            tracing::debug!(?peer, error = %e, "connection closed before a request");
            return;
        }
    };
    let io = TokioIo::new(Rewind::new(prefix, stream));
    let counted = conn.clone();
    let svc = hyper::service::service_fn(move |req| {
        let in_flight = counted.begin();
        let fut = service(req);
        async move {
            let resp = fut.await;
            drop(in_flight);
            Ok::<_, Infallible>(resp)
        }
    });
    match protocol {
        Protocol::Http1 => {
            let c = protocols.h1.serve_connection(io, svc);
            drive(c, &conn, &limits, stop).await
        }
        Protocol::Http2 => {
            let c = protocols.h2.serve_connection(io, svc);
            drive(c, &conn, &limits, stop).await
        }
    }
    drop(registered);
}

/// A hyper connection that can be asked to finish its requests and close.
trait Graceful: Future<Output = hyper::Result<()>> {
    fn shut(self: Pin<&mut Self>);
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<I, S, B> Graceful for http1::Connection<I, S>
where
    Self: Future<Output = hyper::Result<()>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<BoxError>,
    B: hyper::body::Body + 'static,
    B::Error: Into<BoxError>,
{
    fn shut(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S, B, E> Graceful for http2::Connection<I, S, E>
where
    Self: Future<Output = hyper::Result<()>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<BoxError>,
    B: hyper::body::Body + 'static,
    B::Error: Into<BoxError>,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
{
    fn shut(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// Runs a connection until it ends, or closes it gracefully when it has been
/// idle for `idle_timeout`, when the registry evicts it, or at shutdown.
async fn drive<C: Graceful>(
    c: C,
    conn: &conns::Conn,
    limits: &Limits,
    mut stop: watch::Receiver<bool>,
) {
    tokio::pin!(c);
    let grace = tokio::select! {
        _ = c.as_mut() => return,
        // Evicted while idle; should a request have begun since, it may finish.
        _ = conn.close.notified() => if conn.is_idle() { CLOSE_GRACE } else { limits.drain },
        _ = idle_for(conn, limits.idle_timeout) => CLOSE_GRACE,
        _ = stop.wait_for(|s| *s) => limits.drain,
    };
    c.as_mut().shut();
    let _ = tokio::time::timeout(grace, c).await;
}

/// Resolves once the connection has had no request in flight for `limit`.
async fn idle_for(conn: &conns::Conn, limit: Duration) {
    loop {
        let became_idle = conn.idle.notified();
        tokio::pin!(became_idle);
        became_idle.as_mut().enable();
        if !conn.is_idle() {
            became_idle.await;
            continue;
        }
        let deadline = conn.idle_since() + limit;
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {
                if conn.is_idle() && conn.idle_since() + limit <= tokio::time::Instant::now() {
                    return;
                }
            }
            _ = became_idle => {}
        }
    }
}

/// At most one log line a second for a repeated event; counts the rest.
#[derive(Default)]
struct Throttle {
    last_ms: AtomicU64,
    count: AtomicU64,
}

impl Throttle {
    /// `Some(events since the last line)` when a line may be logged now.
    fn tick(&self) -> Option<u64> {
        static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        // Milliseconds since the first tick of any throttle, plus a second so
        // that the very first tick (against `last_ms == 0`) logs.
        let now = EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1000;
        let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        let last = self.last_ms.load(Ordering::Relaxed);
        let due = now >= last + 1000
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
        if !due {
            return None;
        }
        self.count.store(0, Ordering::Relaxed);
        Some(n)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_time_restarts_when_a_request_ends() {
        let conns = Conns::new(10);
        let r = conns.register();
        let conn = r.conn.clone();
        let started = tokio::time::Instant::now();
        let watcher = {
            let conn = conn.clone();
            tokio::spawn(async move { idle_for(&conn, Duration::from_secs(10)).await })
        };
        tokio::time::sleep(Duration::from_secs(5)).await;
        let busy = conn.begin();
        // Busy past the first deadline: not idle, so not closed.
        tokio::time::sleep(Duration::from_secs(7)).await;
        assert!(!watcher.is_finished());
        drop(busy);
        watcher.await.unwrap();
        let idle_at = started.elapsed();
        assert!(
            (Duration::from_secs(22)..Duration::from_secs(23)).contains(&idle_at),
            "{idle_at:?}"
        );
    }

    #[test]
    fn a_repeated_warning_is_logged_once_a_second_with_its_count() {
        let t = Throttle::default();
        assert_eq!((t.tick(), t.tick(), t.tick()), (Some(1), None, None));
    }
}
