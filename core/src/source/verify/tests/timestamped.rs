//! The timestamped schemes against their published or `openssl` vectors:
//! refusals, and the five-minute tolerance in both directions.

use super::*;

// ---- standard-webhooks -------------------------------------------------------

/// The spec's published example (standard-webhooks/standard-webhooks,
/// libraries/javascript/src/webhook.test.ts, "sign function works").
pub(super) const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SW_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const SW_TS: u64 = 1_614_265_330;
const SW_BODY: &[u8] = br#"{"test": 2432232314}"#;
const SW_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

fn sw_headers(sig: &str) -> HeaderMap {
    headers(&[
        ("webhook-id", SW_ID),
        ("webhook-timestamp", &SW_TS.to_string()),
        ("webhook-signature", sig),
    ])
}

#[test]
fn standard_webhooks_published_vector_signs_and_verifies() {
    let v = verifier(Scheme::StandardWebhooks, &[SW_SECRET]);
    assert_eq!(v.verify(&sw_headers(SW_SIG), SW_BODY, at(SW_TS)), Ok(()));
    let signed = v.sign(SW_BODY, at(SW_TS), SW_ID);
    assert_eq!(signed[2], ("webhook-signature".into(), SW_SIG.into()));
    // The spec's libraries accept the secret without its prefix as well.
    let bare = verifier(
        Scheme::StandardWebhooks,
        &["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
    );
    assert_eq!(bare.verify(&sw_headers(SW_SIG), SW_BODY, at(SW_TS)), Ok(()));
}

#[test]
fn standard_webhooks_any_v1_entry_may_match() {
    let v = verifier(Scheme::StandardWebhooks, &[SW_SECRET]);
    let other = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=";
    let many = format!("{other} v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= {SW_SIG}  v1,!!");
    assert_eq!(v.verify(&sw_headers(&many), SW_BODY, at(SW_TS)), Ok(()));
    let none_match = format!("{other} v1,");
    let err = v.verify(&sw_headers(&none_match), SW_BODY, at(SW_TS));
    assert_eq!(err, Err(VerifyError::Mismatch("webhook-signature".into())));
}

#[test]
fn standard_webhooks_refusals() {
    let v = verifier(Scheme::StandardWebhooks, &[SW_SECRET]);
    let now = at(SW_TS);
    assert!(matches!(
        v.verify(&sw_headers(SW_SIG), b"{\"test\": 2432232315}", now),
        Err(VerifyError::Mismatch(_))
    ));
    let wrong = verifier(
        Scheme::StandardWebhooks,
        &["whsec_c2VjcmV0LW9mLWFub3RoZXItZW5kcG9pbnQ="],
    );
    assert!(matches!(
        wrong.verify(&sw_headers(SW_SIG), SW_BODY, now),
        Err(VerifyError::Mismatch(_))
    ));
    // A different id or timestamp is a different signed content.
    let mut h = sw_headers(SW_SIG);
    h.insert("webhook-id", HeaderValue::from_static("msg_other"));
    assert!(matches!(
        v.verify(&h, SW_BODY, now),
        Err(VerifyError::Mismatch(_))
    ));
    for missing in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        let mut h = sw_headers(SW_SIG);
        h.remove(missing);
        assert_eq!(
            v.verify(&h, SW_BODY, now),
            Err(VerifyError::Missing(missing.into()))
        );
    }
    for (name, bad) in [
        ("webhook-timestamp", "hello"),
        ("webhook-timestamp", "-5"),
        ("webhook-signature", "g0hM9SsE"),
    ] {
        let mut h = sw_headers(SW_SIG);
        h.insert(name, HeaderValue::from_static(bad));
        let err = v.verify(&h, SW_BODY, now).unwrap_err();
        assert!(
            matches!(&err, VerifyError::Malformed { header, .. } if header == name),
            "{bad}: {err}"
        );
    }
}

#[test]
fn standard_webhooks_tolerance_is_five_minutes_both_ways() {
    let v = verifier(Scheme::StandardWebhooks, &[SW_SECRET]);
    let h = sw_headers(SW_SIG);
    assert_eq!(v.verify(&h, SW_BODY, at(SW_TS + 300)), Ok(()));
    assert_eq!(v.verify(&h, SW_BODY, at(SW_TS - 300)), Ok(()));
    let old = v.verify(&h, SW_BODY, at(SW_TS + 301)).unwrap_err();
    assert_eq!(
        old.to_string(),
        "timestamp in `webhook-timestamp` is 301s old, outside the 300s tolerance"
    );
    let future = v.verify(&h, SW_BODY, at(SW_TS - 301)).unwrap_err();
    assert_eq!(
        future.to_string(),
        "timestamp in `webhook-timestamp` is 301s in the future, outside the 300s tolerance"
    );
}

// ---- stripe ------------------------------------------------------------------

/// Computed outside this code:
///   printf '%s' '1700000000.{"id":"evt_1","object":"event","type":"invoice.paid"}' \
///     | openssl dgst -sha256 -hmac 'whsec_test_secret' -hex
/// (Stripe keys the HMAC with the whole secret, `whsec_` included, as bytes.)
const STRIPE_SECRET: &str = "whsec_test_secret";
const STRIPE_TS: u64 = 1_700_000_000;
const STRIPE_BODY: &[u8] = br#"{"id":"evt_1","object":"event","type":"invoice.paid"}"#;
const STRIPE_V1: &str = "dfb4777aaaec4ea29ff455dd4df7fe6b2ef71096ad3a93a158db7e100109ea91";

fn stripe_headers(value: &str) -> HeaderMap {
    headers(&[("Stripe-Signature", value)])
}

#[test]
fn stripe_openssl_vector_passes_with_extra_schemes_and_entries() {
    let v = verifier(Scheme::Stripe, &[STRIPE_SECRET]);
    let now = at(STRIPE_TS + 10);
    for value in [
        format!("t={STRIPE_TS},v1={STRIPE_V1}"),
        format!(
            "t={STRIPE_TS},v1={},v1={STRIPE_V1},v0=6ffbb59b2300aae63f27",
            "00".repeat(32)
        ),
        format!("v1={STRIPE_V1}, t={STRIPE_TS}, v1=nothex"),
    ] {
        assert_eq!(
            v.verify(&stripe_headers(&value), STRIPE_BODY, now),
            Ok(()),
            "{value}"
        );
    }
    let signed = v.sign(STRIPE_BODY, at(STRIPE_TS), "");
    assert_eq!(
        signed,
        vec![(
            "stripe-signature".into(),
            format!("t={STRIPE_TS},v1={STRIPE_V1}")
        )]
    );
}

#[test]
fn stripe_refusals() {
    let v = verifier(Scheme::Stripe, &[STRIPE_SECRET]);
    let good = stripe_headers(&format!("t={STRIPE_TS},v1={STRIPE_V1}"));
    let now = at(STRIPE_TS);
    let mismatch = Err(VerifyError::Mismatch("stripe-signature".into()));
    assert_eq!(v.verify(&good, b"{}", now), mismatch);
    assert_eq!(
        verifier(Scheme::Stripe, &["whsec_other"]).verify(&good, STRIPE_BODY, now),
        mismatch
    );
    // The timestamp is signed: moving it breaks the signature.
    let moved = stripe_headers(&format!("t={},v1={STRIPE_V1}", STRIPE_TS + 1));
    assert_eq!(v.verify(&moved, STRIPE_BODY, now), mismatch);
    assert_eq!(
        v.verify(&HeaderMap::new(), STRIPE_BODY, now),
        Err(VerifyError::Missing("stripe-signature".into()))
    );
    let v0_only = format!("t={STRIPE_TS},v0={STRIPE_V1}");
    let two_t = format!("t=1,t={STRIPE_TS},v1={STRIPE_V1}");
    for bad in [
        "",
        "garbage",
        &format!("v1={STRIPE_V1}"),
        &format!("t=,v1={STRIPE_V1}"),
        &v0_only,
        &two_t,
    ] {
        let err = v
            .verify(&stripe_headers(bad), STRIPE_BODY, now)
            .unwrap_err();
        assert!(
            matches!(err, VerifyError::Malformed { .. }),
            "{bad:?}: {err}"
        );
    }
}

#[test]
fn stripe_tolerance_is_five_minutes_both_ways() {
    let v = verifier(Scheme::Stripe, &[STRIPE_SECRET]);
    let h = stripe_headers(&format!("t={STRIPE_TS},v1={STRIPE_V1}"));
    assert_eq!(v.verify(&h, STRIPE_BODY, at(STRIPE_TS + 300)), Ok(()));
    assert_eq!(v.verify(&h, STRIPE_BODY, at(STRIPE_TS - 300)), Ok(()));
    for now in [
        at(STRIPE_TS + 301),
        at(STRIPE_TS - 301),
        at(0),
        at(u64::MAX / 2),
    ] {
        let err = v.verify(&h, STRIPE_BODY, now).unwrap_err();
        assert!(matches!(err, VerifyError::StaleTimestamp { .. }), "{err}");
    }
    // A configured tolerance replaces the default.
    let wide = Verifier::new(
        Scheme::Stripe,
        vec![STRIPE_SECRET.into()],
        Duration::from_secs(3600),
    )
    .unwrap();
    assert_eq!(wide.verify(&h, STRIPE_BODY, at(STRIPE_TS + 3000)), Ok(()));
}
