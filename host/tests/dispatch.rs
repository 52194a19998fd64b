//! End-to-end dispatch: events through real component plugins (built from
//! source in this run) to forwards that reach an HTTP sink in this process;
//! emit chains and the 8-hop cut; isolation of a failing plugin, dead letters
//! and replay; `allow_forward`; 410; deliveries that wait for a missing plugin.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

fn config(body: &str) -> String {
    format!(
        r#"version = 1
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[plugins]
dir = "plugins"
max_attempts = 3
retry_base_ms = 50

[outbox]
max_attempts = 3
retry_base_ms = 50
timeout_ms = 2000

[[sources]]
name = "test"
type_from = "/type"
id_from = "/id"
verify = {{ scheme = "none" }}
{body}"#
    )
}

fn send(r: &Router, event_type: &str, id: &str) -> String {
    let resp = client()
        .post(r.webhook("test"))
        .json(&json!({ "type": event_type, "id": id, "amount": 5 }))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let v: Value = resp.json().unwrap();
    v["id"].as_str().unwrap().to_string()
}

fn relay() -> std::path::PathBuf {
    fixture("relay")
}

#[test]
fn forward_reaches_sink_and_emits_chain_through_a_second_plugin_until_cut_at_8_hops() {
    let sink = Sink::start();
    let dir = tempfile::tempdir().unwrap();
    for name in ["first", "second", "looper"] {
        install_plugin(dir.path(), &relay(), name);
    }
    let cfg = config(&format!(
        r#"
[[routes]]
events = ["order.created"]
plugins = ["first"]

[[routes]]
events = ["order.audited"]
plugins = ["second"]

[[routes]]
events = ["loop"]
plugins = ["looper"]

[plugin.first]
config = {{ emit_type = "order.audited" }}

{}
[plugin.looper]
config = {{ emit_type = "loop" }}
"#,
        sink.relay_config("second", "/sink")
    ));
    let r = Router::start(dir.path(), &cfg, &[]);

    let id = send(&r, "order.created", "o-1");
    let got = wait_for(20, "the chained forward", || {
        sink.on("/sink").into_iter().next()
    });
    assert_eq!(got.body["type"], "order.audited");
    assert_eq!(
        got.body["data"]["from"],
        id.as_str(),
        "the emitted event names its parent"
    );
    assert!(
        got.headers
            .iter()
            .any(|(k, _)| k == "x-hookrouter-event-id")
    );

    // An emit loop runs 8 hops and is cut: events at hops 0..=8, no more. The run
    // at hop 8, whose emit would be hop 9, fails as emit_budget and is dead at
    // once (one attempt); the ones before it are done.
    send(&r, "loop", "l-1");
    let count = || -> (usize, i64) {
        let events = r.events("type=loop");
        let hops = events.iter().map(|e| e["hops"].as_i64().unwrap()).max();
        (events.len(), hops.unwrap_or(-1))
    };
    wait_for(20, "the loop to reach hop 8", || {
        (count().1 == 8).then_some(())
    });
    wait_for(20, "the last loop delivery to settle", || {
        let open = r.events("type=loop&status=pending");
        open.is_empty().then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(count(), (9, 8), "an emit chain is cut after 8 hops");
    let mut states: Vec<(i64, String, i64, String)> = r
        .events("type=loop")
        .iter()
        .map(|e| {
            let d = r.deliveries(e["id"].as_str().unwrap()).remove(0);
            (
                e["hops"].as_i64().unwrap(),
                d["state"].as_str().unwrap().to_string(),
                d["attempts"].as_i64().unwrap(),
                d["last_error"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    states.sort();
    assert_eq!(states.len(), 9);
    assert!(states[..8].iter().all(|s| s.1 == "done"), "{states:?}");
    let last = &states[8];
    assert_eq!(
        (last.0, last.1.as_str(), last.2),
        (8, "dead", 1),
        "{states:?}"
    );
    assert!(
        last.3.contains("exceeded its emit budget") && last.3.contains("would be hop 9"),
        "{}",
        last.3
    );
    assert_eq!(sink.on("/sink").len(), 1, "the forward was sent once");
    let metrics = client()
        .get(format!("{}/metrics", r.admin))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("hookrouter_dead_letters_total{kind=\"emit_budget\"} 1"),
        "{metrics}"
    );
}

#[test]
fn failing_plugin_is_isolated_dead_lettered_and_replayed_after_a_fix() {
    let sink = Sink::start();
    let dir = tempfile::tempdir().unwrap();
    install_plugin(dir.path(), &relay(), "good");
    install_plugin(dir.path(), &relay(), "bad");
    let routes = |bad_config: &str| {
        config(&format!(
            r#"
[[routes]]
events = ["payment_*"]
plugins = ["good", "bad"]

[plugin.good]
config = {{ forward_url = "{good}" }}
allow_forward = ["127.0.0.1:{port}"]

[plugin.bad]
config = {{ {bad_config} }}
allow_forward = ["127.0.0.1:{port}"]
"#,
            good = sink.url("/good"),
            port = sink.port,
        ))
    };
    let mut r = Router::start(dir.path(), &routes(r#"fail = "always""#), &[]);
    let id = send(&r, "payment_created", "p-1");

    let dead = wait_for(30, "the bad delivery to die", || {
        r.deliveries(&id)
            .into_iter()
            .find(|d| d["plugin"] == "bad" && d["state"] == "dead")
            .map(|d| {
                (
                    d["id"].as_str().unwrap().to_string(),
                    d["attempts"].as_i64().unwrap(),
                    d["last_error"].as_str().unwrap().to_string(),
                )
            })
    });
    assert_eq!(dead.1, 3, "max_attempts attempts before dead");
    assert!(
        dead.2.contains("relay told to fail (attempt 3)"),
        "{}",
        dead.2
    );
    assert_eq!(
        sink.on("/good").len(),
        1,
        "the working plugin delivered once, untouched by the failing one"
    );

    // The dead letter is visible to the CLI and the admin API.
    let (ok, out, err) = cli(dir.path(), &["dead", "list"]);
    assert!(ok, "{err}");
    let dead_id = dead.0.clone();
    assert!(
        out.contains(&dead_id) && out.contains("bad") && out.contains(&id),
        "{out}"
    );
    let (ok, out, _) = cli(dir.path(), &["dead", "show", &dead_id]);
    assert!(
        ok && out.contains("\"attempts\": 3") && out.contains("payment_created"),
        "{out}"
    );
    let admin: Value = r.admin_json("/admin/dead");
    assert_eq!(admin["dead"][0]["id"], dead_id.as_str());
    let ev: Value = r.admin_json(&format!("/admin/events/{id}"));
    let states: Vec<&str> = ev["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["done", "dead"]);

    // Fix the plugin's config, restart, replay: it delivers; the good one does not re-run.
    assert!(r.terminate().success());
    std::fs::write(
        dir.path().join("router.toml"),
        routes(&format!(r#"forward_url = "{}""#, sink.url("/bad"))),
    )
    .unwrap();
    let (ok, out, err) = cli(dir.path(), &["dead", "replay", &dead_id]);
    assert!(ok && out.contains("replayed 1"), "{out}{err}");
    let (ok, _, _) = cli(dir.path(), &["dead", "replay", "d-999999"]);
    assert!(!ok, "replaying an unknown id fails");
    let r = Router::start_existing(dir.path(), &[]);
    let got = wait_for(20, "the replayed delivery", || {
        sink.on("/bad").into_iter().next()
    });
    assert_eq!(got.body["event_id"], id.as_str());
    assert_eq!(
        got.body["attempt"], 1,
        "a replay starts with fresh attempts"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.on("/good").len(), 1);
    let (_, out, _) = cli(dir.path(), &["dead", "list"]);
    assert!(out.contains("no dead entries"), "{out}");
    drop(r);
}

#[test]
fn forwards_outside_allow_forward_are_never_sent_and_410_stops_retries() {
    let sink = Sink::start();
    let dir = tempfile::tempdir().unwrap();
    for name in ["sneaky", "gone", "flaky"] {
        install_plugin(dir.path(), &relay(), name);
    }
    let cfg = config(&format!(
        r#"
[[routes]]
events = ["sneak"]
plugins = ["sneaky"]

[[routes]]
events = ["gone"]
plugins = ["gone"]

[[routes]]
events = ["flaky"]
plugins = ["flaky"]

[plugin.sneaky]
config = {{ forward_url = "{sneak}" }}
allow_forward = ["127.0.0.1:1", "hooks.example.com"]

[plugin.gone]
config = {{ forward_url = "{gone}" }}
allow_forward = ["127.0.0.1"]

[plugin.flaky]
config = {{ forward_url = "{fail}" }}
allow_forward = ["127.0.0.1:{port}"]
"#,
        sneak = sink.url("/sneak"),
        gone = sink.url("/gone"),
        fail = sink.url("/fail"),
        port = sink.port,
    ));
    let r = Router::start(dir.path(), &cfg, &[]);
    send(&r, "sneak", "s-1");
    send(&r, "gone", "g-1");
    send(&r, "flaky", "f-1");
    let outbox = |plugin: &str| -> Option<(String, i64, Option<i64>, String)> {
        r.events("").iter().find_map(|e| {
            let ev = r.event(e["id"].as_str().unwrap())?;
            ev["forwards"]
                .as_array()?
                .iter()
                .find(|f| f["plugin"] == plugin)
                .map(|f| {
                    (
                        f["state"].as_str().unwrap().to_string(),
                        f["attempts"].as_i64().unwrap(),
                        f["status"].as_i64(),
                        f["last_error"].as_str().unwrap_or("").to_string(),
                    )
                })
        })
    };
    let sneaky = wait_for(20, "the refused forward", || {
        outbox("sneaky").filter(|o| o.0 == "dead")
    });
    assert!(sneaky.3.contains("not in allow_forward"), "{sneaky:?}");
    let gone = wait_for(20, "the 410 forward", || {
        outbox("gone").filter(|o| o.0 == "dead")
    });
    assert_eq!(
        (gone.1, gone.2),
        (1, Some(410)),
        "410 stops after one attempt"
    );
    let flaky = wait_for(30, "the 500 forward to die", || {
        outbox("flaky").filter(|o| o.0 == "dead")
    });
    assert_eq!(
        (flaky.1, flaky.2),
        (3, Some(500)),
        "500 is retried max_attempts times"
    );

    assert!(
        sink.on("/sneak").is_empty(),
        "a refused forward must never be sent"
    );
    assert_eq!(sink.on("/gone").len(), 1);
    assert_eq!(sink.on("/fail").len(), 3);
    let (_, out, _) = cli(dir.path(), &["dead", "list"]);
    assert!(
        out.contains("not in allow_forward") && out.contains(&sink.url("/sneak")),
        "{out}"
    );
}

#[test]
fn deliveries_wait_for_a_missing_plugin_without_spending_attempts() {
    let sink = Sink::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("plugins")).unwrap();
    let cfg = config(&format!(
        r#"
[[routes]]
events = ["*"]
plugins = ["later"]
{}"#,
        sink.relay_config("later", "/later")
    ));
    let r = Router::start(dir.path(), &cfg, &[]);
    let ids: Vec<String> = (0..5)
        .map(|i| send(&r, "early", &format!("e-{i}")))
        .collect();
    std::thread::sleep(Duration::from_millis(800));
    let deliveries: Vec<serde_json::Value> = ids.iter().flat_map(|id| r.deliveries(id)).collect();
    let pending = deliveries
        .iter()
        .filter(|d| d["state"] == "pending")
        .count();
    let attempts: i64 = deliveries
        .iter()
        .map(|d| d["attempts"].as_i64().unwrap())
        .sum();
    assert_eq!(
        (pending, attempts),
        (5, 0),
        "waiting deliveries spend no attempts"
    );
    let plugins: Value = r.admin_json("/admin/plugins");
    assert_eq!(plugins["plugins"][0]["loaded"], false, "{plugins}");

    install_plugin(dir.path(), &relay(), "later");
    wait_for(20, "the waiting deliveries to run", || {
        (sink.on("/later").len() == 5).then_some(())
    });
    let mut got: Vec<String> = sink
        .on("/later")
        .iter()
        .map(|g| g.body["event_id"].as_str().unwrap().to_string())
        .collect();
    got.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn sigterm_lets_in_flight_deliveries_finish_then_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    install_plugin(dir.path(), &fixture("hostile"), "slow");
    let cfg = config("\n[[routes]]\nevents = [\"slow\"]\nplugins = [\"slow\"]\n").replace(
        "[plugins]\ndir = \"plugins\"",
        "[plugins]\ndir = \"plugins\"\ntimeout_ms = 1500",
    );
    let mut r = Router::start(dir.path(), &cfg, &[]);
    let resp = client()
        .post(r.webhook("test"))
        .json(&json!({ "type": "slow", "id": "s-1", "do": "loop" }))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let id = resp.json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Wait until the delivery is leased (running), then ask the router to stop.
    wait_for(10, "the delivery to start", || {
        (r.deliveries(&id)[0]["leased"] == true).then_some(())
    });
    let started = std::time::Instant::now();
    let status = r.terminate();
    assert!(status.success(), "exit status {status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "shutdown waited past its grace period"
    );
    assert!(r.log().contains("shutting down"));
    // It waited for the running plugin (stopped by its 1.5 s deadline) and
    // recorded the outcome. Read it back with the plugin gone, so nothing runs.
    std::fs::remove_file(dir.path().join("plugins/slow.wasm")).unwrap();
    let r = Router::start_existing(dir.path(), &[]);
    let d = r.deliveries(&id).remove(0);
    assert_eq!(
        (&d["state"], &d["attempts"], &d["leased"]),
        (&json!("pending"), &json!(1), &json!(false)),
        "the attempt was recorded, not lost: {d}"
    );
    let error = d["last_error"].as_str().unwrap();
    assert!(error.contains("timed out"), "{error}");
}

#[test]
fn hostile_plugins_fail_alone_with_clear_errors_while_the_router_keeps_serving() {
    let sink = Sink::start();
    let dir = tempfile::tempdir().unwrap();
    install_plugin(dir.path(), &fixture("hostile"), "hostile");
    install_plugin(dir.path(), &relay(), "good");
    let cfg = config(&format!(
        r#"
[[routes]]
events = ["*"]
plugins = ["hostile", "good"]
{}"#,
        sink.relay_config("good", "/good")
    ))
    .replace(
        "max_attempts = 3\nretry_base_ms = 50\n\n[outbox]",
        "max_attempts = 1\nretry_base_ms = 50\ntimeout_ms = 500\nmemory_mb = 16\n\n[outbox]",
    );
    let r = Router::start(dir.path(), &cfg, &[]);
    let cases = [
        ("loop", "timed out after 500 ms"),
        ("grow", "exceeded its memory limit of 16 MiB"),
        ("trap", "trapped"),
        ("flood", "bytes of output"),
        ("bad_emit", "invalid output"),
        ("many", "invalid output"),
    ];
    let mut ids = Vec::new();
    for (what, _) in cases {
        let resp = client()
            .post(r.webhook("test"))
            .json(&json!({ "type": "hostile", "id": what, "do": what }))
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 202, "{what}");
        ids.push(
            resp.json::<Value>().unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    wait_settled(&r, 60);
    for ((what, expected), id) in cases.iter().zip(&ids) {
        let d = r
            .deliveries(id)
            .into_iter()
            .find(|d| d["plugin"] == "hostile")
            .unwrap();
        let (state, error) = (
            d["state"].as_str().unwrap().to_string(),
            d["last_error"].as_str().unwrap_or("").to_string(),
        );
        assert_eq!(state, "dead", "{what}");
        assert!(
            error.contains(expected) && error.contains("hostile") && error.contains(id.as_str()),
            "{what}: {error}"
        );
    }
    // The good plugin on the same events delivered every one of them.
    assert_eq!(sink.on("/good").len(), cases.len());
    let resp = client()
        .post(r.webhook("test"))
        .json(&json!({ "type": "after", "id": "after", "do": "echo" }))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202, "the router keeps serving");
}
