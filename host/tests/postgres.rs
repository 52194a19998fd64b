//! Several replicas on one PostgreSQL database, end to end: the real binary,
//! signed Optum events, the relay plugin forwarding to a sink, and assertions
//! through the admin API only. The database is a throwaway cluster (or the
//! server `HOOKROUTER_TEST_DATABASE_URL` names); the restart test always runs
//! a cluster of its own, since it stops and starts it.
//!
//! Leases in these configs: `timeout_ms = 200` gives dispatch leases of
//! 200 ms × 42 + 30 s ≈ 38 s, and `[outbox] timeout_ms = 500` forward leases of
//! ≈ 35 s, so a dead replica's work is taken over within about 40 s.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use hmac::Mac;
use serde_json::{Value, json};

const SECRET: &str = "pg-e2e-secret";

fn sign(body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// An Optum envelope whose event id (`causationId`) is `causation`.
fn envelope(causation: &str, n: usize) -> Vec<u8> {
    json!({
        "id": format!("pay-{n}"),
        "source": "optum-connections",
        "specVersion": "1.0",
        "type": "payment_made",
        "dataContentType": "application/json",
        "data": { "n": n, "amount": 10 + n },
        "time": "2026-01-01T00:00:00Z",
        "causationId": causation,
    })
    .to_string()
    .into_bytes()
}

/// One replica: its own folder (router.toml, plugins/) on the shared database.
struct Replica {
    router: Router,
    _dir: tempfile::TempDir,
}

/// Every event is routed to each of `routed`, (plugin, sink path) pairs: the
/// relay fixture forwarding to that path. Replicas share this router.toml, as
/// they should (the replica that sends a forward checks it against its own
/// `allow_forward`); only the plugins in `installed` are in its folder.
fn replica(url: &str, sink: &Sink, routed: &[(&str, &str)], installed: &[&str]) -> Replica {
    let dir = tempfile::tempdir().unwrap();
    let mut plugins = String::new();
    for (name, path) in routed {
        if installed.contains(name) {
            install_plugin(dir.path(), &fixture("relay"), name);
        }
        plugins.push_str(&sink.relay_config(name, path));
    }
    let routed: Vec<String> = routed.iter().map(|(p, _)| format!("{p:?}")).collect();
    let cfg = format!(
        r#"version = 1
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[store]
backend = "postgres"

[plugins]
workers = 4
timeout_ms = 200
retry_base_ms = 50

[outbox]
workers = 2
timeout_ms = 500
retry_base_ms = 50

[[sources]]
name = "optum"
preset = "optum"

[[routes]]
events = ["*"]
plugins = [{}]
{plugins}"#,
        routed.join(", ")
    );
    let router = Router::start(
        dir.path(),
        &cfg,
        &[
            ("HOOKROUTER_DATABASE_URL", url),
            ("OPTUM_WEBHOOK_SECRET", SECRET),
        ],
    );
    if !installed.is_empty() {
        // With PostgreSQL the compile cache lives beside router.toml.
        assert!(dir.path().join("plugin-cache").is_dir(), "{}", router.log());
        assert!(!dir.path().join("data").exists());
    }
    Replica { router, _dir: dir }
}

/// What a load run saw.
#[derive(Default)]
struct Seen {
    /// Event id → the event's number, for every 2xx.
    acked: HashMap<String, usize>,
    /// 503 answers, and how many of them carried `Retry-After`.
    unavailable: usize,
    with_retry_after: usize,
}

/// Sends events `0..total` from `threads` clients, event `n` first to replica
/// `n % len`; a refused connection or a 5xx moves it to the next replica after
/// a short pause (as a provider's retry behind a load balancer would). Each
/// event is retried for at most `give_up`.
fn load(
    hooks: Arc<Vec<String>>,
    total: usize,
    threads: usize,
    give_up: Duration,
    seen: Arc<Mutex<Seen>>,
) -> Vec<std::thread::JoinHandle<()>> {
    let next = Arc::new(AtomicUsize::new(0));
    (0..threads)
        .map(|_| {
            let (hooks, next, seen) = (hooks.clone(), next.clone(), seen.clone());
            std::thread::spawn(move || {
                let c = client();
                loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    if n >= total {
                        return;
                    }
                    let body = envelope(&format!("cause-{n}"), n);
                    let sig = sign(&body);
                    let started = Instant::now();
                    let mut target = n;
                    loop {
                        let url = &hooks[target % hooks.len()];
                        let resp = c
                            .post(url)
                            .header("content-type", "application/json")
                            .header("X-Optum-Webhook-Callback-Hmac-Signature", &sig)
                            .body(body.clone())
                            .send();
                        match resp {
                            Ok(r) if r.status().is_success() => {
                                let v: Value = r.json().unwrap();
                                let id = v["id"].as_str().unwrap().to_string();
                                seen.lock().unwrap().acked.insert(id, n);
                                break;
                            }
                            Ok(r) => {
                                let code = r.status().as_u16();
                                assert_eq!(code, 503, "event {n}: unexpected {code}");
                                let mut s = seen.lock().unwrap();
                                s.unavailable += 1;
                                s.with_retry_after +=
                                    usize::from(r.headers().contains_key("retry-after"));
                            }
                            Err(_) => {} // a replica that is gone
                        }
                        assert!(
                            started.elapsed() < give_up,
                            "event {n} was not accepted within {give_up:?}"
                        );
                        target += 1;
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            })
        })
        .collect()
}

/// [`wait_for`], printing the replicas' logs when it times out.
fn wait_logged<T>(secs: u64, what: &str, logs: &[&Router], f: impl FnMut() -> Option<T>) -> T {
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| wait_for(secs, what, f)));
    match run {
        Ok(v) => v,
        Err(p) => {
            for (i, r) in logs.iter().enumerate() {
                eprintln!("--- replica {i} log ---\n{}", r.log());
            }
            std::panic::resume_unwind(p)
        }
    }
}

/// The event ids whose forward reached the sink at `path`.
fn forwarded(sink: &Sink, path: &str) -> HashSet<String> {
    sink.on(path)
        .iter()
        .filter_map(|r| r.body["event_id"].as_str().map(String::from))
        .collect()
}

/// The open (pending) deliveries and forwards of an event: (event id, id, leased).
fn open_work(detail: &Value) -> Vec<(String, String, bool)> {
    let event = detail["id"].as_str().unwrap_or_default().to_string();
    ["deliveries", "forwards"]
        .iter()
        .flat_map(|k| detail[k].as_array().cloned().unwrap_or_default())
        .filter(|x| x["state"] == "pending")
        .map(|x| {
            let id = x["id"].as_str().unwrap().to_string();
            (event.clone(), id, x["leased"] == true)
        })
        .collect()
}

/// Every pending delivery or forward (event id, id, leased) the store has.
fn pending_work(r: &Router) -> Vec<(String, String, bool)> {
    r.events("status=pending")
        .iter()
        .filter_map(|e| r.event(e["id"].as_str()?))
        .flat_map(|d| open_work(&d))
        .collect()
}

#[test]
fn three_replicas_share_one_database_and_survive_a_sigkill() {
    const EVENTS: usize = 3000;
    let (_db, url) = pg_cluster::shared().fresh_database("three");
    let sink = Sink::start();
    let mut replicas: Vec<Replica> = (0..3)
        .map(|_| replica(&url, &sink, &[("fwd", "/slow-fwd")], &["fwd"]))
        .collect();
    let hooks = Arc::new(
        replicas
            .iter()
            .map(|r| r.router.webhook("optum"))
            .collect::<Vec<_>>(),
    );
    let seen = Arc::new(Mutex::new(Seen::default()));
    let clients = load(hooks, EVENTS, 6, Duration::from_secs(60), seen.clone());

    // SIGKILL one replica while events flow in and forwards flow out: the sink
    // answers after 50 ms, so the outboxes (2 workers each) fall behind and
    // each holds forwards leased ahead.
    wait_for(120, "a backlog of forwards", || {
        let c = replicas[0].router.counts();
        (sink.count() >= 100 && c["forwards_pending"].as_u64() >= Some(150)).then_some(())
    });
    replicas[2].router.kill();
    let at_kill = sink.count();
    for c in clients {
        c.join().unwrap();
    }
    let acked: HashMap<String, usize> = seen.lock().unwrap().acked.clone();
    assert_eq!(
        acked.len(),
        EVENTS,
        "every event was accepted by some replica"
    );
    assert!(at_kill < EVENTS, "the kill landed after processing ended");

    // What is leased right after the kill and still leased a few seconds
    // later was leased by the dead replica: the survivors finish theirs in
    // milliseconds (a forward takes 50 ms), the dead one's wait for expiry.
    let survivor = &replicas[0].router;
    let leased = || -> HashSet<(String, String)> {
        pending_work(survivor)
            .into_iter()
            .filter(|(_, _, leased)| *leased)
            .map(|(event, id, _)| (event, id))
            .collect()
    };
    let first = leased();
    std::thread::sleep(Duration::from_secs(3));
    let held: HashSet<(String, String)> = first.intersection(&leased()).cloned().collect();
    assert!(
        !held.is_empty(),
        "the killed replica held no lease when it died"
    );

    // After those leases expire the survivors take the work over: every
    // acknowledged event reaches the sink at least once.
    let acked_ids: HashSet<String> = acked.keys().cloned().collect();
    let logs: Vec<&Router> = replicas.iter().map(|r| &r.router).collect();
    wait_logged(120, "every acked event to be forwarded", &logs, || {
        acked_ids
            .is_subset(&forwarded(&sink, "/slow-fwd"))
            .then_some(())
    });
    wait_for(60, "every delivery and forward to finish", || {
        (survivor.counts()["deliveries_pending"] == 0 && survivor.counts()["forwards_pending"] == 0)
            .then_some(())
    });

    for (event, id) in &held {
        let d = survivor.event(event).unwrap();
        let entry = ["deliveries", "forwards"]
            .iter()
            .flat_map(|k| d[k].as_array().cloned().unwrap_or_default())
            .find(|x| x["id"] == id.as_str())
            .unwrap();
        assert_eq!(entry["state"], "done", "taken over and finished: {entry}");
    }

    // No delivery or forward was recorded done twice.
    let mut duplicates_sent = 0;
    for id in acked.keys() {
        let d = replicas[1].router.event(id).expect("acked event stored");
        let deliveries = d["deliveries"].as_array().unwrap();
        let forwards = d["forwards"].as_array().unwrap();
        assert_eq!((deliveries.len(), forwards.len()), (1, 1), "{d}");
        for (x, ok) in [(&deliveries[0], "ok"), (&forwards[0], "sent")] {
            assert_eq!(x["state"], "done", "{d}");
            let recorded = x["history"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a["outcome"] == ok)
                .count();
            assert_eq!(recorded, 1, "recorded done once: {d}");
        }
    }
    let received = sink.on("/slow-fwd").len();
    duplicates_sent += received - acked.len();
    println!(
        "three replicas: {EVENTS} events acked; SIGKILL after {at_kill} forwards; {} leases of the \
         dead replica taken over; {received} forwards received ({duplicates_sent} duplicates, 0 lost)",
        held.len()
    );
}

#[test]
fn a_provider_retry_on_another_replica_is_a_duplicate() {
    let (_db, url) = pg_cluster::shared().fresh_database("dedupe");
    let sink = Sink::start();
    let a = replica(&url, &sink, &[("fwd", "/dup")], &["fwd"]);
    let b = replica(&url, &sink, &[("fwd", "/dup")], &["fwd"]);
    const N: usize = 20;
    let mut ids = HashSet::new();
    for n in 0..N {
        let body = envelope(&format!("same-{n}"), n);
        let sig = sign(&body);
        // The same event, at the same moment, to both replicas.
        let sends: Vec<_> = [a.router.webhook("optum"), b.router.webhook("optum")]
            .into_iter()
            .map(|url| {
                let (body, sig) = (body.clone(), sig.clone());
                std::thread::spawn(move || {
                    let r = client()
                        .post(url)
                        .header("content-type", "application/json")
                        .header("X-Optum-Webhook-Callback-Hmac-Signature", sig)
                        .body(body)
                        .send()
                        .unwrap();
                    (r.status().as_u16(), r.json::<Value>().unwrap())
                })
            })
            .collect();
        let answers: Vec<(u16, Value)> = sends.into_iter().map(|t| t.join().unwrap()).collect();
        let mut codes: Vec<u16> = answers.iter().map(|(c, _)| *c).collect();
        codes.sort();
        assert_eq!(codes, [200, 202], "{answers:?}");
        assert_eq!(answers[0].1["id"], answers[1].1["id"], "{answers:?}");
        let dup = answers.iter().find(|(c, _)| *c == 200).unwrap();
        assert_eq!(dup.1["duplicate"], true);
        ids.insert(answers[0].1["id"].as_str().unwrap().to_string());
    }
    assert_eq!(
        a.router.events("source=optum").len(),
        N,
        "one stored event each"
    );
    wait_for(60, "every forward to be sent", || {
        (a.router.counts()["forwards_done"] == N as u64).then_some(())
    });
    for id in &ids {
        let d = b.router.event(id).unwrap();
        assert_eq!(d["deliveries"].as_array().unwrap().len(), 1, "{d}");
        assert_eq!(d["forwards"].as_array().unwrap().len(), 1, "{d}");
    }
    // Every forward is done, so none is sent again: one each at the sink.
    assert_eq!(sink.on("/dup").len(), N);
    assert_eq!(forwarded(&sink, "/dup"), ids);
}

#[test]
fn a_replica_claims_only_deliveries_of_plugins_it_has() {
    let (_db, url) = pg_cluster::shared().fresh_database("plugins");
    let sink = Sink::start();
    // Both are routed; A has only y.
    let routed = [("x", "/x"), ("y", "/y")];
    let a = replica(&url, &sink, &routed, &["y"]);
    const N: usize = 20;
    let seen = Arc::new(Mutex::new(Seen::default()));
    for c in load(
        Arc::new(vec![a.router.webhook("optum")]),
        N,
        2,
        Duration::from_secs(30),
        seen.clone(),
    ) {
        c.join().unwrap();
    }
    let ids: HashSet<String> = seen.lock().unwrap().acked.keys().cloned().collect();
    wait_for(60, "y's forwards", || {
        (forwarded(&sink, "/y") == ids).then_some(())
    });
    // A ran y; x's deliveries were never claimed: no lease, no attempt.
    let x_of = |r: &Router, id: &str| -> Value {
        r.event(id).unwrap()["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["plugin"] == "x")
            .cloned()
            .unwrap()
    };
    std::thread::sleep(Duration::from_millis(500));
    for id in &ids {
        let x = x_of(&a.router, id);
        assert_eq!(
            (
                x["state"].as_str(),
                x["leased"].as_bool(),
                x["attempts"].as_u64()
            ),
            (Some("pending"), Some(false), Some(0)),
            "{x}"
        );
    }
    // B has x: it runs them.
    let b = replica(&url, &sink, &routed, &["x", "y"]);
    wait_logged(60, "x's forwards", &[&a.router, &b.router], || {
        (forwarded(&sink, "/x") == ids).then_some(())
    });
    for id in &ids {
        assert_eq!(x_of(&b.router, id)["state"], "done");
    }
}

#[test]
fn a_replica_stopped_with_sigterm_leaves_no_lease_behind() {
    const N: usize = 200;
    let (_db, url) = pg_cluster::shared().fresh_database("sigterm");
    let sink = Sink::start();
    // A alone, with a slow target: its outbox falls behind and leases ahead.
    // On SIGTERM it finishes what it holds or gives it back (lib.rs).
    let mut a = replica(&url, &sink, &[("fwd", "/slow-term")], &["fwd"]);
    let seen = Arc::new(Mutex::new(Seen::default()));
    for c in load(
        Arc::new(vec![a.router.webhook("optum")]),
        N,
        4,
        Duration::from_secs(30),
        seen.clone(),
    ) {
        c.join().unwrap();
    }
    let b = replica(&url, &sink, &[("fwd", "/slow-term")], &["fwd"]);
    wait_for(60, "forwards to start arriving", || {
        (sink.count() >= 10).then_some(())
    });
    assert!(a.router.terminate().success());
    let stopped = Instant::now();
    // B finishes everything long before A's leases (≈ 35 s) would have expired.
    let ids: HashSet<String> = seen.lock().unwrap().acked.keys().cloned().collect();
    wait_logged(60, "every forward", &[&b.router], || {
        ids.is_subset(&forwarded(&sink, "/slow-term")).then_some(())
    });
    let took = stopped.elapsed();
    assert!(
        took < Duration::from_secs(20),
        "the rest took {took:?}: A left leases behind to expire"
    );
}

#[test]
fn ingress_answers_503_while_the_database_restarts_and_recovers_by_itself() {
    const EVENTS: usize = 2000;
    let cluster =
        pg_cluster::Cluster::start().unwrap_or_else(|e| panic!("PostgreSQL tests cannot run: {e}"));
    let url = cluster.create_database("restart");
    let sink = Sink::start();
    let mut replicas: Vec<Replica> = (0..2)
        .map(|_| replica(&url, &sink, &[("fwd", "/r")], &["fwd"]))
        .collect();
    let hooks = Arc::new(
        replicas
            .iter()
            .map(|r| r.router.webhook("optum"))
            .collect::<Vec<_>>(),
    );
    let seen = Arc::new(Mutex::new(Seen::default()));
    let clients = load(hooks, EVENTS, 4, Duration::from_secs(90), seen.clone());
    wait_for(60, "events to be acked", || {
        (seen.lock().unwrap().acked.len() >= 300).then_some(())
    });

    cluster.stop();
    wait_for(30, "ingress to answer 503", || {
        (seen.lock().unwrap().unavailable > 0).then_some(())
    });
    let ready = client()
        .get(format!("{}/readyz", replicas[0].router.admin))
        .send()
        .unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    let health: Value = ready.json().unwrap();
    assert_eq!(health["ready"], false);
    assert!(
        health["reason"]
            .as_str()
            .unwrap_or("")
            .contains("unreachable"),
        "{health}"
    );
    std::thread::sleep(Duration::from_secs(2));
    cluster.restart();

    for c in clients {
        c.join().unwrap();
    }
    for r in &mut replicas {
        assert!(
            r.router.child.try_wait().unwrap().is_none(),
            "the router kept running"
        );
    }
    let s = seen.lock().unwrap();
    assert_eq!(s.acked.len(), EVENTS);
    assert_eq!(
        s.unavailable, s.with_retry_after,
        "every 503 says when to retry"
    );
    let acked: HashSet<String> = s.acked.keys().cloned().collect();
    let unavailable = s.unavailable;
    drop(s);
    wait_for(120, "every acked event to be forwarded", || {
        acked.is_subset(&forwarded(&sink, "/r")).then_some(())
    });
    let ready = client()
        .get(format!("{}/readyz", replicas[1].router.admin))
        .send()
        .unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    println!(
        "database restart: {EVENTS} events acked, {unavailable} answers of 503 while it was down, \
         {} forwards received, 0 lost",
        sink.on("/r").len()
    );
}
