//! One `[[sources]]` entry: preset defaults, overrides, and the verifier built
//! from the secrets its variables hold.
//!
//! Owns: resolving a source's type/id extractors and signature scheme.
//! Never: reads anything but the `env` function it is given.

use std::time::Duration;

use toml::Spanned;

use super::Source;
use super::raw::RawSource;
use super::validate::Ctx;
use crate::config::ConfigError;
use crate::source::presets::{Extractor, Preset};
use crate::source::verify::{Scheme, Verifier};

pub(super) fn source(
    cx: &Ctx<'_>,
    i: usize,
    s: &RawSource,
    env: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Result<Source, ConfigError> {
    let key = format!("sources[{i}]");
    let name = s.name.get_ref();
    let preset = match &s.preset {
        None => None,
        Some(p) => Some(p.get_ref().parse::<Preset>().map_err(|_| {
            cx.err(
                Some(p.span()),
                format!("{key}.preset"),
                format!(
                    "unknown preset {:?} (expected {})",
                    p.get_ref(),
                    Preset::names()
                ),
            )
        })?),
    };
    let extractor = |spec: &Spanned<String>, what: &str| {
        Extractor::parse(spec.get_ref())
            .map_err(|e| cx.err(Some(spec.span()), format!("{key}.{what}"), e.to_string()))
    };
    let type_from = match (&s.type_from, preset) {
        (Some(spec), _) => extractor(spec, "type_from")?,
        (None, Some(p)) => p.type_from(),
        (None, None) => {
            return Err(cx.err(Some(s.name.span()), format!("{key}.type_from"), "is required for a source without a preset (a JSON pointer like \"/type\" or \"header:NAME\")"));
        }
    };
    let id_from = match (&s.id_from, preset) {
        (Some(spec), _) => Some(extractor(spec, "id_from")?),
        (None, Some(p)) => Some(p.id_from()),
        (None, None) => None,
    };

    // verify: explicit keys override the preset's.
    let v = s.verify.as_ref().map(|v| v.get_ref());
    let verify_span = s.verify.as_ref().map(|v| v.span());
    let preset_scheme = preset.map(|p| p.scheme());
    let scheme_name = match v.and_then(|v| v.scheme.as_ref()) {
        Some(sn) => sn.get_ref().clone(),
        None => preset_scheme
            .as_ref()
            .map_or("none", |s| s.name())
            .to_string(),
    };
    let header = v
        .and_then(|v| v.header.clone())
        .or_else(|| match &preset_scheme {
            Some(Scheme::HmacSha256 { header }) if scheme_name == "hmac-sha256" => {
                Some(header.clone())
            }
            _ => None,
        });
    let scheme = Scheme::from_config(&scheme_name, header.as_deref()).map_err(|e| {
        let span = v
            .and_then(|v| v.scheme.as_ref())
            .map(|s| s.span())
            .or(verify_span.clone());
        cx.err(span, format!("{key}.verify"), e.to_string())
    })?;
    let tolerance = Duration::from_secs(v.and_then(|v| v.tolerance_secs).unwrap_or(300));

    let (secret_envs, env_span) = match v.and_then(|v| v.secret_env.as_ref()) {
        Some(se) => (se.get_ref().clone().into_vec(), Some(se.span())),
        None => (
            vec![format!(
                "{}_WEBHOOK_SECRET",
                name.as_str().to_ascii_uppercase().replace('-', "_")
            )],
            None,
        ),
    };
    let span = env_span.or(verify_span).unwrap_or(s.name.span());
    let mut secrets = Vec::new();
    if matches!(scheme, Scheme::None) {
        // Every source that verifies nothing is named at start, whether it says
        // so itself or inherits it (the `cloudevents` preset's default).
        let why = match (preset, v.and_then(|v| v.scheme.as_ref())) {
            (Some(p), None) => format!("verify.scheme = \"none\", the {p} preset's default"),
            _ => "verify.scheme = \"none\"".to_owned(),
        };
        warnings.push(format!(
            "{key}: source {:?} accepts unsigned requests: anyone who can reach the listener can post events ({why})",
            name.as_str()
        ));
    } else {
        if secret_envs.is_empty() || secret_envs.len() > 2 {
            return Err(cx.err(
                Some(span),
                format!("{key}.verify.secret_env"),
                "name one variable, or two (old and new) while rotating",
            ));
        }
        for var in &secret_envs {
            match env(var) {
                Some(secret) if !secret.is_empty() => secrets.push(secret),
                _ => {
                    return Err(cx.err(
                        Some(span),
                        format!("{key}.verify.secret_env"),
                        format!("environment variable {var} is not set"),
                    ));
                }
            }
        }
    }
    let verifier = Verifier::new(scheme, secrets, tolerance)
        .map_err(|e| cx.err(Some(span), format!("{key}.verify"), e.to_string()))?;
    Ok(Source {
        name: name.clone(),
        type_from,
        id_from,
        verifier,
        secret_envs: if scheme_name == "none" {
            Vec::new()
        } else {
            secret_envs
        },
        preset: s.preset.as_ref().map(|p| p.get_ref().clone()),
        scheme_name,
    })
}
