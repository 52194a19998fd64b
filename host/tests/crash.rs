//! Crash safety of ingress: every event answered 2xx survives a SIGKILL.
//!
//! 16 concurrent clients send 2,400 signed Optum events; the router is killed
//! with SIGKILL part-way; it restarts on the same SQLite file, and every event
//! that got a 2xx must be in the store with its delivery.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const SECRET: &str = "crash-test-secret";
const CLIENTS: usize = 16;
const EVENTS: usize = 2400;

fn config() -> String {
    r#"version = 1
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[[sources]]
name = "optum"
preset = "optum"

[[routes]]
events = ["payment_*"]
plugins = ["not_installed_yet"]
"#
    .to_string()
}

fn envelope(n: usize) -> (String, Vec<u8>) {
    let causation = format!("crash-{n:05}");
    let body = serde_json::json!({
        "id": format!("PAY-{n:06}"),
        "source": "optum-connections",
        "specVersion": "1.0",
        "type": "payment_loading_requested",
        "dataContentType": "application/json",
        "time": "2026-11-28T15:25:02.1187342Z",
        "causationId": causation,
        "data": { "amount": n, "status": "Loading" }
    });
    (causation, serde_json::to_vec(&body).unwrap())
}

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[test]
fn acked_events_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("OPTUM_WEBHOOK_SECRET", SECRET)];
    let mut router = Router::start(dir.path(), &config(), &env);
    let url = router.webhook("optum");

    let next = Arc::new(AtomicUsize::new(0));
    let acked: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let failed = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (url, next, acked, failed, stop) = (
                url.clone(),
                next.clone(),
                acked.clone(),
                failed.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || {
                let c = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap();
                loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    if n >= EVENTS || stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let (causation, body) = envelope(n);
                    let sig = sign(&body);
                    let resp = c
                        .post(&url)
                        .header("X-Optum-Webhook-Callback-Hmac-Signature", sig)
                        .body(body)
                        .send();
                    match resp {
                        Ok(r) if r.status().is_success() => {
                            let v: serde_json::Value = r.json().unwrap();
                            acked
                                .lock()
                                .unwrap()
                                .insert(causation, v["id"].as_str().unwrap().to_string());
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            })
        })
        .collect();

    // Kill part-way: once about half the events were acked.
    wait_for(120, "half the events acked", || {
        (acked.lock().unwrap().len() >= EVENTS / 2).then_some(())
    });
    router.kill();
    let acked_at_kill = acked.lock().unwrap().len();
    // Clients keep sending into the dead port for a moment, then give up.
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().unwrap();
    }
    let sent = next.load(Ordering::SeqCst).min(EVENTS);
    let acked = acked.lock().unwrap().clone();
    assert!(
        sent >= EVENTS / 2 && failed.load(Ordering::SeqCst) > 0,
        "the kill did not land mid-stream"
    );

    // Restart on the same store, and check it serves and has every acked event.
    let mut router = Router::start_existing(dir.path(), &env);
    let (causation, body) = envelope(EVENTS + 1);
    let resp = client()
        .post(router.webhook("optum"))
        .header("X-Optum-Webhook-Callback-Hmac-Signature", sign(&body))
        .body(body)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202, "{causation} after restart");
    let mut missing = Vec::new();
    for (causation, id) in &acked {
        match router.event(id) {
            Some(e)
                if e["external_id"] == causation.as_str()
                    && e["deliveries"]
                        .as_array()
                        .is_some_and(|d| d.len() == 1 && d[0]["plugin"] == "not_installed_yet") => {
            }
            other => missing.push(format!("{causation}: {other:?}")),
        }
    }
    assert!(router.terminate().success());
    println!(
        "crash test: {sent} events sent by {CLIENTS} clients, {} acked ({acked_at_kill} when SIGKILL landed), {} checked in the store after restart, {} lost",
        acked.len(),
        acked.len() - missing.len(),
        missing.len()
    );
    assert!(missing.is_empty(), "acked events lost: {missing:?}");
}
