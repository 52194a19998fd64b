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

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// Connections in the pool: the writers' and the readers' together.
const POOL_SIZE: usize = 12;

/// How long connecting, or waiting for a pooled connection, may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How the certificate of the server is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verify {
    /// Encrypted, but any certificate is accepted (libpq's `prefer` and `require`).
    Nothing,
    /// The chain must lead to a trusted root; the name is not checked.
    Chain,
    /// The chain, and the certificate must name the host.
    Full,
}

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
        Some(v) => Some(MakeRustlsConnect::new(tls_config(v, root.as_deref())?)),
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

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_config(verify: Verify, root: Option<&str>) -> anyhow::Result<rustls::ClientConfig> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("cannot set up TLS")?;
    let verifier: Arc<dyn ServerCertVerifier> = match verify {
        Verify::Nothing => Arc::new(AnyCertificate(provider)),
        Verify::Chain | Verify::Full => {
            let roots = Arc::new(roots(root)?);
            let webpki =
                rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider)
                    .build()
                    .context("cannot set up TLS certificate checks")?;
            if verify == Verify::Full {
                webpki
            } else {
                Arc::new(ChainOnly(webpki))
            }
        }
    };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// The roots the chain must lead to: the `sslrootcert` file, or the system's
/// (also for `sslrootcert=system`).
fn roots(path: Option<&str>) -> anyhow::Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    match path {
        Some(p) if p != "system" => {
            for cert in CertificateDer::pem_file_iter(p)
                .with_context(|| format!("cannot read sslrootcert {p}"))?
            {
                let cert = cert.with_context(|| format!("sslrootcert {p} is not PEM"))?;
                store
                    .add(cert)
                    .with_context(|| format!("sslrootcert {p} holds an invalid certificate"))?;
            }
            if store.is_empty() {
                bail!("sslrootcert {p} holds no certificate");
            }
        }
        _ => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = store.add(cert);
            }
            if store.is_empty() {
                bail!("no system root certificates found (name one with sslrootcert=FILE)");
            }
        }
    }
    Ok(store)
}

/// libpq's `require`: encrypt, check the handshake's signatures, trust any certificate.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// libpq's `verify-ca`: the chain is checked, the host name is not.
#[derive(Debug)]
struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
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
