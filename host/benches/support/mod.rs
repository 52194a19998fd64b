//! What the benchmark programs share: the Optum sample and its signature, a
//! keep-alive HTTP/1.1 load generator (saturating or paced), the bare hyper
//! baseline, the router started in-process, a sink that notes when each
//! forward arrived, and the table row printer.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

pub const SECRET: &str = "bench-secret";
pub const SECONDS: u64 = 8;

pub fn body() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../samples/optum/payment_loading_requested.json"
    ))
    .unwrap()
}

pub fn signature(body: &[u8]) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

pub struct Load {
    pub requests: usize,
    pub errors: usize,
    pub secs: f64,
    pub latencies: Vec<Duration>,
}

impl Load {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.secs
    }
    pub fn pct(&self, p: f64) -> Duration {
        let mut l = self.latencies.clone();
        l.sort();
        l.get(((l.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or_default()
    }
}

/// One keep-alive HTTP/1.1 client connection to `addr`.
pub async fn connect(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

/// A POST of `body` to `path`, signed the Optum way.
pub fn signed(path: &str, body: &Bytes, sig: &str) -> Request<Full<Bytes>> {
    Request::post(path)
        .header("host", "bench")
        .header("content-type", "application/json")
        .header("x-optum-webhook-callback-hmac-signature", sig)
        .body(Full::new(body.clone()))
        .unwrap()
}

/// The body of a 2xx answer (empty if it cannot be read).
pub async fn read_body(resp: hyper::Response<hyper::body::Incoming>) -> Bytes {
    resp.into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default()
}

/// `conns` keep-alive HTTP/1.1 connections, each sending requests back to back
/// for `secs` seconds. `on_ack` sees each 2xx answer's body.
pub async fn load(
    addr: SocketAddr,
    path: &str,
    conns: usize,
    secs: u64,
    body: Vec<u8>,
    on_ack: Option<Arc<dyn Fn(Bytes) + Send + Sync>>,
) -> Load {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let sig = signature(&body);
    let body = Bytes::from(body);
    let started = Instant::now();
    let tasks: Vec<_> = (0..conns)
        .map(|_| {
            let (body, sig, path, on_ack) =
                (body.clone(), sig.clone(), path.to_string(), on_ack.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut errors = 0usize;
                let mut send = connect(addr).await;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    match send.send_request(signed(&path, &body, &sig)).await {
                        Ok(resp) if resp.status().is_success() => {
                            let b = read_body(resp).await;
                            lat.push(t.elapsed());
                            if let Some(f) = &on_ack {
                                f(b);
                            }
                        }
                        Ok(resp) => {
                            let _ = resp.into_body().collect().await;
                            errors += 1;
                        }
                        Err(_) => {
                            errors += 1;
                            break;
                        }
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let mut out = Load {
        requests: 0,
        errors: 0,
        secs: 0.0,
        latencies: Vec::new(),
    };
    for t in tasks {
        let (lat, errors) = t.await.unwrap();
        out.requests += lat.len();
        out.errors += errors;
        out.latencies.extend(lat);
    }
    out.secs = started.elapsed().as_secs_f64();
    out
}

/// Like [`load`], but each of `conns` connections sends at `rate / conns` per
/// second, so the pipeline is measured below saturation.
pub async fn paced(
    addr: SocketAddr,
    conns: usize,
    rate: usize,
    secs: u64,
    on_ack: Arc<dyn Fn(Bytes) + Send + Sync>,
) -> usize {
    let body = Bytes::from(body());
    let sig = signature(&body);
    let gap = Duration::from_secs_f64(conns as f64 / rate as f64);
    let n = (rate as u64 * secs) as usize / conns;
    let tasks: Vec<_> = (0..conns)
        .map(|_| {
            let (body, sig, on_ack) = (body.clone(), sig.clone(), on_ack.clone());
            tokio::spawn(async move {
                let mut send = connect(addr).await;
                let mut tick = tokio::time::interval(gap);
                let mut acked = 0;
                for _ in 0..n {
                    tick.tick().await;
                    let req = signed("/webhooks/optum", &body, &sig);
                    if let Ok(resp) = send.send_request(req).await {
                        on_ack(read_body(resp).await);
                        acked += 1;
                    }
                }
                acked
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total
}

/// A hyper server that reads each body, passes it to `on_body`, and answers
/// 202 with the JSON `on_body` returns once it has finished.
pub async fn server_202<F, Fut>(on_body: F) -> SocketAddr
where
    F: Fn(Bytes) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Bytes> + Send,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            stream.set_nodelay(true).unwrap();
            let on_body = on_body.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let on_body = on_body.clone();
                    async move {
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let answer = on_body(body).await;
                        Ok::<_, std::convert::Infallible>(
                            Response::builder()
                                .status(202)
                                .header("content-type", "application/json")
                                .body(Full::new(answer))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// What the baseline servers answer.
const ANSWER: &[u8] = b"{\"id\":\"x\",\"deliveries\":0}";

/// The baseline: hyper answering 202 after reading the body, nothing else.
pub async fn bare_server() -> SocketAddr {
    server_202(|_| async { Bytes::from_static(ANSWER) }).await
}

/// The reference design for a durable ack: answers 202 after appending the body
/// to a file with group commit (one thread drains every queued body, one write
/// and one fdatasync per batch), and nothing else: no checks, no parsing, no index.
pub async fn append_server(path: std::path::PathBuf) -> SocketAddr {
    let tx = append_log(path);
    server_202(move |body| {
        let tx = tx.clone();
        async move {
            let (done, wait) = tokio::sync::oneshot::channel();
            tx.send((body, done)).unwrap();
            wait.await.unwrap();
            Bytes::from_static(ANSWER)
        }
    })
    .await
}

/// Starts the router in this process on `config_text` (written to `dir`).
pub async fn router(dir: &std::path::Path, config_text: &str) -> SocketAddr {
    router_with_env(dir, config_text, &[]).await
}

/// Like [`router`], with more environment variables for the config (such as
/// the database URL).
pub async fn router_with_env(
    dir: &std::path::Path,
    config_text: &str,
    env: &[(&str, &str)],
) -> SocketAddr {
    let path = dir.join("router.toml");
    std::fs::write(&path, config_text).unwrap();
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .chain([("OPTUM_WEBHOOK_SECRET".to_string(), SECRET.to_string())])
        .collect();
    let config =
        hookrouter::config::Config::load_with_env(&path, &|k| env.get(k).cloned()).unwrap();
    let ingress = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = ingress.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(hookrouter::run_with_ready(
        config,
        ingress,
        admin,
        std::future::pending(),
        move |_, _| {
            let _ = tx.send(());
        },
    ));
    rx.await.unwrap();
    addr
}

pub fn row(name: &str, l: &Load, base: Option<&Load>) {
    let ratio = base
        .map(|b| format!("{:.2}x", l.rps() / b.rps()))
        .unwrap_or_else(|| "1.00x".into());
    println!(
        "| {name:<28} | {:>9.0} | {ratio:>6} | {:>8.2} | {:>8.2} | {:>6} |",
        l.rps(),
        l.pct(0.50).as_secs_f64() * 1e3,
        l.pct(0.99).as_secs_f64() * 1e3,
        l.errors
    );
}

/// A sink that records when each forward (by its event id) arrived.
pub async fn sink(arrivals: Arc<Mutex<HashMap<String, Instant>>>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let arrivals = arrivals.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let arrivals = arrivals.clone();
                    async move {
                        let b = req
                            .into_body()
                            .collect()
                            .await
                            .map(|c| c.to_bytes())
                            .unwrap_or_default();
                        let v: serde_json::Value = serde_json::from_slice(&b).unwrap_or_default();
                        if let Some(id) = v["event_id"].as_str() {
                            arrivals
                                .lock()
                                .unwrap()
                                .insert(id.to_string(), Instant::now());
                        }
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// A group-commit log: one thread drains every queued record, writes them in
/// one `write` and makes them durable with one `fdatasync`, then answers each.
pub fn append_log(
    path: std::path::PathBuf,
) -> std::sync::mpsc::Sender<(Bytes, tokio::sync::oneshot::Sender<()>)> {
    use std::io::Write;
    type Job = (Bytes, tokio::sync::oneshot::Sender<()>);
    let (tx, rx) = std::sync::mpsc::channel::<Job>();
    std::thread::spawn(move || {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        let mut buf = Vec::new();
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            while let Ok(j) = rx.try_recv() {
                batch.push(j);
            }
            buf.clear();
            for (body, _) in &batch {
                buf.extend_from_slice(&(body.len() as u32).to_le_bytes());
                buf.extend_from_slice(body);
            }
            file.write_all(&buf).unwrap();
            file.sync_data().unwrap();
            for (_, done) in batch {
                let _ = done.send(());
            }
        }
    });
    tx
}

/// The reference design end to end, the machine's bound for a durable
/// pipeline: it appends each body to a group-commit log and answers 202 with an
/// id once the log is on disk (the append+fdatasync reference), then forwards
/// `{"event_id": id}` to `sink` over a keep-alive client (at most `FORWARDS` at
/// once) and appends each forward's outcome to the same log, on disk before
/// the forward counts as done. It runs no plugin, checks and parses nothing,
/// keeps no index and no retry state: everything the router does besides is
/// left out, so this bounds what it can reach here.
///
/// Without a `sink` it forwards nothing: the same server, ingest only.
pub async fn reference_pipeline(dir: &std::path::Path, sink: Option<SocketAddr>) -> SocketAddr {
    use std::sync::atomic::{AtomicU64, Ordering};
    const FORWARDS: usize = 64;
    let log = append_log(dir.join("reference.log"));
    let (queue, mut due) = tokio::sync::mpsc::unbounded_channel::<String>();
    let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let outcomes = log.clone();
    tokio::spawn(async move {
        let room = Arc::new(tokio::sync::Semaphore::new(FORWARDS));
        let Some(sink) = sink else {
            while due.recv().await.is_some() {}
            return;
        };
        let url: hyper::Uri = format!("http://{sink}/sink").parse().unwrap();
        while let Some(id) = due.recv().await {
            let permit = room.clone().acquire_owned().await.unwrap();
            let (client, url, log) = (client.clone(), url.clone(), outcomes.clone());
            tokio::spawn(async move {
                let body = format!("{{\"event_id\":\"{id}\"}}");
                let req = Request::post(url)
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body)))
                    .unwrap();
                let status = match client.request(req).await {
                    Ok(resp) => {
                        let s = resp.status().as_u16();
                        let _ = resp.into_body().collect().await;
                        s
                    }
                    Err(_) => 0,
                };
                let (done, wait) = tokio::sync::oneshot::channel();
                let record = format!("done {id} {status}");
                log.send((Bytes::from(record), done)).unwrap();
                let _ = wait.await;
                drop(permit);
            });
        }
    });
    let next = Arc::new(AtomicU64::new(1));
    server_202(move |body| {
        let (log, queue, next) = (log.clone(), queue.clone(), next.clone());
        async move {
            let id = format!("r-{}", next.fetch_add(1, Ordering::Relaxed));
            let (done, wait) = tokio::sync::oneshot::channel();
            log.send((body, done)).unwrap();
            wait.await.unwrap();
            queue.send(id.clone()).unwrap();
            Bytes::from(format!("{{\"id\":\"{id}\",\"deliveries\":1}}"))
        }
    })
    .await
}
