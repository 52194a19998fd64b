//! Operator experience: `/metrics` counters equal a scripted run (parsed with a
//! Prometheus text parser), one event id followed through the JSON logs from
//! ingress to forward, the admin bearer token, and `hookrouter send` accepted by
//! every verification scheme.

mod common;

use std::collections::HashMap;

use common::*;
use serde_json::{Value, json};

const SECRET: &str = "operator-secret";

fn sign(body: &[u8]) -> String {
    openssl_hmac_hex(SECRET, body)
}

fn post_optum(r: &Router, event_type: &str, causation: &str, good_signature: bool) -> u16 {
    let body = serde_json::to_vec(&json!({
        "id": "PAY-1", "source": "optum-connections", "specVersion": "1.0",
        "type": event_type, "causationId": causation, "data": { "amount": 10 }
    }))
    .unwrap();
    let sig = if good_signature {
        sign(&body)
    } else {
        sign(b"something else")
    };
    client()
        .post(r.webhook("optum"))
        .header("X-Optum-Webhook-Callback-Hmac-Signature", sig)
        .body(body)
        .send()
        .unwrap()
        .status()
        .as_u16()
}

/// Sum of the samples of `name` whose labels include all of `want`.
fn sum(scrape: &prometheus_parse::Scrape, name: &str, want: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| want.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(ref h) => {
                h.iter().map(|b| b.count).fold(0.0, f64::max)
            }
            _ => 0.0,
        })
        .sum()
}

#[test]
fn metrics_counters_equal_a_scripted_run() {
    let dir = tempfile::tempdir().unwrap();
    install_plugin(dir.path(), &fixture("trivial"), "fine");
    install_plugin(dir.path(), &fixture("relay"), "doomed");
    let cfg = r#"version = 1
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[plugins]
max_attempts = 1

[[sources]]
name = "optum"
preset = "optum"

[[routes]]
events = ["payment_ok"]
plugins = ["fine"]

[[routes]]
events = ["payment_doomed"]
plugins = ["doomed"]

[plugin.doomed]
config = { fail = "always" }
"#;
    let r = Router::start(dir.path(), cfg, &[("OPTUM_WEBHOOK_SECRET", SECRET)]);
    // 10 accepted (7 fine, 3 doomed), 2 bad signatures, 1 duplicate.
    for i in 0..7 {
        assert_eq!(post_optum(&r, "payment_ok", &format!("ok-{i}"), true), 202);
    }
    for i in 0..3 {
        assert_eq!(
            post_optum(&r, "payment_doomed", &format!("doomed-{i}"), true),
            202
        );
    }
    assert_eq!(post_optum(&r, "payment_ok", "bad-1", false), 401);
    assert_eq!(post_optum(&r, "payment_ok", "bad-2", false), 401);
    assert_eq!(post_optum(&r, "payment_ok", "ok-0", true), 200);
    wait_settled(&r, 20);

    let text = client()
        .get(format!("{}/metrics", r.admin))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("valid Prometheus text");
    let optum = ("source", "optum");
    assert_eq!(
        sum(
            &scrape,
            "hookrouter_events_received_total",
            &[optum, ("status", "202")]
        ),
        10.0,
        "{text}"
    );
    assert_eq!(
        sum(
            &scrape,
            "hookrouter_events_received_total",
            &[optum, ("type", "payment_doomed"), ("status", "202")]
        ),
        3.0
    );
    assert_eq!(
        sum(
            &scrape,
            "hookrouter_events_received_total",
            &[optum, ("status", "200")]
        ),
        1.0
    );
    assert_eq!(
        sum(
            &scrape,
            "hookrouter_events_rejected_total",
            &[optum, ("reason", "signature")]
        ),
        2.0
    );
    assert_eq!(
        sum(&scrape, "hookrouter_events_duplicate_total", &[optum]),
        1.0
    );
    assert_eq!(
        sum(
            &scrape,
            "hookrouter_dead_letters_total",
            &[("kind", "delivery")]
        ),
        3.0
    );
    assert_eq!(
        sum(
            &scrape,
            "hookrouter_plugin_invocations_total",
            &[("plugin", "fine"), ("outcome", "ok")]
        ),
        7.0
    );
    assert_eq!(
        sum(
            &scrape,
            "hookrouter_plugin_invocations_total",
            &[("plugin", "doomed"), ("outcome", "guest")]
        ),
        3.0
    );
    assert_eq!(
        sum(
            &scrape,
            "hookrouter_plugin_duration_seconds_count",
            &[("plugin", "fine")]
        ),
        7.0
    );
    assert_eq!(
        sum(&scrape, "hookrouter_retries_total", &[]),
        0.0,
        "max_attempts = 1: no retries"
    );
    assert!(sum(&scrape, "hookrouter_store_batch_size_count", &[]) >= 1.0);

    // The admin API's per-plugin counts agree.
    let plugins: Value = r.admin_json("/admin/plugins");
    let by_name: HashMap<&str, &Value> = plugins["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p))
        .collect();
    assert_eq!(by_name["fine"]["stats"]["invocations_ok"], 7);
    assert_eq!(by_name["doomed"]["stats"]["invocations_failed"], 3);
    assert_eq!(by_name["fine"]["abi"], "component");
    assert!(by_name["fine"]["stats"]["loaded_at"].is_string());
}

#[test]
fn one_event_id_is_followed_through_json_logs_from_ingress_to_forward() {
    let sink = Sink::start();
    let dir = tempfile::tempdir().unwrap();
    install_plugin(dir.path(), &fixture("relay"), "fwd");
    let cfg = format!(
        r#"version = 1
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[[sources]]
name = "test"
type_from = "/type"
verify = {{ scheme = "none" }}

[[routes]]
events = ["*"]
plugins = ["fwd"]
{}"#,
        sink.relay_config("fwd", "/logs")
    );
    std::fs::write(dir.path().join("router.toml"), cfg).unwrap();
    let r = Router::start_with_args(dir.path(), &[], &["--log-format", "json"]);
    let resp: Value = client()
        .post(r.webhook("test"))
        .json(&json!({"type": "traced"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let id = resp["id"].as_str().unwrap().to_string();
    wait_for(20, "the forward", || sink.on("/logs").into_iter().next());
    wait_for(10, "the forward's log line", || {
        r.log().contains("forward delivered").then_some(())
    });

    let mut messages = Vec::new();
    for line in r.log().lines().filter(|l| l.contains(&id)) {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        messages.push(v["fields"]["message"].as_str().unwrap_or("").to_string());
    }
    for want in ["event stored", "delivery done", "forward delivered"] {
        assert!(
            messages.iter().any(|m| m == want),
            "no {want:?} line for {id}: {messages:?}"
        );
    }
    // The plugin's own log lines carry the event id too (the component's `log` import).
    let all = r.log();
    assert!(
        all.lines()
            .any(|l| l.contains(&id) && l.contains("\"plugin\"")),
        "{all}"
    );
}

#[test]
fn admin_token_guards_the_admin_api() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n[admin]\ntoken_env = \"HOOKROUTER_ADMIN_TOKEN\"\n";
    let r = Router::start(dir.path(), cfg, &[("HOOKROUTER_ADMIN_TOKEN", "s3cret")]);
    let c = client();
    let get = |path: &str, token: Option<&str>| {
        let mut req = c.get(format!("{}{path}", r.admin));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().unwrap().status().as_u16()
    };
    assert_eq!(get("/admin/plugins", None), 401);
    assert_eq!(get("/admin/plugins", Some("wrong")), 401);
    assert_eq!(get("/admin/plugins", Some("s3cret")), 200);
    assert_eq!(get("/metrics", None), 401);
    assert_eq!(get("/metrics", Some("s3cret")), 200);
    assert_eq!(get("/healthz", None), 200, "health stays open for probes");
    assert_eq!(get("/readyz", None), 200);
    // Bad requests get 4xx JSON errors.
    for (path, status) in [
        ("/admin/events/nope", 400),
        ("/admin/events/0192f0c4-7b1a-7c3e-9a5d-3f2b1c0d4e5f", 404),
        ("/admin/events?status=sleeping", 400),
        ("/admin/events?limit=0", 400),
        ("/admin/dead/o-0", 400),
    ] {
        let resp = c
            .get(format!("{}{path}", r.admin))
            .bearer_auth("s3cret")
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), status, "{path}");
        assert!(resp.json::<Value>().unwrap()["error"].is_string(), "{path}");
    }
    let resp = c
        .post(format!("{}/admin/dead/x-1/replay", r.admin))
        .bearer_auth("s3cret")
        .header("content-type", "application/json")
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
}

#[test]
fn send_is_accepted_by_every_scheme() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = r#"version = 1
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[[sources]]
name = "optum"
preset = "optum"

[[sources]]
name = "github"
preset = "github"

[[sources]]
name = "stripe"
preset = "stripe"

[[sources]]
name = "sw"
preset = "standard-webhooks"

[[sources]]
name = "ce"
preset = "cloudevents"

[[sources]]
name = "custom"
type_from = "header:X-Event-Kind"
verify = { scheme = "hmac-sha256", header = "X-Custom-Sig", secret_env = ["OLD_SECRET", "NEW_SECRET"] }
"#;
    let env = [
        ("OPTUM_WEBHOOK_SECRET", "a"),
        ("GITHUB_WEBHOOK_SECRET", "b"),
        ("STRIPE_WEBHOOK_SECRET", "whsec_c"),
        (
            "SW_WEBHOOK_SECRET",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ),
        ("OLD_SECRET", "old"),
        ("NEW_SECRET", "new"),
    ];
    let r = Router::start(dir.path(), cfg, &env);
    let payload = repo().join("samples/optum/payment_loading_requested.json");
    let data = dir.path().join("payload.json");
    std::fs::write(&data, r#"{"amount": 12.5, "note": "from send"}"#).unwrap();
    for (source, event_type, file) in [
        ("optum", "payment_loading_requested", &data),
        ("optum", "payment_loading_requested", &payload), // a whole envelope goes as it is
        ("github", "push", &data),
        ("stripe", "invoice.paid", &data),
        ("sw", "user.created", &data),
        ("ce", "com.example.created", &data),
        ("custom", "thing.happened", &data),
    ] {
        let mut cmd = std::process::Command::new(BIN);
        cmd.args(["send", source, "--type", event_type, "--data"])
            .arg(file)
            .arg("--url")
            .arg(r.webhook(source))
            .arg("--config")
            .arg(dir.path().join("router.toml"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.starts_with("202 "),
            "{source}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let id = serde_json::from_str::<Value>(&stdout[4..]).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let stored = r.event(&id).unwrap();
        assert_eq!(stored["type"], event_type, "{source}");
    }
    // The whole-envelope sample kept its own causationId (dedupe key).
    let kept = r
        .events("source=optum")
        .into_iter()
        .filter(|e| e["external_id"] == "5e9a1f3b-8c2d-4d7e-a6b0-1c3e5f7a9b2d")
        .count();
    assert_eq!(kept, 1);

    let help = std::process::Command::new(BIN)
        .args(["send", "--help"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&help.stdout)
            .contains("hookrouter send optum --type payment_loading_requested")
    );
}

#[test]
fn send_and_dead_refuse_bad_input_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("router.toml"),
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
         [[sources]]\nname = \"optum\"\npreset = \"optum\"\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("broken.json"), "{not json").unwrap();
    let run = |args: &[&str], secret: bool| {
        let mut cmd = std::process::Command::new(BIN);
        cmd.args(args)
            .arg("--config")
            .arg(dir.path().join("router.toml"))
            .current_dir(dir.path());
        if secret {
            cmd.env("OPTUM_WEBHOOK_SECRET", "s");
        } else {
            cmd.env_remove("OPTUM_WEBHOOK_SECRET");
        }
        let out = cmd.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let url = ["--url", "http://127.0.0.1:9/webhooks/optum"];
    let cases: [(Vec<&str>, bool, &str); 4] = [
        (
            [
                &["send", "optm", "--type", "t", "--data", "broken.json"][..],
                &url,
            ]
            .concat(),
            true,
            "no source named \"optm\"",
        ),
        (
            [
                &["send", "optum", "--type", "t", "--data", "broken.json"][..],
                &url,
            ]
            .concat(),
            true,
            "broken.json: not valid JSON",
        ),
        (
            [
                &["send", "optum", "--type", "t", "--data", "missing.json"][..],
                &url,
            ]
            .concat(),
            true,
            "cannot read missing.json",
        ),
        (
            [
                &["send", "optum", "--type", "t", "--data", "broken.json"][..],
                &url,
            ]
            .concat(),
            false,
            "OPTUM_WEBHOOK_SECRET is not set",
        ),
    ];
    for (args, secret, expected) in cases {
        let (ok, stderr) = run(&args, secret);
        assert!(!ok, "{args:?} succeeded");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    // `dead` on a store that does not exist yet, and on an unknown id.
    let (ok, stderr) = run(&["dead", "list"], true);
    assert!(!ok && stderr.contains("does not exist"), "{stderr}");
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    drop(hookrouter_store(dir.path()));
    let (ok, stderr) = run(&["dead", "show", "d-42"], true);
    assert!(!ok && stderr.contains("no dead entry \"d-42\""), "{stderr}");
    let (ok, stderr) = run(&["dead", "replay"], true);
    assert!(!ok && stderr.contains("--all"), "{stderr}");
}

/// Creates an empty, migrated store the way the router would.
fn hookrouter_store(dir: &std::path::Path) -> hookrouter::store::sqlite::SqliteStore {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let _guard = rt.enter();
    hookrouter::store::sqlite::SqliteStore::open(&dir.join("data/hookrouter.db"), 10).unwrap()
}
