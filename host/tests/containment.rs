//! Containment under `serve`, with the real binary: plugins that sleep inside
//! WASI calls (a command in `poll_oneoff`, a component in `wasi:io/poll`) end at
//! their deadline and give their threads back, while a neighbour plugin keeps
//! being served; a plugin that spins until its deadline on every run cannot hold
//! every worker while another plugin has work.

mod common;
mod containment_support;

use std::time::{Duration, Instant};

use common::*;
use containment_support::*;
use serde_json::{Value, json};

fn config(plugins: &str, routes: &str) -> String {
    format!(
        r#"version = 1
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[plugins]
dir = "plugins"
{plugins}

[[sources]]
name = "test"
type_from = "/type"
verify = {{ scheme = "none" }}
{routes}"#
    )
}

fn post(r: &Router, body: Value) {
    let resp = client().post(r.webhook("test")).json(&body).send().unwrap();
    assert_eq!(resp.status().as_u16(), 202, "{body}");
}

#[test]
fn sleepers_end_at_their_deadline_free_their_threads_and_never_hold_up_a_neighbour() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    install_bytes(dir.path(), "sleepy_cmd", &wat_fixture("cmd_sleep"));
    install_plugin(dir.path(), &fixture("sleeper"), "sleepy_comp");
    install_plugin(dir.path(), &fixture("relay"), "neighbour");
    let cfg = config(
        "timeout_ms = 200\nmax_attempts = 2\nretry_base_ms = 50",
        r#"
[[routes]]
events = ["sleep_cmd"]
plugins = ["sleepy_cmd"]

[[routes]]
events = ["sleep_comp"]
plugins = ["sleepy_comp"]

[[routes]]
events = ["work"]
plugins = ["neighbour"]
"#,
    );
    let r = Router::start(dir.path(), &cfg, &[]);
    let pid = r.child.id();
    let baseline = threads(pid);

    // 40 sleepers, each asking for a 60 s wait: 20 commands, 20 components
    // (half of them in `poll`, half in `pollable.block`).
    for i in 0..20 {
        post(&r, json!({ "type": "sleep_cmd", "n": i }));
        let how = if i % 2 == 0 { "poll" } else { "block" };
        post(&r, json!({ "type": "sleep_comp", "do": how }));
    }
    wait_for(10, "the sleepers to start", || {
        (running(&r, "sleep_cmd") + running(&r, "sleep_comp") > 0).then_some(())
    });

    // The neighbour's 20 deliveries finish within 2 s all the same.
    for i in 0..20 {
        post(&r, json!({ "type": "work", "n": i }));
    }
    let took = within(Duration::from_secs(2), || states(&r, "work").1 == 20);
    let sleepers_left = states(&r, "sleep_cmd").0 + states(&r, "sleep_comp").0;
    let busy_threads = threads(pid);
    assert!(
        took.is_some(),
        "the neighbour's deliveries took over 2 s: {:?} done",
        states(&r, "work")
    );
    assert!(
        sleepers_left > 0,
        "the sleepers were all gone before the neighbour's work was measured"
    );

    // Every sleeper is dead after its two attempts, each a timeout.
    wait_settled(&r, 120);
    for (plugin, event_type) in [("sleepy_cmd", "sleep_cmd"), ("sleepy_comp", "sleep_comp")] {
        assert_eq!(states(&r, event_type), (0, 0, 20), "{plugin}");
        let rows: Vec<(i64, String)> = r
            .events(&format!("type={event_type}"))
            .iter()
            .map(|e| {
                let d = delivery(&r, e["id"].as_str().unwrap(), plugin);
                (
                    d["attempts"].as_i64().unwrap(),
                    d["last_error"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        for (attempts, error) in rows {
            assert_eq!(attempts, 2, "{plugin}: {error}");
            assert!(
                error.contains("timed out after 200 ms"),
                "{plugin}: {error}"
            );
        }
        // Each run ended within its deadline plus a generous margin: none of the
        // 40 runs is above the histogram's 1.6384 s bucket (of 60 s asked for).
        let buckets = duration_buckets(&metrics(&r), plugin);
        let total = buckets.iter().map(|b| b.1).fold(0.0, f64::max);
        let within = buckets
            .iter()
            .find(|b| (b.0 - 1.6384).abs() < 1e-6)
            .map(|b| b.1);
        assert_eq!(total, 40.0, "{plugin}: {buckets:?}");
        assert_eq!(within, Some(40.0), "{plugin}: {buckets:?}");
    }

    // No thread still runs a guest: the process is back at its thread count of
    // before (blocking threads end 10 s after their last job).
    assert!(
        busy_threads > baseline,
        "the sleepers ran on no thread of their own? {busy_threads} threads, {baseline} before"
    );
    let back = within(Duration::from_secs(15), || threads(pid) <= baseline);
    assert!(
        back.is_some(),
        "threads: {} now, {busy_threads} while sleeping, {baseline} before the sleepers",
        threads(pid)
    );
}

#[test]
fn a_plugin_spinning_to_its_deadline_cannot_hold_every_worker() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    install_plugin(dir.path(), &fixture("hostile"), "busy");
    install_plugin(dir.path(), &fixture("relay"), "second");
    let cfg = config(
        "workers = 4\ntimeout_ms = 1000\nmax_attempts = 1",
        r#"
[[routes]]
events = ["spin"]
plugins = ["busy"]

[[routes]]
events = ["work"]
plugins = ["second"]

[plugin.busy]
concurrency = 2
"#,
    );
    let r = Router::start(dir.path(), &cfg, &[]);
    // 30 runs of 1 s each: alone, busy takes all four workers.
    for i in 0..30 {
        post(&r, json!({ "type": "spin", "do": "loop", "n": i }));
    }
    wait_for(10, "busy to hold every worker", || {
        (running(&r, "spin") >= 4).then_some(())
    });
    let sent = Instant::now();
    for i in 0..5 {
        post(&r, json!({ "type": "work", "n": i }));
    }
    // One deadline (1 s) until the first of busy's runs ends, then the second
    // plugin's quick deliveries: well within 2.5 s. (Without the fair share they
    // would wait behind all 30 busy runs: over 7 s.)
    let done = within(Duration::from_secs(10), || states(&r, "work").1 == 5)
        .expect("the second plugin's deliveries never finished");
    let took = sent.elapsed();
    assert!(
        took < Duration::from_millis(2500),
        "the second plugin waited {took:?} ({done:?} polled) behind a spinning plugin"
    );
    let busy = states(&r, "spin");
    assert!(busy.0 > 0, "busy's backlog was already gone: {busy:?}");
}
