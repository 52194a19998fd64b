//! End-to-end tests of the ingress's edges against hostile peers: the real
//! binary, real sockets, loopback only, bounded counts.
//! - idle and half-preface connections cannot lock out a signed event, even
//!   with the router's open-file limit at 1024 (soft and hard);
//! - silent, half-preface and idle HTTP/2 connections are closed in time;
//! - slow HTTP/2 bodies past the in-flight budget get 503 + Retry-After, memory
//!   stays bounded, and every one is accepted afterwards.

mod common;
mod slow_h2;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;

const OPTUM_SECRET: &str = "optum-edge-secret";
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Raises this test process's soft open-file limit to its hard limit (the
/// test holds more sockets than the usual 1024).
fn raise_own_nofile(need: u64) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let l = getrlimit(Resource::Nofile);
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: l.maximum,
            maximum: l.maximum,
        },
    );
    let now = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    assert!(
        now >= need,
        "this test needs {need} open files; the hard limit is {now} (raise it with ulimit -Hn)"
    );
}

/// `prlimit --pid PID --nofile=N:N` (util-linux): the router cannot raise it back.
fn prlimit(pid: u32, n: u64) {
    let out = std::process::Command::new("prlimit")
        .arg("--pid")
        .arg(pid.to_string())
        .arg(format!("--nofile={n}:{n}"))
        .output()
        .expect("prlimit must be installed (apt-get install util-linux)");
    assert!(
        out.status.success(),
        "prlimit failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&fields[3..5], &[n.to_string(), n.to_string()], "{line}");
}

/// Resident memory of a process, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

fn addr(r: &Router) -> SocketAddr {
    r.url.trim_start_matches("http://").parse().unwrap()
}

fn signed_optum(r: &Router, id: &str) -> (u16, Duration) {
    let body = serde_json::json!({
        "id": "pay-1", "source": "optum", "specVersion": "1.0",
        "type": "payment_loading_requested", "causationId": id, "data": {},
    })
    .to_string();
    let sig = openssl_hmac_hex(OPTUM_SECRET, body.as_bytes());
    let started = Instant::now();
    let status = client()
        .post(r.webhook("optum"))
        .header("content-type", "application/json")
        .header("x-optum-webhook-callback-hmac-signature", sig)
        .body(body)
        .send()
        .map(|resp| resp.status().as_u16())
        .unwrap_or_else(|e| panic!("signed event got no answer: {e}; log:\n{}", r.log()));
    (status, started.elapsed())
}

#[test]
fn idle_and_half_preface_connections_do_not_lock_out_a_signed_event() {
    const HEADER_TIMEOUT_MS: u64 = 3000;
    const HELD: usize = 1400;
    raise_own_nofile(HELD as u64 + 200);
    let sink = Sink::start();
    let dir = tempfile::tempdir().unwrap();
    install_plugin(dir.path(), &fixture("relay"), "relay");
    let cfg = format!(
        r#"version = 1
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
header_timeout_ms = {HEADER_TIMEOUT_MS}

[[sources]]
name = "optum"
preset = "optum"

[[routes]]
events = ["*"]
plugins = ["relay"]
{}"#,
        sink.relay_config("relay", "/held")
    );
    let r = Router::start(dir.path(), &cfg, &[("OPTUM_WEBHOOK_SECRET", OPTUM_SECRET)]);
    prlimit(r.child.id(), 1024);

    // 1,400 connections that send nothing, every seventh 16 of the preface's 24 bytes.
    let to = addr(&r);
    let mut held = Vec::with_capacity(HELD);
    for i in 0..HELD {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("connection {i}: {e}"));
        if i % 7 == 0 {
            let _ = s.write_all(&PREFACE[..16]);
        }
        held.push(s);
    }

    let (status, took) = signed_optum(&r, "held-1");
    assert_eq!(status, 202, "{}", r.log());
    let bound = Duration::from_millis(HEADER_TIMEOUT_MS) + Duration::from_secs(15);
    assert!(took < bound, "answered after {took:?}, over {bound:?}");
    let got = wait_for(30, "the forward of the signed event", || {
        sink.on("/held").into_iter().next()
    });
    assert_eq!(got.body["type"], "payment_loading_requested");
    assert!(
        r.log().contains("open-file limit"),
        "the limits are logged at start"
    );
    // The router never ran out of descriptors for its own use.
    let fds = std::fs::read_dir(format!("/proc/{}/fd", r.child.id()))
        .unwrap()
        .count();
    assert!(fds <= 1024, "{fds} descriptors open");
    drop(held);
    let (status, _) = signed_optum(&r, "held-2");
    assert_eq!(status, 202);
}

/// Reads until the peer closes; the time that took, or `None` after `limit`.
fn time_to_close(mut s: TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return None;
            }
            Err(_) => return Some(started.elapsed()), // reset: closed too
        }
    }
}

/// SETTINGS_MAX_CONCURRENT_STREAMS of the server's first SETTINGS frame.
fn max_concurrent_streams(s: &mut TcpStream) -> Option<u32> {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = [0u8; 9];
    s.read_exact(&mut head).unwrap();
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    assert_eq!(head[3], 4, "the server speaks first with SETTINGS");
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).unwrap();
    payload.chunks(6).find_map(|p| {
        (u16::from_be_bytes([p[0], p[1]]) == 3)
            .then(|| u32::from_be_bytes([p[2], p[3], p[4], p[5]]))
    })
}

#[test]
fn silent_half_preface_and_idle_http2_connections_are_closed_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = r#"version = 1
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
header_timeout_ms = 1000
idle_timeout_ms = 2500
http2_max_streams = 7

[[sources]]
name = "plain"
type_from = "/type"
verify = { scheme = "none" }
"#;
    let r = Router::start(dir.path(), cfg, &[]);
    let to = addr(&r);
    let silent = TcpStream::connect(to).unwrap();
    let mut half = TcpStream::connect(to).unwrap();
    half.write_all(&PREFACE[..16]).unwrap();
    let mut h2 = TcpStream::connect(to).unwrap();
    h2.write_all(PREFACE).unwrap();
    h2.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).unwrap(); // an empty SETTINGS frame
    assert_eq!(
        max_concurrent_streams(&mut h2),
        Some(7),
        "server.http2_max_streams"
    );

    let limit = Duration::from_secs(20);
    let threads: Vec<_> = [silent, half, h2]
        .into_iter()
        .map(|s| std::thread::spawn(move || time_to_close(s, limit)))
        .collect();
    let [silent, half, h2]: [Option<Duration>; 3] = threads
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect::<Vec<_>>()
        .try_into()
        .unwrap();
    let margin = Duration::from_secs(6);
    let silent = silent.expect("a silent connection is closed");
    let half = half.expect("half a preface is closed");
    let h2 = h2.expect("an idle HTTP/2 connection is closed");
    assert!(silent < Duration::from_millis(1000) + margin, "{silent:?}");
    assert!(half < Duration::from_millis(1000) + margin, "{half:?}");
    // A whole preface is a connection: the idle timeout applies, not the header one.
    assert!(
        h2 >= Duration::from_millis(2400),
        "closed before idle_timeout: {h2:?}"
    );
    assert!(h2 < Duration::from_millis(2500) + margin, "{h2:?}");
    // And the router serves on; an event type cannot forge a log line.
    let resp = client()
        .post(r.webhook("plain"))
        .body(r#"{"type":"after\nFORGED  INFO hookrouter: admin token disabled"}"#)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let log = wait_for(10, "the event's log line", || {
        let log = r.log();
        log.contains("event stored").then_some(log)
    });
    assert!(!log.lines().any(|l| l.starts_with("FORGED")), "{log}");
    assert!(
        log.contains("after\\nFORGED"),
        "escaped, not dropped: {log}"
    );
    assert!(
        log.contains("source \"plain\" accepts unsigned requests"),
        "an unsigned source is named at start: {log}"
    );
}

#[test]
fn slow_http2_bodies_past_the_in_flight_budget_get_503_and_are_all_accepted_after() {
    const MIB: u64 = 1024 * 1024;
    const BUDGET: u64 = 16 * MIB;
    const BODIES: usize = 100;
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        r#"version = 1
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
max_body_bytes = {}
max_inflight_bytes = {BUDGET}
body_timeout_ms = 120000

[[sources]]
name = "plain"
type_from = "/type"
id_from = "/id"
verify = {{ scheme = "none" }}
"#,
        2 * MIB
    );
    let r = Router::start(dir.path(), &cfg, &[]);
    let warm = client()
        .post(r.webhook("plain"))
        .body(r#"{"type":"warm","id":"w"}"#)
        .send()
        .unwrap();
    assert_eq!(warm.status().as_u16(), 202);
    let pid = r.child.id();
    let before = rss(pid);
    let peak = Arc::new(AtomicU64::new(before));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    let body = |i: usize| {
        let head = format!(r#"{{"type":"big","id":"big-{i}","pad":""#);
        let pad = MIB as usize - head.len() - 2;
        bytes::Bytes::from(format!("{head}{}\"}}", "x".repeat(pad)))
    };
    let to = addr(&r);
    let url = format!("{}/webhooks/plain", r.url);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let first: Vec<(usize, u16, bool)> = rt.block_on(async {
        let mut conns = Vec::new();
        for _ in 0..4 {
            conns.push(slow_h2::connect(to).await);
        }
        let mut tasks = Vec::new();
        for i in 0..BODIES {
            let send = conns[i % 4].clone();
            let (url, body) = (url.clone(), body(i));
            // Half declare their length (reserved up front), half are counted as read.
            tasks.push(tokio::spawn(async move {
                let (status, retry) =
                    slow_h2::post(send, url, body, 16, Duration::from_millis(100), i % 2 == 0)
                        .await;
                (i, status, retry)
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    let first_peak = peak.load(Ordering::Relaxed).saturating_sub(before);
    let refused: Vec<usize> = first.iter().filter(|f| f.1 == 503).map(|f| f.0).collect();
    assert!(
        !refused.is_empty(),
        "100 MiB against a 16 MiB budget: some must wait"
    );
    assert!(refused.len() < BODIES, "some fit the budget");
    for (i, status, retry) in &first {
        assert!(
            *status == 202 || (*status == 503 && *retry),
            "body {i}: {status} (retry-after: {retry})"
        );
    }

    // The senders retry later, as Retry-After asks: every body is accepted.
    rt.block_on(async {
        let send = slow_h2::connect(to).await;
        for i in &refused {
            let mut tries = 0;
            loop {
                let (status, _) =
                    slow_h2::post(send.clone(), url.clone(), body(*i), 4, Duration::ZERO, true)
                        .await;
                if status == 202 {
                    break;
                }
                assert_eq!(status, 503);
                tries += 1;
                assert!(tries < 30, "body {i} never accepted");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    });
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let grew = peak.load(Ordering::Relaxed).saturating_sub(before);
    assert!(
        grew < BUDGET + 64 * MIB,
        "RSS grew by {} MiB (budget {} MiB + 64 MiB)",
        grew / MIB,
        BUDGET / MIB
    );
    let stored = r.events("type=big").len();
    assert_eq!(stored, BODIES, "nothing lost");
    // Storing 100 MiB also fills the store's 64 MiB SQLite page cache: most of
    // the growth after the first round is that cache, not request bodies.
    println!(
        "in-flight budget: {} of {BODIES} refused at first; RSS grew {} MiB while they were sent, {} MiB in all",
        refused.len(),
        first_peak / MIB,
        grew / MIB
    );
}
