//! `hookrouter events list|show|tail` and `hookrouter sink` on the real
//! binary: through a running router's admin API and, with none running, on
//! the store itself (the same answers either way); `tail` follows the stream
//! and says so clearly when no router runs; the sink prints what it receives.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const CONFIG: &str = r#"version = 1
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[plugins]
dir = "plugins"
max_attempts = 1

[[sources]]
name = "plain"
type_from = "/type"
id_from = "/id"
verify = { scheme = "none" }

[[sources]]
name = "other"
type_from = "/type"
verify = { scheme = "none" }

[[routes]]
events = ["ok"]
plugins = ["fine"]
"#;

fn send(r: &Router, source: &str, event_type: &str, id: &str) -> String {
    let resp = client()
        .post(r.webhook(source))
        .header("Authorization", "Bearer keep-me-secret")
        .json(&json!({ "type": event_type, "id": id, "memo": "kettle" }))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    resp.json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn json_lines(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn listed(dir: &std::path::Path, args: &[&str]) -> Vec<String> {
    let mut all = vec!["events", "list"];
    all.extend_from_slice(args);
    let (ok, out, err) = cli(dir, &all);
    assert!(ok, "{all:?}: {err}");
    json_lines(&out)
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn events_list_and_show_answer_the_same_with_and_without_a_router() {
    let dir = tempfile::tempdir().unwrap();
    install_plugin(dir.path(), &fixture("trivial"), "fine");
    let r = Router::start(dir.path(), CONFIG, &[]);
    let a = send(&r, "plain", "ok", "1");
    let b = send(&r, "other", "ok", "2");
    let c = send(&r, "plain", "unrouted_type", "3");
    wait_settled(&r, 20);

    let checks = |when: &str| {
        let d = dir.path();
        assert_eq!(
            listed(d, &[]),
            [c.as_str(), b.as_str(), a.as_str()],
            "{when}: newest first"
        );
        assert_eq!(
            listed(d, &["--source", "plain"]),
            [c.as_str(), a.as_str()],
            "{when}"
        );
        assert_eq!(
            listed(d, &["--type", "ok", "--status", "done"]),
            [b.as_str(), a.as_str()],
            "{when}"
        );
        assert_eq!(listed(d, &["--status", "unrouted"]), [c.as_str()], "{when}");
        assert_eq!(
            listed(d, &["--since", "10m", "-q", "kettle"]),
            [c.as_str(), b.as_str(), a.as_str()],
            "{when}"
        );
        assert_eq!(
            listed(d, &["--until", "10m"]),
            Vec::<String>::new(),
            "{when}"
        );
        assert_eq!(
            listed(d, &["--limit", "2"]),
            [c.as_str(), b.as_str()],
            "{when}"
        );
        let (ok, out, err) = cli(d, &["events", "show", &a]);
        assert!(ok, "{when}: {err}");
        let v: Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["id"], a.as_str());
        assert_eq!(v["deliveries"][0]["state"], "done");
        assert_eq!(v["deliveries"][0]["history"][0]["outcome"], "ok");
        assert!(!out.contains("keep-me-secret"), "{when}: {out}");
        let (ok, _, err) = cli(
            d,
            &["events", "show", "0192f0c4-7b1a-7c3e-9a5d-3f2b1c0d4e5f"],
        );
        assert!(!ok && err.contains("no event"), "{when}: {err}");
        let (ok, _, err) = cli(d, &["events", "show", "nope"]);
        assert!(!ok && err.contains("invalid event id"), "{when}: {err}");
        let (ok, _, err) = cli(d, &["events", "list", "--status", "sleeping"]);
        assert!(!ok && err.contains("sleeping"), "{when}: {err}");
        let (ok, _, err) = cli(d, &["events", "list", "--since", "last tuesday"]);
        assert!(!ok && err.contains("neither a duration"), "{when}: {err}");
    };
    checks("through the admin API");
    drop(r);
    checks("on the store");
    let (ok, _, err) = cli(dir.path(), &["events", "tail"]);
    assert!(!ok, "tail without a router fails");
    assert!(err.contains("follows a running router"), "{err}");
}

#[test]
fn events_tail_follows_new_events_and_outcomes() {
    let dir = tempfile::tempdir().unwrap();
    install_plugin(dir.path(), &fixture("trivial"), "fine");
    let r = Router::start(dir.path(), CONFIG, &[]);
    let mut tail = Command::new(BIN)
        .args(["events", "tail", "--config"])
        .arg(dir.path().join("router.toml"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = tail.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // The subscription is up once an event sent now shows; send until one does.
    let mut seen: Vec<Value> = Vec::new();
    let mut tries = 0;
    let first = wait_for(20, "tail to print an event", || {
        tries += 1;
        let id = send(&r, "plain", "ok", &format!("t-{tries}"));
        let deadline = std::time::Instant::now() + Duration::from_millis(500);
        while let Ok(l) =
            rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
        {
            seen.push(serde_json::from_str(&l).unwrap());
        }
        seen.iter()
            .any(|v| v["kind"] == "event" && v["id"] == id.as_str())
            .then_some(id)
    });
    let delivery = wait_for(20, "its delivery in tail", || {
        while let Ok(l) = rx.try_recv() {
            seen.push(serde_json::from_str(&l).unwrap());
        }
        seen.iter()
            .find(|v| v["kind"] == "delivery" && v["event_id"] == first.as_str())
            .cloned()
    });
    assert_eq!(delivery["state"], "done");
    assert_eq!(delivery["plugin"], "fine");
    let _ = tail.kill();
    let _ = tail.wait();
}

#[test]
fn the_sink_prints_every_request_it_receives() {
    let mut sink = Command::new(BIN)
        .args(["sink", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = sink.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(20)).unwrap();
    let addr = first
        .split("http://")
        .nth(1)
        .and_then(|s| {
            s.split(':')
                .nth(1)
                .map(|p| p.trim_end_matches(|c: char| !c.is_ascii_digit()))
        })
        .unwrap_or_else(|| panic!("{first}"));
    let url = format!("http://127.0.0.1:{addr}/audit/T000");
    let resp = client()
        .post(&url)
        .header("webhook-id", "msg_42")
        .json(&json!({ "event_id": "e-1", "amount": 10 }))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mut printed = String::new();
    while let Ok(l) = rx.recv_timeout(Duration::from_secs(5)) {
        printed.push_str(&l);
        printed.push('\n');
        if l.trim() == "}" {
            break;
        }
    }
    assert!(printed.contains("POST /audit/T000"), "{printed}");
    assert!(printed.contains("webhook-id: msg_42"), "{printed}");
    assert!(printed.contains("\"event_id\": \"e-1\""), "{printed}");
    let _ = sink.kill();
    let _ = sink.wait();
}
