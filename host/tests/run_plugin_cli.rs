//! `hookrouter run-plugin` through the real binary, with a command-module plugin
//! assembled from WAT here (the component ABI is covered in `tests/tests/runtime*.rs`).

use std::path::Path;
use std::process::Command;

/// A command plugin that prints one fixed emit line.
const EMIT: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "{\"action\":\"emit\",\"type\":\"cli_ok\",\"data\":{\"n\":1}}\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 49))
    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;

fn hookrouter(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hookrouter"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the binary runs")
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn run_plugin_prints_actions_as_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = write(dir.path(), "emitter.wasm", &wat::parse_str(EMIT).unwrap());
    let event = write(
        dir.path(),
        "event.json",
        br#"{"id":"b1","type":"batch_created","causationId":"c1","data":{}}"#,
    );
    let out = hookrouter(&["run-plugin", &plugin, "--event", &event, "--set", "a=b"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let line: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(
        line,
        serde_json::json!({"action": "emit", "type": "cli_ok", "data": {"n": 1}})
    );
}

#[test]
fn run_plugin_fails_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let event = write(dir.path(), "event.json", b"{}");
    let not_wasm = write(dir.path(), "notes.wasm", b"hello");
    let out = hookrouter(&["run-plugin", &not_wasm, "--event", &event]);
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("plugin notes is invalid: not a WebAssembly binary"),
        "{stderr}"
    );

    let plugin = write(dir.path(), "emitter.wasm", &wat::parse_str(EMIT).unwrap());
    let bad_event = write(dir.path(), "bad.json", b"{oops");
    let out = hookrouter(&["run-plugin", &plugin, "--event", &bad_event]);
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("bad.json is not JSON"), "{stderr}");

    let out = hookrouter(&["run-plugin", &plugin, "--event", &event, "--set", "novalue"]);
    assert!(!out.status.success());
}

/// The sleeping command fixture: `poll_oneoff` on a 60 s timer.
fn sleeper(dir: &Path) -> String {
    let wat = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/wat/cmd_sleep.wat");
    write(dir, "sleepy.wasm", &wat::parse_file(wat).unwrap())
}

/// Runs `args`, checks it failed as a timeout of `ms` within a generous margin.
fn times_out_after(args: &[&str], ms: u64) {
    let started = std::time::Instant::now();
    let out = hookrouter(args);
    let took = started.elapsed();
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains(&format!("plugin sleepy timed out after {ms} ms")),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        took >= std::time::Duration::from_millis(ms) && took.as_millis() < u128::from(ms) + 3000,
        "a {ms} ms deadline took {took:?}"
    );
}

#[test]
fn run_plugin_enforces_the_deadline_from_the_flag_the_config_or_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = sleeper(dir.path());
    let event = write(dir.path(), "event.json", b"{}");
    // Neither flag nor config: 1000 ms, as `serve` by default.
    times_out_after(&["run-plugin", &plugin, "--event", &event], 1000);
    times_out_after(
        &[
            "run-plugin",
            &plugin,
            "--event",
            &event,
            "--timeout-ms",
            "200",
        ],
        200,
    );
    let config = write(
        dir.path(),
        "router.toml",
        b"[plugins]\ntimeout_ms = 300\n\n[plugin.other]\ntimeout_ms = 5000\n",
    );
    times_out_after(
        &[
            "run-plugin",
            &plugin,
            "--event",
            &event,
            "--config",
            &config,
        ],
        300,
    );
    // The plugin's own timeout_ms wins over [plugins]; the flag over both.
    let config = write(
        dir.path(),
        "router.toml",
        b"[plugins]\ntimeout_ms = 300\n\n[plugin.sleepy]\ntimeout_ms = 400\n",
    );
    times_out_after(
        &[
            "run-plugin",
            &plugin,
            "--event",
            &event,
            "--config",
            &config,
        ],
        400,
    );
    times_out_after(
        &[
            "run-plugin",
            &plugin,
            "--event",
            &event,
            "--config",
            &config,
            "--timeout-ms",
            "150",
        ],
        150,
    );
    // Bad values fail with one clear line.
    let out = hookrouter(&[
        "run-plugin",
        &plugin,
        "--event",
        &event,
        "--timeout-ms",
        "0",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("--timeout-ms"), "{stderr}");
    let bad = write(dir.path(), "bad.toml", b"[plugin.sleepy]\ntimeout_ms = 0\n");
    let out = hookrouter(&["run-plugin", &plugin, "--event", &event, "--config", &bad]);
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("plugin.sleepy.timeout_ms: 0 is out of range"),
        "{stderr}"
    );
}

#[test]
fn run_plugin_refuses_a_file_over_max_plugin_bytes_unread() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("huge.wasm");
    std::fs::File::create(&plugin)
        .unwrap()
        .set_len(65 << 20)
        .unwrap();
    let event = write(dir.path(), "event.json", b"{}");
    let out = hookrouter(&["run-plugin", plugin.to_str().unwrap(), "--event", &event]);
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("more than plugins.max_plugin_bytes (67108864); it was not read"),
        "{stderr}"
    );
}
