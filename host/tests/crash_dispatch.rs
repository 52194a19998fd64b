//! Crash safety from 202 to effect: 1,000 events that each cause one forward;
//! the router is SIGKILLed while they are being processed and restarted; every
//! acked event's forward must reach the sink at least once. Duplicates are
//! allowed (at-least-once) and reported; losses must be zero.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::*;
use serde_json::json;

const EVENTS: usize = 1000;

#[test]
fn every_acked_event_is_forwarded_at_least_once_across_a_sigkill() {
    let sink = Sink::start();
    let dir = tempfile::tempdir().unwrap();
    install_plugin(dir.path(), &fixture("relay"), "fwd");
    let cfg = format!(
        r#"version = 1
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[plugins]
workers = 2
retry_base_ms = 50

[outbox]
workers = 2
retry_base_ms = 50

[[sources]]
name = "test"
type_from = "/type"
id_from = "/id"
verify = {{ scheme = "none" }}

[[routes]]
events = ["*"]
plugins = ["fwd"]
{}"#,
        sink.relay_config("fwd", "/crash")
    );
    let mut router = Router::start(dir.path(), &cfg, &[]);
    let url = router.webhook("test");

    let next = Arc::new(AtomicUsize::new(0));
    let acked: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (url, next, acked) = (url.clone(), next.clone(), acked.clone());
            std::thread::spawn(move || {
                let c = client();
                loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    if n >= EVENTS {
                        break;
                    }
                    let ext = format!("c-{n}");
                    if let Ok(resp) = c
                        .post(&url)
                        .json(&json!({ "type": "payment.made", "id": ext, "n": n }))
                        .send()
                        && resp.status().as_u16() == 202
                    {
                        let v: serde_json::Value = resp.json().unwrap();
                        acked
                            .lock()
                            .unwrap()
                            .insert(v["id"].as_str().unwrap().to_string(), ext);
                    }
                }
            })
        })
        .collect();
    // Kill while forwards are flowing: after some have arrived, before all have.
    wait_for(60, "forwards to start arriving", || {
        (sink.count() >= 150).then_some(())
    });
    router.kill();
    let at_kill = sink.count();
    for c in clients {
        c.join().unwrap();
    }
    let acked: HashSet<String> = acked.lock().unwrap().keys().cloned().collect();
    assert!(
        at_kill < acked.len(),
        "the kill landed after processing ended ({at_kill} forwards)"
    );

    let router = Router::start_existing(dir.path(), &[]);
    let forwarded = || -> HashSet<String> {
        sink.on("/crash")
            .iter()
            .filter_map(|r| r.body["event_id"].as_str().map(String::from))
            .collect()
    };
    wait_for(120, "every acked event to be forwarded", || {
        acked.is_subset(&forwarded()).then_some(())
    });
    // One snapshot for both counts (more forwards may still arrive meanwhile).
    let snapshot = sink.on("/crash");
    let received = snapshot.len();
    let distinct: HashSet<String> = snapshot
        .iter()
        .filter_map(|r| r.body["event_id"].as_str().map(String::from))
        .collect();
    let lost = acked.difference(&distinct).count();
    println!(
        "crash test (dispatch): {} events acked, {at_kill} forwards had arrived when SIGKILL landed; \
         after restart {} distinct events forwarded in {received} requests: {} duplicates, {lost} lost",
        acked.len(),
        distinct.len(),
        received - distinct.len()
    );
    assert_eq!(lost, 0);
    drop(router);
}
