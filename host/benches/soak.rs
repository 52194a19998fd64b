//! Retention soak: a million events through a trivial plugin with
//! `retention = "30s"`, printing the store's size over time (it must plateau)
//! and ingress latency with and without pruning, from one run.
//!
//! `scripts/build-plugins.sh && cargo bench -p hookrouter --bench soak`
//! (`SOAK_EVENTS=N` and `SOAK_RATE=R` change the defaults of 1,000,000 and 3,000/s.)
//!
//! Phase 1 runs the same paced load on a router whose retention is long, so it
//! never prunes; phase 2 runs it on a router with `retention = "30s"`. Each phase
//! has the process to itself. Latency is from request to `202`, per 10 s window.
//! Timing never decides anything here; it prints figures.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use support::{body, connect, read_body, router, signature, signed};

const CONNS: usize = 32;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn store_bytes(dir: &Path) -> u64 {
    // The store and its search index (a file of its own, pruned with it).
    [
        "bench.db",
        "bench.db-wal",
        "bench.db-shm",
        "bench.db-search",
        "bench.db-search-wal",
        "bench.db-search-shm",
    ]
    .iter()
    .map(|f| std::fs::metadata(dir.join("data").join(f)).map_or(0, |m| m.len()))
    .sum()
}

fn pct(l: &mut [Duration], p: f64) -> f64 {
    l.sort();
    l.get(((l.len() as f64 - 1.0) * p) as usize)
        .copied()
        .unwrap_or_default()
        .as_secs_f64()
        * 1e3
}

/// Sends `total` events at `rate` per second over [`CONNS`] connections; every
/// 10 s prints the window's p50/p99 and the store's size. Returns all latencies.
async fn phase(
    name: &str,
    dir: &Path,
    retention: &str,
    total: usize,
    rate: usize,
) -> Vec<Duration> {
    std::fs::create_dir_all(dir.join("plugins")).unwrap();
    let trivial = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fixtures/trivial.wasm");
    std::fs::copy(&trivial, dir.join("plugins/trivial.wasm")).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run scripts/build-plugins.sh first)",
            trivial.display()
        )
    });
    let cfg = format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
[store]
path = "data/bench.db"
max_backlog = 100000
retention = "{retention}"
dedupe_horizon = "{retention}"
[[sources]]
name = "optum"
preset = "optum"
id_from = "header:x-no-dedupe"
[[routes]]
events = ["payment_*"]
plugins = ["trivial"]
"#
    );
    let addr = router(dir, &cfg).await;
    let body = Bytes::from(body());
    let sig = signature(&body);
    let sent = Arc::new(AtomicUsize::new(0));
    let window: Arc<std::sync::Mutex<Vec<Duration>>> = Arc::default();
    let all: Arc<std::sync::Mutex<Vec<Duration>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let gap = Duration::from_secs_f64(CONNS as f64 / rate as f64);
    let per_conn = total / CONNS;
    let tasks: Vec<_> = (0..CONNS)
        .map(|_| {
            let (body, sig, window, all, sent) = (
                body.clone(),
                sig.clone(),
                window.clone(),
                all.clone(),
                sent.clone(),
            );
            tokio::spawn(async move {
                let mut send = connect(addr).await;
                let mut tick = tokio::time::interval(gap);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                for _ in 0..per_conn {
                    tick.tick().await;
                    let t = Instant::now();
                    let resp = send
                        .send_request(signed("/webhooks/optum", &body, &sig))
                        .await
                        .unwrap();
                    let ok = resp.status().as_u16() == 202;
                    read_body(resp).await;
                    if ok {
                        let l = t.elapsed();
                        window.lock().unwrap().push(l);
                        all.lock().unwrap().push(l);
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let started = Instant::now();
    let reporter = {
        let (window, sent, done, dir) = (
            window.clone(),
            sent.clone(),
            done.clone(),
            dir.to_path_buf(),
        );
        let name = name.to_string();
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let mut w = std::mem::take(&mut *window.lock().unwrap());
                println!(
                    "| {name} | {:>5.0} | {:>9} | {:>8.1} | {:>6.2} | {:>6.2} |",
                    started.elapsed().as_secs_f64(),
                    sent.load(Ordering::Relaxed),
                    store_bytes(&dir) as f64 / (1 << 20) as f64,
                    pct(&mut w, 0.5),
                    pct(&mut w, 0.99),
                );
            }
        })
    };
    for t in tasks {
        t.await.unwrap();
    }
    done.store(true, Ordering::Relaxed);
    let _ = reporter.await;
    Arc::try_unwrap(all).unwrap().into_inner().unwrap()
}

fn main() {
    let total = env_or("SOAK_EVENTS", 1_000_000);
    let rate = env_or("SOAK_RATE", 3_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tmp = tempfile::tempdir().unwrap();
        println!("## Retention soak: {total} events at {rate}/s over {CONNS} connections\n");
        println!("| phase | s | events acked | store MiB | p50 ms | p99 ms |");
        println!("| --- | ---: | ---: | ---: | ---: | ---: |");
        // Phase 1 is long enough to measure, but not the whole soak.
        let baseline_events = (rate * 60).min(total);
        let mut without = phase(
            "no pruning",
            &tmp.path().join("keep"),
            "3650d",
            baseline_events,
            rate,
        )
        .await;
        let mut with = phase(
            "retention 30s",
            &tmp.path().join("prune"),
            "30s",
            total,
            rate,
        )
        .await;
        println!("\n| ingress latency (request → 202) | p50 ms | p99 ms | events |");
        println!("| --- | ---: | ---: | ---: |");
        println!(
            "| without pruning (retention 3650d) | {:.2} | {:.2} | {} |",
            pct(&mut without, 0.5),
            pct(&mut without, 0.99),
            without.len()
        );
        println!(
            "| with pruning (retention 30s) | {:.2} | {:.2} | {} |",
            pct(&mut with, 0.5),
            pct(&mut with, 0.99),
            with.len()
        );
    });
}
