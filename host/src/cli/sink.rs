//! `hookrouter sink [--listen 127.0.0.1:9000]`: a development target that
//! prints every request it receives and answers `200`, so the demo's forwards
//! (router.toml forwards to 127.0.0.1:9000) arrive somewhere you can see.
//!
//! Owns: printing a request (method, path, headers, body: pretty when JSON).
//! Never: keeps anything, or forwards it on; it is not for production.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

/// The largest body it reads.
const MAX_BODY: usize = 16 << 20;

#[derive(Debug, clap::Args)]
pub(super) struct SinkArgs {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
}

pub(super) fn run(args: SinkArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {} (--listen)", args.listen))?;
        println!(
            "hookrouter sink listening on http://{}: every request is printed here",
            listener.local_addr()?
        );
        std::io::stdout().flush()?;
        let limits = crate::http::Limits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            http2_max_streams: 32,
            drain: Duration::from_secs(1),
        };
        crate::http::serve(
            listener,
            limits,
            crate::http::Conns::new(1024),
            |req| async move { answer(req).await },
            super::shutdown_signal(),
        )
        .await;
        Ok(ExitCode::SUCCESS)
    })
}

async fn answer(req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map(|b| b.to_bytes());
    let text = match &body {
        Ok(b) => printed_body(b),
        Err(e) => format!("(body not read: {e})"),
    };
    let mut out = format!(
        "--- {} {} {}\n",
        humantime::format_rfc3339_millis(SystemTime::now()),
        parts.method,
        parts.uri
    );
    for (k, v) in &parts.headers {
        out.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
    }
    out.push('\n');
    out.push_str(&text);
    out.push('\n');
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
    let status = if body.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::PAYLOAD_TOO_LARGE
    };
    crate::http::text(status, Bytes::new(), "text/plain")
}

/// JSON pretty-printed; other text as it is; anything else by its size.
fn printed_body(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "(empty body)".into();
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(bytes) {
        return serde_json::to_string_pretty(&v).unwrap_or_default();
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => format!("({} bytes, not text)", bytes.len()),
    }
}
