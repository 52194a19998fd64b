//! Containment in the runtime: the deadline holds while a guest waits inside a
//! host call (both ABIs), frees the instance slot at once, and leaves well-behaved
//! waits alone; the memory cap counts every memory of an instance; the emit budget
//! of one run (count, size, hops) fails the run as `emit_budget`.

mod runtime_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use hookrouter::event::Action;
use hookrouter::plugins::{EngineOptions, Limits, MAX_HOPS, PluginEngine, PluginError};
use runtime_support::*;
use serde_json::json;

/// Generous: the machine is shared; this only says "it did not wait for the timer".
const MARGIN: Duration = Duration::from_secs(2);

/// Runs `plugin` on an event with body `body` and checks it ended as a timeout
/// within the deadline plus the margin, and not before the deadline.
fn times_out(plugin: &hookrouter::plugins::Plugin, body: serde_json::Value, limits: &Limits) {
    let started = Instant::now();
    let result = plugin.run_with(&event("sleep", body), 1, &config(&[]), limits);
    let took = started.elapsed();
    let err = result.expect_err("a 60 s wait must not succeed");
    assert!(matches!(err, PluginError::Timeout { .. }), "{err}");
    assert!(
        err.to_string().contains(&format!(
            "timed out after {} ms",
            limits.timeout.as_millis()
        )),
        "{err}"
    );
    assert!(
        took >= limits.timeout && took < limits.timeout + MARGIN,
        "{} took {took:?} under a {:?} deadline",
        plugin.name(),
        limits.timeout
    );
}

#[test]
fn command_sleeping_in_poll_oneoff_times_out_at_the_deadline() {
    let engine = engine();
    let plugin = load(&engine, &fixture("cmd_sleep"));
    times_out(&plugin, json!({}), &limits());
}

#[test]
fn component_waiting_in_poll_or_block_times_out_at_the_deadline() {
    let engine = engine();
    let plugin = load(&engine, &fixture("sleeper"));
    for order in ["poll", "block"] {
        times_out(&plugin, json!({ "do": order }), &limits());
    }
    // A plugin's own, shorter deadline holds the same way.
    let short = Limits {
        timeout: Duration::from_millis(120),
        ..limits()
    };
    times_out(&plugin, json!({ "do": "poll" }), &short);
}

#[test]
fn waits_that_end_before_the_deadline_answer_as_wasi_says() {
    let engine = engine();
    let nap = load(&engine, &fixture("cmd_nap"));
    let actions = nap.run(&event("x", json!({})), 1, &config(&[])).unwrap();
    assert!(
        matches!(&actions[..], [Action::Emit { event_type, .. }] if event_type == "napped"),
        "{actions:?}"
    );
    let sleeper = load(&engine, &fixture("sleeper"));
    let actions = sleeper
        .run(
            &event("x", json!({ "do": "nap", "ms": 30 })),
            1,
            &config(&[]),
        )
        .unwrap();
    let [Action::Emit { data, .. }] = &actions[..] else {
        panic!("{actions:?}")
    };
    let slept = json(data)["slept_ms"].as_u64().unwrap();
    assert!(slept >= 30, "woke after {slept} ms of a 30 ms wait");
}

#[test]
fn a_timed_out_sleeper_frees_its_slot_at_once() {
    // One instance slot: the next run can only start once the sleeper's is free.
    let engine = Arc::new(
        PluginEngine::new(EngineOptions {
            limits: limits(),
            max_concurrency: 1,
            ..EngineOptions::default()
        })
        .unwrap(),
    );
    let sleeper = load(&engine, &fixture("cmd_sleep"));
    let echo = load(&engine, &fixture("cmd_emit"));
    let waiting = std::thread::spawn(move || {
        sleeper
            .run(&event("x", json!({})), 1, &config(&[]))
            .unwrap_err()
    });
    std::thread::sleep(Duration::from_millis(50));
    let started = Instant::now();
    echo.run(&event("x", json!({})), 1, &config(&[])).unwrap();
    let waited = started.elapsed();
    assert!(matches!(
        waiting.join().unwrap(),
        PluginError::Timeout { .. }
    ));
    assert!(
        waited < TIMEOUT + MARGIN,
        "the next run waited {waited:?} for the slot"
    );
}

#[test]
fn memory_cap_counts_every_memory_of_a_component() {
    // Two memories of 20 MiB: each fits a 32 MiB cap, both together do not.
    let engine = engine();
    let plugin = load(&engine, &fixture("comp_two_memories"));
    let err = plugin
        .run(&event("x", json!({})), 1, &config(&[]))
        .unwrap_err();
    assert!(matches!(err, PluginError::MemoryLimit { .. }), "{err}");
    assert!(err.to_string().contains("memory limit of 32 MiB"), "{err}");
    // Under a 64 MiB cap (in the same engine's pool) the same component runs.
    let big = PluginEngine::new(EngineOptions {
        limits: limits(),
        max_memory_bytes: Some(64 << 20),
        max_concurrency: 2,
        ..EngineOptions::default()
    })
    .unwrap();
    let plugin = load(&big, &fixture("comp_two_memories"));
    let roomy = Limits {
        memory_bytes: 64 << 20,
        ..limits()
    };
    assert_eq!(
        plugin
            .run_with(&event("x", json!({})), 1, &config(&[]), &roomy)
            .unwrap(),
        vec![]
    );
    assert!(matches!(
        plugin.run(&event("x", json!({})), 1, &config(&[])),
        Err(PluginError::MemoryLimit { .. })
    ));
}

#[test]
fn emit_budget_of_one_run_fails_it_without_retry() {
    let engine = engine();
    let plugin = load(&engine, &fixture("hostile"));
    let budget = |order: &str, hops: u32| {
        let mut e = event("bomb", json!({ "do": order }));
        e.hops = hops;
        plugin.run(&e, 1, &config(&[])).map(|a| a.len())
    };
    let err = budget("bomb", 0).unwrap_err();
    assert!(matches!(err, PluginError::EmitBudget { .. }), "{err}");
    assert!(!err.is_retryable(), "{err}");
    assert!(
        err.to_string()
            .contains("50 emits in one run, more than plugins.max_emits_per_run (20)"),
        "{err}"
    );
    let err = budget("big_emit", 0).unwrap_err();
    assert!(
        err.to_string()
            .contains("more than server.max_body_bytes (1048576)"),
        "{err}"
    );
    // The same emit is fine at hop 7 (it makes hop 8) and over budget at hop 8.
    assert_eq!(budget("echo", MAX_HOPS - 1), Ok(1));
    let err = budget("echo", MAX_HOPS).unwrap_err();
    assert!(
        err.to_string()
            .contains("would be hop 9, past the limit of 8 hops"),
        "{err}"
    );
    // A larger per-run budget lets the bomb through.
    let roomy = Limits {
        max_emits_per_run: 50,
        ..limits()
    };
    let actions = plugin
        .run_with(
            &event("bomb", json!({ "do": "bomb" })),
            1,
            &config(&[]),
            &roomy,
        )
        .unwrap();
    assert_eq!(actions.len(), 50);
}
