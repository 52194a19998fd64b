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
