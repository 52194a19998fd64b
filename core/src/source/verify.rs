//! Webhook signature schemes: checking a request's signature, and producing the
//! headers a sender must set (`hookrouter send`, tests).
//!
//! Owns: the `none`, `hmac-sha256`, `standard-webhooks` and `stripe` schemes of
//! `router.toml`, secret parsing, secret rotation (old and new secret both accepted),
//! timestamp tolerance, constant-time comparison.
//! Never: reads the environment, the clock or the network (secrets and `now` are
//! handed in), parses the body as JSON, or panics on any header value or body.
//!
//! Every [`VerifyError`] is a `401` at the ingress. A [`VerifyError::StaleTimestamp`]
//! is only reported for a signature that matched, so it means "authentic but
//! outside the tolerance" (a replay, or a sender's clock that is off).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, Mac};
use http::header::{HeaderMap, HeaderName};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// The tolerance of the timestamped schemes unless configured otherwise.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

const WEBHOOK_ID: &str = "webhook-id";
const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
const WEBHOOK_SIGNATURE: &str = "webhook-signature";
const STRIPE_SIGNATURE: &str = "stripe-signature";
/// GitHub's header; `sign` mirrors GitHub by prefixing its value with `sha256=`.
const GITHUB_SIGNATURE: &str = "x-hub-signature-256";
const WHSEC_PREFIX: &str = "whsec_";
/// Standard base64 alphabet, padding optional (some providers strip it).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// How a source's requests are signed (`verify.scheme` in `router.toml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    /// No verification: every request passes.
    None,
    /// Hex HMAC-SHA256 of the raw body in `header`, bare or `sha256=`-prefixed.
    HmacSha256 { header: String },
    /// The Standard Webhooks spec (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
    StandardWebhooks,
    /// Stripe's `Stripe-Signature: t=…,v1=…`.
    Stripe,
}

impl Scheme {
    /// The scheme named `name` in `router.toml`; `header` is required by
    /// `hmac-sha256` and refused by the others (their headers are fixed).
    pub fn from_config(name: &str, header: Option<&str>) -> Result<Self, VerifyConfigError> {
        let scheme = Scheme::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| VerifyConfigError::UnknownScheme(name.to_owned()))?;
        match (scheme, header) {
            (Scheme::HmacSha256 { .. }, Some(header)) => Ok(Scheme::HmacSha256 {
                header: header.to_owned(),
            }),
            (Scheme::HmacSha256 { .. }, None) => Err(VerifyConfigError::HeaderRequired),
            (scheme, Some(_)) => Err(VerifyConfigError::HeaderNotAllowed(scheme.name())),
            (scheme, None) => Ok(scheme),
        }
    }

    /// One scheme of each kind (`hmac-sha256` with an empty header): the list
    /// that `router.toml`'s names and error messages are built from.
    pub const ALL: [Scheme; 4] = [
        Scheme::None,
        Scheme::HmacSha256 {
            header: String::new(),
        },
        Scheme::StandardWebhooks,
        Scheme::Stripe,
    ];

    /// `none, hmac-sha256, standard-webhooks or stripe`, from [`Scheme::ALL`].
    pub fn names() -> String {
        super::one_of(Scheme::ALL.iter().map(Scheme::name))
    }

    /// The headers this scheme reads its signature from (lower-case), which
    /// admin views mask.
    pub fn signature_headers(&self) -> Vec<String> {
        match self {
            Scheme::None => Vec::new(),
            Scheme::HmacSha256 { header } => vec![header.to_ascii_lowercase()],
            Scheme::StandardWebhooks => vec![WEBHOOK_SIGNATURE.to_owned()],
            Scheme::Stripe => vec![STRIPE_SIGNATURE.to_owned()],
        }
    }

    /// The scheme's name as written in `router.toml`.
    pub fn name(&self) -> &'static str {
        match self {
            Scheme::None => "none",
            Scheme::HmacSha256 { .. } => "hmac-sha256",
            Scheme::StandardWebhooks => "standard-webhooks",
            Scheme::Stripe => "stripe",
        }
    }
}

/// A configuration the verifier cannot work with; a start-up (or `check`) error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyConfigError {
    #[error("unknown verify scheme `{0}` (expected {names})", names = Scheme::names())]
    UnknownScheme(String),
    #[error("verify scheme `hmac-sha256` needs a `header`")]
    HeaderRequired,
    #[error("verify scheme `{0}` takes no `header` (its headers are fixed)")]
    HeaderNotAllowed(&'static str),
    #[error("`{0}` is not a valid header name")]
    BadHeaderName(String),
    #[error("verify scheme `{0}` needs a secret")]
    NoSecret(&'static str),
    #[error("at most two secrets (old and new) are accepted, got {0}")]
    TooManySecrets(usize),
    #[error("secret #{0} is empty")]
    EmptySecret(usize),
    #[error("secret #{0} starts with `whsec_` but the rest is not valid base64")]
    BadBase64Secret(usize),
}

/// Why a request's signature was refused. The ingress answers `401` for each.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing header `{0}`")]
    Missing(String),
    #[error("malformed header `{header}`: {what}")]
    Malformed { header: String, what: &'static str },
    #[error("signature in `{0}` does not match")]
    Mismatch(String),
    #[error("timestamp in `{header}` is {}, outside the {tolerance_secs}s tolerance", skew(.age_secs))]
    StaleTimestamp {
        header: String,
        /// `now - timestamp` in seconds: positive in the past, negative in the future.
        age_secs: i64,
        tolerance_secs: u64,
    },
}

fn skew(age_secs: &i64) -> String {
    if *age_secs >= 0 {
        format!("{age_secs}s old")
    } else {
        format!("{}s in the future", age_secs.unsigned_abs())
    }
}

/// Secret bytes; never printed.
#[derive(Clone)]
struct Secret(Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
        HmacSha256::new_from_slice(&self.0).expect("hmac accepts keys of any length")
    }
}

/// Verifies (and signs) the requests of one source.
#[derive(Debug, Clone)]
pub struct Verifier {
    scheme: Scheme,
    /// The `hmac-sha256` header, parsed once.
    header: Option<HeaderName>,
    /// Oldest first; the last one signs.
    secrets: Vec<Secret>,
    tolerance: Duration,
}

impl Verifier {
    /// A verifier for `scheme` that accepts a signature by any of `secrets` (one,
    /// or two during a rotation: old then new).
    ///
    /// `hmac-sha256` and `stripe` use a secret's bytes as they are (Stripe's
    /// `whsec_…` secret included). `standard-webhooks` decodes the base64 after
    /// `whsec_`; a secret without the prefix is decoded too if it is valid base64
    /// (as the spec's own libraries do), and is otherwise taken as raw bytes.
    /// `none` ignores any secret it is given.
    pub fn new(
        scheme: Scheme,
        secrets: Vec<String>,
        tolerance: Duration,
    ) -> Result<Self, VerifyConfigError> {
        let header = match &scheme {
            Scheme::HmacSha256 { header } => Some(
                HeaderName::from_bytes(header.as_bytes())
                    .map_err(|_| VerifyConfigError::BadHeaderName(header.clone()))?,
            ),
            _ => None,
        };
        let secrets = match scheme {
            Scheme::None => Vec::new(),
            _ if secrets.is_empty() => return Err(VerifyConfigError::NoSecret(scheme.name())),
            _ if secrets.len() > 2 => return Err(VerifyConfigError::TooManySecrets(secrets.len())),
            Scheme::StandardWebhooks => secrets
                .iter()
                .enumerate()
                .map(|(i, s)| parse_whsec(i + 1, s))
                .collect::<Result<_, _>>()?,
            Scheme::HmacSha256 { .. } | Scheme::Stripe => secrets
                .into_iter()
                .enumerate()
                .map(|(i, s)| match s.is_empty() {
                    true => Err(VerifyConfigError::EmptySecret(i + 1)),
                    false => Ok(Secret(s.into_bytes())),
                })
                .collect::<Result<_, _>>()?,
        };
        Ok(Verifier {
            scheme,
            header,
            secrets,
            tolerance,
        })
    }

    /// The scheme this verifier checks.
    pub fn scheme(&self) -> &Scheme {
        &self.scheme
    }

    /// Checks the request's signature over the raw `body` at time `now`.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<(), VerifyError> {
        match &self.scheme {
            Scheme::None => Ok(()),
            Scheme::HmacSha256 { .. } => self.verify_hmac(headers, body),
            Scheme::StandardWebhooks => self.verify_standard(headers, body, now),
            Scheme::Stripe => self.verify_stripe(headers, body, now),
        }
    }

    /// The headers (name, value; names lower-case) a sender must set for `body`,
    /// signed with the newest secret at `now`. `msg_id` is the `webhook-id` of
    /// `standard-webhooks` and unused by the other schemes. Empty for `none`.
    pub fn sign(&self, body: &[u8], now: SystemTime, msg_id: &str) -> Vec<(String, String)> {
        let Some(secret) = self.secrets.last() else {
            return Vec::new();
        };
        let ts = unix_secs(now).to_string();
        match &self.scheme {
            Scheme::None => Vec::new(),
            Scheme::HmacSha256 { .. } => {
                let Some(name) = &self.header else {
                    return Vec::new(); // set by `new` for this scheme
                };
                let hex = hex::encode(tag(secret, &[body]));
                let value = match name.as_str() {
                    GITHUB_SIGNATURE => format!("sha256={hex}"),
                    _ => hex,
                };
                vec![(name.as_str().to_owned(), value)]
            }
            Scheme::StandardWebhooks => {
                let sig = BASE64.encode(tag(
                    secret,
                    &[msg_id.as_bytes(), b".", ts.as_bytes(), b".", body],
                ));
                vec![
                    (WEBHOOK_ID.to_owned(), msg_id.to_owned()),
                    (WEBHOOK_TIMESTAMP.to_owned(), ts),
                    (WEBHOOK_SIGNATURE.to_owned(), format!("v1,{sig}")),
                ]
            }
            Scheme::Stripe => {
                let sig = hex::encode(tag(secret, &[ts.as_bytes(), b".", body]));
                vec![(STRIPE_SIGNATURE.to_owned(), format!("t={ts},v1={sig}"))]
            }
        }
    }

    fn verify_hmac(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), VerifyError> {
        let name = self.header.as_ref().map_or("", HeaderName::as_str);
        let value = one_header(headers, name)?;
        let malformed = |what| VerifyError::Malformed {
            header: name.to_owned(),
            what,
        };
        let value = value.trim_ascii();
        let hex = match value.get(..7) {
            Some(p) if p.eq_ignore_ascii_case(b"sha256=") => &value[7..],
            _ => value,
        };
        let given = hex::decode(hex).map_err(|_| malformed("not a hex digest"))?;
        if given.len() != 32 {
            return Err(malformed("not a 64-digit hex sha256 digest"));
        }
        self.any_secret_matches(&[body], &[given], name)
    }

    /// Ok if the HMAC of `parts` under any secret equals any of `given`, compared
    /// in constant time (one HMAC per secret, however many signatures are given).
    fn any_secret_matches(
        &self,
        parts: &[&[u8]],
        given: &[Vec<u8>],
        header: &str,
    ) -> Result<(), VerifyError> {
        let mut matched = subtle::Choice::from(0);
        for secret in &self.secrets {
            let expected = tag(secret, parts);
            for sig in given {
                matched |= expected.as_slice().ct_eq(sig);
            }
        }
        match bool::from(matched) {
            true => Ok(()),
            false => Err(VerifyError::Mismatch(header.to_owned())),
        }
    }
}

/// HMAC-SHA256 of the concatenation of `parts`.
fn tag(secret: &Secret, parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = secret.mac();
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// The value of header `name`, which must be present exactly once.
fn one_header<'h>(headers: &'h HeaderMap, name: &str) -> Result<&'h [u8], VerifyError> {
    let mut values = headers.get_all(name).iter();
    let value = values
        .next()
        .ok_or_else(|| VerifyError::Missing(name.to_owned()))?;
    if values.next().is_some() {
        return Err(VerifyError::Malformed {
            header: name.to_owned(),
            what: "given more than once",
        });
    }
    Ok(value.as_bytes())
}

/// Seconds since the Unix epoch, negative before it, saturating.
fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

/// A Standard Webhooks secret: `whsec_` + base64, or base64, or raw bytes.
fn parse_whsec(n: usize, s: &str) -> Result<Secret, VerifyConfigError> {
    let bytes = match s.strip_prefix(WHSEC_PREFIX) {
        Some(b64) => BASE64
            .decode(b64)
            .map_err(|_| VerifyConfigError::BadBase64Secret(n))?,
        None => BASE64.decode(s).unwrap_or_else(|_| s.as_bytes().to_vec()),
    };
    match bytes.is_empty() {
        true => Err(VerifyConfigError::EmptySecret(n)),
        false => Ok(Secret(bytes)),
    }
}

mod timestamped;

#[cfg(test)]
mod tests;
