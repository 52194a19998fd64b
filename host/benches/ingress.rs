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

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use support::*;

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
