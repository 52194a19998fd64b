//! End-to-end tests of the outbox's edges: the real binary, the relay fixture,
//! targets on loopback only.
//! - a name that resolves to loopback is refused and never sent; the same
//!   target listed as an IP literal is sent; the router's own admin port is
//!   refused even when allowed; a plugin that sets `Host` is dead at once;
//! - a target answering 10 MiB: at most a little of it is read, memory stays
//!   flat, and the forward counts as sent by its status;
//! - every attempt of a forward carries the same `webhook-id`;
//! - a Slack-style URL never shows its secret path or query in logs,
//!   `/admin/dead` or `dead list`;
//! - by default sixteen forwards wait on a slow target at once, and no more.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

fn config(routes_and_plugins: &str, admin_port: u16) -> String {
    format!(
        r#"version = 1
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:{admin_port}"

[outbox]
max_attempts = 3
retry_base_ms = 50
timeout_ms = 5000

[[sources]]
name = "plain"
type_from = "/type"
id_from = "/id"
verify = {{ scheme = "none" }}
{routes_and_plugins}"#
    )
}

fn post(r: &Router, id: &str) {
    let resp = client()
        .post(r.webhook("plain"))
        .json(&serde_json::json!({ "type": "t", "id": id }))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
}

/// Dead entries of `/admin/dead`, by plugin.
fn dead_by_plugin(r: &Router, plugin: &str) -> Option<Value> {
    r.admin_json("/admin/dead")["dead"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["plugin"] == plugin)
        .cloned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn forwards_reach_only_the_addresses_their_policy_allows() {
    let sink = Sink::start();
    let p = sink.port;
    let admin_port = free_port();
    let dir = tempfile::tempdir().unwrap();
    for name in ["byname", "byip", "private", "own", "hostheader"] {
        install_plugin(dir.path(), &fixture("relay"), name);
    }
    let plugins = format!(
        r#"
[[routes]]
events = ["*"]
plugins = ["byname", "byip", "private", "own", "hostheader"]

[plugin.byname]
config = {{ forward_url = "http://localhost:{p}/byname" }}
allow_forward = ["localhost:{p}"]

[plugin.byip]
config = {{ forward_url = "http://127.0.0.1:{p}/byip" }}
allow_forward = ["127.0.0.1:{p}"]

[plugin.private]
config = {{ forward_url = "http://localhost:{p}/private" }}
allow_forward = ["localhost:{p}"]
allow_private_network = true

[plugin.own]
config = {{ forward_url = "http://127.0.0.1:{admin_port}/admin/dead/replay" }}
allow_forward = ["127.0.0.1"]
allow_private_network = true

[plugin.hostheader]
config = {{ forward_url = "http://127.0.0.1:{p}/hostheader", forward_headers = '{{"Host": "evil.example"}}' }}
allow_forward = ["127.0.0.1:{p}"]
"#
    );
    let r = Router::start(dir.path(), &config(&plugins, admin_port), &[]);
    post(&r, "e-1");

    wait_for(30, "the allowed forwards", || {
        (sink.on("/byip").len() == 1 && sink.on("/private").len() == 1).then_some(())
    });
    let byname = wait_for(30, "the forward to a name on loopback to die", || {
        dead_by_plugin(&r, "byname")
    });
    let own = wait_for(30, "the forward to the admin port to die", || {
        dead_by_plugin(&r, "own")
    });
    let host = wait_for(30, "the forward that sets Host to die", || {
        dead_by_plugin(&r, "hostheader")
    });
    let err = |d: &Value| d["last_error"].as_str().unwrap_or("").to_string();
    assert!(err(&byname).contains("loopback"), "{byname}");
    assert!(
        err(&byname).contains("allow_private_network"),
        "says how: {byname}"
    );
    assert!(err(&own).contains("own listeners"), "{own}");
    assert!(err(&host).contains("\"Host\""), "{host}");
    // Refusals are final: one attempt at most, never a retry.
    for d in [&byname, &own, &host] {
        assert!(d["attempts"].as_u64().unwrap() <= 1, "{d}");
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        sink.on("/byname").is_empty(),
        "a refused forward is never sent"
    );
    assert!(sink.on("/hostheader").is_empty());
    // The admin port was never reached: its replay would have revived them.
    for plugin in ["byname", "own", "hostheader"] {
        assert!(dead_by_plugin(&r, plugin).is_some(), "{plugin} still dead");
    }
    assert_eq!(sink.count(), 2);
}

/// A raw HTTP/1.1 target on loopback, on a thread of its own: for each
/// connection it reads the request head (and a small body), then hands the
/// socket to `answer`. Returns its port.
fn raw_target<F, Fut>(answer: F) -> u16
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    use tokio::io::AsyncReadExt;
    let answer = Arc::new(answer);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap().port()).unwrap();
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                let answer = answer.clone();
                tokio::spawn(async move {
                    let mut req = Vec::new();
                    let mut buf = [0u8; 8192];
                    while !req.windows(4).any(|x| x == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => req.extend_from_slice(&buf[..n]),
                        }
                    }
                    answer(s).await;
                });
            }
        });
    });
    rx.recv().unwrap()
}

/// A target that answers every request with `size` bytes, 64 KiB at a time;
/// records how many bytes of each answer it managed to write.
fn big_answer_target(size: usize) -> (u16, Arc<Mutex<Vec<usize>>>) {
    use tokio::io::AsyncWriteExt;
    let written: Arc<Mutex<Vec<usize>>> = Arc::default();
    let w = written.clone();
    let port = raw_target(move |mut s| {
        let w = w.clone();
        async move {
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {size}\r\n\r\n");
            if s.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let chunk = vec![b'x'; 64 * 1024];
            let mut sent = 0;
            while sent < size {
                if s.write_all(&chunk).await.is_err() {
                    break;
                }
                sent += chunk.len();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            w.lock().unwrap().push(sent);
        }
    });
    (port, written)
}

fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        * 1024
}

#[test]
fn a_ten_mib_answer_is_cut_off_memory_stays_flat_and_the_forward_counts_as_sent() {
    const MIB: usize = 1024 * 1024;
    const FORWARDS: usize = 5;
    let (port, written) = big_answer_target(10 * MIB);
    let dir = tempfile::tempdir().unwrap();
    install_plugin(dir.path(), &fixture("relay"), "big");
    let plugins = format!(
        r#"
[[routes]]
events = ["*"]
plugins = ["big"]

[plugin.big]
config = {{ forward_url = "http://127.0.0.1:{port}/big" }}
allow_forward = ["127.0.0.1:{port}"]
"#
    );
    let r = Router::start(dir.path(), &config(&plugins, 0), &[]);
    post(&r, "warm");
    let done = |n: u64| {
        let r = &r;
        move || -> Option<()> { (r.counts()["forwards_done"].as_u64().unwrap() >= n).then_some(()) }
    };
    wait_for(30, "the first forward", done(1));
    let before = rss(r.child.id());
    for i in 0..FORWARDS {
        post(&r, &format!("big-{i}"));
    }
    wait_for(60, "every forward sent", done(1 + FORWARDS as u64));
    let grew = rss(r.child.id()).saturating_sub(before);
    assert!(grew < 16 * MIB as u64, "RSS grew by {} MiB", grew >> 20);
    wait_for(30, "the target to see every answer end", || {
        (written.lock().unwrap().len() > FORWARDS).then_some(())
    });
    for sent in written.lock().unwrap().iter() {
        assert!(
            *sent < 4 * MIB,
            "the router kept reading: {sent} of {} bytes written",
            10 * MIB
        );
    }
    // Sent by status, not retried: every forward once, done with 200.
    for e in r.events("") {
        for f in r.event(e["id"].as_str().unwrap()).unwrap()["forwards"]
            .as_array()
            .unwrap()
        {
            assert_eq!(
                (&f["attempts"], &f["status"]),
                (&json!(1), &json!(200)),
                "{f}"
            );
        }
    }
}

#[test]
fn every_attempt_of_a_forward_carries_the_same_webhook_id() {
    let sink = Sink::start();
    let dir = tempfile::tempdir().unwrap();
    install_plugin(dir.path(), &fixture("relay"), "flaky");
    let plugins = format!(
        "\n[[routes]]\nevents = [\"*\"]\nplugins = [\"flaky\"]\n{}",
        sink.relay_config("flaky", "/fail/once-more")
    );
    let r = Router::start(dir.path(), &config(&plugins, 0), &[]);
    post(&r, "w-1");
    let got = wait_for(30, "three attempts", || {
        let got = sink.on("/fail/once-more");
        (got.len() == 3).then_some(got)
    });
    let header = |rec: &Received, name: &str| {
        rec.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {name} header: {:?}", rec.headers))
    };
    let ids: Vec<String> = got.iter().map(|g| header(g, "webhook-id")).collect();
    assert!(ids.iter().all(|id| id == &ids[0]), "{ids:?}");
    let forward_id = header(&got[0], "x-hookrouter-forward-id");
    assert_eq!(ids[0], forward_id, "the id of the forward in the store");
    let attempts: Vec<i64> = got
        .iter()
        .map(|g| g.body["attempt"].as_i64().unwrap())
        .collect();
    assert_eq!(attempts, [1, 1, 1], "one delivery, three forward attempts");
}

#[test]
fn a_slack_style_url_never_shows_its_secret_in_logs_admin_or_dead_list() {
    let sink = Sink::start();
    let p = sink.port;
    let dir = tempfile::tempdir().unwrap();
    install_plugin(dir.path(), &fixture("relay"), "slack");
    install_plugin(dir.path(), &fixture("relay"), "local");
    // `slack` is refused before any lookup (its host is not allowed): no
    // traffic leaves the machine. `local` is sent, fails, and dies.
    let plugins = format!(
        r#"
[[routes]]
events = ["*"]
plugins = ["slack", "local"]

[plugin.slack]
config = {{ forward_url = "https://hooks.slack.com/services/T0/B0/SECRET?x=y" }}
allow_forward = ["hooks.example.com"]

[plugin.local]
config = {{ forward_url = "http://127.0.0.1:{p}/fail/T0/B0/SECRET?x=y" }}
allow_forward = ["127.0.0.1:{p}"]
"#
    );
    let r = Router::start(dir.path(), &config(&plugins, 0), &[]);
    post(&r, "s-1");
    wait_for(30, "both forwards dead", || {
        (dead_by_plugin(&r, "slack").is_some() && dead_by_plugin(&r, "local").is_some())
            .then_some(())
    });
    assert_eq!(
        sink.on("/fail/T0/B0/SECRET").len(),
        3,
        "the target itself gets the whole URL"
    );
    let admin = client()
        .get(format!("{}/admin/dead", r.admin))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let (ok, list, err) = cli(dir.path(), &["dead", "list"]);
    assert!(ok, "{err}");
    let mut shown = vec![
        ("router.log", r.log()),
        ("/admin/dead", admin.clone()),
        ("dead list", list.clone()),
    ];
    for d in r.admin_json("/admin/dead")["dead"].as_array().unwrap() {
        let id = d["id"].as_str().unwrap();
        let one = client()
            .get(format!("{}/admin/dead/{id}", r.admin))
            .send()
            .unwrap()
            .text()
            .unwrap();
        shown.push(("/admin/dead/{id}", one));
        let (_, show, _) = cli(dir.path(), &["dead", "show", id]);
        shown.push(("dead show", show));
    }
    for (what, text) in &shown {
        assert!(!text.contains("SECRET"), "{what} shows the secret:\n{text}");
        assert!(!text.contains("x=y"), "{what} shows the query:\n{text}");
    }
    for text in [&admin, &list] {
        assert!(
            text.contains("https://hooks.slack.com:443/services/…"),
            "{text}"
        );
        assert!(
            text.contains(&format!("http://127.0.0.1:{p}/fail/…")),
            "{text}"
        );
    }
    assert!(
        r.log().contains("/services/…"),
        "the log names the target, redacted"
    );
}

/// What [`slow_target`] saw.
#[derive(Default)]
struct Held {
    now: usize,
    most: usize,
    answered: usize,
}

/// A target that holds each request `hold` before it answers 200 (and closes
/// the connection); records the most requests it held at once, and how many
/// it answered.
fn slow_target(hold: Duration) -> (u16, Arc<Mutex<Held>>) {
    use tokio::io::AsyncWriteExt;
    let seen: Arc<Mutex<Held>> = Arc::default();
    let held = seen.clone();
    let port = raw_target(move |mut s| {
        let held = held.clone();
        async move {
            {
                let mut g = held.lock().unwrap();
                g.now += 1;
                g.most = g.most.max(g.now);
            }
            tokio::time::sleep(hold).await;
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await;
            let mut g = held.lock().unwrap();
            g.now -= 1;
            g.answered += 1;
        }
    });
    (port, seen)
}

#[test]
fn by_default_sixteen_forwards_wait_on_a_slow_target_at_once_and_no_more() {
    let (port, seen) = slow_target(Duration::from_millis(1500));
    let dir = tempfile::tempdir().unwrap();
    install_plugin(dir.path(), &fixture("relay"), "slowpoke");
    // `[outbox]` without `workers`: the default.
    let plugins = format!(
        "\n[[routes]]\nevents = [\"*\"]\nplugins = [\"slowpoke\"]\n\n[plugin.slowpoke]\nconfig = {{ forward_url = \"http://127.0.0.1:{port}/slow\" }}\nallow_forward = [\"127.0.0.1:{port}\"]\n"
    );
    let r = Router::start(dir.path(), &config(&plugins, 0), &[]);
    for i in 0..40 {
        post(&r, &format!("s-{i}"));
    }
    wait_for(60, "all 40 forwards answered", || {
        (seen.lock().unwrap().answered == 40).then_some(())
    });
    let most = seen.lock().unwrap().most;
    // Forwards are network waits, not plugin runs: plugins.workers (4) does
    // not bound them; `[outbox] workers` (default 16) does.
    assert_eq!(most, 16, "forwards held by the slow target at once");
}
