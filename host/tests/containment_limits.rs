//! Containment limits under `serve`, with the real binary: the emit budget of one
//! run (count and size), plugin files too large to read, a slow compile beside
//! other reloads, a compile cache others can write, and plugin output that tries
//! to forge the router's log.

mod common;
mod containment_support;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::*;
use containment_support::*;
use serde_json::{Value, json};

fn config(extra: &str) -> String {
    format!(
        r#"version = 1
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[plugins]
dir = "plugins"
max_attempts = 3
retry_base_ms = 50

[[sources]]
name = "test"
type_from = "/type"
verify = {{ scheme = "none" }}
{extra}"#
    )
}

fn post(r: &Router, body: Value) -> String {
    let resp = client().post(r.webhook("test")).json(&body).send().unwrap();
    assert_eq!(resp.status().as_u16(), 202, "{body}");
    resp.json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn a_run_over_its_emit_budget_is_dead_at_once_without_effects() {
    let _serial = one_at_a_time();
    let sink = Sink::start();
    let dir = tempfile::tempdir().unwrap();
    install_plugin(dir.path(), &fixture("hostile"), "bomb");
    install_plugin(dir.path(), &fixture("relay"), "good");
    let cfg = config(&format!(
        r#"
[[routes]]
events = ["bomb", "big"]
plugins = ["bomb", "good"]
{}"#,
        sink.relay_config("good", "/good")
    ));
    let r = Router::start(dir.path(), &cfg, &[]);
    // 50 emits of its own type per run, routed back to itself: a chain of 50^8
    // events without the budget. And one emit of 2 MiB, over max_body_bytes.
    let bomb = post(&r, json!({ "type": "bomb", "do": "bomb" }));
    let big = post(&r, json!({ "type": "big", "do": "big_emit" }));
    wait_settled(&r, 30);
    let dead = |event: &str| -> (String, i64, String) {
        let d = delivery(&r, event, "bomb");
        (
            d["state"].as_str().unwrap().to_string(),
            d["attempts"].as_i64().unwrap(),
            d["last_error"].as_str().unwrap_or("").to_string(),
        )
    };
    let (state, attempts, error) = dead(&bomb);
    assert_eq!((state.as_str(), attempts), ("dead", 1), "{error}");
    assert!(
        error.contains("exceeded its emit budget")
            && error.contains("50 emits in one run, more than plugins.max_emits_per_run (20)")
            && error.contains("not retried"),
        "{error}"
    );
    let (state, attempts, error) = dead(&big);
    assert_eq!((state.as_str(), attempts), ("dead", 1), "{error}");
    assert!(
        error.contains("more than server.max_body_bytes (1048576)"),
        "{error}"
    );
    // No effects: nothing was emitted. The normal plugin on the same events ran.
    assert_eq!(
        r.counts()["events"],
        2,
        "only the two ingested events exist"
    );
    wait_for(10, "the good plugin's forwards", || {
        (sink.on("/good").len() == 2).then_some(())
    });
    let m = metrics(&r);
    assert_eq!(
        sample(&m, "hookrouter_dead_letters_total{kind=\"emit_budget\"}"),
        Some(2.0),
        "{m}"
    );
    let db_bytes = std::fs::metadata(dir.path().join("data/hookrouter.db"))
        .unwrap()
        .len();
    assert!(db_bytes < 4 << 20, "the store grew to {db_bytes} bytes");
}

#[test]
fn an_emit_bomb_ends_within_the_budget_of_its_root_event() {
    let _serial = one_at_a_time();
    let sink = Sink::start();
    let dir = tempfile::tempdir().unwrap();
    install_plugin(dir.path(), &fixture("hostile"), "bomb");
    install_plugin(dir.path(), &fixture("relay"), "good");
    // Each run may emit its 50 (max_emits_per_run = 50), so only the budget of
    // the root event (max_emits_per_event = 100, over every hop) stops the chain.
    let cfg = config(&format!(
        r#"
[[routes]]
events = ["bomb"]
plugins = ["bomb"]

[[routes]]
events = ["work"]
plugins = ["good"]
{}"#,
        sink.relay_config("good", "/good")
    ))
    .replace(
        "retry_base_ms = 50",
        "retry_base_ms = 50\nmax_emits_per_run = 50\nmax_emits_per_event = 100",
    );
    let r = Router::start(dir.path(), &cfg, &[]);
    let started = Instant::now();
    post(&r, json!({ "type": "bomb", "do": "bomb" }));
    // A normal plugin keeps flowing meanwhile.
    for i in 0..20 {
        post(&r, json!({ "type": "work", "n": i }));
    }
    wait_settled(&r, 60);
    let took = started.elapsed();
    let events = r.events("type=bomb");
    let descendants = events.len() - 1;
    assert!(
        descendants <= 100,
        "{descendants} descendants, more than max_emits_per_event"
    );
    assert_eq!(descendants, 100, "the budget is used up, not stopped short");
    // The runs that crossed the budget are dead, each after one attempt, with a
    // clear error; the others are done.
    let mut dead = 0;
    for e in &events {
        let d = delivery(&r, e["id"].as_str().unwrap(), "bomb");
        match d["state"].as_str().unwrap() {
            "dead" => {
                dead += 1;
                let error = d["last_error"].as_str().unwrap();
                assert_eq!(d["attempts"], 1, "{error}");
                assert!(
                    error.contains("emit_budget") && error.contains("max_emits_per_event"),
                    "{error}"
                );
                assert_eq!(d["history"][0]["outcome"], "emit_budget");
            }
            "done" => {}
            other => panic!("{other}: {d}"),
        }
    }
    assert_eq!(dead, 99, "every run after the budget was spent failed");
    wait_for(10, "the normal plugin's forwards", || {
        (sink.on("/good").len() == 20).then_some(())
    });
    let m = metrics(&r);
    assert_eq!(
        sample(&m, "hookrouter_dead_letters_total{kind=\"emit_budget\"}"),
        Some(99.0),
        "{m}"
    );
    let bytes: u64 = ["hookrouter.db", "hookrouter.db-wal"]
        .iter()
        .map(|f| std::fs::metadata(dir.path().join("data").join(f)).map_or(0, |m| m.len()))
        .sum();
    assert!(bytes < 8 << 20, "the store grew to {bytes} bytes");
    println!(
        "emit bomb: {descendants} descendants, {dead} runs dead, settled in {took:?}, store {bytes} bytes"
    );
}

#[test]
fn a_file_over_max_plugin_bytes_is_refused_unread_and_a_slow_compile_delays_no_other_reload() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    install_plugin(dir.path(), &fixture("relay"), "steady");
    let cfg =
        config("\n[[routes]]\nevents = [\"*\"]\nplugins = [\"steady\", \"quick\", \"big\"]\n");
    let r = Router::start(dir.path(), &cfg, &[]);

    // 65 MiB (sparse: nothing to read in any case) is over the 64 MiB default.
    let huge = dir.path().join("plugins/.huge.tmp");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(65 << 20)
        .unwrap();
    std::fs::rename(&huge, dir.path().join("plugins/huge.wasm")).unwrap();
    let entry = wait_for(10, "huge.wasm to be refused", || plugin_entry(&r, "huge"));
    let error = entry["last_error"].as_str().unwrap();
    assert!(
        error.contains("68157440 bytes, more than plugins.max_plugin_bytes (67108864)")
            && error.contains("it was not read"),
        "{entry}"
    );
    assert_eq!(entry["loaded"], false);

    // A module that takes seconds to compile, then a small plugin and a config
    // edit while it compiles: both apply long before it is loaded.
    let big = big_module(1000);
    let started = Instant::now();
    install_bytes(dir.path(), "big", &big);
    std::thread::sleep(Duration::from_millis(300));
    install_bytes(dir.path(), "quick", &wat_fixture("cmd_emit"));
    let edited = cfg.replace("retry_base_ms = 50", "retry_base_ms = 60");
    std::fs::write(dir.path().join("router.toml"), &edited).unwrap();
    let quick = within(Duration::from_secs(60), || {
        plugin_entry(&r, "quick").is_some_and(|p| p["loaded"] == true)
    })
    .expect("quick never loaded");
    let big_loaded_then = plugin_entry(&r, "big").is_some_and(|p| p["loaded"] == true);
    let config_then = r.log().contains("config reloaded");
    let big_took = within(Duration::from_secs(180), || {
        plugin_entry(&r, "big").is_some_and(|p| p["loaded"] == true)
    })
    .map(|_| started.elapsed())
    .expect("big never loaded");
    assert!(
        !big_loaded_then && config_then,
        "quick loaded after {quick:?}, big after {big_took:?}; config reloaded by then: {config_then}"
    );
    assert!(
        quick < Duration::from_secs(3),
        "quick took {quick:?} to load beside a compile of {big_took:?}"
    );
    // The steady plugin served throughout.
    let id = post(&r, json!({ "type": "after" }));
    wait_for(10, "steady to serve", || {
        (delivery(&r, &id, "steady")["state"] == "done").then_some(())
    });
}

#[test]
fn a_cache_folder_others_can_write_is_refused_with_a_warning() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    install_plugin(dir.path(), &fixture("relay"), "p");
    let cfg = config("\n[[routes]]\nevents = [\"*\"]\nplugins = [\"p\"]\n");
    let mut r = Router::start(dir.path(), &cfg, &[]);
    let cache = dir.path().join("data/plugin-cache");
    let mode = std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the cache folder is created 0700");
    let compiled = |dir: &std::path::Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "cwasm")
            })
            .count()
    };
    assert_eq!(compiled(&cache), 1, "one compiled plugin in the cache");
    assert!(r.terminate().success());

    // Trusted: a restart loads from the cache, no compile.
    std::fs::write(dir.path().join("router.log"), "").unwrap();
    let mut r2 = Router::start_existing(dir.path(), &[]);
    assert!(
        !r2.log().contains("compiling a plugin not in the cache"),
        "{}",
        r2.log()
    );
    assert!(r2.terminate().success());

    // World-writable: refused with a warning, the plugin compiled and serving.
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::write(dir.path().join("router.log"), "").unwrap();
    r = Router::start_existing(dir.path(), &[]);
    let log = r.log();
    assert!(
        log.contains("plugin cache folder refused")
            && log.contains("writable by its group or by others (mode 777)")
            && log.contains("compiling a plugin not in the cache"),
        "{log}"
    );
    let id = post(&r, json!({ "type": "x" }));
    wait_for(10, "the plugin to serve", || {
        (delivery(&r, &id, "p")["state"] == "done").then_some(())
    });
    let history = std::fs::read_to_string(cache.join("versions")).unwrap();
    assert_eq!(
        compiled(&cache),
        1,
        "nothing was written into the refused folder"
    );
    assert_eq!(history.lines().count(), 1, "{history}");
}

#[test]
fn plugin_output_cannot_forge_log_lines_and_is_capped_per_run() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    install_plugin(dir.path(), &fixture("hostile"), "forger");
    install_bytes(dir.path(), "cmd_forger", &wat_fixture("cmd_forge"));
    let cfg = config(
        "\n[[routes]]\nevents = [\"forge\"]\nplugins = [\"forger\", \"cmd_forger\"]\n\n[[routes]]\nevents = [\"chatty\"]\nplugins = [\"forger\"]\n",
    );
    let r = Router::start(dir.path(), &cfg, &[]);
    let forge = post(&r, json!({ "type": "forge", "do": "forge" }));
    let chatty = post(&r, json!({ "type": "chatty", "do": "chatty" }));
    wait_settled(&r, 30);
    for id in [&forge, &chatty] {
        assert_eq!(delivery(&r, id, "forger")["state"], "done");
    }
    let log = r.log();
    // Nothing the plugins wrote starts a line, and no escape reaches the file.
    assert!(
        !log.lines().any(|l| l.starts_with("2030-01-01")),
        "a forged line:\n{log}"
    );
    assert!(
        !log.contains('\u{1b}') && !log.contains('\r'),
        "a raw escape or carriage return in the log:\n{log}"
    );
    // Each is one escaped line, tagged with its plugin.
    for (text, plugin) in [
        (
            "stderr says \\u{1b}[2K\\r2030-01-01T00:00:00Z  INFO hookrouter: forged",
            "forger",
        ),
        (
            "log says\\n2030-01-01T00:00:00Z  INFO hookrouter: forged too\\u{1b}[31m",
            "forger",
        ),
        (
            "cmd says \\u{1b}[2K\\r2030-01-01T00:00:00Z  INFO hookrouter: forged",
            "cmd_forger",
        ),
    ] {
        let line = log
            .lines()
            .find(|l| l.contains(text))
            .unwrap_or_else(|| panic!("no line with {text:?} in:\n{log}"));
        assert!(line.contains(&format!("plugin=\"{plugin}\"")), "{line}");
    }
    // 500 stderr lines: the first 100 are logged, then one warning.
    let chatty = log.lines().filter(|l| l.contains("chatty line ")).count();
    assert_eq!(chatty, 100, "stderr lines logged for one run");
    assert!(
        log.contains("plugin wrote more log lines than the cap of 100 per run")
            && log.contains("dropped=400"),
        "{log}"
    );
}
