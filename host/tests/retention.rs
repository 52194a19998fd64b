//! Retention and disk, on the real binary and a real SQLite file: finished events
//! are pruned after `[store] retention` while dead letters stay until purged;
//! dedupe outlives pruning; the store stays bounded over rounds of load; a full
//! disk answers 503 (never a lost 202) and recovers by itself; one `serve` per store.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

const SECRET: &str = "retention-secret";

fn config(store: &str, extra: &str) -> String {
    format!(
        r#"version = 1
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[store]
{store}

[plugins]
dir = "plugins"
max_attempts = 2
retry_base_ms = 50

[[sources]]
name = "test"
type_from = "/type"
id_from = "/id"
verify = {{ scheme = "hmac-sha256", header = "x-sig", secret_env = "RETENTION_SECRET" }}
{extra}"#
    )
}

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn env() -> [(&'static str, &'static str); 1] {
    [("RETENTION_SECRET", SECRET)]
}

/// Posts a signed event; returns the status and the JSON answer.
fn post(r: &Router, body: &Value) -> (u16, Value) {
    let bytes = body.to_string().into_bytes();
    let resp = client()
        .post(r.webhook("test"))
        .header("x-sig", sign(&bytes))
        .header("content-type", "application/json")
        .body(bytes)
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().unwrap_or(Value::Null))
}

fn accepted(r: &Router, body: &Value) -> String {
    let (status, answer) = post(r, body);
    assert_eq!(status, 202, "{answer}");
    answer["id"].as_str().unwrap().to_string()
}

fn metric(r: &Router, name: &str) -> f64 {
    let text = client()
        .get(format!("{}/metrics", r.admin))
        .send()
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn finished_events_are_pruned_dead_letters_kept_until_purged_and_dedupe_outlives_them() {
    let sink = Sink::start();
    let dir = tempfile::tempdir().unwrap();
    install_plugin(dir.path(), &fixture("relay"), "fwd");
    install_plugin(dir.path(), &fixture("relay"), "bad");
    let extra = format!(
        r#"
[[routes]]
events = ["ok"]
plugins = ["fwd"]

[[routes]]
events = ["doomed"]
plugins = ["bad"]
{}
[plugin.bad]
config = {{ fail = "always" }}
"#,
        sink.relay_config("fwd", "/kept")
    );
    let cfg = config("retention = \"2s\"\ndedupe_horizon = \"1h\"", &extra);
    let r = Router::start(dir.path(), &cfg, &env());

    let ids: Vec<String> = (0..200)
        .map(|i| accepted(&r, &json!({ "type": "ok", "id": format!("ok-{i}") })))
        .collect();
    let doomed = accepted(&r, &json!({ "type": "doomed", "id": "doomed-1" }));
    wait_for(30, "every forward to reach the sink", || {
        (sink.on("/kept").len() == 200).then_some(())
    });
    wait_for(10, "the doomed delivery to die", || {
        (r.admin_json("/admin/dead")["dead"]
            .as_array()
            .is_some_and(|d| d.len() == 1))
        .then_some(())
    });
    let finished_at = Instant::now();

    // Retention (2 s) plus one pruning interval (retention / 4, at least 1 s),
    // with a generous margin for this machine.
    wait_for(15, "the finished events to be pruned", || {
        ids.iter().all(|id| r.event(id).is_none()).then_some(())
    });
    assert!(
        finished_at.elapsed() >= Duration::from_millis(1500),
        "pruned before the retention had passed"
    );
    assert!(metric(&r, "hookrouter_pruned_total") >= 200.0);
    assert!(metric(&r, "hookrouter_store_rows{table=\"events\"}") >= 1.0);
    assert!(metric(&r, "hookrouter_store_bytes") > 0.0);
    assert_eq!(
        metric(&r, "hookrouter_dead_letters_current{plugin=\"bad\"}"),
        1.0
    );
    let ready = r.admin_json("/readyz");
    assert!(ready["free_disk_bytes"].as_u64().unwrap() > 0, "{ready}");

    // The dead letter and its event are kept, however old.
    let kept = r.event(&doomed).expect("a dead-lettered event is kept");
    assert_eq!(kept["status"], "dead");
    let dead_id = r.admin_json("/admin/dead")["dead"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // A provider's late retry of a pruned event is still a duplicate.
    let (status, dup) = post(&r, &json!({ "type": "ok", "id": "ok-7" }));
    assert_eq!(status, 200, "{dup}");
    assert_eq!(
        (&dup["duplicate"], &dup["id"]),
        (&json!(true), &json!(ids[7]))
    );

    // `dead purge` goes through the running router's admin API; without --yes
    // off a terminal it refuses.
    let (ok, _, err) = cli(dir.path(), &["dead", "purge"]);
    assert!(!ok && err.contains("--yes"), "{err}");
    assert!(r.event(&doomed).is_some());
    let (ok, out, err) = cli(
        dir.path(),
        &["dead", "purge", "--older-than", "1h", "--yes"],
    );
    assert!(ok && out.contains("purged 0 dead entries"), "{out}{err}");
    let (ok, out, err) = cli(dir.path(), &["dead", "purge", "--yes"]);
    assert!(
        ok && out.contains("purged 1 dead entry and 1 event"),
        "{out}{err}"
    );
    assert!(r.event(&doomed).is_none(), "purged with its dead letter");
    assert!(r.admin_json(&format!("/admin/dead/{dead_id}"))["error"].is_string());
    assert_eq!(metric(&r, "hookrouter_dead_letters_current"), 0.0);

    // The admin API purges one entry, or by age; bad requests are refused.
    let again = accepted(&r, &json!({ "type": "doomed", "id": "doomed-2" }));
    let one = wait_for(10, "the second dead letter", || {
        r.admin_json("/admin/dead")["dead"][0]["id"]
            .as_str()
            .map(str::to_string)
    });
    let c = client();
    let del = c
        .delete(format!("{}/admin/dead/{one}", r.admin))
        .header("content-type", "application/json")
        .send()
        .unwrap();
    assert_eq!(del.status().as_u16(), 200);
    assert!(r.event(&again).is_none());
    let del = c
        .delete(format!("{}/admin/dead/{one}", r.admin))
        .header("content-type", "application/json")
        .send()
        .unwrap();
    assert_eq!(del.status().as_u16(), 404, "purged twice");
    for bad in [
        json!({ "older_than": "soon" }),
        json!({ "ids": ["x-1"] }),
        json!({ "ids": [], "older_than": "1d" }),
        json!({ "everything": true }),
    ] {
        let resp = c
            .post(format!("{}/admin/dead/purge", r.admin))
            .json(&bad)
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400, "{bad}");
    }
}

/// The store's files (database, WAL, shared memory), in bytes.
fn store_bytes(dir: &std::path::Path) -> u64 {
    ["hookrouter.db", "hookrouter.db-wal", "hookrouter.db-shm"]
        .iter()
        .map(|f| std::fs::metadata(dir.join("data").join(f)).map_or(0, |m| m.len()))
        .sum()
}

#[test]
fn the_store_stays_bounded_over_rounds_of_load() {
    let sink = Sink::start();
    let dir = tempfile::tempdir().unwrap();
    install_plugin(dir.path(), &fixture("relay"), "fwd");
    let extra = format!(
        "\n[[routes]]\nevents = [\"ok\"]\nplugins = [\"fwd\"]\n{}",
        sink.relay_config("fwd", "/round")
    );
    let r = Router::start(
        dir.path(),
        &config("retention = \"3s\"\ndedupe_horizon = \"3s\"", &extra),
        &env(),
    );
    let pad = "x".repeat(600);
    let mut sizes = Vec::new();
    for round in 0..3 {
        let senders: Vec<_> = (0..8)
            .map(|t| {
                let (url, pad) = (r.webhook("test"), pad.clone());
                std::thread::spawn(move || {
                    let c = client();
                    for i in 0..625 {
                        let body =
                            json!({ "type": "ok", "id": format!("{round}-{t}-{i}"), "pad": pad })
                                .to_string()
                                .into_bytes();
                        let resp = c
                            .post(&url)
                            .header("x-sig", sign(&body))
                            .body(body)
                            .send()
                            .unwrap();
                        assert_eq!(resp.status().as_u16(), 202);
                    }
                })
            })
            .collect();
        for s in senders {
            s.join().unwrap();
        }
        wait_for(120, "the round's forwards", || {
            (sink.on("/round").len() == 5000 * (round + 1)).then_some(())
        });
        // A retention apart, and time for the prune and a checkpoint.
        wait_for(60, "the round to be pruned", || {
            (r.counts()["events"] == 0).then_some(())
        });
        std::thread::sleep(Duration::from_secs(1));
        sizes.push(store_bytes(dir.path()));
    }
    println!("store bytes after each round of 5,000 events: {sizes:?}");
    assert!(
        sizes[2] as f64 <= sizes[0] as f64 * 1.5,
        "the store grew from {} to {} bytes over three rounds",
        sizes[0],
        sizes[2]
    );
}

/// `unshare -m` with an 8 MiB tmpfs on the store's folder, so a crashed test
/// leaves no mount behind; the router runs in that namespace. Its folder is
/// reached from here through /proc/PID/root.
fn start_on_small_disk(dir: &std::path::Path, out: &std::path::Path) -> Router {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let script = format!(
        "set -e; mount -t tmpfs -o size=8m tmpfs '{data}'; \
         head -c 2500000 /dev/zero > '{data}/ballast'; \
         '{bin}' serve --config '{cfg}' & pid=$!; \
         trap 'kill -TERM $pid' TERM; wait $pid || true; wait $pid || true; \
         cp -a '{data}/.' '{out}/'",
        data = data.display(),
        bin = BIN,
        cfg = dir.join("router.toml").display(),
        out = out.display(),
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "--propagation", "private", "sh", "-c", &script]);
    for (k, v) in env() {
        cmd.env(k, v);
    }
    Router::spawn(dir, cmd)
}

/// Kills the router inside the namespace if the test ends early (the harness
/// only kills the shell around it).
struct Reaper(u32);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg(self.0.to_string())
            .status();
    }
}

#[test]
fn a_full_disk_answers_503_loses_no_acked_event_and_recovers_by_itself() {
    // Mounting needs root (as in CI); say so instead of skipping.
    let probe = Command::new("unshare")
        .args([
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            "mount -t tmpfs -o size=1m tmpfs /mnt",
        ])
        .output()
        .expect("run unshare (util-linux)");
    assert!(
        probe.status.success(),
        "this test mounts a small tmpfs in a private mount namespace and needs root \
         (unshare -m, mount -t tmpfs): {}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("router.toml"),
        config(
            "",
            "\n[[routes]]\nevents = [\"ok\"]\nplugins = [\"absent\"]\n",
        ),
    )
    .unwrap();
    let mut r = start_on_small_disk(dir.path(), out.path());
    // The router runs as the shell's child; find its pid to reach its mount.
    let shell = r.child.id();
    let router_pid = wait_for(10, "the router process", || {
        std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children"))
            .ok()?
            .split_whitespace()
            .next()?
            .parse::<u32>()
            .ok()
    });
    let _reaper = Reaper(router_pid);
    let ballast = format!(
        "/proc/{router_pid}/root{}/data/ballast",
        dir.path().display()
    );
    assert!(std::path::Path::new(&ballast).exists(), "{ballast}");

    let pad = "y".repeat(1500);
    let mut acked = Vec::new();
    let mut refused = 0;
    for i in 0..20_000 {
        let (status, answer) = post(
            &r,
            &json!({ "type": "ok", "id": format!("f-{i}"), "pad": pad }),
        );
        match status {
            202 => acked.push(answer["id"].as_str().unwrap().to_string()),
            503 => {
                refused += 1;
                if refused >= 20 {
                    break;
                }
            }
            other => panic!("unexpected {other}: {answer}"),
        }
    }
    assert!(
        refused >= 20,
        "the 8 MiB disk never filled ({} acked)",
        acked.len()
    );
    assert!(
        acked.len() > 50,
        "only {} acked before the disk filled",
        acked.len()
    );
    let ready = client().get(format!("{}/readyz", r.admin)).send().unwrap();
    assert_eq!(ready.status().as_u16(), 503, "/readyz while full");
    // And it stays so: the outbox polls every 200 ms, and its claims (which find
    // nothing and write nothing) commit on a full disk too; they must not read
    // as space come back.
    std::thread::sleep(Duration::from_secs(1));
    let ready = client().get(format!("{}/readyz", r.admin)).send().unwrap();
    assert_eq!(
        ready.status().as_u16(),
        503,
        "/readyz while still full, 1 s later"
    );
    let log = r.log();
    let logged = log.matches("out of disk space").count();
    assert!(
        (1..=2).contains(&logged),
        "logged {logged} times, not once a minute:\n{log}"
    );

    // Space returns: accepted again without a restart.
    std::fs::remove_file(&ballast).unwrap();
    let back = wait_for(20, "events to be accepted again", || {
        let (status, answer) = post(
            &r,
            &json!({ "type": "ok", "id": format!("after-{}", acked.len()), "pad": "z" }),
        );
        (status == 202).then(|| answer["id"].as_str().unwrap().to_string())
    });
    acked.push(back);
    assert!(r.log().contains("disk space again"));

    // Every 202 is in the store after a restart on a bigger disk.
    assert!(r.terminate().success());
    assert!(
        out.path().join("hookrouter.db").exists(),
        "store copied out"
    );
    let big = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(big.path().join("data")).unwrap();
    for f in std::fs::read_dir(out.path()).unwrap() {
        let f = f.unwrap().path();
        if f.file_name().unwrap() != "ballast" {
            std::fs::copy(&f, big.path().join("data").join(f.file_name().unwrap())).unwrap();
        }
    }
    std::fs::copy(
        dir.path().join("router.toml"),
        big.path().join("router.toml"),
    )
    .unwrap();
    let r = Router::start_existing(big.path(), &env());
    let missing: Vec<&String> = acked.iter().filter(|id| r.event(id).is_none()).collect();
    println!(
        "disk full: {} acked, {refused} refused with 503, {} missing after restart",
        acked.len(),
        missing.len()
    );
    assert!(missing.is_empty(), "acked events lost: {missing:?}");
}

#[test]
fn a_second_serve_on_the_same_store_exits_naming_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let r = Router::start(dir.path(), &config("", ""), &env());
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(dir.path().join("router.toml"))
        .env("RETENTION_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("hookrouter.db.lock") && err.contains(&format!("pid {}", r.child.id())),
        "{err}"
    );
    // The first router is untouched.
    assert_eq!(r.counts()["events"], 0);
}

#[test]
fn retention_keys_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    for (store, want) in [
        (
            "retention = \"0s\"",
            "store.retention: must be greater than 0",
        ),
        ("retention = \"soon\"", "store.retention: invalid duration"),
        (
            "retention = \"7d\"\ndedupe_horizon = \"1d\"",
            "store.dedupe_horizon: must be at least store.retention",
        ),
        ("backend = \"mongo\"", "store.backend: unknown backend"),
        (
            "url_env = \"X\"",
            "store.url_env: only applies to backend = \"postgres\"",
        ),
    ] {
        std::fs::write(dir.path().join("router.toml"), config(store, "")).unwrap();
        let (ok, _, err) = cli(dir.path(), &["check"]);
        assert!(!ok, "{store}");
        assert!(err.contains(want), "{store}: {err}");
    }
}

fn cache_entries(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("data/plugin-cache"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".cwasm")
        })
        .count()
}

#[test]
fn the_compile_cache_keeps_versions_in_use_and_the_last_two_of_each_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let versions = [fixture("relay"), fixture("trivial"), fixture("hostile")];
    install_plugin(dir.path(), &versions[0], "p");
    install_plugin(dir.path(), &versions[1], "q");
    let r = Router::start(
        dir.path(),
        &config(
            "",
            "\n[[routes]]\nevents = [\"*\"]\nplugins = [\"p\", \"q\"]\n",
        ),
        &env(),
    );
    assert_eq!(cache_entries(dir.path()), 2);
    let version_of = |i: usize| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(std::fs::read(&versions[i]).unwrap()))
    };
    let serving = |want: &str| {
        wait_for(30, "the new version to serve", || {
            r.admin_json("/admin/plugins")["plugins"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "p" && p["version"] == want)
                .then_some(())
        })
    };
    // p: relay, then trivial, then hostile. The cache keeps q's entry (in use),
    // and p's last two versions; relay's entry goes.
    install_plugin(dir.path(), &versions[1], "p");
    serving(&version_of(1));
    install_plugin(dir.path(), &versions[2], "p");
    serving(&version_of(2));
    let mut entries: Vec<String> = std::fs::read_dir(dir.path().join("data/plugin-cache"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".cwasm"))
        .collect();
    entries.sort();
    let mut want: Vec<String> = [1, 2].iter().map(|i| version_of(*i)).collect();
    want.sort();
    assert_eq!(
        entries
            .iter()
            .map(|e| e[..64].to_string())
            .collect::<Vec<_>>(),
        want,
        "trivial (p's previous and q's current) and hostile are kept, relay removed"
    );
    // A rollback to the previous version is a cache hit.
    std::fs::write(dir.path().join("router.log"), "").unwrap();
    install_plugin(dir.path(), &versions[1], "p");
    serving(&version_of(1));
    assert!(
        !r.log().contains("compiling a plugin not in the cache"),
        "{}",
        r.log()
    );
    // Going back to relay compiles it again (its entry was removed).
    install_plugin(dir.path(), &versions[0], "p");
    serving(&version_of(0));
    assert!(r.log().contains("compiling a plugin not in the cache"));
    // p's last two are now relay and trivial (q's too): hostile's entry went.
    assert_eq!(cache_entries(dir.path()), 2);
}
