//! Hostile plugins of both ABIs: each misbehaviour ends in its own `PluginError`
//! variant within the deadline plus a margin, and the same engine then serves the
//! next event normally.

mod runtime_support;

use std::time::{Duration, Instant};

use hookrouter::event::Action;
use hookrouter::plugins::{Plugin, PluginEngine, PluginError};
use runtime_support::*;
use serde_json::json;

/// Generous: timing never decides these tests beyond "it did not hang".
const MARGIN: Duration = Duration::from_secs(2);

fn run_hostile(plugin: &Plugin, order: &str) -> PluginError {
    let started = Instant::now();
    let result = plugin.run(&event("hostile", json!({"do": order})), 1, &config(&[]));
    let took = started.elapsed();
    assert!(took < TIMEOUT + MARGIN, "{order} took {took:?}");
    let err = result.expect_err(order);
    assert_eq!(err.plugin(), plugin.name());
    assert!(err.is_retryable(), "{err}");
    err
}

fn still_serves(engine: &PluginEngine) {
    let echo = load(engine, &fixture("hostile"));
    let actions = echo
        .run(&event("x", json!({"do": "echo"})), 1, &config(&[]))
        .unwrap();
    assert!(matches!(&actions[..], [Action::Emit { .. }]), "{actions:?}");
    let cmd = load(engine, &fixture("cmd_emit"));
    assert_eq!(
        cmd.run(&event("x", json!({})), 1, &config(&[]))
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn component_infinite_loop_times_out() {
    let engine = engine();
    let plugin = load(&engine, &fixture("hostile"));
    let err = run_hostile(&plugin, "loop");
    assert!(matches!(err, PluginError::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("timed out after 300 ms"), "{err}");
    still_serves(&engine);
}

#[test]
fn component_endless_allocation_hits_the_memory_cap() {
    let engine = engine();
    let plugin = load(&engine, &fixture("hostile"));
    let err = run_hostile(&plugin, "grow");
    assert!(matches!(err, PluginError::MemoryLimit { .. }), "{err}");
    still_serves(&engine);
}

#[test]
fn component_panic_is_a_trap() {
    let engine = engine();
    let plugin = load(&engine, &fixture("hostile"));
    let err = run_hostile(&plugin, "trap");
    assert!(matches!(err, PluginError::Trap { .. }), "{err}");
    still_serves(&engine);
}

#[test]
fn component_flooding_stdout_hits_the_output_cap() {
    let engine = engine();
    let plugin = load(&engine, &fixture("hostile"));
    let err = run_hostile(&plugin, "flood");
    assert!(matches!(err, PluginError::OutputLimit { .. }), "{err}");
    still_serves(&engine);
}

#[test]
fn component_err_is_a_guest_error_with_its_message() {
    let engine = engine();
    let plugin = load(&engine, &fixture("hostile"));
    let err = run_hostile(&plugin, "err");
    assert!(
        matches!(&err, PluginError::Guest { message, .. } if message == "refused on purpose"),
        "{err}"
    );
    still_serves(&engine);
}

#[test]
fn component_invalid_actions_are_bad_output() {
    let engine = engine();
    let plugin = load(&engine, &fixture("hostile"));
    for order in ["bad_url", "bad_emit", "empty_type", "many"] {
        let err = run_hostile(&plugin, order);
        assert!(
            matches!(err, PluginError::BadOutput { .. }),
            "{order}: {err}"
        );
    }
    still_serves(&engine);
}

fn run_command(engine: &PluginEngine, name: &str) -> PluginError {
    let plugin = load(engine, &fixture(name));
    let started = Instant::now();
    let result = plugin.run(&event("hostile", json!({})), 1, &config(&[]));
    assert!(
        started.elapsed() < TIMEOUT + MARGIN,
        "{name} took {:?}",
        started.elapsed()
    );
    let err = result.expect_err(name);
    assert!(
        err.to_string().contains(&format!("plugin {name} ")),
        "{err}"
    );
    err
}

#[test]
fn command_hostiles_each_get_their_own_error() {
    let engine = engine();
    let err = run_command(&engine, "cmd_loop");
    assert!(matches!(err, PluginError::Timeout { .. }), "{err}");
    let err = run_command(&engine, "cmd_grow");
    assert!(matches!(err, PluginError::MemoryLimit { .. }), "{err}");
    let err = run_command(&engine, "cmd_trap");
    assert!(matches!(err, PluginError::Trap { .. }), "{err}");
    let err = run_command(&engine, "cmd_flood");
    assert!(matches!(err, PluginError::OutputLimit { .. }), "{err}");
    let err = run_command(&engine, "cmd_bad_json");
    assert!(matches!(err, PluginError::BadOutput { .. }), "{err}");
    let err = run_command(&engine, "cmd_bad_url");
    assert!(matches!(err, PluginError::BadOutput { .. }), "{err}");
    let err = run_command(&engine, "cmd_exit3");
    assert!(
        matches!(&err, PluginError::Guest { message, .. } if message.contains("status 3")),
        "{err}"
    );
    still_serves(&engine);
}
