//! `hookrouter send`: build, sign and POST a test event the way the source's
//! provider would, so a route can be tried end to end without the provider.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::config::Config;
use crate::event::EventId;
use crate::source::presets::{Extractor, NewEnvelope, Preset};

/// Arguments of `hookrouter send`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example (Optum):\n  \
    export OPTUM_WEBHOOK_SECRET=...\n  \
    hookrouter send optum --type payment_loading_requested --data payment.json\n\n\
    The payload is wrapped in Optum's envelope (fresh causationId, the given type) and\n\
    signed with X-Optum-Webhook-Callback-Hmac-Signature. A file that already is a whole\n\
    envelope is sent as it is.")]
pub struct SendArgs {
    /// The source's name in router.toml.
    source: String,
    /// The event type.
    #[arg(long = "type")]
    event_type: String,
    /// The payload: a JSON file, or - for standard input.
    #[arg(long)]
    data: PathBuf,
    /// Where to send (default: http://{server.listen}/webhooks/{source}).
    #[arg(long)]
    url: Option<String>,
    /// The event id to use (default: a fresh one).
    #[arg(long)]
    id: Option<String>,
}

/// The request `send` makes: URL, headers and body.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Builds the signed request for `source` (pure but for the clock and fresh ids).
pub fn prepare(
    config: &Config,
    source: &str,
    event_type: &str,
    payload: Value,
    id: Option<String>,
    url: Option<String>,
) -> anyhow::Result<Prepared> {
    let src = config
        .source(source)
        .with_context(|| format!("{}: no source named {source:?}", config.path.display()))?;
    let event_id = id.unwrap_or_else(|| EventId::new().to_string());
    let now = SystemTime::now();
    let preset = src.preset.as_deref().and_then(|p| p.parse::<Preset>().ok());
    let mut body = match preset {
        Some(p) => p.wrap(
            payload,
            &NewEnvelope {
                event_type,
                event_id: &event_id,
                subject_id: &EventId::new().to_string(),
                time: now,
            },
        ),
        None => payload,
    };
    let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
    if let Some(p) = preset {
        headers.extend(p.send_headers(event_type, &event_id));
    }
    // Put the type and id where this source reads them, unless already there.
    let mut place = |x: &Extractor, value: &str, headers: &mut Vec<(String, String)>| {
        let map: hyper::HeaderMap = headers
            .iter()
            .filter_map(|(k, v)| {
                Some((
                    k.parse::<hyper::header::HeaderName>().ok()?,
                    v.parse().ok()?,
                ))
            })
            .collect();
        if x.extract(&map, body.to_string().as_bytes()).is_some() {
            return;
        }
        if let Some(name) = x.header_name() {
            headers.push((name.as_str().to_string(), value.to_string()));
        } else if let Some(key) = x
            .to_string()
            .strip_prefix('/')
            .filter(|k| !k.contains(['/', ' ']))
            && let Some(obj) = body.as_object_mut()
        {
            obj.insert(key.to_string(), Value::String(value.to_string()));
        }
    };
    place(&src.type_from, event_type, &mut headers);
    if let Some(x) = &src.id_from {
        place(x, &event_id, &mut headers);
    }
    let body = serde_json::to_vec(&body)?;
    for (k, v) in src.verifier.sign(&body, now, &event_id) {
        headers.retain(|(h, _)| !h.eq_ignore_ascii_case(&k));
        headers.push((k, v));
    }
    let url = match url {
        Some(u) => u,
        None if config.server.listen.port() == 0 => {
            anyhow::bail!("server.listen has port 0; pass --url")
        }
        None => format!("http://{}/webhooks/{source}", config.server.listen),
    };
    Ok(Prepared { url, headers, body })
}

fn read_payload(path: &Path) -> anyhow::Result<Value> {
    let mut text = String::new();
    if path == Path::new("-") {
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read standard input")?;
    } else {
        text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
    }
    serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", path.display()))
}

pub(super) fn run(config_path: &Path, args: SendArgs) -> anyhow::Result<ExitCode> {
    let config = super::load_for_tools(config_path)?;
    // Name the source and its secret first: they are the likelier mistakes.
    let src = config.source(&args.source).with_context(|| {
        format!(
            "{}: no source named {:?}",
            config.path.display(),
            args.source
        )
    })?;
    if let Some(var) = src.secret_envs.iter().find(|v| std::env::var(v).is_err()) {
        anyhow::bail!(
            "environment variable {var} is not set: it holds the secret of source {:?}",
            args.source
        );
    }
    let payload = read_payload(&args.data)?;
    let req = prepare(
        &config,
        &args.source,
        &args.event_type,
        payload,
        args.id,
        args.url,
    )?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (status, body) = rt.block_on(async {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()?
            .https_or_http()
            .enable_http1()
            .build();
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(https);
        let mut r = hyper::Request::post(req.url.as_str());
        for (k, v) in &req.headers {
            r = r.header(k.as_str(), v.as_str());
        }
        let resp = client
            .request(r.body(Full::new(Bytes::from(req.body.clone())))?)
            .await
            .with_context(|| format!("cannot reach {}", req.url))?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, body))
    })?;
    println!("{} {}", status.as_u16(), String::from_utf8_lossy(&body));
    Ok(if status.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
