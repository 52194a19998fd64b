//! The plugin runtime with real plugins built from source: each ABI's happy path,
//! config reaching the guest, the example plugins, the compile cache, the registry,
//! and files that are not plugins.

mod runtime_support;

use hookrouter::event::Action;
use hookrouter::plugins::{
    EngineOptions, PluginEngine, PluginError, PluginKind, PluginRegistry, cache_entry_path,
};
use runtime_support::*;
use serde_json::json;

#[test]
fn component_runs_with_event_fields_and_config() {
    let engine = engine();
    let plugin = load(&engine, &fixture("hostile"));
    assert_eq!(plugin.kind(), PluginKind::Component);
    assert_eq!(plugin.version().len(), 64);
    let ev = event("ping", json!({"do": "echo"}));
    let cfg = config(&[("greeting", "hello"), ("url", "http://127.0.0.1:9/sink")]);
    let actions = plugin.run(&ev, 3, &cfg).unwrap();
    assert_eq!(actions.len(), 2, "{actions:?}");
    let Action::Emit { event_type, data } = &actions[0] else {
        panic!("not an emit: {actions:?}")
    };
    assert_eq!(event_type, "echoed");
    let data = json(data);
    assert_eq!(data["greeting"], "hello");
    assert_eq!(data["missing"], serde_json::Value::Null);
    assert_eq!(data["attempt"], 3);
    assert_eq!(data["type"], "ping");
    assert_eq!(data["source"], "optum");
    assert_eq!(data["content_type"], "application/json");
    assert!(data["received_at"].as_str().unwrap().ends_with('Z'));
    let Action::Forward { url, headers, body } = &actions[1] else {
        panic!("not a forward: {actions:?}")
    };
    assert_eq!(url, "http://127.0.0.1:9/sink");
    assert!(headers.contains(&("content-type".into(), "application/json".into())));
    assert_eq!(json(body)["id"], ev.id.to_string().as_str());
}

#[test]
fn command_module_emits_its_stdout_lines() {
    let engine = engine();
    let plugin = load(&engine, &fixture("cmd_emit"));
    assert_eq!(plugin.kind(), PluginKind::Command);
    let actions = plugin.run(&event("x", json!({})), 1, &config(&[])).unwrap();
    assert_eq!(
        actions,
        vec![Action::Emit {
            event_type: "noop".into(),
            data: "{}".into()
        }]
    );
    let quiet = load(&engine, &fixture("cmd_exit0"));
    assert_eq!(
        quiet.run(&event("x", json!({})), 1, &config(&[])).unwrap(),
        vec![]
    );
}

#[test]
fn c_command_plugin_reads_stdin_and_env() {
    let engine = engine();
    let plugin = load(&engine, &example("batch_notify"));
    let envelope = json!({
        "id": "batch_42", "source": "optum", "specVersion": "1.0", "type": "batch_created",
        "causationId": "cause-1", "data": {"paymentCount": 3}
    });
    let ev = event("batch_created", envelope);
    let cfg = config(&[
        ("NOTIFY_URL", "http://127.0.0.1:9/slack"),
        ("CHANNEL", "#pay\"ments"),
    ]);
    let actions = plugin.run(&ev, 1, &cfg).unwrap();
    assert_eq!(actions.len(), 2, "{actions:?}");
    let Action::Emit { event_type, data } = &actions[0] else {
        panic!("not an emit: {actions:?}")
    };
    assert_eq!(event_type, "batch_notification");
    assert_eq!(json(data)["batch_id"], "batch_42");
    assert_eq!(json(data)["event_id"], ev.id.to_string().as_str());
    let Action::Forward { url, body, .. } = &actions[1] else {
        panic!("not a forward: {actions:?}")
    };
    assert_eq!(url, "http://127.0.0.1:9/slack");
    assert_eq!(json(body)["text"], "Batch batch_42 was created");
    assert_eq!(json(body)["channel"], "#pay\"ments");

    let other = plugin
        .run(&event("payment_created", json!({"id": "p"})), 1, &cfg)
        .unwrap();
    assert!(other.is_empty());
}

#[test]
fn payment_audit_forwards_above_threshold() {
    let engine = engine();
    let plugin = load(&engine, &example("payment_audit"));
    let pay = |amount: f64| {
        event(
            "payment_loading_requested",
            json!({"id": "pay_7", "type": "payment_loading_requested", "data": {"amount": amount}}),
        )
    };
    let cfg = config(&[("threshold", "500")]);
    assert!(plugin.run(&pay(20.0), 1, &cfg).unwrap().is_empty());
    let actions = plugin.run(&pay(1500.0), 1, &cfg).unwrap();
    let [Action::Forward { url, body, .. }] = &actions[..] else {
        panic!("not one forward: {actions:?}")
    };
    assert_eq!(url, "http://127.0.0.1:9000/audit");
    assert_eq!(json(body)["amount"], 1500.0);
    let cfg = config(&[
        ("threshold", "500"),
        ("forward_url", "https://audit.test/in"),
    ]);
    let actions = plugin.run(&pay(501.0), 2, &cfg).unwrap();
    assert!(
        matches!(&actions[..], [Action::Forward { url, .. }] if url == "https://audit.test/in")
    );
}

#[test]
fn python_component_runs() {
    let engine = PluginEngine::new(EngineOptions {
        max_concurrency: 2,
        ..EngineOptions::default()
    })
    .unwrap();
    let plugin = load(&engine, &example("refund_alert"));
    let ev = event(
        "payment_refunded",
        json!({"id": "pay_9", "type": "payment_refunded", "data": {"id": "pay_9", "amount": 12.5}}),
    );
    let cfg = config(&[("slack_url", "http://127.0.0.1:9/slack")]);
    let actions = plugin.run(&ev, 1, &cfg).unwrap();
    assert_eq!(actions.len(), 2, "{actions:?}");
    assert!(matches!(&actions[0], Action::Emit { event_type, data }
        if event_type == "refund_alert" && json(data)["payment_id"] == "pay_9"));
    assert!(
        matches!(&actions[1], Action::Forward { url, .. } if url == "http://127.0.0.1:9/slack")
    );
    let none = plugin.run(&event("payment_created", json!({"data": {}})), 1, &cfg);
    assert_eq!(none.unwrap(), vec![]);
    let bad = plugin.run(&event("payment_refunded", json!(1)), 1, &cfg);
    assert!(bad.unwrap().is_empty());
}

#[test]
fn second_load_of_the_same_bytes_hits_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let options = EngineOptions {
        limits: limits(),
        max_concurrency: 2,
        cache_dir: Some(dir.path().to_path_buf()),
        ..EngineOptions::default()
    };
    let engine = PluginEngine::new(options.clone()).unwrap();
    let first = load(&engine, &fixture("trivial"));
    let cmd = load(&engine, &fixture("cmd_emit"));
    assert_eq!(engine.compile_count(), 2);
    assert!(cache_entry_path(&engine, dir.path(), &first).is_file());
    assert!(cache_entry_path(&engine, dir.path(), &cmd).is_file());

    let again = load(&engine, &fixture("trivial"));
    assert_eq!(engine.compile_count(), 2, "the second load compiled");
    assert_eq!(again.version(), first.version());

    // A restart (a new engine on the same folder) compiles nothing either.
    let restarted = PluginEngine::new(options).unwrap();
    let plugin = load(&restarted, &fixture("trivial"));
    load(&restarted, &fixture("cmd_emit"));
    assert_eq!(restarted.compile_count(), 0);
    assert_eq!(
        plugin.run(&event("x", json!({})), 1, &config(&[])).unwrap(),
        vec![]
    );
}

#[test]
fn files_that_are_not_plugins_are_rejected_clearly() {
    let engine = engine();
    let text = engine.load("notes", b"hello, I am not wasm").unwrap_err();
    assert!(matches!(text, PluginError::Invalid { .. }), "{text}");
    assert!(text.to_string().contains("plugin notes"), "{text}");
    assert!(
        text.to_string().contains("not a WebAssembly binary"),
        "{text}"
    );

    let bytes = std::fs::read(fixture("trivial")).unwrap();
    let truncated = engine.load("cut", &bytes[..bytes.len() / 2]).unwrap_err();
    assert!(
        matches!(truncated, PluginError::Invalid { .. }),
        "{truncated}"
    );

    for name in [
        "comp_no_export",
        "comp_wrong_type",
        "cmd_no_start",
        "cmd_bad_import",
    ] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        let err = engine.load(name, &bytes).unwrap_err();
        assert!(matches!(err, PluginError::Invalid { .. }), "{name}: {err}");
        assert!(err.is_unavailable());
        assert!(
            err.to_string()
                .starts_with(&format!("plugin {name} is invalid: ")),
            "{err}"
        );
    }
}

#[test]
fn registry_loads_a_folder_and_never_lets_a_broken_file_replace_a_good_one() {
    let dir = tempfile::tempdir().unwrap();
    let copy = |from: &std::path::Path, to: &str| std::fs::copy(from, dir.path().join(to)).unwrap();
    copy(&fixture("trivial"), "trivial.wasm");
    copy(&fixture("cmd_emit"), "emit.wasm");
    copy(&fixture("cmd_emit"), ".hidden.wasm");
    copy(&fixture("cmd_emit"), "emit.wasm.tmp");
    std::fs::write(dir.path().join("broken.wasm"), b"garbage").unwrap();
    std::fs::create_dir(dir.path().join("sub.wasm")).unwrap();

    let registry = PluginRegistry::new(engine());
    let set = registry.load_dir(dir.path()).unwrap();
    let names: Vec<_> = set.plugins().map(|p| p.name().to_string()).collect();
    assert_eq!(names, ["emit", "trivial"]);
    let errors: Vec<_> = set.errors().map(|(n, _)| n.to_string()).collect();
    assert_eq!(errors, ["broken"]);
    assert!(matches!(
        registry.require("broken"),
        Err(PluginError::Invalid { .. })
    ));
    assert!(matches!(
        registry.require("absent"),
        Err(PluginError::NotFound { .. })
    ));

    // A bad new version of `trivial` keeps the old one serving.
    let good = registry.get("trivial").unwrap();
    let path = dir.path().join("trivial.wasm");
    std::fs::write(&path, b"\0asm\x0d\0\x01\0truncated").unwrap();
    assert!(registry.load_file(&path).is_err());
    assert_eq!(registry.get("trivial").unwrap().version(), good.version());
    assert_eq!(registry.snapshot().errors().count(), 2);

    // Replacing with a working file swaps the entry and clears its error.
    std::fs::copy(fixture("cmd_emit"), &path).unwrap();
    let replaced = registry.load_file(&path).unwrap();
    assert_eq!(replaced.kind(), PluginKind::Command);
    assert_eq!(registry.snapshot().errors().count(), 1);

    // A removed plugin takes no new work, but a delivery holding it finishes.
    let held = registry.get("emit").unwrap();
    registry.remove("emit");
    assert!(registry.get("emit").is_none());
    assert_eq!(
        held.run(&event("x", json!({})), 1, &config(&[]))
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn many_threads_share_a_small_pool() {
    let engine = PluginEngine::new(EngineOptions {
        limits: limits(),
        max_concurrency: 2,
        ..EngineOptions::default()
    })
    .unwrap();
    let plugin = load(&engine, &fixture("hostile"));
    std::thread::scope(|s| {
        for _ in 0..6 {
            s.spawn(|| {
                for _ in 0..5 {
                    let actions = plugin
                        .run(&event("x", json!({"do": "echo"})), 1, &config(&[]))
                        .unwrap();
                    assert_eq!(actions.len(), 1);
                }
            });
        }
    });
}
