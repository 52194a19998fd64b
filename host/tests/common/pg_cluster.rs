//! A throwaway PostgreSQL cluster for tests, shared by the store's conformance
//! tests (`host/src/store/postgres/tests.rs` includes this file) and the
//! end-to-end tests (`host/tests/common`).
//!
//! Owns: finding Debian's PostgreSQL binaries (`/usr/lib/postgresql/*/bin`,
//! not on `PATH`), `initdb` into a temporary folder (as the `postgres` user when
//! run as root), `pg_ctl start` on a free loopback port with its socket in that
//! folder, one database per test, stopping and starting the cluster (for
//! restart tests), and removing it all when the test process ends (a watcher
//! process stops it even if the tests abort). `HOOKROUTER_TEST_DATABASE_URL`
//! replaces the shared cluster with a server of the user's.
//! Never: skips: when PostgreSQL cannot start, the caller fails with the reason.
//! Uses only the standard library and the PostgreSQL binaries.

#![allow(dead_code)]

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The variable naming a server to use instead of a throwaway cluster.
pub const URL_ENV: &str = "HOOKROUTER_TEST_DATABASE_URL";

/// A PostgreSQL server the tests may create databases on.
#[derive(Debug)]
pub struct Cluster {
    /// A superuser URL of the `postgres` database, without parameters.
    base: String,
    /// Our own cluster (`None` for a server given by [`URL_ENV`]).
    own: Option<Own>,
}

#[derive(Debug)]
struct Own {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

/// The cluster of this test process: the server [`URL_ENV`] names, or one
/// started on first use. Panics, saying why, when neither is possible.
pub fn shared() -> &'static Cluster {
    static SHARED: OnceLock<Result<Cluster, String>> = OnceLock::new();
    let c = SHARED.get_or_init(|| match std::env::var(URL_ENV) {
        Ok(url) if !url.is_empty() => Ok(Cluster {
            base: url,
            own: None,
        }),
        _ => Cluster::start(),
    });
    match c {
        Ok(c) => c,
        Err(why) => panic!("PostgreSQL tests cannot run: {why}"),
    }
}

fn run(cmd: &mut Command, what: &str) -> Result<String, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The newest `/usr/lib/postgresql/N/bin` that has `initdb`.
fn bin_dir() -> Result<PathBuf, String> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, b)| b).ok_or_else(|| {
        format!(
            "no /usr/lib/postgresql/*/bin/initdb: install PostgreSQL (apt-get install postgresql; scripts/setup.sh does) or set {URL_ENV}"
        )
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

impl Cluster {
    /// Starts a cluster of its own (for tests that stop and start it).
    pub fn start() -> Result<Cluster, String> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let bin = bin_dir()?;
        let root = std::fs::metadata("/proc/self")
            .map(|m| m.uid() == 0)
            .unwrap_or(false);
        let dir = std::env::temp_dir().join(format!(
            "hookrouter-pg-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        if root {
            run(
                Command::new("chown").arg("postgres:postgres").arg(&dir),
                "chown postgres (initdb refuses to run as root)",
            )?;
        }
        let own = Own {
            dir: dir.clone(),
            bin,
            port: 0,
            as_postgres: root,
        };
        own.reaper();
        own.pg(
            "initdb",
            &[
                "-D",
                "data",
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        )?;
        // A test CA, and a server certificate it signed for `localhost` (and
        // no IP address), so TLS tests can tell verify-ca from verify-full.
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        own.run_as_owner(
            "openssl",
            &[
                &["req", "-x509"][..],
                &ec,
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.crt",
                    "-days",
                    "3",
                    "-subj",
                    "/CN=hookrouter test CA",
                ],
            ]
            .concat(),
        )?;
        own.run_as_owner(
            "openssl",
            &[
                &["req"][..],
                &ec,
                &[
                    "-keyout",
                    "data/server.key",
                    "-out",
                    "server.csr",
                    "-subj",
                    "/CN=localhost",
                    "-addext",
                    "subjectAltName=DNS:localhost",
                    "-addext",
                    "basicConstraints=critical,CA:FALSE",
                ],
            ]
            .concat(),
        )?;
        own.run_as_owner(
            "openssl",
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-copy_extensions",
                "copyall",
                "-days",
                "3",
                "-out",
                "data/server.crt",
            ],
        )?;
        let mut own = own;
        let mut last = String::new();
        for _ in 0..5 {
            own.port = free_port();
            match own.pg_ctl_start() {
                Ok(()) => {
                    let base = format!("postgres://postgres@127.0.0.1:{}/postgres", own.port);
                    return Ok(Cluster {
                        base,
                        own: Some(own),
                    });
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Creates a fresh database and returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        self.psql(&format!("CREATE DATABASE \"{name}\""))
            .unwrap_or_else(|e| panic!("PostgreSQL tests cannot run: {e}"));
        self.url(name)
    }

    /// A fresh database with a name of its own.
    pub fn fresh_database(&self, prefix: &str) -> (String, String) {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "{prefix}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let url = self.create_database(&name);
        (name, url)
    }

    /// Drops a database, disconnecting whoever is on it.
    pub fn drop_database(&self, name: &str) {
        let _ = self.psql(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"));
    }

    /// The URL of database `name` on this server (the base URL's parameters kept).
    pub fn url(&self, name: &str) -> String {
        let (head, query) = self.base.split_once('?').unwrap_or((&self.base, ""));
        let head = match head.rfind('/') {
            Some(i) if i > "postgres://".len() => &head[..i],
            _ => head,
        };
        if query.is_empty() {
            format!("{head}/{name}")
        } else {
            format!("{head}/{name}?{query}")
        }
    }

    /// Runs one SQL command on the `postgres` database with `psql`.
    pub fn psql(&self, sql: &str) -> Result<String, String> {
        let psql = match &self.own {
            Some(o) => o.bin.join("psql"),
            None => bin_dir()
                .map(|b| b.join("psql"))
                .unwrap_or_else(|_| PathBuf::from("psql")),
        };
        run(
            Command::new(psql)
                .arg("-X")
                .arg("-q")
                .arg("-A")
                .arg("-t")
                .arg("-v")
                .arg("ON_ERROR_STOP=1")
                .arg("-d")
                .arg(&self.base)
                .arg("-c")
                .arg(sql),
            &format!("psql -c {sql:?}"),
        )
    }

    /// Stops the cluster (fast shutdown: open connections are cut).
    pub fn stop(&self) {
        let own = self
            .own
            .as_ref()
            .expect("only an own cluster can be stopped");
        own.pg(
            "pg_ctl",
            &["-D", "data", "-w", "-t", "60", "-m", "fast", "stop"],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Starts a stopped cluster again on the same port.
    pub fn restart(&self) {
        let own = self
            .own
            .as_ref()
            .expect("only an own cluster can be started");
        own.pg_ctl_start().unwrap_or_else(|e| panic!("{e}"));
    }
}

impl Own {
    /// Runs a PostgreSQL binary in the cluster's folder (as `postgres` under root).
    fn pg(&self, tool: &str, args: &[&str]) -> Result<String, String> {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.args(args).current_dir(&self.dir);
        run(&mut cmd, &format!("{} {}", exe.display(), args.join(" ")))
    }

    /// Runs a program from `PATH` in the cluster's folder, as the cluster's owner.
    fn run_as_owner(&self, program: &str, args: &[&str]) -> Result<String, String> {
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", program]);
            c
        } else {
            Command::new(program)
        };
        cmd.args(args).current_dir(&self.dir);
        run(&mut cmd, &format!("{program} {}", args.join(" ")))
    }

    fn pg_ctl_start(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=400 -c shared_buffers=128MB \
             -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key",
            self.port,
            self.dir.display()
        );
        self.pg(
            "pg_ctl",
            &[
                "-D",
                "data",
                "-w",
                "-t",
                "60",
                "-l",
                "server.log",
                "-o",
                &options,
                "start",
            ],
        )
        .map(|_| ())
        .map_err(|e| {
            let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
            format!("{e}\nserver.log:\n{log}")
        })
    }

    /// A process that waits for this test process to end, then stops the
    /// cluster and removes its folder, however the tests ended.
    fn reaper(&self) {
        let stop = if self.as_postgres {
            format!(
                "runuser -u postgres -- {} -D data -m immediate stop",
                self.bin.join("pg_ctl").display()
            )
        } else {
            format!(
                "{} -D data -m immediate stop",
                self.bin.join("pg_ctl").display()
            )
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; cd {dir} && {stop} >/dev/null 2>&1; cd / && rm -rf {dir}",
            pid = std::process::id(),
            dir = self.dir.display()
        );
        let _ = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(own) = &self.own {
            let _ = own.pg("pg_ctl", &["-D", "data", "-m", "immediate", "stop"]);
            let _ = std::fs::remove_dir_all(&own.dir);
        }
    }
}

impl Cluster {
    /// The CA that signed the server's certificate (which names `localhost`
    /// only), for TLS tests.
    pub fn certificate_authority(&self) -> Option<PathBuf> {
        self.own.as_ref().map(|o| o.dir.join("ca.crt"))
    }

    /// The port of an own cluster.
    pub fn port(&self) -> Option<u16> {
        self.own.as_ref().map(|o| o.port)
    }

    /// The folder of an own cluster (its `server.log` is there).
    pub fn dir(&self) -> Option<&Path> {
        self.own.as_ref().map(|o| o.dir.as_path())
    }
}
