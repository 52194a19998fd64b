//! Scale-out: ingest on SQLite against PostgreSQL with one replica and with
//! two, as ratios to a bare hyper server measured in the same run with the same
//! load generator; then end to end through a trivial plugin on PostgreSQL with
//! two replicas (and on SQLite, for comparison).
//!
//! `scripts/build-plugins.sh && cargo bench -p hookrouter --bench scaleout`
//!
//! PostgreSQL is a throwaway cluster started from Debian's binaries (fsync on,
//! `synchronous_commit = on`, reached over loopback without TLS), or the server
//! `HOOKROUTER_TEST_DATABASE_URL` names. The replicas run in this process (each is a whole `hookrouter::run`
//! with its own listeners, store handle, pool and writers); the database, the
//! replicas and the load generator share the machine's cores.
//!
//! Timing never decides anything here; it prints figures.

mod support;

#[path = "../tests/common/pg_cluster.rs"]
mod pg_cluster;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use support::*;

const CONNS: usize = 64;

fn ingress_cfg(store: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
[store]
{store}
max_backlog = 100000
[[sources]]
name = "optum"
preset = "optum"
id_from = "header:x-no-dedupe"   # every request is a new event (the body is reused)
[[routes]]
events = ["payment_*"]
plugins = ["absent"]             # deliveries are stored and wait: ingress cost only
"#
    )
}

fn e2e_cfg(store: &str, sink: SocketAddr) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
[store]
{store}
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
    )
}

const PG: &str = r#"backend = "postgres""#;

/// Starts one router per entry of `dirs` on `cfg` (PostgreSQL at `url` when given).
async fn replicas(dirs: &[std::path::PathBuf], cfg: &str, url: Option<&str>) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for d in dirs {
        std::fs::create_dir_all(d).unwrap();
        let env: Vec<(&str, &str)> = url
            .map(|u| ("HOOKROUTER_DATABASE_URL", u))
            .into_iter()
            .collect();
        out.push(router_with_env(d, cfg, &env).await);
    }
    out
}

/// `CONNS` connections spread evenly over `addrs`, sending back to back for
/// `SECONDS`; one [`Load`] for all of them.
async fn load_over(addrs: &[SocketAddr], on_ack: Option<Arc<dyn Fn(Bytes) + Send + Sync>>) -> Load {
    let per = CONNS / addrs.len();
    let runs: Vec<_> = addrs
        .iter()
        .map(|a| {
            let (a, on_ack) = (*a, on_ack.clone());
            tokio::spawn(
                async move { load(a, "/webhooks/optum", per, SECONDS, body(), on_ack).await },
            )
        })
        .collect();
    let mut all = Load {
        requests: 0,
        errors: 0,
        secs: 0.0,
        latencies: Vec::new(),
    };
    for r in runs {
        let l = r.await.unwrap();
        all.requests += l.requests;
        all.errors += l.errors;
        all.secs = all.secs.max(l.secs);
        all.latencies.extend(l.latencies);
    }
    all
}

/// Events through `addrs` for `SECONDS` (64 connections), then until every
/// forward arrived: prints the row of the end-to-end table.
async fn end_to_end(
    name: &str,
    addrs: &[SocketAddr],
    arrivals: &Arc<Mutex<HashMap<String, Instant>>>,
) {
    arrivals.lock().unwrap().clear();
    let acks: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let a = acks.clone();
    let on_ack: Arc<dyn Fn(Bytes) + Send + Sync> = Arc::new(move |b: Bytes| {
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap_or_default();
        if let Some(id) = v["id"].as_str() {
            a.lock().unwrap().insert(id.to_string(), Instant::now());
        }
    });
    let started = Instant::now();
    let sent = load_over(addrs, Some(on_ack)).await;
    let acked = acks.lock().unwrap().len();
    let wait_until = Instant::now() + Duration::from_secs(300);
    let reached = |arrivals: &Arc<Mutex<HashMap<String, Instant>>>| {
        let arrivals = arrivals.lock().unwrap();
        acks.lock()
            .unwrap()
            .keys()
            .filter(|k| arrivals.contains_key(*k))
            .count()
    };
    while reached(arrivals) < acked && Instant::now() < wait_until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let total = started.elapsed().as_secs_f64();
    let reached = reached(arrivals);
    println!(
        "| {name:<34} | {acked:>7} ({:>6.0}/s) | {reached:>7} | {:>6.0} |",
        sent.rps(),
        reached as f64 / total
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let cluster = pg_cluster::shared();
    let settings = [
        "fsync",
        "synchronous_commit",
        "wal_sync_method",
        "shared_buffers",
    ]
    .map(|s| {
        format!(
            "{s}={}",
            cluster
                .psql(&format!("SHOW {s}"))
                .unwrap_or_default()
                .trim()
        )
    })
    .join(", ");
    // Loopback: no TLS, so the figures are the store's (sslmode=prefer would
    // encrypt, and cost both sides CPU).
    let dbs: Vec<String> = (0..4)
        .map(|_| format!("{}?sslmode=disable", cluster.fresh_database("bench").1))
        .collect();
    rt.block_on(async {
        let tmp = tempfile::tempdir().unwrap();
        let dir = |n: &str| tmp.path().join(n);
        let bare = bare_server().await;
        let sqlite = replicas(&[dir("sqlite")], &ingress_cfg(r#"path = "data/bench.db""#), None).await;
        let pg1 = replicas(&[dir("pg1")], &ingress_cfg(PG), Some(&dbs[0])).await;
        let pg2 = replicas(&[dir("pg2a"), dir("pg2b")], &ingress_cfg(PG), Some(&dbs[1])).await;

        println!("PostgreSQL server: {settings} (each session sets synchronous_commit=on)\n");
        println!("## Ingest ({SECONDS} s per row, {CONNS} connections, same load generator, same process)\n");
        println!("| server                       |   req/s   | vs bare | p50 ms   | p99 ms   | errors |");
        println!("| ---------------------------- | --------- | ------ | -------- | -------- | ------ |");
        let b = load_over(&[bare], None).await;
        row("bare hyper", &b, None);
        let s = load_over(&sqlite, None).await;
        row("SQLite, one router", &s, Some(&b));
        let p1 = load_over(&pg1, None).await;
        row("PostgreSQL, one replica", &p1, Some(&b));
        let p2 = load_over(&pg2, None).await;
        row("PostgreSQL, two replicas", &p2, Some(&b));

        if std::env::var_os("BENCH_INGRESS_ONLY").is_some() {
            return;
        }
        let relay =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fixtures/relay.wasm");
        let bytes = std::fs::read(&relay).unwrap_or_else(|e| {
            panic!("{}: {e} (run scripts/build-plugins.sh first)", relay.display())
        });
        let arrivals: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let sink_addr = sink(arrivals.clone()).await;
        let with_plugin = |n: &str| {
            let d = dir(n);
            std::fs::create_dir_all(d.join("plugins")).unwrap();
            std::fs::write(d.join("plugins/fwd.wasm"), &bytes).unwrap();
            d
        };
        println!("\n## End to end: 202 → trivial plugin → forward at a sink ({CONNS} conns for {SECONDS} s, then until every forward arrived)\n");
        println!("| setup                              | acked (while sending) | reached | e2e/s  |");
        println!("| ---------------------------------- | --------------------- | ------- | ------ |");
        let e2e_sqlite = replicas(
            &[with_plugin("e2e-sqlite")],
            &e2e_cfg(r#"path = "data/e2e.db""#, sink_addr),
            None,
        )
        .await;
        end_to_end("SQLite, one router", &e2e_sqlite, &arrivals).await;
        let e2e_pg1 = replicas(&[with_plugin("e2e-pg1")], &e2e_cfg(PG, sink_addr), Some(&dbs[2])).await;
        end_to_end("PostgreSQL, one replica", &e2e_pg1, &arrivals).await;
        let e2e_pg2 = replicas(
            &[with_plugin("e2e-pg2a"), with_plugin("e2e-pg2b")],
            &e2e_cfg(PG, sink_addr),
            Some(&dbs[3]),
        )
        .await;
        end_to_end("PostgreSQL, two replicas", &e2e_pg2, &arrivals).await;
    });
}
