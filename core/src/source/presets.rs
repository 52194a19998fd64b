//! Source presets (`preset = "optum"` in `router.toml`), the extractors that read
//! an event's type and id (`type_from`, `id_from`), and the envelopes that
//! `hookrouter send` wraps a payload in.
//!
//! Owns: each preset's defaults (type, id, verify scheme and header), the
//! `/json/pointer` and `header:NAME` syntax, the Optum and CloudEvents envelopes.
//! Never: reads the environment, the clock or the network (ids and time are handed
//! in), verifies signatures (that is `verify`), or panics on any body or header.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{HeaderMap, HeaderName};
use serde_json::{Value, json};

use super::verify::Scheme;

/// The `source` of envelopes built by `hookrouter send`.
pub const SEND_SOURCE: &str = "hookrouter-send";

/// A provider whose conventions a source can adopt in one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Preset {
    Optum,
    Github,
    Stripe,
    StandardWebhooks,
    Cloudevents,
}

/// A `preset` value that names no preset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown preset `{0}` (expected {names})", names = Preset::names())]
pub struct UnknownPreset(pub String);

impl FromStr for Preset {
    type Err = UnknownPreset;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Preset::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| UnknownPreset(s.to_owned()))
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Preset {
    pub const ALL: [Preset; 5] = [
        Preset::Optum,
        Preset::Github,
        Preset::Stripe,
        Preset::StandardWebhooks,
        Preset::Cloudevents,
    ];

    /// `optum, github, stripe, standard-webhooks or cloudevents`, from [`Preset::ALL`].
    pub fn names() -> String {
        super::one_of(Preset::ALL.iter().map(|p| p.name()))
    }

    /// The name used in `router.toml`.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Optum => "optum",
            Preset::Github => "github",
            Preset::Stripe => "stripe",
            Preset::StandardWebhooks => "standard-webhooks",
            Preset::Cloudevents => "cloudevents",
        }
    }

    /// Where the event type is, unless `type_from` overrides it.
    pub fn type_from(self) -> Extractor {
        match self {
            Preset::Github => Extractor::header("x-github-event"),
            Preset::Cloudevents => {
                Extractor::first_of([Extractor::header("ce-type"), Extractor::pointer("/type")])
            }
            Preset::Optum | Preset::Stripe | Preset::StandardWebhooks => {
                Extractor::pointer("/type")
            }
        }
    }

    /// Where the event's own id (for dedupe) is, unless `id_from` overrides it.
    /// Optum's `id` is the payment's or batch's id; the event's is `causationId`.
    pub fn id_from(self) -> Extractor {
        match self {
            Preset::Optum => Extractor::pointer("/causationId"),
            Preset::Github => Extractor::header("x-github-delivery"),
            Preset::Stripe => Extractor::pointer("/id"),
            Preset::StandardWebhooks => Extractor::header("webhook-id"),
            Preset::Cloudevents => {
                Extractor::first_of([Extractor::header("ce-id"), Extractor::pointer("/id")])
            }
        }
    }

    /// The verify scheme (and header), unless `verify` overrides it.
    pub fn scheme(self) -> Scheme {
        match self {
            Preset::Optum => Scheme::HmacSha256 {
                header: "X-Optum-Webhook-Callback-Hmac-Signature".to_owned(),
            },
            Preset::Github => Scheme::HmacSha256 {
                header: "X-Hub-Signature-256".to_owned(),
            },
            Preset::Stripe => Scheme::Stripe,
            Preset::StandardWebhooks => Scheme::StandardWebhooks,
            Preset::Cloudevents => Scheme::None,
        }
    }

    /// Whether `hookrouter send` wraps a payload in an envelope for this preset.
    pub fn has_envelope(self) -> bool {
        matches!(self, Preset::Optum | Preset::Cloudevents)
    }

    /// The body `hookrouter send` posts for `payload`: wrapped in this preset's
    /// envelope, or unchanged if the preset has none or `payload` already is a
    /// whole envelope of this kind (`type`, `data` and `specVersion`, or for
    /// CloudEvents `specversion`).
    pub fn wrap(self, payload: Value, new: &NewEnvelope<'_>) -> Value {
        let time = rfc3339_millis(new.time);
        match self {
            Preset::Optum if !is_envelope(&payload, "specVersion") => json!({
                "id": new.subject_id,
                "source": SEND_SOURCE,
                "specVersion": "1.0",
                "type": new.event_type,
                "dataContentType": "application/json",
                "time": time,
                "causationId": new.event_id,
                "data": payload,
            }),
            Preset::Cloudevents if !is_envelope(&payload, "specversion") => json!({
                "specversion": "1.0",
                "id": new.event_id,
                "source": SEND_SOURCE,
                "type": new.event_type,
                "datacontenttype": "application/json",
                "time": time,
                "data": payload,
            }),
            _ => payload,
        }
    }

    /// Headers `hookrouter send` sets besides the signature's, for presets whose
    /// type or id travel in headers that `Verifier::sign` does not set.
    pub fn send_headers(self, event_type: &str, event_id: &str) -> Vec<(String, String)> {
        match self {
            Preset::Github => vec![
                ("x-github-event".to_owned(), event_type.to_owned()),
                ("x-github-delivery".to_owned(), event_id.to_owned()),
            ],
            _ => Vec::new(),
        }
    }
}

/// What `hookrouter send` picks for a new envelope (fresh ids, the current time).
#[derive(Debug, Clone, Copy)]
pub struct NewEnvelope<'a> {
    pub event_type: &'a str,
    /// The event's own id: Optum's `causationId`, CloudEvents' `id`.
    pub event_id: &'a str,
    /// Optum's `id` (the payment or batch the event is about); unused by CloudEvents.
    pub subject_id: &'a str,
    pub time: SystemTime,
}

fn is_envelope(v: &Value, spec_version_key: &str) -> bool {
    let Some(obj) = v.as_object() else {
        return false;
    };
    let has_data = obj.contains_key("data") || obj.contains_key("data_base64");
    obj.contains_key("type") && has_data && obj.contains_key(spec_version_key)
}

/// RFC 3339 with milliseconds, clamped to what it can print (1970 to 9999).
fn rfc3339_millis(t: SystemTime) -> String {
    let max = UNIX_EPOCH + Duration::from_secs(253_402_300_799);
    let t = t.clamp(UNIX_EPOCH, max);
    humantime::format_rfc3339_millis(t).to_string()
}

/// An invalid `type_from` or `id_from` value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtractorError {
    #[error("`{0}` is neither a JSON pointer (`/a/b`) nor `header:NAME`")]
    Syntax(String),
    #[error("`{0}`: not a valid header name")]
    BadHeader(String),
    #[error("`{0}`: in a JSON pointer `~` must be followed by 0 or 1")]
    BadEscape(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Lookup {
    /// RFC 6901 pointer into the JSON body: as written, and split.
    Pointer(String, crate::json_scan::Pointer),
    /// First value of a request header.
    Header(HeaderName),
}

/// Reads one string out of a request (its event type or id): a JSON pointer into
/// the body, a header, or a list of those tried in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extractor {
    lookups: Vec<Lookup>,
}

impl FromStr for Extractor {
    type Err = ExtractorError;

    /// `/a/b` (RFC 6901) or `header:NAME` (name case-insensitive).
    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let lookup = if let Some(name) = spec.strip_prefix("header:") {
            let name = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| ExtractorError::BadHeader(spec.to_owned()))?;
            Lookup::Header(name)
        } else if spec.starts_with('/') {
            let mut rest = spec;
            while let Some(i) = rest.find('~') {
                rest = &rest[i + 1..];
                if !(rest.starts_with('0') || rest.starts_with('1')) {
                    return Err(ExtractorError::BadEscape(spec.to_owned()));
                }
            }
            Lookup::Pointer(spec.to_owned(), crate::json_scan::Pointer::new(spec))
        } else {
            return Err(ExtractorError::Syntax(spec.to_owned()));
        };
        Ok(Extractor {
            lookups: vec![lookup],
        })
    }
}

impl fmt::Display for Extractor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, lookup) in self.lookups.iter().enumerate() {
            if i > 0 {
                f.write_str(" or ")?;
            }
            match lookup {
                Lookup::Pointer(p, _) => f.write_str(p)?,
                Lookup::Header(h) => write!(f, "header:{h}")?,
            }
        }
        Ok(())
    }
}

impl Extractor {
    /// Parses a `type_from` / `id_from` value; see [`FromStr`].
    pub fn parse(spec: &str) -> Result<Self, ExtractorError> {
        spec.parse()
    }

    fn pointer(p: &'static str) -> Self {
        Extractor {
            lookups: vec![Lookup::Pointer(
                p.to_owned(),
                crate::json_scan::Pointer::new(p),
            )],
        }
    }

    fn header(name: &'static str) -> Self {
        Extractor {
            lookups: vec![Lookup::Header(HeaderName::from_static(name))],
        }
    }

    /// Tries each extractor in turn; the first that finds a value wins.
    pub fn first_of(list: impl IntoIterator<Item = Extractor>) -> Self {
        Extractor {
            lookups: list.into_iter().flat_map(|e| e.lookups).collect(),
        }
    }

    /// The header tried first, if the first lookup is a header.
    pub fn header_name(&self) -> Option<&HeaderName> {
        match self.lookups.first() {
            Some(Lookup::Header(h)) => Some(h),
            _ => None,
        }
    }

    /// The value found: a JSON string as is, a number as its text; `None` for
    /// any other JSON type, an empty string, a missing key, a body that is not
    /// JSON, or a header that is absent, empty or not visible ASCII. `body` is
    /// the raw body, walked, not parsed into a tree (see `json_scan`).
    pub fn extract(&self, headers: &HeaderMap, body: &[u8]) -> Option<String> {
        // A body that is not JSON has nothing at any pointer: scanned empty.
        let scanned = crate::json_scan::Scanned::scan(body, self.pointers()).unwrap_or_default();
        self.extract_scanned(headers, &scanned)
    }

    /// Like [`Extractor::extract`], with the body's pointers already read (the
    /// ingress reads the type's and the id's in one pass).
    pub fn extract_scanned(
        &self,
        headers: &HeaderMap,
        scanned: &crate::json_scan::Scanned<'_>,
    ) -> Option<String> {
        self.lookups.iter().find_map(|lookup| match lookup {
            Lookup::Header(name) => header_value(headers, name),
            Lookup::Pointer(_, p) => scanned.get(p),
        })
    }

    /// The JSON pointers among the lookups.
    pub fn pointers(&self) -> impl Iterator<Item = &crate::json_scan::Pointer> {
        self.lookups.iter().filter_map(|lookup| match lookup {
            Lookup::Pointer(_, p) => Some(p),
            Lookup::Header(_) => None,
        })
    }
}

/// A header's first value, trimmed, if it is non-empty visible ASCII.
fn header_value(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests;
