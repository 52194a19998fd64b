//! The timestamped schemes, `standard-webhooks` and `stripe`: their header
//! syntax, signed content and tolerance check.
//!
//! Owns: parsing `webhook-*` and `Stripe-Signature` headers, the age check.
//! Never: compares signatures itself (`any_secret_matches` in the parent does, in
//! constant time) or reads the clock.

use std::time::SystemTime;

use base64::Engine as _;
use http::header::HeaderMap;

use super::{
    BASE64, STRIPE_SIGNATURE, Verifier, VerifyError, WEBHOOK_ID, WEBHOOK_SIGNATURE,
    WEBHOOK_TIMESTAMP, one_header, unix_secs,
};

impl Verifier {
    pub(super) fn verify_standard(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<(), VerifyError> {
        let id = one_header(headers, WEBHOOK_ID)?;
        let ts_raw = one_header(headers, WEBHOOK_TIMESTAMP)?;
        let sig_raw = one_header(headers, WEBHOOK_SIGNATURE)?;
        let ts = parse_ts(ts_raw, WEBHOOK_TIMESTAMP)?;
        let mut saw_v1 = false;
        let given: Vec<Vec<u8>> = sig_raw
            .split(|b| b.is_ascii_whitespace())
            .filter_map(|entry| {
                let rest = entry.strip_prefix(b"v1,")?;
                saw_v1 = true;
                BASE64.decode(rest).ok()
            })
            .collect();
        if !saw_v1 {
            return Err(VerifyError::Malformed {
                header: WEBHOOK_SIGNATURE.into(),
                what: "no `v1,` signature",
            });
        }
        self.any_secret_matches(&[id, b".", ts_raw, b".", body], &given, WEBHOOK_SIGNATURE)?;
        self.check_age(ts, now, WEBHOOK_TIMESTAMP)
    }

    pub(super) fn verify_stripe(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<(), VerifyError> {
        let raw = one_header(headers, STRIPE_SIGNATURE)?;
        let malformed = |what| VerifyError::Malformed {
            header: STRIPE_SIGNATURE.into(),
            what,
        };
        let (mut ts_raw, mut given, mut saw_v1) = (None, Vec::new(), false);
        for item in raw.split(|&b| b == b',') {
            let item = item.trim_ascii();
            if let Some(t) = item.strip_prefix(b"t=") {
                if ts_raw.replace(t).is_some() {
                    return Err(malformed("more than one `t=`"));
                }
            } else if let Some(sig) = item.strip_prefix(b"v1=") {
                saw_v1 = true;
                given.extend(hex::decode(sig).ok());
            } // other schemes (v0, …) are ignored, as Stripe's libraries do
        }
        let ts_raw = ts_raw.ok_or_else(|| malformed("no `t=` timestamp"))?;
        if !saw_v1 {
            return Err(malformed("no `v1=` signature"));
        }
        let ts = parse_ts(ts_raw, STRIPE_SIGNATURE)?;
        self.any_secret_matches(&[ts_raw, b".", body], &given, STRIPE_SIGNATURE)?;
        self.check_age(ts, now, STRIPE_SIGNATURE)
    }

    fn check_age(&self, ts: i64, now: SystemTime, header: &str) -> Result<(), VerifyError> {
        let age_secs = unix_secs(now).saturating_sub(ts);
        let tolerance_secs = self.tolerance.as_secs();
        match age_secs.unsigned_abs() > tolerance_secs {
            true => Err(VerifyError::StaleTimestamp {
                header: header.to_owned(),
                age_secs,
                tolerance_secs,
            }),
            false => Ok(()),
        }
    }
}

/// A Unix timestamp in seconds: ASCII digits only, as the schemes define it.
fn parse_ts(raw: &[u8], header: &str) -> Result<i64, VerifyError> {
    let malformed = || VerifyError::Malformed {
        header: header.to_owned(),
        what: "timestamp is not a number of seconds",
    };
    if raw.is_empty() || raw.len() > 18 || !raw.iter().all(u8::is_ascii_digit) {
        return Err(malformed());
    }
    std::str::from_utf8(raw)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(malformed)
}
