//! Entry points of the fuzz targets in `fuzz/`, one per input path a peer
//! controls. Each takes raw bytes, must never panic on them, and asserts the
//! properties that must hold whatever the input. The same functions replay the
//! committed corpora as ordinary tests (`core/tests/fuzz_corpus.rs`).
//!
//! Owns: how fuzz bytes become a request, a config or a plugin's stdout.
//! Never: touches files, the network or the clock (time is fixed).

use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::config::Config;
use crate::forward_policy::{self, ForwardTarget, Policy};
use crate::source::verify::{Scheme, Verifier};
use crate::{command_abi, intake};

/// The names of the fuzz targets, as folders of `fuzz/corpus/`.
pub const TARGETS: [&str; 4] = ["verify", "config", "command_stdout", "ingress"];

/// Runs the target named `name` on `data`; `false` for an unknown name.
pub fn run(name: &str, data: &[u8]) -> bool {
    match name {
        "verify" => verify(data),
        "config" => config(data),
        "command_stdout" => command_stdout(data),
        "ingress" => ingress(data),
        _ => return false,
    }
    true
}

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_750_000_000)
}

/// `header: value` lines, a blank line, then the body (all body when there is
/// no blank line). Lines that are no valid header are skipped.
fn request(data: &[u8]) -> (HeaderMap, &[u8]) {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (&[][..], data),
    };
    let mut headers = HeaderMap::new();
    for line in head.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            headers.append(n, v);
        }
    }
    (headers, body)
}

fn add(headers: &mut HeaderMap, signed: Vec<(String, String)>) {
    for (k, v) in signed {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(&v),
        ) {
            headers.insert(n, v);
        }
    }
}

fn verifiers() -> &'static [Verifier] {
    static V: OnceLock<Vec<Verifier>> = OnceLock::new();
    V.get_or_init(|| {
        let secrets = || vec!["old-secret".to_owned(), "new-secret".to_owned()];
        let sw = || {
            vec![
                "whsec_b2xkLXNlY3JldC1rZXk=".to_owned(),
                "whsec_bmV3LXNlY3JldC1rZXk=".to_owned(),
            ]
        };
        let tolerance = Duration::from_secs(300);
        vec![
            Verifier::new(Scheme::None, Vec::new(), tolerance),
            Verifier::new(
                Scheme::HmacSha256 {
                    header: "X-Hub-Signature-256".into(),
                },
                secrets(),
                tolerance,
            ),
            Verifier::new(Scheme::StandardWebhooks, sw(), tolerance),
            Verifier::new(Scheme::Stripe, secrets(), tolerance),
        ]
        .into_iter()
        .map(|v| v.expect("fixed fuzz secrets are valid"))
        .collect()
    })
}

/// Signature verification: every scheme, any headers and body. A request the
/// verifier signed itself passes; the same with a changed body does not.
pub fn verify(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let verifier = &verifiers()[usize::from(selector) % 4];
    let (mut headers, body) = request(rest);
    let at = now() + Duration::from_secs(u64::from(selector >> 2));
    let _ = verifier.verify(&headers, body, at);

    add(&mut headers, verifier.sign(body, now(), "msg_fuzz"));
    assert!(
        verifier.verify(&headers, body, now()).is_ok(),
        "a signed request must verify"
    );
    if !matches!(verifier.scheme(), Scheme::None) {
        let mut tampered = body.to_vec();
        tampered.push(b'x');
        assert!(
            verifier.verify(&headers, &tampered, now()).is_err(),
            "a changed body must not verify"
        );
    }
}

/// `router.toml` parsing and validation: any text gives a `Config` or one
/// error line whose position lies inside the text.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = |k: &str| (!k.contains("UNSET")).then(|| format!("{k}-value"));
    match Config::parse(Path::new("/fuzz/router.toml"), text, &env) {
        Ok(c) => {
            for s in &c.sources {
                assert!(c.source(s.name.as_str()).is_some());
            }
            assert!(c.server.max_inflight_bytes >= c.server.max_body_bytes);
        }
        Err(e) => {
            let line = e.to_string();
            assert!(!line.is_empty());
            if let Some((l, col)) = e.position {
                assert!(l >= 1 && col >= 1);
                assert!(l <= text.lines().count().max(1) + 1, "{line}");
            }
        }
    }
}

/// The command ABI's stdout parser, and the forward rule on what it returns:
/// never more actions than the cap; a redacted URL never shows a query.
pub fn command_stdout(data: &[u8]) {
    const MAX: usize = 20;
    let Ok(actions) = command_abi::parse_actions(data, MAX) else {
        return;
    };
    assert!(actions.len() <= MAX);
    let allow: Vec<ForwardTarget> = ["127.0.0.1:9000", "hooks.example.com"]
        .iter()
        .filter_map(|s| ForwardTarget::parse(s))
        .collect();
    let policy = Policy {
        allow: &allow,
        allow_private_network: false,
    };
    for action in actions {
        if let crate::event::Action::Forward { url, headers, .. } = action {
            let shown = forward_policy::redact(&url);
            assert!(!shown.contains('?'), "{shown}");
            // An error about the URL names it redacted. (An error about a header
            // names the header, which a plugin may fill with anything.)
            if let Err(why) = forward_policy::check(&url, &[], policy)
                && url.contains('?')
            {
                assert!(!why.contains(&url), "{why}");
            }
            let _ = forward_policy::check(&url, &headers, policy);
        }
    }
}

fn sources() -> &'static Config {
    static C: OnceLock<Config> = OnceLock::new();
    C.get_or_init(|| {
        let text = r#"
[[sources]]
name = "optum"
preset = "optum"
[[sources]]
name = "github"
preset = "github"
[[sources]]
name = "stripe"
preset = "stripe"
[[sources]]
name = "sw"
preset = "standard-webhooks"
verify = { secret_env = "SW" }
[[sources]]
name = "ce"
preset = "cloudevents"
[[sources]]
name = "plain"
type_from = "/kind"
id_from = "header:x-id"
verify = { scheme = "none" }
"#;
        let env = |k: &str| match k {
            "SW" => Some("whsec_c3ctZnV6ei1rZXk=".to_owned()),
            _ => Some(format!("{k}-value")),
        };
        Config::parse(Path::new("/fuzz/router.toml"), text, &env)
            .expect("fixed fuzz config is valid")
    })
}

/// The ingress path from headers and body to an `Event`. The first byte picks
/// the source, and its high bit signs the request correctly (so the fuzzer
/// reaches the JSON and type checks of signed sources too). An event never
/// keeps a credential header, and keeps the body byte for byte.
pub fn ingress(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let config = sources();
    let source = &config.sources[usize::from(selector & 0x7f) % config.sources.len()];
    let (mut headers, body) = request(rest);
    if selector & 0x80 != 0 {
        add(&mut headers, source.verifier.sign(body, now(), "msg_fuzz"));
    }
    match intake::event(source, &headers, body.to_vec(), now()) {
        Ok(event) => {
            assert!(!event.event_type.is_empty());
            assert_eq!(event.body.as_bytes(), body);
            assert!(
                event
                    .headers
                    .iter()
                    .all(|(k, _)| !intake::CREDENTIAL_HEADERS.contains(&k.as_str())),
                "a credential header was kept"
            );
            let shown = intake::masked_headers(&event.headers, Some(source));
            assert_eq!(shown.len(), event.headers.len());
        }
        Err(r) => {
            assert!(r.status.is_client_error(), "{r:?}");
            assert!(!r.message.is_empty());
        }
    }
}
