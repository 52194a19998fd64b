//! The dashboard in a real browser: Debian's headless chromium, driven by
//! playwright-core (`host/tests/browser/dashboard.mjs`), against the real
//! router with real plugins. Events good, dead-lettered and duplicate are sent;
//! then the events list shows them and its filters narrow them, the event page
//! shows the attempt timeline and masked headers (and hostile data as text),
//! a replay from the dead-letter page runs the delivery again once the plugin
//! is fixed, the other pages render, and with a token configured the page
//! asks for it once. Screenshots go to `target/screenshots/`.
//!
//! Needs `/usr/bin/chromium` (or `CHROMIUM`), `node`, and `npm ci` run in
//! `host/tests/browser` (`scripts/setup.sh` installs all three); without them
//! the test fails, naming what is missing.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;
use serde_json::{Value, json};

const SECRET: &str = "dashboard-secret";

fn browser_dir() -> PathBuf {
    repo().join("host/tests/browser")
}

fn screenshots() -> PathBuf {
    repo().join("target/screenshots")
}

/// Fails with what to install when a prerequisite is missing.
fn prerequisites() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "chromium not found at {chromium}: install it with `apt-get install chromium` (scripts/setup.sh does)"
    );
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "node not found: install Node.js 20 or later (apt-get install nodejs npm)"
    );
    assert!(
        browser_dir()
            .join("node_modules/playwright-core/package.json")
            .exists(),
        "playwright-core is not installed: run `npm ci` in host/tests/browser (scripts/setup.sh does)"
    );
}

/// Runs one browser step; panics with its message and the router's log on failure.
fn step(r: &Router, name: &str, args: &[&str]) -> Value {
    let out = Command::new("node")
        .arg(browser_dir().join("dashboard.mjs"))
        .arg(name)
        .arg(&r.admin)
        .arg(screenshots())
        .args(args)
        .current_dir(browser_dir())
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser step {name} failed:\n{}{stdout}\n(screenshot: target/screenshots/{name}-failed.png)\nrouter log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        r.log()
    );
    serde_json::from_str(stdout.lines().last().unwrap_or("{}")).unwrap_or(Value::Null)
}

fn config(extra: &str) -> String {
    format!(
        r#"version = 1
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[plugins]
dir = "plugins"
max_attempts = 2
retry_base_ms = 50

[[sources]]
name = "optum"
preset = "optum"

[[sources]]
name = "plain"
type_from = "/type"
verify = {{ scheme = "none" }}

[[routes]]
events = ["payment_*"]
source = "optum"
plugins = ["audit"]

[[routes]]
events = ["batch_created"]
plugins = ["notify"]
{extra}"#
    )
}

fn optum(r: &Router, event_type: &str, causation: &str, memo: &str) -> (u16, String) {
    let body = serde_json::to_vec(&json!({
        "id": "PAY-000193", "source": "optum-connections", "specVersion": "1.0",
        "type": event_type, "causationId": causation,
        "data": { "amount": 12345678901234567890u64, "memo": memo }
    }))
    .unwrap();
    let resp = client()
        .post(r.webhook("optum"))
        .header(
            "X-Optum-Webhook-Callback-Hmac-Signature",
            openssl_hmac_hex(SECRET, &body),
        )
        .header("X-Request-Id", "req-dashboard")
        .body(body)
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    (
        status,
        resp.json::<Value>().unwrap()["id"]
            .as_str()
            .unwrap_or("")
            .into(),
    )
}

fn version_of(r: &Router, plugin: &str) -> Option<String> {
    r.admin_json("/admin/plugins")["plugins"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == plugin)?["version"]
        .as_str()
        .map(str::to_string)
}

#[test]
fn the_dashboard_shows_filters_inspects_and_replays_in_a_real_browser() {
    prerequisites();
    let dir = tempfile::tempdir().unwrap();
    install_plugin(dir.path(), &fixture("trivial"), "audit");
    install_plugin(dir.path(), &fixture("relay"), "notify");
    let extra = "\n[plugin.notify]\nconfig = { fail = \"always\" }\n";
    let r = Router::start(
        dir.path(),
        &config(extra),
        &[("OPTUM_WEBHOOK_SECRET", SECRET)],
    );

    // Good, dead-lettered, duplicate, and one with hostile data.
    let (s, good) = optum(&r, "payment_loading_requested", "c-1", "harbour lunch");
    assert_eq!(s, 202);
    let (_, doomed) = optum(&r, "batch_created", "c-2", "harbour batch");
    assert_eq!(
        optum(&r, "payment_loading_requested", "c-1", "harbour lunch").0,
        200
    );
    let hostile = client()
        .post(r.webhook("plain"))
        .json(&json!({ "type": "note", "html": "<img src=x onerror=\"window.__pwned=true\"><script>window.__pwned=true</script>" }))
        .send()
        .unwrap()
        .json::<Value>()
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_settled(&r, 30);
    let dead_entry = r.deliveries(&doomed)[0]["id"].as_str().unwrap().to_string();
    assert_eq!(r.deliveries(&doomed)[0]["state"], "dead");

    // Events list: three events (the duplicate is not a new one), the dead
    // filter, and a search for a word two of them hold.
    step(&r, "events", &["3", &doomed, "harbour", "2"]);
    let found = step(
        &r,
        "event",
        &[
            &good,
            "x-optum-webhook-callback-hmac-signature",
            "x-request-id",
            "12345678901234567890",
        ],
    );
    assert!(found["attempts"].as_u64().unwrap() >= 1, "{found}");
    step(&r, "hostile", &[&hostile]);

    // Fix the plugin (a working file in its place), then replay from the page.
    let before = version_of(&r, "notify").unwrap();
    install_plugin(dir.path(), &fixture("trivial"), "notify");
    wait_for(30, "the fixed plugin to load", || {
        version_of(&r, "notify").filter(|v| *v != before)
    });
    step(&r, "dead", &[&dead_entry]);
    let d = wait_for(20, "the replayed delivery to finish", || {
        r.deliveries(&doomed)
            .into_iter()
            .find(|d| d["state"] == "done")
    });
    let history = d["history"].as_array().unwrap();
    assert_eq!(history.last().unwrap()["outcome"], "ok", "{d}");
    assert_eq!(
        history.len(),
        3,
        "two failed attempts, then the replay: {d}"
    );

    step(&r, "pages", &["audit"]);
    drop(r);

    // With a token: the page asks once and sends it as a bearer header.
    let dir = tempfile::tempdir().unwrap();
    let token = "\n[admin]\ntoken_env = \"HOOKROUTER_ADMIN_TOKEN\"\n";
    let r = Router::start(
        dir.path(),
        &config(token),
        &[
            ("OPTUM_WEBHOOK_SECRET", SECRET),
            ("HOOKROUTER_ADMIN_TOKEN", "dash-token-1"),
        ],
    );
    optum(&r, "payment_loading_requested", "t-1", "with a token");
    step(&r, "token", &["dash-token-1"]);
    for shot in [
        "events", "event", "dead", "plugins", "routes", "overview", "token",
    ] {
        assert!(
            screenshots().join(format!("{shot}.png")).exists(),
            "no screenshot {shot}.png"
        );
    }
}
