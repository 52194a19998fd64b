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
//!    The ratios to report: router / reference and router / bare.
//! 2. End to end, on the release binary started as a child process (a black
//!    box): events through a trivial component and through a C command
//!    module, each forwarding to a bare hyper sink: events/s against the
//!    same build's ingest-only rate as a child process (events routed to a
//!    plugin that is not loaded, measured just before) and against part 1's,
//!    then 202 → sink latency at half of that rate. The same for the reference design end to end (also a child
//!    process): the append+fdatasync reference, then a forward of each event
//!    to the sink and its outcome appended with group commit; no plugin, no
//!    checks, no index (`support::reference_pipeline`). Its figure against the
//!    reference's ingest of part 1 is the machine's bound for the router's
//!    end-to-end ratio.
//! 3. Resident memory of the release binary: idle, and after 250,000 events.
//!
//! `BENCH_INGRESS_ONLY=1` runs part 1 alone; `BENCH_E2E_ONLY=1` part 2 alone
//! (without the ratios); `BENCH_RSS_ONLY=1` part 3 alone. `BENCH_BIN=PATH` runs
//! parts 2 and 3 on another build of the binary (to compare two versions);
//! `BENCH_PLUGIN=relay.wasm` limits part 2 to one plugin; `BENCH_TOML` adds
//! tables to the children's `router.toml` (say, `[outbox]` `workers = 16`).
//!
//! Timing never decides anything here; it prints figures.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use support::*;

fn main() {
    if let Ok(sink) = std::env::var("BENCH_REFERENCE_SINK") {
        return reference_child(sink.parse().ok());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tmp = tempfile::tempdir().unwrap();
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fixtures");
        let e2e_only = std::env::var_os("BENCH_E2E_ONLY").is_some();
        if std::env::var_os("BENCH_RSS_ONLY").is_some() {
            let bytes = std::fs::read(fixtures.join("relay.wasm")).unwrap();
            resident(&tmp.path().join("rss"), &bytes).await;
            return;
        }
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
        if e2e_only {
            // BENCH_PLUGIN=FILE: only that plugin (a build whose command ABI
            // differs cannot run cmd_relay.wasm).
            let only = std::env::var("BENCH_PLUGIN").ok();
            for (name, file, key) in PLUGINS {
                if only.as_deref().is_some_and(|o| o != file) {
                    continue;
                }
                let bytes = std::fs::read(fixtures.join(file)).unwrap();
                end_to_end(name, &tmp.path().join(file), &bytes, key, None).await;
            }
            if only.is_none() {
                reference_end_to_end(&tmp.path().join("reference"), None).await;
            }
            return;
        }
        let routed = router(tmp.path(), ingress_cfg).await;
        let probe = append_server(tmp.path().join("append.log")).await;

        println!("## Ingress ({SECONDS} s per row, same load generator, same process)\n");
        println!(
            "| server                       |   req/s   | vs bare | p50 ms   | p99 ms   | errors |"
        );
        println!(
            "| ---------------------------- | --------- | ------ | -------- | -------- | ------ |"
        );
        let (mut ingress_rps, mut reference_rps) = (0.0, 0.0);
        for conns in [64, 256] {
            let b = load(bare, "/webhooks/optum", conns, SECONDS, body(), None).await;
            let r = load(routed, "/webhooks/optum", conns, SECONDS, body(), None).await;
            let a = load(probe, "/webhooks/optum", conns, SECONDS, body(), None).await;
            row(&format!("bare hyper, {conns} conns"), &b, None);
            row(&format!("hookrouter durable, {conns} conns"), &r, Some(&b));
            row(
                &format!("append+fdatasync only, {conns} conns"),
                &a,
                Some(&b),
            );
            if conns == 64 {
                ingress_rps = r.rps();
                reference_rps = a.rps();
            }
        }

        if std::env::var_os("BENCH_INGRESS_ONLY").is_some() {
            return;
        }
        for (name, file, key) in PLUGINS {
            let Ok(bytes) = std::fs::read(fixtures.join(file)) else {
                panic!("run scripts/build-plugins.sh first to build target/fixtures/{file}");
            };
            let dir = tmp.path().join(file);
            end_to_end(name, &dir, &bytes, key, Some(ingress_rps)).await;
        }
        reference_end_to_end(&tmp.path().join("reference"), Some(reference_rps)).await;
        let bytes = std::fs::read(fixtures.join("relay.wasm")).unwrap();
        resident(&tmp.path().join("rss"), &bytes).await;
    });
}

/// The reference pipeline's process: serves until it is killed.
fn reference_child(sink: Option<SocketAddr>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = std::path::PathBuf::from(std::env::var_os("BENCH_REFERENCE_DIR").unwrap());
        let addr = reference_pipeline(&dir, sink).await;
        println!("{addr}");
        std::future::pending::<()>().await;
    });
}

/// The plugins end to end: a name, the fixture, its config key for the URL.
const PLUGINS: [(&str, &str, &str); 2] = [
    (
        "hookrouter, trivial component (relay.wasm)",
        "relay.wasm",
        "forward_url",
    ),
    (
        "hookrouter, C command module (cmd_relay.wasm)",
        "cmd_relay.wasm",
        "FORWARD_URL",
    ),
];

/// The binary under test: this build's, or `BENCH_BIN` (another build, to
/// compare two versions with the same load).
fn binary() -> std::path::PathBuf {
    std::env::var_os("BENCH_BIN")
        .map_or_else(|| env!("CARGO_BIN_EXE_hookrouter").into(), Into::into)
}

/// The release binary as a child process: a black box, as a user runs it.
struct Child {
    proc: std::process::Child,
    addr: SocketAddr,
    /// The router's admin listener (none for the reference pipeline).
    admin: Option<SocketAddr>,
}

impl Child {
    /// Starts `hookrouter serve` in `dir` with one plugin, `fwd.wasm`, that
    /// forwards every event to `sink` (its config key for the URL is `key`).
    /// Without a plugin, events are routed to one that is not loaded: ingest
    /// only, the denominator of the end-to-end ratio.
    async fn start(
        dir: &std::path::Path,
        plugin: Option<&[u8]>,
        key: &str,
        sink: SocketAddr,
    ) -> Child {
        std::fs::create_dir_all(dir.join("plugins")).unwrap();
        let section = match plugin {
            Some(plugin) => {
                std::fs::write(dir.join("plugins/fwd.wasm"), plugin).unwrap();
                format!(
                    "plugins = [\"fwd\"]\n[plugin.fwd]\nconfig = {{ {key} = \"http://{sink}/sink\" }}\nallow_forward = [\"{sink}\"]\n"
                )
            }
            None => "plugins = [\"absent\"]   # stored and left waiting: ingest only\n".to_string(),
        };
        let free = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
        };
        let (addr, admin) = (free(), free());
        // BENCH_TOML: more router.toml tables (say, `[outbox]\nworkers = 16`).
        let extra = std::env::var("BENCH_TOML").map_or(String::new(), |t| format!("\n{t}\n"));
        let config = format!(
            r#"
[server]
listen = "{addr}"
admin_listen = "{admin}"
[store]
max_backlog = 1000000
[[sources]]
name = "optum"
preset = "optum"
id_from = "header:x-no-dedupe"   # every request is a new event (the body is reused)
[[routes]]
events = ["payment_*"]
{section}{extra}"#
        );
        std::fs::write(dir.join("router.toml"), config).unwrap();
        let log = std::fs::File::create(dir.join("router.log")).unwrap();
        let proc = std::process::Command::new(binary())
            .args(["serve", "--config", "router.toml"])
            .current_dir(dir)
            .env("OPTUM_WEBHOOK_SECRET", SECRET)
            .env("RUST_LOG", "warn")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let child = Child {
            proc,
            addr,
            admin: Some(admin),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while tokio::net::TcpStream::connect(admin).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "the router did not start: see {}",
                dir.join("router.log").display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The plugin is compiled (or loaded from the cache) at start.
        tokio::time::sleep(Duration::from_secs(1)).await;
        child
    }

    /// The reference pipeline (`support::reference_pipeline`) as a child
    /// process like the router: this program again, in the mode
    /// `BENCH_REFERENCE_SINK` selects, which prints its address.
    /// Without a sink, it forwards nothing: ingest only.
    async fn reference(dir: &std::path::Path, sink: Option<SocketAddr>) -> Child {
        use std::io::BufRead;
        std::fs::create_dir_all(dir).unwrap();
        let mut proc = std::process::Command::new(std::env::current_exe().unwrap())
            .env(
                "BENCH_REFERENCE_SINK",
                sink.map_or("none".to_string(), |s| s.to_string()),
            )
            .env("BENCH_REFERENCE_DIR", dir)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(proc.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .parse()
            .expect("the reference pipeline's address");
        Child {
            proc,
            addr,
            admin: None,
        }
    }

    /// The `/proc` directories of the router's threads.
    fn threads(&self) -> Vec<std::path::PathBuf> {
        std::fs::read_dir(format!("/proc/{}/task", self.proc.id()))
            .map(|tasks| tasks.flatten().map(|t| t.path()).collect())
            .unwrap_or_default()
    }

    /// CPU time (user + system) of each of the router's threads, summed by
    /// thread name: the tokio runtime (HTTP, dispatch, outbox, and plugin runs
    /// on its blocking threads), the store's writer and indexer, and the rest.
    fn cpu_by_thread(&self) -> HashMap<String, Duration> {
        let tick = 100.0; // USER_HZ
        let mut out = HashMap::new();
        for t in self.threads() {
            let Ok(stat) = std::fs::read_to_string(t.join("stat")) else {
                continue;
            };
            // pid (comm) state ... utime stime: fields 14 and 15.
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                continue;
            };
            let comm = stat[open + 1..close].to_string();
            let f: Vec<&str> = stat[close + 2..].split_whitespace().collect();
            let ticks: f64 =
                f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0);
            *out.entry(comm).or_default() += Duration::from_secs_f64(ticks / tick);
        }
        out
    }

    /// Bytes the store's writer thread has handed to `write`/`pwrite` so far
    /// (`wchar` of its `/proc` io): the WAL frames of its commits.
    fn writer_bytes(&self) -> u64 {
        self.threads()
            .into_iter()
            .filter(|t| {
                std::fs::read_to_string(t.join("comm")).is_ok_and(|c| c.trim() == "store-writer")
            })
            .filter_map(|t| std::fs::read_to_string(t.join("io")).ok())
            .filter_map(|io| {
                io.lines()
                    .find_map(|l| l.strip_prefix("wchar:"))
                    .and_then(|v| v.trim().parse::<u64>().ok())
            })
            .sum()
    }

    /// The store's commits so far and the commands they carried, from the
    /// router's own `/metrics` (`hookrouter_store_batch_size`).
    async fn batches(&self) -> (f64, f64) {
        let Some(admin) = self.admin else {
            return (0.0, 0.0);
        };
        let req = hyper::Request::get("/metrics")
            .header("host", admin.to_string())
            .body(http_body_util::Full::new(Bytes::new()))
            .unwrap();
        let Ok(resp) = connect(admin).await.send_request(req).await else {
            return (0.0, 0.0);
        };
        let body = read_body(resp).await;
        let text = String::from_utf8_lossy(&body);
        let value = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (
            value("hookrouter_store_batch_size_count"),
            value("hookrouter_store_batch_size_sum"),
        )
    }

    /// Resident and peak resident memory, in MiB.
    fn rss(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.proc.id())).unwrap();
        let kb = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (kb("VmRSS:") / 1024.0, kb("VmHWM:") / 1024.0)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_child(&self.proc),
            rustix::process::Signal::TERM,
        );
        let _ = self.proc.wait();
    }
}

type Times = Arc<Mutex<HashMap<String, Instant>>>;

/// Notes when each event was acknowledged, by its id.
fn note_acks(acks: &Times) -> Arc<dyn Fn(Bytes) + Send + Sync> {
    let a = acks.clone();
    Arc::new(move |b: Bytes| {
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap_or_default();
        if let Some(id) = v["id"].as_str() {
            a.lock().unwrap().insert(id.to_string(), Instant::now());
        }
    })
}

/// Waits until every acknowledged event's forward has arrived (or `limit`).
async fn drained(acks: &Times, arrivals: &Times, limit: Duration) {
    let until = Instant::now() + limit;
    let (mut seen, mut progress) = (0, Instant::now());
    loop {
        let (done, arrived) = {
            let (acks, arrivals) = (acks.lock().unwrap(), arrivals.lock().unwrap());
            (
                acks.keys().all(|id| arrivals.contains_key(id)),
                arrivals.len(),
            )
        };
        if arrived > seen {
            (seen, progress) = (arrived, Instant::now());
        }
        // Done, out of time, or nothing has arrived for 15 s.
        if done || Instant::now() > until || progress.elapsed() > Duration::from_secs(15) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// 202 → sink latencies of the acknowledged events that arrived, sorted.
fn lags(acks: &Times, arrivals: &Times) -> Vec<Duration> {
    let (acks, arrivals) = (acks.lock().unwrap(), arrivals.lock().unwrap());
    let mut lag: Vec<Duration> = acks
        .iter()
        .filter_map(|(id, t)| arrivals.get(id).map(|a| a.saturating_duration_since(*t)))
        .collect();
    lag.sort();
    lag
}

fn pct(lag: &[Duration], p: f64) -> f64 {
    lag.get(((lag.len() as f64 - 1.0) * p) as usize)
        .copied()
        .unwrap_or_default()
        .as_secs_f64()
        * 1e3
}

/// End to end through one plugin: saturated for SECONDS (then until every
/// forward has arrived), then paced at half of what it sustained.
async fn end_to_end(
    name: &str,
    dir: &std::path::Path,
    plugin: &[u8],
    key: &str,
    ingress_rps: Option<f64>,
) -> f64 {
    let arrivals: Times = Arc::default();
    let sink = sink(arrivals.clone()).await;
    let own = {
        let only = Child::start(&dir.join("ingest-only"), None, key, sink).await;
        load(only.addr, "/webhooks/optum", 64, SECONDS, body(), None)
            .await
            .rps()
    };
    let router = Child::start(dir, Some(plugin), key, sink).await;
    through(name, router, arrivals, own, ingress_rps).await
}

/// The reference pipeline end to end, as the router is measured; its ratio is
/// to the append+fdatasync reference's ingest of part 1.
async fn reference_end_to_end(dir: &std::path::Path, ingress_rps: Option<f64>) -> f64 {
    let arrivals: Times = Arc::default();
    let sink = sink(arrivals.clone()).await;
    let own = {
        let only = Child::reference(&dir.join("ingest-only"), None).await;
        load(only.addr, "/webhooks/optum", 64, SECONDS, body(), None)
            .await
            .rps()
    };
    let child = Child::reference(dir, Some(sink)).await;
    through(
        "the reference pipeline (append+fdatasync, forward, outcome append+fdatasync; no plugin)",
        child,
        arrivals,
        own,
        ingress_rps,
    )
    .await
}

/// Saturates `router` for SECONDS (then waits until every forward has
/// arrived), prints the figures, then paces it at half of what it sustained.
/// Returns the end-to-end events/s.
/// `own` is the same build's ingest-only rate as a child process (the
/// issue's denominator: the same binary, black box); `ingress_rps` part 1's
/// in-process figure.
async fn through(
    name: &str,
    router: Child,
    arrivals: Times,
    own: f64,
    ingress_rps: Option<f64>,
) -> f64 {
    let acks: Times = Arc::default();
    let cpu_before = router.cpu_by_thread();
    let written_before = router.writer_bytes();
    let batches_before = router.batches().await;
    let started = Instant::now();
    let sent = load(
        router.addr,
        "/webhooks/optum",
        64,
        SECONDS,
        body(),
        Some(note_acks(&acks)),
    )
    .await;
    drained(&acks, &arrivals, Duration::from_secs(180)).await;
    let total = started.elapsed().as_secs_f64();
    let cpu_after = router.cpu_by_thread();
    let written = router.writer_bytes().saturating_sub(written_before);
    let batches_after = router.batches().await;
    let acked = acks.lock().unwrap().len();
    let arrived = lags(&acks, &arrivals).len();
    let e2e = arrived as f64 / total;
    println!(
        "\n## End to end: {name} (a child process; 64 conns for {SECONDS} s, then until every forward arrived)\n"
    );
    println!("| measure | value |");
    println!("| --- | --- |");
    println!(
        "| events acked (202) | {acked} ({:.0}/s while sending, {} errors) |",
        sent.rps(),
        sent.errors
    );
    println!("| forwards that reached the sink | {arrived} |");
    println!("| end-to-end events/s (arrived / time until the last forward) | {e2e:.0} |");
    println!(
        "| its ingest-only events/s, the same build as a child process, just before (64 conns) | {own:.0} |"
    );
    println!(
        "| **end to end / ingest-only (child)** | **{:.2}** |",
        e2e / own
    );
    if let Some(ingress_rps) = ingress_rps {
        println!(
            "| its ingest-only events/s, part 1 of this run (64 conns, in process) | {ingress_rps:.0} |"
        );
        println!(
            "| end to end / ingest-only (in process) | {:.2} |",
            e2e / ingress_rps
        );
    }
    // The router's CPU over the whole run (every event in, run, forwarded).
    let mut by_thread: Vec<(String, f64)> = cpu_after
        .iter()
        .map(|(comm, t)| {
            let before = cpu_before.get(comm).copied().unwrap_or_default();
            (
                comm.clone(),
                t.saturating_sub(before).as_secs_f64() * 1e6 / arrived.max(1) as f64,
            )
        })
        .filter(|(_, us)| *us >= 0.5)
        .collect();
    by_thread.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total_us: f64 = by_thread.iter().map(|(_, us)| us).sum();
    let split: Vec<String> = by_thread
        .iter()
        .map(|(c, us)| format!("{c} {us:.0}"))
        .collect();
    println!(
        "| server CPU per event, µs (user + system, by thread) | {total_us:.0} ({}) |",
        split.join(", ")
    );

    let commits = batches_after.0 - batches_before.0;
    let commands = batches_after.1 - batches_before.1;
    // (The reference pipeline has no store and no /metrics.)
    if commits > 0.0 {
        println!(
            "| store commits per event / commands per commit | {:.2} / {:.1} |",
            commits / arrived.max(1) as f64,
            commands / commits.max(1.0)
        );
    }
    if written > 0 {
        println!(
            "| store writer: bytes written per event (WAL frames, KiB) | {:.1} |",
            written as f64 / 1024.0 / arrived.max(1) as f64
        );
    }

    // Below saturation: half of what it sustained, or BENCH_PACED events/s (the
    // same load for two builds: their CPU per event is then compared without
    // the noise of a saturated machine).
    let rate = std::env::var("BENCH_PACED")
        .ok()
        .map_or(((e2e / 2.0) as usize).max(50), |r| {
            r.parse()
                .unwrap_or_else(|_| panic!("BENCH_PACED={r}: events per second, a whole number"))
        });
    let acks: Times = Arc::default();
    let cpu_before = router.cpu_by_thread();
    let sent = paced(router.addr, 16, rate, SECONDS, note_acks(&acks)).await;
    drained(&acks, &arrivals, Duration::from_secs(30)).await;
    let cpu_after = router.cpu_by_thread();
    let lag = lags(&acks, &arrivals);
    let paced_cpu: f64 = cpu_after
        .iter()
        .map(|(comm, t)| {
            t.saturating_sub(cpu_before.get(comm).copied().unwrap_or_default())
                .as_secs_f64()
        })
        .sum();
    println!(
        "| paced {rate} events/s: server CPU per event, µs | {:.0} |",
        paced_cpu * 1e6 / lag.len().max(1) as f64
    );
    println!(
        "| paced {rate} events/s (50%): acked / reached the sink | {sent} / {} |",
        lag.len()
    );
    println!(
        "| paced {rate} events/s: 202 → sink p50 / p99 / max | {:.1} ms / {:.1} ms / {:.1} ms |",
        pct(&lag, 0.5),
        pct(&lag, 0.99),
        pct(&lag, 1.0)
    );
    e2e
}

/// Resident memory of the release binary: idle, then after 250,000 events
/// through the trivial component to the sink (once every forward arrived).
async fn resident(dir: &std::path::Path, plugin: &[u8]) {
    const EVENTS: usize = 250_000;
    let arrivals: Times = Arc::default();
    let sink = sink(arrivals.clone()).await;
    let router = Child::start(dir, Some(plugin), "forward_url", sink).await;
    let (idle, _) = router.rss();
    let acks: Times = Arc::default();
    let started = Instant::now();
    while acks.lock().unwrap().len() < EVENTS && started.elapsed() < Duration::from_secs(300) {
        load(
            router.addr,
            "/webhooks/optum",
            64,
            2,
            body(),
            Some(note_acks(&acks)),
        )
        .await;
    }
    drained(&acks, &arrivals, Duration::from_secs(300)).await;
    let acked = acks.lock().unwrap().len();
    let arrived = lags(&acks, &arrivals).len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (after, peak) = router.rss();
    // Idle a while: the writer gives its page cache back after 2 quiet
    // seconds, and freed memory goes back to the OS every 5.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let (rested, _) = router.rss();
    if let Some(to) = std::env::var_os("BENCH_SMAPS") {
        std::fs::copy(format!("/proc/{}/smaps", router.proc.id()), &to).unwrap();
    }
    println!("\n## Resident memory (release binary, trivial component forwarding to a sink)\n");
    println!("| measure | MiB |");
    println!("| --- | ---: |");
    println!("| idle, after start | {idle:.1} |");
    println!("| after {acked} events ({arrived} forwarded), drained, 2 s later | {after:.1} |");
    println!("| the same, 10 s after the last forward | {rested:.1} |");
    println!("| peak while loaded (VmHWM) | {peak:.1} |");
}
