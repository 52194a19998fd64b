//! The events API on the real binary: every filter of `GET /admin/events`,
//! cursor pagination, bad input, `GET /admin/events/{id}` with masked headers,
//! cut forward URLs and the attempt timeline, the live stream, the stats, bulk
//! replay and purge by ids and by filters, the per-plugin dead-letter gauge,
//! and the dashboard's files under its security headers.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const SECRET: &str = "events-api-secret";

fn config(sink_port: u16, extra: &str) -> String {
    format!(
        r#"version = 1
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[plugins]
dir = "plugins"
max_attempts = 1

[outbox]
max_attempts = 1

[[sources]]
name = "optum"
preset = "optum"

[[sources]]
name = "plain"
type_from = "/type"
id_from = "/id"
verify = {{ scheme = "none" }}

[[routes]]
events = ["payment_ok"]
plugins = ["fine"]

[[routes]]
events = ["payment_doomed"]
plugins = ["doomed"]

[[routes]]
events = ["payment_forwarded"]
plugins = ["relay"]

[plugin.doomed]
config = {{ fail = "always" }}

[plugin.relay]
config = {{ forward_url = "http://127.0.0.1:{sink_port}/hook/T000/s3cret-path" }}
allow_forward = ["127.0.0.1:{sink_port}"]
{extra}"#
    )
}

fn start(sink: &Sink, extra: &str, env: &[(&str, &str)]) -> (tempfile::TempDir, Router) {
    let dir = tempfile::tempdir().unwrap();
    install_plugin(dir.path(), &fixture("trivial"), "fine");
    install_plugin(dir.path(), &fixture("relay"), "doomed");
    install_plugin(dir.path(), &fixture("relay"), "relay");
    let mut env = env.to_vec();
    env.push(("OPTUM_WEBHOOK_SECRET", SECRET));
    let r = Router::start(dir.path(), &config(sink.port, extra), &env);
    (dir, r)
}

/// POSTs an Optum event with extra headers; answers (status, id).
fn optum(
    r: &Router,
    event_type: &str,
    causation: &str,
    words: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let body = serde_json::to_vec(&json!({
        "id": "PAY-1", "source": "optum-connections", "specVersion": "1.0",
        "type": event_type, "causationId": causation,
        "data": { "amount": 12345678901234567890u64, "memo": words }
    }))
    .unwrap();
    let mut req = client()
        .post(r.webhook("optum"))
        .header(
            "X-Optum-Webhook-Callback-Hmac-Signature",
            openssl_hmac_hex(SECRET, &body),
        )
        .header("Content-Type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.body(body).send().unwrap();
    let status = resp.status().as_u16();
    let v: Value = resp.json().unwrap();
    (status, v["id"].as_str().unwrap_or("").to_string())
}

fn plain(r: &Router, event_type: &str, id: &str, words: &str) -> String {
    let resp = client()
        .post(r.webhook("plain"))
        .json(&json!({ "type": event_type, "id": id, "memo": words }))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    resp.json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

fn owned(v: &[&String]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn get(r: &Router, path: &str) -> (u16, Value) {
    let resp = client().get(format!("{}{path}", r.admin)).send().unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().unwrap_or(Value::Null))
}

fn post(r: &Router, path: &str, body: Value) -> (u16, Value) {
    let resp = client()
        .post(format!("{}{path}", r.admin))
        .json(&body)
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().unwrap_or(Value::Null))
}

fn metric(r: &Router, line_start: &str) -> Option<f64> {
    let text = client()
        .get(format!("{}/metrics", r.admin))
        .send()
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn every_filter_narrows_pages_follow_the_cursor_and_bad_queries_are_refused() {
    let sink = Sink::start();
    let (_dir, r) = start(&sink, "", &[]);
    let before = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    std::thread::sleep(Duration::from_millis(5));
    let (s, ok1) = optum(&r, "payment_ok", "c-1", "lunch at the harbour", &[]);
    assert_eq!(s, 202);
    let (_, doomed) = optum(&r, "payment_doomed", "c-2", "dinner by the harbour", &[]);
    let (_, ok2) = optum(&r, "payment_ok", "c-3", "breakfast", &[]);
    let unrouted = plain(&r, "nobody_listens", "p-1", "harbour lights");
    // A duplicate is answered 200 and not listed twice.
    assert_eq!(
        optum(&r, "payment_ok", "c-1", "lunch at the harbour", &[]).0,
        200
    );
    wait_settled(&r, 30);
    std::thread::sleep(Duration::from_millis(5));
    let after = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();

    let all = r.events("");
    assert_eq!(
        ids(&all),
        owned(&[&unrouted, &ok2, &doomed, &ok1]),
        "newest first"
    );
    let cases: Vec<(String, Vec<&String>)> = vec![
        ("source=optum".into(), vec![&ok2, &doomed, &ok1]),
        ("source=plain".into(), vec![&unrouted]),
        ("type=payment_ok".into(), vec![&ok2, &ok1]),
        ("status=done".into(), vec![&ok2, &ok1]),
        ("status=dead".into(), vec![&doomed]),
        ("status=unrouted".into(), vec![&unrouted]),
        ("status=pending".into(), vec![]),
        ("q=harbour".into(), vec![&unrouted, &doomed, &ok1]),
        ("q=HARBOUR%20lunch".into(), vec![&ok1]),
        ("q=harb".into(), vec![]),
        ("q=harbour&source=optum&status=dead".into(), vec![&doomed]),
        (
            format!("since={before}"),
            vec![&unrouted, &ok2, &doomed, &ok1],
        ),
        (format!("since={after}"), vec![]),
        (format!("until={before}"), vec![]),
        (
            format!("since={before}&until={after}&type=payment_doomed"),
            vec![&doomed],
        ),
        // Blank parameters (a form's empty fields) filter nothing.
        (
            "source=&type=&q=".into(),
            vec![&unrouted, &ok2, &doomed, &ok1],
        ),
    ];
    for (query, want) in cases {
        let got = r.events(&query);
        assert_eq!(ids(&got), owned(&want), "{query}");
    }
    // Pages of one, each after the cursor of the one before: all of them, once.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, page) = get(&r, &format!("/admin/events?limit=1{cursor}"));
        assert_eq!(status, 200, "{page}");
        seen.extend(ids(page["events"].as_array().unwrap()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, ids(&all));
    let (_, page) = get(&r, "/admin/events?q=harbour&limit=2");
    let c = page["next_cursor"].as_str().unwrap();
    let (_, rest) = get(&r, &format!("/admin/events?q=harbour&limit=2&cursor={c}"));
    assert_eq!(ids(rest["events"].as_array().unwrap()), owned(&[&ok1]));

    for bad in [
        "status=sleeping",
        "since=yesterday",
        "until=2026-13-01T00:00:00Z",
        "limit=0",
        "limit=1001",
        "limit=ten",
        "cursor=nope",
        "q=%21%21%21",
        "colour=blue",
    ] {
        let (status, body) = get(&r, &format!("/admin/events?{bad}"));
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{bad}"
        );
    }
    // The router kept serving through the bad requests.
    assert_eq!(r.events("").len(), 4);
}

#[test]
fn one_event_shows_masked_headers_the_body_verbatim_and_every_attempt() {
    let sink = Sink::start();
    let (_dir, r) = start(&sink, "", &[]);
    let (_, id) = optum(
        &r,
        "payment_forwarded",
        "c-10",
        "harbour",
        &[
            ("Authorization", "Bearer do-not-show"),
            ("Cookie", "session=do-not-show"),
            ("X-Hub-Signature-256", "sha256=do-not-show"),
            ("X-Request-Id", "req-42"),
        ],
    );
    wait_for(20, "the forward to arrive", || {
        (sink.count() == 1).then_some(())
    });
    wait_for(20, "the forward to be recorded", || {
        let e = r.event(&id)?;
        (e["forwards"][0]["state"] == "done").then_some(())
    });
    let e = r.event(&id).unwrap();
    let headers: Vec<(String, String)> = e["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h[0].as_str().unwrap().into(), h[1].as_str().unwrap().into()))
        .collect();
    let value = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    for secret in [
        "authorization",
        "cookie",
        "x-hub-signature-256",
        "x-optum-webhook-callback-hmac-signature",
    ] {
        if let Some(v) = value(secret) {
            assert_eq!(v, "<masked>", "{secret}");
        }
    }
    assert_eq!(
        value("x-optum-webhook-callback-hmac-signature"),
        Some("<masked>"),
        "the source's signature header is kept, masked"
    );
    assert_eq!(value("x-request-id"), Some("req-42"));
    assert!(!e.to_string().contains("do-not-show"), "{e}");
    // The body verbatim: the 20-digit amount keeps every digit.
    assert!(e["body"].as_str().unwrap().contains("12345678901234567890"));
    let raw = client()
        .get(format!("{}/admin/events/{id}", r.admin))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(raw.contains("\"amount\":12345678901234567890"), "{raw}");
    // The delivery's attempt and the forward's, with the URL cut.
    let d = &e["deliveries"][0];
    assert_eq!(
        (d["plugin"].as_str(), d["state"].as_str()),
        (Some("relay"), Some("done"))
    );
    let a = &d["history"][0];
    assert_eq!(
        (a["attempt"].as_u64(), a["outcome"].as_str()),
        (Some(1), Some("ok"))
    );
    assert!(
        a["version"].is_string() && a["at"].is_string() && a["duration_ms"].is_u64(),
        "{a}"
    );
    let f = &e["forwards"][0];
    assert_eq!(
        f["url"].as_str().unwrap(),
        format!("http://127.0.0.1:{}/hook/…", sink.port)
    );
    assert!(!e.to_string().contains("s3cret-path"));
    assert_eq!(f["history"][0]["status"], 200);
    assert_eq!(f["history"][0]["outcome"], "sent");
    // Not found and bad ids.
    assert_eq!(
        get(&r, "/admin/events/0192f0c4-7b1a-7c3e-9a5d-3f2b1c0d4e5f").0,
        404
    );
    assert_eq!(get(&r, "/admin/events/not-an-id").0, 400);
}

#[test]
fn dead_letters_replay_and_purge_by_ids_and_by_filters_and_the_gauge_follows() {
    let sink = Sink::start();
    let (_dir, r) = start(&sink, "", &[]);
    let mut doomed = Vec::new();
    for i in 0..4 {
        let words = if i < 2 { "alpha" } else { "omega" };
        doomed.push(optum(&r, "payment_doomed", &format!("d-{i}"), words, &[]).1);
    }
    let (_, fine) = optum(&r, "payment_ok", "f-1", "alpha", &[]);
    wait_settled(&r, 30);
    let gauge = "hookrouter_dead_letters_current{plugin=\"doomed\"}";
    assert_eq!(metric(&r, gauge), Some(4.0));
    let (_, dead) = get(&r, "/admin/dead?plugin=doomed");
    let entries: Vec<String> = dead["dead"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(entries.len(), 4);
    assert_eq!(get(&r, "/admin/dead?plugin=fine").1["dead"], json!([]));
    assert_eq!(get(&r, "/admin/dead?type=payment_ok").1["dead"], json!([]));
    assert_eq!(get(&r, "/admin/dead?colour=red").0, 400);

    // Replay by filter: only the dead entries of events with "omega" run again
    // (and die again: the plugin still fails).
    let (status, body) = post(&r, "/admin/dead/replay", json!({ "q": "omega" }));
    assert_eq!((status, &body["replayed"]), (200, &json!(2)), "{body}");
    wait_settled(&r, 30);
    let history = |id: &str| r.deliveries(id)[0]["history"].as_array().unwrap().clone();
    assert_eq!(
        doomed
            .iter()
            .map(|id| history(id).len())
            .collect::<Vec<_>>(),
        [1, 1, 2, 2],
        "only the omega events ran again; the history keeps every run"
    );
    assert_eq!(
        history(&doomed[3])[1]["attempt"],
        1,
        "a replay starts with fresh attempts"
    );
    // A done delivery can be replayed by id too; a pending one cannot.
    let done = r.deliveries(&fine)[0]["id"].as_str().unwrap().to_string();
    let (status, _) = post(&r, &format!("/admin/dead/{done}/replay"), json!({}));
    assert_eq!(status, 200);
    wait_settled(&r, 30);

    // Purge by ids, then by filter; bad bodies are refused.
    let (status, body) = post(&r, "/admin/dead/purge", json!({ "ids": [entries[0]] }));
    assert_eq!(
        (status, &body["purged"]["entries"]),
        (200, &json!(1)),
        "{body}"
    );
    assert_eq!(metric(&r, gauge), Some(3.0));
    for bad in [
        json!({ "ids": [] }),
        json!({ "ids": ["x-1"] }),
        json!({ "ids": ["d-1"], "q": "alpha" }),
        json!({ "older_than": "1h", "source": "optum" }),
        json!({ "status": "sleeping" }),
        json!({ "plugin": "doomed" }),
    ] {
        let (status, body) = post(&r, "/admin/dead/purge", bad.clone());
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let resp = client()
        .post(format!("{}/admin/dead/replay", r.admin))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let (status, body) = post(
        &r,
        "/admin/dead/purge",
        json!({ "source": "optum", "type": "payment_doomed" }),
    );
    assert_eq!(
        (status, &body["purged"]["entries"]),
        (200, &json!(3)),
        "{body}"
    );
    assert_eq!(body["purged"]["events"], 3);
    assert_ne!(metric(&r, gauge), Some(3.0));
    assert!(matches!(metric(&r, gauge), None | Some(0.0)));
    assert_eq!(r.events("type=payment_doomed").len(), 0);
    assert_eq!(r.events("").len(), 1, "the fine event stays");
}

/// Reads server-sent events from a stream until `want` holds for one.
fn read_until(lines: &mut impl BufRead, what: &str, want: impl Fn(&str, &Value) -> bool) -> Value {
    let mut event = String::new();
    for _ in 0..10_000 {
        let mut line = String::new();
        if lines.read_line(&mut line).unwrap() == 0 {
            panic!("the stream ended before {what}");
        }
        let line = line.trim_end();
        if let Some(e) = line.strip_prefix("event: ") {
            event = e.to_string();
        } else if let Some(d) = line.strip_prefix("data: ") {
            let v: Value = serde_json::from_str(d).unwrap();
            if want(&event, &v) {
                return v;
            }
        }
    }
    panic!("no {what} in the stream");
}

#[test]
fn the_stream_sends_new_events_and_outcomes_and_needs_the_token() {
    let sink = Sink::start();
    let token = "[admin]\ntoken_env = \"HOOKROUTER_ADMIN_TOKEN\"\n";
    let (_dir, r) = start(&sink, token, &[("HOOKROUTER_ADMIN_TOKEN", "tok-1")]);
    let stream_url = format!("{}/admin/events/stream", r.admin);
    let c = reqwest::blocking::Client::builder().build().unwrap();
    assert_eq!(c.get(&stream_url).send().unwrap().status().as_u16(), 401);
    assert_eq!(
        c.get(&stream_url)
            .bearer_auth("wrong")
            .send()
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    let resp = c.get(&stream_url).bearer_auth("tok-1").send().unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut lines = BufReader::new(resp);
    let mut first = String::new();
    lines.read_line(&mut first).unwrap();
    assert!(first.starts_with(": subscribed"), "{first:?}");

    let (status, id) = optum(&r, "payment_forwarded", "s-1", "stream me", &[]);
    assert_eq!(status, 202);
    let e = read_until(&mut lines, "the new event", |k, v| {
        k == "event" && v["id"] == id.as_str()
    });
    assert_eq!(
        (e["source"].as_str(), e["event_type"].as_str()),
        (Some("optum"), Some("payment_forwarded"))
    );
    assert_eq!(
        (e["status"].as_str(), e["deliveries"].as_u64()),
        (Some("pending"), Some(1))
    );
    let d = read_until(&mut lines, "its delivery", |k, v| {
        k == "delivery" && v["event_id"] == id.as_str()
    });
    assert_eq!(
        (
            d["plugin"].as_str(),
            d["outcome"].as_str(),
            d["state"].as_str()
        ),
        (Some("relay"), Some("ok"), Some("done"))
    );
    let f = read_until(&mut lines, "its forward", |k, v| {
        k == "forward" && v["event_id"] == id.as_str()
    });
    assert_eq!(f["status"], 200);
    assert_eq!(
        f["target"].as_str().unwrap(),
        format!("http://127.0.0.1:{}/hook/…", sink.port)
    );

    let (_, doomed) = optum(&r, "payment_doomed", "s-2", "doomed", &[]);
    let d = read_until(&mut lines, "the dead delivery", |k, v| {
        k == "delivery" && v["event_id"] == doomed.as_str()
    });
    assert_eq!(d["state"], "dead");
    assert!(
        d["error"].as_str().unwrap().contains("relay told to fail"),
        "{d}"
    );
    // A duplicate is not a new event.
    assert_eq!(optum(&r, "payment_doomed", "s-2", "doomed", &[]).0, 200);
    let (_, next) = optum(&r, "payment_ok", "s-3", "after the duplicate", &[]);
    let e = read_until(&mut lines, "the next event", |k, _| k == "event");
    assert_eq!(e["id"], next.as_str(), "the duplicate was not announced");

    // The stream refuses parameters; the rest of the API answers beside it.
    assert_eq!(
        c.get(format!("{stream_url}?source=x"))
            .bearer_auth("tok-1")
            .send()
            .unwrap()
            .status()
            .as_u16(),
        400
    );
    let stats: Value = c
        .get(format!("{}/admin/stats", r.admin))
        .bearer_auth("tok-1")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(stats["interval_secs"], 5);
    assert_eq!(stats["scope"], "replica");
    assert!(stats["points"].is_array());
}

#[test]
fn stats_sample_rates_backlog_and_latency_every_interval() {
    let sink = Sink::start();
    let (_dir, r) = start(&sink, "", &[]);
    for i in 0..3 {
        optum(&r, "payment_forwarded", &format!("st-{i}"), "x", &[]);
    }
    optum(&r, "payment_doomed", "st-d", "x", &[]);
    wait_settled(&r, 30);
    // Points close every 5 s: wait for the ones that hold the work above.
    let points = wait_for(30, "stats points covering the run", || {
        let (_, s) = get(&r, "/admin/stats");
        let pts = s["points"].as_array()?.clone();
        let sum = |k: &str| pts.iter().map(|p| p[k].as_u64().unwrap_or(0)).sum::<u64>();
        (sum("forwards_sent") >= 3 && sum("deliveries_ok") >= 3 && sum("dead") >= 1).then_some(pts)
    });
    let events: f64 = points
        .iter()
        .map(|p| p["events_per_sec"].as_f64().unwrap() * p["secs"].as_f64().unwrap())
        .sum();
    assert!(
        (events - 4.0).abs() < 0.01,
        "{events} events over the points"
    );
    assert!(points.iter().any(|p| p["forward_p50_ms"].is_number()));
    assert!(
        points
            .iter()
            .any(|p| p["failure_rate"].as_f64().is_some_and(|f| f > 0.0))
    );
    assert!(points.iter().all(|p| p["backlog"].is_u64()));
    // The plugins' runs and duration percentiles.
    let (_, plugins) = get(&r, "/admin/plugins");
    let relay = plugins["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "relay")
        .unwrap()
        .clone();
    assert_eq!(relay["stats"]["invocations_ok"], 3);
    assert_eq!(relay["durations"]["runs"], 3);
    assert!(
        relay["durations"]["p99_ms"].as_f64().unwrap()
            >= relay["durations"]["p50_ms"].as_f64().unwrap()
    );
    assert_eq!(relay["abi"], "component");
}

#[test]
fn the_dashboard_is_served_offline_under_its_security_headers() {
    let sink = Sink::start();
    let token = "[admin]\ntoken_env = \"HOOKROUTER_ADMIN_TOKEN\"\n";
    let (_dir, r) = start(&sink, token, &[("HOOKROUTER_ADMIN_TOKEN", "tok-2")]);
    let c = client();
    // The page and its files need no token (the page asks for it); the API does.
    let page = c.get(format!("{}/", r.admin)).send().unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let h = page.headers().clone();
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(
        h["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("default-src 'self'")
    );
    assert_eq!(h["x-content-type-options"], "nosniff");
    let html = page.text().unwrap();
    let mut files: Vec<String> = html
        .split("/assets/")
        .skip(1)
        .map(|s| s.split('"').next().unwrap().to_string())
        .collect();
    files.extend(
        [
            "events.js",
            "event.js",
            "dead.js",
            "plugins.js",
            "routes.js",
            "overview.js",
        ]
        .map(String::from),
    );
    for f in files {
        let resp = c.get(format!("{}/assets/{f}", r.admin)).send().unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{f}");
        assert!(
            resp.headers()["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("default-src 'self'")
        );
        let mut body = String::new();
        resp.take(1 << 20).read_to_string(&mut body).unwrap();
        assert!(!body.contains("https://"), "{f} refers to another origin");
    }
    assert_eq!(
        c.get(format!("{}/assets/nope.js", r.admin))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        404
    );
    assert_eq!(
        c.get(format!("{}/assets/../router.toml", r.admin))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        404
    );
    assert_eq!(
        c.get(format!("{}/admin/events", r.admin))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    // Methods a path does not take get 405 with Allow; unknown admin paths need the token.
    let resp = c
        .put(format!("{}/admin/dead/d-1", r.admin))
        .bearer_auth("tok-2")
        .header("content-type", "application/json")
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    assert_eq!(resp.headers()["allow"], "GET, DELETE");
    assert_eq!(
        c.get(format!("{}/admin/nothing", r.admin))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    assert_eq!(
        c.get(format!("{}/admin/nothing", r.admin))
            .bearer_auth("tok-2")
            .send()
            .unwrap()
            .status()
            .as_u16(),
        404
    );
}
