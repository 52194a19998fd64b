//! Shared harness for end-to-end tests: starts the real `hookrouter` binary on
//! `127.0.0.1:0` with a temporary `router.toml` and SQLite file, and signs
//! requests with `openssl` (independently of the code under test).

#![allow(dead_code)]

pub mod pg_cluster;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_hookrouter");

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Builds every example plugin and fixture from source, once per test process
/// (the script is idempotent and takes a lock of its own).
pub fn plugins_built() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = Command::new(repo().join("scripts/build-plugins.sh"))
            .current_dir(repo())
            .output()
            .expect("run scripts/build-plugins.sh");
        assert!(
            out.status.success(),
            "scripts/build-plugins.sh failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        repo()
    })
}

/// An example plugin's built file: `plugins/NAME.wasm`.
pub fn example_plugin(name: &str) -> PathBuf {
    plugins_built().join("plugins").join(format!("{name}.wasm"))
}

/// A test fixture's built file.
pub fn fixture(name: &str) -> PathBuf {
    let dir = std::env::var_os("HOOKROUTER_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| plugins_built().join("target/fixtures"));
    dir.join(format!("{name}.wasm"))
}

/// A running router process.
pub struct Router {
    pub child: Child,
    pub dir: PathBuf,
    pub url: String,
    pub admin: String,
}

impl Router {
    /// Writes `config` as `dir/router.toml` and starts the binary on it.
    pub fn start(dir: &Path, config: &str, env: &[(&str, &str)]) -> Router {
        std::fs::write(dir.join("router.toml"), config).unwrap();
        Router::start_existing(dir, env)
    }

    /// Starts the binary on the `router.toml` already in `dir` (a restart).
    pub fn start_existing(dir: &Path, env: &[(&str, &str)]) -> Router {
        Router::start_with_args(dir, env, &[])
    }

    /// Like [`Router::start_existing`], with extra command-line arguments.
    pub fn start_with_args(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Router {
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .arg("--config")
            .arg(dir.join("router.toml"))
            .args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Router::spawn(dir, cmd)
    }

    /// Starts `cmd` (the binary, or a wrapper that ends up running it) with the
    /// harness's logging, and waits for its "listening" line.
    pub fn spawn(dir: &Path, mut cmd: Command) -> Router {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("router.log"))
            .unwrap();
        cmd.env("RUST_LOG", "info")
            .env("RUST_LIB_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        let mut child = cmd.spawn().expect("start hookrouter");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!("router did not start; log:\n{}", read_log(dir));
            }
        };
        // "hookrouter listening on http://A (admin http://B)"
        let mut urls = line.split("http://").skip(1).map(|s| {
            let addr: String = s.chars().take_while(|c| *c != ' ' && *c != ')').collect();
            format!("http://{addr}")
        });
        let url = urls
            .next()
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        let admin = urls
            .next()
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        Router {
            child,
            dir: dir.to_path_buf(),
            url,
            admin,
        }
    }

    /// `GET` on the admin listener (`path` starts with `/`), parsed as JSON.
    pub fn admin_json(&self, path: &str) -> serde_json::Value {
        client()
            .get(format!("{}{path}", self.admin))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    pub fn webhook(&self, source: &str) -> String {
        format!("{}/webhooks/{source}", self.url)
    }

    /// SIGKILL: no chance to flush or clean up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                self.kill();
                panic!("router did not stop on SIGTERM; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        read_log(&self.dir)
    }

    /// `GET /admin/events/{id}`: the event with its deliveries, forwards and
    /// attempts, or `None` when the store has no such event.
    pub fn event(&self, id: &str) -> Option<serde_json::Value> {
        let resp = client()
            .get(format!("{}/admin/events/{id}", self.admin))
            .send()
            .unwrap();
        match resp.status().as_u16() {
            404 => None,
            200 => Some(resp.json().unwrap()),
            other => panic!("GET /admin/events/{id}: {other} {}", resp.text().unwrap()),
        }
    }

    /// Every event `GET /admin/events?{query}` lists, following the cursor.
    pub fn events(&self, query: &str) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut q = format!("limit=1000&{query}");
            if let Some(c) = &cursor {
                q.push_str(&format!("&cursor={c}"));
            }
            let page = self.admin_json(&format!("/admin/events?{q}"));
            let events = page["events"].as_array().cloned().unwrap_or_else(|| {
                panic!("GET /admin/events?{q}: {page}");
            });
            out.extend(events);
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return out,
            }
        }
    }

    /// `GET /admin/store`'s row counts (`events`, `deliveries_pending`, ...).
    pub fn counts(&self) -> serde_json::Value {
        self.admin_json("/admin/store")["counts"].clone()
    }

    /// The deliveries of event `id` (from `GET /admin/events/{id}`).
    pub fn deliveries(&self, id: &str) -> Vec<serde_json::Value> {
        self.event(id)
            .map(|e| e["deliveries"].as_array().cloned().unwrap_or_default())
            .unwrap_or_default()
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn read_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("router.log")).unwrap_or_default()
}

/// Hex HMAC-SHA256 of `body` under `secret`, computed by `openssl dgst`.
pub fn openssl_hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-hmac", secret, "-hex"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl must be installed (apt-get install openssl)");
    child.stdin.take().unwrap().write_all(body).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    text.trim().rsplit(' ').next().unwrap().to_string()
}

/// Base64 HMAC-SHA256 (Standard Webhooks) of `content` under raw key bytes.
pub fn openssl_hmac_base64(key: &[u8], content: &[u8]) -> String {
    let hexkey: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl dgst -sha256 -mac HMAC -macopt hexkey:{hexkey} -binary | openssl base64 -A"
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(content).unwrap();
    String::from_utf8(child.wait_with_output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_string()
}

pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Polls `f` until it returns `Some`, or panics after `secs` seconds.
pub fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {secs}s waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until no delivery is pending (each is done or dead), up to `secs` seconds.
pub fn wait_settled(r: &Router, secs: u64) {
    wait_for(secs, "every delivery to settle", || {
        (r.counts()["deliveries_pending"] == 0).then_some(())
    });
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// One request received by a [`Sink`].
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: serde_json::Value,
}

/// An HTTP server in the test process that records what it receives. Paths
/// starting with `/gone` answer 410, `/fail` 500, everything else 200; those
/// starting with `/slow` answer after 50 ms.
pub struct Sink {
    pub port: u16,
    pub received: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl Sink {
    /// A `[plugin.NAME]` table for the relay fixture: forward every event to
    /// `path` on this sink, which `allow_forward` permits.
    pub fn relay_config(&self, plugin: &str, path: &str) -> String {
        format!(
            "\n[plugin.{plugin}]\nconfig = {{ forward_url = \"{}\" }}\nallow_forward = [\"127.0.0.1:{}\"]\n",
            self.url(path),
            self.port
        )
    }

    pub fn start() -> Sink {
        use http_body_util::BodyExt;
        let received: std::sync::Arc<std::sync::Mutex<Vec<Received>>> = Default::default();
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let rec = received.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                port_tx.send(listener.local_addr().unwrap().port()).unwrap();
                let accept = async {
                    loop {
                        let (stream, _) = listener.accept().await.unwrap();
                        let rec = rec.clone();
                        tokio::spawn(async move {
                            let svc = hyper::service::service_fn(
                                move |req: hyper::Request<hyper::body::Incoming>| {
                                    let rec = rec.clone();
                                    async move {
                                        let path = req.uri().path().to_string();
                                        let headers = req
                                            .headers()
                                            .iter()
                                            .map(|(k, v)| {
                                                (
                                                    k.to_string(),
                                                    v.to_str().unwrap_or("").to_string(),
                                                )
                                            })
                                            .collect();
                                        let bytes = req
                                            .into_body()
                                            .collect()
                                            .await
                                            .map(|c| c.to_bytes())
                                            .unwrap_or_default();
                                        let body =
                                            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                                                serde_json::Value::String(
                                                    String::from_utf8_lossy(&bytes).into_owned(),
                                                )
                                            });
                                        if path.starts_with("/slow") {
                                            tokio::time::sleep(std::time::Duration::from_millis(
                                                50,
                                            ))
                                            .await;
                                        }
                                        let status = if path.starts_with("/gone") {
                                            410
                                        } else if path.starts_with("/fail") {
                                            500
                                        } else {
                                            200
                                        };
                                        rec.lock().unwrap().push(Received {
                                            path,
                                            headers,
                                            body,
                                        });
                                        Ok::<_, std::convert::Infallible>(
                                            hyper::Response::builder()
                                                .status(status)
                                                .body(
                                                    http_body_util::Full::new(bytes::Bytes::new()),
                                                )
                                                .unwrap(),
                                        )
                                    }
                                },
                            );
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                                .await;
                        });
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = stop_rx => {}
                }
            });
        });
        let port = port_rx.recv().unwrap();
        Sink {
            port,
            received,
            _shutdown: stop_tx,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn on(&self, path: &str) -> Vec<Received> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }
}

/// Copies a built plugin into `dir/plugins/NAME.wasm` (write-temp-then-rename).
pub fn install_plugin(dir: &Path, from: &Path, name: &str) {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let tmp = plugins.join(format!(".{name}.wasm.tmp"));
    std::fs::copy(from, &tmp).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    std::fs::rename(&tmp, plugins.join(format!("{name}.wasm"))).unwrap();
}

/// Runs `hookrouter ARGS --config dir/router.toml` and returns (success, stdout, stderr).
pub fn cli(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(dir.join("router.toml"))
        .env("RUST_LIB_BACKTRACE", "0")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
