//! Reload latency: from a plugin file's rename into the plugin folder to the
//! first event handled by the new version, over 20 swaps, with and without a
//! compile-cache hit, for a small Rust component and the largest example plugin.
//!
//! `scripts/build-plugins.sh && cargo test -p hookrouter-tests --no-run && cargo bench -p hookrouter --bench reload`
//! (`RELOAD_SWAPS=N` changes the number of swaps; `RELOAD_SMALL_ONLY=1` skips
//! the Python plugin, whose 20 new versions take about 20 s each to compile.)

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `bytes` with a custom section appended: the same plugin, a new content hash
/// (so a new version that the compile cache has never seen).
fn variant(bytes: &[u8], n: u32) -> Vec<u8> {
    let name = b"hookrouter-bench";
    let payload = n.to_le_bytes();
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name);
    section.extend_from_slice(&payload);
    let mut out = bytes.to_vec();
    out.push(0); // custom section id
    out.push(section.len() as u8); // LEB128, < 128
    out.extend_from_slice(&section);
    out
}

fn short_version(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))[..12].to_string()
}

async fn send(addr: std::net::SocketAddr) -> Option<String> {
    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let (mut tx, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .ok()?;
    tokio::spawn(conn);
    let req = hyper::Request::post("/webhooks/test")
        .header("host", "bench")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            b"{\"type\":\"work\"}",
        )))
        .ok()?;
    let resp = tx.send_request(req).await.ok()?;
    use http_body_util::BodyExt;
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
    v["id"].as_str().map(String::from)
}

/// Swaps `versions[i % len]` in `swaps` times; returns each swap's latency.
async fn measure(
    dir: &Path,
    addr: std::net::SocketAddr,
    versions: &[Vec<u8>],
    swaps: usize,
) -> Vec<Duration> {
    let db = rusqlite::Connection::open(dir.join("data/hookrouter.db")).unwrap();
    let mut out = Vec::new();
    for i in 0..swaps {
        let bytes = &versions[i % versions.len()];
        let want = short_version(bytes);
        let tmp = dir.join("plugins/.p.wasm.tmp");
        std::fs::write(&tmp, bytes).unwrap();
        let t0 = Instant::now();
        let since = hookrouter::event::unix_ms(std::time::SystemTime::now());
        std::fs::rename(&tmp, dir.join("plugins/p.wasm")).unwrap();
        let deadline = t0 + Duration::from_secs(120);
        'found: loop {
            let _ = send(addr).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
            let got: Option<String> = db
                .query_row(
                    "SELECT version FROM deliveries WHERE state = 'done' AND version = ?1 AND updated_at >= ?2 LIMIT 1",
                    rusqlite::params![want, since],
                    |r| r.get(0),
                )
                .ok();
            if got.is_some() {
                out.push(t0.elapsed());
                break 'found;
            }
            assert!(Instant::now() < deadline, "version {want} never served");
        }
    }
    out
}

fn summary(name: &str, mut l: Vec<Duration>) {
    l.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "| {name} | {} | {:.0} | {:.0} |",
        l.len(),
        ms(l[l.len() / 2]),
        ms(*l.last().unwrap())
    );
}

fn main() {
    let swaps: usize = std::env::var("RELOAD_SWAPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        println!("| plugin, cache | swaps | median ms | max ms |");
        println!("| --- | ---: | ---: | ---: |");
        for (label, file) in [
            ("trivial Rust component", repo().join("target/fixtures/trivial.wasm")),
            ("refund_alert (Python, 18 MB)", repo().join("plugins/refund_alert.wasm")),
        ] {
            if label.contains("Python") && std::env::var_os("RELOAD_SMALL_ONLY").is_some() {
                continue;
            }
            let Ok(bytes) = std::fs::read(&file) else {
                println!("(skipping {label}: build {} first)", file.display());
                continue;
            };
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path();
            std::fs::create_dir_all(dir.join("plugins")).unwrap();
            std::fs::write(dir.join("plugins/p.wasm"), variant(&bytes, 9999)).unwrap();
            std::fs::write(
                dir.join("router.toml"),
                "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
                 [[sources]]\nname = \"test\"\ntype_from = \"/type\"\nverify = { scheme = \"none\" }\n\
                 [[routes]]\nevents = [\"work\"]\nplugins = [\"p\"]\n",
            )
            .unwrap();
            let config = hookrouter::config::Config::load(&dir.join("router.toml")).unwrap();
            let ingress = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = ingress.local_addr().unwrap();
            let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            let router = tokio::spawn(hookrouter::run_with_ready(
                config,
                ingress,
                admin,
                async {
                    let _ = stop_rx.await;
                },
                move |_, _| {
                    let _ = ready_tx.send(());
                },
            ));
            ready_rx.await.unwrap();

            // Without a cache hit: every swap brings bytes never compiled before.
            let fresh: Vec<Vec<u8>> = (0..swaps as u32).map(|n| variant(&bytes, n)).collect();
            summary(&format!("{label}, new version (compile)"), measure(dir, addr, &fresh, swaps).await);
            // With a cache hit: flip between two versions already compiled above.
            let known = vec![fresh[0].clone(), fresh[1].clone()];
            summary(&format!("{label}, known version (cache hit)"), measure(dir, addr, &known, swaps).await);
            let _ = stop_tx.send(());
            let _ = router.await;
        }
    });
}
