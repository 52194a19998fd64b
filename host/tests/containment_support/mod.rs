//! Helpers of the containment tests: WAT fixtures assembled here from
//! `tests/fixtures/wat`, a large generated module, thread counts, metrics.

#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::{Router, client, repo};

/// `tests/fixtures/wat/NAME.wat`, assembled.
pub fn wat_fixture(name: &str) -> Vec<u8> {
    let path = repo().join(format!("tests/fixtures/wat/{name}.wat"));
    wat::parse_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Writes `bytes` as `dir/plugins/NAME.wasm` (write-temp-then-rename).
pub fn install_bytes(dir: &Path, name: &str, bytes: &[u8]) {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let tmp = plugins.join(format!(".{name}.wasm.tmp"));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, plugins.join(format!("{name}.wasm"))).unwrap();
}

/// A valid command module of `functions` functions of 1000 instructions each,
/// which takes seconds to compile (about 1.4 s per 200 functions here).
pub fn big_module(functions: usize) -> Vec<u8> {
    let mut wat = String::from("(module (memory (export \"memory\") 1)\n");
    for f in 0..functions {
        wat.push_str(&format!("(func $f{f} (param $x i64) (result i64)\n"));
        for i in 0..1000 {
            wat.push_str(&format!(
                "(local.set $x (i64.add (i64.mul (local.get $x) (i64.const {})) (i64.const {i})))\n",
                i * 7 + f + 3
            ));
        }
        wat.push_str("(local.get $x))\n");
    }
    wat.push_str("(func (export \"_start\") (drop (call $f0 (i64.const 1)))))");
    wat::parse_str(&wat).unwrap()
}

/// The `Threads:` line of `/proc/PID/status`.
pub fn threads(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("a Threads: line in /proc/PID/status")
}

/// The router's `/metrics` text.
pub fn metrics(r: &Router) -> String {
    client()
        .get(format!("{}/metrics", r.admin))
        .send()
        .unwrap()
        .text()
        .unwrap()
}

/// The value of the sample `line_prefix` (a metric name with its labels) in `text`.
pub fn sample(text: &str, line_prefix: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(line_prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// `GET /admin/plugins`' entry for `name`.
pub fn plugin_entry(r: &Router, name: &str) -> Option<serde_json::Value> {
    r.admin_json("/admin/plugins")["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .cloned()
}

/// Events of type `event_type` by status: (pending, done, dead). On a route to one
/// plugin, that is its deliveries by state.
pub fn states(r: &Router, event_type: &str) -> (i64, i64, i64) {
    let mut out = (0, 0, 0);
    for e in r.events(&format!("type={event_type}")) {
        match e["status"].as_str() {
            Some("pending") => out.0 += 1,
            Some("done") => out.1 += 1,
            Some("dead") => out.2 += 1,
            other => panic!("status {other:?} of {e}"),
        }
    }
    out
}

/// Deliveries of events of type `event_type` that a worker holds right now.
pub fn running(r: &Router, event_type: &str) -> usize {
    r.events(&format!("type={event_type}&status=pending"))
        .iter()
        .flat_map(|e| r.deliveries(e["id"].as_str().unwrap()))
        .filter(|d| d["leased"] == true && d["state"] == "pending")
        .count()
}

/// The delivery of `event_id` to `plugin`.
pub fn delivery(r: &Router, event_id: &str, plugin: &str) -> serde_json::Value {
    r.deliveries(event_id)
        .into_iter()
        .find(|d| d["plugin"] == plugin)
        .unwrap_or_else(|| panic!("no delivery of {event_id} to {plugin}"))
}

/// Polls `f` every 20 ms for up to `limit`; how long it took to hold, if it did.
pub fn within(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if f() {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f().then(|| started.elapsed())
}

/// `(upper bound, cumulative count)` of the run-duration histogram of `plugin`.
pub fn duration_buckets(text: &str, plugin: &str) -> Vec<(f64, f64)> {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == "hookrouter_plugin_duration_seconds")
        .filter(|s| s.labels.get("plugin") == Some(plugin))
        .flat_map(|s| match &s.value {
            prometheus_parse::Value::Histogram(h) => {
                h.iter().map(|b| (b.less_than, b.count)).collect::<Vec<_>>()
            }
            _ => Vec::new(),
        })
        .collect()
}

/// Held by each test of a file for its whole run: these tests measure bounds that
/// follow from deadlines, and a neighbour test spinning the same two cores would
/// blur them.
pub fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}
