//! Reaching the database: the connection URL, TLS as `sslmode` asks, the pool,
//! and the one connection kept apart for LISTEN.
//!
//! Owns: reading `sslmode` and `sslrootcert` the way libpq does (`disable`,
//! `allow`/`prefer`, `require` encrypt without checking the certificate unless a
//! root certificate is named; `verify-ca` checks the chain; `verify-full` the
//! chain and the host name), the session settings every connection gets
//! (`synchronous_commit = on`, `application_name`), and a printable name of the
//! database that never holds the password.
//! Never: logs the URL: it holds the password.

use std::time::Duration;

use anyhow::{Context, bail};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::tls::{self, Verify};

/// Connections in the pool: the writers' and the readers' together.
const POOL_SIZE: usize = 12;

/// How long connecting, or waiting for a pooled connection, may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A parsed connection URL.
#[derive(Clone)]
pub(super) struct Target {
    pub config: tokio_postgres::Config,
    tls: Option<MakeRustlsConnect>,
    /// `host:port/db`, for logs.
    pub name: String,
}

/// Parses `url` (a `postgres://` URL) with its `sslmode` and `sslrootcert`.
pub(super) fn target(url: &str) -> anyhow::Result<Target> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut mode = "prefer".to_string();
    let mut root: Option<String> = None;
    // The parameters the driver reads stay as they were written (its own
    // percent-decoding applies); only the TLS ones are taken out.
    let mut rest: Vec<&str> = Vec::new();
    for raw in query.split('&').filter(|p| !p.is_empty()) {
        let Some((k, v)) = form_urlencoded::parse(raw.as_bytes()).next() else {
            continue;
        };
        match &*k {
            "sslmode" => mode = v.into_owned(),
            "sslrootcert" => root = Some(v.into_owned()),
            "sslcert" | "sslkey" | "sslpassword" => {
                bail!("the database URL sets {k}: client certificates are not supported")
            }
            _ => rest.push(raw),
        }
    }
    let rest = rest.join("&");
    let url = if rest.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{rest}")
    };
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| anyhow::anyhow!("the database URL is not valid: {e}"))?;
    let (ssl, verify) = match (mode.as_str(), root.is_some()) {
        ("disable", _) => (SslMode::Disable, None),
        ("allow" | "prefer", false) => (SslMode::Prefer, Some(Verify::Nothing)),
        ("allow" | "prefer", true) => (SslMode::Prefer, Some(Verify::Chain)),
        // As libpq: `require` with a root certificate checks the chain.
        ("require", false) => (SslMode::Require, Some(Verify::Nothing)),
        ("require" | "verify-ca", _) => (SslMode::Require, Some(Verify::Chain)),
        ("verify-full", _) => (SslMode::Require, Some(Verify::Full)),
        (other, _) => bail!(
            "the database URL has sslmode={other:?} (expected disable, allow, prefer, require, verify-ca or verify-full)"
        ),
    };
    config.ssl_mode(ssl);
    let tls = match verify {
        None => None,
        Some(v) => Some(MakeRustlsConnect::new(tls::config(v, root.as_deref())?)),
    };
    // Every session commits synchronously, whatever the server's or role's default:
    // a 202 is sent only once the event's WAL is flushed.
    let options = match config.get_options() {
        Some(o) if !o.is_empty() => format!("{o} -c synchronous_commit=on"),
        _ => "-c synchronous_commit=on".to_string(),
    };
    config.options(&options);
    if config.get_application_name().is_none() {
        config.application_name("hookrouter");
    }
    config.connect_timeout(CONNECT_TIMEOUT);
    config.keepalives_idle(Duration::from_secs(30));
    let name = name(&config);
    Ok(Target { config, tls, name })
}

/// `host:port/db` of a config.
fn name(config: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("{host}:{port}/{db}")
}

impl Target {
    /// The pool every query and writer borrows from.
    pub(super) fn pool(&self) -> anyhow::Result<Pool> {
        let manager_config = ManagerConfig {
            // A connection that died is noticed (`is_closed`) without a query;
            // one that failed mid-transaction is taken out of the pool by its user.
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match &self.tls {
            None => {
                Manager::from_config(self.config.clone(), tokio_postgres::NoTls, manager_config)
            }
            Some(tls) => Manager::from_config(self.config.clone(), tls.clone(), manager_config),
        };
        Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .context("cannot set up the database connection pool")
    }

    /// A connection of its own, outside the pool, whose notifications (channel,
    /// payload) are sent to `notes`; the connection's task ends when the connection does.
    pub(super) async fn connect_listener(
        &self,
        notes: tokio::sync::mpsc::UnboundedSender<(String, String)>,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        match &self.tls {
            None => {
                let (client, conn) = self.config.connect(tokio_postgres::NoTls).await?;
                tokio::spawn(drive(conn, notes));
                Ok(client)
            }
            Some(tls) => {
                let (client, conn) = self.config.connect(tls.clone()).await?;
                tokio::spawn(drive(conn, notes));
                Ok(client)
            }
        }
    }
}

/// Polls a connection, passing its notifications' channels on, until it ends.
async fn drive<S, T>(
    mut conn: tokio_postgres::Connection<S, T>,
    notes: tokio::sync::mpsc::UnboundedSender<(String, String)>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio_postgres::AsyncMessage;
    loop {
        match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
            Some(Ok(AsyncMessage::Notification(n))) => {
                if notes
                    .send((n.channel().to_string(), n.payload().to_string()))
                    .is_err()
                {
                    return;
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                tracing::debug!(error = %e, "database listener connection ended");
                return;
            }
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_follows_libpq_and_the_name_hides_the_password() {
        let t = target("postgres://u:secret@db.example:6543/app?sslmode=require").unwrap();
        assert_eq!(t.config.get_ssl_mode(), SslMode::Require);
        assert!(t.tls.is_some());
        assert_eq!(t.name, "db.example:6543/app");
        assert!(!t.name.contains("secret"));
        assert_eq!(
            t.config.get_options(),
            Some("-c synchronous_commit=on"),
            "every session commits synchronously"
        );
        let t = target("postgres://u@h/db?sslmode=disable&application_name=x").unwrap();
        assert_eq!(t.config.get_ssl_mode(), SslMode::Disable);
        assert!(t.tls.is_none());
        assert_eq!(t.config.get_application_name(), Some("x"));
        let t = target("postgresql://u@h/db?sslmode=verify-full").unwrap();
        assert_eq!(t.config.get_ssl_mode(), SslMode::Require);
        let t = target("postgres://u@h/db").unwrap();
        assert_eq!(t.config.get_ssl_mode(), SslMode::Prefer);
        let t = target("postgres://u@h/db?options=-c%20work_mem%3D8MB").unwrap();
        assert_eq!(
            t.config.get_options(),
            Some("-c work_mem=8MB -c synchronous_commit=on")
        );

        for (url, says) in [
            (
                "postgres://u@h/db?sslmode=sometimes",
                "sslmode=\"sometimes\"",
            ),
            ("postgres://u@h/db?sslcert=/c.pem", "client certificates"),
            (
                "postgres://u@h/db?sslrootcert=/nonexistent.pem&sslmode=verify-ca",
                "/nonexistent.pem",
            ),
            ("postgres://u@h/db?bogus=1", "not valid"),
        ] {
            let err = target(url)
                .err()
                .map(|e| format!("{e:#}"))
                .unwrap_or_default();
            assert!(err.contains(says), "{url}: {err}");
        }
    }
}
