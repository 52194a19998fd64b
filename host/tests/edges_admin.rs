//! End-to-end tests of the admin listener's guard and of credentials: the real
//! binary on loopback (one test binds `0.0.0.0` but sends only to 127.0.0.1).
//! - a replay POSTed as `text/plain`, from a foreign `Origin`, or with
//!   `Host: evil.example` is refused; a same-origin JSON one is served;
//! - serve on `0.0.0.0` without a token refuses to start; with a token and
//!   `allowed_hosts` it serves;
//! - a provider's `Authorization`, `Cookie` and `Proxy-Authorization` are not
//!   in the stored event nor in what a plugin receives; signatures are masked.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Sends one raw HTTP/1.1 request; returns the status and the whole answer.
fn raw(addr: &str, request: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {out:?}"));
    (status, out)
}

fn replay_request(host: &str, headers: &str) -> String {
    format!(
        "POST /admin/dead/replay HTTP/1.1\r\nHost: {host}\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
}

#[test]
fn admin_refuses_cross_site_and_rebinding_requests() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n";
    let r = Router::start(dir.path(), cfg, &[]);
    let addr = r.admin.trim_start_matches("http://").to_string();
    let port = addr.rsplit(':').next().unwrap().to_string();
    let json = "Content-Type: application/json\r\n";

    let (status, out) = raw(
        &addr,
        &replay_request(&addr, "Content-Type: text/plain\r\n"),
    );
    assert_eq!(status, 415, "{out}");
    let (status, out) = raw(
        &addr,
        &replay_request(&addr, &format!("{json}Origin: http://evil.example\r\n")),
    );
    assert_eq!(status, 403, "{out}");
    assert!(out.contains("origin"), "{out}");
    let (status, out) = raw(&addr, &replay_request("evil.example", json));
    assert_eq!(status, 403, "{out}");
    assert!(out.contains("allowed_hosts"), "{out}");
    // DNS rebinding: a page on evil.example reads with its own name as Host.
    let (status, _) = raw(
        &addr,
        "GET /admin/dead HTTP/1.1\r\nHost: evil.example:80\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 403);

    // The router's own clients pass: same origin, JSON, an allowed Host.
    for host in [addr.clone(), format!("localhost:{port}")] {
        let (status, out) = raw(
            &addr,
            &replay_request(&host, &format!("{json}Origin: http://{host}\r\n")),
        );
        assert_eq!(status, 200, "{out}");
        assert!(out.contains("\"replayed\":0"), "{out}");
    }
    let (status, _) = raw(
        &addr,
        &format!("GET /admin/dead HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(status, 200);
}

/// Runs `serve` and returns its exit status and stderr, or `None` (killed)
/// if it is still running after `secs`.
fn serve_exits(dir: &std::path::Path, secs: u64) -> Option<(bool, String)> {
    let mut child = Command::new(BIN)
        .arg("serve")
        .arg("--config")
        .arg(dir.join("router.toml"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return Some((status.success(), err));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn serve_on_all_interfaces_needs_a_token_and_then_checks_the_host() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("router.toml"),
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"0.0.0.0:0\"\n",
    )
    .unwrap();
    let (ok, err) = serve_exits(dir.path(), 30).expect("serve must refuse to start");
    assert!(!ok);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("server.admin_listen") && err.contains("token_env"),
        "says what to fix: {err}"
    );

    let cfg = "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"0.0.0.0:0\"\n\
               [admin]\ntoken_env = \"EDGE_ADMIN_TOKEN\"\nallowed_hosts = [\"127.0.0.1\", \"router.internal\"]\n";
    let r = Router::start(dir.path(), cfg, &[("EDGE_ADMIN_TOKEN", "t0ken-edge")]);
    let port = r.admin.rsplit(':').next().unwrap().to_string();
    let addr = format!("127.0.0.1:{port}");
    let get = |host: &str, token: &str| {
        raw(
            &addr,
            &format!(
                "GET /admin/plugins HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
            ),
        )
        .0
    };
    assert_eq!(get(&addr, "t0ken-edge"), 200);
    assert_eq!(get(&format!("router.internal:{port}"), "t0ken-edge"), 200);
    assert_eq!(get(&addr, "wrong"), 401);
    assert_eq!(
        get(&format!("localhost:{port}"), "t0ken-edge"),
        403,
        "not listed"
    );
    assert_eq!(get("evil.example", "t0ken-edge"), 403);
}

#[test]
fn credentials_never_reach_the_store_or_a_plugin_and_signatures_are_masked() {
    let sink = Sink::start();
    let dir = tempfile::tempdir().unwrap();
    install_plugin(dir.path(), &fixture("relay"), "seen");
    let cfg = format!(
        r#"version = 1
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[[sources]]
name = "signed"
type_from = "/type"
verify = {{ scheme = "hmac-sha256", header = "X-Sig", secret_env = "EDGE_SECRET" }}

[[routes]]
events = ["*"]
plugins = ["seen"]

[plugin.seen]
config = {{ forward_url = "{}", include_headers = "true" }}
allow_forward = ["127.0.0.1:{}"]
"#,
        sink.url("/seen"),
        sink.port
    );
    let r = Router::start(dir.path(), &cfg, &[("EDGE_SECRET", "edge-secret")]);
    let body = r#"{"type":"credentials"}"#;
    let sig = openssl_hmac_hex("edge-secret", body.as_bytes());
    let resp: Value = client()
        .post(r.webhook("signed"))
        .header("content-type", "application/json")
        .header("x-sig", &sig)
        .header("authorization", "Bearer provider-credential")
        .header("cookie", "session=provider-cookie")
        .header("proxy-authorization", "Basic cHJveHk6Y3JlZA==")
        .header("x-request-id", "req-7")
        .body(body)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let id = resp["id"].as_str().expect("stored").to_string();

    let event = r.admin_json(&format!("/admin/events/{id}"));
    let headers = event["headers"].as_array().expect("headers shown");
    let names: Vec<&str> = headers.iter().map(|h| h[0].as_str().unwrap()).collect();
    for dropped in ["authorization", "cookie", "proxy-authorization"] {
        assert!(!names.contains(&dropped), "{dropped} stored: {event}");
    }
    let value = |name: &str| {
        headers
            .iter()
            .find(|h| h[0] == name)
            .map(|h| h[1].as_str().unwrap().to_string())
    };
    assert_eq!(value("x-request-id").as_deref(), Some("req-7"));
    assert_eq!(
        value("x-sig").as_deref(),
        Some("<masked>"),
        "the signature is masked"
    );
    let text = event.to_string();
    assert!(
        !text.contains(&sig) && !text.contains("provider-credential"),
        "{text}"
    );

    // What the plugin received (it forwards the headers it was given).
    let got = wait_for(30, "the plugin's forward", || {
        sink.on("/seen").into_iter().next()
    });
    let seen = got.body["headers"].to_string();
    assert!(seen.contains("req-7"), "{seen}");
    for secret in ["provider-credential", "provider-cookie", "cHJveHk6Y3JlZA=="] {
        assert!(!seen.contains(secret), "the plugin saw {secret}: {seen}");
    }
    // Nor does the store hold them, in the admin view or anywhere in its files.
    let stored = r.event(&id).unwrap()["headers"].to_string();
    assert!(!stored.contains("provider-credential"), "{stored}");
    for file in ["hookrouter.db", "hookrouter.db-wal"] {
        let bytes = std::fs::read(dir.path().join("data").join(file)).unwrap_or_default();
        assert!(
            !bytes.windows(19).any(|w| w == b"provider-credential"),
            "{file} holds the credential"
        );
    }
}
