//! Ingress and end-to-end throughput, as ratios to a bare hyper server measured
//! in the same run with the same load generator.
//!
//! `scripts/build-plugins.sh && cargo bench -p hookrouter --bench ingress`
//!
//! 1. Ingress: the router (durable: SQLite WAL, synchronous=FULL, group commit,
//!    HMAC verification of an Optum event) against a bare hyper server that
//!    answers 202 after reading the body; 64 and 256 connections. A third
//!    server is the reference design for durable acks: it answers 202 after
//!    appending the body to a file with group commit (one fdatasync per batch)
//!    and does nothing else. It bounds what any durable ingress reaches on
//!    this machine.
//! 2. End to end: events through a trivial component plugin whose forward
//!    reaches a local sink: events/s and the time from 202 to the sink.
//!
//! Timing never decides anything here; it prints figures.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

mod support;

use support::{body, connect, read_body, router, signature, signed};
const SECONDS: u64 = 8;

struct Load {
    requests: usize,
    errors: usize,
    secs: f64,
    latencies: Vec<Duration>,
}

impl Load {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.secs
    }
    fn pct(&self, p: f64) -> Duration {
        let mut l = self.latencies.clone();
        l.sort();
        l.get(((l.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or_default()
    }
}

/// `conns` keep-alive HTTP/1.1 connections, each sending requests back to back
/// for `secs` seconds. `on_ack` sees each 2xx answer's body.
async fn load(
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
async fn paced(
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
/// 202 once that has finished.
async fn server_202<F, Fut>(on_body: F) -> SocketAddr
where
    F: Fn(Bytes) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
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
                        on_body(body).await;
                        Ok::<_, std::convert::Infallible>(
                            Response::builder()
                                .status(202)
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from_static(
                                    b"{\"id\":\"x\",\"deliveries\":0}",
                                )))
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

/// The baseline: hyper answering 202 after reading the body, nothing else.
async fn bare_server() -> SocketAddr {
    server_202(|_| async {}).await
}

/// The reference design for a durable ack: answers 202 after appending the body
/// to a file with group commit (one thread drains every queued body, one write
/// and one fdatasync per batch), and nothing else: no checks, no parsing, no index.
async fn append_server(path: std::path::PathBuf) -> SocketAddr {
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
    server_202(move |body| {
        let tx = tx.clone();
        async move {
            let (done, wait) = tokio::sync::oneshot::channel();
            tx.send((body, done)).unwrap();
            wait.await.unwrap();
        }
    })
    .await
}

fn row(name: &str, l: &Load, base: Option<&Load>) {
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

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tmp = tempfile::tempdir().unwrap();
        let bare = bare_server().await;
        let ingress_cfg = r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
[store]
path = "data/bench.db"
max_backlog = 100000
[[sources]]
name = "optum"
preset = "optum"
id_from = "header:x-no-dedupe"   # every request is a new event (the body is reused)
[[routes]]
events = ["payment_*"]
plugins = ["absent"]             # deliveries are stored and wait: ingress cost only
"#;
        let routed = router(tmp.path(), ingress_cfg).await;
        let probe = append_server(tmp.path().join("append.log")).await;

        println!("## Ingress ({SECONDS} s per row, same load generator, same process)\n");
        println!(
            "| server                       |   req/s   | vs bare | p50 ms   | p99 ms   | errors |"
        );
        println!(
            "| ---------------------------- | --------- | ------ | -------- | -------- | ------ |"
        );
        let mut ingress_rps = 0.0;
        for conns in [64, 256] {
            let b = load(bare, "/webhooks/optum", conns, SECONDS, body(), None).await;
            let r = load(routed, "/webhooks/optum", conns, SECONDS, body(), None).await;
            let a = load(probe, "/webhooks/optum", conns, SECONDS, body(), None).await;
            row(&format!("bare hyper, {conns} conns"), &b, None);
            row(&format!("hookrouter durable, {conns} conns"), &r, Some(&b));
            row(&format!("append+fdatasync only, {conns} conns"), &a, Some(&b));
            if conns == 64 {
                ingress_rps = r.rps();
            }
        }

        if std::env::var_os("BENCH_INGRESS_ONLY").is_some() {
            return;
        }
        // End to end: a trivial component forwards every event to a local sink.
        let relay =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fixtures/relay.wasm");
        let Ok(bytes) = std::fs::read(&relay) else {
            println!(
                "\n(skipping end to end: run scripts/build-plugins.sh first to build {})",
                relay.display()
            );
            return;
        };
        let arrivals: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let sink = sink(arrivals.clone()).await;
        let arrivals_handle = arrivals.clone();
        let dir2 = tmp.path().join("e2e");
        std::fs::create_dir_all(dir2.join("plugins")).unwrap();
        std::fs::write(dir2.join("plugins/fwd.wasm"), bytes).unwrap();
        let e2e_cfg = format!(
            r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
[store]
max_backlog = 100000
[plugins]
workers = 4
[outbox]
workers = 16
[[sources]]
name = "optum"
preset = "optum"
id_from = "header:x-no-dedupe"
[[routes]]
events = ["payment_*"]
plugins = ["fwd"]
[plugin.fwd]
config = {{ forward_url = "http://{sink}/sink" }}
allow_forward = ["{sink}"]
"#
        );
        let e2e = router(&dir2, &e2e_cfg).await;
        let acks: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let a = acks.clone();
        let on_ack: Arc<dyn Fn(Bytes) + Send + Sync> = Arc::new(move |b: Bytes| {
            let v: serde_json::Value = serde_json::from_slice(&b).unwrap_or_default();
            if let Some(id) = v["id"].as_str() {
                a.lock().unwrap().insert(id.to_string(), Instant::now());
            }
        });
        let started = Instant::now();
        let sent = load(e2e, "/webhooks/optum", 64, SECONDS, body(), Some(on_ack)).await;
        let acked = acks.lock().unwrap().len();
        let wait_until = Instant::now() + Duration::from_secs(120);
        while arrivals.lock().unwrap().len() < acked && Instant::now() < wait_until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let total = started.elapsed().as_secs_f64();
        {
            let arrivals = arrivals.lock().unwrap();
            let acks = acks.lock().unwrap();
            let mut lag: Vec<Duration> = acks
                .iter()
                .filter_map(|(id, t)| arrivals.get(id).map(|a| a.saturating_duration_since(*t)))
                .collect();
            lag.sort();
            let pct = |p: f64| {
                lag.get(((lag.len() as f64 - 1.0) * p) as usize)
                    .copied()
                    .unwrap_or_default()
            };
            println!("\n## End to end (64 conns for {SECONDS} s, then until every forward arrived)\n");
            println!("| measure | value |");
            println!("| --- | --- |");
            println!(
                "| events acked (202) | {acked} ({:.0}/s while sending) |",
                sent.rps()
            );
            println!("| forwards that reached the sink | {} |", arrivals.len());
            println!(
                "| end-to-end events/s (acked / time until the last forward) | {:.0} |",
                arrivals.len() as f64 / total
            );
            println!("| ingress-only events/s, same run (64 conns) | {ingress_rps:.0} |");
            println!(
                "| 202 → sink p50 / p99 (saturated: queueing dominates) | {:.1} ms / {:.1} ms |",
                pct(0.5).as_secs_f64() * 1e3,
                pct(0.99).as_secs_f64() * 1e3
            );
        }

        // Below saturation: a steady 500 events/s for SECONDS, then the lag distribution.
        let acks2: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let a = acks2.clone();
        let on_ack: Arc<dyn Fn(Bytes) + Send + Sync> = Arc::new(move |b: Bytes| {
            let v: serde_json::Value = serde_json::from_slice(&b).unwrap_or_default();
            if let Some(id) = v["id"].as_str() {
                a.lock().unwrap().insert(id.to_string(), Instant::now());
            }
        });
        let rate = 500;
        let sent = paced(e2e, 16, rate, SECONDS, on_ack).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        let arrivals = arrivals_handle.lock().unwrap();
        let acks2 = acks2.lock().unwrap();
        let mut lag: Vec<Duration> =
            acks2.iter().filter_map(|(id, t)| arrivals.get(id).map(|a| a.saturating_duration_since(*t))).collect();
        lag.sort();
        let pct = |p: f64| lag.get(((lag.len() as f64 - 1.0) * p) as usize).copied().unwrap_or_default();
        println!("| paced {rate} events/s: acked / reached the sink | {sent} / {} |", lag.len());
        println!(
            "| paced {rate} events/s: 202 → sink p50 / p99 / max | {:.1} ms / {:.1} ms / {:.1} ms |",
            pct(0.5).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3,
            pct(1.0).as_secs_f64() * 1e3
        );
    });
}

/// A sink that records when each forward (by its event id) arrived.
async fn sink(arrivals: Arc<Mutex<HashMap<String, Instant>>>) -> SocketAddr {
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
