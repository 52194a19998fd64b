//! What admin views hide: credentials and signatures in an event's headers,
//! and the credential part of a forward's URL.
//!
//! Owns: [`mask_headers`] and [`forward_target`], the one place these rules
//! live for the admin API, the dashboard, the event stream and the CLI.
//! Never: changes what is stored or what plugins see; it shapes views only.

use crate::config::Source;
use crate::source::verify::Scheme;

/// What a masked header's value reads as.
pub(crate) const MASKED: &str = "[masked]";

/// Headers that carry credentials (they are dropped before an event is
/// stored; masked here as well, for events stored before that).
const CREDENTIALS: [&str; 4] = [
    "authorization",
    "cookie",
    "proxy-authorization",
    "set-cookie",
];

/// The headers of an event as admin views show them: credentials, the
/// source's signature header (its scheme's, or its `verify.header`), and any
/// header whose name holds `signature` (a source's scheme may have changed
/// since the event came in) read [`MASKED`]. Names are compared without case.
pub(crate) fn mask_headers(
    headers: &[(String, String)],
    source: Option<&Source>,
) -> Vec<(String, String)> {
    let own = source.and_then(|s| signature_header(s.verifier.scheme()));
    headers
        .iter()
        .map(|(name, value)| {
            let lower = name.to_ascii_lowercase();
            let secret = CREDENTIALS.contains(&lower.as_str())
                || lower.contains("signature")
                || own.as_deref() == Some(lower.as_str());
            let shown = if secret { MASKED } else { value.as_str() };
            (name.clone(), shown.to_string())
        })
        .collect()
}

/// The header a scheme's signature travels in, lower-case.
fn signature_header(scheme: &Scheme) -> Option<String> {
    match scheme {
        Scheme::None => None,
        Scheme::HmacSha256 { header } => Some(header.to_ascii_lowercase()),
        Scheme::StandardWebhooks => Some("webhook-signature".into()),
        Scheme::Stripe => Some("stripe-signature".into()),
    }
}

/// A forward's URL as admin views show it: scheme, host, port and the first
/// path segment (for Slack- or Teams-style webhooks the rest is the
/// credential), with `/…` when more was cut. User info and query are dropped.
pub(crate) fn forward_target(url: &str) -> String {
    let Ok(uri) = url.parse::<hyper::Uri>() else {
        return "(invalid url)".into();
    };
    let host = uri.host().unwrap_or("?");
    let port = uri.port_u16().map(|p| format!(":{p}")).unwrap_or_default();
    let mut segments = uri.path().split('/').filter(|s| !s.is_empty());
    let first = segments.next().map(|s| format!("/{s}")).unwrap_or_default();
    let more = segments.next().is_some() || uri.query().is_some();
    format!(
        "{}://{host}{port}{first}{}",
        uri.scheme_str().unwrap_or("?"),
        if more { "/…" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn credentials_and_signatures_are_masked_the_rest_kept() {
        let headers = h(&[
            ("content-type", "application/json"),
            ("Authorization", "Bearer s3cret"),
            ("cookie", "session=1"),
            ("proxy-authorization", "Basic x"),
            ("x-hub-signature-256", "sha256=abc"),
            ("stripe-signature", "t=1,v1=abc"),
            ("x-custom-sig", "abc"),
            ("webhook-id", "msg_1"),
        ]);
        let masked = mask_headers(&headers, None);
        let shown: Vec<&str> = masked.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(
            shown,
            [
                "application/json",
                MASKED,
                MASKED,
                MASKED,
                MASKED,
                MASKED,
                "abc",
                "msg_1"
            ]
        );
        // Names and order are kept.
        assert_eq!(masked[1].0, "Authorization");
    }

    #[test]
    fn a_sources_own_signature_header_is_masked_whatever_its_name() {
        for (scheme, name) in [
            (
                Scheme::HmacSha256 {
                    header: "X-Custom-Sig".into(),
                },
                "x-custom-sig",
            ),
            (Scheme::StandardWebhooks, "webhook-signature"),
            (Scheme::Stripe, "stripe-signature"),
        ] {
            assert_eq!(signature_header(&scheme).as_deref(), Some(name));
        }
        assert_eq!(signature_header(&Scheme::None), None);
    }

    #[test]
    fn forward_targets_keep_scheme_host_port_and_first_segment() {
        for (url, shown) in [
            (
                "https://hooks.slack.com/services/T000/B000/XXXX",
                "https://hooks.slack.com/services/…",
            ),
            ("http://127.0.0.1:9000/audit", "http://127.0.0.1:9000/audit"),
            ("http://127.0.0.1:9000/", "http://127.0.0.1:9000"),
            ("http://h/a?token=x", "http://h/a/…"),
            ("https://user:pw@h:8443/a/b", "https://h:8443/a/…"),
            ("http://[::1]:9000/x/y", "http://[::1]:9000/x/…"),
            ("not a url", "(invalid url)"),
        ] {
            assert_eq!(forward_target(url), shown, "{url}");
        }
    }
}
