//! Hot reload with the real binary and real files: replace a plugin by rename
//! and by in-place write, refuse garbage and truncated files while the old
//! version serves, delete and restore a plugin, edit and break `router.toml`,
//! and replace a plugin 20 times under 200 events/s without losing an event.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn version_of(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    hex::encode(Sha256::digest(&bytes))[..12].to_string()
}

fn config(extra: &str) -> String {
    format!(
        r#"version = 1
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[plugins]
retry_base_ms = 50

[[sources]]
name = "test"
type_from = "/type"
verify = {{ scheme = "none" }}

[[routes]]
events = ["work"]
plugins = ["p"]
{extra}"#
    )
}

fn send(r: &Router, event_type: &str) -> (String, u64) {
    let resp = client()
        .post(r.webhook("test"))
        .json(&json!({ "type": event_type }))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let v: Value = resp.json().unwrap();
    (
        v["id"].as_str().unwrap().to_string(),
        v["deliveries"].as_u64().unwrap(),
    )
}

/// The version that handled `event_id`'s delivery, once done.
fn handled_by(r: &Router, event_id: &str) -> Option<String> {
    r.deliveries(event_id)
        .into_iter()
        .find(|d| d["state"] == "done")
        .and_then(|d| d["version"].as_str().map(str::to_string))
}

/// Sends events until one is handled by `version`; returns how long that took.
fn until_handled_by(r: &Router, version: &str) -> Duration {
    let started = Instant::now();
    wait_for(20, &format!("an event handled by {version}"), || {
        let (id, _) = send(r, "work");
        let v = wait_for(10, "the delivery", || handled_by(r, &id));
        (v == version).then_some(())
    });
    started.elapsed()
}

fn replace_by_rename(dir: &Path, from: &Path) {
    install_plugin(dir, from, "p");
}

fn replace_in_place(dir: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(dir.join("plugins/p.wasm"))
        .unwrap();
    // Written in pieces, as a slow copy would: the debounce must read it once, whole.
    for chunk in bytes.chunks(bytes.len() / 4 + 1) {
        f.write_all(chunk).unwrap();
        f.flush().unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn admin_plugin(r: &Router, name: &str) -> Value {
    let v: Value = r.admin_json("/admin/plugins");
    v["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

#[test]
fn plugins_are_replaced_refused_deleted_and_restored_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, trivial) = (fixture("relay"), fixture("trivial"));
    let (v1, v2) = (version_of(&relay), version_of(&trivial));
    install_plugin(dir.path(), &relay, "p");
    let r = Router::start(dir.path(), &config(""), &[]);
    until_handled_by(&r, &v1);

    replace_by_rename(dir.path(), &trivial);
    let t = until_handled_by(&r, &v2);
    println!("rename-over: new version serving after {t:?}");
    replace_in_place(dir.path(), &std::fs::read(&relay).unwrap());
    let t = until_handled_by(&r, &v1);
    println!("in-place write: new version serving after {t:?}");

    // Garbage and a truncated copy never replace the working version.
    std::fs::write(dir.path().join("plugins/p.wasm"), b"this is not wasm").unwrap();
    std::thread::sleep(Duration::from_millis(600));
    until_handled_by(&r, &v1);
    let info = admin_plugin(&r, "p");
    assert_eq!(
        info["version"].as_str().map(|v| &v[..12]),
        Some(v1.as_str()),
        "{info}"
    );
    assert!(
        info["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("invalid"),
        "{info}"
    );
    let bytes = std::fs::read(&trivial).unwrap();
    replace_in_place(dir.path(), &bytes[..bytes.len() / 2]);
    std::thread::sleep(Duration::from_millis(600));
    until_handled_by(&r, &v1);
    assert!(admin_plugin(&r, "p")["last_error"].is_string());

    // Dotfiles, temp files and sub-folders are not plugins.
    std::fs::write(dir.path().join("plugins/.hidden.wasm"), b"junk").unwrap();
    std::fs::write(dir.path().join("plugins/p.wasm.tmp"), b"junk").unwrap();
    std::fs::create_dir_all(dir.path().join("plugins/sub")).unwrap();
    std::fs::copy(&trivial, dir.path().join("plugins/sub/nested.wasm")).unwrap();

    // Deleted: deliveries wait (no attempts spent); restored: they run.
    std::fs::remove_file(dir.path().join("plugins/p.wasm")).unwrap();
    wait_for(10, "the plugin to be unloaded", || {
        (admin_plugin(&r, "p")["loaded"] == false).then_some(())
    });
    let waiting: Vec<String> = (0..3).map(|_| send(&r, "work").0).collect();
    std::thread::sleep(Duration::from_millis(700));
    for id in &waiting {
        let d = r.deliveries(id).remove(0);
        assert_eq!(
            (&d["state"], &d["attempts"]),
            (&json!("pending"), &json!(0))
        );
    }
    install_plugin(dir.path(), &trivial, "p");
    for id in &waiting {
        let v = wait_for(20, "a waiting delivery", || handled_by(&r, id));
        assert_eq!(v, v2);
    }
    let all: Value = r.admin_json("/admin/plugins");
    let names: HashSet<&str> = all["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, HashSet::from(["p"]), "{all}");
}

#[test]
fn config_edits_apply_to_new_events_and_broken_edits_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    install_plugin(dir.path(), &fixture("trivial"), "p");
    let r = Router::start(dir.path(), &config(""), &[]);
    assert_eq!(send(&r, "extra").1, 0);

    // Add a route: new events of that type go to the plugin.
    let with_route = config("\n[[routes]]\nevents = [\"extra\"]\nplugins = [\"p\"]\n");
    std::fs::write(dir.path().join("router.toml"), &with_route).unwrap();
    wait_for(10, "the new route", || {
        (send(&r, "extra").1 == 1).then_some(())
    });

    // Break it: the running config stays, and the log says precisely why.
    std::fs::write(
        dir.path().join("router.toml"),
        format!(
            "{with_route}\n[[routes]]\nevents = [\"x\"]\nsource = \"nope\"\nplugins = [\"p\"]\n"
        ),
    )
    .unwrap();
    wait_for(10, "the refusal in the log", || {
        r.log()
            .contains("routes[2].source: unknown source \"nope\"")
            .then_some(())
    });
    assert_eq!(send(&r, "extra").1, 1, "the running config keeps serving");
    assert!(
        r.log()
            .contains("config not reloaded, keeping the running one")
    );

    // A restart-only setting is logged as such and not half-applied.
    std::fs::write(
        dir.path().join("router.toml"),
        with_route.replace("[plugins]", "[plugins]\nworkers = 7"),
    )
    .unwrap();
    wait_for(10, "the restart warning", || {
        r.log().contains("plugins.workers changed").then_some(())
    });
    assert_eq!(send(&r, "extra").1, 1);
}

#[test]
fn twenty_replacements_under_load_lose_no_event() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, trivial) = (fixture("relay"), fixture("trivial"));
    let versions = HashSet::from([version_of(&relay), version_of(&trivial)]);
    install_plugin(dir.path(), &relay, "p");
    let r = Router::start(
        dir.path(),
        &config("[plugins]\nworkers = 4\n").replace("[plugins]\nretry_base_ms = 50\n", ""),
        &[],
    );

    // 200 events/s for 20 s from 4 senders, while the plugin is swapped 20 times.
    let stop = Arc::new(AtomicBool::new(false));
    let url = r.webhook("test");
    let senders: Vec<_> = (0..4)
        .map(|_| {
            let (url, stop) = (url.clone(), stop.clone());
            std::thread::spawn(move || {
                let c = client();
                let mut acked = Vec::new();
                let started = Instant::now();
                let mut n = 0u32;
                while !stop.load(Ordering::SeqCst) {
                    let due = started + Duration::from_millis(20) * n;
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    n += 1;
                    let resp = c
                        .post(&url)
                        .json(&json!({ "type": "work" }))
                        .send()
                        .unwrap();
                    assert_eq!(resp.status().as_u16(), 202);
                    let v: Value = resp.json().unwrap();
                    acked.push(v["id"].as_str().unwrap().to_string());
                }
                acked
            })
        })
        .collect();
    for i in 0..20 {
        std::thread::sleep(Duration::from_millis(1000));
        let from = if i % 2 == 0 { &trivial } else { &relay };
        replace_by_rename(dir.path(), from);
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let acked: Vec<String> = senders
        .into_iter()
        .flat_map(|s| s.join().unwrap())
        .collect();

    wait_settled(&r, 60);
    let mut by_version = std::collections::HashMap::<String, usize>::new();
    for id in &acked {
        let v = handled_by(&r, id).unwrap_or_else(|| panic!("event {id} was not handled"));
        assert!(
            versions.contains(&v),
            "event {id} handled by unknown version {v}"
        );
        *by_version.entry(v).or_default() += 1;
    }
    println!(
        "reload under load: {} events acked over ~21 s with 20 plugin swaps; all handled, by version: {by_version:?}",
        acked.len()
    );
    assert!(
        acked.len() >= 4000,
        "the load was too light: {}",
        acked.len()
    );
    assert_eq!(by_version.len(), 2, "both versions served");
}

#[test]
fn polling_fallback_picks_up_replacements() {
    // HOOKROUTER_POLL_WATCH forces the poll watcher that takes over when inotify is
    // unavailable or out of watches.
    let dir = tempfile::tempdir().unwrap();
    let (relay, trivial) = (fixture("relay"), fixture("trivial"));
    install_plugin(dir.path(), &relay, "p");
    std::fs::write(dir.path().join("router.toml"), config("")).unwrap();
    let r = Router::start_with_args(dir.path(), &[("HOOKROUTER_POLL_WATCH", "1")], &[]);
    assert!(r.log().contains("polling"), "{}", r.log());
    until_handled_by(&r, &version_of(&relay));
    install_plugin(dir.path(), &trivial, "p");
    let t = until_handled_by(&r, &version_of(&trivial));
    println!("poll watcher: new version serving after {t:?}");
}
