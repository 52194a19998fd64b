//! Builds every plugin the tests run, from source, in the same `cargo test`:
//! `scripts/build-plugins.sh` (example plugins into `plugins/`, Rust fixtures into
//! the fixtures folder), then the WAT fixtures of `tests/fixtures/wat/` with the
//! `wat` crate. Exports `HOOKROUTER_FIXTURES` and `HOOKROUTER_PLUGINS` to the tests.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root = manifest
        .parent()
        .expect("tests/ is inside the repo")
        .to_path_buf();
    let fixtures = std::env::var_os("HOOKROUTER_FIXTURES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/fixtures"));

    for path in [
        "scripts/build-plugins.sh",
        "plugin-sdk/src",
        "plugin-sdk/wit",
        "plugin-sdk/Cargo.toml",
        "plugins/Cargo.toml",
        "plugins/payment_audit",
        "plugins/batch_notify/batch_notify.c",
        "plugins/refund_alert/app.py",
        "tests/fixtures/Cargo.toml",
        "tests/fixtures/hostile/src",
        "tests/fixtures/trivial/src",
        "tests/fixtures/relay/src",
        "tests/fixtures/sleeper/src",
        "tests/fixtures/sleeper/wit",
        "tests/fixtures/wat",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }
    println!("cargo:rerun-if-env-changed=HOOKROUTER_FIXTURES_DIR");

    let output = Command::new("bash")
        .arg(root.join("scripts/build-plugins.sh"))
        .env("HOOKROUTER_FIXTURES_DIR", &fixtures)
        .output()
        .expect("cannot run bash scripts/build-plugins.sh");
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        panic!("scripts/build-plugins.sh failed:\n{stderr}");
    }

    assemble_wat(&root.join("tests/fixtures/wat"), &fixtures);
    println!("cargo:rustc-env=HOOKROUTER_FIXTURES={}", fixtures.display());
    println!(
        "cargo:rustc-env=HOOKROUTER_PLUGINS={}",
        root.join("plugins").display()
    );
}

fn assemble_wat(dir: &Path, out: &Path) {
    std::fs::create_dir_all(out).expect("cannot create the fixtures folder");
    for entry in std::fs::read_dir(dir).expect("tests/fixtures/wat is readable") {
        let path = entry.expect("readable entry").path();
        if path.extension().is_some_and(|e| e == "wat") {
            let wasm = wat::parse_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let target = out.join(
                path.with_extension("wasm")
                    .file_name()
                    .expect("a file name"),
            );
            if std::fs::read(&target).ok().as_deref() != Some(&wasm[..]) {
                std::fs::write(&target, wasm).expect("cannot write a fixture");
            }
        }
    }
}
