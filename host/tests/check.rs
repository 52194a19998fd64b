//! `hookrouter check`: snapshot tests of broken configs (`tests/ui/invalid/*.toml`
//! beside the one line each must print, `*.err`), and a good config.
//! Set `BLESS=1` to rewrite the `.err` files after reviewing a change.

mod common;

use std::path::Path;
use std::process::Command;

use common::BIN;

fn check(dir: &Path, file: &str) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(["check", "--config", file])
        .current_dir(dir)
        .env_remove("HOOKROUTER_TEST_UNSET_SECRET")
        .env("OPTUM_WEBHOOK_SECRET", "s")
        .env("GITHUB_WEBHOOK_SECRET", "s")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn invalid_configs_print_one_precise_line() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui/invalid");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "snapshot cases missing");
    let mut failures = Vec::new();
    for path in files {
        let name = path.file_name().unwrap().to_str().unwrap();
        let (ok, _stdout, stderr) = check(&dir, name);
        assert!(!ok, "{name}: check passed a broken config");
        assert_eq!(
            stderr.lines().count(),
            1,
            "{name}: expected one line, got:\n{stderr}"
        );
        let expected_path = path.with_extension("err");
        if std::env::var_os("BLESS").is_some() {
            std::fs::write(&expected_path, &stderr).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if stderr != expected {
            failures.push(format!(
                "{name}:\n  expected: {expected}  actual:   {stderr}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn good_config_lists_sources_routes_and_missing_plugins() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("router.toml"),
        r#"
[[sources]]
name = "optum"
preset = "optum"

[[routes]]
events = ["payment_*"]
source = "optum"
plugins = ["payment_audit"]
"#,
    )
    .unwrap();
    let (ok, stdout, stderr) = check(dir.path(), "router.toml");
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.contains("POST /webhooks/optum (preset optum): verify hmac-sha256"),
        "{stdout}"
    );
    assert!(
        stdout.contains("payment_* from optum -> payment_audit"),
        "{stdout}"
    );
    assert!(
        stdout.contains("warning: plugin \"payment_audit\" is routed but"),
        "{stdout}"
    );
}

#[test]
fn broken_plugin_file_fails_check() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("plugins")).unwrap();
    std::fs::write(
        dir.path().join("plugins/broken.wasm"),
        b"\0asm\x01\0\0\0garbage",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("router.toml"),
        "[[routes]]\nevents = [\"*\"]\nplugins = [\"broken\"]\n",
    )
    .unwrap();
    let (ok, _stdout, stderr) = check(dir.path(), "router.toml");
    assert!(!ok);
    assert!(
        stderr.contains("broken.wasm") && stderr.contains("plugin broken is invalid"),
        "{stderr}"
    );
}
