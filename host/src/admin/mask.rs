//! What admin views hide: credentials and signatures in an event's headers,
//! and the credential part of a forward's URL.
//!
//! Owns: naming, for the admin API, the dashboard, the event stream and the
//! CLI, the rules that live in `core` beside the code that stores and logs
//! (`intake::is_masked`, `forward_policy::redact`), so that a view, a log line
//! and `hookrouter dead list` never disagree about what is secret.
//! Never: changes what is stored or what plugins see; it shapes views only.

use crate::config::Source;

/// The headers of an event as admin views show them: credentials, the source's
/// own signature headers, and any header whose name looks like a signature,
/// token or secret read `<masked>` (`intake::MASK`). Names and order are kept.
pub(crate) fn mask_headers(
    headers: &[(String, String)],
    source: Option<&Source>,
) -> Vec<(String, String)> {
    crate::intake::masked_headers(headers, source)
}

/// A forward's URL as admin views show it: scheme, host, port and the first
/// path segment (for Slack- or Teams-style webhooks the rest is the credential).
pub(crate) fn forward_target(url: &str) -> String {
    crate::forward_policy::redact(url)
}
