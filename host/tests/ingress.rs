//! End-to-end ingress tests: the real binary, real HTTP, a real SQLite file.
//! Every row of DESIGN.md's status table, duplicates, and every signature scheme
//! (good, tampered body, wrong secret, stale timestamp), signed with `openssl`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use base64::Engine as _;
use common::*;
use reqwest::StatusCode;
use serde_json::Value;

const OPTUM_SECRET: &str = "optum-test-secret";
const GITHUB_SECRET: &str = "It's a Secret to Everybody";
const STRIPE_SECRET: &str = "whsec_stripe_test_secret";
const SW_KEY: &[u8] = b"standard-webhooks-test-key-0001!";

fn sw_secret() -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(SW_KEY)
    )
}

fn config(extra: &str) -> String {
    format!(
        r#"version = 1
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
max_body_bytes = 4096
body_timeout_ms = 700
header_timeout_ms = 700

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
name = "plain"
type_from = "/kind"
id_from = "/id"
verify = {{ scheme = "none" }}

[[sources]]
name = "rotating"
type_from = "/type"
verify = {{ scheme = "hmac-sha256", header = "X-Sig", secret_env = ["OLD_SECRET", "NEW_SECRET"] }}

[[routes]]
events = ["payment_*", "batch_created"]
source = "optum"
plugins = ["audit", "notify"]

[[routes]]
events = ["*"]
source = "plain"
plugins = ["audit"]
{extra}"#
    )
}

fn start(dir: &std::path::Path, extra: &str) -> Router {
    let sw = sw_secret();
    Router::start(
        dir,
        &config(extra),
        &[
            ("OPTUM_WEBHOOK_SECRET", OPTUM_SECRET),
            ("GITHUB_WEBHOOK_SECRET", GITHUB_SECRET),
            ("STRIPE_WEBHOOK_SECRET", STRIPE_SECRET),
            ("SW_WEBHOOK_SECRET", sw.as_str()),
            ("OLD_SECRET", "old-secret"),
            ("NEW_SECRET", "new-secret"),
        ],
    )
}

fn optum_sample() -> Vec<u8> {
    std::fs::read(repo().join("samples/optum/batch_created.json"))
        .expect("sample copied from shared/samples/optum")
}

fn post(r: &Router, source: &str, body: &[u8], headers: &[(&str, String)]) -> (StatusCode, Value) {
    let mut req = client().post(r.webhook(source)).body(body.to_vec());
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = req.send().unwrap();
    let status = resp.status();
    let text = resp.text().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[test]
fn optum_event_is_stored_with_deliveries_and_duplicates_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let r = start(dir.path(), "");
    let body = optum_sample();
    let sig = openssl_hmac_hex(OPTUM_SECRET, &body);
    let h = [("X-Optum-Webhook-Callback-Hmac-Signature", sig)];

    let (status, answer) = post(&r, "optum", &body, &h);
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["deliveries"], 2);
    let id = answer["id"].as_str().unwrap().to_string();

    let (status, dup) = post(&r, "optum", &body, &h);
    assert_eq!(status, StatusCode::OK, "{dup}");
    assert_eq!(dup["duplicate"], true);
    assert_eq!(dup["id"], id.as_str());

    // Exactly one event, with one pending delivery per routed plugin.
    let events = r.events("");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["event_type"], "batch_created");
    assert_eq!(
        events[0]["external_id"], "0b6d5e1c-3f7a-4c2e-8a91-5d4f6e7a8b90",
        "dedupe key is Optum's causationId"
    );
    let mut plugins: Vec<String> = r
        .deliveries(&id)
        .iter()
        .filter(|d| d["state"] == "pending")
        .map(|d| d["plugin"].as_str().unwrap().to_string())
        .collect();
    plugins.sort();
    assert_eq!(plugins, ["audit", "notify"]);

    // An event that matches no route is stored and counted all the same.
    let (status, answer) = post(&r, "plain", br#"{"kind":"nobody.cares","id":"x1"}"#, &[]);
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(answer["deliveries"], 1);
}

#[test]
fn status_table_rows() {
    let dir = tempfile::tempdir().unwrap();
    let r = start(dir.path(), "");
    let c = client();

    // Unknown source: 404.
    let resp = c.post(r.webhook("optm")).body("{}").send().unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(resp.text().unwrap().contains("unknown source"));
    let resp = c
        .post(format!("{}/elsewhere", r.url))
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    // Not POST: 405 with Allow: POST.
    let resp = c.get(r.webhook("plain")).send().unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(resp.headers()["allow"], "POST");

    // Body over the limit: 413, whether declared or streamed.
    let big = vec![b' '; 5000];
    let (status, _) = post(&r, "plain", &big, &[]);
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // Streamed (chunked, no Content-Length): cut off at the limit, not read to the end.
    let mut stream = TcpStream::connect(r.url.trim_start_matches("http://")).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut req =
        b"POST /webhooks/plain HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..10 {
        req.extend_from_slice(b"3e8\r\n");
        req.extend_from_slice(&[b' '; 1000]);
        req.extend_from_slice(b"\r\n");
    }
    let _ = stream.write_all(&req);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // Signature missing or wrong: 401.
    let body = optum_sample();
    let (status, err) = post(&r, "optum", &body, &[]);
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("x-optum-webhook-callback-hmac-signature"),
        "{err}"
    );
    let wrong = openssl_hmac_hex("not-the-secret", &body);
    let (status, _) = post(
        &r,
        "optum",
        &body,
        &[("X-Optum-Webhook-Callback-Hmac-Signature", wrong)],
    );
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let mut tampered = body.clone();
    let at = tampered.windows(5).position(|w| w == b"15230").unwrap();
    tampered[at] = b'9';
    let sig = openssl_hmac_hex(OPTUM_SECRET, &body);
    let (status, _) = post(
        &r,
        "optum",
        &tampered,
        &[("X-Optum-Webhook-Callback-Hmac-Signature", sig)],
    );
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Not JSON, or no event type: 400 with a JSON error naming what is wrong.
    let (status, err) = post(&r, "plain", b"{not json", &[]);
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        err["error"].as_str().unwrap().contains("not valid JSON"),
        "{err}"
    );
    let (status, err) = post(&r, "plain", br#"{"type":"wrong.key"}"#, &[]);
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(err["error"].as_str().unwrap().contains("/kind"), "{err}");
    let bad = b"{\"kind\":\"x\"}";
    let sig = openssl_hmac_hex(OPTUM_SECRET, bad);
    let (status, err) = post(
        &r,
        "optum",
        bad,
        &[("X-Optum-Webhook-Callback-Hmac-Signature", sig)],
    );
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");

    // Nothing refused above was stored.
    assert_eq!(r.counts()["events"], 0);
}

#[test]
fn every_scheme_accepts_good_and_rejects_tampered_wrong_and_stale() {
    let dir = tempfile::tempdir().unwrap();
    let r = start(dir.path(), "");

    // GitHub: `sha256=` hex; type and id from headers.
    let body = br#"{"zen":"Keep it logically awesome.","hook_id":1}"#;
    let gh = |secret: &str, body: &[u8], delivery: &str| {
        vec![
            (
                "X-Hub-Signature-256",
                format!("sha256={}", openssl_hmac_hex(secret, body)),
            ),
            ("X-GitHub-Event", "ping".to_string()),
            ("X-GitHub-Delivery", delivery.to_string()),
        ]
    };
    let (s, a) = post(&r, "github", body, &gh(GITHUB_SECRET, body, "d-1"));
    assert_eq!(s, StatusCode::ACCEPTED, "{a}");
    assert_eq!(
        post(
            &r,
            "github",
            b"{\"zen\":1}",
            &gh(GITHUB_SECRET, body, "d-2")
        )
        .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post(&r, "github", body, &gh("wrong", body, "d-3")).0,
        StatusCode::UNAUTHORIZED
    );

    // Stripe: `t=…,v1=…` over "{t}.{body}".
    let stripe = |secret: &str, t: u64, body: &[u8]| {
        let mut signed = format!("{t}.").into_bytes();
        signed.extend_from_slice(body);
        vec![(
            "Stripe-Signature",
            format!("t={t},v1={}", openssl_hmac_hex(secret, &signed)),
        )]
    };
    let body = br#"{"id":"evt_1","type":"invoice.paid","data":{"object":{}}}"#;
    let now = now_secs();
    let (s, a) = post(&r, "stripe", body, &stripe(STRIPE_SECRET, now, body));
    assert_eq!(s, StatusCode::ACCEPTED, "{a}");
    let other = br#"{"id":"evt_2","type":"invoice.paid","data":{"object":{"x":1}}}"#;
    assert_eq!(
        post(&r, "stripe", other, &stripe(STRIPE_SECRET, now, body)).0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post(&r, "stripe", other, &stripe("whsec_wrong", now, other)).0,
        StatusCode::UNAUTHORIZED
    );
    let (s, a) = post(
        &r,
        "stripe",
        other,
        &stripe(STRIPE_SECRET, now - 600, other),
    );
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(a["error"].as_str().unwrap().contains("tolerance"), "{a}");

    // Standard Webhooks: base64 HMAC over "{id}.{timestamp}.{body}" with the decoded whsec_ key.
    let sw = |key: &[u8], id: &str, t: u64, body: &[u8]| {
        let mut signed = format!("{id}.{t}.").into_bytes();
        signed.extend_from_slice(body);
        vec![
            ("webhook-id", id.to_string()),
            ("webhook-timestamp", t.to_string()),
            (
                "webhook-signature",
                format!(
                    "v1,bm90LXRoaXMtb25l v1,{}",
                    openssl_hmac_base64(key, &signed)
                ),
            ),
        ]
    };
    let body = br#"{"type":"user.created","data":{"id":7}}"#;
    let (s, a) = post(&r, "sw", body, &sw(SW_KEY, "msg_1", now, body));
    assert_eq!(s, StatusCode::ACCEPTED, "{a}");
    let other = br#"{"type":"user.created","data":{"id":8}}"#;
    assert_eq!(
        post(&r, "sw", other, &sw(SW_KEY, "msg_2", now, body)).0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post(&r, "sw", other, &sw(b"another-key", "msg_3", now, other)).0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post(&r, "sw", other, &sw(SW_KEY, "msg_4", now - 400, other)).0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post(&r, "sw", other, &sw(SW_KEY, "msg_5", now + 400, other)).0,
        StatusCode::UNAUTHORIZED
    );

    // Rotation: the old and the new secret both pass; anything else does not.
    let body = br#"{"type":"rotated"}"#;
    for (secret, want) in [
        ("old-secret", StatusCode::ACCEPTED),
        ("new-secret", StatusCode::ACCEPTED),
        ("third", StatusCode::UNAUTHORIZED),
    ] {
        let (s, a) = post(
            &r,
            "rotating",
            body,
            &[("X-Sig", openssl_hmac_hex(secret, body))],
        );
        assert_eq!(s, want, "secret {secret}: {a}");
    }

    // Duplicates by the standard-webhooks id: same webhook-id, new timestamp.
    let (s, a) = post(
        &r,
        "sw",
        body_sw(),
        &sw(SW_KEY, "msg_1", now_secs(), body_sw()),
    );
    assert_eq!(s, StatusCode::OK, "{a}");
    assert_eq!(a["duplicate"], true);
}

fn body_sw() -> &'static [u8] {
    br#"{"type":"user.created","data":{"id":7}}"#
}

#[test]
fn http2_prior_knowledge_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let r = start(dir.path(), "");
    let c = reqwest::blocking::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = c
        .post(r.webhook("plain"))
        .body(r#"{"kind":"h2.test","id":"h2-1"}"#)
        .send()
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    // The body limit holds over HTTP/2 too, and the connection keeps serving.
    let resp = c
        .post(r.webhook("plain"))
        .body(vec![b' '; 5000])
        .send()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let resp = c
        .post(r.webhook("plain"))
        .body(r#"{"kind":"h2.test","id":"h2-2"}"#)
        .send()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
}

#[test]
fn slow_clients_are_cut_off_and_odd_input_never_gets_a_500() {
    let dir = tempfile::tempdir().unwrap();
    let r = start(dir.path(), "");
    let addr = r.url.trim_start_matches("http://").to_string();

    // A body that never finishes: 408 after body_timeout_ms.
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(
        b"POST /webhooks/plain HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"kind\":",
    )
    .unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");

    // Headers that never finish: the connection is closed after header_timeout_ms.
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"POST /webhooks/plain HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "connection was held open"
    );

    // Odd input of every kind: never a 5xx.
    let c = client();
    let cases: Vec<reqwest::blocking::RequestBuilder> = vec![
        c.post(r.webhook("plain")).body(""),
        c.post(r.webhook("plain")).body("null"),
        c.post(r.webhook("plain")).body("[1,2,3]"),
        c.post(r.webhook("plain"))
            .body(r#"{"kind":12345,"id":{"nested":true}}"#),
        c.post(r.webhook("plain")).body(r#"{"kind":""}"#),
        c.post(r.webhook("plain"))
            .body(vec![0xff, 0xfe, 0x00, 0x80]),
        c.post(r.webhook("optum"))
            .header("X-Optum-Webhook-Callback-Hmac-Signature", "zz")
            .body("{}"),
        c.post(r.webhook("optum"))
            .header("X-Optum-Webhook-Callback-Hmac-Signature", "a".repeat(3000))
            .body("{}"),
        c.post(r.webhook("stripe"))
            .header("Stripe-Signature", "t=,v1=,,,=")
            .body("{}"),
        c.post(r.webhook("stripe"))
            .header("Stripe-Signature", "t=99999999999999999999,v1=00")
            .body("{}"),
        c.post(r.webhook("sw"))
            .header("webhook-signature", "v1,!!!")
            .header("webhook-timestamp", "-1")
            .header("webhook-id", "")
            .body("{}"),
        c.post(format!("{}/webhooks/plain?x=1", r.url))
            .body(r#"{"kind":"q"}"#),
        c.post(format!("{}/webhooks/../plain", r.url)).body("{}"),
        c.post(format!("{}/webhooks/", r.url)).body("{}"),
        c.put(r.webhook("plain")).body("{}"),
        c.delete(r.webhook("nope")),
    ];
    for (i, req) in cases.into_iter().enumerate() {
        let status = req.send().unwrap().status();
        assert!(status.as_u16() < 500, "case {i}: {status}");
    }
    // And the router still serves.
    let (status, _) = post(&r, "plain", br#"{"kind":"still.alive","id":"alive"}"#, &[]);
    assert_eq!(status, StatusCode::ACCEPTED);
}

#[test]
fn backlog_limit_answers_503_with_retry_after_and_loses_nothing_acked() {
    let dir = tempfile::tempdir().unwrap();
    let r = start(dir.path(), "\n[store]\nmax_backlog = 1\n");
    let url = r.webhook("plain");
    let mut saw_503 = false;
    let mut acked = Vec::new();
    for round in 0..20 {
        let handles: Vec<_> = (0..32)
            .map(|i| {
                let url = url.clone();
                std::thread::spawn(move || {
                    let id = format!("r{round}-{i}");
                    let resp = client()
                        .post(&url)
                        .body(format!(r#"{{"kind":"load","id":"{id}"}}"#))
                        .send()
                        .unwrap();
                    let retry_after = resp.headers().get("retry-after").is_some();
                    (id, resp.status(), retry_after)
                })
            })
            .collect();
        for h in handles {
            let (id, status, retry_after) = h.join().unwrap();
            match status {
                StatusCode::ACCEPTED => acked.push(id),
                StatusCode::SERVICE_UNAVAILABLE => {
                    assert!(retry_after, "503 without Retry-After");
                    saw_503 = true;
                }
                other => panic!("unexpected {other}"),
            }
        }
        if saw_503 && round >= 2 {
            break;
        }
    }
    assert!(
        saw_503,
        "a backlog of 1 under 32 concurrent senders never refused"
    );
    let stored: std::collections::HashSet<String> = r
        .events("")
        .iter()
        .map(|e| e["external_id"].as_str().unwrap_or("").to_string())
        .collect();
    for id in &acked {
        assert!(stored.contains(id), "acked event {id} missing");
    }
}
